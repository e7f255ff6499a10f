//! One package found in an image, as SBOMs and scanners see it: its ecosystem ([`PackageKind`]),
//! name, version, declared license and checksum, and the purl scanners match it by. The
//! parsers that make these values live with the databases they read ([`super::distro`] for the
//! distribution and dpkg, [`super::sbom`] for apk and Python); the documents that print them
//! are [`super::sbom`] and [`super::cyclonedx`].

use super::material::{apk_purl, percent_encode, pypi_purl};

/// Which ecosystem a package comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PackageKind {
    /// The distribution itself (`name` = its os-release `ID`, `version` = its release), the
    /// package scanners read to pick the distribution's advisories.
    OperatingSystem,
    /// An Alpine package, with its apk architecture (`x86_64`, `aarch64`, ...).
    Apk {
        /// The apk arch name.
        arch: String,
        /// The source package it was built from (apk's `o:`), which is what Alpine's secdb
        /// names; None when the database does not say.
        origin: Option<String>,
    },
    /// A Debian package from dpkg's status database.
    Deb {
        /// The dpkg architecture (`amd64`, `all`, ...).
        arch: String,
        /// The source package (`Source:`), None when it has the binary package's name.
        source: Option<String>,
        /// The source version when `Source:` gives one that differs from the package's.
        source_version: Option<String>,
    },
    /// A Python distribution.
    Python,
}

/// One package in the image.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SbomPackage {
    /// The ecosystem.
    pub kind: PackageKind,
    /// The name as the package manager spells it.
    pub name: String,
    /// The full version (`1.2.5-r0`, `2.32.3`).
    pub version: String,
    /// The declared license text, if any.
    pub license: Option<String>,
    /// A checksum: (SPDX algorithm name `SHA1`/`SHA256`, lowercase hex).
    pub checksum: Option<(String, String)>,
}

impl SbomPackage {
    /// The package's purl without a `distro` qualifier (see [`SbomPackage::purl_in`]).
    pub fn purl(&self) -> String {
        self.purl_in(None)
    }

    /// The package's purl as scanners match it: `arch`, then `distro=ID-VERSION` when the
    /// distribution is known, then `upstream=SOURCE` when the source package has another name
    /// (qualifiers in the purl spec's sorted order). None for the operating system itself.
    pub fn purl_in(&self, distro: Option<&str>) -> String {
        let with_qualifiers = |base: String, arch: &str, upstream: Option<String>| {
            let mut purl = format!("{base}?arch={}", percent_encode(arch));
            if let Some(distro) = distro {
                purl.push_str(&format!("&distro={}", percent_encode(distro)));
            }
            if let Some(upstream) = upstream {
                purl.push_str(&format!("&upstream={}", percent_encode(&upstream)));
            }
            purl
        };
        match &self.kind {
            PackageKind::OperatingSystem => String::new(),
            PackageKind::Apk { arch, origin } => {
                let base = apk_purl(&self.name, &self.version, arch);
                let base = base.split_once('?').map_or(base.as_str(), |(b, _)| b);
                let upstream = origin.clone().filter(|o| *o != self.name);
                with_qualifiers(base.to_owned(), arch, upstream)
            }
            PackageKind::Deb {
                arch,
                source,
                source_version,
            } => {
                let base = format!(
                    "pkg:deb/debian/{}@{}",
                    percent_encode(&self.name.to_lowercase()),
                    percent_encode(&self.version)
                );
                let upstream = match (source, source_version) {
                    (Some(source), Some(version)) => Some(format!("{source}@{version}")),
                    (Some(source), None) => Some(source.clone()),
                    (None, Some(version)) => Some(format!("{}@{version}", self.name)),
                    (None, None) => None,
                };
                with_qualifiers(base, arch, upstream)
            }
            PackageKind::Python => pypi_purl(&self.name, &self.version),
        }
    }

    /// `built package from: SOURCE VERSION`, the SPDX `sourceInfo` Trivy reads the source
    /// package from; None for packages without a source package (Python, the OS).
    pub fn source_info(&self) -> Option<String> {
        let (source, version) = match &self.kind {
            PackageKind::Apk { origin, .. } => (origin.as_deref(), None),
            PackageKind::Deb {
                source,
                source_version,
                ..
            } => (source.as_deref(), source_version.as_deref()),
            PackageKind::OperatingSystem | PackageKind::Python => return None,
        };
        Some(format!(
            "built package from: {} {}",
            source.unwrap_or(&self.name),
            version.unwrap_or(&self.version)
        ))
    }

    /// True for packages the distribution's package manager installed (apk, dpkg).
    pub fn is_os_package(&self) -> bool {
        matches!(self.kind, PackageKind::Apk { .. } | PackageKind::Deb { .. })
    }
}
