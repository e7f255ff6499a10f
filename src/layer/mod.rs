//! Layers: the `Diff` model, the deterministic tar writer, compression, and the one streaming
//! pass that turns a Diff into a stored blob with its diffID and digest.
//!
//! A [`Layer`] is a value: its uncompressed digest (diffID), its blob digest, size and media
//! type. Only [`write`] makes one.

pub mod diff;
pub mod reader;

pub use diff::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, PathError};

use crate::digest::Digest;
use crate::store::Store;

/// OCI media type of a gzip-compressed layer.
pub const MEDIA_TYPE_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd-compressed layer.
pub const MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A stored layer blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// sha256 of the uncompressed tar (goes into the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as stored and pushed (goes into the manifest).
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
}

/// How a layer's tar stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Standard gzip at `level` (1-9).
    Gzip {
        /// Compression level, 1 (fastest) to 9 (smallest).
        level: u32,
    },
    /// zstd at `level` (1-19).
    Zstd {
        /// Compression level.
        level: i32,
    },
    /// No compression.
    None,
}

/// Settings for [`write`].
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// The compressor.
    pub compression: Compression,
    /// Every entry's mtime is clamped to at most this (SOURCE_DATE_EPOCH; 0 by default).
    pub source_date_epoch: i64,
    /// Worker threads for compression (>= 1).
    pub threads: usize,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Not implemented yet.
    #[error("layer writing is not implemented yet")]
    Unimplemented,
}

/// Writes `diff` as a tar, compressed, into `store`, in one streaming pass.
pub fn write(_diff: &Diff, _store: &Store, _options: &WriteOptions) -> Result<Layer, LayerError> {
    Err(LayerError::Unimplemented)
}
