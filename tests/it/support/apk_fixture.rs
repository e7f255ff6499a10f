//! A signed Alpine-like package repository and a lower rootfs, made by code (apk.md §1, §2,
//! §3): a test RSA key (generated once per test process with the `openssl` CLI), packages
//! built exactly as abuild builds them (data tar with PAX `APK-TOOLS.checksum.SHA1` records,
//! gzip; control tar with `.PKGINFO` holding `datahash`, cut, gzip; a `.SIGN.RSA.<key>`
//! member, cut, gzip, prepended), a signed `APKINDEX.tar.gz` whose `C:` values are the
//! SHA-1 of the control members, and a lower rootfs [`Diff`] with busybox, applet links,
//! `/etc/apk/{keys,repositories,arch,world}` and `/lib/apk/db/installed` listing the older
//! versions, written by hand here (independently of kiln's db writer).
//!
//! Packages: `hello` 1.0-r0 and 1.1-r0 (1.1 drops `/usr/share/hello/old.txt`, changes the
//! protected `/etc/hello.conf`, and needs `libgreet>=1.1`), `libgreet` 1.0-r0 and 1.1-r0
//! (provide `so:libgreet.so.1`), `greeter` (its `.pre-install` creates the user `greeter`,
//! which owns `/var/lib/greeter`), `hello-extra` (replaces `hello`, ships a file `hello` owns),
//! and `breaker` (depends on `hello<1.0`, which nothing satisfies with `hello` in world).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::DecodePrivateKey;
use sha1::{Digest, Sha1};

/// The architecture of the fixture repository and rootfs ([`fixture_for`] makes others).
pub const ARCH: &str = "x86_64";
/// mtime of every fixture entry.
pub const MTIME: u64 = 1_700_000_000;

/// A test signing key: its `.rsa.pub` file name, public PEM, and private key.
pub struct TestKey {
    /// Key file name, e.g. `kiln-test-0001.rsa.pub`.
    pub name: String,
    /// PEM SubjectPublicKeyInfo.
    pub public_pem: String,
    key: rsa::PrivateKey,
}

impl TestKey {
    /// RSA PKCS#1 v1.5 signature with SHA-1 over `bytes` (abuild's `RSA`).
    pub fn sign_sha1(&self, bytes: &[u8]) -> Vec<u8> {
        self.key
            .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(bytes))
            .expect("signing works")
    }

    /// The same with SHA-256 (`RSA256`).
    pub fn sign_sha256(&self, bytes: &[u8]) -> Vec<u8> {
        self.key
            .sign(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(bytes),
            )
            .expect("signing works")
    }
}

fn openssl_key(dir: &Path, name: &str) -> TestKey {
    let private = dir.join(format!("{name}.rsa"));
    let public = dir.join(format!("{name}.rsa.pub"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl CLI is required (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let private_s = private.to_str().expect("utf-8 temp path");
    let public_s = public.to_str().expect("utf-8 temp path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_s,
    ]);
    run(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
    let private_pem = std::fs::read_to_string(&private).expect("private key");
    TestKey {
        name: format!("{name}.rsa.pub"),
        public_pem: std::fs::read_to_string(&public).expect("public key"),
        key: rsa::PrivateKey::from_pkcs8_pem(&private_pem).expect("PKCS#8 private key"),
    }
}

/// The trusted test key (made once per process).
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        openssl_key(dir.path(), "kiln-test-0001")
    })
}

/// A second key that the lower rootfs does not trust.
pub fn untrusted_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        openssl_key(dir.path(), "stranger-0002")
    })
}

/// One file-system object of a package.
#[derive(Clone, Debug)]
pub enum Node {
    /// A directory and its mode.
    Dir(&'static str, u32),
    /// A regular file: path, content, mode.
    File(&'static str, &'static str, u32),
    /// A regular file owned by name: path, content, mode, uname, gname.
    OwnedFile(&'static str, &'static str, u32, &'static str, &'static str),
    /// A directory owned by name: path, mode, uname, gname.
    OwnedDir(&'static str, u32, &'static str, &'static str),
    /// A symlink: path, target.
    Symlink(&'static str, &'static str),
}

/// What a package is made of.
#[derive(Clone, Debug, Default)]
pub struct PkgSpec {
    /// pkgname
    pub name: &'static str,
    /// pkgver
    pub version: &'static str,
    /// `depend` lines.
    pub depends: Vec<&'static str>,
    /// `provides` lines.
    pub provides: Vec<&'static str>,
    /// `replaces` lines.
    pub replaces: Vec<&'static str>,
    /// Scripts: (`.pre-install`, text).
    pub scripts: Vec<(&'static str, &'static str)>,
    /// `triggers` value.
    pub triggers: Option<&'static str>,
    /// Data entries, in archive order (parents first).
    pub nodes: Vec<Node>,
    /// The package's architecture (`None`: [`ARCH`]).
    pub arch: Option<&'static str>,
}

impl PkgSpec {
    /// The package's architecture.
    pub fn arch(&self) -> &'static str {
        self.arch.unwrap_or(ARCH)
    }
}

/// A built `.apk`.
#[derive(Clone, Debug)]
pub struct BuiltPackage {
    /// The spec it was built from.
    pub spec: PkgSpec,
    /// The file bytes.
    pub bytes: Vec<u8>,
    /// Raw byte ranges: signature member end, control member end.
    pub control: std::ops::Range<usize>,
    /// `Q1` SHA-1 of the control member.
    pub checksum: String,
    /// `datahash`.
    pub datahash: String,
    /// Installed size.
    pub installed_size: u64,
}

impl BuiltPackage {
    /// `name-version`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.spec.name, self.spec.version)
    }

    /// The APKINDEX record (without the trailing blank line), in apk's field order.
    pub fn index_record(&self) -> String {
        let s = &self.spec;
        let mut out = format!(
            "C:{}\nP:{}\nV:{}\nA:{}\nS:{}\nI:{}\nT:{} test package\nU:https://alpine.example/{}\nL:MIT\no:{}\nt:{MTIME}\n",
            self.checksum,
            s.name,
            s.version,
            s.arch(),
            self.bytes.len(),
            self.installed_size,
            s.name,
            s.name,
            s.name,
        );
        if !s.depends.is_empty() {
            out.push_str(&format!("D:{}\n", s.depends.join(" ")));
        }
        if !s.provides.is_empty() {
            out.push_str(&format!("p:{}\n", s.provides.join(" ")));
        }
        out
    }
}

/// `Q1` + base64 of SHA-1.
pub fn q1(bytes: &[u8]) -> String {
    format!(
        "Q1{}",
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(bytes))
    )
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // "<len> <key>=<value>\n" where len counts the whole record, its own digits included.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A tar stream being written by hand (abuild-tar style headers).
pub struct TarOut {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarOut {
    fn default() -> Self {
        TarOut::new()
    }
}

impl TarOut {
    /// An empty stream.
    pub fn new() -> TarOut {
        TarOut {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends one entry, preceded by a PAX header when `pax` is not empty.
    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        owner: (&str, &str),
        link: Option<&str>,
        content: &[u8],
        pax: &[(&str, String)],
    ) {
        if !pax.is_empty() {
            let records: Vec<u8> = pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut header = tar::Header::new_ustar();
            let pax_name = match name.rsplit_once('/') {
                Some((dir, file)) => format!("{dir}/PaxHeaders/{file}"),
                None => format!("PaxHeaders/{name}"),
            };
            header
                .set_path(&pax_name[..pax_name.len().min(99)])
                .expect("pax name");
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_size(records.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(MTIME);
            header.set_cksum();
            self.builder.append(&header, &records[..]).expect("append");
        }
        let mut header = tar::Header::new_ustar();
        // Raw bytes, so tests can write unsafe names such as `../escape`.
        let raw = header.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username(owner.0).expect("uname");
        header.set_groupname(owner.1).expect("gname");
        header.set_mtime(MTIME);
        header.set_size(content.len() as u64);
        if let Some(target) = link {
            header.set_link_name(target).expect("link name");
        }
        header.set_cksum();
        self.builder.append(&header, content).expect("append");
    }

    /// The stream with its end-of-archive blocks.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish")
    }

    /// The stream without end-of-archive blocks (`abuild-tar --cut`).
    pub fn cut(self) -> Vec<u8> {
        let mut bytes = self.finish();
        bytes.truncate(bytes.len() - 1024);
        bytes
    }
}

/// gzip as `gzip -n -9`: no name, mtime 0.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// A signature member: one `.SIGN.<alg>.<key>` entry, cut, gzipped.
pub fn signature_member(alg: &str, key_name: &str, signature: &[u8]) -> Vec<u8> {
    let mut tar = TarOut::new();
    tar.entry(
        &format!(".SIGN.{alg}.{key_name}"),
        tar::EntryType::Regular,
        0o644,
        ("root", "root"),
        None,
        signature,
        &[],
    );
    gzip(&tar.cut())
}

/// The data tar of `spec` (PAX SHA-1 records on files and symlinks), with end-of-archive.
pub fn data_tar(spec: &PkgSpec) -> Vec<u8> {
    let mut tar = TarOut::new();
    for node in &spec.nodes {
        match node {
            Node::Dir(path, mode) => tar.entry(
                &format!("{path}/"),
                tar::EntryType::Directory,
                *mode,
                ("root", "root"),
                None,
                b"",
                &[],
            ),
            Node::OwnedDir(path, mode, user, group) => tar.entry(
                &format!("{path}/"),
                tar::EntryType::Directory,
                *mode,
                (user, group),
                None,
                b"",
                &[],
            ),
            Node::File(path, content, mode) => {
                file_entry(&mut tar, path, content, *mode, ("root", "root"))
            }
            Node::OwnedFile(path, content, mode, user, group) => {
                file_entry(&mut tar, path, content, *mode, (user, group))
            }
            Node::Symlink(path, target) => tar.entry(
                path,
                tar::EntryType::Symlink,
                0o777,
                ("root", "root"),
                Some(target),
                b"",
                &[(
                    "APK-TOOLS.checksum.SHA1",
                    hex::encode(Sha1::digest(target.as_bytes())),
                )],
            ),
        }
    }
    tar.finish()
}

fn file_entry(tar: &mut TarOut, path: &str, content: &str, mode: u32, owner: (&str, &str)) {
    tar.entry(
        path,
        tar::EntryType::Regular,
        mode,
        owner,
        None,
        content.as_bytes(),
        &[(
            "APK-TOOLS.checksum.SHA1",
            hex::encode(Sha1::digest(content.as_bytes())),
        )],
    );
}

/// The `.PKGINFO` of `spec` with `datahash`.
pub fn pkginfo(spec: &PkgSpec, installed_size: u64, datahash: &str) -> String {
    let mut out = format!(
        "# Generated by the kiln test fixture\npkgname = {}\npkgver = {}\npkgdesc = {} test package\nurl = https://alpine.example/{}\nbuilddate = {MTIME}\nsize = {installed_size}\narch = {}\norigin = {}\nlicense = MIT\n",
        spec.name,
        spec.version,
        spec.name,
        spec.name,
        spec.arch(),
        spec.name
    );
    for r in &spec.replaces {
        out.push_str(&format!("replaces = {r}\n"));
    }
    for d in &spec.depends {
        out.push_str(&format!("depend = {d}\n"));
    }
    for p in &spec.provides {
        out.push_str(&format!("provides = {p}\n"));
    }
    if let Some(t) = spec.triggers {
        out.push_str(&format!("triggers = {t}\n"));
    }
    out.push_str(&format!("datahash = {datahash}\n"));
    out
}

/// Builds `spec` into an `.apk`, data member `data_gz` (normally `gzip(&data_tar(spec))`),
/// signed by `key`.
pub fn build_apk_with_data(spec: &PkgSpec, data_gz: Vec<u8>, key: &TestKey) -> BuiltPackage {
    let installed_size: u64 = spec
        .nodes
        .iter()
        .map(|n| match n {
            Node::File(_, c, _) | Node::OwnedFile(_, c, _, _, _) => c.len() as u64,
            _ => 0,
        })
        .sum::<u64>()
        .max(1);
    let datahash = hex::encode(sha2::Sha256::digest(&data_gz));
    let mut control = TarOut::new();
    let info = pkginfo(spec, installed_size, &datahash);
    control.entry(
        ".PKGINFO",
        tar::EntryType::Regular,
        0o644,
        ("root", "root"),
        None,
        info.as_bytes(),
        &[],
    );
    for (name, text) in &spec.scripts {
        control.entry(
            name,
            tar::EntryType::Regular,
            0o755,
            ("root", "root"),
            None,
            text.as_bytes(),
            &[],
        );
    }
    let control_gz = gzip(&control.cut());
    let sig = signature_member("RSA", &key.name, &key.sign_sha1(&control_gz));
    let mut bytes = sig.clone();
    bytes.extend_from_slice(&control_gz);
    bytes.extend_from_slice(&data_gz);
    BuiltPackage {
        spec: spec.clone(),
        control: sig.len()..sig.len() + control_gz.len(),
        checksum: q1(&control_gz),
        datahash,
        installed_size,
        bytes,
    }
}

/// Builds `spec` signed with the test key.
pub fn build_apk(spec: &PkgSpec) -> BuiltPackage {
    build_apk_with_data(spec, gzip(&data_tar(spec)), test_key())
}

/// A signed `APKINDEX.tar.gz` for `records` (index text without the final blank line each).
pub fn build_index(records: &[String], key: &TestKey, alg: &str) -> Vec<u8> {
    let mut text = String::new();
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    let mut tar = TarOut::new();
    tar.entry(
        "DESCRIPTION",
        tar::EntryType::Regular,
        0o644,
        ("root", "root"),
        None,
        b"kiln-fixture-1",
        &[],
    );
    tar.entry(
        "APKINDEX",
        tar::EntryType::Regular,
        0o644,
        ("root", "root"),
        None,
        text.as_bytes(),
        &[],
    );
    let body = gzip(&tar.finish());
    let signature = match alg {
        "RSA256" => key.sign_sha256(&body),
        _ => key.sign_sha1(&body),
    };
    let mut out = signature_member(alg, &key.name, &signature);
    out.extend_from_slice(&body);
    out
}

fn hello(version: &'static str) -> PkgSpec {
    let old = version == "1.0-r0";
    let mut nodes = vec![
        Node::Dir("etc", 0o755),
        Node::File(
            "etc/hello.conf",
            if old {
                "greeting=hello\n"
            } else {
                "greeting=hello\nloud=yes\n"
            },
            0o644,
        ),
        Node::Dir("usr", 0o755),
        Node::Dir("usr/bin", 0o755),
        Node::File(
            "usr/bin/hello",
            if old {
                "#!/bin/sh\necho hello 1.0\n"
            } else {
                "#!/bin/sh\necho hello 1.1\n"
            },
            0o755,
        ),
        Node::Symlink("usr/bin/hi", "hello"),
        Node::Dir("usr/share", 0o755),
        Node::Dir("usr/share/hello", 0o755),
    ];
    if old {
        nodes.push(Node::File("usr/share/hello/old.txt", "old\n", 0o644));
    } else {
        nodes.push(Node::File("usr/share/hello/new.txt", "new\n", 0o644));
    }
    PkgSpec {
        name: "hello",
        version,
        depends: vec![if old {
            "so:libgreet.so.1"
        } else {
            "libgreet>=1.1"
        }],
        provides: vec![if old {
            "cmd:hello=1.0-r0"
        } else {
            "cmd:hello=1.1-r0"
        }],
        scripts: vec![(".post-upgrade", "#!/bin/sh\necho upgraded\n")],
        nodes,
        ..PkgSpec::default()
    }
}

fn libgreet(version: &'static str) -> PkgSpec {
    PkgSpec {
        name: "libgreet",
        version,
        provides: vec!["so:libgreet.so.1=1"],
        nodes: vec![
            Node::Dir("usr", 0o755),
            Node::Dir("usr/lib", 0o755),
            Node::File(
                "usr/lib/libgreet.so.1",
                if version == "1.0-r0" {
                    "libgreet 1.0\n"
                } else {
                    "libgreet 1.1\n"
                },
                0o755,
            ),
        ],
        ..PkgSpec::default()
    }
}

/// Every package spec of the repository.
pub fn specs() -> Vec<PkgSpec> {
    vec![
        hello("1.0-r0"),
        hello("1.1-r0"),
        libgreet("1.0-r0"),
        libgreet("1.1-r0"),
        PkgSpec {
            name: "greeter",
            version: "2.0-r0",
            depends: vec!["hello"],
            scripts: vec![(
                ".pre-install",
                "#!/bin/sh\naddgroup -S greeter\nadduser -S -D -H -h /var/lib/greeter -s /sbin/nologin -G greeter greeter\n",
            )],
            triggers: Some("/usr/share/greeter/*"),
            nodes: vec![
                Node::Dir("var", 0o755),
                Node::Dir("var/lib", 0o755),
                Node::OwnedDir("var/lib/greeter", 0o750, "greeter", "greeter"),
                Node::OwnedFile(
                    "var/lib/greeter/state",
                    "fresh\n",
                    0o640,
                    "greeter",
                    "greeter",
                ),
                Node::File("var/lib/greeter/.keep_greeter", "", 0o644),
            ],
            ..PkgSpec::default()
        },
        PkgSpec {
            name: "hello-extra",
            version: "1.0-r0",
            depends: vec!["hello"],
            replaces: vec!["hello"],
            nodes: vec![
                Node::Dir("usr", 0o755),
                Node::Dir("usr/share", 0o755),
                Node::Dir("usr/share/hello", 0o755),
                Node::File("usr/share/hello/new.txt", "extra\n", 0o644),
            ],
            ..PkgSpec::default()
        },
        PkgSpec {
            name: "breaker",
            version: "1.0-r0",
            depends: vec!["hello<1.0"],
            nodes: vec![
                Node::Dir("opt", 0o755),
                Node::File("opt/breaker", "x\n", 0o644),
            ],
            ..PkgSpec::default()
        },
    ]
}

/// The fixture: a repository directory, the lower rootfs, the built packages.
pub struct ApkFixture {
    /// Owns every file below.
    pub dir: tempfile::TempDir,
    /// The repository base (holds `x86_64/APKINDEX.tar.gz` and the `.apk` files).
    pub repo: PathBuf,
    /// Packages by `name-version`.
    pub packages: BTreeMap<String, BuiltPackage>,
    /// The lower rootfs.
    pub lower: Diff,
    /// The architecture of the packages, the repository and the rootfs (`x86_64`, `aarch64`).
    pub arch: &'static str,
    /// The `installed` db text of the lower rootfs.
    pub installed: String,
}

impl ApkFixture {
    /// The package `id` (`hello-1.1-r0`).
    pub fn package(&self, id: &str) -> &BuiltPackage {
        self.packages
            .get(id)
            .unwrap_or_else(|| panic!("no fixture package {id}"))
    }

    /// Path of the index.
    pub fn index_path(&self) -> PathBuf {
        self.repo.join(self.arch).join("APKINDEX.tar.gz")
    }
}

/// Writes `packages` and their index, signed with [`test_key`], as the repository `repo`
/// (`repo/<arch>/...`, the packages' architecture).
pub fn write_repository(repo: &Path, packages: &[&BuiltPackage]) {
    let arch = packages.first().map_or(ARCH, |p| p.spec.arch());
    std::fs::create_dir_all(repo.join(arch)).expect("repo dir");
    let mut records = Vec::new();
    for package in packages {
        std::fs::write(
            repo.join(arch).join(format!("{}.apk", package.id())),
            &package.bytes,
        )
        .expect("write apk");
        records.push(package.index_record());
    }
    std::fs::write(
        repo.join(arch).join("APKINDEX.tar.gz"),
        build_index(&records, test_key(), "RSA"),
    )
    .expect("index");
}

fn meta(mode: u32) -> Metadata {
    Metadata {
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME as i64,
        xattrs: BTreeMap::new(),
    }
}

fn put_file(diff: &mut Diff, path: &str, content: &[u8], mode: u32) {
    diff.insert(
        LayerPath::new(path).expect("path"),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(content))),
            meta: meta(mode),
        },
    );
}

fn put(diff: &mut Diff, path: &str, kind: EntryKind, mode: u32) {
    diff.insert(
        LayerPath::new(path).expect("path"),
        Entry {
            kind,
            meta: meta(mode),
        },
    );
}

/// The installed-db record of `pkg`, written by hand in apk-tools' order.
pub fn installed_record(pkg: &BuiltPackage) -> String {
    let mut out = pkg.index_record();
    if !pkg.spec.replaces.is_empty() {
        out.push_str(&format!("r:{}\n", pkg.spec.replaces.join(" ")));
    }
    let mut current_dir: Option<String> = None;
    let mut dir_line = |out: &mut String, dir: &str| {
        if current_dir.as_deref() != Some(dir) {
            out.push_str(&format!("F:{dir}\n"));
            current_dir = Some(dir.to_owned());
        }
    };
    for node in &pkg.spec.nodes {
        match node {
            Node::Dir(path, mode) => {
                dir_line(&mut out, path);
                if *mode != 0o755 {
                    out.push_str(&format!("M:0:0:{mode:o}\n"));
                }
            }
            Node::OwnedDir(..) | Node::OwnedFile(..) => {
                panic!("the lower db lists root-owned packages only")
            }
            Node::File(path, content, mode) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                if name.starts_with(".keep_") {
                    continue;
                }
                dir_line(&mut out, dir);
                out.push_str(&format!("R:{name}\n"));
                if *mode != 0o644 {
                    out.push_str(&format!("a:0:0:{mode:o}\n"));
                }
                out.push_str(&format!("Z:{}\n", q1(content.as_bytes())));
            }
            Node::Symlink(path, target) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                dir_line(&mut out, dir);
                out.push_str(&format!(
                    "R:{name}\na:0:0:777\nZ:{}\n",
                    q1(target.as_bytes())
                ));
            }
        }
    }
    out
}

/// The busybox record of the lower db (not in the repository: "no longer available").
pub const BUSYBOX_RECORD: &str = "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:busybox\nV:1.36.1-r0\nA:x86_64\nS:1\nI:1\nT:Size optimized toolbox\nU:https://busybox.example/\nL:GPL-2.0-only\no:busybox\nt:1700000000\np:/bin/sh cmd:busybox=1.36.1-r0 cmd:sh=1.36.1-r0\nF:bin\nR:busybox\na:0:0:755\nZ:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nR:sh\na:0:0:777\nZ:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\n";

/// Builds the repository and the lower rootfs into a new temp dir.
pub fn fixture() -> ApkFixture {
    fixture_for(ARCH)
}

/// The fixture for the apk architecture `arch` (`x86_64`, `aarch64`): the same packages, signed
/// with the same key, built for `arch`, and a rootfs whose `/etc/apk/arch` and installed db
/// say it. Its `/bin/busybox` is the host's (the native steps never run it).
pub fn fixture_for(arch: &'static str) -> ApkFixture {
    let busybox = PathBuf::from("/bin/busybox");
    let bb_size = std::fs::metadata(&busybox)
        .unwrap_or_else(|e| {
            panic!(
                "busybox-static is required at /bin/busybox ({e}); apt-get install busybox-static"
            )
        })
        .len();
    let key = test_key();
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    let built: Vec<BuiltPackage> = specs()
        .into_iter()
        .map(|spec| {
            build_apk(&PkgSpec {
                arch: Some(arch),
                ..spec
            })
        })
        .collect();
    write_repository(&repo, &built.iter().collect::<Vec<_>>());
    let packages: BTreeMap<String, BuiltPackage> = built.into_iter().map(|p| (p.id(), p)).collect();

    let mut lower = Diff::new();
    for d in [
        "bin",
        "etc",
        "etc/apk",
        "etc/apk/keys",
        "lib",
        "lib/apk",
        "lib/apk/db",
        "sbin",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/share",
        "usr/share/hello",
        "var",
        "var/lib",
        "tmp",
    ] {
        put(
            &mut lower,
            d,
            EntryKind::Dir,
            if d == "tmp" { 0o1777 } else { 0o755 },
        );
    }
    lower.insert(
        LayerPath::new("bin/busybox").expect("path"),
        Entry {
            kind: EntryKind::File(FileContent::HostFile {
                path: busybox,
                size: bb_size,
                stamp: None,
            }),
            meta: meta(0o755),
        },
    );
    for applet in [
        "bin/sh",
        "bin/ls",
        "bin/cat",
        "sbin/adduser",
        "sbin/addgroup",
    ] {
        put(
            &mut lower,
            applet,
            EntryKind::Symlink("/bin/busybox".into()),
            0o777,
        );
    }
    put_file(&mut lower, "etc/os-release", b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\nPRETTY_NAME=\"Alpine Linux v3.20\"\n", 0o644);
    put_file(
        &mut lower,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        0o644,
    );
    put_file(
        &mut lower,
        "etc/group",
        b"root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\n",
        0o644,
    );
    put_file(
        &mut lower,
        "etc/shadow",
        b"root:*::0:::::\nnobody:!::0:::::\n",
        0o640,
    );
    put_file(
        &mut lower,
        &format!("etc/apk/keys/{}", key.name),
        key.public_pem.as_bytes(),
        0o644,
    );
    let repo_line = format!("# fixture repository\n{}\n", repo.display());
    put_file(
        &mut lower,
        "etc/apk/repositories",
        repo_line.as_bytes(),
        0o644,
    );
    put_file(
        &mut lower,
        "etc/apk/arch",
        format!("{arch}\n").as_bytes(),
        0o644,
    );
    put_file(&mut lower, "etc/apk/world", b"busybox\nhello\n", 0o644);
    put_file(&mut lower, "lib/apk/db/lock", b"", 0o600);
    put_file(&mut lower, "lib/apk/db/triggers", b"", 0o644);

    // The installed versions' files, with /etc/hello.conf modified by the user.
    let mut installed = String::new();
    installed.push_str(&BUSYBOX_RECORD.replace("A:x86_64", &format!("A:{arch}")));
    installed.push('\n');
    for id in ["hello-1.0-r0", "libgreet-1.0-r0"] {
        let pkg = &packages[id];
        installed.push_str(&installed_record(pkg));
        installed.push('\n');
        for node in &pkg.spec.nodes {
            match node {
                Node::Dir(path, mode) => put(&mut lower, path, EntryKind::Dir, *mode),
                Node::File(path, content, mode) => {
                    put_file(&mut lower, path, content.as_bytes(), *mode)
                }
                Node::Symlink(path, target) => put(
                    &mut lower,
                    path,
                    EntryKind::Symlink((*target).into()),
                    0o777,
                ),
                _ => {}
            }
        }
    }
    put_file(&mut lower, "etc/hello.conf", b"greeting=howdy\n", 0o644);
    put_file(
        &mut lower,
        "lib/apk/db/installed",
        installed.as_bytes(),
        0o644,
    );
    put_file(
        &mut lower,
        "lib/apk/db/scripts.tar",
        &scripts_tar(&packages["hello-1.0-r0"]),
        0o644,
    );
    ApkFixture {
        dir,
        repo,
        packages,
        lower,
        installed,
        arch,
    }
}

/// The lower's scripts.tar: hello-1.0-r0's `.post-upgrade`.
fn scripts_tar(hello: &BuiltPackage) -> Vec<u8> {
    let mut tar = TarOut::new();
    for (name, text) in &hello.spec.scripts {
        let member = format!(
            "hello-1.0-r0.{}.{}",
            hello.checksum,
            name.trim_start_matches('.')
        );
        tar.entry(
            &member,
            tar::EntryType::Regular,
            0o755,
            ("root", "root"),
            None,
            text.as_bytes(),
            &[],
        );
    }
    tar.finish()
}
