//! The snapshot: what a command changed in its rootfs, as the same [`Diff`] native steps make.
//!
//! Each path is compared with what it was ([`Before`]): kind, mode, owner, symlink target, and
//! for regular files size and mtime. Only a file whose size and mtime are unchanged but which
//! was touched anyway (another inode, or a ctime after the command started) has its content
//! hashed against the original. Directory times are ignored, as in Docker's and buildah's
//! diffs (a directory changes its mtime whenever an entry is added or removed). Paths that
//! vanished become whiteouts; the parents of every change are included with their metadata;
//! files of one hard-link group become one file and hard links to it.
//!
//! Of the extended attributes on disk only `security.capability` is read back, as Docker does
//! (`RUN setcap ...`); the rootfs has the image's capabilities on disk too, so the disk's word
//! is final (`setcap -r`, and a chown that clears them, count). The kernel stores a capability
//! set inside a user namespace as revision 3 naming the namespace's root on the host: for the
//! sandbox's root it enters the layer as revision 2, for another id as revision 3 naming that
//! id as the sandbox sees it. Other attributes are the image's while the file still looks like
//! its original (same kind, size and mtime), as after a chmod; a rewritten or replaced file
//! loses them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::idmap::IdMaps;
use super::materialize::{Before, Original, remap_capability_root, settable_capability};
use super::{CAPABILITY_XATTR, SandboxError};
use crate::digest::Hasher;
use crate::layer::{Diff, Entry, EntryKind, FileContent, HostStamp, LayerPath, Metadata};
use crate::rootfs::NodeKind;

/// What the snapshot needs besides the rootfs.
pub struct SnapshotInput<'a> {
    /// The rootfs directory.
    pub root: &'a Path,
    /// Every path before the command ran.
    pub before: &'a BTreeMap<LayerPath, Before>,
    /// Paths the sandbox created (mount points) and which are not part of the image.
    pub ignored: &'a BTreeSet<LayerPath>,
    /// The id maps the command ran with.
    pub maps: &'a IdMaps,
    /// When the command started: a ctime at or after it means the command touched the inode.
    pub started: (i64, i64),
}

/// The Diff between `input.before` and the rootfs now, and the rootfs now as the next command
/// run in the same directory sees it before it starts.
pub fn snapshot(
    input: &SnapshotInput<'_>,
) -> Result<(Diff, BTreeMap<LayerPath, Before>), SandboxError> {
    let now = walk(input.root)?;
    let mut diff = Diff::new();
    let mut changed: Vec<LayerPath> = Vec::new();
    let mut links: HashMap<(u64, u64), LayerPath> = HashMap::new();
    for (path, meta) in &now {
        if input.ignored.contains(path) {
            continue;
        }
        let before = input.before.get(path);
        let Some(entry) = entry_of(input, path, meta, before)? else {
            continue;
        };
        let is_changed = match before {
            None => true,
            Some(before) => differs(input, path, meta, &entry, before)?,
        };
        if !is_changed {
            continue;
        }
        diff.insert(path.clone(), linked(&mut links, path, meta, entry));
        changed.push(path.clone());
    }

    let mut removed_below: Option<LayerPath> = None;
    for (path, before) in input.before {
        if !before.present || now.contains_key(path) {
            continue;
        }
        if removed_below
            .as_ref()
            .is_some_and(|top| path.starts_with(top))
        {
            continue;
        }
        // A parent that is no longer a directory replaced the whole subtree already.
        if path.parent().is_some_and(|parent| {
            !parent.is_root() && !now.get(&parent).is_some_and(|m| m.is_dir())
        }) {
            continue;
        }
        diff.whiteout(path.clone());
        changed.push(path.clone());
        removed_below = Some(path.clone());
    }

    for path in &changed {
        for ancestor in path.ancestors() {
            if diff.get(&ancestor).is_some() {
                continue;
            }
            if let Some(meta) = now.get(&ancestor) {
                let before = input.before.get(&ancestor);
                if let Some(entry) = entry_of(input, &ancestor, meta, before)? {
                    diff.insert(ancestor, entry);
                }
            }
        }
    }
    let next = next_before(input, &now, &diff)?;
    Ok((diff, next))
}

/// `entry`, or a hard link to the first path of its inode seen in `links` (files of one
/// hard-link group become one file and hard links to it).
fn linked(
    links: &mut HashMap<(u64, u64), LayerPath>,
    path: &LayerPath,
    meta: &std::fs::Metadata,
    entry: Entry,
) -> Entry {
    if !matches!(entry.kind, EntryKind::File(_)) || meta.nlink() < 2 {
        return entry;
    }
    match links.get(&(meta.dev(), meta.ino())) {
        Some(first) => Entry {
            kind: EntryKind::Hardlink(first.clone()),
            meta: entry.meta,
        },
        None => {
            links.insert((meta.dev(), meta.ino()), path.clone());
            entry
        }
    }
}

/// Every path below `root` with its metadata.
fn walk(root: &Path) -> Result<BTreeMap<LayerPath, std::fs::Metadata>, SandboxError> {
    let mut now = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| SandboxError::Io {
            action: "walk",
            path: root.to_owned(),
            source: e.into(),
        })?;
        let relative = item
            .path()
            .strip_prefix(root)
            .expect("walkdir stays below its root");
        let Some(text) = relative.to_str() else {
            return Err(SandboxError::Io {
                action: "read",
                path: item.path().to_owned(),
                source: std::io::Error::other("the command created a path that is not UTF-8"),
            });
        };
        let path = LayerPath::new(text).map_err(|e| SandboxError::Io {
            action: "read",
            path: item.path().to_owned(),
            source: std::io::Error::other(e),
        })?;
        let meta = item.metadata().map_err(|e| SandboxError::Io {
            action: "stat",
            path: item.path().to_owned(),
            source: e.into(),
        })?;
        now.insert(path, meta);
    }
    Ok(now)
}

/// What every path is after the command: the Diff's entry where it changed, what it was
/// otherwise. A file the command wrote has no separate original any more (its content is the
/// file itself), so a later content check treats it as changed.
fn next_before(
    input: &SnapshotInput<'_>,
    now: &BTreeMap<LayerPath, std::fs::Metadata>,
    diff: &Diff,
) -> Result<BTreeMap<LayerPath, Before>, SandboxError> {
    let mut next = BTreeMap::new();
    for (path, meta) in now {
        if input.ignored.contains(path) {
            continue;
        }
        let was = input.before.get(path);
        let (kind, image_meta, content) = match (diff.get(path), was) {
            (Some(entry), _) => {
                let kind = match &entry.kind {
                    EntryKind::Dir | EntryKind::OpaqueDir => NodeKind::Dir,
                    EntryKind::File(_) | EntryKind::Hardlink(_) => {
                        NodeKind::File { size: meta.len() }
                    }
                    EntryKind::Symlink(target) => NodeKind::Symlink(target.clone()),
                    EntryKind::Fifo => NodeKind::Fifo,
                    EntryKind::CharDevice(major, minor) => NodeKind::CharDevice(*major, *minor),
                    EntryKind::BlockDevice(major, minor) => NodeKind::BlockDevice(*major, *minor),
                    EntryKind::Whiteout => continue,
                };
                let content = if matches!(kind, NodeKind::File { .. }) {
                    Original::Unknown
                } else {
                    Original::None
                };
                (kind, entry.meta.clone(), content)
            }
            (None, Some(was)) => (was.kind.clone(), was.meta.clone(), was.content.clone()),
            (None, None) => continue,
        };
        next.insert(
            path.clone(),
            Before {
                kind,
                meta: image_meta,
                shown_uid: input.maps.uid_inside(meta.uid()),
                shown_gid: input.maps.gid_inside(meta.gid()),
                inode: meta.ino(),
                size: meta.len(),
                mtime: meta.mtime(),
                mtime_nsec: meta.mtime_nsec(),
                content,
                present: true,
            },
        );
    }
    // Device nodes of the image were never on disk; they stay unless the command replaced or
    // removed them.
    for (path, was) in input.before {
        if !was.present
            && !now.contains_key(path)
            && !diff.iter().any(|(changed, entry)| {
                matches!(entry.kind, EntryKind::Whiteout) && path.starts_with(changed)
            })
        {
            next.insert(path.clone(), was.clone());
        }
    }
    Ok(next)
}

/// The entry a path on disk stands for (`None` for sockets, which a layer cannot hold).
fn entry_of(
    input: &SnapshotInput<'_>,
    path: &LayerPath,
    meta: &std::fs::Metadata,
    before: Option<&Before>,
) -> Result<Option<Entry>, SandboxError> {
    let keep = before.is_some_and(|b| same_original(meta, b));
    entry_at(input.root, input.maps, path, meta, before, keep)
}

/// The entry `root/path` stands for; `keep_xattrs`: the image's attributes of `before` apply.
fn entry_at(
    root: &Path,
    maps: &IdMaps,
    path: &LayerPath,
    meta: &std::fs::Metadata,
    before: Option<&Before>,
    keep_xattrs: bool,
) -> Result<Option<Entry>, SandboxError> {
    let host = root.join(path.as_str());
    let file_type = meta.file_type();
    let mut capability = None;
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        capability = file_capability(&host, maps)?;
        EntryKind::File(FileContent::HostFile {
            path: host,
            size: meta.len(),
            stamp: Some(HostStamp::of(meta)),
        })
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(&host).map_err(|source| SandboxError::Io {
            action: "read the link",
            path: host.clone(),
            source,
        })?;
        EntryKind::Symlink(target.to_string_lossy().into_owned())
    } else if file_type.is_fifo() {
        EntryKind::Fifo
    } else if file_type.is_char_device() {
        let rdev = meta.rdev();
        EntryKind::CharDevice(
            nix::sys::stat::major(rdev) as u32,
            nix::sys::stat::minor(rdev) as u32,
        )
    } else if file_type.is_block_device() {
        let rdev = meta.rdev();
        EntryKind::BlockDevice(
            nix::sys::stat::major(rdev) as u32,
            nix::sys::stat::minor(rdev) as u32,
        )
    } else {
        return Ok(None);
    };
    let shown_uid = maps.uid_inside(meta.uid());
    let shown_gid = maps.gid_inside(meta.gid());
    // An owner the map cannot hold shows as root; unchanged, it is still the image's.
    let (uid, gid) = match before {
        Some(b) => (
            if shown_uid == b.shown_uid {
                b.meta.uid
            } else {
                shown_uid
            },
            if shown_gid == b.shown_gid {
                b.meta.gid
            } else {
                shown_gid
            },
        ),
        None => (shown_uid, shown_gid),
    };
    let mut xattrs = before
        .filter(|_| keep_xattrs)
        .map(|b| b.meta.xattrs.clone())
        .unwrap_or_default();
    // The disk has the image's capability as the sandbox set it, unless it could not be set.
    let image_capability = before
        .filter(|_| keep_xattrs)
        .and_then(|b| b.meta.xattrs.get(CAPABILITY_XATTR))
        .map(|value| settable_capability(value, maps));
    match (image_capability, capability) {
        // Unchanged: the image's own bytes stay.
        (Some(Some(set)), Some(now)) if set == now => {}
        (Some(None), None) => {}
        (_, Some(now)) => {
            xattrs.insert(CAPABILITY_XATTR.to_owned(), now);
        }
        (_, None) => {
            xattrs.remove(CAPABILITY_XATTR);
        }
    }
    Ok(Some(Entry {
        kind,
        meta: Metadata {
            mode: meta.mode() & 0o7777,
            uid,
            gid,
            mtime: meta.mtime(),
            xattrs,
        },
    }))
}

/// The file capability set on `path` as the image holds it (see the module doc); `None` when
/// there is none.
fn file_capability(path: &Path, maps: &IdMaps) -> Result<Option<Vec<u8>>, SandboxError> {
    // Revision 3 is the largest: magic, two (permitted, inheritable) pairs, root id.
    let mut value = [0u8; 24];
    let read = read_xattr(path, c"security.capability", &mut value).map_err(|source| {
        SandboxError::Io {
            action: "read the file capabilities of",
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(read.map(|length| capability_for_image(&value[..length], maps)))
}

/// Reads the extended attribute `name` of `path` (a symlink itself, not followed) into
/// `value`: its length, or `None` when the file has no such attribute.
fn read_xattr(
    path: &Path,
    name: &std::ffi::CStr,
    value: &mut [u8],
) -> std::io::Result<Option<usize>> {
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: both pointers are valid for the given lengths.
    let read = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if read < 0 {
        let cause = std::io::Error::last_os_error();
        return match cause.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(None),
            _ => Err(cause),
        };
    }
    Ok(Some(read as usize))
}

/// A `security.capability` value read on the host as the image holds it: revision 3 (the high
/// byte of the little-endian magic word) names a root id on the host, which becomes revision 2
/// when it is the sandbox's root and otherwise names the id inside. Other values are kept.
fn capability_for_image(value: &[u8], maps: &IdMaps) -> Vec<u8> {
    remap_capability_root(value, |host| Some(maps.uid_inside(host)))
        .unwrap_or_else(|| value.to_vec())
}

/// Whether `entry` differs from what its path was: kind, owner, mode, symlink target (a
/// directory's times never count); for a regular file with the same owner and mode,
/// `file_differs` decides.
fn differs_by(
    entry: &Entry,
    before: &Before,
    file_differs: impl FnOnce() -> Result<bool, SandboxError>,
) -> Result<bool, SandboxError> {
    let owner_changed = entry.meta.uid != before.meta.uid || entry.meta.gid != before.meta.gid;
    let mode_changed = entry.meta.mode != before.meta.mode & 0o7777;
    Ok(match (&entry.kind, &before.kind) {
        (EntryKind::Dir, NodeKind::Dir) => owner_changed || mode_changed,
        (EntryKind::Symlink(now), NodeKind::Symlink(was)) => owner_changed || now != was,
        (EntryKind::Fifo, NodeKind::Fifo) => owner_changed || mode_changed,
        (EntryKind::File(_), NodeKind::File { .. }) => {
            owner_changed
                || mode_changed
                || entry.meta.xattrs != before.meta.xattrs
                || file_differs()?
        }
        _ => true,
    })
}

/// A file changed when its size or mtime did; with both unchanged, only a file the command
/// touched (another inode, or a ctime after it started) is compared by content.
fn differs(
    input: &SnapshotInput<'_>,
    path: &LayerPath,
    meta: &std::fs::Metadata,
    entry: &Entry,
    before: &Before,
) -> Result<bool, SandboxError> {
    differs_by(entry, before, || {
        if meta.len() != before.size
            || meta.mtime() != before.mtime
            || meta.mtime_nsec() != before.mtime_nsec
        {
            return Ok(true);
        }
        let touched =
            meta.ino() != before.inode || (meta.ctime(), meta.ctime_nsec()) >= input.started;
        Ok(touched && !same_content(input, path, before)?)
    })
}

fn same_content(
    input: &SnapshotInput<'_>,
    path: &LayerPath,
    before: &Before,
) -> Result<bool, SandboxError> {
    let was = match &before.content {
        Original::Digest(digest) => digest.clone(),
        Original::Known(FileContent::Bytes(bytes)) => crate::digest::Digest::of(bytes),
        Original::Known(FileContent::HostFile { path, .. }) => hash_file(path)?,
        Original::None | Original::Unknown => return Ok(false),
    };
    Ok(hash_file(&input.root.join(path.as_str()))? == was)
}

fn hash_file(path: &Path) -> Result<crate::digest::Digest, SandboxError> {
    let read_err = |source| SandboxError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(read_err)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finish().0)
}

/// What the snapshot of an overlay's upper directory needs.
pub struct UpperInput<'a> {
    /// The upper directory: everything the command created, changed, or merely opened for
    /// writing (copied up), overlayfs whiteouts for what it removed.
    pub upper: &'a Path,
    /// The lower layers, topmost first: where a copied-up file's original is.
    pub lowers: &'a [std::path::PathBuf],
    /// Every path before the command ran.
    pub before: &'a BTreeMap<LayerPath, Before>,
    /// Paths the sandbox created (mount points) and which are not part of the image.
    pub ignored: &'a BTreeSet<LayerPath>,
    /// The id maps the command ran with.
    pub maps: &'a IdMaps,
}

/// The Diff an overlay's upper directory stands for, made by the same rules as [`snapshot`]:
/// only what the upper directory holds can have changed, so nothing else is looked at. A
/// whiteout (a 0/0 character device) removes its path; a directory overlayfs marked opaque
/// (`user.overlay.opaque`, the command removed the directory and made a new one) removes
/// every lower path below it the upper directory does not hold. A copied-up file whose kind,
/// owner, mode, size and mtime are unchanged is compared by content with its lower original.
pub fn snapshot_upper(input: &UpperInput<'_>) -> Result<Diff, SandboxError> {
    let now = walk(input.upper)?;
    let before_of = |path: &LayerPath| input.before.get(path).filter(|b| b.present);
    let mut diff = Diff::new();
    let mut changed: Vec<LayerPath> = Vec::new();
    let mut links: HashMap<(u64, u64), LayerPath> = HashMap::new();
    for (path, meta) in &now {
        if input.ignored.contains(path) {
            continue;
        }
        let before = before_of(path);
        let file_type = meta.file_type();
        if file_type.is_char_device() && meta.rdev() == 0 {
            if before.is_some() {
                diff.whiteout(path.clone());
                changed.push(path.clone());
            }
            continue;
        }
        if file_type.is_dir() && is_opaque(&input.upper.join(path.as_str())) {
            let mut removed: Option<&LayerPath> = None;
            // Everything below `path` sorts among the paths that start with its text (`d.x`
            // sorts between `d` and `d/old`), so the range ends where that prefix does.
            let below = input
                .before
                .range(path.clone()..)
                .take_while(|(p, _)| p.as_str().starts_with(path.as_str()))
                .filter(|(p, _)| *p != path && p.starts_with(path));
            for (lower_path, was) in below {
                if !was.present
                    || now.contains_key(lower_path)
                    || removed.is_some_and(|top| lower_path.starts_with(top))
                {
                    continue;
                }
                let parent_is_dir = lower_path
                    .parent()
                    .and_then(|parent| now.get(&parent))
                    .is_some_and(|m| m.is_dir());
                if parent_is_dir {
                    diff.whiteout(lower_path.clone());
                    changed.push(lower_path.clone());
                    removed = Some(lower_path);
                }
            }
        }
        let keep = before.is_some_and(|b| same_original(meta, b));
        let Some(entry) = entry_at(input.upper, input.maps, path, meta, before, keep)? else {
            continue;
        };
        let is_changed = match before {
            None => true,
            Some(before) => upper_differs(input, path, meta, &entry, before)?,
        };
        if !is_changed {
            continue;
        }
        diff.insert(path.clone(), linked(&mut links, path, meta, entry));
        changed.push(path.clone());
    }
    for path in &changed {
        for ancestor in path.ancestors() {
            if diff.get(&ancestor).is_some() {
                continue;
            }
            // overlayfs copies up every parent of what changes.
            if let Some(meta) = now.get(&ancestor) {
                let before = before_of(&ancestor);
                let keep = before.is_some_and(|b| same_original(meta, b));
                if let Some(entry) =
                    entry_at(input.upper, input.maps, &ancestor, meta, before, keep)?
                {
                    diff.insert(ancestor, entry);
                }
            }
        }
    }
    Ok(diff)
}

/// True when the upper entry still looks like its original (a copy-up keeps times and size),
/// so the image's extended attributes still apply.
fn same_original(meta: &std::fs::Metadata, before: &Before) -> bool {
    match before.kind {
        NodeKind::Dir => meta.is_dir(),
        NodeKind::File { .. } => {
            meta.is_file() && meta.len() == before.size && meta.mtime() == before.mtime
        }
        _ => false,
    }
}

/// True when overlayfs marked the directory opaque.
fn is_opaque(path: &Path) -> bool {
    let mut value = [0u8; 2];
    matches!(read_xattr(path, c"user.overlay.opaque", &mut value), Ok(Some(1)) if value[0] == b'y')
}

/// A copied-up file changed when it no longer looks like its original or its content differs.
fn upper_differs(
    input: &UpperInput<'_>,
    path: &LayerPath,
    meta: &std::fs::Metadata,
    entry: &Entry,
    before: &Before,
) -> Result<bool, SandboxError> {
    differs_by(entry, before, || {
        Ok(!same_original(meta, before) || !same_as_lower(input, path)?)
    })
}

/// True when the upper file has the content of the topmost lower file at `path`. A lower file
/// the caller cannot read counts as different: the layer then holds the file once more.
fn same_as_lower(input: &UpperInput<'_>, path: &LayerPath) -> Result<bool, SandboxError> {
    for lower in input.lowers {
        let original = lower.join(path.as_str());
        match std::fs::symlink_metadata(&original) {
            Ok(meta) if meta.is_file() => {
                let Ok(was) = hash_file(&original) else {
                    return Ok(false);
                };
                return Ok(hash_file(&input.upper.join(path.as_str()))? == was);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return Ok(false),
        }
    }
    Ok(false)
}
