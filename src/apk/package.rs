//! A v2 `.apk` package file (apk.md §1): split into signature, control and data gzip members
//! by raw byte ranges, verified, and read into a [`Package`]: its `.PKGINFO` ([`PkgInfo`]), its
//! scripts, and its data entries ([`DataEntry`]) with content and SHA-1.
//!
//! Trust ([`Trust`]) comes either from a verified index (`C:` must equal SHA-1 of the raw
//! control member: apk's `APK_SIGN_VERIFY_IDENTITY`), or from the package's own signature
//! checked against a [`Keyring`] (a local file). Either way the chain continues: `datahash`
//! from the trusted `.PKGINFO` must equal SHA-256 of the raw bytes after the control member,
//! and each data file's content (a symlink's target) must match its PAX
//! `APK-TOOLS.checksum.SHA1` record. Entry names go through [`crate::layer::reader`], so an
//! entry escaping the root is refused, naming the package and the entry. Packages without
//! `datahash` (legacy) are identified and signed over control and data together.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::checksum::{Checksum, sha256_hex};
use super::index::{Provide, parse_deps, parse_provides};
use super::signed::{Keyring, SignedArchive, tar_entries};
use super::{ApkError, PackageConstraint};
use crate::layer::reader::{ReaderError, TarEntry, TarKind, read_entries};
use crate::layer::{LayerPath, Metadata};

/// What vouches for a package.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// The `C:` of a verified index entry.
    Index(Checksum),
    /// The package's own `.SIGN.*` entry, against these keys.
    Signature(&'a Keyring),
}

/// The `.PKGINFO` of a package (apk.md §1.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PkgInfo {
    /// Every `key = value` line in order (repeated keys repeat).
    pub fields: Vec<(String, String)>,
    /// `pkgname`
    pub name: String,
    /// `pkgver`
    pub version: String,
    /// `arch`
    pub arch: Option<String>,
    /// `origin`
    pub origin: Option<String>,
    /// `size` (installed size)
    pub size: u64,
    /// `datahash`: lowercase hex SHA-256 of the data member.
    pub datahash: Option<String>,
    /// `depend` lines.
    pub depends: Vec<PackageConstraint>,
    /// `provides` lines.
    pub provides: Vec<Provide>,
    /// `replaces` lines.
    pub replaces: Vec<PackageConstraint>,
    /// `replaces_priority`
    pub replaces_priority: Option<i64>,
    /// `provider_priority`
    pub provider_priority: Option<i64>,
    /// `install_if`
    pub install_if: Vec<PackageConstraint>,
    /// `triggers`: absolute directory globs.
    pub triggers: Vec<String>,
}

impl PkgInfo {
    /// Parses `.PKGINFO` text; `package` names the file in errors. Lines without ` = ` and
    /// `#` comments are skipped, as apk skips them.
    pub fn parse(text: &str, package: &str) -> Result<PkgInfo, ApkError> {
        let mut info = PkgInfo::default();
        let file = format!("{package}: .PKGINFO");
        for (idx, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            let bad = |message: String| ApkError::Malformed {
                file: file.clone(),
                line: idx + 1,
                message,
            };
            let number = || {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad(format!("`{key} = {value}` is not a number")))
            };
            match key {
                "pkgname" => info.name = value.to_owned(),
                "pkgver" => info.version = value.to_owned(),
                "arch" => info.arch = Some(value.to_owned()),
                "origin" => info.origin = Some(value.to_owned()),
                "size" => info.size = u64::try_from(number()?).unwrap_or(0),
                "datahash" => info.datahash = Some(value.trim().to_ascii_lowercase()),
                "depend" => info.depends.extend(parse_deps(value).map_err(bad)?),
                "provides" => info.provides.extend(parse_provides(value)),
                "replaces" => info.replaces.extend(parse_deps(value).map_err(bad)?),
                "replaces_priority" => info.replaces_priority = Some(number()?),
                "provider_priority" => info.provider_priority = Some(number()?),
                "install_if" => info.install_if.extend(parse_deps(value).map_err(bad)?),
                "triggers" => info
                    .triggers
                    .extend(value.split_whitespace().map(str::to_owned)),
                _ => {}
            }
            info.fields.push((key.to_owned(), value.to_owned()));
        }
        if info.name.is_empty() || info.version.is_empty() {
            return Err(ApkError::Malformed {
                file,
                line: 0,
                message: "pkgname or pkgver is missing".into(),
            });
        }
        Ok(info)
    }
}

/// One data entry of a package, confined to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataEntry {
    /// Normalized path.
    pub path: LayerPath,
    /// What it is.
    pub kind: TarKind,
    /// Mode, numeric owner, mtime, xattrs as in the tar header.
    pub meta: Metadata,
    /// The tar `uname` (apk resolves owners by name against the target's /etc/passwd).
    pub uname: Option<String>,
    /// The tar `gname`.
    pub gname: Option<String>,
    /// SHA-1 of a file's content or a symlink's target (what the db records as `Z:`).
    pub checksum: Option<Checksum>,
    /// A regular file's content.
    pub content: Option<Arc<[u8]>>,
}

/// A verified package.
#[derive(Clone, Debug)]
pub struct Package {
    /// The file name or URL, for messages.
    pub file: String,
    /// Its identity: SHA-1 of the raw control member (legacy: control and data).
    pub checksum: Checksum,
    /// SHA-256 of the whole file (for provenance materials).
    pub sha256: String,
    /// `.PKGINFO`
    pub info: PkgInfo,
    /// Scripts by action (`pre-install`, `post-upgrade`, `trigger`, ...).
    pub scripts: BTreeMap<String, Arc<[u8]>>,
    /// Data entries in archive order (top-level dot names and `.keep_*` files left out).
    pub entries: Vec<DataEntry>,
    /// The key that verified it, for [`Trust::Signature`].
    pub signed_by: Option<String>,
}

/// Per-entry facts the reader does not expose: PAX checksum records and owner names.
#[derive(Default)]
struct RawFacts {
    sha1: Option<String>,
    md5: bool,
    uname: Option<String>,
    gname: Option<String>,
}

fn raw_facts(tar_bytes: &[u8], package: &str) -> Result<Vec<RawFacts>, ApkError> {
    let io_err = |source: std::io::Error| ApkError::Tar {
        archive: package.to_owned(),
        source: Box::new(ReaderError::Read {
            archive: package.to_owned(),
            entry: None,
            source,
        }),
    };
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        let mut facts = RawFacts {
            uname: entry
                .header()
                .username()
                .ok()
                .flatten()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            gname: entry
                .header()
                .groupname()
                .ok()
                .flatten()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            ..RawFacts::default()
        };
        if let Some(pax) = entry.pax_extensions().map_err(io_err)? {
            for ext in pax {
                let ext = ext.map_err(io_err)?;
                match (ext.key(), ext.value()) {
                    (Ok("APK-TOOLS.checksum.SHA1"), Ok(v)) => facts.sha1 = Some(v.to_owned()),
                    (Ok("APK-TOOLS.checksum.MD5"), _) => facts.md5 = true,
                    (Ok("uname"), Ok(v)) => facts.uname = Some(v.to_owned()),
                    (Ok("gname"), Ok(v)) => facts.gname = Some(v.to_owned()),
                    _ => {}
                }
            }
        }
        out.push(facts);
    }
    Ok(out)
}

impl Package {
    /// Verifies and reads a package file (see the module docs). `file` names it in errors.
    pub fn open(bytes: &[u8], file: &str, trust: Trust<'_>) -> Result<Package, ApkError> {
        let archive = SignedArchive::open(bytes, file)?;
        let control =
            archive
                .members
                .get(archive.content_start)
                .ok_or_else(|| ApkError::Missing {
                    archive: file.to_owned(),
                    what: "the control member (.PKGINFO)".into(),
                })?;
        let mut pkginfo = None;
        let mut scripts = BTreeMap::new();
        for (entry, content) in tar_entries(&control.tar, file)? {
            let name = entry.path.as_str();
            if name == ".PKGINFO" {
                let text = String::from_utf8(content).map_err(|_| ApkError::Malformed {
                    file: format!("{file}: .PKGINFO"),
                    line: 0,
                    message: "not UTF-8".into(),
                })?;
                pkginfo = Some(PkgInfo::parse(&text, file)?);
            } else if let Some(action) = name.strip_prefix('.') {
                if !action.starts_with("SIGN.") {
                    scripts.insert(action.to_owned(), Arc::from(content));
                }
            }
        }
        let info = pkginfo.ok_or_else(|| ApkError::Missing {
            archive: file.to_owned(),
            what: ".PKGINFO in the control member".into(),
        })?;
        let shown = format!("{}-{} ({file})", info.name, info.version);
        let data_start = control.range.end;
        // The identity covers the control member, or (legacy) everything after the signature.
        let identity_bytes = match info.datahash {
            Some(_) => &bytes[control.range.clone()],
            None => &bytes[control.range.start..],
        };
        let checksum = Checksum::sha1_of(identity_bytes);
        let signed_by = match trust {
            Trust::Index(expected) => {
                if expected != checksum {
                    return Err(ApkError::ChecksumMismatch {
                        package: shown,
                        what: "control member SHA-1 vs index C:".into(),
                        expected: expected.q1(),
                        actual: checksum.q1(),
                    });
                }
                None
            }
            Trust::Signature(keyring) => Some(archive.verify(keyring, identity_bytes, &shown)?),
        };
        if let Some(expected) = &info.datahash {
            let actual = sha256_hex(&bytes[data_start..]);
            if *expected != actual {
                return Err(ApkError::ChecksumMismatch {
                    package: shown,
                    what: "datahash (SHA-256 of the data member)".into(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let mut data_tar = Vec::new();
        for member in &archive.members[archive.content_start + 1..] {
            data_tar.extend_from_slice(&member.tar);
        }
        let entries = read_data(&data_tar, &shown)?;
        Ok(Package {
            file: file.to_owned(),
            checksum,
            sha256: sha256_hex(bytes),
            info,
            scripts,
            entries,
            signed_by,
        })
    }

    /// `name-version`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.info.name, self.info.version)
    }
}

/// Reads the data tar: names confined by the reader, apk's skip rules, content checksums.
fn read_data(tar_bytes: &[u8], package: &str) -> Result<Vec<DataEntry>, ApkError> {
    let facts = raw_facts(tar_bytes, package)?;
    let mut entries = Vec::new();
    let result = read_entries(
        tar_bytes,
        package,
        |entry: TarEntry, content: &mut dyn Read| {
            let fact = facts.get(entry.ordinal as usize);
            let name = entry.path.as_str().to_owned();
            // apk ignores top-level dot names and `.keep_*` files.
            if name.starts_with('.') || entry.path.file_name().starts_with(".keep_") {
                return Ok(ControlFlow::Continue(()));
            }
            if entry.path.is_root() {
                return Ok(ControlFlow::Continue(()));
            }
            let mut data = None;
            let computed = match &entry.kind {
                TarKind::File => {
                    let mut bytes = Vec::new();
                    content.read_to_end(&mut bytes).map_err(|source| {
                        EntryErr::Reader(ReaderError::Read {
                            archive: package.to_owned(),
                            entry: Some(name.clone()),
                            source,
                        })
                    })?;
                    let sum = Checksum::sha1_of(&bytes);
                    data = Some(Arc::from(bytes));
                    Some(sum)
                }
                TarKind::Symlink(target) => Some(Checksum::sha1_of(target.as_bytes())),
                _ => None,
            };
            if let (Some(actual), Some(fact)) = (computed, fact) {
                match &fact.sha1 {
                    Some(recorded) => {
                        let expected = Checksum::parse(recorded).map_err(|_| {
                            EntryErr::Apk(ApkError::UnsafeEntry {
                                package: package.to_owned(),
                                entry: name.clone(),
                                reason: format!("malformed APK-TOOLS.checksum.SHA1 `{recorded}`"),
                            })
                        })?;
                        if expected != actual {
                            return Err(EntryErr::Apk(ApkError::FileChecksum {
                                package: package.to_owned(),
                                entry: name,
                                expected: expected.hex(),
                                actual: actual.hex(),
                            }));
                        }
                    }
                    None if fact.md5 => {
                        return Err(EntryErr::Apk(ApkError::Unsupported(format!(
                            "package `{package}`: MD5 file checksums (entry `{name}`)"
                        ))));
                    }
                    None => {}
                }
            }
            entries.push(DataEntry {
                path: entry.path,
                kind: entry.kind,
                meta: entry.meta,
                uname: fact.and_then(|f| f.uname.clone()),
                gname: fact.and_then(|f| f.gname.clone()),
                checksum: computed,
                content: data,
            });
            Ok(ControlFlow::Continue(()))
        },
    );
    match result {
        Ok(()) => Ok(entries),
        Err(EntryErr::Apk(err)) => Err(err),
        Err(EntryErr::Reader(err)) => Err(reader_to_apk(err, package)),
    }
}

enum EntryErr {
    Apk(ApkError),
    Reader(ReaderError),
}

impl From<ReaderError> for EntryErr {
    fn from(err: ReaderError) -> EntryErr {
        EntryErr::Reader(err)
    }
}

/// Unsafe names become [`ApkError::UnsafeEntry`] naming the package and the entry.
fn reader_to_apk(err: ReaderError, package: &str) -> ApkError {
    match err {
        ReaderError::UnsafeName { entry, source, .. } => ApkError::UnsafeEntry {
            package: package.to_owned(),
            entry,
            reason: source.to_string(),
        },
        ReaderError::UnsafeLink {
            entry,
            target,
            source,
            ..
        } => ApkError::UnsafeEntry {
            package: package.to_owned(),
            entry,
            reason: format!("hard link target `{target}`: {source}"),
        },
        other => ApkError::Tar {
            archive: package.to_owned(),
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkginfo_lines() {
        let text = "# Generated by abuild\npkgname = hello\npkgver = 1.0-r0\narch = noarch\n\
                    size = 12\ndepend = so:libc.musl-x86_64.so.1\ndepend = /bin/sh\n\
                    provides = cmd:hello=1.0-r0\nreplaces = other\nreplaces_priority = 5\n\
                    triggers = /usr/bin /usr/share/hello/*\nbogus line\ndatahash = ABC\n";
        let info = PkgInfo::parse(text, "hello.apk").expect("parses");
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            ("hello", "1.0-r0")
        );
        assert_eq!(info.depends.len(), 2);
        assert_eq!(info.provides[0].version.as_deref(), Some("1.0-r0"));
        assert_eq!(info.replaces[0].name, "other");
        assert_eq!(info.replaces_priority, Some(5));
        assert_eq!(info.triggers, ["/usr/bin", "/usr/share/hello/*"]);
        assert_eq!(info.datahash.as_deref(), Some("abc"));
        let err = PkgInfo::parse("pkgname = x\n", "x.apk").expect_err("no version");
        assert!(err.to_string().contains("x.apk: .PKGINFO"), "{err}");
        let err =
            PkgInfo::parse("pkgname = x\npkgver = 1\nsize = big\n", "x.apk").expect_err("size");
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
