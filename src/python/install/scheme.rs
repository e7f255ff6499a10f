//! Where a wheel goes: the install scheme (`--user`, `--prefix`, `--target`, or the
//! interpreter's own prefix, falling back to `--user` as pip does when site-packages is not
//! writable), the RUN user it is installed for, PEP 668's refusal, and the directories the
//! image already has.

use std::str::FromStr;

use pep440_rs::Version;

use super::error::PipError;
use crate::layer::{Diff, Entry, EntryKind, LayerPath};
use crate::python::config::image_path;
use crate::python::pip_args::InstallLocation;
use crate::python::target::{Libc, PythonTarget};
use crate::python::wheel::{Scheme, WheelError};
use crate::rootfs::{FsView, NodeKind, ViewError};

/// Where the new distributions go, as pip's `get_dist_to_uninstall` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstallSite {
    /// `--user`, or pip's fallback to it when site-packages is not writable.
    User,
    /// The interpreter's prefix or `--prefix`.
    Other,
}

/// The RUN user as pip inside the container would be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Home directory (absolute image path).
    pub home: String,
}

/// `/usr/local/bin/python3.11` -> `/usr/local`.
pub(crate) fn sys_prefix(interpreter: &str) -> String {
    let bin = interpreter.rsplit_once('/').map_or("", |(dir, _)| dir);
    match bin.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((prefix, _)) => prefix.to_owned(),
    }
}

pub(crate) fn python_version(target: &PythonTarget) -> Version {
    let text = target.version.to_string();
    Version::from_str(&text).unwrap_or_else(|_| Version::new([3, u64::from(target.version.minor)]))
}

pub(crate) fn describe_target(target: &PythonTarget) -> String {
    let libc = match target.libc {
        Libc::Musl { major, minor } => format!("musl {major}.{minor}"),
        Libc::Glibc { major, minor } => format!("glibc {major}.{minor}"),
    };
    format!("CPython {} on {libc} {}", target.version, target.arch)
}

/// The install scheme (its base directory resolved through the image's symlinks), and
/// whether it is the user site (`--user`, or pip's fallback to it). `user_base` is the
/// scheme of `--user`: `PYTHONUSERBASE`, or `<home>/.local`.
pub(crate) fn scheme_for(
    location: &InstallLocation,
    user: &RunUser,
    user_base: &str,
    target: &PythonTarget,
    fs: &dyn FsView,
    workdir: &str,
) -> Result<(Scheme, InstallSite), PipError> {
    let resolved = |raw: &str| -> Result<LayerPath, PipError> {
        let absolute = image_path(workdir, raw);
        let path = LayerPath::new(&absolute).map_err(|e| PipError::Location {
            path: absolute.clone(),
            problem: e.to_string(),
        })?;
        fs.resolve(&path, true).map_err(|source| PipError::Read {
            path: absolute,
            source,
        })
    };
    let scheme_err = |e: WheelError| PipError::Location {
        path: String::new(),
        problem: e.to_string(),
    };
    let user_scheme = || -> Result<(Scheme, InstallSite), PipError> {
        let scheme = Scheme::prefix(&resolved(user_base)?, target.version).map_err(scheme_err)?;
        Ok((scheme, InstallSite::User))
    };
    match location {
        InstallLocation::User => user_scheme(),
        InstallLocation::Prefix(prefix) => {
            let scheme = Scheme::prefix(&resolved(prefix)?, target.version).map_err(scheme_err)?;
            Ok((scheme, InstallSite::Other))
        }
        InstallLocation::Target(dir) => {
            let scheme = Scheme::target(&resolved(dir)?).map_err(scheme_err)?;
            Ok((scheme, InstallSite::Other))
        }
        InstallLocation::System => {
            let prefix = resolved(&sys_prefix(&target.interpreter))?;
            let scheme = Scheme::prefix(&prefix, target.version).map_err(scheme_err)?;
            // pip falls back to --user when a non-root user cannot write site-packages.
            if user.uid != 0 && !writable(fs, &scheme.purelib, user)? {
                return user_scheme();
            }
            Ok((scheme, InstallSite::Other))
        }
    }
}

pub(crate) fn writable(fs: &dyn FsView, dir: &LayerPath, user: &RunUser) -> Result<bool, PipError> {
    let node = fs.stat(dir, true).map_err(|source| PipError::Read {
        path: dir.absolute(),
        source,
    })?;
    Ok(match node {
        Some((_, node)) => {
            let mode = node.meta.mode;
            (node.meta.uid == user.uid && mode & 0o200 != 0)
                || (node.meta.gid == user.gid && mode & 0o020 != 0)
                || mode & 0o002 != 0
        }
        None => false,
    })
}

/// Directories the image already has keep their owner, mode and attributes (pip creates only
/// the missing ones); their time becomes the step's, as a RUN that writes into them would.
pub(crate) fn keep_existing_dirs(
    diff: &mut Diff,
    fs: &dyn FsView,
    mtime: i64,
) -> Result<(), PipError> {
    let dirs: Vec<LayerPath> = diff
        .iter()
        .filter(|(_, e)| matches!(e.kind, EntryKind::Dir))
        .map(|(p, _)| p.clone())
        .collect();
    for path in dirs {
        let existing = fs.lstat_exact(&path).map_err(|source| PipError::Read {
            path: path.absolute(),
            source,
        })?;
        if let Some(node) = existing.filter(|n| n.kind == NodeKind::Dir) {
            let mut meta = node.meta;
            meta.mtime = mtime;
            diff.insert(
                path,
                Entry {
                    kind: EntryKind::Dir,
                    meta,
                },
            );
        }
    }
    Ok(())
}

/// Fails as pip does when the interpreter's stdlib directory holds PEP 668's
/// `EXTERNALLY-MANAGED` marker.
pub(crate) fn check_externally_managed(
    fs: &dyn FsView,
    sys_prefix: &str,
    target: &PythonTarget,
) -> Result<(), PipError> {
    let marker = format!(
        "{}/lib/python{}.{}/EXTERNALLY-MANAGED",
        sys_prefix.trim_end_matches('/'),
        target.version.major,
        target.version.minor
    );
    let Ok(path) = LayerPath::new(&marker) else {
        return Ok(());
    };
    let text = match fs.read_file(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => return Ok(()),
        Err(source) => {
            return Err(PipError::Read {
                path: marker,
                source,
            });
        }
    };
    let explanation = externally_managed_error(&text).unwrap_or_else(|| {
        format!(
            "The Python environment under {sys_prefix} is managed externally, and may not be\n\
             manipulated by the user. Please use specific tooling from the distributor of\n\
             the Python installation to interact with this Python environment instead."
        )
    });
    Err(PipError::ExternallyManaged {
        marker,
        explanation,
    })
}

/// The `Error` key of the `[externally-managed]` section (INI continuation lines joined).
pub(crate) fn externally_managed_error(text: &str) -> Option<String> {
    let mut in_section = false;
    let mut value: Option<Vec<String>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if value.is_some() {
                break;
            }
            in_section = trimmed == "[externally-managed]";
            continue;
        }
        if !in_section {
            continue;
        }
        match &mut value {
            Some(lines) if line.starts_with([' ', '\t']) => lines.push(trimmed.to_owned()),
            Some(_) => break,
            None => {
                if let Some((key, rest)) = line.split_once(['=', ':']) {
                    if key.trim() == "Error" {
                        value = Some(vec![rest.trim().to_owned()]);
                    }
                }
            }
        }
    }
    value.map(|lines| {
        lines
            .into_iter()
            .skip_while(|l| l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(sys_prefix("/usr/local/bin/python3.11"), "/usr/local");
        assert_eq!(sys_prefix("/usr/bin/python3.11"), "/usr");
        assert_eq!(sys_prefix("/bin/python3"), "/");
    }
}
