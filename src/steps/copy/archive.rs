//! ADD's local archives: detection by content, `--checksum` verification, and extraction into a
//! Diff confined below the destination.
//!
//! [`sniff`] reads a file's first bytes: gzip, bzip2, xz and zstd magic, then (for gzip, zstd
//! and plain data) the `ustar` magic of the first tar header, so a `.gz` that is not a tarball
//! is copied as a plain file, as Docker does. [`extract`] hands the archive to
//! [`crate::layer::reader::extract_to_diff`], which refuses entries that climb out of the
//! destination and writes file contents to the scratch directory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::digest::{Digest, Hasher};
use crate::layer::{Diff, LayerPath};

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

/// Why an ADDed archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The tar reader refused or failed on an entry (the message names archive and entry).
    #[error(transparent)]
    Extract(#[from] crate::layer::reader::ReaderError),
    /// Reading or decompressing the archive failed.
    #[error("failed to read archive `{archive}`")]
    Read {
        /// The archive as named in the Dockerfile.
        archive: String,
        /// The cause.
        #[source]
        cause: io::Error,
    },
    /// The compression is recognized but not supported yet.
    #[error(
        "archive `{archive}` is {compression}-compressed, which ADD does not support yet: decompress it or use gzip or zstd"
    )]
    Unsupported {
        /// The archive.
        archive: String,
        /// The compression's name.
        compression: &'static str,
    },
}

/// The compression of a tar archive at `path`, or `None` when the file is not a tar archive.
pub fn sniff(path: &Path) -> io::Result<Option<Compression>> {
    let mut head = Vec::new();
    File::open(path)?.take(8).read_to_end(&mut head)?;
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        return Ok(Some(Compression::Bzip2));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Ok(Some(Compression::Xz));
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let mut block = Vec::new();
    match decompressed(File::open(path)?, compression, "") {
        Ok(reader) => {
            if reader.take(512).read_to_end(&mut block).is_err() {
                return Ok(None);
            }
        }
        Err(_) => return Ok(None),
    }
    let is_tar = block.len() == 512 && block.get(257..262) == Some(&b"ustar"[..]);
    Ok(is_tar.then_some(compression))
}

fn decompressed<'a>(
    file: File,
    compression: Compression,
    archive: &str,
) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let reader = BufReader::new(file);
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(
            |cause| ArchiveError::Read {
                archive: archive.to_owned(),
                cause,
            },
        )?),
        Compression::Bzip2 => {
            return Err(ArchiveError::Unsupported {
                archive: archive.to_owned(),
                compression: "bzip2",
            });
        }
        Compression::Xz => {
            return Err(ArchiveError::Unsupported {
                archive: archive.to_owned(),
                compression: "xz",
            });
        }
    })
}

/// The sha256 digest of the file at `path`.
pub fn file_digest(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finish().0)
}

/// Extracts the archive at `path` below `dest` through the shared safe tar reader.
pub fn extract(
    path: &Path,
    compression: Compression,
    display_name: &str,
    scratch_dir: &Path,
    dest: &LayerPath,
) -> Result<Diff, ArchiveError> {
    let read_err = |cause| ArchiveError::Read {
        archive: display_name.to_owned(),
        cause,
    };
    if let Compression::Bzip2 | Compression::Xz = compression {
        // Fails with the "not supported" error naming the archive.
        decompressed(
            File::open(path).map_err(read_err)?,
            compression,
            display_name,
        )?;
    }
    let file = BufReader::new(File::open(path).map_err(read_err)?);
    Ok(crate::layer::reader::extract_to_diff(
        file,
        display_name,
        scratch_dir,
        dest,
    )?)
}
