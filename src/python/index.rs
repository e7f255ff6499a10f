//! Where distributions come from: `--find-links` locations and package indexes (the simple
//! repository API), fetched ON THE BUILD HOST on the container's behalf, the way the pip inside
//! the container would reach the network.
//!
//! A [`Source`] is a find-links location or an index, each either a host directory (an
//! absolute path or a `file://` URL) or an HTTP(S) URL:
//!
//! * find-links directory: a flat directory of distribution files; find-links URL: a flat HTML
//!   page of links;
//! * index directory: PEP 503 layout, `<root>/<normalized-name>/` holding the files, or an
//!   `index.html` of links next to them; `<file>.metadata` beside a wheel is its PEP 658
//!   metadata;
//! * index URL: `GET <root>/<normalized-name>/` asking for PEP 691 JSON
//!   (`application/vnd.pypi.simple.v1+json`) and falling back to PEP 503 HTML (`#sha256=`
//!   fragments, `data-requires-python`, `data-yanked`, `data-core-metadata`).
//!
//! [`IndexClient::files`] lists a project's [`DistFile`]s across all sources;
//! [`IndexClient::fetch`] copies one into kiln's download cache ([`DownloadCache`]: found by
//! its sha256, verified before the atomic rename, reused when present); [`IndexClient::core_metadata`] gets
//! the PEP 658 `.metadata` file when the source has one. A link on a remote page may not point
//! at a `file://` URL (a remote index never reads host files). User names and passwords in URLs
//! are used for requests but never appear in messages or materials ([`redact`]). With
//! `offline`, no HTTP request is made: only host directories and the cache are used.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::http::DownloadCache;
use crate::python::tags::WheelFilename;
use crate::python::wheel::normalize_name;

/// The Accept header of PEP 691 clients: JSON preferred, HTML accepted.
pub const SIMPLE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                                 application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// Largest index page read into memory.
const PAGE_LIMIT: u64 = 64 * 1024 * 1024;

/// Three attempts per request, 1 s then 2 s apart (what the transient failures of an index
/// usually need; a longer outage fails the build with the index's URL).
fn index_retry_policy() -> crate::http::RetryPolicy {
    crate::http::RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        jitter: crate::http::Jitter::None,
    }
}

/// Whether a source is a flat list of files or a per-project index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// `--find-links`: a flat directory or page.
    FindLinks,
    /// `--index-url` / `--extra-index-url`: PEP 503/691 layout.
    Index,
}

/// Where a source lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on the build host.
    Dir(PathBuf),
    /// An HTTP(S) URL.
    Http(Url),
}

/// One configured source of distributions.
#[derive(Clone, Debug)]
pub struct Source {
    /// Flat or indexed.
    pub kind: SourceKind,
    /// Where it is.
    pub location: Location,
    /// How to name it in messages (credentials removed).
    pub display: String,
}

/// Where a distribution file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileLocation {
    /// A file on the build host.
    Local(PathBuf),
    /// An HTTP(S) URL.
    Http(Url),
}

/// What a source says about a file's PEP 658 metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataHint {
    /// Not said (try `<url>.metadata`, treat 404 as absent).
    Unknown,
    /// No `.metadata` file.
    Absent,
    /// A `.metadata` file exists, with its sha256 when given.
    Present {
        /// Expected sha256 of the metadata file.
        sha256: Option<String>,
    },
}

/// One distribution file offered by a source.
#[derive(Clone, Debug)]
pub struct DistFile {
    /// The file name (`flask-3.1.3-py3-none-any.whl`).
    pub filename: String,
    /// Where to get it.
    pub location: FileLocation,
    /// The sha256 the source states, lower-case hex.
    pub sha256: Option<String>,
    /// `requires-python` as the source states it.
    pub requires_python: Option<String>,
    /// `Some(reason)` when yanked (empty reason allowed).
    pub yanked: Option<String>,
    /// PEP 658 metadata availability.
    pub metadata: MetadataHint,
    /// The source's display name.
    pub source: String,
}

impl DistFile {
    /// The file's URI for provenance: its URL without credentials, or `file://` + host path.
    pub fn uri(&self) -> String {
        match &self.location {
            FileLocation::Http(url) => redact(url),
            FileLocation::Local(path) => Url::from_file_path(path)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| path.display().to_string()),
        }
    }
}

/// A file in the download cache, verified.
#[derive(Clone, Debug)]
pub struct CachedFile {
    /// Host path, under the file's own name (see [`DownloadCache::named`]).
    pub path: PathBuf,
    /// Its sha256, lower-case hex.
    pub sha256: String,
}

/// Why a source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A local source given as a relative path.
    #[error(
        "{origin}: `{value}` is a relative path; kiln reads local find-links and index \
         directories on the build host, so give an absolute path or a file:// URL"
    )]
    RelativePath {
        /// The value.
        value: String,
        /// Where it was set.
        origin: String,
    },
    /// A value that is neither a path nor an http(s)/file URL.
    #[error("{origin}: `{value}` is not an http(s):// or file:// URL or an absolute path")]
    BadLocation {
        /// The value (credentials removed).
        value: String,
        /// Where it was set.
        origin: String,
    },
    /// A host directory could not be read.
    #[error("failed to read `{path}` on the build host")]
    Local {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed.
    #[error("failed to GET {url}: {problem}")]
    Http {
        /// The URL (credentials removed).
        url: String,
        /// What happened (status or transport error).
        problem: String,
    },
    /// An index page could not be parsed.
    #[error("invalid index page {url}: {problem}")]
    Page {
        /// The URL or path.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A remote page linked to a host file.
    #[error(
        "index page {page} links to `{link}`, a file:// URL; a remote index may not name files \
         on the build host"
    )]
    RemoteFileLink {
        /// The page (credentials removed).
        page: String,
        /// The link.
        link: String,
    },
    /// The downloaded file does not have the hash its source states.
    #[error(
        "`{filename}` from {url} has sha256 {actual}, but the index states {expected}; the \
         download is corrupt or the index is inconsistent"
    )]
    SourceHash {
        /// The file name.
        filename: String,
        /// Where it came from (credentials removed).
        url: String,
        /// The stated hash.
        expected: String,
        /// The actual hash.
        actual: String,
    },
    /// Writing to the download cache failed.
    #[error("failed to write the download cache `{dir}`")]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: crate::store::StoreError,
    },
}

/// Removes user name and password from a URL for display.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

impl Source {
    /// Parses a find-links or index value (`origin` names where it was set, for errors).
    pub fn parse(kind: SourceKind, value: &str, origin: &str) -> Result<Source, IndexError> {
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = Url::parse(value).map_err(|_| IndexError::BadLocation {
                value: value.to_owned(),
                origin: origin.to_owned(),
            })?;
            let display = redact(&url);
            return Ok(Source {
                kind,
                location: Location::Http(url),
                display,
            });
        }
        if lower.starts_with("file:") {
            let path = Url::parse(value)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| IndexError::BadLocation {
                    value: value.to_owned(),
                    origin: origin.to_owned(),
                })?;
            return Ok(Source {
                kind,
                display: path.display().to_string(),
                location: Location::Dir(path),
            });
        }
        if value.contains("://") {
            return Err(IndexError::BadLocation {
                value: value.split("://").next().unwrap_or_default().to_owned() + "://...",
                origin: origin.to_owned(),
            });
        }
        if !value.starts_with('/') {
            return Err(IndexError::RelativePath {
                value: value.to_owned(),
                origin: origin.to_owned(),
            });
        }
        Ok(Source {
            kind,
            display: value.to_owned(),
            location: Location::Dir(PathBuf::from(value)),
        })
    }

    /// True when the source needs the network.
    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Http(_))
    }
}

/// The normalized project name and version text a distribution file name carries.
pub fn project_of(filename: &str) -> Option<(String, String)> {
    if let Ok(wheel) = WheelFilename::parse(filename) {
        return Some((normalize_name(&wheel.name), wheel.version));
    }
    let lower = filename.to_ascii_lowercase();
    let stem_len = [".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map(|ext| filename.len() - ext.len())?;
    let (name, version) = filename[..stem_len].rsplit_once('-')?;
    Some((normalize_name(name), version.to_owned()))
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
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn copy_hashing(
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

/// The distribution files in a host directory (a find-links dir or a PEP 503 project dir).
fn list_dir(dir: &Path, display: &str) -> Result<Vec<DistFile>, IndexError> {
    let entries = std::fs::read_dir(dir).map_err(|e| IndexError::Local {
        path: dir.to_owned(),
        source: e,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| project_of(n).is_some())
        .collect();
    names.sort();
    Ok(names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let metadata = if dir.join(format!("{name}.metadata")).is_file() {
                MetadataHint::Present { sha256: None }
            } else {
                MetadataHint::Absent
            };
            DistFile {
                filename: name.clone(),
                location: FileLocation::Local(path),
                sha256: None,
                requires_python: None,
                yanked: None,
                metadata,
                source: display.to_owned(),
            }
        })
        .collect())
}

/// A fetched index page.
enum Page {
    Json(String),
    Html(String),
}

impl Page {
    /// The files the page lists; `local` pages may link `file://` URLs.
    fn into_files(
        self,
        base: &Url,
        source: &Source,
        local: bool,
    ) -> Result<Vec<DistFile>, IndexError> {
        let page_name = if local {
            base.to_file_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| base.to_string())
        } else {
            redact(base)
        };
        let mut out = Vec::new();
        let mut add = |filename: String,
                       href: &str,
                       sha256: Option<String>,
                       requires_python: Option<String>,
                       yanked: Option<String>,
                       metadata: MetadataHint|
         -> Result<(), IndexError> {
            let url = base.join(href).map_err(|e| IndexError::Page {
                url: page_name.clone(),
                problem: format!("bad link `{href}`: {e}"),
            })?;
            let location = match url.scheme() {
                "http" | "https" => FileLocation::Http(url),
                "file" if local => {
                    FileLocation::Local(url.to_file_path().map_err(|_| IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("bad file link `{href}`"),
                    })?)
                }
                "file" => {
                    return Err(IndexError::RemoteFileLink {
                        page: page_name.clone(),
                        link: href.to_owned(),
                    });
                }
                other => {
                    return Err(IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("unsupported link scheme `{other}`"),
                    });
                }
            };
            if project_of(&filename).is_none() {
                return Ok(());
            }
            out.push(DistFile {
                filename,
                location,
                sha256: sha256.map(|h| h.to_ascii_lowercase()),
                requires_python,
                yanked,
                metadata,
                source: source.display.clone(),
            });
            Ok(())
        };
        match self {
            Page::Json(text) => {
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("invalid JSON: {e}"),
                    })?;
                let files = value
                    .get("files")
                    .and_then(|f| f.as_array())
                    .ok_or_else(|| IndexError::Page {
                        url: page_name.clone(),
                        problem: "no `files` array".to_owned(),
                    })?;
                for file in files {
                    let (Some(filename), Some(href)) = (
                        file.get("filename").and_then(|v| v.as_str()),
                        file.get("url").and_then(|v| v.as_str()),
                    ) else {
                        continue;
                    };
                    let sha256 = file
                        .get("hashes")
                        .and_then(|h| h.get("sha256"))
                        .and_then(|h| h.as_str())
                        .map(str::to_owned);
                    let requires_python = file
                        .get("requires-python")
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_owned);
                    let yanked = match file.get("yanked") {
                        Some(serde_json::Value::Bool(true)) => Some(String::new()),
                        Some(serde_json::Value::String(reason)) => Some(reason.clone()),
                        _ => None,
                    };
                    let hint = file
                        .get("core-metadata")
                        .or_else(|| file.get("dist-info-metadata"));
                    let metadata = match hint {
                        None => MetadataHint::Unknown,
                        Some(serde_json::Value::Bool(false)) => MetadataHint::Absent,
                        Some(serde_json::Value::Object(map)) => MetadataHint::Present {
                            sha256: map
                                .get("sha256")
                                .and_then(|v| v.as_str())
                                .map(|s| s.to_ascii_lowercase()),
                        },
                        Some(_) => MetadataHint::Present { sha256: None },
                    };
                    add(
                        filename.to_owned(),
                        href,
                        sha256,
                        requires_python,
                        yanked,
                        metadata,
                    )?;
                }
            }
            Page::Html(text) => {
                for anchor in anchors(&text) {
                    let Some(href) = anchor.attrs.get("href") else {
                        continue;
                    };
                    let (path_part, fragment) = match href.split_once('#') {
                        Some((p, f)) => (p, Some(f)),
                        None => (href.as_str(), None),
                    };
                    let filename = if anchor.text.trim().is_empty() {
                        path_part.rsplit('/').next().unwrap_or_default().to_owned()
                    } else {
                        anchor.text.trim().to_owned()
                    };
                    let sha256 = fragment
                        .and_then(|f| f.strip_prefix("sha256="))
                        .map(str::to_owned);
                    let requires_python = anchor
                        .attrs
                        .get("data-requires-python")
                        .filter(|s| !s.trim().is_empty())
                        .cloned();
                    let yanked = anchor.attrs.get("data-yanked").cloned();
                    let hint = anchor
                        .attrs
                        .get("data-core-metadata")
                        .or_else(|| anchor.attrs.get("data-dist-info-metadata"));
                    let metadata = match hint {
                        None => MetadataHint::Unknown,
                        Some(v) if v == "false" => MetadataHint::Absent,
                        Some(v) => MetadataHint::Present {
                            sha256: v.strip_prefix("sha256=").map(|s| s.to_ascii_lowercase()),
                        },
                    };
                    add(filename, href, sha256, requires_python, yanked, metadata)?;
                }
            }
        }
        Ok(out)
    }
}

struct Anchor {
    attrs: BTreeMap<String, String>,
    text: String,
}

/// The `<a ...>text</a>` elements of an HTML page (a tolerant scanner, enough for PEP 503).
fn anchors(html: &str) -> Vec<Anchor> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<a") {
        let start = at + found;
        let after = start + 2;
        at = after;
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let Some(end_rel) = lower[after..].find('>') else {
            break;
        };
        let tag_end = after + end_rel;
        let attrs = parse_attrs(&html[after..tag_end]);
        let close = lower[tag_end..]
            .find("</a")
            .map_or(html.len(), |i| tag_end + i);
        let text = unescape(&html[tag_end + 1..close.max(tag_end + 1)]);
        out.push(Anchor { attrs, text });
        at = close.max(tag_end + 1);
    }
    out
}

fn parse_attrs(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let chars: Vec<char> = tag.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                let vstart = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                value = chars[vstart..i].iter().collect();
                i += 1;
            } else {
                let vstart = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vstart..i].iter().collect();
            }
        }
        out.insert(name, unescape(&value));
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_anchors() {
        let html = r#"<html><body><a href="../../f/flask-3.1.3-py3-none-any.whl#sha256=ABC" data-requires-python="&gt;=3.9" data-core-metadata="sha256=DEF">flask-3.1.3-py3-none-any.whl</a><br/>
            <A HREF='flask-0.1.tar.gz' data-yanked>flask-0.1.tar.gz</A></body></html>"#;
        let source =
            Source::parse(SourceKind::Index, "https://u:p@idx.invalid/simple", "t").unwrap();
        assert_eq!(source.display, "https://idx.invalid/simple");
        let base = Url::parse("https://idx.invalid/simple/flask/").unwrap();
        let files = Page::Html(html.to_owned())
            .into_files(&base, &source, false)
            .unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].sha256.as_deref(), Some("abc"));
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.9"));
        assert_eq!(
            files[0].metadata,
            MetadataHint::Present {
                sha256: Some("def".into())
            }
        );
        assert_eq!(
            files[0].location,
            FileLocation::Http(
                Url::parse("https://idx.invalid/f/flask-3.1.3-py3-none-any.whl#sha256=ABC")
                    .unwrap()
            )
        );
        assert_eq!(files[1].yanked.as_deref(), Some(""));
        let evil = "<a href=\"file:///etc/shadow\">x-1.0-py3-none-any.whl</a>";
        let err = Page::Html(evil.to_owned())
            .into_files(&base, &source, false)
            .unwrap_err();
        assert!(matches!(err, IndexError::RemoteFileLink { .. }), "{err}");
    }

    #[test]
    fn locations() {
        for (value, ok) in [
            ("/wheels", true),
            ("file:///wheels", true),
            ("https://x.invalid/simple", true),
            ("wheels", false),
            ("./wheels", false),
            ("ftp://x.invalid/", false),
        ] {
            assert_eq!(
                Source::parse(SourceKind::FindLinks, value, "t").is_ok(),
                ok,
                "{value}"
            );
        }
        assert_eq!(
            project_of("Flask_Foo-1.0.tar.gz"),
            Some(("flask-foo".into(), "1.0".into()))
        );
        assert_eq!(
            project_of("MarkupSafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl"),
            Some(("markupsafe".into(), "3.0.4".into()))
        );
    }
}
