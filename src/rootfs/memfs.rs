//! `MemFs`: an in-memory [`FsView`] built from [`Diff`]s, for tests and for simple stage views
//! (a `scratch` stage plus the Diffs its steps produced).
//!
//! [`MemFs::from_diff`] takes one Diff; [`MemFs::apply`] lays further Diffs on top as a layer
//! would (whiteouts delete, a non-directory replaces a directory and its contents). Parent
//! directories a Diff implies but does not list appear as root-owned `0755` directories. Hard
//! links become a second node with the target's content. Symlinks are resolved by the shared
//! [`FsView::resolve`], so they never leave the root.

use std::collections::BTreeMap;

use crate::layer::{Diff, EntryKind, FileContent, LayerPath, Metadata};
use crate::rootfs::view::{FsNode, FsView, NodeKind, ViewError};

/// An in-memory filesystem.
#[derive(Debug, Clone)]
pub struct MemFs {
    nodes: BTreeMap<LayerPath, (FsNode, Option<FileContent>)>,
}

impl Default for MemFs {
    fn default() -> Self {
        MemFs::new()
    }
}

impl MemFs {
    /// An empty filesystem: only the root directory (root-owned, `0755`).
    pub fn new() -> MemFs {
        let mut nodes = BTreeMap::new();
        nodes.insert(LayerPath::root(), (dir_node(), None));
        MemFs { nodes }
    }

    /// The filesystem a single layer describes.
    pub fn from_diff(diff: &Diff) -> MemFs {
        let mut fs = MemFs::new();
        fs.apply(diff);
        fs
    }

    /// Applies `diff` on top, as the next layer.
    pub fn apply(&mut self, diff: &Diff) {
        for (path, entry) in diff.iter() {
            for ancestor in path.ancestors() {
                let is_dir = matches!(
                    self.nodes.get(&ancestor),
                    Some((
                        FsNode {
                            kind: NodeKind::Dir,
                            ..
                        },
                        _
                    ))
                );
                if !is_dir {
                    self.remove_below(&ancestor);
                    self.nodes.insert(ancestor, (dir_node(), None));
                }
            }
            let (kind, content) = match &entry.kind {
                EntryKind::Whiteout => {
                    self.remove_below(path);
                    self.nodes.remove(path);
                    continue;
                }
                EntryKind::OpaqueDir => {
                    self.remove_below(path);
                    (NodeKind::Dir, None)
                }
                EntryKind::Dir => (NodeKind::Dir, None),
                EntryKind::File(content) => (
                    NodeKind::File {
                        size: content.size(),
                    },
                    Some(content.clone()),
                ),
                EntryKind::Hardlink(target) => match self.nodes.get(target) {
                    Some((node, content)) => (node.kind.clone(), content.clone()),
                    None => continue,
                },
                EntryKind::Symlink(target) => (NodeKind::Symlink(target.clone()), None),
                EntryKind::CharDevice(major, minor) => (NodeKind::CharDevice(*major, *minor), None),
                EntryKind::BlockDevice(major, minor) => {
                    (NodeKind::BlockDevice(*major, *minor), None)
                }
                EntryKind::Fifo => (NodeKind::Fifo, None),
            };
            if kind != NodeKind::Dir {
                self.remove_below(path);
            }
            let node = FsNode {
                kind,
                meta: entry.meta.clone(),
            };
            self.nodes.insert(path.clone(), (node, content));
        }
    }

    fn remove_below(&mut self, path: &LayerPath) {
        let below: Vec<LayerPath> = self
            .nodes
            .keys()
            .filter(|p| *p != path && p.starts_with(path))
            .cloned()
            .collect();
        for p in below {
            self.nodes.remove(&p);
        }
    }
}

fn dir_node() -> FsNode {
    FsNode {
        kind: NodeKind::Dir,
        meta: Metadata::root_owned(0o755),
    }
}

impl FsView for MemFs {
    fn lstat_exact(&self, path: &LayerPath) -> Result<Option<FsNode>, ViewError> {
        Ok(self.nodes.get(path).map(|(node, _)| node.clone()))
    }

    fn read_dir(&self, path: &LayerPath) -> Result<Vec<String>, ViewError> {
        match self.nodes.get(path) {
            Some((
                FsNode {
                    kind: NodeKind::Dir,
                    ..
                },
                _,
            )) => {}
            Some(_) => return Err(ViewError::NotADirectory(path.absolute())),
            None => return Err(ViewError::NotFound(path.absolute())),
        }
        let mut names: Vec<String> = self
            .nodes
            .keys()
            .filter(|p| !p.is_root() && p.parent().as_ref() == Some(path))
            .map(|p| p.file_name().to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn content(&self, path: &LayerPath) -> Result<FileContent, ViewError> {
        match self.nodes.get(path) {
            Some((_, Some(content))) => Ok(content.clone()),
            _ => Err(ViewError::NotFound(path.absolute())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::layer::Entry;

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            kind,
            meta: Metadata::root_owned(0o644),
        }
    }

    fn path(raw: &str) -> LayerPath {
        LayerPath::new(raw).expect("valid path")
    }

    #[test]
    fn builds_from_diffs_and_resolves_inside_the_root() {
        let mut diff = Diff::new();
        let bytes: Arc<[u8]> = Arc::from(&b"root:x:0:0::/root:/bin/sh\n"[..]);
        diff.insert(
            path("etc/passwd"),
            entry(EntryKind::File(FileContent::Bytes(bytes))),
        );
        diff.insert(
            path("etc/link"),
            entry(EntryKind::Symlink("../../../etc/passwd".into())),
        );
        diff.insert(path("usr/bin"), entry(EntryKind::Dir));
        diff.insert(path("bin"), entry(EntryKind::Symlink("usr/bin".into())));
        let fs = MemFs::from_diff(&diff);
        assert_eq!(
            fs.read_dir(&LayerPath::root()).expect("root"),
            ["bin", "etc", "usr"]
        );
        assert_eq!(fs.read_dir(&path("etc")).expect("etc"), ["link", "passwd"]);
        assert_eq!(
            fs.resolve(&path("etc/link"), true).expect("resolves"),
            path("etc/passwd")
        );
        assert_eq!(
            fs.resolve(&path("bin/sh"), true).expect("resolves"),
            path("usr/bin/sh")
        );
        assert!(
            fs.read_file(&path("etc/link"))
                .expect("reads")
                .starts_with(b"root:")
        );

        let mut later = Diff::new();
        later.whiteout(path("etc"));
        let mut fs = fs;
        fs.apply(&later);
        assert!(
            fs.lstat_exact(&path("etc/passwd"))
                .expect("lookup")
                .is_none()
        );
        assert_eq!(
            fs.read_dir(&LayerPath::root()).expect("root"),
            ["bin", "usr"]
        );
    }
}
