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
//! Reproducibility: the shadow "last change" field is `SOURCE_DATE_EPOCH / 86400` (days since
//! the epoch), given by the caller in [`UsersOptions`], not today's date; every written entry's
//! mtime is that time too. Rewritten files keep the owner of the file they replace and its
//! permission bits (`mode & 0777`, as `update_passwd` does); xattrs are not carried over.
//!
//! shadow's `useradd`/`groupadd` follow login.defs (`UID_MIN`, `UID_MAX`, `SYS_UID_MIN`,
//! `SYS_UID_MAX`, the GID twins, `USERGROUPS_ENAB`, `CREATE_HOME`, `HOME_MODE`/`UMASK`, and
//! `PASS_MIN_DAYS`/`PASS_MAX_DAYS`/`PASS_WARN_AGE`) and /etc/default/useradd (`HOME`, `SHELL`,
//! `GROUP`), with Debian's defaults when absent. Left out: /etc/subuid and /etc/subgid
//! ranges, lastlog/faillog, SELinux.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use crate::rootfs::{FsNode, FsView, NodeKind, Overlay, ViewError};
use crate::steps::etc_files::{self, GroupEntry, PasswdEntry};
use crate::steps::run::{
    AddGroupArgs, AddUserArgs, BUSYBOX_LAST_ID, GroupAddArgs, NativeCommand, UserAddArgs,
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
    /// The command is not a users command.
    #[error("`{0}` is not a users command; apply it with its own step")]
    NotUsers(String),
}

const BB_FIRST_SYSTEM_ID: u32 = 100;
const BB_LAST_SYSTEM_ID: u32 = 999;

/// Applies one users command to `view` (see the module docs); [`NativeCommand::Noop`] gives an
/// empty Diff, any other command [`UsersError::NotUsers`].
pub fn apply(
    command: &NativeCommand,
    view: &dyn FsView,
    options: &UsersOptions,
) -> Result<Diff, UsersError> {
    let mut ctx = Ctx {
        view,
        options,
        diff: Diff::new(),
        written: BTreeMap::new(),
    };
    match command {
        NativeCommand::AddGroup(args) => ctx.addgroup(args)?,
        NativeCommand::AddUser(args) => ctx.adduser(args)?,
        NativeCommand::GroupAdd(args) => ctx.groupadd(args)?,
        NativeCommand::UserAdd(args) => ctx.useradd(args)?,
        NativeCommand::Noop { .. } => {}
        other => return Err(UsersError::NotUsers(format!("{other:?}"))),
    }
    Ok(ctx.diff)
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
        let diff = apply(command, &overlay, options)?;
        overlay.apply(diff);
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
    /// this command) the first time the file is written.
    fn write(&mut self, file: &EtcFile, text: Vec<u8>) {
        let mtime = self.options.source_date_epoch;
        let backup = LayerPath::new(&format!("{}-", file.path.as_str()));
        if let (false, Ok(backup)) = (self.written.contains_key(&file.path), backup) {
            self.diff.insert(
                backup,
                Entry {
                    kind: EntryKind::File(FileContent::Bytes(Arc::from(file.text.as_slice()))),
                    meta: file.meta.clone(),
                },
            );
        }
        self.diff.insert(
            file.path.clone(),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_slice()))),
                meta: Metadata {
                    mode: file.meta.mode & 0o777,
                    uid: file.meta.uid,
                    gid: file.meta.gid,
                    mtime,
                    xattrs: BTreeMap::new(),
                },
            },
        );
        self.written.insert(file.path.clone(), text);
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

    fn days(&self) -> i64 {
        self.options.source_date_epoch.div_euclid(86_400)
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
        let days = self.days();
        self.append(
            TOOL,
            "shadow",
            &format!("{name}:!:{days}:0:99999:7:::"),
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
            let meta = |mode: u32| Metadata {
                mode,
                uid,
                gid,
                mtime: self.options.source_date_epoch,
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
        self.append(
            TOOL,
            "passwd",
            &format!("{name}:x:{uid}:{gid}:{comment}:{home}:{shell}"),
            true,
        )?;
        let field =
            |key: &str, default: &str| defs.get(key).cloned().unwrap_or_else(|| default.to_owned());
        let days = self.days();
        self.append(
            TOOL,
            "shadow",
            &format!(
                "{name}:!:{days}:{}:{}:{}:::",
                field("PASS_MIN_DAYS", "0"),
                field("PASS_MAX_DAYS", "99999"),
                field("PASS_WARN_AGE", "7")
            ),
            false,
        )?;
        if user_group {
            self.append(TOOL, "group", &format!("{name}:x:{gid}:"), true)?;
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
            let skel = defaults
                .get("SKEL")
                .map(String::as_str)
                .unwrap_or("/etc/skel");
            self.make_home(&home, uid, gid, mode, Some(skel), false)?;
        }
        Ok(())
    }
}

/// shadow's id allocation: `-r` takes the highest free id counting down from `SYS_*_MAX`;
/// otherwise one above the highest used id in `*_MIN..=*_MAX` (or the first free one when that
/// overflows). `prefer` (a user group's gid = uid) wins when free and in range.
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
    if let Some(id) = prefer {
        if !taken(id) {
            return Some(id);
        }
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
