//! The lower filesystem of a build stage: [`LowerFs`], a merged, read-only view of a stack of
//! layers (stored blobs and in-memory Diffs) with whiteouts, opaque directories and hard links
//! applied, read without unpacking the image; and [`FsView`], the interface steps read through,
//! whose symlink resolution never leaves the root ([`resolve`], also used for the build
//! context).
//!
//! Layers enter through [`LowerFs::push_layer_blob`] and [`LowerFs::push_diff`]; file contents
//! leave as [`crate::layer::FileContent`] through [`FsView::content`] and
//! [`LowerFs::materialize`]. Safe tar parsing lives in [`crate::layer::reader`].

pub mod lower;
pub mod memfs;
pub mod overlay;
pub mod resolve;
pub mod view;

pub use lower::{Extracted, LowerFs, RootfsError};
pub use memfs::MemFs;
pub use overlay::Overlay;
pub use view::{FsNode, FsView, NodeKind, ViewError};
