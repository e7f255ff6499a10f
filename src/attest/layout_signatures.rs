//! cosign's `.sig`/`.att` tags and Sigstore bundle referrers inside an OCI image layout: what
//! `kiln build --sign-key --output type=oci` writes and `kiln verify oci:DIR` reads.
//!
//! For the signed manifest and, when it is an index, each platform manifest it lists:
//! - `sha256-<hex>.sig` and `sha256-<hex>.att` are `index.json` entries (`ref.name`) naming the
//!   manifests of [`super::cosign`], as a skopeo copy of a cosign-signed image's tags into a
//!   layout names them; the signed manifest's own pair also carries cosign's `kind` annotation
//!   (`dev.cosignproject.cosign/sigs`, `.../atts`, and `.../image` or `.../imageIndex` on the
//!   image's entry), which is how `cosign save` marks them;
//! - the Sigstore bundles of [`super::bundle`] are artifact manifests with `subject`, listed in
//!   the `sha256-<hex>` index entry (the OCI image-layout spec's referrers fallback), beside
//!   kiln's own DSSE referrers.
//!
//! Copying these entries to a registry (`kiln push oci:DIR REF`, or skopeo tag by tag) gives
//! the registry layout cosign and the Sigstore verifiers read there.

use super::attach::{Layout, is_attestation_manifest};
use super::{AttestError, Attestation, PublicKey, SigningKey};
use crate::digest::Digest;
use crate::image::manifest::{
    ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::store::Store;

/// cosign's layout annotation naming what an `index.json` entry is (`cosign save`).
pub const KIND_ANNOTATION: &str = "kind";
const KIND_IMAGE: &str = "dev.cosignproject.cosign/image";
const KIND_IMAGE_INDEX: &str = "dev.cosignproject.cosign/imageIndex";
const KIND_SIGNATURES: &str = "dev.cosignproject.cosign/sigs";
const KIND_ATTESTATIONS: &str = "dev.cosignproject.cosign/atts";

/// Which signature layouts to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureFormats {
    /// cosign's `.sig`/`.att` tags.
    pub cosign_tags: bool,
    /// Sigstore bundle v0.3 referrers.
    pub bundles: bool,
}

/// What one signature layout held for one manifest, and what of it verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutFindings {
    /// The layout and the manifest, as printed (`cosign .sig for <12 hex>`).
    pub label: String,
    /// Entries found.
    pub found: usize,
    /// What verified (predicate types, or `signature for <docker-reference>`).
    pub verified: Vec<String>,
    /// Why the other entries did not verify.
    pub problems: Vec<String>,
}

/// The manifest `digest` in the layout and, for an index, the manifests it lists (without
/// buildx attestation manifests): what a signature of `digest` covers.
fn subjects_of(layout: &Layout<'_>, digest: &Digest) -> Result<Vec<Descriptor>, AttestError> {
    let probe = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, digest.clone(), 0);
    let path = layout
        .dir
        .join("blobs")
        .join(digest.algorithm())
        .join(digest.hex());
    let bytes = std::fs::read(&path).map_err(|e| AttestError::io("read blob", &path, e))?;
    if Digest::of(&bytes) != *digest {
        return Err(crate::image::ImageError::DigestMismatch {
            what: format!("blob `{}`", path.display()),
            expected: digest.clone(),
            actual: Digest::of(&bytes),
        }
        .into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| AttestError::Parse {
            what: format!("manifest {} in `{}`", probe.digest, layout.dir.display()),
            source,
        })?;
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or(if value.get("manifests").is_some() {
            MEDIA_TYPE_OCI_INDEX
        } else {
            MEDIA_TYPE_OCI_MANIFEST
        })
        .to_owned();
    let descriptor = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let mut subjects = vec![descriptor];
    if media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST {
        let index: Index = serde_json::from_slice(&bytes).map_err(|source| AttestError::Parse {
            what: format!("index {digest} in `{}`", layout.dir.display()),
            source,
        })?;
        subjects.extend(
            index
                .manifests
                .into_iter()
                .filter(|d| !is_attestation_manifest(d)),
        );
    }
    Ok(subjects)
}

/// The position of the `index.json` entry tagged `tag`.
fn tagged(layout: &Layout<'_>, tag: &str) -> Option<usize> {
    layout
        .index
        .manifests
        .iter()
        .position(|d| d.ref_name() == Some(tag))
}

/// Signs `subject` (a manifest or index in the layout `dir`) and each platform manifest it
/// lists with `key` for `docker_reference` (`registry/repository`, the identity in cosign's
/// payload), and stores the signed `attestations` about each, in the layouts `formats` names.
/// Entries already under the tags are kept. Returns the manifests signed.
pub fn sign_layout(
    dir: &std::path::Path,
    subject: &Digest,
    docker_reference: &str,
    key: &SigningKey,
    attestations: &[Attestation],
    formats: SignatureFormats,
) -> Result<Vec<Digest>, AttestError> {
    let mut layout = Layout::open(dir, true)?;
    let store = Store::open(dir)?;
    let subjects = subjects_of(&layout, subject)?;
    for descriptor in &subjects {
        let digest = &descriptor.digest;
        let about: Vec<&Attestation> = attestations
            .iter()
            .filter(|a| a.subjects().contains(digest))
            .collect();
        if formats.cosign_tags {
            let signature = super::cosign::signature_layer(&store, key, docker_reference, digest)?;
            let mut envelopes = Vec::new();
            for attestation in &about {
                if let Some(layer) = super::cosign::attestation_layer(&store, attestation)? {
                    envelopes.push(layer);
                }
            }
            let kinds = if digest == subject {
                [Some(KIND_SIGNATURES), Some(KIND_ATTESTATIONS)]
            } else {
                [None, None]
            };
            for ((tag, layers), kind) in [
                (super::cosign::signature_tag(digest), vec![signature]),
                (super::cosign::attestation_tag(digest), envelopes),
            ]
            .into_iter()
            .zip(kinds)
            {
                if !layers.is_empty() {
                    write_tag(&mut layout, &store, &tag, &layers, kind)?;
                }
            }
        }
        if formats.bundles {
            let mut bundles = vec![(
                super::bundle::signature_bundle(key, docker_reference, digest)?,
                super::bundle::SIGN_PREDICATE_TYPE.to_owned(),
            )];
            for attestation in &about {
                if let Some(bundle) = super::bundle::attestation_bundle(attestation, key)? {
                    bundles.push((bundle, attestation.predicate_type().to_owned()));
                }
            }
            let mut referrers = Vec::new();
            for (bundle, predicate_type) in &bundles {
                let (_, entry) =
                    super::bundle::referrer_manifest(&store, bundle, predicate_type, descriptor)?;
                referrers.push(entry);
            }
            super::attach::update_fallback_tag(
                &mut layout,
                &super::attach::fallback_tag(digest),
                referrers,
            )?;
        }
    }
    if formats.cosign_tags {
        let kind = if subjects.len() > 1 {
            KIND_IMAGE_INDEX
        } else {
            KIND_IMAGE
        };
        for entry in &mut layout.index.manifests {
            if entry.digest == *subject {
                entry
                    .annotations
                    .insert(KIND_ANNOTATION.to_owned(), kind.to_owned());
            }
        }
    }
    layout.write_index()?;
    layout.tidy();
    Ok(subjects.into_iter().map(|d| d.digest).collect())
}

/// Signs the image `reference` names in the layout `dir` (a tag, a digest, or None for the only
/// image) as [`sign_layout`] does, without attestations: what `kiln sign oci:DIR` does. The
/// identity is `docker_reference`, else the `registry/repository` of the entry's
/// `io.containerd.image.name`, else empty. Returns the manifests signed.
pub fn sign_layout_image(
    dir: &std::path::Path,
    reference: Option<&str>,
    docker_reference: Option<&str>,
    key: &SigningKey,
    formats: SignatureFormats,
) -> Result<Vec<Digest>, AttestError> {
    let entry = {
        let layout = Layout::open(dir, false)?;
        layout.index.manifests[layout.find(reference)?].clone()
    };
    let identity = match docker_reference {
        Some(identity) => identity.to_owned(),
        None => entry
            .annotations
            .get(crate::image::manifest::ANNOTATION_IMAGE_NAME)
            .and_then(|name| name.parse::<crate::registry::Reference>().ok())
            .map(|r| r.name())
            .unwrap_or_default(),
    };
    sign_layout(dir, &entry.digest, &identity, key, &[], formats)
}

/// Writes (or extends) the `.sig`/`.att` entry `tag` with `layers`, marked with cosign's
/// `kind` when given (another entry of that kind loses the mark: `cosign save` has one).
fn write_tag(
    layout: &mut Layout<'_>,
    store: &Store,
    tag: &str,
    layers: &[Descriptor],
    kind: Option<&str>,
) -> Result<(), AttestError> {
    let position = tagged(layout, tag);
    let existing = match position {
        Some(i) => {
            let descriptor = layout.index.manifests[i].clone();
            Some(layout.read_json::<Manifest>(&descriptor)?)
        }
        None => None,
    };
    let bytes = super::cosign::merge_manifest(store, existing.as_ref(), layers)?;
    let (digest, size) = layout.put_bytes(&bytes)?;
    let mut descriptor = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, digest, size);
    descriptor
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    if let Some(kind) = kind {
        for entry in &mut layout.index.manifests {
            if entry.annotations.get(KIND_ANNOTATION).map(String::as_str) == Some(kind) {
                entry.annotations.remove(KIND_ANNOTATION);
            }
        }
        descriptor
            .annotations
            .insert(KIND_ANNOTATION.to_owned(), kind.to_owned());
    }
    match position {
        Some(i) => layout.index.manifests[i] = descriptor,
        None => layout.index.manifests.push(descriptor),
    }
    Ok(())
}

/// The `.sig`/`.att` manifest of `tag` in the layout, else (for the signed manifest itself)
/// the entry `cosign save` marks with `kind`.
fn tag_manifest(
    layout: &Layout<'_>,
    tag: &str,
    kind: Option<&str>,
) -> Result<Option<Manifest>, AttestError> {
    let entry = tagged(layout, tag)
        .map(|i| &layout.index.manifests[i])
        .or_else(|| {
            kind.and_then(|kind| {
                layout.index.manifests.iter().find(|d| {
                    d.ref_name().is_none()
                        && d.annotations.get(KIND_ANNOTATION).map(String::as_str) == Some(kind)
                })
            })
        });
    entry.map(|d| layout.read_json::<Manifest>(d)).transpose()
}

/// Reads cosign's `.sig` and `.att` tags and the Sigstore bundle referrers that the layout
/// `dir` holds for the image `reference` names (a tag, a digest, or None for the only image)
/// and each platform manifest of an index, and checks each entry against `keys`. With
/// `exact_repository`, a `.sig` payload must name that `registry/repository`.
pub fn verify_layout(
    dir: &std::path::Path,
    reference: Option<&str>,
    keys: &[PublicKey],
    exact_repository: Option<&str>,
) -> Result<Vec<LayoutFindings>, AttestError> {
    let layout = Layout::open(dir, false)?;
    let entry = layout.index.manifests[layout.find(reference)?].clone();
    let subjects = subjects_of(&layout, &entry.digest)?;
    let mut out = Vec::new();
    for (i, descriptor) in subjects.iter().enumerate() {
        let subject = &descriptor.digest;
        let short = &subject.hex()[..12];
        let (sig_kind, att_kind) = if i == 0 {
            (Some(KIND_SIGNATURES), Some(KIND_ATTESTATIONS))
        } else {
            (None, None)
        };
        let mut sig = LayoutFindings {
            label: format!("cosign .sig for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) =
            tag_manifest(&layout, &super::cosign::signature_tag(subject), sig_kind)?
        {
            for layer in &manifest.layers {
                sig.found += 1;
                let outcome = layout
                    .read(layer)
                    .map_err(|e| e.to_string())
                    .and_then(|payload| {
                        super::cosign::verify_signature_layer(layer, &payload, keys, subject)
                    });
                match outcome {
                    Ok(identity) if exact_repository.is_some_and(|r| r != identity) => {
                        sig.problems.push(format!(
                            "layer {}: signed for `{identity}`, not `{}` (require_exact_repository)",
                            layer.digest,
                            exact_repository.unwrap_or_default()
                        ));
                    }
                    Ok(identity) => sig.verified.push(format!("signature for {identity}")),
                    Err(problem) => sig.problems.push(problem),
                }
            }
        }
        out.push(sig);
        let mut att = LayoutFindings {
            label: format!("cosign .att for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) =
            tag_manifest(&layout, &super::cosign::attestation_tag(subject), att_kind)?
        {
            for layer in &manifest.layers {
                att.found += 1;
                let what = format!("layer {}", layer.digest);
                let outcome = layout
                    .read(layer)
                    .map_err(|e| e.to_string())
                    .and_then(|envelope| {
                        super::cosign::verify_envelope(&envelope, &what, keys, subject)
                    });
                match outcome {
                    Ok(predicate_type) => att.verified.push(predicate_type),
                    Err(problem) => att.problems.push(problem),
                }
            }
        }
        out.push(att);
        let mut bundles = LayoutFindings {
            label: format!("sigstore bundles for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(i) = tagged(&layout, &super::attach::fallback_tag(subject)) {
            let index: Index = layout.read_json(&layout.index.manifests[i])?;
            for entry in index
                .manifests
                .iter()
                .filter(|e| super::bundle::may_be_bundle(e))
            {
                let manifest = layout.read_json::<Manifest>(entry);
                if manifest
                    .as_ref()
                    .is_ok_and(|m| !super::bundle::is_bundle(m))
                {
                    continue;
                }
                bundles.found += 1;
                let outcome = manifest.map_err(|e| e.to_string()).and_then(|manifest| {
                    let layer = manifest
                        .layers
                        .first()
                        .ok_or_else(|| format!("referrer {} has no layer", entry.digest))?
                        .clone();
                    let bundle = layout.read(&layer).map_err(|e| e.to_string())?;
                    let what = format!("bundle {}", layer.digest);
                    super::bundle::verify_bundle(&bundle, &what, keys, subject)
                });
                match outcome {
                    Ok(predicate_type) => bundles.verified.push(predicate_type),
                    Err(problem) => bundles.problems.push(problem),
                }
            }
        }
        out.push(bundles);
    }
    Ok(out)
}
