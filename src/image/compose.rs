//! One image index composed from platform manifests, as `kiln manifest create` (buildx's
//! `imagetools create`) publishes it after per-runner builds.
//!
//! Each [`PlatformEntry`] is an image manifest's descriptor with the platform its config names
//! (or its source index gave), the source it came from (for errors), and the buildx attestation
//! manifests that described it in its source index (`vnd.docker.reference.digest` = the
//! manifest). [`compose_index`] checks that every entry has a platform and that no two distinct
//! manifests claim the same platform, then writes the entries in *canonical order*: image
//! manifests sorted by platform (os, architecture, variant, os.version), then the attestation
//! manifests in the order of the images they describe. The order of the sources therefore never
//! changes the index, so the same manifests always give the same index digest (the bytes are
//! canonical JSON, see [`super::canonical`]). Descriptors carry no annotations except the
//! attestation manifests' own.

use std::collections::BTreeSet;

use super::manifest::{Descriptor, Index};
use super::platform::Platform;

/// Index-entry annotation naming the image an attestation manifest describes (BuildKit's).
const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// One image manifest to list in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEntry {
    /// Where it came from, as the user wrote it (`registry/repo@sha256:...`, `oci:DIR`).
    pub source: String,
    /// The manifest's media type, digest and size; its `platform` is what the index lists.
    pub manifest: Descriptor,
    /// The buildx attestation manifests describing it, as its source index listed them.
    pub attestations: Vec<Descriptor>,
}

/// Why the entries do not make an index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComposeError {
    /// Nothing to list.
    #[error("no image manifests to put in the index: give at least one source")]
    Empty,
    /// A manifest whose config names no os/architecture.
    #[error(
        "`{input}`: manifest {digest} has no platform (its config names no os and \
         architecture), so an index cannot list it"
    )]
    NoPlatform {
        /// The source it came from.
        input: String,
        /// The manifest.
        digest: String,
    },
    /// Two different manifests for one platform.
    #[error(
        "two manifests for platform {platform}: {first_digest} from `{first}` and \
         {second_digest} from `{second}`; an index lists one manifest per platform"
    )]
    DuplicatePlatform {
        /// The platform, `os/architecture[/variant]`.
        platform: String,
        /// The first source.
        first: String,
        /// Its manifest.
        first_digest: String,
        /// The second source.
        second: String,
        /// Its manifest.
        second_digest: String,
    },
}

/// The platform's text form, `os/architecture[/variant][:os.version]`.
pub fn platform_label(platform: &Platform) -> String {
    let mut label = format!("{}/{}", platform.os, platform.architecture);
    if let Some(variant) = &platform.variant {
        label.push('/');
        label.push_str(variant);
    }
    if let Some(version) = &platform.os_version {
        label.push(':');
        label.push_str(version);
    }
    label
}

/// The sort key of canonical order: normalized os, architecture, variant, os.version.
pub(super) fn order_key(platform: &Platform) -> (String, String, String, String) {
    let normalized = platform.normalized();
    (
        normalized.os,
        normalized.architecture,
        normalized.variant.unwrap_or_default(),
        normalized.os_version.unwrap_or_default(),
    )
}

/// The OCI image index listing `entries` in canonical order (see the module doc). The same
/// manifest given twice is listed once.
pub fn compose_index(entries: Vec<PlatformEntry>) -> Result<Index, ComposeError> {
    if entries.is_empty() {
        return Err(ComposeError::Empty);
    }
    let mut kept: Vec<(Platform, PlatformEntry)> = Vec::new();
    for entry in entries {
        let Some(platform) = entry.manifest.platform.clone() else {
            return Err(ComposeError::NoPlatform {
                input: entry.source,
                digest: entry.manifest.digest.to_string(),
            });
        };
        if let Some((_, earlier)) = kept
            .iter_mut()
            .find(|(p, _)| order_key(p) == order_key(&platform))
        {
            if earlier.manifest.digest == entry.manifest.digest {
                for attestation in entry.attestations {
                    if !earlier.attestations.contains(&attestation) {
                        earlier.attestations.push(attestation);
                    }
                }
                continue;
            }
            return Err(ComposeError::DuplicatePlatform {
                platform: platform_label(&platform),
                first: earlier.source.clone(),
                first_digest: earlier.manifest.digest.to_string(),
                second: entry.source,
                second_digest: entry.manifest.digest.to_string(),
            });
        }
        kept.push((platform, entry));
    }
    kept.sort_by_key(|(platform, _)| order_key(platform));
    let mut index = Index::empty();
    let mut attestations = Vec::new();
    let mut seen = BTreeSet::new();
    for (_, entry) in kept {
        let digest = entry.manifest.digest.to_string();
        let mut manifest = entry.manifest;
        manifest.annotations.clear();
        index.manifests.push(manifest);
        for attestation in entry.attestations {
            if attestation.annotations.get(ANNOTATION_REFERENCE_DIGEST) == Some(&digest)
                && seen.insert(attestation.digest.clone())
            {
                attestations.push(attestation);
            }
        }
    }
    index.manifests.extend(attestations);
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::image::manifest::MEDIA_TYPE_OCI_MANIFEST;

    fn entry(source: &str, seed: &str, platform: Option<&str>) -> PlatformEntry {
        let mut manifest =
            Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, Digest::of(seed.as_bytes()), 100);
        manifest.platform = platform.map(|p| p.parse().unwrap());
        PlatformEntry {
            source: source.to_owned(),
            manifest,
            attestations: Vec::new(),
        }
    }

    fn attestation_for(image: &PlatformEntry, seed: &str) -> Descriptor {
        let mut d = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, Digest::of(seed.as_bytes()), 50);
        d.platform = Some(Platform::new("unknown", "unknown", None));
        d.annotations.insert(
            "vnd.docker.reference.type".to_owned(),
            "attestation-manifest".to_owned(),
        );
        d.annotations.insert(
            ANNOTATION_REFERENCE_DIGEST.to_owned(),
            image.manifest.digest.to_string(),
        );
        d
    }

    fn platforms(index: &Index) -> Vec<String> {
        index
            .manifests
            .iter()
            .map(|d| platform_label(d.platform.as_ref().unwrap()))
            .collect()
    }

    #[test]
    fn the_order_of_the_sources_does_not_change_the_index() {
        let arm = entry("b", "arm", Some("linux/arm64"));
        let amd = entry("a", "amd", Some("linux/amd64"));
        let arm7 = entry("c", "arm7", Some("linux/arm/v7"));
        let one = compose_index(vec![arm.clone(), amd.clone(), arm7.clone()]).unwrap();
        let two = compose_index(vec![arm7, amd, arm]).unwrap();
        assert_eq!(one, two);
        assert_eq!(
            platforms(&one),
            ["linux/amd64", "linux/arm/v7", "linux/arm64"]
        );
    }

    #[test]
    fn attestation_manifests_follow_the_images_in_their_order() {
        let mut arm = entry("b", "arm", Some("linux/arm64"));
        let mut amd = entry("a", "amd", Some("linux/amd64"));
        arm.attestations = vec![attestation_for(&arm, "att-arm")];
        amd.attestations = vec![attestation_for(&amd, "att-amd"), attestation_for(&arm, "x")];
        let index = compose_index(vec![arm.clone(), amd.clone()]).unwrap();
        let digests: Vec<&Digest> = index.manifests.iter().map(|d| &d.digest).collect();
        assert_eq!(
            digests,
            [
                &amd.manifest.digest,
                &arm.manifest.digest,
                &amd.attestations[0].digest,
                &arm.attestations[0].digest,
            ],
            "an attestation naming another source's image is not carried"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let cases: &[(Vec<PlatformEntry>, &str)] = &[
            (vec![], "no image manifests"),
            (
                vec![entry("reg/app@sha256:1", "x", None)],
                "`reg/app@sha256:1`: manifest sha256:",
            ),
            (
                vec![
                    entry("first", "one", Some("linux/arm64")),
                    entry("second", "two", Some("linux/arm64/v8")),
                ],
                "two manifests for platform linux/arm64/v8: sha256:",
            ),
        ];
        for (entries, expected) in cases {
            let error = compose_index(entries.clone()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            if expected.starts_with("two") {
                assert!(error.contains("`first`") && error.contains("`second`"));
            }
        }
    }

    #[test]
    fn the_same_manifest_twice_is_listed_once() {
        let amd = entry("a", "amd", Some("linux/amd64"));
        let index = compose_index(vec![amd.clone(), amd]).unwrap();
        assert_eq!(index.manifests.len(), 1);
    }
}
