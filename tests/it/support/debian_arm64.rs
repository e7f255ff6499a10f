//! The arm64 Debian bookworm base the foreign-platform tests share: `debootstrap --foreign
//! --arch arm64 --variant=minbase`, whose second stage then runs as a RUN of a kiln build for
//! linux/arm64 (through the sandbox's own binfmt_misc and qemu-aarch64-static), made once per
//! machine and cached as an OCI layout. Also the way to run a tool under emulation in a
//! private user namespace with its own binfmt_misc, for the oracles.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{kiln_ok, require_tool, run_ok};

/// The tag of the cached layout's image.
pub const TAG: &str = "latest";

/// An OCI layout (tag [`TAG`]) of Debian bookworm minbase for linux/arm64, made once per machine
/// (debootstrap needs root) and kept in `$XDG_CACHE_HOME/kiln-tests` (else
/// `~/.cache/kiln-tests`).
pub fn debian_arm64_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(cached_layout).clone()
}

fn cached_layout() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("kiln-tests");
    let layout = cache.join("debian-bookworm-arm64-minbase-oci");
    if layout.join("index.json").is_file() {
        return layout;
    }
    require_tool("debootstrap");
    require_tool("qemu-aarch64-static");
    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "debootstrap needs root to make the arm64 Debian base once (then it is cached at {})",
        layout.display()
    );
    std::fs::create_dir_all(&cache).unwrap();
    let scratch = tempfile::tempdir_in(&cache).unwrap();
    let rootfs = scratch.path().join("rootfs");
    // No mirror argument: debootstrap uses its own default, like apt's configuration would.
    run_ok(
        Command::new("debootstrap")
            .args([
                "--foreign",
                "--arch",
                "arm64",
                "--variant=minbase",
                "bookworm",
            ])
            .arg(&rootfs),
    );
    // The first stage leaves /proc as a symbolic link to the host's; the image has a directory.
    std::fs::remove_file(rootfs.join("proc")).unwrap();
    std::fs::create_dir(rootfs.join("proc")).unwrap();
    let context = scratch.path().join("context");
    std::fs::create_dir(&context).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(context.join("rootfs.tar"))
            .args([
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                ".",
            ]),
    );
    // container=lxc: debootstrap then skips its mknod check (the sandbox's /dev is given).
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nADD rootfs.tar /\n\
         RUN container=lxc /debootstrap/debootstrap --second-stage \
         && rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*\n",
    )
    .unwrap();
    let partial = scratch.path().join("layout");
    kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--platform",
        "linux/arm64",
        "--cache-dir",
        scratch.path().join("cache").to_str().unwrap(),
        "-t",
        &format!("debian:{TAG}"),
        "--provenance=false",
        "--sbom=false",
        "-o",
        &format!("type=oci,dest={}", partial.display()),
        context.to_str().unwrap(),
    ]);
    std::fs::rename(&partial, &layout).unwrap();
    layout
}

/// Runs `script` with `sh -c` as root of a new user namespace that maps ids 0-65535 to the
/// same host ids (so owners survive), in a new mount namespace with a binfmt_misc of its own
/// where qemu-aarch64-static is registered: arm64 programs run there, and the host's
/// binfmt_misc is never touched. Needs root (it writes the maps itself); returns stdout.
pub fn run_with_own_binfmt(script: &str, env: &[(&str, &str)]) -> String {
    let qemu = require_tool("qemu-aarch64-static");
    let entry = std::fs::read_to_string("/usr/share/binfmts/qemu-aarch64").expect(
        "qemu-user-static's /usr/share/binfmts/qemu-aarch64 (apt-get install qemu-user-static)",
    );
    let field = |key: &str| {
        entry
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in the qemu-aarch64 binfmt entry"))
            .to_owned()
    };
    let registration = format!(
        ":qemu-aarch64:M:0:{}:{}:{}:FPC",
        field("magic"),
        field("mask"),
        qemu.display()
    );
    let work = tempfile::tempdir().unwrap();
    let ready = work.path().join("ready");
    let go = work.path().join("go");
    run_ok(Command::new("mkfifo").arg(&go));
    // The shell waits until the maps are written, then mounts and registers.
    let wrapper = format!(
        "echo $$ > {ready}.tmp && mv {ready}.tmp {ready} && read _ < {go} && \
         mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && \
         printf '%s' \"$KILN_TEST_BINFMT\" > /proc/sys/fs/binfmt_misc/register && \
         exec sh -c \"$KILN_TEST_SCRIPT\"",
        ready = ready.display(),
        go = go.display(),
    );
    let mut command = Command::new(require_tool("unshare"));
    command
        .args(["--user", "--mount", "--fork", "sh", "-c", &wrapper])
        .env("KILN_TEST_BINFMT", &registration)
        .env("KILN_TEST_SCRIPT", script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            break text.trim().to_owned();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the namespace's shell did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), "0 0 65536\n").unwrap();
    std::fs::write(format!("/proc/{pid}/gid_map"), "0 0 65536\n").unwrap();
    std::fs::write(&go, "go\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "`{script}` with its own binfmt_misc failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names and contents of the host's binfmt_misc entries (empty when it is not mounted).
pub fn host_binfmt_misc() -> Vec<(String, String)> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let mut entries: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let text = if name == "register" {
                        String::new()
                    } else {
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    };
                    (name, text)
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}
