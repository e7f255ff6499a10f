//! `kiln build --platform linux/amd64,linux/arm64`: a multi-stage Dockerfile with COPY, users,
//! apk and pip steps on the multi-platform Alpine stand-in (an index of an x86_64 and an
//! aarch64 image, each with its own signed repository and musl wheels), computed natively for
//! both platforms into one OCI image index. skopeo and oci-image-tool must accept it, each
//! config must name its architecture, the arm64 site-packages must equal what pip itself
//! installs for `musllinux_1_2_aarch64`, and the arm64 apk database must list aarch64
//! packages. Bad input (an unknown platform, a base without the platform, a docker-archive of
//! two platforms) fails naming the cause and writes nothing.

use crate::support;
use crate::support::seed_standins;
use crate::support::wheels;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{kiln, kiln_ok, layout_blob_json, require_tool, run_ok, write_files};

const DOCKERFILE: &str = "\
FROM python:3.11-alpine AS build
ARG PIP_FIND_LINKS
WORKDIR /build
COPY requirements.txt .
RUN pip install --no-cache-dir --user -r requirements.txt

FROM python:3.11-alpine
RUN addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser
RUN apk update && apk upgrade && rm -rf /var/cache/apk/*
WORKDIR /app
COPY --from=build --chown=appuser:appuser /root/.local /home/appuser/.local
COPY --chown=appuser:appuser app.py .
USER appuser
CMD [\"python3\", \"app.py\"]
";

/// A context, the stand-in base (both platforms) and one find-links directory holding the
/// seed's musl wheels for x86_64 and aarch64.
struct Setup {
    work: tempfile::TempDir,
    context: PathBuf,
    base_context: String,
    find_links: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let standins_dir = work.path().join("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write_multi_platform(&standins_dir, mirror.to_str().unwrap());
    let find_links = work.path().join("wheels");
    std::fs::create_dir_all(&find_links).unwrap();
    for platform in ["musllinux_1_2_x86_64", "musllinux_1_2_aarch64"] {
        for entry in std::fs::read_dir(wheels::seed_wheel_dir(platform)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().ends_with(".whl") {
                std::fs::copy(entry.path(), find_links.join(entry.file_name())).unwrap();
            }
        }
    }
    let context = work.path().join("ctx");
    let requirements = std::fs::read_to_string(wheels::SEED_REQUIREMENTS).unwrap();
    write_files(
        &context,
        &[
            ("Dockerfile", DOCKERFILE),
            ("requirements.txt", &requirements),
            ("app.py", "print('hello')\n"),
        ],
    );
    Setup {
        base_context: format!(
            "python:3.11-alpine=oci-layout://{}",
            standins.base_layout.display()
        ),
        work,
        context,
        find_links,
    }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// The `kiln build` arguments for `platforms` with `extra` before the context.
    fn args(&self, platforms: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "build",
            "--progress",
            "plain",
            "--cache-dir",
            self.path("cache").to_str().unwrap(),
            "--build-context",
            &self.base_context,
            "--build-arg",
            &format!("PIP_FIND_LINKS={}", self.find_links.display()),
            "--platform",
            platforms,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.context.to_str().unwrap().to_owned());
        args
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Every file below `root` (relative path -> content, `dir` for directories), without
/// `__pycache__`.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.split('/').any(|part| part == "__pycache__") {
            continue;
        }
        let content = if entry.file_type().is_dir() {
            b"dir".to_vec()
        } else if entry.file_type().is_symlink() {
            std::fs::read_link(entry.path())
                .unwrap()
                .to_string_lossy()
                .as_bytes()
                .to_vec()
        } else {
            std::fs::read(entry.path()).unwrap()
        };
        files.insert(relative, content);
    }
    files
}

/// `files` without what differs by design between kiln's install and pip's: `INSTALLER` (kiln
/// writes `kiln`) and, in `RECORD`, that file's line and the launchers' (their directory is
/// `bin/` beside the target for `--target`, `~/.local/bin` for `--user`).
fn comparable(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.retain(|path, _| !path.ends_with(".dist-info/INSTALLER"));
    for (path, content) in files.iter_mut() {
        if path.ends_with(".dist-info/RECORD") {
            let text = String::from_utf8_lossy(content).into_owned();
            let mut lines: Vec<&str> = text
                .lines()
                .filter(|line| !line.contains("/INSTALLER,") && !line.contains("bin/"))
                .collect();
            lines.sort();
            *content = lines.join("\n").into_bytes();
        }
    }
    files
}

#[test]
fn two_platforms_make_one_index_that_skopeo_and_oci_image_tool_accept() {
    require_tool("skopeo");
    require_tool("umoci");
    require_tool("oci-image-tool");
    let s = setup();
    let layout = s.path("layout");
    let metadata = s.path("metadata.json");
    let args = s.args(
        "linux/amd64,linux/arm64",
        &[
            "-t",
            "app:1",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let digest = kiln_ok(&strs(&args)).trim().to_owned();

    // One index.json entry, the index, listing amd64 then arm64.
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "1")
        .expect("an entry tagged 1");
    assert_eq!(entry["digest"], digest.as_str());
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index = layout_blob_json(&layout, &digest);
    let platforms: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        platforms.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"],
        "{index}"
    );
    for (arch, manifest_digest) in &platforms {
        let manifest = layout_blob_json(&layout, manifest_digest);
        let config = layout_blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch.as_str());
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["User"], "appuser");
    }

    // The metadata names the index, as buildx does, and each platform's image.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(meta["kiln.platforms"][1]["platform"], "linux/arm64");
    assert_eq!(
        meta["kiln.platforms"][1]["containerimage.digest"],
        platforms[1].1.as_str()
    );

    // skopeo reads the index and copies every platform.
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:1", layout.display()),
    ]));
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let copy = s.path("copy");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        &format!("oci:{}:1", layout.display()),
        &format!("oci:{}:1", copy.display()),
    ]));
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], digest.as_str());

    // oci-image-tool validates the index and, through it, each platform's image (a plain
    // layout: its 1.0.0-rc1 refuses the attestations' artifact manifests, see attest_layout).
    let plain = s.path("plain");
    let archive = s.path("plain.tar");
    let plain_args = s.args(
        "linux/amd64,linux/arm64",
        &[
            "--provenance=false",
            "--sbom=false",
            "-t",
            "app:1",
            "--output",
            &format!("type=oci,dest={}", plain.display()),
            "--output",
            &format!("type=oci-archive,dest={}", archive.display()),
        ],
    );
    assert_eq!(
        kiln_ok(&strs(&plain_args)).trim(),
        digest,
        "attestations leave the index alone"
    );
    let out = run_ok(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=1"])
            .arg(&plain),
    );
    assert!(out.contains("Validation succeeded"), "{out}");
    let archived = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:1", archive.display()),
    ]));
    assert_eq!(
        crate::support::registry::sha256(archived.as_bytes()),
        digest,
        "the oci-archive holds the same index"
    );

    // The arm64 image: its site-packages are what pip installs for musllinux aarch64, and its
    // apk database lists the upgraded aarch64 packages.
    let arm64 = s.path("arm64-layout");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--override-arch",
        "arm64",
        &format!("oci:{}:1", layout.display()),
        &format!("oci:{}:1", arm64.display()),
    ]));
    let picked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(arm64.join("index.json")).unwrap()).unwrap();
    assert_eq!(picked["manifests"][0]["digest"], platforms[1].1.as_str());
    let bundle = s.path("arm64");
    run_ok(
        Command::new("umoci")
            .args([
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:1", arm64.display()),
            ])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    let installed = std::fs::read_to_string(rootfs.join("lib/apk/db/installed")).unwrap();
    assert!(
        installed.contains("P:hello\nV:1.1-r0\nA:aarch64\n"),
        "{installed}"
    );
    assert!(!installed.contains("A:x86_64"), "{installed}");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/apk/arch")).unwrap(),
        "aarch64\n"
    );
    let oracle = s.path("pip-target");
    run_ok(
        Command::new("python3")
            .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
            .args(["install", "--no-cache-dir", "--no-compile", "--no-index"])
            .arg("--find-links")
            .arg(&s.find_links)
            .args(["--only-binary=:all:", "--python-version", "3.11"])
            .args(["--implementation", "cp", "--abi", "cp311"])
            .args(["--platform", "musllinux_1_2_aarch64", "--target"])
            .arg(&oracle)
            .arg("-r")
            .arg(wheels::SEED_REQUIREMENTS)
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env_remove("PIP_INDEX_URL")
            .env_remove("PIP_FIND_LINKS"),
    );
    let site = rootfs.join("home/appuser/.local/lib/python3.11/site-packages");
    let mut expected = comparable(tree(&oracle));
    expected.retain(|path, _| path != "bin" && !path.starts_with("bin/"));
    let actual = comparable(tree(&site));
    let differing: Vec<&String> = expected
        .keys()
        .chain(actual.keys())
        .filter(|path| expected.get(*path) != actual.get(*path))
        .collect();
    assert!(
        differing.is_empty(),
        "site-packages differ from pip's: {differing:?}"
    );
    let markupsafe: Vec<&String> = actual
        .keys()
        .filter(|p| p.starts_with("markupsafe/") && p.ends_with(".so"))
        .collect();
    assert!(
        markupsafe.iter().all(|p| p.contains("aarch64")) && !markupsafe.is_empty(),
        "{markupsafe:?}"
    );
}

#[test]
fn bad_platform_input_fails_naming_the_cause_and_writes_nothing() {
    let s = setup();
    for (platforms, extra, expected) in [
        (
            "linux/amd64,linux/amd46",
            vec![],
            "unknown platform `linux/amd46`",
        ),
        ("linux/amd64,darwin/arm64", vec![], "the os must be `linux`"),
        ("linux/amd64,linux/amd64", vec![], "twice"),
        (
            "linux/amd64,linux/s390x",
            vec![],
            "no manifest for platform linux/s390x",
        ),
        (
            "linux/amd64,linux/arm64",
            vec!["docker-archive"],
            "type=docker-archive",
        ),
    ] {
        let out = s.path("out");
        let output = if extra.is_empty() {
            format!("type=oci,dest={}", out.display())
        } else {
            format!("type=docker-archive,dest={}", out.display())
        };
        let args = s.args(platforms, &["--output", &output]);
        let result = kiln(&strs(&args));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{platforms}: {stderr}");
        assert!(stderr.contains(expected), "{platforms}: {stderr}");
        assert!(
            !stderr.contains("the build of another platform failed"),
            "the failure is reported, not the stop it caused: {stderr}"
        );
        assert!(!out.exists(), "{platforms}: nothing is written");
    }
}

#[test]
fn a_single_platform_base_for_another_platform_is_refused_naming_both() {
    let work = tempfile::tempdir().unwrap();
    let standins_dir = work.path().join("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write(&standins_dir, mirror.to_str().unwrap());
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[(
            "Dockerfile",
            "FROM python:3.11-alpine\nRUN adduser -D app\n",
        )],
    );
    let out = work.path().join("out");
    let result = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--build-context",
        &format!(
            "python:3.11-alpine=oci-layout://{}",
            standins.base_layout.display()
        ),
        "--platform",
        "linux/amd64,linux/arm64",
        "--output",
        &format!("type=oci,dest={}", out.display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    assert!(
        stderr.contains("linux/amd64") && stderr.contains("linux/arm64"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// The provenance or SBOM statement in an attestation layer (plain, or in a DSSE envelope).
fn statement_of(layout: &Path, layer_digest: &str) -> serde_json::Value {
    let blob = layout_blob_json(layout, layer_digest);
    match blob["payload"].as_str() {
        Some(payload) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        }
        None => blob,
    }
}

#[test]
fn every_platform_gets_its_attestations_and_signatures_and_its_own_local_directory() {
    let s = setup();
    let keys = s.path("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let layout = s.path("layout");
    let local = s.path("local");
    let args = s.args(
        "linux/amd64",
        &[
            "--platform",
            "linux/arm64",
            "--attest-mode",
            "index",
            "--sign-key",
            keys.join("private.pem").to_str().unwrap(),
            "-t",
            "app:1",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            "--output",
            &format!("type=local,dest={}", local.display()),
        ],
    );
    let built = kiln_ok(&strs(&args)).trim().to_owned();

    // Index mode: the tag names a new index holding both images, then one attestation
    // manifest per image (buildx's layout), each statement naming its image and platform.
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "1")
        .expect("an entry tagged 1")
        .clone();
    let index = layout_blob_json(&layout, entry["digest"].as_str().unwrap());
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 4, "{index}");
    let built_index = layout_blob_json(&layout, &built);
    for (position, image) in built_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(&manifests[position], image, "the images keep their order");
        let digest = image["digest"].as_str().unwrap();
        let arch = image["platform"]["architecture"].as_str().unwrap();
        let attestation = manifests
            .iter()
            .find(|m| m["annotations"]["vnd.docker.reference.digest"] == digest)
            .unwrap_or_else(|| panic!("no attestation manifest for {arch}: {index}"));
        assert_eq!(
            attestation["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        let manifest = layout_blob_json(&layout, attestation["digest"].as_str().unwrap());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "provenance and SBOM: {manifest}");
        for layer in layers {
            let statement = statement_of(&layout, layer["digest"].as_str().unwrap());
            assert_eq!(
                statement["subject"][0]["digest"]["sha256"],
                digest.trim_start_matches("sha256:"),
                "{arch}"
            );
            if layer["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
                .contains("slsa.dev/provenance")
            {
                let text = statement.to_string();
                assert!(text.contains(&format!("linux/{arch}")), "{arch}: {text}");
            }
        }
    }

    // The signatures cover the index and both platform manifests (cosign's `.sig` tags).
    let tags: Vec<String> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect();
    for digest in built_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .chain([entry["digest"].as_str().unwrap().to_owned()])
    {
        let sig = format!("{}.sig", digest.replace(':', "-"));
        assert!(tags.contains(&sig), "{sig} in {tags:?}");
    }

    // type=local: one directory per platform, as buildx's platform-split.
    for (dir, arch) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        assert_eq!(
            std::fs::read_to_string(local.join(dir).join("etc/apk/arch")).unwrap(),
            format!("{arch}\n")
        );
        assert!(local.join(dir).join("app/app.py").is_file());
    }
}

#[test]
fn the_index_is_pushed_and_each_platform_can_be_pushed_by_digest() {
    use crate::support::registry::{Auth, TestRegistry, skopeo};
    let s = setup();
    let registry = TestRegistry::start(Auth::None);
    let app = registry.reference("kiln/app");
    let keys = s.path("keys");
    kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let args = s.args(
        "linux/amd64,linux/arm64",
        &[
            "-t",
            &format!("{app}:1"),
            "--push",
            "--sign-key",
            keys.join("private.pem").to_str().unwrap(),
        ],
    );
    let digest = kiln_ok(&strs(&args)).trim().to_owned();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{app}:1"),
    ]);
    assert_eq!(crate::support::registry::sha256(&raw), digest);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(children.len(), 2);
    // Each platform's attestations are its referrers (the registry has no referrers API:
    // the fallback tag).
    for child in &children {
        let tag = child.replace(':', "-");
        let referrers: serde_json::Value = serde_json::from_slice(&skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{app}:{tag}"),
        ]))
        .unwrap();
        // Provenance and SBOM (signed), and the Sigstore bundles of the signature and of both.
        assert_eq!(
            referrers["manifests"].as_array().unwrap().len(),
            5,
            "{referrers}"
        );
    }
    // The index and both platform manifests are signed (cosign's `.sig` tags).
    for signed in children.iter().chain([&digest]) {
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{app}:{}.sig", signed.replace(':', "-")),
        ]);
    }
    let copy = s.path("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{app}:1"),
        &format!("oci:{}:1", copy.display()),
    ]);

    // One platform by digest: no tag moves, the digest is the arm64 image's.
    let by_digest = s.args(
        "linux/arm64",
        &["-t", &format!("{app}:1"), "--push-by-digest"],
    );
    let arm64 = kiln_ok(&strs(&by_digest)).trim().to_owned();
    assert_eq!(arm64, children[1], "the same image as in the index");
    let still = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{app}:1"),
    ]);
    assert_eq!(
        crate::support::registry::sha256(&still),
        digest,
        "the tag stays"
    );
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{app}@{arm64}"),
    ]);
}

/// The cross-compilation pattern: a `FROM --platform=$BUILDPLATFORM` stage that does not read
/// the target is built once for every platform; one declaring `ARG TARGETARCH` is built per
/// platform, with the target's value, on the build platform's base.
#[test]
fn build_platform_stages_are_built_once_unless_they_read_the_target() {
    let s = setup();
    write_files(
        &s.context,
        &[(
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM python:3.11-alpine AS tools\n\
             RUN adduser -D builder\n\
             COPY app.py /src/app.py\n\
             FROM --platform=$BUILDPLATFORM python:3.11-alpine AS cross\n\
             ARG TARGETARCH\n\
             ARG TARGETPLATFORM\n\
             ARG BUILDPLATFORM\n\
             WORKDIR /out/$TARGETARCH\n\
             ENV BUILT_ON=$BUILDPLATFORM BUILT_FOR=$TARGETPLATFORM\n\
             FROM python:3.11-alpine\n\
             COPY --from=tools /src/app.py /app/app.py\n\
             COPY --from=cross /out /out\n\
             COPY --from=cross /etc/apk/arch /cross-arch\n",
        )],
    );
    let layout = s.path("layout");
    let args = s.args(
        "linux/arm64,linux/amd64",
        &[
            "--provenance=false",
            "--sbom=false",
            "-t",
            "x:1",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
        ],
    );
    let output = kiln(&strs(&args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let steps: Vec<&str> = stderr.lines().filter(|l| l.contains("adduser")).collect();
    assert_eq!(steps.len(), 1, "the shared stage runs once: {stderr}");
    assert!(steps[0].contains("(all platforms) tools"), "{stderr}");
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            stderr.contains(&format!("[{platform} cross 2/")),
            "`cross` reads TARGETARCH, so it is built for {platform}: {stderr}"
        );
    }
    let index = layout_blob_json(&layout, &digest);
    let mut tools_layers = Vec::new();
    // The index is sorted by platform, whatever the order of --platform.
    for (position, (arch, go_arch)) in [("x86_64", "amd64"), ("aarch64", "arm64")]
        .into_iter()
        .enumerate()
    {
        let entry = &index["manifests"][position];
        assert_eq!(entry["platform"]["architecture"], go_arch);
        let manifest = layout_blob_json(&layout, entry["digest"].as_str().unwrap());
        tools_layers.push(manifest["layers"][1]["digest"].clone());
        let bundle = s.path(&format!("bundle-{go_arch}"));
        let single = s.path(&format!("single-{go_arch}"));
        run_ok(Command::new("skopeo").args([
            "copy",
            "--override-arch",
            go_arch,
            &format!("oci:{}:1", layout.display()),
            &format!("oci:{}:1", single.display()),
        ]));
        run_ok(
            Command::new("umoci")
                .args([
                    "unpack",
                    "--rootless",
                    "--image",
                    &format!("{}:1", single.display()),
                ])
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/apk/arch")).unwrap(),
            format!("{arch}\n")
        );
        assert!(rootfs.join(format!("out/{go_arch}")).is_dir(), "{go_arch}");
        // `cross` ran on the build machine's base (amd64 here), whatever the target.
        assert_eq!(
            std::fs::read_to_string(rootfs.join("cross-arch")).unwrap(),
            "x86_64\n"
        );
    }
    assert_eq!(
        tools_layers[0], tools_layers[1],
        "one layer for both platforms"
    );
}
