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
//! Blobs are written through [`Store`] (hash, verify, fsync, rename) rooted at the layout;
//! `index.json` is replaced last through a temp file and a rename.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::AttestError;
use super::dsse::{Envelope, MEDIA_TYPE_DSSE_ENVELOPE, PAYLOAD_TYPE_IN_TOTO};
use super::keys::SigningKey;
use super::provenance::Statement;
use super::sbom::SPDX_PREDICATE_TYPE;
use crate::digest::Digest;
use crate::image::manifest::{
    ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::image::{Platform, canonical};
use crate::store::Store;

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

/// One statement ready to attach: the bytes (a statement, or a DSSE envelope holding one),
/// their media type and what they claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    predicate_type: String,
    subjects: Vec<Digest>,
    signed: bool,
    bytes: Vec<u8>,
}

impl Attestation {
    /// An unsigned statement (canonical JSON).
    pub fn unsigned(statement: &Statement) -> Result<Attestation, AttestError> {
        Ok(Attestation {
            predicate_type: statement.predicate_type.clone(),
            subjects: statement.subject_digests(),
            signed: false,
            bytes: statement.to_bytes()?,
        })
    }

    /// The statement in a DSSE envelope signed by `keys`.
    pub fn signed(statement: &Statement, keys: &[&SigningKey]) -> Result<Attestation, AttestError> {
        let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &statement.to_bytes()?, keys)?;
        Ok(Attestation {
            predicate_type: statement.predicate_type.clone(),
            subjects: statement.subject_digests(),
            signed: true,
            bytes: envelope.to_bytes()?,
        })
    }

    /// The statement's predicate type.
    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }

    /// The bytes that are stored (statement or envelope).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The digests of the statement's subjects.
    pub fn subjects(&self) -> &[Digest] {
        &self.subjects
    }

    /// True for a DSSE envelope.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The layer media type inside a buildx attestation manifest.
    pub fn index_media_type(&self) -> String {
        if !self.signed {
            return MEDIA_TYPE_IN_TOTO.to_owned();
        }
        let kind = if self
            .predicate_type
            .starts_with("https://slsa.dev/provenance/")
        {
            "provenance"
        } else if self.predicate_type == SPDX_PREDICATE_TYPE {
            "spdx"
        } else {
            "statement"
        };
        format!("application/vnd.in-toto.{kind}+dsse")
    }

    /// The blob (and artifact) media type of an OCI referrer.
    pub fn referrer_media_type(&self) -> &'static str {
        if self.signed {
            MEDIA_TYPE_DSSE_ENVELOPE
        } else {
            MEDIA_TYPE_IN_TOTO
        }
    }
}

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

/// An opened layout: its store, `index.json`, and blob access.
pub(crate) struct Layout<'a> {
    pub dir: &'a Path,
    /// Present when opened for writing ([`Store::open`] creates directories).
    store: Option<Store>,
    pub index: Index,
    /// The layout's exclusive lock, held from reading `index.json` to writing it when opened
    /// for writing (another kiln process may be merging into the same layout).
    _lock: Option<crate::lock::DirLock>,
}

impl<'a> Layout<'a> {
    /// Opens the layout at `dir`; `writable` opens its blob store for writing too.
    pub fn open(dir: &'a Path, writable: bool) -> Result<Layout<'a>, AttestError> {
        crate::image::layout::check_layout_file(dir)?;
        let lock = if writable {
            Some(crate::image::layout::lock_layout(dir)?)
        } else {
            None
        };
        let index = crate::image::layout::read_index(dir)?.ok_or_else(|| AttestError::Attach {
            path: dir.to_owned(),
            reason: "the layout has no `index.json`".to_owned(),
        })?;
        let store = if writable {
            Some(Store::open(dir)?)
        } else {
            None
        };
        Ok(Layout {
            dir,
            store,
            index,
            _lock: lock,
        })
    }

    fn store(&self) -> Result<&Store, AttestError> {
        self.store.as_ref().ok_or_else(|| AttestError::Attach {
            path: self.dir.to_owned(),
            reason: "the layout was opened read-only".to_owned(),
        })
    }

    /// Stores `bytes` as a blob; returns its digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), AttestError> {
        Ok(self.store()?.put_bytes(bytes)?)
    }

    /// Reads and verifies a blob named by a descriptor (digest and size).
    pub fn read(&self, descriptor: &Descriptor) -> Result<Vec<u8>, AttestError> {
        let path = self
            .dir
            .join("blobs")
            .join(descriptor.digest.algorithm())
            .join(descriptor.digest.hex());
        let bytes = std::fs::read(&path).map_err(|e| AttestError::io("read blob", &path, e))?;
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest {
            return Err(crate::image::ImageError::DigestMismatch {
                what: format!("blob `{}`", path.display()),
                expected: descriptor.digest.clone(),
                actual,
            }
            .into());
        }
        if bytes.len() as u64 != descriptor.size {
            return Err(crate::image::ImageError::SizeMismatch {
                what: format!("blob {} in `{}`", descriptor.digest, self.dir.display()),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            }
            .into());
        }
        Ok(bytes)
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<T, AttestError> {
        let bytes = self.read(descriptor)?;
        serde_json::from_slice(&bytes).map_err(|source| AttestError::Parse {
            what: format!("{} {}", descriptor.media_type, descriptor.digest),
            source,
        })
    }

    /// Stores a canonical JSON document; returns its descriptor.
    pub fn put_json<T: serde::Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, AttestError> {
        let bytes = canonical::to_vec(value)?;
        let (digest, size) = self.put_bytes(&bytes)?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// The `index.json` entry `reference` names: a tag (`ref.name`, or the full
    /// `io.containerd.image.name`), a digest (`sha256:...`, optionally after `@`), or None
    /// when the layout has exactly one entry that is not a fallback tag.
    pub fn find(&self, reference: Option<&str>) -> Result<usize, AttestError> {
        let entries = &self.index.manifests;
        let found = match reference {
            None => {
                let images: Vec<usize> = (0..entries.len())
                    .filter(|&i| {
                        !entries[i]
                            .ref_name()
                            .is_some_and(|r| r.starts_with("sha256-"))
                    })
                    .collect();
                if images.len() == 1 {
                    Some(images[0])
                } else {
                    None
                }
            }
            Some(reference) => {
                let digest = reference
                    .rsplit_once('@')
                    .map_or(reference, |(_, d)| d)
                    .parse::<Digest>()
                    .ok();
                entries.iter().position(|e| match &digest {
                    Some(d) => &e.digest == d,
                    None => {
                        e.ref_name() == Some(reference)
                            || e.annotations
                                .get(crate::image::manifest::ANNOTATION_IMAGE_NAME)
                                == Some(&reference.to_owned())
                    }
                })
            }
        };
        found.ok_or_else(|| {
            crate::image::ImageError::RefNotFound {
                reference: reference.unwrap_or("(the only image)").to_owned(),
                source_name: format!("oci:{}", self.dir.display()),
                available: entries
                    .iter()
                    .map(|e| {
                        e.ref_name()
                            .map_or_else(|| e.digest.to_string(), str::to_owned)
                    })
                    .collect(),
            }
            .into()
        })
    }

    /// The image manifests under entry `descriptor` (itself, or an index's non-attestation
    /// entries), each with its platform.
    pub fn images_of(
        &self,
        descriptor: &Descriptor,
    ) -> Result<(Option<Index>, Vec<Descriptor>), AttestError> {
        match descriptor.media_type.as_str() {
            MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
                let mut image = Descriptor::new(
                    &descriptor.media_type,
                    descriptor.digest.clone(),
                    descriptor.size,
                );
                image.platform = match &descriptor.platform {
                    Some(p) => Some(p.clone()),
                    None => self.platform_from_config(descriptor)?,
                };
                Ok((None, vec![image]))
            }
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
                let index: Index = self.read_json(descriptor)?;
                let images = index
                    .manifests
                    .iter()
                    .filter(|d| !is_attestation_manifest(d))
                    .cloned()
                    .collect();
                Ok((Some(index), images))
            }
            other => Err(crate::image::ImageError::UnsupportedMediaType {
                media_type: other.to_owned(),
                what: format!("index.json entry {}", descriptor.digest),
            }
            .into()),
        }
    }

    fn platform_from_config(&self, manifest: &Descriptor) -> Result<Option<Platform>, AttestError> {
        let manifest: Manifest = self.read_json(manifest)?;
        let config: serde_json::Value = self.read_json(&manifest.config)?;
        let field = |k: &str| config.get(k).and_then(|v| v.as_str());
        Ok(match (field("os"), field("architecture")) {
            (Some(os), Some(arch)) => Some(Platform::new(os, arch, field("variant"))),
            _ => None,
        })
    }

    /// Writes `index.json` (temp file, fsync, rename) and drops the store's empty ingest dir.
    pub fn write_index(&self) -> Result<(), AttestError> {
        use std::io::Write as _;
        let path = self.dir.join("index.json");
        let bytes = canonical::to_vec(&self.index)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-index-")
            .tempfile_in(self.dir)
            .map_err(|e| AttestError::io("create a temp file in", self.dir, e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| AttestError::io("set the mode of", temp.path(), e))?;
        }
        temp.write_all(&bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| AttestError::io("write", &path, e))?;
        temp.persist(&path)
            .map_err(|e| AttestError::io("rename into place", &path, e.error))?;
        Ok(())
    }

    /// Removes the store's ingest directory when it is empty (best effort: it is hidden and
    /// ignored by readers either way).
    pub fn tidy(&self) {
        let _ = std::fs::remove_dir(self.dir.join(".kiln-ingest"));
    }
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
        .find(|image| attestation.subjects.contains(&image.digest))
        .ok_or_else(|| AttestError::Attach {
            path: layout.to_owned(),
            reason: format!(
                "none of the subjects of the {} statement ({}) is an image of the reference; it has {}",
                attestation.predicate_type,
                attestation
                    .subjects
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
