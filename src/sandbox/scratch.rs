//! The sandbox's scratch space: the directory a build gives it ([`ScratchDir`]), the secrets'
//! directory removed whatever happens, and the readable copies of what the command left that
//! only the mapped ids may read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::exec;
use super::idmap::IdMaps;
use crate::layer::Diff;

/// The directory sandboxed RUNs keep their rootfs in for one build, removed when dropped.
/// Removal happens inside a user namespace when the caller alone cannot do it (files owned by
/// its subordinate ids).
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Uses `path` (created on first use).
    pub fn new(path: PathBuf) -> ScratchDir {
        ScratchDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.path).is_err() && self.path.exists() {
            let maps = IdMaps::for_current_user();
            if let Err(e) = exec::remove_as_mapped(&self.path, &maps) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// The Diff with every file the caller cannot read (a mode without read permission, or an
/// owner from the subordinate range) replaced by a copy it can: the layer writer, and later
/// steps, read them from outside the user namespace.
pub(super) fn readable_copies(diff: Diff, dir: &Path, maps: &IdMaps) -> Result<Diff, SandboxError> {
    use crate::layer::{EntryKind, FileContent};
    let unreadable =
        |path: &Path| nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_err();
    let mut pairs = Vec::new();
    for (path, entry) in diff.iter() {
        if let EntryKind::File(FileContent::HostFile { path: host, .. }) = &entry.kind
            && unreadable(host)
        {
            let copies = dir.join("readable");
            std::fs::create_dir_all(&copies).map_err(|source| SandboxError::Io {
                action: "create",
                path: copies.clone(),
                source,
            })?;
            let copy = copies.join(crate::digest::Digest::of(path.as_str().as_bytes()).hex());
            pairs.push((host.clone(), copy));
        }
    }
    if pairs.is_empty() {
        return Ok(diff);
    }
    exec::copy_as_mapped(&pairs, maps)?;
    let copies: BTreeMap<PathBuf, PathBuf> = pairs.into_iter().collect();
    let mut readable = Diff::new();
    for (path, entry) in diff.iter() {
        let mut entry = entry.clone();
        if let EntryKind::File(FileContent::HostFile {
            path: host, size, ..
        }) = &entry.kind
            && let Some(copy) = copies.get(host)
        {
            entry.kind = EntryKind::File(FileContent::HostFile {
                path: copy.clone(),
                size: *size,
                stamp: None,
            });
        }
        readable.insert(path.clone(), entry);
    }
    Ok(readable)
}

/// Removes the secrets' directory when dropped, whatever happened.
pub(super) struct SecretsDir(pub(super) PathBuf);

impl Drop for SecretsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
