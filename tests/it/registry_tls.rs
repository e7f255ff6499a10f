//! The `kiln` binary against Debian's docker-registry serving HTTPS with a private CA made by
//! openssl in the test: trust from each certs.d location (the `/etc` ones through
//! `KILN_CERTS_D_PREFIX`), `--cert-dir` and `SSL_CERT_FILE`; mutual TLS; insecure registries
//! (`--insecure-registry`, `--tls-verify=false`, registries.conf `insecure = true`) against a
//! self-signed HTTPS registry and a plain-HTTP one; token auth with the token server behind
//! HTTPS and a blob redirect to another host that never sees the Authorization header; and the
//! exact standard error of each failure kind (no colour when piped, one line per retry, the
//! fix on the last line). Push, pull, `kiln verify`, `kiln pin` and a build `FROM` the image
//! all go through the same trust. Library log lines appear only with `KILN_LOG`/`RUST_LOG`,
//! coloured only on a terminal (util-linux `script`) without `NO_COLOR`.

use crate::support;
use crate::support::registry as registry_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use registry_support::{Auth, TestRegistry};
use support::{require_tool, write_files};

/// Keys and certificates made by openssl for one test.
struct Pki {
    dir: PathBuf,
}

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

impl Pki {
    /// A CA (`ca.crt`) in `dir`.
    fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            &[
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
                "/CN=kiln test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
            dir,
        );
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// `NAME.crt` + `NAME.key` signed by the CA with `extensions` (an openssl extension file).
    fn issue(&self, name: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
            &self.dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.crt"),
            ],
            &self.dir,
        );
        (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        )
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self) -> (PathBuf, PathBuf) {
        self.issue(
            "server",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
    }
}

/// docker-registry on HTTPS with `cert`/`key`, requiring client certificates signed by
/// `client_ca` when given.
fn tls_registry(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TestRegistry {
    let mut http = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        http.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
    }
    TestRegistry::start_with_http(Auth::None, &http)
}

/// A sandbox for one kiln run: its own HOME, certs.d prefix and cache.
struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            root: tempfile::tempdir().unwrap(),
        }
    }
    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }
    fn prefix(&self) -> PathBuf {
        self.root.path().join("sysroot")
    }
    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// Runs kiln with this HOME and certs.d prefix, no `SSL_CERT_FILE` unless in `env`.
    fn kiln(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        std::fs::create_dir_all(self.home()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .args(args)
            .env("HOME", self.home())
            .env("KILN_CERTS_D_PREFIX", self.prefix())
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("KILN_LOG")
            .env_remove("RUST_LOG")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("start kiln")
    }

    fn kiln_ok(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let output = self.kiln(args, env);
        assert!(
            output.status.success(),
            "kiln {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Pushes a small image built FROM scratch to `reference`; returns its digest.
    fn push_image(&self, reference: &str, extra: &[&str], env: &[(&str, &Path)]) -> String {
        let context = self.root.path().join("context");
        write_files(
            &context,
            &[
                ("hello.txt", "hello over TLS\n"),
                ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
            ],
        );
        let cache = self.cache();
        let mut args = vec![
            "build",
            "--progress",
            "quiet",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            reference,
            "--push",
        ];
        args.extend_from_slice(extra);
        args.push(context.to_str().unwrap());
        self.kiln_ok(&args, env).trim().to_owned()
    }

    fn pull(&self, reference: &str, extra: &[&str], env: &[(&str, &Path)]) -> Output {
        let cache = self.root.path().join("pull-cache");
        let mut args = vec!["pull", "--cache-dir", cache.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(reference);
        self.kiln(&args, env)
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn copy_into(dir: &Path, files: &[(&Path, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (from, name) in files {
        std::fs::copy(from, dir.join(name)).unwrap();
    }
}

#[test]
fn the_ca_is_trusted_from_each_certs_d_location_cert_dir_and_ssl_cert_file() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let (cert, key) = pki.server();
    let reg = tls_registry(&cert, &key, None);
    let host = reg.host();

    let keys = work.path().join("keys");
    Env::new().kiln_ok(&["keygen", keys.to_str().unwrap()], &[]);
    let sign = format!("--sign-key={}", keys.join("private.pem").display());
    let public = keys.join("public.pem");

    // Each place the CA may be: push (signed), pull, verify, pin and a build FROM the image.
    let places = [
        "/etc/containers/certs.d",
        "/etc/docker/certs.d",
        "~/.config/containers/certs.d",
        "--cert-dir",
        "SSL_CERT_FILE",
    ];
    for (index, place) in places.iter().enumerate() {
        let env = Env::new();
        let ca = pki.ca();
        let cert_dir = env.root.path().join("certs");
        let mut flags: Vec<&str> = Vec::new();
        let mut vars: Vec<(&str, &Path)> = Vec::new();
        match *place {
            "/etc/containers/certs.d" => copy_into(
                &env.prefix().join("etc/containers/certs.d").join(&host),
                &[(&ca, "ca.crt")],
            ),
            "/etc/docker/certs.d" => copy_into(
                &env.prefix().join("etc/docker/certs.d").join(&host),
                &[(&ca, "ca.crt")],
            ),
            "~/.config/containers/certs.d" => copy_into(
                &env.home().join(".config/containers/certs.d").join(&host),
                &[(&ca, "ca.crt")],
            ),
            "--cert-dir" => {
                copy_into(&cert_dir, &[(&ca, "my-ca.crt")]);
                flags = vec!["--cert-dir", cert_dir.to_str().unwrap()];
            }
            _ => vars.push(("SSL_CERT_FILE", ca.as_path())),
        }
        let reference = reg.reference(&format!("tls/app:{index}"));
        let mut push_flags = flags.clone();
        push_flags.push(&sign);
        let digest = env.push_image(&reference, &push_flags, &vars);
        assert!(digest.starts_with("sha256:"), "{place}: {digest}");

        let output = env.pull(&reference, &flags, &vars);
        assert!(output.status.success(), "{place}: {}", stderr(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), digest);

        let verify_cache = env.root.path().join("verify-cache");
        let mut verify = vec![
            "verify",
            &reference,
            "--key",
            public.to_str().unwrap(),
            "--cache-dir",
            verify_cache.to_str().unwrap(),
        ];
        verify.extend_from_slice(&flags);
        env.kiln_ok(&verify, &vars);

        let context = env.root.path().join("from");
        write_files(
            &context,
            &[
                ("Dockerfile", &format!("FROM {reference}\nENV STAGE=two\n")),
                ("x", "x"),
            ],
        );
        let dockerfile = context.join("Dockerfile");
        let mut pin = vec!["pin", dockerfile.to_str().unwrap()];
        pin.extend_from_slice(&flags);
        env.kiln_ok(&pin, &vars);
        let pinned = std::fs::read_to_string(&dockerfile).unwrap();
        assert!(
            pinned.contains(&format!("{reference}@{digest}")),
            "{place}: {pinned}"
        );

        let layout = env.root.path().join("layout");
        let output_spec = format!("type=oci,dest={}", layout.display());
        let fresh_cache = env.root.path().join("from-cache");
        let mut build = vec![
            "build",
            "--progress",
            "quiet",
            "--cache-dir",
            fresh_cache.to_str().unwrap(),
            "--output",
            &output_spec,
        ];
        build.extend_from_slice(&flags);
        build.push(context.to_str().unwrap());
        env.kiln_ok(&build, &vars);
        assert!(layout.join("index.json").is_file(), "{place}");
    }
    let reference = reg.reference("tls/app:0");

    // Without the CA: one clear error, no retries.
    let env = Env::new();
    let output = env.pull(&reference, &[], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(!text.contains("retrying"), "{text}");
    assert!(text.contains("unknown certificate authority"), "{text}");
}

#[test]
fn mutual_tls_needs_the_client_certificate_from_certs_d() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let (cert, key) = pki.server();
    let (client_cert, client_key) = pki.issue(
        "client",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    let reg = tls_registry(&cert, &key, Some(&pki.ca()));
    let host = reg.host();
    let reference = reg.reference("mtls/app:1");

    let env = Env::new();
    let certs_d = env.prefix().join("etc/containers/certs.d").join(&host);
    copy_into(
        &certs_d,
        &[
            (&pki.ca(), "ca.crt"),
            (&client_cert, "client.cert"),
            (&client_key, "client.key"),
        ],
    );
    let digest = env.push_image(&reference, &[], &[]);
    let output = env.pull(&reference, &[], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), digest);

    // The CA alone: the registry refuses the handshake, and kiln names what is missing.
    let env = Env::new();
    let certs_d = env.prefix().join("etc/containers/certs.d").join(&host);
    copy_into(&certs_d, &[(&pki.ca(), "ca.crt")]);
    let output = env.pull(&reference, &[], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("requires a client certificate")
            && text.contains(&format!(
                "`client.cert` and `client.key` in `{}`",
                certs_d.display()
            )),
        "{text}"
    );
    assert!(!text.contains("retrying"), "{text}");
}

#[test]
fn insecure_registries_skip_verification_then_fall_back_to_plain_http() {
    let work = tempfile::tempdir().unwrap();
    // A certificate from a CA nobody trusts: a self-signed registry.
    let pki = Pki::new(&work.path().join("pki"));
    let (cert, key) = pki.server();
    let self_signed = tls_registry(&cert, &key, None);
    let plain = TestRegistry::start(Auth::None);

    for reg in [&self_signed, &plain] {
        let host = reg.host();
        let reference = reg.reference("insecure/app:1");
        let env = Env::new();
        let digest = env.push_image(&reference, &["--insecure-registry", &host], &[]);
        let output = env.pull(&reference, &["--tls-verify=false"], &[]);
        assert!(output.status.success(), "{host}: {}", stderr(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), digest);
        let conf = env.root.path().join("registries.conf");
        std::fs::write(
            &conf,
            format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"),
        )
        .unwrap();
        let output = env.pull(
            &reference,
            &["--registries-conf", conf.to_str().unwrap()],
            &[],
        );
        assert!(output.status.success(), "{host}: {}", stderr(&output));
    }
    // The plain-HTTP loopback registry works without any flag; the self-signed one does not.
    let env = Env::new();
    env.push_image(&plain.reference("noflag/app:1"), &[], &[]);
    let output = env.pull(&self_signed.reference("insecure/app:1"), &[], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown certificate authority"),
        "{}",
        stderr(&output)
    );
}

/// A one-answer HTTP server on 127.0.0.1 (plain HTTP; TLS handshakes are closed as a
/// plain-HTTP server closes them): every request gets `status` and `headers`.
fn canned_server(status: &'static str, headers: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader
                .fill_buf()
                .map(|b| b.first() == Some(&0x16))
                .unwrap_or(true)
            {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let body = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Standard error of `kiln pull REFERENCE` with the port, the test's directories and the
/// retry delays (jittered) replaced by placeholders.
fn pull_stderr(env: &Env, reference: &str, port: u16, extra_env: &[(&str, &Path)]) -> String {
    let output = env.pull(reference, &[], extra_env);
    assert!(!output.status.success(), "pull of {reference} succeeded");
    let text = stderr(&output);
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in piped stderr: {text:?}"
    );
    let mut text = text
        .replace(&port.to_string(), "PORT")
        .replace(&env.root.path().display().to_string(), "ROOT");
    // `retrying in 0.2 s` -> `retrying in N s` (backoff has jitter).
    while let Some(start) = text.find("retrying in ") {
        let from = start + "retrying in ".len();
        let Some(len) = text[from..].find(" s ") else {
            break;
        };
        text.replace_range(start..from + len, "RETRYING-IN-N");
    }
    text.replace("RETRYING-IN-N", "retrying in N")
}

/// A failure case: its name, the reference pulled, the port to hide, extra environment.
type Case<'a> = (&'a str, String, u16, Vec<(&'a str, &'a Path)>);

#[test]
fn each_failure_prints_its_cause_and_fix_without_colour() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let (cert, key) = pki.server();
    let tls = tls_registry(&cert, &key, None);
    let (wrong_cert, wrong_key) = pki.issue(
        "wrong-name",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:registry.example,DNS:other.example\n",
    );
    let wrong_name = tls_registry(&wrong_cert, &wrong_key, None);
    let plain = TestRegistry::start(Auth::None);
    let basic = TestRegistry::start(Auth::Htpasswd);
    let env = Env::new();
    let ca = pki.ca();

    let cases: Vec<Case> = vec![
        ("unknown CA", tls.reference("a/b:1"), tls.port, vec![]),
        (
            "name mismatch",
            wrong_name.reference("a/b:1"),
            wrong_name.port,
            vec![("SSL_CERT_FILE", ca.as_path())],
        ),
        (
            "DNS failure",
            "no-such-registry.invalid/a/b:1".to_owned(),
            0,
            vec![],
        ),
        (
            "404 of a tag",
            plain.reference("a/b:missing"),
            plain.port,
            vec![],
        ),
        ("401", basic.reference("a/b:1"), basic.port, vec![]),
    ];
    let mut report = String::new();
    for (name, reference, port, extra_env) in &cases {
        let actual = pull_stderr(&env, reference, *port, extra_env);
        report.push_str(&format!("--- {name}\n{actual}"));
    }
    // Connection refused: retried (a registry may be restarting), one line per retry.
    let closed = registry_support::free_port();
    let refused = pull_stderr(&env, &format!("127.0.0.1:{closed}/a/b:1"), closed, &[]);
    report.push_str(&format!("--- refused\n{refused}"));
    // 403 and 429 from a server that answers only that.
    let forbidden = canned_server("403 Forbidden", "");
    let text = pull_stderr(
        &env,
        &format!("127.0.0.1:{forbidden}/a/b:1"),
        forbidden,
        &[],
    );
    report.push_str(&format!("--- 403\n{text}"));
    let busy = canned_server("429 Too Many Requests", "Retry-After: 1\r\n");
    let text = pull_stderr(&env, &format!("127.0.0.1:{busy}/a/b:1"), busy, &[]);
    report.push_str(&format!("--- 429\n{text}"));
    assert_eq!(report, EXPECTED_REPORT, "actual:\n{report}");
}

/// The exact standard error of each failure, in the order of the test.
const EXPECTED_REPORT: &str = concat!(
    "--- unknown CA\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: failed to HEAD `https://127.0.0.1:PORT/v2/a/b/manifests/1`: the server's certificate is signed by an unknown certificate authority; trust the registry's CA: put its certificate in `ROOT/sysroot/etc/containers/certs.d/127.0.0.1:PORT/ca.crt` (or pass --cert-dir DIR, or set SSL_CERT_FILE)\n",
    "--- name mismatch\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: failed to HEAD `https://127.0.0.1:PORT/v2/a/b/manifests/1`: the server's certificate is not valid for this host name; it holds `registry.example`, `other.example`; use a name the certificate holds instead of `127.0.0.1:PORT`, or reissue the certificate for `127.0.0.1:PORT`\n",
    "--- DNS failure\n",
    "error: failed to pull `no-such-registry.invalid/a/b:1`\n",
    "  caused by: failed to HEAD `https://no-such-registry.invalid/v2/a/b/manifests/1`: the host name cannot be resolved; check the spelling of `no-such-registry.invalid` and this machine's DNS settings\n",
    "--- 404 of a tag\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:missing`\n",
    "  caused by: GET `http://127.0.0.1:PORT/v2/a/b/manifests/missing` failed: HTTP 404: MANIFEST_UNKNOWN manifest unknown; check the repository name and tag, and that you may read `/v2/a/b/manifests/missing`\n",
    "--- 401\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: HEAD `http://127.0.0.1:PORT/v2/a/b/manifests/1`: authentication failed (HTTP 401); no credentials for `127.0.0.1:PORT`: run `kiln login 127.0.0.1:PORT` or set KILN_REGISTRY_AUTH_127_0_0_1_PORT=user:password\n",
    "--- refused\n",
    "retrying in N s (attempt 2 of 5): https://127.0.0.1:PORT/v2/a/b/manifests/1: connection refused: nothing listens on that port\n",
    "retrying in N s (attempt 3 of 5): https://127.0.0.1:PORT/v2/a/b/manifests/1: connection refused: nothing listens on that port\n",
    "retrying in N s (attempt 4 of 5): https://127.0.0.1:PORT/v2/a/b/manifests/1: connection refused: nothing listens on that port\n",
    "retrying in N s (attempt 5 of 5): https://127.0.0.1:PORT/v2/a/b/manifests/1: connection refused: nothing listens on that port\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: failed to HEAD `https://127.0.0.1:PORT/v2/a/b/manifests/1`: connection refused: nothing listens on that port; is the server at `127.0.0.1:PORT` running? check the host and port\n",
    "--- 403\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: GET `http://127.0.0.1:PORT/v2/a/b/manifests/1`: authentication failed (HTTP 403): DENIED requested access to the resource is denied; no credentials for `127.0.0.1:PORT`: run `kiln login 127.0.0.1:PORT` or set KILN_REGISTRY_AUTH_127_0_0_1_PORT=user:password\n",
    "--- 429\n",
    "retrying in N s (attempt 2 of 5): 429 from http://127.0.0.1:PORT/v2/a/b/manifests/1\n",
    "retrying in N s (attempt 3 of 5): 429 from http://127.0.0.1:PORT/v2/a/b/manifests/1\n",
    "retrying in N s (attempt 4 of 5): 429 from http://127.0.0.1:PORT/v2/a/b/manifests/1\n",
    "retrying in N s (attempt 5 of 5): 429 from http://127.0.0.1:PORT/v2/a/b/manifests/1\n",
    "error: failed to pull `127.0.0.1:PORT/a/b:1`\n",
    "  caused by: `http://127.0.0.1:PORT/v2/a/b/manifests/1`: rate limited (HTTP 429); the registry `127.0.0.1:PORT` is throttling requests; wait and retry, or log in\n",
);

/// An HTTPS front (Python's http.server) relaying every request to a plain-HTTP upstream on
/// 127.0.0.1 (with `X-Forwarded-Proto: https`, so the registry's URLs say HTTPS), logging each
/// request line and whether it carried an Authorization header; with a redirect base, blob
/// GETs are answered with a 307 to that base instead, as a registry redirects to its storage.
struct TlsFront {
    port: u16,
    log: PathBuf,
    child: std::process::Child,
}

const FRONT: &str = r#"
import http.server, http.client, ssl, sys
port, upstream, cert, key, log, redirect = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def relay(self):
        with open(log, "a") as f:
            f.write("%s %s auth=%s\n" % (self.command, self.path, "yes" if self.headers.get("Authorization") else "no"))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if redirect and self.command == "GET" and "/blobs/sha256:" in self.path:
            self.send_response(307)
            self.send_header("Location", redirect + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        headers["X-Forwarded-Proto"] = "https"
        conn = http.client.HTTPConnection("127.0.0.1", upstream)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "transfer-encoding", "date", "server"):
                continue
            if k.lower() == "content-length" and self.command != "HEAD":
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = relay
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Front)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

impl TlsFront {
    fn start(upstream: u16, cert: &Path, key: &Path, redirect: &str, dir: &Path) -> TlsFront {
        require_tool("python3");
        let port = registry_support::free_port();
        let log = dir.join(format!("front-{port}.log"));
        std::fs::write(&log, "").unwrap();
        let child = Command::new("python3")
            .arg("-c")
            .arg(FRONT)
            .arg(port.to_string())
            .arg(upstream.to_string())
            .arg(cert)
            .arg(key)
            .arg(&log)
            .arg(redirect)
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "TLS front did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TlsFront { port, log, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn token_auth_over_tls_and_a_storage_redirect_without_the_authorization_header() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let (cert, key) = pki.server();
    // The blob storage: another host name (`localhost`), serving the blobs without auth.
    let storage_registry = TestRegistry::start(Auth::None);
    let storage = TlsFront::start(storage_registry.port, &cert, &key, "", work.path());
    // The registry: token auth, the token server behind HTTPS too, blobs redirected.
    let mut token_front = None;
    let registry = TestRegistry::start_with_token_realm("", &mut |token_port| {
        let front = TlsFront::start(token_port, &cert, &key, "", work.path());
        let realm = format!("https://127.0.0.1:{}/token", front.port);
        token_front = Some(front);
        realm
    });
    let token_front = token_front.expect("token front started");
    let front = TlsFront::start(
        registry.port,
        &cert,
        &key,
        &format!("https://localhost:{}", storage.port),
        work.path(),
    );

    let env = Env::new();
    let ca = pki.ca();
    let credential = format!("{}:{}", registry_support::USER, registry_support::PASSWORD);
    let credential_path = PathBuf::from(&credential);
    let auth_var = format!("KILN_REGISTRY_AUTH_127_0_0_1_{}", front.port);
    let trusted: Vec<(&str, &Path)> = vec![
        ("SSL_CERT_FILE", ca.as_path()),
        (auth_var.as_str(), credential_path.as_path()),
    ];
    // The same image in the storage (plain HTTP) and, through the fronts, in the registry.
    let stored = env.push_image(&storage_registry.reference("tok/app:1"), &[], &[]);
    let reference = format!("127.0.0.1:{}/tok/app:1", front.port);
    let pushed = env.push_image(&reference, &[], &trusted);
    assert_eq!(stored, pushed);
    assert!(
        token_front.log().contains("GET /token"),
        "the token came over HTTPS: {}",
        token_front.log()
    );

    let output = env.pull(&reference, &[], &trusted);
    assert!(output.status.success(), "{}", stderr(&output));
    let registry_log = front.log();
    assert!(
        registry_log.contains("auth=yes"),
        "the registry got the token: {registry_log}"
    );
    assert!(
        registry_log.contains("GET /v2/tok/app/blobs/sha256:"),
        "{registry_log}"
    );
    let storage_log = storage.log();
    let blob_gets: Vec<&str> = storage_log
        .lines()
        .filter(|l| l.contains("/blobs/sha256:"))
        .collect();
    assert!(
        !blob_gets.is_empty(),
        "blobs came from the storage host: {storage_log}"
    );
    assert!(
        blob_gets.iter().all(|l| l.ends_with("auth=no")),
        "an Authorization header reached the storage host: {storage_log}"
    );

    // A redirect from HTTPS to plain HTTP is refused, not followed.
    let downgrading = TlsFront::start(
        registry.port,
        &cert,
        &key,
        &format!("http://localhost:{}", storage_registry.port),
        work.path(),
    );
    let auth_var = format!("KILN_REGISTRY_AUTH_127_0_0_1_{}", downgrading.port);
    let trusted: Vec<(&str, &Path)> = vec![
        ("SSL_CERT_FILE", ca.as_path()),
        (auth_var.as_str(), credential_path.as_path()),
    ];
    let fresh = Env::new();
    let output = fresh.pull(
        &format!("127.0.0.1:{}/tok/app:1", downgrading.port),
        &[],
        &trusted,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("refused a redirect from HTTPS to plain HTTP"),
        "{}",
        stderr(&output)
    );
}

/// Runs `kiln ARGS` under a pseudo-terminal (util-linux `script`), returning what it printed.
fn kiln_on_a_terminal(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> String {
    require_tool("script");
    let mut line = String::from(env!("CARGO_BIN_EXE_kiln"));
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let mut command = Command::new("script");
    command
        .args(["-qec", &line, "/dev/null"])
        .env("HOME", env.home())
        .env_remove("NO_COLOR")
        .env_remove("KILN_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("run script");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn logs_only_when_asked_and_colour_only_on_a_terminal_without_no_color() {
    let reg = TestRegistry::start(Auth::None);
    let env = Env::new();
    let reference = reg.reference("logs/app:1");
    env.push_image(&reference, &[], &[]);
    let cache = env.root.path().join("log-cache");
    let pull = ["pull", "--cache-dir", cache.to_str().unwrap(), &reference];

    // By default: no log lines from kiln's libraries, even for the TLS probe of the port.
    let quiet = env.kiln(&pull, &[]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("DEBUG"), "{}", stderr(&quiet));
    // KILN_LOG (or RUST_LOG) turns them on, without colour when piped.
    let debug_path = PathBuf::from("debug");
    for name in ["KILN_LOG", "RUST_LOG"] {
        let logged = env.kiln(&pull, &[(name, &debug_path)]);
        let text = stderr(&logged);
        assert!(text.contains("DEBUG"), "{name}: {text}");
        assert!(!text.contains('\u{1b}'), "{name}: {text:?}");
    }
    // On a terminal: colour, unless NO_COLOR is set.
    let coloured = kiln_on_a_terminal(&env, &pull, &[("KILN_LOG", "debug")]);
    assert!(coloured.contains("DEBUG"), "{coloured}");
    assert!(coloured.contains("\u{1b}["), "{coloured:?}");
    let plain = kiln_on_a_terminal(&env, &pull, &[("KILN_LOG", "debug"), ("NO_COLOR", "1")]);
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(!plain.contains("\u{1b}["), "{plain:?}");
}
