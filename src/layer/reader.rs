//! Safe tar reading: turns a layer blob or an ADDed archive into entries confined to their root.
//!
//! Bytes enter as any [`Read`] (a stored layer blob, a build-context file); [`open_decompressed`]
//! sniffs gzip / zstd / plain tar by magic bytes. [`read_entries`] walks the stream and hands
//! each entry to a callback as a [`TarEntry`] (normalized [`LayerPath`], [`TarKind`],
//! [`Metadata`] with PAX `SCHILY.xattr.*`) plus a reader over its content, so contents stream
//! and are never held in memory by this module. [`extract_to_diff`] is the ADD / `FROM scratch`
//! use: it copies regular-file contents into fresh files of a scratch directory and returns a
//! [`Diff`](crate::layer::Diff) placed below a destination.
//!
//! Safety rules, all enforced here and nowhere else: names go through [`LayerPath::new`] (a name
//! or hard-link target that climbs above the root with `..` is an error naming the entry and the
//! archive; a NUL byte is an error; an absolute name is made relative). PAX `path`/`linkpath`
//! and GNU long names are honored (the `tar` crate resolves them). Symlink targets are kept
//! verbatim: they may point anywhere, and only become dangerous when something is written
//! through them, which neither a `Diff` nor [`extract_to_diff`] ever does (host writes only go
//! to fresh, uniquely named files in the scratch directory).
//!
//! Whiteouts are not interpreted by the reader: a layer indexer asks [`whiteout_of`] about each
//! name. An ADDed archive's `.wh.*` names are plain files, as in Docker, whose ADD extraction
//! (`pkg/archive` `Unpack` without a whiteout converter) writes them as ordinary files.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::layer::{LayerPath, Metadata, PathError};

mod extract;

pub use extract::extract_to_diff;

/// The name AUFS / OCI use to mark a directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The stream could not be decompressed or parsed as tar.
    #[error("failed to read archive `{archive}`{}", entry_suffix(.entry))]
    Read {
        /// The caller-supplied display name of the archive.
        archive: String,
        /// The last entry read, if any.
        entry: Option<String>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry's name is unusable (escapes the root, contains NUL, not UTF-8).
    #[error("archive `{archive}` has an unsafe entry name `{entry}`")]
    UnsafeName {
        /// The archive.
        archive: String,
        /// The raw entry name, lossily decoded.
        entry: String,
        /// Why it is unsafe.
        #[source]
        source: NameError,
    },
    /// A hard link's target is unusable (escapes the root, contains NUL, missing).
    #[error("archive `{archive}`: hard link `{entry}` has an unsafe target `{target}`")]
    UnsafeLink {
        /// The archive.
        archive: String,
        /// The entry (the link itself).
        entry: String,
        /// The raw target, lossily decoded.
        target: String,
        /// Why it is unsafe.
        #[source]
        source: NameError,
    },
    /// The entry type is not one kiln can represent (e.g. a contiguous-file extension it does
    /// not know).
    #[error("archive `{archive}`: entry `{entry}` has unsupported tar type {type_byte:?}")]
    UnsupportedType {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// The tar type flag byte.
        type_byte: char,
    },
    /// A header field could not be parsed.
    #[error("archive `{archive}`: entry `{entry}` has a malformed {field}")]
    BadField {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// Which field.
        field: &'static str,
    },
    /// An entry sits below something the same archive made a non-directory (file, symlink).
    #[error("archive `{archive}`: entry `{entry}` lies below `{parent}`, which is not a directory")]
    ParentNotDir {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// A hard link points at something that is not an earlier regular file of the archive.
    #[error(
        "archive `{archive}`: hard link `{entry}` points at `{target}`, which is not an earlier regular file of the archive"
    )]
    DanglingLink {
        /// The archive.
        archive: String,
        /// The link.
        entry: String,
        /// Its (normalized) target.
        target: String,
    },
    /// Writing extracted content to the scratch directory failed.
    #[error("failed to extract `{entry}` of archive `{archive}` into `{}`", .scratch.display())]
    Scratch {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// The scratch file or directory.
        scratch: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn entry_suffix(entry: &Option<String>) -> String {
    match entry {
        Some(name) => format!(" at or after entry `{name}`"),
        None => String::new(),
    }
}

/// Why a name inside an archive is refused.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// `..` climbs above the root, or a NUL byte.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The name is not UTF-8.
    #[error("the name is not valid UTF-8")]
    NotUtf8,
    /// The name is the archive root itself where a file was expected.
    #[error("the name denotes the root directory")]
    Root,
}

/// What kind of object a tar entry describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarKind {
    /// A directory.
    Dir,
    /// A regular file; its content is the reader handed with the entry.
    File,
    /// A symbolic link, target verbatim.
    Symlink(String),
    /// A hard link to an earlier entry (normalized, inside the root).
    Hardlink(LayerPath),
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One entry of an archive, with its name already normalized and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarEntry {
    /// Normalized path inside the archive root (may be the root for `./`).
    pub path: LayerPath,
    /// What it is.
    pub kind: TarKind,
    /// Mode (`& 0o7777`), owner, mtime, xattrs.
    pub meta: Metadata,
    /// Content size in bytes (0 for everything but regular files).
    pub size: u64,
    /// The entry's position among the archive's member entries, counting from 0 (PAX and GNU
    /// long-name headers are not members; global PAX headers are skipped and not counted).
    pub ordinal: u64,
    /// Byte offset of the content in the uncompressed stream.
    pub offset: u64,
}

/// What [`whiteout_of`] finds in a layer entry's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whiteout {
    /// `dir/.wh.name`: delete `dir/name` in lower layers.
    Remove(LayerPath),
    /// `dir/.wh..wh..opq`: hide everything below `dir` in lower layers.
    Opaque(LayerPath),
}

/// Interprets `path` as an OCI / AUFS whiteout name, for layer blobs (not for ADDed archives).
/// Other `.wh..wh.*` names (AUFS metadata such as `.wh..wh.plnk`) return `None`; callers skip
/// them as [`is_aufs_meta`] says.
pub fn whiteout_of(path: &LayerPath) -> Option<Whiteout> {
    let name = path.file_name();
    let parent = path.parent()?;
    if name == OPAQUE_MARKER {
        return Some(Whiteout::Opaque(parent));
    }
    if name.starts_with(".wh..wh.") {
        return None;
    }
    let target = name.strip_prefix(WHITEOUT_PREFIX)?;
    if target.is_empty() || target == "." || target == ".." {
        return None;
    }
    parent.join(target).ok().map(Whiteout::Remove)
}

/// True for AUFS bookkeeping names (`.wh..wh.*` other than the opaque marker), which a layer
/// indexer ignores.
pub fn is_aufs_meta(path: &LayerPath) -> bool {
    let name = path.file_name();
    name.starts_with(".wh..wh.") && name != OPAQUE_MARKER
}

/// The compression of a stream, as sniffed from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// Anything else: read as plain tar.
    Plain,
}

/// Reads up to four bytes of `reader`, decides the compression, and returns a reader over the
/// decompressed bytes (the sniffed bytes are replayed). gzip streams may have several members.
pub fn open_decompressed<'a, R: Read + 'a>(
    mut reader: R,
) -> io::Result<(Sniffed, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let prefix = Cursor::new(magic[..got].to_vec());
    let whole = prefix.chain(reader);
    let sniffed = match &magic[..got] {
        [0x1f, 0x8b, ..] => Sniffed::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Sniffed::Zstd,
        _ => Sniffed::Plain,
    };
    let out: Box<dyn Read + 'a> = match sniffed {
        Sniffed::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Sniffed::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Sniffed::Plain => Box::new(whole),
    };
    Ok((sniffed, out))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn normalize(raw: &[u8]) -> Result<LayerPath, NameError> {
    let text = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    Ok(LayerPath::new(text)?)
}

/// A header number; an empty field (all NUL or spaces, as some writers leave uid/gid) is 0, as
/// GNU tar and Go's archive/tar read it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Option<u64> {
    match parsed {
        Ok(value) => Some(value),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Some(0),
        Err(_) => None,
    }
}

fn pax_number(value: &str) -> Option<i64> {
    // PAX times may carry a fraction (`1700000000.123`); keep whole seconds.
    let whole = value.split('.').next()?;
    whole.parse().ok()
}

/// Walks a tar stream (already decompressed: see [`open_decompressed`]) and calls `visit` for
/// every member with the checked [`TarEntry`] and a reader over its content (empty for
/// non-files). Content the callback does not read is skipped. `visit` returns
/// `ControlFlow::Break(())` to stop early. `archive_name` names the archive in errors.
///
/// The callback's error type only needs `From<ReaderError>`, so indexers can use their own.
pub fn read_entries<R, E, F>(archive: R, archive_name: &str, mut visit: F) -> Result<(), E>
where
    R: Read,
    E: From<ReaderError>,
    F: FnMut(TarEntry, &mut dyn Read) -> Result<ControlFlow<()>, E>,
{
    let read_err = |entry: Option<String>, source: io::Error| ReaderError::Read {
        archive: archive_name.to_owned(),
        entry,
        source,
    };
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|e| read_err(None, e))?;
    let mut last: Option<String> = None;
    let mut ordinal = 0u64;
    for item in entries {
        let mut entry = item.map_err(|e| read_err(last.clone(), e))?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = lossy(&raw_name);
        last = Some(shown.clone());
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let path = normalize(&raw_name).map_err(|source| ReaderError::UnsafeName {
            archive: archive_name.to_owned(),
            entry: shown.clone(),
            source,
        })?;
        let bad = |field: &'static str| ReaderError::BadField {
            archive: archive_name.to_owned(),
            entry: shown.clone(),
            field,
        };
        let header = entry.header();
        let link_name = || -> Result<Cow<'_, [u8]>, ReaderError> {
            entry.link_name_bytes().ok_or_else(|| bad("link name"))
        };
        let device = |header: &tar::Header| -> (u32, u32) {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            (major, minor)
        };
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                TarKind::File
            }
            tar::EntryType::Directory => TarKind::Dir,
            tar::EntryType::Symlink => {
                let target = link_name()?;
                let target = std::str::from_utf8(&target).map_err(|_| bad("symlink target"))?;
                if target.contains('\0') {
                    return Err(bad("symlink target (NUL byte)").into());
                }
                TarKind::Symlink(target.to_owned())
            }
            tar::EntryType::Link => {
                let raw_target = link_name()?;
                let target = normalize(&raw_target).map_err(|source| ReaderError::UnsafeLink {
                    archive: archive_name.to_owned(),
                    entry: shown.clone(),
                    target: lossy(&raw_target),
                    source,
                })?;
                if target.is_root() {
                    return Err(ReaderError::UnsafeLink {
                        archive: archive_name.to_owned(),
                        entry: shown.clone(),
                        target: lossy(&raw_target),
                        source: NameError::Root,
                    }
                    .into());
                }
                TarKind::Hardlink(target)
            }
            tar::EntryType::Char => {
                let (major, minor) = device(header);
                TarKind::CharDevice(major, minor)
            }
            tar::EntryType::Block => {
                let (major, minor) = device(header);
                TarKind::BlockDevice(major, minor)
            }
            tar::EntryType::Fifo => TarKind::Fifo,
            other => {
                return Err(ReaderError::UnsupportedType {
                    archive: archive_name.to_owned(),
                    entry: shown.clone(),
                    type_byte: char::from(other.as_byte()),
                }
                .into());
            }
        };
        let old = header.as_old();
        let mode = numeric(header.mode().map(u64::from), &old.mode).ok_or_else(|| bad("mode"))?;
        let mode = u32::try_from(mode & 0o7777).unwrap_or(0);
        let uid = numeric(header.uid(), &old.uid).ok_or_else(|| bad("uid"))?;
        let mut uid = u32::try_from(uid).map_err(|_| bad("uid"))?;
        let gid = numeric(header.gid(), &old.gid).ok_or_else(|| bad("gid"))?;
        let mut gid = u32::try_from(gid).map_err(|_| bad("gid"))?;
        let mtime = numeric(header.mtime(), &old.mtime).ok_or_else(|| bad("mtime"))?;
        let mut mtime = i64::try_from(mtime).map_err(|_| bad("mtime"))?;
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| read_err(last.clone(), e))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| read_err(last.clone(), e))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_owned(), ext.value_bytes().to_vec());
                    continue;
                }
                let value = ext.value().ok();
                match key {
                    "uid" => {
                        uid = value
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| bad("PAX uid"))?
                    }
                    "gid" => {
                        gid = value
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| bad("PAX gid"))?
                    }
                    "mtime" => {
                        mtime = value.and_then(pax_number).ok_or_else(|| bad("PAX mtime"))?
                    }
                    _ => {}
                }
            }
        }
        let size = if kind == TarKind::File {
            entry.size()
        } else {
            0
        };
        let tar_entry = TarEntry {
            path,
            kind,
            meta: Metadata {
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            },
            size,
            ordinal,
            offset: entry.raw_file_position(),
        };
        ordinal += 1;
        let flow = if tar_entry.kind == TarKind::File {
            visit(tar_entry, &mut entry)?
        } else {
            visit(tar_entry, &mut io::empty())?
        };
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

/// The keys strictly below `path` (not `path` itself), in order. Every path below `a` starts
/// with `a/` and sorts at or after `a/\u{1}` (NUL cannot occur), so this is one range scan.
pub(crate) fn keys_below<V>(map: &BTreeMap<LayerPath, V>, path: &LayerPath) -> Vec<LayerPath> {
    let Ok(start) = path.join("\u{1}") else {
        return Vec::new();
    };
    map.range(start..)
        .take_while(|(p, _)| p.starts_with(path))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Opens a file on the host and sniffs its compression; a convenience for callers that hold a
/// path (the store's blob path, a build-context archive).
pub fn open_file_decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = File::open(path)?;
    let (_, reader) = open_decompressed(io::BufReader::new(file))?;
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_table() {
        let p = |raw: &str| LayerPath::new(raw).ok();
        for (name, want) in [
            (
                "usr/.wh.lib",
                Some(Whiteout::Remove(LayerPath::new("usr/lib").unwrap())),
            ),
            (
                ".wh.top",
                Some(Whiteout::Remove(LayerPath::new("top").unwrap())),
            ),
            (
                "var/.wh..wh..opq",
                Some(Whiteout::Opaque(LayerPath::new("var").unwrap())),
            ),
            (".wh..wh..opq", Some(Whiteout::Opaque(LayerPath::root()))),
            ("a/.wh..wh.plnk", None),
            ("a/.wh.", None),
            ("a/x.wh.y", None),
            ("a/plain", None),
        ] {
            let path = p(name).unwrap();
            assert_eq!(whiteout_of(&path), want, "{name}");
        }
        assert!(is_aufs_meta(&LayerPath::new(".wh..wh.plnk").unwrap()));
        assert!(!is_aufs_meta(&LayerPath::new("a/.wh..wh..opq").unwrap()));
    }

    #[test]
    fn sniffing_short_and_empty_streams() {
        for (bytes, want) in [
            (&b""[..], Sniffed::Plain),
            (&b"\x1f"[..], Sniffed::Plain),
            (&b"\x28\xb5\x2f"[..], Sniffed::Plain),
            (&b"hello world"[..], Sniffed::Plain),
        ] {
            let (sniffed, mut reader) = open_decompressed(bytes).unwrap();
            assert_eq!(sniffed, want);
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert_eq!(back, bytes, "plain streams are replayed whole");
        }
        let mut count = 0;
        read_entries(&b""[..], "empty.tar", |_, _| {
            count += 1;
            Ok::<_, ReaderError>(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(count, 0);
    }
}
