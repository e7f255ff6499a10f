//! The one download cache of kiln's fetchers (Alpine mirrors, Python indexes): downloaded
//! bytes kept in a kiln [`Store`], found again by the name their source gives them.
//!
//! Layout of a cache directory: the store itself (`oci-layout`, `blobs/sha256/<hex>`, so every
//! kept file is verified against its sha256 when written and renamed into place atomically),
//! and `keys/<namespace>/<sha256 of the key>`, one small file per key holding the blob's digest
//! and the key itself (`sha256:<hex>\n<key>\n`). A key is what the source calls the file: an
//! apk package's index checksum, an index's URL, a wheel's sha256 and file name. Entries are
//! written through a temp file and renamed, so a killed process leaves either the old entry or
//! the new one. [`DownloadCache::named`] gives a blob a file name (a hard link in
//! `names/<hex>/<name>`) for readers that take meaning from a file's name (a wheel's tags).
//!
//! Nothing is kept before the caller has verified it: callers put bytes only after checking
//! signatures and hashes.
//!
//! A cache written by an older kiln (files at `sha256/<hex>/<name>`) is moved into this layout
//! when it is opened (`legacy`); the apk fetcher moves its own older layout
//! ([`crate::apk`]'s `indexes/` and `packages/`) the same way.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::store::{BlobWriter, Store, StoreError};

mod legacy;

pub(crate) use legacy::lock_old_dir;

/// A content-addressed download cache in a directory (see the module docs).
#[derive(Clone, Debug)]
pub struct DownloadCache {
    store: Store,
}

fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl DownloadCache {
    /// Opens (creating if needed) the cache in `dir`, moving in what an older kiln kept there
    /// in the layout before the store (see `legacy`).
    pub fn open(dir: &Path) -> Result<DownloadCache, StoreError> {
        let cache = DownloadCache {
            store: Store::open(dir)?,
        };
        legacy::import(&cache)?;
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.store.root()
    }

    fn entry_path(&self, namespace: &str, key: &str) -> PathBuf {
        self.dir()
            .join("keys")
            .join(namespace)
            .join(Digest::of(key.as_bytes()).hex())
    }

    /// The blob kept under `key` in `namespace`, and its path, when both the entry and the
    /// blob are there.
    pub fn get(&self, namespace: &str, key: &str) -> Option<(Digest, PathBuf)> {
        let text = std::fs::read_to_string(self.entry_path(namespace, key)).ok()?;
        let (digest, stored_key) = parse_entry(&text)?;
        if stored_key != key {
            return None;
        }
        self.blob(&digest).map(|path| (digest, path))
    }

    /// The path of the blob `digest`, when the cache holds it.
    pub fn blob(&self, digest: &Digest) -> Option<PathBuf> {
        self.store
            .contains(digest)
            .then(|| self.store.blob_path(digest))
    }

    /// Keeps `bytes` and records them under `key` in `namespace` (replacing what the key named
    /// before); returns their digest.
    pub fn put_bytes(
        &self,
        namespace: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<Digest, StoreError> {
        let (digest, _) = self.store.put_bytes(bytes)?;
        self.record(namespace, key, &digest)?;
        Ok(digest)
    }

    /// A writer for a blob streamed into the cache; commit it with [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        self.store.writer()
    }

    /// Records that `key` in `namespace` names the kept blob `digest`.
    pub fn record(&self, namespace: &str, key: &str, digest: &Digest) -> Result<(), StoreError> {
        let path = self.entry_path(namespace, key);
        let text = format!("{digest}\n{key}\n");
        if std::fs::read_to_string(&path).is_ok_and(|kept| kept == text) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error("create the directory", dir))?;
        let mut temp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_error("create a temp file in", dir))?;
        temp.write_all(text.as_bytes())
            .map_err(io_error("write", &path))?;
        temp.persist(&path)
            .map_err(|e| io_error("rename a temp file to", &path)(e.error))?;
        Ok(())
    }

    /// Every key recorded in `namespace` with the blob it names, in key order (entries whose
    /// blob is gone are left out).
    pub fn entries(&self, namespace: &str) -> Result<Vec<(String, Digest)>, StoreError> {
        let dir = self.dir().join("keys").join(namespace);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", &dir)(e)),
        };
        let mut entries = Vec::new();
        for item in listing {
            let path = item.map_err(io_error("list", &dir))?.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Some((digest, key)) = parse_entry(&text)
                && self.store.contains(&digest)
            {
                entries.push((key.to_owned(), digest));
            }
        }
        entries.sort();
        Ok(entries)
    }

    /// The blob `digest` under the file name `name` (`names/<hex>/<name>`, a hard link to the
    /// blob, or a copy where links fail), for readers that read meaning from a file's name.
    pub fn named(&self, digest: &Digest, name: &str) -> Result<PathBuf, StoreError> {
        let blob = self.store.blob_path(digest);
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(StoreError::Io {
                action: "name a cached file",
                path: blob,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("`{name}` is not a file name"),
                ),
            });
        }
        let dir = self.dir().join("names").join(digest.hex());
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir).map_err(io_error("create the directory", &dir))?;
        // Linked (or copied) under a temp name, then renamed: a reader never sees half a copy.
        // The name is unique per call, so that two builds in one process (the platforms of a
        // multi-platform build) naming the same blob at once do not take each other's file.
        static NEXT_TEMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&temp);
        if std::fs::hard_link(&blob, &temp).is_err() {
            std::fs::copy(&blob, &temp).map_err(io_error("copy a cached file to", &temp))?;
        }
        std::fs::rename(&temp, &path).map_err(io_error("rename a temp file to", &path))?;
        Ok(path)
    }
}

impl DownloadCache {
    /// The names the blob `digest` was given with [`DownloadCache::named`], as paths, sorted.
    pub fn names(&self, digest: &Digest) -> Vec<PathBuf> {
        if self.blob(digest).is_none() {
            return Vec::new();
        }
        let dir = self.dir().join("names").join(digest.hex());
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        names
    }
}

fn parse_entry(text: &str) -> Option<(Digest, &str)> {
    let (digest, key) = text.split_once('\n')?;
    let digest = digest.parse::<Digest>().ok()?;
    Some((digest, key.strip_suffix('\n').unwrap_or(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_verified_blobs_and_the_newest_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DownloadCache::open(dir.path()).unwrap();
        assert!(cache.get("index", "http://mirror.example/x").is_none());
        let first = cache
            .put_bytes("index", "http://mirror.example/x", b"first")
            .unwrap();
        let second = cache
            .put_bytes("index", "http://mirror.example/x", b"second")
            .unwrap();
        let (digest, path) = cache.get("index", "http://mirror.example/x").unwrap();
        assert_eq!(digest, second);
        assert_eq!(std::fs::read(path).unwrap(), b"second");
        assert!(cache.blob(&first).is_some());
        assert!(cache.get("package", "http://mirror.example/x").is_none());
        assert_eq!(
            cache.entries("index").unwrap(),
            vec![("http://mirror.example/x".to_owned(), second.clone())]
        );
        let named = cache.named(&second, "x-1.0-py3-none-any.whl").unwrap();
        assert!(named.ends_with("x-1.0-py3-none-any.whl"));
        assert_eq!(std::fs::read(&named).unwrap(), b"second");
        assert_eq!(
            cache.named(&second, "x-1.0-py3-none-any.whl").unwrap(),
            named
        );
        assert_eq!(cache.names(&second), vec![named]);
        assert!(cache.names(&first).is_empty());
        for bad in ["", "..", "a/b"] {
            assert!(cache.named(&second, bad).is_err(), "{bad}");
        }
    }
}
