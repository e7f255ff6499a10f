//! Advisory locks (`flock`) on directories that several kiln processes may write at once: an
//! OCI layout while its `index.json` is merged, a build's scratch directory while the build
//! lives. The lock belongs to the open directory handle, so the kernel releases it when the
//! process ends, however it ends: a killed process never leaves a stale lock behind.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock on a directory; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    handle: File,
    path: PathBuf,
}

impl DirLock {
    /// Waits for the exclusive lock on the directory `path` (which must exist).
    pub fn exclusive(path: &Path) -> io::Result<DirLock> {
        DirLock::acquire(path, libc::LOCK_EX)
    }

    /// Waits for a shared lock on the directory `path` (which must exist).
    pub fn shared(path: &Path) -> io::Result<DirLock> {
        DirLock::acquire(path, libc::LOCK_SH)
    }

    /// The exclusive lock on `path` if nobody holds a lock on it, else `None`.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<DirLock>> {
        match DirLock::acquire(path, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(lock) => Ok(Some(lock)),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn acquire(path: &Path, operation: libc::c_int) -> io::Result<DirLock> {
        let handle = File::open(path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(handle.as_raw_fd(), operation) } == 0 {
                return Ok(DirLock {
                    handle,
                    path: path.to_owned(),
                });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the handle releases the lock; unlocking first makes it explicit.
        // SAFETY: flock on a descriptor this value owns.
        unsafe { libc::flock(self.handle.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::DirLock;

    #[test]
    fn exclusive_excludes_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::exclusive(dir.path()).unwrap();
        assert!(DirLock::try_exclusive(dir.path()).unwrap().is_none());
        drop(held);
        assert!(DirLock::try_exclusive(dir.path()).unwrap().is_some());
        let shared = DirLock::shared(dir.path()).unwrap();
        assert!(DirLock::try_exclusive(dir.path()).unwrap().is_none());
        drop(shared);
    }
}
