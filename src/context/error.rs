//! [`ContextError`]: why the build context could not be opened or a COPY source resolved,
//! each variant naming the source as written or the host path.

use std::io;
use std::path::PathBuf;

use super::{BadPattern, IgnoreError};

/// Why the context could not be opened or a source resolved. The caller adds the Dockerfile
/// line.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory cannot be opened.
    #[error("failed to open build context `{root}`")]
    Open {
        /// The directory given.
        root: PathBuf,
        /// The cause.
        #[source]
        cause: io::Error,
    },
    /// The ignore file exists but cannot be read.
    #[error("failed to read ignore file `{path}`")]
    ReadIgnore {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        #[source]
        cause: io::Error,
    },
    /// The ignore file is malformed.
    #[error("invalid ignore file")]
    Ignore(#[source] IgnoreError),
    /// Nothing in the context matches the source.
    #[error("COPY source `{src}` not found in the build context")]
    NotFound {
        /// The source as written.
        src: String,
    },
    /// The source exists but `.dockerignore` leaves it out.
    #[error(
        "COPY source `{src}` not found in the build context: it is excluded by `{pattern}` \
         (line {line} of the ignore file)"
    )]
    Excluded {
        /// The source as written.
        src: String,
        /// The pattern that excluded it, as written.
        pattern: String,
        /// Its line in the ignore file.
        line: usize,
    },
    /// The source climbs above the context root with `..`.
    #[error("COPY source `{src}` is outside the build context")]
    OutsideContext {
        /// The source as written.
        src: String,
    },
    /// A symlink on the way to the source points outside the context.
    #[error(
        "COPY source `{src}` is outside the build context: symlink `{link}` points to `{target}`"
    )]
    SymlinkEscapes {
        /// The source as written.
        src: String,
        /// The symlink, relative to the context root.
        link: String,
        /// Its target, verbatim.
        target: String,
    },
    /// Too many symlinks (a loop).
    #[error("COPY source `{src}`: too many levels of symbolic links")]
    SymlinkLoop {
        /// The source as written.
        src: String,
    },
    /// The source is a malformed wildcard pattern.
    #[error("COPY source `{src}` is not a valid pattern")]
    BadPattern {
        /// The source as written.
        src: String,
        /// What is wrong.
        #[source]
        cause: BadPattern,
    },
    /// Reading a context file's metadata or a directory failed.
    #[error("failed to read `{path}` in the build context")]
    Read {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        cause: io::Error,
    },
}
