//! The step cache: a layer is a pure function of its Diff and the write settings, so the cache
//! maps keys derived from both to the [`Layer`] already in the store.
//!
//! Two keys, so that no build reads the context more than once:
//!
//! - the *stat key* hashes everything the tar would hold, except that a host file stands for its
//!   content by (path, size, mtime, ctime, inode, device), the way BuildKit's content-hash cache
//!   trusts an unchanged file. Any write to a file changes its ctime, so a stale key cannot match.
//!   A rebuild with nothing changed hits it without reading a byte.
//! - the *diffID key* is the layer's uncompressed digest, which names its exact bytes. Every
//!   written layer is recorded under it for free (the writer computes it). When the stat key
//!   misses but the context's paths were seen before (a fresh checkout of the same files, a
//!   touched file), [`StepCache::lookup_content`] streams the tar through SHA-256 without
//!   compressing, and reuses the stored layer when its diffID matches. A cold build (paths never
//!   seen) skips that pass and compresses straight away.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::{Digest, Hasher, HashingWriter};
use crate::layer::{Compression, Diff, EntryKind, FileContent, HostStamp, Layer, WriteOptions};
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
    /// Streaming the layer's tar to compute its diffID failed.
    #[error("failed to read the step's inputs")]
    Layer(#[source] crate::layer::LayerError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

/// The persistent cache of one cache directory: step results and the host paths seen.
pub struct StepCache {
    dir: PathBuf,
    steps_dir: PathBuf,
    seen_path: PathBuf,
    seen: Mutex<HashSet<PathBuf>>,
    seen_dirty: Mutex<bool>,
}

impl StepCache {
    /// Opens the cache kept under `dir` (creating it).
    pub fn open(dir: &Path) -> Result<StepCache, CacheError> {
        let steps_dir = dir.join("steps");
        std::fs::create_dir_all(&steps_dir).map_err(io_error("create", &steps_dir))?;
        let seen_path = dir.join("seen-paths.json");
        // A damaged record of seen paths only costs one extra content pass, so it is dropped.
        let seen = std::fs::read(&seen_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(StepCache {
            dir: dir.to_owned(),
            steps_dir,
            seen_path,
            seen: Mutex::new(seen),
            seen_dirty: Mutex::new(false),
        })
    }

    /// The stat key of the layer `diff` would become with `options` (reads no file content).
    pub fn stat_key(&self, diff: &Diff, options: &WriteOptions) -> Result<Digest, CacheError> {
        let mut hasher = Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"kiln-layer-stat-v1");
        field(options_text(options).as_bytes());
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
                EntryKind::File(FileContent::Bytes(bytes)) => {
                    field(b"bytes");
                    field(Digest::of(bytes).hex().as_bytes());
                }
                EntryKind::File(FileContent::HostFile {
                    path: host,
                    size,
                    stamp,
                }) => {
                    let stamp = match stamp {
                        Some(stamp) => *stamp,
                        None => {
                            HostStamp::of(&std::fs::metadata(host).map_err(io_error("stat", host))?)
                        }
                    };
                    field(b"host");
                    field(host.as_os_str().as_encoded_bytes());
                    field(
                        format!(
                            "{size}:{}:{}:{}:{}",
                            stamp.mtime_ns, stamp.ctime_ns, stamp.inode, stamp.device
                        )
                        .as_bytes(),
                    );
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

    /// True when some host file of `diff` was seen by an earlier build from the same path: the
    /// content may well be unchanged, so a content pass is worth its cost.
    pub fn seen_before(&self, diff: &Diff) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        diff.iter().any(|(_, entry)| {
            matches!(&entry.kind, EntryKind::File(FileContent::HostFile { path, .. }) if seen.contains(path))
        })
    }

    /// The layer stored with the diffID that `diff` would have, if any: streams the tar through
    /// SHA-256 without compressing.
    pub fn lookup_content(
        &self,
        diff: &Diff,
        options: &WriteOptions,
        store: &Store,
    ) -> Result<Option<Layer>, CacheError> {
        Ok(self.lookup(&content_key(diff, options)?, store))
    }

    /// The layer stored under `key`, if it is cached and its blob is still in `store`.
    pub fn lookup(&self, key: &Digest, store: &Store) -> Option<Layer> {
        let path = self.steps_dir.join(key.hex());
        let bytes = std::fs::read(path).ok()?;
        let layer: Layer = serde_json::from_slice(&bytes).ok()?;
        store.contains(&layer.digest).then_some(layer)
    }

    /// The result of a step recorded under an exact key by [`StepCache::record_result`] (a
    /// sandboxed RUN, keyed by its inputs since its Diff only exists after it ran): `Some(None)`
    /// when the step changed nothing, `None` on a miss or when the layer left the store.
    pub fn lookup_result(&self, key: &Digest, store: &Store) -> Option<Option<Layer>> {
        let bytes = std::fs::read(self.steps_dir.join(key.hex())).ok()?;
        match serde_json::from_slice::<Option<Layer>>(&bytes).ok()? {
            Some(layer) => store.contains(&layer.digest).then_some(Some(layer)),
            None => Some(None),
        }
    }

    /// Records a step's result under `key`: its layer, or `None` when it changed nothing.
    pub fn record_result(&self, key: &Digest, layer: Option<&Layer>) -> Result<(), CacheError> {
        let path = self.steps_dir.join(key.hex());
        let bytes = serde_json::to_vec(&layer).map_err(|e| CacheError::Io {
            action: "serialize the cache entry for",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&path, &bytes)
    }

    /// Records that the Diff with `stat_key` produced `layer` (under its diffID key too), and
    /// remembers the Diff's host files as seen.
    pub fn record(
        &self,
        stat_key: &Digest,
        diff: &Diff,
        layer: &Layer,
        options: &WriteOptions,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(layer).map_err(|e| CacheError::Io {
            action: "serialize the cache entry for",
            path: self.steps_dir.join(stat_key.hex()),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&self.steps_dir.join(stat_key.hex()), &bytes)?;
        let content_key = diff_id_key(&layer.diff_id, options);
        write_atomically(&self.steps_dir.join(content_key.hex()), &bytes)?;
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (_, entry) in diff.iter() {
            // A path JSON cannot hold (not UTF-8) is not remembered: it only misses a content
            // pass. Nor is a build's scratch file below the cache: its path is new each build.
            if let EntryKind::File(FileContent::HostFile { path, .. }) = &entry.kind
                && path.to_str().is_some()
                && !path.starts_with(&self.dir)
                && seen.insert(path.clone())
                && let Ok(mut dirty) = self.seen_dirty.lock()
            {
                *dirty = true;
            }
        }
        Ok(())
    }

    /// Writes the record of seen host paths back if it changed.
    pub fn save(&self) -> Result<(), CacheError> {
        let dirty = self.seen_dirty.lock().map(|d| *d).unwrap_or(false);
        if !dirty {
            return Ok(());
        }
        let seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bytes = serde_json::to_vec(&*seen).map_err(|e| CacheError::Io {
            action: "serialize",
            path: self.seen_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&self.seen_path, &bytes)
    }
}

fn options_text(options: &WriteOptions) -> String {
    match options.compression {
        Compression::Gzip { level } => format!("gzip:{level}"),
        Compression::Zstd { level } => format!("zstd:{level}"),
        Compression::None => "none".to_owned(),
    }
}

/// The key of the layer `diff` would become with `options`, from its content alone (equal on
/// every machine): streams the tar through SHA-256 without compressing.
pub fn content_key(diff: &Diff, options: &WriteOptions) -> Result<Digest, CacheError> {
    let mut sink = HashingWriter::new(io::sink());
    crate::layer::tar_writer::write_tar(diff, options.source_date_epoch, &mut sink)
        .map_err(CacheError::Layer)?;
    let (_, diff_id, _) = sink.finish();
    Ok(diff_id_key(&diff_id, options))
}

/// The cache key of a layer by its diffID and compression settings.
pub fn diff_id_key(diff_id: &Digest, options: &WriteOptions) -> Digest {
    Digest::of(format!("kiln-layer-diffid-v1:{}:{diff_id}", options_text(options)).as_bytes())
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

    fn diff_for(host: &Path, mtime: i64) -> Diff {
        diff_stamped(host, mtime, None)
    }

    fn diff_stamped(host: &Path, mtime: i64, stamp: Option<HostStamp>) -> Diff {
        let mut diff = Diff::new();
        let mut meta = Metadata::root_owned(0o644);
        meta.mtime = mtime;
        let size = std::fs::metadata(host).unwrap().len();
        diff.insert(
            LayerPath::new("f").unwrap(),
            Entry {
                kind: EntryKind::File(FileContent::HostFile {
                    path: host.to_owned(),
                    size,
                    stamp,
                }),
                meta,
            },
        );
        diff
    }

    #[test]
    fn stat_key_follows_files_and_settings_and_content_lookup_follows_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let cache = StepCache::open(&dir.path().join("cache")).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"same").unwrap();

        let key_a = cache.stat_key(&diff_for(&a, 100), &options()).unwrap();
        assert_eq!(
            key_a,
            cache.stat_key(&diff_for(&a, 5), &options()).unwrap(),
            "times clamp to the epoch"
        );
        assert_ne!(
            key_a,
            cache.stat_key(&diff_for(&b, 100), &options()).unwrap(),
            "another file"
        );
        let zstd = WriteOptions {
            compression: Compression::Zstd { level: 3 },
            ..options()
        };
        assert_ne!(key_a, cache.stat_key(&diff_for(&a, 100), &zstd).unwrap());

        assert!(!cache.seen_before(&diff_for(&a, 0)));
        let diff = diff_for(&a, 0);
        let layer = crate::layer::write(&diff, &store, &options()).unwrap();
        cache.record(&key_a, &diff, &layer, &options()).unwrap();
        assert_eq!(cache.lookup(&key_a, &store), Some(layer.clone()));
        assert!(cache.seen_before(&diff_for(&a, 0)));

        // Same bytes from another file: the stat key misses, the content lookup hits.
        let other = diff_for(&b, 0);
        assert_eq!(
            cache.lookup(&cache.stat_key(&other, &options()).unwrap(), &store),
            None
        );
        assert_eq!(
            cache.lookup_content(&other, &options(), &store).unwrap(),
            Some(layer)
        );
        // A rewrite changes the ctime, so the old stat key cannot match any more.
        std::fs::write(&a, b"diff").unwrap();
        assert_ne!(key_a, cache.stat_key(&diff_for(&a, 0), &options()).unwrap());
        assert_eq!(
            cache
                .lookup_content(&diff_for(&a, 0), &options(), &store)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_stamp_taken_with_the_diff_stands_for_the_file_and_seen_paths_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"one").unwrap();
        let stamp_before = HostStamp::of(&std::fs::metadata(&file).unwrap());
        let cache = StepCache::open(&dir.path().join("cache")).unwrap();
        let stamped = diff_stamped(&file, 0, Some(stamp_before));
        let key = cache.stat_key(&stamped, &options()).unwrap();
        assert_eq!(
            key,
            cache.stat_key(&diff_for(&file, 0), &options()).unwrap()
        );

        std::fs::write(&file, b"two").unwrap();
        let stamp_after = HostStamp::of(&std::fs::metadata(&file).unwrap());
        assert_ne!(stamp_before, stamp_after, "a rewrite changes the ctime");
        assert_eq!(
            key,
            cache.stat_key(&stamped, &options()).unwrap(),
            "the stamp of the Diff is used, not a new stat"
        );
        assert_ne!(
            key,
            cache
                .stat_key(&diff_stamped(&file, 0, Some(stamp_after)), &options())
                .unwrap()
        );

        let layer = crate::layer::write(&diff_for(&file, 0), &store, &options()).unwrap();
        cache.record(&key, &stamped, &layer, &options()).unwrap();
        cache.save().unwrap();
        let reopened = StepCache::open(&dir.path().join("cache")).unwrap();
        assert!(reopened.seen_before(&diff_for(&file, 0)));
        let other = dir.path().join("other");
        std::fs::write(&other, b"one").unwrap();
        assert!(!reopened.seen_before(&diff_for(&other, 0)));

        let scratch = dir.path().join("cache/tmp/build-1/f");
        std::fs::create_dir_all(scratch.parent().unwrap()).unwrap();
        std::fs::write(&scratch, b"one").unwrap();
        let extracted = diff_for(&scratch, 0);
        reopened
            .record(&key, &extracted, &layer, &options())
            .unwrap();
        assert!(
            !reopened.seen_before(&extracted),
            "a scratch file of a build is not remembered"
        );
    }
}
