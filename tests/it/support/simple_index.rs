//! A local package index for the resolver tests: wheels (real ones from the host's `pip
//! download`, or small generated ones) served on 127.0.0.1 over real HTTP as a PEP 691 JSON
//! simple API (PEP 503 HTML for clients that do not ask for JSON) with PEP 658 `.metadata`
//! files, so kiln and the host's pip resolve from the same index.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Normalized project name (PEP 503).
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The METADATA member of a wheel.
pub fn wheel_metadata(path: &Path) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let name = archive
        .file_names()
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)
        .unwrap()
        .to_owned();
    let mut out = Vec::new();
    archive
        .by_name(&name)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// An index serving `wheels` on 127.0.0.1 until dropped.
pub struct IndexServer {
    /// The port.
    pub port: u16,
    /// Request paths, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The most project pages (`/simple/...`) that were being served at the same time.
    pub max_pages_in_flight: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IndexServer {
    /// `http://127.0.0.1:PORT/simple`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple", self.port)
    }

    /// Serves `wheels`; files whose name is in `yanked` are marked yanked.
    pub fn start(wheels: &[PathBuf], yanked: &[&str]) -> IndexServer {
        IndexServer::start_with_latency(wheels, yanked, Duration::ZERO)
    }

    /// [`IndexServer::start`], answering each project page after `latency`, as a remote index.
    pub fn start_with_latency(
        wheels: &[PathBuf],
        yanked: &[&str],
        latency: Duration,
    ) -> IndexServer {
        let routes = Arc::new(routes(wheels, yanked));
        let pages = Arc::new(PageCounter::default());
        let max_pages_in_flight = pages.max.clone();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (routes, log, pages) = (routes.clone(), log2.clone(), pages.clone());
                // One thread per connection: downloads run in parallel, as in real indexes.
                std::thread::spawn(move || serve(stream, &routes, &log, &pages, latency));
            }
        });
        IndexServer {
            port,
            log,
            max_pages_in_flight,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for IndexServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// path (+ " json" for the JSON variant) -> (content type, body)
type Routes = BTreeMap<String, (String, Vec<u8>)>;

#[derive(Default)]
struct PageCounter {
    now: AtomicUsize,
    max: Arc<AtomicUsize>,
}

fn serve(
    mut stream: std::net::TcpStream,
    routes: &Routes,
    log: &Mutex<Vec<String>>,
    pages: &PageCounter,
    latency: Duration,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
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
    log.lock().unwrap().push(path.clone());
    let page = path.starts_with("/simple/");
    if page {
        let now = pages.now.fetch_add(1, Ordering::SeqCst) + 1;
        pages.max.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(latency);
    }
    let key = if accept.contains("application/vnd.pypi.simple.v1+json") {
        format!("{path} json")
    } else {
        path.clone()
    };
    let (status, content_type, body) = match routes.get(&key).or_else(|| routes.get(&path)) {
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
    if page {
        pages.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn routes(wheels: &[PathBuf], yanked: &[&str]) -> Routes {
    let mut by_project: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut routes = Routes::new();
    for path in wheels {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let project = normalize(name.split('-').next().unwrap());
        let bytes = std::fs::read(path).unwrap();
        let metadata = wheel_metadata(path);
        let requires_python = String::from_utf8_lossy(&metadata)
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                l.strip_prefix("Requires-Python:")
                    .map(|v| v.trim().to_owned())
            });
        let mut entry = serde_json::json!({
            "filename": name,
            "url": format!("../../files/{name}"),
            "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))},
            "core-metadata": {"sha256": hex::encode(Sha256::digest(&metadata))},
            "yanked": yanked.contains(&name.as_str()),
        });
        if let Some(requires) = requires_python {
            entry["requires-python"] = requires.into();
        }
        by_project.entry(project).or_default().push(entry);
        routes.insert(
            format!("/files/{name}"),
            ("application/octet-stream".into(), bytes),
        );
        routes.insert(
            format!("/files/{name}.metadata"),
            ("application/octet-stream".into(), metadata),
        );
    }
    for (project, mut files) in by_project {
        files.sort_by_key(|f| f["filename"].as_str().unwrap_or_default().to_owned());
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for file in &files {
            let requires = file["requires-python"]
                .as_str()
                .map(|r| {
                    format!(
                        " data-requires-python=\"{}\"",
                        r.replace('<', "&lt;").replace('>', "&gt;")
                    )
                })
                .unwrap_or_default();
            let yanked = if file["yanked"] == true {
                " data-yanked=\"\""
            } else {
                ""
            };
            html.push_str(&format!(
                "<a href=\"{}#sha256={}\" data-dist-info-metadata=\"sha256={}\" data-core-metadata=\"sha256={}\"{requires}{yanked}>{}</a>\n",
                file["url"].as_str().unwrap(),
                file["hashes"]["sha256"].as_str().unwrap(),
                file["core-metadata"]["sha256"].as_str().unwrap(),
                file["core-metadata"]["sha256"].as_str().unwrap(),
                file["filename"].as_str().unwrap(),
            ));
        }
        html.push_str("</body></html>\n");
        routes.insert(
            format!("/simple/{project}/"),
            ("text/html".into(), html.into_bytes()),
        );
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

/// A pure-Python wheel `name-version-py3-none-any.whl` in `dir` with `Requires-Dist` lines
/// and other metadata `headers` (`Requires-Python: >=3.12`).
pub fn make_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    requires: &[&str],
    headers: &[&str],
) -> PathBuf {
    let dist_info = format!("{name}-{version}.dist-info");
    let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    for header in headers {
        metadata.push_str(&format!("{header}\n"));
    }
    for requirement in requires {
        metadata.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("{name}/__init__.py"),
            format!("VERSION = {version:?}\n").into_bytes(),
        ),
        (format!("{dist_info}/METADATA"), metadata.into_bytes()),
        (
            format!("{dist_info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (path, bytes) in &files {
        let hash = kiln::python::wheel::record_hash(bytes);
        record.push_str(&format!("{path},{hash},{}\n", bytes.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (member, bytes) in files.iter().chain(std::iter::once(&(
        format!("{dist_info}/RECORD"),
        record.into_bytes(),
    ))) {
        zip.start_file(member.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// The platforms the resolver tests lock and install for.
pub const PLATFORMS: [&str; 2] = ["musllinux_1_2_x86_64", "musllinux_1_2_aarch64"];

/// Real wheels for `flask gunicorn requests` (with their dependencies) for CPython 3.11 on
/// both musllinux platforms, plus older releases of several of them (so the index offers a
/// choice), downloaded once by the host's pip into `<target>/test-wheels/resolver`; the tests
/// of a run share one download.
pub fn resolver_wheels() -> Vec<PathBuf> {
    static WHEELS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    WHEELS.get_or_init(cached_resolver_wheels).clone()
}

fn cached_resolver_wheels() -> Vec<PathBuf> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_owned();
    let dir = target_dir.join("test-wheels").join("resolver");
    if !dir.join(".complete").exists() {
        std::fs::create_dir_all(&dir).expect("create the wheel cache");
        for platform in PLATFORMS {
            pip_download(&dir, platform, &["flask", "gunicorn", "requests"], false);
            pip_download(
                &dir,
                platform,
                &[
                    "flask<3.1",
                    "werkzeug<3.1",
                    "requests<2.32",
                    "urllib3<2",
                    "gunicorn<24",
                    "packaging",
                ],
                true,
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

fn pip_download(dir: &Path, platform: &str, what: &[&str], no_deps: bool) {
    let mut command = Command::new("python3");
    command
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
        .args(["--implementation", "cp", "--abi", "cp311", "-d"])
        .arg(dir)
        .args(what);
    if no_deps {
        command.arg("--no-deps");
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
    });
    assert!(
        output.status.success(),
        "pip download failed; this test needs pip and the package index pip is configured for:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the host's pip would install for `args` from `index` for CPython 3.11 on `platform`:
/// `(normalized name, version, file name)` from `pip install --dry-run --report`, sorted.
pub fn pip_dry_run(index: &str, platform: &str, args: &[&str]) -> Vec<(String, String, String)> {
    pip_dry_run_result(index, platform, args, None).unwrap_or_else(|e| panic!("{e}"))
}

/// [`pip_dry_run`] in `dir` (for relative `-r` files); `Err(stderr)` when pip refuses.
pub fn pip_dry_run_result(
    index: &str,
    platform: &str,
    args: &[&str],
    dir: Option<&Path>,
) -> Result<Vec<(String, String, String)>, String> {
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report.json");
    let output = Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
        .args([
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-cache-dir",
            "--report",
        ])
        .arg(&report)
        .args([
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            "3.11",
        ])
        .args(["--implementation", "cp", "--abi", "cp311", "--target"])
        .arg(work.path().join("target"))
        .args(["--index-url", index])
        .args(args)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_FIND_LINKS")
        .current_dir(dir.unwrap_or(work.path()))
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run python3 -m pip ({e}); install Python 3 with pip")
        });
    if !output.status.success() {
        return Err(format!(
            "pip install --dry-run {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut out: Vec<(String, String, String)> = report["install"]
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
    out.sort();
    Ok(out)
}
