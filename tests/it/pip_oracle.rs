//! pip oracle: kiln's native `pip install` against pip itself, for a table of requirement sets
//! on three targets (CPython 3.11 on musllinux x86_64, musllinux aarch64, manylinux x86_64 with
//! glibc 2.36).
//!
//! Both resolve from the same local index (`support/simple_index.rs`, 127.0.0.1) holding real
//! wheels that the host's pip downloaded through its own configuration. pip runs as
//! `pip install --report R --target DIR --platform P... --only-binary=:all: --python-version
//! 3.11 --no-compile` with the target's platform tags (in the target's order) and, so that
//! markers are evaluated for the target as the image's pip would, with `platform.machine()`
//! answering the target's machine. For each case:
//!
//! * a success of one is a success of the other, with the same `(name, version, wheel file)`
//!   set, and the same files installed under the target directory (content for files outside
//!   `.dist-info` and `bin/`; the dist-info directories and their members by name: the
//!   documented differences, INSTALLER, RECORD, direct_url.json and launcher shebangs, are
//!   checked by `python_wheel_oracle.rs`);
//! * a failure of one is a failure of the other, each message naming what the case is about.
//!
//! kiln does not compile `.pyc` (pip's `--no-compile`), hence the flag on pip's side. Missing
//! pip or network makes the test fail, never skip.

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

/// One target image.
struct Target {
    /// For messages.
    name: &'static str,
    /// `uname -m` of the target.
    machine: &'static str,
    /// The OCI architecture.
    goarch: &'static str,
    /// glibc (manylinux) rather than musl.
    glibc: bool,
}

const TARGETS: [Target; 3] = [
    Target {
        name: "musllinux x86_64",
        machine: "x86_64",
        goarch: "amd64",
        glibc: false,
    },
    Target {
        name: "musllinux aarch64",
        machine: "aarch64",
        goarch: "arm64",
        glibc: false,
    },
    Target {
        name: "manylinux x86_64 (glibc 2.36)",
        machine: "x86_64",
        goarch: "amd64",
        glibc: true,
    },
];

impl Target {
    /// The platform tags the target's pip accepts, best first (musl 1.2; glibc 2.36 with the
    /// legacy manylinux aliases where packaging puts them).
    fn pip_platforms(&self) -> Vec<String> {
        let arch = self.machine;
        if !self.glibc {
            return (0..=2)
                .rev()
                .map(|minor| format!("musllinux_1_{minor}_{arch}"))
                .collect();
        }
        let mut out = Vec::new();
        for minor in (5..=36).rev() {
            out.push(format!("manylinux_2_{minor}_{arch}"));
            match minor {
                17 => out.push(format!("manylinux2014_{arch}")),
                12 => out.push(format!("manylinux2010_{arch}")),
                5 => out.push(format!("manylinux1_{arch}")),
                _ => {}
            }
        }
        out
    }

    /// A python:3.11-alpine-like (or python:3.11-slim-like) stage with `files` in `/app`.
    fn stage(&self, files: &[(&str, String)]) -> MemFs {
        let mut diff = Diff::new();
        let arch = self.machine;
        if self.glibc {
            insert(
                &mut diff,
                &format!("usr/lib/{arch}-linux-gnu/libc.so.6"),
                bytes(
                    b"GNU C Library (Debian GLIBC 2.36-9+deb12u9) stable release version 2.36.\n",
                ),
                0o755,
            );
            insert(
                &mut diff,
                "lib",
                EntryKind::Symlink("usr/lib".into()),
                0o777,
            );
        } else {
            insert(
                &mut diff,
                &format!("lib/ld-musl-{arch}.so.1"),
                bytes(b"\x7fELF\0musl\x001.2.5\0"),
                0o755,
            );
        }
        insert(
            &mut diff,
            "usr/local/bin/python3.11",
            bytes(b"\x7fELF"),
            0o755,
        );
        insert(
            &mut diff,
            "usr/local/include/python3.11/patchlevel.h",
            bytes(b"#define PY_VERSION      \"3.11.11\"\n"),
            0o644,
        );
        insert(
            &mut diff,
            "usr/local/lib/python3.11/site-packages",
            EntryKind::Dir,
            0o755,
        );
        insert(
            &mut diff,
            "etc/passwd",
            bytes(b"root:x:0:0:root:/root:/bin/sh\n"),
            0o644,
        );
        insert(&mut diff, "etc/group", bytes(b"root:x:0:root\n"), 0o644);
        insert(&mut diff, "root", EntryKind::Dir, 0o700);
        for (name, text) in files {
            insert(
                &mut diff,
                &format!("app/{name}"),
                bytes(text.as_bytes()),
                0o644,
            );
        }
        MemFs::from_diff(&diff)
    }
}

fn insert(diff: &mut Diff, at: &str, kind: EntryKind, mode: u32) {
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

/// Real wheels for every case, for the three targets, downloaded once by the host's pip into
/// `<target>/test-wheels/oracle`.
fn oracle_wheels() -> Vec<PathBuf> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_owned();
    let dir = target_dir.join("test-wheels").join("oracle");
    if !dir.join(".complete").exists() {
        std::fs::create_dir_all(&dir).expect("create the wheel cache");
        for target in &TARGETS {
            let with_deps = [
                "requests[socks]==2.32.3",
                "PyYAML==6.0.2",
                "flask==3.0.3",
                "flask",
                "gunicorn",
                "requests",
                "markupsafe",
            ];
            let alone = [
                "werkzeug==2.3.8",
                "werkzeug<3.1",
                "urllib3<2",
                "requests==2.31.0",
            ];
            // One pip run per pin set: pip merges requirements on one project into one.
            let mut runs: Vec<(&[&str], bool)> = vec![(&with_deps[..], false)];
            runs.extend(alone.iter().map(|one| (std::slice::from_ref(one), true)));
            for (what, no_deps) in runs {
                let mut command = Command::new("python3");
                command
                    .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
                    .args([
                        "download",
                        "--only-binary=:all:",
                        "--python-version",
                        "3.11",
                    ])
                    .args(["--implementation", "cp", "--abi", "cp311", "-d"])
                    .arg(&dir);
                for platform in target.pip_platforms() {
                    command.args(["--platform", &platform]);
                }
                if no_deps {
                    command.arg("--no-deps");
                }
                command.args(what);
                let output = command.output().unwrap_or_else(|e| {
                    panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
                });
                assert!(
                    output.status.success(),
                    "pip download failed; this test needs pip and the package index pip is \
                     configured for:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
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

/// `(normalized name, version, wheel file name)`, sorted.
type Chosen = Vec<(String, String, String)>;

/// Installed files under the target directory: relative path -> content digest (files outside
/// `.dist-info` and `bin/`), `dist-info member` (members), `dir`.
type Files = BTreeMap<String, String>;

fn file_key(relative: &str, content: &[u8]) -> String {
    let top = relative.split('/').next().unwrap_or_default();
    if top.ends_with(".dist-info") || top == "bin" {
        "dist-info member or launcher".to_owned()
    } else {
        hex::encode(Sha256::digest(content))
    }
}

/// What pip did: its resolution and installed files, or its error output.
fn pip_oracle(
    index: &str,
    target: &Target,
    args: &[String],
    files: &[(&str, String)],
    env: &[(&str, String)],
) -> Result<(Chosen, Files), String> {
    let work = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(work.path().join(name), text).unwrap();
    }
    let report = work.path().join("report.json");
    let install = work.path().join("target");
    // The image's pip evaluates markers for its own machine: answer as the target would.
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(
            "import platform, runpy, sys\nmachine = sys.argv.pop(1)\nplatform.machine = lambda: machine\nsys.argv[0] = 'pip'\nrunpy.run_module('pip', run_name='__main__')",
        )
        .arg(target.machine)
        .args(["--disable-pip-version-check", "--no-input", "install"])
        .args(["--no-cache-dir", "--no-compile", "--report"])
        .arg(&report)
        .args(["--only-binary=:all:", "--python-version", "3.11"])
        .args(["--implementation", "cp", "--abi", "cp311", "--target"])
        .arg(&install)
        .args(["--index-url", index]);
    for platform in target.pip_platforms() {
        command.args(["--platform", &platform]);
    }
    command
        .args(args)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_CONSTRAINT")
        .env_remove("PIP_REQUIRE_HASHES")
        .current_dir(work.path());
    for (name, value) in env {
        // Paths in the image's /app are the work dir on the host.
        command.env(
            name,
            value.replace("/app/", &format!("{}/", work.path().display())),
        );
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
    });
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
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
    let mut installed = Files::new();
    for entry in walkdir::WalkDir::new(&install).min_depth(1) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(&install)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let key = if entry.file_type().is_dir() {
            "dir".to_owned()
        } else {
            file_key(&relative, &std::fs::read(entry.path()).unwrap())
        };
        installed.insert(relative, key);
    }
    Ok((chosen, installed))
}

/// What kiln does natively for `pip install --target /out ARGS` in the target's stage.
fn kiln_run(
    index: &str,
    target: &Target,
    args: &[String],
    files: &[(&str, String)],
    env: &[(&str, String)],
    cache: &Path,
) -> Result<(Chosen, Files), String> {
    let fs = target.stage(files);
    let mut vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    vars.insert("PIP_INDEX_URL".to_owned(), index.to_owned());
    let env_fn = |name: &str| vars.get(name).cloned();
    let scratch = tempfile::tempdir().unwrap();
    let mut words = vec!["--target".to_owned(), "/out".to_owned()];
    words.extend(args.iter().cloned());
    let outcome: PipOutcome = pip_install(
        &words,
        &PipRequest {
            fs: &fs,
            workdir: "/app",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", target.goarch, None),
            source_date_epoch: 0,
            scratch_dir: scratch.path(),
            cache_dir: cache,
            offline: false,
        },
    )
    .map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            text.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        text
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
    let mut installed = Files::new();
    for (path, entry) in outcome.diff.iter() {
        let text = path.to_string();
        let Some(relative) = text
            .trim_start_matches('/')
            .strip_prefix("out/")
            .map(str::to_owned)
        else {
            continue;
        };
        let key = match &entry.kind {
            EntryKind::Dir => "dir".to_owned(),
            EntryKind::File(FileContent::Bytes(b)) => file_key(&relative, b),
            EntryKind::File(FileContent::HostFile { path, .. }) => {
                file_key(&relative, &std::fs::read(path).unwrap())
            }
            other => format!("{other:?}"),
        };
        installed.insert(relative, key);
    }
    Ok((chosen, installed))
}

/// One requirement set.
struct Case {
    name: &'static str,
    /// `/app/requirements.txt`.
    requirements: String,
    /// Other files in `/app`.
    more_files: Vec<(&'static str, String)>,
    /// The pip install arguments (besides the target and index).
    args: &'static str,
    /// Environment of the RUN.
    env: Vec<(&'static str, String)>,
    /// `None`: both succeed alike. `Some((kiln, pip))`: both fail, with these in their messages.
    failure: Option<(&'static str, &'static str)>,
}

fn case(name: &'static str, requirements: &str, args: &'static str) -> Case {
    Case {
        name,
        requirements: requirements.to_owned(),
        more_files: Vec::new(),
        args,
        env: Vec::new(),
        failure: None,
    }
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// `NAME==VERSION --hash=...` for every file of each `(name, version)` in the index.
fn hashed_lines(wheels: &[PathBuf], set: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, version) in set {
        let prefix = format!("{}-{version}-", name.replace('-', "_"));
        let hashes: Vec<String> = wheels
            .iter()
            .filter(|w| {
                let file = w.file_name().unwrap().to_string_lossy().to_lowercase();
                file.starts_with(&prefix.to_lowercase())
            })
            .map(|w| format!(" --hash=sha256:{}", sha256_of(w)))
            .collect();
        assert!(!hashes.is_empty(), "no wheel of {name} {version}");
        out.push_str(&format!("{name}=={version}{}\n", hashes.concat()));
    }
    out
}

fn version_in(wheels: &[PathBuf], name: &str, skip: &str) -> String {
    // The newest version of `name` in the index other than `skip` (file-name order is enough
    // for the handful of versions a case needs).
    let mut versions: Vec<String> = wheels
        .iter()
        .filter_map(|w| {
            let file = w.file_name()?.to_string_lossy().into_owned();
            let mut parts = file.split('-');
            let project = parts.next()?;
            (normalize(project) == name).then(|| parts.next().map(str::to_owned))?
        })
        .filter(|v| v != skip)
        .collect();
    versions.sort_by_key(|v| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    versions
        .pop()
        .unwrap_or_else(|| panic!("no {name} in the index"))
}

#[test]
fn kiln_resolves_and_installs_as_pip_does() {
    let wheels = oracle_wheels();
    let server = IndexServer::start(&wheels, &[]);
    let index = server.url();
    let cache = tempfile::tempdir().unwrap();
    let requests_closure = [
        ("requests", "2.32.3".to_owned()),
        ("urllib3", version_in(&wheels, "urllib3", "")),
        ("idna", version_in(&wheels, "idna", "")),
        ("certifi", version_in(&wheels, "certifi", "")),
        (
            "charset-normalizer",
            version_in(&wheels, "charset-normalizer", ""),
        ),
    ];
    let closure: Vec<(&str, &str)> = requests_closure
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let constraints = "werkzeug<3.1\nflask<3.1\n".to_owned();
    let cases = vec![
        case(
            "top-level pins only",
            "requests==2.32.3\nPyYAML==6.0.2\n",
            "-r requirements.txt",
        ),
        case(
            "pins plus loose requirements",
            "flask==3.0.3\ngunicorn\nrequests>=2.31\n",
            "-r requirements.txt",
        ),
        case(
            "loose requirements only",
            "flask\ngunicorn\nrequests\n",
            "-r requirements.txt",
        ),
        Case {
            failure: Some(("conflict on `werkzeug`", "ResolutionImpossible")),
            ..case(
                "a pin that conflicts with what another package needs",
                "flask==3.0.3\nwerkzeug==2.3.8\n",
                "-r requirements.txt",
            )
        },
        case("extras", "requests[socks]==2.32.3\n", "-r requirements.txt"),
        case(
            "markers for the target's machine, wheels for its libc",
            "flask==3.0.3\nurllib3<2 ; platform_machine == 'aarch64'\n\
             PyYAML==6.0.2 ; platform_machine != 'aarch64'\nmarkupsafe\n",
            "-r requirements.txt",
        ),
        case(
            "--no-deps installs only what is listed",
            "flask==3.0.3\nrequests\n",
            "--no-deps -r requirements.txt",
        ),
        Case {
            more_files: vec![("constraints.txt", constraints.clone())],
            ..case(
                "a constraints file",
                "flask\n",
                "-r requirements.txt -c constraints.txt",
            )
        },
        Case {
            more_files: vec![("constraints.txt", constraints.clone())],
            env: vec![("PIP_CONSTRAINT", "/app/constraints.txt".to_owned())],
            ..case("PIP_CONSTRAINT", "flask\n", "-r requirements.txt")
        },
        Case {
            failure: Some((
                "In --require-hashes mode, all requirements must have their versions pinned \
                 with ==",
                "In --require-hashes mode, all requirements must have their versions pinned \
                 with ==",
            )),
            ..case(
                "hash-checking mode with a missing dependency",
                &hashed_lines(&wheels, &[("requests", "2.32.3")]),
                "-r requirements.txt",
            )
        },
        case(
            "hash-checking mode with the whole set",
            &hashed_lines(&wheels, &closure),
            "-r requirements.txt",
        ),
        case(
            "--upgrade with the eager strategy",
            "requests>=2.31\n",
            "-U --upgrade-strategy eager -r requirements.txt",
        ),
        Case {
            failure: Some(("no version of `flask` fits", "No matching distribution")),
            ..case("no version fits", "flask>=9\n", "-r requirements.txt")
        },
        Case {
            failure: Some((
                "In --require-hashes mode, all requirements must have their versions pinned \
                 with ==",
                "In --require-hashes mode, all requirements must have their versions pinned \
                 with ==",
            )),
            ..case(
                "--require-hashes with a loose requirement",
                "requests>=2\n",
                "--require-hashes -r requirements.txt",
            )
        },
    ];
    assert!(cases.len() >= 12);
    let mut checked = 0;
    for target in &TARGETS {
        for case in &cases {
            let mut files = vec![("requirements.txt", case.requirements.clone())];
            files.extend(case.more_files.iter().cloned());
            let args: Vec<String> = case.args.split_whitespace().map(str::to_owned).collect();
            let what = format!("{} / {}", target.name, case.name);
            let kiln = kiln_run(&index, target, &args, &files, &case.env, cache.path());
            let pip = pip_oracle(&index, target, &args, &files, &case.env);
            match (&case.failure, kiln, pip) {
                (None, Ok((kiln_set, kiln_files)), Ok((pip_set, pip_files))) => {
                    assert_eq!(kiln_set, pip_set, "{what}: resolution");
                    let differing: Vec<(&String, Option<&String>, Option<&String>)> = kiln_files
                        .keys()
                        .chain(pip_files.keys())
                        .filter(|k| kiln_files.get(*k) != pip_files.get(*k))
                        .map(|k| (k, kiln_files.get(k), pip_files.get(k)))
                        .collect();
                    assert!(
                        differing.is_empty() && !kiln_files.is_empty(),
                        "{what}: installed files differ (path, kiln, pip): {differing:?}"
                    );
                }
                (Some((kiln_says, pip_says)), Err(kiln_err), Err(pip_err)) => {
                    assert!(
                        kiln_err.contains(kiln_says),
                        "{what}: kiln said\n{kiln_err}"
                    );
                    assert!(pip_err.contains(pip_says), "{what}: pip said\n{pip_err}");
                }
                (_, kiln, pip) => panic!(
                    "{what}: verdicts differ\nkiln: {:?}\npip: {:?}",
                    kiln.map(|r| r.0),
                    pip.map(|r| r.0)
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() * TARGETS.len());
}
