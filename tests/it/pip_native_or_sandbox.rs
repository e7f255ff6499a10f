//! Native or sandboxed `RUN pip install`: kiln installs natively only when the pip the RUN's
//! PATH finds is the detected interpreter's own, refuses as pip does under PEP 668, and
//! otherwise runs the real pip in the sandbox and says why in the build output.
//!
//! The library half checks the decisions on in-memory stages: PEP 668's `EXTERNALLY-MANAGED`
//! (refused in pip's words; `--break-system-packages`, `PIP_BREAK_SYSTEM_PACKAGES`, `--target`
//! and `--prefix` pass), a virtualenv's pip, Debian's Python, no pip, and an sdist-only pin.
//! The end-to-end half builds on a busybox-static rootfs with a stand-in virtualenv whose `pip`
//! is a shell script (the image has no real Python), with kiln and with `buildah bud
//! --isolation chroot`: the RUN layers must be identical and kiln's output must say that pip
//! ran in the sandbox and why; with no pip on PATH both builds fail.
//!
//! busybox-static and buildah are required; a missing one fails the test.

use crate::support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::image::platform::Platform;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::MemFs;
use kiln::steps::pip::{PipError, PipRequest, pip_install, sandbox_reason};
use sha2::Digest as _;
use support::*;

fn put(diff: &mut Diff, at: &str, kind: EntryKind, mode: u32) {
    diff.insert(
        LayerPath::new(at).unwrap(),
        Entry {
            kind,
            meta: Metadata::root_owned(mode),
        },
    );
}

fn text(data: &str) -> EntryKind {
    EntryKind::File(FileContent::Bytes(data.as_bytes().into()))
}

/// A python:3.11-alpine-like stage (its pip in /usr/local/bin) plus `extra` files.
fn stage(extra: &[(&str, &str)]) -> MemFs {
    let mut diff = Diff::new();
    put(
        &mut diff,
        "lib/ld-musl-x86_64.so.1",
        text("\x7fELF\0musl\x001.2.5\0"),
        0o755,
    );
    put(
        &mut diff,
        "usr/local/bin/python3.11",
        text("\x7fELF"),
        0o755,
    );
    put(
        &mut diff,
        "usr/local/bin/pip",
        text("#!/usr/local/bin/python3.11\n"),
        0o755,
    );
    put(
        &mut diff,
        "usr/local/lib/python3.11/site-packages/pip",
        EntryKind::Dir,
        0o755,
    );
    put(
        &mut diff,
        "etc/passwd",
        text("root:x:0:0:root:/root:/bin/sh\n"),
        0o644,
    );
    put(&mut diff, "etc/group", text("root:x:0:root\n"), 0o644);
    put(&mut diff, "root", EntryKind::Dir, 0o700);
    for (path, content) in extra {
        let mode = if path.contains("/bin/") { 0o755 } else { 0o644 };
        put(&mut diff, path, text(content), mode);
    }
    MemFs::from_diff(&diff)
}

fn install(fs: &MemFs, args: &str, env: &[(&str, &str)]) -> Result<(), Box<PipError>> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env_fn = |name: &str| env.get(name).cloned();
    let work = tempfile::tempdir().unwrap();
    let words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    pip_install(
        &words,
        &PipRequest {
            fs,
            workdir: "/",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", "amd64", None),
            source_date_epoch: 0,
            scratch_dir: work.path(),
            cache_dir: work.path(),
            offline: false,
        },
    )
    .map(|_| ())
    .map_err(Box::new)
}

fn reason(fs: &MemFs, launcher: &str, env: &[(&str, &str)]) -> Option<String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env_fn = |name: &str| env.get(name).cloned();
    let work = tempfile::tempdir().unwrap();
    sandbox_reason(
        launcher,
        &PipRequest {
            fs,
            workdir: "/",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", "amd64", None),
            source_date_epoch: 0,
            scratch_dir: work.path(),
            cache_dir: work.path(),
            offline: false,
        },
    )
    .unwrap()
}

/// The marker's Error text (ours, in the format PEP 668 gives).
const MARKER: &str = "[externally-managed]\nError=This Python belongs to the image's \
                      distribution.\n Install its packages with the distribution's tools,\n or \
                      make a virtual environment.\n";

#[test]
fn pep_668_refuses_as_pip_does_and_its_overrides_pass() {
    let fs = stage(&[("usr/local/lib/python3.11/EXTERNALLY-MANAGED", MARKER)]);
    let err = install(&fs, "six==1.16.0", &[]).unwrap_err().to_string();
    for want in [
        "error: externally-managed-environment",
        "× This environment is externally managed",
        "╰─> This Python belongs to the image's distribution.\n    Install its packages with the \
         distribution's tools,\n    or make a virtual environment.",
        "by passing --break-system-packages",
        "/usr/local/lib/python3.11/EXTERNALLY-MANAGED",
    ] {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
    // --user installs into the same environment: refused too, as pip does.
    let err = install(&fs, "--user six==1.16.0", &[]).unwrap_err();
    assert!(matches!(*err, PipError::ExternallyManaged { .. }), "{err}");
    // The overrides pass the check (and stop at the next thing: no index configured).
    for (args, env) in [
        ("--break-system-packages six==1.16.0", &[][..]),
        ("six==1.16.0", &[("PIP_BREAK_SYSTEM_PACKAGES", "1")][..]),
        ("--target /opt/deps six==1.16.0", &[][..]),
        ("--prefix /opt/deps six==1.16.0", &[][..]),
    ] {
        let err = install(&fs, args, env).unwrap_err();
        assert!(matches!(*err, PipError::NoSources), "{args} {env:?}: {err}");
    }
    // No marker: no refusal.
    let err = install(&stage(&[]), "six==1.16.0", &[]).unwrap_err();
    assert!(matches!(*err, PipError::NoSources), "{err}");
}

#[test]
fn the_image_decides_native_or_sandbox() {
    let official = stage(&[]);
    assert_eq!(reason(&official, "pip", &[]), None);
    assert_eq!(reason(&official, "python3.11", &[]), None);
    // `python -m pip` also sees distributions in the working directory (here `/`).
    let in_workdir = stage(&[(
        "mypkg-1.0.dist-info/METADATA",
        "Name: mypkg\nVersion: 1.0\n",
    )]);
    assert_eq!(reason(&in_workdir, "pip", &[]), None);
    assert_eq!(
        reason(&in_workdir, "python3.11", &[]).as_deref(),
        Some(
            "`python3.11 -m pip` also sees the distributions in the working directory / \
             (mypkg-1.0.dist-info), which kiln's native step does not read"
        )
    );
    let venv = stage(&[
        ("venv/pyvenv.cfg", "home = /usr/local/bin\n"),
        ("venv/bin/pip", "#!/venv/bin/python\n"),
    ]);
    assert_eq!(
        reason(&venv, "/venv/bin/pip", &[]).as_deref(),
        Some("the image's /venv/bin/pip is a virtualenv's (/venv)")
    );
    // `ENV PATH=/venv/bin:$PATH` makes plain `pip` the virtualenv's.
    let path = [("PATH", "/venv/bin:/usr/local/bin:/usr/bin:/bin")];
    assert!(reason(&venv, "pip", &path).is_some_and(|r| r.contains("virtualenv's")));
    assert!(
        reason(&official, "pip3", &[]).is_some_and(|r| r.contains("no `pip3` on PATH")),
        "no pip3 in the image"
    );
    let mut debian = Diff::new();
    put(
        &mut debian,
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        text("GNU C Library (Debian GLIBC 2.36-9+deb12u9) stable release version 2.36.\n"),
        0o755,
    );
    put(
        &mut debian,
        "lib",
        EntryKind::Symlink("usr/lib".into()),
        0o777,
    );
    put(&mut debian, "usr/bin/python3.11", text("\x7fELF"), 0o755);
    put(
        &mut debian,
        "usr/bin/pip",
        text("#!/usr/bin/python3\n"),
        0o755,
    );
    put(
        &mut debian,
        "usr/bin/python3",
        EntryKind::Symlink("python3.11".into()),
        0o777,
    );
    put(
        &mut debian,
        "usr/lib/python3/dist-packages/pip",
        EntryKind::Dir,
        0o755,
    );
    put(
        &mut debian,
        "etc/passwd",
        text("root:x:0:0:root:/root:/bin/sh\n"),
        0o644,
    );
    put(&mut debian, "root", EntryKind::Dir, 0o700);
    let debian = MemFs::from_diff(&debian);
    // Its pip is the interpreter's own, but an install into its prefix follows Debian's scheme.
    assert_eq!(reason(&debian, "pip", &[]), None);
    let err = install(&debian, "six==1.16.0", &[]).unwrap_err();
    assert_eq!(
        err.sandbox_reason().as_deref(),
        Some(
            "the image's pip belongs to Debian's Python (/usr/bin/python3.11), which installs \
             into /usr/local/lib/python3.11/dist-packages"
        ),
        "{err}"
    );
    // --user is the same scheme on Debian: native (it stops at the missing index).
    let err = install(&debian, "--user six==1.16.0", &[]).unwrap_err();
    assert!(matches!(*err, PipError::NoSources), "{err}");
}

#[test]
fn an_sdist_only_pin_goes_to_the_sandbox() {
    let links = tempfile::tempdir().unwrap();
    std::fs::write(links.path().join("onlysdist-1.0.tar.gz"), b"an sdist").unwrap();
    let dir = links.path().display().to_string();
    let err = install(
        &stage(&[]),
        "onlysdist==1.0",
        &[("PIP_FIND_LINKS", dir.as_str())],
    )
    .unwrap_err();
    assert_eq!(
        err.sandbox_reason().as_deref(),
        Some("`onlysdist` 1.0 is only available as a source distribution, which pip builds"),
        "{err}"
    );
    // A missing version is a refusal, not a reason to run pip.
    let err = install(
        &stage(&[]),
        "onlysdist==2.0",
        &[("PIP_FIND_LINKS", dir.as_str())],
    )
    .unwrap_err();
    assert_eq!(err.sandbox_reason(), None, "{err}");
}

// End to end, against buildah.

/// A fresh world-readable directory for one test (tests of a run share the process).
fn open_tempdir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-pip-sandbox-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A busybox rootfs with python:3.11-alpine's shape (musl loader, an interpreter stand-in) and
/// a virtualenv in /venv whose `pip` is a shell script recording its arguments.
fn venv_rootfs(context: &Path) {
    let busybox = busybox();
    let root = context.join("rootfs");
    for sub in ["bin", "tmp", "root", "proc", "dev", "sys", "run", "lib"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = run_ok(Command::new(&busybox).arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    write_files(
        &root,
        &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
            ("etc/hosts", "127.0.0.1 localhost\n"),
            ("etc/hostname", "base\n"),
            ("etc/resolv.conf", ""),
            ("lib/ld-musl-x86_64.so.1", "musl\u{0}1.2.5\u{0}"),
            ("usr/local/bin/python3.11", "#!/bin/sh\nexit 127\n"),
            ("venv/pyvenv.cfg", "home = /usr/local/bin\n"),
            (
                "venv/bin/pip",
                "#!/bin/sh\nmkdir -p /venv/lib/python3.11/site-packages\n\
                 echo \"$@\" > /venv/lib/python3.11/site-packages/installed-by-venv-pip\n",
            ),
        ],
    );
    symlink("/usr/local/bin/python3.11", root.join("venv/bin/python")).unwrap();
    for exe in ["venv/bin/pip", "usr/local/bin/python3.11"] {
        std::fs::set_permissions(root.join(exe), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(context)
        .status()
        .unwrap();
    assert!(status.success());
}

fn kiln_build(context: &Path, cache: &Path, layout: &Path) -> (bool, String) {
    let output = kiln(&[
        "build",
        "--progress",
        "plain",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        "pip-sandbox:latest",
        "--provenance=false",
        "--sbom=false",
        "-o",
        &format!("type=oci,dest={}", layout.display()),
        context.to_str().unwrap(),
    ]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

fn buildah_build(context: &Path, storage: &Path, layout: &Path) -> (bool, String) {
    let buildah = require_tool("buildah");
    let storage_args = [
        "--root".to_owned(),
        storage.join("root").display().to_string(),
        "--runroot".to_owned(),
        storage.join("run").display().to_string(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    let output = Command::new(&buildah)
        .args(&storage_args)
        .args(["bud", "--isolation", "chroot", "--timestamp", "0", "-t"])
        .arg("pip-sandbox-cmp")
        .arg(context)
        .output()
        .unwrap();
    if !output.status.success() {
        // The RUN's own output is on stdout, buildah's on stderr.
        return (
            false,
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        );
    }
    run_ok(
        Command::new(&buildah)
            .args(&storage_args)
            .args(["push", "pip-sandbox-cmp"])
            .arg(format!("oci:{}:latest", layout.display())),
    );
    (true, String::new())
}

/// path -> kind, mode, owner, link and content digest of the last layer of a layout.
fn last_layer_listing(layout: &Path) -> BTreeMap<String, String> {
    let (manifest, _) = layout_image(layout);
    let digest = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let file = std::fs::File::open(layout.join("blobs/sha256").join(digest)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.insert(
            path,
            format!(
                "{:?} mode={:o} uid={} gid={} sha256={}",
                header.entry_type(),
                header.mode().unwrap() & 0o7777,
                header.uid().unwrap(),
                header.gid().unwrap(),
                hex::encode(sha2::Sha256::digest(&content))
            ),
        );
    }
    out
}

#[test]
fn a_virtualenv_pip_runs_in_the_sandbox_and_no_pip_fails_as_buildah_does() {
    require_tool("buildah");
    let work = open_tempdir("venv");
    let base_context = work.join("base");
    venv_rootfs(&base_context);
    std::fs::write(
        base_context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\n",
    )
    .unwrap();
    let base = work.join("base-layout");
    let (ok, output) = kiln_build(&base_context, &work.join("base-cache"), &base);
    assert!(ok, "{output}");
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());

    // A virtualenv's pip: the real one runs, in the sandbox; the layer is buildah's.
    let context = work.join("venv");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM oci:{}:latest\nRUN /venv/bin/pip install six==1.16.0\n",
            base.display()
        ),
    )
    .unwrap();
    let ours = work.join("kiln-out");
    let (ok, output) = kiln_build(&context, &work.join("cache"), &ours);
    assert!(ok, "{output}");
    assert!(
        output.contains(
            "RUN /venv/bin/pip install six==1.16.0: runs pip in the sandbox: the image's \
             /venv/bin/pip is a virtualenv's (/venv)"
        ),
        "the build output says which ran:\n{output}"
    );
    let theirs = work.join("buildah-out");
    let (ok, output) = buildah_build(&context, &work.join("buildah"), &theirs);
    assert!(ok, "{output}");
    let listing = last_layer_listing(&ours);
    assert_eq!(
        listing,
        last_layer_listing(&theirs),
        "kiln's layer (left), buildah's (right)"
    );
    assert!(
        listing.contains_key("venv/lib/python3.11/site-packages/installed-by-venv-pip"),
        "{listing:#?}"
    );

    // No pip on PATH: Docker's RUN fails, and so do buildah's and kiln's.
    let context = work.join("nopip");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM oci:{}:latest\nRUN pip install six==1.16.0\n",
            base.display()
        ),
    )
    .unwrap();
    let (ok, output) = kiln_build(&context, &work.join("cache"), &work.join("kiln-nopip"));
    assert!(!ok, "kiln built without pip:\n{output}");
    assert!(
        output.contains("runs pip in the sandbox: the image has no `pip` on PATH")
            && output.contains("not found"),
        "{output}"
    );
    let (ok, output) = buildah_build(&context, &work.join("buildah"), &work.join("b-nopip"));
    assert!(!ok && output.contains("not found"), "{output}");
    let _ = std::fs::remove_dir_all(&work);
}

/// A busybox rootfs with python:3.11-alpine's shape whose site-packages holds setuptools
/// 65.5.0's metadata, and whose `pip` is the interpreter's (its `#!` names
/// /usr/local/bin/python3.11, a shell script stand-in that records the arguments it is run
/// with, as the real pip would be run in the sandbox).
fn installed_setuptools_rootfs(context: &Path) {
    venv_rootfs(context);
    let root = context.join("rootfs");
    std::fs::remove_dir_all(root.join("venv")).unwrap();
    write_files(
        &root,
        &[
            (
                "usr/local/bin/python3.11",
                "#!/bin/sh\nmkdir -p /usr/local/lib/python3.11/site-packages\n\
                 echo \"$@\" > /usr/local/lib/python3.11/site-packages/installed-by-pip\n",
            ),
            ("usr/local/bin/pip", "#!/usr/local/bin/python3.11\n"),
            (
                "usr/local/lib/python3.11/site-packages/setuptools-65.5.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: setuptools\nVersion: 65.5.0\n",
            ),
        ],
    );
    for exe in ["usr/local/bin/pip", "usr/local/bin/python3.11"] {
        std::fs::set_permissions(root.join(exe), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(context)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn replacing_an_installed_distribution_runs_pip_in_the_sandbox_and_says_so() {
    require_tool("buildah");
    let work = open_tempdir("replace");
    // A setuptools wheel newer than the installed one, in a find-links directory on the host.
    let links = work.join("links");
    std::fs::create_dir_all(&links).unwrap();
    let wheel = crate::support::simple_index::make_wheel(&links, "setuptools", "80.0.0", &[], &[]);
    assert!(wheel.exists());
    let base_context = work.join("base");
    installed_setuptools_rootfs(&base_context);
    std::fs::write(
        base_context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\n",
    )
    .unwrap();
    let base = work.join("base-layout");
    let (ok, output) = kiln_build(&base_context, &work.join("base-cache"), &base);
    assert!(ok, "{output}");
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());

    let context = work.join("replace");
    std::fs::create_dir_all(&context).unwrap();
    let run = format!(
        "pip install --no-index --find-links {} setuptools==80.0.0",
        links.display()
    );
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM oci:{}:latest\nRUN {run}\n", base.display()),
    )
    .unwrap();
    let ours = work.join("kiln-out");
    let (ok, output) = kiln_build(&context, &work.join("cache"), &ours);
    assert!(ok, "{output}");
    assert!(
        output.contains(&format!(
            "RUN {run}: runs pip in the sandbox: it would replace setuptools 65.5.0 installed in \
             /usr/local/lib/python3.11/site-packages with 80.0.0"
        )),
        "the build output says which ran and why:\n{output}"
    );
    let theirs = work.join("buildah-out");
    let (ok, output) = buildah_build(&context, &work.join("buildah"), &theirs);
    assert!(ok, "{output}");
    let listing = last_layer_listing(&ours);
    assert_eq!(
        listing,
        last_layer_listing(&theirs),
        "kiln's layer (left), buildah's (right)"
    );
    assert!(
        listing.contains_key("usr/local/lib/python3.11/site-packages/installed-by-pip"),
        "{listing:#?}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
