//! The step cache: a layer is a pure function of its Diff and the write settings, so the
//! cache maps a fingerprint of both to the [`Layer`] already in the store.
//!
//! The fingerprint covers every byte the tar would hold: paths, kinds, ownership, modes, mtimes
//! after clamping, xattrs, link targets and the sha256 of each file's content. Content digests of
//! host files come from a stat cache keyed by (path, size, mtime, ctime, inode, device), the way
//! BuildKit's content-hash cache avoids re-reading an unchanged context; any write to a file
//! changes its ctime, so a stale entry cannot be reused. A rebuild with nothing changed therefore
//! reads no file content and compresses nothing.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::layer::{Compression, Diff, EntryKind, FileContent, Layer, WriteOptions};
use crate::store::Store;

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O error on a cache or input path.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
}

impl StatKey {
    fn of(meta: &std::fs::Metadata) -> StatKey {
        StatKey {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StatEntry {
    key: StatKey,
    digest: Digest,
}

/// The persistent cache of one cache directory: step results and host-file content digests.
pub struct StepCache {
    steps_dir: PathBuf,
    stat_path: PathBuf,
    stats: Mutex<BTreeMap<PathBuf, StatEntry>>,
    stats_dirty: Mutex<bool>,
}

impl StepCache {
    /// Opens the cache kept under `dir` (creating it).
    pub fn open(dir: &Path) -> Result<StepCache, CacheError> {
        let steps_dir = dir.join("steps");
        std::fs::create_dir_all(&steps_dir).map_err(io_error("create", &steps_dir))?;
        let stat_path = dir.join("stat-cache.json");
        // A damaged stat cache only costs re-hashing, so it is dropped rather than reported.
        let stats = std::fs::read(&stat_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(StepCache {
            steps_dir,
            stat_path,
            stats: Mutex::new(stats),
            stats_dirty: Mutex::new(false),
        })
    }

    /// The fingerprint of the layer `diff` would become with `options`.
    pub fn fingerprint(&self, diff: &Diff, options: &WriteOptions) -> Result<Digest, CacheError> {
        let content = self.content_digests(diff)?;
        let mut hasher = Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"kiln-layer-v1");
        match options.compression {
            Compression::Gzip { level } => field(format!("gzip:{level}").as_bytes()),
            Compression::Zstd { level } => field(format!("zstd:{level}").as_bytes()),
            Compression::None => field(b"none"),
        }
        for (path, entry) in diff.iter() {
            field(path.as_str().as_bytes());
            let meta = &entry.meta;
            let mtime = meta.mtime.min(options.source_date_epoch).max(0);
            field(format!("{:o}:{}:{}:{}", meta.mode, meta.uid, meta.gid, mtime).as_bytes());
            for (name, value) in &meta.xattrs {
                field(name.as_bytes());
                field(value);
            }
            match &entry.kind {
                EntryKind::Dir => field(b"dir"),
                EntryKind::OpaqueDir => field(b"opaque"),
                EntryKind::File(_) => {
                    field(b"file");
                    let digest = content.get(path.as_str()).map(Digest::hex).unwrap_or("");
                    field(digest.as_bytes());
                }
                EntryKind::Symlink(target) => {
                    field(b"symlink");
                    field(target.as_bytes());
                }
                EntryKind::Hardlink(target) => {
                    field(b"hardlink");
                    field(target.as_str().as_bytes());
                }
                EntryKind::Whiteout => field(b"whiteout"),
                EntryKind::CharDevice(major, minor) => {
                    field(format!("char:{major}:{minor}").as_bytes())
                }
                EntryKind::BlockDevice(major, minor) => {
                    field(format!("block:{major}:{minor}").as_bytes())
                }
                EntryKind::Fifo => field(b"fifo"),
            }
        }
        Ok(hasher.finish().0)
    }

    /// sha256 of every regular file's content, by path, hashing host files in parallel.
    fn content_digests(&self, diff: &Diff) -> Result<BTreeMap<String, Digest>, CacheError> {
        let mut digests = BTreeMap::new();
        let mut host_files: Vec<(String, PathBuf)> = Vec::new();
        for (path, entry) in diff.iter() {
            match &entry.kind {
                EntryKind::File(FileContent::Bytes(bytes)) => {
                    digests.insert(path.as_str().to_owned(), Digest::of(bytes));
                }
                EntryKind::File(FileContent::HostFile { path: host, .. }) => {
                    host_files.push((path.as_str().to_owned(), host.clone()));
                }
                _ => {}
            }
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = host_files.len().div_ceil(workers).max(1);
        let results: Vec<Result<Vec<(String, Digest)>, CacheError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = host_files
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(layer_path, host)| {
                                Ok((layer_path.clone(), self.host_file_digest(host)?))
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for part in results {
            digests.extend(part?);
        }
        Ok(digests)
    }

    fn host_file_digest(&self, host: &Path) -> Result<Digest, CacheError> {
        let meta = std::fs::metadata(host).map_err(io_error("stat", host))?;
        let key = StatKey::of(&meta);
        if let Ok(stats) = self.stats.lock()
            && let Some(entry) = stats.get(host)
            && entry.key == key
        {
            return Ok(entry.digest.clone());
        }
        let mut file = std::fs::File::open(host).map_err(io_error("open", host))?;
        let mut hasher = Hasher::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = file.read(&mut buffer).map_err(io_error("read", host))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        let (digest, _) = hasher.finish();
        if let Ok(mut stats) = self.stats.lock() {
            stats.insert(
                host.to_owned(),
                StatEntry {
                    key,
                    digest: digest.clone(),
                },
            );
        }
        if let Ok(mut dirty) = self.stats_dirty.lock() {
            *dirty = true;
        }
        Ok(digest)
    }

    /// The layer stored for `fingerprint`, if it is cached and its blob is still in `store`.
    pub fn lookup(&self, fingerprint: &Digest, store: &Store) -> Option<Layer> {
        let path = self.steps_dir.join(fingerprint.hex());
        let bytes = std::fs::read(path).ok()?;
        let layer: Layer = serde_json::from_slice(&bytes).ok()?;
        store.contains(&layer.digest).then_some(layer)
    }

    /// Records that `fingerprint` produced `layer`.
    pub fn record(&self, fingerprint: &Digest, layer: &Layer) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(layer).map_err(|e| CacheError::Io {
            action: "serialize the cache entry for",
            path: self.steps_dir.join(fingerprint.hex()),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&self.steps_dir.join(fingerprint.hex()), &bytes)
    }

    /// Writes the stat cache back if it changed.
    pub fn save(&self) -> Result<(), CacheError> {
        let dirty = self.stats_dirty.lock().map(|d| *d).unwrap_or(false);
        if !dirty {
            return Ok(());
        }
        let stats = match self.stats.lock() {
            Ok(stats) => stats,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bytes = serde_json::to_vec(&*stats).map_err(|e| CacheError::Io {
            action: "serialize",
            path: self.stat_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&self.stat_path, &bytes)
    }
}

/// Writes `bytes` to a temp file beside `path`, then renames it into place.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).map_err(io_error("create a temp file in", dir))?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io_error("write", temp.path()))?;
    temp.persist(path).map_err(|e| CacheError::Io {
        action: "rename into place",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Entry, LayerPath, Metadata};

    fn options() -> WriteOptions {
        WriteOptions {
            compression: Compression::Gzip { level: 6 },
            source_date_epoch: 0,
            threads: 1,
        }
    }

    #[test]
    fn fingerprint_follows_content_not_host_paths_or_times_below_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(&dir.path().join("cache")).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"same").unwrap();
        let diff_for = |host: &Path, mtime: i64| {
            let mut diff = Diff::new();
            let mut meta = Metadata::root_owned(0o644);
            meta.mtime = mtime;
            diff.insert(
                LayerPath::new("f").unwrap(),
                Entry {
                    kind: EntryKind::File(FileContent::HostFile {
                        path: host.to_owned(),
                        size: 4,
                    }),
                    meta,
                },
            );
            diff
        };
        let first = cache.fingerprint(&diff_for(&a, 100), &options()).unwrap();
        assert_eq!(
            first,
            cache.fingerprint(&diff_for(&b, 5), &options()).unwrap()
        );
        std::fs::write(&b, b"diff").unwrap();
        assert_ne!(
            first,
            cache.fingerprint(&diff_for(&b, 5), &options()).unwrap()
        );
        let zstd = WriteOptions {
            compression: Compression::Zstd { level: 3 },
            ..options()
        };
        assert_ne!(first, cache.fingerprint(&diff_for(&a, 100), &zstd).unwrap());
    }
}
