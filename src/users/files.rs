//! What every emulated tool shares: reading the /etc files of the view as they are now (with the
//! command's own earlier writes), rewriting one with its backup, appending a line, editing a
//! member list, creating a home from the skeleton, and the checks and id searches both families
//! of tools make.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::etc::{self, GroupEntry, PasswdEntry};
use super::{SHADOW_KEPT_MODE_BITS, UsersError, UsersOptions};
use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::rootfs::{FsNode, FsView, NodeKind, ViewError};

/// A text file of /etc as it is now.
pub(super) struct EtcFile {
    pub(super) path: LayerPath,
    pub(super) text: Vec<u8>,
    pub(super) meta: Metadata,
}

pub(super) struct Ctx<'v> {
    pub(super) view: &'v dyn FsView,
    pub(super) options: &'v UsersOptions,
    pub(super) diff: Diff,
    /// Files already rewritten by this command: resolved path -> new text (the backup keeps
    /// the state before the command).
    pub(super) written: BTreeMap<LayerPath, Vec<u8>>,
    /// The permission bits a rewritten file (and, for shadow's tools, its backup) keeps of the
    /// file it replaces: busybox's `update_passwd` keeps `0777`, shadow's `commonio` `0664`.
    pub(super) kept_mode_bits: u32,
}

pub(super) fn tool_err(tool: &'static str, message: impl Into<String>) -> UsersError {
    UsersError::Tool {
        tool,
        message: message.into(),
    }
}

/// `etc/NAME` (names are constants of this module, so normalization cannot fail).
pub(super) fn etc_path(name: &str) -> LayerPath {
    LayerPath::new(&format!("etc/{name}")).unwrap_or_else(|_| LayerPath::root())
}

impl Ctx<'_> {
    pub(super) fn read_err<'p>(
        tool: &'static str,
        path: &'p LayerPath,
    ) -> impl Fn(ViewError) -> UsersError + 'p {
        move |source| UsersError::Read {
            tool,
            path: path.absolute(),
            source,
        }
    }

    /// The current state of an /etc file, symlinks resolved; `None` when missing.
    pub(super) fn load(
        &self,
        tool: &'static str,
        name: &str,
    ) -> Result<Option<EtcFile>, UsersError> {
        let path = etc_path(name);
        let err = Self::read_err(tool, &path);
        let Some((resolved, node)) = self.view.stat(&path, true).map_err(&err)? else {
            return Ok(None);
        };
        if !matches!(node.kind, NodeKind::File { .. }) {
            return Ok(None);
        }
        let text = match self.written.get(&resolved) {
            Some(text) => text.clone(),
            None => match etc::read_etc(self.view, &resolved).map_err(&err)? {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        Ok(Some(EtcFile {
            path: resolved,
            text,
            meta: node.meta,
        }))
    }

    pub(super) fn passwd(&self, tool: &'static str) -> Result<Vec<PasswdEntry>, UsersError> {
        Ok(match self.load(tool, "passwd")? {
            Some(f) => etc::parse_passwd(&String::from_utf8_lossy(&f.text)),
            None => Vec::new(),
        })
    }

    pub(super) fn groups(&self, tool: &'static str) -> Result<Vec<GroupEntry>, UsersError> {
        Ok(match self.load(tool, "group")? {
            Some(f) => etc::parse_group(&String::from_utf8_lossy(&f.text)),
            None => Vec::new(),
        })
    }

    /// Writes `text` as the new content of `file`, and its backup `file-` (the content before
    /// this command) the first time the file is written. busybox's backup is the old inode
    /// (hard-linked: every attribute kept); shadow's is a copy with the old owner, mtime and
    /// `mode & 0664`.
    pub(super) fn write(&mut self, file: &EtcFile, text: Vec<u8>) {
        let mtime = self.options.source_date_epoch;
        let backup = LayerPath::new(&format!("{}-", file.path.as_str()));
        // shadow backs a file up once, as it opened it; busybox links the backup to the file
        // as it is at each rewrite (deluser rewrites /etc/group twice).
        let first_write = !self.written.contains_key(&file.path);
        if let (true, Ok(backup)) = (first_write || !self.is_shadow(), backup) {
            let mut meta = match self.diff.get(&file.path) {
                Some(rewritten) => rewritten.meta.clone(),
                None => file.meta.clone(),
            };
            if self.is_shadow() {
                meta.mode &= SHADOW_KEPT_MODE_BITS;
                meta.xattrs = BTreeMap::new();
            }
            self.diff.insert(
                backup,
                Entry {
                    kind: EntryKind::File(FileContent::Bytes(Arc::from(file.text.as_slice()))),
                    meta,
                },
            );
        }
        self.diff.insert(
            file.path.clone(),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_slice()))),
                meta: Metadata {
                    mode: file.meta.mode & self.kept_mode_bits,
                    uid: file.meta.uid,
                    gid: file.meta.gid,
                    mtime,
                    xattrs: BTreeMap::new(),
                },
            },
        );
        self.written.insert(file.path.clone(), text);
        if let Some(parent) = file.path.parent() {
            self.touch_dir(&parent);
        }
    }

    /// True for shadow's tools, false for busybox's.
    pub(super) fn is_shadow(&self) -> bool {
        self.kept_mode_bits == SHADOW_KEPT_MODE_BITS
    }

    /// Records that the tool changed the entries of directory `dir` (a file renamed into it,
    /// a backup linked, a home created): the directory gets the build's time, so it is in the
    /// layer as it is in the real tool's (whose snapshot sees its mtime change).
    pub(super) fn touch_dir(&mut self, dir: &LayerPath) {
        if dir.is_root() || self.diff.get(dir).is_some() {
            return;
        }
        if let Ok(Some(FsNode {
            kind: NodeKind::Dir,
            meta,
        })) = self.view.lstat_exact(dir)
        {
            self.diff.insert(
                dir.clone(),
                Entry {
                    kind: EntryKind::Dir,
                    meta: Metadata {
                        mtime: self.options.source_date_epoch,
                        ..meta
                    },
                },
            );
        }
    }

    /// Appends `line` to /etc/NAME (every existing line rewritten with a trailing newline, as
    /// `update_passwd` does). `required` files that are missing are an error.
    pub(super) fn append(
        &mut self,
        tool: &'static str,
        name: &str,
        line: &str,
        required: bool,
    ) -> Result<(), UsersError> {
        let Some(file) = self.load(tool, name)? else {
            if required {
                return Err(tool_err(
                    tool,
                    format!("can't open '/etc/{name}': No such file or directory"),
                ));
            }
            return Ok(());
        };
        let mut text = normalized_lines(&file.text);
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
        self.write(&file, text);
        Ok(())
    }

    /// Adds `member` to `group`'s member list in /etc/NAME (`update_passwd` with a member).
    pub(super) fn add_member(
        &mut self,
        tool: &'static str,
        name: &str,
        group: &str,
        member: &str,
    ) -> Result<(), UsersError> {
        let Some(file) = self.load(tool, name)? else {
            return Ok(());
        };
        let prefix = format!("{group}:");
        let mut out = Vec::with_capacity(file.text.len() + member.len() + 2);
        let mut changed = false;
        for line in lines(&file.text) {
            out.extend_from_slice(line);
            if line.starts_with(prefix.as_bytes()) {
                if line.last() != Some(&b':') {
                    out.push(b',');
                }
                out.extend_from_slice(member.as_bytes());
                changed = true;
            }
            out.push(b'\n');
        }
        if changed {
            self.write(&file, out);
        }
        Ok(())
    }

    /// The shadow "last change" field: the SOURCE_DATE_EPOCH day where the tools write
    /// today's, empty when that day is 0 (as shadow's `useradd` writes it with
    /// SOURCE_DATE_EPOCH=0: "better disable aging than requiring a password change"), never
    /// `0`, which means "must change the password at next login".
    pub(super) fn last_change(&self) -> String {
        last_change_field(self.options.source_date_epoch)
    }

    // ---- busybox ----

    /// Creates the home (mode `mode`, owned uid:gid) with `skel` copied in, or — when
    /// `fix_existing` — chowns and chmods an existing one.
    pub(super) fn make_home(
        &mut self,
        home: &str,
        uid: u32,
        gid: u32,
        mode: u32,
        skel: Option<&str>,
        fix_existing: bool,
    ) -> Result<(), UsersError> {
        let tool = "adduser";
        let Ok(path) = LayerPath::new_clamped(home) else {
            return Ok(());
        };
        let err = Self::read_err(tool, &path);
        let resolved = match self.view.resolve(&path, true) {
            Ok(resolved) => resolved,
            Err(ViewError::NotADirectory(_)) => return Ok(()),
            Err(other) => return Err(err(other)),
        };
        if resolved.is_root() {
            return Ok(());
        }
        let meta = Metadata {
            mode,
            uid,
            gid,
            mtime: self.options.source_date_epoch,
            xattrs: BTreeMap::new(),
        };
        if let Some(node) = self.view.lstat_exact(&resolved).map_err(&err)? {
            if fix_existing && node.kind == NodeKind::Dir {
                self.diff.insert(
                    resolved,
                    Entry {
                        kind: EntryKind::Dir,
                        meta,
                    },
                );
            }
            return Ok(());
        }
        let parent_is_dir = resolved
            .parent()
            .map(|parent| {
                self.view.lstat_exact(&parent).map(|n| {
                    matches!(
                        n,
                        Some(FsNode {
                            kind: NodeKind::Dir,
                            ..
                        })
                    )
                })
            })
            .transpose()
            .map_err(&err)?
            .unwrap_or(false);
        if !parent_is_dir {
            return Ok(());
        }
        if let Some(parent) = resolved.parent() {
            self.touch_dir(&parent);
        }
        self.diff.insert(
            resolved.clone(),
            Entry {
                kind: EntryKind::Dir,
                meta,
            },
        );
        if let Some(skel) = skel {
            let Ok(skel) = LayerPath::new_clamped(skel) else {
                return Ok(());
            };
            let skel = match self.view.stat(&skel, true).map_err(&err)? {
                Some((resolved_skel, node)) if node.kind == NodeKind::Dir => resolved_skel,
                _ => return Ok(()),
            };
            self.copy_tree(&skel, &resolved, uid, gid)?;
        }
        Ok(())
    }

    /// Copies the tree below `from` into `to`, every entry owned uid:gid.
    pub(super) fn copy_tree(
        &mut self,
        from: &LayerPath,
        to: &LayerPath,
        uid: u32,
        gid: u32,
    ) -> Result<(), UsersError> {
        let err = Self::read_err("adduser", from);
        for name in self.view.read_dir(from).map_err(&err)? {
            let (Ok(src), Ok(dst)) = (from.join(&name), to.join(&name)) else {
                continue;
            };
            let Some(node) = self.view.lstat_exact(&src).map_err(&err)? else {
                continue;
            };
            // shadow's copy_tree keeps the skeleton's times; busybox's copy_file does not.
            let mtime = if self.is_shadow() {
                node.meta.mtime
            } else {
                self.options.source_date_epoch
            };
            let meta = |mode: u32| Metadata {
                mode,
                uid,
                gid,
                mtime,
                xattrs: BTreeMap::new(),
            };
            let entry = match node.kind {
                NodeKind::Dir => Entry {
                    kind: EntryKind::Dir,
                    meta: meta(node.meta.mode & 0o7777),
                },
                NodeKind::File { .. } => Entry {
                    kind: EntryKind::File(self.view.content(&src).map_err(&err)?),
                    meta: meta(node.meta.mode & 0o777),
                },
                // busybox chowns the copied tree following symlinks, so a link stays its
                // creator's (root's); shadow's copy_tree lchowns it to the user.
                NodeKind::Symlink(target) if !self.is_shadow() => Entry {
                    kind: EntryKind::Symlink(target),
                    meta: Metadata {
                        uid: 0,
                        gid: 0,
                        ..meta(0o777)
                    },
                },
                NodeKind::Symlink(target) => Entry {
                    kind: EntryKind::Symlink(target),
                    meta: meta(0o777),
                },
                _ => continue,
            };
            let is_dir = matches!(entry.kind, EntryKind::Dir);
            self.diff.insert(dst.clone(), entry);
            if is_dir {
                self.copy_tree(&src, &dst, uid, gid)?;
            }
        }
        Ok(())
    }

    // ---- shadow ----
}

/// The shadow "last change" field for SOURCE_DATE_EPOCH `epoch` (see `Ctx::last_change`).
pub fn last_change_field(epoch: i64) -> String {
    match epoch.div_euclid(86_400) {
        day if day > 0 => day.to_string(),
        _ => String::new(),
    }
}

/// The first id in `first..=max` not `taken`.
pub(super) fn first_free(first: u32, max: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    (first..=max).find(|&id| !taken(id))
}

/// busybox's `die_if_bad_username` (Alpine builds with `FEATURE_CHECK_NAMES`): letters, digits,
/// `_`, and `-`, `.` (not first), `$` (last only), at most 255 bytes. Also keeps names that
/// would break the files (`:`, newline) or the home path out, for shadow's tools too.
pub(super) fn check_name(tool: &'static str, name: &str) -> Result<(), UsersError> {
    if name.is_empty() {
        return Err(tool_err(
            tool,
            "illegal character with code 0 at position 0",
        ));
    }
    let bytes = name.as_bytes();
    for (pos, &ch) in bytes.iter().enumerate() {
        let later_only = matches!(ch, b'-' | b'.') || (ch == b'$' && pos + 1 == bytes.len());
        if (pos > 0 && later_only) || ch == b'_' || ch.is_ascii_alphanumeric() {
            continue;
        }
        return Err(tool_err(
            tool,
            format!("illegal character with code {ch} at position {pos}"),
        ));
    }
    if bytes.len() >= 256 {
        return Err(tool_err(tool, "name is too long"));
    }
    Ok(())
}

/// Splits like `getline`: on `\n`, a last line without one counts, no empty tail.
pub(super) fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = text.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

/// Every line with a trailing newline.
pub(super) fn normalized_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    for line in lines(text) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}
