//! Attaching attestations to an image in an OCI layout directory (as written by
//! `image::layout::write_oci_layout`), in one of two layouts:
//!
//! - [`AttachMode::Index`], buildx/BuildKit-compatible: the tag's image (wrapped in a new
//!   image index when it is a bare manifest) gets one *attestation manifest* per image
//!   manifest, listed after the images with platform `unknown/unknown` and the annotations
//!   `vnd.docker.reference.type: attestation-manifest` and `vnd.docker.reference.digest:
//!   <image manifest digest>`. The attestation manifest has BuildKit's OCI-artifact form
//!   (`artifactType application/vnd.docker.attestation.manifest.v1+json`, the empty config,
//!   `subject` = the image manifest); each layer is one statement,
//!   `application/vnd.in-toto+json` (or `application/vnd.in-toto.<kind>+dsse` when signed),
//!   annotated `in-toto.io/predicate-type`. Attaching again replaces the attestation manifest
//!   of that image. [`AttachMode::IndexLegacy`] writes BuildKit's older form (a dummy image
//!   config instead of the empty config, no `artifactType`/`subject`) for pre-OCI-1.1
//!   readers. `index.json`'s entry for the tag then points at the new index; the image
//!   manifests themselves do not change, but the tag's digest does (BuildKit behaves the same).
//! - [`AttachMode::Referrers`], OCI 1.1: one artifact manifest per attestation
//!   (`artifactType` = the layer's media type, the empty config, `subject` = the image
//!   manifest), listed in the referrers fallback-tag index `sha256-<hex of the image manifest
//!   digest>` (an OCI index; each descriptor carries `artifactType`, no annotations). Later
//!   attachments are appended (deduplicated by digest); the tag's own entry does not change.
//!
//! Which image manifest an attestation belongs to: the only image of the reference, else the
//! one among the statement's subjects. Attaching does not check that the statement's subject
//! *is* that image: [`super::verify::verify`] does.
//!
//! Blobs are written through [`crate::store::Store`] (hash, verify, fsync, rename) rooted at the layout;
//! `index.json` is replaced last through a temp file and a rename.

mod attestation;
mod layout;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::AttestError;
use super::dsse::PAYLOAD_TYPE_IN_TOTO;
use crate::digest::Digest;
use crate::image::Platform;
use crate::image::manifest::{
    ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
pub use attestation::Attestation;
pub(crate) use layout::Layout;

/// Media type of a plain in-toto statement layer.
pub const MEDIA_TYPE_IN_TOTO: &str = PAYLOAD_TYPE_IN_TOTO;
/// Layer annotation naming the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Index-entry annotation marking an attestation manifest (value [`ATTESTATION_MANIFEST`]).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Index-entry annotation naming the image manifest an attestation manifest describes.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Value of [`ANNOTATION_REFERENCE_TYPE`] for attestation manifests.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// `artifactType` of BuildKit's OCI-artifact attestation manifests.
pub const ARTIFACT_TYPE_ATTESTATION_MANIFEST: &str =
    "application/vnd.docker.attestation.manifest.v1+json";
/// The OCI empty descriptor's media type.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The OCI empty blob.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// How attestations are stored next to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// buildx/BuildKit: attestation manifests inside the image index, in BuildKit's
    /// OCI-artifact form (its default since v0.32).
    Index,
    /// Like [`AttachMode::Index`], in BuildKit's legacy form (its default up to v0.31,
    /// `oci-artifact=false`): the attestation manifest is a plain image manifest whose config
    /// is a dummy `unknown/unknown` image config (`rootfs.diff_ids` = the layer digests), with
    /// no `artifactType` or `subject`. For readers that predate OCI 1.1's empty descriptor.
    IndexLegacy,
    /// OCI 1.1 referrers with the `sha256-<hex>` fallback tag.
    Referrers,
}

/// What [`attach`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachOutcome {
    /// The image manifest digests that received attestations.
    pub images: Vec<Digest>,
    /// [`AttachMode::Index`]: the new image index the reference now points at.
    pub index: Option<Descriptor>,
    /// The attestation (Index) or artifact (Referrers) manifests written.
    pub manifests: Vec<Descriptor>,
    /// [`AttachMode::Referrers`]: the fallback tags written or updated.
    pub fallback_tags: Vec<String>,
}

/// The referrers fallback tag of `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm(), digest.hex())
}

/// The empty descriptor (`{}`, 2 bytes).
pub fn empty_descriptor() -> Descriptor {
    Descriptor::new(
        MEDIA_TYPE_EMPTY,
        Digest::of(EMPTY_BLOB),
        EMPTY_BLOB.len() as u64,
    )
}

/// True for an index entry marked as a buildx attestation manifest.
pub fn is_attestation_manifest(descriptor: &Descriptor) -> bool {
    descriptor
        .annotations
        .contains_key(ANNOTATION_REFERENCE_DIGEST)
        || descriptor
            .annotations
            .contains_key("com.docker.reference.digest")
}

/// Picks the image manifest `attestation` belongs to among `images`.
fn target_of<'i>(
    layout: &Path,
    attestation: &Attestation,
    images: &'i [Descriptor],
) -> Result<&'i Descriptor, AttestError> {
    if let [only] = images {
        return Ok(only);
    }
    images
        .iter()
        .find(|image| attestation.subjects().contains(&image.digest))
        .ok_or_else(|| AttestError::Attach {
            path: layout.to_owned(),
            reason: format!(
                "none of the subjects of the {} statement ({}) is an image of the reference; it has {}",
                attestation.predicate_type(),
                attestation
                    .subjects()
                    .iter()
                    .map(Digest::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                images
                    .iter()
                    .map(|d| d.digest.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Attaches `attestations` to the image `reference` names in the OCI layout `layout_dir`
/// (see the module docs for both modes). `reference` is a tag, a digest, or None for the
/// layout's only image.
pub fn attach(
    layout_dir: &Path,
    reference: Option<&str>,
    attestations: &[Attestation],
    mode: AttachMode,
) -> Result<AttachOutcome, AttestError> {
    if attestations.is_empty() {
        return Err(AttestError::Attach {
            path: layout_dir.to_owned(),
            reason: "no attestation to attach".to_owned(),
        });
    }
    let mut layout = Layout::open(layout_dir, true)?;
    let position = layout.find(reference)?;
    let entry = layout.index.manifests[position].clone();
    let (existing_index, images) = layout.images_of(&entry)?;
    let mut groups: BTreeMap<Digest, (Descriptor, Vec<&Attestation>)> = BTreeMap::new();
    for attestation in attestations {
        let target = target_of(layout_dir, attestation, &images)?;
        groups
            .entry(target.digest.clone())
            .or_insert_with(|| (target.clone(), Vec::new()))
            .1
            .push(attestation);
    }
    let empty = empty_descriptor();
    if mode != AttachMode::IndexLegacy {
        layout.put_bytes(EMPTY_BLOB)?;
    }

    let mut outcome = AttachOutcome {
        images: groups.keys().cloned().collect(),
        index: None,
        manifests: Vec::new(),
        fallback_tags: Vec::new(),
    };
    match mode {
        AttachMode::Index | AttachMode::IndexLegacy => {
            let mut index = existing_index.unwrap_or_else(|| {
                let mut index = Index::empty();
                index.manifests = images.clone();
                index
            });
            index.media_type = Some(MEDIA_TYPE_OCI_INDEX.to_owned());
            for (digest, (image, group)) in &groups {
                let mut layers = Vec::new();
                for attestation in group {
                    let (blob, size) = layout.put_bytes(attestation.bytes())?;
                    let mut layer = Descriptor::new(&attestation.index_media_type(), blob, size);
                    layer.annotations.insert(
                        ANNOTATION_PREDICATE_TYPE.to_owned(),
                        attestation.predicate_type().to_owned(),
                    );
                    layers.push(layer);
                }
                let manifest = if mode == AttachMode::IndexLegacy {
                    legacy_attestation_manifest(&layout, layers)?
                } else {
                    artifact_manifest(
                        ARTIFACT_TYPE_ATTESTATION_MANIFEST,
                        layers,
                        subject_of(image),
                        &empty,
                    )
                };
                let mut descriptor = layout.put_json(MEDIA_TYPE_OCI_MANIFEST, &manifest)?;
                descriptor.platform = Some(Platform::new("unknown", "unknown", None));
                descriptor.annotations.insert(
                    ANNOTATION_REFERENCE_TYPE.to_owned(),
                    ATTESTATION_MANIFEST.to_owned(),
                );
                descriptor
                    .annotations
                    .insert(ANNOTATION_REFERENCE_DIGEST.to_owned(), digest.to_string());
                index.manifests.retain(|d| {
                    d.annotations.get(ANNOTATION_REFERENCE_DIGEST) != Some(&digest.to_string())
                });
                index.manifests.push(descriptor.clone());
                outcome.manifests.push(descriptor);
            }
            let mut top = layout.put_json(MEDIA_TYPE_OCI_INDEX, &index)?;
            top.annotations = entry.annotations.clone();
            layout.index.manifests[position] = top.clone();
            outcome.index = Some(top);
        }
        AttachMode::Referrers => {
            for (digest, (image, group)) in &groups {
                let mut referrers = Vec::new();
                for attestation in group {
                    let media_type = attestation.referrer_media_type();
                    let (blob, size) = layout.put_bytes(attestation.bytes())?;
                    let mut layer = Descriptor::new(media_type, blob, size);
                    layer.annotations.insert(
                        ANNOTATION_PREDICATE_TYPE.to_owned(),
                        attestation.predicate_type().to_owned(),
                    );
                    let manifest =
                        artifact_manifest(media_type, vec![layer], subject_of(image), &empty);
                    let mut descriptor = layout.put_json(MEDIA_TYPE_OCI_MANIFEST, &manifest)?;
                    descriptor
                        .extra
                        .insert("artifactType".to_owned(), json!(media_type));
                    outcome.manifests.push(descriptor.clone());
                    referrers.push(descriptor);
                }
                let tag = fallback_tag(digest);
                update_fallback_tag(&mut layout, &tag, referrers)?;
                outcome.fallback_tags.push(tag);
            }
        }
    }
    layout.write_index()?;
    layout.tidy();
    Ok(outcome)
}

/// The subject descriptor of an image: media type, digest, size only.
fn subject_of(image: &Descriptor) -> Descriptor {
    Descriptor::new(&image.media_type, image.digest.clone(), image.size)
}

fn artifact_manifest(
    artifact_type: &str,
    layers: Vec<Descriptor>,
    subject: Descriptor,
    empty: &Descriptor,
) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config: empty.clone(),
        layers,
        annotations: BTreeMap::new(),
        extra: BTreeMap::from([
            ("artifactType".to_owned(), json!(artifact_type)),
            (
                "subject".to_owned(),
                serde_json::to_value(&subject).unwrap_or_default(),
            ),
        ]),
    }
}

/// BuildKit's legacy attestation manifest: a dummy image config listing the layers as diffIDs.
fn legacy_attestation_manifest(
    layout: &Layout<'_>,
    layers: Vec<Descriptor>,
) -> Result<Manifest, AttestError> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = layout.put_json(crate::image::manifest::MEDIA_TYPE_OCI_CONFIG, &config)?;
    Ok(Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config,
        layers,
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    })
}

/// Appends `referrers` (deduplicated by digest) to the fallback-tag index `tag`, creating it.
pub(crate) fn update_fallback_tag(
    layout: &mut Layout<'_>,
    tag: &str,
    referrers: Vec<Descriptor>,
) -> Result<(), AttestError> {
    let position = layout
        .index
        .manifests
        .iter()
        .position(|e| e.ref_name() == Some(tag));
    let mut index = match position {
        Some(i) => {
            let entry = layout.index.manifests[i].clone();
            if entry.media_type != MEDIA_TYPE_OCI_INDEX {
                return Err(AttestError::Attach {
                    path: layout.dir.to_owned(),
                    reason: format!(
                        "the referrers fallback tag `{tag}` holds a {}, not an OCI image index; remove it first",
                        entry.media_type
                    ),
                });
            }
            layout.read_json::<Index>(&entry)?
        }
        None => Index::empty(),
    };
    for referrer in referrers {
        if !index.manifests.iter().any(|d| d.digest == referrer.digest) {
            index.manifests.push(referrer);
        }
    }
    let mut descriptor = layout.put_json(MEDIA_TYPE_OCI_INDEX, &index)?;
    descriptor
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    match position {
        Some(i) => layout.index.manifests[i] = descriptor,
        None => layout.index.manifests.push(descriptor),
    }
    Ok(())
}
