//! The generic path of reading a database file: the file as a JSON tree ([`serde_json::Value`]),
//! every entry checked and named in its error, the wanted ones kept. Used for a file the fast
//! path (`typed.rs`) does not take, and by `kiln db fetch`, which checks every entry of every
//! file it writes.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::debian_tracker::{is_debian_tracker, read_debian_tracker};
use super::entries::{
    Advisory, Affected, Ecosystem, Entry, Event, FileEntries, Wanted, secdb_entry,
};
use super::{ScanError, Severity};

/// The generic path: a file as a JSON tree, every entry checked, the `wanted` ones kept.
pub(super) fn read_value(
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
}
