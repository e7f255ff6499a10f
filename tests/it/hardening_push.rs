//! `kiln push oci:DIR:TAG REF` carries the attestations the layout holds for that image, in
//! both attach modes: the referrers (pushed under the `sha256-<hex>` fallback tag, as `kiln
//! build --push` does on a registry without the referrers API) and the attestation manifests of
//! a buildx-style index; `--attestations=false` leaves them out. Checked with skopeo against
//! docker-registry on 127.0.0.1.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;

use registry_support::{Auth, TestRegistry, sha256, skopeo};
use support::{kiln, kiln_ok, write_files};

fn build_layout(work: &Path, mode: &str) -> (std::path::PathBuf, String) {
    let ctx = work.join(format!("ctx-{mode}"));
    write_files(
        &ctx,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let layout = work.join(format!("layout-{mode}"));
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.join("cache").to_str().unwrap(),
        "--attest-mode",
        mode,
        "-t",
        "app:1",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        ctx.to_str().unwrap(),
    ]);
    (layout, digest.trim().to_owned())
}

fn push(work: &Path, layout: &Path, target: &str, extra: &[&str]) -> String {
    let mut args = vec!["push", "--cache-dir"];
    let cache = work.join("cache");
    args.push(cache.to_str().unwrap());
    args.extend_from_slice(extra);
    let source = format!("oci:{}:1", layout.display());
    args.push(&source);
    args.push(target);
    kiln_ok(&args).trim().to_owned()
}

/// The raw manifest at `reference`, or `None` when the registry has no such tag.
fn raw(reference: &str) -> Option<Vec<u8>> {
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    output.status.success().then_some(output.stdout)
}

#[test]
fn push_of_a_layout_carries_its_referrers_unless_told_not_to() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (layout, digest) = build_layout(work.path(), "referrers");
    let fallback = format!("sha256-{}", digest.trim_start_matches("sha256:"));

    let pushed = push(work.path(), &layout, &reg.reference("kiln/with:1"), &[]);
    assert_eq!(pushed, digest);
    let listed = raw(&reg.reference(&format!("kiln/with:{fallback}")))
        .expect("the fallback tag of the pushed image's attestations");
    let index: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let referrers = index["manifests"].as_array().unwrap();
    assert!(!referrers.is_empty(), "no referrers listed: {index}");
    for referrer in referrers {
        let by_digest = format!(
            "{}@{}",
            reg.reference("kiln/with"),
            referrer["digest"].as_str().unwrap()
        );
        let manifest: serde_json::Value = serde_json::from_slice(&skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{by_digest}"),
        ]))
        .unwrap();
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
    }

    push(
        work.path(),
        &layout,
        &reg.reference("kiln/without:1"),
        &["--attestations=false"],
    );
    assert!(raw(&reg.reference(&format!("kiln/without:{fallback}"))).is_none());
    assert_eq!(
        sha256(&raw(&reg.reference("kiln/without:1")).unwrap()),
        digest
    );
}

#[test]
fn push_of_a_buildx_style_index_can_leave_its_attestation_manifests() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (layout, _) = build_layout(work.path(), "index");

    let with = push(work.path(), &layout, &reg.reference("kiln/idx:1"), &[]);
    let bytes = raw(&reg.reference("kiln/idx:1")).unwrap();
    assert_eq!(sha256(&bytes), with);
    let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let kinds = |index: &serde_json::Value| -> Vec<bool> {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
            .collect()
    };
    assert!(
        kinds(&index).contains(&true),
        "attestations pushed: {index}"
    );

    let without = push(
        work.path(),
        &layout,
        &reg.reference("kiln/idx-bare:1"),
        &["--attestations=false"],
    );
    assert_ne!(without, with);
    let bare: serde_json::Value =
        serde_json::from_slice(&raw(&reg.reference("kiln/idx-bare:1")).unwrap()).unwrap();
    assert_eq!(kinds(&bare), [false], "only the image: {bare}");
    let output = kiln(&["push", "--attestations=maybe", "oci:x:1", "r/x:1"]);
    assert_eq!(output.status.code(), Some(2));
}
