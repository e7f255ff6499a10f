//! Registry test harness: starts Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 with a free port and a temp dir, without auth, with htpasswd (bcrypt via
//! `htpasswd -Bbn`) or with token auth backed by an in-process token server that signs ES256
//! JWTs (p256; the certificate comes from `openssl req -x509` at test time). Also: skopeo
//! helpers, a request counter over the registry's access log, and a small image made with
//! kiln's own library. A missing tool panics with the package to install; nothing skips.
//!
//! Every process started here is killed by its PID when the harness value is dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use kiln::image::{BuiltImage, ImageConfig};
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::store::Store;

use crate::support::require_tool;

/// The user the htpasswd and token registries accept.
pub const USER: &str = "alice";
/// Her password.
pub const PASSWORD: &str = "s3cret-Pa55word";

/// How the registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP Basic against an htpasswd file.
    Htpasswd,
    /// Bearer tokens from the harness's token server (anonymous = pull only).
    Token,
}

/// A running registry.
pub struct TestRegistry {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// Config, data and log live here.
    pub dir: tempfile::TempDir,
    child: Child,
    token: Option<TokenServer>,
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("failed to run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl TestRegistry {
    /// Starts a registry with `auth`; returns once it accepts connections.
    pub fn start(auth: Auth) -> TestRegistry {
        TestRegistry::start_with_http(auth, "")
    }

    /// Starts a registry with `auth` and `http_extra` added to its `http:` section (indented
    /// by two spaces, e.g. `  tls:\n    certificate: ...\n`).
    pub fn start_with_http(auth: Auth, http_extra: &str) -> TestRegistry {
        TestRegistry::launch(auth, http_extra, None)
    }

    /// Starts a registry with token auth whose realm is `realm(token server port)` (a test may
    /// put a TLS front before the token server).
    pub fn start_with_token_realm(
        http_extra: &str,
        realm: &mut dyn FnMut(u16) -> String,
    ) -> TestRegistry {
        TestRegistry::launch(Auth::Token, http_extra, Some(realm))
    }

    fn launch(
        auth: Auth,
        http_extra: &str,
        realm: Option<&mut dyn FnMut(u16) -> String>,
    ) -> TestRegistry {
        let binary = require_tool("docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n{http_extra}",
            data.display()
        );
        let mut token = None;
        match auth {
            Auth::None => {}
            Auth::Htpasswd => {
                require_tool("htpasswd");
                let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    file.display()
                ));
            }
            Auth::Token => {
                require_tool("openssl");
                let key = dir.path().join("token.key");
                let cert = dir.path().join("token.crt");
                run(Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=kiln-test-token-issuer",
                        "-keyout",
                    ])
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert)
                    .stderr(Stdio::null()));
                let server = TokenServer::start(&key, &cert);
                let realm = match realm {
                    Some(realm) => realm(server.port),
                    None => format!("http://127.0.0.1:{}/token", server.port),
                };
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: kiln-test-registry\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                ));
                token = Some(server);
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = TestRegistry {
            port,
            dir,
            child,
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on 127.0.0.1:{port}; log:\n{}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines (combined log format) whose request line contains `method` and `path`
    /// fragments, counted from the log's byte offset `since`.
    pub fn count(&self, since: usize, method: &str, fragment: &str) -> usize {
        let log = self.log();
        log.get(since..)
            .unwrap_or("")
            .lines()
            .filter(|line| line.contains(&format!("\"{method} ")) && line.contains(fragment))
            .count()
    }

    /// The current length of the log (a mark for [`TestRegistry::count`]).
    pub fn mark(&self) -> usize {
        self.log().len()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token server on 127.0.0.1 issuing ES256 JWTs for the Docker token protocol.
struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM base64")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    fn start(key: &Path, cert: &Path) -> TokenServer {
        use p256::pkcs8::DecodePrivateKey;
        let key_pem = std::fs::read_to_string(key).expect("read token key");
        let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem).expect("PKCS#8 P-256 key");
        let cert_der = pem_body(&std::fs::read_to_string(cert).expect("read token cert"));
        let x5c = STANDARD.encode(cert_der);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        handle_token(stream, &signing, &x5c);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle_token(stream: TcpStream, key: &p256::ecdsa::SigningKey, x5c: &str) {
    use p256::ecdsa::signature::Signer;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "scope" => scopes.push(percent_decode(v)),
            "service" => service = percent_decode(v),
            _ => {}
        }
    }
    let mut user = None;
    if let Some(basic) = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
    {
        let decoded = STANDARD.decode(basic).unwrap_or_default();
        let text = String::from_utf8_lossy(&decoded).into_owned();
        if text == format!("{USER}:{PASSWORD}") {
            user = Some(USER);
        } else {
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| user.is_some() || *a == "pull")
                .collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "kiln-test-issuer", "sub": user.unwrap_or(""), "aud": service,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// Runs skopeo with `args`; panics (showing stderr) when it fails. Returns stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    require_tool("skopeo");
    run(Command::new("skopeo").args(args))
}

/// A small image made with kiln's own library: `layers` gzip layers, each holding a few files
/// (`seed` varies the content), assembled into `store`.
pub fn make_image(store: &Store, seed: &str, layers: usize) -> BuiltImage {
    let mut built = Vec::new();
    let mut history = Vec::new();
    for i in 0..layers {
        let mut diff = Diff::new();
        for j in 0..3 {
            let content = format!("{seed} layer {i} file {j}\n").repeat(50 + 100 * j);
            diff.insert(
                LayerPath::new(&format!("data/{seed}-{i}-{j}.txt")).expect("layer path"),
                Entry {
                    kind: EntryKind::File(FileContent::Bytes(Arc::from(content.into_bytes()))),
                    meta: Metadata::root_owned(0o644),
                },
            );
        }
        built.push(kiln::layer::write(&diff, store, &WriteOptions::default()).expect("layer"));
        history.push(kiln::image::config::History {
            created_by: Some(format!("layer {i}")),
            ..Default::default()
        });
    }
    let config = ImageConfig {
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        history,
        ..Default::default()
    };
    kiln::image::assemble(store, &config, &built, &Default::default()).expect("assemble")
}

/// An image with one gzip layer of about `size` bytes: the file inside is pseudo-random, so
/// gzip cannot shrink it (for chunked-upload and benchmark tests).
pub fn make_large_image(store: &Store, size: usize) -> BuiltImage {
    let mut state = 0x1234_5678_9abc_def0u64;
    let content: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut diff = Diff::new();
    diff.insert(
        LayerPath::new("big.bin").expect("layer path"),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(content))),
            meta: Metadata::root_owned(0o644),
        },
    );
    let layer = kiln::layer::write(&diff, store, &WriteOptions::default()).expect("layer");
    let config = ImageConfig {
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        ..Default::default()
    };
    kiln::image::assemble(store, &config, &[layer], &Default::default()).expect("assemble")
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    kiln::digest::Digest::of(bytes).to_string()
}

/// Reads the whole of `path`.
pub fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    out
}
