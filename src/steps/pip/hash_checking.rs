//! pip's hash-checking mode (any `--hash`, `--require-hashes`, `PIP_REQUIRE_HASHES`): every
//! requirement, dependencies included, listed, pinned and hashed. The pins are chosen and
//! fetched without a resolver, and the dependency check afterwards accepts a dependency an
//! installed distribution satisfies, as pip does.

use std::collections::BTreeMap;

use pep508_rs::VersionOrUrl;

use crate::python::index::{IndexClient, parallel};
use crate::python::install::PipError;
use crate::python::install::installed::{Installed, Replacement, check_replacement};
use crate::python::install::select::{AlreadyInstalled, Selected, choose};
use crate::python::install::settings::{Wanted, check_constraints, merge_requirements};
use crate::python::metadata::CoreMetadata;
use crate::python::pep508;
use crate::python::requirements::RequirementLine;
use crate::python::resolve::{self, DependencyError, Planned, TargetFit};
use crate::python::wheel::normalize_name;

/// The pins chosen in hash-checking mode.
pub(super) struct Pinned {
    /// The files to install, fetched and their sha256 checked.
    pub(super) selection: Vec<Selected>,
    /// Installed distributions that satisfy a pin and are kept, for the dependency check.
    pub(super) kept: BTreeMap<String, Planned>,
    /// Where each pinned requirement was written, for pip's messages.
    pub(super) origins: BTreeMap<String, String>,
}

/// Chooses and fetches a file for each pin of `lines` that `already` does not satisfy, each
/// file's sha256 checked against its `--hash` values; a pin without hashes fails, naming the
/// hash its file has, as pip does.
pub(super) fn select_pinned(
    lines: &[RequirementLine],
    constraints: &[RequirementLine],
    already: &AlreadyInstalled<'_>,
    client: &IndexClient,
    fit: &TargetFit<'_>,
    offline: bool,
) -> Result<Pinned, PipError> {
    let mut kept: BTreeMap<String, Planned> = BTreeMap::new();
    let wanted = merge_requirements(lines)?;
    check_constraints(&wanted, constraints)?;
    // A pin an installed distribution satisfies is kept, without a file to hash (pip
    // prepares only what it installs).
    let candidates = if already.force_reinstall {
        BTreeMap::new()
    } else {
        already.installed.candidates()
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
    // A pin without hashes is fetched anyway: pip names the hash its file has.
    let picked = parallel(&entries, |(name, want)| {
        choose(name, want, client, fit, !want.hashes.is_empty(), offline)
    });
    let mut selection = Vec::new();
    let mut unhashed = Vec::new();
    for ((name, want), result) in entries.into_iter().zip(picked) {
        let (candidate, cached) = result?;
        if check_replacement(
            already.installed,
            name,
            &candidate.version,
            already.site,
            already.force_reinstall,
        )? == Replacement::AlreadyThere
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
    let origins = wanted
        .iter()
        .map(|(name, want)| (name.clone(), want.origin.clone()))
        .collect();
    Ok(Pinned {
        selection,
        kept,
        origins,
    })
}

/// An installed distribution as a member of the set hash-checking mode checks.
pub(super) fn planned_installed(
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
pub(super) fn check_with_installed(
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
