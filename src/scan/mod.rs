//! Vulnerability scanning from the image's own package list, offline: the packages kiln lists
//! for the SBOM ([`crate::attest::packages_from_rootfs`]) matched against a local database of
//! Alpine secdb and OSV files ([`db`]), with apk-tools version ordering for Alpine (by origin
//! package), dpkg's ordering for Debian ([`dpkg`], by source package and source version, as
//! OSV's `Debian:N` records name them) and PEP 440 for Python (by PEP 503 name). [`report`]
//! prints the findings.

pub mod db;
mod debian_tracker;
pub mod dpkg;
mod entries;
pub mod fetch;
mod files;
pub mod from_sbom;
mod generic;
pub mod index;
pub mod report;
mod typed;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::attest::sbom::{PackageKind, SbomPackage};
use db::{Affected, Ecosystem, Event};
pub use db::{Database, Wanted};

/// How bad a finding is, lowest first; `Unknown` when the database gives no severity (Alpine's
/// secdb never does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Not stated.
    Unknown,
    /// Low.
    Low,
    /// Medium (GitHub's "moderate").
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parses `unknown`, `low`, `medium`/`moderate`, `high`, `critical` (any case).
    pub fn from_word(word: &str) -> Option<Severity> {
        Some(match word.to_ascii_lowercase().as_str() {
            "unknown" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    /// The lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl Database {
    /// Reads the database in `dir`, keeping the advisories for the `wanted` names: from its
    /// index ([`index`]) when there is one and it is fresh, else every `*.json` file below
    /// `dir` (in parallel, merged in the order of their paths). It sits here, above both,
    /// because the index falls back on reading the files itself.
    pub fn load(dir: &Path, wanted: &Wanted) -> Result<Database, ScanError> {
        if !dir.is_dir() {
            return Err(ScanError::NoDatabase(dir.to_owned()));
        }
        if let Some(db) = index::load(dir, wanted)? {
            return Ok(db);
        }
        Database::read_files(dir, files::database_files(dir)?, wanted)
    }
}

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The database directory is missing.
    #[error(
        "vulnerability database `{}` is not a directory; write Alpine secdb and OSV JSON files there (see `kiln scan --help`) or fetch them with `kiln db fetch`",
        .0.display()
    )]
    NoDatabase(PathBuf),
    /// A database file could not be read.
    #[error("failed to read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A database file or entry is not in the expected format.
    #[error("malformed vulnerability database file `{}`, {entry}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The entry within it.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The database's index no longer describes its files.
    #[error(
        "the vulnerability database index `{}` is out of date: {reason}; rebuild it with `kiln db index {}` (or delete it to read the files)",
        index.display(),
        dir.display()
    )]
    StaleIndex {
        /// The index file.
        index: PathBuf,
        /// The database directory.
        dir: PathBuf,
        /// What changed.
        reason: String,
    },
    /// The database's index cannot be read.
    #[error(
        "malformed vulnerability database index `{}`: {reason}; rebuild it with `kiln db index {}`",
        index.display(),
        dir.display()
    )]
    BadIndex {
        /// The index file.
        index: PathBuf,
        /// The database directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The index could not be written.
    #[error("failed to write the vulnerability database index `{}`", path.display())]
    WriteIndex {
        /// The index file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One vulnerable package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The package name as installed.
    pub package: String,
    /// `apk`, `deb` or `pypi`.
    pub ecosystem: &'static str,
    /// The installed version.
    pub installed: String,
    /// The first fixed version, when there is one.
    pub fixed_in: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// The advisory ids (OSV id and aliases, or CVE ids).
    pub ids: Vec<String>,
    /// The package's purl.
    pub purl: String,
}

/// The result of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `ID-VERSION` of the image's distribution, when known.
    pub distro: Option<String>,
    /// How many packages were checked.
    pub packages_checked: usize,
    /// The findings, sorted.
    pub findings: Vec<Finding>,
    /// What the scan could not check (no secdb for the image's branch, no release known).
    pub notes: Vec<String>,
}

impl Report {
    /// The findings at or above `threshold`.
    pub fn at_or_above(&self, threshold: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity >= threshold)
            .count()
    }
}

/// Matches `packages` (as listed for the SBOM, the OS package included) against `db` (loaded
/// for [`Wanted::names_of`] these packages, or for everything).
pub fn scan(packages: &[SbomPackage], db: &Database) -> Report {
    let os = packages
        .iter()
        .find(|p| p.kind == PackageKind::OperatingSystem);
    let distro = os.map(|os| format!("{}-{}", os.name, os.version));
    // Alpine's branch: `v` + major.minor of the release (`3.20.3` -> `v3.20`).
    let alpine_branch = os.filter(|os| os.name == "alpine").map(|os| {
        let mut parts = os.version.split('.');
        match (parts.next(), parts.next()) {
            (Some(major), Some(minor)) => format!("v{major}.{minor}"),
            _ => format!("v{}", os.version),
        }
    });
    // OSV's Debian ecosystems name the major release (`Debian:12`).
    let debian = os
        .filter(|os| os.name == "debian" && !os.version.is_empty())
        .map(|os| {
            let major = os.version.split('.').next().unwrap_or(&os.version);
            Ecosystem::Debian(major.to_owned())
        });
    let mut report = Report {
        distro: distro.clone(),
        ..Report::default()
    };
    let mut apk_without_branch = 0;
    let mut deb_without_release = 0;
    let mut deb_checked = 0;
    for package in packages {
        let purl = package.purl_in(distro.as_deref());
        let finding =
            |ecosystem: &'static str, entry: &db::Entry, fixed_in: Option<String>| Finding {
                package: package.name.clone(),
                ecosystem,
                installed: package.version.clone(),
                fixed_in,
                severity: entry.advisory.severity,
                ids: entry.advisory.ids.clone(),
                purl: purl.clone(),
            };
        match &package.kind {
            PackageKind::OperatingSystem => continue,
            PackageKind::Deb {
                source,
                source_version,
                ..
            } => {
                report.packages_checked += 1;
                let Some(ecosystem) = &debian else {
                    deb_without_release += 1;
                    continue;
                };
                deb_checked += 1;
                // Debian's advisories are about source packages and their versions.
                let name = source.as_deref().unwrap_or(&package.name);
                let version = source_version.as_deref().unwrap_or(&package.version);
                for entry in db.entries(ecosystem, name) {
                    if let Some(fixed_in) = affects(&entry.affected, version, &dpkg::compare) {
                        report.findings.push(finding("deb", entry, fixed_in));
                    }
                }
            }
            PackageKind::Apk { origin, .. } => {
                report.packages_checked += 1;
                let Some(branch) = &alpine_branch else {
                    apk_without_branch += 1;
                    continue;
                };
                let name = origin.as_deref().unwrap_or(&package.name);
                let entries = db.entries(&Ecosystem::Alpine(branch.clone()), name);
                for entry in entries {
                    if let Some(fixed_in) = affects(&entry.affected, &package.version, &|a, b| {
                        crate::apk::version::compare(a, b)
                    }) {
                        report.findings.push(finding("apk", entry, fixed_in));
                    }
                }
            }
            PackageKind::Python => {
                report.packages_checked += 1;
                let name = crate::python::wheel::normalize_name(&package.name);
                let Ok(installed) = package.version.parse::<pep440_rs::Version>() else {
                    report.notes.push(format!(
                        "{} {}: not a PEP 440 version, not checked",
                        package.name, package.version
                    ));
                    continue;
                };
                let compare = |a: &str, b: &str| match (
                    a.parse::<pep440_rs::Version>(),
                    b.parse::<pep440_rs::Version>(),
                ) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    _ => a.cmp(b),
                };
                for entry in db.entries(&Ecosystem::PyPI, &name) {
                    if let Some(fixed_in) =
                        affects(&entry.affected, &installed.to_string(), &compare)
                    {
                        let mut found = finding("pypi", entry, fixed_in);
                        found.package = name.clone();
                        report.findings.push(found);
                    }
                }
            }
        }
    }
    if let Some(branch) = &alpine_branch
        && !db.has_alpine_branch(branch)
    {
        report.notes.push(format!(
            "no Alpine secdb file for {branch} in the database: apk packages were matched against OSV records only"
        ));
    }
    if apk_without_branch > 0 {
        report.notes.push(format!(
            "{apk_without_branch} apk packages not checked: the image names no Alpine release (/etc/alpine-release)"
        ));
    }
    if let Some(ecosystem) = &debian
        && deb_checked > 0
        && !db.has_ecosystem(ecosystem)
    {
        report.notes.push(format!(
            "no OSV records for {ecosystem} in the database: {deb_checked} Debian packages were checked against none"
        ));
    }
    if deb_without_release > 0 {
        report.notes.push(format!(
            "{deb_without_release} Debian packages not checked: the image names no Debian release (VERSION_ID in /etc/os-release)"
        ));
    }
    report.findings.sort();
    report.findings.dedup();
    report
}

/// `Some(first fixed version)` (None inside when no fix is known) when `installed` is
/// affected; None when it is not. OSV ranges follow the spec's evaluation: events in version
/// order, `introduced` opens, `fixed` (at or below) and `last_affected` (strictly below) close.
fn affects(
    affected: &Affected,
    installed: &str,
    compare: &dyn Fn(&str, &str) -> Ordering,
) -> Option<Option<String>> {
    match affected {
        Affected::Before { fixed } => {
            (compare(installed, fixed) == Ordering::Less).then(|| Some(fixed.clone()))
        }
        Affected::Osv { ranges, versions } => {
            let listed = versions
                .iter()
                .any(|v| compare(installed, v) == Ordering::Equal);
            let mut fixed_in: Option<String> = None;
            let mut in_range = false;
            for events in ranges {
                let version_of = |event: &Event| match event {
                    Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) => v.clone(),
                };
                let mut sorted = events.clone();
                sorted.sort_by(|a, b| {
                    let (a, b) = (version_of(a), version_of(b));
                    match (a == "0", b == "0") {
                        (true, true) => Ordering::Equal,
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        (false, false) => compare(&a, &b),
                    }
                });
                let mut affected = false;
                for event in &sorted {
                    match event {
                        Event::Introduced(v) if v == "0" || compare(installed, v).is_ge() => {
                            affected = true;
                        }
                        Event::Fixed(v) if compare(installed, v).is_ge() => affected = false,
                        Event::LastAffected(v) if compare(installed, v).is_gt() => {
                            affected = false;
                        }
                        _ => {}
                    }
                }
                if affected {
                    in_range = true;
                    // The fix for this version: the first fixed event above it in its range.
                    let fix = sorted.iter().find_map(|event| match event {
                        Event::Fixed(v) if compare(installed, v).is_lt() => Some(v.clone()),
                        _ => None,
                    });
                    fixed_in = fixed_in.or(fix);
                }
            }
            (listed || in_range).then_some(fixed_in)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(a: &str, b: &str) -> Ordering {
        let parse =
            |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
        parse(a).cmp(&parse(b))
    }

    #[test]
    fn osv_ranges_open_and_close_as_the_schema_says() {
        use Event::*;
        let range = |events: Vec<Event>| Affected::Osv {
            ranges: vec![events],
            versions: Vec::new(),
        };
        let s = |v: &str| v.to_owned();
        let cases = [
            (
                range(vec![Introduced(s("0")), Fixed(s("2.0"))]),
                "1.9",
                Some(Some(s("2.0"))),
            ),
            (
                range(vec![Introduced(s("0")), Fixed(s("2.0"))]),
                "2.0",
                None,
            ),
            (
                range(vec![Introduced(s("1.0")), Fixed(s("2.0"))]),
                "0.9",
                None,
            ),
            (
                range(vec![Introduced(s("1.0")), LastAffected(s("1.5"))]),
                "1.5",
                Some(None),
            ),
            (
                range(vec![Introduced(s("1.0")), LastAffected(s("1.5"))]),
                "1.6",
                None,
            ),
            // Two introduced/fixed pairs in one range: the gap between them is not affected.
            (
                range(vec![
                    Introduced(s("1.0")),
                    Fixed(s("1.2")),
                    Introduced(s("2.0")),
                    Fixed(s("2.3")),
                ]),
                "1.5",
                None,
            ),
            (
                range(vec![
                    Fixed(s("2.3")),
                    Introduced(s("2.0")),
                    Fixed(s("1.2")),
                    Introduced(s("1.0")),
                ]),
                "2.1",
                Some(Some(s("2.3"))),
            ),
            (
                Affected::Osv {
                    ranges: Vec::new(),
                    versions: vec![s("3.1")],
                },
                "3.1",
                Some(None),
            ),
            (
                Affected::Before { fixed: s("1.2") },
                "1.1",
                Some(Some(s("1.2"))),
            ),
            (Affected::Before { fixed: s("1.2") }, "1.2", None),
        ];
        for (affected, installed, expected) in cases {
            assert_eq!(
                affects(&affected, installed, &numeric),
                expected,
                "{affected:?} {installed}"
            );
        }
    }
}
