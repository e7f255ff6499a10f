//! The one HTTP client builder every kiln network client uses (registries, Alpine mirrors,
//! Python indexes), so trust configured once works everywhere.
//!
//! Trust: the system store, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set (read as OpenSSL reads
//! them); for a registry, also the per-registry directory containers-certs.d(5) and docker
//! define: `--cert-dir DIR`, else the first existing of
//! `$HOME/.config/containers/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/HOST[:PORT]/` and
//! `/etc/docker/certs.d/HOST[:PORT]/`. In it, `*.crt` files are CA certificates added for that
//! registry only and a `NAME.cert` + `NAME.key` pair is the client certificate (mutual TLS).
//! `KILN_CERTS_D_PREFIX` puts a directory in front of the two `/etc` paths (tests, chroots).
//!
//! Failures are classified ([`Failure`]) so every caller says what went wrong and the fix that
//! fits the actual cause, and retries are reported as one line each ([`report_retry`]) in
//! kiln's own style instead of a library's log line. A redirect never goes from HTTPS to HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Environment variable naming a directory put in front of `/etc/containers/certs.d` and
/// `/etc/docker/certs.d` (so tests and chroots can provide them without writing to `/etc`).
pub const CERTS_D_PREFIX_ENV: &str = "KILN_CERTS_D_PREFIX";

/// The user agent every client sends.
const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));

/// A client could not be built from the trust configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(String);

/// What a client trusts and which client certificate it presents.
#[derive(Clone, Default)]
pub struct Trust {
    /// CA certificates added to the system store (a registry's `*.crt`).
    extra_roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and its key (`*.cert` + `*.key`).
    identity: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
    /// True: any server certificate is accepted (insecure registries).
    skip_verify: bool,
    /// The certs.d directory read, for messages.
    certs_dir: Option<PathBuf>,
    /// Where a CA certificate for this host would be read (for the unknown-CA hint).
    ca_hint_dir: Option<PathBuf>,
}

impl Trust {
    /// The system store (or `SSL_CERT_FILE`/`SSL_CERT_DIR`) only.
    pub fn system() -> Trust {
        Trust::default()
    }

    /// The system store plus what the certs.d directory of `host` (`host` or `host:port`)
    /// holds; `cert_dir` replaces the certs.d lookup, as `--cert-dir` does in buildah and
    /// skopeo.
    pub fn for_registry(host: &str, cert_dir: Option<&Path>) -> Result<Trust, TrustError> {
        let dir = match cert_dir {
            Some(dir) => Some(dir.to_owned()),
            None => certs_d_candidates(host).into_iter().find(|d| d.is_dir()),
        };
        // Where a hint tells the user to put the CA: the directory in use, else
        // `/etc/containers/certs.d/HOST`, the system-wide place podman documents.
        let hint_dir = dir
            .clone()
            .or_else(|| certs_d_candidates(host).into_iter().rev().nth(1));
        let mut trust = Trust {
            ca_hint_dir: hint_dir,
            ..Trust::default()
        };
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            trust.read_certs_dir(&dir)?;
            trust.certs_dir = Some(dir);
        }
        Ok(trust)
    }

    /// Accept any server certificate (an insecure registry, `--tls-verify=false`).
    pub fn skip_verify(mut self, yes: bool) -> Trust {
        self.skip_verify = yes;
        self
    }

    /// Whether a client certificate is presented.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    fn read_certs_dir(&mut self, dir: &Path) -> Result<(), TrustError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            TrustError(format!(
                "cannot read the certificate directory `{}`: {e}",
                dir.display()
            ))
        })?;
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        // Sorted, so the same directory always gives the same client certificate.
        names.sort();
        for path in names {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            match extension {
                "crt" => {
                    let certs = read_pem_certs(&path)?;
                    self.extra_roots.extend(certs);
                }
                "cert" => {
                    let key_path = path.with_extension("key");
                    if !key_path.is_file() {
                        return Err(TrustError(format!(
                            "client certificate `{}` has no key: put it beside as `{}`",
                            path.display(),
                            key_path.display()
                        )));
                    }
                    if self.identity.is_some() {
                        // docker uses every pair; rustls presents one: the first by name.
                        continue;
                    }
                    let chain = read_pem_certs(&path)?;
                    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                        TrustError(format!(
                            "cannot read the client key `{}`: {e} (expected a PEM private key)",
                            key_path.display()
                        ))
                    })?;
                    self.identity = Some(Arc::new((chain, key)));
                }
                "key" if !path.with_extension("cert").is_file() => {
                    return Err(TrustError(format!(
                        "client key `{}` has no certificate: put it beside as `{}`",
                        path.display(),
                        path.with_extension("cert").display()
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, TrustError> {
        install_provider();
        let builder = rustls::ClientConfig::builder();
        let builder = if self.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in system_roots() {
                // A system certificate rustls cannot parse is skipped, as OpenSSL skips it.
                let _ = roots.add(cert.clone());
            }
            for cert in &self.extra_roots {
                roots.add(cert.clone()).map_err(|e| {
                    TrustError(format!(
                        "a CA certificate in `{}` is not usable: {e}",
                        self.certs_dir
                            .as_deref()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default()
                    ))
                })?;
            }
            builder.with_root_certificates(roots)
        };
        match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.0.clone(), identity.1.clone_key())
                .map_err(|e| {
                    TrustError(format!(
                        "the client certificate in `{}` does not match its key: {e}",
                        self.certs_dir
                            .as_deref()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default()
                    ))
                }),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The certs.d directories for `host`, in the order they are looked up.
pub fn certs_d_candidates(host: &str) -> Vec<PathBuf> {
    // A host name is a single path component; anything else is no directory of ours.
    if host.is_empty() || host.contains('/') || host == "." || host == ".." {
        return Vec::new();
    }
    let prefix = std::env::var_os(CERTS_D_PREFIX_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(
            PathBuf::from(home)
                .join(".config/containers/certs.d")
                .join(host),
        );
    }
    dirs.push(prefix.join("etc/containers/certs.d").join(host));
    dirs.push(prefix.join("etc/docker/certs.d").join(host));
    dirs
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TrustError(format!("cannot read `{}`: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| {
        TrustError(format!(
            "`{}` is not a PEM certificate file: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(TrustError(format!(
            "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The system store, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set; read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "a trusted certificate could not be loaded");
        }
        loaded.certs
    })
}

fn install_provider() {
    // reqwest is built without a default crypto provider (ring is smaller to build than
    // aws-lc); installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The verifier of an insecure registry: every certificate is accepted, signatures are still
/// checked (so the handshake itself is sound).
#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How redirects are handled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Not followed (the registry client follows them itself, to drop credentials).
    Manual,
    /// Followed up to 10 times, never from HTTPS to HTTP.
    Follow,
}

/// How long a client waits.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// To connect (TCP and TLS).
    pub connect: Duration,
    /// Without a byte arriving (async clients) or for the whole request (blocking clients).
    pub idle: Duration,
}

fn redirect_policy(redirects: Redirects) -> reqwest::redirect::Policy {
    match redirects {
        Redirects::Manual => reqwest::redirect::Policy::none(),
        Redirects::Follow => reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                let to = attempt.url().to_string();
                attempt.error(DowngradeRefused(to))
            } else if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else {
                attempt.follow()
            }
        }),
    }
}

/// A redirect from HTTPS to plain HTTP, refused.
#[derive(Debug, thiserror::Error)]
#[error("refused a redirect from HTTPS to plain HTTP (`{0}`)")]
pub struct DowngradeRefused(pub String);

/// An async client with `trust`.
pub fn async_client(
    trust: &Trust,
    redirects: Redirects,
    timeouts: Timeouts,
) -> Result<reqwest::Client, TrustError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(trust.rustls_config()?)
        .redirect(redirect_policy(redirects))
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.idle)
        .build()
        .map_err(|e| TrustError(format!("cannot create the HTTP client: {e}")))
}

/// A blocking client with `trust` that follows redirects (never to plain HTTP from HTTPS).
pub fn blocking_client(
    trust: &Trust,
    timeouts: Timeouts,
) -> Result<reqwest::blocking::Client, TrustError> {
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(trust.rustls_config()?)
        .redirect(redirect_policy(Redirects::Follow))
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.idle)
        .build()
        .map_err(|e| TrustError(format!("cannot create the HTTP client: {e}")))
}

/// What kind of transport failure happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The server's certificate is not signed by a trusted CA.
    UnknownCa,
    /// The certificate does not name the host; the names it holds.
    NameMismatch(Vec<String>),
    /// The certificate expired or is not yet valid.
    Expired,
    /// Another certificate problem.
    BadCertificate,
    /// The server asked for a client certificate and got none it accepts.
    ClientCertificateRequired,
    /// The port answered, but not with TLS (a plain-HTTP server).
    NotTls,
    /// The host name does not resolve.
    Dns,
    /// Nothing listens on the port.
    Refused,
    /// No answer in time.
    Timeout,
    /// A redirect tried to leave HTTPS.
    Downgrade,
    /// Anything else (reset, broken body).
    Other,
}

impl FailureKind {
    /// Whether trying again may help (certificate and name problems never go away by waiting).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FailureKind::Refused | FailureKind::Timeout | FailureKind::Other
        )
    }
}

/// A transport error, classified: what happened in words, and its kind.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The kind, for choosing a fix.
    pub kind: FailureKind,
    /// The cause in words (without the URL: callers name it).
    pub detail: String,
}

/// Classifies `error` by walking its causes.
pub fn classify(error: &reqwest::Error) -> Failure {
    // reqwest's own message names the URL, which may carry credentials: its kind in words
    // stands in until a cause says more.
    let mut innermost = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_decode() {
        "the response could not be decoded"
    } else if error.is_redirect() {
        "redirect failed"
    } else {
        "request failed"
    }
    .to_owned();
    let mut kind = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if kind.is_none() {
            kind = classify_cause(cause);
        }
        let line = cause.to_string();
        if !line.is_empty() {
            innermost = line;
        }
        source = cause.source();
    }
    let kind = kind.unwrap_or(if error.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Other
    });
    let detail = match &kind {
        FailureKind::UnknownCa => {
            "the server's certificate is signed by an unknown certificate authority".to_owned()
        }
        FailureKind::NameMismatch(names) if names.is_empty() => {
            "the server's certificate is not valid for this host name".to_owned()
        }
        FailureKind::NameMismatch(names) => format!(
            "the server's certificate is not valid for this host name; it holds {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FailureKind::Expired => {
            "the server's certificate has expired or is not yet valid".to_owned()
        }
        FailureKind::BadCertificate => format!("the server's certificate was refused: {innermost}"),
        FailureKind::ClientCertificateRequired => {
            "the server requires a client certificate (mutual TLS) and refused the handshake"
                .to_owned()
        }
        FailureKind::NotTls => "the server does not speak TLS on this port".to_owned(),
        FailureKind::Dns => "the host name cannot be resolved".to_owned(),
        FailureKind::Refused => "connection refused: nothing listens on that port".to_owned(),
        FailureKind::Timeout => "no answer in time".to_owned(),
        FailureKind::Downgrade => innermost.clone(),
        FailureKind::Other => innermost.clone(),
    };
    Failure { kind, detail }
}

fn classify_cause(cause: &(dyn std::error::Error + 'static)) -> Option<FailureKind> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(classify_tls(tls));
    }
    if cause.downcast_ref::<DowngradeRefused>().is_some() {
        return Some(FailureKind::Downgrade);
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>()
        && let Some(kind) = classify_io(io)
    {
        return Some(kind);
    }
    let text = cause.to_string();
    if text.starts_with("dns error") || text.contains("failed to lookup address information") {
        return Some(FailureKind::Dns);
    }
    None
}

fn classify_io(io: &std::io::Error) -> Option<FailureKind> {
    // tokio-rustls wraps rustls's error in an io::Error (and the connector wraps that in
    // another); `source` skips both, so they are opened here.
    if let Some(inner) = io.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(classify_tls(tls));
        }
        if let Some(kind) = inner.downcast_ref::<std::io::Error>().and_then(classify_io) {
            return Some(kind);
        }
    }
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => Some(FailureKind::Refused),
        std::io::ErrorKind::TimedOut => Some(FailureKind::Timeout),
        // The port closed the connection during the TLS handshake: what a plain-HTTP server
        // that does not answer garbage does.
        std::io::ErrorKind::UnexpectedEof => Some(FailureKind::NotTls),
        _ => None,
    }
}

/// `registry.example` from rustls's `DnsName("registry.example")` (names are shown as the
/// user wrote them in the certificate request).
fn bare_name(presented: &str) -> String {
    match (presented.find("(\""), presented.rfind("\")")) {
        (Some(start), Some(end)) if start + 2 <= end => presented[start + 2..end].to_owned(),
        _ => presented.to_owned(),
    }
}

fn classify_tls(error: &rustls::Error) -> FailureKind {
    use rustls::AlertDescription;
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => FailureKind::UnknownCa,
            CertificateError::NotValidForName => FailureKind::NameMismatch(Vec::new()),
            CertificateError::NotValidForNameContext { presented, .. } => {
                FailureKind::NameMismatch(presented.iter().map(|n| bare_name(n)).collect())
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => FailureKind::Expired,
            _ => FailureKind::BadCertificate,
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown,
        ) => FailureKind::ClientCertificateRequired,
        rustls::Error::InvalidMessage(_) => FailureKind::NotTls,
        _ => FailureKind::Other,
    }
}

/// Reports one retry as one line on standard error:
/// `retrying in 1.5 s (attempt 2 of 5): 503 from https://...`.
pub fn report_retry(delay: Duration, next_attempt: u32, attempts: u32, what: &str) {
    eprintln!(
        "retrying in {:.1} s (attempt {next_attempt} of {attempts}): {what}",
        delay.as_secs_f64()
    );
}

/// The hint for `failure` of a request to `host`; `trust` says what was configured.
pub fn hint(failure: &Failure, host: &str, trust: Option<&Trust>) -> Option<String> {
    let dir = trust
        .and_then(|t| t.ca_hint_dir.clone())
        .map(|d| d.display().to_string());
    match &failure.kind {
        FailureKind::UnknownCa => Some(match dir {
            Some(dir) => format!(
                "trust the registry's CA: put its certificate in `{dir}/ca.crt` (or pass --cert-dir DIR, or set SSL_CERT_FILE)"
            ),
            None => "trust the server's CA: add its certificate to the system store or set SSL_CERT_FILE to a file holding it".to_owned(),
        }),
        FailureKind::NameMismatch(_) => Some(format!(
            "use a name the certificate holds instead of `{host}`, or reissue the certificate for `{host}`"
        )),
        FailureKind::Expired => Some("renew the server's certificate, or check this machine's clock".to_owned()),
        FailureKind::BadCertificate => None,
        FailureKind::ClientCertificateRequired => Some(match (trust, dir) {
            (Some(t), Some(dir)) if t.has_client_certificate() => format!(
                "the registry refused the client certificate in `{dir}`; check it is signed by a CA the registry accepts"
            ),
            (_, Some(dir)) => format!(
                "no client certificate for `{host}`: put `client.cert` and `client.key` in `{dir}` (or pass --cert-dir DIR)"
            ),
            _ => "the server requires a client certificate".to_owned(),
        }),
        FailureKind::NotTls => Some(format!(
            "`{host}` speaks plain HTTP: pass --insecure-registry {host} (or --tls-verify=false) to allow it"
        )),
        FailureKind::Dns => Some(format!("check the spelling of `{host}` and this machine's DNS settings")),
        FailureKind::Refused => Some(format!("is the server at `{host}` running? check the host and port")),
        FailureKind::Timeout => Some(format!("`{host}` did not answer; check the network, a proxy (HTTPS_PROXY) or a firewall")),
        FailureKind::Downgrade | FailureKind::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_is_looked_up_in_the_documented_order() {
        let dirs = certs_d_candidates("reg.example:5000");
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let n = shown.len();
        assert!(n >= 2, "{shown:?}");
        assert!(shown[n - 2].ends_with("etc/containers/certs.d/reg.example:5000"));
        assert!(shown[n - 1].ends_with("etc/docker/certs.d/reg.example:5000"));
        assert!(certs_d_candidates("../x").is_empty());
        assert!(certs_d_candidates("..").is_empty());
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(
            bare_name("DnsName(\"registry.example\")"),
            "registry.example"
        );
        assert_eq!(bare_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn a_client_key_without_its_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.key"), "x").unwrap();
        let error = Trust::for_registry("h", Some(dir.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("client.key") && error.contains("client.cert"),
            "{error}"
        );
    }
}
