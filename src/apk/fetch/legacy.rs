//! The apk cache's layout before kiln's download cache: indexes at `indexes/<sha256 of URL>`
//! with the URL beside them in `<same>.url`, packages at `packages/<index checksum hex>`.
//! [`import`] moves each into the download cache once, under the keys the fetcher uses now
//! ([`INDEX_KEYS`], [`PACKAGE_KEYS`]), so an `--offline` build with a cache from an older kiln
//! still finds its indexes and packages. Every file is committed to the store and recorded
//! before it is removed, so a killed import leaves each file in the old place or the new one
//! and the next open carries on; one importer at a time holds each old directory's lock. An index the new layout already holds for the same URL is
//! newer and wins; a file that cannot be keyed (no URL beside it, a name that does not match
//! its URL) is left where it is and never used.

use std::path::Path;

use super::{INDEX_KEYS, PACKAGE_KEYS};
use crate::digest::Digest;
use crate::http::{DownloadCache, lock_old_dir};
use crate::store::StoreError;

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The file names in `dir`, empty when it does not exist.
fn names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(io_error("list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Moves the old layout in `cache`'s directory into `cache` (see the module docs).
pub(super) fn import(cache: &DownloadCache) -> Result<(), StoreError> {
    import_indexes(cache)?;
    import_packages(cache)
}

fn import_indexes(cache: &DownloadCache) -> Result<(), StoreError> {
    let indexes = cache.dir().join("indexes");
    let Some(_lock) = lock_old_dir(&indexes)? else {
        return Ok(());
    };
    for name in names(&indexes)? {
        let path = indexes.join(&name);
        if let Some(index) = name.strip_suffix(".url") {
            // A URL whose index is gone (imported, or never written) names nothing.
            if !indexes.join(index).exists() {
                remove(&path)?;
            }
            continue;
        }
        let url_file = indexes.join(format!("{name}.url"));
        let Ok(uri) = std::fs::read_to_string(&url_file) else {
            continue;
        };
        if Digest::of(uri.as_bytes()).hex() != name {
            continue;
        }
        if cache.get(INDEX_KEYS, &uri).is_none() {
            let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
            cache.put_bytes(INDEX_KEYS, &uri, &bytes)?;
        }
        remove(&path)?;
        remove(&url_file)?;
    }
    // Left in place when something in it could not be imported.
    let _ = std::fs::remove_dir(&indexes);
    Ok(())
}

fn import_packages(cache: &DownloadCache) -> Result<(), StoreError> {
    let packages = cache.dir().join("packages");
    let Some(_lock) = lock_old_dir(&packages)? else {
        return Ok(());
    };
    for checksum_hex in names(&packages)? {
        let path = packages.join(&checksum_hex);
        if cache.get(PACKAGE_KEYS, &checksum_hex).is_none() {
            let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
            cache.put_bytes(PACKAGE_KEYS, &checksum_hex, &bytes)?;
        }
        remove(&path)?;
    }
    let _ = std::fs::remove_dir(&packages);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Fetcher, RepoLocation};
    use super::*;

    /// An offline fetcher reads an older kiln's cache: the index by its URL, the package by its
    /// checksum; the old files are gone afterwards and a newer index is not replaced.
    #[test]
    fn an_offline_fetcher_reads_the_old_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = RepoLocation::Http("http://mirror.example/alpine/v3.20/main".into());
        let uri = mirror.uri("x86_64/APKINDEX.tar.gz");
        let other_uri = mirror.uri("aarch64/APKINDEX.tar.gz");
        let indexes = dir.path().join("indexes");
        let packages = dir.path().join("packages");
        std::fs::create_dir_all(&indexes).unwrap();
        std::fs::create_dir_all(&packages).unwrap();
        for (url, bytes) in [(&uri, "old index"), (&other_uri, "old aarch64 index")] {
            let digest = Digest::of(url.as_bytes());
            let hex = digest.hex();
            std::fs::write(indexes.join(hex), bytes).unwrap();
            std::fs::write(indexes.join(format!("{hex}.url")), url).unwrap();
        }
        std::fs::write(packages.join("ab12"), b"old package").unwrap();
        // An orphan (no URL beside it) cannot be keyed and stays.
        std::fs::write(indexes.join("f00d"), b"orphan").unwrap();
        // The aarch64 index was fetched again after the layout changed: that copy is newer.
        DownloadCache::open(dir.path())
            .unwrap()
            .put_bytes(INDEX_KEYS, &other_uri, b"new aarch64 index")
            .unwrap();

        let fetcher = Fetcher::new(Some(dir.path().to_owned()), true);
        assert_eq!(
            fetcher.index(&mirror, "x86_64/APKINDEX.tar.gz").unwrap(),
            b"old index"
        );
        assert_eq!(
            fetcher.index(&mirror, "aarch64/APKINDEX.tar.gz").unwrap(),
            b"new aarch64 index"
        );
        assert_eq!(
            fetcher
                .package(&mirror, "x86_64/a-1.0-r0.apk", "ab12")
                .unwrap(),
            b"old package"
        );
        assert_eq!(names(&indexes).unwrap(), ["f00d"]);
        assert!(!packages.exists());
    }
}
