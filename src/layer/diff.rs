//! The `Diff` model: what one layer adds, changes or removes, before it becomes tar bytes.
//!
//! Every step (COPY, users, apk, pip, a sandboxed RUN) returns a [`Diff`]; only `layer::write`
//! turns one into a tarball. Paths are [`LayerPath`]s: relative, normalized, never `..`, so a
//! Diff can never describe a file outside the image root. Entries live in a `BTreeMap`, so their
//! order (and so the tar's order) is the bytewise order of their paths, whatever order a step
//! inserted them in; a parent directory always sorts before its children.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A normalized path inside an image root: no leading `/`, no `.` or `..` components, no empty
/// components, no trailing `/`. The root itself is the empty path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerPath(String);

/// Why a path cannot be used inside an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The path climbs above the root with `..`.
    #[error("path `{0}` escapes the root with `..`")]
    Escapes(String),
    /// The path contains a NUL byte.
    #[error("path `{0:?}` contains a NUL byte")]
    Nul(String),
}

impl LayerPath {
    /// The image root.
    pub fn root() -> LayerPath {
        LayerPath(String::new())
    }

    /// Normalizes an absolute or relative path as seen from the root: `/a/./b//c/` -> `a/b/c`.
    /// `..` is resolved lexically and may not climb above the root.
    pub fn new(raw: &str) -> Result<LayerPath, PathError> {
        if raw.contains('\0') {
            return Err(PathError::Nul(raw.to_owned()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for component in raw.split('/') {
            match component {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escapes(raw.to_owned()));
                    }
                }
                other => parts.push(other),
            }
        }
        Ok(LayerPath(parts.join("/")))
    }

    /// Like [`LayerPath::new`], but `..` above the root stays at the root, as the kernel does
    /// when resolving `/../x` (used where Docker clamps, e.g. COPY destinations).
    pub fn new_clamped(raw: &str) -> Result<LayerPath, PathError> {
        if raw.contains('\0') {
            return Err(PathError::Nul(raw.to_owned()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for component in raw.split('/') {
            match component {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        Ok(LayerPath(parts.join("/")))
    }

    /// The relative form (`etc/passwd`), empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The absolute form (`/etc/passwd`, `/` for the root).
    pub fn absolute(&self) -> String {
        format!("/{}", self.0)
    }

    /// True for the image root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self) -> Option<LayerPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(idx) => LayerPath(self.0[..idx].to_owned()),
            None => LayerPath::root(),
        })
    }

    /// The last component; empty for the root.
    pub fn file_name(&self) -> &str {
        match self.0.rfind('/') {
            Some(idx) => &self.0[idx + 1..],
            None => &self.0,
        }
    }

    /// `self/child`, where `child` is a single component or a relative path (normalized).
    pub fn join(&self, child: &str) -> Result<LayerPath, PathError> {
        LayerPath::new(&format!("{}/{}", self.0, child))
    }

    /// Every ancestor from the first component down to the parent (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> Vec<LayerPath> {
        let mut out = Vec::new();
        let mut current = self.parent();
        while let Some(path) = current {
            if path.is_root() {
                break;
            }
            current = path.parent();
            out.push(path);
        }
        out.reverse();
        out
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &LayerPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

/// What names a host file's state without reading it (BuildKit trusts the same fields): any
/// write changes the ctime, a replacement the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostStamp {
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub device: u64,
}

impl HostStamp {
    /// The stamp of a file from its metadata.
    pub fn of(meta: &std::fs::Metadata) -> HostStamp {
        use std::os::unix::fs::MetadataExt;
        HostStamp {
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// Where a regular file's bytes come from when the layer is written.
#[derive(Clone, PartialEq, Eq)]
pub enum FileContent {
    /// Bytes held in memory (generated files: /etc/passwd, RECORD, ...).
    Bytes(Arc<[u8]>),
    /// A file on the host (a build-context file, a file extracted to a scratch dir). `size` is
    /// the size seen when the Diff was made; the writer fails if the file changed since.
    HostFile {
        /// Absolute host path.
        path: PathBuf,
        /// Size in bytes when the Diff was made.
        size: u64,
        /// The file's stamp when the Diff was made, when the maker had it at hand (the step
        /// cache stats the file itself otherwise).
        stamp: Option<HostStamp>,
    },
}

impl FileContent {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            FileContent::Bytes(bytes) => bytes.len() as u64,
            FileContent::HostFile { size, .. } => *size,
        }
    }
}

impl fmt::Debug for FileContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileContent::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            FileContent::HostFile { path, size, .. } => {
                write!(f, "HostFile({}, {size} bytes)", path.display())
            }
        }
    }
}

/// What kind of filesystem object an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A directory that hides everything below it in lower layers (`.wh..wh..opq`).
    OpaqueDir,
    /// A regular file.
    File(FileContent),
    /// A symbolic link with its target, verbatim.
    Symlink(String),
    /// A hard link to another path of the same layer (written after its target).
    Hardlink(LayerPath),
    /// A deletion of a lower-layer path (`.wh.<name>`).
    Whiteout,
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// Ownership, permissions, time and extended attributes of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask); no file-type bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds since the epoch; the writer clamps it to SOURCE_DATE_EPOCH.
    pub mtime: i64,
    /// Extended attributes (e.g. `security.capability`), written as PAX `SCHILY.xattr.*`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Metadata {
    /// Root-owned with the given mode and time 0.
    pub fn root_owned(mode: u32) -> Metadata {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// One path's new state in a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Who owns it, its mode and time.
    pub meta: Metadata,
}

/// The changes one step makes to the filesystem, keyed by path in tar order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    entries: BTreeMap<LayerPath, Entry>,
}

impl Diff {
    /// An empty Diff.
    pub fn new() -> Diff {
        Diff::default()
    }

    /// Sets `path` to `entry`, replacing what the Diff said about it before. Replacing a
    /// directory with a non-directory drops everything the Diff held below it.
    pub fn insert(&mut self, path: LayerPath, entry: Entry) {
        let is_dir = matches!(entry.kind, EntryKind::Dir | EntryKind::OpaqueDir);
        if !is_dir {
            self.remove_below(&path);
        }
        self.entries.insert(path, entry);
    }

    /// Records a deletion of `path` (and drops anything the Diff held at or below it).
    pub fn whiteout(&mut self, path: LayerPath) {
        self.remove_below(&path);
        self.entries.insert(
            path,
            Entry {
                kind: EntryKind::Whiteout,
                meta: Metadata::root_owned(0),
            },
        );
    }

    fn remove_below(&mut self, path: &LayerPath) {
        // Every path below `a` starts with `a/`, and such keys are contiguous in bytewise order.
        let prefix = if path.is_root() {
            String::new()
        } else {
            format!("{}/", path.0)
        };
        let below: Vec<LayerPath> = self
            .entries
            .range(LayerPath(prefix.clone())..)
            .take_while(|(p, _)| p.0.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.entries.remove(&p);
        }
    }

    /// The entry at `path`, if the Diff has one.
    pub fn get(&self, path: &LayerPath) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Entries in tar order.
    pub fn iter(&self) -> impl Iterator<Item = (&LayerPath, &Entry)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the Diff changes nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every entry of `later` on top of `self`, as if `later` were applied after it.
    pub fn merge(&mut self, later: Diff) {
        for (path, entry) in later.entries {
            if matches!(entry.kind, EntryKind::Whiteout) {
                self.whiteout(path);
            } else {
                self.insert(path, entry);
            }
        }
    }

    /// Total bytes of regular-file content.
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                EntryKind::File(content) => content.size(),
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_normalize_and_refuse_escapes() {
        for (raw, want) in [
            ("/", ""),
            ("", ""),
            ("/etc/passwd", "etc/passwd"),
            ("etc//./passwd/", "etc/passwd"),
            ("/a/b/../c", "a/c"),
        ] {
            assert_eq!(LayerPath::new(raw).unwrap().as_str(), want, "{raw}");
        }
        assert!(matches!(LayerPath::new("../x"), Err(PathError::Escapes(_))));
        assert!(matches!(
            LayerPath::new("/a/../../x"),
            Err(PathError::Escapes(_))
        ));
        assert_eq!(LayerPath::new_clamped("/../x").unwrap().as_str(), "x");
    }

    #[test]
    fn ancestors_and_prefixes() {
        let path = LayerPath::new("a/b/c").unwrap();
        let names: Vec<String> = path.ancestors().iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["/a", "/a/b"]);
        assert!(path.starts_with(&LayerPath::new("a/b").unwrap()));
        assert!(!path.starts_with(&LayerPath::new("a/bc").unwrap()));
        assert!(path.starts_with(&LayerPath::root()));
        assert_eq!(path.file_name(), "c");
    }

    #[test]
    fn replacing_a_dir_with_a_file_drops_its_children() {
        let mut diff = Diff::new();
        let dir = LayerPath::new("a").unwrap();
        diff.insert(
            dir.clone(),
            Entry {
                kind: EntryKind::Dir,
                meta: Metadata::root_owned(0o755),
            },
        );
        for child in ["a/x", "a/y/z", "a.b", "ab"] {
            diff.insert(
                LayerPath::new(child).unwrap(),
                Entry {
                    kind: EntryKind::Dir,
                    meta: Metadata::root_owned(0o755),
                },
            );
        }
        diff.whiteout(dir);
        let left: Vec<String> = diff.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(left, ["/a", "/a.b", "/ab"]);
    }
}
