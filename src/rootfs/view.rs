//! `FsView`: the read-only filesystem interface steps read through, and symlink resolution that
//! never leaves the root.
//!
//! A stage's lower layers (`LowerFs`), an in-memory tree in tests, or any other source of files
//! implements the three primitive lookups; [`FsView::resolve`] and [`FsView::stat`] are built on
//! them, so every implementation confines symlinks the same way: an absolute target restarts at
//! the image root, and `..` never climbs above it (as the kernel does inside a chroot).

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

/// Symlinks followed in one resolution before giving up, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

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
        let mut pending: Vec<String> = path
            .as_str()
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut resolved = LayerPath::root();
        let mut followed = 0;
        while let Some(component) = pending.pop() {
            if component == "." {
                continue;
            }
            if component == ".." {
                resolved = resolved.parent().unwrap_or_else(LayerPath::root);
                continue;
            }
            let candidate = resolved
                .join(&component)
                .map_err(|_| ViewError::NotFound(path.absolute()))?;
            let is_last = pending.is_empty();
            match self.lstat_exact(&candidate)? {
                Some(FsNode {
                    kind: NodeKind::Symlink(target),
                    ..
                }) if !is_last || follow_last => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(ViewError::SymlinkLoop(path.absolute()));
                    }
                    if target.starts_with('/') {
                        resolved = LayerPath::root();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(str::to_owned),
                    );
                }
                Some(FsNode {
                    kind: NodeKind::Dir,
                    ..
                }) => resolved = candidate,
                Some(_) if !is_last => return Err(ViewError::NotADirectory(candidate.absolute())),
                _ => resolved = candidate,
            }
        }
        Ok(resolved)
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
