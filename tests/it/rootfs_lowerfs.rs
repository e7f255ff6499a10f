//! Tests for `rootfs::LowerFs`: merged views over stored layer blobs (gzip, zstd, plain) and
//! in-memory Diffs, symlink resolution inside the root, and batched extraction.
//!
//! Layer blobs are built here with the `tar` crate (raw headers, so whiteout and `..` names go
//! in verbatim) and written into a real `Store` under their digest.

use std::io::Write;
use std::sync::Arc;

use kiln::digest::Digest;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, Layer, LayerPath, Metadata};
use kiln::rootfs::{FsView, LowerFs, NodeKind, RootfsError, ViewError};
use kiln::store::Store;

enum M<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32, link: &str) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn tar_of(members: &[M<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let (h, data): (tar::Header, &[u8]) = match m {
            M::Dir(n) => (header(n, tar::EntryType::Directory, 0, 0o755, ""), &[]),
            M::File(n, d) => (
                header(n, tar::EntryType::Regular, d.len() as u64, 0o644, ""),
                d,
            ),
            M::Symlink(n, t) => (header(n, tar::EntryType::Symlink, 0, 0o777, t), &[]),
            M::Hardlink(n, t) => (header(n, tar::EntryType::Link, 0, 0o644, t), &[]),
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy)]
enum Z {
    Gzip,
    Zstd,
    Plain,
}

/// Compresses `tar` and stores it as a blob; returns the Layer value.
fn store_layer(store: &Store, tar: &[u8], z: Z) -> Layer {
    let blob = match z {
        Z::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Z::Zstd => zstd::stream::encode_all(tar, 3).unwrap(),
        Z::Plain => tar.to_vec(),
    };
    let digest = Digest::of(&blob);
    std::fs::write(store.blob_path(&digest), &blob).unwrap();
    Layer {
        diff_id: Digest::of(tar),
        digest,
        size: blob.len() as u64,
        media_type: kiln::layer::MEDIA_TYPE_GZIP.to_owned(),
    }
}

fn p(raw: &str) -> LayerPath {
    LayerPath::new(raw).unwrap()
}

fn file_entry(bytes: &[u8]) -> Entry {
    Entry {
        kind: EntryKind::File(FileContent::Bytes(Arc::from(bytes))),
        meta: Metadata::root_owned(0o644),
    }
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    store: Store,
    fs: LowerFs,
}

fn fixture() -> Fixture {
    let store_dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let fs = LowerFs::with_scratch_dir(scratch.path());
    Fixture {
        _dirs: (store_dir, scratch),
        store,
        fs,
    }
}

/// Three layers: a gzip base, a zstd change set with whiteouts, then an in-memory Diff.
fn stacked() -> Fixture {
    let mut fx = fixture();
    let base = tar_of(&[
        M::Dir("etc/"),
        M::File("etc/passwd", b"root:x:0:0\n"),
        M::File("etc/os-release", b"v1"),
        M::File("etc/hosts", b"old hosts"),
        M::Dir("bin/"),
        M::File("bin/busybox", b"BB"),
        M::Hardlink("bin/sh", "bin/busybox"),
        M::File("usr/lib/a", b"a"),
        M::File("usr/lib/b", b"b"),
        M::Dir("opt/dir/"),
        M::File("opt/dir/x", b"x"),
        M::File("var/cache/old", b"old"),
        M::Dir("var/cache/keep/"),
    ]);
    let changes = tar_of(&[
        M::File("etc/os-release", b"v2"),
        M::File("opt/dir", b"now a file"),
        M::File("usr/.wh.lib", b""),
        M::File("var/cache/.wh..wh..opq", b""),
        M::File("var/cache/new", b"new"),
        // Recreated in the same layer as its whiteout: the whiteout only hides the lower one.
        M::File("etc/hosts", b"new hosts"),
        M::File("etc/.wh.hosts", b""),
        M::Symlink("etc2", "/etc"),
        M::Symlink("deep/up", "../../../../etc"),
        M::Symlink("rel", "etc2/../etc/passwd"),
        M::Symlink("loop1", "loop2"),
        M::Symlink("loop2", "/loop1"),
    ]);
    for (tar, z) in [(base, Z::Gzip), (changes, Z::Zstd)] {
        let layer = store_layer(&fx.store, &tar, z);
        fx.fs.push_layer_blob(&fx.store, &layer).unwrap();
    }
    let mut diff = Diff::new();
    diff.insert(p("home/app/x"), file_entry(b"from diff"));
    diff.whiteout(p("bin/busybox"));
    fx.fs.push_diff(&diff).unwrap();
    fx
}

#[test]
fn merged_view_reads_through_the_stack() {
    let fx = stacked();
    let fs = &fx.fs;
    for (path, want) in [
        ("etc/passwd", "root:x:0:0\n"),
        ("etc2/passwd", "root:x:0:0\n"), // absolute symlink, restarted at the root
        ("deep/up/passwd", "root:x:0:0\n"), // `..` above the root stays at the root
        ("rel", "root:x:0:0\n"),         // symlink chain through another symlink
        ("etc/os-release", "v2"),        // file replaced by a later layer
        ("etc/hosts", "new hosts"),      // same-layer whiteout hides only the lower one
        ("opt/dir", "now a file"),       // dir replaced by a file
        ("var/cache/new", "new"),        // opaque dir keeps its own layer's entries
        ("bin/sh", "BB"),                // hard link keeps content after target removed
        ("home/app/x", "from diff"),     // Diff content
    ] {
        let got = fs
            .read_file(&p(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(String::from_utf8_lossy(&got), want, "{path}");
    }
    for gone in [
        "usr/lib",
        "usr/lib/a",
        "opt/dir/x",
        "var/cache/old",
        "var/cache/keep",
        "bin/busybox",
    ] {
        assert_eq!(
            fs.lstat_exact(&p(gone)).unwrap(),
            None,
            "{gone} should be gone"
        );
    }
    assert!(fs.lstat_exact(&p("usr")).unwrap().is_some());
    assert_eq!(fs.read_dir(&p("var/cache")).unwrap(), ["new"]);
    assert_eq!(
        fs.read_dir(&LayerPath::root()).unwrap(),
        [
            "bin", "deep", "etc", "etc2", "home", "loop1", "loop2", "opt", "rel", "usr", "var"
        ]
    );
    assert_eq!(
        fs.read_dir(&p("etc")).unwrap(),
        ["hosts", "os-release", "passwd"]
    );
    assert!(matches!(
        fs.read_file(&p("loop1")),
        Err(ViewError::SymlinkLoop(_))
    ));
    let (resolved, node) = fs.stat(&p("etc2/passwd"), true).unwrap().unwrap();
    assert_eq!(resolved, p("etc/passwd"));
    assert_eq!(node.kind, NodeKind::File { size: 11 });
    assert_eq!(node.meta.mode, 0o644);
}

#[test]
fn clones_are_independent_values() {
    let fx = stacked();
    let before = fx.fs.clone();
    let mut after = fx.fs.clone();
    let mut diff = Diff::new();
    diff.whiteout(p("etc"));
    after.push_diff(&diff).unwrap();
    assert!(after.lstat_exact(&p("etc/passwd")).unwrap().is_none());
    assert_eq!(before.read_file(&p("etc/passwd")).unwrap(), b"root:x:0:0\n");
}

#[test]
fn materialize_extracts_many_files_in_one_pass_and_caches_them() {
    let store_dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let names: Vec<String> = (0..2000)
        .map(|i| format!("root/.local/lib/f{i:04}.py"))
        .collect();
    let bodies: Vec<String> = (0..2000).map(|i| format!("body {i}")).collect();
    let members: Vec<M<'_>> = names
        .iter()
        .zip(&bodies)
        .map(|(n, b)| M::File(n, b.as_bytes()))
        .collect();
    let layer = store_layer(&store, &tar_of(&members), Z::Gzip);
    let mut fs = LowerFs::with_scratch_dir(scratch.path());
    fs.push_layer_blob(&store, &layer).unwrap();

    let mut paths: Vec<LayerPath> = names.iter().map(|n| p(n)).collect();
    paths.push(p(&names[7])); // the same path twice
    fs.materialize(&paths).unwrap();
    let count = || std::fs::read_dir(scratch.path()).unwrap().count();
    assert_eq!(count(), 2000);

    // The blob is gone: everything must now come from the cache, without another pass.
    std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
    fs.materialize(&paths).unwrap();
    for (name, body) in names.iter().zip(&bodies) {
        match fs.content(&p(name)).unwrap() {
            FileContent::HostFile { path, size, .. } => {
                assert_eq!(size, body.len() as u64);
                assert_eq!(std::fs::read_to_string(path).unwrap(), *body);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(count(), 2000, "nothing extracted twice");
}

#[test]
fn blobs_in_every_compression_index_alike() {
    let tar = tar_of(&[M::File("a/b", b"same")]);
    for z in [Z::Gzip, Z::Zstd, Z::Plain] {
        let mut fx = fixture();
        let layer = store_layer(&fx.store, &tar, z);
        fx.fs.push_layer_blob(&fx.store, &layer).unwrap();
        assert_eq!(fx.fs.read_file(&p("a/b")).unwrap(), b"same");
        assert_eq!(fx.fs.read_dir(&p("a")).unwrap(), ["b"]);
    }
}

/// Named attacks against the indexer: each is refused, names the entry and the layer digest,
/// and leaves the view unchanged.
#[test]
fn unsafe_layers_are_refused() {
    let cases: &[(&str, Vec<M<'_>>, &str)] = &[
        (
            "dotdot_escape",
            vec![M::File("../escape", b"x")],
            "../escape",
        ),
        (
            "nested_dotdot_escape",
            vec![M::File("a/../../escape", b"x")],
            "a/../../escape",
        ),
        (
            "hardlink_to_host_passwd",
            vec![M::Hardlink("link", "../../etc/passwd")],
            "../../etc/passwd",
        ),
        (
            "hardlink_to_nothing",
            vec![M::Hardlink("link", "etc/shadow")],
            "/etc/shadow",
        ),
    ];
    for (name, members, needle) in cases {
        let mut fx = stacked();
        let layer = store_layer(&fx.store, &tar_of(members), Z::Gzip);
        let err = fx.fs.push_layer_blob(&fx.store, &layer).expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(needle),
            "{name}: `{text}` should name `{needle}`"
        );
        assert!(
            text.contains(layer.digest.hex()),
            "{name}: `{text}` should name the layer"
        );
        assert_eq!(fx.fs.read_file(&p("etc/passwd")).unwrap(), b"root:x:0:0\n");
    }
}

#[test]
fn missing_blob_is_an_error_naming_it() {
    let fx = fixture();
    let mut fs = fx.fs.clone();
    let layer = Layer {
        diff_id: Digest::of(b"x"),
        digest: Digest::of(b"missing"),
        size: 1,
        media_type: kiln::layer::MEDIA_TYPE_GZIP.to_owned(),
    };
    let err = fs.push_layer_blob(&fx.store, &layer).unwrap_err();
    assert!(matches!(err, RootfsError::OpenBlob { .. }));
    assert!(err.to_string().contains(layer.digest.hex()));
}

#[test]
fn extract_to_writes_blob_files_where_asked_keeps_hard_links_and_reports_digests() {
    use std::os::unix::fs::MetadataExt;
    let fx = stacked();
    let out = tempfile::tempdir().unwrap();
    let target = |name: &str| out.path().join(name.replace('/', "_"));
    let wanted = [
        "etc/passwd",
        "etc/os-release",
        "usr/.keep",
        "home/app/x",
        "bin/sh",
    ];
    let targets: Vec<(LayerPath, std::path::PathBuf)> = wanted
        .iter()
        .filter(|n| fx.fs.lstat_exact(&p(n)).unwrap().is_some())
        .map(|n| (p(n), target(n)))
        .collect();
    let extracted = fx.fs.extract_to(&targets).unwrap();
    // bin/sh was a hard link to the whited-out busybox: it keeps the content, from the blob.
    assert_eq!(std::fs::read(target("bin/sh")).unwrap(), b"BB");
    assert_eq!(std::fs::read(target("etc/os-release")).unwrap(), b"v2");
    assert_eq!(
        std::fs::read(target("etc/passwd")).unwrap(),
        b"root:x:0:0\n"
    );
    let digests: std::collections::BTreeMap<_, _> = extracted.digests.into_iter().collect();
    assert_eq!(digests[&p("etc/os-release")], Digest::of(b"v2"));
    assert_eq!(digests[&p("bin/sh")], Digest::of(b"BB"));
    // A Diff's file is left for the caller; nothing went to the extraction cache.
    assert_eq!(
        extracted.rest,
        vec![(p("home/app/x"), target("home/app/x"))]
    );
    assert!(!target("home/app/x").exists());

    // Two paths of one blob entry become one inode.
    let mut fs = LowerFs::new();
    let layer = store_layer(
        &fx.store,
        &tar_of(&[M::File("a", b"same"), M::Hardlink("b", "a")]),
        Z::Plain,
    );
    fs.push_layer_blob(&fx.store, &layer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs.extract_to(&[(p("a"), a.clone()), (p("b"), b.clone())])
        .unwrap();
    assert_eq!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
}
