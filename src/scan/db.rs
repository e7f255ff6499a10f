//! The local vulnerability database: a directory of JSON files in the open formats, read for
//! the package names one scan looks up ([`Wanted`]) and indexed by the name advisories use.
//!
//! Layout (`kiln scan --db DIR`): every `*.json` file below DIR, in any sub-directory, is one
//! of
//! - an Alpine secdb file (`v3.20/main.json`: `distroversion`, `packages[].pkg.name` = the
//!   origin (source) package, `packages[].pkg.secfixes` = fixed version -> ids, where the
//!   version `"0"` lists ids that never affected Alpine's package);
//! - an OSV record (`id`, `affected[].package.{ecosystem,name}`, `affected[].ranges[].events`
//!   with `introduced`/`fixed`/`last_affected`, `affected[].versions`), for the ecosystems
//!   `PyPI` (PEP 440 ordering, PEP 503 names), `Alpine:vX.Y` (apk ordering, origin names) and
//!   `Debian:N` (dpkg ordering, source package names); records with `withdrawn` set are
//!   ignored, as are other ecosystems;
//! - a JSON array of OSV records (an export of many in one file);
//! - Debian's security tracker export (source package -> CVE id -> `releases` -> code name ->
//!   `status`, `fixed_version`, `urgency`), read by the generic path only.
//!
//! With an index (`DIR/.kiln/index`, [`super::index`]) the files are not read at all.
//!
//! Files are read on every core at once. Each is parsed once into borrowed text (the fast
//! path, in `typed.rs`); only the entries for wanted names are validated and kept, so a
//! scan of a few dozen packages against tens of thousands of advisories costs little more than
//! reading the bytes. A file in none of these shapes, or a kept entry whose versions cannot be
//! read, is read again as a generic JSON tree, which checks every entry and names the file and
//! the entry in its error (`kiln db fetch` checks every entry of every file it writes).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

pub use super::entries::{Advisory, Affected, Ecosystem, Entry, Event, Wanted};
pub(crate) use super::entries::{FileEntries, secdb_entry};
use super::{ScanError, Severity};

/// The loaded database.
#[derive(Debug, Default)]
pub struct Database {
    /// Entries by (ecosystem, name): the origin for Alpine, the source package for Debian, the
    /// PEP 503 name for PyPI.
    pub(super) entries: BTreeMap<(Ecosystem, String), Vec<Entry>>,
    /// The Alpine branches secdb files were read for.
    pub(super) alpine_branches: Vec<String>,
    /// The ecosystems any advisory names.
    pub(super) ecosystems: Vec<Ecosystem>,
    /// The directory and the files read, in order (for [`Database::digest`]).
    pub(super) dir: PathBuf,
    pub(super) files: Vec<PathBuf>,
}

impl Database {
    /// Reads the database in `dir`, keeping the advisories for the `wanted` names: from its
    /// index ([`super::index`]) when there is one and it is fresh, else every `*.json` file
    /// below `dir` (in parallel, merged in the order of their paths).
    pub fn load(dir: &Path, wanted: &Wanted) -> Result<Database, ScanError> {
        if !dir.is_dir() {
            return Err(ScanError::NoDatabase(dir.to_owned()));
        }
        if let Some(db) = super::index::load(dir, wanted)? {
            return Ok(db);
        }
        Database::read_files(dir, database_files(dir)?, wanted)
    }

    /// Reads `files` (the database's, in [`database_files`] order) for the `wanted` names.
    pub(super) fn read_files(
        dir: &Path,
        files: Vec<PathBuf>,
        wanted: &Wanted,
    ) -> Result<Database, ScanError> {
        let mut db = Database {
            dir: dir.to_owned(),
            ..Database::default()
        };
        let reads = in_parallel(&files, |opener, buffer, _, path| {
            read_file(path, wanted, opener, buffer)
        });
        for read in reads {
            db.merge(read?);
        }
        db.files = files;
        Ok(db)
    }

    /// Which database this is: sha256 over each file's sha256 and path (relative to the
    /// directory), in order. Computed on demand (for `--attest`): it reads the files again.
    pub fn digest(&self) -> Result<crate::digest::Digest, ScanError> {
        let mut listing = String::new();
        for path in &self.files {
            let bytes = std::fs::read(path).map_err(|source| ScanError::Read {
                path: path.clone(),
                source,
            })?;
            let relative = path.strip_prefix(&self.dir).unwrap_or(path);
            listing.push_str(&format!(
                "{} {}\n",
                crate::digest::Digest::of(&bytes).hex(),
                relative.display()
            ));
        }
        Ok(crate::digest::Digest::of(listing.as_bytes()))
    }

    fn merge(&mut self, file: FileEntries) {
        for (key, entry) in file.entries {
            self.entries.entry(key).or_default().push(entry);
        }
        if let Some(branch) = file.alpine_branch
            && !self.alpine_branches.contains(&branch)
        {
            self.alpine_branches.push(branch);
        }
        for ecosystem in file.ecosystems {
            if !self.ecosystems.contains(&ecosystem) {
                self.ecosystems.push(ecosystem);
            }
        }
    }

    /// Adds one parsed file's advisories, every entry checked.
    pub fn add_file(&mut self, path: &Path, value: &Value) -> Result<(), ScanError> {
        let entries = read_value(&Arc::new(path.to_owned()), value, &Wanted::everything())?;
        self.merge(entries);
        Ok(())
    }

    /// The entries for `name` in `ecosystem`.
    pub fn entries(&self, ecosystem: &Ecosystem, name: &str) -> &[Entry] {
        self.entries
            .get(&(ecosystem.clone(), name.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// True when a secdb file for Alpine branch `branch` (`v3.20`) was read.
    pub fn has_alpine_branch(&self, branch: &str) -> bool {
        self.alpine_branches.iter().any(|b| b == branch)
    }

    /// True when some advisory (kept or not) names `ecosystem`.
    pub fn has_ecosystem(&self, ecosystem: &Ecosystem) -> bool {
        self.ecosystems.contains(ecosystem)
    }
}

/// The database's files: every regular `*.json` file below `dir`, sorted by path.
pub(super) fn database_files(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    Ok(database_tree(dir)?.1)
}

/// The directories below `dir` (itself first) and the database's files, each sorted by path;
/// the index's own directory (`DIR/.kiln`) is left out.
pub(super) fn database_tree(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ScanError> {
    let mut directories = Vec::new();
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|entry| entry.depth() != 1 || entry.file_name() != super::index::INDEX_DIR);
    for entry in walk {
        let entry = entry.map_err(|e| ScanError::Read {
            path: e
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| dir.to_owned()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = entry.file_name().as_encoded_bytes();
        if entry.file_type().is_dir() {
            directories.push(entry.into_path());
        } else if entry.file_type().is_file() && name.len() > 5 && name.ends_with(b".json") {
            files.push(entry.into_path());
        }
    }
    // Sorted as bytes (cheap next to sorting by path components, with tens of thousands
    // of files), so messages and results do not depend on the directory's order.
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    directories.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok((directories, files))
}

/// `work` done for each of `files` (given its position) on up to as many threads as there are
/// cores; the results in `files`' order.
pub(super) fn in_parallel<T: Send>(
    files: &[PathBuf],
    work: impl Fn(&mut Opener, &mut Vec<u8>, usize, &Path) -> T + Sync,
) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    // One buffer and one open directory per thread, reused: most files of an OSV export are a
    // few hundred bytes, tens of thousands of them in one directory.
    let work_through = |paths: &mut dyn Iterator<Item = (usize, &PathBuf)>| {
        let mut buffer = Vec::new();
        let mut opener = Opener::default();
        paths
            .map(|(index, path)| (index, work(&mut opener, &mut buffer, index, path)))
            .collect::<Vec<_>>()
    };
    if workers <= 1 {
        return work_through(&mut files.iter().enumerate())
            .into_iter()
            .map(|(_, result)| result)
            .collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    work_through(&mut std::iter::from_fn(|| {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        files.get(index).map(|path| (index, path))
                    }))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Opens files by name relative to their directory, kept open while consecutive files share
/// it: one name looked up per file instead of every component of its path.
#[derive(Default)]
pub(super) struct Opener {
    dir: Option<(PathBuf, std::fs::File)>,
}

impl Opener {
    /// The open directory of `path` and its file name (None for a path without both).
    fn dir_of<'p>(
        &mut self,
        path: &'p Path,
    ) -> std::io::Result<Option<(&std::fs::File, &'p std::ffi::OsStr)>> {
        // Split at the last `/` as bytes: `Path::parent` parses every component, a cost that
        // shows with tens of thousands of files (the walk's paths have no trailing `/`).
        let bytes = path.as_os_str().as_encoded_bytes();
        let Some(slash) = bytes.iter().rposition(|b| *b == b'/') else {
            return Ok(None);
        };
        let (parent, name) = (
            Path::new(std::ffi::OsStr::from_bytes(&bytes[..slash.max(1)])),
            std::ffi::OsStr::from_bytes(&bytes[slash + 1..]),
        );
        if name.is_empty() {
            return Ok(None);
        }
        if self.dir.as_ref().is_none_or(|(cached, _)| {
            cached.as_os_str().as_encoded_bytes() != parent.as_os_str().as_encoded_bytes()
        }) {
            self.dir = Some((parent.to_owned(), std::fs::File::open(parent)?));
        }
        Ok(self.dir.as_ref().map(|(_, dir)| (dir, name)))
    }

    fn open(&mut self, path: &Path) -> std::io::Result<std::fs::File> {
        let Some((dir, name)) = self.dir_of(path)? else {
            return std::fs::File::open(path);
        };
        let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty())
            .map_err(std::io::Error::from)?;
        Ok(std::fs::File::from(fd))
    }

    /// The file's own status (a symbolic link is not followed).
    pub(super) fn stat(&mut self, path: &Path) -> std::io::Result<nix::sys::stat::FileStat> {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        match self.dir_of(path)? {
            Some((dir, name)) => nix::sys::stat::fstatat(dir, name, flags),
            None => nix::sys::stat::fstatat(nix::fcntl::AT_FDCWD, path, flags),
        }
        .map_err(std::io::Error::from)
    }
}

/// The entries one file holds for `wanted`, read into `buffer`.
fn read_file(
    path: &Path,
    wanted: &Wanted,
    opener: &mut Opener,
    buffer: &mut Vec<u8>,
) -> Result<FileEntries, ScanError> {
    let failed = |source| ScanError::Read {
        path: path.to_owned(),
        source,
    };
    buffer.clear();
    std::io::Read::read_to_end(&mut opener.open(path).map_err(failed)?, buffer).map_err(failed)?;
    let file = Arc::new(path.to_owned());
    if let Some(entries) = super::typed::read(buffer, &file, wanted) {
        return Ok(entries);
    }
    let value: Value = serde_json::from_slice(buffer).map_err(|e| ScanError::Malformed {
        path: path.to_owned(),
        entry: "the file".to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    read_value(&file, &value, wanted)
}

/// The generic path: a file as a JSON tree, every entry checked, the `wanted` ones kept.
fn read_value(
    file: &Arc<PathBuf>,
    value: &Value,
    wanted: &Wanted,
) -> Result<FileEntries, ScanError> {
    let mut out = FileEntries::default();
    if value.get("distroversion").is_some() && value.get("packages").is_some() {
        read_secdb(file, value, wanted, &mut out)?;
    } else if let Some(records) = value.as_array() {
        for (index, record) in records.iter().enumerate() {
            read_osv(file, record, &format!("record {index}"), wanted, &mut out)?;
        }
    } else if value.get("id").is_some() && value.get("affected").is_some() {
        read_osv(file, value, "the record", wanted, &mut out)?;
    } else if value.get("id").is_some() && value.get("withdrawn").is_some() {
        // A withdrawn OSV record may drop its `affected` list.
    } else if is_debian_tracker(value) {
        read_debian_tracker(file, value, wanted, &mut out)?;
    } else {
        return Err(ScanError::Malformed {
            path: file.to_path_buf(),
            entry: "the file".to_owned(),
            reason: "neither an Alpine secdb file (`distroversion`, `packages`) nor an OSV \
                     record (`id`, `affected`) nor an array of OSV records nor Debian's \
                     security tracker export (source package -> CVE -> `releases`)"
                .to_owned(),
        });
    }
    Ok(out)
}

fn read_secdb(
    file: &Arc<PathBuf>,
    value: &Value,
    wanted: &Wanted,
    out: &mut FileEntries,
) -> Result<(), ScanError> {
    let malformed = |entry: String, reason: &str| ScanError::Malformed {
        path: file.to_path_buf(),
        entry,
        reason: reason.to_owned(),
    };
    let branch = value["distroversion"]
        .as_str()
        .ok_or_else(|| malformed("distroversion".to_owned(), "not a string"))?
        .to_owned();
    let packages = value["packages"]
        .as_array()
        .ok_or_else(|| malformed("packages".to_owned(), "not an array"))?;
    let ecosystem = Ecosystem::Alpine(branch.clone());
    for (index, package) in packages.iter().enumerate() {
        let name = package["pkg"]["name"]
            .as_str()
            .ok_or_else(|| malformed(format!("packages[{index}]"), "no `pkg.name` string"))?;
        let Some(secfixes) = package["pkg"]["secfixes"].as_object() else {
            if package["pkg"]["secfixes"].is_null() {
                continue;
            }
            return Err(malformed(
                format!("packages[{index}] ({name})"),
                "`pkg.secfixes` is not an object of version -> ids",
            ));
        };
        for (fixed, ids) in secfixes {
            let entry = || format!("packages[{index}] ({name}) secfixes `{fixed}`");
            let ids = ids
                .as_array()
                .ok_or_else(|| malformed(entry(), "not a list of ids"))?
                .iter()
                .map(|id| {
                    id.as_str()
                        .ok_or_else(|| malformed(entry(), "an id is not a string"))
                })
                .collect::<Result<Vec<&str>, _>>()?;
            // `0`: these ids never affected Alpine's package.
            if fixed == "0" {
                continue;
            }
            if !crate::apk::version::is_valid(fixed) {
                return Err(malformed(
                    entry(),
                    "the fixed version is not an apk version",
                ));
            }
            if wanted.keeps(&ecosystem, name) {
                out.entries.push((
                    (ecosystem.clone(), name.to_owned()),
                    secdb_entry(file, fixed, ids.into_iter()),
                ));
            }
        }
    }
    out.saw(&ecosystem);
    out.alpine_branch = Some(branch);
    Ok(())
}

fn read_osv(
    file: &Arc<PathBuf>,
    record: &Value,
    where_: &str,
    wanted: &Wanted,
    out: &mut FileEntries,
) -> Result<(), ScanError> {
    let id = record["id"].as_str().unwrap_or_default();
    let malformed = |entry: String, reason: String| ScanError::Malformed {
        path: file.to_path_buf(),
        entry,
        reason,
    };
    if id.is_empty() {
        return Err(malformed(where_.to_owned(), "no `id` string".to_owned()));
    }
    if record["withdrawn"].as_str().is_some_and(|w| !w.is_empty()) {
        return Ok(());
    }
    let mut ids = vec![id.to_owned()];
    if let Some(aliases) = record["aliases"].as_array() {
        ids.extend(aliases.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    let affected_list = record["affected"]
        .as_array()
        .ok_or_else(|| malformed(id.to_owned(), "`affected` is not an array".to_owned()))?;
    let record_severity = severity_of(record);
    for (index, affected) in affected_list.iter().enumerate() {
        let entry = format!("{id} affected[{index}]");
        let ecosystem = affected["package"]["ecosystem"]
            .as_str()
            .unwrap_or_default();
        let name = affected["package"]["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            return Err(malformed(entry, "no `package.name`".to_owned()));
        }
        let Some(ecosystem) = Ecosystem::from_osv(ecosystem) else {
            continue;
        };
        out.saw(&ecosystem);
        let mut ranges = Vec::new();
        for (r, range) in affected["ranges"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !matches!(range["type"].as_str(), Some("ECOSYSTEM" | "SEMVER")) {
                continue;
            }
            let mut events = Vec::new();
            for (e, event) in range["events"].as_array().into_iter().flatten().enumerate() {
                let here = || format!("{entry} ranges[{r}].events[{e}]");
                let (kind, version) = ["introduced", "fixed", "last_affected", "limit"]
                    .iter()
                    .find_map(|k| event[*k].as_str().map(|v| (*k, v)))
                    .ok_or_else(|| {
                        malformed(
                            here(),
                            "expected one of introduced, fixed, last_affected, limit".to_owned(),
                        )
                    })?;
                let from_the_start = kind == "introduced" && version == "0";
                if !from_the_start && !ecosystem.is_valid_version(version) {
                    return Err(malformed(
                        here(),
                        format!("`{version}` is not a version of the {ecosystem} ecosystem"),
                    ));
                }
                events.push(match kind {
                    "introduced" => Event::Introduced(version.to_owned()),
                    "fixed" => Event::Fixed(version.to_owned()),
                    "last_affected" => Event::LastAffected(version.to_owned()),
                    // `limit` bounds a git walk; ecosystem ranges need not honor it.
                    _ => continue,
                });
            }
            ranges.push(events);
        }
        let key = ecosystem.key(name).into_owned();
        if !wanted.keeps(&ecosystem, &key) {
            continue;
        }
        let versions = affected["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let severity = word(&affected["ecosystem_specific"]["severity"])
            .max(word(&affected["database_specific"]["severity"]))
            .max(record_severity);
        out.entries.push((
            (ecosystem, key),
            Entry {
                advisory: Arc::new(Advisory {
                    ids: ids.clone(),
                    severity,
                    summary: record["summary"].as_str().map(str::to_owned),
                }),
                affected: Affected::Osv { ranges, versions },
                file: file.clone(),
            },
        ));
    }
    Ok(())
}

/// Debian's releases by code name, as the security tracker names them, and their numbers, as
/// OSV's `Debian:N` and the image's `VERSION_ID` do.
const DEBIAN_RELEASES: &[(&str, &str)] = &[
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

/// True for the security tracker's JSON export: source package -> CVE id -> `{releases: ...}`.
fn is_debian_tracker(value: &Value) -> bool {
    value.as_object().is_some_and(|packages| {
        packages.values().any(|cves| {
            cves.as_object()
                .and_then(|cves| cves.values().next())
                .is_some_and(|cve| cve.get("releases").is_some_and(Value::is_object))
        })
    })
}

/// Debian's security tracker export: for each source package and CVE, per release (code
/// name), `status` (`resolved` with `fixed_version`, where `"0"` means never affected; `open`
/// or `undetermined`: affected, no fix known) and `urgency`. Releases without a number (`sid`,
/// `experimental`) are skipped. The tracker names source packages, as OSV's Debian records do.
fn read_debian_tracker(
    file: &Arc<PathBuf>,
    value: &Value,
    wanted: &Wanted,
    out: &mut FileEntries,
) -> Result<(), ScanError> {
    let malformed = |entry: String, reason: String| ScanError::Malformed {
        path: file.to_path_buf(),
        entry,
        reason,
    };
    let packages = value.as_object().into_iter().flatten();
    for (package, cves) in packages {
        let cves = cves.as_object().ok_or_else(|| {
            malformed(
                format!("package `{package}`"),
                "not an object of CVE ids".to_owned(),
            )
        })?;
        for (cve, record) in cves {
            let releases = record["releases"].as_object().ok_or_else(|| {
                malformed(
                    format!("{package} {cve}"),
                    "no `releases` object".to_owned(),
                )
            })?;
            for (codename, release) in releases {
                let Some((_, number)) = DEBIAN_RELEASES.iter().find(|(name, _)| name == codename)
                else {
                    continue;
                };
                let here = || format!("{package} {cve} releases.{codename}");
                let ecosystem = Ecosystem::Debian((*number).to_owned());
                out.saw(&ecosystem);
                let affected = match release["status"].as_str() {
                    Some("resolved") => {
                        let fixed = release["fixed_version"].as_str().ok_or_else(|| {
                            malformed(here(), "resolved without a `fixed_version`".to_owned())
                        })?;
                        if fixed == "0" {
                            continue;
                        }
                        if !super::dpkg::is_valid(fixed) {
                            return Err(malformed(
                                here(),
                                format!("`{fixed}` is not a Debian version"),
                            ));
                        }
                        Affected::Before {
                            fixed: fixed.to_owned(),
                        }
                    }
                    Some("open" | "undetermined") => Affected::Osv {
                        ranges: vec![vec![Event::Introduced("0".to_owned())]],
                        versions: Vec::new(),
                    },
                    other => {
                        return Err(malformed(
                            here(),
                            format!(
                                "`status` is {}, expected resolved, open or undetermined",
                                other.map_or("missing".to_owned(), |s| format!("`{s}`"))
                            ),
                        ));
                    }
                };
                if !wanted.keeps(&ecosystem, package) {
                    continue;
                }
                out.entries.push((
                    (ecosystem, package.clone()),
                    Entry {
                        advisory: Arc::new(Advisory {
                            ids: vec![cve.clone()],
                            severity: urgency(release["urgency"].as_str().unwrap_or_default()),
                            summary: record["description"].as_str().map(str::to_owned),
                        }),
                        affected,
                        file: file.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// The tracker's `urgency` (`low`, `medium`, `high`, `unimportant`; a trailing `*` marks an
/// estimate) as a severity; `not yet assigned` and others are [`Severity::Unknown`].
fn urgency(word: &str) -> Severity {
    match word.trim_end_matches('*') {
        "unimportant" | "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        _ => Severity::Unknown,
    }
}

/// A record's severity: `severity` or `database_specific.severity` as a word (`HIGH`, GitHub's
/// `MODERATE`); CVSS vectors are not scored ([`Severity::Unknown`]).
fn severity_of(record: &Value) -> Severity {
    word(&record["severity"]).max(word(&record["database_specific"]["severity"]))
}

/// A severity word, or [`Severity::Unknown`] for anything else.
fn word(value: &Value) -> Severity {
    value
        .as_str()
        .and_then(Severity::from_word)
        .unwrap_or(Severity::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::sbom::{PackageKind, SbomPackage};
    use crate::scan::entries::is_pep503;

    /// The fast path and the generic path read the same entries from the same records.
    #[test]
    fn both_paths_read_the_same_entries() {
        let records = serde_json::json!([
            {"id": "PYSEC-1", "aliases": ["CVE-1", "GHSA-1"], "summary": "s\u{e9}\"q",
             "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}],
             "database_specific": {"severity": "MODERATE", "cwe_ids": ["CWE-79"]},
             "affected": [
                {"package": {"ecosystem": "PyPI", "name": "Zope.Interface"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "6.4.post1"}]},
                            {"type": "GIT", "repo": "x", "events": [{"introduced": "abc"}]},
                            {"type": "ECOSYSTEM", "events": [{"introduced": "7.0"}, {"last_affected": "7.1"}, {"limit": "8"}]}],
                 "versions": ["6.0", "6.1"], "ecosystem_specific": {"severity": "HIGH"}},
                {"package": {"ecosystem": "Debian:12", "name": "glibc"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]}]},
                {"package": {"ecosystem": "Alpine:v3.20", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.3.2-r1"}]}],
                 "database_specific": {"severity": "critical"}},
                {"package": {"ecosystem": "npm", "name": "left-pad"}, "ranges": []}
             ]},
            {"id": "PYSEC-2", "withdrawn": "2024-01-01T00:00:00Z",
             "affected": [{"package": {"ecosystem": "PyPI", "name": "flask"}}]},
            {"id": "PYSEC-3", "severity": "LOW",
             "affected": [{"package": {"ecosystem": "PyPI", "name": "flask"}, "versions": ["1.0"]}]}
        ]);
        let file = Arc::new(PathBuf::from("all.json"));
        let bytes = records.to_string().into_bytes();
        let fast = super::super::typed::read(&bytes, &file, &Wanted::everything())
            .expect("the fast path takes the records");
        let generic = read_value(&file, &records, &Wanted::everything()).unwrap();
        assert_eq!(
            format!("{:?}", fast.entries),
            format!("{:?}", generic.entries)
        );
        assert_eq!(fast.ecosystems, generic.ecosystems);
        assert_eq!(fast.entries.len(), 4, "{:?}", fast.entries);
        assert_eq!(fast.entries[0].1.advisory.severity, Severity::High);
        assert_eq!(fast.entries[2].1.advisory.severity, Severity::Critical);
        assert_eq!(fast.entries[3].1.advisory.severity, Severity::Low);

        let secdb = serde_json::json!({"distroversion": "v3.20", "packages": [
            {"pkg": {"name": "openssl", "secfixes": {"3.3.2-r1": ["CVE-2 CVE-3"], "0": ["CVE-4"]}}},
            {"pkg": {"name": "musl"}}
        ]});
        let bytes = secdb.to_string().into_bytes();
        let fast = super::super::typed::read(&bytes, &file, &Wanted::everything()).unwrap();
        let generic = read_value(&file, &secdb, &Wanted::everything()).unwrap();
        assert_eq!(
            format!("{:?}", fast.entries),
            format!("{:?}", generic.entries)
        );
        assert_eq!(fast.alpine_branch.as_deref(), Some("v3.20"));
        assert_eq!(fast.entries.len(), 1);

        // Only wanted names are kept, by both paths.
        let wanted = Wanted::names_of(&[SbomPackage {
            kind: PackageKind::Python,
            name: "zope_interface".to_owned(),
            version: "6.0".to_owned(),
            license: None,
            checksum: None,
        }]);
        let bytes = records.to_string().into_bytes();
        let fast = super::super::typed::read(&bytes, &file, &wanted).unwrap();
        let generic = read_value(&file, &records, &wanted).unwrap();
        assert_eq!(
            format!("{:?}", fast.entries),
            format!("{:?}", generic.entries)
        );
        assert_eq!(fast.entries.len(), 1);
        assert_eq!(
            fast.entries[0].0,
            (Ecosystem::PyPI, "zope-interface".to_owned())
        );
    }

    /// Debian's security tracker export, as the tracker writes it: findings by source package
    /// and release, `"0"` never affected, `open` without a fix, `sid` skipped; the same from
    /// the index; a bad status named with its entry.
    #[test]
    fn the_debian_security_tracker_export_is_read() {
        let temp = tempfile::tempdir().unwrap();
        let tracker = serde_json::json!({
            "glibc": {
                "CVE-2024-0001": {"description": "fixed in a point release", "scope": "local",
                    "releases": {
                        "bookworm": {"status": "resolved", "repositories": {"bookworm": "2.36-9+deb12u3"},
                                     "fixed_version": "2.36-9+deb12u4", "urgency": "medium**"},
                        "bullseye": {"status": "resolved", "repositories": {"bullseye": "2.31-13+deb11u5"},
                                     "fixed_version": "2.31-13+deb11u6", "urgency": "low"},
                        "sid": {"status": "resolved", "repositories": {"sid": "2.37-1"},
                                "fixed_version": "2.37-1", "urgency": "medium"}}},
                "CVE-2024-0002": {"releases": {
                    "bookworm": {"status": "open", "repositories": {"bookworm": "2.36-9+deb12u3"},
                                 "urgency": "unimportant"}}},
                "CVE-2024-0003": {"releases": {
                    "bookworm": {"status": "resolved", "repositories": {"bookworm": "2.36-9+deb12u3"},
                                 "fixed_version": "0", "urgency": "high"}}},
                "CVE-2024-0004": {"releases": {
                    "bookworm": {"status": "resolved", "repositories": {"bookworm": "2.36-9+deb12u3"},
                                 "fixed_version": "2.36-9", "urgency": "high"}}}
            },
            "openssl": {
                "TEMP-0000000-ABCDEF": {"releases": {
                    "bookworm": {"status": "undetermined", "repositories": {"bookworm": "3.0.15-1~deb12u1"},
                                 "urgency": "not yet assigned"}}}
            }
        });
        std::fs::write(temp.path().join("debian-tracker.json"), tracker.to_string()).unwrap();
        let package = |name: &str, version: &str| SbomPackage {
            kind: PackageKind::Deb {
                arch: "amd64".to_owned(),
                source: Some(name.to_owned()),
                source_version: None,
            },
            name: format!("lib{name}"),
            version: version.to_owned(),
            license: None,
            checksum: None,
        };
        let packages = vec![
            SbomPackage {
                kind: PackageKind::OperatingSystem,
                name: "debian".to_owned(),
                version: "12".to_owned(),
                license: None,
                checksum: None,
            },
            package("glibc", "2.36-9+deb12u3"),
            package("openssl", "3.0.15-1~deb12u1"),
        ];
        let found = |db: &Database| {
            crate::scan::scan(&packages, db)
                .findings
                .into_iter()
                .map(|f| (f.package, f.ids.join(" "), f.fixed_in, f.severity))
                .collect::<std::collections::BTreeSet<_>>()
        };
        let expected = std::collections::BTreeSet::from([
            (
                "libglibc".to_owned(),
                "CVE-2024-0001".to_owned(),
                Some("2.36-9+deb12u4".to_owned()),
                Severity::Medium,
            ),
            (
                "libglibc".to_owned(),
                "CVE-2024-0002".to_owned(),
                None,
                Severity::Low,
            ),
            (
                "libopenssl".to_owned(),
                "TEMP-0000000-ABCDEF".to_owned(),
                None,
                Severity::Unknown,
            ),
        ]);
        let from_file = Database::load(temp.path(), &Wanted::names_of(&packages)).unwrap();
        assert!(from_file.has_ecosystem(&Ecosystem::Debian("11".to_owned())));
        assert_eq!(found(&from_file), expected);
        crate::scan::index::write(temp.path()).unwrap();
        let from_index = Database::load(temp.path(), &Wanted::names_of(&packages)).unwrap();
        assert_eq!(found(&from_index), expected);
        std::fs::remove_dir_all(temp.path().join(crate::scan::index::INDEX_DIR)).unwrap();

        let mut bad = tracker.clone();
        bad["glibc"]["CVE-2024-0002"]["releases"]["bookworm"]["status"] = "maybe".into();
        std::fs::write(temp.path().join("debian-tracker.json"), bad.to_string()).unwrap();
        let message = Database::load(temp.path(), &Wanted::names_of(&packages))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("debian-tracker.json")
                && message.contains("glibc CVE-2024-0002 releases.bookworm")
                && message.contains("`maybe`"),
            "{message}"
        );
    }

    #[test]
    fn pep503_names_are_recognised_without_normalizing() {
        for (name, already) in [
            ("flask", true),
            ("zope-interface", true),
            ("Flask", false),
            ("zope.interface", false),
            ("zope_interface", false),
            ("a--b", false),
        ] {
            assert_eq!(is_pep503(name), already, "{name}");
            assert_eq!(
                Ecosystem::PyPI.key(name),
                crate::python::wheel::normalize_name(name),
                "{name}"
            );
        }
    }
}
