//! The values of the index client: [`Source`]s as configured, the [`DistFile`]s they offer,
//! what is known of a file's metadata, the [`CachedFile`] a fetch returns, and
//! [`IndexError`].

use std::path::PathBuf;

use reqwest::Url;

use crate::python::tags::WheelFilename;
use crate::python::wheel::normalize_name;

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
