//! The image module's door into the blob store, and the atomic-write helpers its outputs share.
//!
//! Store access goes through [`Store`], which hashes while writing to a temp file, verifies,
//! fsyncs and renames; the helpers here adapt its errors to [`ImageError`] and name the blob.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use super::ImageError;
use crate::digest::{Digest, HashingWriter};
use crate::store::Store;

/// Stores `bytes`; returns their digest and size.
pub(crate) fn put_bytes(store: &Store, bytes: &[u8]) -> Result<(Digest, u64), ImageError> {
    Ok(store.put_bytes(bytes)?)
}

/// Streams `reader` into the store as the blob `expected`, failing with a digest mismatch that
/// names `what` when the bytes differ. A blob already present is not rewritten.
pub(crate) fn import(
    store: &Store,
    mut reader: impl Read,
    expected: &Digest,
    what: &str,
) -> Result<u64, ImageError> {
    if store.contains(expected) {
        let path = store.blob_path(expected);
        let meta = std::fs::metadata(&path).map_err(|e| ImageError::io("stat blob", &path, e))?;
        return Ok(meta.len());
    }
    let mut writer = store.writer()?;
    io::copy(&mut reader, &mut writer)
        .map_err(|e| ImageError::io("copy into the store", store.root(), e))?;
    match writer.commit(Some(expected)) {
        Ok((_, size)) => Ok(size),
        Err(crate::store::StoreError::DigestMismatch {
            expected, actual, ..
        }) => Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected,
            actual,
        }),
        Err(other) => Err(other.into()),
    }
}

/// Copies `reader` to a fsynced temp file in `dir`, hashing as it goes.
pub(crate) fn write_temp(
    dir: &Path,
    mut reader: impl Read,
) -> Result<(tempfile::NamedTempFile, Digest, u64), ImageError> {
    let temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temp file in", dir, e))?;
    let mut writer = HashingWriter::new(io::BufWriter::new(temp));
    io::copy(&mut reader, &mut writer)
        .map_err(|e| ImageError::io("write a temp file in", dir, e))?;
    let (buffered, digest, size) = writer.finish();
    let temp = buffered
        .into_inner()
        .map_err(|e| ImageError::io("write a temp file in", dir, e.into_error()))?;
    publishable(temp.as_file(), dir)?;
    temp.as_file()
        .sync_all()
        .map_err(|e| ImageError::io("fsync a temp file in", dir, e))?;
    Ok((temp, digest, size))
}

/// Reads a whole blob and verifies its digest.
pub(crate) fn read_bytes(store: &Store, digest: &Digest) -> Result<Vec<u8>, ImageError> {
    Ok(store.read_bytes(digest)?)
}

/// Opens a blob for streaming (the caller verifies while reading when it matters).
pub(crate) fn open_blob(store: &Store, digest: &Digest) -> Result<File, ImageError> {
    Ok(store.open_blob(digest)?)
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temp file in", dir, e))?;
    publishable(temp.as_file(), dir)?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| ImageError::io("write", path, e))?;
    temp.persist(path)
        .map_err(|e| ImageError::io("rename into place", path, e.error))?;
    Ok(())
}

/// Gives a temp file (created 0600) the 0644 mode a published blob or output file has.
pub(crate) fn publishable(file: &File, dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| ImageError::io("set the mode of a temp file in", dir, e))
}
