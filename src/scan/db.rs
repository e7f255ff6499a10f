//! The local vulnerability database: a directory of JSON files in the open formats, read
//! into memory and indexed by the name advisories use.
//!
//! Layout (`kiln scan --db DIR`): every `*.json` file below DIR, in any sub-directory, is one
//! of
//! - an Alpine secdb file (`v3.20/main.json`: `distroversion`, `packages[].pkg.name` = the
//!   origin (source) package, `packages[].pkg.secfixes` = fixed version -> ids, where the
//!   version `"0"` lists ids that never affected Alpine's package);
//! - an OSV record (`id`, `affected[].package.{ecosystem,name}`, `affected[].ranges[].events`
//!   with `introduced`/`fixed`/`last_affected`, `affected[].versions`), for the ecosystems
//!   `PyPI` (PEP 440 ordering, PEP 503 names) and `Alpine:vX.Y` (apk ordering, origin names);
//!   records with `withdrawn` set are ignored, as are other ecosystems;
//! - a JSON array of OSV records (an export of many in one file).
//!
//! A file in none of these shapes, or an entry whose versions cannot be read, is an error that
//! names the file and the entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{ScanError, Severity};

/// One advisory, as reported in a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advisory {
    /// The advisory's ids: the OSV id and its aliases, or a secdb entry's CVE ids.
    pub ids: Vec<String>,
    /// Its severity (secdb gives none: [`Severity::Unknown`]).
    pub severity: Severity,
    /// A one-line summary, when the source has one.
    pub summary: Option<String>,
}

/// One range event of an OSV `affected[].ranges[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Versions from here on are affected (`"0"`: from the first).
    Introduced(String),
    /// Versions from here on are not affected.
    Fixed(String),
    /// Versions after this one are not affected.
    LastAffected(String),
}

/// Which versions of a package an advisory affects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affected {
    /// Every version before each listed fixed version (secdb: one entry per fixed version).
    Before {
        /// The first version that is fixed.
        fixed: String,
    },
    /// OSV ranges (each a list of events) and explicitly listed versions.
    Osv {
        /// `ranges[].events`, ECOSYSTEM or SEMVER ranges only.
        ranges: Vec<Vec<Event>>,
        /// `versions[]`.
        versions: Vec<String>,
    },
}

/// An advisory as it applies to one package name.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The advisory.
    pub advisory: Arc<Advisory>,
    /// The versions it affects.
    pub affected: Affected,
    /// The file it came from (for messages).
    pub file: Arc<PathBuf>,
}

/// Where advisories apply: an ecosystem, and for Alpine its release branch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// Alpine, with the branch (`v3.20`).
    Alpine(String),
    /// The Python package index.
    PyPI,
}

/// The loaded database.
#[derive(Debug, Default)]
pub struct Database {
    /// Entries by (ecosystem, name): the origin for Alpine, the PEP 503 name for PyPI.
    entries: BTreeMap<(Ecosystem, String), Vec<Entry>>,
    /// The Alpine branches secdb files were read for.
    alpine_branches: Vec<String>,
    /// How many files were read.
    pub files: usize,
    /// sha256 over each file's path (relative to the directory) and content, in order: which
    /// database a report was made with.
    pub digest: Option<crate::digest::Digest>,
}

impl Database {
    /// Reads every `*.json` file below `dir` (sorted, so messages and results are stable).
    pub fn load(dir: &Path) -> Result<Database, ScanError> {
        if !dir.is_dir() {
            return Err(ScanError::NoDatabase(dir.to_owned()));
        }
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(|e| ScanError::Read {
                path: e
                    .path()
                    .map(Path::to_owned)
                    .unwrap_or_else(|| dir.to_owned()),
                source: std::io::Error::other(e.to_string()),
            })?;
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|x| x == "json")
            {
                files.push(entry.into_path());
            }
        }
        let mut db = Database::default();
        let mut listing = String::new();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|source| ScanError::Read {
                path: path.clone(),
                source,
            })?;
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            listing.push_str(&format!(
                "{} {}\n",
                crate::digest::Digest::of(&bytes).hex(),
                relative.display()
            ));
            if let Some(file) = super::typed::parse(&bytes)
                && db.add_typed(&path, file)
            {
                continue;
            }
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|e| ScanError::Malformed {
                    path: path.clone(),
                    entry: "the file".to_owned(),
                    reason: format!("not JSON: {e}"),
                })?;
            db.add_file(&path, &value)?;
        }
        db.digest = Some(crate::digest::Digest::of(listing.as_bytes()));
        Ok(db)
    }

    /// Adds a file read by the fast path; false (and nothing added) when one of its entries
    /// is not valid, so the generic path reads it again and reports the entry.
    fn add_typed(&mut self, path: &Path, file: super::typed::File) -> bool {
        let file_path = Arc::new(path.to_owned());
        let mut staged: Vec<((Ecosystem, String), Entry)> = Vec::new();
        let mut branch_read = None;
        match file {
            super::typed::File::Secdb(secdb) => {
                for package in secdb.packages {
                    for (fixed, ids) in package.pkg.secfixes.into_iter().flatten() {
                        if fixed == "0" {
                            continue;
                        }
                        if !crate::apk::version::is_valid(&fixed) {
                            return false;
                        }
                        let ids = ids
                            .iter()
                            .flat_map(|id| id.split_whitespace())
                            .map(str::to_owned)
                            .collect();
                        staged.push((
                            (
                                Ecosystem::Alpine(secdb.distroversion.clone()),
                                package.pkg.name.clone(),
                            ),
                            Entry {
                                advisory: Arc::new(Advisory {
                                    ids,
                                    severity: Severity::Unknown,
                                    summary: None,
                                }),
                                affected: Affected::Before { fixed },
                                file: file_path.clone(),
                            },
                        ));
                    }
                }
                branch_read = Some(secdb.distroversion);
            }
            super::typed::File::Osv(records) => {
                let word = |s: &Option<super::typed::SeverityWord>| {
                    s.as_ref()
                        .and_then(|s| s.severity.as_ref())
                        .and_then(Value::as_str)
                        .and_then(Severity::from_word)
                        .unwrap_or(Severity::Unknown)
                };
                for record in records {
                    if record.id.is_empty() {
                        return false;
                    }
                    if record.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) {
                        continue;
                    }
                    let mut ids = vec![record.id.clone()];
                    ids.extend(record.aliases.iter().cloned());
                    let record_severity = word(&record.database_specific);
                    for affected in record.affected {
                        let name = &affected.package.name;
                        if name.is_empty() {
                            return false;
                        }
                        let (ecosystem, key, valid): (Ecosystem, String, fn(&str) -> bool) =
                            if affected.package.ecosystem == "PyPI" {
                                (
                                    Ecosystem::PyPI,
                                    crate::python::wheel::normalize_name(name),
                                    |v| v.parse::<pep440_rs::Version>().is_ok(),
                                )
                            } else if let Some(branch) =
                                affected.package.ecosystem.strip_prefix("Alpine:")
                            {
                                (
                                    Ecosystem::Alpine(branch.to_owned()),
                                    name.clone(),
                                    crate::apk::version::is_valid,
                                )
                            } else {
                                continue;
                            };
                        let mut ranges = Vec::new();
                        for range in affected.ranges {
                            if !matches!(range.kind.as_str(), "ECOSYSTEM" | "SEMVER") {
                                continue;
                            }
                            let mut events = Vec::new();
                            for event in range.events {
                                let parsed = match (
                                    event.introduced,
                                    event.fixed,
                                    event.last_affected,
                                    event.limit,
                                ) {
                                    (Some(v), _, _, _) if v == "0" => Event::Introduced(v),
                                    (Some(v), _, _, _) if valid(&v) => Event::Introduced(v),
                                    (None, Some(v), _, _) if valid(&v) => Event::Fixed(v),
                                    (None, None, Some(v), _) if valid(&v) => Event::LastAffected(v),
                                    (None, None, None, Some(v)) if valid(&v) => continue,
                                    _ => return false,
                                };
                                events.push(parsed);
                            }
                            ranges.push(events);
                        }
                        let severity = word(&affected.ecosystem_specific)
                            .max(word(&affected.database_specific))
                            .max(record_severity);
                        staged.push((
                            (ecosystem, key),
                            Entry {
                                advisory: Arc::new(Advisory {
                                    ids: ids.clone(),
                                    severity,
                                    summary: record.summary.clone(),
                                }),
                                affected: Affected::Osv {
                                    ranges,
                                    versions: affected.versions,
                                },
                                file: file_path.clone(),
                            },
                        ));
                    }
                }
            }
        }
        for (key, entry) in staged {
            self.entries.entry(key).or_default().push(entry);
        }
        if let Some(branch) = branch_read
            && !self.alpine_branches.contains(&branch)
        {
            self.alpine_branches.push(branch);
        }
        self.files += 1;
        true
    }

    /// Adds one parsed file's advisories.
    pub fn add_file(&mut self, path: &Path, value: &Value) -> Result<(), ScanError> {
        let file = Arc::new(path.to_owned());
        if value.get("distroversion").is_some() && value.get("packages").is_some() {
            self.add_secdb(&file, value)?;
        } else if let Some(records) = value.as_array() {
            for (index, record) in records.iter().enumerate() {
                self.add_osv(&file, record, &format!("record {index}"))?;
            }
        } else if value.get("id").is_some() && value.get("affected").is_some() {
            self.add_osv(&file, value, "the record")?;
        } else if value.get("id").is_some() && value.get("withdrawn").is_some() {
            // A withdrawn OSV record may drop its `affected` list.
        } else {
            return Err(ScanError::Malformed {
                path: path.to_owned(),
                entry: "the file".to_owned(),
                reason: "neither an Alpine secdb file (`distroversion`, `packages`) nor an OSV \
                         record (`id`, `affected`) nor an array of OSV records"
                    .to_owned(),
            });
        }
        self.files += 1;
        Ok(())
    }

    fn add_secdb(&mut self, file: &Arc<PathBuf>, value: &Value) -> Result<(), ScanError> {
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
                let ids = ids
                    .iter()
                    .flat_map(|id| id.split_whitespace())
                    .map(str::to_owned)
                    .collect();
                self.entries
                    .entry((Ecosystem::Alpine(branch.clone()), name.to_owned()))
                    .or_default()
                    .push(Entry {
                        advisory: Arc::new(Advisory {
                            ids,
                            severity: Severity::Unknown,
                            summary: None,
                        }),
                        affected: Affected::Before {
                            fixed: fixed.clone(),
                        },
                        file: file.clone(),
                    });
            }
        }
        if !self.alpine_branches.contains(&branch) {
            self.alpine_branches.push(branch);
        }
        Ok(())
    }

    fn add_osv(
        &mut self,
        file: &Arc<PathBuf>,
        record: &Value,
        where_: &str,
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
            let (ecosystem, key, valid): (Ecosystem, String, fn(&str) -> bool) =
                if ecosystem == "PyPI" {
                    (
                        Ecosystem::PyPI,
                        crate::python::wheel::normalize_name(name),
                        |v| v.parse::<pep440_rs::Version>().is_ok(),
                    )
                } else if let Some(branch) = ecosystem.strip_prefix("Alpine:") {
                    (
                        Ecosystem::Alpine(branch.to_owned()),
                        name.to_owned(),
                        crate::apk::version::is_valid,
                    )
                } else {
                    continue;
                };
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
                                "expected one of introduced, fixed, last_affected, limit"
                                    .to_owned(),
                            )
                        })?;
                    let from_the_start = kind == "introduced" && version == "0";
                    if !from_the_start && !valid(version) {
                        return Err(malformed(
                            here(),
                            format!("`{version}` is not a version of the {ecosystem:?} ecosystem"),
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
            let versions = affected["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>();
            let severity = severity_of(&affected["ecosystem_specific"])
                .max(severity_of(&affected["database_specific"]))
                .max(record_severity);
            self.entries
                .entry((ecosystem, key))
                .or_default()
                .push(Entry {
                    advisory: Arc::new(Advisory {
                        ids: ids.clone(),
                        severity,
                        summary: record["summary"].as_str().map(str::to_owned),
                    }),
                    affected: Affected::Osv { ranges, versions },
                    file: file.clone(),
                });
        }
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
}

/// A severity named in `value.severity` as a word (`HIGH`, GitHub's `MODERATE`) or in
/// `value.database_specific.severity`; CVSS vectors are not scored ([`Severity::Unknown`]).
fn severity_of(value: &Value) -> Severity {
    [&value["severity"], &value["database_specific"]["severity"]]
        .into_iter()
        .filter_map(Value::as_str)
        .filter_map(Severity::from_word)
        .max()
        .unwrap_or(Severity::Unknown)
}
