//! `Material`: one thing a build consumed, as an in-toto ResourceDescriptor (`uri`, `digest`,
//! `name`), listed in the provenance's `resolvedDependencies`.
//!
//! Steps return Materials next to their Diffs: the base image (`pkg:docker/NAME@REF?platform=`
//! with the platform manifest's sha256), build-context files (sha256), apk indexes and packages
//! (`pkg:apk/alpine/NAME@VER?arch=`, sha1 from the apk `Q1` checksum or sha256), wheels
//! (`pkg:pypi/NAME@VER`, sha256). The constructors here write those URIs the way BuildKit and
//! the purl spec do; [`Material::validate`] checks the invariants before anything is written.

use std::collections::BTreeMap;

use super::AttestError;
use crate::digest::Digest;
use crate::image::Platform;

pub use crate::material::{Material, MaterialKind};

impl Material {
    /// A material pinned by `digest` (sha256).
    pub fn sha256(uri: impl Into<String>, digest: &Digest) -> Material {
        Material::new(MaterialKind::Other, uri, digest.clone())
    }

    /// Sets the name.
    pub fn named(mut self, name: impl Into<String>) -> Material {
        self.name = Some(name.into());
        self
    }

    /// Adds one more digest (`alg` lowercase, `hex` lowercase hex).
    pub fn with_digest(mut self, alg: &str, hex: &str) -> Material {
        match Digest::from_hex(hex) {
            Ok(sha256) if alg == "sha256" => self.sha256 = Some(sha256),
            // Kept as given, for `validate` to refuse.
            _ => {
                self.other_digests.insert(alg.to_owned(), hex.to_owned());
            }
        }
        self
    }

    /// A base image as BuildKit records it: `pkg:docker/<name>@<tag-or-digest>?platform=<os>%2F<arch>`,
    /// pinned by the platform manifest's digest. `reference` is the image as the Dockerfile
    /// wrote it (`python:3.11-alpine`, `ghcr.io/acme/base@sha256:...`); a missing tag is `latest`.
    pub fn docker_image(reference: &str, manifest: &Digest, platform: &Platform) -> Material {
        let (name, version) = split_reference(reference);
        Material::new(
            MaterialKind::BaseImage,
            format!(
                "pkg:docker/{name}@{version}?platform={}",
                percent_encode(&platform.to_string())
            ),
            manifest.clone(),
        )
    }

    /// An Alpine package: `pkg:apk/alpine/<name>@<version>?arch=<arch>` (name lowercased, apk
    /// arch names), pinned by the apk `C:`/`Q1` checksum (base64 sha1, given here as hex).
    pub fn apk(name: &str, version: &str, arch: &str, sha1_hex: &str) -> Material {
        Material {
            kind: MaterialKind::Other,
            uri: apk_purl(name, version, arch),
            sha256: None,
            other_digests: BTreeMap::from([("sha1".to_owned(), sha1_hex.to_owned())]),
            name: None,
        }
    }

    /// A Python distribution file: `pkg:pypi/<name>@<version>` (normalized name), pinned by
    /// its sha256, named by the file name.
    pub fn pypi(name: &str, version: &str, file_name: &str, sha256: &Digest) -> Material {
        Material::new(
            MaterialKind::PythonDistribution {
                file_name: file_name.to_owned(),
            },
            pypi_purl(name, version),
            sha256.clone(),
        )
        .named(file_name)
    }

    /// Checks what in-toto requires of a ResourceDescriptor used as a material: a non-empty
    /// URI, at least one digest, and lowercase hex of the right length for the hex algorithms.
    pub fn validate(&self) -> Result<(), AttestError> {
        validate_descriptor("material", &self.uri, &self.digests())
    }
}

/// Checks a DigestSet: non-empty, known hex algorithms with the right length.
pub(crate) fn validate_descriptor(
    what: &'static str,
    uri: &str,
    digest: &BTreeMap<String, String>,
) -> Result<(), AttestError> {
    let invalid = |reason: String| AttestError::InvalidDescriptor {
        what,
        uri: uri.to_owned(),
        reason,
    };
    if uri.is_empty() {
        return Err(invalid("the URI is empty".to_owned()));
    }
    if digest.is_empty() {
        return Err(invalid("it has no digest".to_owned()));
    }
    for (alg, value) in digest {
        let len = match alg.as_str() {
            "sha256" => Some(64),
            "sha512" => Some(128),
            "sha1" => Some(40),
            _ => None,
        };
        let hex_ok = value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let len_ok = len.is_none_or(|len| value.len() == len);
        if value.is_empty() || !hex_ok || !len_ok {
            return Err(invalid(format!(
                "digest `{alg}` is not {} lowercase hex characters",
                len.map_or("non-empty".to_owned(), |l| l.to_string())
            )));
        }
    }
    Ok(())
}

/// `pkg:apk/alpine/<name>@<version>?arch=<arch>`.
pub fn apk_purl(name: &str, version: &str, arch: &str) -> String {
    format!(
        "pkg:apk/alpine/{}@{}?arch={}",
        percent_encode(&name.to_lowercase()),
        percent_encode(version),
        percent_encode(arch)
    )
}

/// `pkg:pypi/<name>@<version>` with the name normalized (lowercase, runs of `-_.` -> `-`).
pub fn pypi_purl(name: &str, version: &str) -> String {
    format!(
        "pkg:pypi/{}@{}",
        percent_encode(&normalize_python_name(name)),
        percent_encode(version)
    )
}

/// PEP 503 name normalization (the wheel installer's, so purls and installs agree).
pub use crate::python::wheel::normalize_name as normalize_python_name;

/// Splits an image reference into the familiar name (no `docker.io/`, no `library/`) and the
/// tag or digest (`latest` when neither is given).
pub(crate) fn split_reference(reference: &str) -> (String, String) {
    let (name, version) = match reference.split_once('@') {
        // `name[:tag]@digest`: keep the digest, drop the tag.
        Some((name, digest)) => (strip_tag(name).0, digest.to_owned()),
        None => {
            let (name, tag) = strip_tag(reference);
            (name, tag.unwrap_or("latest").to_owned())
        }
    };
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(&name)
        .to_owned();
    let name = name.strip_prefix("library/").unwrap_or(&name).to_owned();
    (name, version)
}

/// Splits `name[:tag]` (a `:` after the last `/` starts the tag).
fn strip_tag(reference: &str) -> (String, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            reference[..last_slash + i].to_owned(),
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference.to_owned(), None),
    }
}

/// The registry host an image name lives on: its first component when that looks like a host
/// (has `.` or `:`, or is `localhost`), else `docker.io`.
pub fn registry_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Percent-encodes everything outside the purl-safe set (`A-Za-z0-9.-_~` and `:` per the current
/// purl spec, `+` kept for versions like `1.0+local`).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':' | b'+') {
            out.push(b as char);
        } else if b == b'/' {
            out.push_str("%2F");
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        for (input, name, version) in [
            ("alpine", "alpine", "latest"),
            ("alpine:3.20", "alpine", "3.20"),
            (
                "docker.io/library/python:3.11-alpine",
                "python",
                "3.11-alpine",
            ),
            ("ghcr.io/acme/app:v1", "ghcr.io/acme/app", "v1"),
            ("localhost:5000/app", "localhost:5000/app", "latest"),
            (&format!("alpine@{d}"), "alpine", d),
            (&format!("alpine:3.20@{d}"), "alpine", d),
            (&format!("localhost:5000/a:1@{d}"), "localhost:5000/a", d),
        ] {
            assert_eq!(
                split_reference(input),
                (name.to_owned(), version.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn registry_table() {
        for (name, registry) in [
            ("alpine", "docker.io"),
            ("acme/app", "docker.io"),
            ("ghcr.io/acme/app", "ghcr.io"),
            ("localhost:5000/app", "localhost:5000"),
            ("localhost/app", "localhost"),
        ] {
            assert_eq!(registry_of(name), registry, "{name}");
        }
    }

    #[test]
    fn purls() {
        assert_eq!(
            apk_purl("Musl", "1.2.5-r0", "x86_64"),
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64"
        );
        assert_eq!(
            pypi_purl("Django_allauth", "12.23"),
            "pkg:pypi/django-allauth@12.23"
        );
        let platform = Platform::new("linux", "amd64", None);
        let m = Material::docker_image("python:3.11-alpine", &Digest::of(b""), &platform);
        assert_eq!(
            m.uri,
            "pkg:docker/python@3.11-alpine?platform=linux%2Famd64"
        );
        m.validate().unwrap();
        assert!(Material::sha256("", &Digest::of(b"")).validate().is_err());
        assert!(Material::apk("a", "1", "x86_64", "ABC").validate().is_err());
    }
}
