//! SBOMs that vulnerability scanners can match: the SPDX document kiln writes for an Alpine and
//! a Debian file system is validated by PyPI spdx-tools (`pyspdxtools`), its purls are parsed
//! by PyPI packageurl-python, and a structural check written here from Trivy's and Grype's
//! documented rules (not kiln's code) looks for what they match on: a package whose SPDXID
//! starts with `SPDXRef-OperatingSystem` naming the distribution, every OS package CONTAINS-
//! related to it, `sourceInfo: built package from: ORIGIN VERSION`, and purls with `arch`,
//! `distro=ID-VERSION` (the image's) and `upstream=ORIGIN`; Python purls with PEP 503 names.
//!
//! The tests create a venv under `target/sbom-venv` once (`pip install spdx-tools
//! packageurl-python packaging cyclonedx-python-lib[json-validation]`, through pip's own
//! configuration); if that fails the tests fail.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kiln::attest::cyclonedx::cyclonedx_document;
use kiln::attest::sbom::{SbomParams, packages_from_rootfs, spdx_document};
use kiln::digest::Digest;
use kiln::image::canonical;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::memfs::MemFs;
use serde_json::Value;

const PIP_PACKAGES: &[&str] = &[
    "spdx-tools",
    "packageurl-python",
    "packaging",
    "cyclonedx-python-lib[json-validation]",
];

/// The venv's python, creating the venv on first use.
fn venv_python() -> PathBuf {
    support::python_venv(
        "sbom-venv",
        PIP_PACKAGES,
        "import spdx_tools, packageurl, packaging.version, cyclonedx.validation.json",
    )
}

fn file(diff: &mut Diff, path: &str, content: &str) {
    diff.insert(
        LayerPath::new(path).unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(content.as_bytes()))),
            meta: Metadata::root_owned(0o644),
        },
    );
}

/// An Alpine 3.20.3 file system: apk packages whose origin is their own name (musl), another
/// name (libcrypto3 from openssl) or unstated (busybox), and a Python distribution whose
/// METADATA spells its name in the non-normalized form.
fn alpine_rootfs() -> MemFs {
    MemFs::from_diff(&alpine_diff())
}

fn alpine_diff() -> Diff {
    let mut diff = Diff::new();
    file(&mut diff, "etc/alpine-release", "3.20.3\n");
    file(
        &mut diff,
        "etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n",
    );
    file(
        &mut diff,
        "lib/apk/db/installed",
        "C:Q1hdUpqRv5mYgJEqW52UmVsvmeedE=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\n\
         P:libcrypto3\nV:3.3.2-r0\nA:x86_64\nL:Apache-2.0\no:openssl\n\n\
         P:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\n\n",
    );
    file(
        &mut diff,
        "usr/local/lib/python3.11/site-packages/Flask_Login-0.6.3.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\nLicense: MIT\n",
    );
    file(
        &mut diff,
        "usr/local/lib/python3.11/site-packages/zope.interface-6.4.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: zope.interface\nVersion: 6.4\n",
    );
    diff
}

/// A Debian 12 file system: dpkg's status with a package built from another source at another
/// version, one from its own source, and one removed (only its configuration files remain).
fn debian_rootfs() -> MemFs {
    let mut diff = Diff::new();
    file(
        &mut diff,
        "usr/lib/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
    );
    diff.insert(
        LayerPath::new("etc/os-release").unwrap(),
        Entry {
            kind: EntryKind::Symlink("../usr/lib/os-release".into()),
            meta: Metadata::root_owned(0o777),
        },
    );
    file(
        &mut diff,
        "var/lib/dpkg/status",
        "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n\
         Source: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1+b1\n\n\
         Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\n\
         Package: vim-tiny\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 2:9.0.1378-2\n",
    );
    MemFs::from_diff(&diff)
}

fn sbom_for(fs: &MemFs) -> Value {
    spdx_document(&SbomParams {
        image_name: "ghcr.io/acme/app:v1".to_owned(),
        image_digest: Digest::of(b"manifest"),
        source_date_epoch: 1_700_000_000,
        packages: packages_from_rootfs(fs).unwrap(),
    })
    .unwrap()
}

/// What packageurl-python makes of a purl: (type, namespace, name, version, qualifiers).
type ParsedPurl = (String, String, String, String, BTreeMap<String, String>);

const PARSE_PURLS: &str = r#"
import json, re, sys
from packageurl import PackageURL
doc = json.load(open(sys.argv[1]))
out = {}
for package in doc["packages"]:
    for ref in package.get("externalRefs", []):
        if ref["referenceType"] != "purl":
            continue
        p = PackageURL.from_string(ref["referenceLocator"])
        out[package["SPDXID"]] = [p.type, p.namespace or "", p.name, p.version or "", p.qualifiers or {}]
print(json.dumps(out))
"#;

/// The purls of `document` as packageurl-python parses them, by SPDXID.
fn parsed_purls(python: &Path, document: &Path) -> BTreeMap<String, ParsedPurl> {
    let output = Command::new(python)
        .arg("-c")
        .arg(PARSE_PURLS)
        .arg(document)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "packageurl-python rejected a purl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// PEP 503 normalization, written here from the PEP (`re.sub(r"[-_.]+", "-", name).lower()`).
fn pep503(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The problems Trivy's and Grype's SPDX readers would have with `document` for an image of
/// `distro` (`ID-VERSION`), from their documented rules:
/// - Trivy: the OS is the package whose SPDXID starts with `SPDXRef-OperatingSystem` (name =
///   ID, versionInfo = version), OS packages are those it CONTAINS, and an OS package's source
///   package is read from `sourceInfo: built package from: NAME VERSION`.
/// - Grype: `pkg:apk`/`pkg:deb` purls carry `arch`, `distro=ID-VERSION` and, when the source
///   package has another name, `upstream=`; `pkg:pypi` names are PEP 503 normalized.
fn scanner_problems(
    document: &Value,
    purls: &BTreeMap<String, ParsedPurl>,
    distro: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let packages = document["packages"].as_array().cloned().unwrap_or_default();
    let relationships = document["relationships"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let contains = |from: &str, to: &str| {
        relationships.iter().any(|r| {
            r["spdxElementId"] == from
                && r["relationshipType"] == "CONTAINS"
                && r["relatedSpdxElement"] == to
        })
    };
    let os: Vec<&Value> = packages
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .is_some_and(|id| id.starts_with("SPDXRef-OperatingSystem"))
        })
        .collect();
    let [os] = os.as_slice() else {
        problems.push(format!(
            "{} packages with an SPDXRef-OperatingSystem id, want 1",
            os.len()
        ));
        return problems;
    };
    let os_id = os["SPDXID"].as_str().unwrap_or_default();
    let os_distro = format!(
        "{}-{}",
        os["name"].as_str().unwrap_or_default(),
        os["versionInfo"].as_str().unwrap_or_default()
    );
    if os_distro != distro {
        problems.push(format!("the OS package says {os_distro}, want {distro}"));
    }
    let described: Vec<&str> = relationships
        .iter()
        .filter(|r| r["relationshipType"] == "DESCRIBES")
        .filter_map(|r| r["relatedSpdxElement"].as_str())
        .collect();
    if !described.iter().any(|root| contains(root, os_id)) {
        problems.push("no described element CONTAINS the OS package".to_owned());
    }
    for package in &packages {
        let id = package["SPDXID"].as_str().unwrap_or_default();
        let Some((kind, _, name, version, qualifiers)) = purls.get(id) else {
            continue;
        };
        match kind.as_str() {
            "apk" | "deb" => {
                if !contains(os_id, id) {
                    problems.push(format!("{id}: not CONTAINS-related to the OS package"));
                }
                if qualifiers.get("distro").map(String::as_str) != Some(distro) {
                    problems.push(format!(
                        "{id}: distro qualifier {qualifiers:?}, want {distro}"
                    ));
                }
                if qualifiers.get("arch").is_none_or(String::is_empty) {
                    problems.push(format!("{id}: no arch qualifier"));
                }
                let source_info = package["sourceInfo"].as_str().unwrap_or_default();
                let fields: Vec<&str> = source_info
                    .strip_prefix("built package from: ")
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                let [origin, origin_version] = fields.as_slice() else {
                    problems.push(format!("{id}: sourceInfo {source_info:?}"));
                    continue;
                };
                let upstream = qualifiers.get("upstream").map(|u| {
                    let (name, version) = u.split_once('@').unwrap_or((u, version));
                    (name.to_owned(), version.to_owned())
                });
                let expected = upstream.unwrap_or((name.clone(), version.clone()));
                if (origin.to_string(), origin_version.to_string()) != expected {
                    problems.push(format!(
                        "{id}: sourceInfo {source_info:?} disagrees with the purl's {expected:?}"
                    ));
                }
            }
            "pypi" => {
                if *name != pep503(name) || package["name"] != pep503(name) {
                    problems.push(format!("{id}: Python name {name} is not PEP 503"));
                }
            }
            "oci" if id == "SPDXRef-image" => {}
            other => problems.push(format!("{id}: unexpected purl type {other}")),
        }
    }
    problems
}

fn validate_with_spdx_tools(python: &Path, document: &Path) {
    let cli = python.with_file_name("pyspdxtools");
    assert!(cli.is_file(), "spdx-tools installed no `pyspdxtools` CLI");
    let output = Command::new(&cli)
        .arg("--infile")
        .arg(document)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "pyspdxtools: {text}");
    assert!(!text.to_lowercase().contains("invalid"), "{text}");
}

#[test]
fn alpine_sbom_has_what_trivy_and_grype_match_on() {
    let python = venv_python();
    let temp = tempfile::tempdir().unwrap();
    let document = sbom_for(&alpine_rootfs());
    let path = temp.path().join("alpine.spdx.json");
    std::fs::write(&path, canonical::to_vec(&document).unwrap()).unwrap();
    validate_with_spdx_tools(&python, &path);
    let purls = parsed_purls(&python, &path);
    assert_eq!(
        scanner_problems(&document, &purls, "alpine-3.20.3"),
        Vec::<String>::new()
    );
    let by_name: BTreeMap<&str, &ParsedPurl> = purls
        .values()
        .filter(|p| p.0 != "oci")
        .map(|p| (p.2.as_str(), p))
        .collect();
    assert_eq!(
        by_name["libcrypto3"].4.get("upstream").map(String::as_str),
        Some("openssl")
    );
    assert_eq!(by_name["libcrypto3"].4.get("arch").unwrap(), "x86_64");
    assert!(!by_name["musl"].4.contains_key("upstream"));
    assert!(by_name.contains_key("flask-login"), "{purls:?}");
    assert!(by_name.contains_key("zope-interface"), "{purls:?}");
    assert_eq!(by_name.len(), 5, "{purls:?}");

    // The check can fail: without the OS package, or with another distro, it says so.
    let mut without_os = document.clone();
    without_os["packages"].as_array_mut().unwrap().retain(|p| {
        !p["SPDXID"]
            .as_str()
            .unwrap()
            .starts_with("SPDXRef-OperatingSystem")
    });
    assert!(!scanner_problems(&without_os, &purls, "alpine-3.20.3").is_empty());
    assert!(!scanner_problems(&document, &purls, "alpine-3.19.1").is_empty());
}

#[test]
fn debian_sbom_lists_dpkg_packages_with_their_sources() {
    let python = venv_python();
    let temp = tempfile::tempdir().unwrap();
    let document = sbom_for(&debian_rootfs());
    let path = temp.path().join("debian.spdx.json");
    std::fs::write(&path, canonical::to_vec(&document).unwrap()).unwrap();
    validate_with_spdx_tools(&python, &path);
    let purls = parsed_purls(&python, &path);
    assert_eq!(
        scanner_problems(&document, &purls, "debian-12"),
        Vec::<String>::new()
    );
    let mut listed: Vec<(String, String, String, Option<String>)> = purls
        .values()
        .filter(|p| p.0 != "oci")
        .map(|(kind, namespace, name, version, qualifiers)| {
            assert_eq!((kind.as_str(), namespace.as_str()), ("deb", "debian"));
            (
                name.clone(),
                version.clone(),
                qualifiers["arch"].clone(),
                qualifiers.get("upstream").cloned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (
                "base-files".to_owned(),
                "12.4+deb12u5".to_owned(),
                "amd64".to_owned(),
                None
            ),
            (
                "zlib1g".to_owned(),
                "1:1.2.13.dfsg-1+b1".to_owned(),
                "amd64".to_owned(),
                Some("zlib@1:1.2.13.dfsg-1".to_owned())
            ),
        ]
    );
}

/// Validates a CycloneDX JSON file with cyclonedx-python-lib's strict 1.6 validator; prints
/// the first error's message and exits 3 when it is invalid.
const VALIDATE_CYCLONEDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    print("INVALID:", getattr(error.data, "message", str(error)[:500]))
    sys.exit(3)
print("VALID")
"#;

#[test]
fn cyclonedx_documents_validate_with_cyclonedx_python_lib() {
    let python = venv_python();
    let temp = tempfile::tempdir().unwrap();
    let validate = |name: &str, document: &Value| {
        let path = temp.path().join(name);
        std::fs::write(&path, canonical::to_vec(document).unwrap()).unwrap();
        Command::new(&python)
            .arg("-c")
            .arg(VALIDATE_CYCLONEDX)
            .arg(&path)
            .output()
            .unwrap()
    };
    for (name, fs, distro) in [
        ("alpine", alpine_rootfs(), "alpine-3.20.3"),
        ("debian", debian_rootfs(), "debian-12"),
    ] {
        let params = SbomParams {
            image_name: "ghcr.io/acme/app:v1".to_owned(),
            image_digest: Digest::of(b"manifest"),
            source_date_epoch: 1_700_000_000,
            packages: packages_from_rootfs(&fs).unwrap(),
        };
        let document = cyclonedx_document(&params).unwrap();
        let output = validate(&format!("{name}.cdx.json"), &document);
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The distribution is an operating-system component the OS packages depend from, and
        // their purls carry the distro qualifier.
        let components = document["components"].as_array().unwrap();
        let os = components
            .iter()
            .find(|c| c["type"] == "operating-system")
            .unwrap_or_else(|| panic!("{name}: no operating-system component"));
        assert_eq!(
            format!(
                "{}-{}",
                os["name"].as_str().unwrap(),
                os["version"].as_str().unwrap()
            ),
            distro
        );
        let os_deps = document["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ref"] == os["bom-ref"])
            .unwrap();
        for component in components {
            let purl = component["purl"].as_str().unwrap_or_default();
            if purl.starts_with("pkg:apk/") || purl.starts_with("pkg:deb/") {
                assert!(purl.contains(&format!("distro={distro}")), "{purl}");
                assert!(
                    os_deps["dependsOn"]
                        .as_array()
                        .unwrap()
                        .contains(&component["bom-ref"]),
                    "{name}: {purl} not under the OS"
                );
            }
        }
        // Equal inputs, equal bytes (the serial number is derived from the content).
        assert_eq!(
            canonical::to_vec(&document).unwrap(),
            canonical::to_vec(&cyclonedx_document(&params).unwrap()).unwrap()
        );
    }
    // The validator does look: a serial number that is not a UUID URN fails it.
    let mut broken = cyclonedx_document(&SbomParams {
        image_name: "app".to_owned(),
        image_digest: Digest::of(b"m"),
        source_date_epoch: 0,
        packages: Vec::new(),
    })
    .unwrap();
    broken["serialNumber"] = "urn:uuid:not-one".into();
    assert_eq!(validate("broken.cdx.json", &broken).status.code(), Some(3));
}

/// `kiln attest --sbom --sbom-format cyclonedx` attaches the CycloneDX document with its own
/// predicate type.
#[test]
fn kiln_attest_attaches_a_cyclonedx_sbom() {
    let temp = tempfile::tempdir().unwrap();
    let store = kiln::store::Store::open(&temp.path().join("store")).unwrap();
    let layer = kiln::layer::write(
        &alpine_diff(),
        &store,
        &kiln::layer::WriteOptions::default(),
    )
    .unwrap();
    let config = kiln::image::ImageConfig {
        created: Some(kiln::image::rfc3339(0)),
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        ..kiln::image::ImageConfig::default()
    };
    let image = kiln::image::assemble(&store, &config, &[layer], &BTreeMap::new()).unwrap();
    let layout = temp.path().join("layout");
    kiln::image::write_oci_layout(&store, &layout, &[(image, vec!["app:v1".to_owned()])]).unwrap();
    let reference = format!("oci:{}:v1", layout.display());
    let cache = temp.path().join("cache");
    support::kiln_ok(&[
        "attest",
        &reference,
        "--sbom",
        "--sbom-format",
        "cyclonedx",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let text = support::kiln_ok(&["inspect", &reference]);
    assert!(text.contains("https://cyclonedx.org/bom"), "{text}");
    let bad = support::kiln(&["attest", &reference, "--sbom", "--sbom-format", "swid"]);
    assert_eq!(bad.status.code(), Some(2));
}
