//! `kiln db fetch`: downloads vulnerability database files (Alpine secdb, OSV JSON) into the
//! database directory when there is a network. Each URL's file is checked before it is kept: its
//! sha256 when the caller gives one (`URL#sha256=HEX`), and that it parses as a database file;
//! it is then written atomically under the directory at the URL's path (`v3.20/main.json`), so
//! files of the same name from different branches do not collide.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Database, ScanError};
use crate::digest::Digest;

/// The largest database file accepted (OSV exports of a whole ecosystem run to hundreds of MB).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one kiln can fetch or place.
    #[error("invalid database URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The download failed.
    #[error("failed to download `{url}`: {detail}")]
    Download {
        /// The URL.
        url: String,
        /// The HTTP status or transport error.
        detail: String,
    },
    /// The bytes are not the ones the caller pinned.
    #[error("`{url}` has sha256 {actual}, expected {expected}; the file was not kept")]
    Checksum {
        /// The URL.
        url: String,
        /// The pinned digest.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The file is not a database file.
    #[error("`{url}` is not a vulnerability database file; it was not kept")]
    Invalid {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: ScanError,
    },
    /// Writing it failed.
    #[error("failed to write `{}`", path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Splits `URL#sha256=HEX` into the URL and the pinned digest (lowercase hex).
fn split_pin(spec: &str) -> Result<(&str, Option<String>), FetchError> {
    match spec.split_once("#sha256=") {
        Some((url, hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok((url, Some(hex.to_ascii_lowercase())))
        }
        Some((url, _)) => Err(FetchError::Url {
            url: url.to_owned(),
            reason: "`#sha256=` needs 64 hex digits".to_owned(),
        }),
        None => Ok((spec, None)),
    }
}

/// Where `url`'s file goes below `dir`: its path, with every segment checked (no `.`, `..`,
/// empty or hidden segments), so a URL cannot write outside the directory.
fn destination(dir: &Path, url: &str) -> Result<PathBuf, FetchError> {
    let bad = |reason: &str| FetchError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("only http:// and https:// URLs are fetched"))?;
    let path = rest
        .split_once('/')
        .map(|(_, p)| p)
        .unwrap_or_default()
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let mut out = dir.to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Err(bad("the URL names no file"));
    }
    for segment in &segments {
        if segment.starts_with('.') || segment.contains('\\') {
            return Err(bad("a path segment starts with `.`"));
        }
        out.push(segment);
    }
    if out.extension().is_none_or(|x| x != "json") {
        return Err(bad(
            "database files are JSON: the URL's path must end in `.json`",
        ));
    }
    Ok(out)
}

/// Downloads each `URL[#sha256=HEX]` into `dir`; returns the files written.
pub fn fetch(dir: &Path, specs: &[String]) -> Result<Vec<PathBuf>, FetchError> {
    // reqwest is built without a default crypto provider (see the registry client); installing
    // it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| FetchError::Download {
            url: "(any)".to_owned(),
            detail: e.to_string(),
        })?;
    let mut written = Vec::new();
    for spec in specs {
        let (url, pinned) = split_pin(spec)?;
        let path = destination(dir, url)?;
        let download = |detail: String| FetchError::Download {
            url: url.to_owned(),
            detail,
        };
        let response = client
            .get(url)
            .send()
            .map_err(|e| download(e.to_string()))?;
        if !response.status().is_success() {
            return Err(download(format!("HTTP {}", response.status())));
        }
        let mut bytes = Vec::new();
        response
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| download(e.to_string()))?;
        let actual = Digest::of(&bytes).hex().to_owned();
        if let Some(expected) = pinned
            && expected != actual
        {
            return Err(FetchError::Checksum {
                url: url.to_owned(),
                expected,
                actual,
            });
        }
        let invalid = |source| FetchError::Invalid {
            url: url.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(ScanError::Malformed {
                path: path.clone(),
                entry: "the file".to_owned(),
                reason: format!("not JSON: {e}"),
            })
        })?;
        Database::default()
            .add_file(&path, &value)
            .map_err(invalid)?;
        let write = |source| FetchError::Write {
            path: path.clone(),
            source,
        };
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(write)?;
        let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(write)?;
        std::io::Write::write_all(&mut temp, &bytes).map_err(write)?;
        temp.persist(&path).map_err(|e| write(e.error))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_land_under_the_directory_or_are_refused() {
        let dir = Path::new("db");
        assert_eq!(
            destination(dir, "https://h.invalid/v3.20/main.json").unwrap(),
            Path::new("db/v3.20/main.json")
        );
        for bad in [
            "https://h.invalid/../x.json",
            "https://h.invalid/a/.hidden.json",
            "ftp://h.invalid/a.json",
            "https://h.invalid/",
            "https://h.invalid/a.zip",
        ] {
            assert!(destination(dir, bad).is_err(), "{bad}");
        }
        assert!(split_pin("https://h.invalid/a.json#sha256=abc").is_err());
    }
}
