//! [`PipError`]: every way a native `pip install` can fail, each naming the package, file or
//! setting, and the fix where there is one.

use crate::python::config::ConfigError;
use crate::python::index::IndexError;
use crate::python::metadata::MetadataError;
use crate::python::pip_args::PipArgsError;
use crate::python::pylock::PylockError;
use crate::python::requirements::RequirementsError;
use crate::python::resolve::{DependencyError, SelectError};
use crate::python::resolver::{Conflict, ProviderError};
use crate::python::target::TargetError;
use crate::python::wheel::WheelError;
use crate::rootfs::ViewError;

/// Why the step failed. Every variant names the package, file or setting, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PipError {
    /// The arguments are not supported.
    #[error(transparent)]
    Args(#[from] PipArgsError),
    /// The RUN user is not in the image.
    #[error(
        "RUN user `{user}` is not in the image's /etc/passwd; create it first (RUN adduser ...) \
         or use a numeric USER"
    )]
    UnknownUser {
        /// The USER value.
        user: String,
    },
    /// The group of `USER name:group` is not in the image's /etc/group.
    #[error("group `{group}` of USER `{user}` is not in the image's /etc/group")]
    UnknownGroup {
        /// The USER value.
        user: String,
        /// The group.
        group: String,
    },
    /// Reading the stage filesystem failed.
    #[error("failed to read `{path}` from the stage filesystem")]
    Read {
        /// The image path.
        path: String,
        /// The cause.
        #[source]
        source: ViewError,
    },
    /// The target Python could not be detected.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// pip's configuration in the image is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A requirements file is invalid.
    #[error(transparent)]
    Requirements(#[from] RequirementsError),
    /// A requirement given on the command line is invalid.
    #[error("invalid requirement `{spec}` on the pip command line: {problem}")]
    Spec {
        /// The argument.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// Nowhere to get distributions from.
    #[error(
        "pip install has no package index and no find-links configured, and kiln has no default \
         index; configure one as the pip in the image would see it: `--index-url URL` or \
         `--find-links DIR` on the RUN line or in the requirements file, `PIP_INDEX_URL` / \
         `PIP_FIND_LINKS` through `ENV` or `ARG` (then `kiln build --build-arg \
         PIP_INDEX_URL=URL`), or `index-url` in a pip.conf in the image (/etc/pip.conf); local \
         paths and file:// URLs name directories on the build host (see docs/pip.md)"
    )]
    NoSources,
    /// A loose requirement in hash-checking mode (pip's `HashUnpinned`, in pip's words).
    #[error(
        "In --require-hashes mode, all requirements must have their versions pinned with ==. \
         These do not:\n    {requirement} (from {origin})\nhash-checking mode is on (a --hash \
         somewhere, or --require-hashes / PIP_REQUIRE_HASHES): pin it with == and its --hash \
         (`kiln lock pip` writes the complete set), or drop the hashes to let kiln resolve"
    )]
    Unpinned {
        /// The requirement as written (without marker).
        requirement: String,
        /// Where it was written (`requirements.txt:3`, `command line`).
        origin: String,
    },
    /// A dependency that hash-checking mode needs listed, pinned and hashed, but that the
    /// requirements do not list (pip's `HashUnpinned` for a dependency, in pip's words).
    #[error(
        "In --require-hashes mode, all requirements must have their versions pinned with ==. \
         These do not:\n    {requirement} (from {parent}->{origin})\nhash-checking mode needs \
         every dependency listed too: add `{package}==VERSION --hash=sha256:...` (`kiln lock pip` \
         writes the complete set), or pass --no-deps if it is not needed"
    )]
    UnpinnedDependency {
        /// The dependency's project.
        package: String,
        /// The dependency as its dependent states it (`charset-normalizer<4,>=2`).
        requirement: String,
        /// The dependent, `name==version`.
        parent: String,
        /// Where the dependent was required.
        origin: String,
    },
    /// Pinned requirements without a hash in hash-checking mode (pip's `HashMissing`, in pip's
    /// words, with the hash of the file each would install).
    #[error(
        "Hashes are required in --require-hashes mode, but they are missing from some \
         requirements. Here is a list of those requirements along with the hashes their \
         downloaded archives actually had. Add lines like these to your requirements files to \
         prevent tampering. (If you did not enable --require-hashes manually, note that it turns \
         on automatically when any package has a hash.)\n{}",
        lines.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    )]
    MissingHash {
        /// `name==version --hash=sha256:HEX` for each, in name order.
        lines: Vec<String>,
    },
    /// PEP 668: the image's Python is marked EXTERNALLY-MANAGED and pip would refuse.
    #[error(
        "error: externally-managed-environment\n\n× This environment is externally \
         managed\n╰─> {}\n\nnote: If you believe this is a mistake, please contact your Python \
         installation or OS distribution provider. You can override this, at the risk of \
         breaking your Python installation or OS, by passing --break-system-packages.\nhint: \
         See PEP 668 for the detailed specification.\n(kiln: the image has {marker}; pass \
         --break-system-packages or set PIP_BREAK_SYSTEM_PACKAGES=1, or install into a venv, \
         --target or --prefix)",
        explanation.lines().collect::<Vec<_>>().join("\n    ")
    )]
    ExternallyManaged {
        /// The marker file in the image.
        marker: String,
        /// Its `Error` text (or pip's default).
        explanation: String,
    },
    /// An install into Debian's Python's own prefix, whose scheme kiln does not emulate.
    #[error(
        "{interpreter} is Debian's Python, whose pip installs into {site}; kiln's native step \
         does not write that scheme yet: install with --user, --target or --prefix, or let the \
         RUN go to the sandbox"
    )]
    DebianScheme {
        /// The interpreter.
        interpreter: String,
        /// Where its pip installs.
        site: String,
    },
    /// One project pinned twice to different versions.
    #[error("`{package}` is pinned twice: `{first}` and `{second}`; keep one")]
    DoublePin {
        /// The package.
        package: String,
        /// The first requirement.
        first: String,
        /// The second.
        second: String,
    },
    /// The pinned version violates a constraint.
    #[error("`{package}` {version} is pinned, but the constraint `{constraint}` excludes it")]
    Constraint {
        /// The package.
        package: String,
        /// The pinned version.
        version: String,
        /// The constraint.
        constraint: String,
    },
    /// `--no-binary` asks for source builds.
    #[error(
        "--no-binary {value} ({origin}) asks pip to build from source; kiln installs wheels only: \
         remove the option"
    )]
    NoBinary {
        /// The value.
        value: String,
        /// Where it was set.
        origin: String,
    },
    /// No file fits the requirement.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A source could not be read.
    #[error("failed to read the package sources for `{package}`")]
    Index {
        /// The package.
        package: String,
        /// The cause.
        #[source]
        source: Box<IndexError>,
    },
    /// Offline, and the file is not in the cache.
    #[error(
        "`{package}=={version}` is not in the download cache and offline mode forbids fetching \
         it from {sources}; run once without --offline, or add a find-links directory"
    )]
    Offline {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The remote sources.
        sources: String,
    },
    /// The file's hash is not one the requirements allow.
    #[error(
        "hash mismatch for `{package}` ({uri}): the requirements allow sha256 {expected}, the \
         file has {actual}; the file was replaced or the --hash is wrong: check the source, or \
         update the --hash in the requirements if the new file is trusted"
    )]
    HashMismatch {
        /// The package.
        package: String,
        /// Where the file came from (ends with its file name).
        uri: String,
        /// The allowed hashes.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The metadata says the distribution needs another Python.
    #[error(
        "`{package}` {version} requires Python {requires} (its metadata), but the image has \
         Python {python}; pin a version that supports Python {python}"
    )]
    RequiresPython {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The specifier.
        requires: String,
        /// The target's Python.
        python: String,
    },
    /// The metadata is unreadable.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A dependency is not satisfied by the set.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// Installing a wheel failed.
    #[error("failed to install `{package}`")]
    Install {
        /// The package.
        package: String,
        /// The cause.
        #[source]
        source: Box<WheelError>,
    },
    /// The requirements conflict.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The resolver could not read what it needed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The resolver gave up.
    #[error(
        "resolution gave up after trying {0} versions; pin some of the requirements (`kiln lock \
         pip` writes a complete pinned set)"
    )]
    TooComplex(usize),
    /// A lock file cannot be installed.
    #[error(transparent)]
    Pylock(#[from] PylockError),
    /// A wheel of a lock file that cannot be found.
    #[error(
        "`{package}`: {file} lists `{filename}` {}, and no configured source or the download \
         cache has it; give the wheel's url in the lock file, or configure a --find-links \
         directory or index that has it",
        if *offline { "and offline mode forbids its url" } else { "without a url" }
    )]
    LockedFileMissing {
        /// The package.
        package: String,
        /// The wheel.
        filename: String,
        /// The lock file.
        file: String,
        /// Whether offline mode is on.
        offline: bool,
    },
    /// A lock file given with other requirements.
    #[error(
        "`{file}` is a PEP 751 lock file: install it on its own (`pip install -r {file}`), \
         without other requirement files or package arguments"
    )]
    PylockMixed {
        /// The lock file.
        file: String,
    },
    /// The resolution replaces an installed distribution, which pip would uninstall first.
    #[error(
        "installing `{package}` {version} would replace {package} {installed} installed in \
         {location}, which pip uninstalls first; kiln's native step does not uninstall: let the \
         RUN go to the sandbox, or install with --user, --target or --prefix"
    )]
    ReplacesInstalled {
        /// The project as its metadata spells it.
        package: String,
        /// The installed version.
        installed: String,
        /// The directory that holds it.
        location: String,
        /// The version the resolution chose.
        version: String,
    },
    /// An installed distribution of a resolved project that kiln does not read.
    #[error(
        "`{package}` is in the resolution, but {why}; let the RUN go to the sandbox, or pass \
         --ignore-installed"
    )]
    InstalledUnread {
        /// The normalized project name.
        package: String,
        /// What is installed and why kiln does not read it.
        why: String,
    },
    /// A setting of the RUN's environment that moves pip's paths in a way kiln does not model.
    #[error(
        "{variable} is set in the RUN's environment; kiln's native pip step does not model \
         where it moves the interpreter's paths: let the RUN go to the sandbox"
    )]
    Unmodeled {
        /// The environment variable.
        variable: String,
    },
    /// An install path is invalid.
    #[error("invalid install location `{path}` ({problem})")]
    Location {
        /// The path.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl PipError {
    /// When the real pip can do what kiln refuses (build an sdist, `--no-binary`), the reason
    /// to run it in the sandbox instead of failing.
    pub fn sandbox_reason(&self) -> Option<String> {
        match self {
            PipError::Select(SelectError::SdistOnly {
                package, version, ..
            }) => Some(format!(
                "`{package}` {version} is only available as a source distribution, which pip \
                 builds"
            )),
            PipError::DebianScheme { interpreter, site } => Some(format!(
                "the image's pip belongs to Debian's Python ({interpreter}), which installs into \
                 {site}"
            )),
            PipError::ReplacesInstalled {
                package,
                installed,
                location,
                version,
            } => Some(format!(
                "it would replace {package} {installed} installed in {location} with {version}"
            )),
            PipError::InstalledUnread { package, why } => {
                Some(format!("`{package}` is in the resolution and {why}"))
            }
            PipError::Unmodeled { variable } => Some(format!(
                "{variable} is set, which moves the interpreter's paths in a way kiln does not \
                 model"
            )),
            PipError::NoBinary { value, .. } => {
                Some(format!("--no-binary {value} asks pip to build from source"))
            }
            _ => None,
        }
    }
}
