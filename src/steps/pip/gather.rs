//! The requirements one `pip install` names: the requirement files (relative to WORKDIR, read
//! from the image; their options folded into the settings), PEP 751 lock files, constraint
//! files (`-c`, `PIP_CONSTRAINT`) and the specs on the command line, markers evaluated for
//! the target.

use pep508_rs::{MarkerEnvironment, VersionOrUrl};

use super::PipRequest;
use crate::layer::LayerPath;
use crate::python::config::{ConfigValue, image_path};
use crate::python::install::PipError;
use crate::python::install::settings::{Settings, absorb_file_options};
use crate::python::pep508;
use crate::python::pip_args::PipInstall;
use crate::python::pylock;
use crate::python::requirements::{self, RequirementLine, RequirementsError};
use crate::rootfs::ViewError;

/// What the requirement sources name, in the order pip reads them.
pub(super) struct Gathered {
    /// The requirements to install (files first, then the command line's specs).
    pub(super) lines: Vec<RequirementLine>,
    /// The constraints, from `-c` lines of the files and from the constraint files.
    pub(super) constraints: Vec<RequirementLine>,
    /// PEP 751 lock files given with `-r`: (image path, text).
    pub(super) lock_files: Vec<(String, String)>,
    /// A requirement file asked for pre-releases (`--pre`).
    pub(super) pre: bool,
}

/// Reads every requirement source of `parsed` (and `config_constraints`, from `PIP_CONSTRAINT`
/// or pip.conf) from the image in `request`, folding the files' options into `settings`.
pub(super) fn requirements(
    parsed: &PipInstall,
    config_constraints: &[ConfigValue],
    settings: &mut Settings,
    request: &PipRequest<'_>,
    env: &MarkerEnvironment,
) -> Result<Gathered, PipError> {
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
        let parsed_file = requirements::parse(&path, &mut read, env)?;
        absorb_file_options(settings, &parsed_file, &path);
        file_pre |= parsed_file.pre;
        lines.extend(parsed_file.requirements);
        constraints.extend(parsed_file.constraints);
    }
    // PIP_CONSTRAINT (or `constraint` in pip.conf) adds to the command line's `-c` files.
    let constraint_files = config_constraints
        .iter()
        .map(|c| &c.value)
        .chain(&parsed.constraint_files);
    for file in constraint_files {
        let path = image_path(request.workdir, file);
        let parsed_file = requirements::parse(&path, &mut read, env)?;
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
        if requirement.marker.evaluate(env, &[]) {
            lines.push(RequirementLine {
                requirement,
                hashes: Vec::new(),
                file: "the pip command line".to_owned(),
                line: 0,
            });
        }
    }
    Ok(Gathered {
        lines,
        constraints,
        lock_files,
        pre: file_pre,
    })
}
