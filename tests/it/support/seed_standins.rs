//! Stand-ins for what the seed pipeline downloads and this machine cannot reach: a
//! python:3.11-alpine-like base image and the signed Alpine mirror that upgrades it. Used by
//! the seed pipeline tests and, through `examples/seed_standins.rs`, by `scripts/demo`.
//!
//! The base is the apk fixture's rootfs (busybox, an installed db holding `hello` 1.0 and
//! `libgreet` 1.0, the test key in `/etc/apk/keys`) plus what kiln reads to install wheels for
//! CPython 3.11 on musl (`/usr/local/bin/python3.11`, the musl loader) and the official image's
//! config (PATH, LANG, PYTHON_VERSION, `CMD ["python3"]`). The interpreter file is a marker,
//! not a program: the runnable end-to-end check uses a debootstrapped Debian base instead.
//! The mirror holds the fixture's signed repository (`hello` 1.1, `libgreet` 1.1, ...) under
//! `alpine/v3.20/main/x86_64/`, as an Alpine mirror lays it out. [`write_multi_platform`] makes
//! the base an index of amd64 and arm64 images and adds `alpine/v3.20/main/aarch64/`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln::image::config::{ImageConfig, RuntimeConfig};
use kiln::layer::{self, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::store::Store;

use super::apk_fixture;

/// The tag of the stand-in base in its OCI layout (as in `python:3.11-alpine`).
pub const BASE_TAG: &str = "3.11-alpine";
/// The path of the repository below the mirror's root.
pub const MIRROR_PATH: &str = "alpine/v3.20/main";

/// What [`write`] made.
pub struct Standins {
    /// The OCI layout holding the base image, tagged [`BASE_TAG`].
    pub base_layout: PathBuf,
    /// The mirror root: serve it over HTTP, or use `<root>/MIRROR_PATH` as a directory.
    pub mirror_root: PathBuf,
    /// The base image's manifest digest.
    pub base_digest: String,
}

fn put(lower: &mut layer::Diff, path: &str, kind: EntryKind, mode: u32) {
    lower.insert(
        LayerPath::new(path).expect("a valid path"),
        Entry {
            kind,
            meta: Metadata {
                mode,
                uid: 0,
                gid: 0,
                mtime: apk_fixture::MTIME as i64,
                xattrs: BTreeMap::new(),
            },
        },
    );
}

fn bytes(content: &str) -> EntryKind {
    EntryKind::File(FileContent::Bytes(Arc::from(content.as_bytes())))
}

/// Writes the base image into `out/python-base` and the mirror into `out/apk-mirror`; the
/// base's `/etc/apk/repositories` names `repository` (a URL of the served mirror, or a
/// directory).
pub fn write(out: &Path, repository: &str) -> Standins {
    let mirror_root = out.join("apk-mirror");
    let store = Store::open(&out.join("standin-store")).expect("open a store");
    let image = base_image(&store, &mirror_root, repository, apk_fixture::ARCH);
    write_layout(
        out,
        &store,
        image.clone(),
        image.manifest.digest.to_string(),
        mirror_root,
    )
}

/// The stand-in as a multi-platform base, as `python:3.11-alpine` is: an index of an amd64
/// (`x86_64`) and an arm64 (`aarch64`) image, each with its own `/etc/apk/arch`, musl loader
/// and installed db, and the mirror holding both architectures' repositories (the same
/// packages, signed with the same key).
pub fn write_multi_platform(out: &Path, repository: &str) -> Standins {
    let mirror_root = out.join("apk-mirror");
    let store = Store::open(&out.join("standin-store")).expect("open a store");
    let images: Vec<kiln::image::BuiltImage> = ["x86_64", "aarch64"]
        .into_iter()
        .map(|arch| base_image(&store, &mirror_root, repository, arch))
        .collect();
    let index = kiln::image::assemble_index(&store, &images, &BTreeMap::new())
        .expect("assemble the base index");
    let digest = index.digest.to_string();
    write_layout(out, &store, index, digest, mirror_root)
}

fn write_layout<T: kiln::image::Exportable>(
    out: &Path,
    store: &Store,
    image: T,
    base_digest: String,
    mirror_root: PathBuf,
) -> Standins {
    let base_layout = out.join("python-base");
    kiln::image::layout::write_oci_layout(
        store,
        &base_layout,
        &[(image, vec![format!("python:{BASE_TAG}")])],
    )
    .expect("write the base layout");
    Standins {
        base_layout,
        mirror_root,
        base_digest,
    }
}

/// The base image for the apk architecture `arch` in `store`, its repository copied into the
/// mirror at `mirror_root`.
fn base_image(
    store: &Store,
    mirror_root: &Path,
    repository: &str,
    arch: &'static str,
) -> kiln::image::BuiltImage {
    let fx = apk_fixture::fixture_for(arch);
    let repo = mirror_root.join(MIRROR_PATH).join(arch);
    std::fs::create_dir_all(&repo).expect("create the mirror");
    for entry in std::fs::read_dir(fx.repo.join(arch)).expect("fixture repo") {
        let entry = entry.expect("fixture repo entry");
        std::fs::copy(entry.path(), repo.join(entry.file_name())).expect("copy into the mirror");
    }

    let mut lower = fx.lower.clone();
    put(
        &mut lower,
        "etc/apk/repositories",
        bytes(&format!("{repository}\n")),
        0o644,
    );
    for dir in [
        "home",
        "root",
        "usr/local",
        "usr/local/bin",
        "usr/local/lib",
        "usr/local/lib/python3.11",
        "usr/local/lib/python3.11/site-packages",
    ] {
        put(
            &mut lower,
            dir,
            EntryKind::Dir,
            if dir == "root" { 0o700 } else { 0o755 },
        );
    }
    put(
        &mut lower,
        "usr/local/bin/python3.11",
        bytes("#!/bin/sh\necho 'stand-in base: no Python interpreter here' >&2\nexit 127\n"),
        0o755,
    );
    // The official image's pip: the launcher a RUN's PATH finds, and its package directory.
    put(
        &mut lower,
        "usr/local/bin/pip",
        bytes("#!/usr/local/bin/python3.11\n# stand-in: kiln installs natively for this pip\n"),
        0o755,
    );
    put(
        &mut lower,
        "usr/local/lib/python3.11/site-packages/pip",
        EntryKind::Dir,
        0o755,
    );
    for (link, target) in [
        ("usr/local/bin/python3", "python3.11"),
        ("usr/local/bin/python", "python3"),
    ] {
        put(&mut lower, link, EntryKind::Symlink(target.into()), 0o777);
    }
    put(
        &mut lower,
        &format!("lib/ld-musl-{arch}.so.1"),
        bytes("musl\u{0}1.2.5\u{0}"),
        0o755,
    );

    let layer = layer::write(&lower, store, &WriteOptions::default()).expect("write the layer");
    let config = ImageConfig {
        architecture: match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => panic!("no stand-in base for the apk architecture {other}"),
        }
        .into(),
        os: "linux".into(),
        config: RuntimeConfig {
            env: Some(vec![
                "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "LANG=C.UTF-8".into(),
                "PYTHON_VERSION=3.11.14".into(),
            ]),
            cmd: Some(vec!["python3".into()]),
            ..RuntimeConfig::default()
        },
        ..ImageConfig::default()
    };
    kiln::image::assemble(store, &config, &[layer], &BTreeMap::new()).expect("assemble the base")
}
