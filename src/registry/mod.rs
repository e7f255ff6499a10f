//! The OCI distribution protocol: references, authentication, pulling base images into the
//! store and pushing images from it.
//!
//! kiln's own client on reqwest + tokio. The rest of kiln is synchronous, so the entry points
//! here ([`pull`], [`push`], [`push_manifest`], [`login`]) are plain functions that block on a
//! tokio runtime owned by this module (created on first use, two worker threads).
//!
//! - [`reference`]: `[registry/]name[:tag][@digest]` with Docker's normalization.
//! - [`auth`]: the `/v2/` challenge, Bearer tokens (multi-scope), Basic, the credential chain
//!   (`KILN_REGISTRY_AUTH_<HOST>`, docker `config.json` with helpers, podman `auth.json`,
//!   `GITHUB_TOKEN` for ghcr.io).
//! - [`login`]: a credential checked against the registry, then stored in `config.json`.
//! - `client`: one registry session: retries with backoff and jitter, re-authentication on a
//!   401, redirects followed without credentials, registry error bodies turned into
//!   [`RegistryError`]s that name the URL and status.
//! - [`pull`]: manifest or index -> platform -> config and layers streamed into the store, with a
//!   reference cache so digest-pinned bases and `offline` need no network.
//! - [`push`]: per blob HEAD -> mount -> upload (monolithic, chunked fallback), then the config,
//!   then the manifest to every tag.
//!
//! Data enters as a [`Reference`] plus a [`crate::store::Store`], and leaves as blobs in the
//! store ([`PulledImage`]) or in the registry ([`PushResult`]). Secrets never appear in logs,
//! errors or `Debug` output.

pub mod auth;
mod client;
pub mod login;
pub mod pull;
pub mod push;
pub mod reference;
pub mod remap;
pub mod repository;
pub mod tags;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The retry policy of registry sessions (kiln's one HTTP retry policy).
pub use crate::http::RetryPolicy;
pub use auth::Credential;
pub use login::login;
pub use pull::{
    PulledImage, cached_digest, fetch_blob, fetch_raw_manifest, fetch_referrers, pull,
    supports_referrers,
};
pub use push::{PushResult, push, push_manifest};
pub use reference::{Reference, ReferenceError};
pub use remap::RegistryMap;
pub use repository::Repository;
pub use tags::{delete_manifest, list_tags};

use crate::digest::Digest;

/// Why a registry operation failed. Every variant names the registry URL or the reference;
/// none carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry could not be reached (connection refused, DNS, TLS, reset) after retries.
    #[error("failed to {action} `{url}`: {detail}{}", hint_suffix(hint))]
    Connect {
        /// What kiln was doing (`GET`, `PUT`, ...).
        action: String,
        /// The URL.
        url: String,
        /// The transport error, described.
        detail: String,
        /// A fix, when one is known.
        hint: Option<String>,
    },
    /// The registry answered with an unexpected status.
    #[error(
        "{method} `{url}` failed: HTTP {status}{}{}",
        registry_detail(detail),
        hint_suffix(hint)
    )]
    Status {
        /// The request method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error code and message, when it sent one.
        detail: Option<String>,
        /// A fix, when one is known.
        hint: Option<String>,
    },
    /// The registry refused the credentials (or kiln had none).
    #[error("{method} `{url}`: authentication failed (HTTP {status}){}{}", registry_detail(detail), hint_suffix(&Some(hint.clone())))]
    Unauthorized {
        /// The request method.
        method: String,
        /// The URL (a registry or token-server URL).
        url: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error code and message, when it sent one.
        detail: Option<String>,
        /// How to fix it.
        hint: String,
    },
    /// The registry kept answering 429.
    #[error(
        "`{url}`: rate limited (HTTP 429){}; {hint}",
        rate_detail(limit, remaining)
    )]
    RateLimited {
        /// The URL.
        url: String,
        /// The `ratelimit-limit` header, if sent.
        limit: Option<String>,
        /// The `ratelimit-remaining` header, if sent.
        remaining: Option<String>,
        /// How to fix it.
        hint: String,
    },
    /// A manifest is larger than kiln accepts.
    #[error("manifest `{url}` is larger than {limit} bytes ({size} bytes); refusing to read it")]
    ManifestTooLarge {
        /// The URL.
        url: String,
        /// Its size (as announced or as read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest, index or config could not be parsed.
    #[error("`{url}` is not a valid {what}: {detail}")]
    InvalidDocument {
        /// What it should have been (`image manifest`, `image index`, `image config`).
        what: String,
        /// Where it came from.
        url: String,
        /// The parse error or the missing field.
        detail: String,
    },
    /// Bytes from the registry did not hash to the digest that names them.
    #[error("digest mismatch for {what} from `{url}`: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// The URL.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A blob's size differs from its descriptor.
    #[error(
        "size mismatch for {what} from `{url}`: the descriptor says {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        /// The blob.
        what: String,
        /// The URL.
        url: String,
        /// Expected size.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// An image index has no manifest for the platform.
    #[error(
        "no manifest for platform {platform} in `{reference}`; available: {}",
        list_or_none(available)
    )]
    PlatformNotFound {
        /// The platform asked for.
        platform: String,
        /// The index's reference.
        reference: String,
        /// The platforms it lists.
        available: Vec<String>,
    },
    /// A media type kiln cannot use where it appeared.
    #[error("unsupported media type `{media_type}` for {what}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Where it appeared.
        what: String,
    },
    /// Offline mode, and the reference cache or store lacks something.
    #[error(
        "offline: {missing} for `{reference}` is not in the local cache; run once without --offline (or pin the base by digest after a pull)"
    )]
    Offline {
        /// The reference.
        reference: String,
        /// What is missing (`the manifest digest`, `blob sha256:...`).
        missing: String,
    },
    /// Credentials could not be read or stored.
    #[error("failed to {action} credentials in `{}`: {detail}", path.display())]
    Credentials {
        /// `read` or `store`.
        action: &'static str,
        /// The file or helper.
        path: PathBuf,
        /// What went wrong (never the secret).
        detail: String,
    },
    /// A local file operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The pulled image is inconsistent (diffIDs, platform, media types).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A push target or option is unusable.
    #[error("{0}")]
    Usage(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!("; {hint}"),
        None => String::new(),
    }
}

fn registry_detail(detail: &Option<String>) -> String {
    match detail {
        Some(detail) => format!(": {detail}"),
        None => String::new(),
    }
}

fn rate_detail(limit: &Option<String>, remaining: &Option<String>) -> String {
    match (limit, remaining) {
        (None, None) => String::new(),
        _ => format!(
            " (ratelimit-remaining: {}, ratelimit-limit: {})",
            remaining.as_deref().unwrap_or("?"),
            limit.as_deref().unwrap_or("?")
        ),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Progress events from pulls and pushes. Every method has a no-op default; implementations
/// must be cheap (they are called from the network tasks).
pub trait Reporter: Send + Sync {
    /// A blob transfer starts (`size` bytes).
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more bytes of `digest` went over the wire.
    fn blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    /// A transfer attempt failed and will be retried: forget the progress of `digest`.
    fn blob_rollback(&self, _digest: &Digest) {}
    /// A blob is done: `how` is `uploaded`, `exists`, `mounted`, `downloaded` or `cached`.
    fn blob_done(&self, _digest: &Digest, _how: &'static str) {}
    /// A manifest was pushed to `target` (`registry/repo:tag` or `@digest`).
    fn manifest_pushed(&self, _target: &str, _digest: &Digest) {}
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}

/// How blobs are uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadMode {
    /// Monolithic PUT first; chunked PATCH when that fails with 413/416 or a dropped connection.
    #[default]
    Auto,
    /// Always chunked PATCH (chunks of at most 4 MiB, or the registry's minimum).
    Chunked,
    /// Always one monolithic PUT.
    Monolithic,
}

/// Settings shared by pull, push and login. Build with [`RegistryOptions::default`] and the
/// setters; each setter documents its default.
#[derive(Clone)]
pub struct RegistryOptions {
    insecure: Vec<String>,
    cert_dir: Option<PathBuf>,
    tls_verify: bool,
    config_dir: Option<PathBuf>,
    credentials: Vec<(String, Credential)>,
    use_environment: bool,
    offline: bool,
    cache_dir: Option<PathBuf>,
    jobs: usize,
    retry: RetryPolicy,
    upload: UploadMode,
    mount_from: Vec<String>,
    reporter: Arc<dyn Reporter>,
    map: Arc<RegistryMap>,
    plain_http_hosts: client::PlainHttpHosts,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            cert_dir: None,
            tls_verify: true,
            config_dir: None,
            credentials: Vec::new(),
            use_environment: true,
            offline: false,
            cache_dir: None,
            // Four parallel blob transfers: ggcr's default; more rarely helps on one link.
            jobs: 4,
            retry: RetryPolicy::default(),
            upload: UploadMode::Auto,
            mount_from: Vec::new(),
            reporter: Arc::new(NoReporter),
            map: Arc::new(RegistryMap::default()),
            plain_http_hosts: client::PlainHttpHosts::default(),
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure", &self.insecure)
            .field("cert_dir", &self.cert_dir)
            .field("tls_verify", &self.tls_verify)
            .field("config_dir", &self.config_dir)
            .field(
                "credentials",
                &self
                    .credentials
                    .iter()
                    .map(|(h, _)| h.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("use_environment", &self.use_environment)
            .field("offline", &self.offline)
            .field("cache_dir", &self.cache_dir)
            .field("jobs", &self.jobs)
            .field("retry", &self.retry)
            .field("upload", &self.upload)
            .field("mount_from", &self.mount_from)
            .field("map", &self.map)
            .finish()
    }
}

impl RegistryOptions {
    /// Treat `host` (`host` or `host:port`) as Docker treats an `--insecure-registry`: HTTPS
    /// without verifying its certificate, else plain HTTP. Default: none (loopback hosts use
    /// verified HTTPS, or plain HTTP when their port does not speak TLS).
    pub fn insecure_registry(mut self, host: &str) -> Self {
        self.insecure.push(host.to_ascii_lowercase());
        self
    }

    /// Read CA certificates (`*.crt`) and the client certificate (`*.cert` + `*.key`) for
    /// every registry from `dir` instead of the certs.d directories (`--cert-dir`). Default:
    /// the certs.d lookup of [`crate::http`].
    pub fn cert_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cert_dir = Some(dir.into());
        self
    }

    /// `false` treats every registry as insecure (`--tls-verify=false`). Default: true.
    pub fn tls_verify(mut self, yes: bool) -> Self {
        self.tls_verify = yes;
        self
    }

    /// How `reference`'s registry is reached.
    pub(crate) fn transport(&self, reference: &Reference) -> reference::Transport {
        if self.tls_verify {
            reference.transport(&self.insecure)
        } else {
            reference::Transport::Insecure
        }
    }

    /// Read (and, for [`login`], write) `config.json` in `dir`. Default: `$DOCKER_CONFIG`,
    /// else `$HOME/.docker`.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// Use `credential` for `registry` (as in a reference: `ghcr.io`, `127.0.0.1:5000`),
    /// before any file or environment variable. Default: none.
    pub fn credential(mut self, registry: &str, credential: Credential) -> Self {
        self.credentials
            .push((registry.to_ascii_lowercase(), credential));
        self
    }

    /// Whether credentials may come from the environment (`KILN_REGISTRY_AUTH_<HOST>`,
    /// `GITHUB_TOKEN`/`GH_TOKEN`, `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR`). Default: true.
    pub fn use_environment(mut self, yes: bool) -> Self {
        self.use_environment = yes;
        self
    }

    /// Use only the local reference cache and store; any network need is an error naming what
    /// is missing. Default: false.
    pub fn offline(mut self, yes: bool) -> Self {
        self.offline = yes;
        self
    }

    /// Where the reference cache (reference -> manifest digest) lives. Default:
    /// `<store root>/.kiln-refs`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Parallel blob transfers. Default 4.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Retry policy. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Upload mode. Default [`UploadMode::Auto`].
    pub fn upload_mode(mut self, mode: UploadMode) -> Self {
        self.upload = mode;
        self
    }

    /// Try a cross-repository mount from `repository` (a path on the target registry, e.g.
    /// `acme/base`) before uploading a blob; called again, adds another repository, tried in
    /// order (the first that holds the blob is mounted from). Default: none.
    pub fn mount_from(mut self, repository: &str) -> Self {
        if !self.mount_from.iter().any(|r| r == repository) {
            self.mount_from.push(repository.to_owned());
        }
        self
    }

    /// Where registries really live (containers-registries.conf `[[registry]]` tables): every
    /// pull and push goes to the location a reference maps to, pulls try its mirrors first,
    /// and insecure locations are treated as `--insecure-registry` hosts. Default: no
    /// remapping.
    pub fn registry_map(mut self, map: RegistryMap) -> Self {
        self.insecure.extend(map.insecure_hosts());
        self.map = Arc::new(map);
        self
    }

    /// Runs `operation` on each place `reference` maps to (mirrors first for a pull), until
    /// one succeeds; the last place's error is the one reported.
    pub(crate) fn at_locations<T>(
        &self,
        reference: &Reference,
        for_pull: bool,
        mut operation: impl FnMut(&Reference) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let places = self.map.locations(reference, for_pull)?;
        let mut last_error = None;
        for place in &places {
            match operation(&place.reference) {
                Ok(value) => return Ok(value),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("a reference always has at least its own location"))
    }

    /// Progress reporter. Default: [`NoReporter`].
    pub fn reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.reporter = reporter;
        self
    }
}

/// The module's tokio runtime: created on first use, shared by every call.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Two workers: network I/O is the bottleneck; hashing and writes are cheap next to it.
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-registry")
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            // Creating a runtime only fails when the OS refuses threads or epoll: nothing
            // kiln could continue without.
            Err(e) => panic!("failed to start the registry runtime: {e}"),
        }
    })
}

/// Runs `future` to completion on the module's runtime. Must not be called from inside it.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}
