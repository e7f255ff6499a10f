//! Attestations through the `kiln` binary: `kiln keygen`, signed provenance and SBOM attached
//! as OCI referrers (default) or buildx-style in an index, `kiln verify` with the right and the
//! wrong key, byte-identical attestations with `--reproducible`, secret build args kept out of
//! every output, and attestations pushed to a real registry under the fallback tag.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;

use registry_support::{Auth, TestRegistry, skopeo};
use support::{kiln, kiln_ok, write_files};

const SECRET: &str = "ghp_secretvalue123456";

fn context(dir: &Path) {
    write_files(
        dir,
        &[
            ("hello.txt", "hello\n"),
            (
                "Dockerfile",
                "FROM scratch\nARG GITHUB_TOKEN\nCOPY hello.txt /\n",
            ),
        ],
    );
}

fn build(context: &Path, cache: &Path, layout: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "build".to_owned(),
        "--progress=quiet".to_owned(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "-t".to_owned(),
        "app:1".to_owned(),
        "--build-arg".to_owned(),
        format!("GITHUB_TOKEN={SECRET}"),
        "--output".to_owned(),
        format!("type=oci,dest={}", layout.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(context.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln_ok(&refs).trim().to_owned()
}

fn every_byte_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

#[test]
fn signed_attestations_verify_and_are_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let other = work.path().join("other-keys");
    kiln_ok(&["keygen", "--algorithm", "ed25519", other.to_str().unwrap()]);
    let ctx = work.path().join("ctx");
    context(&ctx);
    let cache = work.path().join("cache");
    let sign = format!("--sign-key={}", keys.join("private.pem").display());

    let a = work.path().join("a");
    let b = work.path().join("b");
    let digest_a = build(&ctx, &cache, &a, &[&sign, "--reproducible"]);
    let digest_b = build(&ctx, &cache, &b, &[&sign, "--reproducible"]);
    assert_eq!(digest_a, digest_b);
    assert_eq!(
        std::fs::read(a.join("index.json")).unwrap(),
        std::fs::read(b.join("index.json")).unwrap(),
        "reproducible attestations give identical layouts"
    );
    // Nor in the build's output (plain progress prints every step), nor in the config history.
    let logged = kiln(&[
        "build",
        "--progress=plain",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--build-arg",
        &format!("GITHUB_TOKEN={SECRET}"),
        ctx.to_str().unwrap(),
    ]);
    assert!(logged.status.success());
    for stream in [&logged.stdout, &logged.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(SECRET),
            "the secret was logged"
        );
    }
    let all = every_byte_under(&a);
    assert!(
        !all.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret build arg appears in the layout"
    );

    let image = format!("oci:{}:1", a.display());
    let public = keys.join("public.pem");
    let ok = kiln(&["verify", &image, "--key", public.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = kiln(&[
        "verify",
        &image,
        "--key",
        other.join("public.pem").to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("FAILED"));

    // Unsigned attestations fail a policy that requires signatures.
    let unsigned = work.path().join("unsigned");
    build(&ctx, &cache, &unsigned, &[]);
    let report = kiln(&[
        "verify",
        &format!("oci:{}:1", unsigned.display()),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(report.status.code(), Some(1));

    // buildx-style: the tag names an index holding the image and its attestation manifest.
    let indexed = work.path().join("indexed");
    build(&ctx, &cache, &indexed, &[&sign, "--attest-mode", "index"]);
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:1", indexed.display())]);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["manifests"][0]["digest"], digest_a.as_str());
    assert_eq!(
        index["manifests"][1]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    let ok = kiln(&[
        "verify",
        &format!("oci:{}:1", indexed.display()),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn pushed_attestations_are_listed_under_the_fallback_tag() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    context(&ctx);
    let target = reg.reference("kiln/attested:1");
    let digest = kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "-t",
        &target,
        "--push",
        ctx.to_str().unwrap(),
    ]);
    let digest = digest.trim();
    let fallback = reg.reference(&format!(
        "kiln/attested:sha256-{}",
        digest.trim_start_matches("sha256:")
    ));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{fallback}"),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "provenance and SBOM: {index}");
    // `kiln inspect` lists them with their predicate types.
    let inspected = kiln_ok(&["inspect", "--format", "json", &target]);
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let mut predicates: Vec<&str> = inspected["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["predicateType"].as_str().unwrap_or("?"))
        .collect();
    predicates.sort();
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    for referrer in manifests {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!(
                "docker://{}@{}",
                reg.reference("kiln/attested"),
                referrer["digest"].as_str().unwrap()
            ),
        ]);
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["subject"]["digest"], digest);
    }
    // A second push of the same image (new provenance times, another cache) keeps the first
    // attestations listed beside the new ones.
    kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.path().join("cache-2").to_str().unwrap(),
        "-t",
        &target,
        "--push",
        ctx.to_str().unwrap(),
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{fallback}"),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    // Two provenance statements (each build records its own invocation) and one SBOM (the
    // same bytes both times, so listed once).
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "{index}");
    // `kiln verify` of the registry image reads them back (unsigned: the default policy
    // requires signatures, so it fails naming that; a policy requiring provenance passes).
    let keys = work.path().join("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let public = keys.join("public.pem");
    let cache = work.path().join("verify-cache");
    let unsigned = kiln(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(unsigned.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unsigned.stderr);
    assert!(stderr.contains("FAILED"), "{stderr}");
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "require_provenance = true\n").unwrap();
    let ok = kiln(&[
        "verify",
        &target,
        "--key",
        public.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// `kiln attest` on an image built without attestations: a signed custom predicate and an
/// SBOM of its packages, found by `kiln verify` and `kiln inspect`.
#[test]
fn attest_an_existing_image() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let ctx = work.path().join("ctx");
    context(&ctx);
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    build(
        &ctx,
        &cache,
        &layout,
        &["--provenance=false", "--sbom=false"],
    );
    let image = format!("oci:{}:1", layout.display());
    let public = keys.join("public.pem");
    let unattested = kiln(&["verify", &image, "--key", public.to_str().unwrap()]);
    assert_eq!(unattested.status.code(), Some(1), "nothing attached yet");

    let predicate = work.path().join("review.json");
    std::fs::write(&predicate, r#"{"reviewer": "alice", "result": "approved"}"#).unwrap();
    kiln_ok(&[
        "attest",
        &image,
        "--predicate",
        predicate.to_str().unwrap(),
        "--type",
        "https://kiln.example/review/v1",
        "--sign-key",
        keys.join("private.pem").to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    kiln_ok(&[
        "attest",
        &image,
        "--sbom",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);

    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "required_predicate_types = [\"https://kiln.example/review/v1\"]\n",
    )
    .unwrap();
    let ok = kiln(&[
        "verify",
        &image,
        "--key",
        public.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = kiln_ok(&["inspect", &image]);
    assert!(text.contains("https://kiln.example/review/v1"), "{text}");
    assert!(text.contains("https://spdx.dev/Document"), "{text}");
}

/// The provenance chain through a real registry: an app built FROM a base pinned by digest
/// verifies only when the base carries its own trusted provenance.
#[test]
fn verify_follows_the_chain_to_the_base() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let sign = format!("--sign-key={}", keys.join("private.pem").display());
    let public = keys.join("public.pem");
    let cache = work.path().join("cache");
    let push = |name: &str, dockerfile: &str, extra: &[&str]| -> String {
        let ctx = work.path().join(name.replace([':', '/'], "-"));
        write_files(&ctx, &[("hello.txt", name), ("Dockerfile", dockerfile)]);
        let target = reg.reference(name);
        let mut args = vec![
            "build",
            "--progress=quiet",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            &target,
            "--push",
        ];
        args.extend_from_slice(extra);
        let ctx_text = ctx.display().to_string();
        args.push(&ctx_text);
        let digest = kiln_ok(&args).trim().to_owned();
        format!("{target}@{digest}")
    };
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "require_provenance = true\nrequire_signed = true\nrequire_base_digest = true\nrequire_base_provenance = true\n").unwrap();
    let verify = |image: &str| {
        kiln(&[
            "verify",
            image,
            "--key",
            public.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };

    let base = push(
        "kiln/base:1",
        "FROM scratch\nCOPY hello.txt /base.txt\n",
        &[&sign],
    );
    let app = push(
        "kiln/app:1",
        &format!("FROM {base}\nCOPY hello.txt /app.txt\n"),
        &[&sign],
    );
    let ok = verify(&app);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("provenance verified"));

    let bare = push(
        "kiln/bare:1",
        "FROM scratch\nCOPY hello.txt /base.txt\n",
        &["--provenance=false", "--sbom=false"],
    );
    let app2 = push(
        "kiln/app2:1",
        &format!("FROM {bare}\nCOPY hello.txt /app.txt\n"),
        &[&sign],
    );
    let failed = verify(&app2);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("base-provenance") && stderr.contains("kiln/bare"),
        "{stderr}"
    );
}

/// The provenance names the context as used (outside a git checkout: a digest over the layers
/// made from it, which follows the content) and the Dockerfile by digest.
#[test]
fn provenance_names_the_context_by_digest() {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    context(&ctx);
    let cache = work.path().join("cache");
    let source_of = |layout: &Path| -> serde_json::Value {
        let inspected = kiln_ok(&[
            "inspect",
            "--format",
            "json",
            "--cache-dir",
            cache.to_str().unwrap(),
            &format!("oci:{}:1", layout.display()),
        ]);
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        let blob = inspected["attestations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["predicateType"] == "https://slsa.dev/provenance/v1")
            .and_then(|a| a["blob"].as_str())
            .expect("a provenance statement")
            .trim_start_matches("sha256:")
            .to_owned();
        let statement: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(blob)).unwrap())
                .unwrap();
        statement["predicate"]["buildDefinition"]["externalParameters"].clone()
    };
    let first = work.path().join("first");
    build(&ctx, &cache, &first, &["--reproducible"]);
    let params = source_of(&first);
    assert!(
        params["dockerfile"]["digest"]["sha256"].is_string(),
        "{params}"
    );
    let context_digest = params["source"]["digest"]["sha256"].clone();
    assert!(context_digest.is_string(), "{params}");
    std::fs::write(ctx.join("hello.txt"), "changed\n").unwrap();
    let second = work.path().join("second");
    build(&ctx, &cache, &second, &["--reproducible"]);
    assert_ne!(
        source_of(&second)["source"]["digest"]["sha256"],
        context_digest
    );
}
