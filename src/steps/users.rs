//! The users step: applies a RUN's recognized user and group commands natively with the
//! emulation of [`crate::users`], or says why they must run in the sandbox.
//!
//! [`apply`] and [`apply_all`] take [`NativeCommand`]s and return the [`Diff`] the tools would
//! write (see [`crate::users`] for the rules). [`sandbox_reason`] decides from the image: the
//! program the stage's `PATH` finds must be the one emulated, and applying the commands must
//! meet nothing left unemulated.

use crate::layer::{Diff, LayerPath};
use crate::material::StepOutput;
use crate::rootfs::{FsView, NodeKind, Overlay, ViewError};
use crate::steps::run::NativeCommand;
use crate::users::{self, UsersCommand};

pub use crate::users::{UsersError, UsersOptions, last_change_field};

/// Applies one users command to `view` (see [`crate::users`]); [`NativeCommand::Noop`] gives
/// an empty Diff, any other command [`UsersError::NotUsers`]. A users command consumes nothing
/// from outside the image, so its output has no materials.
pub fn apply(
    command: &NativeCommand,
    view: &dyn FsView,
    options: &UsersOptions,
) -> Result<StepOutput, UsersError> {
    let diff = match command.users_command() {
        Some(users_command) => users::apply(&users_command, view, options)?,
        None if matches!(command, NativeCommand::Noop { .. }) => Diff::new(),
        None => return Err(UsersError::NotUsers(format!("{command:?}"))),
    };
    Ok(StepOutput::of_diff(diff))
}

/// The default PATH a RUN sees when the image sets none (BuildKit's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the users commands among `commands` cannot be computed natively on `view` (the stage's
/// filesystem before the RUN), or `None` when every one of them can. Decided from the image:
/// the program the stage's `PATH` finds must be the one emulated (busybox's `adduser` and
/// `addgroup`; shadow's `useradd` and `groupadd` on a Debian-family image, whose build and
/// defaults the emulation follows), and applying them must meet nothing left unemulated
/// (a faillog/lastlog record to reset, an `EXPIRE` default). Errors the tool itself would
/// report are not reasons: the native step reports them in the tool's words.
pub fn sandbox_reason(
    commands: &[NativeCommand],
    view: &dyn FsView,
    path_env: Option<&str>,
    options: &UsersOptions,
) -> Result<Option<String>, UsersError> {
    let users_commands: Vec<UsersCommand> = commands
        .iter()
        .filter_map(NativeCommand::users_command)
        .collect();
    for command in &users_commands {
        if let Some(reason) = program_reason(view, path_env, command.tool(), command.is_busybox())?
        {
            return Ok(Some(reason));
        }
        if let UsersCommand::UserAdd(_) = command {
            let defaults = users::useradd_defaults(view, options)?;
            if defaults.get("EXPIRE").is_some_and(|v| !v.is_empty()) {
                return Ok(Some(
                    "useradd with an EXPIRE default in /etc/default/useradd is not emulated"
                        .to_owned(),
                ));
            }
        }
    }
    match users::apply_all(&users_commands, view, options) {
        Err(UsersError::NotEmulated(reason)) => Ok(Some(reason)),
        _ => Ok(None),
    }
}

/// Why `program`, as the stage's PATH finds it, is not the implementation kiln emulates.
fn program_reason(
    view: &dyn FsView,
    path_env: Option<&str>,
    program: &str,
    wanted_busybox: bool,
) -> Result<Option<String>, UsersError> {
    let path_env = path_env.unwrap_or(DEFAULT_PATH);
    let mut found = None;
    for dir in path_env.split(':').filter(|d| d.starts_with('/')) {
        let Ok(candidate) = LayerPath::new(&format!("{dir}/{program}")) else {
            continue;
        };
        match view.stat(&candidate, true) {
            Ok(Some((resolved, node))) if matches!(node.kind, NodeKind::File { .. }) => {
                found = Some(resolved);
                break;
            }
            Ok(_) | Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => {}
            Err(source) => {
                return Err(UsersError::Read {
                    tool: "users",
                    path: candidate.absolute(),
                    source,
                });
            }
        }
    }
    let Some(resolved) = found else {
        return Ok(Some(format!(
            "`{program}` is not in this image's PATH before the RUN, so kiln cannot tell which {program} it is"
        )));
    };
    let is_busybox = resolved.file_name() == "busybox";
    if wanted_busybox && !is_busybox {
        return Ok(Some(format!(
            "{program} in this image is {}, not busybox's; only busybox's {program} is emulated",
            resolved.absolute()
        )));
    }
    if !wanted_busybox {
        if is_busybox {
            return Ok(Some(format!(
                "{program} in this image is busybox's; only shadow's {program} is emulated"
            )));
        }
        let debian = LayerPath::new("etc/debian_version").unwrap_or_else(|_| LayerPath::root());
        if !matches!(view.stat(&debian, true), Ok(Some(_))) {
            return Ok(Some(format!(
                "{program} is emulated as Debian's shadow builds it, and this image is not of the Debian family (no /etc/debian_version)"
            )));
        }
    }
    Ok(None)
}

/// Applies `commands` in order, each on `lower` plus the previous commands' changes, and
/// returns all the changes as one Diff.
pub fn apply_all(
    commands: &[NativeCommand],
    lower: &dyn FsView,
    options: &UsersOptions,
) -> Result<Diff, UsersError> {
    let mut overlay = Overlay::new(lower);
    for command in commands {
        let output = apply(command, &overlay, options)?;
        overlay.apply(output.diff);
    }
    Ok(overlay.into_diff())
}

#[cfg(test)]
mod tests;
