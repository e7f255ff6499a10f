//! Multi-platform images: [`assemble_index`] lists one built image per platform in an OCI image
//! index, and [`Exportable`] lets the layout and archive writers take an image or an index
//! alike.
//!
//! The index lists its images in canonical order, sorted by platform as `kiln manifest create`
//! sorts them (see [`super::compose`]), each entry carrying the platform its config says, and
//! is serialized through canonical JSON: the same images give the same index digest on every
//! machine, whatever the order of `--platform`, and per-runner builds gathered by `kiln
//! manifest create` give the digest of the one-job build.

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::{Descriptor, Index, MEDIA_TYPE_OCI_INDEX};
use super::{BuiltImage, ImageError, blobs, canonical};
use crate::digest::Digest;
use crate::store::Store;

/// An image index whose blob, and every blob of its images, is in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltIndex {
    /// The index digest: the multi-platform image's name in a registry.
    pub digest: Digest,
    /// The index size in bytes.
    pub size: u64,
    /// The images it lists, in its order.
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// The index as a descriptor (no platform: it stands for all of them).
    pub fn to_descriptor(&self) -> Descriptor {
        Descriptor::new(MEDIA_TYPE_OCI_INDEX, self.digest.clone(), self.size)
    }
}

/// Why several images cannot make one index.
fn duplicate_platform(images: &[BuiltImage]) -> Option<String> {
    let mut seen = BTreeSet::new();
    images
        .iter()
        .map(|image| image.manifest.platform.normalized())
        .find(|platform| !seen.insert(platform.clone()))
        .map(|platform| platform.to_string())
}

/// Writes an OCI image index listing `images` (sorted by platform, with their platforms) into
/// `store`. `annotations` become the index's own annotations (omitted when empty). Two images
/// of one platform are refused: a reader could not choose between them.
pub fn assemble_index(
    store: &Store,
    images: &[BuiltImage],
    annotations: &BTreeMap<String, String>,
) -> Result<BuiltIndex, ImageError> {
    if let Some(platform) = duplicate_platform(images) {
        return Err(ImageError::DuplicatePlatform { platform });
    }
    let mut sorted: Vec<&BuiltImage> = images.iter().collect();
    sorted.sort_by_key(|image| super::compose::order_key(&image.manifest.platform));
    let mut index = Index::empty();
    index.manifests = sorted.iter().map(|i| i.manifest.to_descriptor()).collect();
    index.annotations = annotations.clone();
    let bytes = canonical::to_vec(&index)?;
    let (digest, size) = blobs::put_bytes(store, &bytes)?;
    Ok(BuiltIndex {
        digest,
        size,
        images: sorted.into_iter().cloned().collect(),
    })
}

/// What the layout and archive writers can export: a single image or an index of them.
pub trait Exportable {
    /// The `index.json` entry that names it (before tag annotations).
    fn descriptor(&self) -> Descriptor;
    /// Every blob it needs, its own manifest or index included.
    fn blobs(&self) -> BTreeSet<Digest>;
}

impl Exportable for BuiltImage {
    fn descriptor(&self) -> Descriptor {
        self.manifest.to_descriptor()
    }

    fn blobs(&self) -> BTreeSet<Digest> {
        let mut set = BTreeSet::new();
        set.insert(self.manifest.digest.clone());
        set.insert(self.config_digest.clone());
        set.extend(self.layers.iter().map(|l| l.digest.clone()));
        set
    }
}

impl Exportable for BuiltIndex {
    fn descriptor(&self) -> Descriptor {
        self.to_descriptor()
    }

    fn blobs(&self) -> BTreeSet<Digest> {
        let mut set = BTreeSet::new();
        set.insert(self.digest.clone());
        for image in &self.images {
            set.extend(image.blobs());
        }
        set
    }
}
