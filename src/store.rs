//! The content-addressed blob store, laid out as an OCI image layout (`oci-layout`,
//! `blobs/sha256/<hex>`).
//!
//! Every write goes through a [`BlobWriter`]: bytes stream into a temp file inside the store's
//! ingest directory (`<root>/.kiln-ingest`, on the same filesystem so the final rename is
//! atomic) and are hashed on the way. [`BlobWriter::commit`] compares the digest with the
//! expected one when it is known, fsyncs, then renames to `blobs/sha256/<hex>`. So a blob's
//! presence means its bytes match its name, even if the process is killed at any point: a
//! killed writer leaves only a temp file, which readers never look at and a later
//! [`Store::open`] removes once it is stale. [`Store::fsck`] re-verifies every blob.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, Hasher};

/// Name of the ingest (temp) directory inside the store root.
const INGEST_DIR: &str = ".kiln-ingest";
/// Temp files untouched for this long belong to a killed writer and are removed by `open`.
/// Live writers touch their file on every flush, so they are never this old.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Contents of the OCI `oci-layout` marker file.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Buffer between a writer and its temp file.
const WRITE_BUFFER: usize = 256 * 1024;

/// How much of a blob is written before the kernel is asked to start writing it back, so that
/// the fsync at commit waits for the tail only, not for the whole blob.
const WRITEBACK_CHUNK: u64 = 8 * 1024 * 1024;

/// A content-addressed store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a store path.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The written bytes do not hash to the digest the caller expected.
    #[error("blob digest mismatch: expected {expected}, got {actual} ({size} bytes written)")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes actually written.
        actual: Digest,
        /// How many bytes were written.
        size: u64,
    },
    /// A stored blob's content does not hash to its name (the store is corrupted).
    #[error("blob `{path}` is corrupted: its content hashes to {actual}; run fsck and re-fetch it")]
    Corrupted {
        /// The blob's path.
        path: PathBuf,
        /// The digest of its content.
        actual: Digest,
    },
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) a store at `root`: writes the `oci-layout` marker, creates
    /// `blobs/sha256/` and the ingest directory, and removes stale temp files left by killed
    /// writers.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_owned(),
        };
        let blobs = store.blobs_dir();
        std::fs::create_dir_all(&blobs).map_err(io_error("create the blob directory", &blobs))?;
        let ingest = store.ingest_dir();
        std::fs::create_dir_all(&ingest)
            .map_err(io_error("create the ingest directory", &ingest))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            // Through a temp file too, so a killed process never leaves half a marker.
            let mut temp = tempfile::NamedTempFile::new_in(&ingest)
                .map_err(io_error("create a temp file in", &ingest))?;
            temp.write_all(OCI_LAYOUT)
                .map_err(io_error("write", temp.path()))?;
            temp.persist(&marker)
                .map_err(|e| io_error("rename a temp file to", &marker)(e.error))?;
        }
        store.remove_stale_temp_files()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// True when the store holds the blob `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A writer for a new blob; nothing is visible in the store until [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let ingest = self.ingest_dir();
        let temp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&ingest)
            .map_err(io_error("create a temp file in", &ingest))?;
        Ok(BlobWriter {
            blobs_dir: self.blobs_dir(),
            file: BufWriter::with_capacity(WRITE_BUFFER, temp),
            hasher: Hasher::new(),
            writeback_from: 0,
        })
    }

    /// Stores `bytes` as a blob and returns its digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let mut writer = self.writer()?;
        writer
            .write_all(bytes)
            .map_err(io_error("write", writer.file.get_ref().path()))?;
        writer.commit(None)
    }

    /// Reads a whole blob into memory, verifying that it matches `digest`.
    pub fn read_bytes(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(io_error("read blob", &path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::Corrupted { path, actual });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming reads (not verified: the store verified it on commit; use
    /// [`Store::fsck`] to re-check).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(io_error("open blob", &path))
    }

    /// Re-hashes every blob and returns those whose content does not match their name, in name
    /// order. Files in `blobs/sha256/` whose name is not a digest are skipped with a warning.
    pub fn fsck(&self) -> Result<Vec<Digest>, StoreError> {
        let blobs = self.blobs_dir();
        let mut names: Vec<_> = std::fs::read_dir(&blobs)
            .map_err(io_error("list", &blobs))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_error("list", &blobs))?;
        names.sort();
        let mut corrupted = Vec::new();
        let mut buffer = vec![0u8; WRITE_BUFFER];
        for name in names {
            let Some(digest) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                tracing::warn!(file = ?name, "ignoring a file in blobs/sha256 that is not a digest");
                continue;
            };
            let path = self.blob_path(&digest);
            let mut file = File::open(&path).map_err(io_error("open blob", &path))?;
            let mut hasher = Hasher::new();
            loop {
                let read = match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_error("read blob", &path)(e)),
                };
                hasher.update(&buffer[..read]);
            }
            if hasher.finish().0 != digest {
                corrupted.push(digest);
            }
        }
        Ok(corrupted)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        let ingest = self.ingest_dir();
        let entries = std::fs::read_dir(&ingest).map_err(io_error("list", &ingest))?;
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if stale {
                // Another process may remove it first; that is fine.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// A blob being written: hashes while it writes to a temp file in the store. Dropping it
/// without [`BlobWriter::commit`] deletes the temp file and leaves the store unchanged.
pub struct BlobWriter {
    blobs_dir: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
    /// The offset up to which writeback was started.
    writeback_from: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Finishes the blob: verifies it against `expected` (when given), fsyncs it and renames it
    /// to its digest. If the store already holds that blob, the temp file is dropped and the
    /// commit succeeds. Returns the digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let BlobWriter {
            blobs_dir,
            file,
            hasher,
            ..
        } = self;
        let (digest, size) = hasher.finish();
        let temp_path = file.get_ref().path().to_owned();
        let temp = file
            .into_inner()
            .map_err(|e| io_error("write", &temp_path)(e.into_error()))?;
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
                size,
            });
        }
        let target = blobs_dir.join(digest.hex());
        if target.is_file() {
            return Ok((digest, size));
        }
        temp.as_file()
            .sync_all()
            .map_err(io_error("fsync", &temp_path))?;
        temp.persist(&target)
            .map_err(|e| io_error("rename a temp file to", &target)(e.error))?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&blobs_dir) {
            let _ = dir.sync_all();
        }
        Ok((digest, size))
    }
}

impl BlobWriter {
    /// Starts writeback of what reached the file since the last call, once that is at least
    /// [`WRITEBACK_CHUNK`]. Only a hint: an error here is left for the fsync at commit.
    fn start_writeback(&mut self) {
        let in_file = self.hasher.len() - self.file.buffer().len() as u64;
        if in_file - self.writeback_from < WRITEBACK_CHUNK {
            return;
        }
        use std::os::fd::AsRawFd;
        let fd = self.file.get_ref().as_file().as_raw_fd();
        // SAFETY: `fd` is the open temp file this writer owns; the call reads no memory.
        unsafe {
            libc::sync_file_range(
                fd,
                self.writeback_from as libc::off64_t,
                (in_file - self.writeback_from) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.writeback_from = in_file;
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.start_writeback();
        Ok(written)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.start_writeback();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_idempotent_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(dir.path().join("oci-layout").is_file());
        let (digest, size) = store.put_bytes(b"hello").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(size, 5);
        assert!(store.contains(&digest));
        let (again, _) = store.put_bytes(b"hello").unwrap();
        assert_eq!(again, digest);
        assert_eq!(store.read_bytes(&digest).unwrap(), b"hello");
        assert!(store.fsck().unwrap().is_empty());
    }
}
