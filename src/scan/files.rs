//! The database directory's files: the walk that finds them (every `*.json` below the
//! directory but the index's own directory) and the reading of many files on every core at
//! once, with one open directory per thread so that a file costs one name lookup.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ScanError;

/// The index's directory in the database directory ([`super::index`]), left out of the walk.
pub const INDEX_DIR: &str = ".kiln";

/// The database's files: every regular `*.json` file below `dir`, sorted by path.
pub(super) fn database_files(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    Ok(database_tree(dir)?.1)
}

/// The directories below `dir` (itself first) and the database's files, each sorted by path;
/// the index's own directory (`DIR/.kiln`) is left out.
pub(super) fn database_tree(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ScanError> {
    let mut directories = Vec::new();
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|entry| entry.depth() != 1 || entry.file_name() != INDEX_DIR);
    for entry in walk {
        let entry = entry.map_err(|e| ScanError::Read {
            path: e
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| dir.to_owned()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = entry.file_name().as_encoded_bytes();
        if entry.file_type().is_dir() {
            directories.push(entry.into_path());
        } else if entry.file_type().is_file() && name.len() > 5 && name.ends_with(b".json") {
            files.push(entry.into_path());
        }
    }
    // Sorted as bytes (cheap next to sorting by path components, with tens of thousands
    // of files), so messages and results do not depend on the directory's order.
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    directories.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok((directories, files))
}

/// `work` done for each of `files` (given its position) on up to as many threads as there are
/// cores; the results in `files`' order.
pub(super) fn in_parallel<T: Send>(
    files: &[PathBuf],
    work: impl Fn(&mut Opener, &mut Vec<u8>, usize, &Path) -> T + Sync,
) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    // One buffer and one open directory per thread, reused: most files of an OSV export are a
    // few hundred bytes, tens of thousands of them in one directory.
    let work_through = |paths: &mut dyn Iterator<Item = (usize, &PathBuf)>| {
        let mut buffer = Vec::new();
        let mut opener = Opener::default();
        paths
            .map(|(index, path)| (index, work(&mut opener, &mut buffer, index, path)))
            .collect::<Vec<_>>()
    };
    if workers <= 1 {
        return work_through(&mut files.iter().enumerate())
            .into_iter()
            .map(|(_, result)| result)
            .collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    work_through(&mut std::iter::from_fn(|| {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        files.get(index).map(|path| (index, path))
                    }))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Opens files by name relative to their directory, kept open while consecutive files share
/// it: one name looked up per file instead of every component of its path.
#[derive(Default)]
pub(super) struct Opener {
    dir: Option<(PathBuf, std::fs::File)>,
}

impl Opener {
    /// The open directory of `path` and its file name (None for a path without both).
    fn dir_of<'p>(
        &mut self,
        path: &'p Path,
    ) -> std::io::Result<Option<(&std::fs::File, &'p std::ffi::OsStr)>> {
        // Split at the last `/` as bytes: `Path::parent` parses every component, a cost that
        // shows with tens of thousands of files (the walk's paths have no trailing `/`).
        let bytes = path.as_os_str().as_encoded_bytes();
        let Some(slash) = bytes.iter().rposition(|b| *b == b'/') else {
            return Ok(None);
        };
        let (parent, name) = (
            Path::new(std::ffi::OsStr::from_bytes(&bytes[..slash.max(1)])),
            std::ffi::OsStr::from_bytes(&bytes[slash + 1..]),
        );
        if name.is_empty() {
            return Ok(None);
        }
        if self.dir.as_ref().is_none_or(|(cached, _)| {
            cached.as_os_str().as_encoded_bytes() != parent.as_os_str().as_encoded_bytes()
        }) {
            self.dir = Some((parent.to_owned(), std::fs::File::open(parent)?));
        }
        Ok(self.dir.as_ref().map(|(_, dir)| (dir, name)))
    }

    /// Opens `path` for reading, through the open directory when it has one.
    pub(super) fn open(&mut self, path: &Path) -> std::io::Result<std::fs::File> {
        let Some((dir, name)) = self.dir_of(path)? else {
            return std::fs::File::open(path);
        };
        let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty())
            .map_err(std::io::Error::from)?;
        Ok(std::fs::File::from(fd))
    }

    /// The file's own status (a symbolic link is not followed).
    pub(super) fn stat(&mut self, path: &Path) -> std::io::Result<nix::sys::stat::FileStat> {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        match self.dir_of(path)? {
            Some((dir, name)) => nix::sys::stat::fstatat(dir, name, flags),
            None => nix::sys::stat::fstatat(nix::fcntl::AT_FDCWD, path, flags),
        }
        .map_err(std::io::Error::from)
    }
}
