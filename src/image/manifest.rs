//! The JSON documents that name an image: content descriptors, image manifests and image
//! indexes, plus the media types kiln writes and the Docker ones it accepts as input.
//!
//! These are plain serde structs rather than `oci_spec::image::{ImageManifest, ImageIndex,
//! Descriptor}`: oci-spec keeps annotations in `HashMap`s, parses media types into an enum and
//! drops fields it does not know, while kiln must (a) read Docker schema-2 manifests and lists
//! as base-image input, (b) rewrite an existing `index.json` without losing entries written by
//! other tools, and (c) produce bytes that depend on the value only. Every map here is a
//! `BTreeMap`, unknown fields are kept in `extra`, and all of it is serialized through
//! [`super::canonical::to_vec`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Platform;
use crate::digest::Digest;

/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema-2 manifest (accepted as input).
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (accepted as input).
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config (accepted as input).
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer (accepted as input; the same bytes as an OCI gzip layer).
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (accepted as input).
pub const MEDIA_TYPE_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Annotation holding a tag in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name (`repo:tag`), as BuildKit's exporter writes it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip (`+gzip`, Docker `diff.tar.gzip`).
    Gzip,
    /// zstd (`+zstd`).
    Zstd,
    /// A plain tar.
    None,
}

/// The compression a layer media type implies, or None for a type kiln does not handle
/// (foreign/non-distributable layers, encrypted layers, artifacts).
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        crate::layer::MEDIA_TYPE_GZIP | MEDIA_TYPE_DOCKER_LAYER_GZIP => {
            Some(LayerCompression::Gzip)
        }
        crate::layer::MEDIA_TYPE_ZSTD => Some(LayerCompression::Zstd),
        crate::layer::MEDIA_TYPE_TAR | MEDIA_TYPE_DOCKER_LAYER_TAR => Some(LayerCompression::None),
        _ => None,
    }
}

/// The OCI media type with the same bytes as `media_type` (Docker layer types map to their OCI
/// twins; anything else is returned unchanged).
pub fn oci_layer_media_type(media_type: &str) -> &str {
    match media_type {
        MEDIA_TYPE_DOCKER_LAYER_GZIP => crate::layer::MEDIA_TYPE_GZIP,
        MEDIA_TYPE_DOCKER_LAYER_TAR => crate::layer::MEDIA_TYPE_TAR,
        other => other,
    }
}

/// A content descriptor: what a blob is, its digest and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The platform, on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (for example the ref name in an OCI layout).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields kiln does not model (`urls`, `data`, `artifactType`), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with no platform, annotations or extra fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// An image manifest (OCI, or Docker schema 2 on input).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields kiln does not model (`subject`, `artifactType`), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index (OCI, or a Docker manifest list on input; also an OCI layout's `index.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Index annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields kiln does not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Index {
    /// An empty OCI index.
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}
