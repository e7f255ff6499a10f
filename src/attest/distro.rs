//! What an image's distribution says about itself, for the SBOM: its identity (`os-release`,
//! `/etc/alpine-release`) and the Debian packages dpkg installed (`/var/lib/dpkg/status`).
//! Parsers only; [`super::sbom::packages_from_rootfs`] reads the files.

use super::package::{PackageKind, SbomPackage};

/// The distribution as an [`PackageKind::OperatingSystem`] package: `ID` and `VERSION_ID` from
/// an os-release file, the version replaced by `/etc/alpine-release` when the image has one
/// (it carries the full point release, as scanners expect: `3.20.3`). None without an `ID`.
pub fn operating_system(
    os_release: Option<&str>,
    alpine_release: Option<&str>,
) -> Option<SbomPackage> {
    let field = |key: &str| {
        os_release?.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let unquoted = value.trim().trim_matches(|c| c == '"' || c == '\'');
            Some(unquoted.to_owned())
        })
    };
    let alpine = alpine_release
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let (name, version) = match (field("ID"), alpine) {
        (_, Some(version)) => ("alpine".to_owned(), version),
        (Some(id), None) => (id, field("VERSION_ID").unwrap_or_default()),
        (None, None) => return None,
    };
    if name.is_empty() {
        return None;
    }
    Some(SbomPackage {
        kind: PackageKind::OperatingSystem,
        name: name.to_lowercase(),
        version,
        license: None,
        checksum: None,
    })
}

/// The packages dpkg's status file lists as installed (`Status: install ok installed`; removed
/// packages that left configuration files behind are not in the image's software). Fields:
/// `Package`, `Version`, `Architecture`, `Source` (`name` or `name (version)`).
pub fn parse_dpkg_status(text: &str) -> Vec<SbomPackage> {
    let mut packages = Vec::new();
    for record in text.split("\n\n") {
        let field = |key: &str| {
            record.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                Some(value.trim().to_owned())
            })
        };
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        let (Some(name), Some(version), true) = (field("Package"), field("Version"), installed)
        else {
            continue;
        };
        let (source, source_version) = match field("Source") {
            Some(source) => match source.split_once(' ') {
                Some((source, rest)) => {
                    let stated = rest.trim().trim_start_matches('(').trim_end_matches(')');
                    (
                        Some(source.to_owned()),
                        Some(stated.to_owned()).filter(|v| !v.is_empty() && *v != version),
                    )
                }
                None => (Some(source), None),
            },
            None => (None, None),
        };
        packages.push(SbomPackage {
            kind: PackageKind::Deb {
                arch: field("Architecture").unwrap_or_else(|| "all".to_owned()),
                source: source.filter(|s| *s != name),
                source_version,
            },
            name,
            version,
            license: None,
            checksum: None,
        });
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpine_release_wins_over_os_release() {
        let os = operating_system(
            Some("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20\n"),
            Some("3.20.3\n"),
        )
        .unwrap();
        assert_eq!(
            (os.name.as_str(), os.version.as_str()),
            ("alpine", "3.20.3")
        );
        let debian = operating_system(Some("ID=debian\nVERSION_ID=\"12\"\n"), None).unwrap();
        assert_eq!(
            (debian.name.as_str(), debian.version.as_str()),
            ("debian", "12")
        );
        assert!(operating_system(Some("NAME=x\n"), None).is_none());
        assert!(operating_system(None, None).is_none());
    }

    #[test]
    fn dpkg_status_keeps_installed_packages_and_their_sources() {
        let status = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1+b1\n";
        let packages = parse_dpkg_status(status);
        assert_eq!(packages.len(), 2);
        assert_eq!(
            packages[0].purl_in(Some("debian-12")),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"
        );
        assert_eq!(
            packages[1].source_info().unwrap(),
            "built package from: zlib 1:1.2.13.dfsg-1"
        );
    }
}
