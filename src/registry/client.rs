//! One registry session: the HTTP client, authentication state, retries and error mapping.
//!
//! [`Session::send`] is the single door to the network. It attaches the current credential
//! (Basic or a Bearer token for the session's scopes) only to URLs on the registry's own origin,
//! follows redirects of GET/HEAD by hand so `Authorization` never reaches another host, answers
//! a 401 by running the challenge (token request with every scope the operation needs) and
//! trying once more, and retries transport errors, 408, 429 (honouring `Retry-After`) and 5xx
//! with exponential backoff and jitter. Request bodies are described by [`Body`], which can be
//! rebuilt for each attempt: file bodies are reopened from the store.
//!
//! Errors name the URL and status and carry the registry's own error code and message; they
//! never contain a credential (tokens and passwords live only in headers marked sensitive).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::{self, Challenge, Credential, Token};
use super::reference::{DOCKER_HUB, Reference};
use super::{RegistryError, RegistryOptions, Reporter, RetryPolicy};
use crate::digest::Digest;

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
    /// `http://127.0.0.1:5000` or `https://registry-1.docker.io`.
    base: Url,
    /// The registry's name as in references (`docker.io`), for credentials and messages.
    registry: String,
    credential: Option<Credential>,
    /// Scopes the operation needs, push scopes first.
    scopes: Vec<String>,
    auth: tokio::sync::Mutex<AuthState>,
    retry: RetryPolicy,
    pub(crate) reporter: Arc<dyn Reporter>,
}

/// A transport error described with its causes (reqwest's top-level message alone says little).
pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    let mut text = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // The URL is already part of kiln's message; keep reqwest's kind only.
        if self.is_connect() {
            "connection failed".to_owned()
        } else if self.is_timeout() {
            "timed out".to_owned()
        } else if self.is_body() || self.is_request() {
            "request failed".to_owned()
        } else if self.is_decode() {
            "response could not be decoded".to_owned()
        } else {
            "network error".to_owned()
        }
    }
}

fn http_client() -> Result<reqwest::Client, RegistryError> {
    // reqwest is built without a default crypto provider (ring is smaller to build than aws-lc);
    // installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        // A connection that makes no progress for this long is dead; retries take over.
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| RegistryError::Connect {
            action: "create an HTTP client for".to_owned(),
            url: "(all registries)".to_owned(),
            detail: describe_transport(&e),
            hint: None,
        })
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

fn jitter(delay: Duration) -> Duration {
    // +-25% from the clock's nanoseconds: enough to spread retries without a RNG dependency.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    delay.mul_f64(factor)
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
            reference.scheme(&options.insecure),
            scopes,
            options,
        )
    }

    fn for_registry(
        registry: &str,
        api_host: &str,
        scheme: super::reference::Scheme,
        scopes: Vec<String>,
        options: &RegistryOptions,
    ) -> Result<Session, RegistryError> {
        let base_text = format!("{}://{api_host}/", scheme.as_str());
        let base = Url::parse(&base_text).map_err(|e| {
            RegistryError::Usage(format!(
                "registry `{registry}` does not make a valid URL `{base_text}`: {e}"
            ))
        })?;
        Ok(Session {
            http: http_client()?,
            base,
            registry: registry.to_owned(),
            credential: auth::lookup(registry, options)?,
            scopes,
            auth: tokio::sync::Mutex::new(AuthState::default()),
            retry: options.retry.clone(),
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
            probe.scheme(&options.insecure),
            Vec::new(),
            options,
        )?;
        let url = session.url("v2/")?;
        session.get(&url, &[], &[200]).await?;
        Ok(())
    }

    /// Attempts per idempotent request (the retry policy's count).
    pub(crate) fn attempts(&self) -> u32 {
        self.retry.attempts.max(1)
    }

    /// The backoff before attempt `attempt + 1`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        self.backoff(attempt)
    }

    /// `<base>/<path>` (path without the leading `/`).
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| {
            RegistryError::Usage(format!("bad URL path `{path}` on `{}`: {e}", self.base))
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    fn scope_key(&self, extra: Option<&str>) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        if let Some(extra) = extra
            && !scopes.iter().any(|s| s == extra)
        {
            scopes.push(extra.to_owned());
        }
        scopes
    }

    /// The Authorization header for a request to the registry's own origin, if any.
    async fn authorization(&self) -> Result<Option<HeaderValue>, RegistryError> {
        let mut state = self.auth.lock().await;
        let value = match state.challenge.clone() {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.credential.as_ref().and_then(auth::basic_header) {
                Some(header) => header,
                None => return Ok(None),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            }) => {
                let scopes = self.scope_key(scope.as_deref());
                let key = scopes.join(" ");
                let fresh = state.tokens.get(&key).filter(|t| t.is_fresh()).cloned();
                let token = match fresh {
                    Some(token) => token,
                    None => {
                        let token = auth::fetch_token(
                            &self.http,
                            &realm,
                            service.as_deref(),
                            &scopes,
                            self.credential.as_ref(),
                        )
                        .await?;
                        state.tokens.insert(key, token.clone());
                        token
                    }
                };
                format!("Bearer {}", token.value)
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| RegistryError::Credentials {
            action: "use",
            path: PathBuf::from(self.registry.clone()),
            detail: "the credential contains characters HTTP headers cannot carry".to_owned(),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Records the registry's challenge and drops cached tokens (they were refused).
    async fn authenticate(
        &self,
        header: Option<&str>,
        url: &Url,
        method: &Method,
    ) -> Result<(), RegistryError> {
        let challenge = header.and_then(auth::parse_challenge);
        let Some(challenge) = challenge else {
            return Err(self.unauthorized(method, url, 401, None));
        };
        if challenge == Challenge::Basic
            && !matches!(self.credential, Some(Credential::Basic { .. }))
        {
            return Err(self.unauthorized(method, url, 401, None));
        }
        let mut state = self.auth.lock().await;
        state.tokens.clear();
        state.challenge = Some(challenge);
        Ok(())
    }

    fn unauthorized(
        &self,
        method: &Method,
        url: &Url,
        status: u16,
        detail: Option<String>,
    ) -> RegistryError {
        let hint = match &self.credential {
            None => format!(
                "no credentials for `{0}`: run `kiln login {0}` or set {1}=user:password",
                self.registry,
                auth::env_var_name(&self.registry)
            ),
            Some(_) => format!(
                "the credentials for `{0}` were refused or lack permission; check them (`kiln login {0}`)",
                self.registry
            ),
        };
        RegistryError::Unauthorized {
            method: method.to_string(),
            url: url.to_string(),
            status,
            detail,
            hint,
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
        let mut url = url.clone();
        let mut method = method.clone();
        for _ in 0..=MAX_REDIRECTS {
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
                Err(e) => return Ok(Err(e)),
            };
            let follow =
                matches!(method, Method::GET | Method::HEAD) && response.status().is_redirection();
            if !follow {
                return Ok(Ok(response));
            }
            let Some(location) = header_str(response.headers(), "location") else {
                return Ok(Ok(response));
            };
            url = url.join(&location).map_err(|e| RegistryError::Status {
                method: method.to_string(),
                url: url.to_string(),
                status: response.status().as_u16(),
                detail: Some(format!("redirect to an invalid Location `{location}`: {e}")),
                hint: None,
            })?;
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
            Retry::Idempotent => self.retry.attempts.max(1),
            Retry::Once => 1,
        };
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let response = match self.send_once(&method, &url, headers, &body).await? {
                Ok(response) => response,
                Err(e) => {
                    if attempt < attempts {
                        let delay = self.backoff(attempt);
                        tracing::warn!(%url, %method, error = %describe_transport(&e), ?delay, "registry request failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(RegistryError::Connect {
                        action: method.to_string(),
                        url: url.to_string(),
                        detail: describe_transport(&e),
                        hint: (e.is_connect()).then(|| format!(
                            "is the registry `{}` running and reachable? (use --insecure-registry for a plain-HTTP registry)",
                            self.registry
                        )),
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
            let retryable = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504);
            // A 429 refused the request before doing anything with it, so even a request sent
            // `Retry::Once` (an upload step) is safely sent again after the `Retry-After`.
            let attempts = if status == StatusCode::TOO_MANY_REQUESTS {
                self.retry.attempts.max(1)
            } else {
                attempts
            };
            if retryable {
                let retry_after = header_str(response.headers(), "retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let too_long = retry_after.is_some_and(|d| d > self.retry.max_delay);
                if status == StatusCode::TOO_MANY_REQUESTS && (attempt >= attempts || too_long) {
                    return Err(self.rate_limited(&url, response.headers()));
                }
                if attempt < attempts {
                    let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(%url, %method, status = status.as_u16(), ?delay, "registry answered with a retryable status; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        jitter(exp.min(self.retry.max_delay))
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
            url: url.to_string(),
            limit,
            remaining,
            hint,
        }
    }

    /// Returns the response when its status is one of `ok`, else the registry's error.
    /// An idempotent `GET url` with `headers`, whose status must be one of `ok`.
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        ok: &[u16],
    ) -> Result<reqwest::Response, RegistryError> {
        let response = self
            .send(
                Method::GET,
                url.clone(),
                headers,
                Body::Empty,
                Retry::Idempotent,
            )
            .await?;
        self.expect(response, ok, "GET", url).await
    }

    pub(crate) async fn expect(
        &self,
        response: reqwest::Response,
        ok: &[u16],
        method: &str,
        url: &Url,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = response.status().as_u16();
        if ok.contains(&status) {
            return Ok(response);
        }
        Err(self.status_error(response, method, url).await)
    }

    /// The error for an unexpected response.
    pub(crate) async fn status_error(
        &self,
        response: reqwest::Response,
        method: &str,
        url: &Url,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let detail = error_detail(&body);
        if status == 403 {
            return self.unauthorized(
                &Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
                url,
                403,
                detail,
            );
        }
        let hint = match status {
            404 if method == "GET" || method == "HEAD" => Some(format!(
                "check the repository name and tag, and that you may read `{}`",
                url.path()
            )),
            413 => Some("the registry refused the request body as too large".to_owned()),
            _ => None,
        };
        RegistryError::Status {
            method: method.to_owned(),
            url: url.to_string(),
            status,
            detail,
            hint,
        }
    }

    /// Reads a response body of at most `limit` bytes (a manifest).
    pub(crate) async fn read_limited(
        &self,
        response: reqwest::Response,
        url: &Url,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(len) = response.content_length()
            && len > limit
        {
            return Err(RegistryError::ManifestTooLarge {
                url: url.to_string(),
                size: len,
                limit,
            });
        }
        let mut out = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Connect {
                action: "read".to_owned(),
                url: url.to_string(),
                detail: describe_transport(&e),
                hint: None,
            })?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(RegistryError::ManifestTooLarge {
                    url: url.to_string(),
                    size: out.len() as u64,
                    limit,
                });
            }
        }
        Ok(out)
    }
}

/// `header` of `response` as a string.
pub(crate) fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    header_str(response.headers(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            error_detail(body).as_deref(),
            Some("MANIFEST_UNKNOWN manifest unknown")
        );
        assert_eq!(
            error_detail(b"404 page not found\n").as_deref(),
            Some("404 page not found")
        );
        assert_eq!(error_detail(b""), None);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let d = jitter(Duration::from_millis(1000));
        assert!(
            d >= Duration::from_millis(750) && d <= Duration::from_millis(1250),
            "{d:?}"
        );
    }
}
