//! Users and groups, written exactly as Alpine's busybox 1.36 `addgroup`/`adduser` (and, with
//! Debian's defaults, shadow's `groupadd`/`useradd`) would write them, without running them.
//!
//! [`apply`] takes one recognized command ([`NativeCommand`]) and the filesystem it runs on and
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
//! faillog/lastlog record, an `EXPIRE` default) is [`UsersError::NotEmulated`], and
//! [`sandbox_reason`] sends such a RUN, and any RUN whose tools the image's PATH does not
//! resolve to the emulated ones, to the sandbox. Left out: SELinux.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::material::StepOutput;
use crate::rootfs::{FsNode, FsView, NodeKind, Overlay, ViewError};
use crate::steps::etc_files::{self, GroupEntry, PasswdEntry};
use crate::steps::run::{
    AddGroupArgs, AddUserArgs, BUSYBOX_LAST_ID, DelGroupArgs, GroupAddArgs, NativeCommand,
    UserAddArgs, UserModArgs,
};

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

/// Applies one users command to `view` (see the module docs); [`NativeCommand::Noop`] gives an
/// empty Diff, any other command [`UsersError::NotUsers`]. A users command consumes nothing
/// from outside the image, so its output has no materials.
pub fn apply(
    command: &NativeCommand,
    view: &dyn FsView,
    options: &UsersOptions,
) -> Result<StepOutput, UsersError> {
    let mut ctx = Ctx {
        view,
        options,
        diff: Diff::new(),
        written: BTreeMap::new(),
        kept_mode_bits: match command {
            NativeCommand::GroupAdd(_)
            | NativeCommand::UserAdd(_)
            | NativeCommand::UserMod(_)
            | NativeCommand::GroupDel { .. } => SHADOW_KEPT_MODE_BITS,
            _ => BUSYBOX_KEPT_MODE_BITS,
        },
    };
    match command {
        NativeCommand::AddGroup(args) => ctx.addgroup(args)?,
        NativeCommand::AddUser(args) => ctx.adduser(args)?,
        NativeCommand::GroupAdd(args) => ctx.groupadd(args)?,
        NativeCommand::UserAdd(args) => ctx.useradd(args)?,
        NativeCommand::UserMod(args) => ctx.usermod(args)?,
        NativeCommand::DelUser { user } => ctx.deluser(user)?,
        NativeCommand::GroupDel { group } => ctx.groupdel(group)?,
        NativeCommand::DelGroup(args) => ctx.delgroup(args, false)?,
        NativeCommand::Noop { .. } => {}
        other => return Err(UsersError::NotUsers(format!("{other:?}"))),
    }
    Ok(StepOutput::of_diff(ctx.diff))
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
    let users_commands: Vec<NativeCommand> = commands
        .iter()
        .filter(|c| {
            matches!(
                c,
                NativeCommand::AddGroup(_)
                    | NativeCommand::AddUser(_)
                    | NativeCommand::GroupAdd(_)
                    | NativeCommand::UserAdd(_)
                    | NativeCommand::UserMod(_)
                    | NativeCommand::DelUser { .. }
                    | NativeCommand::DelGroup(_)
                    | NativeCommand::GroupDel { .. }
            )
        })
        .cloned()
        .collect();
    for command in &users_commands {
        let (program, wanted_busybox) = match command {
            NativeCommand::AddGroup(_) => ("addgroup", true),
            NativeCommand::AddUser(_) => ("adduser", true),
            NativeCommand::DelUser { .. } => ("deluser", true),
            NativeCommand::DelGroup(_) => ("delgroup", true),
            NativeCommand::GroupAdd(_) => ("groupadd", false),
            NativeCommand::UserMod(_) => ("usermod", false),
            NativeCommand::GroupDel { .. } => ("groupdel", false),
            _ => ("useradd", false),
        };
        if let Some(reason) = program_reason(view, path_env, program, wanted_busybox)? {
            return Ok(Some(reason));
        }
        if let NativeCommand::UserAdd(_) = command {
            let ctx = Ctx {
                view,
                options,
                diff: Diff::new(),
                written: BTreeMap::new(),
                kept_mode_bits: SHADOW_KEPT_MODE_BITS,
            };
            let defaults = ctx.useradd_defaults("useradd")?;
            if defaults.get("EXPIRE").is_some_and(|v| !v.is_empty()) {
                return Ok(Some(
                    "useradd with an EXPIRE default in /etc/default/useradd is not emulated"
                        .to_owned(),
                ));
            }
        }
    }
    match apply_all(&users_commands, view, options) {
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

/// A text file of /etc as it is now.
struct EtcFile {
    path: LayerPath,
    text: Vec<u8>,
    meta: Metadata,
}

struct Ctx<'v> {
    view: &'v dyn FsView,
    options: &'v UsersOptions,
    diff: Diff,
    /// Files already rewritten by this command: resolved path -> new text (the backup keeps
    /// the state before the command).
    written: BTreeMap<LayerPath, Vec<u8>>,
    /// The permission bits a rewritten file (and, for shadow's tools, its backup) keeps of the
    /// file it replaces: busybox's `update_passwd` keeps `0777`, shadow's `commonio` `0664`.
    kept_mode_bits: u32,
}

fn tool_err(tool: &'static str, message: impl Into<String>) -> UsersError {
    UsersError::Tool {
        tool,
        message: message.into(),
    }
}

/// `etc/NAME` (names are constants of this module, so normalization cannot fail).
fn etc_path(name: &str) -> LayerPath {
    LayerPath::new(&format!("etc/{name}")).unwrap_or_else(|_| LayerPath::root())
}

impl Ctx<'_> {
    fn read_err<'p>(
        tool: &'static str,
        path: &'p LayerPath,
    ) -> impl Fn(ViewError) -> UsersError + 'p {
        move |source| UsersError::Read {
            tool,
            path: path.absolute(),
            source,
        }
    }

    /// The current state of an /etc file, symlinks resolved; `None` when missing.
    fn load(&self, tool: &'static str, name: &str) -> Result<Option<EtcFile>, UsersError> {
        let path = etc_path(name);
        let err = Self::read_err(tool, &path);
        let Some((resolved, node)) = self.view.stat(&path, true).map_err(&err)? else {
            return Ok(None);
        };
        if !matches!(node.kind, NodeKind::File { .. }) {
            return Ok(None);
        }
        let text = match self.written.get(&resolved) {
            Some(text) => text.clone(),
            None => match etc_files::read_etc(self.view, &resolved).map_err(&err)? {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        Ok(Some(EtcFile {
            path: resolved,
            text,
            meta: node.meta,
        }))
    }

    fn passwd(&self, tool: &'static str) -> Result<Vec<PasswdEntry>, UsersError> {
        Ok(match self.load(tool, "passwd")? {
            Some(f) => etc_files::parse_passwd(&String::from_utf8_lossy(&f.text)),
            None => Vec::new(),
        })
    }

    fn groups(&self, tool: &'static str) -> Result<Vec<GroupEntry>, UsersError> {
        Ok(match self.load(tool, "group")? {
            Some(f) => etc_files::parse_group(&String::from_utf8_lossy(&f.text)),
            None => Vec::new(),
        })
    }

    /// Writes `text` as the new content of `file`, and its backup `file-` (the content before
    /// this command) the first time the file is written. busybox's backup is the old inode
    /// (hard-linked: every attribute kept); shadow's is a copy with the old owner, mtime and
    /// `mode & 0664`.
    fn write(&mut self, file: &EtcFile, text: Vec<u8>) {
        let mtime = self.options.source_date_epoch;
        let backup = LayerPath::new(&format!("{}-", file.path.as_str()));
        // shadow backs a file up once, as it opened it; busybox links the backup to the file
        // as it is at each rewrite (deluser rewrites /etc/group twice).
        let first_write = !self.written.contains_key(&file.path);
        if let (true, Ok(backup)) = (first_write || !self.is_shadow(), backup) {
            let mut meta = match self.diff.get(&file.path) {
                Some(rewritten) => rewritten.meta.clone(),
                None => file.meta.clone(),
            };
            if self.is_shadow() {
                meta.mode &= SHADOW_KEPT_MODE_BITS;
                meta.xattrs = BTreeMap::new();
            }
            self.diff.insert(
                backup,
                Entry {
                    kind: EntryKind::File(FileContent::Bytes(Arc::from(file.text.as_slice()))),
                    meta,
                },
            );
        }
        self.diff.insert(
            file.path.clone(),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_slice()))),
                meta: Metadata {
                    mode: file.meta.mode & self.kept_mode_bits,
                    uid: file.meta.uid,
                    gid: file.meta.gid,
                    mtime,
                    xattrs: BTreeMap::new(),
                },
            },
        );
        self.written.insert(file.path.clone(), text);
        if let Some(parent) = file.path.parent() {
            self.touch_dir(&parent);
        }
    }

    /// True for shadow's tools, false for busybox's.
    fn is_shadow(&self) -> bool {
        self.kept_mode_bits == SHADOW_KEPT_MODE_BITS
    }

    /// Records that the tool changed the entries of directory `dir` (a file renamed into it,
    /// a backup linked, a home created): the directory gets the build's time, so it is in the
    /// layer as it is in the real tool's (whose snapshot sees its mtime change).
    fn touch_dir(&mut self, dir: &LayerPath) {
        if dir.is_root() || self.diff.get(dir).is_some() {
            return;
        }
        if let Ok(Some(FsNode {
            kind: NodeKind::Dir,
            meta,
        })) = self.view.lstat_exact(dir)
        {
            self.diff.insert(
                dir.clone(),
                Entry {
                    kind: EntryKind::Dir,
                    meta: Metadata {
                        mtime: self.options.source_date_epoch,
                        ..meta
                    },
                },
            );
        }
    }

    /// Appends `line` to /etc/NAME (every existing line rewritten with a trailing newline, as
    /// `update_passwd` does). `required` files that are missing are an error.
    fn append(
        &mut self,
        tool: &'static str,
        name: &str,
        line: &str,
        required: bool,
    ) -> Result<(), UsersError> {
        let Some(file) = self.load(tool, name)? else {
            if required {
                return Err(tool_err(
                    tool,
                    format!("can't open '/etc/{name}': No such file or directory"),
                ));
            }
            return Ok(());
        };
        let mut text = normalized_lines(&file.text);
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
        self.write(&file, text);
        Ok(())
    }

    /// Adds `member` to `group`'s member list in /etc/NAME (`update_passwd` with a member).
    fn add_member(
        &mut self,
        tool: &'static str,
        name: &str,
        group: &str,
        member: &str,
    ) -> Result<(), UsersError> {
        let Some(file) = self.load(tool, name)? else {
            return Ok(());
        };
        let prefix = format!("{group}:");
        let mut out = Vec::with_capacity(file.text.len() + member.len() + 2);
        let mut changed = false;
        for line in lines(&file.text) {
            out.extend_from_slice(line);
            if line.starts_with(prefix.as_bytes()) {
                if line.last() != Some(&b':') {
                    out.push(b',');
                }
                out.extend_from_slice(member.as_bytes());
                changed = true;
            }
            out.push(b'\n');
        }
        if changed {
            self.write(&file, out);
        }
        Ok(())
    }

    /// The shadow "last change" field: the SOURCE_DATE_EPOCH day where the tools write
    /// today's, empty when that day is 0 (as shadow's `useradd` writes it with
    /// SOURCE_DATE_EPOCH=0: "better disable aging than requiring a password change"), never
    /// `0`, which means "must change the password at next login".
    fn last_change(&self) -> String {
        last_change_field(self.options.source_date_epoch)
    }

    // ---- busybox ----

    fn addgroup(&mut self, args: &AddGroupArgs) -> Result<(), UsersError> {
        const TOOL: &str = "addgroup";
        let groups = self.groups(TOOL)?;
        if let Some(member) = &args.member {
            if !self.passwd(TOOL)?.iter().any(|u| &u.name == member) {
                return Err(tool_err(TOOL, format!("unknown user {member}")));
            }
            let Some(group) = groups.iter().find(|g| g.name == args.group) else {
                return Err(tool_err(TOOL, format!("unknown group {}", args.group)));
            };
            if group.members.contains(member) {
                return Ok(());
            }
            self.add_member(TOOL, "group", &args.group, member)?;
            return self.add_member(TOOL, "gshadow", &args.group, member);
        }
        check_name(TOOL, &args.group)?;
        if groups.iter().any(|g| g.name == args.group) {
            return Err(tool_err(TOOL, format!("group '{}' in use", args.group)));
        }
        let gid = match args.gid {
            Some(gid) => {
                if groups.iter().any(|g| g.gid == gid) {
                    return Err(tool_err(TOOL, format!("gid '{gid}' in use")));
                }
                gid
            }
            None => {
                let (first, max) = if args.system {
                    (BB_FIRST_SYSTEM_ID, BB_LAST_SYSTEM_ID)
                } else {
                    (BB_LAST_SYSTEM_ID + 1, BUSYBOX_LAST_ID)
                };
                first_free(first, max, |id| groups.iter().any(|g| g.gid == id))
                    .ok_or_else(|| tool_err(TOOL, "no gids left"))?
            }
        };
        self.bb_new_group(&args.group, gid)
    }

    fn bb_new_group(&mut self, name: &str, gid: u32) -> Result<(), UsersError> {
        self.append("addgroup", "group", &format!("{name}:x:{gid}:"), true)?;
        self.append("addgroup", "gshadow", &format!("{name}:!::"), false)
    }

    fn adduser(&mut self, args: &AddUserArgs) -> Result<(), UsersError> {
        const TOOL: &str = "adduser";
        check_name(TOOL, &args.user)?;
        let users = self.passwd(TOOL)?;
        let groups = self.groups(TOOL)?;
        let home = args
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", args.user));
        let gecos = args.gecos.clone().unwrap_or_else(|| "Linux User,,,".into());
        let mut use_group = args.group.clone();
        let mut shell = match (&args.shell, &self.options.shell_env) {
            (Some(shell), _) => shell.clone(),
            (None, Some(env)) if !env.is_empty() => env.clone(),
            _ => users
                .iter()
                .find(|u| u.uid == 0)
                .map(|u| u.shell.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into()),
        };
        if args.system {
            use_group.get_or_insert_with(|| "nogroup".into());
            if args.shell.is_none() {
                shell = "/bin/false".into();
            }
        }
        // xgroup2gid: a name, or a number.
        let gid = match &use_group {
            Some(group) => Some(match groups.iter().find(|g| &g.name == group) {
                Some(g) => g.gid,
                None => group
                    .parse::<u32>()
                    .map_err(|_| tool_err(TOOL, format!("unknown group {group}")))?,
            }),
            None => None,
        };
        if users.iter().any(|u| u.name == args.user) {
            return Err(tool_err(TOOL, format!("user '{}' in use", args.user)));
        }
        let (first, max) = if args.system {
            (BB_FIRST_SYSTEM_ID, BB_LAST_SYSTEM_ID)
        } else {
            (BB_LAST_SYSTEM_ID + 1, BUSYBOX_LAST_ID)
        };
        let taken = |id: u32| {
            users.iter().any(|u| u.uid == id)
                || (gid.is_none() && groups.iter().any(|g| g.gid == id))
        };
        let uid = match args.uid {
            Some(uid) if taken(uid) => return Err(tool_err(TOOL, format!("uid '{uid}' in use"))),
            Some(uid) => uid,
            None => first_free(first, max, taken).ok_or_else(|| tool_err(TOOL, "no uids left"))?,
        };
        let gid = match gid {
            Some(gid) => gid,
            None => {
                if groups.iter().any(|g| g.name == args.user) {
                    return Err(tool_err(TOOL, format!("group '{}' in use", args.user)));
                }
                uid
            }
        };
        let name = &args.user;
        self.append(
            TOOL,
            "passwd",
            &format!("{name}:x:{uid}:{gid}:{gecos}:{home}:{shell}"),
            true,
        )?;
        let last_change = self.last_change();
        self.append(
            TOOL,
            "shadow",
            &format!("{name}:!:{last_change}:0:99999:7:::"),
            false,
        )?;
        // busybox runs `addgroup` and ignores its failure.
        match &use_group {
            Some(group) => {
                let known = groups.iter().find(|g| &g.name == group);
                if let Some(g) = known {
                    if !g.members.contains(name) {
                        self.add_member("addgroup", "group", group, name)?;
                        self.add_member("addgroup", "gshadow", group, name)?;
                    }
                }
            }
            None => self.bb_new_group(name, gid)?,
        }
        if !args.no_home {
            let skel = args.skel.clone().unwrap_or_else(|| "/etc/skel".into());
            self.make_home(&home, uid, gid, 0o2755, Some(&skel), true)?;
        }
        Ok(())
    }

    /// Creates the home (mode `mode`, owned uid:gid) with `skel` copied in, or — when
    /// `fix_existing` — chowns and chmods an existing one.
    fn make_home(
        &mut self,
        home: &str,
        uid: u32,
        gid: u32,
        mode: u32,
        skel: Option<&str>,
        fix_existing: bool,
    ) -> Result<(), UsersError> {
        let tool = "adduser";
        let Ok(path) = LayerPath::new_clamped(home) else {
            return Ok(());
        };
        let err = Self::read_err(tool, &path);
        let resolved = match self.view.resolve(&path, true) {
            Ok(resolved) => resolved,
            Err(ViewError::NotADirectory(_)) => return Ok(()),
            Err(other) => return Err(err(other)),
        };
        if resolved.is_root() {
            return Ok(());
        }
        let meta = Metadata {
            mode,
            uid,
            gid,
            mtime: self.options.source_date_epoch,
            xattrs: BTreeMap::new(),
        };
        if let Some(node) = self.view.lstat_exact(&resolved).map_err(&err)? {
            if fix_existing && node.kind == NodeKind::Dir {
                self.diff.insert(
                    resolved,
                    Entry {
                        kind: EntryKind::Dir,
                        meta,
                    },
                );
            }
            return Ok(());
        }
        let parent_is_dir = resolved
            .parent()
            .map(|parent| {
                self.view.lstat_exact(&parent).map(|n| {
                    matches!(
                        n,
                        Some(FsNode {
                            kind: NodeKind::Dir,
                            ..
                        })
                    )
                })
            })
            .transpose()
            .map_err(&err)?
            .unwrap_or(false);
        if !parent_is_dir {
            return Ok(());
        }
        if let Some(parent) = resolved.parent() {
            self.touch_dir(&parent);
        }
        self.diff.insert(
            resolved.clone(),
            Entry {
                kind: EntryKind::Dir,
                meta,
            },
        );
        if let Some(skel) = skel {
            let Ok(skel) = LayerPath::new_clamped(skel) else {
                return Ok(());
            };
            let skel = match self.view.stat(&skel, true).map_err(&err)? {
                Some((resolved_skel, node)) if node.kind == NodeKind::Dir => resolved_skel,
                _ => return Ok(()),
            };
            self.copy_tree(&skel, &resolved, uid, gid)?;
        }
        Ok(())
    }

    /// Copies the tree below `from` into `to`, every entry owned uid:gid.
    fn copy_tree(
        &mut self,
        from: &LayerPath,
        to: &LayerPath,
        uid: u32,
        gid: u32,
    ) -> Result<(), UsersError> {
        let err = Self::read_err("adduser", from);
        for name in self.view.read_dir(from).map_err(&err)? {
            let (Ok(src), Ok(dst)) = (from.join(&name), to.join(&name)) else {
                continue;
            };
            let Some(node) = self.view.lstat_exact(&src).map_err(&err)? else {
                continue;
            };
            // shadow's copy_tree keeps the skeleton's times; busybox's copy_file does not.
            let mtime = if self.is_shadow() {
                node.meta.mtime
            } else {
                self.options.source_date_epoch
            };
            let meta = |mode: u32| Metadata {
                mode,
                uid,
                gid,
                mtime,
                xattrs: BTreeMap::new(),
            };
            let entry = match node.kind {
                NodeKind::Dir => Entry {
                    kind: EntryKind::Dir,
                    meta: meta(node.meta.mode & 0o7777),
                },
                NodeKind::File { .. } => Entry {
                    kind: EntryKind::File(self.view.content(&src).map_err(&err)?),
                    meta: meta(node.meta.mode & 0o777),
                },
                // busybox chowns the copied tree following symlinks, so a link stays its
                // creator's (root's); shadow's copy_tree lchowns it to the user.
                NodeKind::Symlink(target) if !self.is_shadow() => Entry {
                    kind: EntryKind::Symlink(target),
                    meta: Metadata {
                        uid: 0,
                        gid: 0,
                        ..meta(0o777)
                    },
                },
                NodeKind::Symlink(target) => Entry {
                    kind: EntryKind::Symlink(target),
                    meta: meta(0o777),
                },
                _ => continue,
            };
            let is_dir = matches!(entry.kind, EntryKind::Dir);
            self.diff.insert(dst.clone(), entry);
            if is_dir {
                self.copy_tree(&src, &dst, uid, gid)?;
            }
        }
        Ok(())
    }

    // ---- shadow ----

    fn login_defs(&self, tool: &'static str) -> Result<BTreeMap<String, String>, UsersError> {
        let path = etc_path("login.defs");
        let text = etc_files::read_etc(self.view, &path)
            .map_err(Self::read_err(tool, &path))?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                Some((k.to_owned(), v.trim().to_owned()))
            })
            .collect())
    }

    fn useradd_defaults(&self, tool: &'static str) -> Result<BTreeMap<String, String>, UsersError> {
        let path = etc_path("default/useradd");
        let text = etc_files::read_etc(self.view, &path)
            .map_err(Self::read_err(tool, &path))?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect())
    }

    fn groupadd(&mut self, args: &GroupAddArgs) -> Result<(), UsersError> {
        const TOOL: &str = "groupadd";
        check_name(TOOL, &args.group)?;
        let groups = self.groups(TOOL)?;
        if groups.iter().any(|g| g.name == args.group) {
            if args.force {
                return Ok(());
            }
            return Err(tool_err(
                TOOL,
                format!("group '{}' already exists", args.group),
            ));
        }
        let defs = self.login_defs(TOOL)?;
        let taken = |id: u32| groups.iter().any(|g| g.gid == id);
        let gid = match args.gid {
            Some(gid) if !taken(gid) => gid,
            Some(gid) if !args.force => {
                return Err(tool_err(TOOL, format!("GID '{gid}' already exists")));
            }
            _ => shadow_new_id(&defs, "GID", args.system, None, taken)
                .ok_or_else(|| tool_err(TOOL, "Can't get unique GID (no more available GIDs)"))?,
        };
        self.append(TOOL, "group", &format!("{}:x:{gid}:", args.group), true)?;
        self.append(TOOL, "gshadow", &format!("{}:!::", args.group), false)
    }

    fn useradd(&mut self, args: &UserAddArgs) -> Result<(), UsersError> {
        const TOOL: &str = "useradd";
        check_name(TOOL, &args.user)?;
        let users = self.passwd(TOOL)?;
        let groups = self.groups(TOOL)?;
        let defs = self.login_defs(TOOL)?;
        let defaults = self.useradd_defaults(TOOL)?;
        let name = &args.user;
        if users.iter().any(|u| &u.name == name) {
            return Err(tool_err(TOOL, format!("user '{name}' already exists")));
        }
        let find_group = |spec: &str| -> Option<&GroupEntry> {
            groups.iter().find(|g| g.name == spec).or_else(|| {
                spec.parse::<u32>()
                    .ok()
                    .and_then(|id| groups.iter().find(|g| g.gid == id))
            })
        };
        for extra in &args.groups {
            if find_group(extra).is_none() {
                return Err(tool_err(TOOL, format!("group '{extra}' does not exist")));
            }
        }
        let yes = |key: &str, default: bool| {
            defs.get(key)
                .map(|v| v.eq_ignore_ascii_case("yes"))
                .unwrap_or(default)
        };
        let user_group =
            args.group.is_none() && args.user_group.unwrap_or(yes("USERGROUPS_ENAB", true));
        if user_group && groups.iter().any(|g| &g.name == name) {
            return Err(tool_err(
                TOOL,
                format!(
                    "group {name} exists - if you want to add this user to that group, use -g."
                ),
            ));
        }
        let uid_taken = |id: u32| users.iter().any(|u| u.uid == id);
        let uid = match args.uid {
            Some(uid) if uid_taken(uid) => {
                return Err(tool_err(TOOL, format!("UID {uid} is not unique")));
            }
            Some(uid) => uid,
            None => shadow_new_id(&defs, "UID", args.system, None, uid_taken)
                .ok_or_else(|| tool_err(TOOL, "Can't get unique UID (no more available UIDs)"))?,
        };
        let gid = match (&args.group, user_group) {
            (Some(spec), _) => match find_group(spec) {
                Some(g) => g.gid,
                None => return Err(tool_err(TOOL, format!("group '{spec}' does not exist"))),
            },
            (None, true) => {
                let gid_taken = |id: u32| groups.iter().any(|g| g.gid == id);
                shadow_new_id(&defs, "GID", args.system, Some(uid), gid_taken).ok_or_else(|| {
                    tool_err(TOOL, "Can't get unique GID (no more available GIDs)")
                })?
            }
            (None, false) => {
                let spec = defaults.get("GROUP").map(String::as_str).unwrap_or("100");
                find_group(spec).map(|g| g.gid).unwrap_or(100)
            }
        };
        let home_base = defaults.get("HOME").map(String::as_str).unwrap_or("/home");
        let home = args
            .home
            .clone()
            .unwrap_or_else(|| format!("{}/{name}", home_base.trim_end_matches('/')));
        let shell = args
            .shell
            .clone()
            .or_else(|| defaults.get("SHELL").cloned())
            .unwrap_or_else(|| "/bin/sh".into());
        let comment = args.comment.clone().unwrap_or_default();
        // Without /etc/shadow (or /etc/gshadow) the locked password goes into passwd (group).
        let password = if self.load(TOOL, "shadow")?.is_some() {
            "x"
        } else {
            "!"
        };
        let group_password = if self.load(TOOL, "gshadow")?.is_some() {
            "x"
        } else {
            "!"
        };
        self.append(
            TOOL,
            "passwd",
            &format!("{name}:{password}:{uid}:{gid}:{comment}:{home}:{shell}"),
            true,
        )?;
        let last_change = self.last_change();
        // getdef_num(KEY, -1): a missing or malformed value is -1, written as an empty field;
        // system accounts get no aging at all.
        let age = |key: &str| -> String {
            if args.system {
                return String::new();
            }
            match defs.get(key).and_then(|v| parse_c_long(v)) {
                Some(n) if n >= 0 => n.to_string(),
                _ => String::new(),
            }
        };
        let inactive = match defaults.get("INACTIVE").and_then(|v| parse_c_long(v)) {
            Some(n) if n >= 0 && !args.system => n.to_string(),
            _ => String::new(),
        };
        self.append(
            TOOL,
            "shadow",
            &format!(
                "{name}:!:{last_change}:{}:{}:{}:{inactive}::",
                age("PASS_MIN_DAYS"),
                age("PASS_MAX_DAYS"),
                age("PASS_WARN_AGE"),
            ),
            false,
        )?;
        if user_group {
            self.append(
                TOOL,
                "group",
                &format!("{name}:{group_password}:{gid}:"),
                true,
            )?;
            self.append(TOOL, "gshadow", &format!("{name}:!::"), false)?;
        }
        for extra in &args.groups {
            if let Some(g) = find_group(extra) {
                if !g.members.contains(name) {
                    let group = g.name.clone();
                    self.add_member(TOOL, "group", &group, name)?;
                    self.add_member(TOOL, "gshadow", &group, name)?;
                }
            }
        }
        let create = args.create_home.unwrap_or(yes("CREATE_HOME", false));
        if create {
            let mode = match defs.get("HOME_MODE") {
                Some(m) => u32::from_str_radix(m, 8).unwrap_or(0o755),
                None => {
                    let umask = defs
                        .get("UMASK")
                        .and_then(|m| u32::from_str_radix(m, 8).ok())
                        .unwrap_or(0o022);
                    0o777 & !umask
                }
            };
            let skel = args
                .skel
                .as_deref()
                .or_else(|| defaults.get("SKEL").map(String::as_str))
                .unwrap_or("/etc/skel");
            self.make_home(&home, uid, gid, mode, Some(skel), false)?;
        }
        // Subordinate ids: only when the file exists, not for system accounts, and not for an
        // explicit uid outside UID_MIN..=UID_MAX.
        let uid_min = defs
            .get("UID_MIN")
            .and_then(|v| parse_c_long(v))
            .unwrap_or(1000);
        let uid_max = defs
            .get("UID_MAX")
            .and_then(|v| parse_c_long(v))
            .unwrap_or(60000);
        let explicit_in_range = args
            .uid
            .is_none_or(|id| (uid_min..=uid_max).contains(&i64::from(id)));
        if !args.system && explicit_in_range {
            self.add_subordinate_range("subuid", "SUB_UID", &defs, name)?;
            self.add_subordinate_range("subgid", "SUB_GID", &defs, name)?;
        }
        if !args.no_log_init {
            self.check_log_untouched(&defs, uid)?;
        }
        Ok(())
    }

    /// shadow's `find_new_sub_uids` and `sub_uid_add`: the lowest free range of
    /// `SUB_*_COUNT` ids in `SUB_*_MIN..=SUB_*_MAX` (every existing range taken, whoever owns
    /// it), appended as `NAME:START:COUNT` after the existing entries, which the allocation
    /// sorts by range (lines that are not ranges after them).
    fn add_subordinate_range(
        &mut self,
        file: &str,
        prefix: &str,
        defs: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<(), UsersError> {
        const TOOL: &str = "useradd";
        let get = |key: &str, default: u64| {
            defs.get(&format!("{prefix}_{key}"))
                .and_then(|v| parse_c_long(v))
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(default)
        };
        let count = get("COUNT", 65536);
        if count == 0 {
            return Ok(());
        }
        let Some(current) = self.load(TOOL, file)? else {
            return Ok(());
        };
        let (min, max) = (get("MIN", 100_000), get("MAX", 600_100_000));
        if min > max || count >= max || min + count - 1 > max {
            return Err(tool_err(
                TOOL,
                format!(
                    "Invalid configuration: {prefix}_MIN ({min}), {prefix}_MAX ({max}), {prefix}_COUNT ({count})"
                ),
            ));
        }
        let mut ranges: Vec<(u64, u64, String, Vec<u8>)> = Vec::new(); // start, count, owner, line
        let mut unparsed: Vec<Vec<u8>> = Vec::new();
        for line in lines(&current.text) {
            let text = String::from_utf8_lossy(line);
            let fields: Vec<&str> = text.split(':').collect();
            match fields.as_slice() {
                [owner, start, count] if !owner.is_empty() => {
                    match (start.parse::<u64>(), count.parse::<u64>()) {
                        (Ok(start), Ok(count)) => {
                            ranges.push((start, count, (*owner).to_owned(), line.to_vec()))
                        }
                        _ => unparsed.push(line.to_vec()),
                    }
                }
                _ => unparsed.push(line.to_vec()),
            }
        }
        ranges.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        let mut low = min;
        let mut start = None;
        for (first, length, _, _) in &ranges {
            let high = (*first).min(max + 1);
            if high > low && high - low >= count {
                start = Some(low);
                break;
            }
            let last = first + length.saturating_sub(1);
            if low < last + 1 {
                low = last + 1;
            }
            if low > max {
                break;
            }
        }
        if start.is_none() && low <= max && max - low + 1 >= count {
            start = Some(low);
        }
        let Some(start) = start else {
            let kind = if file == "subuid" { "UID" } else { "GID" };
            return Err(tool_err(
                TOOL,
                format!("Can't get unique subordinate {kind} range"),
            ));
        };
        // The sorted entries, the lines that are not ranges, then the new range appended.
        let added = format!("{name}:{start}:{count}").into_bytes();
        let mut out = Vec::new();
        for line in ranges
            .iter()
            .map(|r| &r.3)
            .chain(unparsed.iter())
            .chain([&added])
        {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        self.write(&current, out);
        Ok(())
    }

    /// Without `--no-log-init`, useradd zeroes the new uid's record in /var/log/faillog and
    /// /var/log/lastlog when the file already reaches it (it never grows them). Images ship
    /// those files empty; a record to zero (whose size depends on the C library's
    /// architecture) is not emulated and sends the RUN to the sandbox.
    fn check_log_untouched(
        &self,
        defs: &BTreeMap<String, String>,
        uid: u32,
    ) -> Result<(), UsersError> {
        const TOOL: &str = "useradd";
        // The smallest record any architecture's C library has: a larger file sends the RUN
        // to the sandbox whatever the record size is there.
        const FAILLOG_RECORD: u64 = 16;
        const LASTLOG_RECORD_MIN: u64 = 292;
        let lastlog_max = defs
            .get("LASTLOG_UID_MAX")
            .and_then(|v| parse_c_long(v))
            .unwrap_or(i64::from(u32::MAX));
        for (file, record, applies) in [
            ("var/log/faillog", FAILLOG_RECORD, true),
            (
                "var/log/lastlog",
                LASTLOG_RECORD_MIN,
                i64::from(uid) <= lastlog_max,
            ),
        ] {
            let path = LayerPath::new(file).unwrap_or_else(|_| LayerPath::root());
            let node = self
                .view
                .stat(&path, true)
                .map_err(Self::read_err(TOOL, &path))?;
            if let Some((
                _,
                FsNode {
                    kind: NodeKind::File { size, .. },
                    ..
                },
            )) = node
                && applies
                && size > u64::from(uid) * record
            {
                return Err(UsersError::NotEmulated(format!(
                    "useradd would reset uid {uid}'s record in /{file} ({size} bytes), which is not emulated (add --no-log-init to skip it)"
                )));
            }
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// busybox's `update_passwd` on /etc/NAME: every line passed through `edit` (`None` drops
    /// it), and the file rewritten, with its backup, even when nothing changed; a missing
    /// passwd or group file is an error, a missing shadow file is not.
    fn bb_rewrite(
        &mut self,
        tool: &'static str,
        name: &str,
        edit: impl Fn(&str) -> Option<String>,
    ) -> Result<(), UsersError> {
        let Some(current) = self.load(tool, name)? else {
            if name.contains("shadow") {
                return Ok(());
            }
            return Err(tool_err(
                tool,
                format!("can't open '/etc/{name}': No such file or directory"),
            ));
        };
        let mut out = Vec::with_capacity(current.text.len());
        for line in lines(&current.text) {
            let text = String::from_utf8_lossy(line);
            if let Some(kept) = edit(&text) {
                out.extend_from_slice(kept.as_bytes());
                out.push(b'\n');
            }
        }
        self.write(&current, out);
        Ok(())
    }

    /// busybox's `deluser USER`: the user's lines leave passwd and shadow, the user leaves
    /// every group's member list, then the same-named group goes if there is one
    /// (`delgroup USER`).
    fn deluser(&mut self, user: &str) -> Result<(), UsersError> {
        const TOOL: &str = "deluser";
        if !self.passwd(TOOL)?.iter().any(|u| u.name == user) {
            return Err(tool_err(TOOL, format!("unknown user {user}")));
        }
        let prefix = format!("{user}:");
        for file in ["passwd", "shadow"] {
            self.bb_rewrite(TOOL, file, |line| {
                (!line.starts_with(&prefix)).then(|| line.to_owned())
            })?;
        }
        self.bb_rewrite(TOOL, "group", |line| {
            Some(match line.rfind(':') {
                Some(at) => format!("{}{}", &line[..=at], without_member(&line[at + 1..], user)),
                None => line.to_owned(),
            })
        })?;
        if self.groups(TOOL)?.iter().any(|g| g.name == user) {
            self.delgroup(
                &DelGroupArgs {
                    group: user.to_owned(),
                    member: None,
                },
                true,
            )?;
        }
        Ok(())
    }

    /// busybox's `delgroup GROUP` (refused while a user has it as primary group) and
    /// `delgroup USER GROUP` (USER leaves GROUP's member list in group and gshadow).
    fn delgroup(&mut self, args: &DelGroupArgs, after_deluser: bool) -> Result<(), UsersError> {
        let tool = if after_deluser { "deluser" } else { "delgroup" };
        let group = &args.group;
        let Some(entry) = self.groups(tool)?.into_iter().find(|g| &g.name == group) else {
            return Err(tool_err(tool, format!("unknown group {group}")));
        };
        let prefix = format!("{group}:");
        match &args.member {
            None => {
                if let Some(user) = self.passwd(tool)?.iter().find(|u| u.gid == entry.gid) {
                    return Err(tool_err(
                        tool,
                        format!(
                            "'{}' still has '{group}' as their primary group!",
                            user.name
                        ),
                    ));
                }
                for file in ["group", "gshadow"] {
                    self.bb_rewrite(tool, file, |line| {
                        (!line.starts_with(&prefix)).then(|| line.to_owned())
                    })?;
                }
            }
            Some(member) => {
                for file in ["group", "gshadow"] {
                    self.bb_rewrite(tool, file, |line| {
                        Some(match (line.starts_with(&prefix), line.rfind(':')) {
                            (true, Some(at)) => format!(
                                "{}{}",
                                &line[..=at],
                                without_member(&line[at + 1..], member)
                            ),
                            _ => line.to_owned(),
                        })
                    })?;
                }
            }
        }
        Ok(())
    }

    /// shadow's `groupdel GROUP`: refused while a user has it as primary group; its first
    /// line leaves /etc/group and, when it has one there, /etc/gshadow.
    fn groupdel(&mut self, group: &str) -> Result<(), UsersError> {
        const TOOL: &str = "groupdel";
        let Some(entry) = self.groups(TOOL)?.into_iter().find(|g| g.name == group) else {
            return Err(tool_err(TOOL, format!("group '{group}' does not exist")));
        };
        if let Some(user) = self.passwd(TOOL)?.iter().find(|u| u.gid == entry.gid) {
            return Err(tool_err(
                TOOL,
                format!("cannot remove the primary group of user '{}'", user.name),
            ));
        }
        let prefix = format!("{group}:");
        for file in ["group", "gshadow"] {
            let Some(current) = self.load(TOOL, file)? else {
                continue;
            };
            let mut out = Vec::with_capacity(current.text.len());
            let mut removed = false;
            for line in lines(&current.text) {
                if !removed && line.starts_with(prefix.as_bytes()) {
                    removed = true;
                    continue;
                }
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            if removed {
                self.write(&current, out);
            }
        }
        Ok(())
    }

    /// shadow's `usermod [-a] -G GROUPS USER`: in /etc/group and /etc/gshadow, the user is
    /// appended to the member list of each listed group it is not in and, without `-a`,
    /// removed from every other group; only files with a changed line are rewritten.
    fn usermod(&mut self, args: &UserModArgs) -> Result<(), UsersError> {
        const TOOL: &str = "usermod";
        let name = &args.user;
        if !self.passwd(TOOL)?.iter().any(|u| &u.name == name) {
            return Err(tool_err(TOOL, format!("user '{name}' does not exist")));
        }
        let groups = self.groups(TOOL)?;
        let mut wanted = Vec::new();
        for spec in &args.groups {
            let found = groups.iter().find(|g| &g.name == spec).or_else(|| {
                spec.parse::<u32>()
                    .ok()
                    .and_then(|id| groups.iter().find(|g| g.gid == id))
            });
            match found {
                Some(group) => wanted.push(group.name.clone()),
                None => return Err(tool_err(TOOL, format!("group '{spec}' does not exist"))),
            }
        }
        // Both files are NAME:PASSWORD:(GID|ADMINS):MEMBERS.
        for file in ["group", "gshadow"] {
            let Some(current) = self.load(TOOL, file)? else {
                continue;
            };
            let mut out = Vec::with_capacity(current.text.len() + 64);
            let mut changed = false;
            for line in lines(&current.text) {
                let text = String::from_utf8_lossy(line);
                let fields: Vec<&str> = text.splitn(4, ':').collect();
                let new_members = match fields.as_slice() {
                    [group, _, _, members] => {
                        let mut members: Vec<&str> =
                            members.split(',').filter(|m| !m.is_empty()).collect();
                        let was_member = members.contains(&name.as_str());
                        let is_member =
                            (was_member && args.append) || wanted.iter().any(|w| w == group);
                        match (was_member, is_member) {
                            (true, false) => {
                                members.retain(|m| m != name);
                                Some(members)
                            }
                            (false, true) => {
                                members.push(name);
                                Some(members)
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match new_members {
                    Some(members) => {
                        changed = true;
                        let line = format!("{}:{}", fields[..3].join(":"), members.join(","));
                        out.extend_from_slice(line.as_bytes());
                    }
                    None => out.extend_from_slice(line),
                }
                out.push(b'\n');
            }
            if changed {
                self.write(&current, out);
            }
        }
        Ok(())
    }
}

/// shadow's id allocation: `-r` takes the highest free id counting down from `SYS_*_MAX`;
/// otherwise one above the highest used id in `*_MIN..=*_MAX` (or the first free one when that
/// overflows). `prefer` (a user group's gid = uid) wins when free and within the range.
fn shadow_new_id(
    defs: &BTreeMap<String, String>,
    kind: &str,
    system: bool,
    prefer: Option<u32>,
    taken: impl Fn(u32) -> bool,
) -> Option<u32> {
    let get = |key: String, default: u32| {
        defs.get(&key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (min, max) = if system {
        (
            get(format!("SYS_{kind}_MIN"), 101),
            get(format!("SYS_{kind}_MAX"), 999),
        )
    } else {
        (
            get(format!("{kind}_MIN"), 1000),
            get(format!("{kind}_MAX"), 60000),
        )
    };
    if let Some(id) = prefer
        && (min..=max).contains(&id)
        && !taken(id)
    {
        return Some(id);
    }
    if min > max {
        return None;
    }
    if system {
        return (min..=max).rev().find(|&id| !taken(id));
    }
    let highest = (min..=max).rev().find(|&id| taken(id));
    match highest {
        Some(id) if id < max => Some(id + 1),
        Some(_) => (min..=max).find(|&id| !taken(id)),
        None => Some(min),
    }
}

/// A comma-separated member list without the elements equal to `member` (other elements,
/// empty ones included, kept in order), as busybox edits it.
fn without_member(list: &str, member: &str) -> String {
    list.split(',')
        .filter(|element| *element != member)
        .collect::<Vec<_>>()
        .join(",")
}

/// The shadow "last change" field for SOURCE_DATE_EPOCH `epoch` (see `Ctx::last_change`).
pub fn last_change_field(epoch: i64) -> String {
    match epoch.div_euclid(86_400) {
        day if day > 0 => day.to_string(),
        _ => String::new(),
    }
}

/// A login.defs number as `strtol(value, NULL, 0)` reads a whole value: decimal, `0x` hex or
/// `0` octal; `None` when malformed (getdef's callers then use their default).
fn parse_c_long(value: &str) -> Option<i64> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The first id in `first..=max` not `taken`.
fn first_free(first: u32, max: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    (first..=max).find(|&id| !taken(id))
}

/// busybox's `die_if_bad_username` (Alpine builds with `FEATURE_CHECK_NAMES`): letters, digits,
/// `_`, and `-`, `.` (not first), `$` (last only), at most 255 bytes. Also keeps names that
/// would break the files (`:`, newline) or the home path out, for shadow's tools too.
fn check_name(tool: &'static str, name: &str) -> Result<(), UsersError> {
    if name.is_empty() {
        return Err(tool_err(
            tool,
            "illegal character with code 0 at position 0",
        ));
    }
    let bytes = name.as_bytes();
    for (pos, &ch) in bytes.iter().enumerate() {
        let later_only = matches!(ch, b'-' | b'.') || (ch == b'$' && pos + 1 == bytes.len());
        if (pos > 0 && later_only) || ch == b'_' || ch.is_ascii_alphanumeric() {
            continue;
        }
        return Err(tool_err(
            tool,
            format!("illegal character with code {ch} at position {pos}"),
        ));
    }
    if bytes.len() >= 256 {
        return Err(tool_err(tool, "name is too long"));
    }
    Ok(())
}

/// Splits like `getline`: on `\n`, a last line without one counts, no empty tail.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = text.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

/// Every line with a trailing newline.
fn normalized_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    for line in lines(text) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests;
