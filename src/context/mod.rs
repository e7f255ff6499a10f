//! The build context: the directory a build reads COPY/ADD sources from, filtered by
//! `.dockerignore`, with every path confined to the context root.
//!
//! [`Context::open`] canonicalizes the root and reads the ignore file ([`ignore`]).
//! [`Context::resolve`] turns one COPY source as written (`app/`, `/src/*.py`, `config.json`)
//! into the [`ContextMatch`]es it names, with Go `filepath.Match` wildcards per component
//! ([`glob`]), symlinks followed inside the root, and ignored files invisible.
//! [`Context::walk`] lists a matched directory's contents, sorted, never following a symlink
//! (inside a copied directory symlinks are copied verbatim). Data leaves as [`ContextEntry`]
//! values naming both the path inside the context and the host path; nothing is hashed here.
//!
//! Escapes are errors, never clamps: a source with `..` above the root, or a symlink whose
//! target lies outside the root when followed as a COPY source, fails naming the source
//! (symlinks are resolved by [`crate::rootfs::resolve`], in its host-directory confinement).

mod error;
pub mod glob;
pub mod ignore;

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layer::{HostStamp, LayerPath};
use crate::rootfs::resolve::{Confinement, Node, ResolveError, resolve_confined};

pub use error::ContextError;
pub use glob::{BadPattern, go_match, has_wildcards};
pub use ignore::{DockerIgnore, IgnoreError, IgnoreMatch, IgnorePattern};

/// What kind of object a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Size in bytes when it was looked at.
        size: u64,
    },
    /// A symbolic link, its target verbatim.
    Symlink(String),
    /// A socket, FIFO or device: not something a build context carries.
    Special(&'static str),
}

/// One file, directory or symlink of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// The path relative to the context root.
    pub path: LayerPath,
    /// The absolute host path.
    pub host_path: PathBuf,
    /// What it is.
    pub kind: ContextKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// `(device, inode)` for regular files with more than one link, so hard links inside a
    /// copied tree can be kept.
    pub link_key: Option<(u64, u64)>,
    /// Its stamp when it was looked at (what the step cache keys an unchanged file by).
    pub stamp: HostStamp,
}

/// One thing a COPY source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextMatch {
    /// The source as written in the Dockerfile.
    pub src: String,
    /// The matched path before its last symlink is followed; its file name is the name the copy
    /// gets inside a destination directory.
    pub matched: LayerPath,
    /// The entry after following symlinks inside the root.
    pub entry: ContextEntry,
}

/// An opened build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: DockerIgnore,
}

impl Context {
    /// Opens the context at `root` and reads its ignore file: `ignore_file` when given and
    /// present (BuildKit's `<Dockerfile>.dockerignore`), else `<root>/.dockerignore` when
    /// present, else nothing is ignored. The Dockerfile and the ignore file are ordinary context
    /// files.
    pub fn open(root: &Path, ignore_file: Option<&Path>) -> Result<Context, ContextError> {
        let root = fs::canonicalize(root).map_err(|cause| ContextError::Open {
            root: root.to_owned(),
            cause,
        })?;
        if !root.is_dir() {
            return Err(ContextError::Open {
                root: root.clone(),
                cause: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let candidates = ignore_file
            .map(Path::to_owned)
            .into_iter()
            .chain(std::iter::once(root.join(".dockerignore")));
        let mut ignore = DockerIgnore::default();
        for candidate in candidates {
            match fs::read_to_string(&candidate) {
                Ok(text) => {
                    let name = candidate
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| ".dockerignore".to_owned());
                    ignore = DockerIgnore::parse(&text, &name).map_err(ContextError::Ignore)?;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(cause) => {
                    return Err(ContextError::ReadIgnore {
                        path: candidate,
                        cause,
                    });
                }
            }
        }
        Ok(Context { root, ignore })
    }

    /// The canonical host path of the context root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed ignore file (empty when there is none).
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// What the ignore file says about `path` (relative to the root).
    pub fn ignored(&self, path: &LayerPath) -> IgnoreMatch<'_> {
        self.ignore.matches(path.as_str())
    }

    /// Resolves one COPY source (relative to the context root; a leading `/` means the root)
    /// into what it names, in sorted order. Wildcards follow Go's `filepath.Match` per
    /// component; a matched directory is not searched further. Every match is followed through
    /// symlinks inside the root. Matching nothing is [`ContextError::NotFound`] (or
    /// [`ContextError::Excluded`] when `.dockerignore` hides it).
    pub fn resolve(&self, src: &str) -> Result<Vec<ContextMatch>, ContextError> {
        let components = lexical_components(src)?;
        let split = components
            .iter()
            .position(|c| has_wildcards(c))
            .unwrap_or(components.len());
        let fixed = components[..split].join("/");
        let rest = components[split..].join("/");
        if rest.is_empty() {
            let matched = self.resolve_path(&fixed, false, src)?;
            self.check_visible(&matched, src)?;
            let entry = self.follow(&matched, src)?;
            return Ok(vec![ContextMatch {
                src: src.to_owned(),
                matched,
                entry,
            }]);
        }
        go_match(&rest, "").map_err(|cause| ContextError::BadPattern {
            src: src.to_owned(),
            cause,
        })?;
        let base = self.resolve_path(&fixed, true, src)?;
        let depth = rest.split('/').count();
        let mut found = Vec::new();
        if let Some(base_entry) = self.lstat(&base)? {
            if base_entry.kind == ContextKind::Dir && self.visible(&base_entry)? {
                self.collect_matches(&base, "", &rest, depth, &mut found, src)?;
            }
        }
        if found.is_empty() {
            return Err(ContextError::NotFound {
                src: src.to_owned(),
            });
        }
        found
            .into_iter()
            .map(|matched| {
                let entry = self.follow(&matched, src)?;
                Ok(ContextMatch {
                    src: src.to_owned(),
                    matched,
                    entry,
                })
            })
            .collect()
    }

    /// Everything below directory `dir` (not `dir` itself), in sorted pre-order, without
    /// following symlinks and without ignored entries. An excluded directory is listed only when
    /// an exception re-includes something below it.
    pub fn walk(&self, dir: &ContextEntry) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out = Vec::new();
        if dir.kind == ContextKind::Dir {
            self.walk_into(&dir.path, &mut out)?;
        }
        Ok(out)
    }

    /// Appends the visible entries below `dir`; returns true when it appended anything.
    fn walk_into(
        &self,
        dir: &LayerPath,
        out: &mut Vec<ContextEntry>,
    ) -> Result<bool, ContextError> {
        let mut any = false;
        for listed in self.read_dir(dir)? {
            let path = listed.entry.path.clone();
            let excluded = self.ignored(&path).is_excluded();
            if listed.entry.kind == ContextKind::Dir {
                if excluded && !self.ignore.may_include_below(path.as_str()) {
                    continue;
                }
                let entry = listed.taken()?;
                let index = out.len();
                out.push(entry);
                let below = self.walk_into(&path, out)?;
                if excluded && !below {
                    out.truncate(index);
                    continue;
                }
                any = true;
            } else if !excluded {
                out.push(listed.taken()?);
                any = true;
            }
        }
        Ok(any)
    }

    /// Finds wildcard matches below `base` (relative name `prefix`), Go `filepath.Walk` order.
    fn collect_matches(
        &self,
        base: &LayerPath,
        prefix: &str,
        pattern: &str,
        depth: usize,
        found: &mut Vec<LayerPath>,
        src: &str,
    ) -> Result<(), ContextError> {
        let dir = if prefix.is_empty() {
            base.clone()
        } else {
            base.join(prefix)
                .map_err(|_| ContextError::OutsideContext {
                    src: src.to_owned(),
                })?
        };
        for listed in self.read_dir(&dir)? {
            let rel = if prefix.is_empty() {
                listed.name.clone()
            } else {
                format!("{prefix}/{}", listed.name)
            };
            let entry = &listed.entry;
            let path = entry.path.clone();
            let excluded = self.ignored(&path).is_excluded();
            let matched = go_match(pattern, &rel).map_err(|cause| ContextError::BadPattern {
                src: src.to_owned(),
                cause,
            })?;
            if matched {
                if self.visible(entry)? {
                    listed.check_name()?;
                    found.push(path);
                }
                continue;
            }
            let deeper = rel.split('/').count() < depth;
            if entry.kind == ContextKind::Dir
                && deeper
                && (!excluded || self.ignore.may_include_below(path.as_str()))
            {
                listed.check_name()?;
                self.collect_matches(base, &rel, pattern, depth, found, src)?;
            }
        }
        Ok(())
    }

    /// Resolves `rel` inside the root, following every symlink on the way (and the last one
    /// when `follow_last`), refusing to leave the root. Missing components are appended
    /// lexically.
    fn resolve_path(
        &self,
        rel: &str,
        follow_last: bool,
        src: &str,
    ) -> Result<LayerPath, ContextError> {
        let confinement = Confinement::HostDir {
            host_root: &self.root,
        };
        resolve_confined(rel, follow_last, confinement, |prefix| {
            Ok(match self.lstat(prefix)? {
                Some(ContextEntry {
                    kind: ContextKind::Symlink(target),
                    ..
                }) => Node::Symlink(target),
                Some(ContextEntry {
                    kind: ContextKind::Dir,
                    ..
                }) => Node::Dir,
                Some(_) => Node::Other,
                None => Node::Missing,
            })
        })
        .map_err(|e| match e {
            ResolveError::Lookup(e) => e,
            ResolveError::SymlinkLoop => ContextError::SymlinkLoop {
                src: src.to_owned(),
            },
            ResolveError::SymlinkEscapes { link, target } => ContextError::SymlinkEscapes {
                src: src.to_owned(),
                link: link.as_str().to_owned(),
                target,
            },
            ResolveError::AboveRoot
            | ResolveError::BadComponent
            | ResolveError::NotADirectory(_) => ContextError::OutsideContext {
                src: src.to_owned(),
            },
        })
    }

    /// The entry at `matched` after following symlinks in the root.
    fn follow(&self, matched: &LayerPath, src: &str) -> Result<ContextEntry, ContextError> {
        let resolved = self.resolve_path(matched.as_str(), true, src)?;
        self.check_visible(&resolved, src)
    }

    /// The entry at `path` when it exists and `.dockerignore` leaves it in the context.
    fn check_visible(&self, path: &LayerPath, src: &str) -> Result<ContextEntry, ContextError> {
        let entry = self.lstat(path)?.ok_or_else(|| ContextError::NotFound {
            src: src.to_owned(),
        })?;
        if self.visible(&entry)? {
            return Ok(entry);
        }
        match self.ignored(path) {
            IgnoreMatch::Exclude(pattern) => Err(ContextError::Excluded {
                src: src.to_owned(),
                pattern: pattern.original.clone(),
                line: pattern.line,
            }),
            _ => Err(ContextError::NotFound {
                src: src.to_owned(),
            }),
        }
    }

    /// True when `entry` is part of the context: not excluded, or an excluded directory that
    /// an exception re-includes something below.
    fn visible(&self, entry: &ContextEntry) -> Result<bool, ContextError> {
        if !self.ignored(&entry.path).is_excluded() {
            return Ok(true);
        }
        Ok(entry.kind == ContextKind::Dir
            && self.ignore.may_include_below(entry.path.as_str())
            && self.walk_into(&entry.path, &mut Vec::new())?)
    }

    /// The entry at `path` exactly (no symlink followed); `None` when missing.
    fn lstat(&self, path: &LayerPath) -> Result<Option<ContextEntry>, ContextError> {
        let host_path = self.root.join(path.as_str());
        let meta = match fs::symlink_metadata(&host_path) {
            Ok(meta) => meta,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(cause) => {
                return Err(ContextError::Read {
                    path: host_path,
                    cause,
                });
            }
        };
        Self::entry_from(path.clone(), host_path, &meta).map(Some)
    }

    /// The entry for `path` at `host_path` from its (not followed) metadata.
    fn entry_from(
        path: LayerPath,
        host_path: PathBuf,
        meta: &fs::Metadata,
    ) -> Result<ContextEntry, ContextError> {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            ContextKind::Dir
        } else if file_type.is_file() {
            ContextKind::File { size: meta.len() }
        } else if file_type.is_symlink() {
            let target = fs::read_link(&host_path).map_err(|cause| ContextError::Read {
                path: host_path.clone(),
                cause,
            })?;
            ContextKind::Symlink(target.to_string_lossy().into_owned())
        } else if file_type.is_fifo() {
            ContextKind::Special("named pipe")
        } else if file_type.is_socket() {
            ContextKind::Special("socket")
        } else {
            ContextKind::Special("device")
        };
        let link_key = (file_type.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        Ok(ContextEntry {
            path,
            host_path,
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            link_key,
            stamp: HostStamp::of(meta),
        })
    }

    /// The entries of directory `dir`, sorted bytewise by name. Each is stat-ed relative to the
    /// open directory, not by its whole path.
    fn read_dir(&self, dir: &LayerPath) -> Result<Vec<Listed>, ContextError> {
        let host = self.root.join(dir.as_str());
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |cause| ContextError::Read { path, cause }
        };
        let mut entries = Vec::new();
        for item in fs::read_dir(&host).map_err(read_err(&host))? {
            let item = item.map_err(read_err(&host))?;
            let host_path = item.path();
            let file_name = item.file_name();
            let name_is_utf8 = file_name.to_str().is_some();
            let name = file_name.to_string_lossy().into_owned();
            let meta = match item.metadata() {
                Ok(meta) => meta,
                // Removed since the directory was listed.
                Err(cause) if cause.kind() == io::ErrorKind::NotFound => continue,
                Err(cause) => return Err(read_err(&host_path)(cause)),
            };
            let Ok(path) = dir.join(&name) else {
                continue;
            };
            let entry = Self::entry_from(path, host_path, &meta)?;
            entries.push(Listed {
                name,
                entry,
                name_is_utf8,
            });
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

/// A directory entry as listed. A name that is not UTF-8 is held in its lossy form, so that
/// ignore rules and wildcards can pass over it; only taking it is an error.
struct Listed {
    name: String,
    entry: ContextEntry,
    name_is_utf8: bool,
}

impl Listed {
    /// The entry, for a build to copy or descend into.
    fn taken(self) -> Result<ContextEntry, ContextError> {
        self.check_name()?;
        Ok(self.entry)
    }

    /// Fails when the name is not UTF-8.
    fn check_name(&self) -> Result<(), ContextError> {
        if self.name_is_utf8 {
            return Ok(());
        }
        Err(ContextError::Read {
            path: self.entry.host_path.clone(),
            cause: io::Error::new(
                io::ErrorKind::InvalidData,
                "the file name is not valid UTF-8, which kiln cannot put in a layer",
            ),
        })
    }
}

/// Splits a COPY source into components after Go's `filepath.Clean`, refusing `..` above the
/// root. A leading `/` means the context root.
fn lexical_components(src: &str) -> Result<Vec<String>, ContextError> {
    let mut parts: Vec<String> = Vec::new();
    for component in src.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ContextError::OutsideContext {
                        src: src.to_owned(),
                    });
                }
            }
            other => parts.push(other.to_owned()),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests;
