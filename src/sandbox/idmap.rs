//! User and group id maps of the sandbox's user namespace: which host ids stand for which ids
//! inside, chosen for whoever runs kiln.
//!
//! - root (with `CAP_SETUID` where kiln runs): every id kiln can use maps to itself, so files on
//!   disk carry the image's own owners.
//! - an unprivileged user with an `/etc/subuid` and `/etc/subgid` range and `newuidmap` and
//!   `newgidmap` installed: the caller is root inside and the range holds ids 1..N.
//! - otherwise: the caller alone, as root inside. Other owners cannot exist on disk then; a
//!   command that changes a file to another owner fails, as in rootless podman without ranges.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `inside outside count` line of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u32,
    /// The host id it stands for.
    pub outside: u32,
    /// How many consecutive ids.
    pub count: u32,
}

/// How the uid and gid maps are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapMethod {
    /// The parent writes `/proc/PID/{uid,gid}_map` itself (root, or a single-id map).
    Direct,
    /// Through the setuid helpers `newuidmap` and `newgidmap` (subordinate id ranges).
    Helpers,
}

/// The uid and gid maps of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMaps {
    /// uid map lines.
    pub uids: Vec<IdRange>,
    /// gid map lines.
    pub gids: Vec<IdRange>,
    /// How they are written.
    pub method: MapMethod,
}

/// The most ids a subordinate range contributes (ids 1..=65535 inside, as rootless podman).
const SUBORDINATE_IDS: u32 = 65535;

impl IdMaps {
    /// The maps for the current process (see the module docs).
    pub fn for_current_user() -> IdMaps {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid == 0 {
            return IdMaps {
                uids: identity_of(
                    &std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default(),
                ),
                gids: identity_of(
                    &std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default(),
                ),
                method: MapMethod::Direct,
            };
        }
        let name = user_name(uid);
        let ranges = (
            find_helper("newuidmap"),
            find_helper("newgidmap"),
            subordinate_range(Path::new("/etc/subuid"), uid, name.as_deref()),
            subordinate_range(Path::new("/etc/subgid"), uid, name.as_deref()),
        );
        if let (Some(_), Some(_), Some((uid_start, uid_count)), Some((gid_start, gid_count))) =
            ranges
        {
            return IdMaps {
                uids: vec![
                    IdRange {
                        inside: 0,
                        outside: uid,
                        count: 1,
                    },
                    IdRange {
                        inside: 1,
                        outside: uid_start,
                        count: uid_count.min(SUBORDINATE_IDS),
                    },
                ],
                gids: vec![
                    IdRange {
                        inside: 0,
                        outside: gid,
                        count: 1,
                    },
                    IdRange {
                        inside: 1,
                        outside: gid_start,
                        count: gid_count.min(SUBORDINATE_IDS),
                    },
                ],
                method: MapMethod::Helpers,
            };
        }
        IdMaps::single(uid, gid)
    }

    /// The caller alone, as root inside.
    pub fn single(uid: u32, gid: u32) -> IdMaps {
        IdMaps {
            uids: vec![IdRange {
                inside: 0,
                outside: uid,
                count: 1,
            }],
            gids: vec![IdRange {
                inside: 0,
                outside: gid,
                count: 1,
            }],
            method: MapMethod::Direct,
        }
    }

    /// The host uid standing for `inside`, if it is mapped.
    pub fn uid_to_host(&self, inside: u32) -> Option<u32> {
        to_outside(&self.uids, inside)
    }

    /// The host gid standing for `inside`, if it is mapped.
    pub fn gid_to_host(&self, inside: u32) -> Option<u32> {
        to_outside(&self.gids, inside)
    }

    /// The uid inside that host uid `outside` appears as (the overflow id 65534 when unmapped).
    pub fn uid_inside(&self, outside: u32) -> u32 {
        to_inside(&self.uids, outside).unwrap_or(OVERFLOW_ID)
    }

    /// The gid inside that host gid `outside` appears as (the overflow id 65534 when unmapped).
    pub fn gid_inside(&self, outside: u32) -> u32 {
        to_inside(&self.gids, outside).unwrap_or(OVERFLOW_ID)
    }

    /// Writes the maps of the process `pid`, which has just entered a new user namespace.
    pub fn apply(&self, pid: u32) -> Result<(), String> {
        match self.method {
            MapMethod::Direct => {
                if self.uids.len() == 1 && nix::unistd::geteuid().as_raw() != 0 {
                    // An unprivileged single-id gid map is refused until setgroups is denied.
                    write_proc(pid, "setgroups", "deny")?;
                }
                write_proc(pid, "uid_map", &map_text(&self.uids))?;
                write_proc(pid, "gid_map", &map_text(&self.gids))
            }
            MapMethod::Helpers => {
                run_helper("newuidmap", pid, &self.uids)?;
                run_helper("newgidmap", pid, &self.gids)
            }
        }
    }

    /// True when the command may call setgroups (not after a denied single-id map).
    pub fn setgroups_allowed(&self) -> bool {
        !(self.method == MapMethod::Direct
            && self.uids.len() == 1
            && nix::unistd::geteuid().as_raw() != 0)
    }
}

/// The id the kernel shows for an unmapped owner.
pub const OVERFLOW_ID: u32 = 65534;

fn to_outside(ranges: &[IdRange], inside: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = inside.checked_sub(r.inside)?;
        (offset < r.count).then(|| r.outside + offset)
    })
}

fn to_inside(ranges: &[IdRange], outside: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = outside.checked_sub(r.outside)?;
        (offset < r.count).then(|| r.inside + offset)
    })
}

/// An identity map over every id the current namespace has (`/proc/self/uid_map` text).
fn identity_of(own_map: &str) -> Vec<IdRange> {
    let ranges: Vec<IdRange> = own_map
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u32>());
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(_)), Some(Ok(count))) => Some(IdRange {
                    inside,
                    outside: inside,
                    count,
                }),
                _ => None,
            }
        })
        .collect();
    if ranges.is_empty() {
        vec![IdRange {
            inside: 0,
            outside: 0,
            count: 1,
        }]
    } else {
        ranges
    }
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

fn write_proc(pid: u32, file: &str, text: &str) -> Result<(), String> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| format!("failed to write `{path}`: {e}"))
}

fn run_helper(helper: &str, pid: u32, ranges: &[IdRange]) -> Result<(), String> {
    let path = find_helper(helper).ok_or_else(|| format!("`{helper}` is not installed"))?;
    let mut command = Command::new(&path);
    command.arg(pid.to_string());
    for r in ranges {
        command.args([
            r.inside.to_string(),
            r.outside.to_string(),
            r.count.to_string(),
        ]);
    }
    let output = command
        .output()
        .map_err(|e| format!("failed to run `{}`: {e}", path.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{helper}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    crate::users::etc::parse_passwd(&passwd)
        .into_iter()
        .find(|entry| entry.uid == uid)
        .map(|entry| entry.name)
}

/// The first `start:count` range of `/etc/subuid`-style `file` for the user (by name or uid).
fn subordinate_range(file: &Path, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, uid, name)
}

fn parse_subordinate(text: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let uid_text = uid.to_string();
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start = fields.next()?.parse::<u32>().ok()?;
        let count = fields.next()?.parse::<u32>().ok()?;
        (owner == uid_text || Some(owner) == name)
            .then_some((start, count))
            .filter(|(_, c)| *c > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_translate_both_ways() {
        let maps = IdMaps {
            uids: vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1,
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65535,
                },
            ],
            gids: vec![IdRange {
                inside: 0,
                outside: 1000,
                count: 1,
            }],
            method: MapMethod::Helpers,
        };
        assert_eq!(maps.uid_to_host(0), Some(1000));
        assert_eq!(maps.uid_to_host(1000), Some(100999));
        assert_eq!(maps.uid_to_host(70000), None);
        assert_eq!(maps.uid_inside(100999), 1000);
        assert_eq!(maps.uid_inside(5), OVERFLOW_ID);
        assert_eq!(maps.gid_to_host(5), None);
    }

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbad line\n";
        assert_eq!(
            parse_subordinate(text, 1000, Some("alice")),
            Some((100000, 65536))
        );
        assert_eq!(parse_subordinate(text, 1001, None), Some((200000, 1000)));
        assert_eq!(parse_subordinate(text, 7, Some("bob")), None);
    }

    #[test]
    fn root_maps_its_own_ranges_onto_themselves() {
        let ranges = identity_of("         0          0 4294967295\n");
        assert_eq!(
            ranges,
            [IdRange {
                inside: 0,
                outside: 0,
                count: 4294967295
            }]
        );
    }
}
