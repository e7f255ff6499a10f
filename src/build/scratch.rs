//! A build's scratch directory, `<cache>/tmp/build-*`: made and locked for the life of the
//! build, and the sweep that removes the scratch of builds that were killed.
//!
//! A live build holds an exclusive `flock` on its scratch directory; the kernel drops it when
//! the process dies, however it dies. The next build sweeps every `build-*` whose lock it can
//! take. So that a sweep never sees a new scratch directory in the instant between its creation
//! and its lock, builds create and lock theirs under a shared lock on `tmp/`, and the sweep
//! takes the exclusive one; the sweep only renames the dead directories aside (`dead-*`) while
//! it holds it, and removes them after, so a long removal never delays another build's start.

use std::path::{Path, PathBuf};

use crate::lock::DirLock;

/// A build's scratch directory, removed when dropped (after the sandbox's part of it).
pub(super) struct BuildScratch {
    /// Declared first, so it is removed first (it may hold files of subordinate ids).
    pub sandbox: crate::sandbox::ScratchDir,
    pub dir: tempfile::TempDir,
    /// Held until the directory is gone.
    _lock: DirLock,
}

/// Makes and locks a new `root/build-*` after removing those of dead builds.
pub(super) fn create(root: &Path) -> std::io::Result<BuildScratch> {
    std::fs::create_dir_all(root)?;
    let dead = sweep(root);
    let (dir, lock) = {
        let _creating = DirLock::shared(root)?;
        let dir = tempfile::Builder::new().prefix("build-").tempdir_in(root)?;
        let lock = DirLock::exclusive(dir.path())?;
        (dir, lock)
    };
    for (path, lock) in dead {
        // Its sandbox part may hold files of subordinate ids: removed as the sandbox does.
        // The lock, kept until it is gone, stops another build from removing it at once.
        drop(crate::sandbox::ScratchDir::new(path));
        drop(lock);
    }
    Ok(BuildScratch {
        sandbox: crate::sandbox::ScratchDir::new(dir.path().join("sandbox")),
        dir,
        _lock: lock,
    })
}

/// Renames the scratch directories of dead builds (and finds those an earlier sweep renamed
/// but did not finish removing); returns the paths to remove, each locked. Best effort: a
/// failure leaves the directory for the next build.
fn sweep(root: &Path) -> Vec<(PathBuf, DirLock)> {
    let Ok(_exclusive) = DirLock::exclusive(root) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dead = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("dead-") {
            // Being removed by another build, or left by one killed while removing it.
            if let Ok(Some(lock)) = DirLock::try_exclusive(&path) {
                dead.push((path, lock));
            }
            continue;
        }
        if !name.starts_with("build-") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(Some(lock)) = DirLock::try_exclusive(&path) {
            let aside = root.join(format!("dead-{}", &name["build-".len()..]));
            if std::fs::rename(&path, &aside).is_ok() {
                dead.push((aside, lock));
            }
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_build_removes_a_dead_builds_scratch_never_a_live_one() {
        let root = tempfile::tempdir().unwrap();
        let live = create(root.path()).unwrap();
        std::fs::write(live.dir.path().join("file"), b"in use").unwrap();
        // A killed build's scratch: present, unlocked.
        let killed = root.path().join("build-killed");
        std::fs::create_dir_all(killed.join("sandbox/rootfs")).unwrap();
        std::fs::write(killed.join("sandbox/rootfs/f"), b"x").unwrap();

        let next = create(root.path()).unwrap();
        assert!(
            !killed.exists(),
            "the killed build's scratch was not removed"
        );
        assert!(
            live.dir.path().join("file").is_file(),
            "a live scratch was removed"
        );
        let mut names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        drop(next);
        drop(live);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
