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
//! kiln's own style instead of a library's log line. One [`RetryPolicy`] says what is retried,
//! how long to wait and how `Retry-After` is read; one [`DownloadCache`] keeps what the
//! fetchers downloaded, in a kiln store. A redirect never goes from HTTPS to HTTP.

mod cache;
mod failure;
mod retry;
mod trust;

pub use cache::DownloadCache;
pub(crate) use cache::lock_old_dir;
pub use failure::{Failure, FailureKind, classify, hint, report_retry};
pub use retry::{Decision, Jitter, RetryPolicy, get_blocking, retry_after, retryable_status};
pub use trust::{CERTS_D_PREFIX_ENV, Trust, TrustError, certs_d_candidates};

use std::time::Duration;

/// The user agent every client sends.
const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));

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
