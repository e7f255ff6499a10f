//! `APKINDEX.tar.gz`: a signed repository index (apk.md §2), and the `letter:value` record
//! syntax it shares with the installed database.
//!
//! [`Index::parse`] takes the raw file bytes, its URL or path (for messages) and a [`Keyring`]
//! (normally [`Keyring::from_view`] of the lower filesystem): it verifies the signature over
//! the raw bytes of every gzip member after the signature member(s), then reads `DESCRIPTION`
//! and `APKINDEX`. Each record becomes a [`PackageInfo`]; unknown lower-case letters are kept
//! and ignored, unknown upper-case letters make the package uninstallable (as apk does).

use super::checksum::Checksum;
use super::signed::{Keyring, SignedArchive, tar_entries};
use super::{ApkError, PackageConstraint};

/// One record: its `letter:value` lines in file order, and the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Line number of the first field.
    pub line: usize,
    /// The fields, in order.
    pub fields: Vec<(char, String)>,
}

/// Splits `text` into records with apk-tools' rules: a line shorter than 2 bytes ends a record;
/// every other line must have `:` as its second byte, else the whole file is refused.
pub fn parse_records(text: &str, file: &str) -> Result<Vec<Record>, ApkError> {
    let mut records = Vec::new();
    let mut current: Option<Record> = None;
    for (idx, line) in text.split('\n').enumerate() {
        if line.len() < 2 {
            if let Some(done) = current.take() {
                records.push(done);
            }
            continue;
        }
        let mut chars = line.chars();
        let letter = chars.next().unwrap_or(' ');
        if !letter.is_ascii_alphabetic() || line.as_bytes().get(1) != Some(&b':') {
            return Err(ApkError::Malformed {
                file: file.to_owned(),
                line: idx + 1,
                message: format!("expected `<letter>:<value>`, found `{}`", truncate(line)),
            });
        }
        let value = line[2..].to_owned();
        current
            .get_or_insert_with(|| Record {
                line: idx + 1,
                fields: Vec::new(),
            })
            .fields
            .push((letter, value));
    }
    if let Some(done) = current.take() {
        records.push(done);
    }
    Ok(records)
}

fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
}

/// A provided name, with the version it is provided at (`cmd:sh=1.36.1-r29`), or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provide {
    /// The provided name.
    pub name: String,
    /// The provided version; `None` for an unversioned provide.
    pub version: Option<String>,
}

impl std::fmt::Display for Provide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}={v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The package header fields shared by APKINDEX and the installed DB (apk.md §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// `C:` identity (SHA-1 of the control member).
    pub checksum: Checksum,
    /// `P:`
    pub name: String,
    /// `V:`
    pub version: String,
    /// `A:`
    pub arch: Option<String>,
    /// `S:` size of the .apk file.
    pub size: u64,
    /// `I:` installed size.
    pub installed_size: u64,
    /// `T:`
    pub description: String,
    /// `U:`
    pub url: String,
    /// `L:`
    pub license: String,
    /// `o:`
    pub origin: Option<String>,
    /// `m:`
    pub maintainer: Option<String>,
    /// `t:` build time.
    pub build_time: Option<i64>,
    /// `c:` commit.
    pub commit: Option<String>,
    /// `k:` provider priority.
    pub provider_priority: Option<i64>,
    /// `D:`
    pub depends: Vec<PackageConstraint>,
    /// `p:`
    pub provides: Vec<Provide>,
    /// `i:`
    pub install_if: Vec<PackageConstraint>,
    /// Unknown upper-case letters seen (the package is then not installable).
    pub unknown_upper: Vec<char>,
}

impl PackageInfo {
    /// `name-version`, as apk names a package.
    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Builds the typed header from a record's fields; fields this type does not model
    /// (installed-DB-only letters, unknown lower-case) are ignored here. `file` names the
    /// index or database in errors.
    pub fn from_record(record: &Record, file: &str) -> Result<PackageInfo, ApkError> {
        let bad = |message: String| ApkError::Malformed {
            file: file.to_owned(),
            line: record.line,
            message,
        };
        let mut checksum = None;
        let mut name = None;
        let mut version = None;
        let mut info = PackageInfo {
            checksum: Checksum([0; 20]),
            name: String::new(),
            version: String::new(),
            arch: None,
            size: 0,
            installed_size: 0,
            description: String::new(),
            url: String::new(),
            license: String::new(),
            origin: None,
            maintainer: None,
            build_time: None,
            commit: None,
            provider_priority: None,
            depends: Vec::new(),
            provides: Vec::new(),
            install_if: Vec::new(),
            unknown_upper: Vec::new(),
        };
        for (letter, value) in &record.fields {
            let number = |what: &str| -> Result<i64, ApkError> {
                value
                    .parse::<i64>()
                    .map_err(|_| bad(format!("{what} `{letter}:{value}` is not a number")))
            };
            match letter {
                'C' => {
                    checksum = Some(Checksum::parse(value).map_err(|e| bad(e.to_string()))?);
                }
                'P' => name = Some(value.clone()),
                'V' => {
                    if !super::version::is_valid(value) {
                        return Err(bad(format!("`V:{value}` is not a valid apk version")));
                    }
                    version = Some(value.clone());
                }
                'A' => info.arch = Some(value.clone()),
                'S' => {
                    info.size =
                        u64::try_from(number("size")?).map_err(|_| bad("negative size".into()))?
                }
                'I' => {
                    info.installed_size = u64::try_from(number("installed size")?)
                        .map_err(|_| bad("negative installed size".into()))?
                }
                'T' => info.description = value.clone(),
                'U' => info.url = value.clone(),
                'L' => info.license = value.clone(),
                'o' => info.origin = Some(value.clone()),
                'm' => info.maintainer = Some(value.clone()),
                't' => info.build_time = Some(number("build time")?),
                'c' => info.commit = Some(value.clone()),
                'k' => info.provider_priority = Some(number("provider priority")?),
                'D' => info.depends = parse_deps(value).map_err(bad)?,
                'i' => info.install_if = parse_deps(value).map_err(bad)?,
                'p' => info.provides = parse_provides(value),
                // Installed-DB letters, handled by the db module.
                'r' | 'q' | 's' | 'f' | 'F' | 'M' | 'R' | 'a' | 'Z' => {}
                other if other.is_ascii_uppercase() => info.unknown_upper.push(*other),
                _ => {}
            }
        }
        info.checksum = checksum.ok_or_else(|| bad("record has no `C:` checksum".into()))?;
        info.name = name.ok_or_else(|| bad("record has no `P:` name".into()))?;
        info.version =
            version.ok_or_else(|| bad(format!("package `{}` has no `V:` version", info.name)))?;
        Ok(info)
    }

    /// The header lines in apk-tools' write order (`C P V A S I T U L o m t c k D p i`).
    pub fn header_fields(&self) -> Vec<(char, String)> {
        let mut out = vec![
            ('C', self.checksum.q1()),
            ('P', self.name.clone()),
            ('V', self.version.clone()),
        ];
        if let Some(arch) = &self.arch {
            out.push(('A', arch.clone()));
        }
        out.push(('S', self.size.to_string()));
        out.push(('I', self.installed_size.to_string()));
        out.push(('T', self.description.clone()));
        out.push(('U', self.url.clone()));
        out.push(('L', self.license.clone()));
        for (letter, value) in [('o', &self.origin), ('m', &self.maintainer)] {
            if let Some(v) = value {
                out.push((letter, v.clone()));
            }
        }
        if let Some(t) = self.build_time.filter(|t| *t != 0) {
            out.push(('t', t.to_string()));
        }
        if let Some(c) = &self.commit {
            out.push(('c', c.clone()));
        }
        if let Some(k) = self.provider_priority.filter(|k| *k != 0) {
            out.push(('k', k.to_string()));
        }
        let join = |items: Vec<String>| items.join(" ");
        if !self.depends.is_empty() {
            out.push((
                'D',
                join(self.depends.iter().map(|d| d.to_string()).collect()),
            ));
        }
        if !self.provides.is_empty() {
            out.push((
                'p',
                join(self.provides.iter().map(|p| p.to_string()).collect()),
            ));
        }
        if !self.install_if.is_empty() {
            out.push((
                'i',
                join(self.install_if.iter().map(|d| d.to_string()).collect()),
            ));
        }
        out
    }
}

/// Parses a space-separated dependency list (`D:`, `i:`, `r:`, world).
pub fn parse_deps(value: &str) -> Result<Vec<PackageConstraint>, String> {
    value
        .split_whitespace()
        .map(|dep| PackageConstraint::parse(dep).map_err(|e| e.to_string()))
        .collect()
}

/// Parses a space-separated provides list (`p:`): `name` or `name=version`.
pub fn parse_provides(value: &str) -> Vec<Provide> {
    value
        .split_whitespace()
        .map(|item| match item.split_once('=') {
            Some((name, version)) => Provide {
                name: name.to_owned(),
                version: Some(version.to_owned()),
            },
            None => Provide {
                name: item.to_owned(),
                version: None,
            },
        })
        .collect()
}

/// A verified, parsed repository index.
#[derive(Clone, Debug)]
pub struct Index {
    /// Where it came from (URL or path), for messages and materials.
    pub source: String,
    /// The `DESCRIPTION` entry, if any (`v3.20.3-123-g0123abcd`).
    pub description: Option<String>,
    /// The key file that verified it.
    pub signed_by: String,
    /// The packages, in index order.
    pub packages: Vec<PackageInfo>,
}

impl Index {
    /// Verifies and parses an `APKINDEX.tar.gz` (see the module docs).
    pub fn parse(bytes: &[u8], source: &str, keyring: &Keyring) -> Result<Index, ApkError> {
        Index::read(bytes, source, Some(keyring))
    }

    /// Parses an index kiln verified before it cached it, without verifying it again (for
    /// exporting the cache; whoever reads the export verifies it with their own keys).
    pub fn parse_verified_earlier(bytes: &[u8], source: &str) -> Result<Index, ApkError> {
        Index::read(bytes, source, None)
    }

    fn read(bytes: &[u8], source: &str, keyring: Option<&Keyring>) -> Result<Index, ApkError> {
        let archive = SignedArchive::open(bytes, source)?;
        let Some(first) = archive.members.get(archive.content_start) else {
            return Err(ApkError::Missing {
                archive: source.to_owned(),
                what: "the APKINDEX member after the signature".into(),
            });
        };
        let signed_by = match keyring {
            Some(keyring) => archive.verify(keyring, &bytes[first.range.start..], source)?,
            None => String::new(),
        };
        let mut tar = Vec::new();
        for member in &archive.members[archive.content_start..] {
            tar.extend_from_slice(&member.tar);
        }
        let mut description = None;
        let mut text = None;
        for (entry, content) in tar_entries(&tar, source)? {
            match entry.path.as_str() {
                "DESCRIPTION" => {
                    description = Some(String::from_utf8_lossy(&content).trim_end().to_owned())
                }
                "APKINDEX" => {
                    text = Some(String::from_utf8(content).map_err(|_| ApkError::Malformed {
                        file: format!("{source}: APKINDEX"),
                        line: 0,
                        message: "not UTF-8".into(),
                    })?)
                }
                other => {
                    return Err(ApkError::Malformed {
                        file: source.to_owned(),
                        line: 0,
                        message: format!("unexpected entry `{other}` in the index"),
                    });
                }
            }
        }
        let Some(text) = text else {
            return Err(ApkError::Missing {
                archive: source.to_owned(),
                what: "the APKINDEX entry".into(),
            });
        };
        let file = format!("{source}: APKINDEX");
        let packages = parse_records(&text, &file)?
            .iter()
            .map(|record| PackageInfo::from_record(record, &file))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Index {
            source: source.to_owned(),
            description,
            signed_by,
            packages,
        })
    }
}

/// Writes records as apk does: `letter:value` lines, each record followed by a blank line.
pub fn write_records<'a>(records: impl IntoIterator<Item = &'a [(char, String)]>) -> String {
    let mut out = String::new();
    for fields in records {
        for (letter, value) in fields {
            out.push(*letter);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:busybox\nV:1.36.1-r29\nA:x86_64\n\
S:507904\nI:950272\nT:Size optimized toolbox\nU:https://busybox.example/\nL:GPL-2.0-only\n\
o:busybox\nm:Someone <someone@example.org>\nt:1718000000\nc:0123abcd\n\
D:so:libc.musl-x86_64.so.1\np:/bin/sh cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29\n\n\
C:Q1zL5UvYHXiRW25nLPdfDxhnhQBr8=\nP:empty\nV:1.0-r0\nS:1\nI:0\nT:\nU:\nL:\n\n";

    #[test]
    fn records_and_fields() {
        let records = parse_records(SAMPLE, "APKINDEX").expect("parses");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].line, 17);
        let bb = PackageInfo::from_record(&records[0], "APKINDEX").expect("busybox");
        assert_eq!(bb.id(), "busybox-1.36.1-r29");
        assert_eq!(bb.checksum.q1(), "Q1pcfTfDNEbNKQc2s1tia7da05M8Q=");
        assert_eq!(bb.depends[0].name, "so:libc.musl-x86_64.so.1");
        assert_eq!(
            bb.provides,
            [
                Provide {
                    name: "/bin/sh".into(),
                    version: None
                },
                Provide {
                    name: "cmd:busybox".into(),
                    version: Some("1.36.1-r29".into())
                },
                Provide {
                    name: "cmd:sh".into(),
                    version: Some("1.36.1-r29".into())
                },
            ]
        );
        assert_eq!(bb.build_time, Some(1_718_000_000));
        let empty = PackageInfo::from_record(&records[1], "APKINDEX").expect("empty");
        assert_eq!(empty.url, "");
        // The typed header writes back exactly the lines read (apk's order).
        let back: Vec<String> = records
            .iter()
            .map(|r| {
                let info = PackageInfo::from_record(r, "APKINDEX").expect("parses");
                write_records([info.header_fields().as_slice()])
            })
            .collect();
        assert_eq!(back.concat(), SAMPLE);
    }

    #[test]
    fn malformed_table() {
        for (text, needle) in [
            (
                "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nPbusybox\n",
                "line 2: expected `<letter>:<value>`",
            ),
            ("P:x\nV:1.0\n", "line 1: record has no `C:` checksum"),
            ("C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nV:1.0\n", "no `P:` name"),
            (
                "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\n",
                "package `x` has no `V:` version",
            ),
            (
                "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\nV:1.0_bogus\n",
                "not a valid apk version",
            ),
            ("C:Q1short\nP:x\nV:1\n", "not an apk SHA-1 checksum"),
            (
                "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\nV:1\nS:big\n",
                "size `S:big` is not a number",
            ),
            (
                "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\nV:1\nD:a=\n",
                "has an operator but no version",
            ),
        ] {
            let err = parse_records(text, "idx")
                .and_then(|records| {
                    records
                        .iter()
                        .map(|r| PackageInfo::from_record(r, "idx"))
                        .collect::<Result<Vec<_>, _>>()
                })
                .expect_err(text)
                .to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(err.starts_with("`idx`"), "{err}");
        }
    }

    #[test]
    fn unknown_letters() {
        let text = "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\nV:1\nz:ext\nG:new\n";
        let records = parse_records(text, "idx").expect("parses");
        let info = PackageInfo::from_record(&records[0], "idx").expect("typed");
        assert_eq!(info.unknown_upper, ['G']);
    }
}
