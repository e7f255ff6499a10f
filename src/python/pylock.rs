//! PEP 751 lock files (`pylock.toml`, `pylock.<name>.toml`): reading one and choosing, for the
//! target, exactly the wheels it lists; and writing one ([`write`], used by `kiln lock`).
//!
//! An installer of a lock file does not resolve: each package whose `marker` holds for the
//! target (and whose `requires-python` accepts it) is installed from the listed wheel with the
//! best tag for the target, and that file must have the listed sha256. The lock's own
//! `requires-python` and `environments` must accept the target. Packages that list only an
//! sdist, a VCS checkout, a directory or an archive are refused (kiln installs wheels only).

use std::collections::BTreeMap;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{MarkerEnvironment, MarkerTree};
use reqwest::Url;
use serde::Deserialize;

use crate::python::tags::{Compatibility, Tags, WheelFilename};
use crate::python::wheel::normalize_name;

/// Whether a requirements-file name is a PEP 751 lock file.
pub fn is_pylock(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "pylock.toml"
        || name
            .strip_prefix("pylock.")
            .and_then(|rest| rest.strip_suffix(".toml"))
            .is_some_and(|middle| !middle.is_empty() && !middle.contains('.'))
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LockFile {
    lock_version: String,
    requires_python: Option<String>,
    environments: Option<Vec<String>>,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    requires_python: Option<String>,
    #[serde(default)]
    wheels: Vec<WheelEntry>,
    sdist: Option<toml::Value>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
}

#[derive(Deserialize)]
struct WheelEntry {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// One wheel the lock file says to install on this target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedWheel {
    /// Normalized project name.
    pub project: String,
    /// The name as the lock file writes it.
    pub display: String,
    /// The locked version.
    pub version: String,
    /// The wheel's file name.
    pub filename: String,
    /// Where to get it: a URL (`file://` names a file on the build host), when listed.
    pub url: Option<Url>,
    /// The required sha256, lower-case hex.
    pub sha256: String,
}

/// Why a lock file cannot be installed on the target. Every variant names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PylockError {
    /// Not valid TOML or not a PEP 751 lock.
    #[error("`{file}` is not a valid PEP 751 lock file: {problem}")]
    Invalid {
        /// The lock file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// The lock is not for this target.
    #[error("`{file}` does not support the image's Python: {problem}")]
    Target {
        /// The lock file.
        file: String,
        /// What does not match.
        problem: String,
    },
    /// A package cannot be installed from wheels on the target.
    #[error("`{file}`: package `{package}` {problem}")]
    Package {
        /// The lock file.
        file: String,
        /// The package.
        package: String,
        /// What is wrong, and the fix.
        problem: String,
    },
}

/// The wheels of the lock `text` (read from `file`) to install on the target described by
/// `env`, `python` and `tags`, in name order.
pub fn select(
    file: &str,
    text: &str,
    env: &MarkerEnvironment,
    python: &Version,
    tags: &Tags,
) -> Result<Vec<LockedWheel>, PylockError> {
    let invalid = |problem: String| PylockError::Invalid {
        file: file.to_owned(),
        problem,
    };
    let lock: LockFile = toml::from_str(text).map_err(|e| invalid(e.message().to_owned()))?;
    if !lock.lock_version.starts_with("1.") {
        return Err(invalid(format!(
            "lock-version {} is not supported (kiln reads 1.x)",
            lock.lock_version
        )));
    }
    let target_err = |problem: String| PylockError::Target {
        file: file.to_owned(),
        problem,
    };
    if let Some(requires) = &lock.requires_python {
        let specifiers = VersionSpecifiers::from_str(requires)
            .map_err(|e| invalid(format!("requires-python `{requires}`: {e}")))?;
        if !specifiers.contains(python) {
            return Err(target_err(format!(
                "it requires Python {requires}, the image has {python}"
            )));
        }
    }
    if let Some(environments) = &lock.environments {
        let mut any = environments.is_empty();
        for environment in environments {
            any |= parse_marker(environment)
                .map_err(|e| invalid(format!("environments `{environment}`: {e}")))?
                .evaluate(env, &[]);
        }
        if !any {
            return Err(target_err(format!(
                "none of its environments ({}) matches the image",
                environments.join("; ")
            )));
        }
    }
    let mut out: BTreeMap<String, LockedWheel> = BTreeMap::new();
    for package in &lock.packages {
        let package_err = |problem: String| PylockError::Package {
            file: file.to_owned(),
            package: package.name.clone(),
            problem,
        };
        if let Some(marker) = &package.marker {
            let tree = parse_marker(marker)
                .map_err(|e| package_err(format!("has an invalid marker `{marker}`: {e}")))?;
            if !tree.evaluate(env, &[]) {
                continue;
            }
        }
        if let Some(requires) = &package.requires_python {
            let accepts = VersionSpecifiers::from_str(requires)
                .map_err(|e| package_err(format!("has an invalid requires-python: {e}")))?
                .contains(python);
            if !accepts {
                return Err(package_err(format!(
                    "requires Python {requires}, but the image has Python {python}"
                )));
            }
        }
        if package.wheels.is_empty() {
            let kind = if package.sdist.is_some() {
                "only a source distribution"
            } else if package.vcs.is_some() {
                "only a VCS checkout"
            } else if package.directory.is_some() {
                "only a local directory"
            } else if package.archive.is_some() {
                "only an archive"
            } else {
                "no files"
            };
            return Err(package_err(format!(
                "lists {kind}; kiln installs wheels only: lock with wheels only (`--only-binary \
                 :all:`)"
            )));
        }
        let mut best: Option<(usize, LockedWheel)> = None;
        let mut reasons = Vec::new();
        for wheel in &package.wheels {
            let url = match (&wheel.url, &wheel.path) {
                (Some(url), _) => Some(
                    Url::parse(url)
                        .map_err(|e| package_err(format!("has a bad url `{url}`: {e}")))?,
                ),
                (None, Some(_)) | (None, None) => None,
            };
            let filename = wheel
                .name
                .clone()
                .or_else(|| {
                    url.as_ref()
                        .and_then(|u| u.path_segments()?.next_back().map(str::to_owned))
                })
                .or_else(|| {
                    wheel
                        .path
                        .as_ref()
                        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
                })
                .ok_or_else(|| package_err("has a wheel without name, url or path".to_owned()))?;
            let parsed = WheelFilename::parse(&filename)
                .map_err(|e| package_err(format!("lists `{filename}`: {e}")))?;
            let rank = match tags.compatibility(&parsed) {
                Compatibility::Compatible { rank, .. } => rank,
                Compatibility::Incompatible(reason) => {
                    reasons.push(format!("{filename}: {reason}"));
                    continue;
                }
            };
            let Some(sha256) = wheel.hashes.get("sha256") else {
                return Err(package_err(format!(
                    "lists `{filename}` without a sha256 hash; kiln verifies every file"
                )));
            };
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((
                    rank,
                    LockedWheel {
                        project: normalize_name(&package.name),
                        display: package.name.clone(),
                        version: package
                            .version
                            .clone()
                            .unwrap_or_else(|| parsed.version.clone()),
                        filename,
                        url,
                        sha256: sha256.to_ascii_lowercase(),
                    },
                ));
            }
        }
        let Some((_, chosen)) = best else {
            return Err(package_err(format!(
                "has no wheel for the image ({})",
                reasons.join("; ")
            )));
        };
        if out.insert(chosen.project.clone(), chosen).is_some() {
            return Err(package_err(
                "is listed twice for the same environment".to_owned(),
            ));
        }
    }
    Ok(out.into_values().collect())
}

fn parse_marker(text: &str) -> Result<MarkerTree, String> {
    MarkerTree::from_str(text).map_err(|e| e.to_string())
}

/// One package of a lock being written.
#[derive(Clone, Debug)]
pub struct WritePackage {
    /// Normalized name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Marker limiting it to some of the locked environments.
    pub marker: Option<String>,
    /// Its wheels: (file name, URL, size, sha256).
    pub wheels: Vec<(String, String, u64, String)>,
}

/// A PEP 751 lock file for `packages` (in name order), valid for `environments`.
pub fn write(
    requires_python: &str,
    environments: &[String],
    packages: &[WritePackage],
    header: &str,
) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    out.push_str("lock-version = \"1.0\"\ncreated-by = \"kiln\"\n");
    out.push_str(&format!("requires-python = {}\n", quote(requires_python)));
    let environments: Vec<String> = environments.iter().map(|e| quote(e)).collect();
    out.push_str(&format!("environments = [{}]\n", environments.join(", ")));
    for package in packages {
        out.push_str(&format!(
            "\n[[packages]]\nname = {}\nversion = {}\n",
            quote(&package.name),
            quote(&package.version)
        ));
        if let Some(marker) = &package.marker {
            out.push_str(&format!("marker = {}\n", quote(marker)));
        }
        for (filename, url, size, sha256) in &package.wheels {
            out.push_str(&format!(
                "\n[[packages.wheels]]\nname = {}\nurl = {}\nsize = {size}\nhashes = {{ sha256 = {} }}\n",
                quote(filename),
                quote(url),
                quote(sha256)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::tags::LinuxTag;
    use crate::python::target::PythonTarget;

    fn target(arch: &str) -> PythonTarget {
        PythonTarget::cpython_311_musl(arch)
    }

    fn pick(text: &str, arch: &str) -> Result<Vec<String>, String> {
        let target = target(arch);
        let tags = Tags::for_target(&target, LinuxTag::Exclude);
        select(
            "pylock.toml",
            text,
            &target.marker_environment(),
            &Version::from_str("3.11.16").unwrap(),
            &tags,
        )
        .map(|w| w.into_iter().map(|w| w.filename).collect())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn names() {
        assert!(is_pylock("/app/pylock.toml"));
        assert!(is_pylock("pylock.musl.toml"));
        assert!(!is_pylock("pylock.a.b.toml"));
        assert!(!is_pylock("requirements.txt"));
    }

    #[test]
    fn choose_the_target_wheel_and_honour_markers() {
        let sha = "ab".repeat(32);
        let lock = write(
            ">=3.11",
            &["sys_platform == 'linux'".to_owned()],
            &[
                WritePackage {
                    name: "arm-only".into(),
                    version: "1.0".into(),
                    marker: Some("platform_machine == 'aarch64'".into()),
                    wheels: vec![(
                        "arm_only-1.0-py3-none-any.whl".into(),
                        "file:///w/arm_only-1.0-py3-none-any.whl".into(),
                        1,
                        sha.clone(),
                    )],
                },
                WritePackage {
                    name: "markupsafe".into(),
                    version: "3.0.4".into(),
                    marker: None,
                    wheels: vec![
                        (
                            "markupsafe-3.0.4-cp311-cp311-musllinux_1_2_aarch64.whl".into(),
                            "http://h/a.whl".into(),
                            1,
                            sha.clone(),
                        ),
                        (
                            "markupsafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl".into(),
                            "http://h/x.whl".into(),
                            1,
                            sha.clone(),
                        ),
                    ],
                },
            ],
            "written by a test",
        );
        assert_eq!(
            pick(&lock, "x86_64").unwrap(),
            ["markupsafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl"]
        );
        assert_eq!(pick(&lock, "aarch64").unwrap().len(), 2);
        let err = pick(&lock.replace(">=3.11", ">=3.12"), "x86_64").unwrap_err();
        assert!(err.contains("requires Python >=3.12"), "{err}");
        let sdist = "lock-version = \"1.0\"\n[[packages]]\nname = \"x\"\nversion = \"1\"\nsdist = { url = \"http://h/x-1.tar.gz\", hashes = { sha256 = \"00\" } }\n";
        let err = pick(sdist, "x86_64").unwrap_err();
        assert!(
            err.contains("package `x` lists only a source distribution"),
            "{err}"
        );
        let glibc = lock.replace("musllinux_1_2_x86_64", "manylinux_2_17_x86_64");
        let err = pick(&glibc, "x86_64").unwrap_err();
        assert!(
            err.contains("`markupsafe` has no wheel for the image"),
            "{err}"
        );
    }
}
