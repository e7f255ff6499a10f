//! Tests of the attestation documents themselves: in-toto Statement v1 + SLSA provenance v1
//! structure (checked with the rules in `peer-tests/in-toto-slsa-schema/PROVENANCE.md`, since
//! upstream publishes no JSON schema; the checker is first run on the upstream examples),
//! byte-identical reproducible statements, SBOMs and signatures, secrets kept out, git
//! metadata read without git, and packages listed from an image file system.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kiln::attest::material::Material;
use kiln::attest::provenance::{
    self, Builder, ContextSource, DockerfileSource, GitSource, ProvenanceParams, Subject, Timing,
};
use kiln::attest::sbom::{PackageKind, SbomParams, packages_from_rootfs, spdx_document};
use kiln::attest::{AttestError, Attestation, KeyAlgorithm, SigningKey};
use kiln::digest::Digest;
use kiln::image::{Platform, canonical};
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::memfs::MemFs;
use serde_json::Value;

const SECRET: &str = "ghp_secretvalue123";

fn peer(path: &str) -> Value {
    let full = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/peer-tests/in-toto-slsa-schema/"
    ))
    .join(path);
    let bytes = std::fs::read(&full)
        .unwrap_or_else(|e| panic!("peer test file `{}` is missing: {e}", full.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// RFC 3339 UTC: `YYYY-MM-DDThh:mm:ss[.frac]Z`.
fn is_utc_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && text.ends_with('Z')
        && (b.len() == 20 || b[19] == b'.')
}

/// Problems with a ResourceDescriptor, per the in-toto spec.
fn descriptor_problems(where_: &str, rd: &Value, digest_required: bool, out: &mut Vec<String>) {
    let Some(obj) = rd.as_object() else {
        out.push(format!("{where_}: not an object"));
        return;
    };
    if !["uri", "digest", "content"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        out.push(format!("{where_}: none of uri, digest, content"));
    }
    if digest_required && !obj.contains_key("digest") {
        out.push(format!("{where_}: no digest"));
    }
    if let Some(digest) = obj.get("digest") {
        match digest.as_object() {
            Some(set) if !set.is_empty() => {
                for (alg, value) in set {
                    let Some(value) = value.as_str() else {
                        out.push(format!("{where_}: digest {alg} is not a string"));
                        continue;
                    };
                    let len = match alg.as_str() {
                        "sha256" => Some(64),
                        "sha512" => Some(128),
                        "sha1" | "gitCommit" => Some(40),
                        _ => None,
                    };
                    if let Some(len) = len
                        && !is_hex(value, len)
                    {
                        out.push(format!("{where_}: digest {alg} is not {len} lowercase hex"));
                    }
                }
            }
            _ => out.push(format!("{where_}: digest is not a non-empty DigestSet")),
        }
    }
    for key in ["uri", "name", "downloadLocation", "mediaType"] {
        if obj.get(key).is_some_and(|v| !v.is_string()) {
            out.push(format!("{where_}: {key} is not a string"));
        }
    }
}

/// Every rule PROVENANCE.md summarises for Statement v1 + SLSA Provenance v1 (strict: unset,
/// null and empty are the same, so an empty `builder.id` is a problem).
fn statement_problems(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if doc["_type"] != "https://in-toto.io/Statement/v1" {
        out.push("_type is not https://in-toto.io/Statement/v1".to_owned());
    }
    match doc["subject"].as_array() {
        Some(subjects) if !subjects.is_empty() => {
            for (i, s) in subjects.iter().enumerate() {
                descriptor_problems(&format!("subject[{i}]"), s, true, &mut out);
            }
        }
        _ => out.push("subject is not a non-empty array".to_owned()),
    }
    if !doc["predicateType"]
        .as_str()
        .is_some_and(|t| t.contains(':'))
    {
        out.push("predicateType is not a URI".to_owned());
    }
    if doc["predicateType"] != "https://slsa.dev/provenance/v1" {
        return out;
    }
    let p = &doc["predicate"];
    let bd = &p["buildDefinition"];
    if !bd["buildType"].as_str().is_some_and(|t| t.contains(':')) {
        out.push("buildDefinition.buildType is not a URI".to_owned());
    }
    if !bd["externalParameters"].is_object() {
        out.push("buildDefinition.externalParameters is not an object".to_owned());
    }
    if !bd["internalParameters"].is_null() && !bd["internalParameters"].is_object() {
        out.push("buildDefinition.internalParameters is not an object".to_owned());
    }
    if let Some(deps) = bd["resolvedDependencies"].as_array() {
        for (i, d) in deps.iter().enumerate() {
            descriptor_problems(&format!("resolvedDependencies[{i}]"), d, false, &mut out);
        }
    } else if !bd["resolvedDependencies"].is_null() {
        out.push("resolvedDependencies is not an array".to_owned());
    }
    let rd = &p["runDetails"];
    if rd["builder"]["id"].as_str().is_none_or(str::is_empty) {
        out.push("runDetails.builder.id is missing or empty".to_owned());
    }
    if let Some(version) = rd["builder"]["version"].as_object()
        && version.values().any(|v| !v.is_string())
    {
        out.push("runDetails.builder.version is not a string map".to_owned());
    }
    let meta = &rd["metadata"];
    if !meta.is_null() {
        if !meta["invocationId"].is_null() && !meta["invocationId"].is_string() {
            out.push("metadata.invocationId is not a string".to_owned());
        }
        for key in ["startedOn", "finishedOn"] {
            if !meta[key].is_null() && !meta[key].as_str().is_some_and(is_utc_timestamp) {
                out.push(format!("metadata.{key} is not an RFC 3339 UTC timestamp"));
            }
        }
    }
    out
}

#[test]
fn the_structure_checker_agrees_with_the_upstream_examples() {
    let github = peer("slsa-framework/github-actions-buildtypes/workflow/v1/example.json");
    assert_eq!(statement_problems(&github), Vec::<String>::new());
    for buildkit in [
        "moby/buildkit/docs/attestations/slsa-provenance.L138-L198.json",
        "moby/buildkit/docs/attestations/slsa-provenance.L204-L296.json",
    ] {
        // BuildKit's examples leave builder.id empty, which the strict rules flag; nothing else.
        assert_eq!(
            statement_problems(&peer(buildkit)),
            ["runDetails.builder.id is missing or empty"],
            "{buildkit}"
        );
        // And kiln's own type reads them.
        let bytes = serde_json::to_vec(&peer(buildkit)).unwrap();
        let statement = provenance::Statement::from_slice(&bytes, buildkit).unwrap();
        assert_eq!(statement.subject_digests().len(), 1);
    }
}

fn full_params() -> ProvenanceParams {
    let platform = Platform::new("linux", "amd64", None);
    let manifest = Digest::of(b"image manifest");
    let mut params = ProvenanceParams::new(vec![
        Subject::image("ghcr.io/acme/app:v1", &manifest, &platform),
        Subject {
            name: "ghcr.io/acme/app".to_owned(),
            digest: Digest::of(b"image index"),
        },
    ]);
    params.dockerfile = Some(DockerfileSource {
        path: "DOCKERFILE".to_owned(),
        digest: Digest::of(b"FROM python:3.11-alpine\n"),
    });
    params.target = Some("runtime".to_owned());
    params.platforms = vec![platform.clone()];
    params.build_args = BTreeMap::from([
        ("GITHUB_TOKEN".to_owned(), SECRET.to_owned()),
        (
            "PIP_INDEX_TOKEN_X".to_owned(),
            "another-secret-1".to_owned(),
        ),
        ("DEPLOY_ENV".to_owned(), "denied-by-caller".to_owned()),
        ("PYTHON_VERSION".to_owned(), "3.11".to_owned()),
    ]);
    params.secret_build_args = ["DEPLOY_ENV".to_owned()].into();
    params.base_images = vec!["python:3.11-alpine".to_owned()];
    params.context = ContextSource::Git(GitSource {
        url: Some("https://github.com/acme/app.git".to_owned()),
        commit: "c27d339ee6075c1f744c5d4b200f7901aad2c369".to_owned(),
        reference: Some("refs/heads/main".to_owned()),
    });
    params.materials = vec![
        Material::docker_image("python:3.11-alpine", &Digest::of(b"base"), &platform),
        Material::apk(
            "musl",
            "1.2.5-r0",
            "x86_64",
            "85d529a91bf999880912a5b9d94995b2f99e79d1",
        ),
        Material::pypi(
            "Flask",
            "3.0.3",
            "flask-3.0.3-py3-none-any.whl",
            &Digest::of(b"wheel"),
        ),
        Material::sha256(
            "https://user:pw@dl-cdn.example/alpine/APKINDEX.tar.gz",
            &Digest::of(b"index"),
        ),
    ];
    params
}

#[test]
fn kiln_provenance_follows_the_statement_and_slsa_rules() {
    let mut params = full_params();
    params.timing = Timing::Recorded {
        invocation_id: provenance::new_invocation_id().unwrap(),
        started_on: 1_700_000_000,
        finished_on: 1_700_000_042,
    };
    let statement = provenance::statement(&params).unwrap();
    let doc: Value = serde_json::from_slice(&statement.to_bytes().unwrap()).unwrap();
    assert_eq!(statement_problems(&doc), Vec::<String>::new(), "{doc:#}");
    let p = &doc["predicate"];
    let ext = &p["buildDefinition"]["externalParameters"];
    assert_eq!(ext["target"], "runtime");
    assert_eq!(ext["platforms"][0], "linux/amd64");
    assert_eq!(ext["dockerfile"]["path"], "DOCKERFILE");
    assert_eq!(ext["baseImages"][0], "python:3.11-alpine");
    assert_eq!(
        ext["source"]["uri"],
        "git+https://github.com/acme/app.git@refs/heads/main"
    );
    assert_eq!(
        ext["buildArgs"],
        serde_json::json!({"PYTHON_VERSION": "3.11"})
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(deps.len(), 5);
    assert_eq!(
        deps[1]["uri"],
        "pkg:docker/python@3.11-alpine?platform=linux%2Famd64"
    );
    assert_eq!(
        deps[4]["uri"],
        "https://dl-cdn.example/alpine/APKINDEX.tar.gz"
    );
    assert_eq!(
        p["runDetails"]["builder"]["id"],
        provenance::LOCAL_BUILDER_ID
    );
    assert_eq!(
        p["runDetails"]["metadata"]["startedOn"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        p["runDetails"]["metadata"]["finishedOn"],
        "2023-11-14T22:14:02Z"
    );
    assert_eq!(
        doc["subject"][0]["name"],
        "pkg:docker/ghcr.io/acme/app@v1?platform=linux%2Famd64"
    );
}

#[test]
fn reproducible_attestations_are_byte_identical() {
    let a = provenance::statement(&full_params()).unwrap();
    let b = provenance::statement(&full_params()).unwrap();
    let bytes = a.to_bytes().unwrap();
    assert_eq!(bytes, b.to_bytes().unwrap());
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(doc["predicate"]["runDetails"].get("metadata").is_none());
    // Canonical: re-serializing the parsed document gives the same bytes.
    assert_eq!(canonical::to_vec(&doc).unwrap(), bytes);

    // Signatures too: Ed25519 is deterministic, and p256 signs with RFC 6979 nonces.
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let key = SigningKey::generate(algorithm).unwrap();
        let again = SigningKey::from_pem(&key.to_pkcs8_pem().unwrap(), "mem").unwrap();
        assert_eq!(
            Attestation::signed(&a, &[&key]).unwrap(),
            Attestation::signed(&b, &[&again]).unwrap(),
            "{algorithm:?}"
        );
    }

    // SBOMs: no random namespace, time from SOURCE_DATE_EPOCH.
    let params = SbomParams {
        image_name: "ghcr.io/acme/app:v1".to_owned(),
        image_digest: Digest::of(b"m"),
        source_date_epoch: 86_400,
        packages: Vec::new(),
    };
    let one = canonical::to_vec(&spdx_document(&params).unwrap()).unwrap();
    assert_eq!(
        one,
        canonical::to_vec(&spdx_document(&params.clone()).unwrap()).unwrap()
    );
    let doc: Value = serde_json::from_slice(&one).unwrap();
    assert_eq!(doc["creationInfo"]["created"], "1970-01-02T00:00:00Z");
    let other = SbomParams {
        image_digest: Digest::of(b"n"),
        ..params
    };
    let other: Value = spdx_document(&other).unwrap();
    assert_ne!(doc["documentNamespace"], other["documentNamespace"]);
}

#[test]
fn secret_build_args_appear_nowhere_in_the_attestation_bytes() {
    let params = full_params();
    let statement = provenance::statement(&params).unwrap();
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    for bytes in [
        statement.to_bytes().unwrap(),
        Attestation::signed(&statement, &[&key])
            .unwrap()
            .bytes()
            .to_vec(),
    ] {
        let text = String::from_utf8_lossy(&bytes);
        for needle in [SECRET, "another-secret-1", "denied-by-caller", "user:pw"] {
            assert!(!text.contains(needle), "`{needle}` leaked");
        }
    }
    // The names are not written either (the args are dropped whole).
    let text = String::from_utf8(statement.to_bytes().unwrap()).unwrap();
    assert!(!text.contains("GITHUB_TOKEN"));

    // A secret value smuggled in elsewhere (a URL query) is refused, naming only the arg.
    let mut leaky = full_params();
    leaky.materials.push(Material::sha256(
        format!("https://example.com/pkg?token={SECRET}"),
        &Digest::of(b"x"),
    ));
    let err = provenance::statement(&leaky).unwrap_err();
    assert!(matches!(err, AttestError::SecretLeak { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("GITHUB_TOKEN") && !message.contains(SECRET),
        "{message}"
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn git_sources_are_read_without_git() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let temp = tempfile::tempdir().unwrap();
    let repo = temp.path().join("repo");
    let git = repo.join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/main\n");
    write(&git.join("refs/heads/main"), &format!("{commit}\n"));
    write(
        &git.join("config"),
        "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://x-access-token:ghs_abc@github.com/acme/app.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
    );
    std::fs::create_dir_all(repo.join("sub/dir")).unwrap();
    let source = GitSource::detect(&repo.join("sub/dir")).unwrap().unwrap();
    assert_eq!(
        source,
        GitSource {
            url: Some("https://github.com/acme/app.git".to_owned()),
            commit: commit.to_owned(),
            reference: Some("refs/heads/main".to_owned()),
        }
    );

    // Packed refs.
    std::fs::remove_file(git.join("refs/heads/main")).unwrap();
    write(
        &git.join("packed-refs"),
        &format!("# pack-refs with: peeled\n{commit} refs/heads/main\n"),
    );
    assert_eq!(GitSource::detect(&repo).unwrap().unwrap().commit, commit);

    // A worktree: `.git` is a file, refs and config live in the common dir.
    let wt = temp.path().join("wt");
    let wt_git = git.join("worktrees/wt");
    write(&wt.join(".git"), &format!("gitdir: {}\n", wt_git.display()));
    write(&wt_git.join("HEAD"), "ref: refs/heads/main\n");
    write(&wt_git.join("commondir"), "../..\n");
    let source = GitSource::detect(&wt).unwrap().unwrap();
    assert_eq!(source.commit, commit);
    assert_eq!(
        source.url.as_deref(),
        Some("https://github.com/acme/app.git")
    );

    // Detached HEAD; no remote.
    std::fs::remove_file(git.join("config")).unwrap();
    write(&git.join("HEAD"), &format!("{commit}\n"));
    let source = GitSource::detect(&repo).unwrap().unwrap();
    assert_eq!((&source.reference, &source.url), (&None, &None));
    assert_eq!(source.material().uri, "git+local");

    // Garbage in HEAD is an error naming the file; no .git at all is None.
    write(&git.join("HEAD"), "ref: ../../etc/passwd\n");
    let err = GitSource::detect(&repo).unwrap_err().to_string();
    assert!(err.contains("HEAD"), "{err}");
    let plain = tempfile::tempdir().unwrap();
    assert_eq!(GitSource::detect(plain.path()).unwrap(), None);
}

#[test]
fn builder_id_comes_from_github_actions_env() {
    let env = BTreeMap::from([
        ("GITHUB_SERVER_URL", "https://github.com"),
        (
            "GITHUB_WORKFLOW_REF",
            "acme/app/.github/workflows/release.yml@refs/tags/v1",
        ),
    ]);
    let builder = Builder::from_env(|k| env.get(k).map(|v| (*v).to_owned()));
    assert_eq!(
        builder.id,
        "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"
    );
    assert_eq!(Builder::from_env(|_| None).id, provenance::LOCAL_BUILDER_ID);
}

fn file(diff: &mut Diff, path: &str, content: &str) {
    diff.insert(
        LayerPath::new(path).unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(content.as_bytes()))),
            meta: Metadata::root_owned(0o644),
        },
    );
}

#[test]
fn packages_are_listed_from_the_image_file_system() {
    let mut diff = Diff::new();
    file(
        &mut diff,
        "lib/apk/db/installed",
        "C:Q1hdUpqRv5mYgJEqW52UmVsvmeedE=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\n\n",
    );
    file(
        &mut diff,
        "usr/local/lib/python3.11/site-packages/Flask-3.0.3.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.3\nLicense-Expression: BSD-3-Clause\n\nLong description\nName: not-this\n",
    );
    file(
        &mut diff,
        "home/appuser/.local/lib/python3.11/site-packages/requests-2.32.3.dist-info/METADATA",
        "Name: requests\nVersion: 2.32.3\nLicense: Apache 2.0\n",
    );
    file(
        &mut diff,
        "usr/local/lib/python3.11/site-packages/broken-1.dist-info/METADATA",
        "Summary: no name\n",
    );
    let fs = MemFs::from_diff(&diff);
    let packages = packages_from_rootfs(&fs).unwrap();
    let listed: Vec<(String, String)> = packages
        .iter()
        .map(|p| (p.purl(), p.license.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64".to_owned(),
                "GPL-2.0-only".to_owned()
            ),
            (
                "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64".to_owned(),
                "MIT".to_owned()
            ),
            ("pkg:pypi/flask@3.0.3".to_owned(), "BSD-3-Clause".to_owned()),
            (
                "pkg:pypi/requests@2.32.3".to_owned(),
                "Apache 2.0".to_owned()
            ),
        ]
    );
    assert!(matches!(packages[0].kind, PackageKind::Apk { .. }));
    // An image without package databases lists nothing.
    assert!(packages_from_rootfs(&MemFs::new()).unwrap().is_empty());
}
