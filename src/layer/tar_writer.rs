//! The deterministic tar writer: turns a [`Diff`] into the bytes of an OCI layer tarball.
//!
//! Entries come out in the Diff's order (bytewise by path, parents before children) and every
//! 512-byte header is built here by hand, so the same Diff always gives the same bytes on every
//! machine:
//!
//! * uid/gid from [`Metadata`], empty uname/gname, mode = permission bits incl.
//!   setuid/setgid/sticky (`0o7777`), mtime = `min(mtime, SOURCE_DATE_EPOCH)` and never
//!   negative;
//! * ustar headers (names split into prefix + name as Go's archive/tar does), and PAX `x`
//!   records (never GNU `L`/`K`) for what ustar cannot hold: non-ASCII or long paths and link
//!   targets, ids, sizes or times too large for the octal fields, and `SCHILY.xattr.<name>`
//!   for extended attributes; PAX keys are sorted;
//! * directories end in `/`; [`EntryKind::Hardlink`] is type `1` naming its target;
//!   [`EntryKind::Whiteout`] at `dir/name` is the empty file `dir/.wh.name` (mode 0, root-owned);
//!   [`EntryKind::OpaqueDir`] is the directory followed right away by `dir/.wh..wh..opq`;
//! * the image root itself gets no entry (an opaque root still gets its `.wh..wh..opq`);
//! * the archive ends with two zero blocks.
//!
//! Host-file content is streamed in fixed-size chunks; a file whose size changed since the Diff
//! was made is an error naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};

use super::LayerError;
use super::diff::{Diff, EntryKind, FileContent, LayerPath, Metadata};

const BLOCK: usize = 512;
/// Read size for host files.
const READ_CHUNK: usize = 256 * 1024;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (7 digits + NUL).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits + NUL).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// Name prefix of a whiteout file.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the marker that makes a directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Writes `diff` as a complete tar archive to `out` and returns the number of bytes written.
/// `source_date_epoch` is the upper bound for every entry's mtime.
pub fn write_tar<W: Write>(
    diff: &Diff,
    source_date_epoch: i64,
    out: &mut W,
) -> Result<u64, LayerError> {
    let mut writer = TarWriter {
        out: CountingWriter {
            inner: out,
            count: 0,
        },
        source_date_epoch,
        read_buffer: Vec::new(),
    };
    for (path, entry) in diff.iter() {
        writer.write_entry(diff, path, &entry.kind, &entry.meta)?;
    }
    writer.write_raw(&[0u8; 2 * BLOCK])?;
    Ok(writer.out.count)
}

struct CountingWriter<'a, W> {
    inner: &'a mut W,
    count: u64,
}

struct TarWriter<'a, W> {
    out: CountingWriter<'a, W>,
    source_date_epoch: i64,
    read_buffer: Vec<u8>,
}

/// The fields of one header, before encoding.
struct Header<'a> {
    name: String,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    linkname: &'a str,
    device: (u32, u32),
    xattrs: Option<&'a BTreeMap<String, Vec<u8>>>,
}

impl<'a> Header<'a> {
    fn new(name: String, typeflag: u8, meta: &'a Metadata, mtime: i64) -> Header<'a> {
        Header {
            name,
            typeflag,
            mode: meta.mode & 0o7777,
            uid: meta.uid.into(),
            gid: meta.gid.into(),
            size: 0,
            mtime,
            linkname: "",
            device: (0, 0),
            xattrs: Some(&meta.xattrs),
        }
    }

    /// An empty, root-owned, mode-0 regular file (whiteouts and the opaque marker).
    fn marker(name: String, mtime: i64) -> Header<'static> {
        Header {
            name,
            typeflag: b'0',
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime,
            linkname: "",
            device: (0, 0),
            xattrs: None,
        }
    }
}

impl<W: Write> TarWriter<'_, W> {
    fn clamp_mtime(&self, mtime: i64) -> i64 {
        mtime.min(self.source_date_epoch).max(0)
    }

    fn write_entry(
        &mut self,
        diff: &Diff,
        path: &LayerPath,
        kind: &EntryKind,
        meta: &Metadata,
    ) -> Result<(), LayerError> {
        let mtime = self.clamp_mtime(meta.mtime);
        let name = path.as_str().to_owned();
        match kind {
            EntryKind::Dir | EntryKind::OpaqueDir => {
                if !path.is_root() {
                    self.write_header(&Header::new(format!("{name}/"), b'5', meta, mtime))?;
                }
                if matches!(kind, EntryKind::OpaqueDir) {
                    let marker = if path.is_root() {
                        OPAQUE_MARKER.to_owned()
                    } else {
                        format!("{name}/{OPAQUE_MARKER}")
                    };
                    self.write_header(&Header::marker(marker, mtime))?;
                }
            }
            EntryKind::File(content) => {
                let mut header = Header::new(name, b'0', meta, mtime);
                header.size = content.size();
                self.write_header(&header)?;
                self.write_content(path, content)?;
            }
            EntryKind::Symlink(target) => {
                let mut header = Header::new(name, b'2', meta, mtime);
                header.linkname = target;
                self.write_header(&header)?;
            }
            EntryKind::Hardlink(target) => {
                // The target must already be in the archive if it is part of this layer; a target
                // that is not in the Diff lives in a lower layer.
                if diff.get(target).is_some() && target >= path {
                    return Err(LayerError::HardlinkBeforeTarget {
                        link: path.clone(),
                        target: target.clone(),
                    });
                }
                let mut header = Header::new(name, b'1', meta, mtime);
                header.linkname = target.as_str();
                self.write_header(&header)?;
            }
            EntryKind::Whiteout => {
                if path.is_root() {
                    return Ok(());
                }
                let whiteout = match path.parent() {
                    Some(parent) if !parent.is_root() => {
                        format!("{}/{WHITEOUT_PREFIX}{}", parent.as_str(), path.file_name())
                    }
                    _ => format!("{WHITEOUT_PREFIX}{}", path.file_name()),
                };
                self.write_header(&Header::marker(whiteout, mtime))?;
            }
            EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) => {
                let typeflag = if matches!(kind, EntryKind::CharDevice(..)) {
                    b'3'
                } else {
                    b'4'
                };
                if u64::from(*major) > MAX_OCTAL_8 || u64::from(*minor) > MAX_OCTAL_8 {
                    return Err(LayerError::DeviceNumberTooLarge {
                        path: path.clone(),
                        major: *major,
                        minor: *minor,
                    });
                }
                let mut header = Header::new(name, typeflag, meta, mtime);
                header.device = (*major, *minor);
                self.write_header(&header)?;
            }
            EntryKind::Fifo => {
                self.write_header(&Header::new(name, b'6', meta, mtime))?;
            }
        }
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.out
            .inner
            .write_all(bytes)
            .map_err(|source| LayerError::WriteStream { source })?;
        self.out.count += bytes.len() as u64;
        Ok(())
    }

    fn pad_to_block(&mut self, len: u64) -> Result<(), LayerError> {
        let rest = (len % BLOCK as u64) as usize;
        if rest != 0 {
            self.write_raw(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn write_content(&mut self, path: &LayerPath, content: &FileContent) -> Result<(), LayerError> {
        match content {
            FileContent::Bytes(bytes) => {
                self.write_raw(bytes)?;
                self.pad_to_block(bytes.len() as u64)
            }
            FileContent::HostFile {
                path: host,
                size: expected,
                ..
            } => {
                let read_error = |source| LayerError::ReadHostFile {
                    entry: path.clone(),
                    path: host.clone(),
                    source,
                };
                let changed = |actual| LayerError::HostFileChanged {
                    entry: path.clone(),
                    path: host.clone(),
                    expected: *expected,
                    actual,
                };
                let mut file = File::open(host).map_err(read_error)?;
                let actual = file.metadata().map_err(read_error)?.len();
                if actual != *expected {
                    return Err(changed(actual));
                }
                if self.read_buffer.is_empty() {
                    self.read_buffer = vec![0u8; READ_CHUNK];
                }
                let mut buffer = std::mem::take(&mut self.read_buffer);
                let mut copied = 0u64;
                let result = loop {
                    let want = (expected - copied).min(READ_CHUNK as u64) as usize;
                    // Read one byte past the end to detect a file that grew.
                    let want = if want == 0 { 1 } else { want };
                    let read = match file.read(&mut buffer[..want]) {
                        Ok(read) => read,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => break Err(read_error(e)),
                    };
                    if copied == *expected {
                        break if read == 0 {
                            Ok(())
                        } else {
                            Err(changed(copied + read as u64))
                        };
                    }
                    if read == 0 {
                        break Err(changed(copied));
                    }
                    if let Err(e) = self.write_raw(&buffer[..read]) {
                        break Err(e);
                    }
                    copied += read as u64;
                };
                self.read_buffer = buffer;
                result?;
                self.pad_to_block(*expected)
            }
        }
    }

    fn write_header(&mut self, header: &Header<'_>) -> Result<(), LayerError> {
        let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut block = [0u8; BLOCK];

        match split_ustar_name(&header.name) {
            Some((prefix, name)) => {
                block[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
                block[..name.len()].copy_from_slice(name.as_bytes());
            }
            None => {
                pax.insert("path".into(), header.name.as_bytes().to_vec());
                put_truncated(&mut block[..NAME_LEN], header.name.as_bytes());
            }
        }
        if header.linkname.len() <= NAME_LEN && header.linkname.is_ascii() {
            block[157..157 + header.linkname.len()].copy_from_slice(header.linkname.as_bytes());
        } else {
            pax.insert("linkpath".into(), header.linkname.as_bytes().to_vec());
            put_truncated(&mut block[157..157 + NAME_LEN], header.linkname.as_bytes());
        }
        put_octal(&mut block[100..108], header.mode.into());
        put_number(&mut block[108..116], header.uid, "uid", &mut pax);
        put_number(&mut block[116..124], header.gid, "gid", &mut pax);
        put_number(&mut block[124..136], header.size, "size", &mut pax);
        // Clamped mtimes are never negative.
        put_number(&mut block[136..148], header.mtime as u64, "mtime", &mut pax);
        block[156] = header.typeflag;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        if matches!(header.typeflag, b'3' | b'4') {
            put_octal(&mut block[329..337], header.device.0.into());
            put_octal(&mut block[337..345], header.device.1.into());
        }
        if let Some(xattrs) = header.xattrs {
            for (name, value) in xattrs {
                pax.insert(format!("SCHILY.xattr.{name}"), value.clone());
            }
        }
        finish_checksum(&mut block);

        if !pax.is_empty() {
            self.write_pax(&header.name, &pax)?;
        }
        self.write_raw(&block)
    }

    /// Writes a PAX extended header (`x`) that applies to the next entry.
    fn write_pax(
        &mut self,
        entry_name: &str,
        records: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), LayerError> {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend_from_slice(&pax_record(key, value));
        }
        // Name it as Go's archive/tar does: `<dir>/PaxHeaders.0/<base>`, truncated.
        let trimmed = entry_name.trim_end_matches('/');
        let (dir, base) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..i + 1], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        let pax_name = format!("{dir}PaxHeaders.0/{base}");
        let mut block = [0u8; BLOCK];
        put_truncated(&mut block[..NAME_LEN], pax_name.as_bytes());
        put_octal(&mut block[100..108], 0o644);
        put_octal(&mut block[108..116], 0);
        put_octal(&mut block[116..124], 0);
        put_octal(&mut block[124..136], data.len() as u64);
        put_octal(&mut block[136..148], 0);
        block[156] = b'x';
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        finish_checksum(&mut block);
        self.write_raw(&block)?;
        self.write_raw(&data)?;
        self.pad_to_block(data.len() as u64)
    }
}

/// Splits a path into ustar's (prefix, name) as Go's archive/tar does; `None` when it needs a
/// PAX `path` record (non-ASCII, or no split fits).
fn split_ustar_name(path: &str) -> Option<(&str, &str)> {
    if !path.is_ascii() {
        return None;
    }
    if path.len() <= NAME_LEN {
        return Some(("", path));
    }
    let mut length = path.len();
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if path.as_bytes()[length - 1] == b'/' {
        length -= 1;
    }
    let split = path[..length].rfind('/')?;
    let name_len = path.len() - split - 1;
    if split == 0 || name_len > NAME_LEN || name_len == 0 || split > PREFIX_LEN {
        return None;
    }
    Some((&path[..split], &path[split + 1..]))
}

fn put_truncated(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}

/// Zero-padded octal digits filling all but the last byte, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let mut rest = value;
    for slot in field[..digits].iter_mut().rev() {
        *slot = b'0' + (rest & 7) as u8;
        rest >>= 3;
    }
    field[digits] = 0;
}

/// An octal field, or 0 plus a PAX record when the value does not fit.
fn put_number(field: &mut [u8], value: u64, key: &str, pax: &mut BTreeMap<String, Vec<u8>>) {
    let max = if field.len() == 8 {
        MAX_OCTAL_8
    } else {
        MAX_OCTAL_12
    };
    if value <= max {
        put_octal(field, value);
    } else {
        put_octal(field, 0);
        pax.insert(key.to_owned(), value.to_string().into_bytes());
    }
}

fn finish_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    put_octal(&mut block[148..155], sum.into());
    block[155] = b' ';
}

/// One `"<len> <key>=<value>\n"` record; `<len>` counts the whole record including itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (key, value, want) in [
            ("path", "a", "9 path=a\n"),
            ("uid", "100000000000", "20 uid=100000000000\n"),
        ] {
            assert_eq!(pax_record(key, value.as_bytes()), want.as_bytes());
        }
        let long = "x".repeat(95);
        let record = pax_record("path", long.as_bytes());
        assert_eq!(record.len().to_string(), "105");
        assert!(record.starts_with(b"105 path="));
    }

    #[test]
    fn ustar_name_split_follows_go() {
        let long_dir = "d".repeat(120);
        let path = format!("{long_dir}/file");
        assert_eq!(split_ustar_name(&path), Some((long_dir.as_str(), "file")));
        assert_eq!(split_ustar_name("short"), Some(("", "short")));
        assert_eq!(split_ustar_name(&"x".repeat(101)), None);
        assert_eq!(split_ustar_name("é"), None);
    }
}
