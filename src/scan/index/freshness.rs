//! Whether the index still describes the database's files: each file's and directory's stamp
//! (`SIZE MTIME CTIME`, taken without reading it) compared with the recorded one, on every core.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::scan::ScanError;
use crate::scan::files::in_parallel;

/// True when every listed directory (`times`, relative path) still has the times recorded.
pub(super) fn directories_unchanged(dir: &Path, directories: &[(&[u8], &[u8])]) -> bool {
    directories.iter().all(|(times, path)| {
        let path = match *path {
            b"." => dir.to_owned(),
            path => dir.join(std::ffi::OsStr::from_bytes(path)),
        };
        nix::sys::stat::lstat(&path).is_ok_and(|stat| {
            let stamp = Stamp::of(&stat);
            stamp.text.split_once(' ').map(|(_, now)| now.as_bytes()) == Some(*times)
        })
    })
}

/// `Err(reason)` when the `listed` files (stat text, relative path) are not `files` as they
/// are now; the inner error when a file cannot be stat'ed.
pub(super) fn check_fresh(
    dir: &Path,
    files: &[PathBuf],
    listed: &[(&[u8], &[u8])],
) -> Result<Result<(), ScanError>, String> {
    let same_names = files.len() == listed.len()
        && files
            .iter()
            .zip(listed)
            .all(|(file, (_, path))| relative(dir, file) == *path);
    if !same_names {
        let listed_paths: std::collections::HashSet<&[u8]> =
            listed.iter().map(|(_, path)| *path).collect();
        let present: std::collections::HashSet<&[u8]> =
            files.iter().map(|file| relative(dir, file)).collect();
        let show = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
        if let Some(added) = files
            .iter()
            .map(|file| relative(dir, file))
            .find(|path| !listed_paths.contains(path))
        {
            return Err(format!("`{}` was added since it was written", show(added)));
        }
        if let Some((_, removed)) = listed.iter().find(|(_, path)| !present.contains(path)) {
            return Err(format!(
                "`{}` was removed since it was written",
                show(removed)
            ));
        }
        return Err("its file listing is not in the order of the files".to_owned());
    }
    // Compared where they are taken, in each thread's buffer: tens of thousands of stamps.
    let same = in_parallel(files, |opener, buffer, index, path| {
        let stat = opener.stat(path).map_err(|source| ScanError::Read {
            path: path.to_owned(),
            source,
        })?;
        buffer.clear();
        write_stamp(buffer, &stat);
        Ok(buffer.as_slice() == listed[index].0)
    });
    for ((file, same), (recorded, _)) in files.iter().zip(same).zip(listed) {
        match same {
            Ok(true) => {}
            Ok(false) => {
                let now = stamps(std::slice::from_ref(file))
                    .pop()
                    .and_then(Result::ok)
                    .map_or_else(String::new, |stamp| stamp.text);
                return Err(format!(
                    "`{}` changed since it was written (size, modification and change times `{now}`, indexed `{}`)",
                    String::from_utf8_lossy(relative(dir, file)),
                    String::from_utf8_lossy(recorded)
                ));
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

/// `SIZE MTIME CTIME`, times as `SECONDS.NANOSECONDS`.
pub(super) fn write_stamp(out: &mut Vec<u8>, stat: &nix::sys::stat::FileStat) {
    use std::io::Write as _;
    // Writing to a `Vec` cannot fail.
    let _ = write!(
        out,
        "{} {}.{:09} {}.{:09}",
        stat.st_size, stat.st_mtime, stat.st_mtime_nsec, stat.st_ctime, stat.st_ctime_nsec
    );
}

/// A file's or directory's `SIZE MTIME CTIME`, and its change time.
pub(super) struct Stamp {
    pub(super) text: String,
    pub(super) changed: (i64, i64),
}

impl Stamp {
    /// The stamp of `stat`.
    pub(super) fn of(stat: &nix::sys::stat::FileStat) -> Stamp {
        let mut text = Vec::new();
        write_stamp(&mut text, stat);
        Stamp {
            text: String::from_utf8_lossy(&text).into_owned(),
            changed: change_time(stat),
        }
    }
}

/// The change time of `stat` (seconds, nanoseconds).
pub(super) fn change_time(stat: &nix::sys::stat::FileStat) -> (i64, i64) {
    (stat.st_ctime, stat.st_ctime_nsec)
}

/// The [`Stamp`] of each of `paths`, on every core.
pub(super) fn stamps(paths: &[PathBuf]) -> Vec<Result<Stamp, ScanError>> {
    in_parallel(paths, |opener, _, _, path| {
        let stat = opener.stat(path).map_err(|source| ScanError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Stamp::of(&stat))
    })
}

/// `path` relative to `dir`, as bytes: the database walk yields `dir` joined with the rest.
pub(super) fn relative<'a>(dir: &Path, path: &'a Path) -> &'a [u8] {
    let path = path.as_os_str().as_bytes();
    match path.strip_prefix(dir.as_os_str().as_bytes()) {
        Some(rest) => rest.strip_prefix(b"/").unwrap_or(rest),
        None => path,
    }
}
