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
//! `--prefix`, `--target` or the interpreter's own prefix. Distributions already on the
//! interpreter's path are kept, shadowed from the user site or (where pip would uninstall them)
//! left to the real pip in the sandbox, as pip treats them
//! ([`crate::python::install::installed`]). Hash-checking mode (any `--hash`,
//! `--require-hashes`, `PIP_REQUIRE_HASHES`) keeps pip's rule: every requirement, dependencies
//! included, is listed, pinned and hashed; each file's sha256 must be an allowed one, and the
//! failures are worded as pip words them.
//!
//! A PEP 751 lock file given with `-r pylock.toml` (or `pylock.<name>.toml`) is installed
//! exactly as listed ([`crate::python::pylock`]): no resolution, each package's wheel for the
//! target, its sha256 checked. The chosen files are downloaded in parallel. The Diffs merge in
//! name order; directories that already exist in the image keep their owner and mode.
//!
//! This file runs the steps in order; the RUN user is resolved in `user.rs`, the requirement
//! sources read in `gather.rs`, hash-checking mode's pins chosen and checked in
//! `hash_checking.rs`, and `sandbox.rs` says when the RUN must go to the sandbox instead.

mod gather;
mod hash_checking;
mod sandbox;
mod user;

use std::collections::BTreeMap;
use std::path::Path;

use crate::digest::Digest;
use crate::image::platform::Platform;
use crate::layer::{Diff, EntryKind, FileContent};
use crate::material::{Material, MaterialKind, StepOutput};
use crate::python::config::{self, ConfigInputs, image_path};
use crate::python::index::IndexClient;
use crate::python::launcher;
use crate::python::metadata::CoreMetadata;
use crate::python::pip_args::{self, InstallLocation};
use crate::python::requirements::RequirementLine;
use crate::python::resolve::{DependencyError, Planned, TargetFit};
use crate::python::resolver::{self};
use crate::python::tags::{LinuxTag, Tags};
use crate::python::target;
use crate::python::wheel::{self, InstallOptions, Owner, Requested, WheelError, normalize_name};
use crate::rootfs::FsView;

use crate::python::install::installed::{self, Installed, PathInputs};
use crate::python::install::scheme::{
    check_externally_managed, describe_target, keep_existing_dirs, python_version, scheme_for,
    sys_prefix,
};
use crate::python::install::select::{
    AlreadyInstalled, check_requires_python, select_locked, select_resolved,
};
use crate::python::install::settings::{Settings, cli, sources};
pub use crate::python::install::{PipError, RunUser};
use crate::python::resolver::Upgrade;

use gather::Gathered;
use hash_checking::{check_with_installed, select_pinned};
pub use sandbox::sandbox_reason;
pub use user::resolve_user;

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
    let (config_upgrade, config_strategy) = (config.upgrade, config.upgrade_strategy.clone());
    let force_reinstall = parsed.force_reinstall || config.force_reinstall == Some(true);
    let ignore_installed = parsed.ignore_installed || config.ignore_installed == Some(true);
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
    let Gathered {
        lines,
        constraints,
        lock_files,
        pre: file_pre,
    } = gather::requirements(&parsed, &config.constraints, &mut settings, request, &env)?;
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

    // site.py's user base: PYTHONUSERBASE as given (relative to the working directory), or
    // ~/.local.
    let user_base = match (request.env)("PYTHONUSERBASE").filter(|v| !v.is_empty()) {
        Some(base) => image_path(request.workdir, &base),
        None => format!("{}/.local", user.home.trim_end_matches('/')),
    };
    let (scheme, site) = scheme_for(
        &settings.location,
        &user,
        &user_base,
        &target,
        request.fs,
        request.workdir,
    )?;
    let upgrade = upgrade_rule(&parsed, config_upgrade, config_strategy.as_ref(), &lines)?;
    let is_target = matches!(settings.location, InstallLocation::Target(_));
    if !is_target && (request.env)("PYTHONHOME").is_some_and(|v| !v.is_empty()) {
        return Err(PipError::Unmodeled {
            variable: "PYTHONHOME".to_owned(),
        });
    }
    // --target implies --ignore-installed, as in pip.
    let on_path = if ignore_installed || is_target {
        Installed::none()
    } else {
        installed::find(&PathInputs {
            fs: request.fs,
            target: &target,
            user_base: &user_base,
            workdir: request.workdir,
            env: request.env,
        })?
    };
    let already = AlreadyInstalled {
        installed: &on_path,
        upgrade,
        site,
        force_reinstall,
    };

    // Choose and fetch every file first (nothing is installed if one is missing).
    let mut check_deps = !settings.no_deps;
    // Installed distributions that hash-checking mode keeps, for its dependency check.
    let mut kept: BTreeMap<String, Planned> = BTreeMap::new();
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
            &already,
            request.offline,
        )?
    } else {
        let pinned = select_pinned(
            &lines,
            &constraints,
            &already,
            &client,
            &fit,
            request.offline,
        )?;
        kept = pinned.kept;
        pinned_origins = pinned.origins;
        pinned.selection
    };

    let mut diff = Diff::new();
    let mut planned: BTreeMap<String, Planned> = kept;
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
        check_with_installed(&mut planned, &on_path, force_reinstall, &env).map_err(
            |e| match e {
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
            },
        )?;
    }
    keep_existing_dirs(&mut diff, request.fs, request.source_date_epoch)?;
    Ok(PipOutcome {
        diff,
        materials,
        warnings: Vec::new(),
        details: installed,
    })
}

/// pip's upgrade strategy for this install: `to-satisfy-only` without `--upgrade`; with it,
/// `only-if-needed` (the projects the user named) unless `--upgrade-strategy eager`.
fn upgrade_rule(
    parsed: &pip_args::PipInstall,
    config_upgrade: Option<bool>,
    config_strategy: Option<&config::ConfigValue>,
    lines: &[RequirementLine],
) -> Result<Upgrade, PipError> {
    if !(parsed.upgrade || config_upgrade == Some(true)) {
        return Ok(Upgrade::Never);
    }
    let strategy = match &parsed.upgrade_strategy {
        Some(value) => value.clone(),
        None => config_strategy.map_or_else(|| "only-if-needed".to_owned(), |v| v.value.clone()),
    };
    match strategy.as_str() {
        "eager" => Ok(Upgrade::Eager),
        "only-if-needed" => Ok(Upgrade::Named(
            lines.iter().map(RequirementLine::normalized_name).collect(),
        )),
        other => Err(PipError::Args(pip_args::PipArgsError::UnknownFlag(
            format!("--upgrade-strategy {other} (pip configuration)"),
        ))),
    }
}
