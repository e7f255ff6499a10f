//! The same trust for Alpine mirrors and Python indexes as for registries: the fixture's signed
//! apk repository and a PEP 503 index of a generated wheel, served over HTTPS by Python's
//! `http.server` with a certificate from a CA made by openssl, are read with the CA trusted
//! through `SSL_CERT_FILE`; a 429 is retried after its `Retry-After`; an HTTPS redirect to
//! plain HTTP is refused.
//!
//! kiln reads `SSL_CERT_FILE` once per process, and the other integration tests share this
//! one: the test makes the CA, then runs its checks in a child process of the test binary with
//! the variable set for that child alone.

use crate::support::apk_fixture;
use crate::support::registry as registry_support;
use crate::support::simple_index;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::require_tool;
use kiln::apk::{ApkOptions, run};
use kiln::python::index::{IndexClient, Source, SourceKind};
use kiln::rootfs::MemFs;
use kiln::steps::run::NativeCommand;
use registry_support::free_port;

fn openssl(args: &[&str], cwd: &Path) {
    require_tool("openssl");
    let output = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 in `dir`: `ca.crt`, `server.crt`, `server.key`.
fn make_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(&ec);
    args.extend_from_slice(&[
        "-days",
        "2",
        "-subj",
        "/CN=kiln mirror CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&args, dir);
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(&ec);
    args.extend_from_slice(&[
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&args, dir);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
        dir,
    );
}

/// Python's static file server over HTTPS on 127.0.0.1, serving `root`; `/redirect` answers
/// with a redirect to plain HTTP; `/busy/PATH` answers the first request for each PATH with 429
/// and `Retry-After: 1`, then serves PATH. Killed by its PID when dropped.
struct HttpsServer {
    port: u16,
    child: Child,
}

const SERVER: &str = r#"
import http.server, ssl, sys
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
busy = set()
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def do_GET(self):
        if self.path.startswith("/busy/"):
            if self.path not in busy:
                busy.add(self.path)
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.path = self.path[len("/busy"):]
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/x86_64/APKINDEX.tar.gz" % port)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

impl HttpsServer {
    fn start(root: &Path, pki: &Path) -> HttpsServer {
        require_tool("python3");
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(root)
            .arg(port.to_string())
            .arg(pki.join("server.crt"))
            .arg(pki.join("server.key"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "HTTPS server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpsServer { port, child }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn apk_commands() -> Vec<NativeCommand> {
    vec![
        NativeCommand::ApkUpdate,
        NativeCommand::ApkUpgrade {
            available: false,
            no_cache: false,
            update_cache: false,
            latest: false,
        },
    ]
}

fn apk_options(repository: String, cache: &Path) -> ApkOptions {
    ApkOptions {
        repositories: Some(vec![repository]),
        cache_dir: Some(cache.to_owned()),
        offline: false,
        ..ApkOptions::default()
    }
}

/// Set (to the CA's directory) in the child process that runs the checks.
const CHILD_PKI: &str = "KILN_TEST_TLS_MIRRORS_PKI";

#[test]
fn https_alpine_mirror_and_python_index_trust_the_ca_in_ssl_cert_file() {
    let work = tempfile::tempdir().unwrap();
    let pki = match std::env::var_os(CHILD_PKI) {
        Some(made) => std::path::PathBuf::from(made),
        None => {
            let pki = work.path().join("pki");
            std::fs::create_dir_all(&pki).unwrap();
            make_pki(&pki);
            pki
        }
    };
    let ca = pki.join("ca.crt");
    if !crate::support::alone_in_own_process(
        "registry_tls_mirrors::https_alpine_mirror_and_python_index_trust_the_ca_in_ssl_cert_file",
        &[
            ("SSL_CERT_FILE", ca.as_os_str()),
            (CHILD_PKI, pki.as_os_str()),
        ],
    ) {
        return;
    }

    // The Alpine mirror: the same layer as from the repository directory.
    let fx = apk_fixture::fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let cache = tempfile::tempdir().unwrap();
    let from_dir = run(
        &apk_commands(),
        &lower,
        &apk_options(fx.repo.display().to_string(), cache.path()),
    )
    .unwrap();
    let mirror = HttpsServer::start(&fx.repo, &pki);
    let https_cache = tempfile::tempdir().unwrap();
    let from_https = run(
        &apk_commands(),
        &lower,
        &apk_options(mirror.url(), https_cache.path()),
    )
    .unwrap();
    assert_eq!(from_https.diff, from_dir.diff);
    assert!(
        from_https
            .materials
            .iter()
            .any(|m| m.uri.starts_with(&mirror.url()))
    );

    // A mirror that answers 429 first is asked again after its Retry-After (1 s, longer than
    // the 300 ms kiln would otherwise wait).
    let started = Instant::now();
    let from_busy = run(
        &apk_commands(),
        &lower,
        &apk_options(
            format!("{}/busy", mirror.url()),
            tempfile::tempdir().unwrap().path(),
        ),
    )
    .unwrap();
    assert_eq!(from_busy.diff, from_dir.diff);
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A mirror that redirects from HTTPS to plain HTTP is refused.
    let err = run(
        &apk_commands(),
        &lower,
        &apk_options(
            format!("{}/redirect", mirror.url()),
            tempfile::tempdir().unwrap().path(),
        ),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("refused a redirect from HTTPS to plain HTTP"),
        "{err:#}"
    );

    // The Python index: a PEP 503 page for one generated wheel.
    let index_root = work.path().join("index");
    let files = index_root.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let wheel = simple_index::make_wheel(&files, "tlsdemo", "1.0", &[], &[]);
    let filename = wheel.file_name().unwrap().to_str().unwrap().to_owned();
    let sha = registry_support::sha256(&std::fs::read(&wheel).unwrap());
    let sha = sha.trim_start_matches("sha256:");
    let project = index_root.join("simple/tlsdemo");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("index.html"),
        format!(
            "<!DOCTYPE html><html><body><a href=\"../../files/{filename}#sha256={sha}\">{filename}</a></body></html>\n"
        ),
    )
    .unwrap();
    let index = HttpsServer::start(&index_root, &pki);
    let source = Source::parse(
        SourceKind::Index,
        &format!("{}/simple/", index.url()),
        "test",
    )
    .unwrap();
    let wheel_cache = tempfile::tempdir().unwrap();
    let client = IndexClient::new(vec![source], wheel_cache.path(), false);
    let found = client.files("tlsdemo").unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let cached = client.fetch(&found[0]).unwrap();
    assert_eq!(cached.sha256, sha);
}
