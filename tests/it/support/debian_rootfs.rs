//! The Debian bookworm base the end-to-end tests share: a `debootstrap --variant=minbase`
//! root filesystem with CPython 3.11, made once per machine and cached as a tar.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{require_tool, run_ok};

/// A Debian bookworm minbase rootfs with python3 as an uncompressed tar, made once per machine
/// by debootstrap (as root) and kept in `$XDG_CACHE_HOME/kiln-tests` (else
/// `~/.cache/kiln-tests`). The tests of a run share it: the first caller makes it, the others
/// wait for it.
pub fn debian_rootfs_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(cached_debian_rootfs_tar).clone()
}

fn cached_debian_rootfs_tar() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("kiln-tests");
    let tar = cache.join("debian-bookworm-minbase-python3.tar");
    if tar.is_file() {
        return tar;
    }
    require_tool("debootstrap");
    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "debootstrap needs root to make the Debian rootfs once (then it is cached at {})",
        tar.display()
    );
    std::fs::create_dir_all(&cache).unwrap();
    let scratch = tempfile::tempdir_in(&cache).unwrap();
    let rootfs = scratch.path().join("rootfs");
    // No mirror argument: debootstrap uses its own default, like apt's configuration would.
    run_ok(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include=python3", "bookworm"])
            .arg(&rootfs),
    );
    let partial = scratch.path().join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&partial)
            .args([
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./var/cache/apt/*",
                "--exclude=./var/lib/apt/lists/*",
                ".",
            ]),
    );
    std::fs::rename(&partial, &tar).unwrap();
    tar
}
