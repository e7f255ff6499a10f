//! The sandbox's rootfs as an overlay mount, so a RUN costs the same on a large base as on a
//! small one.
//!
//! The stage's FROM layers are written out once, as a merged directory, into the cache
//! (`<cache>/sandbox-rootfs/<key>`, the key naming the layers' diffIDs and the id maps), with an
//! index of what each path is (kind, metadata, and the blob entry a file's content is), and
//! kept between builds: the three most recently used, a build holding the ones it uses locked
//! (`flock`), a base published by a rename once on disk and removed by a rename first. What
//! the stage's own steps changed before the RUN (COPY, native steps,
//! cached layers) is written per build as a second, usually small, lower layer: every path
//! whose node differs from the base, with its parents, and an overlayfs whiteout where the base
//! had a path the stage no longer has. The command then runs on an overlayfs mounted inside the
//! sandbox's user namespace (`userxattr`, Linux 5.11 or later), and everything it changes lands
//! in the upper directory: the snapshot reads only that ([`super::snapshot::snapshot_upper`]).
//! The next RUN of the stage stacks a new upper directory on the previous one.
//!
//! `KILN_SANDBOX_ROOTFS=copy` (or a kernel that refuses overlayfs in a user namespace) selects
//! the copy mode instead: the whole rootfs written out per stage ([`super::materialize`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::exec;
use super::idmap::IdMaps;
use super::materialize::{self, Before, Original, PartKind};
use super::{ROOTFS_MODE_VARIABLE as MODE_VARIABLE, SandboxError, io_error};
use crate::digest::Digest;
use crate::layer::{Layer, LayerPath};
use crate::rootfs::{FsNode, FsView, LowerFs, NodeKind};
use crate::store::Store;

/// Base directories kept in the cache; older ones are removed when a new one is written.
const KEPT_BASES: usize = 3;

/// How a command's rootfs is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsMode {
    /// overlayfs over the cached base and the stage's own changes.
    Overlay,
    /// A full copy of the stage's filesystem.
    Copy,
}

/// The mode [`MODE_VARIABLE`] asks for. For `auto`, one overlay mount is tried once per
/// process, with its upper directory in `scratch` (where the commands' upper directories go:
/// overlayfs refuses some filesystems there, overlayfs itself among them).
pub fn rootfs_mode(maps: &IdMaps, scratch: &Path) -> Result<RootfsMode, SandboxError> {
    match std::env::var(MODE_VARIABLE).ok().as_deref() {
        Some("copy") => Ok(RootfsMode::Copy),
        Some("overlay") => Ok(RootfsMode::Overlay),
        None | Some("" | "auto") => {
            static WORKS: OnceLock<bool> = OnceLock::new();
            let works = *WORKS.get_or_init(|| {
                let works = std::fs::create_dir_all(scratch).is_ok()
                    && tempfile::tempdir_in(scratch)
                        .is_ok_and(|dir| exec::overlay_works(dir.path(), maps).is_ok());
                if !works {
                    tracing::info!(
                        "overlayfs cannot be mounted in a user namespace here: sandboxed RUNs \
                         copy the stage's filesystem instead"
                    );
                }
                works
            });
            Ok(if works {
                RootfsMode::Overlay
            } else {
                RootfsMode::Copy
            })
        }
        Some(other) => Err(SandboxError::Setup(format!(
            "{MODE_VARIABLE}=`{other}` is not a rootfs mode (expected overlay, copy or auto)"
        ))),
    }
}

/// The stage's FROM layers, which the sandbox keeps unpacked between builds.
pub struct BaseLayers<'a> {
    /// Where their blobs are.
    pub store: &'a Store,
    /// The layers, bottom first.
    pub layers: &'a [Layer],
}

/// A base written out in the cache, and what each of its paths was.
struct BaseDir {
    rootfs: PathBuf,
    /// Path -> fingerprint of its node (kind and metadata).
    index: BTreeMap<LayerPath, String>,
}

/// What a node is, for telling whether the stage still has the base's: kind, metadata and, for
/// a file, the blob entry its content is (`None` for content a Diff holds, which never
/// matches).
fn fingerprint(node: &FsNode, origin: Option<(&Digest, u64)>) -> String {
    let origin = origin.map(|(digest, ordinal)| format!("{digest}#{ordinal}"));
    Digest::of(format!("{:?}\n{:?}\n{origin:?}", node.kind, node.meta).as_bytes())
        .hex()
        .to_owned()
}

/// The base's directory in `cache`, written first if no build wrote it before.
fn cached_base(
    cache: &Path,
    base: &BaseLayers<'_>,
    maps: &IdMaps,
) -> Result<Option<BaseDir>, SandboxError> {
    if base.layers.is_empty() {
        return Ok(None);
    }
    let key = {
        let mut hasher = crate::digest::Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"kiln-sandbox-base-v3");
        field(format!("{maps:?}").as_bytes());
        for layer in base.layers {
            field(layer.diff_id.to_string().as_bytes());
        }
        hasher.finish().0
    };
    let dir = cache.join(key.hex());
    if let Some(found) = use_base(&dir)? {
        // The directory's time orders the bases for pruning.
        let now = nix::sys::time::TimeSpec::UTIME_NOW;
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir,
            &now,
            &now,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        );
        return Ok(Some(found));
    }
    std::fs::create_dir_all(cache).map_err(io_error("create", cache))?;
    let temp = PartialDir {
        path: tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(cache)
            .map_err(io_error("create a directory in", cache))?
            .keep(),
        maps,
    };
    let mut fs = LowerFs::new();
    for layer in base.layers {
        fs.push_layer_blob(base.store, layer)
            .map_err(|e| SandboxError::Rootfs(Box::new(e)))?;
    }
    let written = materialize::materialize(&fs, &temp.path.join("rootfs"), maps)?;
    exec::chown_as_mapped(&written.chowns, maps)?;
    let index_path = temp.path.join("index");
    let mut index = std::io::BufWriter::new(
        std::fs::File::create(&index_path).map_err(io_error("create", &index_path))?,
    );
    for (path, node) in fs.nodes() {
        // NUL ends both fields: no path holds one.
        let print = fingerprint(&node, fs.blob_origin(path));
        write!(index, "{}\0{print}\0", path.as_str()).map_err(io_error("write", &index_path))?;
    }
    index
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .map_err(io_error("write", &index_path))?;
    // Every file on disk before the base is published: a base is trusted once it has its name.
    let synced = std::fs::File::open(&temp.path).is_ok_and(|handle| {
        // SAFETY: syncfs on a descriptor we own.
        unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&handle)) == 0 }
    });
    if !synced {
        return Err(SandboxError::Setup(format!(
            "failed to write `{}` to disk",
            temp.path.display()
        )));
    }
    match std::fs::rename(&temp.path, &dir) {
        Ok(()) => std::mem::forget(temp),
        // Another build wrote it meanwhile: use that one (ours is removed with `temp`).
        Err(_) if dir.join("index").is_file() => {}
        Err(e) => return Err(io_error("rename into", &dir)(e)),
    }
    let found = use_base(&dir)?;
    prune(cache, &dir, maps);
    found.map(Some).ok_or_else(|| {
        SandboxError::Setup(format!(
            "the cached base `{}` vanished while it was used",
            dir.display()
        ))
    })
}

/// Bases this process uses, locked shared (`flock`) until it exits, so that another build's
/// [`prune`] leaves them alone.
static BASES_IN_USE: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// The base in `dir`, locked for this process (`None` when there is none).
fn use_base(dir: &Path) -> Result<Option<BaseDir>, SandboxError> {
    let Ok(handle) = std::fs::File::open(dir) else {
        return Ok(None);
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&handle), libc::LOCK_SH) } != 0 {
        return Err(io_error("lock", dir)(std::io::Error::last_os_error()));
    }
    // Locked: a prune that got here first has moved it away, so look again by name.
    let Some(found) = read_base(dir)? else {
        return Ok(None);
    };
    BASES_IN_USE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(handle);
    Ok(Some(found))
}

/// A base directory written earlier (`None` when there is none).
fn read_base(dir: &Path) -> Result<Option<BaseDir>, SandboxError> {
    let index_path = dir.join("index");
    let text = match std::fs::read(&index_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &index_path)(e)),
    };
    let mut index = BTreeMap::new();
    let mut fields = text.split(|b| *b == 0);
    while let (Some(path), Some(print)) = (fields.next(), fields.next()) {
        let path = std::str::from_utf8(path)
            .ok()
            .and_then(|p| LayerPath::new(p).ok());
        let print = std::str::from_utf8(print).ok();
        let (Some(path), Some(print)) = (path, print) else {
            return Err(SandboxError::Setup(format!(
                "the cached base index `{}` is damaged; remove `{}`",
                index_path.display(),
                dir.display()
            )));
        };
        index.insert(path, print.to_owned());
    }
    Ok(Some(BaseDir {
        rootfs: dir.join("rootfs"),
        index,
    }))
}

/// Removes all but the [`KEPT_BASES`] most recently used bases (never `keep`, never one a
/// build holds locked), and what interrupted writes and removals left. A base goes by being
/// renamed away first, so no build ever finds half of one.
fn prune(cache: &Path, keep: &Path, maps: &IdMaps) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let mut bases = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let age = meta.modified().ok().and_then(|t| t.elapsed().ok());
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".del-") {
            remove(&path, maps);
        } else if name.starts_with(".tmp-") {
            // Another build may be writing it: only day-old leftovers go.
            if age.is_some_and(|age| age.as_secs() > 86_400) {
                remove(&path, maps);
            }
        } else if path != keep {
            bases.push((age.unwrap_or_default(), path));
        }
    }
    bases.sort();
    for (_, path) in bases.into_iter().skip(KEPT_BASES - 1) {
        let Ok(handle) = std::fs::File::open(&path) else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        let unused = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&handle),
                libc::LOCK_EX | libc::LOCK_NB,
            ) == 0
        };
        let doomed = cache.join(format!(
            ".del-{}",
            Digest::of(path.as_os_str().as_encoded_bytes()).hex()
        ));
        if unused && std::fs::rename(&path, &doomed).is_ok() {
            drop(handle);
            remove(&doomed, maps);
        }
    }
}

fn remove(path: &Path, maps: &IdMaps) {
    if std::fs::remove_dir_all(path).is_err()
        && path.exists()
        && let Err(e) = exec::remove_as_mapped(path, maps)
    {
        tracing::warn!("{e}");
    }
}

/// A directory removed when dropped (as the mapped root when the caller alone cannot).
struct PartialDir<'a> {
    path: PathBuf,
    maps: &'a IdMaps,
}

impl Drop for PartialDir<'_> {
    fn drop(&mut self) {
        remove(&self.path, self.maps);
    }
}

/// The lower layers a stage's first sandboxed RUN mounts.
pub struct Lowers {
    /// Directories, topmost first.
    pub dirs: Vec<PathBuf>,
    /// Owners to set in the per-build layer inside the user namespace.
    pub chowns: Vec<materialize::Chown>,
}

/// Writes what the command's rootfs needs below the overlay: the cached base (once) and, in
/// `dir`, the stage's own changes since its FROM.
pub fn prepare_lowers(
    fs: &LowerFs,
    base: &BaseLayers<'_>,
    cache: &Path,
    dir: &Path,
    maps: &IdMaps,
) -> Result<Lowers, SandboxError> {
    let base_dir = cached_base(cache, base, maps)?;
    // A file is the base's only when its content is the same entry of the same blob: a stage
    // can make a layer identical to a base layer (reproducible layers), whose entries then
    // stand at other paths' positions.
    let unchanged = |path: &LayerPath, node: &FsNode| {
        let is_file = matches!(node.kind, NodeKind::File { .. });
        let origin = fs.blob_origin(path);
        (!is_file || origin.is_some())
            && base_dir
                .as_ref()
                .and_then(|b| b.index.get(path))
                .is_some_and(|print| *print == fingerprint(node, origin))
    };
    let mut wanted: BTreeSet<LayerPath> = BTreeSet::new();
    let mut nodes: HashMap<LayerPath, FsNode> = HashMap::new();
    for (path, node) in fs.nodes() {
        if !unchanged(path, &node) {
            wanted.insert(path.clone());
        }
        nodes.insert(path.clone(), node);
    }
    let mut whiteouts = Vec::new();
    if let Some(base_dir) = &base_dir {
        let mut removed: Option<&LayerPath> = None;
        for path in base_dir.index.keys() {
            if nodes.contains_key(path) || removed.is_some_and(|top| path.starts_with(top)) {
                continue;
            }
            // Below a path that is no directory any more, the new node hides it already.
            let parent_is_dir = path.parent().is_none_or(|parent| {
                parent.is_root() || nodes.get(&parent).is_some_and(|n| n.kind == NodeKind::Dir)
            });
            if parent_is_dir {
                whiteouts.push(path.clone());
                removed = Some(path);
            }
        }
    }
    let parents: Vec<LayerPath> = wanted
        .iter()
        .chain(&whiteouts)
        .flat_map(LayerPath::ancestors)
        .collect();
    wanted.extend(parents);
    let mut dirs = Vec::new();
    let mut chowns = Vec::new();
    if !wanted.is_empty() || base_dir.is_none() {
        let own: Vec<(LayerPath, FsNode)> = wanted
            .into_iter()
            .filter_map(|path| nodes.remove(&path).map(|node| (path, node)))
            .collect();
        let root = dir.join("stage");
        chowns = materialize::materialize_nodes(fs, &own, &whiteouts, &root, maps)?.chowns;
        dirs.push(root);
    }
    if let Some(base_dir) = base_dir {
        dirs.push(base_dir.rootfs);
    }
    Ok(Lowers { dirs, chowns })
}

/// Every path of `fs` as the command sees it before it runs, for the snapshot.
pub fn before_of(fs: &LowerFs, maps: &IdMaps) -> BTreeMap<LayerPath, Before> {
    fs.nodes()
        .map(|(path, node)| {
            let size = match node.kind {
                NodeKind::File { size } => size,
                _ => 0,
            };
            let present = !matches!(
                node.kind,
                NodeKind::CharDevice(..) | NodeKind::BlockDevice(..)
            );
            let before = Before {
                shown_uid: maps.uid_to_host(node.meta.uid).map_or(0, |_| node.meta.uid),
                shown_gid: maps.gid_to_host(node.meta.gid).map_or(0, |_| node.meta.gid),
                inode: 0,
                size,
                mtime: node.meta.mtime,
                mtime_nsec: 0,
                content: Original::None,
                present,
                kind: node.kind,
                meta: node.meta,
            };
            (path.clone(), before)
        })
        .collect()
}

/// Where a mount goes in an overlay rootfs, and what must be made for it.
pub struct MountPlan {
    /// The host path of the mount point (below the overlay's mount point).
    pub host: PathBuf,
    /// The image paths created for it, which the snapshot ignores.
    pub created: Vec<LayerPath>,
    /// `(host path, is a file)` to create once the overlay is mounted, parents first.
    pub create: Vec<(PathBuf, bool)>,
}

/// Resolves a mount target against `fs` (symlinks stay inside the image) and plans what must
/// be created for it once the overlay is mounted at `root`.
pub fn plan_mount_point(
    fs: &LowerFs,
    root: &Path,
    target: &str,
    file: bool,
) -> Result<MountPlan, SandboxError> {
    let mut created = Vec::new();
    let mut create = Vec::new();
    let resolved = materialize::walk_mount_target(
        fs,
        target,
        |part| {
            let node = fs
                .lstat_exact(part)
                .map_err(|e| SandboxError::MountTarget {
                    target: target.to_owned(),
                    why: e.to_string(),
                })?;
            Ok(node.map(|node| match node.kind {
                NodeKind::Symlink(_) => PartKind::Symlink,
                NodeKind::Dir => PartKind::Dir,
                _ => PartKind::Other,
            }))
        },
        |part, is_last| {
            create.push((root.join(part.as_str()), is_last && file));
            created.push(part.clone());
            Ok(())
        },
    )?;
    Ok(MountPlan {
        host: root.join(resolved.as_str()),
        created,
        create,
    })
}

/// Makes `dir` (new) hold short names for the layers, the names overlayfs gets: `upper` and
/// `work`, and `0`, `1`, ... for `lowers`, whose names it returns.
pub fn name_layers(
    dir: &Path,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<Vec<String>, SandboxError> {
    std::fs::create_dir(dir).map_err(io_error("create", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error("chmod", dir))?;
    for (target, name) in [(upper, "upper"), (work, "work")] {
        let link = dir.join(name);
        std::os::unix::fs::symlink(target, &link).map_err(io_error("symlink", &link))?;
    }
    let mut names = Vec::new();
    for (index, lower) in lowers.iter().enumerate() {
        let name = index.to_string();
        let link = dir.join(&name);
        std::os::unix::fs::symlink(lower, &link).map_err(io_error("symlink", &link))?;
        names.push(name);
    }
    Ok(names)
}
