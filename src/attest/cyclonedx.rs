//! CycloneDX 1.6 JSON SBOMs, the second SBOM format (`kiln build --sbom-format cyclonedx`):
//! the same packages as the SPDX document ([`super::sbom`]), the image as `metadata.component`
//! (type `container`), the distribution as an `operating-system` component that the apk and
//! Debian packages depend from, and each package as a `library` with its purl (the same
//! qualifiers as in SPDX), hash and license.
//!
//! Reproducible like the SPDX document: `metadata.timestamp` is SOURCE_DATE_EPOCH and the
//! `serialNumber` UUID is derived from the document's content.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::AttestError;
use super::material::split_reference;
use super::provenance::{Statement, Subject};
use super::sbom::{PackageKind, SbomParams};
use crate::digest::Digest;
use crate::image::rfc3339;

/// The in-toto predicate type of a CycloneDX document (cosign `cyclonedx`, BuildKit).
pub const CYCLONEDX_PREDICATE_TYPE: &str = "https://cyclonedx.org/bom";
/// Media type of a CycloneDX JSON blob.
pub const MEDIA_TYPE_CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// The CycloneDX 1.6 JSON document for `params`.
pub fn cyclonedx_document(params: &SbomParams) -> Result<Value, AttestError> {
    let (name, _) = split_reference(&params.image_name);
    let last_segment = name.rsplit('/').next().unwrap_or(&name);
    let image_purl = format!(
        "pkg:oci/{}@{}?repository_url={}",
        last_segment.to_lowercase(),
        params.image_digest,
        name
    );
    let mut sorted = params.packages.clone();
    sorted.sort();
    sorted.dedup();
    let operating_system = sorted
        .iter()
        .find(|p| p.kind == PackageKind::OperatingSystem);
    let distro = operating_system.map(|os| format!("{}-{}", os.name, os.version));
    let mut used = BTreeSet::from(["image".to_owned()]);
    let mut unique_ref = |base: String| {
        let mut id = base.clone();
        let mut n = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}#{n}");
            n += 1;
        }
        id
    };
    let mut components = Vec::new();
    let mut image_depends = Vec::new();
    let mut os_depends = Vec::new();
    let os_ref = operating_system.map(|os| {
        let id = unique_ref(format!("os:{}-{}", os.name, os.version));
        components.push(json!({
            "type": "operating-system",
            "bom-ref": id,
            "name": os.name,
            "version": os.version,
        }));
        image_depends.push(id.clone());
        id
    });
    for package in &sorted {
        if package.kind == PackageKind::OperatingSystem {
            continue;
        }
        let purl = package.purl_in(distro.as_deref());
        let id = unique_ref(purl.clone());
        let mut component = json!({
            "type": "library",
            "bom-ref": id,
            "name": package.name,
            "version": package.version,
            "purl": purl,
        });
        match package.kind {
            PackageKind::Apk { .. } => {
                component["supplier"] = json!({"name": "Alpine Linux"});
            }
            PackageKind::Deb { .. } => component["supplier"] = json!({"name": "Debian"}),
            _ => {}
        }
        if let Some((algorithm, value)) = &package.checksum {
            let alg = match algorithm.as_str() {
                "SHA1" => "SHA-1",
                "SHA256" => "SHA-256",
                other => other,
            };
            component["hashes"] = json!([{"alg": alg, "content": value}]);
        }
        match package.license.as_deref().map(str::trim) {
            Some(license) if super::license::is_known_expression(license) => {
                component["licenses"] = json!([{"expression": license}]);
            }
            Some(license) if !license.is_empty() => {
                component["licenses"] = json!([{"license": {"name": license}}]);
            }
            _ => {}
        }
        if let Some(source_info) = package.source_info() {
            component["properties"] = json!([{"name": "kiln:source-package", "value": source_info
                .strip_prefix("built package from: ")
                .unwrap_or(&source_info)}]);
        }
        match &os_ref {
            Some(_) if package.is_os_package() => os_depends.push(id),
            _ => image_depends.push(id),
        }
        components.push(component);
    }
    let mut dependencies = vec![json!({"ref": "image", "dependsOn": image_depends})];
    if let Some(os_ref) = &os_ref {
        dependencies.push(json!({"ref": os_ref, "dependsOn": os_depends}));
    }
    let mut document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(params.source_date_epoch),
            "tools": {"components": [{
                "type": "application",
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": name,
                "version": params.image_digest.to_string(),
                "purl": image_purl,
                "hashes": [{"alg": "SHA-256", "content": params.image_digest.hex()}],
            },
        },
        "components": components,
        "dependencies": dependencies,
    });
    // A name-based UUID (version 5 layout) from the content, so equal images give equal bytes.
    let content = Digest::of(&crate::image::canonical::to_vec(&document)?);
    let mut bytes = [0u8; 16];
    let raw = hex::decode(content.hex()).map_err(|e| AttestError::Random(e.to_string()))?;
    bytes.copy_from_slice(&raw[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    document["serialNumber"] = json!(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ));
    Ok(document)
}

/// The CycloneDX document as an in-toto statement about `subjects`.
pub fn cyclonedx_statement(
    params: &SbomParams,
    subjects: &[Subject],
) -> Result<Statement, AttestError> {
    Ok(Statement::new(
        subjects,
        CYCLONEDX_PREDICATE_TYPE,
        cyclonedx_document(params)?,
    ))
}
