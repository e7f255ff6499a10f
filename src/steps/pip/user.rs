//! The RUN user as pip inside the container would be: a `USER` value resolved against the
//! image's passwd and group files, as a container runtime resolves it, with `HOME` from the
//! RUN's environment.

use crate::layer::LayerPath;
use crate::python::install::{PipError, RunUser};
use crate::rootfs::FsView;
use crate::users::etc as etc_files;

/// Resolves a `USER` value against the image's passwd and group files, as a container runtime
/// does: a name must exist; a uid without an entry gets gid 0 and home `/`; root's home is
/// `/root` when passwd does not say. `HOME` in `env` overrides the home.
pub fn resolve_user(
    fs: &dyn FsView,
    user: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RunUser, PipError> {
    let read = |path: &str| -> Result<String, PipError> {
        let layer_path = LayerPath::new(path).map_err(|_| PipError::Location {
            path: path.to_owned(),
            problem: "not a valid path".to_owned(),
        })?;
        etc_files::read_etc(fs, &layer_path)
            .map(|bytes| {
                bytes
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })
            .map_err(|source| PipError::Read {
                path: format!("/{path}"),
                source,
            })
    };
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let name = if name.is_empty() { "0" } else { name };
    let passwd = etc_files::parse_passwd(&read("etc/passwd")?);
    let entry = match name.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|e| e.name == name)
                .cloned()
                .ok_or_else(|| PipError::UnknownUser {
                    user: user.to_owned(),
                })?,
        ),
    };
    let (uid, mut gid, mut home) = match (&entry, name.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.clone()),
        (None, Ok(0)) => (0, 0, "/root".to_owned()),
        (None, Ok(uid)) => (uid, 0, "/".to_owned()),
        (None, Err(_)) => unreachable_user(user)?,
    };
    if uid == 0 && home.is_empty() {
        home = "/root".to_owned();
    }
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => etc_files::parse_group(&read("etc/group")?)
                .into_iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| PipError::UnknownGroup {
                    user: user.to_owned(),
                    group: group.to_owned(),
                })?,
        };
    }
    if let Some(env_home) = env("HOME").filter(|h| h.starts_with('/')) {
        home = env_home;
    }
    Ok(RunUser { uid, gid, home })
}

fn unreachable_user(user: &str) -> Result<(u32, u32, String), PipError> {
    Err(PipError::UnknownUser {
        user: user.to_owned(),
    })
}
