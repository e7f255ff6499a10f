//! Reading repository files: from a local directory in place, or over HTTP(S) into a cache.
//!
//! Indexes change as the mirror moves on, so an online build always fetches them, and keeps the
//! last copy per URL for `--offline` builds. Packages are named by their index checksum (`C:`,
//! the SHA-1 of the control member), so a cached package is reused by that checksum and never
//! fetched again. Nothing fetched is trusted or cached until the caller has verified it (the
//! index's signature, the package against the index and its own hashes) and calls
//! [`Fetcher::keep`]. The cache is kiln's download cache ([`crate::http::DownloadCache`]):
//! indexes are kept under their URL ([`INDEX_KEYS`]), packages under their checksum
//! ([`PACKAGE_KEYS`]). A cache an older kiln left in the layout before that is moved in when
//! it is opened ([`open_cache`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::ApkError;
use crate::http::DownloadCache;

mod legacy;

/// The download cache's namespace of indexes, keyed by URL.
pub(crate) const INDEX_KEYS: &str = "apk-index";
/// The download cache's namespace of packages, keyed by index checksum (hex).
pub(crate) const PACKAGE_KEYS: &str = "apk-package";

/// Where a repository lives.
#[derive(Clone, Debug)]
pub(crate) enum RepoLocation {
    /// A directory on the build host (`/srv/repo`, `file:///srv/repo`).
    Dir(PathBuf),
    /// An `http://` or `https://` base URL, without a trailing `/`.
    Http(String),
}

impl RepoLocation {
    /// The URI of `relative` (`x86_64/APKINDEX.tar.gz`) in this repository, for messages and
    /// provenance.
    pub(crate) fn uri(&self, relative: &str) -> String {
        match self {
            RepoLocation::Dir(dir) => format!("file://{}/{relative}", dir.display()),
            RepoLocation::Http(base) => format!("{base}/{relative}"),
        }
    }
}

/// What a verified file is, for [`Fetcher::keep`].
#[derive(Clone, Copy)]
pub(crate) enum Kept<'a> {
    /// An index of a repository, by its URL.
    Index(&'a RepoLocation, &'a str),
    /// A package of a repository, by its index checksum (hex).
    Package(&'a RepoLocation, &'a str),
}

/// How files are fetched. Shared by the threads that fetch packages in parallel.
pub(crate) struct Fetcher {
    cache_dir: Option<PathBuf>,
    cache: OnceLock<DownloadCache>,
    offline: bool,
    client: OnceLock<reqwest::blocking::Client>,
}

/// Packages and indexes larger than this are refused (Alpine's largest packages are far below).
const MAX_FILE_BYTES: u64 = 2 << 30;

impl Fetcher {
    pub(crate) fn new(cache_dir: Option<PathBuf>, offline: bool) -> Fetcher {
        Fetcher {
            cache_dir,
            cache: OnceLock::new(),
            offline,
            client: OnceLock::new(),
        }
    }

    /// The download cache, opened on first use; `None` without a cache directory.
    fn cache(&self) -> Result<Option<&DownloadCache>, ApkError> {
        let Some(dir) = &self.cache_dir else {
            return Ok(None);
        };
        if let Some(cache) = self.cache.get() {
            return Ok(Some(cache));
        }
        let cache = open_cache(dir)?;
        Ok(Some(self.cache.get_or_init(|| cache)))
    }

    /// The repository's index; over HTTP, fetched fresh unless offline.
    pub(crate) fn index(&self, repo: &RepoLocation, relative: &str) -> Result<Vec<u8>, ApkError> {
        match repo {
            RepoLocation::Dir(dir) => read_local(&dir.join(relative)),
            RepoLocation::Http(_) => {
                let uri = repo.uri(relative);
                if self.offline {
                    let cached = self.cache()?.and_then(|c| c.get(INDEX_KEYS, &uri));
                    return match cached {
                        Some((_, path)) => read_local(&path),
                        None => Err(offline_error(&uri)),
                    };
                }
                self.get(&uri)
            }
        }
    }

    /// Caches verified bytes fetched with [`Fetcher::index`] or [`Fetcher::package`] (a no-op
    /// for local repositories and without a cache directory).
    pub(crate) fn keep(&self, what: Kept<'_>, bytes: &[u8]) -> Result<(), ApkError> {
        let (namespace, key) = match what {
            // The mirror moves on: the newest verified index replaces the one kept before.
            Kept::Index(RepoLocation::Http(_), uri) => (INDEX_KEYS, uri),
            Kept::Package(RepoLocation::Http(_), checksum_hex) => (PACKAGE_KEYS, checksum_hex),
            _ => return Ok(()),
        };
        let Some(cache) = self.cache()? else {
            return Ok(());
        };
        // Named by its checksum: a package once kept never changes.
        if namespace == PACKAGE_KEYS && cache.get(namespace, key).is_some() {
            return Ok(());
        }
        cache
            .put_bytes(namespace, key, bytes)
            .map(|_| ())
            .map_err(|source| ApkError::Cache {
                dir: cache.dir().display().to_string(),
                source,
            })
    }

    /// A package whose index checksum is `checksum_hex`; over HTTP, from the cache when there.
    pub(crate) fn package(
        &self,
        repo: &RepoLocation,
        relative: &str,
        checksum_hex: &str,
    ) -> Result<Vec<u8>, ApkError> {
        match repo {
            RepoLocation::Dir(dir) => read_local(&dir.join(relative)),
            RepoLocation::Http(_) => {
                let uri = repo.uri(relative);
                if let Some((_, path)) = self
                    .cache()?
                    .and_then(|c| c.get(PACKAGE_KEYS, checksum_hex))
                {
                    return read_local(&path);
                }
                if self.offline {
                    return Err(offline_error(&uri));
                }
                self.get(&uri)
            }
        }
    }

    fn get(&self, uri: &str) -> Result<Vec<u8>, ApkError> {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let client = crate::http::blocking_client(
                    &crate::http::Trust::system(),
                    crate::http::Timeouts {
                        connect: Duration::from_secs(30),
                        idle: Duration::from_secs(600),
                    },
                )
                .map_err(|e| fetch_error(uri, e.to_string()))?;
                self.client.get_or_init(|| client)
            }
        };
        let host = reqwest::Url::parse(uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let response =
            crate::http::get_blocking(&mirror_retry_policy(), uri, &host, || client.get(uri))
                .map_err(|detail| fetch_error(uri, detail))?;
        if !response.status().is_success() {
            return Err(fetch_error(uri, format!("HTTP {}", response.status())));
        }
        let mut bytes = Vec::new();
        response
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| fetch_error(uri, e.to_string()))?;
        Ok(bytes)
    }
}

/// Three attempts, 300 ms then 600 ms apart: mirrors drop connections now and then, and a
/// mirror that is down stays down longer than a build should wait.
fn mirror_retry_policy() -> crate::http::RetryPolicy {
    crate::http::RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(300),
        max_delay: Duration::from_secs(30),
        jitter: crate::http::Jitter::None,
    }
}

/// The apk download cache in `dir`, with what an older kiln kept there in its own layout moved
/// in first (see `legacy`).
pub(crate) fn open_cache(dir: &Path) -> Result<DownloadCache, ApkError> {
    let cache_error = |source| ApkError::Cache {
        dir: dir.display().to_string(),
        source,
    };
    let cache = DownloadCache::open(dir).map_err(cache_error)?;
    legacy::import(&cache).map_err(cache_error)?;
    Ok(cache)
}

fn read_local(path: &Path) -> Result<Vec<u8>, ApkError> {
    std::fs::read(path).map_err(|source| ApkError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn offline_error(uri: &str) -> ApkError {
    ApkError::Offline {
        uri: uri.to_owned(),
    }
}

fn fetch_error(uri: &str, detail: String) -> ApkError {
    ApkError::Fetch {
        uri: uri.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_index_is_kept_and_packages_never_change() {
        let cache = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(Some(cache.path().to_owned()), false);
        let mirror = RepoLocation::Http("http://mirror.example/alpine/v3.20/main".into());
        let uri = mirror.uri("x86_64/APKINDEX.tar.gz");
        fetcher.keep(Kept::Index(&mirror, &uri), b"first").unwrap();
        fetcher.keep(Kept::Index(&mirror, &uri), b"second").unwrap();
        let kept = DownloadCache::open(cache.path()).unwrap();
        let (_, path) = kept.get(INDEX_KEYS, &uri).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        fetcher
            .keep(Kept::Package(&mirror, "ab12"), b"pkg")
            .unwrap();
        fetcher
            .keep(Kept::Package(&mirror, "ab12"), b"other")
            .unwrap();
        let (_, path) = kept.get(PACKAGE_KEYS, "ab12").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"pkg");
    }
}
