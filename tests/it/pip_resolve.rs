//! Resolution of loose requirements, PEP 751 lock files and `kiln lock pip`, checked against
//! the host's pip on the same local index.
//!
//! The index is served on 127.0.0.1 by `support/simple_index.rs` (PEP 691 JSON, PEP 503 HTML,
//! PEP 658 `.metadata`): real wheels that the host's pip downloaded (flask, gunicorn, requests
//! and their dependencies for CPython 3.11 on musllinux x86_64 and aarch64, plus older releases
//! of several of them), or small generated wheels for the backtracking and conflict cases. The
//! oracle is `pip install --dry-run --report --platform ... --target` against the same URL.
//! Missing pip or network fails the tests, never skips them.

use crate::support;
use crate::support::simple_index;

use std::collections::BTreeMap;
use std::path::Path;

use kiln::image::platform::Platform;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::MemFs;
use kiln::steps::pip::{PipOutcome, PipRequest, pip_install};
use sha2::{Digest, Sha256};
use simple_index::{IndexServer, PLATFORMS, make_wheel, pip_dry_run, pip_dry_run_result};

/// The newest requests in the test index is served as yanked: pip and kiln must both skip it.
const YANKED: &str = "requests-2.34.2-py3-none-any.whl";

fn arch_of(platform: &str) -> (&'static str, &'static str) {
    if platform.ends_with("aarch64") {
        ("aarch64", "arm64")
    } else {
        ("x86_64", "amd64")
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

/// An Alpine-like python:3.11 stage for `platform` with `files` in `/app`.
fn stage(platform: &str, files: &[(&str, &str)]) -> MemFs {
    let (machine, _) = arch_of(platform);
    let mut diff = Diff::new();
    insert(
        &mut diff,
        &format!("lib/ld-musl-{machine}.so.1"),
        bytes(b"\x7fELF\0musl\x001.2.5\0"),
        0o755,
    );
    insert(
        &mut diff,
        "usr/local/bin/python3.11",
        bytes(b"\x7fELF"),
        0o755,
    );
    insert(
        &mut diff,
        "usr/local/include/python3.11/patchlevel.h",
        bytes(b"#define PY_VERSION      \"3.11.16\"\n"),
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

/// `pip install ARGS` run natively by kiln in a stage for `platform`.
fn kiln_pip(
    platform: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
    args: &str,
    cache: &Path,
) -> Result<PipOutcome, String> {
    kiln_pip_with(platform, files, env, args, cache, false)
}

fn kiln_pip_with(
    platform: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
    args: &str,
    cache: &Path,
    offline: bool,
) -> Result<PipOutcome, String> {
    let fs = stage(platform, files);
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env_fn = |name: &str| env.get(name).cloned();
    let scratch = tempfile::tempdir().unwrap();
    let words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    pip_install(
        &words,
        &PipRequest {
            fs: &fs,
            workdir: "/app",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", arch_of(platform).1, None),
            source_date_epoch: 1_700_000_000,
            scratch_dir: scratch.path(),
            cache_dir: cache,
            offline,
        },
    )
    .map(|mut outcome| {
        // Large files live in the scratch dir: read them before it goes.
        outcome.diff = in_memory(&outcome.diff);
        outcome
    })
    .map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            text.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        text
    })
}

fn in_memory(diff: &Diff) -> Diff {
    let mut out = Diff::new();
    for (path, entry) in diff.iter() {
        let kind = match &entry.kind {
            EntryKind::File(FileContent::HostFile { path, .. }) => {
                bytes(&std::fs::read(path).unwrap())
            }
            other => other.clone(),
        };
        out.insert(
            path.clone(),
            Entry {
                kind,
                meta: entry.meta.clone(),
            },
        );
    }
    out
}

/// `(normalized name, version, wheel file name)` of what kiln installed, sorted.
fn chosen(outcome: &PipOutcome) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = outcome
        .details
        .iter()
        .zip(&outcome.materials)
        .map(|(dist, material)| {
            (
                simple_index::normalize(&dist.name),
                dist.version.clone(),
                material.file_name().expect("file name").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Path -> mode, owner, time and content hash of every entry.
fn snapshot(diff: &Diff) -> BTreeMap<String, String> {
    diff.iter()
        .map(|(path, entry)| {
            let content = match &entry.kind {
                EntryKind::File(FileContent::Bytes(b)) => hex::encode(Sha256::digest(b)),
                other => format!("{other:?}"),
            };
            let m = &entry.meta;
            (
                path.to_string(),
                format!("{:o} {}:{} {} {content}", m.mode, m.uid, m.gid, m.mtime),
            )
        })
        .collect()
}

fn version_of<'a>(set: &'a [(String, String, String)], name: &str) -> &'a str {
    set.iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, _)| v.as_str())
        .unwrap_or_else(|| panic!("{name} not in {set:?}"))
}

#[test]
fn loose_requirements_resolve_as_pip_does_on_the_same_index() {
    let wheels = simple_index::resolver_wheels();
    let server = IndexServer::start(&wheels, &[YANKED]);
    let cache = tempfile::tempdir().unwrap();
    let index = server.url();
    let env = [("PIP_INDEX_URL", index.as_str())];
    for platform in PLATFORMS {
        let outcome = kiln_pip(
            platform,
            &[],
            &env,
            "--user flask gunicorn requests",
            cache.path(),
        )
        .unwrap();
        let kiln_set = chosen(&outcome);
        let pip_set = pip_dry_run(&index, platform, &["flask", "gunicorn", "requests"]);
        assert_eq!(kiln_set, pip_set, "{platform}: kiln vs pip");
        assert_eq!(
            version_of(&kiln_set, "requests"),
            "2.31.0",
            "yanked skipped"
        );
        let markupsafe = kiln_set.iter().find(|(n, _, _)| n == "markupsafe").unwrap();
        assert!(
            markupsafe.2.ends_with(&format!("{platform}.whl")),
            "{markupsafe:?}"
        );
        // REQUESTED marks what the user asked for, as pip writes it.
        let requested: Vec<String> = outcome
            .diff
            .iter()
            .filter(|(p, _)| p.to_string().ends_with(".dist-info/REQUESTED"))
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(requested.len(), 3, "{requested:?}");
    }
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|p| p == "/files/flask-3.1.3-py3-none-any.whl.metadata"),
        "dependencies come from PEP 658 metadata"
    );
    assert!(
        !log.iter()
            .any(|p| p == "/files/flask-3.0.3-py3-none-any.whl"),
        "only chosen wheels are downloaded: {log:?}"
    );

    // Ranges, `~=`, `!=` and a marker that holds on aarch64 only: pip evaluates markers for the
    // host (x86_64), kiln for the target, so pip is the oracle on x86_64 only.
    let requirements = "flask<3.1\ngunicorn~=23.0\nrequests>=2.30,!=2.32.0\nurllib3<2 ; platform_machine == 'aarch64'\n";
    let files = [("requirements.in", requirements)];
    let x86 = kiln_pip(
        PLATFORMS[0],
        &files,
        &env,
        "--user -r requirements.in",
        cache.path(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("requirements.in"), requirements).unwrap();
    let pip_set = pip_dry_run_result(
        &index,
        PLATFORMS[0],
        &["-r", "requirements.in"],
        Some(work.path()),
    )
    .unwrap();
    let x86_set = chosen(&x86);
    assert_eq!(x86_set, pip_set);
    assert_eq!(version_of(&x86_set, "flask"), "3.0.3");
    assert_eq!(version_of(&x86_set, "gunicorn"), "23.0.0");
    assert_eq!(version_of(&x86_set, "packaging"), "26.4");
    assert_eq!(version_of(&x86_set, "requests"), "2.31.0");
    assert_eq!(version_of(&x86_set, "urllib3"), "2.8.0");
    let arm = kiln_pip(
        PLATFORMS[1],
        &files,
        &env,
        "--user -r requirements.in",
        cache.path(),
    )
    .unwrap();
    assert_eq!(
        version_of(&chosen(&arm), "urllib3"),
        "1.26.20",
        "marker for the target"
    );
}

#[test]
fn backtracking_finds_what_pip_finds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wheels = vec![
        make_wheel(d, "web", "3.0", &["util>=2"], &[]),
        make_wheel(
            d,
            "web",
            "2.0",
            &["util>=1", "extra-only ; extra == 'never'"],
            &[],
        ),
        make_wheel(d, "tool", "1.0", &["util<2"], &[]),
        make_wheel(d, "util", "2.0", &[], &[]),
        make_wheel(d, "util", "1.0", &[], &[]),
        make_wheel(d, "newpy", "2.0", &[], &["Requires-Python: >=3.12"]),
        make_wheel(d, "newpy", "1.0", &[], &[]),
    ];
    let server = IndexServer::start(&wheels, &[]);
    let cache = tempfile::tempdir().unwrap();
    let index = server.url();
    let env = [("PIP_INDEX_URL", index.as_str())];
    let outcome = kiln_pip(PLATFORMS[0], &[], &env, "web tool newpy", cache.path()).unwrap();
    let kiln_set = chosen(&outcome);
    let names: Vec<String> = kiln_set
        .iter()
        .map(|(n, v, _)| format!("{n}=={v}"))
        .collect();
    assert_eq!(names, ["newpy==1.0", "tool==1.0", "util==1.0", "web==2.0"]);
    assert_eq!(
        kiln_set,
        pip_dry_run(&index, PLATFORMS[0], &["web", "tool", "newpy"])
    );
    // From a find-links directory (no PEP 658 files): dependencies from each wheel's METADATA.
    let links = d.display().to_string();
    let from_wheels = kiln_pip(
        PLATFORMS[0],
        &[],
        &[("PIP_FIND_LINKS", links.as_str())],
        "web tool newpy",
        cache.path(),
    )
    .unwrap();
    let versions = |set: Vec<(String, String, String)>| -> Vec<(String, String)> {
        set.into_iter().map(|(n, v, _)| (n, v)).collect()
    };
    assert_eq!(versions(chosen(&from_wheels)), versions(kiln_set));
}

#[test]
fn unsatisfiable_requirements_name_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wheels = vec![
        make_wheel(d, "wide", "1.0", &["util>=2"], &[]),
        make_wheel(d, "tool", "1.0", &["util<2"], &[]),
        make_wheel(d, "util", "2.0", &[], &[]),
        make_wheel(d, "util", "1.0", &[], &[]),
        make_wheel(d, "newpy", "2.0", &[], &["Requires-Python: >=3.12"]),
    ];
    let server = IndexServer::start(&wheels, &[]);
    let cache = tempfile::tempdir().unwrap();
    let index = server.url();
    let env = [("PIP_INDEX_URL", index.as_str())];
    let err = kiln_pip(PLATFORMS[0], &[], &env, "wide tool", cache.path()).unwrap_err();
    for want in [
        "conflict on `util`",
        "wide 1.0 depends on util>=2",
        "tool 1.0 depends on util<2",
        "no version of `util` satisfies all of them (versions there: 2.0, 1.0)",
    ] {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
    // pip refuses the same set.
    let pip = pip_dry_run_result(&index, PLATFORMS[0], &["wide", "tool"], None).unwrap_err();
    assert!(pip.contains("ResolutionImpossible"), "{pip}");
    let err = kiln_pip(PLATFORMS[0], &[], &env, "newpy", cache.path()).unwrap_err();
    assert!(
        err.contains("`newpy`") && err.contains("requires Python >=3.12"),
        "{err}"
    );
}

fn kiln_lock(index: &str, output: &Path, cache: &Path) {
    let mut args = vec![
        "lock",
        "pip",
        "flask",
        "gunicorn",
        "requests",
        "--python-version",
        "3.11",
    ];
    for platform in PLATFORMS {
        args.extend(["--platform", platform]);
    }
    let output = output.to_str().unwrap();
    let cache = cache.to_str().unwrap();
    args.extend(["--index-url", index, "--cache-dir", cache, "-o", output]);
    support::kiln_ok(&args);
}

#[test]
fn kiln_lock_output_installs_the_resolution_and_pip_accepts_it() {
    let wheels = simple_index::resolver_wheels();
    let server = IndexServer::start(&wheels, &[YANKED]);
    let index = server.url();
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let requirements_path = work.path().join("requirements.txt");
    let pylock_path = work.path().join("pylock.toml");
    kiln_lock(&index, &requirements_path, cache.path());
    kiln_lock(&index, &pylock_path, cache.path());
    let requirements = std::fs::read_to_string(&requirements_path).unwrap();
    let pylock = std::fs::read_to_string(&pylock_path).unwrap();
    assert!(
        requirements.contains("requests==2.31.0 \\\n    --hash=sha256:"),
        "{requirements}"
    );
    let markupsafe = requirements.split("markupsafe==").nth(1).unwrap();
    assert_eq!(
        markupsafe
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    --hash"))
            .count(),
        2,
        "one hash per platform's wheel:\n{requirements}"
    );
    assert!(pylock.contains("lock-version = \"1.0\""), "{pylock}");
    assert!(
        !requirements.contains("127.0.0.1")
            && !requirements.contains(cache.path().to_str().unwrap())
    );

    let env = [("PIP_INDEX_URL", index.as_str())];
    for platform in PLATFORMS {
        // pip accepts the file in hash-checking mode and installs the same set for the target.
        let pip_set = pip_dry_run_result(
            &index,
            platform,
            &["-r", "requirements.txt"],
            Some(work.path()),
        )
        .unwrap();
        let files = [
            ("requirements.txt", requirements.as_str()),
            ("pylock.toml", pylock.as_str()),
        ];
        let hashed = kiln_pip(
            platform,
            &files,
            &env,
            "--user -r requirements.txt",
            cache.path(),
        )
        .unwrap();
        // The lock's URLs are enough: no index configured.
        let locked =
            kiln_pip(platform, &files, &[], "--user -r pylock.toml", cache.path()).unwrap();
        let loose = kiln_pip(
            platform,
            &files,
            &env,
            "--user flask gunicorn requests",
            cache.path(),
        )
        .unwrap();
        assert_eq!(chosen(&hashed), pip_set, "{platform}");
        assert_eq!(chosen(&locked), pip_set, "{platform}");
        assert_eq!(chosen(&loose), pip_set, "{platform}");
        assert_eq!(snapshot(&hashed.diff), snapshot(&locked.diff), "{platform}");
        // Resolving directly gives the same files, except that only the three projects the
        // user named carry REQUESTED (and their RECORD lists it).
        let strip = |diff: &Diff| -> BTreeMap<String, String> {
            snapshot(diff)
                .into_iter()
                .filter(|(p, _)| !p.ends_with("/REQUESTED") && !p.ends_with("/RECORD"))
                .collect()
        };
        assert_eq!(strip(&loose.diff), strip(&hashed.diff), "{platform}");
        assert_eq!(hashed.materials, locked.materials, "{platform}");
        // `kiln lock` left the wheels in the cache: the lock installs offline too.
        let offline = kiln_pip_with(
            platform,
            &files,
            &[],
            "--user -r pylock.toml",
            &cache.path().join("pip"),
            true,
        )
        .unwrap();
        assert_eq!(
            snapshot(&offline.diff),
            snapshot(&locked.diff),
            "{platform}"
        );
    }
    let mixed = kiln_pip(
        PLATFORMS[0],
        &[("pylock.toml", &pylock)],
        &env,
        "--user -r pylock.toml flask",
        cache.path(),
    )
    .unwrap_err();
    assert!(
        mixed.contains("is a PEP 751 lock file: install it on its own"),
        "{mixed}"
    );

    // A file that does not match the lock's hash is refused, naming the package.
    let first_hash = &pylock.split("sha256 = \"").nth(1).unwrap()[..64];
    let tampered = pylock.replace(first_hash, &"0".repeat(64));
    let err = kiln_pip(
        PLATFORMS[0],
        &[("pylock.toml", &tampered)],
        &[],
        "--user -r pylock.toml",
        &tempfile::tempdir().unwrap().path().join("cache"),
    )
    .unwrap_err();
    assert!(err.contains("hash mismatch for `"), "{err}");
}

#[test]
fn project_pages_of_a_level_are_fetched_together() {
    let wheels = simple_index::resolver_wheels();
    let latency = std::time::Duration::from_millis(100);
    let server = IndexServer::start_with_latency(&wheels, &[YANKED], latency);
    let cache = tempfile::tempdir().unwrap();
    let index = server.url();
    let started = std::time::Instant::now();
    let outcome = kiln_pip(
        PLATFORMS[0],
        &[],
        &[("PIP_INDEX_URL", index.as_str())],
        "--user flask gunicorn requests",
        cache.path(),
    )
    .unwrap();
    let pages = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.starts_with("/simple/"))
        .count();
    assert_eq!(pages, outcome.details.len(), "one page per project");
    // flask's five dependencies, then requests' four, are read at the same time.
    let together = server
        .max_pages_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        together >= 4,
        "at most {together} pages in flight at once ({:?} for {pages} pages of {latency:?})",
        started.elapsed()
    );
}
