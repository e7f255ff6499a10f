//! `LowerFs`: a merged, read-only view of a stack of layers (whiteouts, opaque dirs, hard links,
//! symlinks resolved inside the root), read without unpacking the image.
