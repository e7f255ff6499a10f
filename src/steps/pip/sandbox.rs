//! Whether a `pip install` RUN can be computed natively or must run in the sandbox: the pip
//! the RUN's PATH finds, and the distributions `python -m pip` would see in the working
//! directory.

use super::PipRequest;
use crate::layer::LayerPath;
use crate::python::install::PipError;
use crate::python::launcher::{self, Launcher};
use crate::python::target::{self, TargetError};

/// Why this `pip install` must run in the sandbox, decided from the image: the pip that
/// `launcher` (the RUN's program word) finds on the RUN's PATH is not the one kiln's native
/// install is exact for ([`crate::python::launcher`]). `None` when native is exact.
pub fn sandbox_reason(
    launcher: &str,
    request: &PipRequest<'_>,
) -> Result<Option<String>, PipError> {
    let target = match target::detect(request.fs, request.platform) {
        Ok(target) => target,
        // No interpreter: Docker's shell finds no pip either, and fails; so does the sandbox.
        Err(TargetError::NoPython) => {
            return Ok(Some(format!(
                "the image has no Python, so no `{launcher}` (the RUN fails as Docker's does)"
            )));
        }
        Err(other) => return Err(other.into()),
    };
    let path_var = (request.env)("PATH");
    match launcher::decide(
        request.fs,
        launcher,
        path_var.as_deref(),
        request.workdir,
        &target,
    ) {
        Ok(Launcher::Native) => workdir_distributions(launcher, request),
        Ok(Launcher::Sandbox(reason)) => Ok(Some(reason)),
        Err(source) => Err(PipError::Read {
            path: launcher.to_owned(),
            source,
        }),
    }
}

/// `python -m pip` puts the working directory first on `sys.path`, so pip sees the
/// distributions there as installed; kiln's native step does not look there, so such a RUN
/// goes to the sandbox.
fn workdir_distributions(
    launcher: &str,
    request: &PipRequest<'_>,
) -> Result<Option<String>, PipError> {
    let program = launcher.rsplit('/').next().unwrap_or(launcher);
    if !program.starts_with("python") {
        return Ok(None);
    }
    let Ok(workdir) = LayerPath::new(request.workdir) else {
        return Ok(None);
    };
    let read_err = |source| PipError::Read {
        path: request.workdir.to_owned(),
        source,
    };
    let Some((resolved, node)) = request.fs.stat(&workdir, true).map_err(read_err)? else {
        return Ok(None);
    };
    if node.kind != crate::rootfs::NodeKind::Dir {
        return Ok(None);
    }
    let names = request.fs.read_dir(&resolved).map_err(read_err)?;
    Ok(names
        .iter()
        .find(|n| {
            [".dist-info", ".egg-info", ".egg-link"]
                .iter()
                .any(|s| n.ends_with(s))
        })
        .map(|name| {
            format!(
                "`{launcher} -m pip` also sees the distributions in the working directory \
                 {} ({name}), which kiln's native step does not read",
                request.workdir
            )
        }))
}
