//! cosign's tag layout on a real registry (Debian's docker-registry on 127.0.0.1), checked by an
//! independent verifier written here from cosign's SIGNATURE_SPEC and ATTESTATION_SPEC in Python
//! with `cryptography` (not kiln's code):
//!
//! - `kiln build --push --sign-key` writes `sha256-<hex>.sig` (simple-signing payload, signature
//!   annotation) and `sha256-<hex>.att` (DSSE envelopes of the provenance and SBOM); the checker
//!   verifies both, and refuses them with another key and for a manifest with one byte changed;
//! - signing again with a second key keeps the first signature under the tag;
//! - `kiln push oci:DIR --sign-key` of a two-platform index signs the index and each platform
//!   manifest (containers/image checks each platform's manifest).

use crate::support;
use crate::support::registry as registry_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use registry_support::{Auth, TestRegistry};
use support::{kiln_ok, two_platform_layout, write_files};

/// Prints `{"signatures": N, "attestations": [predicateType...]}`: the `.sig` layers of
/// argv[3]'s tag that verify with the key argv[5] and sign argv[4] in repository
/// argv[1]/argv[2], and the `.att` envelopes that verify and name argv[4] as a subject.
const PYTHON_CHECKER: &str = r#"
import base64, hashlib, json, sys, urllib.error, urllib.request
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

host, repo, tag_digest, manifest_digest, pub = sys.argv[1:6]
key = serialization.load_pem_public_key(open(pub, "rb").read())
OCI = "application/vnd.oci.image.manifest.v1+json"

def get(path, accept=None):
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(f"http://{host}/v2/{repo}/{path}", headers=headers)
    return urllib.request.urlopen(req).read()

def manifest(tag):
    try:
        return json.loads(get(f"manifests/{tag}", OCI))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {"layers": []}
        raise

def blob(desc):
    data = get("blobs/" + desc["digest"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"], desc
    assert len(data) == desc["size"], desc
    return data

def signed_by_key(signature, data):
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False

tag = tag_digest.replace(":", "-")
signatures = 0
for layer in manifest(tag + ".sig")["layers"]:
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
    payload = blob(layer)
    sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    if not signed_by_key(sig, payload):
        continue
    critical = json.loads(payload)["critical"]
    assert critical["type"] == "cosign container image signature", critical
    if critical["image"]["docker-manifest-digest"] != manifest_digest:
        continue
    if critical["identity"]["docker-reference"] != f"{host}/{repo}":
        continue
    signatures += 1

attestations = []
for layer in manifest(tag + ".att")["layers"]:
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json", layer
    envelope = json.loads(blob(layer))
    body = base64.b64decode(envelope["payload"])
    ptype = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    if not any(signed_by_key(base64.b64decode(s["sig"]), pae) for s in envelope["signatures"]):
        continue
    statement = json.loads(body)
    assert statement["predicateType"] == layer["annotations"]["predicateType"], layer
    hexes = [s["digest"].get("sha256") for s in statement["subject"]]
    if manifest_digest.split(":", 1)[1] in hexes:
        attestations.append(statement["predicateType"])
print(json.dumps({"signatures": signatures, "attestations": sorted(attestations)}))
"#;

fn python() -> PathBuf {
    let python = PathBuf::from("/usr/bin/python3");
    let probe = Command::new(&python)
        .args(["-c", "import cryptography"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "/usr/bin/python3 with cryptography is required; `.ci/run` installs it \
             (apt-get install python3-cryptography)"
        ),
    }
}

struct Found {
    signatures: u64,
    attestations: Vec<String>,
}

fn check(
    reg: &TestRegistry,
    repo: &str,
    tag_digest: &str,
    manifest_digest: &str,
    key: &Path,
) -> Found {
    let out = Command::new(python())
        .arg("-c")
        .arg(PYTHON_CHECKER)
        .args([&reg.host(), repo, tag_digest, manifest_digest])
        .arg(key)
        .output()
        .expect("failed to start python");
    assert!(
        out.status.success(),
        "the checker failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Found {
        signatures: value["signatures"].as_u64().unwrap(),
        attestations: value["attestations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
    }
}

fn manifest_bytes(reg: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "-sSf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/{digest}", reg.host()),
        ])
        .output()
        .expect("curl is required (apt-get install curl)");
    assert!(out.status.success(), "curl failed");
    out.stdout
}

fn sha256_digest(bytes: &[u8]) -> String {
    registry_support::sha256(bytes)
}

fn keygen(dir: &Path) -> (String, PathBuf) {
    kiln_ok(&["keygen", dir.to_str().unwrap()]);
    (
        dir.join("private.pem").display().to_string(),
        dir.join("public.pem"),
    )
}

#[test]
fn build_push_writes_sig_and_att_that_an_independent_checker_verifies() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key_a, public_a) = keygen(&work.path().join("a"));
    let (key_b, public_b) = keygen(&work.path().join("b"));
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let cache = work.path().join("cache");
    let target = reg.reference("test/app:1");
    let build = |key: &str| {
        kiln_ok(&[
            "build",
            "--progress=quiet",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            &target,
            "--push",
            "--reproducible",
            "--sign-key",
            key,
            ctx.to_str().unwrap(),
        ])
        .trim()
        .to_owned()
    };
    let digest = build(&key_a);

    let found = check(&reg, "test/app", &digest, &digest, &public_a);
    assert_eq!(found.signatures, 1, "the .sig signature does not verify");
    assert_eq!(
        found.attestations,
        vec![
            "https://slsa.dev/provenance/v1".to_owned(),
            "https://spdx.dev/Document".to_owned()
        ],
        "the .att envelopes do not verify"
    );

    let wrong = check(&reg, "test/app", &digest, &digest, &public_b);
    assert_eq!(wrong.signatures, 0, "a wrong key verified the signature");
    assert!(
        wrong.attestations.is_empty(),
        "a wrong key verified the envelopes"
    );

    let mut changed = manifest_bytes(&reg, "test/app", &digest);
    let last = changed.len() - 2;
    changed[last] ^= 0x01;
    let changed_digest = sha256_digest(&changed);
    let refused = check(&reg, "test/app", &digest, &changed_digest, &public_a);
    assert_eq!(
        refused.signatures, 0,
        "the signature covers a changed manifest"
    );
    assert!(refused.attestations.is_empty());
    let refused = check(
        &reg,
        "test/app",
        &changed_digest,
        &changed_digest,
        &public_a,
    );
    assert_eq!(refused.signatures, 0, "a changed manifest has signatures");

    // Signing again with another key keeps the first signature and envelopes.
    assert_eq!(build(&key_b), digest, "the reproducible build changed");
    assert_eq!(
        check(&reg, "test/app", &digest, &digest, &public_a).signatures,
        1
    );
    let second = check(&reg, "test/app", &digest, &digest, &public_b);
    assert_eq!(
        second.signatures, 1,
        "the second key's signature is missing"
    );
    assert_eq!(second.attestations.len(), 2);
    // And signing again with the first key adds no duplicate.
    build(&key_a);
    assert_eq!(
        check(&reg, "test/app", &digest, &digest, &public_a).signatures,
        1
    );
}

#[test]
fn push_of_an_index_signs_every_platform_manifest() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("k"));
    let (_, other) = keygen(&work.path().join("other"));
    let cache = work.path().join("cache");
    let (layout, digests) = two_platform_layout(work.path(), &cache);
    let pushed = kiln_ok(&[
        "push",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--sign-key",
        &key,
        &format!("oci:{}:multi", layout.display()),
        &reg.reference("test/multi:1"),
    ]);
    assert_eq!(
        pushed.trim(),
        digests[0],
        "kiln push printed another digest"
    );
    assert_eq!(digests.len(), 3);
    for digest in &digests {
        let found = check(&reg, "test/multi", digest, digest, &public);
        assert_eq!(found.signatures, 1, "{digest} is not signed");
        let wrong = check(&reg, "test/multi", digest, digest, &other);
        assert_eq!(wrong.signatures, 0, "{digest} verified with a wrong key");
    }
}

#[test]
fn kiln_sign_signs_an_image_already_in_the_registry() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("k"));
    let (_, other) = keygen(&work.path().join("other"));
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "unsigned\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let cache = work.path().join("cache");
    let target = reg.reference("test/later:1");
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        &target,
        "--push",
        ctx.to_str().unwrap(),
    ])
    .trim()
    .to_owned();
    assert_eq!(
        check(&reg, "test/later", &digest, &digest, &public).signatures,
        0,
        "signed before kiln sign"
    );
    let signed = kiln_ok(&[
        "sign",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--key",
        &key,
        &target,
    ]);
    assert_eq!(signed.trim(), digest);
    assert_eq!(
        check(&reg, "test/later", &digest, &digest, &public).signatures,
        1
    );
    assert_eq!(
        check(&reg, "test/later", &digest, &digest, &other).signatures,
        0
    );
}

#[test]
fn a_signed_layout_carries_the_tags_and_they_verify_after_a_push() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("k"));
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "layout\n"),
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
    let tag = digest.replace(':', "-");
    for reference in [
        format!("oci:{}@{digest}", layout.display()),
        format!("oci:{}:{tag}.sig", layout.display()),
        format!("oci:{}:{tag}.att", layout.display()),
    ] {
        let pushed_tag = reference.rsplit([':', '@']).next().unwrap();
        let destination = if reference.contains('@') {
            target.clone()
        } else {
            reg.reference(&format!("test/lay:{pushed_tag}"))
        };
        kiln_ok(&[
            "push",
            "--cache-dir",
            cache.to_str().unwrap(),
            &reference,
            &destination,
        ]);
    }
    let found = check(&reg, "test/lay", &digest, &digest, &public);
    assert_eq!(found.signatures, 1, "the layout's .sig does not verify");
    assert_eq!(
        found.attestations.len(),
        2,
        "the layout's .att does not verify"
    );
}
