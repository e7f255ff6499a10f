//! Pull tests: kiln pulls what skopeo pushed (an image made with kiln's library, written as an
//! OCI layout), the reference cache makes digest-pinned and offline pulls work with the
//! registry gone, and bad input fails clearly: malformed references, a closed port, a manifest
//! that is not JSON, a rate-limited registry.

use crate::support::registry as registry_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln::image::BaseImage;
use kiln::registry::{self, Reference, RegistryError, RegistryOptions, RetryPolicy};
use kiln::store::Store;
use registry_support::{Auth, TestRegistry, make_image, skopeo};

fn reference(text: &str) -> Reference {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn options() -> RegistryOptions {
    RegistryOptions::default().use_environment(false)
}

fn amd64() -> kiln::image::Platform {
    "linux/amd64".parse().unwrap()
}

#[test]
fn pulls_what_skopeo_pushed_then_works_without_the_registry() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let image = make_image(&source, "pull", 3);
    let layout = dir.path().join("layout");
    kiln::image::write_oci_layout(
        &source,
        &layout,
        &[(image.clone(), vec!["pull:v1".to_owned()])],
    )
    .unwrap();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}", reg.reference("from/skopeo:v1")),
    ]);

    let store = Store::open(&dir.path().join("store")).unwrap();
    let by_tag = reference(&reg.reference("from/skopeo:v1"));
    let pulled = registry::pull(&by_tag, &amd64(), &store, &options()).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest.digest);
    assert_eq!(pulled.layers, image.layers);
    assert_eq!(pulled.config, image.config);
    assert_eq!(
        pulled.source,
        format!(
            "docker://{}@{}",
            reg.reference("from/skopeo"),
            image.manifest.digest
        )
    );
    for layer in &image.layers {
        assert_eq!(
            std::fs::read(store.blob_path(&layer.digest)).unwrap(),
            std::fs::read(source.blob_path(&layer.digest)).unwrap()
        );
    }
    let base: BaseImage = pulled.clone().into();
    assert_eq!(base.manifest_digest, image.manifest.digest);

    // A second pull of the tag with the store warm downloads no blob.
    let mark = reg.mark();
    registry::pull(&by_tag, &amd64(), &store, &options()).unwrap();
    assert_eq!(reg.count(mark, "GET", "/blobs/"), 0, "{}", reg.log());
    assert_eq!(
        reg.count(mark, "GET", "/manifests/"),
        0,
        "HEAD resolved the tag"
    );

    // Registry gone: a digest-pinned reference needs no network, and offline resolves the tag
    // from the reference cache.
    let pinned = by_tag.with_digest(image.manifest.digest.clone());
    drop(reg);
    let again = registry::pull(&pinned, &amd64(), &store, &options()).unwrap();
    assert_eq!(again.layers, pulled.layers);
    let offline = registry::pull(&by_tag, &amd64(), &store, &options().offline(true)).unwrap();
    assert_eq!(offline.manifest_digest, image.manifest.digest);

    // Offline with an unknown reference names what is missing.
    let unknown = reference("127.0.0.1:1/never/pulled:x");
    let err = registry::pull(&unknown, &amd64(), &store, &options().offline(true)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Offline { .. }), "{text}");
    assert!(
        text.contains("never/pulled:x") && text.contains("offline"),
        "{text}"
    );
    // Offline with a pinned digest whose blobs are not stored names the blob.
    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let err = registry::pull(&pinned, &amd64(), &fresh, &options().offline(true)).unwrap_err();
    assert!(
        err.to_string().contains(&image.manifest.digest.to_string()),
        "{err}"
    );
}

#[test]
fn malformed_references_are_clear_errors() {
    let cases = [
        ("UPPER/case", "lowercase"),
        ("name:bad tag", "whitespace"),
        ("name@sha256:1234", "malformed digest"),
        ("https://ghcr.io/a/b", "URL scheme"),
    ];
    for (input, fragment) in cases {
        let err = input.parse::<Reference>().unwrap_err().to_string();
        assert!(
            err.contains(input) && err.contains(fragment),
            "{input}: {err}"
        );
    }
}

#[test]
fn closed_port_is_a_connection_error_naming_the_url() {
    let port = registry_support::free_port();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let quick = RetryPolicy {
        attempts: 2,
        base_delay: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let err = registry::pull(
        &reference(&format!("127.0.0.1:{port}/nothing/here:1")),
        &amd64(),
        &store,
        &options().retry(quick),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!(
            "https://127.0.0.1:{port}/v2/nothing/here/manifests/1"
        )),
        "{text}"
    );
    assert!(
        text.contains("connection refused") && text.contains("running?"),
        "{text}"
    );
}

/// A one-trick HTTP server on 127.0.0.1: answers every request with `status`, `headers` and
/// `body`, counting requests. Stops when the process exits (tests are short-lived).
fn canned_server(
    status: &'static str,
    headers: &'static str,
    body: &'static str,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // kiln tries TLS first on loopback: close that connection, as a plain-HTTP
            // server does, without counting it as a request.
            if reader
                .fill_buf()
                .map(|b| b.first() == Some(&0x16))
                .unwrap_or(true)
            {
                continue;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}

#[test]
fn a_manifest_that_is_not_json_is_refused() {
    let (port, _) = canned_server(
        "200 OK",
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
        "<html>not a manifest</html>",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = registry::pull(
        &reference(&format!("127.0.0.1:{port}/odd/img:1")),
        &amd64(),
        &store,
        &options(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::InvalidDocument { .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port}/odd/img")) && text.contains("JSON"),
        "{text}"
    );
}

#[test]
fn rate_limit_reports_the_headers_and_the_remedy() {
    let (port, count) = canned_server(
        "429 Too Many Requests",
        "Retry-After: 3600\r\nratelimit-limit: 100;w=21600\r\nratelimit-remaining: 0;w=21600\r\n",
        r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit"}]}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = registry::pull(
        &reference(&format!("127.0.0.1:{port}/busy/img:1")),
        &amd64(),
        &store,
        &options(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{text}");
    assert!(text.contains("ratelimit-remaining: 0;w=21600"), "{text}");
    assert!(text.contains("ratelimit-limit: 100;w=21600"), "{text}");
    assert!(text.contains("log in"), "{text}");
    // Retry-After beyond the policy's longest wait fails at once instead of sleeping an hour.
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn oversized_manifest_is_refused() {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body: &'static str = BIG.get_or_init(|| format!("{{\"pad\":\"{}\"}}", "x".repeat(5 << 20)));
    let (port, _) = canned_server("200 OK", "", body);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = registry::pull(
        &reference(&format!("127.0.0.1:{port}/huge/img:1")),
        &amd64(),
        &store,
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("4194304"), "{err}");
}
