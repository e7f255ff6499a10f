//! The RUN recognizer: turns a RUN's shell text into typed [`NativeCommand`]s kiln can apply
//! without running a container, or says precisely which command it does not understand.
//!
//! Data enters as the shell-form text of one RUN (line continuations already joined by the
//! parser) plus a variable lookup (the stage's ENV and ARG values). [`recognize`] then:
//!
//! 1. splits the text into commands and expands their words with
//!    [`crate::shell::split_and_expand`], which refuses every shell construct but `&&`, `;`,
//!    quotes, escapes, comments and variables; unquoted glob characters are refused here
//!    (outside `echo` and the cache-cleaning `rm`);
//! 2. maps each command to a [`NativeCommand`] with the grammar of its tool, which lives with
//!    the domain that emulates it: [`crate::users::args`] for the user and group tools,
//!    [`crate::apk::args`] for apk; `pip install`'s arguments are read later by
//!    [`crate::python::pip_args`].
//!
//! `&&` and `;` are treated alike: every recognized command succeeds or the native step fails,
//! so a `;`-separated command after a failure never runs either way.
//!
//! [`NativeCommand::Noop`] covers commands whose effect on the image is nothing: `true`, `:`,
//! `echo`, `set -e`-style shell options, and `rm -rf` of exactly the cache paths native steps
//! never write (`/var/cache/apk/*`, `/root/.cache/pip`, ...). That is exact when the lower
//! layers hold nothing there, which is how base images ship them.

use crate::apk;
use crate::apk::args::{ApkArgsError, ApkCommand};
use crate::apk::command::ToApkCommand;
use crate::apk::constraint::{ConstraintError, PackageConstraint};
use crate::dockerfile::shell::ExpandError;
use crate::shell::{ShellError, SimpleCommand, noop_reason, split_and_expand};
use crate::users::{self, UsersCommand};

pub use crate::users::args::{
    AddGroupArgs, AddUserArgs, BUSYBOX_LAST_ID, DelGroupArgs, GroupAddArgs, UserAddArgs,
    UserModArgs,
};

/// One command of a RUN that kiln applies natively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeCommand {
    /// busybox `addgroup`: create a group, or add a user to a group.
    AddGroup(AddGroupArgs),
    /// busybox `adduser` (creating a user; `adduser USER GROUP` becomes [`NativeCommand::AddGroup`]).
    AddUser(AddUserArgs),
    /// shadow's `groupadd`.
    GroupAdd(GroupAddArgs),
    /// shadow's `useradd`.
    UserAdd(UserAddArgs),
    /// shadow's `usermod -G` (with or without `-a`), the only usermod kiln computes.
    UserMod(UserModArgs),
    /// shadow's `groupdel GROUP`.
    GroupDel {
        /// The group to delete.
        group: String,
    },
    /// busybox `deluser USER`.
    DelUser {
        /// The login name.
        user: String,
    },
    /// busybox `delgroup GROUP` or `delgroup USER GROUP`.
    DelGroup(DelGroupArgs),
    /// `apk update`: refresh the package indexes.
    ApkUpdate,
    /// `apk upgrade`.
    ApkUpgrade {
        /// `-a`/`--available`: also downgrade/replace packages to match the repositories.
        available: bool,
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-l`/`--latest`: prefer the latest version over the pinned one.
        latest: bool,
    },
    /// `apk add`.
    ApkAdd {
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-u`/`--upgrade`: upgrade the named packages if already installed.
        upgrade: bool,
        /// `-t NAME`/`--virtual NAME`: group the packages under a virtual package.
        virtual_name: Option<String>,
        /// The packages asked for.
        packages: Vec<PackageConstraint>,
    },
    /// `apk del`.
    ApkDel {
        /// The package (or virtual package) names.
        packages: Vec<String>,
        /// `-r`/`--rdepends`: also remove packages that depend on them.
        rdepends: bool,
        /// `--purge`: also remove modified configuration files.
        purge: bool,
    },
    /// `pip install`, `pip3 install`, `python -m pip install` or `python3 -m pip install`.
    Pip {
        /// The program word as written (`pip`, `/venv/bin/pip`, `python3` for `-m pip`): which
        /// pip runs is decided from the image's PATH (see `crate::steps::pip::launcher_decision`).
        launcher: String,
        /// The raw arguments after `install`.
        args: Vec<String>,
    },
    /// A command with no effect on the image.
    Noop {
        /// Why it has none (shown in progress output).
        reason: String,
    },
    /// `rm -rf` of well-known package-cache paths (`/var/cache/apk/*`, `/root/.cache/pip`):
    /// native steps leave nothing there, but what the lower layers hold must still go.
    RemoveCache {
        /// The paths as written (a trailing `/*` means the directory's contents).
        paths: Vec<String>,
    },
}

impl NativeCommand {
    /// The user or group command this is, if it is one.
    pub fn users_command(&self) -> Option<UsersCommand> {
        Some(match self {
            NativeCommand::AddGroup(args) => UsersCommand::AddGroup(args.clone()),
            NativeCommand::AddUser(args) => UsersCommand::AddUser(args.clone()),
            NativeCommand::GroupAdd(args) => UsersCommand::GroupAdd(args.clone()),
            NativeCommand::UserAdd(args) => UsersCommand::UserAdd(args.clone()),
            NativeCommand::UserMod(args) => UsersCommand::UserMod(args.clone()),
            NativeCommand::GroupDel { group } => UsersCommand::GroupDel {
                group: group.clone(),
            },
            NativeCommand::DelUser { user } => UsersCommand::DelUser { user: user.clone() },
            NativeCommand::DelGroup(args) => UsersCommand::DelGroup(args.clone()),
            _ => return None,
        })
    }
}

impl From<UsersCommand> for NativeCommand {
    fn from(command: UsersCommand) -> Self {
        match command {
            UsersCommand::AddGroup(args) => NativeCommand::AddGroup(args),
            UsersCommand::AddUser(args) => NativeCommand::AddUser(args),
            UsersCommand::GroupAdd(args) => NativeCommand::GroupAdd(args),
            UsersCommand::UserAdd(args) => NativeCommand::UserAdd(args),
            UsersCommand::UserMod(args) => NativeCommand::UserMod(args),
            UsersCommand::GroupDel { group } => NativeCommand::GroupDel { group },
            UsersCommand::DelUser { user } => NativeCommand::DelUser { user },
            UsersCommand::DelGroup(args) => NativeCommand::DelGroup(args),
        }
    }
}

impl From<ApkCommand> for NativeCommand {
    fn from(command: ApkCommand) -> Self {
        match command {
            ApkCommand::Update => NativeCommand::ApkUpdate,
            ApkCommand::Upgrade {
                available,
                no_cache,
                update_cache,
                latest,
            } => NativeCommand::ApkUpgrade {
                available,
                no_cache,
                update_cache,
                latest,
            },
            ApkCommand::Add {
                no_cache,
                update_cache,
                upgrade,
                virtual_name,
                packages,
            } => NativeCommand::ApkAdd {
                no_cache,
                update_cache,
                upgrade,
                virtual_name,
                packages,
            },
            ApkCommand::Del {
                packages,
                rdepends,
                purge,
            } => NativeCommand::ApkDel {
                packages,
                rdepends,
                purge,
            },
        }
    }
}

impl ToApkCommand for NativeCommand {
    fn to_apk_command(&self) -> Option<ApkCommand> {
        Some(match self {
            NativeCommand::ApkUpdate => ApkCommand::Update,
            NativeCommand::ApkUpgrade {
                available,
                no_cache,
                update_cache,
                latest,
            } => ApkCommand::Upgrade {
                available: *available,
                no_cache: *no_cache,
                update_cache: *update_cache,
                latest: *latest,
            },
            NativeCommand::ApkAdd {
                no_cache,
                update_cache,
                upgrade,
                virtual_name,
                packages,
            } => ApkCommand::Add {
                no_cache: *no_cache,
                update_cache: *update_cache,
                upgrade: *upgrade,
                virtual_name: virtual_name.clone(),
                packages: packages.clone(),
            },
            NativeCommand::ApkDel {
                packages,
                rdepends,
                purge,
            } => ApkCommand::Del {
                packages: packages.clone(),
                rdepends: *rdepends,
                purge: *purge,
            },
            _ => return None,
        })
    }
}

/// Why a RUN could not be recognized.
#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    /// A shell construct or command kiln does not apply natively.
    #[error(
        "RUN command `{command}` is not understood natively: {reason}; kiln applies apk, addgroup/adduser, groupadd/useradd, pip install and cache cleanup joined with `&&` or `;`"
    )]
    NotUnderstood {
        /// The command text.
        command: String,
        /// What is not understood.
        reason: String,
    },
    /// An option the tool has but kiln does not model, or that the tool does not have.
    #[error("RUN command `{command}`: unknown or unsupported option `{flag}` for `{tool}`")]
    UnknownFlag {
        /// The command text.
        command: String,
        /// The tool (`adduser`, `apk add`).
        tool: String,
        /// The flag as written.
        flag: String,
    },
    /// An option or operand is missing or malformed.
    #[error("RUN command `{command}`: {tool}: {message}")]
    Usage {
        /// The command text.
        command: String,
        /// The tool.
        tool: String,
        /// What is wrong, in the tool's words where it has them.
        message: String,
    },
    /// Variable expansion failed.
    #[error("RUN command `{command}`: failed to expand variables")]
    Expand {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ExpandError,
    },
    /// An `apk add` package spec is malformed.
    #[error("RUN command `{command}`: bad package spec")]
    Package {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ConstraintError,
    },
}

impl From<ShellError> for RecognizeError {
    fn from(error: ShellError) -> Self {
        match error {
            ShellError::NotUnderstood { command, reason } => {
                RecognizeError::NotUnderstood { command, reason }
            }
            ShellError::UnknownFlag {
                command,
                tool,
                flag,
            } => RecognizeError::UnknownFlag {
                command,
                tool,
                flag,
            },
            ShellError::Usage {
                command,
                tool,
                message,
            } => RecognizeError::Usage {
                command,
                tool,
                message,
            },
            ShellError::Expand { command, source } => RecognizeError::Expand { command, source },
        }
    }
}

impl From<ApkArgsError> for RecognizeError {
    fn from(error: ApkArgsError) -> Self {
        match error {
            ApkArgsError::Line(line) => line.into(),
            ApkArgsError::Package { command, source } => {
                RecognizeError::Package { command, source }
            }
        }
    }
}

impl RecognizeError {
    /// Why the RUN goes to the sandbox instead, in a few words for the build output
    /// (`useradd --foo is not emulated`).
    pub fn sandbox_reason(&self) -> String {
        match self {
            RecognizeError::NotUnderstood { reason, .. } => reason.clone(),
            RecognizeError::UnknownFlag { tool, flag, .. } => {
                format!("{tool} {flag} is not emulated")
            }
            RecognizeError::Usage { tool, message, .. } => format!("{tool}: {message}"),
            RecognizeError::Expand { source, .. } => {
                format!("its words do not expand natively ({source})")
            }
            RecognizeError::Package { source, .. } => format!("apk package spec: {source}"),
        }
    }
}

/// Splits `script` into commands and recognizes each (see the module docs).
pub fn recognize(
    script: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<NativeCommand>, RecognizeError> {
    split_and_expand(script, lookup)?
        .iter()
        .map(map_command)
        .collect()
}

/// Cache paths native steps never write, whose removal changes nothing (`rm -rf PATH`).
const CACHE_PATHS: &[&str] = &[
    "/var/cache/apk",
    "/var/cache/apk/",
    "/var/cache/apk/*",
    "/root/.cache",
    "/root/.cache/",
    "/root/.cache/*",
    "/root/.cache/pip",
    "/root/.cache/pip/",
    "/root/.cache/pip/*",
    "/etc/apk/cache",
    "/etc/apk/cache/*",
];

/// Maps one expanded command to its [`NativeCommand`].
fn map_command(command: &SimpleCommand) -> Result<NativeCommand, RecognizeError> {
    let text = command.text.as_str();
    let program = command.program();
    let args = command.args();
    let not_understood = |reason: String| RecognizeError::NotUnderstood {
        command: text.to_owned(),
        reason,
    };
    if command.globbed && program != "rm" && program != "echo" {
        return Err(not_understood(
            "unquoted glob characters (`*`, `?`, `[`) are not supported here".to_owned(),
        ));
    }
    if let Some(reason) = noop_reason(command) {
        return Ok(NativeCommand::Noop { reason });
    }
    if let Some(parsed) = users::args::parse(command) {
        return Ok(parsed?.into());
    }
    match command.base() {
        "rm" => recognize_rm(text, args),
        "apk" => Ok(apk::args::parse(text, args)?.into()),
        "pip" | "pip3" => recognize_pip(text, program, args),
        "python" | "python3" if args.first().map(String::as_str) == Some("-m") => {
            match args.get(1).map(String::as_str) {
                Some("pip") => recognize_pip(text, program, &args[2..]),
                _ => Err(not_understood(format!(
                    "`{program} -m` is only understood with `pip install`"
                ))),
            }
        }
        _ => Err(not_understood(format!(
            "`{program}` is not a known command"
        ))),
    }
}

fn recognize_rm(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    let mut recursive = false;
    let mut force = false;
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
            for c in arg[1..].chars() {
                match c {
                    'r' | 'R' => recursive = true,
                    'f' => force = true,
                    _ => {
                        return Err(RecognizeError::UnknownFlag {
                            command: text.to_owned(),
                            tool: "rm".to_owned(),
                            flag: format!("-{c}"),
                        });
                    }
                }
            }
        } else {
            paths.push(arg.as_str());
        }
    }
    let unknown: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !CACHE_PATHS.contains(p))
        .collect();
    if !recursive || !force || paths.is_empty() || !unknown.is_empty() {
        return Err(RecognizeError::NotUnderstood {
            command: text.to_owned(),
            reason: format!(
                "only `rm -rf` of package-manager caches ({}) is understood{}",
                CACHE_PATHS.join(", "),
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!(", not `{}`", unknown.join(" "))
                }
            ),
        });
    }
    Ok(NativeCommand::RemoveCache {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn recognize_pip(
    text: &str,
    launcher: &str,
    args: &[String],
) -> Result<NativeCommand, RecognizeError> {
    match args.split_first() {
        Some((sub, rest)) if sub == "install" => Ok(NativeCommand::Pip {
            launcher: launcher.to_owned(),
            args: rest.to_vec(),
        }),
        _ => Err(RecognizeError::NotUnderstood {
            command: text.to_owned(),
            reason: "only `pip install` is understood".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
