//! `LowerFs`: the merged, read-only view of a stage's layer stack, without unpacking the image.
//!
//! Layers enter two ways: [`LowerFs::push_layer_blob`] indexes a stored blob (one streaming
//! decompression pass through `layer::reader`; only metadata and "entry N of layer D" is kept,
//! never contents), and [`LowerFs::push_diff`] applies a [`Diff`] a step just produced (its file
//! contents stay the Diff's [`FileContent`]). Data leaves through [`FsView`]: lookups come from
//! the merged index; [`FsView::content`] of a blob-backed file extracts it into a scratch
//! directory owned by the `LowerFs` and returns [`FileContent::HostFile`].
//! [`LowerFs::materialize`] extracts many files with one decompression pass per layer, so
//! `COPY --from=build /root/.local` costs one pass, not one per file.
//!
//! Layer semantics (OCI image spec, "Applying changesets"): within a layer, whiteouts
//! (`.wh.name`, [`EntryKind::Whiteout`]) and opaque markers (`.wh..wh..opq`,
//! [`EntryKind::OpaqueDir`]) act on the lower layers only and are applied before the layer's
//! own entries; a later entry replaces an earlier one, and a non-directory replacing a directory
//! drops everything below it; missing parent directories, or parents that a lower layer made
//! non-directories, become implicit directories (root, `0755`, mtime 0). Hard links resolve to
//! their target's node (content and metadata, as they share an inode).
//!
//! Cost model: the merged index is one `BTreeMap` behind an `Arc`. Cloning a `LowerFs` is a few
//! reference-count increments. Each push builds the new index from a copy of the old one
//! (O(entries): a few milliseconds for a 30k-file image), which keeps other clones unchanged and
//! makes a failed push leave the view as it was.
//! Clones share the scratch directory and the cache of extracted files. Extracted files live as
//! long as the last clone: a Diff referencing them must be written before every clone is dropped
//! (or pass a caller-owned directory to [`LowerFs::with_scratch_dir`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::layer::reader::{
    self, TarEntry, TarKind, Whiteout, is_aufs_meta, keys_below, whiteout_of,
};
use crate::layer::{Diff, EntryKind, FileContent, Layer, LayerPath, Metadata};
use crate::rootfs::view::{FsNode, NodeKind};
use crate::store::Store;

mod error;
mod view;

pub use error::RootfsError;

/// What [`LowerFs::extract_to`] wrote.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Each path written, with the sha256 of its content.
    pub digests: Vec<(LayerPath, Digest)>,
    /// The targets whose content is not in a layer blob, left for the caller.
    pub rest: Vec<(LayerPath, PathBuf)>,
}

/// A layer blob the index points into.
#[derive(Debug)]
struct BlobSource {
    digest: Digest,
    path: PathBuf,
}

/// Where a node's bytes are.
#[derive(Clone, Debug)]
enum Data {
    /// Not a regular file.
    None,
    /// Entry `ordinal` of a layer blob.
    Blob {
        layer: Arc<BlobSource>,
        ordinal: u64,
    },
    /// Content a Diff holds.
    Content(FileContent),
}

#[derive(Clone, Debug)]
struct Node {
    kind: NodeKind,
    meta: Metadata,
    data: Data,
}

/// One change of a layer, before it is applied.
enum Change {
    Remove(LayerPath),
    Opaque(LayerPath),
    Put(LayerPath, Node),
    Link(LayerPath, LayerPath),
}

/// Entries to extract from one layer: ordinal -> (a path naming it, its size).
type Wanted = BTreeMap<u64, (LayerPath, u64)>;

/// State every clone shares: the scratch directory and the extracted-file cache.
#[derive(Debug, Default)]
struct Shared {
    given_dir: Option<PathBuf>,
    temp_dir: Mutex<Option<tempfile::TempDir>>,
    /// (layer digest, entry ordinal) -> extracted host file.
    extracted: Mutex<HashMap<(Digest, u64), PathBuf>>,
}

/// A merged, read-only view of a layer stack. Cheap to clone (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct LowerFs {
    nodes: Arc<BTreeMap<LayerPath, Node>>,
    shared: Arc<Shared>,
}

impl LowerFs {
    /// An empty filesystem (`FROM scratch`); extracted files go to a private temp directory
    /// created on first use and removed when the last clone is dropped.
    pub fn new() -> LowerFs {
        LowerFs::default()
    }

    /// An empty filesystem whose extracted files go into `dir` (which must exist; kiln only
    /// creates new, uniquely named files in it and never removes them).
    pub fn with_scratch_dir(dir: &Path) -> LowerFs {
        LowerFs {
            nodes: Arc::default(),
            shared: Arc::new(Shared {
                given_dir: Some(dir.to_owned()),
                ..Shared::default()
            }),
        }
    }

    /// Number of paths in the merged view (the root not counted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the view holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every path of the merged view (the root not included) with its node, in path order.
    /// A layer's own root entry (`./`, what `tar -C dir -cf - .` writes first) is not among
    /// them: it sets the root's metadata ([`FsView::lstat_exact`] of the root), as containerd
    /// and umoci apply it, and is never a path to create.
    pub fn nodes(&self) -> impl Iterator<Item = (&LayerPath, FsNode)> + '_ {
        self.nodes
            .iter()
            .filter(|(path, _)| !path.is_root())
            .map(|(path, node)| {
                (
                    path,
                    FsNode {
                        kind: node.kind.clone(),
                        meta: node.meta.clone(),
                    },
                )
            })
    }

    /// The layer blob and the entry in it a regular file's content is (`None` when a Diff
    /// holds it, or `path` is no regular file).
    pub fn blob_origin(&self, path: &LayerPath) -> Option<(&Digest, u64)> {
        match &self.nodes.get(path)?.data {
            Data::Blob { layer, ordinal } => Some((&layer.digest, *ordinal)),
            _ => None,
        }
    }

    /// Indexes the stored blob of `layer` (gzip, zstd or plain, sniffed) and applies it on top.
    /// One decompression pass; contents are not kept. On error the view is unchanged.
    pub fn push_layer_blob(&mut self, store: &Store, layer: &Layer) -> Result<(), RootfsError> {
        let path = store.blob_path(&layer.digest);
        let open_err = |source| RootfsError::OpenBlob {
            digest: layer.digest.clone(),
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_err)?;
        let (_, stream) = reader::open_decompressed(io::BufReader::new(file)).map_err(open_err)?;
        let source = Arc::new(BlobSource {
            digest: layer.digest.clone(),
            path: path.clone(),
        });
        let name = layer.digest.to_string();
        let mut changes = Vec::new();
        reader::read_entries(stream, &name, |entry: TarEntry, _| {
            changes.push(blob_change(entry, &source));
            Ok::<_, RootfsError>(ControlFlow::Continue(()))
        })?;
        self.apply(changes.into_iter().flatten().collect(), &name)
    }

    /// Applies a Diff a step just produced on top of the view. File contents stay the Diff's.
    pub fn push_diff(&mut self, diff: &Diff) -> Result<(), RootfsError> {
        let mut changes = Vec::with_capacity(diff.len());
        for (path, entry) in diff.iter() {
            let node = |kind: NodeKind, data: Data| Node {
                kind,
                meta: entry.meta.clone(),
                data,
            };
            let change = match &entry.kind {
                EntryKind::Whiteout => Change::Remove(path.clone()),
                EntryKind::OpaqueDir => {
                    changes.push(Change::Opaque(path.clone()));
                    Change::Put(path.clone(), node(NodeKind::Dir, Data::None))
                }
                EntryKind::Dir => Change::Put(path.clone(), node(NodeKind::Dir, Data::None)),
                EntryKind::File(content) => Change::Put(
                    path.clone(),
                    node(
                        NodeKind::File {
                            size: content.size(),
                        },
                        Data::Content(content.clone()),
                    ),
                ),
                EntryKind::Symlink(target) => Change::Put(
                    path.clone(),
                    node(NodeKind::Symlink(target.clone()), Data::None),
                ),
                EntryKind::Hardlink(target) => Change::Link(path.clone(), target.clone()),
                EntryKind::CharDevice(major, minor) => Change::Put(
                    path.clone(),
                    node(NodeKind::CharDevice(*major, *minor), Data::None),
                ),
                EntryKind::BlockDevice(major, minor) => Change::Put(
                    path.clone(),
                    node(NodeKind::BlockDevice(*major, *minor), Data::None),
                ),
                EntryKind::Fifo => Change::Put(path.clone(), node(NodeKind::Fifo, Data::None)),
            };
            changes.push(change);
        }
        self.apply(changes, "diff")
    }

    /// Applies one layer's changes: removals and opaque markers first (they act on lower layers
    /// only), then entries, then hard links. Works on a copy, so an error changes nothing.
    fn apply(&mut self, changes: Vec<Change>, layer_name: &str) -> Result<(), RootfsError> {
        let mut nodes: BTreeMap<LayerPath, Node> = (*self.nodes).clone();
        let mut puts = Vec::new();
        let mut links = Vec::new();
        for change in changes {
            match change {
                Change::Remove(path) => remove_tree(&mut nodes, &path, true),
                Change::Opaque(path) => remove_tree(&mut nodes, &path, false),
                Change::Put(path, node) => puts.push((path, node)),
                Change::Link(path, target) => links.push((path, target)),
            }
        }
        for (path, node) in puts {
            put(&mut nodes, path, node);
        }
        for (path, target) in links {
            let Some(node) = nodes.get(&target).cloned() else {
                return Err(RootfsError::HardlinkTarget {
                    layer: layer_name.to_owned(),
                    path: path.absolute(),
                    target: target.absolute(),
                });
            };
            put(&mut nodes, path, node);
        }
        self.nodes = Arc::new(nodes);
        Ok(())
    }

    /// Extracts the blob-backed regular files among `paths` (exact paths, symlinks not
    /// followed) into the scratch directory, with one decompression pass per layer involved.
    /// Files already extracted, and files whose content a Diff holds, cost nothing. Afterwards
    /// [`FsView::content`] returns their host paths without reading any layer.
    pub fn materialize(&self, paths: &[LayerPath]) -> Result<(), RootfsError> {
        // layer digest -> (source, ordinal -> (path, size)), skipping what is cached.
        let mut wanted: BTreeMap<Digest, (Arc<BlobSource>, Wanted)> = BTreeMap::new();
        {
            let cache = lock(&self.shared.extracted);
            for path in paths {
                let Some(node) = self.nodes.get(path) else {
                    return Err(RootfsError::NotAFile(path.absolute()));
                };
                let NodeKind::File { size } = node.kind else {
                    return Err(RootfsError::NotAFile(path.absolute()));
                };
                if let Data::Blob { layer, ordinal } = &node.data {
                    if cache.contains_key(&(layer.digest.clone(), *ordinal)) {
                        continue;
                    }
                    wanted
                        .entry(layer.digest.clone())
                        .or_insert_with(|| (layer.clone(), BTreeMap::new()))
                        .1
                        .insert(*ordinal, (path.clone(), size));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let dir = self.scratch_dir()?;
        for (digest, (layer, mut ordinals)) in wanted {
            self.extract_from_layer(&dir, &layer, &mut ordinals)?;
            if let Some((ordinal, (path, _))) = ordinals.into_iter().next() {
                return Err(RootfsError::MissingInLayer {
                    layer: digest,
                    path: path.absolute(),
                    ordinal,
                });
            }
        }
        Ok(())
    }

    /// Writes the blob-backed regular files among `targets` straight to their host paths, with
    /// one decompression pass per layer, and keeps no copy in the extracted-file cache: the
    /// caller owns the files and may change them. Paths sharing a blob entry (hard links)
    /// become hard links of one file. Returns the sha256 of each file written, and the targets
    /// whose content is not in a blob (a Diff's), for the caller to copy through
    /// [`FsView::content`].
    pub fn extract_to(&self, targets: &[(LayerPath, PathBuf)]) -> Result<Extracted, RootfsError> {
        type Destinations = BTreeMap<u64, (u64, Vec<(LayerPath, PathBuf)>)>;
        let mut wanted: BTreeMap<Digest, (Arc<BlobSource>, Destinations)> = BTreeMap::new();
        let mut rest = Vec::new();
        let mut digests = Vec::new();
        for (path, dest) in targets {
            let Some(node) = self.nodes.get(path) else {
                return Err(RootfsError::NotAFile(path.absolute()));
            };
            let NodeKind::File { size } = node.kind else {
                return Err(RootfsError::NotAFile(path.absolute()));
            };
            match &node.data {
                Data::Blob { layer, ordinal } => wanted
                    .entry(layer.digest.clone())
                    .or_insert_with(|| (layer.clone(), BTreeMap::new()))
                    .1
                    .entry(*ordinal)
                    .or_insert_with(|| (size, Vec::new()))
                    .1
                    .push((path.clone(), dest.clone())),
                _ => rest.push((path.clone(), dest.clone())),
            }
        }
        let write_err = |path: &Path, source| RootfsError::Scratch {
            path: path.to_owned(),
            source,
        };
        for (digest, (layer, mut ordinals)) in wanted {
            let open_err = |source| RootfsError::OpenBlob {
                digest: layer.digest.clone(),
                path: layer.path.clone(),
                source,
            };
            let file = File::open(&layer.path).map_err(open_err)?;
            let (_, stream) =
                reader::open_decompressed(io::BufReader::new(file)).map_err(open_err)?;
            let name = layer.digest.to_string();
            reader::read_entries(stream, &name, |entry: TarEntry, content: &mut dyn Read| {
                let Some((size, destinations)) = ordinals.remove(&entry.ordinal) else {
                    return Ok(ControlFlow::Continue(()));
                };
                let (first_path, first) = &destinations[0];
                if entry.kind != TarKind::File || entry.size != size {
                    return Err(RootfsError::MissingInLayer {
                        layer: layer.digest.clone(),
                        path: first_path.absolute(),
                        ordinal: entry.ordinal,
                    });
                }
                let file = File::create(first).map_err(|e| write_err(first, e))?;
                let mut out = crate::digest::HashingWriter::new(BufWriter::new(file));
                io::copy(content, &mut out).map_err(|e| write_err(first, e))?;
                let (mut out, digest, _) = out.finish();
                out.flush().map_err(|e| write_err(first, e))?;
                for (_, other) in &destinations[1..] {
                    std::fs::hard_link(first, other).map_err(|e| write_err(other, e))?;
                }
                for (path, _) in &destinations {
                    digests.push((path.clone(), digest.clone()));
                }
                Ok(if ordinals.is_empty() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })?;
            if let Some((ordinal, (_, destinations))) = ordinals.into_iter().next() {
                return Err(RootfsError::MissingInLayer {
                    layer: digest,
                    path: destinations[0].0.absolute(),
                    ordinal,
                });
            }
        }
        Ok(Extracted { digests, rest })
    }

    /// One pass over `layer`, copying the entries in `ordinals` into `dir`; found ones are
    /// removed from `ordinals`. Stops reading as soon as all are found.
    fn extract_from_layer(
        &self,
        dir: &Path,
        layer: &BlobSource,
        ordinals: &mut Wanted,
    ) -> Result<(), RootfsError> {
        let open_err = |source| RootfsError::OpenBlob {
            digest: layer.digest.clone(),
            path: layer.path.clone(),
            source,
        };
        let file = File::open(&layer.path).map_err(open_err)?;
        let (_, stream) = reader::open_decompressed(io::BufReader::new(file)).map_err(open_err)?;
        let name = layer.digest.to_string();
        reader::read_entries(stream, &name, |entry: TarEntry, content: &mut dyn Read| {
            let Some((path, size)) = ordinals.remove(&entry.ordinal) else {
                return Ok(ControlFlow::Continue(()));
            };
            // Hard links share their target's entry, so only the size can be checked here.
            if entry.kind != TarKind::File || entry.size != size {
                return Err(RootfsError::MissingInLayer {
                    layer: layer.digest.clone(),
                    path: path.absolute(),
                    ordinal: entry.ordinal,
                });
            }
            let host = write_scratch(dir, content)?;
            lock(&self.shared.extracted)
                .entry((layer.digest.clone(), entry.ordinal))
                .or_insert(host);
            Ok(if ordinals.is_empty() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
    }

    /// The scratch directory, creating the private temp dir on first use.
    fn scratch_dir(&self) -> Result<PathBuf, RootfsError> {
        if let Some(dir) = &self.shared.given_dir {
            return Ok(dir.clone());
        }
        let mut temp = lock(&self.shared.temp_dir);
        if let Some(dir) = temp.as_ref() {
            return Ok(dir.path().to_owned());
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-lowerfs-")
            .tempdir()
            .map_err(|source| RootfsError::Scratch {
                path: std::env::temp_dir(),
                source,
            })?;
        let path = dir.path().to_owned();
        *temp = Some(dir);
        Ok(path)
    }

    fn cached(&self, layer: &Digest, ordinal: u64) -> Option<PathBuf> {
        lock(&self.shared.extracted)
            .get(&(layer.clone(), ordinal))
            .cloned()
    }
}

/// Locks a mutex; a poisoned lock only means another thread panicked mid-insert into a cache
/// whose entries are each complete, so the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies `content` into a new, uniquely named file of `dir`.
fn write_scratch(dir: &Path, content: &mut dyn Read) -> Result<PathBuf, RootfsError> {
    let scratch_err = |path: &Path, source| RootfsError::Scratch {
        path: path.to_owned(),
        source,
    };
    let (file, path) = tempfile::Builder::new()
        .prefix("lower-")
        .tempfile_in(dir)
        .map_err(|e| scratch_err(dir, e))?
        .keep()
        .map_err(|e| scratch_err(dir, e.error))?;
    let mut out = BufWriter::new(file);
    io::copy(content, &mut out).map_err(|e| scratch_err(&path, e))?;
    out.flush().map_err(|e| scratch_err(&path, e))?;
    Ok(path)
}

/// Turns one blob entry into a change (`None` for AUFS bookkeeping names).
fn blob_change(entry: TarEntry, layer: &Arc<BlobSource>) -> Option<Change> {
    if is_aufs_meta(&entry.path) {
        return None;
    }
    if let Some(whiteout) = whiteout_of(&entry.path) {
        return Some(match whiteout {
            Whiteout::Remove(path) => Change::Remove(path),
            Whiteout::Opaque(path) => Change::Opaque(path),
        });
    }
    let (kind, data) = match entry.kind {
        TarKind::Dir => (NodeKind::Dir, Data::None),
        TarKind::File => (
            NodeKind::File { size: entry.size },
            Data::Blob {
                layer: layer.clone(),
                ordinal: entry.ordinal,
            },
        ),
        TarKind::Symlink(target) => (NodeKind::Symlink(target), Data::None),
        TarKind::Hardlink(target) => return Some(Change::Link(entry.path, target)),
        TarKind::CharDevice(major, minor) => (NodeKind::CharDevice(major, minor), Data::None),
        TarKind::BlockDevice(major, minor) => (NodeKind::BlockDevice(major, minor), Data::None),
        TarKind::Fifo => (NodeKind::Fifo, Data::None),
    };
    Some(Change::Put(
        entry.path,
        Node {
            kind,
            meta: entry.meta,
            data,
        },
    ))
}

/// Removes everything below `path`, and `path` itself when `inclusive`.
fn remove_tree(nodes: &mut BTreeMap<LayerPath, Node>, path: &LayerPath, inclusive: bool) {
    for below in keys_below(nodes, path) {
        nodes.remove(&below);
    }
    if inclusive {
        nodes.remove(path);
    }
}

/// Sets `path` to `node`: parents become directories if needed, and a non-directory drops
/// everything below it. A directory over a directory keeps the children.
fn put(nodes: &mut BTreeMap<LayerPath, Node>, path: LayerPath, node: Node) {
    if path.is_root() {
        if node.kind == NodeKind::Dir {
            nodes.insert(path, node);
        }
        return;
    }
    for ancestor in path.ancestors() {
        let is_dir = matches!(nodes.get(&ancestor), Some(n) if n.kind == NodeKind::Dir);
        if !is_dir {
            nodes.insert(
                ancestor,
                Node {
                    kind: NodeKind::Dir,
                    meta: Metadata::root_owned(0o755),
                    data: Data::None,
                },
            );
        }
    }
    if node.kind != NodeKind::Dir {
        remove_tree(nodes, &path, false);
    }
    nodes.insert(path, node);
}
