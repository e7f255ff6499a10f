//! `kiln build --push` against a registry with the OCI 1.1 referrers API. Debian's
//! docker-registry (distribution 2.8) has none, so this is the one registry test that talks to
//! a stub: a small in-test HTTP server on 127.0.0.1 implementing just the distribution calls
//! a push makes, plus `GET /v2/<name>/referrers/<digest>`. With it, kiln pushes the attestation
//! manifests by digest (the registry indexes them by their `subject`) and no fallback tag.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::{kiln, kiln_ok, write_files};

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: BTreeMap<String, (String, Vec<u8>)>,
    tags: BTreeMap<String, String>,
    referrers: BTreeMap<String, Vec<serde_json::Value>>,
    uploads: BTreeMap<String, Vec<u8>>,
}

struct Stub {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn sha256(bytes: &[u8]) -> String {
    kiln::digest::Digest::of(bytes).to_string()
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn handle(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let mut stream = stream;
    let mut s = state.lock().unwrap();
    let segments: Vec<&str> = path.trim_start_matches("/v2/").split('/').collect();
    if path == "/v2/" || path == "/v2" {
        return respond(&mut stream, "200 OK", &[], b"{}");
    }
    // name/blobs/uploads/[id], name/blobs/<digest>, name/manifests/<ref>, name/referrers/<digest>
    let kind_at = segments
        .iter()
        .position(|p| matches!(*p, "blobs" | "manifests" | "referrers"))
        .unwrap_or(0);
    let name = segments[..kind_at].join("/");
    let rest = &segments[kind_at..];
    match (method.as_str(), rest) {
        ("HEAD", ["blobs", digest]) | ("GET", ["blobs", digest]) => match s.blobs.get(*digest) {
            Some(blob) => {
                let body = if method == "GET" {
                    blob.clone()
                } else {
                    Vec::new()
                };
                respond(
                    &mut stream,
                    "200 OK",
                    &[("Docker-Content-Digest", digest.to_string())],
                    &body,
                )
            }
            None => respond(&mut stream, "404 Not Found", &[], b""),
        },
        ("POST", ["blobs", "uploads", ..]) => {
            let id = format!("u{}", s.uploads.len() + 1);
            s.uploads.insert(id.clone(), Vec::new());
            respond(
                &mut stream,
                "202 Accepted",
                &[
                    ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
                    ("Range", "0-0".into()),
                ],
                b"",
            )
        }
        ("PATCH", ["blobs", "uploads", id]) => {
            let upload = s.uploads.entry(id.to_string()).or_default();
            upload.extend_from_slice(&body);
            let end = upload.len().saturating_sub(1);
            respond(
                &mut stream,
                "202 Accepted",
                &[
                    ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
                    ("Range", format!("0-{end}")),
                ],
                b"",
            )
        }
        ("PUT", ["blobs", "uploads", id]) => {
            let mut data = s.uploads.remove(*id).unwrap_or_default();
            data.extend_from_slice(&body);
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or("")
                .replace("%3A", ":");
            if sha256(&data) != digest {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    &[],
                    b"{\"errors\":[{\"code\":\"DIGEST_INVALID\"}]}",
                );
            }
            s.blobs.insert(digest.clone(), data);
            respond(
                &mut stream,
                "201 Created",
                &[("Docker-Content-Digest", digest)],
                b"",
            )
        }
        ("HEAD", ["manifests", reference]) | ("GET", ["manifests", reference]) => {
            let digest = s
                .tags
                .get(*reference)
                .cloned()
                .unwrap_or_else(|| reference.to_string());
            match s.manifests.get(&digest) {
                Some((media_type, bytes)) => {
                    let body = if method == "GET" {
                        bytes.clone()
                    } else {
                        Vec::new()
                    };
                    respond(
                        &mut stream,
                        "200 OK",
                        &[
                            ("Content-Type", media_type.clone()),
                            ("Docker-Content-Digest", digest),
                        ],
                        &body,
                    )
                }
                None => respond(&mut stream, "404 Not Found", &[], b""),
            }
        }
        ("PUT", ["manifests", reference]) => {
            let digest = sha256(&body);
            let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let media_type = document["mediaType"].as_str().unwrap_or("").to_owned();
            let mut headers = vec![("Docker-Content-Digest", digest.clone())];
            if let Some(subject) = document["subject"]["digest"].as_str() {
                s.referrers
                    .entry(subject.to_owned())
                    .or_default()
                    .push(serde_json::json!({
                        "mediaType": media_type,
                        "digest": digest,
                        "size": body.len(),
                        "artifactType": document["artifactType"],
                    }));
                headers.push(("OCI-Subject", subject.to_owned()));
            }
            if !reference.starts_with("sha256:") {
                s.tags.insert(reference.to_string(), digest.clone());
            }
            s.manifests.insert(digest, (media_type, body));
            respond(&mut stream, "201 Created", &headers, b"")
        }
        ("GET", ["referrers", digest]) => {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": s.referrers.get(*digest).cloned().unwrap_or_default(),
            });
            respond(
                &mut stream,
                "200 OK",
                &[(
                    "Content-Type",
                    "application/vnd.oci.image.index.v1+json".into(),
                )],
                index.to_string().as_bytes(),
            )
        }
        _ => respond(&mut stream, "404 Not Found", &[], b""),
    }
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: a push makes a few dozen requests.
            for _ in 0..50_000 {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        handle(stream, &state2);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        });
        Stub {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn attestations_go_to_the_referrers_api_when_the_registry_has_one() {
    let stub = Stub::start();
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ],
    );
    let target = format!("127.0.0.1:{}/kiln/referred:1", stub.port);
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "-t",
        &target,
        "--push",
        work.path().to_str().unwrap(),
    ]);
    let digest = digest.trim();
    let state = stub.state.lock().unwrap();
    let referrers = state.referrers.get(digest).cloned().unwrap_or_default();
    assert_eq!(
        referrers.len(),
        2,
        "provenance and SBOM indexed by subject: {referrers:?}"
    );
    let fallback = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    assert!(
        !state.tags.contains_key(&fallback),
        "no fallback tag when the API exists"
    );
    let tagged = state.tags.get("1").cloned().unwrap_or_default();
    drop(state);
    // verify and inspect find them through the API too.
    let keys = work.path().join("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "require_provenance = true\n").unwrap();
    let verified = kiln(&[
        "verify",
        &target,
        "--key",
        keys.join("public.pem").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--cache-dir",
        work.path().join("verify-cache").to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let inspected = kiln_ok(&["inspect", &target]);
    assert!(
        inspected.contains("https://slsa.dev/provenance/v1"),
        "{inspected}"
    );
    let state = stub.state.lock().unwrap();
    let (_, bytes) = state.manifests.get(&tagged).cloned().unwrap_or_default();
    assert_eq!(tagged, digest, "{}", String::from_utf8_lossy(&bytes));
}
