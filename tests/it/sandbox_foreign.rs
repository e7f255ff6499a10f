//! RUN for a foreign platform: on this amd64 machine a RUN of a linux/arm64 build runs its
//! programs through qemu-aarch64-static, registered in the sandbox's own binfmt_misc (Linux 6.7
//! and later), with nothing registered on the host. On the arm64 Debian base
//! ([`debian_arm64`]): `uname -m` says aarch64, as root and as an unprivileged user; an
//! `apt-get install` installs the same package files buildah's `bud --isolation chroot
//! --platform linux/arm64` does (buildah run in a private user namespace with its own
//! binfmt_misc); a RUN for an architecture with no interpreter fails before anything runs,
//! naming the step, the platform and the fix.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::support::debian_arm64::{self, debian_arm64_layout, host_binfmt_misc};
use crate::support::{hex, kiln, last_layer, layer_listing, layout_image, require_tool};

/// A directory everyone may read and enter (uid 1000 builds there), removed when dropped.
struct OpenDir(PathBuf);

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_tempdir(name: &str) -> OpenDir {
    let dir = std::env::temp_dir().join(format!("kiln-foreign-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    OpenDir(dir)
}

fn write_context(dir: &Path, dockerfile: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("Dockerfile"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

fn layer_file(blob: &Path, wanted: &str) -> Vec<u8> {
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == wanted {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            return content;
        }
    }
    panic!("{wanted} is not in {}", blob.display())
}

fn build(context: &Path, work: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "build".to_owned(),
        "--progress".to_owned(),
        "plain".to_owned(),
        "--platform".to_owned(),
        "linux/arm64".to_owned(),
        "--cache-dir".to_owned(),
        work.join("cache").display().to_string(),
        "-o".to_owned(),
        format!("type=oci,dest={}", work.join("out").display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(context.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln(&refs)
}

fn assert_success(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kiln build failed ({}):\n{stderr}",
        output.status
    );
    stderr
}

const UNAME: &str = "RUN uname -m > /arch\n";

#[test]
fn arm64_run_says_aarch64_and_the_host_binfmt_misc_is_unchanged() {
    require_tool("qemu-aarch64-static");
    let base = debian_arm64_layout();
    let work = open_tempdir("uname");
    let context = work.0.join("context");
    write_context(
        &context,
        &format!("FROM oci:{}:{}\n{UNAME}", base.display(), debian_arm64::TAG),
    );
    let before = host_binfmt_misc();
    assert_success(&build(&context, &work.0, &["--no-cache"]));
    assert_eq!(
        host_binfmt_misc(),
        before,
        "the build changed the host's binfmt_misc"
    );
    let out = work.0.join("out");
    let listing = layer_listing(&last_layer(&out));
    assert_eq!(listing.len(), 1, "{listing:#?}");
    assert!(
        listing["arch"].ends_with(&hex(&sha2::Sha256::digest(b"aarch64\n"))),
        "{listing:#?}"
    );
    let (_, config) = layout_image(&out);
    assert_eq!(config["architecture"], "arm64");
}

#[test]
fn an_unprivileged_user_runs_arm64_programs_too() {
    require_tool("qemu-aarch64-static");
    let base = debian_arm64_layout();
    let work = open_tempdir("uid1000");
    // The cached base is root's: a copy uid 1000 can read.
    let copy = readable_copy(&base, &work.0.join("base"));
    let context = work.0.join("context");
    write_context(
        &context,
        &format!(
            "FROM oci:{}:{}\nRUN id -u > /who && uname -m > /arch\n",
            copy.display(),
            debian_arm64::TAG
        ),
    );
    let home = work.0.join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
    let before = host_binfmt_misc();
    let output = Command::new(require_tool("setpriv"))
        .args(["--reuid=1000", "--regid=1000", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--progress", "plain", "--platform", "linux/arm64"])
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .arg("-o")
        .arg(format!("type=oci,dest={}", home.join("out").display()))
        .arg(&context)
        .env("HOME", &home)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_success(&output);
    assert_eq!(host_binfmt_misc(), before);
    let listing = layer_listing(&last_layer(&home.join("out")));
    assert!(
        listing["arch"].ends_with(&hex(&sha2::Sha256::digest(b"aarch64\n"))),
        "{listing:#?}"
    );
    // Root inside the sandbox, whoever runs kiln.
    assert!(
        listing["who"].ends_with(&hex(&sha2::Sha256::digest(b"0\n"))),
        "{listing:#?}"
    );
}

/// A copy of the layout `base` at `copy` that everyone can read, its blobs hard-linked where
/// possible.
fn readable_copy(base: &Path, copy: &Path) -> PathBuf {
    for dir in ["", "blobs", "blobs/sha256"] {
        std::fs::create_dir_all(copy.join(dir)).unwrap();
        std::fs::set_permissions(copy.join(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for entry in walk_files(base) {
        let target = copy.join(entry.strip_prefix(base).unwrap());
        if std::fs::hard_link(&entry, &target).is_err() {
            std::fs::copy(&entry, &target).unwrap();
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    copy.to_owned()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_run_for_an_architecture_without_interpreter_fails_before_running() {
    let work = open_tempdir("no-qemu");
    let empty = work.0.join("no-qemu-here");
    std::fs::create_dir(&empty).unwrap();
    let context = work.0.join("context");
    write_context(&context, "FROM scratch\nRUN [\"/bin/true\"]\n");
    let before = host_binfmt_misc();
    let output = kiln(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/s390x",
        "--qemu-dir",
        empty.to_str().unwrap(),
        "--cache-dir",
        work.0.join("cache").to_str().unwrap(),
        "-o",
        &format!("type=oci,dest={}", work.0.join("out").display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for wanted in [
        "Dockerfile:2",
        "linux/s390x",
        "qemu-s390x-static",
        "install qemu-user-static",
        "--qemu-dir",
    ] {
        assert!(stderr.contains(wanted), "`{wanted}` missing:\n{stderr}");
    }
    assert!(!work.0.join("out").exists(), "an output was written");
    assert_eq!(host_binfmt_misc(), before);
}

/// The files `apt-get install hello` adds for arm64, from the Debian mirror debootstrap uses
/// (`--network host`), against buildah's build of the same Dockerfile under emulation.
#[test]
fn arm64_apt_get_install_installs_what_buildah_installs() {
    let buildah = require_tool("buildah");
    require_tool("qemu-aarch64-static");
    let work = open_tempdir("apt");
    // buildah takes an `oci:` path as a reference: no component may start with a dot.
    let base = readable_copy(&debian_arm64_layout(), &work.0.join("base"));
    let context = work.0.join("context");
    write_context(
        &context,
        &format!(
            "FROM oci:{}:{}\nRUN apt-get update -qq && apt-get install -y -qq \
             --no-install-recommends hello && hello > /greeting\n",
            base.display(),
            debian_arm64::TAG
        ),
    );
    let before = host_binfmt_misc();
    assert_success(&build(&context, &work.0, &["--network", "host"]));
    let ours = layer_listing(&last_layer(&work.0.join("out")));

    let storage = work.0.join("buildah");
    let buildah_out = work.0.join("buildah-out");
    let storage_args = format!(
        "--root {root} --runroot {run} --storage-driver vfs",
        root = storage.join("root").display(),
        run = storage.join("run").display()
    );
    debian_arm64::run_with_own_binfmt(
        &format!(
            "{buildah} {storage_args} bud --isolation chroot --network host --platform \
             linux/arm64 -t foreign-apt {context} >&2 && {buildah} {storage_args} push \
             foreign-apt oci:{out}:latest >&2",
            buildah = buildah.display(),
            context = context.display(),
            out = buildah_out.display()
        ),
        &[],
    );
    assert_eq!(host_binfmt_misc(), before);
    let theirs = layer_listing(&last_layer(&buildah_out));

    // The package's files: the program, its documentation and translations.
    let package = |listing: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        listing
            .iter()
            .filter(|(path, _)| {
                path.starts_with("usr/bin/hello") || path.starts_with("usr/share/doc/hello")
            })
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect()
    };
    let (ours_package, theirs_package) = (package(&ours), package(&theirs));
    assert!(
        ours_package.contains_key("usr/bin/hello"),
        "hello was not installed: {ours:#?}"
    );
    assert_eq!(ours_package, theirs_package);
    assert_eq!(ours["greeting"], theirs["greeting"]);
    // An arm64 program (ELF e_machine 183, EM_AARCH64), from the arm64 archive.
    let hello = layer_file(&last_layer(&work.0.join("out")), "usr/bin/hello");
    assert_eq!(&hello[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([hello[18], hello[19]]), 183);
}
