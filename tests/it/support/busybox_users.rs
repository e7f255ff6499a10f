//! A static busybox with the user applets (`adduser`, `addgroup`, `deluser`, `delgroup`) and
//! Alpine's settings for them (`FIRST_SYSTEM_ID=100`, `LAST_SYSTEM_ID=999`, `LAST_ID=256000`,
//! shadow passwords, name checks), for the users oracle: Debian's busybox-static leaves the user
//! applets out. Built once per machine from Debian's busybox source package (`apt-get source`,
//! which needs deb-src lists; `.ci/run` enables them) and kept in `$XDG_CACHE_HOME/kiln-tests`
//! (else `~/.cache/kiln-tests`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{require_tool, run_ok};

/// The applets the binary has; link each to it in a rootfs.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "adduser", "addgroup", "deluser", "delgroup", "echo", "true",
];

/// Options switched on over `make allnoconfig`.
const ENABLED: &[&str] = &[
    "STATIC",
    "ADDUSER",
    "ADDGROUP",
    "DELUSER",
    "DELGROUP",
    "FEATURE_ADDUSER_TO_GROUP",
    "FEATURE_DEL_USER_FROM_GROUP",
    "FEATURE_SHADOWPASSWDS",
    "FEATURE_CHECK_NAMES",
    "USE_BB_PWD_GRP",
    "USE_BB_SHADOW",
    "LONG_OPTS",
    "ASH",
    "SH_IS_ASH",
    "ECHO",
    "TRUE",
];

/// Numeric options, as Alpine sets them.
const NUMBERS: &[(&str, &str)] = &[
    ("LAST_ID", "256000"),
    ("FIRST_SYSTEM_ID", "100"),
    ("LAST_SYSTEM_ID", "999"),
];

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("kiln-tests")
}

/// The built binary, made on first use (once per run: concurrent callers wait for it).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(cached_binary).clone()
}

fn cached_binary() -> PathBuf {
    let cache = cache_dir();
    let binary = cache.join("busybox-users");
    if binary.is_file() {
        return binary;
    }
    require_tool("apt-get");
    require_tool("dpkg-source");
    require_tool("make");
    require_tool("gcc");
    require_tool("bzip2");
    std::fs::create_dir_all(&cache).unwrap();
    let scratch = tempfile::tempdir_in(&cache).unwrap();
    let output = Command::new("apt-get")
        .args(["source", "--download-only", "-q", "busybox"])
        .current_dir(scratch.path())
        .output()
        .expect("failed to start apt-get");
    assert!(
        output.status.success(),
        "`apt-get source busybox` failed (the users oracle builds busybox's user applets from \
         Debian's source package; `.ci/run` enables deb-src lists):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let orig = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".orig.tar"))
        })
        .expect("apt-get source fetched the upstream tarball");
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&orig)
            .arg("-C")
            .arg(scratch.path()),
    );
    let source = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("the tarball holds the source directory");
    build(&source);
    std::fs::rename(source.join("busybox"), &binary).unwrap();
    binary
}

fn build(source: &Path) {
    run_ok(Command::new("make").arg("allnoconfig").current_dir(source));
    let config_path = source.join(".config");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    for option in ENABLED {
        config = config.replace(
            &format!("# CONFIG_{option} is not set\n"),
            &format!("CONFIG_{option}=y\n"),
        );
    }
    for (option, value) in NUMBERS {
        config = config.replace(
            &format!("CONFIG_{option}=0\n"),
            &format!("CONFIG_{option}={value}\n"),
        );
    }
    std::fs::write(&config_path, config).unwrap();
    // Answer every new question with its default.
    run_ok(
        Command::new("sh")
            .args(["-c", "yes '' | make oldconfig"])
            .current_dir(source),
    );
    let config = std::fs::read_to_string(&config_path).unwrap();
    for option in ENABLED {
        assert!(
            config.contains(&format!("CONFIG_{option}=y\n")),
            "busybox's configuration did not take CONFIG_{option}"
        );
    }
    run_ok(Command::new("make").arg("-j2").current_dir(source));
}
