//! SPDX 2.3 JSON SBOMs: the image as the described package, the apk packages and Python
//! distributions it contains, and [`packages_from_rootfs`], which lists those from the final
//! image's file system.
//!
//! Shape: `SPDXRef-DOCUMENT DESCRIBES SPDXRef-image`, `SPDXRef-image CONTAINS` each package.
//! Packages carry `filesAnalyzed: false`, a purl (`pkg:apk/alpine/NAME@VER?arch=ARCH`,
//! `pkg:pypi/NAME@VER`, the image as `pkg:oci/NAME@sha256:...?repository_url=...`), the apk
//! checksum as SHA1/SHA256, and `licenseDeclared` when the declared license is a plain
//! expression over well-known SPDX ids (anything else becomes NOASSERTION plus a
//! `licenseComments` with the text as declared, so strict validators accept the document).
//!
//! Reproducibility: `creationInfo.created` is SOURCE_DATE_EPOCH, and `documentNamespace` is
//! derived from the content (`<KILN_URI_BASE>/spdx/<name>-<sha256 of the document without
//! it>`), never a random UUID, so equal images give byte-identical SBOMs.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{Value, json};

use super::AttestError;
use super::license::is_known_expression;
use super::material::{normalize_python_name, split_reference};
pub use super::package::{PackageKind, SbomPackage};
use super::provenance::{Statement, Subject};
use crate::digest::Digest;
use crate::image::rfc3339;
use crate::layer::LayerPath;
use crate::rootfs::view::{FsView, NodeKind};

/// The in-toto predicate type of an SPDX document (BuildKit, imagetools, cosign `spdxjson`).
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// Media type of an SPDX JSON blob.
pub const MEDIA_TYPE_SPDX_JSON: &str = "application/spdx+json";

/// What an SBOM describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SbomParams {
    /// The image name (`ghcr.io/acme/app:v1`).
    pub image_name: String,
    /// The image manifest digest.
    pub image_digest: Digest,
    /// SOURCE_DATE_EPOCH: `creationInfo.created`.
    pub source_date_epoch: i64,
    /// The packages the image contains.
    pub packages: Vec<SbomPackage>,
}

/// `SPDXRef-` + `text` with every character outside `[A-Za-z0-9.-]` replaced by `-`.
fn spdx_id(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{clean}")
}

/// The SPDX 2.3 JSON document for `params`.
pub fn spdx_document(params: &SbomParams) -> Result<Value, AttestError> {
    let (name, _) = split_reference(&params.image_name);
    let last_segment = name.rsplit('/').next().unwrap_or(&name);
    let image_purl = format!(
        "pkg:oci/{}@{}?repository_url={}",
        last_segment.to_lowercase(),
        params.image_digest,
        name
    );
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-image",
        "name": name,
        "versionInfo": params.image_digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": params.image_digest.hex()}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": image_purl,
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-image",
    })];
    let mut sorted = params.packages.clone();
    sorted.sort();
    sorted.dedup();
    let mut used = BTreeSet::new();
    let mut unique_id = |base: String| {
        let mut id = base.clone();
        let mut n = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    };
    // The distribution: Trivy recognizes it only by this SPDXID prefix and takes the packages
    // it CONTAINS as OS packages; Grype reads the same fact from each purl's `distro=`.
    let operating_system = sorted
        .iter()
        .find(|p| p.kind == PackageKind::OperatingSystem);
    let distro = operating_system.map(|os| format!("{}-{}", os.name, os.version));
    let os_id = operating_system.map(|os| {
        let id = unique_id(spdx_id(&format!(
            "OperatingSystem-{}-{}",
            os.name, os.version
        )));
        packages.push(json!({
            "SPDXID": id,
            "name": os.name,
            "versionInfo": os.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        id
    });
    for package in &sorted {
        let prefix = match package.kind {
            PackageKind::OperatingSystem => continue,
            PackageKind::Apk { .. } => "apk",
            PackageKind::Deb { .. } => "deb",
            PackageKind::Python => "pypi",
        };
        let id = unique_id(spdx_id(&format!(
            "{prefix}-{}-{}",
            package.name, package.version
        )));
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl_in(distro.as_deref()),
            }],
        });
        match package.kind {
            PackageKind::Apk { .. } => entry["supplier"] = json!("Organization: Alpine Linux"),
            PackageKind::Deb { .. } => entry["supplier"] = json!("Organization: Debian"),
            _ => {}
        }
        if let Some(source_info) = package.source_info() {
            entry["sourceInfo"] = json!(source_info);
        }
        match package.license.as_deref().map(str::trim) {
            Some(license) if is_known_expression(license) => {
                entry["licenseDeclared"] = json!(license);
            }
            Some(license) if !license.is_empty() => {
                entry["licenseDeclared"] = json!("NOASSERTION");
                entry["licenseComments"] = json!(format!("declared by the package: {license}"));
            }
            _ => {}
        }
        if let Some((algorithm, value)) = &package.checksum {
            entry["checksums"] = json!([{"algorithm": algorithm, "checksumValue": value}]);
        }
        let container = match &os_id {
            Some(os_id) if package.is_os_package() => os_id.as_str(),
            _ => "SPDXRef-image",
        };
        relationships.push(json!({
            "spdxElementId": container,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        packages.push(entry);
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{name}@{}", params.image_digest),
        "creationInfo": {
            "created": rfc3339(params.source_date_epoch),
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    let content = Digest::of(&crate::image::canonical::to_vec(&document)?);
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    document["documentNamespace"] = json!(format!(
        "{}/spdx/{slug}-{}",
        super::KILN_URI_BASE,
        content.hex()
    ));
    Ok(document)
}

/// The SBOM as an in-toto statement (predicate type [`SPDX_PREDICATE_TYPE`]) about `subjects`.
pub fn spdx_statement(params: &SbomParams, subjects: &[Subject]) -> Result<Statement, AttestError> {
    Ok(Statement::new(
        subjects,
        SPDX_PREDICATE_TYPE,
        spdx_document(params)?,
    ))
}

/// Where [`packages_from_rootfs`] looks for `pythonX.Y/{site,dist}-packages`: these library
/// directories, plus `/home/*/.local/lib` and `/opt/*/lib` (virtualenvs).
const PYTHON_LIB_DIRS: &[&str] = &["/usr/lib", "/usr/local/lib", "/root/.local/lib"];

/// Lists the distribution (os-release, `/etc/alpine-release`), the apk packages
/// (`/lib/apk/db/installed`), Debian packages (`/var/lib/dpkg/status`) and Python
/// distributions (`*.dist-info/METADATA` in site-packages) installed in `view`, sorted and
/// deduplicated.
pub fn packages_from_rootfs(view: &dyn FsView) -> Result<Vec<SbomPackage>, AttestError> {
    let mut packages = Vec::new();
    let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
    let os_release = match text(read_optional(view, "/etc/os-release")?) {
        Some(found) => Some(found),
        None => text(read_optional(view, "/usr/lib/os-release")?),
    };
    let alpine_release = text(read_optional(view, "/etc/alpine-release")?);
    packages.extend(super::distro::operating_system(
        os_release.as_deref(),
        alpine_release.as_deref(),
    ));
    if let Some(installed) = text(read_optional(view, "/lib/apk/db/installed")?) {
        packages.extend(parse_apk_installed(&installed));
    }
    if let Some(status) = text(read_optional(view, "/var/lib/dpkg/status")?) {
        packages.extend(super::distro::parse_dpkg_status(&status));
    }
    let mut lib_dirs: Vec<String> = PYTHON_LIB_DIRS.iter().map(|d| (*d).to_owned()).collect();
    for (parent, below) in [("/home", ".local/lib"), ("/opt", "lib")] {
        for child in list_dir(view, parent)? {
            lib_dirs.push(format!("{parent}/{child}/{below}"));
        }
    }
    for lib in lib_dirs {
        for python in list_dir(view, &lib)?
            .into_iter()
            .filter(|n| n.starts_with("python"))
        {
            for packages_dir in ["site-packages", "dist-packages"] {
                let dir = format!("{lib}/{python}/{packages_dir}");
                for dist_info in list_dir(view, &dir)?
                    .into_iter()
                    .filter(|n| n.ends_with(".dist-info"))
                {
                    let path = format!("{dir}/{dist_info}/METADATA");
                    if let Some(bytes) = read_optional(view, &path)?
                        && let Some(package) =
                            parse_python_metadata(&String::from_utf8_lossy(&bytes))
                    {
                        packages.push(package);
                    }
                }
            }
        }
    }
    packages.sort();
    packages.dedup();
    Ok(packages)
}

fn layer_path(path: &str) -> Result<LayerPath, AttestError> {
    LayerPath::new(path).map_err(|e| AttestError::Rootfs {
        path: path.to_owned(),
        source: crate::rootfs::view::ViewError::NotFound(e.to_string()),
    })
}

/// The names in directory `path` (symlinks followed), empty when it is missing or not a dir.
fn list_dir(view: &dyn FsView, path: &str) -> Result<Vec<String>, AttestError> {
    let rootfs = |source| AttestError::Rootfs {
        path: path.to_owned(),
        source,
    };
    match view.stat(&layer_path(path)?, true).map_err(rootfs)? {
        Some((resolved, node)) if node.kind == NodeKind::Dir => {
            view.read_dir(&resolved).map_err(rootfs)
        }
        _ => Ok(Vec::new()),
    }
}

/// The bytes of regular file `path`, None when it is missing or not a regular file.
fn read_optional(view: &dyn FsView, path: &str) -> Result<Option<Vec<u8>>, AttestError> {
    let rootfs = |source| AttestError::Rootfs {
        path: path.to_owned(),
        source,
    };
    match view.stat(&layer_path(path)?, true).map_err(rootfs)? {
        Some((_, node)) if matches!(node.kind, NodeKind::File { .. }) => {
            view.read_file(&layer_path(path)?).map(Some).map_err(rootfs)
        }
        _ => Ok(None),
    }
}

/// Parses apk's installed database: blank-line separated records of `K:value` lines; uses `P`
/// (name), `V` (version), `A` (arch), `L` (license) and `C` (`Q1`+base64 sha1 or `Q2`+base64
/// sha256). Records without a name or version are skipped.
pub fn parse_apk_installed(text: &str) -> Vec<SbomPackage> {
    let mut packages = Vec::new();
    for record in text.split("\n\n") {
        let field = |key: &str| {
            record
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(str::to_owned)
        };
        let (Some(name), Some(version)) = (field("P"), field("V")) else {
            continue;
        };
        let checksum = field("C").and_then(|c| {
            let (algorithm, b64) = if let Some(b64) = c.strip_prefix("Q1") {
                ("SHA1", b64)
            } else {
                ("SHA256", c.strip_prefix("Q2")?)
            };
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some((algorithm.to_owned(), hex::encode(raw)))
        });
        packages.push(SbomPackage {
            kind: PackageKind::Apk {
                arch: field("A").unwrap_or_else(|| "noarch".to_owned()),
                origin: field("o"),
            },
            name,
            version,
            license: field("L"),
            checksum,
        });
    }
    packages
}

/// Parses a dist-info `METADATA` header block (`Name`, `Version`, `License-Expression` or else
/// the first line of `License`); None without a name and version.
pub fn parse_python_metadata(text: &str) -> Option<SbomPackage> {
    let mut name = None;
    let mut version = None;
    let mut expression = None;
    let mut license = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.to_ascii_lowercase().as_str() {
            "name" => name = Some(value.to_owned()),
            "version" => version = Some(value.to_owned()),
            "license-expression" => expression = Some(value.to_owned()),
            "license" if !value.is_empty() && license.is_none() => license = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(SbomPackage {
        kind: PackageKind::Python,
        name: normalize_python_name(&name?),
        version: version?,
        license: expression.or(license),
        checksum: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apk_db_records() {
        let db = "C:Q1hdUpqRv5mYgJEqW52UmVsvmeedE=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r29\nA:aarch64\nL:GPL-2.0-only\n\nV:1\n";
        let packages = parse_apk_installed(db);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "musl");
        assert_eq!(
            packages[0].purl(),
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64"
        );
        assert_eq!(
            packages[0].checksum,
            Some((
                "SHA1".to_owned(),
                "85d529a91bf999880912a5b9d94995b2f99e79d1".to_owned()
            ))
        );
        assert_eq!(packages[1].checksum, None);
    }

    #[test]
    fn python_metadata() {
        let p = parse_python_metadata(
            "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\nLicense: MIT\n\nbody: x\n",
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("flask-login", "0.6.3")
        );
        assert_eq!(p.purl(), "pkg:pypi/flask-login@0.6.3");
        assert_eq!(p.license.as_deref(), Some("MIT"));
        assert!(parse_python_metadata("Name: x\n").is_none());
    }
}
