//! busybox's `addgroup`, `adduser`, `deluser` and `delgroup`, as Alpine builds them (see the
//! rules in [`super`]).

use super::args::{AddGroupArgs, AddUserArgs, BUSYBOX_LAST_ID, DelGroupArgs};
use super::files::{Ctx, check_name, first_free, lines, tool_err};
use super::{BB_FIRST_SYSTEM_ID, BB_LAST_SYSTEM_ID, UsersError};

impl Ctx<'_> {
    pub(super) fn addgroup(&mut self, args: &AddGroupArgs) -> Result<(), UsersError> {
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

    pub(super) fn bb_new_group(&mut self, name: &str, gid: u32) -> Result<(), UsersError> {
        self.append("addgroup", "group", &format!("{name}:x:{gid}:"), true)?;
        self.append("addgroup", "gshadow", &format!("{name}:!::"), false)
    }

    pub(super) fn adduser(&mut self, args: &AddUserArgs) -> Result<(), UsersError> {
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
    /// busybox's `update_passwd` on /etc/NAME: every line passed through `edit` (`None` drops
    /// it), and the file rewritten, with its backup, even when nothing changed; a missing
    /// passwd or group file is an error, a missing shadow file is not.
    pub(super) fn bb_rewrite(
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
    pub(super) fn deluser(&mut self, user: &str) -> Result<(), UsersError> {
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
    pub(super) fn delgroup(
        &mut self,
        args: &DelGroupArgs,
        after_deluser: bool,
    ) -> Result<(), UsersError> {
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
}

/// A comma-separated member list without the elements equal to `member` (other elements,
/// empty ones included, kept in order), as busybox edits it.
pub(super) fn without_member(list: &str, member: &str) -> String {
    list.split(',')
        .filter(|element| *element != member)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_member_keeps_the_other_elements_in_order() {
        assert_eq!(without_member("a,b,,a,c", "a"), "b,,c");
    }
}
