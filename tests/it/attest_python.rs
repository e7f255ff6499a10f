//! Independent checks of kiln's attestations with the reference Python implementations:
//! DSSE envelopes verified by PyPI securesystemslib (`Envelope.verify`, keyids included) in
//! both directions, SPDX documents validated by PyPI spdx-tools (`pyspdxtools`), and the
//! attestation index/manifests validated against the OCI 1.1 JSON schemas.
//!
//! The test creates a venv under `target/attest-venv` once (`pip install securesystemslib cryptography
//! spdx-tools jsonschema`, through pip's own configuration); if that fails the test fails.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiln::attest::dsse::{Envelope, PAYLOAD_TYPE_IN_TOTO};
use kiln::attest::provenance::{self, ProvenanceParams, Subject};
use kiln::attest::sbom::{PackageKind, SbomPackage, SbomParams, spdx_document};
use kiln::attest::{
    AttachMode, Attestation, KeyAlgorithm, PublicKey, SigningKey, attach, spdx_statement,
};
use kiln::digest::Digest;
use kiln::image::manifest::{Index, Manifest};
use kiln::image::{ImageConfig, Platform, assemble, canonical, rfc3339, write_oci_layout};
use kiln::layer::{self, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::store::Store;

const PIP_PACKAGES: &[&str] = &[
    "securesystemslib",
    "cryptography",
    "spdx-tools",
    "jsonschema",
];

/// The venv's python, creating the venv on first use.
fn venv_python() -> PathBuf {
    support::python_venv(
        "attest-venv",
        PIP_PACKAGES,
        "import securesystemslib, spdx_tools, jsonschema, cryptography",
    )
}

fn run_python(script: &str, args: &[&Path]) -> Output {
    Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("failed to start the venv's python")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Prints the keyid securesystemslib derives for a PEM public key, then verifies the envelope
/// with it (exit 3 on failure).
const VERIFY_DSSE: &str = r#"
import json, sys
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
envelope = Envelope.from_dict(json.load(open(sys.argv[1])))
key = SSlibKey.from_crypto(serialization.load_pem_public_key(open(sys.argv[2], "rb").read()))
print(key.keyid)
try:
    envelope.verify([key], 1)
except Exception as e:
    print("VERIFY FAILED:", type(e).__name__, e)
    sys.exit(3)
print("VERIFIED")
"#;

/// Makes a key with `cryptography` (PKCS#8 + SPKI PEM) and a DSSE envelope signed the way the
/// spec says, independently of kiln: argv = algorithm, private out, public out, envelope out.
const SIGN_DSSE: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
alg, private_out, public_out, envelope_out = sys.argv[1:5]
key = ec.generate_private_key(ec.SECP256R1()) if alg == "ecdsa" else ed25519.Ed25519PrivateKey.generate()
open(private_out, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(public_out, "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
payload = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x", "digest": {"sha256": "00" * 32}}], "predicateType": "https://example.com/p"}).encode()
ptype = "application/vnd.in-toto+json"
pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
sig = key.sign(pae, ec.ECDSA(hashes.SHA256())) if alg == "ecdsa" else key.sign(pae)
json.dump({"payload": base64.b64encode(payload).decode(), "payloadType": ptype,
           "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}, open(envelope_out, "w"))
"#;

fn sample_statement() -> kiln::attest::Statement {
    let platform = Platform::new("linux", "amd64", None);
    let mut params = ProvenanceParams::new(vec![Subject::image(
        "ghcr.io/acme/app:v1",
        &Digest::of(b"manifest"),
        &platform,
    )]);
    params.platforms = vec![platform];
    params
        .build_args
        .insert("VERSION".to_owned(), "1.2.3".to_owned());
    provenance::statement(&params).unwrap()
}

#[test]
fn kiln_envelopes_verify_with_securesystemslib_and_fail_after_one_changed_byte() {
    let temp = tempfile::tempdir().unwrap();
    let payload = sample_statement().to_bytes().unwrap();
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let (private, public) =
            kiln::attest::keygen(&temp.path().join(format!("{algorithm:?}")), algorithm).unwrap();
        let key = SigningKey::load(&private).unwrap();
        let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &payload, &[&key]).unwrap();
        let path = temp.path().join(format!("{algorithm:?}.dsse.json"));
        std::fs::write(&path, envelope.to_bytes().unwrap()).unwrap();
        let output = run_python(VERIFY_DSSE, &[&path, &public]);
        let out = text(&output);
        assert!(output.status.success(), "{algorithm:?}: {out}");
        assert!(out.contains("VERIFIED"), "{out}");
        // The keyid kiln writes is the one securesystemslib derives.
        let python_keyid = out.lines().next().unwrap_or_default().trim();
        assert_eq!(
            python_keyid,
            key.public_key().keyid(),
            "{algorithm:?} keyid"
        );

        // One byte of the payload changed: securesystemslib rejects it.
        let mut changed = payload.clone();
        let at = changed.len() / 2;
        changed[at] ^= 0x01;
        let mut tampered = envelope.clone();
        tampered.payload = STANDARD.encode(&changed);
        std::fs::write(&path, tampered.to_bytes().unwrap()).unwrap();
        let output = run_python(VERIFY_DSSE, &[&path, &public]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{algorithm:?} tampered: {}",
            text(&output)
        );
        // So does kiln.
        assert!(tampered.verify(&[key.public_key()], 1, "tampered").is_err());
    }
}

#[test]
fn keys_and_envelopes_made_by_python_cryptography_work_in_kiln() {
    let temp = tempfile::tempdir().unwrap();
    for (algorithm, name) in [
        (KeyAlgorithm::EcdsaP256, "ecdsa"),
        (KeyAlgorithm::Ed25519, "ed25519"),
    ] {
        let private = temp.path().join(format!("{name}.key"));
        let public = temp.path().join(format!("{name}.pub"));
        let envelope_path = temp.path().join(format!("{name}.json"));
        let output = Command::new(venv_python())
            .arg("-c")
            .arg(SIGN_DSSE)
            .arg(name)
            .args([&private, &public, &envelope_path])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        let trusted = PublicKey::load(&public).unwrap();
        let key = SigningKey::load(&private).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.public_key(), trusted);
        let envelope = Envelope::from_slice(&std::fs::read(&envelope_path).unwrap(), name).unwrap();
        let verified = envelope
            .verify(std::slice::from_ref(&trusted), 1, name)
            .unwrap();
        assert!(verified.payload.starts_with(b"{\"_type\""));
        // kiln's signature with the Python-made key verifies in securesystemslib too.
        let ours = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, b"{}", &[&key]).unwrap();
        std::fs::write(&envelope_path, ours.to_bytes().unwrap()).unwrap();
        let output = run_python(VERIFY_DSSE, &[&envelope_path, &public]);
        assert!(output.status.success(), "{name}: {}", text(&output));
    }
}

fn sample_packages() -> Vec<SbomPackage> {
    vec![
        SbomPackage {
            kind: PackageKind::Apk {
                arch: "x86_64".to_owned(),
                origin: None,
            },
            name: "musl".to_owned(),
            version: "1.2.5-r0".to_owned(),
            license: Some("MIT".to_owned()),
            checksum: Some((
                "SHA1".to_owned(),
                "85d529a91bf999880912a5b9d94995b2f99e79d1".to_owned(),
            )),
        },
        SbomPackage {
            kind: PackageKind::Apk {
                arch: "x86_64".to_owned(),
                origin: None,
            },
            name: "busybox".to_owned(),
            version: "1.36.1-r29".to_owned(),
            license: Some("GPL-2.0-only".to_owned()),
            checksum: None,
        },
        SbomPackage {
            kind: PackageKind::Apk {
                arch: "x86_64".to_owned(),
                origin: None,
            },
            name: "ca-certificates".to_owned(),
            version: "20240705-r0".to_owned(),
            license: Some("MPL-2.0 AND MIT".to_owned()),
            checksum: None,
        },
        SbomPackage {
            kind: PackageKind::Python,
            name: "requests".to_owned(),
            version: "2.32.3".to_owned(),
            license: Some("Apache 2.0 (see LICENSE)".to_owned()),
            checksum: None,
        },
        SbomPackage {
            kind: PackageKind::Python,
            name: "flask".to_owned(),
            version: "3.0.3".to_owned(),
            license: None,
            checksum: None,
        },
    ]
}

#[test]
fn spdx_documents_validate_with_spdx_tools() {
    let temp = tempfile::tempdir().unwrap();
    let params = SbomParams {
        image_name: "ghcr.io/acme/app:v1".to_owned(),
        image_digest: Digest::of(b"manifest"),
        source_date_epoch: 1_700_000_000,
        packages: sample_packages(),
    };
    let cli = venv_python().with_file_name("pyspdxtools");
    assert!(cli.is_file(), "spdx-tools installed no `pyspdxtools` CLI");
    let validate = |path: &Path| {
        Command::new(&cli)
            .arg("--infile")
            .arg(path)
            .output()
            .unwrap()
    };
    let document = spdx_document(&params).unwrap();
    let good = temp.path().join("sbom.spdx.json");
    std::fs::write(&good, canonical::to_vec(&document).unwrap()).unwrap();
    let output = validate(&good);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(!out.to_lowercase().contains("invalid"), "{out}");

    // Empty package list too (an image with no package database).
    let empty = temp.path().join("empty.spdx.json");
    let bare = SbomParams {
        packages: Vec::new(),
        ..params.clone()
    };
    std::fs::write(
        &empty,
        canonical::to_vec(&spdx_document(&bare).unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        validate(&empty).status.success(),
        "{}",
        text(&validate(&empty))
    );

    // The validator does look: a relationship to a missing element fails it.
    let mut broken = document.clone();
    broken["relationships"][1]["relatedSpdxElement"] = "SPDXRef-missing".into();
    let bad = temp.path().join("bad.spdx.json");
    std::fs::write(&bad, canonical::to_vec(&broken).unwrap()).unwrap();
    let output = validate(&bad);
    assert!(
        !output.status.success(),
        "pyspdxtools accepted a dangling relationship: {}",
        text(&output)
    );
}

const SCHEMA_CHECK: &str = r##"
import json, sys, pathlib
import jsonschema, referencing
from referencing.jsonschema import DRAFT4
schema_dir = pathlib.Path(sys.argv[1])
def retrieve(uri):
    name = uri.rsplit("/", 1)[-1].split("#")[0]
    return referencing.Resource.from_contents(json.loads((schema_dir / name).read_text()), default_specification=DRAFT4)
registry = referencing.Registry(retrieve=retrieve)
failed = False
for pair in sys.argv[2:]:
    schema_name, doc = pair.split("=", 1)
    schema = json.loads((schema_dir / schema_name).read_text())
    validator = jsonschema.Draft4Validator(schema, registry=registry)
    for e in validator.iter_errors(json.loads(pathlib.Path(doc).read_text())):
        failed = True
        print(f"{doc} against {schema_name}: {e.message} at {list(e.absolute_path)}")
sys.exit(1 if failed else 0)
"##;

#[test]
fn attestation_indexes_and_manifests_match_the_oci_schemas() {
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/peer-tests/oci-image-spec-schema/schema");
    assert!(
        schema_dir.join("image-manifest-schema.json").is_file(),
        "the OCI schemas are missing from `{}`",
        schema_dir.display()
    );
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("store")).unwrap();
    let mut diff = Diff::new();
    diff.insert(
        LayerPath::new("hello").unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(&b"hi\n"[..]))),
            meta: Metadata::root_owned(0o644),
        },
    );
    let layer = layer::write(&diff, &store, &WriteOptions::default()).unwrap();
    let config = ImageConfig {
        created: Some(rfc3339(0)),
        architecture: "arm64".to_owned(),
        os: "linux".to_owned(),
        ..ImageConfig::default()
    };
    let image = assemble(&store, &config, &[layer], &BTreeMap::new()).unwrap();
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let platform = Platform::new("linux", "arm64", None);
    let subject = Subject::image("app:v1", &image.manifest.digest, &platform);
    let statement = provenance::statement(&ProvenanceParams::new(vec![subject.clone()])).unwrap();
    let sbom = spdx_statement(
        &SbomParams {
            image_name: "app:v1".to_owned(),
            image_digest: image.manifest.digest.clone(),
            source_date_epoch: 0,
            packages: sample_packages(),
        },
        &[subject],
    )
    .unwrap();
    let attestations = [
        Attestation::signed(&statement, &[&key]).unwrap(),
        Attestation::unsigned(&sbom).unwrap(),
    ];
    let mut check = Command::new(venv_python());
    check.arg("-c").arg(SCHEMA_CHECK).arg(&schema_dir);
    for mode in [
        AttachMode::Index,
        AttachMode::IndexLegacy,
        AttachMode::Referrers,
    ] {
        let layout = temp.path().join(format!("{mode:?}"));
        write_oci_layout(
            &store,
            &layout,
            &[(image.clone(), vec!["app:v1".to_owned()])],
        )
        .unwrap();
        let outcome = attach(&layout, Some("v1"), &attestations, mode).unwrap();
        let blob = |d: &Digest| layout.join("blobs/sha256").join(d.hex());
        check.arg(format!(
            "image-index-schema.json={}",
            layout.join("index.json").display()
        ));
        if let Some(index) = &outcome.index {
            check.arg(format!(
                "image-index-schema.json={}",
                blob(&index.digest).display()
            ));
        }
        for manifest in &outcome.manifests {
            check.arg(format!(
                "image-manifest-schema.json={}",
                blob(&manifest.digest).display()
            ));
            let parsed: Manifest =
                serde_json::from_slice(&std::fs::read(blob(&manifest.digest)).unwrap()).unwrap();
            if mode == AttachMode::IndexLegacy {
                check.arg(format!(
                    "config-schema.json={}",
                    blob(&parsed.config.digest).display()
                ));
            }
        }
        let layout_index: Index =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        for entry in &layout_index.manifests {
            if entry.media_type == kiln::image::manifest::MEDIA_TYPE_OCI_INDEX {
                check.arg(format!(
                    "image-index-schema.json={}",
                    blob(&entry.digest).display()
                ));
            }
        }
    }
    let output = check.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
}
