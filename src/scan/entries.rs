//! What the database holds once read: advisories, the versions they affect, the ecosystems
//! they name, and the package names one scan looks up ([`Wanted`]). Shared by the generic
//! reader (`db.rs`) and the fast one (`typed.rs`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::Severity;
use crate::attest::sbom::{PackageKind, SbomPackage};

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

/// Where advisories apply: an ecosystem, and for a distribution its release.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// Alpine, with the branch (`v3.20`).
    Alpine(String),
    /// Debian, with the major release (`12`).
    Debian(String),
    /// The Python package index.
    PyPI,
}

impl Ecosystem {
    /// The ecosystem of an OSV `affected[].package.ecosystem`; None for those kiln does not
    /// match.
    pub fn from_osv(name: &str) -> Option<Ecosystem> {
        if name == "PyPI" {
            Some(Ecosystem::PyPI)
        } else if let Some(branch) = name.strip_prefix("Alpine:") {
            Some(Ecosystem::Alpine(branch.to_owned()))
        } else {
            name.strip_prefix("Debian:")
                .map(|release| Ecosystem::Debian(release.to_owned()))
        }
    }

    /// The name advisories of this ecosystem are keyed by: the PEP 503 name for PyPI, the
    /// name as given for the distributions (origin or source packages).
    pub fn key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match self {
            Ecosystem::PyPI if !is_pep503(name) => {
                Cow::Owned(crate::python::wheel::normalize_name(name))
            }
            _ => Cow::Borrowed(name),
        }
    }

    /// True when `version` is a version of this ecosystem's scheme.
    pub fn is_valid_version(&self, version: &str) -> bool {
        match self {
            Ecosystem::Alpine(_) => crate::apk::version::is_valid(version),
            Ecosystem::Debian(_) => super::dpkg::is_valid(version),
            Ecosystem::PyPI => version.parse::<pep440_rs::Version>().is_ok(),
        }
    }
}

impl std::fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ecosystem::Alpine(branch) => write!(f, "Alpine:{branch}"),
            Ecosystem::Debian(release) => write!(f, "Debian:{release}"),
            Ecosystem::PyPI => f.write_str("PyPI"),
        }
    }
}

/// True when `name` is already its own PEP 503 form (lowercase, single `-` separators).
pub(super) fn is_pep503(name: &str) -> bool {
    let mut last_separator = false;
    name.bytes().all(|b| {
        let separator = matches!(b, b'-' | b'_' | b'.');
        let ok =
            !b.is_ascii_uppercase() && b != b'_' && b != b'.' && !(separator && last_separator);
        last_separator = separator;
        ok
    })
}

/// The package names whose advisories a scan reads, by ecosystem family; advisories for
/// other names are skipped without being checked or kept.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    every: bool,
    alpine: HashSet<String>,
    debian: HashSet<String>,
    pypi: HashSet<String>,
}

impl Wanted {
    /// Every advisory (`kiln db fetch`'s check of a whole file).
    pub fn everything() -> Wanted {
        Wanted {
            every: true,
            ..Wanted::default()
        }
    }

    /// The names `packages` are matched by: apk origins, Debian source packages, PEP 503
    /// names.
    pub fn names_of(packages: &[SbomPackage]) -> Wanted {
        let mut wanted = Wanted::default();
        for package in packages {
            match &package.kind {
                PackageKind::OperatingSystem => {}
                PackageKind::Apk { origin, .. } => {
                    wanted
                        .alpine
                        .insert(origin.clone().unwrap_or_else(|| package.name.clone()));
                }
                PackageKind::Deb { source, .. } => {
                    wanted
                        .debian
                        .insert(source.clone().unwrap_or_else(|| package.name.clone()));
                }
                PackageKind::Python => {
                    wanted
                        .pypi
                        .insert(crate::python::wheel::normalize_name(&package.name));
                }
            }
        }
        wanted
    }

    /// True when advisories for `key` (already in [`Ecosystem::key`] form) are read.
    pub fn keeps(&self, ecosystem: &Ecosystem, key: &str) -> bool {
        self.every
            || match ecosystem {
                Ecosystem::Alpine(_) => self.alpine.contains(key),
                Ecosystem::Debian(_) => self.debian.contains(key),
                Ecosystem::PyPI => self.pypi.contains(key),
            }
    }
}

/// What one file contributed.
#[derive(Debug, Default)]
pub(crate) struct FileEntries {
    /// The kept entries, keyed by (ecosystem, name).
    pub entries: Vec<((Ecosystem, String), Entry)>,
    /// The Alpine branch of a secdb file.
    pub alpine_branch: Option<String>,
    /// Every ecosystem the file's advisories name (kept or not), for the report's notes.
    pub ecosystems: Vec<Ecosystem>,
}

impl FileEntries {
    /// Notes that the file has advisories for `ecosystem`.
    pub fn saw(&mut self, ecosystem: &Ecosystem) {
        if !self.ecosystems.contains(ecosystem) {
            self.ecosystems.push(ecosystem.clone());
        }
    }
}

/// The entry for one secdb `secfixes` item: affected before `fixed`, by the listed ids (an
/// item may hold several, space-separated).
pub(crate) fn secdb_entry<'a>(
    file: &Arc<PathBuf>,
    fixed: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Entry {
    Entry {
        advisory: Arc::new(Advisory {
            ids: ids
                .flat_map(str::split_whitespace)
                .map(str::to_owned)
                .collect(),
            severity: Severity::Unknown,
            summary: None,
        }),
        affected: Affected::Before {
            fixed: fixed.to_owned(),
        },
        file: file.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
