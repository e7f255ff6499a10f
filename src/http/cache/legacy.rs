//! The download cache's layout before it was a kiln store: Python downloads kept at
//! `sha256/<hex>/<file name>` (verified when written, renamed into place). [`import`] moves
//! each such file into the store once, under the same name, so an `--offline` build with a
//! cache from an older kiln finds what it downloaded. Each file is verified against the sha256
//! its directory names, committed to the store, given its name, and only then removed: a
//! killed import leaves every file either still in the old place or already in the new one,
//! and the next open carries on. A file whose bytes do not match its directory is left where
//! it is and never used.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{DownloadCache, io_error};
use crate::digest::Digest;
use crate::store::StoreError;

/// The directory of the old layout inside a cache directory.
const OLD_DIR: &str = "sha256";

/// Locks the old-layout directory `dir` exclusively (`flock`) until the guard is dropped, so
/// that one importer at a time moves it: the fetchers open their cache from several threads at
/// once, and each opens its own descriptor, so threads exclude each other as processes do.
/// `None` when there is no such directory.
pub(crate) fn lock_old_dir(dir: &Path) -> Result<Option<Flock<File>>, StoreError> {
    let handle = match File::open(dir) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", dir)(e)),
    };
    Flock::lock(handle, FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, errno)| io_error("lock", dir)(errno.into()))
}

/// Moves every file of the old layout in `cache`'s directory into the store (see the module
/// docs); does nothing when there is none. A reader that comes while another thread or process
/// imports waits for it, then finds the directory gone.
pub(super) fn import(cache: &DownloadCache) -> Result<(), StoreError> {
    let old = cache.dir().join(OLD_DIR);
    let Some(_lock) = lock_old_dir(&old)? else {
        return Ok(());
    };
    let Ok(listing) = std::fs::read_dir(&old) else {
        return Ok(());
    };
    for hex_dir in listing {
        let hex_dir = hex_dir.map_err(io_error("list", &old))?.path();
        let Some(digest) = hex_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|hex| Digest::from_hex(hex).ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(&hex_dir) else {
            continue;
        };
        for file in files {
            let path = file.map_err(io_error("list", &hex_dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if import_file(cache, &path, &digest, name)? {
                std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
            }
        }
        // Left non-empty when a file was not imported: the directory then stays too.
        let _ = std::fs::remove_dir(&hex_dir);
    }
    let _ = std::fs::remove_dir(&old);
    Ok(())
}

/// Keeps the file at `path` in the store as `digest` under `name`; false when its bytes are
/// not `digest` (it is then left alone).
fn import_file(
    cache: &DownloadCache,
    path: &Path,
    digest: &Digest,
    name: &str,
) -> Result<bool, StoreError> {
    if cache.blob(digest).is_none() {
        let mut writer = cache.writer()?;
        let mut file = std::fs::File::open(path).map_err(io_error("open", path))?;
        std::io::copy(&mut file, &mut writer).map_err(io_error("read", path))?;
        match writer.commit(Some(digest)) {
            Ok(_) => {}
            Err(StoreError::DigestMismatch { .. }) => {
                tracing::warn!(path = %path.display(), "cached file does not match its sha256; left unused");
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    cache.named(digest, name)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_by_sha256_move_into_the_store_under_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = b"wheel bytes";
        let digest = Digest::of(wheel);
        let old = dir.path().join(OLD_DIR).join(digest.hex());
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("x-1.0-py3-none-any.whl"), wheel).unwrap();
        let liar = dir.path().join(OLD_DIR).join(Digest::of(b"other").hex());
        std::fs::create_dir_all(&liar).unwrap();
        std::fs::write(liar.join("y-1.0.tar.gz"), b"not other").unwrap();

        let cache = DownloadCache::open(dir.path()).unwrap();
        let names = cache.names(&digest);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with("x-1.0-py3-none-any.whl"));
        assert_eq!(std::fs::read(&names[0]).unwrap(), wheel);
        assert!(
            !old.exists(),
            "the imported file is removed from the old layout"
        );
        assert!(liar.join("y-1.0.tar.gz").is_file(), "a mismatch stays put");
        assert!(cache.names(&Digest::of(b"other")).is_empty());
        // A second open finds nothing more to do.
        let again = DownloadCache::open(dir.path()).unwrap();
        assert_eq!(again.names(&digest), names);
    }
}
