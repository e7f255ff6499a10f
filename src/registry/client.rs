//! One registry session: the HTTP client, authentication state, retries and error mapping.
//!
//! [`Session::send`] is the single door to the network. It attaches the current credential
//! (Basic or a Bearer token for the session's scopes) only to URLs on the registry's own origin,
//! follows redirects of GET/HEAD by hand so `Authorization` never reaches another host, answers
//! a 401 by running the challenge (token request with every scope the operation needs) and
//! trying once more, and retries transport errors, 408, 429 (honouring `Retry-After`) and 5xx
//! with exponential backoff and jitter, one line on standard error per retry. Certificate and
//! name-resolution failures are not retried: waiting does not fix them. Request bodies are
//! described by [`Body`], which can be rebuilt for each attempt: file bodies are reopened from
//! the store.
//!
//! The HTTP client comes from [`crate::http`] with the registry's own trust (its certs.d
//! directory). Loopback and insecure registries are tried over HTTPS first and switch to plain
//! HTTP when the port does not speak TLS (remembered by the [`RegistryOptions`] in use); a redirect from HTTPS to
//! plain HTTP is refused.
//!
//! Errors name the URL and status and carry the registry's own error code and message; they
//! never contain a credential (tokens and passwords live only in headers marked sensitive).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::{self, Challenge, Credential, Token};
use super::reference::{DOCKER_HUB, Reference, Transport};
use super::{RegistryError, RegistryOptions, Reporter, RetryPolicy};
use crate::digest::Digest;
use crate::http::{self, Decision, FailureKind, Trust};

mod authenticate;
mod response;

/// Redirects followed for one request before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest manifest or index kiln reads (registries SHOULD accept 4 MB; regclient pushes at most
/// 4 MiB).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Read buffer when streaming a file body.
const FILE_CHUNK: usize = 256 * 1024;

/// Media types a manifest GET accepts, index first (so multi-platform images resolve).
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A request body that can be rebuilt for every attempt.
#[derive(Clone)]
pub(crate) enum Body {
    /// No body (`Content-Length: 0` is sent on POST/PUT/PATCH).
    Empty,
    /// Small in-memory bytes (manifests).
    Bytes(Arc<[u8]>),
    /// `len` bytes of `path` from `offset`, streamed; progress is reported against `digest`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        digest: Digest,
    },
}

/// How a request is retried.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retried in place on transport errors, 408, 429 and 5xx.
    Idempotent,
    /// Sent once, except after a 429 (upload steps: the push ladder decides what to do after
    /// any other failure).
    Once,
}

#[derive(Default)]
struct AuthState {
    /// The challenge the registry answered with, once known.
    challenge: Option<Challenge>,
    /// Tokens by scope set (scopes joined with spaces).
    tokens: HashMap<String, Token>,
}

/// A connection to one registry for one operation (a pull, a push to one repository).
pub(crate) struct Session {
    http: reqwest::Client,
    /// `https://127.0.0.1:5000/` or `https://registry-1.docker.io/` (always HTTPS: a switch to
    /// plain HTTP is applied to each URL, see [`Session::effective`]).
    base: Url,
    /// `host[:port]` of `base`.
    api_host: String,
    /// HTTPS only, or HTTPS then plain HTTP.
    transport: Transport,
    /// What the client trusts (for hints naming the certs.d directory).
    trust: Trust,
    /// The registry's name as in references (`docker.io`), for credentials and messages.
    registry: String,
    credential: Option<Credential>,
    /// Scopes the operation needs, push scopes first.
    scopes: Vec<String>,
    auth: tokio::sync::Mutex<AuthState>,
    retry: RetryPolicy,
    /// Hosts of this session's options found to speak plain HTTP.
    plain_http_hosts: PlainHttpHosts,
    pub(crate) reporter: Arc<dyn Reporter>,
}

/// A transport error in words (for callers that only report it).
pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    http::classify(e).detail
}

/// API hosts found to speak plain HTTP, remembered by one [`RegistryOptions`] value (and its
/// clones) so each operation does not knock on the TLS port again. Not process-wide: a port
/// that spoke plain HTTP for one client may speak TLS for another (tests reuse ports).
#[derive(Clone, Default)]
pub(crate) struct PlainHttpHosts(Arc<Mutex<HashSet<String>>>);

impl PlainHttpHosts {
    fn contains(&self, api_host: &str) -> bool {
        self.0
            .lock()
            .map(|hosts| hosts.contains(api_host))
            .unwrap_or(false)
    }

    fn insert(&self, api_host: &str) {
        if let Ok(mut hosts) = self.0.lock() {
            hosts.insert(api_host.to_owned());
        }
    }
}

fn http_client(trust: &Trust, registry: &str) -> Result<reqwest::Client, RegistryError> {
    http::async_client(
        trust,
        http::Redirects::Manual,
        http::Timeouts {
            // A connection that makes no progress for this long is dead; retries take over.
            connect: Duration::from_secs(30),
            idle: Duration::from_secs(120),
        },
    )
    .map_err(|e| RegistryError::Usage(format!("registry `{registry}`: {e}")))
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) as one line, or a short
/// excerpt of a non-JSON body.
fn error_detail(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(body) {
        let lines: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.code.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
                .trim()
                .to_owned()
            })
            .collect();
        if !lines.is_empty() {
            return Some(lines.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        None
    } else {
        Some(text.chars().take(200).collect())
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Session {
    /// A session for `reference`'s registry needing `scopes` (e.g.
    /// `repository:acme/app:pull,push`).
    pub(crate) fn new(
        reference: &Reference,
        scopes: Vec<String>,
        options: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        Session::for_registry(
            reference.registry(),
            reference.api_host(),
            options.transport(reference),
            scopes,
            options,
        )
    }

    fn for_registry(
        registry: &str,
        api_host: &str,
        transport: Transport,
        scopes: Vec<String>,
        options: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        let base_text = format!("https://{api_host}/");
        let base = Url::parse(&base_text).map_err(|e| {
            RegistryError::Usage(format!(
                "registry `{registry}` does not make a valid URL `{base_text}`: {e}"
            ))
        })?;
        let trust = Trust::for_registry(registry, options.cert_dir.as_deref())
            .map_err(|e| RegistryError::Usage(format!("registry `{registry}`: {e}")))?
            .skip_verify(transport == Transport::Insecure);
        Ok(Session {
            http: http_client(&trust, registry)?,
            base,
            api_host: api_host.to_owned(),
            transport,
            trust,
            registry: registry.to_owned(),
            credential: auth::lookup(registry, options)?,
            scopes,
            auth: tokio::sync::Mutex::new(AuthState::default()),
            retry: options.retry.clone(),
            plain_http_hosts: options.plain_http_hosts.clone(),
            reporter: options.reporter.clone(),
        })
    }

    /// Checks that the configured credential for `registry` is accepted (for `login`).
    pub(crate) async fn verify_login(
        registry: &str,
        options: &RegistryOptions,
    ) -> Result<(), RegistryError> {
        let probe: Reference = format!("{registry}/kiln-login-probe").parse()?;
        let session = Session::for_registry(
            registry,
            probe.api_host(),
            options.transport(&probe),
            Vec::new(),
            options,
        )?;
        let url = session.url("v2/")?;
        session.get(&url, &[], &[200]).await?;
        Ok(())
    }

    /// Attempts per idempotent request (the retry policy's count).
    pub(crate) fn attempts(&self) -> u32 {
        self.retry.attempts()
    }

    /// The backoff before attempt `attempt + 1`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        self.retry.backoff(attempt)
    }

    /// `<base>/<path>` (path without the leading `/`).
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let url = self.base.join(path).map_err(|e| {
            RegistryError::Usage(format!("bad URL path `{path}` on `{}`: {e}", self.base))
        })?;
        Ok(self.effective(&url))
    }

    /// Whether this registry may be spoken to in plain HTTP when its port does not speak TLS.
    fn may_use_plain_http(&self) -> bool {
        self.transport != Transport::Https
    }

    /// `url` with the scheme this registry is spoken to in: plain HTTP once its port was found
    /// not to speak TLS.
    fn effective(&self, url: &Url) -> Url {
        let mut url = url.clone();
        if self.may_use_plain_http()
            && url.scheme() == "https"
            && url.origin() == self.base.origin()
            && self.plain_http_hosts.contains(&self.api_host)
        {
            // Infallible for an http(s) URL; on failure the URL stays HTTPS.
            let _ = url.set_scheme("http");
        }
        url
    }

    fn same_origin(&self, url: &Url) -> bool {
        if url.origin() == self.base.origin() {
            return true;
        }
        let mut plain = self.base.clone();
        self.may_use_plain_http()
            && plain.set_scheme("http").is_ok()
            && url.origin() == plain.origin()
    }

    /// Whether a failed HTTPS attempt on `url` should be repeated in plain HTTP: for a
    /// loopback registry when the port does not speak TLS; for an insecure registry also when
    /// the connection broke in another way during the handshake (certificate problems cannot
    /// happen there, and a refused client certificate is reported as such).
    fn falls_back_to_plain_http(&self, url: &Url, failure: &http::Failure) -> bool {
        if url.scheme() != "https" || url.origin() != self.base.origin() {
            return false;
        }
        match self.transport {
            Transport::Https => false,
            Transport::HttpsOrPlain => failure.kind == FailureKind::NotTls,
            Transport::Insecure => {
                matches!(failure.kind, FailureKind::NotTls | FailureKind::Other)
            }
        }
    }
    /// Builds the reqwest body for one attempt.
    async fn build_body(&self, body: &Body) -> Result<(reqwest::Body, u64), RegistryError> {
        match body {
            Body::Empty => Ok((reqwest::Body::from(Vec::new()), 0)),
            Body::Bytes(bytes) => Ok((reqwest::Body::from(bytes.to_vec()), bytes.len() as u64)),
            Body::File {
                path,
                offset,
                len,
                digest,
            } => {
                let io = |source| RegistryError::Io {
                    action: "read blob",
                    path: path.clone(),
                    source,
                };
                let mut file = tokio::fs::File::open(path).await.map_err(io)?;
                file.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(io)?;
                let reporter = self.reporter.clone();
                let digest = digest.clone();
                let stream =
                    tokio_util::io::ReaderStream::with_capacity(file.take(*len), FILE_CHUNK).map(
                        move |chunk| {
                            if let Ok(chunk) = &chunk {
                                reporter.blob_progress(&digest, chunk.len() as u64);
                            }
                            chunk
                        },
                    );
                Ok((reqwest::Body::wrap_stream(stream), *len))
            }
        }
    }

    /// One attempt: auth header on same-origin URLs, redirects of GET/HEAD followed by hand.
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, String)],
        body: &Body,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, RegistryError> {
        let mut url = self.effective(url);
        let mut method = method.clone();
        let mut tried_plain_http = false;
        let mut redirects = 0;
        while redirects <= MAX_REDIRECTS {
            let mut request = self.http.request(method.clone(), url.clone());
            if self.same_origin(&url)
                && let Some(value) = self.authorization().await?
            {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            if !matches!(method, Method::GET | Method::HEAD | Method::DELETE) {
                let (body, len) = self.build_body(body).await?;
                request = request
                    .header(reqwest::header::CONTENT_LENGTH, len.to_string())
                    .body(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if !tried_plain_http && self.falls_back_to_plain_http(&url, &http::classify(&e))
                    {
                        tried_plain_http = true;
                        tracing::debug!(host = %self.api_host, "no TLS on this port; using plain HTTP");
                        self.plain_http_hosts.insert(&self.api_host);
                        url = self.effective(&url);
                        continue;
                    }
                    return Ok(Err(e));
                }
            };
            let follow =
                matches!(method, Method::GET | Method::HEAD) && response.status().is_redirection();
            if !follow {
                return Ok(Ok(response));
            }
            let Some(location) = header_str(response.headers(), "location") else {
                return Ok(Ok(response));
            };
            let next = url.join(&location).map_err(|e| RegistryError::Status {
                method: method.to_string(),
                url: url.to_string(),
                status: response.status().as_u16(),
                detail: Some(format!("redirect to an invalid Location `{location}`: {e}")),
                hint: None,
            })?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(RegistryError::Connect {
                    action: method.to_string(),
                    url: url.to_string(),
                    detail: format!("refused a redirect from HTTPS to plain HTTP (`{next}`)"),
                    hint: Some("a redirect never lowers the protection of a request; fix the registry's or its storage's redirect URL".to_owned()),
                });
            }
            url = next;
            redirects += 1;
            if response.status() == StatusCode::SEE_OTHER {
                method = Method::GET;
            }
        }
        Err(RegistryError::Status {
            method: method.to_string(),
            url: url.to_string(),
            status: 310,
            detail: Some(format!("more than {MAX_REDIRECTS} redirects")),
            hint: None,
        })
    }

    /// Sends a request with authentication, redirects and retries; returns the final response
    /// whatever its status (except 401 after re-authentication and exhausted 429s, which are
    /// errors). Callers check the status with [`Session::expect`].
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, String)],
        body: Body,
        retry: Retry,
    ) -> Result<reqwest::Response, RegistryError> {
        let attempts = match retry {
            Retry::Idempotent => self.retry.attempts(),
            Retry::Once => 1,
        };
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let response = match self.send_once(&method, &url, headers, &body).await? {
                Ok(response) => response,
                Err(e) => {
                    let failure = http::classify(&e);
                    let shown = self.effective(&url);
                    if let Decision::Retry(delay) = self
                        .retry
                        .after_transport_failure(attempt, attempts, &failure)
                    {
                        http::report_retry(
                            delay,
                            attempt + 1,
                            attempts,
                            &format!("{shown}: {}", failure.detail),
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(RegistryError::Connect {
                        action: method.to_string(),
                        url: shown.to_string(),
                        hint: http::hint(&failure, &self.api_host, Some(&self.trust)),
                        detail: failure.detail,
                    });
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                if !reauthenticated {
                    reauthenticated = true;
                    let challenge = header_str(response.headers(), "www-authenticate");
                    self.authenticate(challenge.as_deref(), &url, &method)
                        .await?;
                    continue;
                }
                let body = response.bytes().await.unwrap_or_default();
                return Err(self.unauthorized(&method, &url, 401, error_detail(&body)));
            }
            // A 429 refused the request before doing anything with it, so even a request sent
            // `Retry::Once` (an upload step) is safely sent again after the `Retry-After`.
            let attempts = if status == StatusCode::TOO_MANY_REQUESTS {
                self.retry.attempts()
            } else {
                attempts
            };
            match self
                .retry
                .after_status(attempt, attempts, status, response.headers())
            {
                Decision::Retry(delay) => {
                    http::report_retry(
                        delay,
                        attempt + 1,
                        attempts,
                        &format!("{} from {}", status.as_u16(), self.effective(&url)),
                    );
                    tokio::time::sleep(delay).await;
                }
                Decision::Throttled => return Err(self.rate_limited(&url, response.headers())),
                Decision::Stop => return Ok(response),
            }
        }
    }

    fn rate_limited(&self, url: &Url, headers: &HeaderMap) -> RegistryError {
        let limit = header_str(headers, "ratelimit-limit");
        let remaining = header_str(headers, "ratelimit-remaining");
        let hint = if self.registry == DOCKER_HUB {
            "Docker Hub limits anonymous pulls per IP; log in (`kiln login docker.io`) for a higher limit, or pin the base by digest so kiln reuses its cache".to_owned()
        } else {
            format!(
                "the registry `{}` is throttling requests; wait and retry, or log in",
                self.registry
            )
        };
        RegistryError::RateLimited {
            url: self.effective(url).to_string(),
            limit,
            remaining,
            hint,
        }
    }
}

/// `header` of `response` as a string.
pub(crate) fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    header_str(response.headers(), name)
}

#[cfg(test)]
mod tests;
