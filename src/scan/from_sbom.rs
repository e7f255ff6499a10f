//! The package list of an SPDX 2.3 or CycloneDX 1.6 JSON SBOM, for `kiln scan --sbom FILE`: the
//! distribution (the `SPDXRef-OperatingSystem` package, or the `operating-system` component)
//! and every package with a `pkg:apk`, `pkg:deb` or `pkg:pypi` purl, its qualifiers read back
//! (`arch`, `upstream` = the source package).

use serde_json::Value;

use crate::attest::sbom::{PackageKind, SbomPackage};

/// Percent-decodes a purl component.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The package a purl names, None for purl types kiln does not scan.
pub fn package_from_purl(purl: &str) -> Option<SbomPackage> {
    let rest = purl.strip_prefix("pkg:")?;
    let (rest, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
    let qualifiers = qualifiers.split('#').next().unwrap_or_default();
    let (path, version) = rest.rsplit_once('@')?;
    let (kind, name) = (path.split('/').next()?, path.rsplit('/').next()?);
    let qualifier = |key: &str| {
        qualifiers
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(decode)
    };
    let (name, version) = (decode(name), decode(version));
    let kind = match kind {
        "apk" => PackageKind::Apk {
            arch: qualifier("arch").unwrap_or_else(|| "noarch".to_owned()),
            origin: qualifier("upstream").or_else(|| Some(name.clone())),
        },
        "deb" => {
            let upstream = qualifier("upstream");
            let (source, source_version) = match upstream.as_deref().map(|u| u.split_once('@')) {
                Some(Some((s, v))) => (Some(s.to_owned()), Some(v.to_owned())),
                Some(None) => (upstream.clone(), None),
                None => (None, None),
            };
            PackageKind::Deb {
                arch: qualifier("arch").unwrap_or_else(|| "all".to_owned()),
                source,
                source_version,
            }
        }
        "pypi" => PackageKind::Python,
        _ => return None,
    };
    Some(SbomPackage {
        kind,
        name,
        version,
        license: None,
        checksum: None,
    })
}

/// The packages an SBOM document lists; None when it is neither SPDX nor CycloneDX JSON.
pub fn packages_from_sbom(document: &Value) -> Option<Vec<SbomPackage>> {
    let mut packages = Vec::new();
    let os = |name: &Value, version: &Value| SbomPackage {
        kind: PackageKind::OperatingSystem,
        name: name.as_str().unwrap_or_default().to_lowercase(),
        version: version.as_str().unwrap_or_default().to_owned(),
        license: None,
        checksum: None,
    };
    if let Some(list) = document["packages"].as_array()
        && document["spdxVersion"].is_string()
    {
        for package in list {
            if package["SPDXID"]
                .as_str()
                .is_some_and(|id| id.starts_with("SPDXRef-OperatingSystem"))
            {
                packages.push(os(&package["name"], &package["versionInfo"]));
            }
            for reference in package["externalRefs"].as_array().into_iter().flatten() {
                if reference["referenceType"] == "purl"
                    && let Some(found) = reference["referenceLocator"]
                        .as_str()
                        .and_then(package_from_purl)
                {
                    packages.push(found);
                }
            }
        }
    } else if document["bomFormat"] == "CycloneDX" {
        for component in document["components"].as_array().into_iter().flatten() {
            if component["type"] == "operating-system" {
                packages.push(os(&component["name"], &component["version"]));
            } else if let Some(found) = component["purl"].as_str().and_then(package_from_purl) {
                packages.push(found);
            }
        }
    } else {
        return None;
    }
    packages.sort();
    packages.dedup();
    Some(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_read_back_into_packages() {
        let apk = package_from_purl(
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl",
        )
        .unwrap();
        assert_eq!(
            apk.kind,
            PackageKind::Apk {
                arch: "x86_64".to_owned(),
                origin: Some("openssl".to_owned())
            }
        );
        let deb = package_from_purl(
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1%2Bb1?arch=amd64&upstream=zlib%401:1.2.13.dfsg-1",
        )
        .unwrap();
        assert_eq!(deb.version, "1:1.2.13.dfsg-1+b1");
        assert_eq!(
            deb.source_info().unwrap(),
            "built package from: zlib 1:1.2.13.dfsg-1"
        );
        assert_eq!(
            package_from_purl("pkg:pypi/flask-login@0.6.3")
                .unwrap()
                .name,
            "flask-login"
        );
        assert!(package_from_purl("pkg:npm/left-pad@1.0.0").is_none());
    }
}
