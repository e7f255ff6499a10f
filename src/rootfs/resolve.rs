//! The one symlink resolver that never leaves its root, shared by image filesystems
//! ([`super::FsView::resolve`]) and the build context (`crate::context`).
//!
//! [`resolve_confined`] walks a path one component at a time, asking the caller what each
//! prefix is ([`Node`]); it follows symlinks (every intermediate one, and the last one when
//! asked) at most [`MAX_SYMLINKS`] times. What "confined" means is the [`Confinement`]: inside
//! an image it is a chroot (`..` stops at the root, an absolute target restarts there), in a
//! build context leaving the root is an error naming the symlink. Missing components are
//! appended lexically, so the result may not exist.

use std::path::Path;

use crate::layer::LayerPath;

/// Symlinks followed in one resolution before giving up, as Linux's MAXSYMLINKS.
pub const MAX_SYMLINKS: usize = 40;

/// What a path is, as far as resolution cares.
#[derive(Debug)]
pub enum Node {
    /// A directory.
    Dir,
    /// A symbolic link and its target, verbatim.
    Symlink(String),
    /// Anything else (file, device, pipe).
    Other,
    /// Nothing is there.
    Missing,
}

/// How a resolution is kept inside its root.
#[derive(Clone, Copy, Debug)]
pub enum Confinement<'a> {
    /// As the kernel inside a chroot: `..` at the root stays at the root, an absolute target
    /// restarts at the root, and a non-directory in the middle of the path is an error.
    Chroot,
    /// A host directory whose outside must not be reached: `..` above the root and a symlink
    /// whose target lies outside are errors; an absolute target is a host path, which must lie
    /// below `host_root`.
    HostDir {
        /// The root, as a canonical host path.
        host_root: &'a Path,
    },
}

/// Why a path could not be resolved inside its root.
#[derive(Debug)]
pub enum ResolveError<E> {
    /// Looking a prefix up failed.
    Lookup(E),
    /// More than [`MAX_SYMLINKS`] symlinks (a loop, usually).
    SymlinkLoop,
    /// A component in the middle of the path is not a directory ([`Confinement::Chroot`]).
    NotADirectory(LayerPath),
    /// The path climbs above the root with `..`, or holds a component that is not a name
    /// ([`Confinement::HostDir`]).
    AboveRoot,
    /// A component is not a valid name ([`Confinement::Chroot`]).
    BadComponent,
    /// The symlink `link` points outside the root ([`Confinement::HostDir`]).
    SymlinkEscapes {
        /// The symlink.
        link: LayerPath,
        /// Its target, verbatim.
        target: String,
    },
}

/// Resolves the symlinks of `path` (relative to the root; a leading `/` changes nothing)
/// inside the root, following the last component too when `follow_last`; `lookup` says what
/// each prefix is, without following it.
pub fn resolve_confined<E>(
    path: &str,
    follow_last: bool,
    confinement: Confinement<'_>,
    mut lookup: impl FnMut(&LayerPath) -> Result<Node, E>,
) -> Result<LayerPath, ResolveError<E>> {
    let chroot = matches!(confinement, Confinement::Chroot);
    let mut pending = components_reversed(path);
    let mut resolved = LayerPath::root();
    let mut followed = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                resolved = match resolved.parent() {
                    Some(parent) => parent,
                    None if chroot => LayerPath::root(),
                    None => return Err(ResolveError::AboveRoot),
                };
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&component).map_err(|_| match confinement {
            Confinement::Chroot => ResolveError::BadComponent,
            Confinement::HostDir { .. } => ResolveError::AboveRoot,
        })?;
        let is_last = pending.is_empty();
        match lookup(&candidate).map_err(ResolveError::Lookup)? {
            Node::Symlink(target) if !is_last || follow_last => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(ResolveError::SymlinkLoop);
                }
                let target = match confinement {
                    Confinement::Chroot => {
                        if target.starts_with('/') {
                            resolved = LayerPath::root();
                        }
                        target
                    }
                    Confinement::HostDir { host_root } => {
                        let escapes = || ResolveError::SymlinkEscapes {
                            link: candidate.clone(),
                            target: target.clone(),
                        };
                        let relative = if target.starts_with('/') {
                            resolved = LayerPath::root();
                            Path::new(&target)
                                .strip_prefix(host_root)
                                .map_err(|_| escapes())?
                                .to_string_lossy()
                                .into_owned()
                        } else {
                            target.clone()
                        };
                        // A relative target may not climb above the root either.
                        let mut depth = resolved
                            .as_str()
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .count();
                        for part in relative.split('/') {
                            match part {
                                "" | "." => {}
                                ".." => depth = depth.checked_sub(1).ok_or_else(escapes)?,
                                _ => depth += 1,
                            }
                        }
                        relative
                    }
                };
                pending.extend(components_reversed(&target));
            }
            Node::Other if chroot && !is_last => {
                return Err(ResolveError::NotADirectory(candidate));
            }
            _ => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// The non-empty components of `path`, last first (so `pop` takes them in order).
fn components_reversed(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect()
}
