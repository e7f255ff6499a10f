//! Resolving loose requirements (`flask`, `requests>=2,<3`, `foo[bar]; python_version < "3.12"`)
//! into one version per project for the TARGET, with backtracking.
//!
//! [`resolve`] works on any [`Provider`]: something that lists a project's usable versions
//! (newest first, already filtered for the target's tags, Python and yanked files) and gives the
//! dependencies of one of them. [`IndexProvider`] is the provider over the configured sources:
//! it ranks wheels with [`crate::python::resolve::candidates`] and reads dependencies from the
//! PEP 658 `.metadata` file when the source has one, else from the wheel's own METADATA.
//!
//! When a decision brings several new projects, the provider is asked to prefetch them
//! ([`Provider::prefetch`]): [`IndexProvider`] reads their pages and newest metadata in
//! parallel, so a remote index costs a round trip per level of the tree rather than per project.
//!
//! The search is depth-first, as pip's resolver: projects are decided in the order they are
//! first required; each gets the newest version that satisfies every requirement on it so far
//! (and the constraints); its dependencies (markers evaluated for the target, with the extras
//! asked of it) join the requirements; a dependency on an already decided project that the
//! decided version does not satisfy, or a project no version satisfies, rejects the choice and
//! the next older version is tried, undoing everything decided after it. When nothing works,
//! the [`Conflict`] reported is the first dead end met, which names the project, every
//! requirement on it and who made each (the user's file and line, or `name version`), as
//! pip's "ResolutionImpossible" explanation does. Pre-releases are considered only when a
//! specifier names one or no final release exists.

mod index_provider;
mod installed;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, Requirement, VersionOrUrl};

use crate::python::metadata::requirement_spec;
use crate::python::wheel::normalize_name;

pub use index_provider::{IndexProvider, ProviderError, wheel_metadata};
pub use installed::{Choice, InstalledVersion, Upgrade, WithInstalled};

/// How many versions may be tried in all before giving up.
const MAX_ATTEMPTS: usize = 20_000;

/// Who asked for a requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirer {
    /// The user, in a requirements file (`file:line`) or on the command line.
    User(String),
    /// A dependency of `name version`.
    Package(String, Version),
    /// A constraint (`-c`), at `file:line`.
    Constraint(String),
}

/// One requirement and where it comes from.
#[derive(Clone, Debug)]
pub struct Demand {
    /// The requirement (its marker already evaluated true).
    pub requirement: Requirement,
    /// Who asked.
    pub requirer: Requirer,
}

impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = requirement_spec(&self.requirement);
        match &self.requirer {
            Requirer::User(origin) => write!(f, "the user requested {spec} ({origin})"),
            Requirer::Package(name, version) => write!(f, "{name} {version} depends on {spec}"),
            Requirer::Constraint(origin) => write!(f, "the constraint {spec} ({origin})"),
        }
    }
}

/// Requirements that no choice of versions satisfies together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The project no version fits.
    pub package: String,
    /// Every requirement on it, as `who requested what`.
    pub causes: Vec<String>,
    /// Why no version fits (`no version of X satisfies all of them (versions there: ...)`).
    pub reason: String,
    /// No version at all can be installed on the target, whatever the requirements say.
    pub unavailable: bool,
    /// Versions tried in the whole search.
    pub attempts: usize,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let causes: String = self.causes.iter().map(|c| format!("\n  {c}")).collect();
        let tried = self.attempts;
        if self.unavailable {
            write!(
                f,
                "cannot install `{}`, which is required:{causes}\n{}; it cannot be installed on \
                 the target at all (kiln tried {tried} versions)",
                self.package, self.reason
            )
        } else if self.causes.len() < 2 {
            write!(
                f,
                "no version of `{}` fits:{causes}\n{}; change the requirement (kiln tried {tried} \
                 versions)",
                self.package, self.reason
            )
        } else {
            write!(
                f,
                "cannot install the requirements because they conflict on `{}`:{causes}\n{}; \
                 loosen or remove one of these requirements (kiln tried {tried} versions)",
                self.package, self.reason
            )
        }
    }
}

impl std::error::Error for Conflict {}

/// Why resolution stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E> {
    /// The provider failed (network, unreadable metadata...).
    #[error(transparent)]
    Provider(E),
    /// The requirements conflict.
    #[error(transparent)]
    Conflict(Conflict),
    /// The search went on too long.
    #[error(
        "resolution gave up after trying {0} versions; pin some of the requirements (`kiln lock \
         pip` writes a complete pinned set)"
    )]
    TooComplex(usize),
}

/// The versions of a project that fit the target and some specifiers.
pub struct Versions<D> {
    /// Best first: newest version, each with the distribution to install.
    pub found: Vec<(Version, D)>,
    /// Why `found` is empty (from the provider's point of view), when it is.
    pub why_none: String,
}

/// The dependencies of one distribution.
pub struct Dependencies {
    /// Its `Requires-Dist` (markers not evaluated yet).
    pub requires_dist: Vec<Requirement>,
    /// The name as the distribution spells it (`Flask`).
    pub display_name: String,
    /// Its metadata's Requires-Python, when that excludes the target.
    pub requires_other_python: Option<String>,
}

/// Where versions and dependencies come from.
pub trait Provider {
    /// A chosen distribution (e.g. the wheel to install).
    type Dist: Clone;
    /// Why the provider failed.
    type Error;
    /// The usable versions of `name` (normalized) satisfying `specifiers`, newest first.
    fn versions(
        &self,
        name: &str,
        specifiers: &VersionSpecifiers,
    ) -> Result<Versions<Self::Dist>, Self::Error>;
    /// The dependencies of `dist`, version `version` of `name`.
    fn dependencies(
        &self,
        name: &str,
        version: &Version,
        dist: &Self::Dist,
    ) -> Result<Dependencies, Self::Error>;
    /// A hint that `names` are about to be needed: a provider that fetches over the network
    /// may get their listings (and the newest version's metadata) now, all at once.
    fn prefetch(&self, _names: &[String]) {}
    /// Whether `dist` is already installed: it is offered whatever the pre-release policy,
    /// which applies to the sources' versions only (as pip's installed candidate).
    fn is_installed(&self, _dist: &Self::Dist) -> bool {
        false
    }
}

/// One decided project.
#[derive(Clone, Debug)]
pub struct Resolved<D> {
    /// The name as the distribution spells it.
    pub display_name: String,
    /// The version.
    pub version: Version,
    /// The distribution.
    pub dist: D,
    /// The extras asked of it.
    pub extras: BTreeSet<String>,
    /// Whether the user asked for it directly.
    pub requested: bool,
}

/// The outcome: normalized name -> decision.
pub type Resolution<D> = BTreeMap<String, Resolved<D>>;

/// What [`resolve`] needs besides the provider.
pub struct ResolveOptions<'a> {
    /// The target's marker environment.
    pub env: &'a MarkerEnvironment,
    /// `--no-deps`: decide the user's requirements only.
    pub no_deps: bool,
    /// `--pre`: consider pre-releases everywhere.
    pub pre: bool,
}

#[derive(Clone)]
struct State<D> {
    decided: BTreeMap<String, Resolved<D>>,
    /// Every requirement so far, by normalized project name.
    demands: BTreeMap<String, Vec<Demand>>,
    /// Projects in the order they were first required.
    order: Vec<String>,
}

struct Search<'a, P: Provider> {
    provider: &'a P,
    options: &'a ResolveOptions<'a>,
    constraints: BTreeMap<String, Vec<Demand>>,
    attempts: usize,
}

enum Failure<E> {
    Provider(E),
    Conflict(Conflict),
    TooComplex,
}

/// Resolves `roots` (markers already evaluated) under `constraints` with `provider`.
pub fn resolve<P: Provider>(
    provider: &P,
    roots: Vec<Demand>,
    constraints: Vec<Demand>,
    options: &ResolveOptions<'_>,
) -> Result<Resolution<P::Dist>, ResolveError<P::Error>> {
    let mut search = Search {
        provider,
        options,
        constraints: BTreeMap::new(),
        attempts: 0,
    };
    for constraint in constraints {
        search
            .constraints
            .entry(normalize_name(constraint.requirement.name.as_ref()))
            .or_default()
            .push(constraint);
    }
    let mut state = State {
        decided: BTreeMap::new(),
        demands: BTreeMap::new(),
        order: Vec::new(),
    };
    let outcome = roots
        .into_iter()
        .try_for_each(|demand| search.add(&mut state, demand))
        .and_then(|()| search.solve(state));
    match outcome {
        Ok(state) => Ok(state.decided),
        Err(Failure::Provider(e)) => Err(ResolveError::Provider(e)),
        Err(Failure::Conflict(mut conflict)) => {
            conflict.attempts = search.attempts;
            Err(ResolveError::Conflict(conflict))
        }
        Err(Failure::TooComplex) => Err(ResolveError::TooComplex(search.attempts)),
    }
}

fn specifiers_of(requirement: &Requirement) -> Vec<pep440_rs::VersionSpecifier> {
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => specifiers.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

impl<P: Provider> Search<'_, P> {
    fn solve(&mut self, state: State<P::Dist>) -> Result<State<P::Dist>, Failure<P::Error>> {
        let Some(name) = state
            .order
            .iter()
            .find(|n| !state.decided.contains_key(*n))
            .cloned()
        else {
            return Ok(state);
        };
        let demands: Vec<Demand> = state.demands[&name]
            .iter()
            .chain(self.constraints.get(&name).into_iter().flatten())
            .cloned()
            .collect();
        let specifiers: VersionSpecifiers = demands
            .iter()
            .flat_map(|d| specifiers_of(&d.requirement))
            .collect();
        let versions = self
            .provider
            .versions(&name, &specifiers)
            .map_err(Failure::Provider)?;
        let allow_pre = self.options.pre
            || specifiers.iter().any(|s| s.version().any_prerelease())
            || versions
                .found
                .iter()
                .filter(|(_, d)| !self.provider.is_installed(d))
                .all(|(v, _)| v.any_prerelease());
        let mut first_conflict: Option<Conflict> = None;
        for (version, dist) in versions.found {
            if version.any_prerelease() && !allow_pre && !self.provider.is_installed(&dist) {
                continue;
            }
            self.attempts += 1;
            if self.attempts > MAX_ATTEMPTS {
                return Err(Failure::TooComplex);
            }
            let mut next = state.clone();
            let attempt = self
                .decide(&mut next, &name, version, dist)
                .and_then(|()| self.solve(next));
            match attempt {
                Ok(done) => return Ok(done),
                Err(Failure::Conflict(conflict)) => {
                    first_conflict.get_or_insert(conflict);
                }
                Err(other) => return Err(other),
            }
        }
        if let Some(conflict) = first_conflict {
            return Err(Failure::Conflict(conflict));
        }
        let unavailable = specifiers.is_empty()
            || self
                .provider
                .versions(&name, &VersionSpecifiers::empty())
                .map_err(Failure::Provider)?
                .found
                .is_empty();
        Err(Failure::Conflict({
            let reason = if demands.len() > 1 && !unavailable {
                format!(
                    "no version of `{name}` satisfies all of them ({})",
                    versions.why_none
                )
            } else {
                versions.why_none.clone()
            };
            Conflict {
                package: name.clone(),
                causes: demands.iter().map(|d| d.to_string()).collect(),
                reason,
                unavailable,
                attempts: 0,
            }
        }))
    }

    /// Decides `name` = `version` and adds its dependencies.
    fn decide(
        &mut self,
        state: &mut State<P::Dist>,
        name: &str,
        version: Version,
        dist: P::Dist,
    ) -> Result<(), Failure<P::Error>> {
        let dependencies = self
            .provider
            .dependencies(name, &version, &dist)
            .map_err(Failure::Provider)?;
        if let Some(requires) = &dependencies.requires_other_python {
            return Err(Failure::Conflict(Conflict {
                package: name.to_owned(),
                causes: state.demands[name].iter().map(|d| d.to_string()).collect(),
                reason: format!(
                    "{} {version} requires Python {requires} (its metadata), which excludes the \
                     target's",
                    dependencies.display_name
                ),
                unavailable: false,
                attempts: 0,
            }));
        }
        let demands = &state.demands[name];
        let requested = demands
            .iter()
            .any(|d| matches!(d.requirer, Requirer::User(_)));
        let extras: BTreeSet<String> = demands
            .iter()
            .flat_map(|d| d.requirement.extras.iter().map(|e| e.to_string()))
            .collect();
        state.decided.insert(
            name.to_owned(),
            Resolved {
                display_name: dependencies.display_name.clone(),
                version: version.clone(),
                dist,
                extras: extras.clone(),
                requested,
            },
        );
        self.add_dependencies(state, &version, &dependencies, &extras, None)
    }

    /// Adds the dependencies of a decided project active with `extras` (only those that the
    /// extras in `only_new` switch on, when given).
    fn add_dependencies(
        &mut self,
        state: &mut State<P::Dist>,
        version: &Version,
        dependencies: &Dependencies,
        extras: &BTreeSet<String>,
        only_new: Option<&BTreeSet<String>>,
    ) -> Result<(), Failure<P::Error>> {
        if self.options.no_deps {
            return Ok(());
        }
        let names = |set: &BTreeSet<String>| -> Vec<ExtraName> {
            set.iter()
                .filter_map(|e| ExtraName::from_str(e).ok())
                .collect()
        };
        let active = names(extras);
        let known = state.order.len();
        let before: Option<Vec<ExtraName>> = only_new.map(|new| {
            names(
                &extras
                    .iter()
                    .filter(|e| !new.contains(*e))
                    .cloned()
                    .collect(),
            )
        });
        for requirement in &dependencies.requires_dist {
            if !requirement.marker.evaluate(self.options.env, &active) {
                continue;
            }
            if let Some(before) = &before {
                if requirement.marker.evaluate(self.options.env, before) {
                    continue;
                }
            }
            let mut requirement = requirement.clone();
            requirement.marker = Default::default();
            self.add(
                state,
                Demand {
                    requirement,
                    requirer: Requirer::Package(dependencies.display_name.clone(), version.clone()),
                },
            )?;
        }
        if let Some(new) = state.order.get(known..).filter(|n| n.len() > 1) {
            self.provider.prefetch(new);
        }
        Ok(())
    }

    /// Records a requirement; checks it against a decided version, whose newly asked extras
    /// bring their own dependencies.
    fn add(&mut self, state: &mut State<P::Dist>, demand: Demand) -> Result<(), Failure<P::Error>> {
        let name = normalize_name(demand.requirement.name.as_ref());
        let asked: BTreeSet<String> = demand
            .requirement
            .extras
            .iter()
            .map(|e| e.to_string())
            .collect();
        let specifiers = specifiers_of(&demand.requirement);
        state.demands.entry(name.clone()).or_default().push(demand);
        let Some(decided) = state.decided.get(&name) else {
            if !state.order.contains(&name) {
                state.order.push(name);
            }
            return Ok(());
        };
        if !specifiers.iter().all(|s| s.contains(&decided.version)) {
            return Err(Failure::Conflict(Conflict {
                package: name.clone(),
                causes: state.demands[&name].iter().map(|d| d.to_string()).collect(),
                reason: format!(
                    "{} {} was chosen before this requirement was seen, and no other choice works",
                    decided.display_name, decided.version
                ),
                unavailable: false,
                attempts: 0,
            }));
        }
        let new: BTreeSet<String> = asked.difference(&decided.extras).cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        let (version, dist) = (decided.version.clone(), decided.dist.clone());
        let mut extras = decided.extras.clone();
        extras.extend(new.iter().cloned());
        if let Some(entry) = state.decided.get_mut(&name) {
            entry.extras = extras.clone();
        }
        let dependencies = self
            .provider
            .dependencies(&name, &version, &dist)
            .map_err(Failure::Provider)?;
        self.add_dependencies(state, &version, &dependencies, &extras, Some(&new))
    }
}

#[cfg(test)]
mod tests;
