//! shadow's `groupadd`, `useradd`, `usermod -G` and `groupdel`, as Debian builds them, with
//! login.defs and /etc/default/useradd read as shadow reads them (see the rules in [`super`]).

use std::collections::BTreeMap;

use super::UsersError;
use super::args::{GroupAddArgs, UserAddArgs, UserModArgs};
use super::etc::{self, GroupEntry};
use super::files::{Ctx, check_name, etc_path, lines, tool_err};
use crate::layer::LayerPath;
use crate::rootfs::{FsNode, NodeKind};

impl Ctx<'_> {
    pub(super) fn login_defs(
        &self,
        tool: &'static str,
    ) -> Result<BTreeMap<String, String>, UsersError> {
        let path = etc_path("login.defs");
        let text = etc::read_etc(self.view, &path)
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

    pub(super) fn useradd_defaults(
        &self,
        tool: &'static str,
    ) -> Result<BTreeMap<String, String>, UsersError> {
        let path = etc_path("default/useradd");
        let text = etc::read_etc(self.view, &path)
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

    pub(super) fn groupadd(&mut self, args: &GroupAddArgs) -> Result<(), UsersError> {
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

    pub(super) fn useradd(&mut self, args: &UserAddArgs) -> Result<(), UsersError> {
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
    pub(super) fn add_subordinate_range(
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
    pub(super) fn check_log_untouched(
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

    /// shadow's `groupdel GROUP`: refused while a user has it as primary group; its first
    /// line leaves /etc/group and, when it has one there, /etc/gshadow.
    pub(super) fn groupdel(&mut self, group: &str) -> Result<(), UsersError> {
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
    pub(super) fn usermod(&mut self, args: &UserModArgs) -> Result<(), UsersError> {
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
pub(super) fn shadow_new_id(
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

/// A login.defs number as `strtol(value, NULL, 0)` reads a whole value: decimal, `0x` hex or
/// `0` octal; `None` when malformed (getdef's callers then use their default).
pub(super) fn parse_c_long(value: &str) -> Option<i64> {
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
