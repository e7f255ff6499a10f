//! Choosing the wheels: from a PEP 751 lock file, by resolving loose requirements, or for
//! pins in hash-checking mode; each chosen file is fetched into the download cache and its
//! sha256 checked against what the requirement allows.

use std::collections::{BTreeMap, BTreeSet};

use pep440_rs::Version;
use pep508_rs::VersionOrUrl;

use super::error::PipError;
use super::installed::{Installed, Replacement, check_replacement};
use super::scheme::InstallSite;
use super::settings::{Wanted, origin_of};
use crate::python::index::{
    CachedFile, DistFile, FileLocation, IndexClient, IndexError, MetadataHint, Source, parallel,
};
use crate::python::metadata::CoreMetadata;
use crate::python::pylock::{self};
use crate::python::requirements::RequirementLine;
use crate::python::resolve::{self, Candidate, SelectError, TargetFit};
use crate::python::resolver::{
    self, Choice, Demand, Requirer, ResolveError, Upgrade, WithInstalled,
};

/// A wheel chosen for the install, verified in the cache.
pub(crate) struct Selected {
    /// Normalized name.
    pub(crate) name: String,
    /// The name for messages.
    pub(crate) display: String,
    pub(crate) file: DistFile,
    pub(crate) cached: CachedFile,
    pub(crate) extras: BTreeSet<String>,
    /// The user asked for it (pip writes `REQUESTED`).
    pub(crate) requested: bool,
}

/// Fetches `file` into the cache; a file that does not have the required sha256 is refused.
pub(crate) fn fetch_verified(
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
pub(crate) fn select_locked(
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

/// What pip would find installed, and what it may do about it.
pub(crate) struct AlreadyInstalled<'a> {
    /// The distributions on pip's path.
    pub(crate) installed: &'a Installed,
    /// Which projects may be upgraded past a satisfying installed version.
    pub(crate) upgrade: Upgrade,
    /// Where new distributions go.
    pub(crate) site: InstallSite,
    /// `--force-reinstall`.
    pub(crate) force_reinstall: bool,
}

/// Resolves the requirements for the target (pins as fixed points, installed distributions
/// kept as pip keeps them), then fetches the wheels to install. `offline` only shapes the
/// message for a pin the cache lacks.
pub(crate) fn select_resolved(
    lines: &[RequirementLine],
    constraints: &[RequirementLine],
    client: &IndexClient,
    fit: &TargetFit<'_>,
    options: &resolver::ResolveOptions<'_>,
    already: &AlreadyInstalled<'_>,
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
    // A pin an installed distribution satisfies needs no file (pip keeps what is installed).
    let candidates = if already.force_reinstall {
        BTreeMap::new()
    } else {
        already.installed.candidates()
    };
    let pins: Vec<&RequirementLine> = lines
        .iter()
        .filter(|l| l.pinned_version().is_some())
        .filter(|l| {
            let installed = candidates.get(&l.normalized_name());
            !installed.is_some_and(|dist| match &l.requirement.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                    specifiers.contains(&dist.version)
                }
                _ => true,
            })
        })
        .collect();
    let prechecked = parallel(&pins, |line| precheck_pin(line, client, fit, offline));
    prechecked
        .into_iter()
        .collect::<Result<Vec<()>, PipError>>()?;
    let index = resolver::IndexProvider::new(client, fit);
    let provider = WithInstalled::new(&index, candidates, already.upgrade.clone());
    let resolution = match resolver::resolve(&provider, roots, constraints, options) {
        Ok(resolution) => resolution,
        Err(ResolveError::Provider(e)) => return Err(e.into()),
        Err(ResolveError::Conflict(c)) => return Err(c.into()),
        Err(ResolveError::TooComplex(n)) => return Err(PipError::TooComplex(n)),
    };
    // Kept installed distributions write nothing and, as in pip's report, are not listed.
    let mut entries = Vec::new();
    for (name, resolved) in resolution {
        let Choice::New(candidate) = &resolved.dist else {
            continue;
        };
        let replacement = check_replacement(
            already.installed,
            &name,
            &resolved.version,
            already.site,
            already.force_reinstall,
        )?;
        if replacement == Replacement::Install {
            entries.push((name, candidate.clone(), resolved));
        }
    }
    let fetched = parallel(&entries, |(_, candidate, resolved)| {
        fetch_verified(client, &candidate.file, &resolved.display_name)
    });
    let mut out = Vec::new();
    for ((name, candidate, resolved), cached) in entries.into_iter().zip(fetched) {
        out.push(Selected {
            name,
            display: resolved.display_name,
            file: candidate.file,
            cached: cached?,
            extras: resolved.extras,
            requested: resolved.requested,
        });
    }
    Ok(out)
}

/// Fails when no file of the sources fits the pinned `line` on the target.
pub(crate) fn precheck_pin(
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

/// Picks the file for one pinned requirement and brings it into the cache, verified.
pub(crate) fn choose(
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

pub(crate) fn mismatch(want: &Wanted, candidate: &Candidate, actual: &str) -> PipError {
    PipError::HashMismatch {
        package: format!("{}=={}", want.display, want.version),
        uri: candidate.file.uri(),
        expected: want.hashes.join(" or "),
        actual: actual.to_owned(),
    }
}

pub(crate) fn check_requires_python(
    metadata: &CoreMetadata,
    python: &Version,
) -> Result<(), PipError> {
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
