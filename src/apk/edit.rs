//! Small edits of the overlay that apk's commit ([`super::install`]) and its emulated package
//! scripts ([`super::emulate`]) share.

use super::ApkError;
use crate::layer::{Diff, Entry, EntryKind, LayerPath, Metadata};
use crate::rootfs::{FsView, Overlay};

/// A path of this module's constants (valid by construction).
pub(super) fn lp(raw: &str) -> LayerPath {
    // Only called with constant, valid paths.
    LayerPath::new(raw).unwrap_or_else(|_| LayerPath::root())
}

/// Writes one entry onto `overlay`.
pub(super) fn put(overlay: &mut Overlay<'_>, path: LayerPath, kind: EntryKind, meta: Metadata) {
    let mut diff = Diff::new();
    diff.insert(path, Entry { kind, meta });
    overlay.apply(diff);
}

/// Removes `path` from `overlay`.
pub(super) fn whiteout(overlay: &mut Overlay<'_>, path: LayerPath) {
    let mut diff = Diff::new();
    diff.whiteout(path);
    overlay.apply(diff);
}

/// Reads a file's bytes from a view (following nothing: `path` is resolved).
pub(super) fn content_of(view: &dyn FsView, path: &LayerPath) -> Result<Vec<u8>, ApkError> {
    view.read_file(path)
        .map_err(ApkError::view(path.absolute()))
}
