//! Wheels built here with the `zip` crate: the `--user` layout of `.data` members, and every
//! way a bad wheel must be refused (hash mismatch, `..` and absolute members, a RECORD that
//! lies or is silent, a wheel for another target, an sdist).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use kiln::layer::{EntryKind, FileContent, LayerPath};
use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target::{Libc, PythonVersion};
use kiln::python::wheel::{self, InstallOptions, Owner, Requested, Scheme, WheelError};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

const PY: PythonVersion = PythonVersion {
    major: 3,
    minor: 11,
    patch: Some(16),
};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// A member: name, bytes, unix mode, and what RECORD says about it (None: the truth,
/// Some(""): not listed, Some(x): the hash written instead).
struct Member<'a> {
    name: &'a str,
    bytes: Vec<u8>,
    mode: u32,
    record: Option<&'a str>,
}

fn member<'a>(name: &'a str, bytes: &[u8]) -> Member<'a> {
    Member {
        name,
        bytes: bytes.to_vec(),
        mode: 0o644,
        record: None,
    }
}

/// Writes `dir/filename` with the members plus WHEEL, METADATA and RECORD; returns path and hex sha256.
fn build(dir: &Path, filename: &str, members: Vec<Member<'_>>) -> (PathBuf, String) {
    let path = dir.join(filename);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let info = "demo-1.0.dist-info";
    let mut all = members;
    all.push(member(
        "demo-1.0.dist-info/WHEEL",
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    ));
    all.push(member(
        "demo-1.0.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    ));
    let mut record = String::new();
    for m in &all {
        match m.record {
            None => record.push_str(&format!(
                "{},sha256={},{}\n",
                m.name,
                b64(&m.bytes),
                m.bytes.len()
            )),
            Some("") => {}
            Some(lie) => record.push_str(&format!("{},sha256={lie},{}\n", m.name, m.bytes.len())),
        }
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    all.push(member("demo-1.0.dist-info/RECORD", record.as_bytes()));
    for m in &all {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(m.mode);
        zip.start_file(m.name, options).unwrap();
        zip.write_all(&m.bytes).unwrap();
    }
    zip.finish().unwrap();
    let sha = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
    (path, sha)
}

struct Setup {
    dir: tempfile::TempDir,
    scratch: PathBuf,
    scheme: Scheme,
    tags: Tags,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Setup {
        scheme: Scheme::user(&LayerPath::new("home/appuser").unwrap(), PY).unwrap(),
        tags: Tags::new(
            (3, 11),
            Libc::Musl { major: 1, minor: 2 },
            "x86_64",
            LinuxTag::Exclude,
        ),
        scratch,
        dir,
    }
}

impl Setup {
    fn install(&self, wheel: &Path, sha: &str) -> Result<wheel::InstalledWheel, WheelError> {
        wheel::install_wheel(
            wheel,
            sha,
            &InstallOptions {
                scheme: &self.scheme,
                interpreter: "/usr/local/bin/python3.11",
                tags: &self.tags,
                owner: Owner {
                    uid: 1000,
                    gid: 1001,
                },
                mtime: 1_700_000_000,
                scratch: &self.scratch,
                requested: Requested::No,
            },
        )
    }
}

fn read(content: &FileContent) -> Vec<u8> {
    match content {
        FileContent::Bytes(b) => b.to_vec(),
        FileContent::HostFile { path, .. } => std::fs::read(path).unwrap(),
    }
}

#[test]
fn user_scheme_data_scripts_and_big_members() {
    let s = setup();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let mut tool = member("demo-1.0.data/scripts/tool", b"#!python\nprint('hi')\n");
    tool.mode = 0o755;
    let mut ext = member("demo/_ext.so", &big);
    ext.mode = 0o755;
    let (path, sha) = build(
        s.dir.path(),
        "demo-1.0-py3-none-any.whl",
        vec![
            member("demo/__init__.py", b"x = 1\n"),
            ext,
            tool,
            member("demo-1.0.data/headers/demo.h", b"int x;\n"),
            member("demo-1.0.data/data/share/demo/a.txt", b"a\n"),
            member(
                "demo-1.0.dist-info/entry_points.txt",
                b"[console_scripts]\ndemo = demo.cli:main\n[other]\nx = y:z\n",
            ),
        ],
    );
    let installed = s.install(&path, &sha).unwrap();
    let get = |p: &str| {
        installed
            .diff
            .get(&LayerPath::new(p).unwrap())
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    let site = "home/appuser/.local/lib/python3.11/site-packages";
    let file = |p: &str| match &get(p).kind {
        EntryKind::File(c) => (read(c), get(p).meta.mode, c.clone()),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(file(&format!("{site}/demo/__init__.py")).1, 0o644);
    let (bytes, mode, content) = file(&format!("{site}/demo/_ext.so"));
    assert_eq!((bytes, mode), (big, 0o755));
    assert!(
        matches!(content, FileContent::HostFile { .. }),
        "big members go to scratch"
    );
    let (tool, mode, _) = file("home/appuser/.local/bin/tool");
    assert_eq!(
        (tool.as_slice(), mode),
        (
            b"#!/usr/local/bin/python3.11\nprint('hi')\n".as_slice(),
            0o755
        )
    );
    let (launcher, mode, _) = file("home/appuser/.local/bin/demo");
    assert_eq!(mode, 0o755);
    assert!(launcher.starts_with(b"#!/usr/local/bin/python3.11\n# -*- coding: utf-8 -*-\n"));
    file("home/appuser/.local/include/python3.11/demo/demo.h");
    file("home/appuser/.local/share/demo/a.txt");
    assert_eq!(
        file(&format!("{site}/demo-1.0.dist-info/INSTALLER")).0,
        b"kiln\n"
    );
    assert!(
        installed
            .diff
            .get(&LayerPath::new(&format!("{site}/demo-1.0.dist-info/REQUESTED")).unwrap())
            .is_none()
    );
    let record = String::from_utf8(file(&format!("{site}/demo-1.0.dist-info/RECORD")).0).unwrap();
    let rows: Vec<&str> = record.split("\r\n").filter(|l| !l.is_empty()).collect();
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows, sorted, "RECORD rows are sorted");
    for want in [
        format!(
            "../../../bin/tool,sha256={},40",
            b64(b"#!/usr/local/bin/python3.11\nprint('hi')\n")
        ),
        "../../../include/python3.11/demo/demo.h,".to_owned(),
        "../../../share/demo/a.txt,".to_owned(),
        "../../../bin/demo,".to_owned(),
        "demo-1.0.dist-info/RECORD,,".to_owned(),
        format!("demo-1.0.dist-info/INSTALLER,sha256={},5", b64(b"kiln\n")),
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(&want)),
            "no row {want} in\n{record}"
        );
    }
    assert!(!record.contains(".data/"), "{record}");
    // Directories from ~/.local down are listed and owned by the user; the home is not.
    assert!(
        installed
            .diff
            .get(&LayerPath::new("home/appuser").unwrap())
            .is_none()
    );
    for dir in [
        ".local",
        ".local/bin",
        ".local/lib/python3.11",
        ".local/include/python3.11/demo",
    ] {
        let entry = get(&format!("home/appuser/{dir}"));
        assert_eq!(entry.kind, EntryKind::Dir, "{dir}");
        assert_eq!(
            (entry.meta.uid, entry.meta.gid, entry.meta.mode),
            (1000, 1001, 0o755)
        );
    }
    for (_, entry) in installed.diff.iter() {
        assert_eq!(entry.meta.mtime, 1_700_000_000);
    }
}

fn expect_err(result: Result<wheel::InstalledWheel, WheelError>, wants: &[&str]) {
    let err = match result {
        Ok(_) => panic!("installed, expected an error containing {wants:?}"),
        Err(e) => e.to_string(),
    };
    for want in wants {
        assert!(err.contains(want), "`{err}` lacks `{want}`");
    }
}

#[test]
fn hash_mismatch_shows_expected_and_actual() {
    let s = setup();
    let (path, sha) = build(
        s.dir.path(),
        "demo-1.0-py3-none-any.whl",
        vec![member("demo/x.py", b"")],
    );
    let wrong = "0".repeat(64);
    expect_err(
        s.install(&path, &wrong),
        &["hash mismatch for demo", &wrong, &sha],
    );
    assert!(
        s.install(&path, &format!("sha256:{}", sha.to_uppercase()))
            .is_ok()
    );
}

#[test]
fn escaping_members_are_refused() {
    for (name, why) in [
        ("../evil.py", "`..` would escape"),
        ("demo/../../evil.py", "`..` would escape"),
        ("/etc/evil.py", "absolute paths"),
        ("demo-1.0.data/scripts/../../../evil", "`..` would escape"),
        ("demo-1.0.data/unknown/x", "unknown `.data` key"),
        ("demo-1.0.data/scripts/sub/x", "only plain files"),
    ] {
        let s = setup();
        let (path, sha) = build(
            s.dir.path(),
            "demo-1.0-py3-none-any.whl",
            vec![member(name, b"x")],
        );
        expect_err(
            s.install(&path, &sha),
            &["unsafe member", name, why, "demo-1.0-py3-none-any.whl"],
        );
    }
}

#[test]
fn a_record_that_lies_is_refused() {
    let s = setup();
    let mut lie = member("demo/x.py", b"print('trojan')\n");
    lie.record = Some("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    let (path, sha) = build(s.dir.path(), "demo-1.0-py3-none-any.whl", vec![lie]);
    expect_err(
        s.install(&path, &sha),
        &[
            "RECORD of wheel `demo-1.0-py3-none-any.whl`",
            "demo/x.py",
            "47DEQpj8HBSa",
            "altered",
        ],
    );
    let s = setup();
    let mut silent = member("demo/extra.py", b"x");
    silent.record = Some("");
    let (path, sha) = build(s.dir.path(), "demo-1.0-py3-none-any.whl", vec![silent]);
    expect_err(
        s.install(&path, &sha),
        &["demo/extra.py", "not listed in RECORD"],
    );
}

#[test]
fn incompatible_wheels_name_the_tag() {
    for (filename, want) in [
        (
            "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
            "python tag `cp312`",
        ),
        (
            "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "platform tag `manylinux_2_17_x86_64.manylinux2014_x86_64`",
        ),
        (
            "demo-1.0-cp311-cp311-musllinux_1_2_aarch64.whl",
            "platform tag `musllinux_1_2_aarch64`",
        ),
    ] {
        let s = setup();
        let (path, sha) = build(s.dir.path(), filename, vec![member("demo/x.py", b"")]);
        expect_err(
            s.install(&path, &sha),
            &[filename, "not compatible with the target", want],
        );
    }
}

#[test]
fn sdists_are_refused() {
    let s = setup();
    let path = s.dir.path().join("demo-1.0.tar.gz");
    std::fs::write(&path, b"not really").unwrap();
    let err = s.install(&path, &"0".repeat(64)).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("sdists need a build backend; kiln installs wheels only"),
        "{text}"
    );
    assert!(text.contains("demo-1.0.tar.gz"), "{text}");
}
