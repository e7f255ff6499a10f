//! Fault injection: pushes and pulls through a proxy that answers 503, 429 + Retry-After and
//! drops connections mid-upload still complete, and the result is byte-identical (checked
//! with skopeo against the registry directly).

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/registry.rs"]
mod registry_support;

use std::sync::atomic::{AtomicBool, Ordering};

use fault_proxy::{Fault, FaultProxy};
use kiln::registry::{self, Reference, RegistryOptions, RetryPolicy, UploadMode};
use kiln::store::Store;
use registry_support::{Auth, TestRegistry, make_image, make_large_image, sha256, skopeo};

fn options() -> RegistryOptions {
    RegistryOptions::default()
        .use_environment(false)
        .retry(RetryPolicy {
            attempts: 5,
            base_delay: std::time::Duration::from_millis(20),
            ..RetryPolicy::default()
        })
}

fn once(flag: &AtomicBool) -> bool {
    !flag.swap(true, Ordering::SeqCst)
}

#[test]
fn push_and_pull_survive_5xx_429_and_resets() {
    let reg = TestRegistry::start(Auth::None);
    let reset_put = AtomicBool::new(false);
    let fail_get = AtomicBool::new(false);
    let proxy = FaultProxy::start(reg.port, move |n, method, path| match (n, method) {
        (2, _) => Some(Fault::Unavailable),
        (4, _) => Some(Fault::TooManyRequests),
        (_, "PUT") if path.contains("/blobs/uploads/") && once(&reset_put) => {
            Some(Fault::ResetMidBody)
        }
        (_, "GET") if path.contains("/blobs/sha256:") && once(&fail_get) => {
            Some(Fault::Unavailable)
        }
        _ => None,
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a")).unwrap();
    let image = make_image(&store, "faults", 3);
    let via_proxy: Reference = format!("127.0.0.1:{}/fault/img:1", proxy.port)
        .parse()
        .unwrap();
    let result =
        registry::push(&store, &image, std::slice::from_ref(&via_proxy), &options()).unwrap();
    assert_eq!(result.digest, image.manifest.digest);
    assert!(
        proxy.injected.load(Ordering::SeqCst) >= 3,
        "faults were injected"
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference("fault/img:1")),
    ]);
    assert_eq!(sha256(&raw), image.manifest.digest.to_string());

    let fresh = Store::open(&dir.path().join("b")).unwrap();
    let pulled = registry::pull(
        &via_proxy,
        &"linux/amd64".parse().unwrap(),
        &fresh,
        &options(),
    )
    .unwrap();
    assert_eq!(pulled.layers, image.layers);
    for layer in &image.layers {
        assert_eq!(
            std::fs::read(fresh.blob_path(&layer.digest)).unwrap(),
            std::fs::read(store.blob_path(&layer.digest)).unwrap()
        );
    }
}

#[test]
fn chunked_upload_resumes_after_a_dropped_patch() {
    let reg = TestRegistry::start(Auth::None);
    let reset = AtomicBool::new(false);
    let proxy = FaultProxy::start(reg.port, move |_, method, _| {
        (method == "PATCH" && once(&reset)).then_some(Fault::ResetMidBody)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = make_large_image(&store, 9 << 20);
    let via_proxy: Reference = format!("127.0.0.1:{}/resume/img:1", proxy.port)
        .parse()
        .unwrap();
    registry::push(
        &store,
        &image,
        &[via_proxy],
        &options().upload_mode(UploadMode::Chunked),
    )
    .unwrap();
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 1);
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", reg.reference("resume/img:1")),
        &format!("oci:{}:1", copy.display()),
    ]);
    let layer = &image.layers[0];
    assert_eq!(
        std::fs::read(copy.join("blobs/sha256").join(layer.digest.hex())).unwrap(),
        std::fs::read(store.blob_path(&layer.digest)).unwrap()
    );
}
