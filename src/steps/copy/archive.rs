//! ADD's local archives: detection by content, `--checksum` verification, and extraction into a
//! Diff confined below the destination.
//!
//! [`sniff`] reads a file's first bytes: gzip, bzip2, xz and zstd magic, then (for gzip, zstd
//! and plain data) the `ustar` magic of the first tar header, so a `.gz` that is not a tarball
//! is copied as a plain file, as Docker does. [`extract`] is a stand-in for
//! `crate::layer::reader::extract_to_diff` (written elsewhere): it refuses entries that climb
//! out of the destination with `..` and hard links that point outside the archive, and writes
//! file contents to the scratch directory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};

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
    /// Reading or decompressing the archive failed.
    #[error("failed to read archive `{archive}`")]
    Read {
        /// The archive as named in the Dockerfile.
        archive: String,
        /// The cause.
        #[source]
        cause: io::Error,
    },
    /// An entry climbs out of the destination.
    #[error("archive `{archive}` entry `{entry}` escapes the destination with `..`")]
    Escapes {
        /// The archive.
        archive: String,
        /// The entry's path as stored.
        entry: String,
    },
    /// A hard link points outside the archive's tree.
    #[error(
        "archive `{archive}` entry `{entry}` is a hard link to `{target}`, outside the archive"
    )]
    LinkEscapes {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// The link target as stored.
        target: String,
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

/// Extracts the archive at `path` below `dest`. The adapter to the shared tar reader lives
/// here, so swapping in `layer::reader::extract_to_diff` touches one function.
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
    let file = File::open(path).map_err(read_err)?;
    let reader = decompressed(file, compression, display_name)?;
    extract_to_diff(reader, display_name, scratch_dir, dest)
}

/// Stand-in for `crate::layer::reader::extract_to_diff`.
fn extract_to_diff(
    archive: impl Read,
    display_name: &str,
    scratch_dir: &Path,
    dest: &LayerPath,
) -> Result<Diff, ArchiveError> {
    let read_err = |cause| ArchiveError::Read {
        archive: display_name.to_owned(),
        cause,
    };
    let mut tar = tar::Archive::new(archive);
    let mut diff = Diff::new();
    let mut count = 0usize;
    for item in tar.entries().map_err(read_err)? {
        let mut item = item.map_err(read_err)?;
        let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
        let escapes = || ArchiveError::Escapes {
            archive: display_name.to_owned(),
            entry: raw.clone(),
        };
        let rel = LayerPath::new(&raw).map_err(|_| escapes())?;
        if rel.is_root() {
            continue;
        }
        let path = dest.join(rel.as_str()).map_err(|_| escapes())?;
        let header = item.header();
        let meta = Metadata {
            mode: header.mode().map_err(read_err)? & 0o7777,
            uid: u32::try_from(header.uid().map_err(read_err)?).unwrap_or(0),
            gid: u32::try_from(header.gid().map_err(read_err)?).unwrap_or(0),
            mtime: i64::try_from(header.mtime().map_err(read_err)?).unwrap_or(0),
            xattrs: Default::default(),
        };
        let entry_type = header.entry_type();
        let link_name = || -> Result<String, ArchiveError> {
            let bytes = item.link_name_bytes().ok_or_else(|| ArchiveError::Read {
                archive: display_name.to_owned(),
                cause: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("link `{raw}` has no target"),
                ),
            })?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let kind = match entry_type {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink(link_name()?),
            tar::EntryType::Link => {
                let target = link_name()?;
                let inside = LayerPath::new(&target)
                    .ok()
                    .filter(|t| !t.is_root())
                    .and_then(|t| dest.join(t.as_str()).ok())
                    .ok_or_else(|| ArchiveError::LinkEscapes {
                        archive: display_name.to_owned(),
                        entry: raw.clone(),
                        target: target.clone(),
                    })?;
                EntryKind::Hardlink(inside)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().map_err(read_err)?.unwrap_or(0);
                let minor = header.device_minor().map_err(read_err)?.unwrap_or(0);
                if entry_type == tar::EntryType::Char {
                    EntryKind::CharDevice(major, minor)
                } else {
                    EntryKind::BlockDevice(major, minor)
                }
            }
            tar::EntryType::Fifo => EntryKind::Fifo,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                count += 1;
                let host: PathBuf = scratch_dir.join(format!("add-{count:06}"));
                let mut out = File::create(&host).map_err(read_err)?;
                let size = io::copy(&mut item, &mut out).map_err(read_err)?;
                EntryKind::File(FileContent::HostFile { path: host, size })
            }
            _ => continue,
        };
        diff.insert(path, Entry { kind, meta });
    }
    Ok(diff)
}
