//! Tests for `layer::reader`: safe tar reading and ADD-style extraction.
//!
//! Archives are built here with the `tar` crate (raw headers for names the crate's builder
//! refuses) and, for one case, with the GNU `tar` CLI. Attack tests are named for the attack and
//! check that the error names the entry and the archive, and that nothing is left behind in the
//! scratch directory.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;

use kiln::layer::reader::{
    ReaderError, TarEntry, TarKind, extract_to_diff, open_decompressed, read_entries,
};
use kiln::layer::{Diff, EntryKind, FileContent, LayerPath};

/// One archive member, described for the raw builder.
enum Member<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A file whose name travels in a PAX `path` record (may hold anything, even NUL).
    PaxFile(&'a [u8], &'a [u8]),
    /// A file whose name travels in a GNU long-name (`L`) record.
    GnuLongFile(&'a str, &'a [u8]),
}

fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let field = &mut header.as_old_mut().name;
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

/// Builds a plain tar with names written verbatim (no validation by the `tar` crate).
fn build_tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        match member {
            Member::Dir(name) => {
                let mut h = raw_header(name.as_bytes(), tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                builder.append(&h, &[][..]).unwrap();
            }
            Member::File(name, data) => {
                let mut h = raw_header(
                    name.as_bytes(),
                    tar::EntryType::Regular,
                    data.len() as u64,
                    0o644,
                );
                h.set_cksum();
                builder.append(&h, *data).unwrap();
            }
            Member::Symlink(name, target) => {
                let mut h = raw_header(name.as_bytes(), tar::EntryType::Symlink, 0, 0o777);
                let field = &mut h.as_old_mut().linkname;
                field[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                builder.append(&h, &[][..]).unwrap();
            }
            Member::Hardlink(name, target) => {
                let mut h = raw_header(name.as_bytes(), tar::EntryType::Link, 0, 0o644);
                let field = &mut h.as_old_mut().linkname;
                field[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                builder.append(&h, &[][..]).unwrap();
            }
            Member::PaxFile(name, data) => {
                builder
                    .append_pax_extensions([("path", *name), ("SCHILY.xattr.user.k", &b"v"[..])])
                    .unwrap();
                let mut h = raw_header(
                    b"placeholder",
                    tar::EntryType::Regular,
                    data.len() as u64,
                    0o600,
                );
                h.set_cksum();
                builder.append(&h, *data).unwrap();
            }
            Member::GnuLongFile(name, data) => {
                let mut long = name.as_bytes().to_vec();
                long.push(0);
                let mut h = raw_header(
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    long.len() as u64,
                    0o644,
                );
                h.set_cksum();
                builder.append(&h, &long[..]).unwrap();
                let mut h = raw_header(
                    b"truncated",
                    tar::EntryType::Regular,
                    data.len() as u64,
                    0o644,
                );
                h.set_cksum();
                builder.append(&h, *data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

fn collect(archive: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>, ReaderError> {
    let (_, stream) = open_decompressed(archive).unwrap();
    let mut out = Vec::new();
    read_entries(stream, "test.tar", |entry, content: &mut dyn Read| {
        let mut bytes = Vec::new();
        content.read_to_end(&mut bytes).unwrap();
        out.push((entry, bytes));
        Ok::<_, ReaderError>(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

fn p(raw: &str) -> LayerPath {
    LayerPath::new(raw).unwrap()
}

fn scratch_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn reads_plain_gzip_and_zstd_alike() {
    let tar = build_tar(&[
        Member::Dir("etc/"),
        Member::File("etc/passwd", b"root:x:0:0\n"),
        Member::Symlink("bin/sh", "/bin/busybox"),
        Member::Hardlink("etc/passwd-", "etc/passwd"),
    ]);
    for (label, bytes) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let entries = collect(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        let summary: Vec<(String, TarKind, Vec<u8>)> = entries
            .into_iter()
            .map(|(e, bytes)| (e.path.to_string(), e.kind, bytes))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/etc".to_owned(), TarKind::Dir, vec![]),
                (
                    "/etc/passwd".to_owned(),
                    TarKind::File,
                    b"root:x:0:0\n".to_vec()
                ),
                (
                    "/bin/sh".to_owned(),
                    TarKind::Symlink("/bin/busybox".to_owned()),
                    vec![]
                ),
                (
                    "/etc/passwd-".to_owned(),
                    TarKind::Hardlink(p("etc/passwd")),
                    vec![]
                ),
            ],
            "{label}"
        );
    }
}

#[test]
fn names_are_normalized_and_long_names_honored() {
    let long = format!("{}/file", "d".repeat(150));
    let tar = build_tar(&[
        Member::File("/abs/ok", b"1"),
        Member::File("./rel/./x//y", b"2"),
        Member::PaxFile(b"pax/name/from/record", b"3"),
        Member::GnuLongFile(&long, b"4"),
    ]);
    let entries = collect(&tar).unwrap();
    let names: Vec<String> = entries
        .iter()
        .map(|(e, _)| e.path.as_str().to_owned())
        .collect();
    assert_eq!(
        names,
        ["abs/ok", "rel/x/y", "pax/name/from/record", long.as_str()]
    );
    let pax = &entries[2].0;
    assert_eq!(pax.meta.mode, 0o600);
    assert_eq!(
        pax.meta.xattrs.get("user.k").map(Vec::as_slice),
        Some(&b"v"[..])
    );
    assert_eq!(entries[3].1, b"4");
    assert_eq!(
        entries.iter().map(|(e, _)| e.ordinal).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

/// Named attacks: each archive must be refused with an error naming the bad entry and the
/// archive, and `extract_to_diff` must leave the scratch directory empty.
#[test]
fn attacks_are_refused_naming_the_entry() {
    let cases: &[(&str, Vec<Member<'_>>, &str)] = &[
        (
            "dotdot_escape",
            vec![Member::File("ok", b"x"), Member::File("../escape", b"x")],
            "../escape",
        ),
        (
            "abs_dotdot_escape",
            vec![Member::File("/../escape", b"x")],
            "/../escape",
        ),
        (
            "nested_dotdot_escape",
            vec![Member::File("a/../../escape", b"x")],
            "a/../../escape",
        ),
        (
            "hardlink_to_host_passwd",
            vec![
                Member::File("ok", b"x"),
                Member::Hardlink("link", "../../etc/passwd"),
            ],
            "link",
        ),
        (
            "pax_dotdot_escape",
            vec![Member::PaxFile(b"../../pax-escape", b"x")],
            "../../pax-escape",
        ),
        (
            "pax_nul_name",
            vec![Member::PaxFile(b"evil\0name", b"x")],
            "evil",
        ),
        (
            "gnu_long_dotdot_escape",
            vec![Member::GnuLongFile("ok/../../../long-escape", b"x")],
            "long-escape",
        ),
        (
            "write_below_symlink",
            vec![
                Member::Symlink("etc", "/host/etc"),
                Member::File("etc/passwd", b"x"),
            ],
            "etc/passwd",
        ),
        (
            "hardlink_to_missing_target",
            vec![Member::Hardlink("link", "etc/shadow")],
            "link",
        ),
    ];
    for (name, members, entry) in cases {
        let tar = build_tar(members);
        let scratch = tempfile::tempdir().unwrap();
        let err = extract_to_diff(&tar[..], "attack.tar", scratch.path(), &LayerPath::root())
            .expect_err(name);
        let text = format!("{err}");
        assert!(
            text.contains(entry),
            "{name}: `{text}` should name `{entry}`"
        );
        assert!(
            text.contains("attack.tar"),
            "{name}: `{text}` should name the archive"
        );
        assert!(
            scratch_is_empty(scratch.path()),
            "{name}: scratch dir not empty"
        );
    }
}

#[test]
fn extract_places_entries_below_dest_and_keeps_whiteouts_plain() {
    let tar = gzip(&build_tar(&[
        Member::Dir("./"),
        Member::Dir("app/"),
        Member::File("app/main.py", b"print(1)\n"),
        Member::File("app/.wh.gone", b""),
        Member::Symlink("app/up", "../../../../outside"),
        Member::File("/abs/ok", b"abs"),
    ]));
    let scratch = tempfile::tempdir().unwrap();
    let diff = extract_to_diff(&tar[..], "app.tar.gz", scratch.path(), &p("srv")).unwrap();
    let summary = summarize(&diff);
    assert_eq!(
        summary,
        [
            "/srv/abs/ok file abs",
            "/srv/app dir",
            "/srv/app/.wh.gone file ",
            "/srv/app/main.py file print(1)\n",
            "/srv/app/up symlink ../../../../outside",
        ]
    );
}

#[test]
fn extract_hardlinks_point_at_the_smallest_name() {
    // busybox-style: the content is under a name that sorts last.
    let tar = build_tar(&[
        Member::File("bin/z-busybox", b"BB"),
        Member::Hardlink("bin/ls", "bin/z-busybox"),
        Member::Hardlink("bin/cat", "/bin/ls"),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let diff = extract_to_diff(&tar[..], "bb.tar", scratch.path(), &LayerPath::root()).unwrap();
    assert_eq!(
        summarize(&diff),
        [
            "/bin/cat file BB",
            "/bin/ls hardlink /bin/cat",
            "/bin/z-busybox hardlink /bin/cat",
        ]
    );
}

#[test]
fn gnu_tar_cli_archive_with_long_names_and_links() {
    let tool = Command::new("tar").arg("--version").output();
    let version = tool.expect("GNU tar must be installed for this test (apt-get install tar)");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("GNU tar"),
        "this test needs GNU tar"
    );
    let src = tempfile::tempdir().unwrap();
    let long_dir = "x".repeat(120);
    let deep = src.path().join("root").join(&long_dir).join("y".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("data.txt"), b"deep").unwrap();
    std::fs::write(src.path().join("root/f"), b"f").unwrap();
    std::fs::hard_link(src.path().join("root/f"), src.path().join("root/g")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("root/lnk")).unwrap();
    let archive = src.path().join("root.tar.gz");
    let status = Command::new("tar")
        .args(["--format=gnu", "--sort=name", "-czf"])
        .arg(&archive)
        .arg("-C")
        .arg(src.path().join("root"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let scratch = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(&archive).unwrap();
    let diff = extract_to_diff(file, "root.tar.gz", scratch.path(), &LayerPath::root()).unwrap();
    let deep_path = p(&format!("{long_dir}/{}/data.txt", "y".repeat(60)));
    assert_eq!(content_of(&diff, &deep_path), b"deep");
    assert_eq!(content_of(&diff, &p("f")), b"f");
    assert_eq!(
        diff.get(&p("g")).map(|e| e.kind.clone()),
        Some(EntryKind::Hardlink(p("f")))
    );
    assert_eq!(
        diff.get(&p("lnk")).map(|e| e.kind.clone()),
        Some(EntryKind::Symlink("/etc/passwd".to_owned()))
    );
}

fn content_of(diff: &Diff, path: &LayerPath) -> Vec<u8> {
    match diff.get(path).map(|e| &e.kind) {
        Some(EntryKind::File(FileContent::HostFile { path, .. })) => std::fs::read(path).unwrap(),
        Some(EntryKind::File(FileContent::Bytes(b))) => b.to_vec(),
        other => panic!("{path} is not a file: {other:?}"),
    }
}

fn summarize(diff: &Diff) -> Vec<String> {
    diff.iter()
        .map(|(path, entry)| match &entry.kind {
            EntryKind::Dir => format!("{path} dir"),
            EntryKind::File(_) => {
                format!(
                    "{path} file {}",
                    String::from_utf8_lossy(&content_of(diff, path))
                )
            }
            EntryKind::Symlink(t) => format!("{path} symlink {t}"),
            EntryKind::Hardlink(t) => format!("{path} hardlink {t}"),
            other => format!("{path} {other:?}"),
        })
        .collect()
}
