//! The image module's only door into the blob store.
//!
//! MERGE NOTE: `crate::store::Store` is still a stub on this branch. These five functions are
//! minimal private stand-ins for the Store API being completed elsewhere (`put_bytes`,
//! `writer()`+`commit(expected)`, `read_bytes`, `open_blob`, `contains`); at merge each body
//! becomes a one-line call to that API and nothing else in `image` changes. Until then they
//! follow the store's rules: hash while writing to a temp file in `blobs/sha256`, compare with
//! the expected digest, fsync, rename; a present blob is a verified blob.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use super::ImageError;
use crate::digest::{Digest, HashingWriter};
use crate::store::Store;

/// Stores `bytes`; returns their digest and size.
pub(crate) fn put_bytes(store: &Store, bytes: &[u8]) -> Result<(Digest, u64), ImageError> {
    let digest = Digest::of(bytes);
    import(store, bytes, &digest, "blob")?;
    Ok((digest, bytes.len() as u64))
}

/// Streams `reader` into the store as the blob `expected`, failing with a digest mismatch that
/// names `what` when the bytes differ. A blob already present is not rewritten.
pub(crate) fn import(
    store: &Store,
    reader: impl Read,
    expected: &Digest,
    what: &str,
) -> Result<u64, ImageError> {
    let final_path = store.blob_path(expected);
    if let Ok(meta) = std::fs::metadata(&final_path) {
        return Ok(meta.len());
    }
    let dir = final_path.parent().unwrap_or(store.root());
    let (temp, actual, size) = write_temp(dir, reader)?;
    if &actual != expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.clone(),
            actual,
        });
    }
    temp.persist(&final_path)
        .map_err(|e| ImageError::io("rename a blob into", &final_path, e.error))?;
    Ok(size)
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
    let path = store.blob_path(digest);
    let bytes = std::fs::read(&path).map_err(|e| ImageError::io("read blob", &path, e))?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(ImageError::DigestMismatch {
            what: format!("store blob `{}`", path.display()),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Opens a blob for streaming (the caller verifies while reading when it matters).
pub(crate) fn open_blob(store: &Store, digest: &Digest) -> Result<File, ImageError> {
    let path = store.blob_path(digest);
    File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))
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
