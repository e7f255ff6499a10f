//! Images as values: the config, the manifest and index (canonical JSON, so equal inputs give
//! equal digests), and the outputs (OCI layout, oci-archive, docker-archive) and base-image
//! inputs (OCI layout, oci-archive).
//!
//! Three digests name an image's parts:
//! - a layer's *diffID* is the sha256 of its **uncompressed** tar. The config lists them in
//!   `rootfs.diff_ids`; they do not change when a layer is recompressed (gzip vs zstd), and
//!   `docker-archive` files, which hold uncompressed layers, are addressed by them;
//! - a layer's *digest* is the sha256 of the blob **as stored and pushed** (compressed). The
//!   manifest lists them; registries and OCI layouts store blobs under them;
//! - the *image ID* is the digest of the config blob (what `docker images` shows), while the
//!   image as pulled or pushed is named by its *manifest digest* (`repo@sha256:...`). The same
//!   config with differently compressed layers has one image ID and two manifest digests.
//!
//! Data enters as an [`ImageConfig`] plus the [`Layer`] values `layer::write` produced (or a
//! [`base::BaseImage`] loaded from a layout or archive), [`assemble`] writes the config and
//! manifest blobs into the [`Store`] and returns a [`BuiltImage`] value, and the writers in
//! [`layout`] and [`archive`] copy those blobs out. Nothing edits an image in place: a new
//! image is a new value. Time enters only through the config (`created`, from
//! SOURCE_DATE_EPOCH via [`rfc3339`]); nothing here reads the clock.
//!
//! JSON types: see [`manifest`] for why kiln uses its own serde structs instead of
//! oci-spec's. Blob access goes through the private `blobs` module, a stand-in for the Store
//! API until it lands.

pub mod archive;
pub mod base;
mod blobs;
pub mod canonical;
pub mod compose;
pub mod config;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod platform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use archive::{write_docker_archive, write_oci_archive};
pub use base::{BaseImage, load_oci_archive, load_oci_layout};
pub use config::ImageConfig;
pub use index::{BuiltIndex, Exportable, assemble_index};
pub use layout::write_oci_layout;
pub use manifest::{Descriptor, Index, Manifest};
pub use platform::{Platform, PlatformError};

use crate::digest::Digest;
use crate::layer::Layer;
use crate::store::Store;

/// Why an image could not be assembled, written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A value could not be serialized as canonical JSON.
    #[error("failed to serialize `{what}` as canonical JSON")]
    Serialize {
        /// The Rust type being serialized.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document could not be parsed.
    #[error("failed to parse {what}")]
    Parse {
        /// The document and where it came from.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Bytes did not hash to the digest that names them.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob and where it came from.
        what: String,
        /// The digest it is named by.
        expected: Digest,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// A blob's size differs from its descriptor.
    #[error(
        "size mismatch for {what}: the descriptor says {expected} bytes, the blob has {actual}"
    )]
    SizeMismatch {
        /// The blob and where it came from.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The blob's size.
        actual: u64,
    },
    /// The config's diffIDs disagree with the layers given.
    #[error(
        "config rootfs.diff_ids do not match the layers: {} diffIDs for {} layers; first difference at position {position}",
        config.len(), layers.len()
    )]
    DiffIdMismatch {
        /// The first differing position (0 = bottom layer).
        position: usize,
        /// The config's diffIDs.
        config: Vec<Digest>,
        /// The layers' diffIDs.
        layers: Vec<Digest>,
    },
    /// A manifest lists a different number of layers than its config has diffIDs.
    #[error("{what} lists {layers} layers but its config has {diff_ids} rootfs.diff_ids")]
    LayerCountMismatch {
        /// The image and where it came from.
        what: String,
        /// Layers in the manifest.
        layers: usize,
        /// diffIDs in the config.
        diff_ids: usize,
    },
    /// The config history lists a different number of layers than the image has.
    #[error(
        "config history has {history} entries without `empty_layer` but the image has {layers} layers; registries reject such images"
    )]
    HistoryMismatch {
        /// Non-empty history entries.
        history: usize,
        /// Layers.
        layers: usize,
    },
    /// The config lacks its os or architecture.
    #[error("the image config has no `{field}`; set the platform (`--platform linux/amd64`)")]
    MissingPlatform {
        /// `os` or `architecture`.
        field: &'static str,
    },
    /// An image name or tag cannot be written to an output.
    #[error("invalid image name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two images of one index have the same platform.
    #[error("two images of one index are for `{platform}`; an index holds one image per platform")]
    DuplicatePlatform {
        /// The platform named twice.
        platform: String,
    },
    /// A directory is not an OCI image layout.
    #[error("`{}` is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// No image in a layout matches the reference.
    #[error(
        "no image `{reference}` in `{source_name}`; available: {}",
        list_or_none(available)
    )]
    RefNotFound {
        /// The reference asked for.
        reference: String,
        /// The layout or archive.
        source_name: String,
        /// The refs it holds.
        available: Vec<String>,
    },
    /// A layout holds several images and no reference was given.
    #[error("`{source_name}` holds {} images; name one with `:<tag>` or `@<digest>`; available: {}", available.len(), list_or_none(available))]
    AmbiguousRef {
        /// The layout or archive.
        source_name: String,
        /// The refs it holds.
        available: Vec<String>,
    },
    /// No entry of an image index matches the platform.
    #[error(
        "no manifest for platform {platform} in {what}; available: {}",
        list_or_none(available)
    )]
    PlatformNotFound {
        /// The platform asked for.
        platform: String,
        /// The index.
        what: String,
        /// The platforms it lists.
        available: Vec<String>,
    },
    /// A single-platform image was asked for with another platform.
    #[error("{what} is for {actual}, not the requested platform {requested}")]
    PlatformMismatch {
        /// The image.
        what: String,
        /// The platform asked for.
        requested: String,
        /// The image's platform.
        actual: String,
    },
    /// A media type kiln cannot use in this position.
    #[error("unsupported media type `{media_type}` for {what}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Where it appeared.
        what: String,
    },
    /// Image indexes nested too deep (a loop, or a hostile layout).
    #[error("image indexes nested more than {0} deep")]
    IndexTooDeep(usize),
    /// An archive entry is not a file a layout may hold.
    #[error("unsafe or unexpected entry `{entry}` in archive `{}`", archive.display())]
    BadArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry name.
        entry: String,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl ImageError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// The manifest of a built image, as an index entry would describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestDescriptor {
    /// Always the OCI image manifest media type.
    pub media_type: String,
    /// The manifest digest: the image's name in a registry (`repo@sha256:...`).
    pub digest: Digest,
    /// The manifest size in bytes.
    pub size: u64,
    /// The platform, from the config.
    pub platform: Platform,
}

impl ManifestDescriptor {
    /// As a [`Descriptor`] carrying the platform.
    pub fn to_descriptor(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(&self.media_type, self.digest.clone(), self.size);
        descriptor.platform = Some(self.platform.clone());
        descriptor
    }
}

/// An image whose config and manifest blobs are in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltImage {
    /// The manifest.
    pub manifest: ManifestDescriptor,
    /// The config digest (the image ID).
    pub config_digest: Digest,
    /// The config size in bytes.
    pub config_size: u64,
    /// The layers, bottom first, with the media types the manifest lists.
    pub layers: Vec<Layer>,
    /// The config as written (diffIDs filled in).
    pub config: ImageConfig,
}

impl BuiltImage {
    /// The image whose manifest `manifest_digest` is in `store` (with its config), as
    /// [`assemble`] would have returned it: for exporting a pulled or imported image.
    pub fn from_store(store: &Store, manifest_digest: &Digest) -> Result<BuiltImage, ImageError> {
        let bytes = blobs::read_bytes(store, manifest_digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
                what: format!("image manifest {manifest_digest}"),
                source,
            })?;
        let config_bytes = blobs::read_bytes(store, &manifest.config.digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Parse {
                what: format!("image config {}", manifest.config.digest),
                source,
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::LayerCountMismatch {
                what: format!("image {manifest_digest}"),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| Layer {
                diff_id: diff_id.clone(),
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                media_type: descriptor.media_type.clone(),
            })
            .collect();
        Ok(BuiltImage {
            manifest: ManifestDescriptor {
                media_type: manifest
                    .media_type
                    .clone()
                    .unwrap_or_else(|| manifest::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
                digest: manifest_digest.clone(),
                size: bytes.len() as u64,
                platform: Platform::new(
                    &config.os,
                    &config.architecture,
                    config.variant.as_deref(),
                ),
            },
            config_digest: manifest.config.digest.clone(),
            config_size: manifest.config.size,
            layers,
            config,
        })
    }
}

/// Writes `config` and an OCI manifest listing `layers` into `store`.
///
/// `config.rootfs.diff_ids` is filled from the layers when empty, and must equal them
/// otherwise. When the config has history, its entries without `empty_layer` must number the
/// layers. Docker layer media types are written as their OCI twins (same bytes). The config
/// and manifest go through canonical JSON, so equal inputs give byte-identical blobs.
/// `annotations` become the manifest's annotations (omitted when empty).
pub fn assemble(
    store: &Store,
    config: &ImageConfig,
    layers: &[Layer],
    annotations: &BTreeMap<String, String>,
) -> Result<BuiltImage, ImageError> {
    if config.os.is_empty() {
        return Err(ImageError::MissingPlatform { field: "os" });
    }
    if config.architecture.is_empty() {
        return Err(ImageError::MissingPlatform {
            field: "architecture",
        });
    }
    let layer_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut config = config.clone();
    if config.rootfs.diff_ids.is_empty() {
        config.rootfs.diff_ids = layer_ids;
    } else if config.rootfs.diff_ids != layer_ids {
        let position = config
            .rootfs
            .diff_ids
            .iter()
            .zip(&layer_ids)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| config.rootfs.diff_ids.len().min(layer_ids.len()));
        return Err(ImageError::DiffIdMismatch {
            position,
            config: config.rootfs.diff_ids.clone(),
            layers: layer_ids,
        });
    }
    if !config.history.is_empty() {
        let history = config
            .history
            .iter()
            .filter(|h| h.empty_layer != Some(true))
            .count();
        if history != layers.len() {
            return Err(ImageError::HistoryMismatch {
                history,
                layers: layers.len(),
            });
        }
    }

    let config_bytes = canonical::to_vec(&config)?;
    let (config_digest, config_size) = blobs::put_bytes(store, &config_bytes)?;

    let layers: Vec<Layer> = layers
        .iter()
        .map(|l| Layer {
            media_type: manifest::oci_layer_media_type(&l.media_type).to_owned(),
            ..l.clone()
        })
        .collect();
    let document = Manifest {
        schema_version: 2,
        media_type: Some(manifest::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config: Descriptor::new(
            manifest::MEDIA_TYPE_OCI_CONFIG,
            config_digest.clone(),
            config_size,
        ),
        layers: layers
            .iter()
            .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
            .collect(),
        annotations: annotations.clone(),
        extra: BTreeMap::new(),
    };
    let manifest_bytes = canonical::to_vec(&document)?;
    let (manifest_digest, manifest_size) = blobs::put_bytes(store, &manifest_bytes)?;

    let platform = Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        os_version: None,
        os_features: None,
    };
    Ok(BuiltImage {
        manifest: ManifestDescriptor {
            media_type: manifest::MEDIA_TYPE_OCI_MANIFEST.to_owned(),
            digest: manifest_digest,
            size: manifest_size,
            platform,
        },
        config_digest,
        config_size,
        layers,
        config,
    })
}

/// Formats Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`), the form image configs use.
///
/// Valid for years 0 to 9999; outside that the year is printed as is.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// The `--metadata-file` document for `image`, shaped like buildx's: `containerimage.digest`,
/// `containerimage.config.digest`, `containerimage.descriptor`, plus `kiln.layers`.
pub fn metadata_json(image: &BuiltImage) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = image
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "digest": l.digest.to_string(),
                "diffID": l.diff_id.to_string(),
                "size": l.size,
                "mediaType": l.media_type,
            })
        })
        .collect();
    serde_json::json!({
        "containerimage.digest": image.manifest.digest.to_string(),
        "containerimage.config.digest": image.config_digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.size,
        },
        "kiln.layers": layers,
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_table() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:01Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(secs), text, "{secs}");
        }
    }
}
