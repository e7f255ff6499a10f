//! Round-trip tests for the deterministic tar writer: what `layer::tar_writer` emits is read
//! back by the `tar` crate and by GNU tar, entry by entry.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::sync::Arc;

use kiln::layer::tar_writer::write_tar;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerError, LayerPath, Metadata};

use crate::support::require_tool;

fn path(raw: &str) -> LayerPath {
    LayerPath::new(raw).unwrap()
}

fn meta(mode: u32, uid: u32, mtime: i64) -> Metadata {
    Metadata {
        mode,
        uid,
        gid: uid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

fn entry(kind: EntryKind, meta: Metadata) -> Entry {
    Entry { kind, meta }
}

fn bytes(content: &str) -> EntryKind {
    EntryKind::File(FileContent::Bytes(Arc::from(content.as_bytes())))
}

const SDE: i64 = 1_700_000_000;

/// A 120-byte directory name, so children exceed ustar's 100-byte name field.
fn long_dir() -> String {
    format!("long/{}", "d".repeat(115))
}

fn sample_diff() -> Diff {
    let mut diff = Diff::new();
    let long_dir = long_dir();
    let very_long_name = format!("{long_dir}/{}", "f".repeat(150)); // > 255 bytes in all
    let long_target = format!("/{}", "t/".repeat(80));
    let mut cap = meta(0o755, 0, 10);
    cap.xattrs
        .insert("security.capability".into(), vec![1, 0, 0, 2, 0, 0x20]);
    cap.xattrs.insert("user.note".into(), b"hello".to_vec());
    for (p, e) in [
        ("bin", entry(EntryKind::Dir, meta(0o755, 0, 5))),
        ("bin/ping", entry(bytes("ELF"), cap)),
        ("bin/su", entry(bytes("su"), meta(0o4755, 0, SDE + 1000))),
        (
            "bin/su-link",
            entry(EntryKind::Hardlink(path("bin/su")), meta(0o4755, 0, 7)),
        ),
        ("dev", entry(EntryKind::Dir, meta(0o755, 0, 0))),
        (
            "dev/null",
            entry(EntryKind::CharDevice(1, 3), meta(0o666, 0, 0)),
        ),
        (
            "dev/sda",
            entry(EntryKind::BlockDevice(8, 0), meta(0o660, 0, 0)),
        ),
        ("dev/pipe", entry(EntryKind::Fifo, meta(0o600, 0, 0))),
        ("home", entry(EntryKind::Dir, meta(0o755, 0, 0))),
        (
            "home/user",
            entry(EntryKind::Dir, meta(0o1777, 100_000, -5)),
        ),
        (
            "home/user/big-id",
            entry(bytes("x"), meta(0o644, 3_000_000, 0)),
        ),
        (
            "link",
            entry(EntryKind::Symlink(long_target), meta(0o777, 0, 0)),
        ),
        ("long", entry(EntryKind::Dir, meta(0o755, 0, 0))),
        (long_dir.as_str(), entry(EntryKind::Dir, meta(0o755, 0, 0))),
        (
            format!("{long_dir}/file").as_str(),
            entry(bytes("long"), meta(0o644, 0, 0)),
        ),
        (
            very_long_name.as_str(),
            entry(bytes("longer"), meta(0o644, 0, 0)),
        ),
        ("opaque", entry(EntryKind::OpaqueDir, meta(0o750, 0, 3))),
        ("opaque/inside", entry(bytes("in"), meta(0o644, 0, 0))),
    ] {
        diff.insert(path(p), e);
    }
    diff.whiteout(path("etc/gone"));
    diff.whiteout(path("top-gone"));
    diff
}

fn tar_bytes(diff: &Diff) -> Vec<u8> {
    let mut out = Vec::new();
    let written = write_tar(diff, SDE, &mut out).unwrap();
    assert_eq!(written, out.len() as u64);
    assert_eq!(out.len() % 512, 0);
    assert!(
        out[out.len() - 1024..].iter().all(|&b| b == 0),
        "ends with two zero blocks"
    );
    out
}

#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    mtime: u64,
    link: Option<String>,
    content: String,
}

/// PAX xattr records per entry path.
type XattrsByPath = BTreeMap<String, Vec<(String, Vec<u8>)>>;

fn read_with_tar_crate(bytes: &[u8]) -> (Vec<Seen>, XattrsByPath) {
    let mut archive = tar::Archive::new(bytes);
    let mut seen = Vec::new();
    let mut xattrs = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        if let Some(extensions) = entry.pax_extensions().unwrap() {
            let found: Vec<(String, Vec<u8>)> = extensions
                .map(|e| e.unwrap())
                .filter(|e| e.key().unwrap().starts_with("SCHILY.xattr."))
                .map(|e| (e.key().unwrap().to_owned(), e.value_bytes().to_vec()))
                .collect();
            if !found.is_empty() {
                xattrs.insert(name.clone(), found);
            }
        }
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        seen.push(Seen {
            path: name,
            kind: header.entry_type().as_byte() as char,
            mode: header.mode().unwrap(),
            uid: entry.header().uid().unwrap(),
            mtime: header.mtime().unwrap(),
            link,
            content,
        });
    }
    (seen, xattrs)
}

#[test]
fn every_entry_kind_round_trips_through_the_tar_crate() {
    let bytes = tar_bytes(&sample_diff());
    let (seen, xattrs) = read_with_tar_crate(&bytes);
    let find = |p: &str| {
        seen.iter().find(|s| s.path == p).unwrap_or_else(|| {
            panic!(
                "no entry `{p}` in {:#?}",
                seen.iter().map(|s| &s.path).collect::<Vec<_>>()
            )
        })
    };
    let long_dir = long_dir();
    let very_long_name = format!("{long_dir}/{}", "f".repeat(150));
    assert!(very_long_name.len() > 255);

    // (path, type, mode, mtime)
    for (p, kind, mode, mtime) in [
        ("bin/", '5', 0o755, 5),
        ("bin/ping", '0', 0o755, 10),
        ("bin/su", '0', 0o4755, SDE as u64),
        ("bin/su-link", '1', 0o4755, 7),
        ("dev/null", '3', 0o666, 0),
        ("dev/sda", '4', 0o660, 0),
        ("dev/pipe", '6', 0o600, 0),
        ("home/user/", '5', 0o1777, 0),
        ("link", '2', 0o777, 0),
        ("etc/.wh.gone", '0', 0, 0),
        (".wh.top-gone", '0', 0, 0),
        ("opaque/", '5', 0o750, 3),
        ("opaque/.wh..wh..opq", '0', 0, 3),
        (&format!("{long_dir}/"), '5', 0o755, 0),
        (&format!("{long_dir}/file"), '0', 0o644, 0),
        (&very_long_name, '0', 0o644, 0),
    ] {
        let s = find(p);
        assert_eq!((s.kind, s.mode, s.mtime), (kind, mode, mtime), "{p}");
    }
    assert_eq!(find("bin/su-link").link.as_deref(), Some("bin/su"));
    assert_eq!(
        find("link").link.as_deref(),
        Some(format!("/{}", "t/".repeat(80)).as_str())
    );
    assert_eq!(find("home/user/").uid, 100_000);
    assert_eq!(find(&very_long_name).content, "longer");
    assert_eq!(find("bin/ping").content, "ELF");

    // The opaque marker comes right after its directory.
    let opaque = seen.iter().position(|s| s.path == "opaque/").unwrap();
    assert_eq!(seen[opaque + 1].path, "opaque/.wh..wh..opq");
    assert_eq!(seen[opaque + 2].path, "opaque/inside");

    assert_eq!(
        xattrs.get("bin/ping").unwrap(),
        &vec![
            (
                "SCHILY.xattr.security.capability".to_owned(),
                vec![1, 0, 0, 2, 0, 0x20]
            ),
            ("SCHILY.xattr.user.note".to_owned(), b"hello".to_vec()),
        ]
    );
    // No GNU long-name records: only ustar entries and PAX `x` headers.
    for header_type in raw_typeflags(&bytes) {
        assert!(
            !matches!(header_type, b'L' | b'K'),
            "GNU long-name record found"
        );
    }
    // The same Diff always gives the same bytes.
    assert_eq!(tar_bytes(&sample_diff()), bytes);
}

/// Every header's typeflag, walking the raw archive.
fn raw_typeflags(bytes: &[u8]) -> Vec<u8> {
    let mut flags = Vec::new();
    let mut offset = 0;
    while offset + 512 <= bytes.len() && bytes[offset..offset + 512].iter().any(|&b| b != 0) {
        let header = &bytes[offset..offset + 512];
        let size_field = std::str::from_utf8(&header[124..135]).unwrap();
        let size = u64::from_str_radix(size_field, 8).unwrap() as usize;
        flags.push(header[156]);
        offset += 512 + size.div_ceil(512) * 512;
    }
    flags
}

#[test]
fn gnu_tar_lists_every_entry_with_numeric_ids_and_big_uids() {
    require_tool("tar");
    let bytes = tar_bytes(&sample_diff());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.tar");
    std::fs::write(&file, &bytes).unwrap();
    let output = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tar -tvf failed: {stderr}");
    assert!(stderr.is_empty(), "tar warned: {stderr}");
    let listing = String::from_utf8(output.stdout).unwrap();
    let very_long_name = format!("{}/{}", long_dir(), "f".repeat(150));
    for (needle, what) in [
        ("-rwsr-xr-x 0/0", "setuid file"),
        ("drwxrwxrwt 100000/100000", "sticky dir with uid 100000"),
        ("3000000/3000000", "uid beyond the octal field, via PAX"),
        ("crw-rw-rw- 0/0", "char device"),
        ("brw-rw---- 0/0", "block device"),
        ("prw------- 0/0", "fifo"),
        ("bin/su-link link to bin/su", "hard link"),
        ("opaque/.wh..wh..opq", "opaque marker"),
        ("etc/.wh.gone", "whiteout"),
        (very_long_name.as_str(), "name over 255 bytes"),
        ("1970-01-01 00:00:00", "mtime clamped at 0"),
    ] {
        assert!(
            listing.contains(needle),
            "missing {what} (`{needle}`) in:\n{listing}"
        );
    }
    // GNU tar also reads the xattrs back.
    let output = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xf"])
        .arg(&file)
        .arg("-C")
        .arg(dir.path())
        .arg("--to-stdout")
        .arg("bin/ping")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout, b"ELF");
}

#[test]
fn host_files_stream_and_a_changed_size_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("data.bin");
    std::fs::write(&host, vec![7u8; 1000]).unwrap();
    let mut diff = Diff::new();
    diff.insert(
        path("data.bin"),
        entry(
            EntryKind::File(FileContent::HostFile {
                path: host.clone(),
                size: 1000,
                stamp: None,
            }),
            meta(0o644, 0, 0),
        ),
    );
    let (seen, _) = read_with_tar_crate(&tar_bytes(&diff));
    assert_eq!(seen[0].content.len(), 1000);

    std::fs::write(&host, vec![7u8; 999]).unwrap();
    let error = write_tar(&diff, SDE, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            &error,
            LayerError::HostFileChanged {
                expected: 1000,
                actual: 999,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("data.bin") && message.contains("1000"),
        "{message}"
    );

    std::fs::remove_file(&host).unwrap();
    let error = write_tar(&diff, SDE, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(error, LayerError::ReadHostFile { .. }),
        "{error:?}"
    );
}

#[test]
fn a_hard_link_before_its_target_is_refused() {
    let mut diff = Diff::new();
    diff.insert(
        path("a"),
        entry(EntryKind::Hardlink(path("b")), meta(0o644, 0, 0)),
    );
    diff.insert(path("b"), entry(bytes("b"), meta(0o644, 0, 0)));
    let error = write_tar(&diff, SDE, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(error, LayerError::HardlinkBeforeTarget { .. }),
        "{error:?}"
    );
}
