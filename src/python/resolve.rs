//! Choosing files for requirements, and checking that a set of distributions is complete.
//!
//! [`candidates`] filters a project's [`DistFile`]s to the wheels that satisfy a version
//! specifier, install on the target ([`Tags`]) and accept its Python (`requires-python`), and
//! orders them as pip would: highest version, non-yanked before yanked (yanked files only for
//! `==`/`===` pins, PEP 592), best tag rank, highest build tag, then source order. When nothing
//! is left it says why, naming the package: no such version (with the versions seen), only
//! source distributions, no wheel for the target (each wheel's reason), or a Python too old.
//!
//! [`check_dependencies`] takes the distributions that will be installed with their core
//! metadata and the extras asked for, evaluates each `Requires-Dist` marker for the TARGET
//! (with the extras, propagated through `dep[extra]` requirements), and reports the first
//! requirement the set does not satisfy: pip's rule for hash-checking mode, where every
//! dependency must be listed (everything else is resolved by [`crate::python::resolver`]).
//! When no wheel fits a version, the error names the target's best tags, why each wheel does
//! not fit, and the closest versions that have a wheel for the target.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep440_rs::{Operator, Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, VersionOrUrl};

use crate::python::index::{DistFile, project_of};
use crate::python::metadata::{CoreMetadata, requirement_spec};
use crate::python::tags::{Compatibility, Tags, WheelFilename};
use crate::python::wheel::normalize_name;

/// A wheel that fits the requirement and the target.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The file as the source offers it.
    pub file: DistFile,
    /// Its parsed name.
    pub wheel: WheelFilename,
    /// Its version.
    pub version: Version,
    /// Tag rank (0 = the target's best tag).
    pub rank: usize,
}

/// Why no file fits a requirement. Every variant names the package.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    /// No file of a matching version at all.
    #[error(
        "no distribution of `{package}{specifier}` found in {sources}{}",
        if available.is_empty() { " (the sources have no files for it)".to_owned() } else { format!(" (versions there: {})", available.join(", ")) }
    )]
    NotFound {
        /// The package as written.
        package: String,
        /// The version specifier.
        specifier: String,
        /// The sources searched.
        sources: String,
        /// Versions the sources have.
        available: Vec<String>,
    },
    /// Only source distributions match.
    #[error(
        "`{package}` {version} is only available as a source distribution ({files}); kiln \
         installs wheels only: pin a version that publishes a wheel for the target, or build the \
         wheel and add it with --find-links"
    )]
    SdistOnly {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The sdist file names.
        files: String,
    },
    /// Wheels exist but none installs on the target.
    #[error("`{package}` {version} has no wheel for {target}: {reasons}")]
    NoCompatibleWheel {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The target and its best tags: `CPython 3.11 on musl 1.2 x86_64 (whose tags are, best
        /// first: ...)`.
        target: String,
        /// `file: reason` for each wheel, then the closest versions that have a wheel for the
        /// target.
        reasons: String,
    },
    /// The wheels need a newer (or other) Python.
    #[error(
        "`{package}` {version} requires Python {requires}, but the image has Python {python}; \
         pin a version that supports Python {python}, or use a newer base image"
    )]
    RequiresPython {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The `requires-python` specifier.
        requires: String,
        /// The target's Python.
        python: String,
    },
}

/// The target's three best tags and how many it has, for messages.
fn best_tags(tags: &Tags) -> String {
    let best: Vec<String> = tags.iter().take(3).map(|t| t.to_string()).collect();
    format!("{}, ... ({} in all)", best.join(", "), tags.len())
}

/// Up to five versions of the project, other than `wanted`, with a wheel that installs on the
/// target, nearest to `wanted` first (the older one first at equal distance).
fn closest_fitting(wanted: &Version, files: &[DistFile], fit: &TargetFit<'_>) -> Vec<String> {
    let mut all: BTreeSet<Version> = BTreeSet::new();
    let mut fitting: BTreeSet<Version> = BTreeSet::new();
    for file in files {
        let Some((_, text)) = project_of(&file.filename) else {
            continue;
        };
        let Ok(version) = Version::from_str(&text) else {
            continue;
        };
        all.insert(version.clone());
        let installs = WheelFilename::parse(&file.filename)
            .is_ok_and(|w| matches!(fit.tags.compatibility(&w), Compatibility::Compatible { .. }));
        if installs && version != *wanted {
            fitting.insert(version);
        }
    }
    let order: Vec<&Version> = all.iter().collect();
    let position = |v: &Version| order.iter().position(|o| *o == v).unwrap_or(0);
    let at = position(wanted);
    let mut nearest: Vec<&Version> = fitting.iter().collect();
    nearest.sort_by_key(|v| {
        let p = position(v);
        (p.abs_diff(at), p > at)
    });
    nearest.into_iter().take(5).map(|v| v.to_string()).collect()
}

/// What [`candidates`] needs to know about the target.
pub struct TargetFit<'a> {
    /// The target's tags.
    pub tags: &'a Tags,
    /// The target's Python version (for `requires-python`).
    pub python: &'a Version,
    /// A description for messages (`CPython 3.11 on musl 1.2 x86_64`).
    pub description: &'a str,
    /// The sources searched, for messages.
    pub sources: &'a str,
}

/// The wheels of `package` matching `specifiers` that fit the target, best first.
pub fn candidates(
    package: &str,
    specifiers: &VersionSpecifiers,
    files: &[DistFile],
    fit: &TargetFit<'_>,
) -> Result<Vec<Candidate>, SelectError> {
    let exact_pin = specifiers
        .iter()
        .any(|s| matches!(s.operator(), Operator::Equal | Operator::ExactEqual));
    let mut available: BTreeSet<Version> = BTreeSet::new();
    // Files of matching versions, by version (highest last).
    let mut matching: BTreeMap<Version, Vec<&DistFile>> = BTreeMap::new();
    for file in files {
        let Some((_, version_text)) = project_of(&file.filename) else {
            continue;
        };
        let Ok(version) = Version::from_str(&version_text) else {
            continue;
        };
        available.insert(version.clone());
        if specifiers.contains(&version) && (file.yanked.is_none() || exact_pin) {
            matching.entry(version).or_default().push(file);
        }
    }
    if matching.is_empty() {
        return Err(SelectError::NotFound {
            package: package.to_owned(),
            specifier: specifiers.to_string(),
            sources: fit.sources.to_owned(),
            available: available
                .iter()
                .rev()
                .take(10)
                .map(|v| v.to_string())
                .collect(),
        });
    }
    let files_all = files;
    let mut first_error: Option<SelectError> = None;
    let mut out = Vec::new();
    for (version, files) in matching.iter().rev() {
        let mut sdists = Vec::new();
        let mut reasons = Vec::new();
        let mut requires_python: Option<String> = None;
        let mut fitting = Vec::new();
        for file in files {
            let wheel = match WheelFilename::parse(&file.filename) {
                Ok(wheel) => wheel,
                Err(_) => {
                    sdists.push(file.filename.clone());
                    continue;
                }
            };
            if let Some(requires) = &file.requires_python {
                let accepts = VersionSpecifiers::from_str(requires)
                    .map(|s| s.contains(fit.python))
                    .unwrap_or(true);
                if !accepts {
                    requires_python = Some(requires.clone());
                    continue;
                }
            }
            match fit.tags.compatibility(&wheel) {
                Compatibility::Compatible { rank, .. } => fitting.push(Candidate {
                    file: (*file).clone(),
                    wheel,
                    version: version.clone(),
                    rank,
                }),
                Compatibility::Incompatible(reason) => {
                    reasons.push(format!("{}: {reason}", file.filename))
                }
            }
        }
        if fitting.is_empty() {
            let error = if let Some(requires) = requires_python {
                SelectError::RequiresPython {
                    package: package.to_owned(),
                    version: version.to_string(),
                    requires,
                    python: fit.python.to_string(),
                }
            } else if !reasons.is_empty() {
                SelectError::NoCompatibleWheel {
                    package: package.to_owned(),
                    version: version.to_string(),
                    target: format!(
                        "{} (whose tags are, best first: {})",
                        fit.description,
                        best_tags(fit.tags)
                    ),
                    reasons: {
                        let closest = closest_fitting(version, files_all, fit);
                        let hint = if closest.is_empty() {
                            "no version of it has a wheel for this target".to_owned()
                        } else {
                            format!(
                                "the closest versions with a wheel for this target: {}",
                                closest.join(", ")
                            )
                        };
                        format!("{}; {hint}", reasons.join("; "))
                    },
                }
            } else {
                SelectError::SdistOnly {
                    package: package.to_owned(),
                    version: version.to_string(),
                    files: sdists.join(", "),
                }
            };
            first_error.get_or_insert(error);
            continue;
        }
        // Stable sort keeps source order among equals.
        fitting.sort_by(|a, b| {
            (a.file.yanked.is_some(), a.rank)
                .cmp(&(b.file.yanked.is_some(), b.rank))
                .then_with(|| b.wheel.build.cmp(&a.wheel.build))
        });
        out.extend(fitting);
    }
    match (out.is_empty(), first_error) {
        (true, Some(error)) => Err(error),
        _ => Ok(out),
    }
}

/// One distribution of the set being installed.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Its core metadata.
    pub metadata: CoreMetadata,
    /// Extras asked for by the requirement lines.
    pub extras: BTreeSet<String>,
}

/// A requirement of the set that the set does not satisfy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DependencyError {
    /// The dependency is not in the set at all.
    #[error(
        "{package} {version} requires `{requirement}`, which the requirements do not pin; add \
         it (with its --hash in hash-checking mode), or pass --no-deps if it is not needed"
    )]
    Missing {
        /// The dependent package.
        package: String,
        /// Its version.
        version: String,
        /// The requirement as in its metadata (without marker).
        requirement: String,
        /// The dependency's project, as the requirement names it.
        dependency: String,
    },
    /// The dependency is pinned to a version that does not satisfy the requirement.
    #[error(
        "{package} {version} requires `{requirement}`, but the requirements pin {dependency} \
         {found}"
    )]
    Version {
        /// The dependent package.
        package: String,
        /// Its version.
        version: String,
        /// The requirement as in its metadata.
        requirement: String,
        /// The dependency.
        dependency: String,
        /// The pinned version.
        found: String,
    },
}

/// Checks that every dependency of every planned distribution (markers evaluated for `env`,
/// with extras) is in the set at a satisfying version. Keys are normalized names.
pub fn check_dependencies(
    planned: &BTreeMap<String, Planned>,
    env: &MarkerEnvironment,
) -> Result<(), DependencyError> {
    let mut extras: BTreeMap<String, BTreeSet<String>> = planned
        .iter()
        .map(|(name, p)| (name.clone(), p.extras.clone()))
        .collect();
    let mut queue: Vec<String> = planned.keys().cloned().collect();
    while let Some(name) = queue.pop() {
        let Some(dist) = planned.get(&name) else {
            continue;
        };
        let asked: Vec<ExtraName> = extras
            .get(&name)
            .into_iter()
            .flatten()
            .filter_map(|e| ExtraName::new(e.clone()).ok())
            .collect();
        for requirement in &dist.metadata.requires_dist {
            if !requirement.marker.evaluate(env, &asked) {
                continue;
            }
            let dep = normalize_name(requirement.name.as_ref());
            let Some(found) = planned.get(&dep) else {
                return Err(DependencyError::Missing {
                    package: dist.metadata.name.clone(),
                    version: dist.metadata.version.to_string(),
                    requirement: requirement_spec(requirement),
                    dependency: requirement.name.to_string(),
                });
            };
            if let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url {
                if !specifiers.contains(&found.metadata.version) {
                    return Err(DependencyError::Version {
                        package: dist.metadata.name.clone(),
                        version: dist.metadata.version.to_string(),
                        requirement: requirement_spec(requirement),
                        dependency: found.metadata.name.clone(),
                        found: found.metadata.version.to_string(),
                    });
                }
            }
            let entry = extras.entry(dep.clone()).or_default();
            let mut grew = false;
            for extra in &requirement.extras {
                grew |= entry.insert(extra.to_string());
            }
            if grew {
                queue.push(dep);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::index::{FileLocation, MetadataHint};
    use crate::python::tags::LinuxTag;
    use crate::python::target::Libc;

    fn file(name: &str, requires_python: Option<&str>, yanked: bool) -> DistFile {
        DistFile {
            filename: name.to_owned(),
            location: FileLocation::Local(format!("/w/{name}").into()),
            sha256: None,
            requires_python: requires_python.map(str::to_owned),
            yanked: yanked.then(String::new),
            metadata: MetadataHint::Absent,
            source: "/w".to_owned(),
        }
    }

    fn pick(spec: &str, files: &[DistFile]) -> Result<String, String> {
        let tags = Tags::new(
            (3, 11),
            Libc::Musl { major: 1, minor: 2 },
            "x86_64",
            LinuxTag::Exclude,
        );
        let python = Version::from_str("3.11.16").unwrap();
        let fit = TargetFit {
            tags: &tags,
            python: &python,
            description: "CPython 3.11 on musl 1.2 x86_64",
            sources: "/w",
        };
        candidates(
            "pkg",
            &VersionSpecifiers::from_str(spec).unwrap(),
            files,
            &fit,
        )
        .map(|c| c[0].file.filename.clone())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn selection_table() {
        let many = [
            file("pkg-1.0-py3-none-any.whl", None, false),
            file("pkg-1.0-cp311-cp311-musllinux_1_1_x86_64.whl", None, false),
            file("pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", None, false),
            file("pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", None, false),
            file("pkg-1.0.tar.gz", None, false),
            file("pkg-2.0.tar.gz", None, false),
            file("pkg-3.0-py3-none-any.whl", Some(">=3.12"), false),
            file("pkg-4.0-py3-none-any.whl", None, true),
            file("pkg-5.0-cp312-cp312-musllinux_1_2_x86_64.whl", None, false),
        ];
        let table: &[(&str, Result<&str, &str>)] = &[
            ("==1.0", Ok("pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")),
            (
                "==2.0",
                Err("only available as a source distribution (pkg-2.0.tar.gz)"),
            ),
            (
                "==3.0",
                Err("requires Python >=3.12, but the image has Python 3.11.16"),
            ),
            ("==4.0", Ok("pkg-4.0-py3-none-any.whl")),
            (">=4,<5", Err("no distribution of `pkg>=4, <5`")),
            (
                "==5.0",
                Err("has no wheel for CPython 3.11 on musl 1.2 x86_64"),
            ),
            ("==9", Err("versions there: 5.0, 4.0, 3.0, 2.0, 1.0")),
            (">=1", Ok("pkg-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")),
        ];
        for (spec, want) in table {
            let got = pick(spec, &many);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{spec}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{spec}: {g}"),
                _ => panic!("{spec}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn meta(text: &str) -> Planned {
        Planned {
            metadata: CoreMetadata::parse("t", text.replace('|', "\n").as_bytes()).unwrap(),
            extras: BTreeSet::new(),
        }
    }

    #[test]
    fn dependency_closure() {
        let env =
            crate::python::target::PythonTarget::cpython_311_musl("x86_64").marker_environment();
        let mut set = BTreeMap::new();
        set.insert(
            "flask".to_owned(),
            meta("Name: Flask|Version: 3.0.3|Requires-Dist: click>=8.1.3|Requires-Dist: arm; platform_machine == 'aarch64'|Requires-Dist: asgiref ; extra == 'async'"),
        );
        let err = check_dependencies(&set, &env).unwrap_err();
        assert_eq!(
            err.to_string().split(';').next().unwrap(),
            "flask 3.0.3 requires `click>=8.1.3`, which the requirements do not pin"
                .replace("flask", "Flask")
        );
        set.insert("click".to_owned(), meta("Name: click|Version: 8.0.0"));
        assert!(matches!(
            check_dependencies(&set, &env),
            Err(DependencyError::Version { .. })
        ));
        set.insert("click".to_owned(), meta("Name: click|Version: 8.5.1"));
        check_dependencies(&set, &env).unwrap();
        set.get_mut("flask").unwrap().extras.insert("async".into());
        let err = check_dependencies(&set, &env).unwrap_err().to_string();
        assert!(err.contains("`asgiref`"), "{err}");
    }
}
