//! What to install, and from where: requirements merged across the command line and the
//! requirement files ([`Wanted`]), and the [`Settings`] that pip's configuration, the command
//! line and the files' own options add up to, with the sources they name.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::VersionOrUrl;

use super::error::PipError;
use crate::python::config::ConfigValue;
use crate::python::index::{Source, SourceKind};
use crate::python::pip_args::InstallLocation;
use crate::python::requirements::{self, RequirementLine};

/// A requirement to install, merged across files and the command line.
pub(crate) struct Wanted {
    /// As written (for messages).
    pub(crate) display: String,
    /// The pinned version text.
    pub(crate) version: String,
    pub(crate) specifiers: VersionSpecifiers,
    pub(crate) hashes: Vec<String>,
    pub(crate) extras: BTreeSet<String>,
    pub(crate) origin: String,
}

/// Settings after configuration, command line and requirement files.
pub(crate) struct Settings {
    pub(crate) location: InstallLocation,
    pub(crate) no_deps: bool,
    pub(crate) hash_checking: bool,
    pub(crate) index_url: Option<ConfigValue>,
    pub(crate) extra_index_urls: Vec<ConfigValue>,
    pub(crate) find_links: Vec<ConfigValue>,
    pub(crate) no_index: bool,
}

pub(crate) fn cli(value: &str) -> ConfigValue {
    ConfigValue {
        value: value.to_owned(),
        origin: "the pip command line".to_owned(),
    }
}

/// Requirement-file options take effect as in pip: `--index-url` replaces, lists extend.
pub(crate) fn absorb_file_options(
    settings: &mut Settings,
    file: &requirements::RequirementsFile,
    path: &str,
) {
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

pub(crate) fn origin_of(line: &RequirementLine) -> String {
    if line.line == 0 {
        line.file.clone()
    } else {
        format!("{}:{}", line.file, line.line)
    }
}

/// One [`Wanted`] per project (normalized name), pinned (and hashed in hash-checking mode).
pub(crate) fn merge_requirements(
    lines: &[RequirementLine],
) -> Result<BTreeMap<String, Wanted>, PipError> {
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

pub(crate) fn check_constraints(
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
pub(crate) fn sources(settings: &Settings) -> Result<Vec<Source>, PipError> {
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
