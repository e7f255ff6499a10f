//! Snapshots of kiln's apk cache as local repositories, for builds that must install the same
//! bytes later or elsewhere: after the mirror has moved on (Alpine mirrors drop superseded
//! packages), or on a machine with no network at all.
//!
//! Every index kiln fetched over HTTP(S) is in its download cache (by URL, after its signature
//! verified), and every package by its checksum (after it verified). [`export_cache`]
//! lays each cached index out as a repository directory named after its URL
//! (`<dest>/<host>/<path>/<arch>/APKINDEX.tar.gz`, the index's bytes unchanged so its signature
//! still verifies) with the cached packages it lists (`<name>-<version>.apk`), and writes
//! `<dest>/repositories`, one line per repository, relative to `<dest>`: that file given to
//! `kiln build --apk-repositories-file` replaces the image's `/etc/apk/repositories`, so the
//! same solve picks the same packages. The snapshot is the lock: it holds exactly the indexes
//! and the packages the builds used.

use std::path::Path;

use super::ApkError;
use super::fetch::{INDEX_KEYS, PACKAGE_KEYS, open_cache};
use super::index::Index;

/// What [`export_cache`] wrote.
#[derive(Debug, Default)]
pub struct ExportSummary {
    /// Each repository: its URL and the directory it was exported to (relative to the
    /// destination).
    pub repositories: Vec<(String, String)>,
    /// Packages copied.
    pub packages: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ApkError + '_ {
    move |source| ApkError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory a repository URL is exported to: `http://127.0.0.1:8080/alpine/v3.20/main`
/// -> `127.0.0.1_8080/alpine/v3.20/main`. Refuses URLs whose path would leave the destination.
fn directory_for(url: &str) -> Result<String, ApkError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ApkError::Unsupported(format!("exporting the repository `{url}`")))?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let mut parts = Vec::new();
    for (i, part) in rest.split('/').enumerate() {
        if part.is_empty() {
            continue;
        }
        if part == "." || part == ".." {
            return Err(ApkError::Unsupported(format!(
                "exporting the repository `{url}`: its path has `{part}`"
            )));
        }
        // The host: user info never reaches the export, and `:` becomes `_`.
        let part = if i == 0 {
            part.rsplit('@').next().unwrap_or(part).replace(':', "_")
        } else {
            part.to_owned()
        };
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(ApkError::Unsupported(format!(
            "exporting the repository `{url}`: no host"
        )));
    }
    Ok(parts.join("/"))
}

/// Exports the apk cache at `cache_dir` (kiln's `<cache>/apk`) into `dest` (see the module
/// docs). `dest` must not exist yet, so nothing is mixed with an older snapshot; it is written
/// in a temporary directory beside it and renamed into place when complete.
pub fn export_cache(cache_dir: &Path, dest: &Path) -> Result<ExportSummary, ApkError> {
    if dest.exists() {
        return Err(ApkError::Unsupported(format!(
            "exporting into `{}`, which already exists (choose a new directory)",
            dest.display()
        )));
    }
    // A cache directory that is not there has nothing to export (and is not created).
    let cache = match cache_dir.is_dir() {
        true => Some(open_cache(cache_dir)?),
        false => None,
    };
    let indexes = match &cache {
        Some(cache) => cache
            .entries(INDEX_KEYS)
            .map_err(|source| ApkError::Cache {
                dir: cache_dir.display().to_string(),
                source,
            })?,
        None => Vec::new(),
    };
    let Some(cache) = cache.filter(|_| !indexes.is_empty()) else {
        return Err(ApkError::Missing {
            archive: format!("the apk cache `{}`", cache_dir.display()),
            what: "an index fetched over HTTP(S) (build with an HTTP mirror first)".into(),
        });
    };
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-apk-export")
        .tempdir_in(parent)
        .map_err(io_error(parent))?;
    let mut summary = ExportSummary::default();
    let mut lines = String::from(
        "# Written by `kiln apk-export`: use with `kiln build --apk-repositories-file`.\n",
    );
    for (url_text, digest) in &indexes {
        let Some(index_path) = cache.blob(digest) else {
            continue;
        };
        let bytes = std::fs::read(&index_path).map_err(io_error(&index_path))?;
        // `<base>/<arch>/APKINDEX.tar.gz`
        let Some((base, arch)) = url_text
            .trim()
            .strip_suffix("/APKINDEX.tar.gz")
            .and_then(|rest| rest.rsplit_once('/'))
        else {
            continue;
        };
        let relative = directory_for(base)?;
        let arch_dir = staging.path().join(&relative).join(arch);
        std::fs::create_dir_all(&arch_dir).map_err(io_error(&arch_dir))?;
        let index = Index::parse_verified_earlier(&bytes, url_text.trim())?;
        let index_out = arch_dir.join("APKINDEX.tar.gz");
        std::fs::write(&index_out, &bytes).map_err(io_error(&index_out))?;
        for pkg in &index.packages {
            let Some((_, cached)) = cache.get(PACKAGE_KEYS, &pkg.checksum.hex()) else {
                continue;
            };
            let out = arch_dir.join(format!("{}.apk", pkg.id()));
            if std::fs::hard_link(&cached, &out).is_err() {
                std::fs::copy(&cached, &out).map_err(io_error(&out))?;
            }
            summary.packages += 1;
        }
        if !summary.repositories.iter().any(|(_, r)| r == &relative) {
            lines.push_str(&format!("./{relative}\n"));
            summary.repositories.push((base.to_owned(), relative));
        }
    }
    let list = staging.path().join("repositories");
    std::fs::write(&list, lines).map_err(io_error(&list))?;
    let staged = staging.keep();
    std::fs::rename(&staged, dest).map_err(io_error(dest))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_become_directories_inside_the_destination() {
        assert_eq!(
            directory_for("http://127.0.0.1:8080/alpine/v3.20/main").unwrap(),
            "127.0.0.1_8080/alpine/v3.20/main"
        );
        assert_eq!(
            directory_for("https://user:secret@mirror.example//alpine/edge/community/").unwrap(),
            "mirror.example/alpine/edge/community"
        );
        for bad in ["http://mirror.example/a/../../etc", "ftp://x/y", "http:///"] {
            assert!(directory_for(bad).is_err(), "{bad}");
        }
    }
}
