//! Oracle test: kiln's wheel installer against pip itself, on real wheels.
//!
//! pip downloads the seed app's pinned wheels (and psutil, a cp36-abi3 extension) for CPython
//! 3.11 on musllinux_1_2, x86_64 and aarch64, into `<target>/test-wheels` (kept between runs;
//! pip reaches the index through its own configuration). kiln installs each wheel into a Diff
//! with the `--target` scheme, the Diff is written to a temp dir, and pip installs the same
//! wheels with `pip install --target`. The trees must agree file for file, byte for byte and
//! mode for mode, except for these documented differences:
//!
//! * `INSTALLER` says `kiln` (pip: `pip`), and its RECORD row differs accordingly;
//! * pip writes `direct_url.json` (the wheels were given as files); kiln never does (index
//!   installs never get one), so that file and its RECORD row are absent;
//! * launchers in `bin/` start with the target interpreter (`#!/usr/local/bin/python3.11`),
//!   pip's with the host's; the rest of the launcher is identical;
//! * pip records launchers as `../../bin/NAME` (the temporary home scheme it installs into
//!   before moving into the target), kiln as `bin/NAME` (their real place relative to the
//!   target directory), with the hash of each tool's own launcher.
//!
//! The host's Python then reads kiln's tree with `importlib.metadata` and must list every
//! distribution with its version. Missing pip or network makes the test fail, never skip.

use crate::support::wheels as wheel_cache;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::layer::{Diff, EntryKind, FileContent, LayerPath};
use kiln::python::requirements::{self, RequirementsFile};
use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target::{Libc, PythonTarget, PythonVersion};
use kiln::python::wheel::{self, InstallOptions, Owner, Requested, Scheme};
use sha2::{Digest, Sha256};

const INTERPRETER: &str = "/usr/local/bin/python3.11";

fn seed_requirements() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/research/python-seed/requirements.txt")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: could not run {cmd:?} ({e}); install Python 3 with pip (see .ci/run)")
    });
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}\nThis test needs pip and access to the package index pip is configured for.",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pip() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]);
    cmd
}

/// Downloads (once) the wheels for one architecture.
fn wheels(arch: &str) -> Vec<PathBuf> {
    let dir = wheel_cache::seed_wheel_dir(&format!("musllinux_1_2_{arch}"));
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    out.sort();
    assert!(
        out.len() >= 9,
        "expected the 8 seed wheels and psutil in {}",
        dir.display()
    );
    out
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Writes a Diff's entries below `root` on the host (tests only): files, dirs and modes.
fn materialize(diff: &Diff, root: &Path) {
    for (path, entry) in diff.iter() {
        let host = root.join(path.as_str());
        match &entry.kind {
            EntryKind::Dir => std::fs::create_dir_all(&host).unwrap(),
            EntryKind::File(content) => {
                std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                match content {
                    FileContent::Bytes(bytes) => std::fs::write(&host, bytes).unwrap(),
                    FileContent::HostFile { path, .. } => {
                        std::fs::copy(path, &host).unwrap();
                    }
                }
            }
            other => panic!("unexpected entry {other:?} at {path}"),
        }
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(entry.meta.mode)).unwrap();
    }
}

/// Every file below `root`: relative path -> (mode, bytes).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
            out.insert(rel, (mode, std::fs::read(entry.path()).unwrap()));
        }
    }
    out
}

fn target(arch: &str) -> PythonTarget {
    PythonTarget {
        version: PythonVersion {
            major: 3,
            minor: 11,
            patch: None,
        },
        interpreter: INTERPRETER.to_owned(),
        libc: Libc::Musl { major: 1, minor: 2 },
        arch: arch.to_owned(),
    }
}

/// The expected sha256 of each wheel: from the seed requirements' `--hash` options when they
/// list it (hash-checking mode), else computed here (psutil is not in the seed).
fn expected_hashes(reqs: &RequirementsFile, wheels: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for wheel_path in wheels {
        let actual = sha256_file(wheel_path);
        let name = wheel_path.file_name().unwrap().to_string_lossy();
        let project = wheel::normalize_name(name.split('-').next().unwrap());
        match reqs
            .requirements
            .iter()
            .find(|r| r.normalized_name() == project)
        {
            Some(req) => {
                assert!(
                    req.hashes.contains(&actual),
                    "{name}: the seed requirements do not list its sha256 {actual}"
                );
                out.insert(wheel_path.clone(), actual);
            }
            None => {
                out.insert(wheel_path.clone(), actual);
            }
        }
    }
    out
}

fn oracle(arch: &str) {
    let wheels = wheels(arch);
    let target = target(arch);
    let reqs = requirements::parse_host_file(&seed_requirements(), &target.marker_environment())
        .expect("the seed requirements parse");
    assert!(
        reqs.hash_checking,
        "the seed requirements are in hash-checking mode"
    );
    let hashes = expected_hashes(&reqs, &wheels);
    let tags = Tags::for_target(&target, LinuxTag::Exclude);
    let work = tempfile::tempdir().unwrap();
    let scratch = work.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let scheme = Scheme::target(&LayerPath::new("t").unwrap()).unwrap();
    let options = InstallOptions {
        scheme: &scheme,
        interpreter: INTERPRETER,
        tags: &tags,
        owner: Owner {
            uid: 1000,
            gid: 1000,
        },
        mtime: 0,
        scratch: &scratch,
        requested: Requested::Yes,
    };
    let mut diff = Diff::new();
    for wheel_path in &wheels {
        let installed = wheel::install_wheel(wheel_path, &hashes[wheel_path], &options)
            .unwrap_or_else(|e| panic!("kiln failed to install {}: {e}", wheel_path.display()));
        for (_, entry) in installed.diff.iter() {
            assert_eq!(
                (entry.meta.uid, entry.meta.gid, entry.meta.mtime),
                (1000, 1000, 0)
            );
        }
        diff.merge(installed.diff);
    }
    let kiln_root = work.path().join("kiln");
    materialize(&diff, &kiln_root);
    let kiln_tree = tree(&kiln_root.join("t"));

    let pip_root = work.path().join("pip");
    let wheel_dir = wheels[0].parent().unwrap();
    run(
        pip()
            .args([
                "install",
                "--no-deps",
                "--no-compile",
                "--only-binary=:all:",
                "--platform",
                &format!("musllinux_1_2_{arch}"),
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--no-index",
                "--find-links",
            ])
            .arg(wheel_dir)
            .arg("--target")
            .arg(&pip_root)
            .args(&wheels),
        "pip install --target",
    );
    let pip_tree = tree(&pip_root);

    let mut differences = Vec::new();
    let mut compared = 0;
    for (path, (pip_mode, pip_bytes)) in &pip_tree {
        if path.ends_with("/direct_url.json") {
            assert!(!kiln_tree.contains_key(path), "kiln wrote {path}");
            continue;
        }
        let Some((kiln_mode, kiln_bytes)) = kiln_tree.get(path) else {
            differences.push(format!("missing in kiln's tree: {path}"));
            continue;
        };
        compared += 1;
        if pip_mode != kiln_mode {
            differences.push(format!("{path}: mode pip {pip_mode:o}, kiln {kiln_mode:o}"));
        }
        let (want, got) = if path.ends_with("/INSTALLER") {
            assert_eq!(pip_bytes, b"pip\n");
            assert_eq!(kiln_bytes, b"kiln\n", "{path}");
            continue;
        } else if path.starts_with("bin/") {
            (drop_first_line(pip_bytes), drop_first_line(kiln_bytes))
        } else if path.ends_with("/RECORD") {
            (
                normalize_record(pip_bytes, "../../bin/"),
                normalize_record(kiln_bytes, "bin/"),
            )
        } else {
            (pip_bytes.clone(), kiln_bytes.clone())
        };
        if path.starts_with("bin/") {
            assert_eq!(
                kiln_bytes.split(|b| *b == b'\n').next().unwrap(),
                format!("#!{INTERPRETER}").as_bytes()
            );
        }
        if want != got {
            differences.push(format!(
                "{path}: content differs\n--- pip\n{}\n--- kiln\n{}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    for path in kiln_tree.keys() {
        if !pip_tree.contains_key(path) {
            differences.push(format!("only in kiln's tree: {path}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{arch}: {} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(compared > 250, "compared only {compared} files");
    eprintln!("{arch}: {compared} files identical to pip's apart from the documented differences");

    // The host's Python reads kiln's tree.
    let listing = run(
        Command::new("python3").arg("-c").arg(
            "import sys, importlib.metadata as m\n\
             for d in sorted(m.distributions(path=[sys.argv[1]]), key=lambda d: d.metadata['Name'].lower()):\n\
             \x20   print(d.metadata['Name'].lower(), d.version, len(d.files))",
        ).arg(kiln_root.join("t")),
        "python3 importlib.metadata",
    );
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "blinker",
            "click",
            "flask",
            "gunicorn",
            "itsdangerous",
            "jinja2",
            "markupsafe",
            "psutil",
            "werkzeug"
        ],
        "{listing}"
    );
    for (name, version) in [
        ("flask", "3.1.3"),
        ("gunicorn", "27.0.1"),
        ("markupsafe", "3.0.4"),
        ("psutil", "7.2.2"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(&format!("{name} {version} "))),
            "{name} {version} not listed:\n{listing}"
        );
    }
}

fn drop_first_line(bytes: &[u8]) -> Vec<u8> {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => bytes[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// RECORD with the documented differences taken out: no direct_url.json row, INSTALLER and
/// launcher rows reduced to their paths, the launcher prefix replaced by `bin/`.
fn normalize_record(bytes: &[u8], bin_prefix: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let path = line.split(',').next().unwrap();
        if path.ends_with("/direct_url.json") {
            continue;
        }
        if path.ends_with("/INSTALLER") {
            lines.push(format!("{path},<installer>"));
        } else if let Some(script) = path.strip_prefix(bin_prefix) {
            lines.push(format!("bin/{script},<launcher>"));
        } else {
            lines.push(line.to_owned());
        }
    }
    lines.sort();
    lines.join("\n").into_bytes()
}

#[test]
fn kiln_installs_like_pip_x86_64() {
    oracle("x86_64");
}

#[test]
fn kiln_installs_like_pip_aarch64() {
    oracle("aarch64");
}
