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

use std::collections::BTreeMap;
use std::path::Path;

use pep508_rs::VersionOrUrl;

use crate::digest::Digest;
use crate::image::platform::Platform;
use crate::layer::{Diff, EntryKind, FileContent, LayerPath};
use crate::material::{Material, MaterialKind, StepOutput};
use crate::python::config::{self, ConfigInputs, image_path};
use crate::python::index::{IndexClient, parallel};
use crate::python::launcher::{self, Launcher};
use crate::python::metadata::CoreMetadata;
use crate::python::pep508;
use crate::python::pip_args::{self, InstallLocation};
use crate::python::pylock::{self};
use crate::python::requirements::{self, RequirementLine, RequirementsError};
use crate::python::resolve::{self, DependencyError, Planned, TargetFit};
use crate::python::resolver::{self};
use crate::python::tags::{LinuxTag, Tags};
use crate::python::target::{self, TargetError};
use crate::python::wheel::{self, InstallOptions, Owner, Requested, WheelError, normalize_name};
use crate::rootfs::{FsView, ViewError};
use crate::users::etc as etc_files;

use crate::python::install::installed::{
    self, Installed, PathInputs, Replacement, check_replacement,
};
use crate::python::install::scheme::{
    check_externally_managed, describe_target, keep_existing_dirs, python_version, scheme_for,
    sys_prefix,
};
use crate::python::install::select::{
    AlreadyInstalled, Selected, check_requires_python, choose, select_locked, select_resolved,
};
use crate::python::install::settings::{
    Settings, Wanted, absorb_file_options, check_constraints, cli, merge_requirements, sources,
};
pub use crate::python::install::{PipError, RunUser};
use crate::python::resolver::Upgrade;

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
        let wanted = merge_requirements(&lines)?;
        check_constraints(&wanted, &constraints)?;
        // A pin an installed distribution satisfies is kept, without a file to hash (pip
        // prepares only what it installs).
        let candidates = if force_reinstall {
            BTreeMap::new()
        } else {
            on_path.candidates()
        };
        let entries: Vec<(&String, &Wanted)> = wanted
            .iter()
            .filter(|(name, want)| match candidates.get(*name) {
                Some(dist) if want.specifiers.contains(&dist.version) => {
                    kept.insert((*name).clone(), planned_installed(dist, &want.extras));
                    false
                }
                _ => true,
            })
            .collect();
        let offline = request.offline;
        // A pin without hashes is fetched anyway: pip names the hash its file has.
        let picked = parallel(&entries, |(name, want)| {
            choose(name, want, &client, &fit, !want.hashes.is_empty(), offline)
        });
        let mut selection = Vec::new();
        let mut unhashed = Vec::new();
        for ((name, want), result) in entries.into_iter().zip(picked) {
            let (candidate, cached) = result?;
            if check_replacement(&on_path, name, &candidate.version, site, force_reinstall)?
                == Replacement::AlreadyThere
            {
                continue;
            }
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

/// An installed distribution as a member of the set hash-checking mode checks.
fn planned_installed(
    dist: &crate::python::resolver::InstalledVersion,
    extras: &std::collections::BTreeSet<String>,
) -> Planned {
    Planned {
        metadata: CoreMetadata {
            name: dist.display_name.clone(),
            version: dist.version.clone(),
            requires_python: None,
            requires_dist: dist.requires_dist.clone(),
            provides_extra: Vec::new(),
        },
        extras: extras.clone(),
    }
}

/// Hash-checking mode's dependency check, where a dependency an installed distribution
/// satisfies needs no listing (pip keeps it without preparing a file).
fn check_with_installed(
    planned: &mut BTreeMap<String, Planned>,
    installed: &Installed,
    force_reinstall: bool,
    env: &pep508_rs::MarkerEnvironment,
) -> Result<(), DependencyError> {
    let candidates = if force_reinstall {
        BTreeMap::new()
    } else {
        installed.candidates()
    };
    loop {
        let outcome = resolve::check_dependencies(planned, env);
        let Err(DependencyError::Missing {
            dependency,
            requirement,
            ..
        }) = &outcome
        else {
            return outcome;
        };
        let name = normalize_name(dependency);
        // Only an installed version the dependency accepts is kept; another would have to be
        // installed, which needs it listed and hashed (the Missing error, in pip's words).
        let satisfying = candidates.get(&name).filter(|dist| {
            pep508::parse_requirement(requirement).is_ok_and(|r| match &r.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                    specifiers.contains(&dist.version)
                }
                _ => true,
            })
        });
        match satisfying {
            Some(dist) if !planned.contains_key(&name) => {
                let kept = planned_installed(dist, &Default::default());
                planned.insert(name, kept);
            }
            _ => return outcome,
        }
    }
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
        Ok(Launcher::Native) => workdir_distributions(launcher, request),
        Ok(Launcher::Sandbox(reason)) => Ok(Some(reason)),
        Err(source) => Err(PipError::Read {
            path: launcher.to_owned(),
            source,
        }),
    }
}

/// `python -m pip` puts the working directory first on `sys.path`, so pip sees the
/// distributions there as installed; kiln's native step does not look there, so such a RUN
/// goes to the sandbox.
fn workdir_distributions(
    launcher: &str,
    request: &PipRequest<'_>,
) -> Result<Option<String>, PipError> {
    let program = launcher.rsplit('/').next().unwrap_or(launcher);
    if !program.starts_with("python") {
        return Ok(None);
    }
    let Ok(workdir) = LayerPath::new(request.workdir) else {
        return Ok(None);
    };
    let read_err = |source| PipError::Read {
        path: request.workdir.to_owned(),
        source,
    };
    let Some((resolved, node)) = request.fs.stat(&workdir, true).map_err(read_err)? else {
        return Ok(None);
    };
    if node.kind != crate::rootfs::NodeKind::Dir {
        return Ok(None);
    }
    let names = request.fs.read_dir(&resolved).map_err(read_err)?;
    Ok(names
        .iter()
        .find(|n| {
            [".dist-info", ".egg-info", ".egg-link"]
                .iter()
                .any(|s| n.ends_with(s))
        })
        .map(|name| {
            format!(
                "`{launcher} -m pip` also sees the distributions in the working directory \
                 {} ({name}), which kiln's native step does not read",
                request.workdir
            )
        }))
}
