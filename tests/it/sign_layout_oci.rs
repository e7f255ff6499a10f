//! Signatures inside an OCI layout (`kiln build --sign-key --output type=oci`):
//!
//! - the layout holds cosign's `sha256-<hex>.sig`/`.att` entries (with cosign's `kind`
//!   annotations, as `cosign save` marks them) and the Sigstore bundle referrers in the
//!   `sha256-<hex>` fallback entry; `kiln verify oci:DIR` reads all three layouts and passes,
//!   and fails with another key;
//! - `kiln push oci:DIR REF` carries them along, and `kiln verify` on the registry passes;
//! - skopeo copying the layout's entries one by one to the real registry (Debian's
//!   docker-registry on 127.0.0.1) keeps them verifiable.

use crate::support;
use crate::support::registry as registry_support;

use std::path::{Path, PathBuf};

use registry_support::{Auth, TestRegistry};
use support::{kiln, kiln_ok, two_platform_layout, write_files};

fn keygen(dir: &Path) -> (String, PathBuf) {
    kiln_ok(&["keygen", dir.to_str().unwrap()]);
    (
        dir.join("private.pem").display().to_string(),
        dir.join("public.pem"),
    )
}

/// Runs `kiln verify IMAGE --key KEY`; returns whether it passed and its stderr.
fn verify(image: &str, key: &Path, cache: &Path) -> (bool, String) {
    let out = kiln(&[
        "verify",
        image,
        "--key",
        key.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts `stderr` reports every layout found and verified for `digest`'s manifest.
fn assert_all_layouts_verified(stderr: &str, digest: &str) {
    let short = &digest["sha256:".len()..][..12];
    for (label, found) in [
        (format!("cosign .sig for {short}"), "1 found, 1 verified"),
        (format!("cosign .att for {short}"), "2 found, 2 verified"),
        (
            format!("sigstore bundles for {short}"),
            "3 found, 3 verified",
        ),
    ] {
        assert!(
            stderr.contains(&format!("{label}: {found}")),
            "expected `{label}: {found}` in:\n{stderr}"
        );
    }
}

#[test]
fn a_signed_layout_holds_every_layout_and_they_travel_to_a_registry() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("k"));
    let (_, other) = keygen(&work.path().join("other"));
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "signed layout\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let target = reg.reference("test/lay:1");
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        &target,
        "--sign-key",
        &key,
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        ctx.to_str().unwrap(),
    ])
    .trim()
    .to_owned();
    let hex = &digest["sha256:".len()..];

    // The layout's index.json: the tags as skopeo names them, cosign's kinds, the bundles.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` entry in {index:#}"))
    };
    assert_eq!(
        entry(&format!("sha256-{hex}.sig"))["annotations"]["kind"],
        "dev.cosignproject.cosign/sigs"
    );
    assert_eq!(
        entry(&format!("sha256-{hex}.att"))["annotations"]["kind"],
        "dev.cosignproject.cosign/atts"
    );
    let image_entry = entries
        .iter()
        .find(|e| e["digest"] == digest.as_str())
        .unwrap();
    assert_eq!(
        image_entry["annotations"]["kind"],
        "dev.cosignproject.cosign/image"
    );
    let fallback = entry(&format!("sha256-{hex}"));
    let fallback_index = support::layout_blob_json(&layout, fallback["digest"].as_str().unwrap());
    let bundles: Vec<&serde_json::Value> = fallback_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .collect();
    assert_eq!(bundles.len(), 3, "signature + provenance + SBOM bundles");
    for bundle in bundles {
        let manifest = support::layout_blob_json(&layout, bundle["digest"].as_str().unwrap());
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
    }

    // `kiln verify oci:DIR` reads the three layouts.
    let image = format!("oci:{}@{digest}", layout.display());
    let (passed, stderr) = verify(&image, &public, &cache);
    assert!(passed, "kiln verify of the layout failed:\n{stderr}");
    assert_all_layouts_verified(&stderr, &digest);
    let (passed, stderr) = verify(&image, &other, &cache);
    assert!(!passed, "another key verified the layout:\n{stderr}");
    assert!(
        stderr.contains("cosign .sig for") && stderr.contains("none of 1 entries verified"),
        "{stderr}"
    );

    // `kiln push oci:DIR REF` carries the tags and the bundles along.
    kiln_ok(&[
        "push",
        "--cache-dir",
        cache.to_str().unwrap(),
        &image,
        &target,
    ]);
    let (passed, stderr) = verify(&target, &public, &cache);
    assert!(passed, "kiln verify after kiln push failed:\n{stderr}");
    assert_all_layouts_verified(&stderr, &digest);

    // skopeo copies the layout's entries one by one and they stay verifiable.
    let copy = reg.reference("test/copied:1");
    let destination =
        |tag: &str| format!("docker://{}", reg.reference(&format!("test/copied:{tag}")));
    let source = |reference: &str| format!("oci:{}:{reference}", layout.display());
    registry_support::skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &source(&ref_name_of(&layout, &digest)),
        &destination("1"),
    ]);
    for tag in [
        format!("sha256-{hex}.sig"),
        format!("sha256-{hex}.att"),
        format!("sha256-{hex}"),
    ] {
        // The fallback index itself is rewritten by skopeo 1.9 (it converts the list), so its
        // digest may change; the manifests it lists keep theirs, which is what verifiers read.
        registry_support::skopeo(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &source(&tag),
            &destination(&tag),
        ]);
    }
    let (passed, stderr) = verify(&copy, &public, &cache);
    assert!(passed, "kiln verify after skopeo copy failed:\n{stderr}");
    assert_all_layouts_verified(&stderr, &digest);
}

/// The `ref.name` of the layout entry for `digest` (skopeo reads a layout by tag).
fn ref_name_of(layout: &Path, digest: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["digest"] == digest)
        .and_then(|e| e["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .unwrap_or_else(|| panic!("the image {digest} has no ref.name in {index:#}"))
        .to_owned()
}

#[test]
fn kiln_sign_signs_a_layout_index_and_each_platform_manifest() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("k"));
    let (_, other) = keygen(&work.path().join("other"));
    let cache = work.path().join("cache");
    let (layout, digests) = two_platform_layout(work.path(), &cache);
    let target = reg.reference("test/multi:1");
    let identity = target.trim_end_matches(":1");
    let image = format!("oci:{}:multi", layout.display());
    kiln_ok(&["sign", &image, "--key", &key, "--identity", identity]);

    // Signatures only (no attestations): a policy that asks for no provenance.
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "require_signed = false\n").unwrap();
    let verify_with = |image: &str, key: &Path| {
        let out = kiln(&[
            "verify",
            image,
            "--key",
            key.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let expect_signed = |stderr: &str| {
        for digest in &digests {
            let short = &digest[7..19];
            for line in [
                format!("cosign .sig for {short}: 1 found, 1 verified (signature for {identity})"),
                format!("sigstore bundles for {short}: 1 found, 1 verified"),
            ] {
                assert!(stderr.contains(&line), "expected `{line}` in:\n{stderr}");
            }
        }
    };
    let (passed, stderr) = verify_with(&image, &public);
    assert!(passed, "{stderr}");
    expect_signed(&stderr);
    let (passed, stderr) = verify_with(&image, &other);
    assert!(!passed, "another key verified:\n{stderr}");

    // Pushed with the layout, every platform's signature is in the registry.
    kiln_ok(&[
        "push",
        "--cache-dir",
        cache.to_str().unwrap(),
        &image,
        &target,
    ]);
    let (passed, stderr) = verify_with(&target, &public);
    assert!(passed, "{stderr}");
    expect_signed(&stderr);
}
