//! [`IndexClient`]: lists a project's files across the sources and fetches them into the
//! download cache, over HTTP with kiln's retry policy or from host directories.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::http::DownloadCache;

use super::listing::{Page, list_dir};
use super::types::{
    CachedFile, DistFile, FileLocation, IndexError, Location, MetadataHint, Source, SourceKind,
    project_of, redact,
};

/// The Accept header of PEP 691 clients: JSON preferred, HTML accepted.
pub const SIMPLE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                                 application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// Largest index page read into memory.
pub(crate) const PAGE_LIMIT: u64 = 64 * 1024 * 1024;

/// Three attempts per request, 1 s then 2 s apart (what the transient failures of an index
/// usually need; a longer outage fails the build with the index's URL).
pub(crate) fn index_retry_policy() -> crate::http::RetryPolicy {
    crate::http::RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        jitter: crate::http::Jitter::None,
    }
}

/// Lists and fetches distribution files from the configured sources.
pub struct IndexClient {
    sources: Vec<Source>,
    offline: bool,
    cache_dir: PathBuf,
    cache: OnceLock<DownloadCache>,
    http: Mutex<Option<reqwest::blocking::Client>>,
    /// Flat listings already read, by source index.
    flat: Mutex<BTreeMap<usize, Vec<DistFile>>>,
    /// URLs requested over HTTP (for tests and logs), credentials removed.
    requested: Mutex<Vec<String>>,
}

impl IndexClient {
    /// A client over `sources`, caching downloads below `cache_dir`.
    pub fn new(sources: Vec<Source>, cache_dir: &Path, offline: bool) -> IndexClient {
        IndexClient {
            sources,
            offline,
            cache_dir: cache_dir.to_owned(),
            cache: OnceLock::new(),
            http: Mutex::new(None),
            flat: Mutex::new(BTreeMap::new()),
            requested: Mutex::new(Vec::new()),
        }
    }

    /// The sources, in the order they are consulted.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Every HTTP URL requested so far, in order (credentials removed).
    pub fn requested_urls(&self) -> Vec<String> {
        locked(&self.requested).clone()
    }

    /// All files of `project` (normalized name) from every source, in source order. HTTP
    /// sources are skipped when offline.
    pub fn files(&self, project: &str) -> Result<Vec<DistFile>, IndexError> {
        let mut out = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            if self.offline && source.is_remote() {
                continue;
            }
            match source.kind {
                SourceKind::FindLinks => {
                    if !locked(&self.flat).contains_key(&index) {
                        let listing = self.flat_listing(source)?;
                        locked(&self.flat).insert(index, listing);
                    }
                    let flat = locked(&self.flat);
                    out.extend(
                        flat.get(&index)
                            .into_iter()
                            .flatten()
                            .filter(|f| project_of(&f.filename).is_some_and(|(p, _)| p == project))
                            .cloned(),
                    );
                }
                SourceKind::Index => out.extend(self.project_page(source, project)?),
            }
        }
        Ok(out)
    }

    fn flat_listing(&self, source: &Source) -> Result<Vec<DistFile>, IndexError> {
        match &source.location {
            Location::Dir(dir) => list_dir(dir, &source.display),
            Location::Http(url) => match self.get_page(url)? {
                Some((final_url, page)) => page.into_files(&final_url, source, false),
                None => Err(IndexError::Http {
                    url: redact(url),
                    problem: "404 Not Found".to_owned(),
                }),
            },
        }
    }

    fn project_page(&self, source: &Source, project: &str) -> Result<Vec<DistFile>, IndexError> {
        match &source.location {
            Location::Dir(root) => {
                let dir = root.join(project);
                if !dir.is_dir() {
                    return Ok(Vec::new());
                }
                let html = dir.join("index.html");
                if html.is_file() {
                    let text = std::fs::read_to_string(&html).map_err(|e| IndexError::Local {
                        path: html.clone(),
                        source: e,
                    })?;
                    let base = Url::from_file_path(&html).map_err(|_| IndexError::Page {
                        url: html.display().to_string(),
                        problem: "not an absolute path".to_owned(),
                    })?;
                    Page::Html(text).into_files(&base, source, true)
                } else {
                    list_dir(&dir, &source.display)
                }
            }
            Location::Http(root) => {
                let mut base = root.clone();
                if !base.path().ends_with('/') {
                    base.set_path(&format!("{}/", base.path()));
                }
                let url = base
                    .join(&format!("{project}/"))
                    .map_err(|e| IndexError::Page {
                        url: redact(root),
                        problem: e.to_string(),
                    })?;
                match self.get_page(&url)? {
                    Some((final_url, page)) => page.into_files(&final_url, source, false),
                    None => Ok(Vec::new()),
                }
            }
        }
    }

    fn client(&self) -> Result<reqwest::blocking::Client, IndexError> {
        if let Some(client) = locked(&self.http).as_ref() {
            return Ok(client.clone());
        }
        let client = crate::http::blocking_client(
            &crate::http::Trust::system(),
            crate::http::Timeouts {
                connect: Duration::from_secs(30),
                idle: Duration::from_secs(300),
            },
        )
        .map_err(|e| IndexError::Http {
            url: String::new(),
            problem: e.to_string(),
        })?;
        *locked(&self.http) = Some(client.clone());
        Ok(client)
    }

    /// GET with retries; `Ok(None)` on 404.
    fn get(
        &self,
        url: &Url,
        accept: Option<&str>,
    ) -> Result<Option<reqwest::blocking::Response>, IndexError> {
        let shown = redact(url);
        if self.offline {
            return Err(IndexError::Http {
                url: shown,
                problem: "offline mode forbids network access".to_owned(),
            });
        }
        let client = self.client()?;
        locked(&self.requested).push(shown.clone());
        let response = crate::http::get_blocking(
            &index_retry_policy(),
            &shown,
            url.host_str().unwrap_or(""),
            || {
                let request = client.get(url.clone());
                match accept {
                    Some(accept) => request.header(reqwest::header::ACCEPT, accept),
                    None => request,
                }
            },
        )
        .map_err(|problem| IndexError::Http {
            url: shown.clone(),
            problem,
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(IndexError::Http {
                url: shown,
                problem: format!("HTTP {status}"),
            });
        }
        Ok(Some(response))
    }

    fn get_page(&self, url: &Url) -> Result<Option<(Url, Page)>, IndexError> {
        let Some(response) = self.get(url, Some(SIMPLE_ACCEPT))? else {
            return Ok(None);
        };
        let final_url = response.url().clone();
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/vnd.pypi.simple.v1+json"));
        let mut body = Vec::new();
        response
            .take(PAGE_LIMIT)
            .read_to_end(&mut body)
            .map_err(|e| IndexError::Http {
                url: redact(url),
                problem: format!("reading the body: {e}"),
            })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        Ok(Some((
            final_url,
            if json {
                Page::Json(text)
            } else {
                Page::Html(text)
            },
        )))
    }

    /// The download cache, opened on first use.
    fn cache(&self) -> Result<&DownloadCache, IndexError> {
        if let Some(cache) = self.cache.get() {
            return Ok(cache);
        }
        let cache = DownloadCache::open(&self.cache_dir).map_err(|source| IndexError::Cache {
            dir: self.cache_dir.clone(),
            source,
        })?;
        Ok(self.cache.get_or_init(|| cache))
    }

    /// A file with this sha256 that an earlier fetch kept, under the name it was fetched as.
    pub fn cached(&self, sha256: &str) -> Option<CachedFile> {
        let digest = Digest::from_hex(sha256).ok()?;
        let path = self.cache().ok()?.names(&digest).into_iter().next()?;
        Some(CachedFile {
            path,
            sha256: sha256.to_owned(),
        })
    }

    /// Copies `file` into the download cache (or finds it there by its stated sha256) and
    /// returns the verified copy under the file's name. A source-stated hash must match.
    pub fn fetch(&self, file: &DistFile) -> Result<CachedFile, IndexError> {
        let cache = self.cache()?;
        let cache_err = |source| IndexError::Cache {
            dir: self.cache_dir.clone(),
            source,
        };
        if let Some(hash) = &file.sha256
            && let Ok(digest) = Digest::from_hex(hash)
            && cache.blob(&digest).is_some()
        {
            return Ok(CachedFile {
                path: cache.named(&digest, &file.filename).map_err(cache_err)?,
                sha256: hash.clone(),
            });
        }
        let mut writer = cache.writer().map_err(cache_err)?;
        let mut hasher = Sha256::new();
        match &file.location {
            FileLocation::Local(path) => {
                let mut input = std::fs::File::open(path).map_err(|e| IndexError::Local {
                    path: path.clone(),
                    source: e,
                })?;
                copy_hashing(&mut input, &mut writer, &mut hasher).map_err(|e| {
                    IndexError::Local {
                        path: path.clone(),
                        source: e,
                    }
                })?;
            }
            FileLocation::Http(url) => {
                let Some(mut response) = self.get(url, None)? else {
                    return Err(IndexError::Http {
                        url: redact(url),
                        problem: "404 Not Found".to_owned(),
                    });
                };
                copy_hashing(&mut response, &mut writer, &mut hasher).map_err(|e| {
                    IndexError::Http {
                        url: redact(url),
                        problem: format!("download interrupted: {e}"),
                    }
                })?;
            }
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = &file.sha256 {
            if *expected != actual {
                return Err(IndexError::SourceHash {
                    filename: file.filename.clone(),
                    url: file.uri(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let (digest, _) = writer.commit(None).map_err(cache_err)?;
        Ok(CachedFile {
            path: cache.named(&digest, &file.filename).map_err(cache_err)?,
            sha256: actual,
        })
    }

    /// The PEP 658 metadata file of `file`, verified against the stated hash; `None` when the
    /// source has none.
    pub fn core_metadata(&self, file: &DistFile) -> Result<Option<Vec<u8>>, IndexError> {
        if file.metadata == MetadataHint::Absent {
            return Ok(None);
        }
        let bytes = match &file.location {
            FileLocation::Local(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".metadata");
                match std::fs::read(PathBuf::from(name)) {
                    Ok(bytes) => bytes,
                    Err(_) => return Ok(None),
                }
            }
            FileLocation::Http(url) => {
                if self.offline {
                    return Ok(None);
                }
                let mut meta_url = url.clone();
                meta_url.set_fragment(None);
                meta_url.set_path(&format!("{}.metadata", url.path()));
                let Some(response) = self.get(&meta_url, None)? else {
                    return Ok(None);
                };
                let mut body = Vec::new();
                response
                    .take(PAGE_LIMIT)
                    .read_to_end(&mut body)
                    .map_err(|e| IndexError::Http {
                        url: redact(&meta_url),
                        problem: format!("reading the body: {e}"),
                    })?;
                body
            }
        };
        if let MetadataHint::Present {
            sha256: Some(expected),
        } = &file.metadata
        {
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != *expected {
                return Err(IndexError::SourceHash {
                    filename: format!("{}.metadata", file.filename),
                    url: file.uri() + ".metadata",
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(Some(bytes))
    }
}

/// Runs `work` on every item with a few threads, so that downloads overlap; results come in
/// item order.
pub fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    crate::parallel::map(items, 8, work)
}

/// The client is shared by download threads; a panic elsewhere leaves the lists usable.
pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn copy_hashing(
    input: &mut dyn Read,
    out: &mut dyn Write,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
}
