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
//! - a JSON array of OSV records (an export of many in one file).
//!
//! Files are read on every core at once. Each is parsed once into borrowed text (the fast
//! path, in `typed.rs`); only the entries for wanted names are validated and kept, so a
//! scan of a few dozen packages against tens of thousands of advisories costs little more than
//! reading the bytes. A file in none of these shapes, or a kept entry whose versions cannot be
//! read, is read again as a generic JSON tree, which checks every entry and names the file and
//! the entry in its error (`kiln db fetch` checks every entry of every file it writes).

use std::collections::BTreeMap;
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
        let files = database_files(dir)?;
        if let Some(mut db) = super::index::load(dir, &files, wanted)? {
            db.files = files;
            return Ok(db);
        }
        Database::read_files(dir, files, wanted)
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
        let reads = in_parallel(&files, |opener, buffer, path| {
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
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| ScanError::Read {
            path: e
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| dir.to_owned()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = entry.file_name().as_encoded_bytes();
        if entry.file_type().is_file() && name.len() > 5 && name.ends_with(b".json") {
            files.push(entry.into_path());
        }
    }
    // Sorted as bytes (cheap next to sorting by path components, with tens of thousands
    // of files), so messages and results do not depend on the directory's order.
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(files)
}

/// `work` done for each of `files` on up to as many threads as there are cores; the results
/// in `files`' order.
pub(super) fn in_parallel<T: Send>(
    files: &[PathBuf],
    work: impl Fn(&mut Opener, &mut Vec<u8>, &Path) -> T + Sync,
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
            .map(|(index, path)| (index, work(&mut opener, &mut buffer, path)))
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
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        if self
            .dir
            .as_ref()
            .is_none_or(|(cached, _)| cached.as_path() != parent)
        {
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
    } else {
        return Err(ScanError::Malformed {
            path: file.to_path_buf(),
            entry: "the file".to_owned(),
            reason: "neither an Alpine secdb file (`distroversion`, `packages`) nor an OSV \
                     record (`id`, `affected`) nor an array of OSV records"
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
