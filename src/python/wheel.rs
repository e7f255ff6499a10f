//! Installs one wheel into a [`Diff`], following the binary distribution format spec (PEP 427)
//! and what pip does, without touching the host outside a caller-given scratch directory.
//!
//! [`install_wheel`] takes a wheel file on the host, the sha256 it must have, and an
//! [`InstallOptions`] (the [`Scheme`], the target interpreter, tags, owner, time, scratch dir),
//! and returns an [`InstalledWheel`] holding one Diff:
//!
//! 1. The file name must be a wheel compatible with the target's [`Tags`] (an sdist is refused:
//!    kiln installs wheels only), and the file's sha256 must match.
//! 2. Every archive member must be named safely (no absolute path, no `..`, no symlink), be
//!    listed in the wheel's `RECORD`, and hash to what `RECORD` says: a RECORD that lies fails
//!    the install.
//! 3. The archive root goes to purelib or platlib (`Root-Is-Purelib`), and
//!    `{name}-{version}.data/{purelib,platlib,scripts,headers,data}/` to the scheme's paths.
//!    Scripts whose first line starts with `#!python` get `#!<target interpreter>`.
//! 4. `console_scripts`/`gui_scripts` entry points become launchers with pip's (distlib 0.3.x)
//!    text and a `#!<target interpreter>` shebang, mode 0755.
//! 5. The `.dist-info` gets `INSTALLER` (`kiln`; pip writes `pip`), `REQUESTED` when asked,
//!    and a regenerated `RECORD`: rows sorted as pip sorts them, paths relative to the
//!    site-packages directory, `sha256=<urlsafe base64, no padding>`, sizes, RECORD itself
//!    with empty hash and size, `\r\n` line ends (Python's csv writer).
//!
//! No `.pyc` is written (pip's `--no-compile`): pip's pycs embed install times and paths and
//! are not reproducible. No `direct_url.json` either (installs from an index never get one).
//! Modes are 0644, or 0755 when the zip entry has any execute bit; directories 0755; everything
//! is owned by the caller's uid/gid with the caller's mtime. Members larger than
//! [`MEMORY_LIMIT`] are streamed to files in the scratch directory, which must outlive the Diff.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::python::tags::{Compatibility, FilenameError, IncompatibleReason, Tags, WheelFilename};
use crate::python::target::PythonVersion;

/// Members up to this size stay in memory; larger ones go to the scratch directory.
pub const MEMORY_LIMIT: u64 = 256 * 1024;

/// What `INSTALLER` says. pip writes `pip`; kiln names itself so the tree says who wrote it.
pub const INSTALLER: &str = "kiln";

/// Where each kind of wheel content goes, as image paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// Pure-Python packages (site-packages).
    pub purelib: LayerPath,
    /// Extension modules (the same site-packages on Linux).
    pub platlib: LayerPath,
    /// Scripts and launchers (`bin`).
    pub scripts: LayerPath,
    /// `.data/data/` files (the scheme base).
    pub data: LayerPath,
    /// Base of headers; the distribution name is appended.
    pub headers: LayerPath,
    /// The highest directory the install owns: it and every directory below it that the
    /// install writes into are listed in the Diff with the caller's owner.
    pub root: LayerPath,
}

impl Scheme {
    /// pip `--user` (posix_user): `<home>/.local/lib/pythonX.Y/site-packages`, `<home>/.local/bin`.
    pub fn user(home: &LayerPath, python: PythonVersion) -> Result<Scheme, WheelError> {
        let base = join(home, ".local")?;
        Scheme::prefix(&base, python)
    }

    /// pip `--prefix P` (posix_prefix): `P/lib/pythonX.Y/site-packages`, `P/bin`,
    /// `P/include/pythonX.Y/<name>`.
    pub fn prefix(prefix: &LayerPath, python: PythonVersion) -> Result<Scheme, WheelError> {
        let py = format!("python{}.{}", python.major, python.minor);
        let site = join(prefix, &format!("lib/{py}/site-packages"))?;
        Ok(Scheme {
            purelib: site.clone(),
            platlib: site,
            scripts: join(prefix, "bin")?,
            data: prefix.clone(),
            headers: join(prefix, &format!("include/{py}"))?,
            root: prefix.clone(),
        })
    }

    /// pip `--target T`: packages in `T`, scripts in `T/bin`, data in `T`, headers in
    /// `T/include/python/<name>` (pip installs into a home scheme and moves it into `T`).
    pub fn target(dir: &LayerPath) -> Result<Scheme, WheelError> {
        Ok(Scheme {
            purelib: dir.clone(),
            platlib: dir.clone(),
            scripts: join(dir, "bin")?,
            data: dir.clone(),
            headers: join(dir, "include/python")?,
            root: dir.clone(),
        })
    }
}

fn join(base: &LayerPath, rest: &str) -> Result<LayerPath, WheelError> {
    base.join(rest).map_err(|_| WheelError::Scheme {
        path: format!("{}/{rest}", base.absolute()),
    })
}

/// Who owns the installed files (the `USER` of the `RUN pip install`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Whether the wheel was asked for by the user (pip writes `REQUESTED` then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A top-level requirement (or any listed one in hash-checking mode): write `REQUESTED`.
    Yes,
    /// A dependency pulled in by another: no `REQUESTED`.
    No,
}

/// Everything [`install_wheel`] needs besides the wheel.
#[derive(Clone, Debug)]
pub struct InstallOptions<'a> {
    /// Where things go.
    pub scheme: &'a Scheme,
    /// Absolute interpreter path in the image, for shebangs (`/usr/local/bin/python3.11`).
    pub interpreter: &'a str,
    /// The target's tags; an incompatible wheel is refused.
    pub tags: &'a Tags,
    /// Owner of every entry.
    pub owner: Owner,
    /// mtime of every entry (SOURCE_DATE_EPOCH or 0), never the zip's times.
    pub mtime: i64,
    /// Host directory for members larger than [`MEMORY_LIMIT`]; must outlive the Diff.
    pub scratch: &'a Path,
    /// Whether to write `REQUESTED`.
    pub requested: Requested,
}

/// One installed wheel.
#[derive(Clone, Debug)]
pub struct InstalledWheel {
    /// Distribution name as in the wheel filename.
    pub name: String,
    /// Version as in the wheel filename.
    pub version: String,
    /// The `.dist-info` directory in the image.
    pub dist_info: LayerPath,
    /// The wheel's sha256 (hex), verified.
    pub sha256: String,
    /// What the install adds to the image.
    pub diff: Diff,
}

/// Why a wheel could not be installed. Every variant names the wheel.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// Not a wheel file name, or an sdist.
    #[error("cannot install `{path}`")]
    Filename {
        /// The file given.
        path: PathBuf,
        /// Why.
        #[source]
        source: FilenameError,
    },
    /// The wheel does not fit the target.
    #[error("wheel `{wheel}` is not compatible with the target: {reason}")]
    Incompatible {
        /// The wheel file name.
        wheel: String,
        /// Which tag is at fault.
        reason: IncompatibleReason,
    },
    /// The file's sha256 is not the expected one.
    #[error(
        "hash mismatch for {package} (`{wheel}`): expected sha256 {expected}, got {actual}; \
         the file is corrupt or was replaced: re-download it, or update the --hash in the \
         requirements file if the new file is trusted"
    )]
    HashMismatch {
        /// Distribution name.
        package: String,
        /// The wheel file name.
        wheel: String,
        /// The expected hex digest.
        expected: String,
        /// The file's hex digest.
        actual: String,
    },
    /// Reading the wheel file or the zip failed.
    #[error("failed to read wheel `{wheel}`{}", member.as_ref().map(|m| format!(" member `{m}`")).unwrap_or_default())]
    Read {
        /// The wheel file name.
        wheel: String,
        /// The member, when reading one.
        member: Option<String>,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The wheel is structurally wrong (no or several .dist-info, bad WHEEL, bad RECORD, ...).
    #[error("invalid wheel `{wheel}`: {problem}")]
    Invalid {
        /// The wheel file name.
        wheel: String,
        /// What is wrong, naming the member.
        problem: String,
    },
    /// A member's name would escape the install directory or is not a plain file.
    #[error("unsafe member `{member}` in wheel `{wheel}`: {problem}; refusing to install it")]
    UnsafePath {
        /// The wheel file name.
        wheel: String,
        /// The member name as in the archive.
        member: String,
        /// Why it is unsafe.
        problem: &'static str,
    },
    /// A member is missing from RECORD or does not hash to what RECORD says.
    #[error(
        "RECORD of wheel `{wheel}` does not vouch for `{member}`: {problem}; the wheel was \
         altered after it was built"
    )]
    Record {
        /// The wheel file name.
        wheel: String,
        /// The member.
        member: String,
        /// Missing, or expected vs actual.
        problem: String,
    },
    /// A scheme path could not be formed.
    #[error("invalid install path `{path}`")]
    Scheme {
        /// The path.
        path: String,
    },
    /// Writing a scratch file failed.
    #[error("failed to write a scratch file in `{dir}` for wheel `{wheel}`")]
    Scratch {
        /// The wheel file name.
        wheel: String,
        /// The scratch directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Normalizes a distribution name (PEP 503): lower case, runs of `-_.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

/// `sha256=<urlsafe base64 without padding>` as RECORD writes it.
pub fn record_hash(bytes: &[u8]) -> String {
    format!("sha256={}", URL_SAFE_NO_PAD.encode(Sha256::digest(bytes)))
}

/// Accepts `hex`, `sha256:hex` or `sha256=hex`; returns lower-case hex.
fn normalize_expected(expected: &str) -> String {
    let hex = expected
        .strip_prefix("sha256:")
        .or_else(|| expected.strip_prefix("sha256="))
        .unwrap_or(expected);
    hex.to_ascii_lowercase()
}

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

/// Refuses absolute names, `..`, backslashes that hide them, NULs and empty components.
fn check_member_name(name: &str) -> Result<(), &'static str> {
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute paths are not allowed");
    }
    if name.contains('\0') {
        return Err("NUL bytes are not allowed");
    }
    if name.len() > 1 && name.as_bytes()[1] == b':' {
        return Err("drive-letter paths are not allowed");
    }
    for component in name.trim_end_matches('/').split(['/', '\\']) {
        match component {
            ".." => return Err("`..` would escape the install directory"),
            "" | "." => return Err("empty or `.` path components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// `target` relative to directory `base`, with `..` as needed (`../../../bin/flask`).
fn relative(target: &LayerPath, base: &LayerPath) -> String {
    let t: Vec<&str> = target
        .as_str()
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let b: Vec<&str> = base.as_str().split('/').filter(|c| !c.is_empty()).collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", b.len() - common).collect();
    parts.extend(&t[common..]);
    parts.join("/")
}

/// Python csv QUOTE_MINIMAL for one field.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Splits one CSV line (Python's default dialect); None on an unterminated quote.
fn parse_csv_line(line: &str) -> Option<Vec<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if current.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    if in_quotes {
        return None;
    }
    fields.push(current);
    Some(fields)
}

/// `[console_scripts]` and `[gui_scripts]` entries of entry_points.txt (INI, `=` only,
/// case-sensitive keys), in file order.
pub fn scripts_from_entry_points(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_scripts = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_scripts = matches!(section.trim(), "console_scripts" | "gui_scripts");
            continue;
        }
        if !in_scripts {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The shebang distlib writes: `#!<interpreter>\n`, or the `/bin/sh` trampoline when the line
/// would be longer than 127 bytes or the path has a space.
pub fn shebang(interpreter: &str) -> String {
    if interpreter.len() + 3 <= 127 && !interpreter.contains(' ') {
        format!("#!{interpreter}\n")
    } else {
        format!("#!/bin/sh\n'''exec' \"{interpreter}\" \"$0\" \"$@\"\n' '''\n")
    }
}

/// The launcher pip (distlib 0.3.x, as in pip 23 and 24) writes for `module:attr [extras]`.
/// None when the value is not `module:attr`.
pub fn launcher_script(interpreter: &str, value: &str) -> Option<String> {
    // Extras (`[x]`) are deprecated and ignored.
    let value = value.split('[').next().unwrap_or_default().trim();
    let (module, attr) = value.split_once(':')?;
    let (module, attr) = (module.trim(), attr.trim());
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    if !valid(module) || !valid(attr) {
        return None;
    }
    let import_name = attr.split('.').next().unwrap_or(attr);
    Some(format!(
        "{}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\n\
         if __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    \
         sys.exit({attr}())\n",
        shebang(interpreter)
    ))
}

/// pip's `fix_script`: a first line starting with `#!python` becomes `#!<interpreter>\n`.
fn rewrite_shebang(content: &FileContent, interpreter: &str) -> std::io::Result<Option<Vec<u8>>> {
    let bytes: Vec<u8> = match content {
        FileContent::Bytes(b) => b.to_vec(),
        FileContent::HostFile { path, .. } => {
            let mut head = [0u8; 8];
            let n = File::open(path)?.read(&mut head)?;
            if !head[..n].starts_with(b"#!python") {
                return Ok(None);
            }
            std::fs::read(path)?
        }
    };
    if !bytes.starts_with(b"#!python") {
        return Ok(None);
    }
    let rest = match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => &bytes[i + 1..],
        None => &[][..],
    };
    let mut out = format!("#!{interpreter}\n").into_bytes();
    out.extend_from_slice(rest);
    Ok(Some(out))
}

/// Collects a member in memory, or in a scratch file once it is larger than [`MEMORY_LIMIT`].
struct Sink<'a> {
    scratch: &'a Path,
    memory: Vec<u8>,
    file: Option<(std::io::BufWriter<File>, PathBuf)>,
    size: u64,
}

impl<'a> Sink<'a> {
    fn new(scratch: &'a Path, expected: u64) -> Sink<'a> {
        Sink {
            scratch,
            memory: Vec::with_capacity(expected.min(MEMORY_LIMIT) as usize),
            file: None,
            size: 0,
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.size += buf.len() as u64;
        if self.file.is_none() && self.size > MEMORY_LIMIT {
            let (file, path) = tempfile::Builder::new()
                .prefix("wheel-member-")
                .tempfile_in(self.scratch)?
                .keep()
                .map_err(|e| e.error)?;
            let mut writer = std::io::BufWriter::new(file);
            writer.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some((writer, path));
        }
        match &mut self.file {
            Some((writer, _)) => writer.write_all(buf),
            None => {
                self.memory.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn finish(self) -> std::io::Result<FileContent> {
        match self.file {
            Some((writer, path)) => {
                let file = writer.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                Ok(FileContent::HostFile {
                    path,
                    size: self.size,
                    stamp: None,
                })
            }
            None => Ok(FileContent::Bytes(Arc::from(self.memory))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers_match_pip_24_vectors() {
        // sha256/size of pip 24.0's launchers with /usr/local/bin/python3.11 (research notes).
        for (value, want_hash, want_size) in [
            (
                "gunicorn.app.wsgiapp:run",
                "sha256=38mKWsfBfkW6hq6TjMM1y0IRxuyaO-vBPT26qVLRUVA",
                226,
            ),
            (
                "flask.cli:main",
                "sha256=PA86xMfWcAehl7KpGDMcGmtNktOzhLDIT9Jo0iEvNxE",
                217,
            ),
        ] {
            let text = launcher_script("/usr/local/bin/python3.11", value).unwrap();
            assert_eq!(record_hash(text.as_bytes()), want_hash, "{value}");
            assert_eq!(text.len(), want_size, "{value}");
        }
        assert!(launcher_script("/x", "module_only").is_none());
        assert!(
            launcher_script("/x", "a.b:c.d [extra]")
                .unwrap()
                .contains("from a.b import c\n")
        );
    }

    #[test]
    fn record_hash_vectors() {
        assert_eq!(
            record_hash(b"pip\n"),
            "sha256=zuuue4knoyJ-UwPPXg8fezS7VCrXJQrAP7zeNuwvFQg"
        );
        assert_eq!(
            record_hash(b""),
            "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn member_names_and_paths() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "C:/x",
            "a\\..\\b",
            "a//b",
        ] {
            assert!(check_member_name(bad).is_err(), "{bad}");
        }
        for good in ["a/b.py", "pkg/", "x-1.0.data/scripts/run"] {
            assert!(check_member_name(good).is_ok(), "{good}");
        }
        let p = |s| LayerPath::new(s).unwrap();
        assert_eq!(
            relative(
                &p("home/u/.local/bin/flask"),
                &p("home/u/.local/lib/python3.11/site-packages")
            ),
            "../../../bin/flask"
        );
        assert_eq!(relative(&p("t/bin/flask"), &p("t")), "bin/flask");
        assert_eq!(
            parse_csv_line("\"a,b\",sha256=x,3\r").unwrap(),
            ["a,b", "sha256=x", "3"]
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
    }

    #[test]
    fn shebangs() {
        assert_eq!(
            shebang("/usr/local/bin/python3.11"),
            "#!/usr/local/bin/python3.11\n"
        );
        assert!(shebang("/opt/my python/bin/python").starts_with("#!/bin/sh\n"));
        let script = FileContent::Bytes(b"#!pythonw -E\nprint(1)\n".as_slice().into());
        assert_eq!(
            rewrite_shebang(&script, "/usr/bin/python3.11")
                .unwrap()
                .unwrap(),
            b"#!/usr/bin/python3.11\nprint(1)\n"
        );
        let plain = FileContent::Bytes(b"#!/bin/sh\n".as_slice().into());
        assert!(rewrite_shebang(&plain, "/x").unwrap().is_none());
    }
}
