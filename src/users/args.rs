//! The command lines of the user and group tools kiln emulates: busybox's `addgroup`,
//! `adduser`, `deluser` and `delgroup`, shadow's `groupadd`, `useradd`, `usermod -G` and
//! `groupdel`, parsed as the tools parse them into a typed [`UsersCommand`].
//!
//! [`parse`] takes one expanded command; options are parsed with [`getopt`] against each tool's
//! table, ids are checked against the tool's range with its messages, and an option the tool
//! has but kiln does not model is refused by name.

use crate::shell::{Arg, Opt, ShellError, SimpleCommand, getopt, operand_count, opt, parse_id};

/// busybox's `CONFIG_LAST_ID` on Alpine: the largest uid or gid `adduser -u`/`addgroup -g` take.
pub const BUSYBOX_LAST_ID: u32 = 256_000;

/// One user or group command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsersCommand {
    /// busybox `addgroup`: create a group, or add a user to a group.
    AddGroup(AddGroupArgs),
    /// busybox `adduser` (creating a user; `adduser USER GROUP` becomes [`UsersCommand::AddGroup`]).
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
}

impl UsersCommand {
    /// The tool's name (`adduser`, `groupadd`).
    pub fn tool(&self) -> &'static str {
        match self {
            UsersCommand::AddGroup(_) => "addgroup",
            UsersCommand::AddUser(_) => "adduser",
            UsersCommand::DelUser { .. } => "deluser",
            UsersCommand::DelGroup(_) => "delgroup",
            UsersCommand::GroupAdd(_) => "groupadd",
            UsersCommand::UserAdd(_) => "useradd",
            UsersCommand::UserMod(_) => "usermod",
            UsersCommand::GroupDel { .. } => "groupdel",
        }
    }

    /// Whether the tool is busybox's (else shadow's).
    pub fn is_busybox(&self) -> bool {
        matches!(
            self,
            UsersCommand::AddGroup(_)
                | UsersCommand::AddUser(_)
                | UsersCommand::DelUser { .. }
                | UsersCommand::DelGroup(_)
        )
    }
}

/// Parses `command` when its program is a user or group tool: `None` for any other program,
/// an error for a tool kiln does not emulate (`userdel`, `chpasswd`, ...) or a command line the
/// tool would refuse or kiln does not model.
pub fn parse(command: &SimpleCommand) -> Option<Result<UsersCommand, ShellError>> {
    let text = command.text.as_str();
    let args = command.args();
    let base = command.base();
    Some(match base {
        "addgroup" => addgroup(text, args),
        "adduser" => adduser(text, args),
        "groupadd" => groupadd(text, args),
        "useradd" => useradd(text, args),
        // The other user and group tools run for real: chpasswd hashes with a random salt,
        // and the rest are not emulated.
        "usermod" => usermod(text, args),
        "deluser" => deluser(text, args),
        "delgroup" => delgroup(text, args),
        "groupdel" => groupdel(text, args),
        "userdel" | "groupmod" | "chpasswd" | "gpasswd" | "passwd" | "chage" | "chsh" | "chfn" => {
            Err(ShellError::NotUnderstood {
                command: text.to_owned(),
                reason: format!("`{base}` is not emulated"),
            })
        }
        _ => return None,
    })
}

fn deluser(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    let (_, operands) = getopt(text, "deluser", args, &[])?;
    operand_count(text, "deluser", &operands, 1..=1, "deluser USER")?;
    Ok(UsersCommand::DelUser {
        user: operands[0].clone(),
    })
}

fn delgroup(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    let (_, operands) = getopt(text, "delgroup", args, &[])?;
    operand_count(text, "delgroup", &operands, 1..=2, "delgroup [USER] GROUP")?;
    Ok(UsersCommand::DelGroup(match operands.as_slice() {
        [user, group] => DelGroupArgs {
            group: group.clone(),
            member: Some(user.clone()),
        },
        _ => DelGroupArgs {
            group: operands[0].clone(),
            member: None,
        },
    }))
}

fn groupdel(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    let (_, operands) = getopt(text, "groupdel", args, &[])?;
    operand_count(
        text,
        "groupdel",
        &operands,
        1..=1,
        "groupdel [options] GROUP",
    )?;
    Ok(UsersCommand::GroupDel {
        group: operands[0].clone(),
    })
}

/// Arguments of busybox `addgroup [-g GID] [-S] GROUP` or `addgroup USER GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddGroupArgs {
    /// The group to create, or to add `member` to.
    pub group: String,
    /// `-g GID`.
    pub gid: Option<u32>,
    /// `-S`: take the gid from the system range (100-999).
    pub system: bool,
    /// `addgroup USER GROUP`: the user to add to an existing group.
    pub member: Option<String>,
}

/// Arguments of busybox `adduser [OPTIONS] USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddUserArgs {
    /// The login name.
    pub user: String,
    /// `-h DIR`: home directory (default `/home/USER`).
    pub home: Option<String>,
    /// `-g GECOS`: the GECOS field (default `Linux User,,,`).
    pub gecos: Option<String>,
    /// `-s SHELL`: login shell (default root's shell; `/bin/false` with `-S`).
    pub shell: Option<String>,
    /// `-G GROUP`: primary group, which must exist (default: a new group named after the user;
    /// `nogroup` with `-S`).
    pub group: Option<String>,
    /// `-S`: system user (uid from 100-999; implies `-D`).
    pub system: bool,
    /// `-D`: no password (the account is locked: `!` in /etc/shadow).
    pub disabled_password: bool,
    /// `-H`: do not create the home directory.
    pub no_home: bool,
    /// `-u UID`.
    pub uid: Option<u32>,
    /// `-k SKEL`: skeleton directory (default `/etc/skel`).
    pub skel: Option<String>,
}

/// Arguments of shadow's `groupadd [-g GID] [-r] [-f] GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupAddArgs {
    /// The group to create.
    pub group: String,
    /// `-g GID`.
    pub gid: Option<u32>,
    /// `-r`: system group.
    pub system: bool,
    /// `-f`: succeed if the group exists (and drop `-g` if the gid is taken).
    pub force: bool,
}

/// Arguments of shadow's `useradd [OPTIONS] USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAddArgs {
    /// The login name.
    pub user: String,
    /// `-u UID`.
    pub uid: Option<u32>,
    /// `-g GROUP`: primary group name or number (must exist).
    pub group: Option<String>,
    /// `-G G1,G2`: supplementary groups.
    pub groups: Vec<String>,
    /// `-m` (`Some(true)`) or `-M` (`Some(false)`); `None` follows `CREATE_HOME` in login.defs.
    pub create_home: Option<bool>,
    /// `-d DIR`: home directory (default `HOME/USER` from /etc/default/useradd, `/home/USER`).
    pub home: Option<String>,
    /// `-s SHELL`.
    pub shell: Option<String>,
    /// `-r`: system account.
    pub system: bool,
    /// `-U` (`Some(true)`) or `-N` (`Some(false)`); `None` follows `USERGROUPS_ENAB`.
    pub user_group: Option<bool>,
    /// `-c COMMENT`: the GECOS field.
    pub comment: Option<String>,
    /// `-k SKEL`: the skeleton directory `-m` copies (default `SKEL` of
    /// /etc/default/useradd, else `/etc/skel`).
    pub skel: Option<String>,
    /// `-l`/`--no-log-init`: leave /var/log/faillog and /var/log/lastlog alone.
    pub no_log_init: bool,
}

/// Arguments of busybox `delgroup [USER] GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelGroupArgs {
    /// The group to delete, or to remove `member` from.
    pub group: String,
    /// `delgroup USER GROUP`: the user to remove from the group's member list.
    pub member: Option<String>,
}

/// Arguments of shadow's `usermod [-a] -G G1,G2 USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserModArgs {
    /// The login name.
    pub user: String,
    /// `-G G1,G2`: the supplementary groups (names or numbers).
    pub groups: Vec<String>,
    /// `-a`: add to `groups`, keeping the others; without it the user leaves every group
    /// not listed.
    pub append: bool,
}

fn addgroup(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    const TABLE: &[Opt] = &[
        opt('g', "gid", "gid", Arg::Required),
        opt('S', "system", "system", Arg::None),
    ];
    let (opts, operands) = getopt(text, "addgroup", args, TABLE)?;
    operand_count(
        text,
        "addgroup",
        &operands,
        1..=2,
        "addgroup [-g GID] [-S] [USER] GROUP",
    )?;
    let mut out = AddGroupArgs::default();
    for (key, value) in opts {
        match key {
            "gid" => {
                out.gid = Some(parse_id(
                    text,
                    "addgroup",
                    value.as_deref().unwrap_or(""),
                    BUSYBOX_LAST_ID,
                )?)
            }
            _ => out.system = true,
        }
    }
    if let [user, group] = operands.as_slice() {
        if out.gid.is_some() {
            return Err(ShellError::Usage {
                command: text.to_owned(),
                tool: "addgroup".to_owned(),
                message: "`-g` cannot be used when adding a user to a group".to_owned(),
            });
        }
        out.member = Some(user.clone());
        out.group = group.clone();
    } else {
        out.group = operands[0].clone();
    }
    Ok(UsersCommand::AddGroup(out))
}

fn adduser(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    const TABLE: &[Opt] = &[
        opt('h', "home", "home", Arg::Required),
        opt('g', "gecos", "gecos", Arg::Required),
        opt('s', "shell", "shell", Arg::Required),
        opt('G', "ingroup", "group", Arg::Required),
        opt('D', "disabled-password", "nopass", Arg::None),
        opt('\0', "empty-password", "nopass", Arg::None),
        opt('S', "system", "system", Arg::None),
        opt('H', "no-create-home", "nohome", Arg::None),
        opt('u', "uid", "uid", Arg::Required),
        opt('k', "skel", "skel", Arg::Required),
    ];
    let (opts, operands) = getopt(text, "adduser", args, TABLE)?;
    operand_count(
        text,
        "adduser",
        &operands,
        1..=2,
        "adduser [OPTIONS] USER [GROUP]",
    )?;
    if opts.is_empty() {
        if let [user, group] = operands.as_slice() {
            // busybox runs `addgroup -- USER GROUP`.
            return Ok(UsersCommand::AddGroup(AddGroupArgs {
                group: group.clone(),
                gid: None,
                system: false,
                member: Some(user.clone()),
            }));
        }
    } else if operands.len() == 2 {
        return Err(ShellError::Usage {
            command: text.to_owned(),
            tool: "adduser".to_owned(),
            message: format!(
                "a second operand (`{}`) is only understood without options (`adduser USER GROUP`)",
                operands[1]
            ),
        });
    }
    let mut out = AddUserArgs {
        user: operands[0].clone(),
        ..AddUserArgs::default()
    };
    for (key, value) in opts {
        match (key, value) {
            ("home", v) => out.home = v,
            ("gecos", v) => out.gecos = v,
            ("shell", v) => out.shell = v,
            ("group", v) => out.group = v,
            ("skel", v) => out.skel = v,
            ("uid", v) => {
                out.uid = Some(parse_id(
                    text,
                    "adduser",
                    v.as_deref().unwrap_or(""),
                    BUSYBOX_LAST_ID,
                )?)
            }
            ("nopass", _) => out.disabled_password = true,
            ("system", _) => out.system = true,
            (_, _) => out.no_home = true,
        }
    }
    if out.system {
        out.disabled_password = true;
    }
    if !out.disabled_password {
        return Err(ShellError::Usage {
            command: text.to_owned(),
            tool: "adduser".to_owned(),
            message: "without -D, adduser asks for a password interactively, which fails in a build; add -D".to_owned(),
        });
    }
    Ok(UsersCommand::AddUser(out))
}

fn groupadd(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    const TABLE: &[Opt] = &[
        opt('g', "gid", "gid", Arg::Required),
        opt('r', "system", "system", Arg::None),
        opt('f', "force", "force", Arg::None),
    ];
    let (opts, operands) = getopt(text, "groupadd", args, TABLE)?;
    operand_count(
        text,
        "groupadd",
        &operands,
        1..=1,
        "groupadd [options] GROUP",
    )?;
    let mut out = GroupAddArgs {
        group: operands[0].clone(),
        ..GroupAddArgs::default()
    };
    for (key, value) in opts {
        match key {
            "gid" => {
                out.gid = Some(parse_id(
                    text,
                    "groupadd",
                    value.as_deref().unwrap_or(""),
                    u32::MAX - 1,
                )?)
            }
            "system" => out.system = true,
            _ => out.force = true,
        }
    }
    Ok(UsersCommand::GroupAdd(out))
}

fn useradd(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    const TABLE: &[Opt] = &[
        opt('u', "uid", "uid", Arg::Required),
        opt('g', "gid", "gid", Arg::Required),
        opt('G', "groups", "groups", Arg::Required),
        opt('m', "create-home", "m", Arg::None),
        opt('M', "no-create-home", "M", Arg::None),
        opt('d', "home-dir", "home", Arg::Required),
        opt('s', "shell", "shell", Arg::Required),
        opt('r', "system", "system", Arg::None),
        opt('N', "no-user-group", "N", Arg::None),
        opt('U', "user-group", "U", Arg::None),
        opt('c', "comment", "comment", Arg::Required),
        opt('k', "skel", "skel", Arg::Required),
        opt('l', "no-log-init", "no-log-init", Arg::None),
    ];
    let (opts, operands) = getopt(text, "useradd", args, TABLE)?;
    operand_count(text, "useradd", &operands, 1..=1, "useradd [options] LOGIN")?;
    let mut out = UserAddArgs {
        user: operands[0].clone(),
        ..UserAddArgs::default()
    };
    for (key, value) in opts {
        match (key, value) {
            ("uid", v) => {
                out.uid = Some(parse_id(
                    text,
                    "useradd",
                    v.as_deref().unwrap_or(""),
                    u32::MAX - 1,
                )?)
            }
            ("gid", v) => out.group = v,
            ("groups", v) => {
                out.groups = v
                    .unwrap_or_default()
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            ("m", _) => out.create_home = Some(true),
            ("M", _) => out.create_home = Some(false),
            ("home", v) => out.home = v,
            ("shell", v) => out.shell = v,
            ("system", _) => out.system = true,
            ("N", _) => out.user_group = Some(false),
            ("U", _) => out.user_group = Some(true),
            ("skel", v) => out.skel = v,
            ("no-log-init", _) => out.no_log_init = true,
            (_, v) => out.comment = v,
        }
    }
    if out.skel.is_some() && out.create_home != Some(true) {
        return Err(ShellError::Usage {
            command: text.to_owned(),
            tool: "useradd".to_owned(),
            message: "-k flag is only allowed with -m flag".to_owned(),
        });
    }
    if out.user_group == Some(true) && out.group.is_some() {
        return Err(ShellError::Usage {
            command: text.to_owned(),
            tool: "useradd".to_owned(),
            message: "options -U and -g conflict".to_owned(),
        });
    }
    Ok(UsersCommand::UserAdd(out))
}

fn usermod(text: &str, args: &[String]) -> Result<UsersCommand, ShellError> {
    const TABLE: &[Opt] = &[
        opt('a', "append", "append", Arg::None),
        opt('G', "groups", "groups", Arg::Required),
    ];
    let (opts, operands) = getopt(text, "usermod", args, TABLE)?;
    operand_count(text, "usermod", &operands, 1..=1, "usermod [options] LOGIN")?;
    let mut out = UserModArgs {
        user: operands[0].clone(),
        ..UserModArgs::default()
    };
    let mut groups_given = false;
    for (key, value) in opts {
        match key {
            "append" => out.append = true,
            _ => {
                groups_given = true;
                out.groups = value
                    .unwrap_or_default()
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    if !groups_given {
        return Err(ShellError::Usage {
            command: text.to_owned(),
            tool: "usermod".to_owned(),
            message: if out.append {
                "-a flag is ONLY allowed with the -G flag".to_owned()
            } else {
                "no changes".to_owned()
            },
        });
    }
    Ok(UsersCommand::UserMod(out))
}
