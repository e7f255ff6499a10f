//! Distributions already installed on pip's path: kiln's native `pip install` against pip
//! itself, on a python:3.11-like base whose site-packages already holds setuptools 65.5.0 and
//! packaging 23.2 (as the official images hold pip, setuptools and wheel).
//!
//! The real pip runs on the host's Python 3.11 with `PYTHONHOME` pointing at a stand-in prefix
//! (the host's standard library linked in, its own `site-packages` holding those two
//! distributions, installed by pip) and `HOME` at an empty home, so its `sys.path`, user site
//! and install schemes are the stand-in's. pip itself is importable from a directory holding
//! only its package (no dist-info), so it sees exactly the stand-in's distributions. kiln runs
//! natively on a stage with the same site-packages files under
//! `/usr/local/lib/python3.11/site-packages`. Both resolve from the same local index
//! (`support/simple_index.rs`). For each case:
//!
//! * both succeed, with the same `(name, version, wheel file)` installed (pip's `--report`
//!   lists only what it installs: a kept distribution is in neither) and the same files under
//!   the user base or the target directory (content outside `.dist-info` and `bin/`, names
//!   there; `__pycache__` is excluded, pip runs with `--no-compile` as kiln never compiles);
//! * or pip uninstalls an installed distribution ("Found existing installation"), and kiln's
//!   native step refuses with the reason the build prints before running pip in the sandbox.
//!
//! Missing pip or network makes the test fail, never skip.

use crate::support::simple_index;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::image::platform::Platform;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::MemFs;
use kiln::steps::pip::{PipOutcome, PipRequest, pip_install};
use sha2::{Digest, Sha256};
use simple_index::{IndexServer, normalize};

const SITE: &str = "usr/local/lib/python3.11/site-packages";

/// The wheels of the cases, downloaded once by the host's pip into
/// `<target>/test-wheels/already-installed`: the base's old setuptools and packaging, the
/// newest of each, and gunicorn 23.0.0 (which requires packaging; later releases do not). All
/// are pure Python.
fn wheels() -> Vec<PathBuf> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_owned();
    let dir = target_dir.join("test-wheels").join("already-installed");
    if !dir.join(".complete").exists() {
        std::fs::create_dir_all(&dir).expect("create the wheel cache");
        for what in [
            "setuptools==65.5.0",
            "setuptools",
            "packaging==23.2",
            "packaging",
            "gunicorn==23.0.0",
        ] {
            let output = Command::new("python3")
                .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
                .args(["download", "--no-deps", "--only-binary=:all:"])
                .args(["--python-version", "3.11", "-d"])
                .arg(&dir)
                .arg(what)
                .output()
                .unwrap_or_else(|e| {
                    panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
                });
            assert!(
                output.status.success(),
                "pip download {what} failed; this test needs pip and the package index pip is \
                 configured for:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::write(dir.join(".complete"), b"").expect("mark the wheel cache");
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    out.sort();
    out
}

/// The newest version of `name` among `wheels`.
fn newest(wheels: &[PathBuf], name: &str) -> String {
    let mut versions: Vec<Vec<u64>> = wheels
        .iter()
        .filter_map(|w| {
            let file = w.file_name()?.to_string_lossy().into_owned();
            let mut parts = file.split('-');
            (normalize(parts.next()?) == name).then(|| {
                parts
                    .next()
                    .unwrap_or_default()
                    .split('.')
                    .map(|p| p.parse::<u64>().unwrap_or(0))
                    .collect()
            })
        })
        .collect();
    versions.sort();
    let newest = versions
        .pop()
        .unwrap_or_else(|| panic!("no {name} in the index"));
    newest
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The host's Python 3.11: its executable, standard library and `pip` package directory.
fn host_python() -> (PathBuf, PathBuf, PathBuf) {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, sysconfig, pip, os\nassert sys.version_info[:2] == (3, 11)\n\
             print(sys.executable)\nprint(sysconfig.get_paths()['stdlib'])\n\
             print(os.path.dirname(pip.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("could not run python3 ({e}); install Python 3 with pip"));
    assert!(
        output.status.success(),
        "this test needs the host's python3 to be Python 3.11 with pip (the stand-in base's \
         Python): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
    (lines[0].clone(), lines[1].clone(), lines[2].clone())
}

/// The base's site-packages, installed once by the host's pip (RECORD, INSTALLER and all).
fn base_site_packages(index: &str, work: &Path) -> PathBuf {
    let site = work.join("base-site-packages");
    let output = Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
        .args(["install", "--no-deps", "--no-compile", "--no-cache-dir"])
        .args(["--index-url", index, "--target"])
        .arg(&site)
        .args(["setuptools==65.5.0", "packaging==23.2"])
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "installing the base's distributions failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    site
}

/// `(normalized name, version, wheel file name)`, sorted.
type Chosen = Vec<(String, String, String)>;
/// Files below the compared root: relative path -> content digest, `member` or `dir`.
type Files = BTreeMap<String, String>;

fn file_key(relative: &str, content: &[u8]) -> String {
    let top = relative.split('/').find(|p| p.ends_with(".dist-info"));
    if top.is_some() || relative.starts_with("bin/") || relative.starts_with(".local/bin/") {
        "dist-info member or launcher".to_owned()
    } else {
        hex::encode(Sha256::digest(content))
    }
}

/// What pip did, or its output when it uninstalled something.
enum Outcome {
    Installed(Chosen, Files),
    Uninstalled(String),
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// pip's outcome for `pip install ARGS` on the stand-in base; with `user_base`, the RUN's
/// `PYTHONUSERBASE` is set and the files compared are below it.
fn pip_run(index: &str, site: &Path, args: &str, user_base: bool) -> Outcome {
    let (python, stdlib, pip_package) = host_python();
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("prefix");
    let stdlib_link = prefix.join("lib/python3.11");
    std::fs::create_dir_all(&stdlib_link).unwrap();
    for entry in std::fs::read_dir(&stdlib).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "site-packages" {
            std::os::unix::fs::symlink(entry.path(), stdlib_link.join(entry.file_name())).unwrap();
        }
    }
    copy_tree(site, &stdlib_link.join("site-packages"));
    let pip_dir = work.path().join("pip-only");
    std::fs::create_dir_all(&pip_dir).unwrap();
    std::os::unix::fs::symlink(&pip_package, pip_dir.join("pip")).unwrap();
    let home = work.path().join("home");
    let cwd = work.path().join("cwd");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let report = work.path().join("report.json");
    let mut words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    let target = work.path().join("target");
    for word in &mut words {
        if word == "/out" {
            *word = target.display().to_string();
        }
    }
    let base_dir = work.path().join("userbase");
    let mut command = Command::new(&python);
    if user_base {
        command.env("PYTHONUSERBASE", &base_dir);
    } else {
        command.env_remove("PYTHONUSERBASE");
    }
    let output = command
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
        .args(["install", "--no-cache-dir", "--no-compile", "--report"])
        .arg(&report)
        .args(["--index-url", index])
        .args(&words)
        .env("PYTHONHOME", &prefix)
        .env("PYTHONPATH", &pip_dir)
        .env("HOME", &home)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_FIND_LINKS")
        .current_dir(&cwd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pip install {args} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if stdout.contains("Found existing installation") {
        return Outcome::Uninstalled(stdout);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut chosen: Chosen = report["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let url = item["download_info"]["url"].as_str().unwrap();
            (
                normalize(item["metadata"]["name"].as_str().unwrap()),
                item["metadata"]["version"].as_str().unwrap().to_owned(),
                url.rsplit('/').next().unwrap().to_owned(),
            )
        })
        .collect();
    chosen.sort();
    let root = if args.contains("/out") {
        target
    } else if user_base {
        base_dir
    } else {
        home
    };
    let mut files = Files::new();
    for entry in walkdir::WalkDir::new(&root).min_depth(1) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.contains("__pycache__") {
            continue;
        }
        let key = if entry.file_type().is_dir() {
            "dir".to_owned()
        } else {
            file_key(&relative, &std::fs::read(entry.path()).unwrap())
        };
        files.insert(relative, key);
    }
    Outcome::Installed(chosen, files)
}

fn put(diff: &mut Diff, at: &str, kind: EntryKind, mode: u32) {
    diff.insert(
        LayerPath::new(at).unwrap(),
        Entry {
            kind,
            meta: Metadata::root_owned(mode),
        },
    );
}

fn bytes(data: &[u8]) -> EntryKind {
    EntryKind::File(FileContent::Bytes(data.into()))
}

/// A python:3.11-alpine-like stage whose site-packages holds the files of `site`.
fn stage(site: &Path) -> MemFs {
    let mut diff = Diff::new();
    put(
        &mut diff,
        "lib/ld-musl-x86_64.so.1",
        bytes(b"\x7fELF\0musl\x001.2.5\0"),
        0o755,
    );
    put(
        &mut diff,
        "usr/local/bin/python3.11",
        bytes(b"\x7fELF"),
        0o755,
    );
    put(
        &mut diff,
        "usr/local/include/python3.11/patchlevel.h",
        bytes(b"#define PY_VERSION      \"3.11.11\"\n"),
        0o644,
    );
    put(&mut diff, SITE, EntryKind::Dir, 0o755);
    for entry in walkdir::WalkDir::new(site).min_depth(1) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(site)
            .unwrap()
            .display()
            .to_string();
        let at = format!("{SITE}/{relative}");
        if entry.file_type().is_dir() {
            put(&mut diff, &at, EntryKind::Dir, 0o755);
        } else {
            put(
                &mut diff,
                &at,
                bytes(&std::fs::read(entry.path()).unwrap()),
                0o644,
            );
        }
    }
    put(
        &mut diff,
        "etc/passwd",
        bytes(b"root:x:0:0:root:/root:/bin/sh\n"),
        0o644,
    );
    put(&mut diff, "etc/group", bytes(b"root:x:0:root\n"), 0o644);
    put(&mut diff, "root", EntryKind::Dir, 0o700);
    MemFs::from_diff(&diff)
}

/// kiln's native install, or the reason it gives for the sandbox.
fn kiln_run(
    index: &str,
    fs: &MemFs,
    args: &str,
    user_base: bool,
    cache: &Path,
) -> Result<(Chosen, Files), String> {
    let mut vars: BTreeMap<String, String> =
        [("PIP_INDEX_URL".to_owned(), index.to_owned())].into();
    if user_base {
        vars.insert("PYTHONUSERBASE".to_owned(), "/install".to_owned());
    }
    let env_fn = |name: &str| vars.get(name).cloned();
    let scratch = tempfile::tempdir().unwrap();
    let words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    let outcome: PipOutcome = pip_install(
        &words,
        &PipRequest {
            fs,
            workdir: "/",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", "amd64", None),
            source_date_epoch: 0,
            scratch_dir: scratch.path(),
            cache_dir: cache,
            offline: false,
        },
    )
    .map_err(|e| {
        e.sandbox_reason()
            .unwrap_or_else(|| panic!("kiln failed without a sandbox reason: {e}"))
    })?;
    let mut chosen: Chosen = outcome
        .details
        .iter()
        .zip(&outcome.materials)
        .map(|(dist, material)| {
            (
                normalize(&dist.name),
                dist.version.clone(),
                material.file_name().expect("file name").to_owned(),
            )
        })
        .collect();
    chosen.sort();
    let root = if args.contains("/out") {
        "out/"
    } else if user_base {
        "install/"
    } else {
        "root/"
    };
    let mut files = Files::new();
    for (path, entry) in outcome.diff.iter() {
        let text = path.to_string();
        let Some(relative) = text.trim_start_matches('/').strip_prefix(root) else {
            continue;
        };
        let key = match &entry.kind {
            EntryKind::Dir => "dir".to_owned(),
            EntryKind::File(FileContent::Bytes(b)) => file_key(relative, b),
            EntryKind::File(FileContent::HostFile { path, .. }) => {
                file_key(relative, &std::fs::read(path).unwrap())
            }
            other => format!("{other:?}"),
        };
        files.insert(relative.to_owned(), key);
    }
    Ok((chosen, files))
}

#[test]
fn installed_distributions_are_kept_shadowed_or_sent_to_the_sandbox_as_pip_does() {
    let wheels = wheels();
    let server = IndexServer::start(&wheels, &[]);
    let index = server.url();
    let work = tempfile::tempdir().unwrap();
    let site = base_site_packages(&index, work.path());
    let fs = stage(&site);
    let cache = tempfile::tempdir().unwrap();
    let setuptools = newest(&wheels, "setuptools");
    let packaging = newest(&wheels, "packaging");
    assert_ne!(setuptools, "65.5.0", "the index needs a newer setuptools");
    assert_ne!(packaging, "23.2", "the index needs a newer packaging");
    let pin_new = format!("setuptools=={setuptools}");
    let replace = |version: &str| {
        format!("it would replace setuptools 65.5.0 installed in /{SITE} with {version}")
    };
    // (args, kiln's sandbox reason when pip uninstalls, what the case shows); args starting
    // with `PYTHONUSERBASE` run with it set.
    let cases: Vec<(String, Option<String>, &str)> = vec![
        (
            "--user setuptools".into(),
            None,
            "already satisfied by the base",
        ),
        (
            "--user gunicorn==23.0.0".into(),
            None,
            "a dependency satisfied by the base is kept",
        ),
        (
            "--user --upgrade setuptools".into(),
            None,
            "--upgrade installs the newest into the user site, shadowing the base's",
        ),
        (
            "--user --upgrade gunicorn==23.0.0".into(),
            None,
            "--upgrade (only-if-needed) keeps a dependency the base satisfies",
        ),
        (
            "--user --upgrade --upgrade-strategy eager gunicorn==23.0.0".into(),
            None,
            "--upgrade-strategy eager upgrades the dependency too",
        ),
        (
            "--user --force-reinstall setuptools".into(),
            None,
            "--force-reinstall with --user leaves the global one in place",
        ),
        (
            "PYTHONUSERBASE --user --upgrade setuptools".into(),
            None,
            "PYTHONUSERBASE moves the user site (the RUN's environment sets it)",
        ),
        (
            "--require-hashes --user setuptools==65.5.0".into(),
            None,
            "hash-checking mode keeps a satisfying installed pin without a file to hash",
        ),
        (
            "setuptools".into(),
            None,
            "a system install keeps what satisfies it",
        ),
        (
            pin_new.clone(),
            Some(replace(&setuptools)),
            "a pin that needs another version replaces it: sandbox",
        ),
        (
            "--upgrade setuptools".into(),
            Some(replace(&setuptools)),
            "--upgrade of a system install replaces it: sandbox",
        ),
        (
            "--force-reinstall setuptools==65.5.0".into(),
            Some(replace("65.5.0")),
            "--force-reinstall of a system install: sandbox",
        ),
        (
            "--target /out setuptools".into(),
            None,
            "--target ignores what is installed",
        ),
        (
            "--ignore-installed --target /out gunicorn==23.0.0".into(),
            None,
            "--ignore-installed resolves every dependency from the index",
        ),
    ];
    let mut failures = Vec::new();
    for (args, sandbox, what) in &cases {
        let user_base = args.starts_with("PYTHONUSERBASE ");
        let args = args.trim_start_matches("PYTHONUSERBASE ");
        let pip = pip_run(&index, &site, args, user_base);
        let kiln = kiln_run(&index, &fs, args, user_base, cache.path());
        match (pip, kiln, sandbox) {
            (Outcome::Installed(pip_chosen, pip_files), Ok((chosen, files)), None) => {
                if pip_chosen != chosen {
                    failures.push(format!(
                        "{what} (`{args}`): pip installed {pip_chosen:?}, kiln {chosen:?}"
                    ));
                }
                if pip_files != files {
                    let only_pip: Vec<_> = pip_files
                        .iter()
                        .filter(|(k, v)| files.get(*k) != Some(v))
                        .collect();
                    let only_kiln: Vec<_> = files
                        .iter()
                        .filter(|(k, v)| pip_files.get(*k) != Some(v))
                        .collect();
                    failures.push(format!(
                        "{what} (`{args}`): files differ\n  pip only: {only_pip:?}\n  kiln \
                         only: {only_kiln:?}"
                    ));
                }
            }
            (Outcome::Uninstalled(output), Err(reason), Some(expected)) => {
                if !output.contains("setuptools 65.5.0") || reason != *expected {
                    failures.push(format!(
                        "{what} (`{args}`): pip said\n{output}\nkiln said `{reason}`, expected \
                         `{expected}`"
                    ));
                }
            }
            (Outcome::Installed(chosen, _), other, _) => failures.push(format!(
                "{what} (`{args}`): pip installed {chosen:?} without uninstalling; kiln gave \
                 {other:?}"
            )),
            (Outcome::Uninstalled(output), other, _) => failures.push(format!(
                "{what} (`{args}`): pip uninstalled:\n{output}\nkiln gave {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The eager case really is different from only-if-needed: packaging is upgraded.
    let Ok((eager, _)) = kiln_run(
        &index,
        &fs,
        "--user --upgrade --upgrade-strategy eager gunicorn==23.0.0",
        false,
        cache.path(),
    ) else {
        panic!("the eager upgrade runs natively");
    };
    assert!(
        eager
            .iter()
            .any(|(n, v, _)| n == "packaging" && *v == packaging),
        "{eager:?}"
    );
    // Without --upgrade, the installed packaging 23.2 is kept: gunicorn alone is installed.
    let Ok((kept, _)) = kiln_run(&index, &fs, "--user gunicorn==23.0.0", false, cache.path())
    else {
        panic!("the --user install runs natively");
    };
    assert_eq!(kept.len(), 1, "{kept:?}");
}
