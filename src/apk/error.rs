//! [`ApkError`]: every way reading a repository, verifying a package, loading the installed
//! database, solving or applying can fail. Each variant names the thing (index URL or path,
//! package `name-version`, archive entry, key file) and, for mismatches, expected vs actual.

use crate::layer::reader::ReaderError;
use crate::rootfs::ViewError;

/// Why an apk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApkError {
    /// kiln does not implement this yet; the message names what is missing.
    #[error("not supported natively yet: {0}")]
    Unsupported(String),
    /// No signature of the archive was made with a key present in the keys directory.
    #[error(
        "`{archive}` is signed by {signers:?}, none of which is a trusted key (keys in /etc/apk/keys: {known:?}); add the public key file under its exact name"
    )]
    UnknownKey {
        /// The index URL or package file.
        archive: String,
        /// Key names of the `.SIGN.*` entries found.
        signers: Vec<String>,
        /// Key names available.
        known: Vec<String>,
    },
    /// The archive carries no `.SIGN.*` entry.
    #[error("`{archive}` is not signed (no .SIGN.* entry in its first gzip member)")]
    Unsigned {
        /// The index URL or package file.
        archive: String,
    },
    /// The signature does not verify with the named key.
    #[error("`{archive}`: signature {algorithm} by key `{key}` does not verify")]
    BadSignature {
        /// The index URL or package file.
        archive: String,
        /// The key file name.
        key: String,
        /// `RSA` (SHA-1), `RSA256` or `RSA512`.
        algorithm: String,
    },
    /// A public key file could not be parsed.
    #[error("key file `{key}` is not a PEM RSA public key: {message}")]
    BadKey {
        /// The key file name.
        key: String,
        /// What the parser said.
        message: String,
    },
    /// A gzip member or tar stream of the archive is corrupt.
    #[error("`{archive}`: corrupt gzip member at byte {offset}")]
    Gzip {
        /// The index URL or package file.
        archive: String,
        /// Offset of the member in the file.
        offset: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tar stream inside the archive is unreadable or has an unsafe name.
    #[error("`{archive}`: bad tar content")]
    Tar {
        /// The index URL or package file.
        archive: String,
        /// The cause.
        #[source]
        source: Box<ReaderError>,
    },
    /// The archive lacks a part apk requires (`APKINDEX`, `.PKGINFO`, a data member).
    #[error("`{archive}`: {what} is missing")]
    Missing {
        /// The index URL or package file.
        archive: String,
        /// What is missing.
        what: String,
    },
    /// A text database (APKINDEX, installed, .PKGINFO, world) is malformed.
    #[error("`{file}` line {line}: {message}")]
    Malformed {
        /// The index URL or file path (and package when known).
        file: String,
        /// 1-based line number (0 when not line-specific).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A hash of a package part does not match the value that vouches for it.
    #[error("package `{package}`: {what} mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// `name-version` or the file name.
        package: String,
        /// Which hash (`control member SHA-1 vs index C:`, `datahash`).
        what: String,
        /// The trusted value.
        expected: String,
        /// The computed value.
        actual: String,
    },
    /// A data file's content does not match its `APK-TOOLS.checksum.SHA1` record.
    #[error(
        "package `{package}`: file `{entry}` does not match its APK-TOOLS.checksum: expected {expected}, got {actual}"
    )]
    FileChecksum {
        /// `name-version`.
        package: String,
        /// The entry path.
        entry: String,
        /// The checksum record.
        expected: String,
        /// The computed value.
        actual: String,
    },
    /// A data entry of a package is refused (escapes the root, no parent, bad type).
    #[error("package `{package}`: entry `{entry}` refused: {reason}")]
    UnsafeEntry {
        /// `name-version`.
        package: String,
        /// The entry as named in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Reading the lower filesystem failed.
    #[error("failed to read `{path}` from the lower filesystem")]
    View {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: Box<ViewError>,
    },
    /// A repository file is not cached and `--offline` forbids fetching it.
    #[error(
        "`{uri}` is not in kiln's cache and --offline forbids fetching it; build once online with the same --cache-dir"
    )]
    Offline {
        /// The file's URL.
        uri: String,
    },
    /// Fetching a repository file over HTTP failed.
    #[error("failed to fetch `{uri}`: {detail}")]
    Fetch {
        /// The file's URL.
        uri: String,
        /// What went wrong (status or transport error).
        detail: String,
    },
    /// Reading a host file (a local repository) failed.
    #[error("failed to read `{path}`")]
    Io {
        /// The host path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing kiln's download cache failed.
    #[error("failed to use the apk download cache `{dir}`")]
    Cache {
        /// The cache directory.
        dir: String,
        /// The cause.
        #[source]
        source: crate::store::StoreError,
    },
    /// The solver found no set of packages satisfying every constraint.
    #[error("unsatisfiable constraints:\n{0}")]
    Unsatisfiable(String),
    /// A package would overwrite a file owned by another package that does not let it.
    #[error(
        "package `{package}` is trying to overwrite `{path}` owned by `{owner}` (neither replaces the other and their origins differ)"
    )]
    FileConflict {
        /// The package being installed.
        package: String,
        /// The path.
        path: String,
        /// The current owner.
        owner: String,
    },
    /// An emulated package script failed.
    #[error("package `{package}`: emulating its {script} failed: {message}")]
    Script {
        /// `name-version`.
        package: String,
        /// `.pre-install`, ...
        script: String,
        /// The cause.
        message: String,
    },
}

impl ApkError {
    /// A [`ApkError::View`] for `path`.
    pub(crate) fn view(path: impl Into<String>) -> impl FnOnce(ViewError) -> ApkError {
        let path = path.into();
        move |source| ApkError::View {
            path,
            source: Box::new(source),
        }
    }
}
