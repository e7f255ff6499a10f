//! COPY and ADD: sources from the context or another stage, mapped onto the destination as Docker does.
//!
//! [`copy`] takes a [`CopyRequest`] (sources and destination already variable-expanded, the
//! stage's WORKDIR, where sources come from, the destination stage's filesystem) and returns a
//! [`CopyOutput`]: the layer's [`Diff`] and every input it consumed (for the step cache key and
//! provenance; the executor hashes contents, nothing is hashed here except for `--checksum`).
//!
//! The mapping follows BuildKit (`dockerfile2llb` and fsutil's `copy`):
//! - the destination is a directory when it ends in `/` (or is `.`), or already is one; with
//!   more than one source (after wildcard expansion) it must be one, otherwise Docker's "When
//!   using COPY with more than one source file, the destination must be a directory and end
//!   with a /";
//! - a directory source copies its contents, not itself; a file source keeps its name inside a
//!   destination directory and takes the destination's name otherwise; a symlink named as a
//!   source is followed (inside its root), a symlink inside a copied directory is copied verbatim;
//! - missing parent directories are created `0755`, owned by the `--chown` owner or root
//!   (fsutil's `MkdirAll` with the chowner);
//! - copied entries keep mode and mtime; owner is `--chown`, else 0:0 from the context and the
//!   source's owner from a stage; `--chmod` applies to files and directories;
//! - hard links inside one COPY from the context stay hard links;
//! - the destination path is resolved through the target's symlinks inside its root.
//!
//! ADD additionally extracts local tar archives (detected by content) into the destination,
//! refuses URLs, and verifies `--checksum`.

mod archive;
mod owner;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::context::{Context, ContextError};
use crate::digest::Digest;
use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::material::StepOutput;
use crate::rootfs::{FsView, NodeKind, ViewError};

pub use archive::ArchiveError;
pub use owner::{Owner, parse_chmod, parse_chown};
use source::{Item, ItemKind, Matched, from_context, from_stage, lstat};

/// Where COPY sources are read from.
#[derive(Clone, Copy)]
pub enum CopySource<'a> {
    /// The build context (plain COPY and ADD).
    Context(&'a Context),
    /// Another stage's filesystem (`COPY --from=<stage>`): sources are paths or patterns inside
    /// it, symlinks resolved inside its root.
    Stage(&'a dyn FsView),
}

/// COPY or ADD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddMode<'a> {
    /// Plain COPY: every source is copied as is.
    Copy,
    /// ADD: local tar archives are extracted, URLs are refused.
    Add {
        /// `--checksum=sha256:<hex>`: the digest every source file must have.
        checksum: Option<&'a str>,
    },
}

/// One COPY/ADD instruction, ready to apply.
pub struct CopyRequest<'a> {
    /// Source paths or patterns, variable-expanded, as written.
    pub sources: &'a [String],
    /// The destination, variable-expanded; relative destinations resolve against `workdir`.
    pub dest: &'a str,
    /// The stage's WORKDIR (absolute; `/` when unset).
    pub workdir: &'a str,
    /// Where sources are read from.
    pub from: CopySource<'a>,
    /// The destination stage's current filesystem: for `--chown` names, for whether the
    /// destination exists, and to resolve symlinks in the destination path.
    pub target: &'a dyn FsView,
    /// `--chown` as written: `user`, `user:group`, `uid` or `uid:gid`.
    pub chown: Option<&'a str>,
    /// `--chmod` as written (octal).
    pub chmod: Option<&'a str>,
    /// `--link`: recorded in the output; it does not change the content.
    pub link: bool,
    /// COPY or ADD.
    pub add: AddMode<'a>,
    /// A directory ADD may extract archive contents into; it must outlive the layer write.
    pub scratch_dir: &'a Path,
}

/// Where one consumed input lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOrigin {
    /// A file of the build context.
    Host(PathBuf),
    /// A file of the source stage.
    Stage(LayerPath),
}

/// One input a COPY consumed, for the cache key and provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInput {
    /// The source as written in the Dockerfile.
    pub src: String,
    /// The file's path relative to the context root, or inside the source stage.
    pub path: LayerPath,
    /// Where its bytes are.
    pub origin: InputOrigin,
    /// Size in bytes.
    pub size: u64,
}

/// What a COPY produced: the layer's changes, and as details what it read. Its materials are
/// the executor's to record (the context is pinned as a whole).
pub type CopyOutput = StepOutput<CopyDetails>;

/// What only a COPY returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyDetails {
    /// Every regular file read, in the order copied.
    pub inputs: Vec<CopyInput>,
    /// `--link` was given.
    pub link: bool,
}

/// Why a COPY or ADD failed. The caller adds the Dockerfile line.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Resolving a context source failed.
    #[error(transparent)]
    Context(ContextError),
    /// A `--from` source matches nothing in the stage.
    #[error("COPY --from source `{src}` not found in the source stage")]
    StageNotFound {
        /// The source as written.
        src: String,
    },
    /// A source pattern is malformed.
    #[error("COPY source `{src}` is not a valid pattern")]
    BadPattern {
        /// The source as written.
        src: String,
    },
    /// Several sources, and the destination is not a directory.
    #[error(
        "When using {instruction} with more than one source file, the destination must be a \
         directory and end with a / (destination `{dest}`)"
    )]
    NeedsDirectory {
        /// `COPY` or `ADD`.
        instruction: &'static str,
        /// The destination as written.
        dest: String,
    },
    /// A path that must be a directory is something else.
    #[error("cannot copy to `{path}`: it exists and is not a directory")]
    NotADirectory {
        /// The path in the destination stage.
        path: String,
    },
    /// A file would replace a directory.
    #[error("cannot replace directory `{path}` with a file")]
    ReplacesDirectory {
        /// The path in the destination stage.
        path: String,
    },
    /// `--chown` is malformed.
    #[error("invalid --chown value `{value}`: expected user, user:group, uid or uid:gid")]
    BadChown {
        /// The value as written.
        value: String,
    },
    /// `--chown` names a user the destination stage does not have.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser {
        /// The user name.
        name: String,
    },
    /// `--chown` names a group the destination stage does not have.
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup {
        /// The group name.
        name: String,
    },
    /// `--chmod` is malformed.
    #[error("invalid --chmod value `{value}`: expected an octal mode such as 0755")]
    BadChmod {
        /// The value as written.
        value: String,
    },
    /// ADD of a remote URL.
    #[error(
        "ADD from a URL is not supported yet (`{src}`): use a pinned COPY or `ADD --checksum` \
         with a local file"
    )]
    AddUrl {
        /// The URL.
        src: String,
    },
    /// `--checksum` is not a sha256 digest.
    #[error("invalid --checksum value `{value}`: expected sha256:<64 hex characters>")]
    BadChecksum {
        /// The value as written.
        value: String,
    },
    /// `--checksum` on something other than regular files.
    #[error("ADD --checksum needs regular file sources; `{src}` is not one")]
    ChecksumNeedsFile {
        /// The source as written.
        src: String,
    },
    /// A source's digest differs from `--checksum`.
    #[error("ADD source `{src}` has digest {actual}, but --checksum expects {expected}")]
    ChecksumMismatch {
        /// The source as written.
        src: String,
        /// The `--checksum` value.
        expected: Digest,
        /// The file's digest.
        actual: Digest,
    },
    /// Extracting an ADDed archive failed.
    #[error("failed to extract ADD source `{src}`")]
    Archive {
        /// The source as written.
        src: String,
        /// The cause.
        #[source]
        cause: Box<ArchiveError>,
    },
    /// A context source is a socket, pipe or device.
    #[error(
        "COPY source `{path}` in the build context is a {kind}; only files, directories and symlinks can be copied"
    )]
    SpecialFile {
        /// The path relative to the context root.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// Reading a stage path failed.
    #[error("failed to read `{path}`")]
    View {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        cause: ViewError,
    },
    /// Reading a context file failed.
    #[error("failed to read `{path}`")]
    Read {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
}

/// Applies one COPY or ADD and returns its Diff and inputs.
pub fn copy(request: &CopyRequest) -> Result<CopyOutput, CopyError> {
    let owner = request
        .chown
        .map(|value| parse_chown(value, request.target))
        .transpose()?;
    let chmod = request.chmod.map(parse_chmod).transpose()?;
    let checksum = match request.add {
        AddMode::Add {
            checksum: Some(value),
        } => Some(
            value
                .parse::<Digest>()
                .map_err(|_| CopyError::BadChecksum {
                    value: value.to_owned(),
                })?,
        ),
        _ => None,
    };
    let is_add = matches!(request.add, AddMode::Add { .. });
    let instruction = if is_add { "ADD" } else { "COPY" };

    let mut matches = Vec::new();
    for src in request.sources {
        if is_add && is_url(src) {
            return Err(CopyError::AddUrl { src: src.clone() });
        }
        match request.from {
            CopySource::Context(context) => {
                for found in context.resolve(src).map_err(CopyError::Context)? {
                    matches.push(from_context(
                        context,
                        &found.src,
                        &found.matched,
                        &found.entry,
                    )?);
                }
            }
            CopySource::Stage(view) => matches.extend(from_stage(view, src)?),
        }
    }

    let dest_syntax_dir = request.dest.ends_with('/')
        || request.dest.is_empty()
        || request.dest == "."
        || request.dest.ends_with("/.");
    let absolute = if request.dest.starts_with('/') {
        request.dest.to_owned()
    } else {
        format!("{}/{}", request.workdir, request.dest)
    };
    let lexical = LayerPath::new_clamped(&absolute).map_err(|_| CopyError::NotADirectory {
        path: absolute.clone(),
    })?;
    let dest = request
        .target
        .resolve(&lexical, true)
        .map_err(|cause| CopyError::View {
            path: lexical.absolute(),
            cause,
        })?;
    let dest_node = lstat(request.target, &dest)?;
    let dest_is_dir = matches!(&dest_node, Some(node) if node.kind == NodeKind::Dir);
    if matches.len() > 1 {
        if dest_node.is_some() && !dest_is_dir {
            return Err(CopyError::NotADirectory {
                path: dest.absolute(),
            });
        }
        if !dest_syntax_dir && !dest_is_dir {
            return Err(CopyError::NeedsDirectory {
                instruction,
                dest: request.dest.to_owned(),
            });
        }
    }
    let into_dir = dest_syntax_dir || dest_is_dir || matches.len() > 1;

    let mut builder = Builder {
        target: request.target,
        diff: Diff::new(),
        inputs: Vec::new(),
        owner,
        chmod,
        links: BTreeMap::new(),
    };
    for found in matches {
        if let Some(expected) = &checksum {
            verify_checksum(&found, expected)?;
        }
        if let Some(host) = found.archive_candidate().filter(|_| is_add) {
            let compression = archive::sniff(&host).map_err(|cause| CopyError::Read {
                path: host.clone(),
                cause,
            })?;
            if let Some(compression) = compression {
                builder.ensure_dir(&dest)?;
                let extracted =
                    archive::extract(&host, compression, &found.src, request.scratch_dir, &dest)
                        .map_err(|cause| CopyError::Archive {
                            src: found.src.clone(),
                            cause: Box::new(cause),
                        })?;
                builder.record_input(&found.src, &found.root);
                builder.diff.merge(extracted);
                continue;
            }
        }
        if found.root.kind == ItemKind::Dir {
            builder.ensure_dir(&dest)?;
            for (rel, item) in &found.tree {
                let path = dest.join(rel).map_err(|_| CopyError::NotADirectory {
                    path: format!("{}/{rel}", dest.absolute()),
                })?;
                builder.place(&found.src, &path, item)?;
            }
        } else {
            let path = if into_dir {
                dest.join(&found.name)
                    .map_err(|_| CopyError::NotADirectory {
                        path: dest.absolute(),
                    })?
            } else {
                dest.clone()
            };
            if let Some(parent) = path.parent() {
                builder.ensure_dir(&parent)?;
            }
            builder.place(&found.src, &path, &found.root)?;
        }
    }
    Ok(CopyOutput {
        diff: builder.diff,
        materials: Vec::new(),
        warnings: Vec::new(),
        details: CopyDetails {
            inputs: builder.inputs,
            link: request.link,
        },
    })
}

fn is_url(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn verify_checksum(found: &Matched, expected: &Digest) -> Result<(), CopyError> {
    let not_file = || CopyError::ChecksumNeedsFile {
        src: found.src.clone(),
    };
    let actual = match &found.root.kind {
        ItemKind::File(FileContent::HostFile { path, .. }) => {
            archive::file_digest(path).map_err(|cause| CopyError::Read {
                path: path.clone(),
                cause,
            })?
        }
        ItemKind::File(FileContent::Bytes(bytes)) => Digest::of(bytes),
        _ => return Err(not_file()),
    };
    if &actual != expected {
        return Err(CopyError::ChecksumMismatch {
            src: found.src.clone(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Accumulates the Diff against the destination stage.
struct Builder<'a> {
    target: &'a dyn FsView,
    diff: Diff,
    inputs: Vec<CopyInput>,
    owner: Option<Owner>,
    chmod: Option<u32>,
    /// First destination of each multiply linked context file.
    links: BTreeMap<(u64, u64), LayerPath>,
}

impl Builder<'_> {
    /// What is at `path` after the changes so far: `Some(true)` a directory, `Some(false)`
    /// something else, `None` nothing.
    fn is_dir(&self, path: &LayerPath) -> Result<Option<bool>, CopyError> {
        if let Some(entry) = self.diff.get(path) {
            return Ok(match entry.kind {
                EntryKind::Whiteout => None,
                EntryKind::Dir | EntryKind::OpaqueDir => Some(true),
                _ => Some(false),
            });
        }
        Ok(lstat(self.target, path)?.map(|node| node.kind == NodeKind::Dir))
    }

    /// Creates `path` and its missing parents as `0755` directories owned by the chown owner.
    fn ensure_dir(&mut self, path: &LayerPath) -> Result<(), CopyError> {
        let mut chain = path.ancestors();
        if !path.is_root() {
            chain.push(path.clone());
        }
        for dir in chain {
            match self.is_dir(&dir)? {
                Some(true) => {}
                Some(false) => {
                    return Err(CopyError::NotADirectory {
                        path: dir.absolute(),
                    });
                }
                None => {
                    let owner = self.owner.unwrap_or(Owner { uid: 0, gid: 0 });
                    let meta = Metadata {
                        mode: 0o755,
                        uid: owner.uid,
                        gid: owner.gid,
                        mtime: 0,
                        xattrs: BTreeMap::new(),
                    };
                    self.diff.insert(
                        dir,
                        Entry {
                            kind: EntryKind::Dir,
                            meta,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes `item` at `path`, applying chown/chmod and keeping hard links.
    fn place(&mut self, src: &str, path: &LayerPath, item: &Item) -> Result<(), CopyError> {
        let existing = self.is_dir(path)?;
        let mut meta = item.meta.clone();
        if let Some(owner) = self.owner {
            meta.uid = owner.uid;
            meta.gid = owner.gid;
        }
        let kind = match &item.kind {
            ItemKind::Dir => {
                if existing == Some(false) {
                    return Err(CopyError::NotADirectory {
                        path: path.absolute(),
                    });
                }
                if let Some(mode) = self.chmod {
                    meta.mode = mode;
                }
                EntryKind::Dir
            }
            other => {
                if existing == Some(true) {
                    return Err(CopyError::ReplacesDirectory {
                        path: path.absolute(),
                    });
                }
                match other {
                    ItemKind::File(content) => {
                        if let Some(mode) = self.chmod {
                            meta.mode = mode;
                        }
                        let first = item.link_key.and_then(|key| self.links.get(&key).cloned());
                        match first {
                            Some(first) => EntryKind::Hardlink(first),
                            None => {
                                if let Some(key) = item.link_key {
                                    self.links.insert(key, path.clone());
                                }
                                self.record_input(src, item);
                                EntryKind::File(content.clone())
                            }
                        }
                    }
                    ItemKind::Symlink(target) => {
                        meta.mode = 0o777;
                        EntryKind::Symlink(target.clone())
                    }
                    ItemKind::CharDevice(major, minor) => EntryKind::CharDevice(*major, *minor),
                    ItemKind::BlockDevice(major, minor) => EntryKind::BlockDevice(*major, *minor),
                    ItemKind::Fifo => EntryKind::Fifo,
                    ItemKind::Dir => EntryKind::Dir,
                }
            }
        };
        self.diff.insert(path.clone(), Entry { kind, meta });
        Ok(())
    }

    fn record_input(&mut self, src: &str, item: &Item) {
        let (origin, size) = match (&item.kind, &item.host) {
            (ItemKind::File(content), Some(host)) => {
                (InputOrigin::Host(host.clone()), content.size())
            }
            (ItemKind::File(content), None) => {
                (InputOrigin::Stage(item.origin_path.clone()), content.size())
            }
            _ => return,
        };
        self.inputs.push(CopyInput {
            src: src.to_owned(),
            path: item.origin_path.clone(),
            origin,
            size,
        });
    }
}

#[cfg(test)]
mod tests;
