//! COPY's sources as items: what a source names in the build context or in another stage's
//! filesystem, resolved (wildcards, symlinks followed inside their root) and walked into a
//! sorted tree of [`Item`]s the destination builder places. Nothing is written here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CopyError;
use crate::context::{Context, ContextEntry, ContextKind, go_match, has_wildcards};
use crate::layer::{FileContent, LayerPath, Metadata};
use crate::rootfs::{FsNode, FsView, NodeKind};

/// What a source item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ItemKind {
    Dir,
    File(FileContent),
    Symlink(String),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
}

/// One file, directory or link to copy.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) kind: ItemKind,
    pub(super) meta: Metadata,
    /// Its path in the context or the source stage.
    pub(super) origin_path: LayerPath,
    /// Its host path (context files).
    pub(super) host: Option<PathBuf>,
    /// `(device, inode)` of a multiply linked context file.
    pub(super) link_key: Option<(u64, u64)>,
}

/// One matched source: the item it names, its name, and for a directory everything below.
pub(super) struct Matched {
    pub(super) src: String,
    pub(super) name: String,
    pub(super) root: Item,
    /// Paths relative to the matched directory, in sorted pre-order.
    pub(super) tree: Vec<(String, Item)>,
}

impl Matched {
    /// The host path of a regular context file ADD may extract.
    pub(super) fn archive_candidate(&self) -> Option<PathBuf> {
        match &self.root.kind {
            ItemKind::File(_) => self.root.host.clone(),
            _ => None,
        }
    }
}

pub(super) fn from_context(
    context: &Context,
    src: &str,
    matched: &LayerPath,
    entry: &ContextEntry,
) -> Result<Matched, CopyError> {
    let root = context_item(entry)?;
    let mut tree = Vec::new();
    if root.kind == ItemKind::Dir {
        for below in context.walk(entry).map_err(CopyError::Context)? {
            let rel = below
                .path
                .as_str()
                .strip_prefix(entry.path.as_str())
                .unwrap_or(below.path.as_str())
                .trim_start_matches('/')
                .to_owned();
            tree.push((rel, context_item(&below)?));
        }
    }
    Ok(Matched {
        src: src.to_owned(),
        name: matched.file_name().to_owned(),
        root,
        tree,
    })
}

fn context_item(entry: &ContextEntry) -> Result<Item, CopyError> {
    let kind = match &entry.kind {
        ContextKind::Dir => ItemKind::Dir,
        ContextKind::File { size } => ItemKind::File(FileContent::HostFile {
            path: entry.host_path.clone(),
            size: *size,
            stamp: Some(entry.stamp),
        }),
        ContextKind::Symlink(target) => ItemKind::Symlink(target.clone()),
        ContextKind::Special(kind) => {
            return Err(CopyError::SpecialFile {
                path: entry.path.as_str().to_owned(),
                kind,
            });
        }
    };
    Ok(Item {
        kind,
        meta: Metadata {
            mode: entry.mode,
            uid: 0,
            gid: 0,
            mtime: entry.mtime,
            xattrs: BTreeMap::new(),
        },
        origin_path: entry.path.clone(),
        host: Some(entry.host_path.clone()),
        link_key: entry.link_key,
    })
}

/// Resolves a `--from` source inside the stage's filesystem.
pub(super) fn from_stage(view: &dyn FsView, src: &str) -> Result<Vec<Matched>, CopyError> {
    let lexical = LayerPath::new_clamped(src).map_err(|_| CopyError::StageNotFound {
        src: src.to_owned(),
    })?;
    let components: Vec<&str> = lexical
        .as_str()
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let split = components
        .iter()
        .position(|c| has_wildcards(c))
        .unwrap_or(components.len());
    let fixed =
        LayerPath::new(&components[..split].join("/")).map_err(|_| CopyError::StageNotFound {
            src: src.to_owned(),
        })?;
    let pattern = components[split..].join("/");
    let mut found = Vec::new();
    if pattern.is_empty() {
        let matched = view
            .resolve(&fixed, false)
            .map_err(|cause| CopyError::View {
                path: fixed.absolute(),
                cause,
            })?;
        if lstat(view, &matched)?.is_some() {
            found.push(matched);
        }
    } else {
        go_match(&pattern, "").map_err(|_| CopyError::BadPattern {
            src: src.to_owned(),
        })?;
        let base = view
            .resolve(&fixed, true)
            .map_err(|cause| CopyError::View {
                path: fixed.absolute(),
                cause,
            })?;
        let depth = pattern.split('/').count();
        if matches!(lstat(view, &base)?, Some(node) if node.kind == NodeKind::Dir) {
            stage_matches(view, &base, "", &pattern, depth, &mut found)?;
        }
    }
    if found.is_empty() {
        return Err(CopyError::StageNotFound {
            src: src.to_owned(),
        });
    }
    let mut out = Vec::new();
    for matched in found {
        let Some((resolved, node)) =
            view.stat(&matched, true).map_err(|cause| CopyError::View {
                path: matched.absolute(),
                cause,
            })?
        else {
            return Err(CopyError::StageNotFound {
                src: src.to_owned(),
            });
        };
        let root = stage_item(view, &resolved, node)?;
        let mut tree = Vec::new();
        if root.kind == ItemKind::Dir {
            stage_walk(view, &resolved, "", &mut tree)?;
        }
        out.push(Matched {
            src: src.to_owned(),
            name: matched.file_name().to_owned(),
            root,
            tree,
        });
    }
    Ok(out)
}

fn stage_matches(
    view: &dyn FsView,
    base: &LayerPath,
    prefix: &str,
    pattern: &str,
    depth: usize,
    found: &mut Vec<LayerPath>,
) -> Result<(), CopyError> {
    let dir = join(base, prefix)?;
    for name in read_dir(view, &dir)? {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = join(&dir, &name)?;
        let Some(node) = lstat(view, &path)? else {
            continue;
        };
        if go_match(pattern, &rel).unwrap_or(false) {
            found.push(path);
        } else if node.kind == NodeKind::Dir && rel.split('/').count() < depth {
            stage_matches(view, base, &rel, pattern, depth, found)?;
        }
    }
    Ok(())
}

fn stage_walk(
    view: &dyn FsView,
    base: &LayerPath,
    prefix: &str,
    out: &mut Vec<(String, Item)>,
) -> Result<(), CopyError> {
    let dir = join(base, prefix)?;
    for name in read_dir(view, &dir)? {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = join(&dir, &name)?;
        let Some(node) = lstat(view, &path)? else {
            continue;
        };
        let is_dir = node.kind == NodeKind::Dir;
        out.push((rel.clone(), stage_item(view, &path, node)?));
        if is_dir {
            stage_walk(view, base, &rel, out)?;
        }
    }
    Ok(())
}

fn stage_item(view: &dyn FsView, path: &LayerPath, node: FsNode) -> Result<Item, CopyError> {
    let kind = match node.kind {
        NodeKind::Dir => ItemKind::Dir,
        NodeKind::File { .. } => {
            ItemKind::File(view.content(path).map_err(|cause| CopyError::View {
                path: path.absolute(),
                cause,
            })?)
        }
        NodeKind::Symlink(target) => ItemKind::Symlink(target),
        NodeKind::CharDevice(major, minor) => ItemKind::CharDevice(major, minor),
        NodeKind::BlockDevice(major, minor) => ItemKind::BlockDevice(major, minor),
        NodeKind::Fifo => ItemKind::Fifo,
    };
    Ok(Item {
        kind,
        meta: node.meta,
        origin_path: path.clone(),
        host: None,
        link_key: None,
    })
}

fn join(base: &LayerPath, rel: &str) -> Result<LayerPath, CopyError> {
    if rel.is_empty() {
        return Ok(base.clone());
    }
    base.join(rel).map_err(|_| CopyError::NotADirectory {
        path: format!("{}/{rel}", base.absolute()),
    })
}

pub(super) fn lstat(view: &dyn FsView, path: &LayerPath) -> Result<Option<FsNode>, CopyError> {
    view.lstat_exact(path).map_err(|cause| CopyError::View {
        path: path.absolute(),
        cause,
    })
}

pub(super) fn read_dir(view: &dyn FsView, path: &LayerPath) -> Result<Vec<String>, CopyError> {
    view.read_dir(path).map_err(|cause| CopyError::View {
        path: path.absolute(),
        cause,
    })
}
