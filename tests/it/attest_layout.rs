//! Integration tests for `kiln::attest::{attach, verify}` on a real OCI layout built with the
//! library (layer::write -> image::assemble -> write_oci_layout): buildx-style attachment read
//! back by skopeo (inspect, `copy --all` keeping every manifest byte-identical) and
//! oci-image-tool, OCI referrers with the fallback tag, and every rejection `verify` names.
//!
//! skopeo and oci-image-tool must be installed; a missing tool fails the test.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kiln::attest::attach::{
    ANNOTATION_PREDICATE_TYPE, ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE,
    ARTIFACT_TYPE_ATTESTATION_MANIFEST, fallback_tag,
};
use kiln::attest::provenance::{self, ProvenanceParams, Statement, Subject};
use kiln::attest::{
    AttachMode, Attestation, KeyAlgorithm, Material, Policy, SigningKey, attach, verify,
};
use kiln::digest::Digest;
use kiln::image::manifest::{Index, MEDIA_TYPE_OCI_INDEX, Manifest};
use kiln::image::{BuiltImage, ImageConfig, Platform, assemble, rfc3339, write_oci_layout};
use kiln::layer::{self, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::store::Store;

const BASE_DIGEST: &str = "sha256:8914eb54f968791faf6a8638949e480fef81e697984fba772b3976835194c6d4";

struct Fixture {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    layout: PathBuf,
    image: BuiltImage,
}

/// A one-layer linux/amd64 image tagged `app:v1` in a fresh OCI layout.
fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    let store = Store::open(&dir.join("store")).unwrap();
    let mut diff = Diff::new();
    diff.insert(
        LayerPath::new("etc/greeting.txt").unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(&b"hello from kiln\n"[..]))),
            meta: Metadata::root_owned(0o644),
        },
    );
    let layer = layer::write(&diff, &store, &WriteOptions::default()).unwrap();
    let config = ImageConfig {
        created: Some(rfc3339(0)),
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        ..ImageConfig::default()
    };
    let image = assemble(&store, &config, &[layer], &BTreeMap::new()).unwrap();
    let layout = dir.join("layout");
    write_oci_layout(
        &store,
        &layout,
        &[(image.clone(), vec!["app:v1".to_owned()])],
    )
    .unwrap();
    Fixture {
        _temp: temp,
        dir,
        layout,
        image,
    }
}

fn platform() -> Platform {
    Platform::new("linux", "amd64", None)
}

/// Provenance for `digest` built `FROM base`.
fn provenance_for(digest: &Digest, base: &str) -> Statement {
    let mut params = ProvenanceParams::new(vec![Subject::image("app:v1", digest, &platform())]);
    params.base_images = vec![base.to_owned()];
    params.platforms = vec![platform()];
    params.materials = vec![Material::docker_image(
        base,
        &BASE_DIGEST.parse().unwrap(),
        &platform(),
    )];
    provenance::statement(&params).unwrap()
}

fn pinned_base() -> String {
    format!("alpine@{BASE_DIGEST}")
}

fn tool(name: &str) -> Command {
    support::require_tool(name);
    Command::new(name)
}

fn read_index(dir: &Path) -> Index {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &Digest) -> Vec<u8> {
    std::fs::read(dir.join("blobs/sha256").join(digest.hex())).unwrap()
}

// ---------------------------------------------------------------- buildx-style attachment

#[test]
fn buildx_attachment_is_read_by_skopeo_and_copied_byte_identically() {
    let f = fixture();
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let statement = provenance_for(&f.image.manifest.digest, &pinned_base());
    let outcome = attach(
        &f.layout,
        Some("v1"),
        &[
            Attestation::signed(&statement, &[&key]).unwrap(),
            Attestation::unsigned(&statement).unwrap(),
        ],
        AttachMode::Index,
    )
    .unwrap();
    let top = outcome.index.clone().unwrap();

    // index.json: the tag now names an OCI index, with the same ref annotations.
    let layout_index = read_index(&f.layout);
    assert_eq!(layout_index.manifests.len(), 1);
    assert_eq!(layout_index.manifests[0].digest, top.digest);
    assert_eq!(layout_index.manifests[0].media_type, MEDIA_TYPE_OCI_INDEX);
    assert_eq!(layout_index.manifests[0].ref_name(), Some("v1"));
    assert!(!f.layout.join(".kiln-ingest").exists());

    // skopeo reads the index at the tag, byte for byte.
    let mut inspect = tool("skopeo");
    inspect
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", f.layout.display()));
    let raw = support::run_ok(&mut inspect);
    assert_eq!(raw.as_bytes(), blob(&f.layout, &top.digest));
    let index: Index = serde_json::from_str(&raw).unwrap();
    assert_eq!(index.manifests.len(), 2);
    assert_eq!(index.manifests[0].digest, f.image.manifest.digest);
    assert_eq!(index.manifests[0].platform, Some(platform()));
    let att = &index.manifests[1];
    assert_eq!(
        att.platform,
        Some(Platform::new("unknown", "unknown", None))
    );
    assert_eq!(
        att.annotations
            .get(ANNOTATION_REFERENCE_TYPE)
            .map(String::as_str),
        Some("attestation-manifest")
    );
    assert_eq!(
        att.annotations.get(ANNOTATION_REFERENCE_DIGEST),
        Some(&f.image.manifest.digest.to_string())
    );
    let manifest: Manifest = serde_json::from_slice(&blob(&f.layout, &att.digest)).unwrap();
    assert_eq!(
        manifest.extra["artifactType"],
        ARTIFACT_TYPE_ATTESTATION_MANIFEST
    );
    assert_eq!(
        manifest.extra["subject"]["digest"],
        f.image.manifest.digest.to_string()
    );
    let media_types: Vec<&str> = manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.in-toto.provenance+dsse",
            "application/vnd.in-toto+json"
        ]
    );
    for l in &manifest.layers {
        assert_eq!(
            l.annotations
                .get(ANNOTATION_PREDICATE_TYPE)
                .map(String::as_str),
            Some("https://slsa.dev/provenance/v1")
        );
    }

    // skopeo copy --all keeps every manifest (index, image, attestation) byte-identical.
    let other = f.dir.join("other");
    let mut copy = tool("skopeo");
    copy.args(["copy", "--all"])
        .arg(format!("oci:{}:v1", f.layout.display()))
        .arg(format!("oci:{}:v1", other.display()));
    support::run_ok(&mut copy);
    let copied = read_index(&other);
    assert_eq!(copied.manifests.len(), 1);
    assert_eq!(copied.manifests[0].digest, top.digest);
    for digest in [
        &top.digest,
        &f.image.manifest.digest,
        &att.digest,
        &manifest.layers[0].digest,
        &manifest.layers[1].digest,
    ] {
        assert_eq!(blob(&other, digest), blob(&f.layout, digest), "{digest}");
    }

    // And the copy verifies like the original.
    let report = verify(
        &other,
        Some("v1"),
        &[key.public_key()],
        &Policy {
            require_provenance: true,
            require_signed: true,
            require_base_digest: true,
            ..Policy::default()
        },
    )
    .unwrap();
    // The unsigned copy of the statement fails `signed`; the signed one satisfies the rest.
    assert_eq!(report.failed_checks(), ["signed"], "{:#?}", report.failures);
}

/// Both index forms verify; the legacy one has no `subject`/`artifactType` and a dummy config.
/// (oci-image-tool 1.0.0-rc1 cannot check attested layouts: it refuses the artifact form's empty
/// config media type and the legacy form's in-toto layer media type, BuildKit's output alike,
/// and its `--ref` only selects top-level `index.json` entries. The index and attestation
/// manifests are checked against the OCI 1.1 JSON schemas in `attest_python.rs` instead.)
#[test]
fn legacy_index_form_has_a_dummy_config_and_verifies() {
    let f = fixture();
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let statement = provenance_for(&f.image.manifest.digest, &pinned_base());
    let outcome = attach(
        &f.layout,
        Some("v1"),
        &[Attestation::signed(&statement, &[&key]).unwrap()],
        AttachMode::IndexLegacy,
    )
    .unwrap();
    let manifest: Manifest =
        serde_json::from_slice(&blob(&f.layout, &outcome.manifests[0].digest)).unwrap();
    assert!(manifest.extra.is_empty(), "{:?}", manifest.extra);
    let config: serde_json::Value =
        serde_json::from_slice(&blob(&f.layout, &manifest.config.digest)).unwrap();
    assert_eq!(config["os"], "unknown");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        manifest.layers[0].digest.to_string()
    );
    let report = verify(&f.layout, Some("v1"), &[key.public_key()], &strict()).unwrap();
    assert!(report.passed(), "{:#?}", report.failures);
}

#[test]
fn reattaching_in_index_mode_replaces_the_attestation_manifest() {
    let f = fixture();
    let statement = provenance_for(&f.image.manifest.digest, &pinned_base());
    let once = [Attestation::unsigned(&statement).unwrap()];
    attach(&f.layout, Some("v1"), &once, AttachMode::Index).unwrap();
    let second = attach(&f.layout, Some("v1"), &once, AttachMode::Index).unwrap();
    let index: Index =
        serde_json::from_slice(&blob(&f.layout, &second.index.unwrap().digest)).unwrap();
    assert_eq!(index.manifests.len(), 2, "{index:#?}");
}

// ---------------------------------------------------------------- OCI referrers

#[test]
fn referrers_use_the_fallback_tag_and_a_second_attachment_keeps_the_first() {
    let f = fixture();
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let statement = provenance_for(&f.image.manifest.digest, &pinned_base());
    let before = read_index(&f.layout);
    let first = attach(
        &f.layout,
        Some("v1"),
        &[Attestation::signed(&statement, &[&key]).unwrap()],
        AttachMode::Referrers,
    )
    .unwrap();
    let tag = fallback_tag(&f.image.manifest.digest);
    assert_eq!(first.fallback_tags, std::slice::from_ref(&tag));
    assert_eq!(tag.len(), 71);

    let sbom = kiln::attest::spdx_statement(
        &kiln::attest::SbomParams {
            image_name: "app:v1".to_owned(),
            image_digest: f.image.manifest.digest.clone(),
            source_date_epoch: 0,
            packages: Vec::new(),
        },
        &[Subject::image(
            "app:v1",
            &f.image.manifest.digest,
            &platform(),
        )],
    )
    .unwrap();
    attach(
        &f.layout,
        Some("v1"),
        &[Attestation::signed(&sbom, &[&key]).unwrap()],
        AttachMode::Referrers,
    )
    .unwrap();

    // The image's own entry is untouched; the fallback tag lists both referrers.
    let after = read_index(&f.layout);
    assert_eq!(after.manifests[0], before.manifests[0]);
    let mut inspect = tool("skopeo");
    inspect
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{tag}", f.layout.display()));
    let referrers: Index = serde_json::from_str(&support::run_ok(&mut inspect)).unwrap();
    assert_eq!(referrers.manifests.len(), 2, "{referrers:#?}");
    assert_eq!(referrers.manifests[0].digest, first.manifests[0].digest);
    for d in &referrers.manifests {
        assert!(d.annotations.is_empty());
        assert_eq!(
            d.extra["artifactType"],
            "application/vnd.dsse.envelope.v1+json"
        );
        let m: Manifest = serde_json::from_slice(&blob(&f.layout, &d.digest)).unwrap();
        assert_eq!(
            m.extra["subject"]["digest"],
            f.image.manifest.digest.to_string()
        );
        assert_eq!(m.config.media_type, "application/vnd.oci.empty.v1+json");
    }

    let report = verify(
        &f.layout,
        Some("v1"),
        &[key.public_key()],
        &Policy {
            require_provenance: true,
            require_signed: true,
            require_base_digest: true,
            allowed_registries: vec!["docker.io".to_owned()],
            required_predicate_types: vec!["https://spdx.dev/Document".to_owned()],
            require_base_provenance: false,
            require_exact_repository: false,
            keys: Vec::new(),
        },
    )
    .unwrap();
    assert!(report.passed(), "{:#?}", report.failures);
    assert_eq!(report.attestations.len(), 2);
    assert!(report.attestations.iter().all(|a| a.trusted));
}

// ---------------------------------------------------------------- verify rejections

fn strict() -> Policy {
    Policy {
        require_provenance: true,
        require_signed: true,
        require_base_digest: true,
        ..Policy::default()
    }
}

/// Attaches `attestations` in both modes to fresh fixtures and returns the failed check names.
fn failed_checks(
    make: impl Fn(&BuiltImage) -> Vec<Attestation>,
    keys: &[kiln::attest::PublicKey],
    policy: &Policy,
) -> Vec<Vec<&'static str>> {
    [
        AttachMode::Index,
        AttachMode::IndexLegacy,
        AttachMode::Referrers,
    ]
    .into_iter()
    .map(|mode| {
        let f = fixture();
        let attestations = make(&f.image);
        if !attestations.is_empty() {
            attach(&f.layout, Some("v1"), &attestations, mode).unwrap();
        }
        let report = verify(&f.layout, Some("v1"), keys, policy).unwrap();
        assert!(!report.passed());
        report.failed_checks()
    })
    .collect()
}

#[test]
fn verify_rejects_each_violation_by_name() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let stranger = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let trusted = [key.public_key()];
    let other_digest = Digest::of(b"some other image");
    type Make = Box<dyn Fn(&BuiltImage) -> Vec<Attestation>>;
    // case, attestations, expected failed checks
    let cases: Vec<(&str, Make, Vec<&str>)> = vec![
        (
            "unsigned",
            Box::new(|image: &BuiltImage| {
                vec![
                    Attestation::unsigned(&provenance_for(&image.manifest.digest, &pinned_base()))
                        .unwrap(),
                ]
            }),
            vec!["signed", "provenance-required", "base-digest"],
        ),
        (
            "wrong key",
            Box::new(move |image: &BuiltImage| {
                let s = provenance_for(&image.manifest.digest, &pinned_base());
                vec![Attestation::signed(&s, &[&stranger]).unwrap()]
            }),
            vec!["signature", "provenance-required", "base-digest"],
        ),
        (
            "provenance for another digest",
            Box::new({
                let key = key.clone();
                move |_: &BuiltImage| {
                    let s = provenance_for(&other_digest, &pinned_base());
                    vec![Attestation::signed(&s, &[&key]).unwrap()]
                }
            }),
            vec!["subject", "provenance-required", "base-digest"],
        ),
        (
            "no provenance at all (a base image built elsewhere)",
            Box::new(|_: &BuiltImage| Vec::new()),
            vec!["provenance-required", "base-digest"],
        ),
        (
            "FROM by tag",
            Box::new({
                let key = key.clone();
                move |image: &BuiltImage| {
                    let s = provenance_for(&image.manifest.digest, "alpine:3.20");
                    vec![Attestation::signed(&s, &[&key]).unwrap()]
                }
            }),
            vec!["base-digest"],
        ),
    ];
    for (name, make, expected) in cases {
        for (mode, checks) in ["index", "index-legacy", "referrers"]
            .iter()
            .zip(failed_checks(make, &trusted, &strict()))
        {
            assert_eq!(checks, expected, "{name} ({mode})");
        }
    }
}

#[test]
fn verify_rejects_a_base_from_a_registry_not_allowed() {
    let f = fixture();
    let statement = provenance_for(
        &f.image.manifest.digest,
        &format!("quay.io/acme/base@{BASE_DIGEST}"),
    );
    attach(
        &f.layout,
        None,
        &[Attestation::unsigned(&statement).unwrap()],
        AttachMode::Index,
    )
    .unwrap();
    let policy = Policy::parse(
        r#"{"require_provenance": true, "allowed_registries": ["ghcr.io", "docker.io"]}"#,
        "policy.json",
    )
    .unwrap();
    let report = verify(&f.layout, None, &[], &policy).unwrap();
    assert_eq!(report.failed_checks(), ["allowed-registry"]);
    assert!(
        report.failures[0].detail.contains("quay.io"),
        "{}",
        report.failures[0]
    );
}

#[test]
fn a_tampered_attestation_blob_is_an_error_naming_the_blob() {
    let f = fixture();
    let statement = provenance_for(&f.image.manifest.digest, &pinned_base());
    let outcome = attach(
        &f.layout,
        Some("v1"),
        &[Attestation::unsigned(&statement).unwrap()],
        AttachMode::Index,
    )
    .unwrap();
    let manifest: Manifest =
        serde_json::from_slice(&blob(&f.layout, &outcome.manifests[0].digest)).unwrap();
    let path = f
        .layout
        .join("blobs/sha256")
        .join(manifest.layers[0].digest.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = verify(&f.layout, Some("v1"), &[], &Policy::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(manifest.layers[0].digest.hex()), "{err}");
}
