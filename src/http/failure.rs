//! Transport failures classified by cause, the fix that fits each, and the one-line report
//! of a retry.

use std::time::Duration;

use rustls::CertificateError;

use super::{DowngradeRefused, Trust};

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
    use std::io::IsTerminal as _;
    // On a terminal a progress line may be half drawn: start from a clean line.
    let clear = if std::io::stderr().is_terminal() {
        "\x1b[2K\r"
    } else {
        ""
    };
    eprintln!(
        "{clear}retrying in {:.1} s (attempt {next_attempt} of {attempts}): {what}",
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
    fn presented_names_are_shown_bare() {
        assert_eq!(
            bare_name("DnsName(\"registry.example\")"),
            "registry.example"
        );
        assert_eq!(bare_name("127.0.0.1"), "127.0.0.1");
    }
}
