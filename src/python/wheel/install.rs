//! [`install_wheel`]: one wheel read member by member, checked against its RECORD and the
//! caller's sha256, and laid out in a Diff (see the parent module for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::python::tags::{Compatibility, WheelFilename};

use super::error::WheelError;
use super::names::{normalize_expected, normalize_name, record_hash};
use super::record::{check_member_name, csv_field, parse_csv_line, relative};
use super::scheme::{InstallOptions, InstalledWheel, Requested, join};
use super::scripts::{launcher_script, rewrite_shebang, scripts_from_entry_points};
use super::sink::Sink;

/// What `INSTALLER` says. pip writes `pip`; kiln names itself so the tree says who wrote it.
pub const INSTALLER: &str = "kiln";

/// Installs the wheel at `wheel` (which must hash to `expected_sha256`) as `options` say.
pub fn install_wheel(
    wheel: &Path,
    expected_sha256: &str,
    options: &InstallOptions<'_>,
) -> Result<InstalledWheel, WheelError> {
    let file_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let filename = WheelFilename::parse(&file_name).map_err(|source| WheelError::Filename {
        path: wheel.to_owned(),
        source,
    })?;
    if let Compatibility::Incompatible(reason) = options.tags.compatibility(&filename) {
        return Err(WheelError::Incompatible {
            wheel: file_name,
            reason,
        });
    }
    let read_err = |member: Option<String>| {
        let wheel = file_name.clone();
        move |e: std::io::Error| WheelError::Read {
            wheel,
            member,
            source: Box::new(e),
        }
    };
    // 1. The archive's own hash.
    let mut hasher = Sha256::new();
    let mut reader = BufReader::new(File::open(wheel).map_err(read_err(None))?);
    std::io::copy(&mut reader, &mut HashWriter(&mut hasher)).map_err(read_err(None))?;
    let actual = hex::encode(hasher.finalize());
    let expected = normalize_expected(expected_sha256);
    if actual != expected {
        return Err(WheelError::HashMismatch {
            package: filename.name.clone(),
            wheel: file_name,
            expected,
            actual,
        });
    }
    let file = File::open(wheel).map_err(read_err(None))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| WheelError::Read {
        wheel: file_name.clone(),
        member: None,
        source: Box::new(e),
    })?;
    let mut installer = Installer {
        wheel: file_name.clone(),
        filename,
        options,
        diff: Diff::new(),
        rows: Vec::new(),
        dirs: BTreeSet::new(),
    };
    let dist_info = installer.run(&mut archive)?;
    Ok(InstalledWheel {
        name: installer.filename.name.clone(),
        version: installer.filename.version.clone(),
        dist_info,
        sha256: actual,
        diff: installer.diff,
    })
}

struct HashWriter<'a, D: sha2::Digest>(&'a mut D);

impl<D: sha2::Digest> Write for HashWriter<'_, D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One RECORD row of the wheel: `hash` is `algo=b64` or empty.
struct RecordRow {
    hash: String,
    size: Option<u64>,
}

struct Installer<'a, 'o> {
    wheel: String,
    filename: WheelFilename,
    options: &'a InstallOptions<'o>,
    diff: Diff,
    /// Installed RECORD rows: (path relative to lib dir, hash, size).
    rows: Vec<(String, String, String)>,
    dirs: BTreeSet<LayerPath>,
}

type Archive = zip::ZipArchive<BufReader<File>>;

/// Where a member goes.
enum Dest {
    File(LayerPath),
    Script(LayerPath),
}

impl Installer<'_, '_> {
    fn invalid(&self, problem: impl Into<String>) -> WheelError {
        WheelError::Invalid {
            wheel: self.wheel.clone(),
            problem: problem.into(),
        }
    }

    fn run(&mut self, archive: &mut Archive) -> Result<LayerPath, WheelError> {
        let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
        for name in &names {
            check_member_name(name).map_err(|problem| WheelError::UnsafePath {
                wheel: self.wheel.clone(),
                member: name.clone(),
                problem,
            })?;
        }
        let info_dir = self.find_dist_info(&names)?;
        let data_dir = format!(
            "{}.data",
            info_dir.strip_suffix(".dist-info").unwrap_or(&info_dir)
        );
        let wheel_meta = self.read_small(archive, &format!("{info_dir}/WHEEL"))?;
        let root_is_purelib = self.check_wheel_file(&wheel_meta)?;
        let record_bytes = self.read_small(archive, &format!("{info_dir}/RECORD"))?;
        let record = self.parse_record(&record_bytes)?;
        let lib_dir = if root_is_purelib {
            self.options.scheme.purelib.clone()
        } else {
            self.options.scheme.platlib.clone()
        };
        let skip: BTreeSet<String> = ["RECORD", "RECORD.jws", "RECORD.p7s"]
            .iter()
            .map(|f| format!("{info_dir}/{f}"))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        for name in &sorted {
            if name.ends_with('/') || skip.contains(name) {
                continue;
            }
            let dest = self.destination(name, &data_dir, &lib_dir)?;
            let Some(row) = record.get(name.as_str()) else {
                return Err(WheelError::Record {
                    wheel: self.wheel.clone(),
                    member: name.clone(),
                    problem: "it is not listed in RECORD".to_owned(),
                });
            };
            self.install_member(archive, name, row, dest, &lib_dir)?;
        }
        let info_path = join(&lib_dir, &info_dir)?;
        self.write_entry_points(archive, &names, &info_dir, &lib_dir)?;
        self.add_generated(
            &join(&info_path, "INSTALLER")?,
            format!("{INSTALLER}\n").into_bytes(),
            0o644,
            &lib_dir,
        )?;
        if self.options.requested == Requested::Yes {
            self.add_generated(&join(&info_path, "REQUESTED")?, Vec::new(), 0o644, &lib_dir)?;
        }
        let record_path = join(&info_path, "RECORD")?;
        self.rows.push((
            relative(&record_path, &lib_dir),
            String::new(),
            String::new(),
        ));
        self.rows.sort();
        self.rows.dedup();
        let mut text = String::new();
        for (path, hash, size) in &self.rows {
            text.push_str(&csv_field(path));
            text.push(',');
            text.push_str(&csv_field(hash));
            text.push(',');
            text.push_str(&csv_field(size));
            text.push_str("\r\n");
        }
        self.put_file(
            &record_path,
            FileContent::Bytes(text.into_bytes().into()),
            0o644,
        );
        self.add_dirs();
        Ok(info_path)
    }

    fn find_dist_info(&self, names: &[String]) -> Result<String, WheelError> {
        let mut found: BTreeSet<&str> = BTreeSet::new();
        for name in names {
            let top = name.split('/').next().unwrap_or_default();
            if top.ends_with(".dist-info") && name.len() > top.len() {
                found.insert(top);
            }
        }
        let mut found = found.into_iter();
        let (Some(info), None) = (found.next(), found.next()) else {
            return Err(self.invalid("expected exactly one top-level `.dist-info` directory"));
        };
        let stem = info.strip_suffix(".dist-info").unwrap_or(info);
        let name = stem.rsplit_once('-').map(|(n, _)| n).unwrap_or(stem);
        if normalize_name(name) != normalize_name(&self.filename.name) {
            return Err(self.invalid(format!(
                "`{info}` does not belong to `{}` (the name in the file name)",
                self.filename.name
            )));
        }
        Ok(info.to_owned())
    }

    fn read_small(&self, archive: &mut Archive, member: &str) -> Result<Vec<u8>, WheelError> {
        let mut entry = archive
            .by_name(member)
            .map_err(|_| self.invalid(format!("`{member}` is missing")))?;
        let mut bytes = Vec::new();
        (&mut entry)
            .take(16 * 1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| WheelError::Read {
                wheel: self.wheel.clone(),
                member: Some(member.to_owned()),
                source: Box::new(e),
            })?;
        Ok(bytes)
    }

    /// Checks `Wheel-Version` and returns `Root-Is-Purelib`.
    fn check_wheel_file(&self, bytes: &[u8]) -> Result<bool, WheelError> {
        let text = String::from_utf8_lossy(bytes);
        let field = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_owned())
            })
        };
        let version =
            field("Wheel-Version").ok_or_else(|| self.invalid("WHEEL has no `Wheel-Version`"))?;
        let major = version.split('.').next().unwrap_or_default();
        if major != "1" {
            return Err(self.invalid(format!(
                "Wheel-Version {version} is not supported (kiln installs 1.x)"
            )));
        }
        Ok(field("Root-Is-Purelib").is_some_and(|v| v.eq_ignore_ascii_case("true")))
    }

    fn parse_record(&self, bytes: &[u8]) -> Result<BTreeMap<String, RecordRow>, WheelError> {
        let text = std::str::from_utf8(bytes).map_err(|_| self.invalid("RECORD is not UTF-8"))?;
        let mut out = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields = parse_csv_line(line)
                .ok_or_else(|| self.invalid(format!("RECORD line {} is not CSV", index + 1)))?;
            let [path, hash, size] = fields.as_slice() else {
                return Err(self.invalid(format!(
                    "RECORD line {} has {} fields, expected 3",
                    index + 1,
                    fields.len()
                )));
            };
            let size = if size.is_empty() {
                None
            } else {
                Some(size.parse().map_err(|_| {
                    self.invalid(format!("RECORD line {}: bad size `{size}`", index + 1))
                })?)
            };
            out.insert(
                path.clone(),
                RecordRow {
                    hash: hash.clone(),
                    size,
                },
            );
        }
        Ok(out)
    }

    fn destination(
        &self,
        name: &str,
        data_dir: &str,
        lib_dir: &LayerPath,
    ) -> Result<Dest, WheelError> {
        let unsafe_path = |problem| WheelError::UnsafePath {
            wheel: self.wheel.clone(),
            member: name.to_owned(),
            problem,
        };
        let Some(rest) = name
            .strip_prefix(data_dir)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Ok(Dest::File(join(lib_dir, name)?));
        };
        let (key, inner) = rest
            .split_once('/')
            .filter(|(_, inner)| !inner.is_empty())
            .ok_or_else(|| unsafe_path("a `.data` member must be inside one of its scheme keys"))?;
        let scheme = self.options.scheme;
        Ok(match key {
            "purelib" => Dest::File(join(&scheme.purelib, inner)?),
            "platlib" => Dest::File(join(&scheme.platlib, inner)?),
            "data" => Dest::File(join(&scheme.data, inner)?),
            "headers" => Dest::File(join(&join(&scheme.headers, &self.filename.name)?, inner)?),
            "scripts" => {
                if inner.contains('/') {
                    return Err(unsafe_path("`.data/scripts` may hold only plain files"));
                }
                Dest::Script(join(&scheme.scripts, inner)?)
            }
            _ => {
                return Err(unsafe_path(
                    "unknown `.data` key (expected purelib, platlib, scripts, headers or data)",
                ));
            }
        })
    }

    fn install_member(
        &mut self,
        archive: &mut Archive,
        name: &str,
        row: &RecordRow,
        dest: Dest,
        lib_dir: &LayerPath,
    ) -> Result<(), WheelError> {
        let wheel = self.wheel.clone();
        let mut entry = archive.by_name(name).map_err(|e| WheelError::Read {
            wheel: wheel.clone(),
            member: Some(name.to_owned()),
            source: Box::new(e),
        })?;
        let unix_mode = entry.unix_mode();
        if unix_mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(WheelError::UnsafePath {
                wheel,
                member: name.to_owned(),
                problem: "symbolic links are not allowed in wheels",
            });
        }
        let mode = if unix_mode.is_some_and(|m| m & 0o111 != 0) {
            0o755
        } else {
            0o644
        };
        let (algo, want) = row.hash.split_once('=').unwrap_or(("", ""));
        let mut hasher: Box<dyn sha2::digest::DynDigest> = match algo {
            "sha256" => Box::new(Sha256::new()),
            "sha384" => Box::new(Sha384::new()),
            "sha512" => Box::new(Sha512::new()),
            "" => {
                return Err(WheelError::Record {
                    wheel,
                    member: name.to_owned(),
                    problem: "RECORD gives it no hash".to_owned(),
                });
            }
            other => {
                return Err(WheelError::Record {
                    wheel,
                    member: name.to_owned(),
                    problem: format!(
                        "hash algorithm `{other}` is too weak or unknown (sha256 or better is required)"
                    ),
                });
            }
        };
        let read_err = |e: std::io::Error| WheelError::Read {
            wheel: wheel.clone(),
            member: Some(name.to_owned()),
            source: Box::new(e),
        };
        let mut sink = Sink::new(self.options.scratch, entry.size());
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
            sink.write(&buf[..n])
                .map_err(|source| WheelError::Scratch {
                    wheel: wheel.clone(),
                    dir: self.options.scratch.to_owned(),
                    source,
                })?;
        }
        let got = URL_SAFE_NO_PAD.encode(hasher.finalize());
        if got != want.trim_end_matches('=') {
            return Err(WheelError::Record {
                wheel,
                member: name.to_owned(),
                problem: format!("RECORD says {algo}={want}, the content hashes to {algo}={got}"),
            });
        }
        if let Some(expected) = row.size {
            if expected != size {
                return Err(WheelError::Record {
                    wheel,
                    member: name.to_owned(),
                    problem: format!("RECORD says {expected} bytes, the member has {size}"),
                });
            }
        }
        let content = sink.finish().map_err(|source| WheelError::Scratch {
            wheel: wheel.clone(),
            dir: self.options.scratch.to_owned(),
            source,
        })?;
        let (path, content, hash) = match dest {
            Dest::File(path) => (path, content, row.hash.clone()),
            Dest::Script(path) => {
                match rewrite_shebang(&content, self.options.interpreter).map_err(read_err)? {
                    Some(bytes) => {
                        let hash = record_hash(&bytes);
                        size = bytes.len() as u64;
                        (path, FileContent::Bytes(bytes.into()), hash)
                    }
                    None => (path, content, row.hash.clone()),
                }
            }
        };
        self.rows
            .push((relative(&path, lib_dir), hash, size.to_string()));
        self.put_file(&path, content, mode);
        Ok(())
    }

    fn write_entry_points(
        &mut self,
        archive: &mut Archive,
        names: &[String],
        info_dir: &str,
        lib_dir: &LayerPath,
    ) -> Result<(), WheelError> {
        let member = format!("{info_dir}/entry_points.txt");
        if !names.contains(&member) {
            return Ok(());
        }
        let bytes = self.read_small(archive, &member)?;
        let text = String::from_utf8_lossy(&bytes);
        for (name, value) in scripts_from_entry_points(&text) {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(self.invalid(format!(
                    "entry_points.txt: script name `{name}` is not a plain file name"
                )));
            }
            let launcher = launcher_script(self.options.interpreter, &value).ok_or_else(|| {
                self.invalid(format!(
                    "entry_points.txt: invalid script entry point `{name} = {value}` (expected `module:function`)"
                ))
            })?;
            let path = join(&self.options.scheme.scripts, &name)?;
            self.add_generated(&path, launcher.into_bytes(), 0o755, lib_dir)?;
        }
        Ok(())
    }

    fn add_generated(
        &mut self,
        path: &LayerPath,
        bytes: Vec<u8>,
        mode: u32,
        lib_dir: &LayerPath,
    ) -> Result<(), WheelError> {
        self.rows.push((
            relative(path, lib_dir),
            record_hash(&bytes),
            bytes.len().to_string(),
        ));
        self.put_file(path, FileContent::Bytes(bytes.into()), mode);
        Ok(())
    }

    fn put_file(&mut self, path: &LayerPath, content: FileContent, mode: u32) {
        for ancestor in path.ancestors() {
            if ancestor.starts_with(&self.options.scheme.root) {
                self.dirs.insert(ancestor);
            }
        }
        let meta = self.meta(mode);
        self.diff.insert(
            path.clone(),
            Entry {
                kind: EntryKind::File(content),
                meta,
            },
        );
    }

    fn add_dirs(&mut self) {
        for dir in std::mem::take(&mut self.dirs) {
            let meta = self.meta(0o755);
            self.diff.insert(
                dir,
                Entry {
                    kind: EntryKind::Dir,
                    meta,
                },
            );
        }
    }

    fn meta(&self, mode: u32) -> Metadata {
        Metadata {
            mode,
            uid: self.options.owner.uid,
            gid: self.options.owner.gid,
            mtime: self.options.mtime,
            xattrs: BTreeMap::new(),
        }
    }
}
