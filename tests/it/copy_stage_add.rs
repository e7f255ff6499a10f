//! COPY --from a stage (an in-memory filesystem) and ADD from a real context directory: local
//! archives extracted, archive escapes refused, URLs refused, --checksum verified.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use kiln::context::Context;
use kiln::digest::Digest;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::memfs::MemFs;
use kiln::steps::copy::{AddMode, CopyOutput, CopyRequest, CopySource, InputOrigin, copy};

fn path(raw: &str) -> LayerPath {
    LayerPath::new(raw).expect("valid path")
}

fn entry(kind: EntryKind, mode: u32, uid: u32) -> Entry {
    Entry {
        kind,
        meta: Metadata {
            mode,
            uid,
            gid: uid,
            mtime: 7,
            xattrs: Default::default(),
        },
    }
}

fn bytes(body: &str) -> EntryKind {
    EntryKind::File(FileContent::Bytes(Arc::from(body.as_bytes())))
}

/// A build stage: `/build/out/{app.bin, link -> app.bin}`, `/build/venv/lib/x.py`,
/// `/build/abs -> /build/out`, `/escape -> ../../../build/out`.
fn stage() -> MemFs {
    let mut diff = Diff::new();
    diff.insert(path("build/out"), entry(EntryKind::Dir, 0o750, 10));
    diff.insert(path("build/out/app.bin"), entry(bytes("ELF"), 0o755, 10));
    diff.insert(
        path("build/out/link"),
        entry(EntryKind::Symlink("app.bin".into()), 0o777, 10),
    );
    diff.insert(path("build/venv/lib/x.py"), entry(bytes("x"), 0o644, 0));
    diff.insert(
        path("build/abs"),
        entry(EntryKind::Symlink("/build/out".into()), 0o777, 0),
    );
    diff.insert(
        path("escape"),
        entry(EntryKind::Symlink("../../../build/out".into()), 0o777, 0),
    );
    MemFs::from_diff(&diff)
}

fn target() -> MemFs {
    let mut diff = Diff::new();
    diff.insert(
        path("etc/passwd"),
        entry(
            bytes("appuser:x:1000:1000::/home/appuser:/bin/sh\n"),
            0o644,
            0,
        ),
    );
    MemFs::from_diff(&diff)
}

fn summary(out: &CopyOutput) -> Vec<String> {
    out.diff
        .iter()
        .map(|(p, e)| {
            let kind = match &e.kind {
                EntryKind::Dir => "dir".to_owned(),
                EntryKind::File(content) => format!("file({})", content.size()),
                EntryKind::Symlink(t) => format!("-> {t}"),
                EntryKind::Hardlink(t) => format!("link {t}"),
                other => format!("{other:?}"),
            };
            format!("{p} {kind} {:o} {}:{}", e.meta.mode, e.meta.uid, e.meta.gid)
        })
        .collect()
}

fn from_stage(sources: &[&str], dest: &str, chown: Option<&str>) -> Result<CopyOutput, String> {
    let stage = stage();
    let target = target();
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    copy(&CopyRequest {
        sources: &sources,
        dest,
        workdir: "/",
        from: CopySource::Stage(&stage),
        target: &target,
        chown,
        chmod: None,
        link: true,
        add: AddMode::Copy,
        scratch_dir: Path::new("."),
    })
    .map_err(|e| e.to_string())
}

/// Sources, destination, --chown, expected Diff summary.
type StageCase<'a> = (&'a [&'a str], &'a str, Option<&'a str>, &'a [&'a str]);

#[test]
fn copy_from_a_stage_resolves_inside_its_root() {
    let cases: &[StageCase] = &[
        (
            &["/build/out"],
            "/opt/",
            None,
            &[
                "/opt dir 755 0:0",
                "/opt/app.bin file(3) 755 10:10",
                "/opt/link -> app.bin 777 10:10",
            ],
        ),
        (
            &["/build/abs/app.bin"],
            "/x",
            None,
            &["/x file(3) 755 10:10"],
        ),
        (&["/escape/app.bin"], "/x", None, &["/x file(3) 755 10:10"]),
        (
            &["/build/out/link"],
            "/bin/",
            None,
            &["/bin dir 755 0:0", "/bin/link file(3) 755 10:10"],
        ),
        (
            &["/build/*/lib/*.py"],
            "/app/",
            None,
            &["/app dir 755 0:0", "/app/x.py file(1) 644 0:0"],
        ),
        (
            &["build/venv/lib/x.py"],
            "/y",
            Some("appuser"),
            &["/y file(1) 644 1000:1000"],
        ),
        (
            &["/../../build/venv/lib/x.py"],
            "/y",
            None,
            &["/y file(1) 644 0:0"],
        ),
        (
            &["/build/out"],
            "/o",
            Some("appuser"),
            &[
                "/o dir 755 1000:1000",
                "/o/app.bin file(3) 755 1000:1000",
                "/o/link -> app.bin 777 1000:1000",
            ],
        ),
    ];
    for (sources, dest, chown, want) in cases {
        let out = from_stage(sources, dest, *chown).unwrap_or_else(|e| panic!("{sources:?}: {e}"));
        assert_eq!(summary(&out), *want, "{sources:?} -> {dest}");
        assert!(out.details.link);
    }
    let out = from_stage(&["/build/out/app.bin"], "/x", None).expect("copy");
    assert_eq!(
        out.details.inputs[0].origin,
        InputOrigin::Stage(path("build/out/app.bin"))
    );
    assert_eq!(
        from_stage(&["/nope"], "/x", None).expect_err("missing"),
        "COPY --from source `/nope` not found in the source stage"
    );
    assert_eq!(
        from_stage(&["/build/*.none"], "/x", None).expect_err("no match"),
        "COPY --from source `/build/*.none` not found in the source stage"
    );
}

/// Writes a tar with the given (path, body) regular files; names are written raw so `../`
/// entries can be made.
fn tar_bytes(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, body) in files {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(body.len() as u64);
        header.set_mode(0o640);
        header.set_uid(3);
        header.set_gid(4);
        header.set_mtime(9);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body.as_bytes());
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

fn add(
    dir: &Path,
    sources: &[&str],
    dest: &str,
    checksum: Option<&str>,
) -> Result<CopyOutput, String> {
    let context = Context::open(dir, None).expect("open");
    let target = target();
    let scratch = dir.join("..").join(format!(
        "{}-scratch",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    fs::create_dir_all(&scratch).expect("scratch");
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    copy(&CopyRequest {
        sources: &sources,
        dest,
        workdir: "/",
        from: CopySource::Context(&context),
        target: &target,
        chown: None,
        chmod: None,
        link: false,
        add: AddMode::Add { checksum },
        scratch_dir: &scratch,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn add_extracts_archives_and_refuses_escapes_urls_and_bad_checksums() {
    let root = tempfile::tempdir().expect("temp");
    let dir = root.path().join("ctx");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(
        dir.join("app.tar.gz"),
        gzip(&tar_bytes(&[("app/run.sh", "echo"), ("app/conf", "c=1")])),
    )
    .expect("write");
    fs::write(dir.join("plain.tar"), tar_bytes(&[("x", "1")])).expect("write");
    fs::write(
        dir.join("evil.tar"),
        tar_bytes(&[("ok", "1"), ("../../evil", "boom")]),
    )
    .expect("write");
    fs::write(dir.join("notes.gz"), gzip(b"just text")).expect("write");
    fs::write(dir.join("a.txt"), "a").expect("write");

    let out = add(&dir, &["app.tar.gz"], "/srv", None).expect("extract");
    assert_eq!(
        summary(&out),
        [
            "/srv dir 755 0:0",
            "/srv/app/conf file(3) 640 3:4",
            "/srv/app/run.sh file(4) 640 3:4"
        ]
    );
    assert_eq!(
        out.details.inputs.len(),
        1,
        "the archive itself is the input"
    );
    let out = add(&dir, &["plain.tar"], "/", None).expect("extract");
    assert_eq!(summary(&out), ["/x file(1) 640 3:4"]);
    let out = add(&dir, &["notes.gz"], "/n/", None).expect("copied as a file");
    assert_eq!(
        summary(&out)[1],
        format!("/n/notes.gz file({}) 644 0:0", gzip(b"just text").len())
    );

    assert_eq!(
        add(&dir, &["evil.tar"], "/srv/", None).expect_err("escape"),
        "failed to extract ADD source `evil.tar`"
    );
    let context = Context::open(&dir, None).expect("open");
    let target = target();
    let sources = vec!["evil.tar".to_owned()];
    let err = copy(&CopyRequest {
        sources: &sources,
        dest: "/srv/",
        workdir: "/",
        from: CopySource::Context(&context),
        target: &target,
        chown: None,
        chmod: None,
        link: false,
        add: AddMode::Add { checksum: None },
        scratch_dir: root.path(),
    })
    .expect_err("escape");
    let cause = std::error::Error::source(&err).expect("cause").to_string();
    assert_eq!(
        cause,
        "archive `evil.tar` has an unsafe entry name `../../evil`"
    );

    assert_eq!(
        add(&dir, &["https://example.invalid/x.tgz"], "/srv/", None).expect_err("url"),
        "ADD from a URL is not supported yet (`https://example.invalid/x.tgz`): use a pinned COPY or `ADD --checksum` with a local file"
    );
    let right = Digest::of(b"a").to_string();
    assert!(add(&dir, &["a.txt"], "/a", Some(&right)).is_ok());
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        add(&dir, &["a.txt"], "/a", Some(&wrong)).expect_err("mismatch"),
        format!("ADD source `a.txt` has digest {right}, but --checksum expects {wrong}")
    );
    assert_eq!(
        add(&dir, &["a.txt"], "/a", Some("md5:abc")).expect_err("bad"),
        "invalid --checksum value `md5:abc`: expected sha256:<64 hex characters>"
    );
}
