//! `kiln build --policy` verifies a base offline from the signatures cached with it: a build
//! that verified the base online (Debian's docker-registry on 127.0.0.1) caches its `.sig`,
//! `.att` and referrers; with the registry stopped, a build with the same base (by digest, and
//! by tag) verifies from that cache, with and without `--offline`; a cached entry whose
//! signature blobs were altered is refused, naming the base and the check, and nothing is
//! written.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;

use registry_support::{Auth, TestRegistry};
use support::{kiln, kiln_ok, write_files};

/// The blobs a verifier checks signatures in: the layers of the cached `.sig`/`.att`
/// manifests and of every referrer the fallback entries list.
fn signature_blobs(layout: &Path) -> Vec<String> {
    let json = |digest: &str| support::layout_blob_json(layout, digest);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifests = Vec::new();
    for entry in index["manifests"].as_array().unwrap() {
        let name = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_default();
        let digest = entry["digest"].as_str().unwrap();
        if name.ends_with(".sig") || name.ends_with(".att") {
            manifests.push(json(digest));
        } else if name.starts_with("sha256-") {
            for referrer in json(digest)["manifests"].as_array().unwrap() {
                manifests.push(json(referrer["digest"].as_str().unwrap()));
            }
        }
    }
    // The `.att` envelopes are the same blobs as kiln's DSSE referrers: list each once.
    let mut blobs: Vec<String> = manifests
        .iter()
        .flat_map(|m| m["layers"].as_array().unwrap().clone())
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    blobs.sort();
    blobs.dedup();
    blobs
}

#[test]
fn the_policy_verifies_a_cached_base_offline_and_refuses_a_tampered_cache() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    kiln_ok(&["keygen", work.path().join("k").to_str().unwrap()]);
    let key = work.path().join("k/private.pem").display().to_string();
    let public = work.path().join("k/public.pem");
    let cache = work.path().join("cache");

    let base_ref = reg.reference("test/base:1");
    let base_ctx = work.path().join("base");
    write_files(
        &base_ctx,
        &[
            ("base.txt", "base\n"),
            ("Dockerfile", "FROM scratch\nCOPY base.txt /\n"),
        ],
    );
    let base = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        &base_ref,
        "--push",
        "--sign-key",
        &key,
        base_ctx.to_str().unwrap(),
    ])
    .trim()
    .to_owned();
    let pinned = format!("{}@{base}", base_ref.trim_end_matches(":1"));

    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "require_signed = true\nrequire_provenance = true\n",
    )
    .unwrap();
    let build = |name: &str, from: &str, extra: &[&str]| {
        let ctx = work.path().join(format!("app-{name}"));
        write_files(
            &ctx,
            &[
                ("app.txt", "app\n"),
                ("Dockerfile", &format!("FROM {from}\nCOPY app.txt /\n")),
            ],
        );
        let dest = work.path().join(format!("out-{name}"));
        let output = format!("type=oci,dest={}", dest.display());
        let mut args = vec![
            "build",
            "--progress=plain",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--policy-key",
            public.to_str().unwrap(),
            "--output",
            &output,
        ];
        args.extend_from_slice(extra);
        let ctx_text = ctx.display().to_string();
        args.push(&ctx_text);
        let out = kiln(&args);
        (out, dest)
    };
    let passes = |name: &str, from: &str, extra: &[&str]| {
        let (out, dest) = build(name, from, extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{name}: refused:\n{stderr}");
        assert!(dest.join("index.json").exists(), "{name}: nothing written");
        stderr
    };

    // Online: verified, and the signatures are cached with the base.
    passes("online-pinned", &pinned, &[]);
    passes("online-tag", &base_ref, &[]);
    let cached = cache.join(format!("base-signatures/{}", base.replace(':', "-")));
    assert!(
        cached.join("index.json").exists(),
        "no signatures cached at {}",
        cached.display()
    );
    assert!(!signature_blobs(&cached).is_empty());

    // Offline: the registry is gone.
    drop(reg);
    for (name, from, extra) in [
        ("offline-pinned", pinned.as_str(), &["--offline"][..]),
        ("offline-tag", base_ref.as_str(), &["--offline"][..]),
        ("registry-down", pinned.as_str(), &[][..]),
    ] {
        let stderr = passes(name, from, extra);
        assert!(
            stderr.contains(&format!("base `{from}` verified from cached signatures")),
            "{name}: not verified from the cache:\n{stderr}"
        );
    }

    // A cached entry whose signature blobs were altered is refused.
    for blob in signature_blobs(&cached) {
        let path = cached.join("blobs/sha256").join(&blob["sha256:".len()..]);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    }
    let (out, dest) = build("tampered", &pinned, &["--offline"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a tampered cache verified:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "POLICY FAILED base `{pinned}`: cache: the cached signatures at"
        )),
        "the failure does not name the base and the check:\n{stderr}"
    );
    assert!(!stderr.contains("COPY"), "a step ran:\n{stderr}");
    assert!(!dest.exists(), "an output was written");
}
