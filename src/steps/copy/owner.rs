//! `--chown` and `--chmod` for COPY/ADD, as BuildKit reads them.
//!
//! `--chown` takes `user`, `user:group`, `uid` or `uid:gid` (names and numbers mix). Names are
//! looked up in the destination stage's `/etc/passwd` and `/etc/group` (symlinks resolved inside
//! its root). A user given without a group gets the user's primary group from passwd when named,
//! and the same number as the uid when numeric (BuildKit's `readUser`). `root` is id 0 without
//! a look-up, as a number is (BuildKit's `parseUID`), so both work in a stage without
//! `/etc/passwd` or `/etc/group`; any other name must be in the file. `--chmod` takes an octal
//! mode up to `7777`.

use crate::rootfs::FsView;
use crate::users::etc;

use super::CopyError;

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resolves a `--chown` value against `target`'s passwd and group files.
pub fn parse_chown(value: &str, target: &dyn FsView) -> Result<Owner, CopyError> {
    let bad = || CopyError::BadChown {
        value: value.to_owned(),
    };
    let (user, group) = match value.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (value, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(bad());
    }
    let (uid, primary_gid) = match numeric(user) {
        Some(Ok(uid)) => (uid, uid),
        Some(Err(())) => return Err(bad()),
        None => etc::read_passwd(target)
            .map_err(view_error)?
            .into_iter()
            .find(|entry| entry.name == user)
            .map(|entry| (entry.uid, entry.gid))
            .ok_or_else(|| CopyError::UnknownUser {
                name: user.to_owned(),
            })?,
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match numeric(group) {
            Some(Ok(gid)) => gid,
            Some(Err(())) => return Err(bad()),
            None => etc::read_group(target)
                .map_err(view_error)?
                .into_iter()
                .find(|entry| entry.name == group)
                .map(|entry| entry.gid)
                .ok_or_else(|| CopyError::UnknownGroup {
                    name: group.to_owned(),
                })?,
        },
    };
    Ok(Owner { uid, gid })
}

/// Parses a `--chmod` value: octal, at most `7777`.
pub fn parse_chmod(value: &str) -> Result<u32, CopyError> {
    let bad = || CopyError::BadChmod {
        value: value.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(value, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(bad()),
    }
}

/// `Some(Ok(n))` for a decimal number (or `root`, which is 0), `Some(Err)` for digits that
/// overflow, `None` for a name.
fn numeric(value: &str) -> Option<Result<u32, ()>> {
    if value == "root" {
        return Some(Ok(0));
    }
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse().map_err(|_| ()))
}

/// A failed read of the target's /etc file (a missing file has no entries, as in BuildKit).
fn view_error(error: etc::EtcReadError) -> CopyError {
    CopyError::View {
        path: error.path,
        cause: error.source,
    }
}
