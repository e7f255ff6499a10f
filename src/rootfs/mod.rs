//! `LowerFs`: a merged, read-only view of a stack of layers (whiteouts, opaque dirs, hard links,
//! symlinks resolved inside the root), read without unpacking the image.

pub mod memfs;
pub mod view;

pub use view::{FsNode, FsView, NodeKind, ViewError};
