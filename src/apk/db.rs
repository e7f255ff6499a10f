//! The installed-package state apk keeps in the image (apk.md §3): `/lib/apk/db/installed`
//! ([`InstalledDb`]), `/etc/apk/world` ([`parse_world`], [`write_world`]),
//! `/lib/apk/db/scripts.tar` ([`ScriptsTar`]) and `/lib/apk/db/triggers` ([`parse_triggers`],
//! [`write_triggers`]).
//!
//! The installed database is read with apk-tools 2.14's rules (a line that is not
//! `<letter>:` refuses the file; `F:` needs `P:`, `M:`/`R:` need `F:`, `a:`/`Z:` need `R:`; an
//! unknown letter after the first installed-only line is fatal) and written in its order:
//! each package's header lines as read (or apk's `C P V A S I T U L o m t c k D p i` for new
//! packages), then `r q s f`, then `F`/`M`/`R`/`a`/`Z`, a blank line after each package, so a
//! database kiln did not change is written back byte for byte.

use std::collections::BTreeMap;

use super::checksum::Checksum;
use super::index::{PackageInfo, Record, parse_records, write_records};
use super::{ApkError, PackageConstraint};

/// Owner and mode of a directory (`M:`) or file (`a:`), with the xattr checksum if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// `Q1` checksum of the xattrs, if any.
    pub xattrs: Option<String>,
}

impl Acl {
    fn parse(value: &str) -> Option<Acl> {
        let mut parts = value.splitn(4, ':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
        let xattrs = parts.next().map(str::to_owned);
        Some(Acl {
            uid,
            gid,
            mode,
            xattrs,
        })
    }

    fn write(&self) -> String {
        match &self.xattrs {
            Some(x) => format!("{}:{}:{:o}:{x}", self.uid, self.gid, self.mode),
            None => format!("{}:{}:{:o}", self.uid, self.gid, self.mode),
        }
    }
}

/// One file of a package (`R:` + optional `a:` and `Z:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbFile {
    /// The basename.
    pub name: String,
    /// Owner and mode when not `0:0:644`.
    pub acl: Option<Acl>,
    /// `Z:` content checksum as written (`Q1...`).
    pub checksum: Option<String>,
}

/// One directory of a package (`F:` + optional `M:`) and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbDir {
    /// Path relative to `/`, no leading or trailing slash; empty for the root.
    pub path: String,
    /// Owner and mode when not `0:0:755`.
    pub acl: Option<Acl>,
    /// Files in archive order.
    pub files: Vec<DbFile>,
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Header lines exactly as read (or generated from [`InstalledPackage::info`]).
    pub header: Vec<(char, String)>,
    /// The typed header.
    pub info: PackageInfo,
    /// `r:` as written.
    pub replaces: Option<String>,
    /// `q:`
    pub replaces_priority: Option<i64>,
    /// `s:` repository tag.
    pub tag: Option<String>,
    /// `f:` broken-state flags.
    pub flags: Option<String>,
    /// `F:` directories with their files.
    pub dirs: Vec<DbDir>,
}

impl InstalledPackage {
    /// A record for a newly installed package: header from `info`, no files yet.
    pub fn new(info: PackageInfo) -> InstalledPackage {
        InstalledPackage {
            header: info.header_fields(),
            info,
            replaces: None,
            replaces_priority: None,
            tag: None,
            flags: None,
            dirs: Vec::new(),
        }
    }

    /// The `replaces` constraints.
    pub fn replaces_list(&self) -> Vec<PackageConstraint> {
        self.replaces
            .as_deref()
            .map(|r| {
                r.split_whitespace()
                    .filter_map(|d| PackageConstraint::parse(d).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every file path (relative, `dir/name`) the package owns, with its db entry.
    pub fn files(&self) -> impl Iterator<Item = (String, &DbFile)> {
        self.dirs.iter().flat_map(|dir| {
            dir.files.iter().map(move |f| {
                let path = if dir.path.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}/{}", dir.path, f.name)
                };
                (path, f)
            })
        })
    }

    fn lines(&self) -> Vec<(char, String)> {
        let mut out = self.header.clone();
        if let Some(r) = &self.replaces {
            out.push(('r', r.clone()));
        }
        if let Some(q) = self.replaces_priority {
            out.push(('q', q.to_string()));
        }
        if let Some(s) = &self.tag {
            out.push(('s', s.clone()));
        }
        if let Some(f) = &self.flags {
            out.push(('f', f.clone()));
        }
        for dir in &self.dirs {
            out.push(('F', dir.path.clone()));
            if let Some(acl) = &dir.acl {
                out.push(('M', acl.write()));
            }
            for file in &dir.files {
                out.push(('R', file.name.clone()));
                if let Some(acl) = &file.acl {
                    out.push(('a', acl.write()));
                }
                if let Some(z) = &file.checksum {
                    out.push(('Z', z.clone()));
                }
            }
        }
        out
    }
}

/// `/lib/apk/db/installed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstalledDb {
    /// Packages in file order.
    pub packages: Vec<InstalledPackage>,
}

impl InstalledDb {
    /// Parses the database with apk-tools 2.14's rules; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<InstalledDb, ApkError> {
        let mut packages = Vec::new();
        for record in parse_records(text, file)? {
            packages.push(parse_package(&record, file)?);
        }
        Ok(InstalledDb { packages })
    }

    /// The database text.
    pub fn write(&self) -> String {
        let lines: Vec<Vec<(char, String)>> = self.packages.iter().map(|p| p.lines()).collect();
        write_records(lines.iter().map(Vec::as_slice))
    }

    /// Sorts packages as apk writes them: by name case-insensitively, then case-sensitively,
    /// then by version.
    pub fn sort(&mut self) {
        self.packages.sort_by(|a, b| {
            a.info
                .name
                .to_ascii_lowercase()
                .cmp(&b.info.name.to_ascii_lowercase())
                .then_with(|| a.info.name.cmp(&b.info.name))
                .then_with(|| super::version::compare(&a.info.version, &b.info.version))
        });
    }

    /// The package named `name`.
    pub fn get(&self, name: &str) -> Option<&InstalledPackage> {
        self.packages.iter().find(|p| p.info.name == name)
    }

    /// Which package owns each file path.
    pub fn owners(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for pkg in &self.packages {
            for (path, _) in pkg.files() {
                out.insert(path, pkg.info.name.clone());
            }
        }
        out
    }
}

fn parse_package(record: &Record, file: &str) -> Result<InstalledPackage, ApkError> {
    let info = PackageInfo::from_record(record, file)?;
    let mut pkg = InstalledPackage {
        header: Vec::new(),
        info,
        replaces: None,
        replaces_priority: None,
        tag: None,
        flags: None,
        dirs: Vec::new(),
    };
    let mut installed_part = false;
    let mut seen_name = false;
    for (offset, (letter, value)) in record.fields.iter().enumerate() {
        let line = record.line + offset;
        let fail = |message: String| ApkError::Malformed {
            file: file.to_owned(),
            line,
            message: format!("package `{}`: {message}", pkg.info.id()),
        };
        let is_installed_letter =
            matches!(letter, 'r' | 'q' | 's' | 'f' | 'F' | 'M' | 'R' | 'a' | 'Z');
        if !is_installed_letter {
            if installed_part {
                return Err(fail(format!(
                    "`{letter}:` after the file list (apk-tools refuses the database)"
                )));
            }
            if *letter == 'P' {
                seen_name = true;
            }
            pkg.header.push((*letter, value.clone()));
            continue;
        }
        if !seen_name {
            return Err(fail(format!("`{letter}:` before `P:`")));
        }
        installed_part = true;
        match letter {
            'r' => pkg.replaces = Some(value.clone()),
            'q' => {
                pkg.replaces_priority = Some(
                    value
                        .parse()
                        .map_err(|_| fail(format!("`q:{value}` is not a number")))?,
                )
            }
            's' => pkg.tag = Some(value.clone()),
            'f' => pkg.flags = Some(value.clone()),
            'F' => pkg.dirs.push(DbDir {
                path: value.clone(),
                acl: None,
                files: Vec::new(),
            }),
            'M' => {
                let acl = Acl::parse(value).ok_or_else(|| fail(format!("bad `M:{value}`")))?;
                let dir = pkg
                    .dirs
                    .last_mut()
                    .ok_or_else(|| fail("`M:` without a preceding `F:`".into()))?;
                dir.acl = Some(acl);
            }
            'R' => {
                let dir = pkg
                    .dirs
                    .last_mut()
                    .ok_or_else(|| fail("`R:` without a preceding `F:`".into()))?;
                dir.files.push(DbFile {
                    name: value.clone(),
                    acl: None,
                    checksum: None,
                });
            }
            'a' | 'Z' => {
                let file_entry = pkg
                    .dirs
                    .last_mut()
                    .and_then(|d| d.files.last_mut())
                    .ok_or_else(|| fail(format!("`{letter}:` without a preceding `R:`")))?;
                if *letter == 'a' {
                    file_entry.acl =
                        Some(Acl::parse(value).ok_or_else(|| fail(format!("bad `a:{value}`")))?);
                } else {
                    file_entry.checksum = Some(value.clone());
                }
            }
            _ => {}
        }
    }
    Ok(pkg)
}

/// Parses `/etc/apk/world`: one constraint per whitespace-separated word.
pub fn parse_world(text: &str, file: &str) -> Result<Vec<PackageConstraint>, ApkError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        for word in line.split_whitespace() {
            out.push(
                PackageConstraint::parse(word).map_err(|e| ApkError::Malformed {
                    file: file.to_owned(),
                    line: idx + 1,
                    message: e.to_string(),
                })?,
            );
        }
    }
    Ok(out)
}

/// Writes world as apk does: sorted by name case-insensitively, one per line.
pub fn write_world(world: &[PackageConstraint]) -> String {
    let mut sorted: Vec<&PackageConstraint> = world.iter().collect();
    sorted.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
            .then_with(|| a.name.cmp(&b.name))
    });
    sorted.iter().map(|c| format!("{c}\n")).collect()
}

/// `/lib/apk/db/triggers`: the package checksum and its directory globs, one line each.
pub fn parse_triggers(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let sum = words.next()?.to_owned();
            Some((sum, words.map(str::to_owned).collect()))
        })
        .collect()
}

/// Writes the triggers file.
pub fn write_triggers(lines: &[(String, Vec<String>)]) -> String {
    lines
        .iter()
        .map(|(sum, globs)| format!("{sum} {}\n", globs.join(" ")))
        .collect()
}

/// One stored script of `scripts.tar`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredScript {
    /// `name-version` as in the member name (informative only).
    pub package: String,
    /// The package checksum from the member name, as written (`Q1...` or `X1...`).
    pub checksum: String,
    /// `pre-install`, `post-upgrade`, `trigger`, ...
    pub action: String,
    /// The script.
    pub content: Vec<u8>,
    /// The member's mtime (the package's build time).
    pub mtime: u64,
}

impl StoredScript {
    /// The package identity the script belongs to.
    pub fn identity(&self) -> Option<Checksum> {
        Checksum::parse(&self.checksum).ok()
    }
}

/// `/lib/apk/db/scripts.tar`: an uncompressed tar of every installed package's scripts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptsTar {
    /// Members in order.
    pub scripts: Vec<StoredScript>,
}

impl ScriptsTar {
    /// Reads the tar; member names split on their last two dots. `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<ScriptsTar, ApkError> {
        let bad = |message: String| ApkError::Malformed {
            file: file.to_owned(),
            line: 0,
            message,
        };
        let mut scripts = Vec::new();
        let mut archive = tar::Archive::new(bytes);
        let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mtime = entry.header().mtime().unwrap_or(0);
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content)
                .map_err(|e| bad(format!("member `{name}`: {e}")))?;
            let Some((rest, action)) = name.rsplit_once('.') else {
                return Err(bad(format!(
                    "member `{name}` is not `<pkg>.<checksum>.<action>`"
                )));
            };
            let Some((package, checksum)) = rest.rsplit_once('.') else {
                return Err(bad(format!(
                    "member `{name}` is not `<pkg>.<checksum>.<action>`"
                )));
            };
            scripts.push(StoredScript {
                package: package.to_owned(),
                checksum: checksum.to_owned(),
                action: action.to_owned(),
                content,
                mtime,
            });
        }
        Ok(ScriptsTar { scripts })
    }

    /// Writes the tar as apk-tools 2 does: GNU-magic ustar headers, mode 0755, root-owned,
    /// the name only in the 100-byte field (longer `name-version` prefixes are truncated as apk
    /// truncates them), two zero blocks at the end.
    pub fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for script in &self.scripts {
            let suffix = format!(".{}.{}", script.checksum, script.action);
            let room = 100usize.saturating_sub(suffix.len());
            let prefix: String = script.package.chars().take(room).collect();
            let name = format!("{prefix}{suffix}");
            let mut header = tar::Header::new_gnu();
            let bytes = name.as_bytes();
            let len = bytes.len().min(100);
            header.as_old_mut().name[..len].copy_from_slice(&bytes[..len]);
            header.set_mode(0o755);
            header.set_uid(0);
            header.set_gid(0);
            // Names are ASCII and short: these cannot fail.
            let _ = header.set_username("root");
            let _ = header.set_groupname("root");
            header.set_mtime(script.mtime);
            header.set_size(script.content.len() as u64);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&script.content);
            let pad = (512 - script.content.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-format database: header order, r:, M:, a:, Z:, a root-level file, a package
    /// with no files.
    const INSTALLED: &str = "C:Q18icY63eF1rbxu8NE/NtYT79X7xA=\nP:busybox\nV:1.36.1-r29\nA:x86_64\n\
S:507904\nI:950272\nT:Size optimized toolbox of many common UNIX utilities\n\
U:https://busybox.example/\nL:GPL-2.0-only\no:busybox\nm:Someone <someone@example.org>\n\
t:1718000000\nc:0123456789abcdef0123456789abcdef01234567\nD:so:libc.musl-x86_64.so.1\n\
p:/bin/sh cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29\nr:busybox-initscripts\nF:bin\nR:busybox\n\
a:0:0:755\nZ:Q1zL5UvYHXiRW25nLPdfDxhnhQBr8=\nR:sh\na:0:0:777\nZ:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\n\
F:etc\nR:securetty\nZ:Q1KyGHOOv3Tt5KxHV64sIbFgFt0u4=\nF:tmp\nM:0:0:1777\nF:usr\nF:usr/sbin\nF:var\n\
F:var/cache\nF:var/cache/misc\n\n\
C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:.build-deps\nV:20240101.101010\nA:noarch\nS:0\nI:0\n\
T:virtual meta package\nU:\nL:\nD:gcc musl-dev\n\n\
C:Q1KyGHOOv3Tt5KxHV64sIbFgFt0u4=\nP:rootfile\nV:1-r0\nA:x86_64\nS:1\nI:1\nT:\nU:\nL:\nq:10\n\
F:\nR:.profile\na:1000:1000:600\nZ:Q1KyGHOOv3Tt5KxHV64sIbFgFt0u4=\n\n";

    #[test]
    fn installed_round_trips_byte_for_byte() {
        let db = InstalledDb::parse(INSTALLED, "installed").expect("parses");
        assert_eq!(db.packages.len(), 3);
        let bb = &db.packages[0];
        assert_eq!(bb.replaces.as_deref(), Some("busybox-initscripts"));
        assert_eq!(bb.dirs.len(), 8);
        assert_eq!(bb.dirs[2].acl.as_ref().map(|a| a.mode), Some(0o1777));
        let files: Vec<String> = bb.files().map(|(p, _)| p).collect();
        assert_eq!(files, ["bin/busybox", "bin/sh", "etc/securetty"]);
        assert_eq!(
            db.packages[2].files().next().map(|(p, _)| p).as_deref(),
            Some(".profile")
        );
        assert_eq!(db.packages[2].replaces_priority, Some(10));
        assert_eq!(db.write(), INSTALLED);
        let mut sorted = db.clone();
        sorted.sort();
        let names: Vec<&str> = sorted
            .packages
            .iter()
            .map(|p| p.info.name.as_str())
            .collect();
        assert_eq!(names, [".build-deps", "busybox", "rootfile"]);
        assert_eq!(
            db.owners().get("bin/sh").map(String::as_str),
            Some("busybox")
        );
    }

    #[test]
    fn installed_format_errors() {
        let head = "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:x\nV:1\n";
        for (tail, needle) in [
            (
                "R:file\n",
                "line 4: package `x-1`: `R:` without a preceding `F:`",
            ),
            (
                "F:etc\nZ:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\n",
                "`Z:` without a preceding `R:`",
            ),
            ("M:0:0:755\n", "`M:` without a preceding `F:`"),
            ("F:etc\ng:tag\n", "`g:` after the file list"),
            ("F:etc\nM:0:0:9z\n", "bad `M:0:0:9z`"),
            ("q:high\n", "`q:high` is not a number"),
        ] {
            let text = format!("{head}{tail}");
            let err = InstalledDb::parse(&text, "installed")
                .expect_err(tail)
                .to_string();
            assert!(err.contains(needle), "{tail:?}: {err}");
        }
        let err = InstalledDb::parse(
            "C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nF:etc\nP:x\nV:1\n",
            "installed",
        )
        .expect_err("F before P")
        .to_string();
        assert!(err.contains("`F:` before `P:`"), "{err}");
    }

    #[test]
    fn world_and_triggers() {
        let world =
            parse_world("zlib\nBusybox\nalpine-baselayout>=3\n!bad\n", "world").expect("world");
        assert_eq!(
            write_world(&world),
            "alpine-baselayout>=3\n!bad\nBusybox\nzlib\n"
        );
        let lines = parse_triggers("Q1abc= /bin /usr/bin\n\nQ1def= /lib/modules/*\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(
            write_triggers(&lines),
            "Q1abc= /bin /usr/bin\nQ1def= /lib/modules/*\n"
        );
    }

    #[test]
    fn scripts_tar_round_trips() {
        let tar = ScriptsTar {
            scripts: vec![StoredScript {
                package: "busybox-1.36.1-r29".into(),
                checksum: "Q1pcfTfDNEbNKQc2s1tia7da05M8Q=".into(),
                action: "post-upgrade".into(),
                content: b"#!/bin/sh\nexit 0\n".to_vec(),
                mtime: 1_718_000_000,
            }],
        };
        let bytes = tar.write();
        assert_eq!(bytes.len(), 512 + 512 + 1024);
        assert_eq!(&bytes[257..265], b"ustar  \0");
        let back = ScriptsTar::parse(&bytes, "scripts.tar").expect("parses");
        assert_eq!(back, tar);
        assert_eq!(back.write(), bytes);
        assert!(back.scripts[0].identity().is_some());
    }
}
