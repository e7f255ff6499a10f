//! Sigstore bundle v0.3 referrers on a real registry (Debian's docker-registry on 127.0.0.1),
//! verified by sigstore-js (the npm package `sigstore`, installed by this test with npm into
//! `target/sigstore-js`), not by kiln's code.
//!
//! `sigstore.verify` itself demands at least one timestamp (a transparency-log entry or an
//! RFC 3161 timestamp) and fetches the public-good trust root, neither of which an offline
//! key-signed bundle has; the checker therefore runs the same verifier sigstore.verify builds
//! (`@sigstore/verify`'s `Verifier` over `bundleFromJSON` and `toSignedEntity`, a public-key
//! finder as its key selector) with the timestamp and log thresholds at 0 and an empty trust
//! root. It then checks the statement's subject against the expected manifest digest.

use crate::support;
use crate::support::registry as registry_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use registry_support::{Auth, TestRegistry};
use support::{kiln_ok, require_tool, write_files};

/// argv: node_modules, registry host, repository, subject digest, expected digest, public key.
/// Prints the predicate types of the bundles in the subject's fallback index that verify with
/// the key and whose statement names the expected digest.
const NODE_CHECKER: &str = r#"
const [modules, host, repo, subject, expected, pubPath] = process.argv.slice(1);
const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require(modules + '/@sigstore/bundle');
const { Verifier, toTrustMaterial, toSignedEntity } = require(modules + '/@sigstore/verify');
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const get = async (path, accept) => {
  const res = await fetch(`http://${host}/v2/${repo}/${path}`, { headers: accept ? { Accept: accept } : {} });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
};
(async () => {
  const pem = fs.readFileSync(pubPath, 'utf8');
  const root = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const trust = toTrustMaterial(root, (hint) => ({ publicKey: crypto.createPublicKey(pem), validFor: () => true }));
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  const index = JSON.parse(await get('manifests/' + subject.replace(':', '-'), 'application/vnd.oci.image.index.v1+json'));
  const verified = [];
  for (const entry of index.manifests) {
    if (entry.artifactType !== BUNDLE) continue;
    const manifest = JSON.parse(await get('manifests/' + entry.digest, 'application/vnd.oci.image.manifest.v1+json'));
    if (manifest.artifactType !== BUNDLE || manifest.subject.digest !== subject) throw new Error('bad referrer ' + entry.digest);
    const bytes = await get('blobs/' + manifest.layers[0].digest);
    const bundle = bundleFromJSON(JSON.parse(bytes));
    try {
      verifier.verify(toSignedEntity(bundle));
    } catch (e) {
      continue;
    }
    const statement = JSON.parse(Buffer.from(bundle.content.dsseEnvelope.payload).toString());
    if (!statement.subject.some((s) => 'sha256:' + s.digest.sha256 === expected)) continue;
    if (statement.predicateType !== manifest.annotations['dev.sigstore.bundle.predicateType']) throw new Error('annotation');
    verified.push(statement.predicateType);
  }
  console.log(JSON.stringify(verified.sort()));
})().catch((e) => { console.error(e); process.exit(2); });
"#;

/// sigstore-js installed once under `target/sigstore-js` (once per run: concurrent callers wait).
fn sigstore_js() -> PathBuf {
    static MODULES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODULES.get_or_init(installed_sigstore_js).clone()
}

fn installed_sigstore_js() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sigstore-js");
    let modules = dir.join("node_modules");
    if modules.join("sigstore/package.json").exists() {
        return modules;
    }
    let npm = require_tool("npm");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg("sigstore@4")
        .output()
        .expect("failed to start npm");
    assert!(
        out.status.success(),
        "`npm install sigstore` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    modules
}

fn check(reg: &TestRegistry, repo: &str, subject: &str, expected: &str, key: &Path) -> Vec<String> {
    let modules = sigstore_js();
    let out = Command::new(require_tool("node"))
        .arg("-e")
        .arg(NODE_CHECKER)
        .arg(&modules)
        .args([&reg.host(), repo, subject, expected])
        .arg(key)
        .output()
        .expect("failed to start node");
    assert!(
        out.status.success(),
        "the sigstore-js checker failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sigstore_js_verifies_the_bundles_and_refuses_a_wrong_key_and_digest() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    kiln_ok(&["keygen", work.path().join("a").to_str().unwrap()]);
    kiln_ok(&["keygen", work.path().join("b").to_str().unwrap()]);
    let public = work.path().join("a/public.pem");
    let other = work.path().join("b/public.pem");
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "-t",
        &reg.reference("test/app:1"),
        "--push",
        "--signature-format",
        "bundle",
        "--sign-key",
        work.path().join("a/private.pem").to_str().unwrap(),
        ctx.to_str().unwrap(),
    ])
    .trim()
    .to_owned();

    assert_eq!(
        check(&reg, "test/app", &digest, &digest, &public),
        vec![
            "https://sigstore.dev/cosign/sign/v1",
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ],
        "sigstore-js did not verify the signature and attestation bundles"
    );
    assert!(
        check(&reg, "test/app", &digest, &digest, &other).is_empty(),
        "a wrong key verified"
    );
    let wrong_digest = registry_support::sha256(b"another manifest");
    assert!(
        check(&reg, "test/app", &digest, &wrong_digest, &public).is_empty(),
        "the bundles cover another digest"
    );
}
