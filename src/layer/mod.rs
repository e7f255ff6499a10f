//! Layers: the `Diff` model, the deterministic tar writer, compression, and the one streaming
//! pass that turns a Diff into a stored blob with its diffID and digest.
//!
//! A [`Layer`] is a value: its uncompressed digest (diffID), its blob digest, size and media
//! type. Only [`write`] makes one.

pub mod compress;
pub mod diff;
pub mod reader;
pub mod tar_writer;

pub use diff::{Diff, Entry, EntryKind, FileContent, HostStamp, LayerPath, Metadata, PathError};

use std::path::PathBuf;

use crate::digest::Digest;
use crate::store::{Store, StoreError};

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

/// Settings for [`write`]. The default is gzip at [`DEFAULT_GZIP_LEVEL`], SOURCE_DATE_EPOCH 0,
/// one thread.
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
    /// A host file named by the Diff could not be opened or read.
    #[error("failed to read `{path}` (the content of `{entry}`)")]
    ReadHostFile {
        /// The entry's path in the layer.
        entry: LayerPath,
        /// The host file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A host file's size changed between making the Diff and writing the layer.
    #[error(
        "`{path}` (the content of `{entry}`) changed while the layer was built: expected {expected} bytes, found {actual}; rerun the build once nothing writes to it"
    )]
    HostFileChanged {
        /// The entry's path in the layer.
        entry: LayerPath,
        /// The host file.
        path: PathBuf,
        /// Its size when the Diff was made.
        expected: u64,
        /// Its size (or the bytes found) when the layer was written.
        actual: u64,
    },
    /// A hard link sorts before its target, which is in the same layer: the tar would name a
    /// target that does not exist yet when extracted.
    #[error("hard link `{link}` comes before its target `{target}` in the layer")]
    HardlinkBeforeTarget {
        /// The link.
        link: LayerPath,
        /// Its target.
        target: LayerPath,
    },
    /// A device number does not fit the tar header.
    #[error("device numbers {major}:{minor} of `{path}` do not fit a tar header")]
    DeviceNumberTooLarge {
        /// The device node.
        path: LayerPath,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// The compression level is out of range for the compressor.
    #[error("invalid {compressor} compression level {level}: expected {range}")]
    InvalidLevel {
        /// `gzip` or `zstd`.
        compressor: &'static str,
        /// The level given.
        level: i64,
        /// The accepted range.
        range: &'static str,
    },
    /// Writing the tar stream into the compressor or the store failed.
    #[error("failed to write the layer stream")]
    WriteStream {
        /// The cause (a compressor or store error).
        #[source]
        source: std::io::Error,
    },
    /// Starting or committing the blob in the store failed.
    #[error("failed to store the layer blob")]
    Store {
        /// The cause.
        #[source]
        source: StoreError,
    },
}

/// Writes `diff` as a tar, compressed, into `store`, in one streaming pass: Diff -> deterministic
/// tar ([`tar_writer`]) -> sha256 (diffID) -> compressor ([`compress`]) -> sha256 (digest) ->
/// store temp file -> rename. Memory stays flat whatever the layer size.
pub fn write(diff: &Diff, store: &Store, options: &WriteOptions) -> Result<Layer, LayerError> {
    write_with_gzip_engine(diff, store, options, GZIP_ENGINE)
}

/// [`write`] with an explicit gzip engine instead of [`GZIP_ENGINE`] (for benchmarks, and for
/// consumers that need a single-member gzip stream: [`compress::GzipEngine::ZlibRs`]).
/// `engine` is ignored for zstd and uncompressed layers.
pub fn write_with_gzip_engine(
    diff: &Diff,
    store: &Store,
    options: &WriteOptions,
    engine: compress::GzipEngine,
) -> Result<Layer, LayerError> {
    let store_error = |source| LayerError::Store { source };
    let stream_error = |source| LayerError::WriteStream { source };
    let blob = store.writer().map_err(store_error)?;
    let threads = options.threads.max(1);
    let sde = options.source_date_epoch;
    let (finished, media_type) = match options.compression {
        Compression::Gzip { level } => {
            if !(1..=9).contains(&level) {
                return Err(LayerError::InvalidLevel {
                    compressor: "gzip",
                    level: level.into(),
                    range: "1-9",
                });
            }
            let mut encoder = compress::ParallelGzipEncoder::new(blob, level, threads, engine);
            tar_writer::write_tar(diff, sde, &mut encoder)?;
            (encoder.finish().map_err(stream_error)?, MEDIA_TYPE_GZIP)
        }
        Compression::Zstd { level } => {
            if !(1..=19).contains(&level) {
                return Err(LayerError::InvalidLevel {
                    compressor: "zstd",
                    level: level.into(),
                    range: "1-19",
                });
            }
            let mut encoder =
                compress::ZstdEncoder::new(blob, level, threads).map_err(stream_error)?;
            tar_writer::write_tar(diff, sde, &mut encoder)?;
            (encoder.finish().map_err(stream_error)?, MEDIA_TYPE_ZSTD)
        }
        Compression::None => {
            let mut encoder = compress::PlainEncoder::new(blob);
            tar_writer::write_tar(diff, sde, &mut encoder)?;
            (encoder.finish().map_err(stream_error)?, MEDIA_TYPE_TAR)
        }
    };
    let (digest, size) = finished.out.commit(None).map_err(store_error)?;
    Ok(Layer {
        diff_id: finished.uncompressed_digest,
        digest,
        size,
        media_type: media_type.to_owned(),
    })
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            compression: Compression::Gzip {
                level: DEFAULT_GZIP_LEVEL,
            },
            source_date_epoch: 0,
            threads: 1,
        }
    }
}

/// The default gzip level. libdeflate's level 5 is denser than GNU `gzip -6` and ~6% smaller
/// than `umoci insert`'s output on the benchmark's files, for ~15% less CPU than its level 6
/// (BENCHMARKS.md).
pub const DEFAULT_GZIP_LEVEL: u32 = 5;
/// The engine behind [`Compression::Gzip`]; fixed, because each engine gives different bytes.
///
/// libdeflate, so a gzip layer is a multi-member gzip stream (one member per 1 MiB block). On
/// the benchmark (BENCHMARKS.md) it needs ~25% less CPU than the single-member zlib-rs engine
/// at the same level and is ~3% smaller; single-member zlib-rs at level 6 misses the
/// "1.3x faster than `umoci insert`" target.
pub const GZIP_ENGINE: compress::GzipEngine = compress::GzipEngine::Libdeflate;
/// The default zstd level (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
