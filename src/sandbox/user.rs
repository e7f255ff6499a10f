//! The RUN's USER resolved against the image's /etc/passwd and /etc/group, as BuildKit resolves
//! it: names or numbers, a missing entry an error for a name and root's defaults for a number.

use super::SandboxError;
use crate::rootfs::LowerFs;
use crate::users::etc;

/// A USER resolved against the image's /etc/passwd and /etc/group.
pub(super) struct ResolvedUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) groups: Vec<u32>,
    pub(super) home: String,
}

pub(super) fn resolve_user(fs: &LowerFs, user: &str) -> Result<ResolvedUser, SandboxError> {
    // An unreadable file counts as missing, as BuildKit reads them.
    let passwd = etc::read_passwd(fs).unwrap_or_default();
    let groups = etc::read_group(fs).unwrap_or_default();
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    let name = if name.is_empty() { "0" } else { name };
    let entry = match name.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        // `root` is uid 0 even without a passwd entry or file, as in BuildKit.
        Err(_) if name == "root" => passwd.iter().find(|e| e.name == name),
        Err(_) => Some(passwd.iter().find(|e| e.name == name).ok_or_else(|| {
            SandboxError::Command(format!(
                "unable to find user {name}: no matching entries in passwd file"
            ))
        })?),
    };
    let uid = name
        .parse::<u32>()
        .ok()
        .or(entry.map(|e| e.uid))
        .unwrap_or(0);
    let primary = entry.map(|e| e.gid).unwrap_or(0);
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) if group == "root" => {
                groups.iter().find(|g| g.name == group).map_or(0, |g| g.gid)
            }
            Err(_) => groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| {
                    SandboxError::Command(format!(
                        "unable to find group {group}: no matching entries in group file"
                    ))
                })?,
        },
    };
    let mut supplementary = vec![gid];
    if group.is_none()
        && let Some(entry) = entry
    {
        for g in &groups {
            if g.members.contains(&entry.name) && !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            if uid == 0 {
                "/root".to_owned()
            } else {
                "/".to_owned()
            }
        });
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}
