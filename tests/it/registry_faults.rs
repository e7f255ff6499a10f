//! Fault injection: pushes and pulls through a proxy that answers 503, 429 + Retry-After, drops
//! connections mid-body, cuts responses off and flips bytes, on every kind of request, still
//! complete, and the result is byte-identical (checked with skopeo against the registry directly
//! and by hashing every blob the pull stored). `KILN_FAULT_TRIALS` sets the number of pushes and
//! pulls of the soak at a 30% fault rate (default 3; `scripts/reliability` runs 100).

use crate::support::fault_proxy;
use crate::support::registry as registry_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use fault_proxy::{Fault, FaultProxy, request_kind};
use kiln::image::BuiltImage;
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

/// Retries enough for a 30% fault rate: a request fails for good only after 10 faults in a row.
fn patient_options() -> RegistryOptions {
    RegistryOptions::default()
        .use_environment(false)
        .retry(RetryPolicy {
            attempts: 10,
            base_delay: std::time::Duration::from_millis(10),
            ..RetryPolicy::default()
        })
}

/// The registry (read directly, not through the proxy) serves exactly `image`: the tag's
/// manifest has the image's digest, and skopeo copies it with every blob matching its digest.
fn assert_registry_holds(reg: &TestRegistry, reference: &str, image: &BuiltImage, scratch: &Path) {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference(reference)),
    ]);
    assert_eq!(
        sha256(&raw),
        image.manifest.digest.to_string(),
        "{reference}"
    );
    let copy = scratch.join(reference.replace(['/', ':'], "-"));
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", reg.reference(reference)),
        &format!("oci:{}:x", copy.display()),
    ]);
    assert_blobs_match_names(&copy.join("blobs/sha256"));
    for layer in &image.layers {
        assert!(
            copy.join("blobs/sha256").join(layer.digest.hex()).is_file(),
            "{reference}: layer {} missing",
            layer.digest
        );
    }
}

/// Every file named like a sha256 digest in `dir` hashes to its name.
fn assert_blobs_match_names(dir: &Path) {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{name}"),
            "{} does not match its name",
            entry.path().display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no blobs in {}", dir.display());
}

/// Pulls `reference` into a fresh store and checks what it stored.
fn pull_and_check(
    reference: &Reference,
    image: &BuiltImage,
    root: &Path,
    options: &RegistryOptions,
) {
    let store = Store::open(root).unwrap();
    let pulled = registry::pull(reference, &"linux/amd64".parse().unwrap(), &store, options)
        .unwrap_or_else(|e| panic!("pull {reference}: {e}"));
    assert_eq!(pulled.manifest_digest, image.manifest.digest);
    assert_eq!(pulled.layers, image.layers);
    assert_blobs_match_names(&store.root().join("blobs/sha256"));
}

#[test]
fn a_429_on_the_blob_upload_put_is_retried_after_retry_after() {
    let reg = TestRegistry::start(Auth::None);
    let limited = AtomicBool::new(false);
    let proxy = FaultProxy::start(reg.port, move |_, method, path| {
        (request_kind(method, path) == "PUT blob" && once(&limited))
            .then_some(Fault::TooManyRequests)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let image = make_image(&store, "limited", 1);
    let via_proxy: Reference = format!("127.0.0.1:{}/limited/img:1", proxy.port)
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    registry::push(
        &store,
        &image,
        &[via_proxy],
        &options().upload_mode(UploadMode::Monolithic),
    )
    .unwrap_or_else(|e| panic!("a 429 on the blob PUT failed the push: {e}"));
    assert_eq!(proxy.tally(), "TooManyRequests on PUT blob: 1");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert_registry_holds(&reg, "limited/img:1", &image, dir.path());
}

#[test]
fn a_manifest_body_cut_off_mid_transfer_is_fetched_again() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let image = make_image(&store, "cut", 1);
    let direct: Reference = reg.reference("cut/img:1").parse().unwrap();
    registry::push(&store, &image, &[direct], &options()).unwrap();
    let cut = AtomicBool::new(false);
    let proxy = FaultProxy::start(reg.port, move |_, method, path| {
        (request_kind(method, path) == "GET manifest" && once(&cut)).then_some(Fault::Truncated)
    });
    let via_proxy: Reference = format!("127.0.0.1:{}/cut/img:1", proxy.port)
        .parse()
        .unwrap();
    pull_and_check(&via_proxy, &image, &dir.path().join("pulled"), &options());
    assert_eq!(proxy.tally(), "Truncated on GET manifest: 1");
}

/// Each fault kind, applied to the first request of every kind in a monolithic push, a chunked
/// push and a pull: all complete, and nothing damaged is kept.
#[test]
fn every_fault_kind_on_every_request_kind() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut kinds_hit = BTreeSet::new();
    for (round, fault) in Fault::ALL.into_iter().enumerate() {
        let faulted: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
        let proxy = FaultProxy::start(reg.port, move |_, method, path| {
            let kind = request_kind(method, path);
            faulted.lock().unwrap().insert(kind).then_some(fault)
        });
        for mode in [UploadMode::Monolithic, UploadMode::Chunked] {
            let name = format!("matrix/{fault:?}-{mode:?}").to_lowercase();
            let image = make_image(&store, &format!("{name}-{round}"), 2);
            let via_proxy: Reference = format!("127.0.0.1:{}/{name}:1", proxy.port)
                .parse()
                .unwrap();
            registry::push(
                &store,
                &image,
                std::slice::from_ref(&via_proxy),
                &options().upload_mode(mode),
            )
            .unwrap_or_else(|e| panic!("push with {fault:?}: {e}\n{}", proxy.tally()));
            assert_registry_holds(&reg, &format!("{name}:1"), &image, dir.path());
            pull_and_check(
                &via_proxy,
                &image,
                &dir.path().join(format!("pull-{round}-{mode:?}")),
                &options(),
            );
        }
        let tally = proxy.tally();
        eprintln!("{tally}");
        for line in tally.lines() {
            if let Some((_, kind)) = line.split_once(" on ") {
                kinds_hit.insert(format!("{fault:?} {}", kind.rsplit_once(':').unwrap().0));
            }
        }
    }
    // The request kinds a push and a pull make; every fault lands on each (a flipped byte only
    // where there is a body to flip).
    let with_body = [
        "PUT blob",
        "PATCH chunk",
        "PUT manifest",
        "GET manifest",
        "GET blob",
    ];
    let without_body = ["HEAD blob", "POST upload", "HEAD manifest"];
    for fault in Fault::ALL {
        for kind in with_body.iter().chain(&without_body) {
            if fault == Fault::FlipByte && without_body.contains(kind) {
                continue;
            }
            assert!(
                kinds_hit.contains(&format!("{fault:?} {kind}")),
                "{fault:?} was never applied to {kind}: {kinds_hit:?}"
            );
        }
    }
}

/// Pushes and pulls through a proxy that faults 30% of requests, with every fault kind drawn at
/// random: all complete and nothing damaged is accepted.
#[test]
fn pushes_and_pulls_complete_at_a_30_percent_fault_rate() {
    let trials: usize = std::env::var("KILN_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let reg = TestRegistry::start(Auth::None);
    let proxy = FaultProxy::random(reg.port, 0.3, 0x5eed);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (mut pushed, mut pulled) = (0, 0);
    for trial in 0..trials {
        let image = make_image(&store, &format!("soak-{trial}"), 2);
        let name = format!("soak/img{trial}:1");
        let via_proxy: Reference = format!("127.0.0.1:{}/{name}", proxy.port).parse().unwrap();
        let mode = if trial % 2 == 0 {
            UploadMode::Auto
        } else {
            UploadMode::Chunked
        };
        registry::push(
            &store,
            &image,
            std::slice::from_ref(&via_proxy),
            &patient_options().upload_mode(mode),
        )
        .unwrap_or_else(|e| panic!("push {trial}: {e}\n{}", proxy.tally()));
        assert_registry_holds(&reg, &name, &image, dir.path());
        pushed += 1;
        pull_and_check(
            &via_proxy,
            &image,
            &dir.path().join(format!("pull-{trial}")),
            &patient_options(),
        );
        pulled += 1;
    }
    eprintln!(
        "fault soak: {pushed}/{trials} pushes, {pulled}/{trials} pulls; {} of {} requests faulted\n{}",
        proxy.injected.load(Ordering::SeqCst),
        proxy.requests.load(Ordering::SeqCst),
        proxy.tally()
    );
}
