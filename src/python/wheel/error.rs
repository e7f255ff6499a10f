//! [`WheelError`]: why a wheel could not be installed; every variant names the wheel.

use std::path::PathBuf;

use crate::python::tags::{FilenameError, IncompatibleReason};

/// Why a wheel could not be installed. Every variant names the wheel.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// Not a wheel file name, or an sdist.
    #[error("cannot install `{path}`")]
    Filename {
        /// The file given.
        path: PathBuf,
        /// Why.
        #[source]
        source: FilenameError,
    },
    /// The wheel does not fit the target.
    #[error("wheel `{wheel}` is not compatible with the target: {reason}")]
    Incompatible {
        /// The wheel file name.
        wheel: String,
        /// Which tag is at fault.
        reason: IncompatibleReason,
    },
    /// The file's sha256 is not the expected one.
    #[error(
        "hash mismatch for {package} (`{wheel}`): expected sha256 {expected}, got {actual}; \
         the file is corrupt or was replaced: re-download it, or update the --hash in the \
         requirements file if the new file is trusted"
    )]
    HashMismatch {
        /// Distribution name.
        package: String,
        /// The wheel file name.
        wheel: String,
        /// The expected hex digest.
        expected: String,
        /// The file's hex digest.
        actual: String,
    },
    /// Reading the wheel file or the zip failed.
    #[error("failed to read wheel `{wheel}`{}", member.as_ref().map(|m| format!(" member `{m}`")).unwrap_or_default())]
    Read {
        /// The wheel file name.
        wheel: String,
        /// The member, when reading one.
        member: Option<String>,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The wheel is structurally wrong (no or several .dist-info, bad WHEEL, bad RECORD, ...).
    #[error("invalid wheel `{wheel}`: {problem}")]
    Invalid {
        /// The wheel file name.
        wheel: String,
        /// What is wrong, naming the member.
        problem: String,
    },
    /// A member's name would escape the install directory or is not a plain file.
    #[error("unsafe member `{member}` in wheel `{wheel}`: {problem}; refusing to install it")]
    UnsafePath {
        /// The wheel file name.
        wheel: String,
        /// The member name as in the archive.
        member: String,
        /// Why it is unsafe.
        problem: &'static str,
    },
    /// A member is missing from RECORD or does not hash to what RECORD says.
    #[error(
        "RECORD of wheel `{wheel}` does not vouch for `{member}`: {problem}; the wheel was \
         altered after it was built"
    )]
    Record {
        /// The wheel file name.
        wheel: String,
        /// The member.
        member: String,
        /// Missing, or expected vs actual.
        problem: String,
    },
    /// A scheme path could not be formed.
    #[error("invalid install path `{path}`")]
    Scheme {
        /// The path.
        path: String,
    },
    /// Writing a scratch file failed.
    #[error("failed to write a scratch file in `{dir}` for wheel `{wheel}`")]
    Scratch {
        /// The wheel file name.
        wheel: String,
        /// The scratch directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
