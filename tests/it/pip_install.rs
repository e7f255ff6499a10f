//! The native `pip install` step on real wheels, served three ways: a find-links directory, a
//! local PEP 503 directory index, and a PEP 691 JSON + PEP 658 `.metadata` HTTP index served on
//! 127.0.0.1 by this test.
//!
//! The wheels are the seed app's pinned set for CPython 3.11 on musllinux_1_2 x86_64, fetched
//! once by the host's pip into `<target>/test-wheels` (the cache the wheel oracle test uses; pip
//! reaches the index through its own configuration). The stage is an Alpine-like MemFs with
//! `/usr/local/bin/python3.11`, a musl loader, `/etc/passwd` and the seed `requirements.txt` in
//! `/app`. `pip install --no-cache-dir --user -r requirements.txt` must produce exactly the
//! tree that installing each wheel directly with `wheel::install_wheel` into
//! `/root/.local` produces (the tree the oracle test checks against pip). Missing pip or network
//! makes the test fail, never skip.

use crate::support::simple_index;
use crate::support::wheels as wheel_cache;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::image::platform::Platform;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target;
use kiln::python::wheel::{self, InstallOptions, Owner, Requested, Scheme};
use kiln::rootfs::MemFs;
use kiln::steps::pip::{PipError, PipOutcome, PipRequest, pip_install};
use sha2::{Digest, Sha256};
use simple_index::{make_wheel, wheel_metadata};

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/research/python-seed/requirements.txt"
);

/// The seed wheels (x86_64), downloaded once by pip, shared with the wheel oracle test.
fn seed_wheels() -> Vec<PathBuf> {
    let dir = wheel_cache::seed_wheel_dir("musllinux_1_2_x86_64");
    let seed_text = std::fs::read_to_string(SEED).unwrap();
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let project = wheel::normalize_name(name.split('-').next().unwrap());
            name.ends_with(".whl")
                && seed_text
                    .lines()
                    .any(|l| l.starts_with(&format!("{project}==")))
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 8, "the 8 seed wheels in {}", dir.display());
    out
}

fn file(diff: &mut Diff, at: &str, bytes: &[u8], mode: u32, uid: u32) {
    let mut meta = Metadata::root_owned(mode);
    meta.uid = uid;
    meta.gid = uid;
    diff.insert(
        LayerPath::new(at).unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(bytes.into())),
            meta,
        },
    );
}

fn dir(diff: &mut Diff, at: &str, uid: u32) {
    let mut meta = Metadata::root_owned(0o755);
    meta.uid = uid;
    meta.gid = uid;
    diff.insert(
        LayerPath::new(at).unwrap(),
        Entry {
            kind: EntryKind::Dir,
            meta,
        },
    );
}

/// An Alpine-like python:3.11 stage with `extra` files on top.
fn stage(requirements: &str, extra: &[(&str, &str)]) -> MemFs {
    let mut diff = Diff::new();
    file(
        &mut diff,
        "lib/ld-musl-x86_64.so.1",
        b"\x7fELF\0musl\x001.2.5\0",
        0o755,
        0,
    );
    file(&mut diff, "usr/local/bin/python3.11", b"\x7fELF", 0o755, 0);
    file(
        &mut diff,
        "usr/local/include/python3.11/patchlevel.h",
        b"#define PY_VERSION      \"3.11.16\"\n",
        0o644,
        0,
    );
    dir(&mut diff, "usr/local/lib/python3.11/site-packages", 0);
    file(
        &mut diff,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/home/appuser:/bin/sh\n",
        0o644,
        0,
    );
    file(
        &mut diff,
        "etc/group",
        b"root:x:0:root\nappuser:x:1000:\n",
        0o644,
        0,
    );
    dir(&mut diff, "root", 0);
    dir(&mut diff, "home/appuser", 1000);
    file(
        &mut diff,
        "app/requirements.txt",
        requirements.as_bytes(),
        0o644,
        0,
    );
    for (path, text) in extra {
        file(&mut diff, path, text.as_bytes(), 0o644, 0);
    }
    MemFs::from_diff(&diff)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

struct Run {
    fs: MemFs,
    env: BTreeMap<String, String>,
    user: String,
    offline: std::cell::Cell<bool>,
    work: tempfile::TempDir,
}

impl Run {
    fn new(fs: MemFs, env: &[(&str, &str)]) -> Run {
        Run {
            fs,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            user: String::new(),
            offline: std::cell::Cell::new(false),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn pip(&self, args: &str) -> Result<PipOutcome, PipError> {
        let env = |name: &str| self.env.get(name).cloned();
        let scratch = self.work.path().join("scratch");
        let cache = self.work.path().join("cache");
        std::fs::create_dir_all(&scratch).unwrap();
        let platform = Platform::new("linux", "amd64", None);
        pip_install(
            &words(args),
            &PipRequest {
                fs: &self.fs,
                workdir: "/app",
                user: &self.user,
                env: &env,
                platform: &platform,
                source_date_epoch: 1_700_000_000,
                scratch_dir: &scratch,
                cache_dir: &cache,
                offline: self.offline.get(),
            },
        )
    }
}

/// Path -> (kind, mode, uid, gid, mtime, sha256 of content).
fn snapshot(diff: &Diff) -> BTreeMap<String, String> {
    diff.iter()
        .map(|(path, entry)| {
            let content = match &entry.kind {
                EntryKind::File(FileContent::Bytes(b)) => hex::encode(Sha256::digest(b)),
                EntryKind::File(FileContent::HostFile { path, .. }) => {
                    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
                }
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

/// The reference: each seed wheel installed directly into `<home>/.local`.
fn direct_install(wheels: &[PathBuf], home: &str, uid: u32) -> BTreeMap<String, String> {
    let fs = stage("", &[]);
    let target = target::detect(&fs, &Platform::new("linux", "amd64", None)).unwrap();
    let tags = Tags::for_target(&target, LinuxTag::Exclude);
    let scheme = Scheme::user(&LayerPath::new(home).unwrap(), target.version).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let options = InstallOptions {
        scheme: &scheme,
        interpreter: &target.interpreter,
        tags: &tags,
        owner: Owner { uid, gid: uid },
        mtime: 1_700_000_000,
        scratch: scratch.path(),
        requested: Requested::Yes,
    };
    let mut diff = Diff::new();
    for path in wheels {
        let sha = hex::encode(Sha256::digest(std::fs::read(path).unwrap()));
        diff.merge(wheel::install_wheel(path, &sha, &options).unwrap().diff);
    }
    snapshot(&diff)
}

fn seed_text() -> String {
    std::fs::read_to_string(SEED).unwrap()
}

fn check_seed_outcome(outcome: &PipOutcome, wheels: &[PathBuf], home: &str, uid: u32) {
    let got = snapshot(&outcome.diff);
    let want = direct_install(wheels, home, uid);
    assert!(got.len() > 250, "only {} entries", got.len());
    let site = format!(
        "{}/.local/lib/python3.11/site-packages/flask/__init__.py",
        home
    );
    assert!(got.contains_key(&site), "{site} missing");
    assert!(
        got.contains_key(&format!("{home}/.local/bin/gunicorn")),
        "gunicorn launcher missing"
    );
    assert_eq!(
        got, want,
        "pip_install differs from direct install_wheel runs"
    );
    let purls: Vec<&str> = outcome.details.iter().map(|d| d.purl.as_str()).collect();
    assert_eq!(
        purls,
        [
            "pkg:pypi/blinker@1.9.0",
            "pkg:pypi/click@8.5.1",
            "pkg:pypi/flask@3.1.3",
            "pkg:pypi/gunicorn@27.0.1",
            "pkg:pypi/itsdangerous@2.2.0",
            "pkg:pypi/jinja2@3.1.6",
            "pkg:pypi/markupsafe@3.0.4",
            "pkg:pypi/werkzeug@3.1.9",
        ]
    );
    assert_eq!(outcome.details[6].name, "MarkupSafe");
    assert_eq!(outcome.materials.len(), 8);
    let seed = seed_text();
    for material in &outcome.materials {
        assert!(
            seed.contains(material.sha256.as_ref().expect("sha256").hex()),
            "{material:?}"
        );
        assert!(
            material
                .uri
                .ends_with(material.file_name().expect("file name")),
            "{material:?}"
        );
    }
}

fn find_links_dir(wheels: &[PathBuf]) -> String {
    wheels[0].parent().unwrap().display().to_string()
}

#[test]
fn seed_line_from_find_links_env() {
    let wheels = seed_wheels();
    let run = Run::new(
        stage(&seed_text(), &[]),
        &[("PIP_FIND_LINKS", &find_links_dir(&wheels))],
    );
    let outcome = run
        .pip("--no-cache-dir --user -r requirements.txt")
        .unwrap();
    check_seed_outcome(&outcome, &wheels, "/root", 0);
    assert!(outcome.materials[0].uri.starts_with("file:///"));
}

#[test]
fn seed_line_as_appuser_with_pip_conf_local_index() {
    let wheels = seed_wheels();
    // A PEP 503 tree: <root>/<normalized name>/<files>.
    let index = tempfile::tempdir().unwrap();
    for wheel_path in &wheels {
        let name = wheel_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let project = wheel::normalize_name(name.split('-').next().unwrap());
        let dir = index.path().join(&project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(wheel_path, dir.join(&name)).unwrap();
        if project == "flask" {
            // An index.html wins over the directory listing; its link may point elsewhere.
            let elsewhere = index.path().join("files");
            std::fs::create_dir_all(&elsewhere).unwrap();
            std::fs::rename(dir.join(&name), elsewhere.join(&name)).unwrap();
            let html = format!(
                "<html><body><a href=\"../files/{name}#sha256={}\">{name}</a></body></html>",
                hash_of(wheel_path)
            );
            std::fs::write(dir.join("index.html"), html).unwrap();
        }
    }
    let conf = format!("[global]\nindex-url = file://{}\n", index.path().display());
    let mut run = Run::new(
        stage(
            &seed_text(),
            &[("home/appuser/.config/pip/pip.conf", &conf)],
        ),
        &[],
    );
    run.user = "appuser".to_owned();
    let outcome = run.pip("--user -r requirements.txt").unwrap();
    check_seed_outcome(&outcome, &wheels, "/home/appuser", 1000);
    // The existing home keeps its owner; everything created below it is appuser's.
    let local = outcome
        .diff
        .get(&LayerPath::new("home/appuser/.local").unwrap())
        .unwrap();
    assert_eq!((local.meta.uid, local.meta.gid), (1000, 1000));
}

/// A tiny HTTP/1.1 server on 127.0.0.1: fixed routes, `Connection: close`, stops on drop or
/// after two minutes.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Routes = BTreeMap<String, (String, Vec<u8>)>;

impl Server {
    fn start(routes: Routes) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut accept = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("accept:") {
                        accept = v.trim().to_owned();
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                log2.lock().unwrap().push((path.clone(), accept.clone()));
                let key = if accept.contains("application/vnd.pypi.simple.v1+json") {
                    format!("{path} json")
                } else {
                    path.clone()
                };
                let response = routes.get(&key).or_else(|| routes.get(&path));
                let (status, content_type, body) = match response {
                    Some((ct, body)) => ("200 OK", ct.as_str(), body.as_slice()),
                    None => ("404 Not Found", "text/plain", b"not found".as_slice()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            }
        });
        Server {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// PEP 691 JSON pages (and PEP 503 HTML for other Accept headers) plus PEP 658 metadata.
fn http_routes(wheels: &[PathBuf], extra: &[(&str, &str)]) -> Routes {
    let mut by_project: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut routes = Routes::new();
    for path in wheels {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let project = wheel::normalize_name(name.split('-').next().unwrap());
        let bytes = std::fs::read(path).unwrap();
        let metadata = wheel_metadata(path);
        by_project
            .entry(project)
            .or_default()
            .push(serde_json::json!({
                "filename": name,
                "url": format!("../../files/{name}"),
                "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))},
                "requires-python": ">=3.8",
                "core-metadata": {"sha256": hex::encode(Sha256::digest(&metadata))},
                "yanked": false,
            }));
        routes.insert(
            format!("/files/{name}"),
            ("application/octet-stream".into(), bytes),
        );
        routes.insert(
            format!("/files/{name}.metadata"),
            ("application/octet-stream".into(), metadata),
        );
    }
    for (project, file_json) in extra {
        by_project
            .entry((*project).to_owned())
            .or_default()
            .push(serde_json::from_str(file_json).unwrap());
    }
    for (project, files) in by_project {
        let page =
            serde_json::json!({"meta": {"api-version": "1.1"}, "name": project, "files": files});
        routes.insert(
            format!("/simple/{project}/ json"),
            (
                "application/vnd.pypi.simple.v1+json".into(),
                page.to_string().into_bytes(),
            ),
        );
    }
    routes
}

#[test]
fn seed_line_from_http_json_index_with_pep658() {
    let wheels = seed_wheels();
    let server = Server::start(http_routes(&wheels, &[]));
    let index = format!("http://127.0.0.1:{}/simple", server.port);
    let run = Run::new(stage(&seed_text(), &[]), &[("PIP_INDEX_URL", &index)]);
    let outcome = run
        .pip("--no-cache-dir --user -r requirements.txt")
        .unwrap();
    check_seed_outcome(&outcome, &wheels, "/root", 0);
    assert!(outcome.materials[0].uri.starts_with("http://127.0.0.1:"));
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter().any(
            |(p, a)| p == "/simple/flask/" && a.contains("application/vnd.pypi.simple.v1+json")
        ),
        "{log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|(p, _)| p.ends_with(".whl.metadata"))
            .count(),
        8,
        "PEP 658 metadata fetched for each wheel: {log:?}"
    );
    // A second run reuses the download cache: no wheel is downloaded again.
    let before = log.len();
    let again = run.pip("--user -r requirements.txt").unwrap();
    assert_eq!(snapshot(&again.diff), snapshot(&outcome.diff));
    let log = server.log.lock().unwrap().clone();
    assert!(
        !log[before..].iter().any(|(p, _)| p.ends_with(".whl")),
        "{:?}",
        &log[before..]
    );
    // Offline, with the server gone: the hashed pins are found in the cache by their hashes.
    drop(server);
    run.offline.set(true);
    let offline = run.pip("--user -r requirements.txt").unwrap();
    assert_eq!(snapshot(&offline.diff), snapshot(&outcome.diff));
    let err = run.pip("--user blinker==1.8.0").unwrap_err().to_string();
    assert!(
        err.contains("`blinker==1.8.0` is not in the download cache and offline mode"),
        "{err}"
    );
}

/// A download cache from the kiln before it was a store (`sha256/<hex>/<file name>`) still
/// serves an offline install: the files move into the store on first use, once, even with the
/// install's threads opening the cache at the same time.
#[test]
fn an_offline_install_reads_a_cache_in_the_older_layout() {
    let wheels = seed_wheels();
    let server = Server::start(http_routes(&wheels, &[]));
    let index = format!("http://127.0.0.1:{}/simple", server.port);
    let run = Run::new(stage(&seed_text(), &[]), &[("PIP_INDEX_URL", &index)]);
    let online = run.pip("--user -r requirements.txt").unwrap();
    drop(server);

    // The older layout: each file under `sha256/<hex>/` by its own name, nothing else.
    let cache = run.work.path().join("cache");
    let old = run.work.path().join("old-layout");
    std::fs::rename(cache.join("names"), &old).unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::rename(&old, cache.join("sha256")).unwrap();
    let kept = std::fs::read_dir(cache.join("sha256")).unwrap().count();
    assert!(kept >= wheels.len(), "{kept} files in the older layout");

    run.offline.set(true);
    let offline = run.pip("--user -r requirements.txt").unwrap();
    assert_eq!(snapshot(&offline.diff), snapshot(&online.diff));
    assert!(
        !cache.join("sha256").exists(),
        "every file moved into the store"
    );
}

/// A minimal valid wheel (RECORD hashes included) with the given METADATA lines.
fn hash_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn refusals_name_the_package_and_the_fix() {
    let wheels = seed_wheels();
    let links = find_links_dir(&wheels);
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("onlysdist-1.0.tar.gz"), b"not really").unwrap();
    let needs312 = make_wheel(
        extra.path(),
        "needs312",
        "1.0",
        &[],
        &["Requires-Python: >=3.12"],
    );
    let seed = seed_text();
    let flask_only = seed
        .split("flask==")
        .nth(1)
        .map(|rest| format!("flask=={}", rest.split("gunicorn").next().unwrap()))
        .unwrap();
    let bad_click = seed.replace(
        "8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37",
        &"0".repeat(64),
    );
    let both = format!("{links} {}", extra.path().display());
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let table: &[Case] = &[
        (
            "hash mismatch",
            &bad_click,
            &[("PIP_FIND_LINKS", &links)],
            "hash mismatch for `click==8.5.1`",
        ),
        (
            "missing dependency",
            &flask_only,
            &[("PIP_FIND_LINKS", &links)],
            "In --require-hashes mode, all requirements must have their versions pinned with ==. \
             These do not:\n    blinker>=1.9.0 (from Flask==3.1.3->/app/requirements.txt:1)",
        ),
        (
            "no index",
            &seed,
            &[],
            "no package index and no find-links configured",
        ),
        (
            "sdist only",
            "onlysdist==1.0\n",
            &[("PIP_FIND_LINKS", &both)],
            "`onlysdist` 1.0 is only available as a source distribution (onlysdist-1.0.tar.gz)",
        ),
        (
            "needs python 3.12 (wheel metadata)",
            "needs312==1.0\n",
            &[("PIP_FIND_LINKS", &both)],
            "needs312 1.0 requires Python >=3.12 (its metadata), which excludes the target's",
        ),
        (
            "unsatisfiable range",
            "flask>=9\n",
            &[("PIP_FIND_LINKS", &links)],
            "no version of `flask` fits:\n  the user requested flask>=9 (/app/requirements.txt:1)",
        ),
        (
            "unpinned in hash-checking mode",
            "flask>=2\n",
            &[("PIP_FIND_LINKS", &links), ("PIP_REQUIRE_HASHES", "1")],
            "In --require-hashes mode, all requirements must have their versions pinned with ==. \
             These do not:\n    flask>=2 (from /app/requirements.txt:1)",
        ),
        (
            "unsatisfiable pin",
            "flask==9.9.9\n",
            &[("PIP_FIND_LINKS", &links)],
            "no distribution of `flask==9.9.9` found in",
        ),
        (
            "relative find-links",
            "flask==3.1.3\n",
            &[("PIP_FIND_LINKS", "wheels")],
            "PIP_FIND_LINKS: `wheels` is a relative path",
        ),
        (
            "hash mode needs every hash",
            "flask==3.1.3\n",
            &[("PIP_FIND_LINKS", &links), ("PIP_REQUIRE_HASHES", "1")],
            "Hashes are required in --require-hashes mode, but they are missing from some \
             requirements.",
        ),
    ];
    for (case, requirements, env, want) in table {
        let run = Run::new(stage(requirements, &[]), env);
        let err = match run.pip("--user -r requirements.txt") {
            Ok(_) => panic!("{case}: installed"),
            Err(e) => e,
        };
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(inner) = source {
            text.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        assert!(
            text.contains(want),
            "{case}:\n  got:  {text}\n  want: {want}"
        );
    }
    // With --no-deps the incomplete set installs.
    let run = Run::new(stage(&flask_only, &[]), &[("PIP_FIND_LINKS", &links)]);
    let outcome = run.pip("--user --no-deps -r requirements.txt").unwrap();
    assert_eq!(outcome.details.len(), 1);
    // The hash of a synthetic wheel is honoured in hash-checking mode.
    let line = format!("needs312==1.0 --hash=sha256:{}\n", hash_of(&needs312));
    let run = Run::new(stage(&line, &[]), &[("PIP_FIND_LINKS", &both)]);
    let err = run
        .pip("--user -r requirements.txt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("requires Python >=3.12"), "{err}");
}

#[test]
fn http_index_requires_python_and_yanked() {
    let wheels = seed_wheels();
    let extra = tempfile::tempdir().unwrap();
    let needs312 = make_wheel(
        extra.path(),
        "needs312",
        "1.0",
        &[],
        &["Requires-Python: >=3.12"],
    );
    let mut routes = http_routes(
        &wheels,
        &[(
            "needs312",
            r#"{"filename": "needs312-1.0-py3-none-any.whl", "url": "/files/needs312-1.0-py3-none-any.whl",
                "hashes": {}, "requires-python": ">=3.12"}"#,
        )],
    );
    routes.insert(
        "/files/needs312-1.0-py3-none-any.whl".into(),
        (
            "application/octet-stream".into(),
            std::fs::read(&needs312).unwrap(),
        ),
    );
    let server = Server::start(routes);
    let index = format!("http://127.0.0.1:{}/simple/", server.port);
    let run = Run::new(stage("needs312==1.0\n", &[]), &[]);
    let err = run
        .pip(&format!("--user --index-url {index} -r requirements.txt"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`needs312` 1.0 requires Python >=3.12, but the image has Python 3.11.16"),
        "{err}"
    );
    let err = run
        .pip(&format!("--user --index-url {index} nosuchproject==1.0"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no distribution of `nosuchproject==1.0`"),
        "{err}"
    );
}

#[test]
fn config_precedence_table() {
    use kiln::python::config::{ConfigInputs, load};
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );
    let table: &[Case] = &[
        ("nothing", &[], &[], None),
        (
            "/etc/pip.conf over /etc/xdg",
            &[
                ("etc/xdg/pip/pip.conf", "[global]\nindex-url = A\n"),
                ("etc/pip.conf", "[global]\nindex-url = B\n"),
            ],
            &[],
            Some("B /etc/pip.conf [global]"),
        ),
        (
            "user over global",
            &[
                ("etc/pip.conf", "[global]\nindex-url = B\n"),
                ("root/.config/pip/pip.conf", "[global]\nindex-url = C\n"),
            ],
            &[],
            Some("C /root/.config/pip/pip.conf [global]"),
        ),
        (
            "new user file over legacy",
            &[
                ("root/.config/pip/pip.conf", "[global]\nindex-url = C\n"),
                ("root/.pip/pip.conf", "[global]\nindex-url = L\n"),
            ],
            &[],
            Some("C /root/.config/pip/pip.conf [global]"),
        ),
        (
            "site over user",
            &[
                ("root/.config/pip/pip.conf", "[global]\nindex-url = C\n"),
                ("usr/local/pip.conf", "[global]\nindex-url = S\n"),
            ],
            &[],
            Some("S /usr/local/pip.conf [global]"),
        ),
        (
            "[install] of a lower file over [global] of a higher one",
            &[
                ("etc/pip.conf", "[install]\nindex-url = D\n"),
                ("root/.config/pip/pip.conf", "[global]\nindex-url = C\n"),
            ],
            &[],
            Some("D /etc/pip.conf [install]"),
        ),
        (
            "PIP_CONFIG_FILE over files, user files skipped",
            &[
                ("app/my.conf", "[global]\nindex-url = F\n"),
                ("usr/local/pip.conf", "[global]\nno-index = true\n"),
            ],
            &[("PIP_CONFIG_FILE", "my.conf")],
            Some("F /app/my.conf [global]"),
        ),
        (
            "PIP_CONFIG_FILE=/dev/null disables files",
            &[("etc/pip.conf", "[global]\nindex-url = B\n")],
            &[("PIP_CONFIG_FILE", "/dev/null")],
            None,
        ),
        (
            "environment over every file",
            &[("etc/pip.conf", "[install]\nindex-url = D\n")],
            &[("PIP_INDEX_URL", "E")],
            Some("E PIP_INDEX_URL"),
        ),
    ];
    for (case, files, env, want) in table {
        let fs = stage("", files);
        let env_map: BTreeMap<&str, &str> = env.iter().copied().collect();
        let env_fn = |name: &str| env_map.get(name).map(|v| (*v).to_owned());
        let config = load(&ConfigInputs {
            fs: &fs,
            env: &env_fn,
            home: "/root",
            workdir: "/app",
            sys_prefix: "/usr/local",
        })
        .unwrap();
        let got = config
            .index_url
            .map(|v| format!("{} {}", v.value, v.origin));
        assert_eq!(got.as_deref(), *want, "{case}");
    }
    // Lists and booleans.
    let fs = stage(
        "",
        &[(
            "etc/pip.conf",
            "[global]\nfind-links =\n  /a\n  /b\nno-index = yes\n",
        )],
    );
    let env_fn = |name: &str| (name == "PIP_EXTRA_INDEX_URL").then(|| "X Y".to_owned());
    let config = load(&ConfigInputs {
        fs: &fs,
        env: &env_fn,
        home: "/root",
        workdir: "/app",
        sys_prefix: "/usr/local",
    })
    .unwrap();
    let links: Vec<&str> = config.find_links.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(links, ["/a", "/b"]);
    assert_eq!(config.extra_index_urls.len(), 2);
    assert_eq!(config.no_index, Some(true));
    let fs = stage("", &[("etc/pip.conf", "[global]\nno-index = maybe\n")]);
    let err = load(&ConfigInputs {
        fs: &fs,
        env: &|_: &str| None,
        home: "/root",
        workdir: "/app",
        sys_prefix: "/usr/local",
    })
    .unwrap_err();
    assert!(err.to_string().contains("/etc/pip.conf [global]"), "{err}");
}

#[test]
fn command_line_and_requirement_file_options_win() {
    let wheels = seed_wheels();
    let links = find_links_dir(&wheels);
    let seed = seed_text();
    // The environment names an index that does not exist; --no-index on the command line
    // drops it and --find-links supplies the files.
    let run = Run::new(
        stage(&seed, &[]),
        &[("PIP_INDEX_URL", "http://127.0.0.1:9/simple")],
    );
    let outcome = run
        .pip(&format!(
            "--user --no-index --find-links {links} -r requirements.txt"
        ))
        .unwrap();
    assert_eq!(outcome.details.len(), 8);
    // A requirements file's --find-links adds a source.
    let with_links = format!("--find-links {links}\n{seed}");
    let run = Run::new(stage(&with_links, &[]), &[]);
    let outcome = run.pip("--target deps -r requirements.txt").unwrap();
    assert!(
        outcome
            .diff
            .get(&LayerPath::new("app/deps/flask/__init__.py").unwrap())
            .is_some()
    );
}
