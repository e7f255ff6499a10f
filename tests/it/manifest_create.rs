//! Multi-platform images in kiln's other commands, against Debian's docker-registry on
//! 127.0.0.1: two single-platform builds (FROM scratch + COPY, `--platform linux/amd64` and
//! `linux/arm64`, signed provenance) pushed to their own repositories, then merged by
//! `kiln manifest create`:
//!
//! - the index skopeo reads (`inspect --raw`, `copy --all`) has the digest kiln printed, and
//!   oci-image-tool accepts the index, manifests and configs; the same digests in the other
//!   order, through `kiln imagetools create`, or with `--dry-run`, give the same index; blobs
//!   were mounted from the source repositories;
//! - each platform's attestations were copied, so `kiln verify` on the index passes, and an
//!   index whose arm64 attestations are signed by another key fails naming `linux/arm64`;
//! - `kiln inspect` lists both platforms, `kiln pull --platform linux/arm64` picks the arm64
//!   manifest, `kiln pin` writes the index digest;
//! - a source without a platform and two manifests for one platform are refused by name, and
//!   nothing is pushed.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;
use std::process::Command;

use registry_support::{Auth, TestRegistry, sha256, skopeo};
use support::{kiln, kiln_ok, require_tool, run_ok, write_files};

fn keygen(dir: &Path) -> (String, String) {
    kiln_ok(&["keygen", dir.to_str().unwrap()]);
    (
        dir.join("private.pem").display().to_string(),
        dir.join("public.pem").display().to_string(),
    )
}

/// Builds `FROM scratch` + `COPY hello.txt` (holding `content`) for `platform` with signed
/// provenance and pushes it to `target`; returns the manifest digest.
fn build_and_push(
    work: &Path,
    cache: &Path,
    platform: &str,
    content: &str,
    key: &str,
    target: &str,
) -> String {
    let ctx = work.join(format!(
        "ctx-{}",
        sha256(format!("{platform}{content}{target}").as_bytes())
    ));
    write_files(
        &ctx,
        &[
            ("hello.txt", content),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    kiln_ok(&[
        "build",
        "--progress=quiet",
        "--reproducible",
        "--platform",
        platform,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--sign-key",
        key,
        "-t",
        target,
        "--push",
        ctx.to_str().unwrap(),
    ])
    .trim()
    .to_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `kiln verify` on the index `target` with the key `public`, checks that it passes and
/// that each `(manifest digest, platform)` had its provenance verified; returns the report.
fn verify_every_platform(
    cache: &str,
    target: &str,
    public: &str,
    platforms: &[(&str, &str)],
) -> String {
    let verified = kiln(&["verify", "--cache-dir", cache, target, "--key", public]);
    let report = stderr(&verified);
    assert!(verified.status.success(), "{report}");
    for (digest, platform) in platforms {
        assert!(
            report.contains(&format!(
                "https://slsa.dev/provenance/v1 for {digest} (platform {platform})"
            )),
            "no provenance verified for {platform}:\n{report}"
        );
    }
    report
}

#[test]
fn manifest_create_publishes_one_index_that_every_command_reads() {
    require_tool("oci-image-tool");
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let (key, public) = keygen(&work.path().join("key"));
    let (other_key, _) = keygen(&work.path().join("other"));
    let amd64 = build_and_push(
        work.path(),
        &cache,
        "linux/amd64",
        "amd64\n",
        &key,
        &reg.reference("ci/amd64:tmp"),
    );
    let arm64 = build_and_push(
        work.path(),
        &cache,
        "linux/arm64",
        "arm64\n",
        &key,
        &reg.reference("ci/arm64:tmp"),
    );
    assert_ne!(amd64, arm64);

    let target = reg.reference("app/multi:1");
    let mark = reg.mark();
    let index_digest = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        cache_arg,
        &target,
        "--from",
        &format!("{}@{arm64}", reg.reference("ci/arm64")),
        "--from",
        &format!("{}@{amd64}", reg.reference("ci/amd64")),
    ])
    .trim()
    .to_owned();
    assert!(
        reg.count(mark, "POST", "mount=") > 0,
        "no blob was mounted from the source repositories:\n{}",
        reg.log()
    );

    // skopeo reads the index kiln printed, with both platforms in canonical order.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(sha256(&raw), index_digest);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_owned(),
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (amd64.clone(), "linux/amd64".to_owned()),
            (arm64.clone(), "linux/arm64".to_owned())
        ]
    );
    let copy = work.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:1", copy.display()),
    ]);
    // oci-image-tool 1.0.0-rc1 does not walk an index in a layout: it checks the index
    // against its schema, and each platform manifest and config on its own.
    let raw_file = work.path().join("index.json");
    std::fs::write(&raw_file, &raw).unwrap();
    let checks = [("imageIndex", raw_file.clone())].into_iter().chain(
        [&amd64, &arm64].into_iter().flat_map(|digest| {
            let manifest = copy.join("blobs/sha256").join(&digest[7..]);
            let parsed: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
            let config = copy
                .join("blobs/sha256")
                .join(&parsed["config"]["digest"].as_str().unwrap()[7..]);
            [("manifest", manifest), ("config", config)]
        }),
    );
    for (kind, file) in checks {
        let validated = run_ok(
            Command::new("oci-image-tool")
                .args(["validate", "--type", kind])
                .arg(&file),
        );
        assert!(
            validated.contains("Validation succeeded"),
            "{kind}: {validated}"
        );
    }
    // The same digests in the other order, buildx's spelling and a dry run: the same index.
    let again = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        cache_arg,
        &reg.reference("app/multi:2"),
        "--from",
        &format!("{}@{amd64}", reg.reference("ci/amd64")),
        "--from",
        &format!("{}@{arm64}", reg.reference("ci/arm64")),
    ]);
    assert_eq!(
        again.trim(),
        index_digest,
        "the order of --from changed the index"
    );
    let buildx = kiln_ok(&[
        "imagetools",
        "create",
        "--cache-dir",
        cache_arg,
        "-t",
        &reg.reference("app/multi:3"),
        &format!("{}@{amd64}", reg.reference("ci/amd64")),
        &format!("{}@{arm64}", reg.reference("ci/arm64")),
    ]);
    assert_eq!(buildx.trim(), index_digest);
    let mark = reg.mark();
    let dry = kiln_ok(&[
        "manifest",
        "create",
        "--dry-run",
        "--cache-dir",
        cache_arg,
        &reg.reference("app/never:1"),
        "--from",
        &format!("{}@{arm64}", reg.reference("ci/arm64")),
        "--from",
        &format!("{}@{amd64}", reg.reference("ci/amd64")),
    ]);
    assert_eq!(sha256(dry.trim_end_matches('\n').as_bytes()), index_digest);
    assert_eq!(reg.count(mark, "PUT", "/manifests/"), 0, "--dry-run pushed");

    // Each platform's attestations came along: verify checks both platforms.
    let report = verify_every_platform(
        cache_arg,
        &target,
        &public,
        &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64")],
    );
    for (digest, platform) in [(&amd64, "linux/amd64"), (&arm64, "linux/arm64")] {
        // cosign's tags and the Sigstore bundle referrer came along too.
        let short = &digest[7..19];
        for layout in ["cosign .sig", "cosign .att", "sigstore bundles"] {
            let counts = report
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{layout} for {short}: ")))
                .and_then(|rest| rest.split_once(" found, "))
                .and_then(|(found, rest)| Some((found.to_owned(), rest.split_once(' ')?.0)));
            assert!(
                matches!(&counts, Some((found, verified)) if found != "0" && found == verified),
                "{layout} of {platform} not copied:\n{report}"
            );
        }
    }

    // The arm64 image's attestations signed by another key: the index fails naming arm64.
    let resigned = build_and_push(
        work.path(),
        &cache,
        "linux/arm64",
        "arm64\n",
        &other_key,
        &reg.reference("ci/other:tmp"),
    );
    assert_eq!(resigned, arm64, "the signing key changed the image");
    let bad = reg.reference("app/bad:1");
    kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        cache_arg,
        &bad,
        "--from",
        &format!("{}@{amd64}", reg.reference("ci/amd64")),
        "--from",
        &format!("{}@{arm64}", reg.reference("ci/other")),
    ]);
    let refused = kiln(&["verify", "--cache-dir", cache_arg, &bad, "--key", &public]);
    let report = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAILED platform linux/arm64: signature"),
        "{report}"
    );
    assert!(!report.contains("FAILED platform linux/amd64"), "{report}");

    // inspect lists the platforms, pull picks one, pin writes the index digest.
    let inspected = kiln_ok(&["inspect", "--cache-dir", cache_arg, &target]);
    for (digest, platform) in [(&amd64, "linux/amd64"), (&arm64, "linux/arm64")] {
        assert!(
            inspected
                .lines()
                .any(|line| line.contains(digest.as_str()) && line.contains(platform)),
            "{platform} is not listed:\n{inspected}"
        );
    }
    let raw_inspect = kiln(&["inspect", "--raw", "--cache-dir", cache_arg, &target]);
    assert_eq!(
        raw_inspect.stdout, raw,
        "inspect --raw is not the stored bytes"
    );
    let pulled = kiln_ok(&[
        "pull",
        "--platform",
        "linux/arm64",
        "--cache-dir",
        cache_arg,
        &target,
    ]);
    assert_eq!(pulled.trim(), arm64);
    let absent = kiln(&[
        "pull",
        "--platform",
        "linux/s390x",
        "--cache-dir",
        cache_arg,
        &target,
    ]);
    let message = stderr(&absent);
    assert_eq!(absent.status.code(), Some(1), "{message}");
    assert!(
        message.contains("no manifest for platform linux/s390x")
            && message.contains("linux/amd64, linux/arm64"),
        "{message}"
    );
    let dockerfile = work.path().join("Dockerfile");
    std::fs::write(&dockerfile, format!("FROM {target}\nCOPY x /\n")).unwrap();
    kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&dockerfile).unwrap(),
        format!("FROM {target}@{index_digest}\nCOPY x /\n")
    );

    // Bad input: a source without a platform (an attestation), two manifests for one
    // platform; nothing is pushed.
    let other_arm64 = build_and_push(
        work.path(),
        &cache,
        "linux/arm64",
        "another arm64\n",
        &key,
        &reg.reference("ci/arm64:tmp2"),
    );
    let referrers: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!(
            "docker://{}:sha256-{}",
            reg.reference("ci/arm64"),
            &arm64[7..]
        ),
    ]))
    .unwrap();
    let attestation = referrers["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            vec![format!("{}@{attestation}", reg.reference("ci/arm64"))],
            format!("{attestation} has no platform"),
        ),
        (
            vec![
                format!("{}@{arm64}", reg.reference("ci/arm64")),
                format!("{}@{other_arm64}", reg.reference("ci/arm64")),
            ],
            "two manifests for platform linux/arm64".to_owned(),
        ),
        (
            vec!["not a reference!".to_owned()],
            "invalid source `not a reference!`".to_owned(),
        ),
    ];
    for (sources, expected) in cases {
        let mark = reg.mark();
        let mut args = vec!["manifest", "create", "--cache-dir", cache_arg];
        let rejected_target = reg.reference("app/rejected:1");
        args.push(&rejected_target);
        for source in &sources {
            args.extend(["--from", source.as_str()]);
        }
        let output = kiln(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{sources:?}: {message}");
        assert!(message.contains(&expected), "{sources:?}: {message}");
        for source in &sources {
            if source.contains('@') && expected.starts_with("two") {
                assert!(
                    message.contains(source.as_str()),
                    "{message} does not name {source}"
                );
            }
        }
        assert_eq!(
            reg.count(mark, "PUT", "/manifests/"),
            0,
            "{sources:?} pushed"
        );
    }
}

/// From OCI layouts: two single-platform layouts, or the index of both, give the index
/// `two_platform_layout` writes by hand (canonical JSON, sorted by platform), with or without
/// pushing.
#[test]
fn manifest_create_from_layouts_gives_the_same_index() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let (multi, digests) = support::two_platform_layout(work.path(), &cache);
    let amd64 = format!("oci:{}", work.path().join("layout-amd64").display());
    let arm64 = format!("oci:{}", work.path().join("layout-arm64").display());
    let whole = format!("oci:{}:multi", multi.display());
    let target = reg.reference("layouts/app:1");
    for sources in [vec![&arm64, &amd64], vec![&whole], vec![&whole, &amd64]] {
        let mut args = vec![
            "manifest",
            "create",
            "--dry-run",
            "--cache-dir",
            cache_arg,
            &target,
        ];
        for source in &sources {
            args.extend(["--from", source.as_str()]);
        }
        let printed = kiln_ok(&args);
        assert_eq!(
            sha256(printed.trim_end_matches('\n').as_bytes()),
            digests[0],
            "{sources:?}: {printed}"
        );
    }
    let pushed = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        cache_arg,
        &target,
        "--from",
        &amd64,
        "--from",
        &arm64,
    ]);
    assert_eq!(pushed.trim(), digests[0]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(sha256(&raw), digests[0]);
    let pulled = kiln_ok(&[
        "pull",
        "--platform",
        "linux/amd64",
        "--cache-dir",
        cache_arg,
        &target,
    ]);
    assert_eq!(pulled.trim(), digests[1]);
}

/// buildx's index mode: each source is an index holding the image and its attestation manifest
/// (one pushed to the registry, one still in a layout); the composed index keeps both
/// attestation manifests after the images, with their `vnd.docker.reference.*` annotations, and
/// verifies per platform.
#[test]
fn attestation_manifests_inside_source_indexes_are_kept() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let (key, public) = keygen(&work.path().join("key"));
    let mut layouts = Vec::new();
    for arch in ["amd64", "arm64"] {
        let ctx = work.path().join(format!("ctx-{arch}"));
        write_files(
            &ctx,
            &[
                ("hello.txt", arch),
                ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
            ],
        );
        let layout = work.path().join(format!("idx-{arch}"));
        kiln_ok(&[
            "build",
            "--progress=quiet",
            "--platform",
            &format!("linux/{arch}"),
            "--cache-dir",
            cache_arg,
            "--sign-key",
            &key,
            "--attest-mode",
            "index",
            "-t",
            "app:1",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            ctx.to_str().unwrap(),
        ]);
        layouts.push(layout);
    }
    kiln_ok(&[
        "push",
        "--cache-dir",
        cache_arg,
        &format!("oci:{}:1", layouts[0].display()),
        &reg.reference("ci/idx-amd64:1"),
    ]);
    let target = reg.reference("app/idx:1");
    let printed = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        cache_arg,
        &target,
        "--from",
        &format!("oci:{}:1", layouts[1].display()),
        "--from",
        &reg.reference("ci/idx-amd64:1"),
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(sha256(&raw), printed.trim());
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 4, "{index}");
    for (image, attestation) in [
        (&manifests[0], &manifests[2]),
        (&manifests[1], &manifests[3]),
    ] {
        assert_eq!(
            attestation["annotations"]["vnd.docker.reference.type"], "attestation-manifest",
            "{index}"
        );
        assert_eq!(
            attestation["annotations"]["vnd.docker.reference.digest"], image["digest"],
            "{index}"
        );
    }
    assert_eq!(manifests[0]["platform"]["architecture"], "amd64");
    assert_eq!(manifests[1]["platform"]["architecture"], "arm64");
    let verified = kiln(&[
        "verify",
        "--cache-dir",
        cache_arg,
        &target,
        "--key",
        &public,
    ]);
    let report = stderr(&verified);
    assert!(verified.status.success(), "{report}");
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            report.contains(&format!("(platform {platform}) (signed; verified by")),
            "{platform}:\n{report}"
        );
    }
}

/// A source on another registry: its blobs and attestations are copied through the store, and
/// the single-platform index verifies on the target registry.
#[test]
fn sources_on_another_registry_are_copied_with_their_attestations() {
    let source_registry = TestRegistry::start(Auth::None);
    let target_registry = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let (key, public) = keygen(&work.path().join("key"));
    let arm64 = build_and_push(
        work.path(),
        &cache,
        "linux/arm64",
        "elsewhere\n",
        &key,
        &source_registry.reference("ci/arm64:tmp"),
    );
    // A cache that never saw the build: every blob comes from the source registry.
    let fresh = work.path().join("fresh-cache");
    let fresh_arg = fresh.to_str().unwrap();
    let target = target_registry.reference("app/copied:1");
    let mark = target_registry.mark();
    let printed = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        fresh_arg,
        &target,
        "--from",
        &format!("{}@{arm64}", source_registry.reference("ci/arm64")),
    ]);
    assert!(
        target_registry.count(mark, "PUT", "/blobs/uploads/") > 0,
        "no blob was uploaded to the target registry"
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(sha256(&raw), printed.trim());
    let verified = kiln(&[
        "verify",
        "--cache-dir",
        cache_arg,
        &target,
        "--key",
        &public,
    ]);
    let report = stderr(&verified);
    assert!(verified.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "https://slsa.dev/provenance/v1 for {arm64} (platform linux/arm64)"
        )),
        "{report}"
    );
}

/// The split build: one job building `--platform linux/arm64,linux/amd64` and two
/// runners (each its own cache) building one platform each with `--push-by-digest`, gathered
/// by `kiln manifest create`, publish the same index digest, and the gathered index keeps
/// every platform's signed provenance.
#[test]
fn per_runner_builds_gathered_by_manifest_create_give_the_one_job_index() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&work.path().join("key"));
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("amd64.txt", "built for amd64\n"),
            ("arm64.txt", "built for arm64\n"),
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /arch.txt\n",
            ),
        ],
    );
    let build = |cache: &str, platform: &str, tag: &str, by_digest: bool| {
        let cache = work.path().join(cache);
        let mut args = vec![
            "build".to_owned(),
            "--progress=quiet".to_owned(),
            "--reproducible".to_owned(),
            "--platform".to_owned(),
            platform.to_owned(),
            "--cache-dir".to_owned(),
            cache.display().to_string(),
            "--sign-key".to_owned(),
            key.clone(),
            "-t".to_owned(),
            reg.reference(tag),
        ];
        args.push(
            if by_digest {
                "--push-by-digest"
            } else {
                "--push"
            }
            .to_owned(),
        );
        args.push(ctx.display().to_string());
        kiln_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .trim()
            .to_owned()
    };
    let one_job = build("cache-one", "linux/arm64,linux/amd64", "app/one:1", false);
    let amd64 = build("cache-runner-a", "linux/amd64", "app/runners", true);
    let arm64 = build("cache-runner-b", "linux/arm64", "app/runners", true);
    let merged_cache = work.path().join("cache-merge");
    let merged = kiln_ok(&[
        "manifest",
        "create",
        "--cache-dir",
        merged_cache.to_str().unwrap(),
        &reg.reference("app/runners:1"),
        "--from",
        &format!("{}@{amd64}", reg.reference("app/runners")),
        "--from",
        &format!("{}@{arm64}", reg.reference("app/runners")),
    ])
    .trim()
    .to_owned();
    assert_eq!(
        merged, one_job,
        "per-runner builds gathered by manifest create differ from the one-job build"
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference("app/one:1")),
    ]);
    assert_eq!(sha256(&raw), one_job);

    verify_every_platform(
        merged_cache.to_str().unwrap(),
        &reg.reference("app/runners:1"),
        &public,
        &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64")],
    );
}
