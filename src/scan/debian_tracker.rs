//! Debian's security tracker export in the database: source package -> CVE id -> `releases`
//! -> code name -> `status`, `fixed_version`, `urgency`, read by the generic path only
//! ([`super::generic`]), into `Debian:N` entries as OSV's Debian records name them.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::entries::{Advisory, Affected, Ecosystem, Entry, Event, FileEntries, Wanted};
use super::{ScanError, Severity};

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
pub(super) fn is_debian_tracker(value: &Value) -> bool {
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
pub(super) fn read_debian_tracker(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::sbom::{PackageKind, SbomPackage};
    use crate::scan::Database;

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
}
