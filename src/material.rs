//! The one shape of a build step's result: a [`StepOutput`] (the files it changed, what it
//! consumed from outside the build, what it could not do exactly) and the [`Material`]s in it.
//!
//! Every step returns a `StepOutput`: COPY and ADD, users and groups, apk, pip and a RUN in the
//! sandbox; the executor turns its Diff into a layer, collects its materials for the
//! provenance and prints its warnings. A `Material` is one thing consumed (a base image, an
//! apk index or package, a Python distribution, a pinned ADD of the context), pinned by its
//! typed sha256 [`Digest`]; the provenance writes it as an in-toto ResourceDescriptor
//! (`attest::material` has the constructors that spell the URIs as purls).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layer::Diff;

/// What a build step produced. `details` is what only that step returns (apk's plans, the
/// Python distributions pip installed, the sandbox's live rootfs); most steps have none.
#[derive(Clone, Debug, Default)]
pub struct StepOutput<D = ()> {
    /// The step's changes to the filesystem (one layer, or none when empty).
    pub diff: Diff,
    /// What it consumed from outside the build context, in order.
    pub materials: Vec<Material>,
    /// What it did not do exactly as the real tool would (a script not run), for the user.
    pub warnings: Vec<String>,
    /// What only this step returns.
    pub details: D,
}

impl StepOutput {
    /// A step that only changed files.
    pub fn of_diff(diff: Diff) -> StepOutput {
        StepOutput {
            diff,
            ..StepOutput::default()
        }
    }
}

/// What kind of thing a [`Material`] is, with what only that kind carries. The kind is for
/// kiln's own use (the SBOM matches wheels to packages by it); the provenance does not write
/// it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MaterialKind {
    /// A base image, by its manifest.
    BaseImage,
    /// Files of the build context (a pinned ADD), or the context as a whole.
    BuildContext,
    /// The Git checkout the context came from.
    GitCheckout,
    /// An apk repository index (`APKINDEX.tar.gz`).
    ApkIndex,
    /// An apk package file.
    ApkPackage {
        /// apk's identity of the package: the `Q1...` SHA-1 of its control member.
        checksum: String,
    },
    /// A Python distribution file (a wheel or an sdist).
    PythonDistribution {
        /// Its file name.
        file_name: String,
    },
    /// Anything else.
    #[default]
    Other,
}

/// Something a build consumed, with the digest(s) that pin it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Material {
    /// What it is.
    pub kind: MaterialKind,
    /// Where it came from: a purl (`pkg:docker/...`, `pkg:apk/...`, `pkg:pypi/...`), a URL, a
    /// `file://` path, or a `git+https://...` source.
    pub uri: String,
    /// The sha256 of its bytes, when known (a Git checkout is pinned by its commit instead).
    pub sha256: Option<Digest>,
    /// Other digests the provenance records, by algorithm (`sha1`, `sha512`, `gitCommit`) to
    /// lowercase hex.
    pub other_digests: BTreeMap<String, String>,
    /// A human-readable name the provenance records (a file path in the context), when useful.
    pub name: Option<String>,
}

impl Material {
    /// A material of `kind` pinned by its sha256.
    pub fn new(kind: MaterialKind, uri: impl Into<String>, sha256: Digest) -> Material {
        Material {
            kind,
            uri: uri.into(),
            sha256: Some(sha256),
            other_digests: BTreeMap::new(),
            name: None,
        }
    }

    /// Every digest, by algorithm, as the provenance writes them.
    pub fn digests(&self) -> BTreeMap<String, String> {
        let mut digests = self.other_digests.clone();
        if let Some(sha256) = &self.sha256 {
            digests.insert("sha256".to_owned(), sha256.hex().to_owned());
        }
        digests
    }

    /// apk's checksum of an apk package (`Q1...`).
    pub fn apk_checksum(&self) -> Option<&str> {
        match &self.kind {
            MaterialKind::ApkPackage { checksum } => Some(checksum),
            _ => None,
        }
    }

    /// The file name of a Python distribution.
    pub fn file_name(&self) -> Option<&str> {
        match &self.kind {
            MaterialKind::PythonDistribution { file_name } => Some(file_name),
            _ => None,
        }
    }

    /// The same thing as another, as the provenance sees it (URI, digests and name; the kind is
    /// not written).
    pub fn same_descriptor(&self, other: &Material) -> bool {
        self.uri == other.uri && self.digests() == other.digests() && self.name == other.name
    }
}

/// The wire form: an in-toto ResourceDescriptor.
#[derive(Serialize, Deserialize)]
struct Descriptor {
    uri: String,
    digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Serialize for Material {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Descriptor {
            uri: self.uri.clone(),
            digest: self.digests(),
            name: self.name.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Material {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Material, D::Error> {
        let mut descriptor = Descriptor::deserialize(deserializer)?;
        let sha256 = match descriptor.digest.remove("sha256") {
            Some(hex) => Some(Digest::from_hex(&hex).map_err(serde::de::Error::custom)?),
            None => None,
        };
        Ok(Material {
            kind: MaterialKind::Other,
            uri: descriptor.uri,
            sha256,
            other_digests: descriptor.digest,
            name: descriptor.name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_resource_descriptor_without_the_kind() {
        let material = Material {
            other_digests: BTreeMap::from([("sha1".to_owned(), "ab".to_owned())]),
            ..Material::new(
                MaterialKind::ApkPackage {
                    checksum: "Q1x".to_owned(),
                },
                "file:///r/a.apk",
                Digest::of(b""),
            )
        };
        let json = serde_json::to_string(&material).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"uri":"file:///r/a.apk","digest":{{"sha1":"ab","sha256":"{}"}}}}"#,
                Digest::of(b"").hex()
            )
        );
        let back: Material = serde_json::from_str(&json).unwrap();
        assert!(back.same_descriptor(&material));
    }
}
