//! Integration tests for `kiln::image`: assembly determinism, OCI layout / oci-archive /
//! docker-archive outputs checked by the real tools (oci-image-tool, umoci, skopeo), and
//! base-image loading (round trips, platform selection, Docker media types, tampering).
//!
//! The tools must be installed; a missing tool fails the test with a message naming it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::digest::Digest;
use kiln::image::config::History;
use kiln::image::manifest::{
    self, ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX, Manifest,
};
use kiln::image::{
    self as image, BuiltImage, ImageConfig, ImageError, Platform, assemble, canonical,
    load_oci_archive, load_oci_layout, write_docker_archive, write_oci_archive, write_oci_layout,
};
use kiln::layer::{Layer, MEDIA_TYPE_GZIP};
use kiln::store::Store;

// ---------------------------------------------------------------- fixtures

/// A gzip layer holding `files` (path, content), put into `store` by hand (the Store API and
/// layer::write are built elsewhere). Deterministic: mtime 0, uid/gid 0, sorted input.
fn put_layer(store: &Store, files: &[(&str, &[u8])]) -> Layer {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_cksum();
        tar.append(&header, *content).unwrap();
    }
    let tar_bytes = tar.into_inner().unwrap();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar_bytes).unwrap();
    let blob = gz.finish().unwrap();
    let digest = Digest::of(&blob);
    std::fs::write(store.blob_path(&digest), &blob).unwrap();
    Layer {
        diff_id: Digest::of(&tar_bytes),
        digest,
        size: blob.len() as u64,
        media_type: MEDIA_TYPE_GZIP.to_owned(),
    }
}

fn config_for(platform: &str, layers: usize) -> ImageConfig {
    let platform: Platform = platform.parse().unwrap();
    let mut config = ImageConfig {
        created: Some(image::rfc3339(0)),
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        ..ImageConfig::default()
    };
    config.config.cmd = Some(vec!["/hello".to_owned()]);
    config.config.env = Some(vec!["PATH=/bin".to_owned()]);
    config.config.labels = Some(BTreeMap::from([
        ("b".into(), "2".into()),
        ("a".into(), "1".into()),
    ]));
    for i in 0..layers {
        config.history.push(History {
            created: Some(image::rfc3339(0)),
            created_by: Some(format!("COPY layer{i} /")),
            ..History::default()
        });
    }
    config
}

struct Fixture {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    store: Store,
    image: BuiltImage,
}

fn fixture(platform: &str) -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    let store = Store::open(&dir.join("store")).unwrap();
    let image = build(&store, platform, b"hello from kiln\n");
    Fixture {
        _temp: temp,
        dir,
        store,
        image,
    }
}

fn build(store: &Store, platform: &str, content: &[u8]) -> BuiltImage {
    let layers = vec![
        put_layer(store, &[("hello", b"#!/bin/sh\necho hi\n")]),
        put_layer(store, &[("etc/greeting.txt", content)]),
    ];
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.source".to_owned(),
        "https://example.invalid/kiln".to_owned(),
    )]);
    assemble(store, &config_for(platform, 2), &layers, &annotations).unwrap()
}

/// A command for a required tool; fails the test loudly when the tool is missing.
fn tool(name: &str) -> Command {
    crate::support::require_tool(name);
    Command::new(name)
}

fn run(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tagged(image: &BuiltImage, tags: &[&str]) -> Vec<(BuiltImage, Vec<String>)> {
    vec![(image.clone(), tags.iter().map(|t| t.to_string()).collect())]
}

fn read_index(dir: &Path) -> Index {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn linux_amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

// ---------------------------------------------------------------- assembly

#[test]
fn assembling_twice_gives_identical_bytes_and_digests() {
    let a = fixture("linux/amd64");
    let b = fixture("linux/amd64");
    assert_eq!(a.image, b.image);
    let manifest_a = std::fs::read(a.store.blob_path(&a.image.manifest.digest)).unwrap();
    let manifest_b = std::fs::read(b.store.blob_path(&b.image.manifest.digest)).unwrap();
    assert_eq!(manifest_a, manifest_b);
    let config_a = std::fs::read(a.store.blob_path(&a.image.config_digest)).unwrap();
    assert_eq!(Digest::of(&config_a), a.image.config_digest);
    // Canonical JSON: the blob equals re-serializing the value, keys sorted, no whitespace.
    let parsed: Manifest = serde_json::from_slice(&manifest_a).unwrap();
    assert_eq!(canonical::to_vec(&parsed).unwrap(), manifest_a);
    let text = String::from_utf8(manifest_a).unwrap();
    assert!(
        text.starts_with(r#"{"annotations":{"org.opencontainers.image.source""#),
        "{text}"
    );
    assert_eq!(parsed.schema_version, 2);
    assert_eq!(
        parsed.media_type.as_deref(),
        Some(manifest::MEDIA_TYPE_OCI_MANIFEST)
    );
    assert_eq!(parsed.config.media_type, manifest::MEDIA_TYPE_OCI_CONFIG);
    assert_eq!(parsed.layers.len(), 2);
    assert_eq!(parsed.layers[1].digest, a.image.layers[1].digest);
    let config_text = String::from_utf8(config_a).unwrap();
    assert!(
        config_text.contains(r#""created":"1970-01-01T00:00:00Z""#),
        "{config_text}"
    );
    assert_eq!(
        a.image.config.rootfs.diff_ids,
        a.image
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn assemble_rejects_inconsistent_inputs() {
    let f = fixture("linux/amd64");
    let layers = f.image.layers.clone();
    // diffIDs that disagree with the layers
    let mut config = config_for("linux/amd64", 2);
    config.rootfs.diff_ids = vec![layers[1].diff_id.clone(), layers[0].diff_id.clone()];
    let err = assemble(&f.store, &config, &layers, &BTreeMap::new()).unwrap_err();
    assert!(
        matches!(err, ImageError::DiffIdMismatch { position: 0, .. }),
        "{err}"
    );
    // history that counts a different number of layers
    let config = config_for("linux/amd64", 1);
    let err = assemble(&f.store, &config, &layers, &BTreeMap::new()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::HistoryMismatch {
                history: 1,
                layers: 2
            }
        ),
        "{err}"
    );
    // no platform
    let config = ImageConfig::default();
    let err = assemble(&f.store, &config, &layers, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("--platform"), "{err}");
}

#[test]
fn metadata_file_has_buildx_keys() {
    let f = fixture("linux/amd64");
    let meta = image::metadata_json(&f.image);
    assert_eq!(
        meta["containerimage.digest"],
        f.image.manifest.digest.to_string()
    );
    assert_eq!(
        meta["containerimage.config.digest"],
        f.image.config_digest.to_string()
    );
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        manifest::MEDIA_TYPE_OCI_MANIFEST
    );
    assert_eq!(
        meta["containerimage.descriptor"]["size"],
        f.image.manifest.size
    );
    assert_eq!(
        meta["kiln.layers"][1]["diffID"],
        f.image.layers[1].diff_id.to_string()
    );
}

// ---------------------------------------------------------------- OCI layout + real tools

#[test]
fn oci_layout_passes_oci_image_tool_validate() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    // oci-image-tool 1.0.0-rc1 answers `--type imageLayout` with "unimplemented"; its
    // `--type image` on a directory validates the layout (oci-layout, index.json, every
    // referenced blob's digest) and the manifest/config schemas of the selected ref.
    let validate = |reference: &str| {
        let mut validate = tool("oci-image-tool");
        validate
            .args(["validate", "--type", "image", "--ref", reference])
            .arg(&out);
        validate.output().unwrap()
    };
    for reference in [
        "name=v1".to_owned(),
        format!("digest={}", f.image.manifest.digest),
        "platform.os=linux".to_owned(),
    ] {
        let output = validate(&reference);
        assert!(
            output.status.success(),
            "oci-image-tool validate --ref {reference}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The validator does look: a missing layer blob fails it.
    let layer = out
        .join("blobs/sha256")
        .join(f.image.layers[0].digest.hex());
    std::fs::remove_file(layer).unwrap();
    assert!(
        !validate("name=v1").status.success(),
        "validation passed with a missing blob"
    );
}

#[test]
fn oci_layout_unpacks_with_umoci() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    let bundle = f.dir.join("bundle");
    let mut unpack = tool("umoci");
    unpack
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v1", out.display()))
        .arg(&bundle);
    run(unpack);
    let greeting = std::fs::read(bundle.join("rootfs/etc/greeting.txt")).unwrap();
    assert_eq!(greeting, b"hello from kiln\n");
    assert!(bundle.join("rootfs/hello").is_file());
}

#[test]
fn skopeo_copies_the_layout_without_changing_the_manifest_digest() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    let other = f.dir.join("other");
    let mut copy = tool("skopeo");
    copy.arg("copy")
        .arg(format!("oci:{}:v1", out.display()))
        .arg(format!("oci:{}:v1", other.display()));
    run(copy);
    let index = read_index(&other);
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest, f.image.manifest.digest);
    assert_eq!(index.manifests[0].ref_name(), Some("v1"));
}

#[test]
fn layout_index_entries_follow_buildkit_annotations_and_merge_like_skopeo() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("store")).unwrap();
    let first = build(&store, "linux/amd64", b"one\n");
    let second = build(&store, "linux/amd64", b"two\n");
    let out = temp.path().join("layout");
    write_oci_layout(
        &store,
        &out,
        &tagged(&first, &["ghcr.io/acme/app:a", "ghcr.io/acme/app:keep"]),
    )
    .unwrap();
    let index = read_index(&out);
    assert_eq!(index.manifests.len(), 2);
    assert_eq!(index.manifests[0].ref_name(), Some("a"));
    assert_eq!(
        index.manifests[0].annotations["io.containerd.image.name"],
        "ghcr.io/acme/app:a"
    );
    // Rewriting tag `a` replaces its entry; `keep` stays; an untagged image is a bare entry.
    let mut images = tagged(&second, &["ghcr.io/acme/app:a"]);
    images.push((second.clone(), Vec::new()));
    write_oci_layout(&store, &out, &images).unwrap();
    write_oci_layout(&store, &out, &images).unwrap();
    let index = read_index(&out);
    let summary: Vec<(Option<&str>, &Digest)> = index
        .manifests
        .iter()
        .map(|d| (d.ref_name(), &d.digest))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("keep"), &first.manifest.digest),
            (Some("a"), &second.manifest.digest),
            (None, &second.manifest.digest),
        ]
    );
    // Every blob of both images is present and named by its digest.
    for image in [&first, &second] {
        for digest in std::iter::once(&image.manifest.digest)
            .chain([&image.config_digest])
            .chain(image.layers.iter().map(|l| &l.digest))
        {
            let bytes = std::fs::read(out.join("blobs/sha256").join(digest.hex())).unwrap();
            assert_eq!(&Digest::of(&bytes), digest);
        }
    }
    // No temp files left behind.
    let leftovers: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(".tmp"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn writing_into_a_non_layout_directory_is_refused() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("not-a-layout");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("README"), "mine").unwrap();
    let err = write_oci_layout(&f.store, &out, &tagged(&f.image, &["x:y"])).unwrap_err();
    assert!(matches!(err, ImageError::NotALayout { .. }), "{err}");
}

// ---------------------------------------------------------------- archives + real tools

#[test]
fn oci_archive_is_deterministic_and_skopeo_reads_it() {
    let f = fixture("linux/amd64");
    let first = f.dir.join("image.oci.tar");
    let second = f.dir.join("again.oci.tar");
    write_oci_archive(&f.store, &first, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    write_oci_archive(&f.store, &second, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );

    let mut inspect = tool("skopeo");
    inspect
        .arg("inspect")
        .arg(format!("oci-archive:{}", first.display()));
    let report: serde_json::Value = serde_json::from_str(&run(inspect)).unwrap();
    assert_eq!(report["Digest"], f.image.manifest.digest.to_string());
    assert_eq!(report["Architecture"], "amd64");

    // Entries are sorted, with mtime 0 and uid/gid 0.
    let mut archive = tar::Archive::new(std::fs::File::open(&first).unwrap());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 0);
        assert_eq!(entry.header().uid().unwrap(), 0);
        names.push(entry.path().unwrap().display().to_string());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.last().map(String::as_str), Some("oci-layout"));

    // And kiln reads it back as a base image.
    let store = Store::open(&f.dir.join("store2")).unwrap();
    let base = load_oci_archive(&store, &first, Some("v1"), &linux_amd64()).unwrap();
    assert_eq!(base.manifest_digest, f.image.manifest.digest);
    assert_eq!(base.layers, f.image.layers);
}

#[test]
fn docker_archive_is_read_and_converted_by_skopeo() {
    let f = fixture("linux/amd64");
    let file = f.dir.join("image.docker.tar");
    write_docker_archive(&f.store, &file, &tagged(&f.image, &["kiln-test:v1"])).unwrap();

    let mut inspect = tool("skopeo");
    inspect
        .arg("inspect")
        .arg(format!("docker-archive:{}", file.display()));
    let report: serde_json::Value = serde_json::from_str(&run(inspect)).unwrap();
    assert_eq!(report["Architecture"], "amd64");
    assert_eq!(report["RepoTags"], serde_json::json!([]), "{report}");
    // The tag recorded in manifest.json selects the image.
    let mut inspect = tool("skopeo");
    inspect
        .arg("inspect")
        .arg(format!("docker-archive:{}:kiln-test:v1", file.display()));
    let by_tag: serde_json::Value = serde_json::from_str(&run(inspect)).unwrap();
    assert_eq!(by_tag["Digest"], report["Digest"]);

    let converted = f.dir.join("converted");
    let mut copy = tool("skopeo");
    copy.arg("copy")
        .arg(format!("docker-archive:{}", file.display()))
        .arg(format!("oci:{}:t", converted.display()));
    run(copy);
    // skopeo recompresses, so layer digests change, but the diffIDs and runtime config survive.
    let store = Store::open(&f.dir.join("store2")).unwrap();
    let base = load_oci_layout(&store, &converted, Some("t"), &linux_amd64()).unwrap();
    assert_eq!(base.config.rootfs.diff_ids, f.image.config.rootfs.diff_ids);
    assert_eq!(base.config.config, f.image.config.config);

    // manifest.json names the config and the uncompressed layers by diffID.
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut manifest_json = None;
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "manifest.json" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            manifest_json = Some(text);
        }
        names.push(name);
    }
    let layer_names: Vec<String> = f
        .image
        .layers
        .iter()
        .map(|l| format!("{}.tar", l.diff_id.hex()))
        .collect();
    let expected = serde_json::json!([{
        "Config": format!("{}.json", f.image.config_digest.hex()),
        "RepoTags": ["kiln-test:v1"],
        "Layers": layer_names,
    }]);
    let actual: serde_json::Value = serde_json::from_str(&manifest_json.unwrap()).unwrap();
    assert_eq!(actual, expected);
    assert!(names.contains(&"repositories".to_owned()));
}

// ---------------------------------------------------------------- base images

#[test]
fn load_oci_layout_round_trips_config_and_layers() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["kiln-test:v1"])).unwrap();
    let store = Store::open(&f.dir.join("store2")).unwrap();
    for reference in [
        Some("v1".to_owned()),
        Some("kiln-test:v1".to_owned()),
        Some(f.image.manifest.digest.to_string()),
        None,
    ] {
        let base = load_oci_layout(&store, &out, reference.as_deref(), &linux_amd64()).unwrap();
        assert_eq!(base.config, f.image.config);
        assert_eq!(base.layers, f.image.layers);
        assert_eq!(base.manifest_digest, f.image.manifest.digest);
        for layer in &base.layers {
            assert!(store.blob_path(&layer.digest).is_file());
        }
    }
    let base = load_oci_layout(&store, &out, Some("v1"), &linux_amd64()).unwrap();
    assert_eq!(base.source, format!("oci:{}:v1", out.display()));
    // Re-assembling the loaded base gives the same image.
    let again = assemble(&store, &base.config, &base.layers, &f.image_annotations()).unwrap();
    assert_eq!(again.manifest.digest, f.image.manifest.digest);
}

impl Fixture {
    fn image_annotations(&self) -> BTreeMap<String, String> {
        let bytes = std::fs::read(self.store.blob_path(&self.image.manifest.digest)).unwrap();
        let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
        manifest.annotations
    }
}

#[test]
fn reference_errors_list_what_is_available() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("store")).unwrap();
    let one = build(&store, "linux/amd64", b"one\n");
    let two = build(&store, "linux/amd64", b"two\n");
    let out = temp.path().join("layout");
    let mut images = tagged(&one, &["app:one"]);
    images.extend(tagged(&two, &["app:two"]));
    write_oci_layout(&store, &out, &images).unwrap();

    let err = load_oci_layout(&store, &out, None, &linux_amd64()).unwrap_err();
    assert!(matches!(err, ImageError::AmbiguousRef { .. }), "{err}");
    assert!(err.to_string().contains("one, two"), "{err}");
    let err = load_oci_layout(&store, &out, Some("three"), &linux_amd64()).unwrap_err();
    assert!(matches!(err, ImageError::RefNotFound { .. }), "{err}");
    assert!(err.to_string().contains("one, two"), "{err}");
    let arm: Platform = "linux/arm64".parse().unwrap();
    let err = load_oci_layout(&store, &out, Some("one"), &arm).unwrap_err();
    assert!(matches!(err, ImageError::PlatformMismatch { .. }), "{err}");
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its descriptor.
fn put_layout_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = Digest::of(bytes);
    std::fs::write(dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
    Descriptor::new(media_type, digest, bytes.len() as u64)
}

fn write_index_json(dir: &Path, entries: Vec<Descriptor>) {
    let mut index = Index::empty();
    index.manifests = entries;
    std::fs::write(dir.join("index.json"), canonical::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn platform_is_selected_from_a_multi_platform_index() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("store")).unwrap();
    let amd = build(&store, "linux/amd64", b"amd\n");
    let arm = build(&store, "linux/arm64/v8", b"arm\n");
    let out = temp.path().join("layout");
    let mut images = tagged(&amd, &["app:amd"]);
    images.extend(tagged(&arm, &["app:arm"]));
    write_oci_layout(&store, &out, &images).unwrap();

    // An index listing an attestation entry first, then both platforms.
    let mut attestation = Descriptor::new(
        manifest::MEDIA_TYPE_OCI_MANIFEST,
        amd.manifest.digest.clone(),
        amd.manifest.size,
    );
    attestation.platform = Some(Platform::new("unknown", "unknown", None));
    let mut index = Index::empty();
    index.manifests = vec![
        attestation,
        amd.manifest.to_descriptor(),
        arm.manifest.to_descriptor(),
    ];
    let list = put_layout_blob(
        &out,
        MEDIA_TYPE_OCI_INDEX,
        &canonical::to_vec(&index).unwrap(),
    );
    let mut entry = list.clone();
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), "multi".to_owned());
    // The same entries as a Docker manifest list.
    let mut docker_list = index.clone();
    docker_list.media_type = Some(manifest::MEDIA_TYPE_DOCKER_LIST.to_owned());
    let mut docker_entry = put_layout_blob(
        &out,
        manifest::MEDIA_TYPE_DOCKER_LIST,
        &canonical::to_vec(&docker_list).unwrap(),
    );
    docker_entry
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), "docker-list".to_owned());
    write_index_json(&out, vec![entry, docker_entry]);

    let fresh = Store::open(&temp.path().join("store2")).unwrap();
    // A platform manifest inside the index can be pinned by digest.
    let pinned = arm.manifest.digest.to_string();
    let arm64: Platform = "linux/arm64".parse().unwrap();
    let base = load_oci_layout(&fresh, &out, Some(&pinned), &arm64).unwrap();
    assert_eq!(base.manifest_digest, arm.manifest.digest);
    assert_eq!(base.source, format!("oci:{}@{pinned}", out.display()));
    // table: requested platform, expected manifest (None = not found)
    for (platform, expected) in [
        ("linux/amd64", Some(&amd.manifest.digest)),
        ("linux/arm64", Some(&arm.manifest.digest)),
        ("linux/arm64/v8", Some(&arm.manifest.digest)),
        ("linux/arm/v7", None),
    ] {
        let platform: Platform = platform.parse().unwrap();
        for reference in ["multi", "docker-list"] {
            match (
                load_oci_layout(&fresh, &out, Some(reference), &platform),
                expected,
            ) {
                (Ok(base), Some(digest)) => {
                    assert_eq!(&base.manifest_digest, digest, "{platform} {reference}")
                }
                (Err(ImageError::PlatformNotFound { available, .. }), None) => {
                    assert_eq!(available, ["linux/amd64", "linux/arm64/v8"], "{platform}")
                }
                (other, _) => panic!("{platform} {reference}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn docker_media_types_are_accepted_as_input() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["app:oci"])).unwrap();
    // Re-describe the same config and layers with Docker schema-2 media types.
    let config_bytes = std::fs::read(f.store.blob_path(&f.image.config_digest)).unwrap();
    let docker = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_DOCKER_MANIFEST.to_owned()),
        config: Descriptor::new(
            MEDIA_TYPE_DOCKER_CONFIG,
            f.image.config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers: f
            .image
            .layers
            .iter()
            .map(|l| Descriptor::new(MEDIA_TYPE_DOCKER_LAYER_GZIP, l.digest.clone(), l.size))
            .collect(),
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let entry = put_layout_blob(
        &out,
        MEDIA_TYPE_DOCKER_MANIFEST,
        &serde_json::to_vec_pretty(&docker).unwrap(),
    );
    write_index_json(&out, vec![entry.clone()]);
    let store = Store::open(&f.dir.join("store2")).unwrap();
    let base = load_oci_layout(&store, &out, None, &linux_amd64()).unwrap();
    assert_eq!(base.manifest_digest, entry.digest);
    assert_eq!(base.layers[0].media_type, MEDIA_TYPE_DOCKER_LAYER_GZIP);
    // Assembling on top of it writes OCI media types with the same bytes.
    let rebuilt = assemble(&store, &base.config, &base.layers, &f.image_annotations()).unwrap();
    assert_eq!(rebuilt.manifest.digest, f.image.manifest.digest);
}

#[test]
fn a_tampered_base_blob_is_a_digest_mismatch_naming_the_blob() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["app:v1"])).unwrap();
    let layer = &f.image.layers[1];
    let path = out.join("blobs/sha256").join(layer.digest.hex());
    // Replace (not edit in place: the layout blob may be a hard link into the store).
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let store = Store::open(&f.dir.join("store2")).unwrap();
    let err = load_oci_layout(&store, &out, Some("v1"), &linux_amd64()).unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            what,
            expected,
            actual,
        } => {
            assert_eq!(expected, &layer.digest);
            assert_eq!(actual, &Digest::of(&bytes));
            assert!(what.contains(&layer.digest.to_string()), "{what}");
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&layer.digest.to_string()), "{message}");
    assert!(
        !store.blob_path(&layer.digest).exists(),
        "a bad blob reached the store"
    );
}

#[test]
fn a_manifest_and_config_disagreeing_on_layer_count_is_refused() {
    let f = fixture("linux/amd64");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["app:v1"])).unwrap();
    let bytes = std::fs::read(f.store.blob_path(&f.image.manifest.digest)).unwrap();
    let mut short: Manifest = serde_json::from_slice(&bytes).unwrap();
    short.layers.pop();
    let entry = put_layout_blob(
        &out,
        manifest::MEDIA_TYPE_OCI_MANIFEST,
        &canonical::to_vec(&short).unwrap(),
    );
    write_index_json(&out, vec![entry]);
    let store = Store::open(&f.dir.join("store2")).unwrap();
    let err = load_oci_layout(&store, &out, None, &linux_amd64()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::LayerCountMismatch {
                layers: 1,
                diff_ids: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oci_archive_entries_escaping_the_layout_are_refused() {
    let f = fixture("linux/amd64");
    let file = f.dir.join("evil.tar");
    let mut tar = tar::Builder::new(Vec::new());
    for name in ["oci-layout", "../evil"] {
        let body = br#"{"imageLayoutVersion":"1.0.0"}"#;
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, &body[..]).unwrap();
    }
    std::fs::write(&file, tar.into_inner().unwrap()).unwrap();
    let err = load_oci_archive(&f.store, &file, None, &linux_amd64()).unwrap_err();
    assert!(
        matches!(&err, ImageError::BadArchiveEntry { entry, .. } if entry == "../evil"),
        "{err}"
    );
    assert!(!f.dir.join("evil").exists() && !f.store.root().join("evil").exists());
}

/// Validates documents against the OCI image-spec JSON schemas kept in
/// `../shared/peer-tests/oci-image-spec-schema` (python3 with `jsonschema` 4.18+ resolves the
/// schemas' relative `$ref`s from that folder). Arguments: `schema-file=document-path` pairs.
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
    validator = jsonschema.Draft4Validator(schema, registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = list(validator.iter_errors(json.loads(pathlib.Path(doc).read_text())))
    for e in errors:
        failed = True
        print(f"{doc} against {schema_name}: {e.message} at {list(e.absolute_path)}")
sys.exit(1 if failed else 0)
"##;

#[test]
fn written_json_matches_the_oci_image_spec_schemas() {
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/peer-tests/oci-image-spec-schema/schema");
    assert!(
        schema_dir.join("image-manifest-schema.json").is_file(),
        "the OCI schemas are missing from `{}`",
        schema_dir.display()
    );
    let f = fixture("linux/arm64/v8");
    let out = f.dir.join("layout");
    write_oci_layout(&f.store, &out, &tagged(&f.image, &["app:v1"])).unwrap();
    let blob = |d: &Digest| out.join("blobs/sha256").join(d.hex());
    let mut check = tool("python3");
    check.arg("-c").arg(SCHEMA_CHECK).arg(&schema_dir);
    for (schema, document) in [
        ("image-manifest-schema.json", blob(&f.image.manifest.digest)),
        ("config-schema.json", blob(&f.image.config_digest)),
        ("image-index-schema.json", out.join("index.json")),
        ("image-layout-schema.json", out.join("oci-layout")),
    ] {
        check.arg(format!("{schema}={}", document.display()));
    }
    run(check);
}
