//! Users and groups, written exactly as Alpine's busybox 1.36 `addgroup`/`adduser` (and, with
//! Debian's defaults, shadow's `groupadd`/`useradd`) would write them, without running them.
//!
//! [`apply`] takes one command ([`UsersCommand`], parsed by [`args`]) and the filesystem it runs on and
//! returns a [`Diff`]: the rewritten `/etc/passwd`, `/etc/group`, `/etc/shadow` (only when it
//! exists) and `/etc/gshadow` (only when it exists), each existing line kept byte for byte and
//! the new line appended in the tool's format; the backup copies the tools leave (`/etc/passwd-`
//! holds the file as it was before the command: busybox's `update_passwd` hard-links it, shadow
//! copies it); and the new home directory. [`apply_all`] applies several commands, each on top
//! of the previous ones' result, through an [`Overlay`].
//!
//! busybox rules (Alpine's config: `FIRST_SYSTEM_ID=100`, `LAST_SYSTEM_ID=999`,
//! `LAST_ID=256000`, `FEATURE_CHECK_NAMES=y`, `FEATURE_SHADOWPASSWDS=y`):
//! - `addgroup [-g GID] [-S] GROUP` appends `GROUP:x:GID:`; without `-g` the gid is the first
//!   free one from 1000 (from 100 up to 999 with `-S`). `addgroup USER GROUP` appends USER to
//!   GROUP's member list (nothing happens when it is already a member).
//! - `adduser -D ... USER` appends `USER:x:UID:GID:GECOS:HOME:SHELL` (GECOS `Linux User,,,`,
//!   HOME `/home/USER`, SHELL the stage's `$SHELL` or root's shell, else `/bin/sh`; `-S` makes
//!   it `/bin/false` and the group `nogroup`), and `USER:!:DAYS:0:99999:7:::` to /etc/shadow.
//!   Without `-u` the uid is the first one from 1000 (100-999 with `-S`) free both as a uid
//!   and, when no `-G` is given, as a gid. Without `-G` it then creates the group `USER` with
//!   gid = uid; with `-G GROUP` the user is also added to GROUP's member list (busybox runs
//!   `addgroup USER GROUP`), so `appuser:x:1000:appuser`.
//! - The home is created `02755`, owned by the user, with `/etc/skel` copied in; an existing
//!   home is only chowned and chmodded; a missing parent leaves no home (busybox warns and
//!   succeeds).
//! - Errors are busybox's messages: `adduser: user 'x' in use`, `addgroup: group 'x' in use`,
//!   `addgroup: gid '1000' in use`, `adduser: uid '1000' in use`, `addgroup: unknown user x`.
//!
//! Reproducibility: where the tools write today's day as the shadow "last change" field, kiln
//! writes SOURCE_DATE_EPOCH's day (given by the caller in [`UsersOptions`]), or leaves the field
//! empty when that day is 0, as shadow's `useradd` does with SOURCE_DATE_EPOCH=0 (never `0`,
//! which means "change the password at next login"); every written entry's mtime is that time
//! too. busybox's rewritten files keep the owner and `mode & 0777` of the file they replace and
//! its backup is the old file itself; shadow's keep `mode & 0664`, and its backup is a copy
//! with the old owner and mtime. The directories whose entries a tool changes (/etc, a new
//! home's parent) are in the Diff with that time, as a snapshot of the real tool's run shows
//! them.
//!
//! shadow's `useradd`/`groupadd`/`usermod -G` follow login.defs (`UID_MIN`, `UID_MAX`,
//! `SYS_UID_MIN`, `SYS_UID_MAX`, the GID twins, `USERGROUPS_ENAB`, `CREATE_HOME`,
//! `HOME_MODE`/`UMASK`, `PASS_MIN_DAYS`/`PASS_MAX_DAYS`/`PASS_WARN_AGE`, which system
//! accounts do not get, and `SUB_UID_*`/`SUB_GID_*` for the /etc/subuid and /etc/subgid
//! ranges of regular users) and /etc/default/useradd (`HOME`, `SHELL`, `GROUP`, `SKEL`,
//! `INACTIVE`), with shadow's defaults when absent. What they would do beyond that (reset a
//! faillog/lastlog record, an `EXPIRE` default) is [`UsersError::NotEmulated`], and the RUN
//! step sends such a RUN, and any RUN whose tools the image's PATH does not resolve to the
//! emulated ones, to the sandbox. Left out: SELinux.
//!
//! The /etc files are read with [`etc`], the one reader of passwd and group lines in kiln.
//! [`busybox`] and [`shadow`] hold each family's tools; [`files`] what both share.

pub mod args;
mod busybox;
pub mod etc;
mod files;
mod shadow;

use std::collections::BTreeMap;

pub use args::{
    AddGroupArgs, AddUserArgs, BUSYBOX_LAST_ID, DelGroupArgs, GroupAddArgs, UserAddArgs,
    UserModArgs, UsersCommand,
};
pub use files::last_change_field;

use crate::layer::Diff;
use crate::rootfs::{FsView, Overlay, ViewError};
use files::Ctx;

/// Settings the caller provides.
#[derive(Clone, Debug, Default)]
pub struct UsersOptions {
    /// SOURCE_DATE_EPOCH in seconds: the shadow "last change" day and the mtime of written
    /// entries. Default 0.
    pub source_date_epoch: i64,
    /// The stage's `SHELL` environment variable, if set (busybox adduser's default shell).
    /// Default unset.
    pub shell_env: Option<String>,
}

/// Why a users command failed.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The tool refuses, with its own message (`adduser: user 'appuser' in use`).
    #[error("{tool}: {message}")]
    Tool {
        /// `adduser`, `addgroup`, `useradd`, `groupadd`.
        tool: &'static str,
        /// The tool's message.
        message: String,
    },
    /// Reading the lower filesystem failed.
    #[error("failed to read `{path}` for {tool}")]
    Read {
        /// The tool.
        tool: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: ViewError,
    },
    /// The real tool would do something kiln does not compute exactly: the RUN must run in the
    /// sandbox instead (the message says what).
    #[error("{0}")]
    NotEmulated(String),
    /// The command is not a users command.
    #[error("`{0}` is not a users command; apply it with its own step")]
    NotUsers(String),
}

const BB_FIRST_SYSTEM_ID: u32 = 100;
/// busybox's `update_passwd` gives the new file `st_mode & 0777` of the old one and keeps the
/// old inode, hard-linked, as the backup.
const BUSYBOX_KEPT_MODE_BITS: u32 = 0o777;
/// shadow's `commonio` (`fopen_set_perms`) gives both the new file and the backup copy
/// `st_mode & 0664` of the old one.
const SHADOW_KEPT_MODE_BITS: u32 = 0o664;
const BB_LAST_SYSTEM_ID: u32 = 999;

/// Applies one users command to `view` (see the module docs).
pub fn apply(
    command: &UsersCommand,
    view: &dyn FsView,
    options: &UsersOptions,
) -> Result<Diff, UsersError> {
    let mut ctx = Ctx {
        view,
        options,
        diff: Diff::new(),
        written: BTreeMap::new(),
        kept_mode_bits: if command.is_busybox() {
            BUSYBOX_KEPT_MODE_BITS
        } else {
            SHADOW_KEPT_MODE_BITS
        },
    };
    match command {
        UsersCommand::AddGroup(args) => ctx.addgroup(args)?,
        UsersCommand::AddUser(args) => ctx.adduser(args)?,
        UsersCommand::GroupAdd(args) => ctx.groupadd(args)?,
        UsersCommand::UserAdd(args) => ctx.useradd(args)?,
        UsersCommand::UserMod(args) => ctx.usermod(args)?,
        UsersCommand::DelUser { user } => ctx.deluser(user)?,
        UsersCommand::GroupDel { group } => ctx.groupdel(group)?,
        UsersCommand::DelGroup(args) => ctx.delgroup(args, false)?,
    }
    Ok(ctx.diff)
}

/// Applies `commands` in order, each on `lower` plus the previous commands' changes, and
/// returns all the changes as one Diff.
pub fn apply_all(
    commands: &[UsersCommand],
    lower: &dyn FsView,
    options: &UsersOptions,
) -> Result<Diff, UsersError> {
    let mut overlay = Overlay::new(lower);
    for command in commands {
        let diff = apply(command, &overlay, options)?;
        overlay.apply(diff);
    }
    Ok(overlay.into_diff())
}

/// /etc/default/useradd of `view` as shadow's `useradd` reads it (`KEY=value` lines).
pub fn useradd_defaults(
    view: &dyn FsView,
    options: &UsersOptions,
) -> Result<BTreeMap<String, String>, UsersError> {
    let ctx = Ctx {
        view,
        options,
        diff: Diff::new(),
        written: BTreeMap::new(),
        kept_mode_bits: SHADOW_KEPT_MODE_BITS,
    };
    ctx.useradd_defaults("useradd")
}
