//! What a client trusts: the system store (or `SSL_CERT_FILE`/`SSL_CERT_DIR`), a registry's
//! certs.d directory (`*.crt` CA certificates, `NAME.cert` + `NAME.key` client certificate), or
//! nothing at all for an insecure registry; turned into a rustls configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Environment variable naming a directory put in front of `/etc/containers/certs.d` and
/// `/etc/docker/certs.d` (so tests and chroots can provide them without writing to `/etc`).
pub const CERTS_D_PREFIX_ENV: &str = "KILN_CERTS_D_PREFIX";

/// A client could not be built from the trust configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(pub(super) String);

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
    pub(super) ca_hint_dir: Option<PathBuf>,
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

    pub(super) fn rustls_config(&self) -> Result<rustls::ClientConfig, TrustError> {
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
