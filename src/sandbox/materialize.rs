//! Writing a stage's merged lower filesystem into a scratch directory the sandbox runs in, and
//! remembering what each path was, so the snapshot afterwards compares cheaply.
//!
//! Files of layer blobs are written straight from the blobs (one decompression pass per layer),
//! files a step's Diff holds are copied with `copy_file_range`, which the kernel turns into a
//! reflink on filesystems that share extents (XFS, btrfs). Copies, never hard links to files
//! other steps may read, because a command may write a file in place.
//! Owners other than root are applied later, inside the user namespace, where the id map lets
//! them be set (see [`super::exec`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::idmap::IdMaps;
use super::{CAPABILITY_XATTR, SandboxError, io_error};
use crate::layer::{FileContent, LayerPath, Metadata};
use crate::rootfs::{FsNode, FsView, LowerFs, NodeKind};

/// A path as it was before the command ran.
#[derive(Clone, Debug)]
pub struct Before {
    /// What it is.
    pub kind: NodeKind,
    /// Its metadata in the image.
    pub meta: Metadata,
    /// The owner it shows inside the sandbox (the image's, or root when that id is not mapped).
    pub shown_uid: u32,
    /// The group it shows inside the sandbox.
    pub shown_gid: u32,
    /// Disk facts right after materializing: inode, size, mtime (s, ns).
    pub inode: u64,
    /// Size on disk.
    pub size: u64,
    /// mtime seconds.
    pub mtime: i64,
    /// mtime nanoseconds.
    pub mtime_nsec: i64,
    /// Where a regular file's original content is, for content checks.
    pub content: Original,
    /// False for what could not be created unprivileged (device nodes): never reported removed.
    pub present: bool,
}

/// Where the content a file had before the command is.
#[derive(Clone, Debug)]
pub enum Original {
    /// Not a regular file.
    None,
    /// Here.
    Known(FileContent),
    /// Content with this sha256 (written from a layer blob).
    Digest(crate::digest::Digest),
    /// Nowhere any more: an earlier command wrote the file in place.
    Unknown,
}

/// An owner (and the mode to restore, since chown clears setuid/setgid) and a file capability
/// to set inside the user namespace, where an unprivileged caller may set them.
pub struct Chown {
    /// The host path.
    pub path: CString,
    /// The uid inside, or `None` to leave it.
    pub uid: Option<u32>,
    /// The gid inside, or `None` to leave it.
    pub gid: Option<u32>,
    /// Mode to set again after the chown (not for symlinks).
    pub mode: Option<u32>,
    /// The `security.capability` value to set after the chown (which clears it); regular
    /// files only.
    pub capability: Option<Vec<u8>>,
}

/// A rootfs written to disk.
pub struct Materialized {
    /// Its directory.
    pub root: PathBuf,
    /// Every path of the image and what it was.
    pub before: BTreeMap<LayerPath, Before>,
    /// Owners to set inside the user namespace before the command runs.
    pub chowns: Vec<Chown>,
}

/// Writes `fs` into `root` (which must not exist yet).
pub fn materialize(fs: &LowerFs, root: &Path, maps: &IdMaps) -> Result<Materialized, SandboxError> {
    let nodes: Vec<(LayerPath, FsNode)> = fs.nodes().map(|(p, n)| (p.clone(), n)).collect();
    let materialized = materialize_nodes(fs, &nodes, &[], root, maps)?;
    // The root's mode as the layers set it (a `./` entry), as containerd and umoci apply it;
    // the owner and times stay the caller's, like every directory made here.
    if let Ok(Some(node)) = fs.lstat_exact(&LayerPath::root())
        && node.kind == NodeKind::Dir
    {
        std::fs::set_permissions(
            root,
            std::fs::Permissions::from_mode(node.meta.mode & 0o7777),
        )
        .map_err(io_error("chmod", root))?;
    }
    Ok(materialized)
}

/// Writes `nodes` of `fs` (in path order, every parent before its children) into `root` (which
/// must not exist yet), and an overlayfs whiteout (a 0/0 character device, which needs no
/// privilege) at each of `whiteouts`, whose parents must be among `nodes`.
pub fn materialize_nodes(
    fs: &LowerFs,
    nodes: &[(LayerPath, FsNode)],
    whiteouts: &[LayerPath],
    root: &Path,
    maps: &IdMaps,
) -> Result<Materialized, SandboxError> {
    std::fs::create_dir(root).map_err(io_error("create", root))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("chmod", root))?;

    let mut before = BTreeMap::new();
    let mut files = Vec::new();
    let mut present = Vec::with_capacity(nodes.len());
    for (path, node) in nodes {
        let host = root.join(path.as_str());
        let made = match &node.kind {
            NodeKind::Dir => {
                std::fs::create_dir(&host).map_err(io_error("create", &host))?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_error("chmod", &host))?;
                true
            }
            NodeKind::File { .. } => {
                files.push((path.clone(), host));
                true
            }
            NodeKind::Symlink(target) => {
                std::os::unix::fs::symlink(target, &host).map_err(io_error("symlink", &host))?;
                true
            }
            NodeKind::Fifo => {
                nix::unistd::mkfifo(&host, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| SandboxError::Io {
                        action: "mkfifo",
                        path: host.clone(),
                        source: e.into(),
                    })?;
                true
            }
            // Device nodes cannot be made in a user namespace; commands rarely need those of
            // the image (the sandbox has its own /dev).
            NodeKind::CharDevice(..) | NodeKind::BlockDevice(..) => false,
        };
        present.push(made);
        before.insert(
            path.clone(),
            Before {
                kind: node.kind.clone(),
                meta: node.meta.clone(),
                shown_uid: 0,
                shown_gid: 0,
                inode: 0,
                size: 0,
                mtime: 0,
                mtime_nsec: 0,
                content: Original::None,
                present: made,
            },
        );
    }
    for path in whiteouts {
        let host = root.join(path.as_str());
        nix::sys::stat::mknod(
            &host,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .map_err(|e| SandboxError::Io {
            action: "create the whiteout",
            path: host.clone(),
            source: e.into(),
        })?;
    }
    // Files of the layer blobs are written straight from them (no second copy, and no
    // extracted file to keep); those a Diff holds are copied.
    let extracted = fs
        .extract_to(&files)
        .map_err(|e| SandboxError::Rootfs(Box::new(e)))?;
    for (path, digest) in extracted.digests {
        if let Some(entry) = before.get_mut(&path) {
            entry.content = Original::Digest(digest);
        }
    }
    let mut first_copy: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (path, host) in extracted.rest {
        let file = fs
            .content(&path)
            .map_err(|e| SandboxError::Rootfs(Box::new(e)))?;
        match &file {
            FileContent::Bytes(bytes) => {
                std::fs::write(&host, bytes).map_err(io_error("write", &host))?
            }
            FileContent::HostFile { path: source, .. } => {
                // Paths of one hard-link group share their source file.
                if let Some(first) = first_copy.get(source) {
                    std::fs::hard_link(first, &host).map_err(io_error("link", &host))?;
                } else {
                    std::fs::copy(source, &host).map_err(io_error("copy", source))?;
                    first_copy.insert(source.clone(), host.clone());
                }
            }
        }
        if let Some(entry) = before.get_mut(&path) {
            entry.content = Original::Known(file);
        }
    }

    // Modes and times children first, so a read-only directory is finished last.
    let mut chowns = Vec::new();
    for ((path, node), made) in nodes.iter().zip(&present).rev() {
        if !made {
            continue;
        }
        let host = root.join(path.as_str());
        let is_symlink = matches!(node.kind, NodeKind::Symlink(_));
        if !is_symlink {
            std::fs::set_permissions(
                &host,
                std::fs::Permissions::from_mode(node.meta.mode & 0o7777),
            )
            .map_err(io_error("chmod", &host))?;
        }
        let time = TimeSpec::new(node.meta.mtime, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &host,
            &time,
            &time,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| SandboxError::Io {
            action: "set the time of",
            path: host.clone(),
            source: e.into(),
        })?;
        let stat = std::fs::symlink_metadata(&host).map_err(io_error("stat", &host))?;
        let uid = (node.meta.uid != 0)
            .then(|| maps.uid_to_host(node.meta.uid).map(|_| node.meta.uid))
            .flatten();
        let gid = (node.meta.gid != 0)
            .then(|| maps.gid_to_host(node.meta.gid).map(|_| node.meta.gid))
            .flatten();
        // The image's file capabilities are on disk, so that commands see them and the
        // snapshot can take the disk's word for them.
        let capability = matches!(node.kind, NodeKind::File { .. })
            .then(|| {
                node.meta
                    .xattrs
                    .get(CAPABILITY_XATTR)
                    .and_then(|value| settable_capability(value, maps))
            })
            .flatten();
        if uid.is_some() || gid.is_some() || capability.is_some() {
            chowns.push(Chown {
                path: CString::new(host.as_os_str().as_bytes()).map_err(|_| SandboxError::Io {
                    action: "name",
                    path: host.clone(),
                    source: std::io::Error::other("path contains a NUL byte"),
                })?,
                uid,
                gid,
                mode: (!is_symlink && node.meta.mode & 0o6000 != 0)
                    .then_some(node.meta.mode & 0o7777),
                capability,
            });
        }
        if let Some(entry) = before.get_mut(path) {
            entry.shown_uid = uid.unwrap_or(0);
            entry.shown_gid = gid.unwrap_or(0);
            entry.inode = stat.ino();
            entry.size = stat.len();
            entry.mtime = stat.mtime();
            entry.mtime_nsec = stat.mtime_nsec();
        }
    }
    Ok(Materialized {
        root: root.to_owned(),
        before,
        chowns,
    })
}

/// An image's `security.capability` value as the sandbox sets it on disk (and as it then reads
/// back): revision 2 as it is, revision 3 as revision 2 when it names root 0 and as it is when
/// it names a root the id maps hold. `None` for what the kernel would refuse: revision 1, flags
/// other than "effective", a wrong length, a root with no mapping here.
pub fn settable_capability(value: &[u8], maps: &IdMaps) -> Option<Vec<u8>> {
    let well_formed = matches!(
        (value.len(), value.get(..4)),
        (CAPABILITY_V2_SIZE, Some([flags, 0, 0, 2])) | (CAPABILITY_V3_SIZE, Some([flags, 0, 0, 3]))
            if flags & !1 == 0
    );
    if !well_formed {
        return None;
    }
    remap_capability_root(value, |root| maps.uid_to_host(root).map(|_| root))
}

const CAPABILITY_V2_SIZE: usize = 20;
const CAPABILITY_V3_SIZE: usize = 24;

/// `value` with the root id of a revision 3 capability passed through `remap` (`None`: the id
/// has no counterpart): revision 2 when it becomes 0, revision 3 naming the new id otherwise.
/// Other values are returned as they are.
pub fn remap_capability_root(value: &[u8], remap: impl Fn(u32) -> Option<u32>) -> Option<Vec<u8>> {
    let mut value = value.to_vec();
    if value.len() != CAPABILITY_V3_SIZE || value[3] != 3 {
        return Some(value);
    }
    let root = remap(u32::from_le_bytes([
        value[20], value[21], value[22], value[23],
    ]))?;
    if root == 0 {
        value[3] = 2;
        value.truncate(CAPABILITY_V2_SIZE);
    } else {
        value[CAPABILITY_V2_SIZE..].copy_from_slice(&root.to_le_bytes());
    }
    Some(value)
}

/// What a component of a mount target's path is.
pub enum PartKind {
    /// A symbolic link (refused: resolution already followed the links it could).
    Symlink,
    /// A directory.
    Dir,
    /// Anything else.
    Other,
}

/// Walks a mount target's path with symlinks resolved inside the image (so a link in the image
/// can never point a mount at a host path): `kind_of` tells what each component is (`None`:
/// missing), `missing` is called for each missing one, parents first (`true` for the target
/// itself). Returns the resolved target.
pub fn walk_mount_target(
    fs: &LowerFs,
    target: &str,
    mut kind_of: impl FnMut(&LayerPath) -> Result<Option<PartKind>, SandboxError>,
    mut missing: impl FnMut(&LayerPath, bool) -> Result<(), SandboxError>,
) -> Result<LayerPath, SandboxError> {
    let bad = |why: String| SandboxError::MountTarget {
        target: target.to_owned(),
        why,
    };
    let path = LayerPath::new_clamped(target).map_err(|e| bad(e.to_string()))?;
    if path.is_root() {
        return Err(bad("cannot mount over the root".to_owned()));
    }
    let resolved = fs.resolve(&path, true).map_err(|e| bad(e.to_string()))?;
    let mut parts = resolved.ancestors();
    parts.push(resolved.clone());
    for (index, part) in parts.iter().enumerate() {
        let is_last = index + 1 == parts.len();
        match kind_of(part)? {
            Some(PartKind::Symlink) => {
                return Err(bad(format!("`{}` is a symbolic link", part.absolute())));
            }
            Some(PartKind::Other) if !is_last => {
                return Err(bad(format!("`{}` is not a directory", part.absolute())));
            }
            Some(_) => {}
            None => missing(part, is_last)?,
        }
    }
    Ok(resolved)
}

/// Creates what is missing of `target` (a directory, or a file when `file`) inside the
/// materialized rootfs at `root` ([`walk_mount_target`]). Returns the host path and the paths
/// it created, which the snapshot ignores.
pub fn mount_point(
    fs: &LowerFs,
    root: &Path,
    target: &str,
    file: bool,
) -> Result<(PathBuf, Vec<LayerPath>), SandboxError> {
    let mut created = Vec::new();
    let resolved = walk_mount_target(
        fs,
        target,
        |part| {
            Ok(std::fs::symlink_metadata(root.join(part.as_str()))
                .ok()
                .map(|meta| {
                    if meta.file_type().is_symlink() {
                        PartKind::Symlink
                    } else if meta.is_dir() {
                        PartKind::Dir
                    } else {
                        PartKind::Other
                    }
                }))
        },
        |part, is_last| {
            let host = root.join(part.as_str());
            if is_last && file {
                std::fs::write(&host, b"").map_err(io_error("create", &host))?;
            } else {
                std::fs::create_dir(&host).map_err(io_error("create", &host))?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_error("chmod", &host))?;
            }
            created.push(part.clone());
            Ok(())
        },
    )?;
    Ok((root.join(resolved.as_str()), created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::idmap::IdRange;

    fn capability(revision: u8, flags: u8, root: Option<u32>) -> Vec<u8> {
        let mut value = vec![flags, 0, 0, revision, 0, 0x20, 0, 0];
        value.extend([0u8; 12]);
        if let Some(root) = root {
            value.extend(root.to_le_bytes());
        }
        value
    }

    #[test]
    fn capabilities_are_set_as_the_kernel_takes_them() {
        let maps = IdMaps::single(1000, 1000);
        let v2 = capability(2, 1, None);
        assert_eq!(settable_capability(&v2, &maps), Some(v2.clone()));
        assert_eq!(
            settable_capability(&capability(3, 1, Some(0)), &maps),
            Some(v2),
            "revision 3 for root 0 is revision 2"
        );
        // Only root (0) is mapped by a single map: root 1000 inside cannot be named.
        assert_eq!(
            settable_capability(&capability(3, 1, Some(1000)), &maps),
            None
        );
        let ranges = IdMaps {
            uids: vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1,
                },
                IdRange {
                    inside: 1,
                    outside: 300_000,
                    count: 65535,
                },
            ],
            ..IdMaps::single(1000, 1000)
        };
        let for_1000 = capability(3, 1, Some(1000));
        assert_eq!(settable_capability(&for_1000, &ranges), Some(for_1000));
        assert_eq!(
            settable_capability(&capability(2, 3, None), &maps),
            None,
            "unknown flag"
        );
        assert_eq!(
            settable_capability(&[1, 0, 0, 1, 0, 0x20, 0, 0, 0, 0, 0, 0], &maps),
            None
        );
        assert_eq!(
            settable_capability(&capability(2, 1, Some(0)), &maps),
            None,
            "length"
        );
    }
}
