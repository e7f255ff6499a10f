//! `Overlay`: a read-only lower [`FsView`] with an in-memory upper [`Diff`] laid on top, itself
//! an [`FsView`]. Steps that run several commands (one RUN holding `addgroup && adduser`)
//! apply each command to the overlay of the previous ones; the executor uses it to see a
//! stage's pending layer before it is written.
//!
//! The upper Diff is read with layer semantics (OCI "Applying changesets"): a whiteout hides
//! the lower path and everything below it; an opaque directory hides the lower directory's
//! children; a non-directory entry replaces a lower directory with everything below it; a
//! directory entry over a lower directory keeps the lower children and takes the entry's
//! metadata. Upper paths whose parents the Diff does not list are reachable (their parents
//! show as the lower's directories, or root-owned `0755` ones). Hard links read as their
//! target. Data enters through [`Overlay::new`] and [`Overlay::apply`]; it leaves through
//! [`FsView`] and [`Overlay::into_diff`].

use std::collections::BTreeSet;

use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::rootfs::view::{FsNode, FsView, NodeKind, ViewError};

/// A lower view plus the changes made on top of it.
pub struct Overlay<'a> {
    lower: &'a dyn FsView,
    upper: Diff,
}

/// What the upper layer says about a path.
enum Upper<'d> {
    /// The upper holds an entry for the path itself.
    Entry(&'d Entry),
    /// Nothing in the upper hides the lower path.
    Lower,
    /// Nothing in the upper, and the lower is hidden (whiteout, opaque or non-directory above).
    Hidden,
    /// Implied by deeper upper entries, hidden below: an implicit directory.
    Implied,
}

impl<'a> Overlay<'a> {
    /// `lower` with nothing on top.
    pub fn new(lower: &'a dyn FsView) -> Overlay<'a> {
        Overlay {
            lower,
            upper: Diff::new(),
        }
    }

    /// Lays `diff` on top of the changes so far (as the next layer would).
    pub fn apply(&mut self, diff: Diff) {
        self.upper.merge(diff);
    }

    /// The changes made on top of the lower view.
    pub fn diff(&self) -> &Diff {
        &self.upper
    }

    /// The changes made on top of the lower view, by value.
    pub fn into_diff(self) -> Diff {
        self.upper
    }

    /// Classifies `path` against the upper layer.
    fn upper_state(&self, path: &LayerPath) -> Upper<'_> {
        let mut lower_hidden = false;
        for ancestor in path.ancestors() {
            match self.upper.get(&ancestor).map(|e| &e.kind) {
                None | Some(EntryKind::Dir) => {}
                Some(EntryKind::OpaqueDir) => lower_hidden = true,
                // A whiteout or a non-directory above: nothing at `path` unless the upper itself
                // lists something below (a later entry re-created the parent implicitly).
                Some(_) => lower_hidden = true,
            }
        }
        if let Some(entry) = self.upper.get(path) {
            if matches!(entry.kind, EntryKind::Whiteout) {
                return if self.has_upper_below(path) {
                    Upper::Implied
                } else {
                    Upper::Hidden
                };
            }
            return Upper::Entry(entry);
        }
        if lower_hidden {
            if self.has_upper_below(path) {
                Upper::Implied
            } else {
                Upper::Hidden
            }
        } else {
            Upper::Lower
        }
    }

    /// True when the upper lists a non-whiteout entry strictly below `path`.
    fn has_upper_below(&self, path: &LayerPath) -> bool {
        self.upper.iter().any(|(p, e)| {
            p != path && p.starts_with(path) && !matches!(e.kind, EntryKind::Whiteout)
        })
    }

    /// The upper children of `path`: names listed or implied, and names whited out.
    fn upper_children(&self, path: &LayerPath) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut present = BTreeSet::new();
        let mut removed = BTreeSet::new();
        let skip = if path.is_root() {
            0
        } else {
            path.as_str().len() + 1
        };
        for (p, entry) in self.upper.iter() {
            if p == path || !p.starts_with(path) {
                continue;
            }
            let Some(rest) = p.as_str().get(skip..) else {
                continue;
            };
            match rest.split_once('/') {
                Some((first, _)) => {
                    if !matches!(entry.kind, EntryKind::Whiteout) {
                        present.insert(first.to_owned());
                    }
                }
                None if matches!(entry.kind, EntryKind::Whiteout) => {
                    removed.insert(rest.to_owned());
                }
                None => {
                    present.insert(rest.to_owned());
                }
            }
        }
        (present, removed)
    }

    fn entry_node(&self, entry: &Entry) -> Result<Option<FsNode>, ViewError> {
        let kind = match &entry.kind {
            EntryKind::Dir | EntryKind::OpaqueDir => NodeKind::Dir,
            EntryKind::File(content) => NodeKind::File {
                size: content.size(),
            },
            EntryKind::Symlink(target) => NodeKind::Symlink(target.clone()),
            EntryKind::Hardlink(target) => return self.lstat_exact(target),
            EntryKind::CharDevice(major, minor) => NodeKind::CharDevice(*major, *minor),
            EntryKind::BlockDevice(major, minor) => NodeKind::BlockDevice(*major, *minor),
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Whiteout => return Ok(None),
        };
        Ok(Some(FsNode {
            kind,
            meta: entry.meta.clone(),
        }))
    }
}

impl FsView for Overlay<'_> {
    fn lstat_exact(&self, path: &LayerPath) -> Result<Option<FsNode>, ViewError> {
        match self.upper_state(path) {
            Upper::Entry(entry) => self.entry_node(entry),
            Upper::Lower => {
                let found = self.lower.lstat_exact(path)?;
                if found.is_none() && self.has_upper_below(path) {
                    return Ok(Some(implicit_dir()));
                }
                // A lower non-directory under which the upper lists entries became a directory.
                if let Some(node) = &found {
                    if node.kind != NodeKind::Dir && self.has_upper_below(path) {
                        return Ok(Some(implicit_dir()));
                    }
                }
                Ok(found)
            }
            Upper::Implied => Ok(Some(implicit_dir())),
            Upper::Hidden => Ok(None),
        }
    }

    fn read_dir(&self, path: &LayerPath) -> Result<Vec<String>, ViewError> {
        self.expect_dir(path)?;
        let lower_visible = match self.upper_state(path) {
            Upper::Entry(entry) => matches!(entry.kind, EntryKind::Dir),
            Upper::Lower => true,
            Upper::Hidden | Upper::Implied => false,
        };
        let mut names: BTreeSet<String> = BTreeSet::new();
        if lower_visible {
            match self.lower.read_dir(path) {
                Ok(lower) => names.extend(lower),
                Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let (present, removed) = self.upper_children(path);
        for name in removed {
            names.remove(&name);
        }
        names.extend(present);
        Ok(names.into_iter().collect())
    }

    fn content(&self, path: &LayerPath) -> Result<FileContent, ViewError> {
        match self.upper_state(path) {
            Upper::Entry(entry) => match &entry.kind {
                EntryKind::File(content) => Ok(content.clone()),
                EntryKind::Hardlink(target) => self.content(target),
                _ => Err(ViewError::NotFound(path.absolute())),
            },
            Upper::Lower => self.lower.content(path),
            Upper::Hidden | Upper::Implied => Err(ViewError::NotFound(path.absolute())),
        }
    }
}

fn implicit_dir() -> FsNode {
    FsNode {
        kind: NodeKind::Dir,
        meta: Metadata::root_owned(0o755),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rootfs::MemFs;

    fn path(raw: &str) -> LayerPath {
        LayerPath::new(raw).expect("valid path")
    }

    fn file(text: &str) -> Entry {
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_bytes()))),
            meta: Metadata::root_owned(0o644),
        }
    }

    fn dir(kind: EntryKind, mode: u32) -> Entry {
        Entry {
            kind,
            meta: Metadata::root_owned(mode),
        }
    }

    fn lower() -> MemFs {
        let mut diff = Diff::new();
        diff.insert(path("etc/passwd"), file("root\n"));
        diff.insert(path("etc/group"), file("root\n"));
        diff.insert(path("var/cache/apk/a"), file("a"));
        diff.insert(path("var/cache/apk/b"), file("b"));
        diff.insert(path("opt/x/y"), file("y"));
        diff.insert(
            path("bin"),
            dir(EntryKind::Symlink("usr/bin".into()), 0o777),
        );
        MemFs::from_diff(&diff)
    }

    #[test]
    fn upper_changes_read_through() {
        let lower = lower();
        let mut overlay = Overlay::new(&lower);
        let mut first = Diff::new();
        first.insert(path("etc/passwd"), file("root\nappuser\n"));
        first.insert(path("home/appuser"), dir(EntryKind::Dir, 0o2755));
        first.whiteout(path("var/cache/apk/a"));
        first.insert(path("opt"), dir(EntryKind::OpaqueDir, 0o700));
        first.insert(path("opt/new"), file("n"));
        overlay.apply(first);
        let mut second = Diff::new();
        second.whiteout(path("etc/group"));
        second.insert(path("var/cache/apk/b/deep"), file("replaces b"));
        overlay.apply(second);

        assert_eq!(
            overlay.read_file(&path("etc/passwd")).expect("reads"),
            b"root\nappuser\n"
        );
        assert_eq!(overlay.read_dir(&path("etc")).expect("etc"), ["passwd"]);
        assert!(
            overlay
                .lstat_exact(&path("etc/group"))
                .expect("ok")
                .is_none()
        );
        assert_eq!(
            overlay.read_dir(&path("var/cache/apk")).expect("apk"),
            ["b"]
        );
        assert_eq!(
            overlay
                .lstat_exact(&path("var/cache/apk/b"))
                .expect("ok")
                .map(|n| n.kind),
            Some(NodeKind::Dir)
        );
        assert_eq!(overlay.read_dir(&path("opt")).expect("opt"), ["new"]);
        assert!(overlay.lstat_exact(&path("opt/x/y")).expect("ok").is_none());
        assert_eq!(
            overlay
                .lstat_exact(&path("opt"))
                .expect("ok")
                .map(|n| n.meta.mode),
            Some(0o700)
        );
        assert_eq!(
            overlay.read_dir(&LayerPath::root()).expect("root"),
            ["bin", "etc", "home", "opt", "var"]
        );
        assert_eq!(
            overlay
                .lstat_exact(&path("home/appuser"))
                .expect("ok")
                .map(|n| n.meta.mode),
            Some(0o2755)
        );
        assert_eq!(overlay.diff().len(), 7);
    }
}
