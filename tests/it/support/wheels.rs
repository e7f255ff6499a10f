//! Real wheels for the Python tests: downloaded once by the host's pip (which knows its own
//! index; kiln's repository names none) into `<target>/test-wheels/<platform>`, and reused.
//! A missing pip or an unreachable index fails the test that needs them, never skips it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The app's pinned requirements (with hashes for musllinux and manylinux wheels).
pub const SEED_REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/app/requirements.txt");

/// The directory holding the seed's wheels for `platform` (`musllinux_1_2_x86_64`), plus, for
/// musllinux, psutil (a cp36-abi3 extension module). Callers wait while another downloads, so
/// a run downloads each platform once.
pub fn seed_wheel_dir(platform: &str) -> PathBuf {
    static DOWNLOADING: Mutex<()> = Mutex::new(());
    let _guard = DOWNLOADING.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_owned();
    let dir = target_dir.join("test-wheels").join(platform);
    if dir.join(".complete").exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("create the wheel cache");
    let download = |abi: &str, what: &[&std::ffi::OsStr]| {
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "download",
            ])
            .args([
                "--only-binary=:all:",
                "--platform",
                platform,
                "--python-version",
                "3.11",
            ])
            .args(["--implementation", "cp", "--abi", abi, "--no-deps", "-d"])
            .arg(&dir)
            .args(what)
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
            });
        assert!(
            output.status.success(),
            "pip download failed; this test needs pip and the package index pip is configured \
             for:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    download("cp311", &["-r".as_ref(), SEED_REQUIREMENTS.as_ref()]);
    if platform.starts_with("musllinux") {
        // The abi3 extension the Alpine tests install; psutil 7.2.2 has no manylinux_2_17 wheel.
        download("abi3", &["psutil==7.2.2".as_ref()]);
    }
    std::fs::write(dir.join(".complete"), b"").expect("mark the wheel cache");
    dir
}
