//! Layers as other tools write them: a base whose layer starts with a `./` entry (what
//! `tar -C rootfs -cf - .` writes, made here with the real `tar`) works for a sandboxed RUN and
//! for `--output type=local`, the root entry applied to the root as containerd and umoci apply
//! it; umoci unpacks the same layout, as the reference.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::digest::Digest;
use support::{busybox, kiln, require_tool, run_ok};

/// An OCI layout at `layout` holding `base`: one gzip layer of `tar -C rootfs -cf - .` over
/// a busybox rootfs.
fn dot_slash_base(work: &Path) -> PathBuf {
    require_tool("tar");
    require_tool("gzip");
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/base-file"), b"from the base\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tar = work.join("layer.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    assert_eq!(
        listing.lines().next(),
        Some("./"),
        "the layer starts with ./"
    );
    let uncompressed = std::fs::read(&tar).unwrap();
    run_ok(Command::new("gzip").arg("-n").arg(&tar));
    let compressed = std::fs::read(work.join("layer.tar.gz")).unwrap();

    let layout = work.join("base-layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let (layer_digest, layer_size) = put(&compressed);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&uncompressed).to_string()]},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": "base"}}],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

#[test]
fn a_base_layer_starting_with_dot_slash_works_for_run_and_local_output() {
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let base = dot_slash_base(work.path());
    // The reference: umoci reads the layout.
    run_ok(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:base", base.display()),
        work.path().join("umoci-bundle").to_str().unwrap(),
    ]));

    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM oci:{}:base\nRUN echo hi > /hello && cat /etc/base-file > /copied\n",
            base.display()
        ),
    )
    .unwrap();
    let local = work.path().join("local");
    let output = kiln(&[
        "build",
        "--progress=plain",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--output",
        &format!("type=local,dest={}", local.display()),
        ctx.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "build on a ./ base failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(local.join("hello")).unwrap(), b"hi\n");
    assert_eq!(
        std::fs::read(local.join("copied")).unwrap(),
        b"from the base\n"
    );
    assert!(local.join("bin/busybox").is_file());

    // The base alone as a local output (the layer applied with nothing on top).
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM oci:{}:base\n", base.display()),
    )
    .unwrap();
    let plain = work.path().join("plain");
    let output = kiln(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--output",
        &format!("type=local,dest={}", plain.display()),
        ctx.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "type=local of a ./ base failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(plain.join("etc/base-file")).unwrap(),
        std::fs::read(work.path().join("umoci-bundle/rootfs/etc/base-file")).unwrap()
    );
}
