//! End-to-end tests of `layer::write` and the store: gzip validity (`gzip -t`, flate2),
//! byte-identical output across thread counts, the same diffID for gzip and zstd, and the
//! store's atomicity guarantees.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;

use kiln::digest::Digest;
use kiln::layer::compress::GzipEngine;
use kiln::layer::{self, Compression, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::store::{Store, StoreError};

use crate::support::require_tool;

/// A few MiB of varied, compressible content spread over many files (several gzip blocks).
fn sample_diff() -> Diff {
    let mut diff = Diff::new();
    let meta = |mode| Metadata {
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_000,
        xattrs: BTreeMap::new(),
    };
    diff.insert(
        LayerPath::new("data").unwrap(),
        Entry {
            kind: EntryKind::Dir,
            meta: meta(0o755),
        },
    );
    let mut seed = 0x9e3779b97f4a7c15u64;
    for file in 0..40 {
        let mut content = Vec::new();
        for line in 0..(2_000 + file * 500) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            content.extend_from_slice(
                format!("file {file} line {line} token {:x}\n", seed % 4096).as_bytes(),
            );
        }
        diff.insert(
            LayerPath::new(&format!("data/file-{file:03}.txt")).unwrap(),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(Arc::from(content))),
                meta: meta(0o644),
            },
        );
    }
    diff
}

fn write(
    diff: &Diff,
    compression: Compression,
    threads: usize,
) -> (Store, layer::Layer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let options = layer::WriteOptions {
        compression,
        source_date_epoch: 0,
        threads,
    };
    let layer = layer::write(diff, &store, &options).unwrap();
    (store, layer, dir)
}

fn tar_digest(diff: &Diff) -> Digest {
    let mut tar = Vec::new();
    layer::tar_writer::write_tar(diff, 0, &mut tar).unwrap();
    Digest::of(&tar)
}

#[test]
fn gzip_layers_are_valid_and_independent_of_thread_count() {
    require_tool("gzip");
    let diff = sample_diff();
    let (store, one, _dir) = write(&diff, Compression::Gzip { level: 6 }, 1);
    assert_eq!(one.media_type, layer::MEDIA_TYPE_GZIP);
    assert_eq!(one.diff_id, tar_digest(&diff));
    let blob = store.read_bytes(&one.digest).unwrap();
    assert_eq!(blob.len() as u64, one.size);
    assert!(
        one.size > 0 && blob.len() < 3 * 1024 * 1024,
        "several blocks, compressed"
    );

    let status = Command::new("gzip")
        .arg("-t")
        .arg(store.blob_path(&one.digest))
        .status()
        .unwrap();
    assert!(status.success(), "gzip -t rejected the layer");

    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of(&tar), one.diff_id);
    python_gunzip_matches(&store.blob_path(&one.digest), &one.diff_id);

    for threads in [2, 4] {
        let (_, other, _d) = write(&diff, Compression::Gzip { level: 6 }, threads);
        assert_eq!(other, one, "gzip with {threads} threads");
    }
}

#[test]
fn the_zlib_rs_engine_writes_one_member_independent_of_thread_count() {
    require_tool("gzip");
    let diff = sample_diff();
    let write_zlib = |threads| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let options = layer::WriteOptions {
            compression: Compression::Gzip { level: 6 },
            source_date_epoch: 0,
            threads,
        };
        let layer =
            layer::write_with_gzip_engine(&diff, &store, &options, GzipEngine::ZlibRs).unwrap();
        (store.read_bytes(&layer.digest).unwrap(), layer, dir)
    };
    let (blob, one, _dir) = write_zlib(1);
    // A single-member decoder reads the whole layer.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of(&tar), one.diff_id);
    let mut child = Command::new("gzip")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&blob).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "gzip -t rejected the layer"
    );
    for threads in [2, 4] {
        assert_eq!(write_zlib(threads).1, one, "zlib-rs with {threads} threads");
    }
}

/// Python's gzip module (what many tools use) reads the layer back to the same diffID.
fn python_gunzip_matches(blob: &std::path::Path, diff_id: &Digest) {
    require_tool("python3");
    let output = Command::new("python3")
        .args([
            "-c",
            "import gzip, hashlib, sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())",
        ])
        .arg(blob)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        diff_id.hex()
    );
}

#[test]
fn zstd_layers_are_independent_of_thread_count_and_share_the_diff_id() {
    let diff = sample_diff();
    let (store, one, _dir) = write(&diff, Compression::Zstd { level: 3 }, 1);
    assert_eq!(one.media_type, layer::MEDIA_TYPE_ZSTD);
    let (_, gzip, _d) = write(&diff, Compression::Gzip { level: 6 }, 2);
    assert_eq!(
        one.diff_id, gzip.diff_id,
        "gzip and zstd layers share the diffID"
    );
    let tar = zstd::decode_all(&store.read_bytes(&one.digest).unwrap()[..]).unwrap();
    assert_eq!(Digest::of(&tar), one.diff_id);
    for threads in [2, 4] {
        let (_, other, _d) = write(&diff, Compression::Zstd { level: 3 }, threads);
        assert_eq!(other, one, "zstd with {threads} threads");
    }
    let (_, plain, _d) = write(&diff, Compression::None, 1);
    assert_eq!(
        (plain.diff_id.clone(), plain.digest.clone()),
        (one.diff_id.clone(), one.diff_id)
    );
}

#[test]
fn invalid_levels_are_refused() {
    let diff = sample_diff();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let options = layer::WriteOptions {
        compression: Compression::Gzip { level: 0 },
        ..layer::WriteOptions::default()
    };
    let error = layer::write(&diff, &store, &options).unwrap_err();
    assert!(
        error.to_string().contains("gzip compression level 0"),
        "{error}"
    );
}

#[test]
fn a_dropped_writer_leaves_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = store.writer().unwrap();
    writer.write_all(b"half a blob").unwrap();
    drop(writer);
    assert!(!store.contains(&Digest::of(b"half a blob")));
    assert_eq!(blob_count(&store), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join(".kiln-ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_wrong_expected_digest_fails_naming_both_and_leaves_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = store.writer().unwrap();
    writer.write_all(b"actual").unwrap();
    let expected = Digest::of(b"expected");
    let error = writer.commit(Some(&expected)).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::DigestMismatch { .. }));
    assert!(message.contains(&expected.to_string()), "{message}");
    assert!(
        message.contains(&Digest::of(b"actual").to_string()),
        "{message}"
    );
    assert_eq!(blob_count(&store), 0);

    let mut writer = store.writer().unwrap();
    writer.write_all(b"actual").unwrap();
    let (digest, size) = writer.commit(Some(&Digest::of(b"actual"))).unwrap();
    assert_eq!((digest, size), (Digest::of(b"actual"), 6));
}

#[test]
fn fsck_finds_a_corrupted_blob_and_read_bytes_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (good, _) = store.put_bytes(b"good").unwrap();
    let (bad, _) = store.put_bytes(b"bad").unwrap();
    std::fs::write(store.blob_path(&bad), b"tampered").unwrap();
    assert_eq!(store.fsck().unwrap(), vec![bad.clone()]);
    assert!(matches!(
        store.read_bytes(&bad),
        Err(StoreError::Corrupted { .. })
    ));
    assert_eq!(store.read_bytes(&good).unwrap(), b"good");
    // Opening again keeps every blob.
    let again = Store::open(dir.path()).unwrap();
    assert!(again.contains(&good));
}

fn blob_count(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn a_killed_writer_leaves_only_a_temp_file_that_a_later_open_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // What a process killed mid-write leaves: a partial temp file in the ingest directory.
    let leftover = dir.path().join(".kiln-ingest").join("blob-killed");
    std::fs::write(&leftover, b"partial").unwrap();
    assert_eq!(blob_count(&store), 0);
    assert!(store.fsck().unwrap().is_empty());
    // A fresh temp file may belong to a live writer: kept.
    Store::open(dir.path()).unwrap();
    assert!(leftover.exists());
    // A stale one is removed.
    let file = std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    file.set_modified(two_hours_ago).unwrap();
    drop(file);
    Store::open(dir.path()).unwrap();
    assert!(!leftover.exists());
}
