//! Archive extraction into a [`Diff`]: the ADD / `FROM scratch` use of the tar reader. Regular
//! file contents go to fresh, uniquely named files of a scratch directory (nothing in the
//! archive decides a host path); hard links are regrouped so a link always sorts after its
//! target; on error every scratch file this call created is removed.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::{
    NameError, ReaderError, TarEntry, TarKind, keys_below, open_decompressed, read_entries,
};
use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};

/// Extracts an archive (plain, gzip or zstd) into a [`Diff`] placed below `dest`, for
/// `ADD archive.tar.gz /dest` and `FROM scratch` + `ADD rootfs.tar.gz /`.
///
/// Regular-file contents are copied into new files of `scratch_dir` (created exclusively with
/// unique names; nothing in the archive decides a host path) and referenced as
/// [`FileContent::HostFile`]. Whiteout names are plain files (as in Docker). The archive's root
/// entry (`./`) is skipped (the destination directory keeps its metadata, as Docker does).
/// Hard links stay hard links; within each group of linked names, the bytewise-smallest one
/// holds the content and the others link to it, so a link always sorts after its target.
///
/// Errors name the archive (`display_name`) and the entry; on error, the scratch files this
/// call created are removed and no Diff is returned.
pub fn extract_to_diff<R: Read>(
    archive: R,
    display_name: &str,
    scratch_dir: &Path,
    dest: &LayerPath,
) -> Result<Diff, ReaderError> {
    let mut created: Vec<PathBuf> = Vec::new();
    let result = extract_inner(archive, display_name, scratch_dir, dest, &mut created);
    if result.is_err() {
        for path in &created {
            // Best effort: the error being returned is the one that matters.
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn extract_inner<R: Read>(
    archive: R,
    display_name: &str,
    scratch_dir: &Path,
    dest: &LayerPath,
    created: &mut Vec<PathBuf>,
) -> Result<Diff, ReaderError> {
    let (_, stream) = open_decompressed(archive).map_err(|source| ReaderError::Read {
        archive: display_name.to_owned(),
        entry: None,
        source,
    })?;
    // Entries by archive-relative path, in archive order semantics (later replaces earlier).
    let mut entries: BTreeMap<LayerPath, Entry> = BTreeMap::new();
    // Hard links: link path -> ultimate target path (archive-relative).
    let mut links: BTreeMap<LayerPath, LayerPath> = BTreeMap::new();
    read_entries(stream, display_name, |entry: TarEntry, content| {
        let shown = entry.path.absolute();
        if entry.path.is_root() {
            if entry.kind == TarKind::Dir {
                return Ok(ControlFlow::Continue(()));
            }
            return Err(ReaderError::UnsafeName {
                archive: display_name.to_owned(),
                entry: shown,
                source: NameError::Root,
            });
        }
        for ancestor in entry.path.ancestors() {
            let blocked = match entries.get(&ancestor) {
                Some(e) => !matches!(e.kind, EntryKind::Dir),
                None => links.contains_key(&ancestor),
            };
            if blocked {
                return Err(ReaderError::ParentNotDir {
                    archive: display_name.to_owned(),
                    entry: shown,
                    parent: ancestor.absolute(),
                });
            }
        }
        // A later entry replaces an earlier one at the same path (and what was below it).
        links.remove(&entry.path);
        for below in keys_below(&links, &entry.path) {
            links.remove(&below);
        }
        if !matches!(entry.kind, TarKind::Dir) {
            for below in keys_below(&entries, &entry.path) {
                entries.remove(&below);
            }
        }
        let kind = match entry.kind {
            TarKind::Dir => EntryKind::Dir,
            TarKind::File => {
                let scratch_err = |scratch: &Path, source: io::Error| ReaderError::Scratch {
                    archive: display_name.to_owned(),
                    entry: shown.clone(),
                    scratch: scratch.to_owned(),
                    source,
                };
                let (path, size) = write_scratch(scratch_dir, content, created)
                    .map_err(|(p, e)| scratch_err(&p, e))?;
                EntryKind::File(FileContent::HostFile {
                    path,
                    size,
                    stamp: None,
                })
            }
            TarKind::Symlink(target) => EntryKind::Symlink(target),
            TarKind::Hardlink(target) => {
                let target = links.get(&target).cloned().unwrap_or(target);
                match entries.get(&target) {
                    Some(Entry {
                        kind: EntryKind::File(_),
                        ..
                    }) => {}
                    _ => {
                        return Err(ReaderError::DanglingLink {
                            archive: display_name.to_owned(),
                            entry: shown,
                            target: target.absolute(),
                        });
                    }
                }
                entries.remove(&entry.path);
                links.insert(entry.path, target);
                return Ok(ControlFlow::Continue(()));
            }
            TarKind::CharDevice(major, minor) => EntryKind::CharDevice(major, minor),
            TarKind::BlockDevice(major, minor) => EntryKind::BlockDevice(major, minor),
            TarKind::Fifo => EntryKind::Fifo,
        };
        entries.insert(
            entry.path,
            Entry {
                kind,
                meta: entry.meta,
            },
        );
        Ok(ControlFlow::Continue(()))
    })?;

    // Group links by target; the smallest name of each group holds the content.
    let mut groups: HashMap<LayerPath, Vec<LayerPath>> = HashMap::new();
    for (link, target) in &links {
        groups.entry(target.clone()).or_default().push(link.clone());
    }
    let mut link_meta: BTreeMap<LayerPath, Metadata> = BTreeMap::new();
    for target in groups.keys() {
        if let Some(e) = entries.get(target) {
            link_meta.insert(target.clone(), e.meta.clone());
        }
    }
    let mut diff = Diff::new();
    let place = |p: &LayerPath| -> Result<LayerPath, ReaderError> {
        dest.join(p.as_str())
            .map_err(|source| ReaderError::UnsafeName {
                archive: display_name.to_owned(),
                entry: p.absolute(),
                source: NameError::Path(source),
            })
    };
    let mut holders: HashMap<LayerPath, LayerPath> = HashMap::new();
    for (target, members) in &groups {
        match entries.get(target) {
            Some(Entry {
                kind: EntryKind::File(_),
                ..
            }) => {}
            // The target was replaced after the link was made: refuse rather than guess.
            _ => {
                return Err(ReaderError::DanglingLink {
                    archive: display_name.to_owned(),
                    entry: members
                        .iter()
                        .min()
                        .map(LayerPath::absolute)
                        .unwrap_or_default(),
                    target: target.absolute(),
                });
            }
        }
        if let Some(holder) = members.iter().min().filter(|m| *m < target) {
            holders.insert(target.clone(), holder.clone());
        }
    }
    for (path, entry) in entries {
        let placed = place(&path)?;
        match holders.get(&path) {
            // The content moves to the smallest link name; this name links to it.
            Some(holder) => {
                let holder = place(holder)?;
                diff.insert(holder.clone(), entry.clone());
                diff.insert(
                    placed,
                    Entry {
                        kind: EntryKind::Hardlink(holder),
                        meta: entry.meta,
                    },
                );
            }
            None => diff.insert(placed, entry),
        }
    }
    for (link, target) in links {
        let holder = holders.get(&target).unwrap_or(&target);
        if *holder == link {
            continue; // Holds the content (inserted above).
        }
        let meta = link_meta
            .get(&target)
            .cloned()
            .unwrap_or_else(|| Metadata::root_owned(0o644));
        diff.insert(
            place(&link)?,
            Entry {
                kind: EntryKind::Hardlink(place(holder)?),
                meta,
            },
        );
    }
    Ok(diff)
}

/// Copies `content` into a new, uniquely named file of `scratch_dir` and returns its path and
/// size. The file is recorded in `created` before any byte is written.
fn write_scratch(
    scratch_dir: &Path,
    content: &mut dyn Read,
    created: &mut Vec<PathBuf>,
) -> Result<(PathBuf, u64), (PathBuf, io::Error)> {
    let (file, path) = tempfile::Builder::new()
        .prefix("extract-")
        .tempfile_in(scratch_dir)
        .map_err(|e| (scratch_dir.to_owned(), e))?
        .keep()
        .map_err(|e| (scratch_dir.to_owned(), e.error))?;
    created.push(path.clone());
    let mut out = io::BufWriter::new(file);
    let size = io::copy(content, &mut out).map_err(|e| (path.clone(), e))?;
    out.flush().map_err(|e| (path.clone(), e))?;
    Ok((path, size))
}
