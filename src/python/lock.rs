//! Locking: resolving requirements for one or more target platforms on the build host and
//! writing the result as a hashed requirements file or a PEP 751 `pylock.toml` (what `kiln
//! lock pip` does, like `uv pip compile --generate-hashes --python-platform ...`).
//!
//! A [`LockTarget`] is a Python version and a wheel platform tag (`musllinux_1_2_x86_64`,
//! `manylinux_2_17_aarch64`), from which the target's tags and marker environment follow as for
//! an image. [`lock`] resolves the requirements for every target with the same resolver as the
//! pip step, downloads each chosen wheel (in parallel, into kiln's download cache, so a build
//! right after is offline-ready) to hash it, and merges the targets: every target must agree on
//! a project's version; a project some targets do not need gets a `platform_machine` marker.
//! [`Lock::requirements_txt`] and [`Lock::pylock_toml`] write it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::VersionOrUrl;

use crate::python::index::{DistFile, IndexClient, IndexError, Source, SourceKind, parallel};
use crate::python::pep508;
use crate::python::pylock::{self, WritePackage};
use crate::python::requirements::{self, RequirementsError};
use crate::python::resolve::{Candidate, TargetFit};
use crate::python::resolver::{
    self, Conflict, Demand, IndexProvider, ProviderError, Requirer, ResolveError,
};
use crate::python::tags::{LinuxTag, Tags};
use crate::python::target::{Libc, PythonTarget, PythonVersion};

/// One platform to lock for.
#[derive(Clone, Debug)]
pub struct LockTarget {
    /// The wheel platform tag as given (`musllinux_1_2_x86_64`).
    pub platform: String,
    /// The interpreter it describes.
    pub python: PythonTarget,
}

/// Why locking failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A `--python-version` or `--platform` kiln cannot use.
    #[error("{0}")]
    Target(String),
    /// A requirements file is invalid.
    #[error(transparent)]
    Requirements(#[from] RequirementsError),
    /// A requirement argument is invalid.
    #[error("invalid requirement `{spec}`: {problem}")]
    Spec {
        /// The argument.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// No index or find-links.
    #[error(
        "no package index and no find-links given; kiln has no default index: pass \
         --index-url URL (or set PIP_INDEX_URL) or --find-links DIR, or put --index-url in the \
         requirements file"
    )]
    NoSources,
    /// A source is invalid or unreachable.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The requirements conflict on some target.
    #[error("for {platform}: {conflict}")]
    Conflict {
        /// The target platform.
        platform: String,
        /// The conflict.
        conflict: Conflict,
    },
    /// The resolver could not read what it needed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The resolver gave up.
    #[error(
        "for {platform}: resolution gave up after trying {attempts} versions; pin some requirements"
    )]
    TooComplex {
        /// The target platform.
        platform: String,
        /// Versions tried.
        attempts: usize,
    },
    /// The targets need different versions of one project.
    #[error(
        "the platforms need different versions of `{package}` ({versions}); one file cannot \
         lock them: lock each platform into its own file"
    )]
    Diverged {
        /// The project.
        package: String,
        /// `version (platforms)` for each.
        versions: String,
    },
    /// A project only some targets need, and no marker tells them apart.
    #[error(
        "only some platforms need `{package}` ({present}), and `platform_machine` does not tell \
         them apart from the others; lock each platform into its own file"
    )]
    Unmarkable {
        /// The project.
        package: String,
        /// The platforms that need it.
        present: String,
    },
}

impl LockTarget {
    /// A target from `--python-version 3.11` and `--platform musllinux_1_2_x86_64`.
    pub fn parse(python_version: &str, platform: &str) -> Result<LockTarget, LockError> {
        let bad_python = || {
            LockError::Target(format!(
                "--python-version `{python_version}` is not a CPython 3 version such as 3.11 or \
                 3.11.9"
            ))
        };
        let numbers: Vec<&str> = python_version.split('.').collect();
        let number = |i: usize| numbers.get(i).map(|n| n.parse::<u16>());
        let version = match (number(0), number(1), number(2), numbers.len()) {
            (Some(Ok(3)), Some(Ok(minor)), None, 2) => PythonVersion {
                major: 3,
                minor: u8::try_from(minor).map_err(|_| bad_python())?,
                patch: None,
            },
            (Some(Ok(3)), Some(Ok(minor)), Some(Ok(patch)), 3) => PythonVersion {
                major: 3,
                minor: u8::try_from(minor).map_err(|_| bad_python())?,
                patch: Some(patch),
            },
            _ => return Err(bad_python()),
        };
        let (libc, arch) = parse_platform(platform).ok_or_else(|| {
            LockError::Target(format!(
                "--platform `{platform}` is not a Linux wheel platform tag such as \
                 musllinux_1_2_x86_64, manylinux_2_17_aarch64 or manylinux2014_x86_64"
            ))
        })?;
        Ok(LockTarget {
            platform: platform.to_owned(),
            python: PythonTarget {
                version,
                interpreter: format!("/usr/local/bin/python3.{}", version.minor),
                libc,
                arch,
            },
        })
    }
}

impl LockTarget {
    /// The target of a detected interpreter; its platform tag is the newest the libc accepts.
    pub fn for_python(python: PythonTarget) -> LockTarget {
        let platform = match python.libc {
            Libc::Musl { major, minor } => format!("musllinux_{major}_{minor}_{}", python.arch),
            Libc::Glibc { major, minor } => format!("manylinux_{major}_{minor}_{}", python.arch),
        };
        LockTarget { platform, python }
    }
}

fn parse_platform(platform: &str) -> Option<(Libc, String)> {
    let versioned = |rest: &str| -> Option<(u16, u16, String)> {
        let mut parts = rest.splitn(3, '_');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let arch = parts.next().filter(|a| !a.is_empty())?.to_owned();
        Some((major, minor, arch))
    };
    if let Some(rest) = platform.strip_prefix("musllinux_") {
        let (major, minor, arch) = versioned(rest)?;
        return Some((Libc::Musl { major, minor }, arch));
    }
    if let Some(rest) = platform.strip_prefix("manylinux_") {
        let (major, minor, arch) = versioned(rest)?;
        return Some((Libc::Glibc { major, minor }, arch));
    }
    for (legacy, minor) in [
        ("manylinux2014_", 17),
        ("manylinux2010_", 12),
        ("manylinux1_", 5),
    ] {
        if let Some(arch) = platform.strip_prefix(legacy).filter(|a| !a.is_empty()) {
            return Some((Libc::Glibc { major: 2, minor }, arch.to_owned()));
        }
    }
    None
}

/// What to lock and where from.
#[derive(Clone, Debug, Default)]
pub struct LockRequest {
    /// Requirement files on the host (`-r`).
    pub requirement_files: Vec<PathBuf>,
    /// Constraint files on the host (`-c`).
    pub constraint_files: Vec<PathBuf>,
    /// Requirements given as arguments.
    pub specs: Vec<String>,
    /// The platforms.
    pub targets: Vec<LockTarget>,
    /// `--index-url` (a requirements file's own wins, as in pip).
    pub index_url: Option<String>,
    /// `--extra-index-url`.
    pub extra_index_urls: Vec<String>,
    /// `--find-links`.
    pub find_links: Vec<String>,
    /// `--no-index`.
    pub no_index: bool,
    /// `--pre`.
    pub pre: bool,
    /// Download cache directory.
    pub cache_dir: PathBuf,
    /// Use only host directories and the cache.
    pub offline: bool,
}

/// One locked file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedFile {
    /// Its file name.
    pub filename: String,
    /// Where it came from (URL without credentials, or `file://` host path).
    pub uri: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lower-case hex.
    pub sha256: String,
}

/// One locked project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedPackage {
    /// Normalized name.
    pub name: String,
    /// Version.
    pub version: String,
    /// A marker when only some targets need it.
    pub marker: Option<String>,
    /// The wheel chosen for each target that needs it (one file when they share it).
    pub files: Vec<LockedFile>,
}

/// A resolution for every target, merged.
#[derive(Clone, Debug)]
pub struct Lock {
    /// The targets.
    pub targets: Vec<LockTarget>,
    /// The projects, in name order.
    pub packages: Vec<LockedPackage>,
}

/// Resolves `request` for each of its targets and merges the results.
pub fn lock(request: &LockRequest) -> Result<Lock, LockError> {
    let Some(first) = request.targets.first() else {
        return Err(LockError::Target(
            "give at least one --platform to lock for".to_owned(),
        ));
    };
    // Requirement-file options do not depend on the target; read them once.
    let first_env = first.python.marker_environment();
    let mut index_url = request.index_url.clone();
    let mut extra = request.extra_index_urls.clone();
    let mut find_links = request.find_links.clone();
    let mut no_index = request.no_index;
    let mut pre = request.pre;
    for path in &request.requirement_files {
        let file = requirements::parse_host_file(path, &first_env)?;
        if file.index_url.is_some() {
            index_url = file.index_url.clone();
        }
        extra.extend(file.extra_index_urls.iter().cloned());
        find_links.extend(file.find_links.iter().cloned());
        no_index |= file.no_index;
        pre |= file.pre;
    }
    let mut sources = Vec::new();
    for link in &find_links {
        sources.push(Source::parse(SourceKind::FindLinks, link, "--find-links")?);
    }
    if !no_index {
        for url in index_url.iter().chain(&extra) {
            sources.push(Source::parse(SourceKind::Index, url, "--index-url")?);
        }
    }
    if sources.is_empty() {
        return Err(LockError::NoSources);
    }
    let sources_text = sources
        .iter()
        .map(|s| s.display.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let client = IndexClient::new(sources, &request.cache_dir, request.offline);

    let mut per_target: Vec<BTreeMap<String, (String, Version, Candidate)>> = Vec::new();
    for target in &request.targets {
        let env = target.python.marker_environment();
        let (roots, constraints) = demands(request, &env)?;
        let python = Version::from_str(&target.python.version.to_string())
            .map_err(|e| LockError::Target(e.to_string()))?;
        let tags = Tags::for_target(&target.python, LinuxTag::Exclude);
        let description = format!("CPython {} on {}", target.python.version, target.platform);
        let fit = TargetFit {
            tags: &tags,
            python: &python,
            description: &description,
            sources: &sources_text,
        };
        let provider = IndexProvider::new(&client, &fit);
        let options = resolver::ResolveOptions {
            env: &env,
            no_deps: false,
            pre,
        };
        let resolution =
            resolver::resolve(&provider, roots, constraints, &options).map_err(|e| match e {
                ResolveError::Provider(e) => LockError::Provider(e),
                ResolveError::Conflict(conflict) => LockError::Conflict {
                    platform: target.platform.clone(),
                    conflict,
                },
                ResolveError::TooComplex(attempts) => LockError::TooComplex {
                    platform: target.platform.clone(),
                    attempts,
                },
            })?;
        per_target.push(
            resolution
                .into_iter()
                .map(|(name, r)| (name, (r.display_name, r.version, r.dist)))
                .collect(),
        );
    }

    // Hash every chosen file (downloading it into the cache), all targets at once.
    let mut files: Vec<DistFile> = Vec::new();
    let mut seen = BTreeSet::new();
    for resolution in &per_target {
        for (_, _, candidate) in resolution.values() {
            if seen.insert(candidate.file.uri()) {
                files.push(candidate.file.clone());
            }
        }
    }
    let fetched = parallel(&files, |file| client.fetch(file));
    let mut hashed: BTreeMap<String, LockedFile> = BTreeMap::new();
    for (file, cached) in files.iter().zip(fetched) {
        let cached = cached?;
        let size = std::fs::metadata(&cached.path)
            .map(|m| m.len())
            .unwrap_or(0);
        hashed.insert(
            file.uri(),
            LockedFile {
                filename: file.filename.clone(),
                uri: file.uri(),
                size,
                sha256: cached.sha256,
            },
        );
    }
    let packages = merge(&request.targets, &per_target, &hashed)?;
    Ok(Lock {
        targets: request.targets.clone(),
        packages,
    })
}

type Roots = (Vec<Demand>, Vec<Demand>);

fn demands(request: &LockRequest, env: &pep508_rs::MarkerEnvironment) -> Result<Roots, LockError> {
    let mut roots = Vec::new();
    let mut constraints = Vec::new();
    let origin = |file: &str, line: usize| format!("{file}:{line}");
    for path in &request.requirement_files {
        let file = requirements::parse_host_file(path, env)?;
        for line in file.requirements {
            roots.push(Demand {
                requirer: Requirer::User(origin(&line.file, line.line)),
                requirement: line.requirement,
            });
        }
        for line in file.constraints {
            constraints.push(Demand {
                requirer: Requirer::Constraint(origin(&line.file, line.line)),
                requirement: line.requirement,
            });
        }
    }
    for path in &request.constraint_files {
        let file = requirements::parse_host_file(path, env)?;
        for line in file.requirements.into_iter().chain(file.constraints) {
            constraints.push(Demand {
                requirer: Requirer::Constraint(origin(&line.file, line.line)),
                requirement: line.requirement,
            });
        }
    }
    for spec in &request.specs {
        let requirement = pep508::parse_requirement(spec).map_err(|problem| LockError::Spec {
            spec: spec.clone(),
            problem,
        })?;
        if matches!(requirement.version_or_url, Some(VersionOrUrl::Url(_))) {
            return Err(LockError::Spec {
                spec: spec.clone(),
                problem: "direct URL requirements are not supported".to_owned(),
            });
        }
        if requirement.marker.evaluate(env, &[]) {
            roots.push(Demand {
                requirement,
                requirer: Requirer::User("command line".to_owned()),
            });
        }
    }
    Ok((roots, constraints))
}

fn merge(
    targets: &[LockTarget],
    per_target: &[BTreeMap<String, (String, Version, Candidate)>],
    hashed: &BTreeMap<String, LockedFile>,
) -> Result<Vec<LockedPackage>, LockError> {
    let names: BTreeSet<&String> = per_target.iter().flat_map(|r| r.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let mut versions: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut present = Vec::new();
        let mut files: Vec<LockedFile> = Vec::new();
        for (target, resolution) in targets.iter().zip(per_target) {
            let Some((_, version, candidate)) = resolution.get(name) else {
                continue;
            };
            present.push(target);
            versions
                .entry(version.to_string())
                .or_default()
                .push(&target.platform);
            if let Some(file) = hashed.get(&candidate.file.uri()) {
                if !files.contains(file) {
                    files.push(file.clone());
                }
            }
        }
        if versions.len() > 1 {
            return Err(LockError::Diverged {
                package: name.clone(),
                versions: versions
                    .iter()
                    .map(|(v, p)| format!("{v} for {}", p.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let marker = if present.len() == targets.len() {
            None
        } else {
            let wanted: BTreeSet<&str> = present.iter().map(|t| t.python.arch.as_str()).collect();
            let others: BTreeSet<&str> = targets
                .iter()
                .filter(|t| !present.iter().any(|p| p.platform == t.platform))
                .map(|t| t.python.arch.as_str())
                .collect();
            if !wanted.is_disjoint(&others) {
                return Err(LockError::Unmarkable {
                    package: name.clone(),
                    present: present
                        .iter()
                        .map(|t| t.platform.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Some(
                wanted
                    .iter()
                    .map(|arch| format!("platform_machine == '{arch}'"))
                    .collect::<Vec<_>>()
                    .join(" or "),
            )
        };
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        out.push(LockedPackage {
            name: name.clone(),
            version: versions.into_keys().next().unwrap_or_default(),
            marker,
            files,
        });
    }
    Ok(out)
}

impl Lock {
    fn platforms(&self) -> String {
        self.targets
            .iter()
            .map(|t| t.platform.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn python(&self) -> String {
        self.targets
            .first()
            .map(|t| format!("{}.{}", t.python.version.major, t.python.version.minor))
            .unwrap_or_default()
    }

    /// A requirements file in pip's hash-checking mode; `command` is recorded in the header.
    pub fn requirements_txt(&self, command: &str) -> String {
        let mut out = format!(
            "# Written by kiln lock pip for CPython {} on {}:\n#    {command}\n",
            self.python(),
            self.platforms()
        );
        for package in &self.packages {
            out.push_str(&format!("{}=={}", package.name, package.version));
            if let Some(marker) = &package.marker {
                out.push_str(&format!(" ; {marker}"));
            }
            for file in &package.files {
                out.push_str(&format!(" \\\n    --hash=sha256:{}", file.sha256));
            }
            out.push('\n');
        }
        out
    }

    /// A PEP 751 lock file; `command` is recorded in the header.
    pub fn pylock_toml(&self, command: &str) -> String {
        let python = self.python();
        let environments: Vec<String> = self
            .targets
            .iter()
            .map(|t| {
                format!(
                    "sys_platform == 'linux' and platform_machine == '{}' and python_version == '{python}'",
                    t.python.arch
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let packages: Vec<WritePackage> = self
            .packages
            .iter()
            .map(|p| WritePackage {
                name: p.name.clone(),
                version: p.version.clone(),
                marker: p.marker.clone(),
                wheels: p
                    .files
                    .iter()
                    .map(|f| (f.filename.clone(), f.uri.clone(), f.size, f.sha256.clone()))
                    .collect(),
            })
            .collect();
        let header = format!(
            "Written by kiln lock pip for CPython {python} on {}:\n   {command}",
            self.platforms()
        );
        pylock::write(&format!("=={python}.*"), &environments, &packages, &header)
    }
}

/// Whether `path` names a PEP 751 lock file (the output format follows the name).
pub fn is_pylock_path(path: &Path) -> bool {
    pylock::is_pylock(&path.to_string_lossy())
}

#[cfg(test)]
mod tests;
