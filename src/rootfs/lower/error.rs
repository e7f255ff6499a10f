//! [`RootfsError`]: why a layer could not be indexed or a file of it extracted.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::layer::reader::ReaderError;

/// Why a layer could not be indexed or a file extracted.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The blob could not be opened or its compression recognized.
    #[error("failed to open layer blob `{digest}` at `{}`", .path.display())]
    OpenBlob {
        /// The layer digest.
        digest: Digest,
        /// Where the blob was expected.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The blob's tar stream is unreadable or unsafe (the error names the layer and entry).
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// A hard link points at nothing.
    #[error("layer `{layer}`: hard link `{path}` points at `{target}`, which does not exist")]
    HardlinkTarget {
        /// The layer (digest, or `diff` for an in-memory Diff).
        layer: String,
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// The scratch directory could not be created or written.
    #[error("failed to write extracted files into scratch directory `{}`", .path.display())]
    Scratch {
        /// The scratch directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file indexed earlier was not found when the layer was read again.
    #[error(
        "layer `{layer}` no longer holds `{path}` (entry {ordinal}): the blob changed since it was indexed"
    )]
    MissingInLayer {
        /// The layer digest.
        layer: Digest,
        /// The path.
        path: String,
        /// The entry ordinal that was expected.
        ordinal: u64,
    },
    /// A path asked for is not a regular file of the view.
    #[error("`{0}` is not a regular file in the lower layers")]
    NotAFile(String),
}
