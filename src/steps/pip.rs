//! The native `pip install` step: what `RUN pip install ...` would add to the image, computed
//! without running pip or any container.
//!
//! [`pip_install`] takes the words after `pip install` (see
//! [`crate::steps::run::NativeCommand::Pip`]) and a [`PipRequest`] describing the stage, and
//! returns a [`PipOutcome`]: one [`Diff`], the files it consumed ([`Material`]s, for the
//! provenance) and the distributions it installed ([`InstalledDistribution`], for the SBOM).
//!
//! It does what the pip inside the image would do, reading everything the container would
//! read from the IMAGE:
//!
//! 1. The target Python (version, libc, arch) comes from the stage filesystem and platform
//!    ([`crate::python::target::detect`]); markers and tags are the target's, never the host's.
//! 2. The RUN user is looked up in the image's `/etc/passwd` (`--user` installs into
//!    `<home>/.local`; `HOME` from the RUN's environment wins, as in a container).
//! 3. pip's configuration files in the image (`/etc/pip.conf`, `~/.config/pip/pip.conf`, ...),
//!    `PIP_*` variables of the RUN's environment (ENV and ARG, e.g. `--build-arg
//!    PIP_INDEX_URL=...`), the command line and the requirement files' own options are
//!    combined with pip's precedence ([`crate::python::config`]).
//! 4. Requirement files named relative to WORKDIR are read from the image.
//!
//! Distribution sources are reached ON THE BUILD HOST, on the container's behalf, the way the
//! pip inside it would use the network: an HTTP(S) index or find-links URL is fetched by kiln,
//! and a find-links or index value that is an absolute path or a `file://` URL names a
//! directory on the BUILD HOST (a flat directory of wheels, or a PEP 503 tree). There is no
//! default index: with no index and no find-links configured anywhere the step fails and says
//! how to configure one. Downloads are verified and cached by sha256 in the cache directory;
//! with `offline`, only host directories and the cache are used.
//!
//! Requirements resolve as `pip install` resolves them. Outside hash-checking mode, `==` pins
//! are fixed points and every dependency they leave open is resolved for the target by
//! [`crate::python::resolver`] (newest compatible versions first, markers for the target,
//! extras, `-c` constraints, backtracking on conflicts; a conflict names every requirement
//! involved and who made it); `--no-deps` installs only what is listed. For each decided
//! project the best wheel for the target is chosen ([`crate::python::resolve::candidates`]) and
//! installed with [`crate::python::wheel::install_wheel`] into the scheme of `--user`,
//! `--prefix`, `--target` or the interpreter's own prefix. Hash-checking mode (any `--hash`,
//! `--require-hashes`, `PIP_REQUIRE_HASHES`) keeps pip's rule: every requirement, dependencies
//! included, is listed, pinned and hashed; each file's sha256 must be an allowed one, and the
//! failures are worded as pip words them.
//!
//! A PEP 751 lock file given with `-r pylock.toml` (or `pylock.<name>.toml`) is installed
//! exactly as listed ([`crate::python::pylock`]): no resolution, each package's wheel for the
//! target, its sha256 checked. The chosen files are downloaded in parallel. The Diffs merge in
//! name order; directories that already exist in the image keep their owner and mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::VersionOrUrl;

use crate::digest::Digest;
use crate::image::platform::Platform;
use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath};
use crate::material::{Material, MaterialKind, StepOutput};
use crate::python::config::{self, ConfigError, ConfigInputs, ConfigValue, image_path};
use crate::python::index::{
    CachedFile, DistFile, FileLocation, IndexClient, IndexError, MetadataHint, Source, SourceKind,
    parallel,
};
use crate::python::launcher::{self, Launcher};
use crate::python::metadata::{CoreMetadata, MetadataError};
use crate::python::pep508;
use crate::python::pip_args::{self, InstallLocation, PipArgsError};
use crate::python::pylock::{self, PylockError};
use crate::python::requirements::{self, RequirementLine, RequirementsError};
use crate::python::resolve::{self, Candidate, DependencyError, Planned, SelectError, TargetFit};
use crate::python::resolver::{self, Conflict, Demand, ProviderError, Requirer, ResolveError};
use crate::python::tags::{LinuxTag, Tags};
use crate::python::target::{self, Libc, PythonTarget, TargetError};
use crate::python::wheel::{
    self, InstallOptions, Owner, Requested, Scheme, WheelError, normalize_name,
};
use crate::rootfs::{FsView, NodeKind, ViewError};
use crate::users::etc as etc_files;

/// Everything about the stage that `pip install` depends on.
pub struct PipRequest<'a> {
    /// The stage's filesystem as the RUN sees it (lower layers plus pending changes).
    pub fs: &'a dyn FsView,
    /// The RUN's working directory (absolute image path): relative requirement files,
    /// `--target`/`--prefix` and `PIP_CONFIG_FILE` are resolved against it.
    pub workdir: &'a str,
    /// The RUN's `USER` value (`appuser`, `1000`, `1000:1000`, `name:group`); empty for root.
    pub user: &'a str,
    /// The RUN's environment (ENV and ARG values): `PIP_*`, `HOME`, `XDG_CONFIG_*`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The image platform (the target, not the host).
    pub platform: &'a Platform,
    /// Time of every entry in the Diff (SOURCE_DATE_EPOCH, or 0).
    pub source_date_epoch: i64,
    /// Host directory for large extracted files; must outlive the returned Diff.
    pub scratch_dir: &'a Path,
    /// Host directory of the download cache (files kept by sha256).
    pub cache_dir: &'a Path,
    /// Forbid network access: only host directories and the cache are used.
    pub offline: bool,
}

/// What the step produced: the files the install adds to the image, the distribution files
/// consumed (in name order), and as details the distributions installed (in name order).
pub type PipOutcome = StepOutput<Vec<InstalledDistribution>>;

/// One installed distribution (an SBOM package).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledDistribution {
    /// The name as the distribution spells it (`Flask`, `MarkupSafe`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Package URL: `pkg:pypi/<normalized name>@<version>`.
    pub purl: String,
}

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
    /// An install path is invalid.
    #[error("invalid install location `{path}` ({problem})")]
    Location {
        /// The path.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// The RUN user as pip inside the container would be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Home directory (absolute image path).
    pub home: String,
}

/// Resolves a `USER` value against the image's passwd and group files, as a container runtime
/// does: a name must exist; a uid without an entry gets gid 0 and home `/`; root's home is
/// `/root` when passwd does not say. `HOME` in `env` overrides the home.
pub fn resolve_user(
    fs: &dyn FsView,
    user: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RunUser, PipError> {
    let read = |path: &str| -> Result<String, PipError> {
        let layer_path = LayerPath::new(path).map_err(|_| PipError::Location {
            path: path.to_owned(),
            problem: "not a valid path".to_owned(),
        })?;
        etc_files::read_etc(fs, &layer_path)
            .map(|bytes| {
                bytes
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })
            .map_err(|source| PipError::Read {
                path: format!("/{path}"),
                source,
            })
    };
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let name = if name.is_empty() { "0" } else { name };
    let passwd = etc_files::parse_passwd(&read("etc/passwd")?);
    let entry = match name.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|e| e.name == name)
                .cloned()
                .ok_or_else(|| PipError::UnknownUser {
                    user: user.to_owned(),
                })?,
        ),
    };
    let (uid, mut gid, mut home) = match (&entry, name.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.clone()),
        (None, Ok(0)) => (0, 0, "/root".to_owned()),
        (None, Ok(uid)) => (uid, 0, "/".to_owned()),
        (None, Err(_)) => unreachable_user(user)?,
    };
    if uid == 0 && home.is_empty() {
        home = "/root".to_owned();
    }
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => etc_files::parse_group(&read("etc/group")?)
                .into_iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| PipError::UnknownGroup {
                    user: user.to_owned(),
                    group: group.to_owned(),
                })?,
        };
    }
    if let Some(env_home) = env("HOME").filter(|h| h.starts_with('/')) {
        home = env_home;
    }
    Ok(RunUser { uid, gid, home })
}

fn unreachable_user(user: &str) -> Result<(u32, u32, String), PipError> {
    Err(PipError::UnknownUser {
        user: user.to_owned(),
    })
}

/// A requirement to install, merged across files and the command line.
struct Wanted {
    /// As written (for messages).
    display: String,
    /// The pinned version text.
    version: String,
    specifiers: VersionSpecifiers,
    hashes: Vec<String>,
    extras: BTreeSet<String>,
    origin: String,
}

/// Settings after configuration, command line and requirement files.
struct Settings {
    location: InstallLocation,
    no_deps: bool,
    hash_checking: bool,
    index_url: Option<ConfigValue>,
    extra_index_urls: Vec<ConfigValue>,
    find_links: Vec<ConfigValue>,
    no_index: bool,
}

fn cli(value: &str) -> ConfigValue {
    ConfigValue {
        value: value.to_owned(),
        origin: "the pip command line".to_owned(),
    }
}

/// Runs `pip install <args>` natively for the stage described by `request`.
pub fn pip_install(args: &[String], request: &PipRequest<'_>) -> Result<PipOutcome, PipError> {
    let parsed = pip_args::parse(args)?;
    let user = resolve_user(request.fs, request.user, request.env)?;
    let target = target::detect(request.fs, request.platform)?;
    let sys_prefix = sys_prefix(&target.interpreter);
    let config = config::load(&ConfigInputs {
        fs: request.fs,
        env: request.env,
        home: &user.home,
        workdir: request.workdir,
        sys_prefix: &sys_prefix,
    })?;
    if let Some(value) = config.no_binary.iter().find(|v| *v != ":none:") {
        return Err(PipError::NoBinary {
            value: value.clone(),
            origin: "pip configuration".to_owned(),
        });
    }
    let location = match &parsed.location {
        InstallLocation::System => match (&config.target, &config.prefix, config.user) {
            (Some(t), _, _) => InstallLocation::Target(t.value.clone()),
            (None, Some(p), _) => InstallLocation::Prefix(p.value.clone()),
            (None, None, Some(true)) => InstallLocation::User,
            _ => InstallLocation::System,
        },
        other => other.clone(),
    };
    // PEP 668, as pip checks it: only when installing into the interpreter's own environment
    // (its prefix or the user site), not with --target or --prefix.
    if matches!(location, InstallLocation::System | InstallLocation::User)
        && !parsed.break_system_packages
        && config.break_system_packages != Some(true)
    {
        check_externally_managed(request.fs, &sys_prefix, &target)?;
    }
    if matches!(location, InstallLocation::System)
        && launcher::is_debian_python(request.fs, &target).map_err(|source| PipError::Read {
            path: "/usr/lib/python3/dist-packages".to_owned(),
            source,
        })?
    {
        return Err(PipError::DebianScheme {
            interpreter: target.interpreter.clone(),
            site: format!(
                "/usr/local/lib/python{}.{}/dist-packages",
                target.version.major, target.version.minor
            ),
        });
    }
    let mut settings = Settings {
        location,
        no_deps: parsed.no_deps || config.no_deps == Some(true),
        hash_checking: parsed.require_hashes || config.require_hashes == Some(true),
        index_url: parsed.index_url.as_deref().map(cli).or(config.index_url),
        extra_index_urls: config.extra_index_urls,
        find_links: config.find_links,
        no_index: parsed.no_index || config.no_index == Some(true),
    };
    settings
        .extra_index_urls
        .extend(parsed.extra_index_urls.iter().map(|v| cli(v)));
    settings
        .find_links
        .extend(parsed.find_links.iter().map(|v| cli(v)));

    let env = target.marker_environment();
    let mut lines: Vec<RequirementLine> = Vec::new();
    let mut constraints: Vec<RequirementLine> = Vec::new();
    let mut read = |path: &str| -> std::io::Result<String> {
        let layer_path = LayerPath::new(path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        match request.fs.read_file(&layer_path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file in the image",
            )),
            Err(e) => Err(std::io::Error::other(e)),
        }
    };
    let mut lock_files: Vec<(String, String)> = Vec::new();
    let mut file_pre = false;
    for file in &parsed.requirement_files {
        let path = image_path(request.workdir, file);
        if pylock::is_pylock(&path) {
            let text = read(&path).map_err(|source| {
                PipError::Requirements(RequirementsError::Read {
                    file: path.clone(),
                    included_from: None,
                    source,
                })
            })?;
            lock_files.push((path, text));
            continue;
        }
        let parsed_file = requirements::parse(&path, &mut read, &env)?;
        absorb_file_options(&mut settings, &parsed_file, &path);
        file_pre |= parsed_file.pre;
        lines.extend(parsed_file.requirements);
        constraints.extend(parsed_file.constraints);
    }
    // PIP_CONSTRAINT (or `constraint` in pip.conf) adds to the command line's `-c` files.
    let constraint_files = config
        .constraints
        .iter()
        .map(|c| &c.value)
        .chain(&parsed.constraint_files);
    for file in constraint_files {
        let path = image_path(request.workdir, file);
        let parsed_file = requirements::parse(&path, &mut read, &env)?;
        constraints.extend(parsed_file.requirements);
        constraints.extend(parsed_file.constraints);
    }
    for spec in &parsed.specs {
        let requirement = pep508::parse_requirement(spec).map_err(|problem| PipError::Spec {
            spec: spec.clone(),
            problem,
        })?;
        if matches!(requirement.version_or_url, Some(VersionOrUrl::Url(_))) {
            return Err(PipError::Spec {
                spec: spec.clone(),
                problem: "direct URL requirements are not supported; pin a version".to_owned(),
            });
        }
        if requirement.marker.evaluate(&env, &[]) {
            lines.push(RequirementLine {
                requirement,
                hashes: Vec::new(),
                file: "the pip command line".to_owned(),
                line: 0,
            });
        }
    }
    if lines.iter().any(|l| !l.hashes.is_empty()) {
        settings.hash_checking = true;
    }
    let sources = match (sources(&settings), lock_files.is_empty()) {
        // A lock file names its own URLs; configured sources only help find listed files.
        (Err(PipError::NoSources), false) => Vec::new(),
        (result, _) => result?,
    };
    let sources_text = sources
        .iter()
        .map(|s| s.display.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let client = IndexClient::new(sources, request.cache_dir, request.offline);
    let python = python_version(&target);
    let tags = Tags::for_target(&target, LinuxTag::Exclude);
    let description = describe_target(&target);
    let fit = TargetFit {
        tags: &tags,
        python: &python,
        description: &description,
        sources: &sources_text,
    };

    // Choose and fetch every file first (nothing is installed if one is missing).
    let mut check_deps = !settings.no_deps;
    // Where each requirement of a pinned hash-checked set was written, for pip's messages.
    let mut pinned_origins: BTreeMap<String, String> = BTreeMap::new();
    let selection = if let Some((path, text)) = lock_files.first() {
        if lock_files.len() > 1 || !lines.is_empty() {
            return Err(PipError::PylockMixed { file: path.clone() });
        }
        check_deps = false;
        select_locked(path, text, &client, &env, &fit, request.offline)?
    } else if !settings.hash_checking {
        // As pip outside hash-checking mode: `==` pins are fixed points of the resolution and
        // every dependency they leave open is resolved for the target.
        check_deps = false;
        let pre = parsed.pre || file_pre;
        select_resolved(
            &lines,
            &constraints,
            &client,
            &fit,
            &resolver::ResolveOptions {
                env: &env,
                no_deps: settings.no_deps,
                pre,
            },
            request.offline,
        )?
    } else {
        let wanted = merge_requirements(&lines)?;
        check_constraints(&wanted, &constraints)?;
        let entries: Vec<(&String, &Wanted)> = wanted.iter().collect();
        let offline = request.offline;
        // A pin without hashes is fetched anyway: pip names the hash its file has.
        let picked = parallel(&entries, |(name, want)| {
            choose(name, want, &client, &fit, !want.hashes.is_empty(), offline)
        });
        let mut selection = Vec::new();
        let mut unhashed = Vec::new();
        for ((name, want), result) in entries.into_iter().zip(picked) {
            let (candidate, cached) = result?;
            if want.hashes.is_empty() {
                unhashed.push(format!(
                    "{}=={} --hash=sha256:{}",
                    want.display, want.version, cached.sha256
                ));
            }
            selection.push(Selected {
                name: name.clone(),
                display: want.display.clone(),
                file: candidate.file,
                cached,
                extras: want.extras.clone(),
                requested: true,
            });
        }
        if !unhashed.is_empty() {
            return Err(PipError::MissingHash { lines: unhashed });
        }
        pinned_origins = wanted
            .iter()
            .map(|(name, want)| (name.clone(), want.origin.clone()))
            .collect();
        selection
    };

    let scheme = scheme_for(&settings.location, &user, &target, request)?;
    let mut diff = Diff::new();
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    let mut materials = Vec::new();
    let mut installed = Vec::new();
    for chosen in &selection {
        let (name, cached) = (&chosen.name, &chosen.cached);
        let options = InstallOptions {
            scheme: &scheme,
            interpreter: &target.interpreter,
            tags: &tags,
            owner: Owner {
                uid: user.uid,
                gid: user.gid,
            },
            mtime: request.source_date_epoch,
            scratch: request.scratch_dir,
            requested: if chosen.requested {
                Requested::Yes
            } else {
                Requested::No
            },
        };
        let result =
            wheel::install_wheel(&cached.path, &cached.sha256, &options).map_err(|source| {
                PipError::Install {
                    package: chosen.display.clone(),
                    source: Box::new(source),
                }
            })?;
        let metadata_path = result
            .dist_info
            .join("METADATA")
            .map_err(|e| PipError::Location {
                path: result.dist_info.absolute(),
                problem: e.to_string(),
            })?;
        let bytes = match result.diff.get(&metadata_path).map(|e| &e.kind) {
            Some(EntryKind::File(FileContent::Bytes(bytes))) => bytes.to_vec(),
            Some(EntryKind::File(FileContent::HostFile { path, .. })) => std::fs::read(path)
                .map_err(|e| PipError::Install {
                    package: chosen.display.clone(),
                    source: Box::new(WheelError::Read {
                        wheel: chosen.file.filename.clone(),
                        member: Some("METADATA".to_owned()),
                        source: Box::new(e),
                    }),
                })?,
            _ => Vec::new(),
        };
        let metadata = CoreMetadata::parse(&chosen.file.filename, &bytes)?;
        check_requires_python(&metadata, &python)?;
        installed.push(InstalledDistribution {
            name: metadata.name.clone(),
            version: metadata.version.to_string(),
            purl: format!("pkg:pypi/{name}@{}", metadata.version),
        });
        // The cache holds a file under the sha256 it verified, so the hex always parses.
        if let Ok(sha256) = Digest::from_hex(&cached.sha256) {
            materials.push(Material::new(
                MaterialKind::PythonDistribution {
                    file_name: chosen.file.filename.clone(),
                },
                chosen.file.uri(),
                sha256,
            ));
        }
        planned.insert(
            name.clone(),
            Planned {
                metadata,
                extras: chosen.extras.clone(),
            },
        );
        diff.merge(result.diff);
    }
    if check_deps {
        resolve::check_dependencies(&planned, &env).map_err(|e| match e {
            DependencyError::Missing {
                package,
                version,
                requirement,
                dependency,
            } => PipError::UnpinnedDependency {
                origin: pinned_origins
                    .get(&normalize_name(&package))
                    .cloned()
                    .unwrap_or_default(),
                parent: format!("{package}=={version}"),
                package: dependency,
                requirement,
            },
            other => PipError::Dependency(other),
        })?;
    }
    keep_existing_dirs(&mut diff, request.fs, request.source_date_epoch)?;
    Ok(PipOutcome {
        diff,
        materials,
        warnings: Vec::new(),
        details: installed,
    })
}

/// Fails as pip does when the interpreter's stdlib directory holds PEP 668's
/// `EXTERNALLY-MANAGED` marker.
fn check_externally_managed(
    fs: &dyn FsView,
    sys_prefix: &str,
    target: &PythonTarget,
) -> Result<(), PipError> {
    let marker = format!(
        "{}/lib/python{}.{}/EXTERNALLY-MANAGED",
        sys_prefix.trim_end_matches('/'),
        target.version.major,
        target.version.minor
    );
    let Ok(path) = LayerPath::new(&marker) else {
        return Ok(());
    };
    let text = match fs.read_file(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => return Ok(()),
        Err(source) => {
            return Err(PipError::Read {
                path: marker,
                source,
            });
        }
    };
    let explanation = externally_managed_error(&text).unwrap_or_else(|| {
        format!(
            "The Python environment under {sys_prefix} is managed externally, and may not be\n\
             manipulated by the user. Please use specific tooling from the distributor of\n\
             the Python installation to interact with this Python environment instead."
        )
    });
    Err(PipError::ExternallyManaged {
        marker,
        explanation,
    })
}

/// The `Error` key of the `[externally-managed]` section (INI continuation lines joined).
fn externally_managed_error(text: &str) -> Option<String> {
    let mut in_section = false;
    let mut value: Option<Vec<String>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if value.is_some() {
                break;
            }
            in_section = trimmed == "[externally-managed]";
            continue;
        }
        if !in_section {
            continue;
        }
        match &mut value {
            Some(lines) if line.starts_with([' ', '\t']) => lines.push(trimmed.to_owned()),
            Some(_) => break,
            None => {
                if let Some((key, rest)) = line.split_once(['=', ':']) {
                    if key.trim() == "Error" {
                        value = Some(vec![rest.trim().to_owned()]);
                    }
                }
            }
        }
    }
    value.map(|lines| {
        lines
            .into_iter()
            .skip_while(|l| l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Why this `pip install` must run in the sandbox, decided from the image: the pip that
/// `launcher` (the RUN's program word) finds on the RUN's PATH is not the one kiln's native
/// install is exact for ([`crate::python::launcher`]). `None` when native is exact.
pub fn sandbox_reason(
    launcher: &str,
    request: &PipRequest<'_>,
) -> Result<Option<String>, PipError> {
    let target = match target::detect(request.fs, request.platform) {
        Ok(target) => target,
        // No interpreter: Docker's shell finds no pip either, and fails; so does the sandbox.
        Err(TargetError::NoPython) => {
            return Ok(Some(format!(
                "the image has no Python, so no `{launcher}` (the RUN fails as Docker's does)"
            )));
        }
        Err(other) => return Err(other.into()),
    };
    let path_var = (request.env)("PATH");
    match launcher::decide(
        request.fs,
        launcher,
        path_var.as_deref(),
        request.workdir,
        &target,
    ) {
        Ok(Launcher::Native) => Ok(None),
        Ok(Launcher::Sandbox(reason)) => Ok(Some(reason)),
        Err(source) => Err(PipError::Read {
            path: launcher.to_owned(),
            source,
        }),
    }
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
            PipError::NoBinary { value, .. } => {
                Some(format!("--no-binary {value} asks pip to build from source"))
            }
            _ => None,
        }
    }
}

/// A wheel chosen for the install, verified in the cache.
struct Selected {
    /// Normalized name.
    name: String,
    /// The name for messages.
    display: String,
    file: DistFile,
    cached: CachedFile,
    extras: BTreeSet<String>,
    /// The user asked for it (pip writes `REQUESTED`).
    requested: bool,
}

/// Fetches `file` into the cache; a file that does not have the required sha256 is refused.
fn fetch_verified(
    client: &IndexClient,
    file: &DistFile,
    package: &str,
) -> Result<CachedFile, PipError> {
    client.fetch(file).map_err(|source| match source {
        IndexError::SourceHash {
            expected, actual, ..
        } => PipError::HashMismatch {
            package: package.to_owned(),
            uri: file.uri(),
            expected,
            actual,
        },
        other => PipError::Index {
            package: package.to_owned(),
            source: Box::new(other),
        },
    })
}

/// The wheels of a PEP 751 lock file for the target, fetched and verified.
fn select_locked(
    path: &str,
    text: &str,
    client: &IndexClient,
    env: &pep508_rs::MarkerEnvironment,
    fit: &TargetFit<'_>,
    offline: bool,
) -> Result<Vec<Selected>, PipError> {
    let locked = pylock::select(path, text, env, fit.python, fit.tags)?;
    let mut files = Vec::new();
    for wheel in &locked {
        let listed = DistFile {
            filename: wheel.filename.clone(),
            location: FileLocation::Local(Default::default()),
            sha256: Some(wheel.sha256.clone()),
            requires_python: None,
            yanked: None,
            metadata: MetadataHint::Absent,
            source: path.to_owned(),
        };
        let location = match &wheel.url {
            Some(url) if url.scheme() == "file" => url.to_file_path().ok().map(FileLocation::Local),
            Some(url) => Some(FileLocation::Http(url.clone())),
            None => None,
        };
        // Offline, a remote URL is no use; the cache or a host directory may have the file.
        let usable = match location {
            Some(FileLocation::Http(_)) if offline => None,
            other => other,
        };
        let file = match usable {
            Some(location) => DistFile { location, ..listed },
            // No URL (or offline): the same file from the configured sources or the cache.
            _ => {
                let index_err = |source| PipError::Index {
                    package: wheel.display.clone(),
                    source: Box::new(source),
                };
                let from_sources = client
                    .files(&wheel.project)
                    .map_err(index_err)?
                    .into_iter()
                    .find(|f| f.filename == wheel.filename);
                match (from_sources, client.cached(&wheel.sha256)) {
                    (Some(found), _) => DistFile {
                        sha256: Some(wheel.sha256.clone()),
                        ..found
                    },
                    (None, Some(hit)) => DistFile {
                        location: FileLocation::Local(hit.path),
                        ..listed
                    },
                    (None, None) => {
                        return Err(PipError::LockedFileMissing {
                            package: wheel.display.clone(),
                            filename: wheel.filename.clone(),
                            file: path.to_owned(),
                            offline,
                        });
                    }
                }
            }
        };
        files.push((file, format!("{}=={}", wheel.display, wheel.version)));
    }
    let fetched = parallel(&files, |(file, package)| {
        fetch_verified(client, file, package)
    });
    let mut out = Vec::new();
    for ((wheel, (file, _)), cached) in locked.into_iter().zip(files).zip(fetched) {
        out.push(Selected {
            name: wheel.project,
            display: wheel.display,
            file,
            cached: cached?,
            extras: BTreeSet::new(),
            requested: true,
        });
    }
    Ok(out)
}

/// Resolves the requirements for the target (pins as fixed points), then fetches the chosen
/// wheels. `offline` only shapes the message for a pin the cache lacks.
fn select_resolved(
    lines: &[RequirementLine],
    constraints: &[RequirementLine],
    client: &IndexClient,
    fit: &TargetFit<'_>,
    options: &resolver::ResolveOptions<'_>,
    offline: bool,
) -> Result<Vec<Selected>, PipError> {
    let demand = |line: &RequirementLine, requirer: Requirer| Demand {
        requirement: line.requirement.clone(),
        requirer,
    };
    let roots = lines
        .iter()
        .map(|l| demand(l, Requirer::User(origin_of(l))))
        .collect();
    let constraints = constraints
        .iter()
        .map(|l| demand(l, Requirer::Constraint(origin_of(l))))
        .collect();
    // A pin that nothing can satisfy fails as pip's does, before any resolution: named with
    // what the sources have for it (other versions, sdists only, wheels for other targets).
    let pins: Vec<&RequirementLine> = lines
        .iter()
        .filter(|l| l.pinned_version().is_some())
        .collect();
    let prechecked = parallel(&pins, |line| precheck_pin(line, client, fit, offline));
    prechecked
        .into_iter()
        .collect::<Result<Vec<()>, PipError>>()?;
    let provider = resolver::IndexProvider::new(client, fit);
    let resolution = match resolver::resolve(&provider, roots, constraints, options) {
        Ok(resolution) => resolution,
        Err(ResolveError::Provider(e)) => return Err(e.into()),
        Err(ResolveError::Conflict(c)) => return Err(c.into()),
        Err(ResolveError::TooComplex(n)) => return Err(PipError::TooComplex(n)),
    };
    let entries: Vec<_> = resolution.into_iter().collect();
    let fetched = parallel(&entries, |(_, resolved)| {
        fetch_verified(client, &resolved.dist.file, &resolved.display_name)
    });
    let mut out = Vec::new();
    for ((name, resolved), cached) in entries.into_iter().zip(fetched) {
        out.push(Selected {
            name,
            display: resolved.display_name,
            file: resolved.dist.file,
            cached: cached?,
            extras: resolved.extras,
            requested: resolved.requested,
        });
    }
    Ok(out)
}

/// Fails when no file of the sources fits the pinned `line` on the target.
fn precheck_pin(
    line: &RequirementLine,
    client: &IndexClient,
    fit: &TargetFit<'_>,
    offline: bool,
) -> Result<(), PipError> {
    let display = line.requirement.name.to_string();
    let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &line.requirement.version_or_url else {
        return Ok(());
    };
    let files = client
        .files(&line.normalized_name())
        .map_err(|source| PipError::Index {
            package: display.clone(),
            source: Box::new(source),
        })?;
    match resolve::candidates(&display, specifiers, &files, fit) {
        Ok(_) => Ok(()),
        Err(SelectError::NotFound { .. })
            if offline && client.sources().iter().any(Source::is_remote) =>
        {
            Err(PipError::Offline {
                package: display,
                version: line.pinned_version().unwrap_or_default(),
                sources: fit.sources.to_owned(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `/usr/local/bin/python3.11` -> `/usr/local`.
fn sys_prefix(interpreter: &str) -> String {
    let bin = interpreter.rsplit_once('/').map_or("", |(dir, _)| dir);
    match bin.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((prefix, _)) => prefix.to_owned(),
    }
}

fn python_version(target: &PythonTarget) -> Version {
    let text = target.version.to_string();
    Version::from_str(&text).unwrap_or_else(|_| Version::new([3, u64::from(target.version.minor)]))
}

fn describe_target(target: &PythonTarget) -> String {
    let libc = match target.libc {
        Libc::Musl { major, minor } => format!("musl {major}.{minor}"),
        Libc::Glibc { major, minor } => format!("glibc {major}.{minor}"),
    };
    format!("CPython {} on {libc} {}", target.version, target.arch)
}

/// Requirement-file options take effect as in pip: `--index-url` replaces, lists extend.
fn absorb_file_options(settings: &mut Settings, file: &requirements::RequirementsFile, path: &str) {
    let origin = || format!("requirements file {path}");
    if let Some(url) = &file.index_url {
        settings.index_url = Some(ConfigValue {
            value: url.clone(),
            origin: origin(),
        });
    }
    for (list, values) in [
        (&mut settings.extra_index_urls, &file.extra_index_urls),
        (&mut settings.find_links, &file.find_links),
    ] {
        list.extend(values.iter().map(|v| ConfigValue {
            value: v.clone(),
            origin: origin(),
        }));
    }
    settings.no_index |= file.no_index;
    settings.hash_checking |= file.hash_checking;
}

fn origin_of(line: &RequirementLine) -> String {
    if line.line == 0 {
        line.file.clone()
    } else {
        format!("{}:{}", line.file, line.line)
    }
}

/// One [`Wanted`] per project (normalized name), pinned (and hashed in hash-checking mode).
fn merge_requirements(lines: &[RequirementLine]) -> Result<BTreeMap<String, Wanted>, PipError> {
    let mut out: BTreeMap<String, Wanted> = BTreeMap::new();
    for line in lines {
        let name = line.normalized_name();
        let display = crate::python::metadata::requirement_spec(&line.requirement);
        let Some(version) = line.pinned_version() else {
            return Err(PipError::Unpinned {
                requirement: display,
                origin: origin_of(line),
            });
        };
        let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &line.requirement.version_or_url
        else {
            continue;
        };
        let extras: BTreeSet<String> = line
            .requirement
            .extras
            .iter()
            .map(|e| e.to_string())
            .collect();
        match out.get_mut(&name) {
            Some(existing) => {
                if existing.version != version {
                    return Err(PipError::DoublePin {
                        package: line.requirement.name.to_string(),
                        first: existing.display.clone(),
                        second: display,
                    });
                }
                existing.extras.extend(extras);
                if existing.hashes.is_empty() {
                    existing.hashes = line.hashes.clone();
                } else if !line.hashes.is_empty() {
                    existing.hashes.retain(|h| line.hashes.contains(h));
                }
            }
            None => {
                out.insert(
                    name,
                    Wanted {
                        display: line.requirement.name.to_string(),
                        version,
                        specifiers: specifiers.clone(),
                        hashes: line.hashes.clone(),
                        extras,
                        origin: origin_of(line),
                    },
                );
            }
        }
    }
    Ok(out)
}

fn check_constraints(
    wanted: &BTreeMap<String, Wanted>,
    constraints: &[RequirementLine],
) -> Result<(), PipError> {
    for constraint in constraints {
        let Some(want) = wanted.get(&constraint.normalized_name()) else {
            continue;
        };
        let Some(VersionOrUrl::VersionSpecifier(specifiers)) =
            &constraint.requirement.version_or_url
        else {
            continue;
        };
        let Ok(version) = Version::from_str(&want.version) else {
            continue;
        };
        if !specifiers.contains(&version) {
            return Err(PipError::Constraint {
                package: want.display.clone(),
                version: want.version.clone(),
                constraint: crate::python::metadata::requirement_spec(&constraint.requirement),
            });
        }
    }
    Ok(())
}

/// find-links first, then the index and extra indexes unless `--no-index`.
fn sources(settings: &Settings) -> Result<Vec<Source>, PipError> {
    let mut out = Vec::new();
    let index_err = |source| PipError::Index {
        package: "(configuration)".to_owned(),
        source: Box::new(source),
    };
    for link in &settings.find_links {
        out.push(
            Source::parse(SourceKind::FindLinks, &link.value, &link.origin).map_err(index_err)?,
        );
    }
    if !settings.no_index {
        for index in settings.index_url.iter().chain(&settings.extra_index_urls) {
            out.push(
                Source::parse(SourceKind::Index, &index.value, &index.origin).map_err(index_err)?,
            );
        }
    }
    if out.is_empty() {
        return Err(PipError::NoSources);
    }
    Ok(out)
}

/// Picks the file for one pinned requirement and brings it into the cache, verified.
fn choose(
    name: &str,
    want: &Wanted,
    client: &IndexClient,
    fit: &TargetFit<'_>,
    hash_checking: bool,
    offline: bool,
) -> Result<(Candidate, CachedFile), PipError> {
    let index_err = |source| PipError::Index {
        package: want.display.clone(),
        source: Box::new(source),
    };
    let mut files = client.files(name).map_err(index_err)?;
    if offline {
        // Files cached by an earlier online build, found by their allowed hashes.
        for hash in &want.hashes {
            if let Some(hit) = client.cached(hash) {
                let filename = hit
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push(DistFile {
                    filename,
                    location: FileLocation::Local(hit.path.clone()),
                    sha256: Some(hit.sha256.clone()),
                    requires_python: None,
                    yanked: None,
                    metadata: MetadataHint::Absent,
                    source: "the download cache".to_owned(),
                });
            }
        }
    }
    let list = match resolve::candidates(&want.display, &want.specifiers, &files, fit) {
        Ok(list) => list,
        Err(SelectError::NotFound { .. })
            if offline && client.sources().iter().any(Source::is_remote) =>
        {
            return Err(PipError::Offline {
                package: want.display.clone(),
                version: want.version.clone(),
                sources: fit.sources.to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut first_mismatch: Option<PipError> = None;
    for candidate in list {
        // PEP 658: check Requires-Python before downloading when the index serves metadata.
        if matches!(candidate.file.location, FileLocation::Http(_))
            && candidate.file.metadata != MetadataHint::Absent
        {
            if let Some(bytes) = client.core_metadata(&candidate.file).map_err(index_err)? {
                let metadata =
                    CoreMetadata::parse(&format!("{}.metadata", candidate.file.filename), &bytes)?;
                check_requires_python(&metadata, fit.python)?;
            }
        }
        if hash_checking {
            if let Some(stated) = &candidate.file.sha256 {
                if !want.hashes.contains(stated) {
                    first_mismatch.get_or_insert_with(|| mismatch(want, &candidate, stated));
                    continue;
                }
            }
        }
        let cached = client.fetch(&candidate.file).map_err(index_err)?;
        if hash_checking && !want.hashes.contains(&cached.sha256) {
            first_mismatch.get_or_insert_with(|| mismatch(want, &candidate, &cached.sha256));
            continue;
        }
        return Ok((candidate, cached));
    }
    Err(first_mismatch.unwrap_or_else(|| PipError::Location {
        path: want.origin.clone(),
        problem: format!("no file chosen for `{}`", want.display),
    }))
}

fn mismatch(want: &Wanted, candidate: &Candidate, actual: &str) -> PipError {
    PipError::HashMismatch {
        package: format!("{}=={}", want.display, want.version),
        uri: candidate.file.uri(),
        expected: want.hashes.join(" or "),
        actual: actual.to_owned(),
    }
}

fn check_requires_python(metadata: &CoreMetadata, python: &Version) -> Result<(), PipError> {
    if let Some(requires) = &metadata.requires_python {
        if !requires.contains(python) {
            return Err(PipError::RequiresPython {
                package: metadata.name.clone(),
                version: metadata.version.to_string(),
                requires: requires.to_string(),
                python: python.to_string(),
            });
        }
    }
    Ok(())
}

/// The install scheme; its base directory is resolved through the image's symlinks.
fn scheme_for(
    location: &InstallLocation,
    user: &RunUser,
    target: &PythonTarget,
    request: &PipRequest<'_>,
) -> Result<Scheme, PipError> {
    let resolved = |raw: &str| -> Result<LayerPath, PipError> {
        let absolute = image_path(request.workdir, raw);
        let path = LayerPath::new(&absolute).map_err(|e| PipError::Location {
            path: absolute.clone(),
            problem: e.to_string(),
        })?;
        request
            .fs
            .resolve(&path, true)
            .map_err(|source| PipError::Read {
                path: absolute,
                source,
            })
    };
    let scheme_err = |e: WheelError| PipError::Location {
        path: String::new(),
        problem: e.to_string(),
    };
    match location {
        InstallLocation::User => {
            Scheme::user(&resolved(&user.home)?, target.version).map_err(scheme_err)
        }
        InstallLocation::Prefix(prefix) => {
            Scheme::prefix(&resolved(prefix)?, target.version).map_err(scheme_err)
        }
        InstallLocation::Target(dir) => Scheme::target(&resolved(dir)?).map_err(scheme_err),
        InstallLocation::System => {
            let prefix = resolved(&sys_prefix(&target.interpreter))?;
            let scheme = Scheme::prefix(&prefix, target.version).map_err(scheme_err)?;
            // pip falls back to --user when a non-root user cannot write site-packages.
            if user.uid != 0 && !writable(request.fs, &scheme.purelib, user)? {
                return Scheme::user(&resolved(&user.home)?, target.version).map_err(scheme_err);
            }
            Ok(scheme)
        }
    }
}

fn writable(fs: &dyn FsView, dir: &LayerPath, user: &RunUser) -> Result<bool, PipError> {
    let node = fs.stat(dir, true).map_err(|source| PipError::Read {
        path: dir.absolute(),
        source,
    })?;
    Ok(match node {
        Some((_, node)) => {
            let mode = node.meta.mode;
            (node.meta.uid == user.uid && mode & 0o200 != 0)
                || (node.meta.gid == user.gid && mode & 0o020 != 0)
                || mode & 0o002 != 0
        }
        None => false,
    })
}

/// Directories the image already has keep their owner, mode and attributes (pip creates only
/// the missing ones); their time becomes the step's, as a RUN that writes into them would.
fn keep_existing_dirs(diff: &mut Diff, fs: &dyn FsView, mtime: i64) -> Result<(), PipError> {
    let dirs: Vec<LayerPath> = diff
        .iter()
        .filter(|(_, e)| matches!(e.kind, EntryKind::Dir))
        .map(|(p, _)| p.clone())
        .collect();
    for path in dirs {
        let existing = fs.lstat_exact(&path).map_err(|source| PipError::Read {
            path: path.absolute(),
            source,
        })?;
        if let Some(node) = existing.filter(|n| n.kind == NodeKind::Dir) {
            let mut meta = node.meta;
            meta.mtime = mtime;
            diff.insert(
                path,
                Entry {
                    kind: EntryKind::Dir,
                    meta,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(sys_prefix("/usr/local/bin/python3.11"), "/usr/local");
        assert_eq!(sys_prefix("/usr/bin/python3.11"), "/usr");
        assert_eq!(sys_prefix("/bin/python3"), "/");
    }
}
