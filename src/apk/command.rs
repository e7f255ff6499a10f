//! The entry point the build calls for a RUN made of apk commands: [`run`] takes the commands
//! ([`ApkCommand`]s, or any caller's command type that can say which apk command it is, through
//! [`ToApkCommand`]), the lower filesystem and [`ApkOptions`], and returns an [`ApkOutcome`]:
//! the layer's [`Diff`](crate::layer::Diff), the [`Material`]s consumed (indexes and packages
//! with their digests), warnings (scripts and triggers not run) and the plan of each solving
//! command.
//!
//! Plan, prepare, apply: repositories come from the lower `/etc/apk/repositories` (or the
//! options), their indexes are verified against the lower `/etc/apk/keys`; each command is
//! solved to a [`Plan`], every package of the plan is read and verified against its index `C:`
//! before anything is applied, then the plan is applied onto an [`Overlay`] of the lower view.
//! Several commands apply in order, each seeing the previous ones' result. Repositories are
//! local directories (`/path`, `file:///path`) read in place, or `http(s)://` mirrors fetched
//! through a cache keyed by URL (indexes) and by checksum (packages); `--offline` uses only
//! the cache.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::args::ApkCommand;
use super::checksum::Checksum;
use super::fetch::{Fetcher, Kept, RepoLocation};
use super::index::Index;
use super::index::PackageInfo;
use super::install::{ApplyContext, apply_plan};
use super::package::{Package, Trust};
use super::signed::Keyring;
use super::solve::{ChangeKind, Mode, Plan, Universe, solve};
use super::state::State;
use super::{ApkError, PackageConstraint, Requirement};
use crate::digest::Digest;
use crate::layer::LayerPath;
use crate::material::{Material, MaterialKind, StepOutput};
use crate::rootfs::{FsView, Overlay};
use crate::users::etc::read_etc;

/// A command [`run`] can apply: an [`ApkCommand`] itself, or a caller's richer command type
/// that holds one (the RUN step's recognized commands).
pub trait ToApkCommand: std::fmt::Debug {
    /// The apk command this is, or `None` when it is not one (which [`run`] refuses).
    fn to_apk_command(&self) -> Option<ApkCommand>;
}

impl ToApkCommand for ApkCommand {
    fn to_apk_command(&self) -> Option<ApkCommand> {
        Some(self.clone())
    }
}

/// Settings for [`run`].
#[derive(Clone, Debug, Default)]
pub struct ApkOptions {
    /// Repositories to use instead of the lower `/etc/apk/repositories` (lines as in that
    /// file). Default: `None` (read the file).
    pub repositories: Option<Vec<String>>,
    /// Repositories appended after the others. Default: none.
    pub extra_repositories: Vec<String>,
    /// Where fetched indexes (by URL) and packages (by checksum) are cached. Default: `None`
    /// (nothing is kept; local repositories are always read in place).
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache for HTTP repositories. Default: false.
    pub offline: bool,
    /// A directory for large extracted contents. Default: `None` (contents are held in memory).
    pub scratch_dir: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH: the mtime of the state files written and of emulated users' entries.
    /// Default 0.
    pub source_date_epoch: i64,
}

/// What [`run`] produced: the layer's changes, the indexes and packages read (in order), the
/// scripts, triggers and behaviours not emulated, and the plan of each solving command.
pub type ApkOutcome = StepOutput<Vec<Plan>>;

/// One configured repository.
#[derive(Clone, Debug)]
struct Repo {
    location: RepoLocation,
}

struct Loaded {
    repos: Vec<(Repo, Index)>,
    arch: String,
}

fn parse_repo_line(line: &str) -> Result<Option<Repo>, ApkError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let mut url = words.next().unwrap_or_default();
    if url.starts_with('@') {
        return Err(ApkError::Unsupported(format!(
            "tagged repositories (`{line}`)"
        )));
    }
    if matches!(url, "v2" | "v3" | "ndx") {
        url = words.next().unwrap_or_default();
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Some(Repo {
            location: RepoLocation::Http(url.trim_end_matches('/').to_owned()),
        }));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if !path.starts_with('/') {
        return Err(ApkError::Unsupported(format!("repository `{url}`")));
    }
    Ok(Some(Repo {
        location: RepoLocation::Dir(PathBuf::from(path.trim_end_matches('/'))),
    }))
}

fn load_repositories(
    lower: &dyn FsView,
    options: &ApkOptions,
    fetcher: &Fetcher,
    materials: &mut Vec<Material>,
) -> Result<Loaded, ApkError> {
    let arch = read_etc(
        lower,
        &LayerPath::new("etc/apk/arch").unwrap_or_else(|_| LayerPath::root()),
    )
    .map_err(ApkError::view("/etc/apk/arch"))?
    .map(|b| {
        String::from_utf8_lossy(&b)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
    })
    .filter(|a| !a.is_empty())
    .ok_or_else(|| ApkError::Missing {
        archive: "the lower filesystem".into(),
        what: "/etc/apk/arch".into(),
    })?;
    let lines: Vec<String> = match &options.repositories {
        Some(lines) => lines.clone(),
        None => {
            let path = LayerPath::new("etc/apk/repositories").unwrap_or_else(|_| LayerPath::root());
            let bytes = read_etc(lower, &path)
                .map_err(ApkError::view("/etc/apk/repositories"))?
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    };
    let keyring = Keyring::from_view(lower)?;
    let mut repos = Vec::new();
    for line in lines.iter().chain(options.extra_repositories.iter()) {
        let Some(repo) = parse_repo_line(line)? else {
            continue;
        };
        let relative = format!("{arch}/APKINDEX.tar.gz");
        let uri = repo.location.uri(&relative);
        let bytes = fetcher.index(&repo.location, &relative)?;
        let index = Index::parse(&bytes, &uri, &keyring)?;
        fetcher.keep(Kept::Index(&repo.location, &uri), &bytes)?;
        materials.push(Material::new(
            MaterialKind::ApkIndex,
            uri,
            Digest::of(&bytes),
        ));
        repos.push((repo, index));
    }
    Ok(Loaded { repos, arch })
}

/// The package `apk add --virtual NAME PKGS` records: only in the installed db, `A:noarch`,
/// `I:0`, `T:virtual meta package`, depending on `PKGS`, versioned by the time as
/// `YYYYMMDD.HHMMSS` (UTC). apk takes the wall clock and hashes its pid into `C:`; kiln takes
/// SOURCE_DATE_EPOCH and hashes the name and version, so the record is reproducible.
fn virtual_package(name: &str, depends: &[PackageConstraint], epoch: i64) -> PackageInfo {
    let stamp = crate::image::rfc3339(epoch);
    let version = format!(
        "{}.{}",
        stamp[..10].replace('-', ""),
        stamp[11..19].replace(':', "")
    );
    PackageInfo {
        checksum: Checksum::sha1_of(format!("{name}\n{version}\n").as_bytes()),
        name: name.to_owned(),
        version,
        arch: Some("noarch".to_owned()),
        size: 0,
        installed_size: 0,
        description: "virtual meta package".to_owned(),
        url: String::new(),
        license: String::new(),
        origin: None,
        maintainer: None,
        build_time: None,
        commit: None,
        provider_priority: None,
        depends: depends.to_vec(),
        provides: Vec::new(),
        install_if: Vec::new(),
        unknown_upper: Vec::new(),
    }
}

/// The world entries that depend, through the installed db, on a package named in `names`
/// (what `apk del -r` removes with them).
fn reverse_dependents(state: &State, names: &[String]) -> Vec<String> {
    let provides = |pkg: &PackageInfo, name: &str| {
        pkg.name == name || pkg.provides.iter().any(|p| p.name == name)
    };
    let find = |name: &str| {
        state
            .db
            .packages
            .iter()
            .map(|p| &p.info)
            .find(|p| provides(p, name))
    };
    let mut out = Vec::new();
    for entry in &state.world {
        if entry.conflict || names.contains(&entry.name) {
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut queue: Vec<&PackageInfo> = find(&entry.name).into_iter().collect();
        let mut hit = false;
        while let Some(pkg) = queue.pop() {
            if !seen.insert(pkg.name.clone()) {
                continue;
            }
            if pkg.name != entry.name && names.iter().any(|n| provides(pkg, n)) {
                hit = true;
                break;
            }
            for dep in pkg.depends.iter().filter(|d| !d.conflict) {
                queue.extend(find(&dep.name));
            }
        }
        if hit {
            out.push(entry.name.clone());
        }
    }
    out
}

/// One package to fetch and verify.
struct FetchJob<'r> {
    candidate: usize,
    location: &'r RepoLocation,
    relative: String,
    checksum: Checksum,
}

/// Parallel fetches: mirrors answer several requests at once, and verification (inflating and
/// hashing) uses every core.
const FETCH_WORKERS: usize = 4;

/// A package file's bytes and the package read (and verified) from them.
type Fetched = Result<(Vec<u8>, Package), ApkError>;

/// Fetches and verifies every job's package, in parallel; results in job order.
fn fetch_packages(fetcher: &Fetcher, jobs: &[FetchJob<'_>]) -> Vec<Fetched> {
    crate::parallel::map(jobs, FETCH_WORKERS, |job| {
        let uri = job.location.uri(&job.relative);
        let bytes = fetcher.package(job.location, &job.relative, &job.checksum.hex())?;
        let pkg = Package::open(&bytes, &uri, Trust::Index(job.checksum))?;
        Ok((bytes, pkg))
    })
}

/// Runs apk commands natively on `lower` (see the module docs).
pub fn run<C: ToApkCommand>(
    commands: &[C],
    lower: &dyn FsView,
    options: &ApkOptions,
) -> Result<ApkOutcome, ApkError> {
    let mut overlay = Overlay::new(lower);
    let mut state = State::load(lower)?;
    let mut materials = Vec::new();
    let mut warnings = Vec::new();
    let mut plans = Vec::new();
    let mut loaded: Option<Loaded> = None;
    let fetcher = Fetcher::new(options.cache_dir.clone(), options.offline);
    for command in commands {
        let mut pending_virtual: Option<PackageInfo> = None;
        let mut deleting: Vec<String> = Vec::new();
        let mut upgrading: Vec<String> = Vec::new();
        let mut purge_modified_config = false;
        let Some(apk_command) = command.to_apk_command() else {
            return Err(ApkError::Unsupported(format!(
                "`{command:?}` is not an apk command"
            )));
        };
        let mode = match &apk_command {
            ApkCommand::Update => {
                if loaded.is_none() {
                    loaded = Some(load_repositories(lower, options, &fetcher, &mut materials)?);
                }
                warnings.push(
                    "apk update: indexes are verified but not stored in /var/cache/apk".into(),
                );
                continue;
            }
            // `--latest` needs nothing more: kiln's upgrade always prefers the newest version.
            ApkCommand::Upgrade { available, .. } => {
                if *available {
                    Mode::UpgradeAvailable
                } else {
                    Mode::Upgrade
                }
            }
            ApkCommand::Add {
                upgrade,
                virtual_name,
                packages,
                ..
            } => {
                if *upgrade {
                    upgrading = packages.iter().map(|p| p.name.clone()).collect();
                }
                for wanted in packages {
                    if let Requirement::Checksum(_) = wanted.requirement {
                        return Err(ApkError::Unsupported(format!("apk add `{wanted}`")));
                    }
                }
                let added: Vec<PackageConstraint> = match virtual_name {
                    Some(name) => {
                        let info = virtual_package(name, packages, options.source_date_epoch);
                        let pinned = PackageConstraint::parse(&format!("{name}={}", info.version))
                            .map_err(|e| {
                                ApkError::Unsupported(format!("virtual package name `{name}`: {e}"))
                            })?;
                        pending_virtual = Some(info);
                        vec![pinned]
                    }
                    None => packages.clone(),
                };
                for wanted in added {
                    match state.world.iter_mut().find(|c| c.name == wanted.name) {
                        Some(existing) => *existing = wanted,
                        None => state.world.push(wanted),
                    }
                }
                state.world_changed = true;
                Mode::Add
            }
            ApkCommand::Del {
                packages,
                rdepends,
                purge,
            } => {
                purge_modified_config = *purge;
                let mut names = packages.clone();
                if *rdepends {
                    names.extend(reverse_dependents(&state, packages));
                }
                for name in &names {
                    if !state.world.iter().any(|c| &c.name == name) {
                        warnings.push(format!("apk del: `{name}` is not in world"));
                    }
                }
                state.world.retain(|c| !names.contains(&c.name));
                state.world_changed = true;
                deleting = names;
                Mode::Add
            }
        };
        if let Some(tagged) = state.world.iter().find(|c| c.tag.is_some()) {
            return Err(ApkError::Unsupported(format!(
                "repository tags in world (`{tagged}`)"
            )));
        }
        if loaded.is_none() {
            loaded = Some(load_repositories(lower, options, &fetcher, &mut materials)?);
        }
        let Some(repos) = loaded.as_ref() else {
            continue;
        };
        let mut universe = Universe::new();
        let installed: Vec<_> = state.db.packages.iter().map(|p| p.info.clone()).collect();
        for info in &installed {
            universe.add_installed(info.clone());
        }
        for (i, (_, index)) in repos.repos.iter().enumerate() {
            for info in &index.packages {
                universe.add_available(info.clone(), i);
            }
        }
        if let Some(info) = pending_virtual.take() {
            universe.add_virtual(info);
        }
        universe.prefer_newest_for(&upgrading);
        let plan = solve(&universe, &state.world, &installed, mode)?;
        for name in &deleting {
            let still_installed = installed.iter().any(|p| &p.name == name)
                && !plan.changes.iter().any(|c| {
                    c.kind == ChangeKind::Remove && c.old.as_ref().is_some_and(|o| &o.name == name)
                });
            if still_installed {
                warnings.push(format!(
                    "apk del: `{name}` is not removed: a package in world still depends on it"
                ));
            }
        }
        // Prepare: fetch and verify every package (several at once) before applying anything.
        let mut jobs = Vec::new();
        for change in &plan.changes {
            let Some(idx) = change.new else { continue };
            let cand = &universe.candidates[idx];
            if cand.virtual_package {
                continue;
            }
            let Some(repo_idx) = cand.repo else {
                return Err(ApkError::Unsupported(format!(
                    "reinstalling `{}`, which no repository provides",
                    cand.info.id()
                )));
            };
            let arch = cand.info.arch.clone().unwrap_or_else(|| repos.arch.clone());
            jobs.push(FetchJob {
                candidate: idx,
                location: &repos.repos[repo_idx].0.location,
                relative: format!("{arch}/{}.apk", cand.info.id()),
                checksum: cand.info.checksum,
            });
        }
        let mut packages = BTreeMap::new();
        for (job, fetched) in jobs.iter().zip(fetch_packages(&fetcher, &jobs)) {
            let (bytes, pkg) = fetched?;
            fetcher.keep(Kept::Package(job.location, &job.checksum.hex()), &bytes)?;
            // The package read computed the file's sha256 already.
            let sha256 = Digest::from_hex(&pkg.sha256).unwrap_or_else(|_| Digest::of(&bytes));
            materials.push(Material::new(
                MaterialKind::ApkPackage {
                    checksum: pkg.checksum.q1(),
                },
                job.location.uri(&job.relative),
                sha256,
            ));
            packages.insert(job.candidate, pkg);
        }
        let ctx = ApplyContext {
            universe: &universe,
            packages: &packages,
            source_date_epoch: options.source_date_epoch,
            purge_modified_config,
        };
        warnings.extend(apply_plan(&plan, &ctx, &mut overlay, &mut state)?);
        plans.push(plan);
    }
    state.write(&mut overlay, options.source_date_epoch)?;
    Ok(ApkOutcome {
        diff: overlay.into_diff(),
        materials,
        warnings,
        details: plans,
    })
}
