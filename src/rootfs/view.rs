//! `FsView`: the read-only filesystem interface steps read through, and symlink resolution that
//! never leaves the root.
//!
//! A stage's lower layers (`LowerFs`), an in-memory tree in tests, or any other source of files
//! implements the three primitive lookups; [`FsView::resolve`] and [`FsView::stat`] are built on
//! them, so every implementation confines symlinks the same way ([`super::resolve`] in
//! [`Confinement::Chroot`]): an absolute target restarts at the image root, and `..` never
//! climbs above it (as the kernel does inside a chroot).

use super::resolve::{Confinement, Node, ResolveError, resolve_confined};
use crate::layer::{FileContent, LayerPath, Metadata};

/// What kind of object a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Size in bytes.
        size: u64,
    },
    /// A symbolic link with its target, verbatim.
    Symlink(String),
    /// A character device.
    CharDevice(u32, u32),
    /// A block device.
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One node of a filesystem view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsNode {
    /// What it is.
    pub kind: NodeKind,
    /// Owner, mode, time, xattrs.
    pub meta: Metadata,
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A symlink chain is too long or loops.
    #[error("too many levels of symbolic links resolving `{0}`")]
    SymlinkLoop(String),
    /// A path component that must be a directory is not one.
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    /// The path does not exist.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// Reading the underlying data failed.
    #[error("failed to read `{path}` from {source_name}")]
    Read {
        /// The path being read.
        path: String,
        /// Where it was being read from (a layer digest, a directory).
        source_name: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A read-only filesystem.
pub trait FsView {
    /// The node at `path` exactly, following no symlink anywhere in the path. `Ok(None)` when
    /// nothing is there (including when a component is missing).
    fn lstat_exact(&self, path: &LayerPath) -> Result<Option<FsNode>, ViewError>;

    /// The names in directory `path` (already resolved), sorted bytewise.
    fn read_dir(&self, path: &LayerPath) -> Result<Vec<String>, ViewError>;

    /// The content of the regular file at `path` (already resolved), as a Diff can reference it.
    fn content(&self, path: &LayerPath) -> Result<FileContent, ViewError>;

    /// Fails unless the node at `path` (exactly, following nothing) is a directory: what
    /// [`FsView::read_dir`] checks first.
    fn expect_dir(&self, path: &LayerPath) -> Result<(), ViewError> {
        match self.lstat_exact(path)? {
            Some(FsNode {
                kind: NodeKind::Dir,
                ..
            }) => Ok(()),
            Some(_) => Err(ViewError::NotADirectory(path.absolute())),
            None => Err(ViewError::NotFound(path.absolute())),
        }
    }

    /// Resolves symlinks in `path` inside the root: every intermediate component, and the last
    /// one too when `follow_last` is set. The result may not exist (its parent does, or a
    /// component is missing and the rest is appended lexically).
    fn resolve(&self, path: &LayerPath, follow_last: bool) -> Result<LayerPath, ViewError> {
        resolve_confined(path.as_str(), follow_last, Confinement::Chroot, |prefix| {
            Ok(match self.lstat_exact(prefix)? {
                Some(FsNode {
                    kind: NodeKind::Dir,
                    ..
                }) => Node::Dir,
                Some(FsNode {
                    kind: NodeKind::Symlink(target),
                    ..
                }) => Node::Symlink(target),
                Some(_) => Node::Other,
                None => Node::Missing,
            })
        })
        .map_err(|e| match e {
            ResolveError::Lookup(e) => e,
            ResolveError::SymlinkLoop => ViewError::SymlinkLoop(path.absolute()),
            ResolveError::NotADirectory(at) => ViewError::NotADirectory(at.absolute()),
            ResolveError::AboveRoot
            | ResolveError::BadComponent
            | ResolveError::SymlinkEscapes { .. } => ViewError::NotFound(path.absolute()),
        })
    }

    /// The node at `path` with symlinks resolved inside the root (the last one too when
    /// `follow_last`), and the path it resolved to.
    fn stat(
        &self,
        path: &LayerPath,
        follow_last: bool,
    ) -> Result<Option<(LayerPath, FsNode)>, ViewError> {
        let resolved = match self.resolve(path, follow_last) {
            Ok(resolved) => resolved,
            Err(ViewError::NotADirectory(_)) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(self.lstat_exact(&resolved)?.map(|node| (resolved, node)))
    }

    /// Reads a whole regular file (for small files: /etc/passwd, /etc/group), following symlinks.
    fn read_file(&self, path: &LayerPath) -> Result<Vec<u8>, ViewError> {
        let Some((resolved, node)) = self.stat(path, true)? else {
            return Err(ViewError::NotFound(path.absolute()));
        };
        if !matches!(node.kind, NodeKind::File { .. }) {
            return Err(ViewError::NotFound(path.absolute()));
        }
        match self.content(&resolved)? {
            FileContent::Bytes(bytes) => Ok(bytes.to_vec()),
            FileContent::HostFile { path: host, .. } => {
                std::fs::read(&host).map_err(|source| ViewError::Read {
                    path: resolved.absolute(),
                    source_name: host.display().to_string(),
                    source: Box::new(source),
                })
            }
        }
    }
}
