//! `kiln verify` reads all three signature layouts of a registry image (kiln's DSSE referrers,
//! cosign's `.sig`/`.att` tags, Sigstore bundle referrers) and reports per layout:
//!
//! - kiln's own signing push verifies in every layout with the right key and in none with
//!   another;
//! - signatures written by an independent Python signer (cryptography, the registry API by
//!   hand: a `.sig` simple-signing layer, an `.att` DSSE envelope and a bundle v0.3 referrer in
//!   the fallback index) verify with `kiln verify`, and fail with another key.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;
use std::process::{Command, Output};

use registry_support::{Auth, TestRegistry};
use support::{kiln, kiln_ok, write_files};

/// argv: host, repository, manifest digest, private key path (PKCS#8 PEM, P-256), manifest
/// size, and optionally the docker-reference to sign for (default: the repository).
const PYTHON_SIGNER: &str = r#"
import base64, hashlib, json, sys, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

host, repo, digest, key_path = sys.argv[1:5]
key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
b64 = lambda b: base64.b64encode(b).decode()
base = f"http://{host}/v2/{repo}"
OCI = "application/vnd.oci.image.manifest.v1+json"

def put_blob(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    res = urllib.request.urlopen(urllib.request.Request(base + "/blobs/uploads/", method="POST", data=b""))
    loc = res.headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={dg}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req)
    return {"digest": dg, "size": len(data)}

def put_manifest(ref, doc, media_type=OCI):
    data = json.dumps(doc).encode()
    req = urllib.request.Request(f"{base}/manifests/{ref}", method="PUT", data=data,
                                 headers={"Content-Type": media_type})
    urllib.request.urlopen(req)
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

def envelope(statement):
    body = json.dumps(statement).encode()
    ptype = b"application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    return {"payloadType": ptype.decode(), "payload": b64(body), "signatures": [{"keyid": "", "sig": b64(sign(pae))}]}

hexd = digest.split(":", 1)[1]
config = put_blob(b"{}")
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
# .sig
identity = sys.argv[6] if len(sys.argv) > 6 else f"{host}/{repo}"
payload = json.dumps({"critical": {"identity": {"docker-reference": identity},
    "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"},
    "optional": {}}).encode()
layer = put_blob(payload)
layer.update(mediaType="application/vnd.dev.cosign.simplesigning.v1+json",
             annotations={"dev.cosignproject.cosign/signature": b64(sign(payload))})
put_manifest(f"sha256-{hexd}.sig", {"schemaVersion": 2, "mediaType": OCI, "config": config, "layers": [layer]})
# .att
statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": repo, "digest": {"sha256": hexd}}],
             "predicateType": "https://example.com/test/v1", "predicate": {"ok": True}}
layer = put_blob(json.dumps(envelope(statement)).encode())
layer.update(mediaType="application/vnd.dsse.envelope.v1+json", annotations={"predicateType": statement["predicateType"]})
put_manifest(f"sha256-{hexd}.att", {"schemaVersion": 2, "mediaType": OCI, "config": config, "layers": [layer]})
# bundle referrer + fallback index
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
bundle = {"mediaType": BUNDLE, "verificationMaterial": {"publicKey": {"hint": "test"}, "tlogEntries": []},
          "dsseEnvelope": envelope(dict(statement, predicateType="https://sigstore.dev/cosign/sign/v1", predicate={}))}
layer = put_blob(json.dumps(bundle).encode())
layer["mediaType"] = BUNDLE
empty = put_blob(b"{}")
empty["mediaType"] = "application/vnd.oci.empty.v1+json"
annotations = {"dev.sigstore.bundle.content": "dsse-envelope",
               "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"}
subject = {"mediaType": OCI, "digest": digest, "size": int(sys.argv[5])}
referrer = put_manifest("sha256:" + hashlib.sha256(json.dumps({"schemaVersion": 2, "mediaType": OCI, "artifactType": BUNDLE,
    "config": empty, "layers": [layer], "subject": subject, "annotations": annotations}).encode()).hexdigest(),
    {"schemaVersion": 2, "mediaType": OCI, "artifactType": BUNDLE, "config": empty, "layers": [layer],
     "subject": subject, "annotations": annotations})
referrer.update(artifactType=BUNDLE, annotations=annotations)
put_manifest(f"sha256-{hexd}", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [referrer]}, "application/vnd.oci.image.index.v1+json")
"#;

const PYTHON_KEYGEN: &str = r#"
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
open(sys.argv[1], "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(sys.argv[2], "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM,
    serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

fn python(script: &str, args: &[&str]) {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("/usr/bin/python3 is required (apt-get install python3-cryptography)");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(image: &str, key: &Path, policy: &Path, cache: &Path) -> (Output, String) {
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
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn build_push(work: &Path, target: &str, extra: &[&str]) -> String {
    let ctx = work.join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", target),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let cache = work.join("cache");
    let mut args = vec![
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        target,
        "--push",
    ];
    args.extend_from_slice(extra);
    let ctx_text = ctx.display().to_string();
    args.push(&ctx_text);
    kiln_ok(&args).trim().to_owned()
}

#[test]
fn verify_reports_each_layout_of_a_kiln_signed_image() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    kiln_ok(&["keygen", work.path().join("a").to_str().unwrap()]);
    kiln_ok(&["keygen", work.path().join("b").to_str().unwrap()]);
    let target = reg.reference("test/app:1");
    let key = work.path().join("a/private.pem").display().to_string();
    let digest = build_push(work.path(), &target, &["--sign-key", &key]);
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "require_provenance = true\nrequire_signed = true\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let short = &digest[7..19];

    let (ok, stderr) = verify(&target, &work.path().join("a/public.pem"), &policy, &cache);
    assert!(ok.status.success(), "{stderr}");
    for line in [
        format!("cosign .sig for {short}: 1 found, 1 verified"),
        format!("cosign .att for {short}: 2 found, 2 verified"),
        format!("sigstore bundles for {short}: 3 found, 3 verified"),
    ] {
        assert!(stderr.contains(&line), "`{line}` missing from:\n{stderr}");
    }
    let (bad, stderr) = verify(&target, &work.path().join("b/public.pem"), &policy, &cache);
    assert!(!bad.status.success(), "another key verified:\n{stderr}");
    for line in [
        format!("cosign .sig for {short}: 1 found, 0 verified"),
        format!("cosign .att for {short}: 2 found, 0 verified"),
        format!("sigstore bundles for {short}: 3 found, 0 verified"),
    ] {
        assert!(stderr.contains(&line), "`{line}` missing from:\n{stderr}");
    }
}

#[test]
fn signatures_from_an_independent_signer_verify_in_each_layout() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let private = work.path().join("py.key");
    let public = work.path().join("py.pub");
    python(
        PYTHON_KEYGEN,
        &[private.to_str().unwrap(), public.to_str().unwrap()],
    );
    kiln_ok(&["keygen", work.path().join("b").to_str().unwrap()]);
    let target = reg.reference("test/other:1");
    let digest = build_push(
        work.path(),
        &target,
        &["--provenance=false", "--sbom=false"],
    );
    let manifest_size =
        std::fs::metadata(work.path().join("cache/blobs/sha256").join(&digest[7..]))
            .map(|m| m.len().to_string())
            .unwrap_or_else(|_| "0".to_owned());
    python(
        PYTHON_SIGNER,
        &[
            &reg.host(),
            "test/other",
            &digest,
            private.to_str().unwrap(),
            &manifest_size,
        ],
    );
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "require_provenance = false\nrequire_signed = false\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let short = &digest[7..19];

    let (ok, stderr) = verify(&target, &public, &policy, &cache);
    assert!(ok.status.success(), "{stderr}");
    for line in [
        format!("cosign .sig for {short}: 1 found, 1 verified"),
        format!("cosign .att for {short}: 1 found, 1 verified (https://example.com/test/v1)"),
        format!(
            "sigstore bundles for {short}: 1 found, 1 verified (https://sigstore.dev/cosign/sign/v1)"
        ),
    ] {
        assert!(stderr.contains(&line), "`{line}` missing from:\n{stderr}");
    }
    let (bad, stderr) = verify(&target, &work.path().join("b/public.pem"), &policy, &cache);
    assert!(!bad.status.success(), "another key verified:\n{stderr}");
    assert!(stderr.contains("none of 1 entries verified"), "{stderr}");
}

#[test]
fn require_exact_repository_refuses_a_signature_for_another_repository() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let private = work.path().join("py.key");
    let public = work.path().join("py.pub");
    python(
        PYTHON_KEYGEN,
        &[private.to_str().unwrap(), public.to_str().unwrap()],
    );
    let target = reg.reference("test/moved:1");
    let digest = build_push(
        work.path(),
        &target,
        &["--provenance=false", "--sbom=false"],
    );
    python(
        PYTHON_SIGNER,
        &[
            &reg.host(),
            "test/moved",
            &digest,
            private.to_str().unwrap(),
            "0",
            "registry.example.com/elsewhere",
        ],
    );
    let cache = work.path().join("cache");
    let short = &digest[7..19];
    let lax = work.path().join("lax.toml");
    std::fs::write(&lax, "require_provenance = false\n").unwrap();
    let (ok, stderr) = verify(&target, &public, &lax, &cache);
    assert!(ok.status.success(), "{stderr}");
    let exact = work.path().join("exact.toml");
    std::fs::write(
        &exact,
        "require_provenance = false\nrequire_exact_repository = true\n",
    )
    .unwrap();
    let (refused, stderr) = verify(&target, &public, &exact, &cache);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cosign .sig for {short}: 1 found, 0 verified"))
            && stderr.contains("not `")
            && stderr.contains("require_exact_repository"),
        "{stderr}"
    );
}
