//! Emulation of the package scripts and triggers that do real work in Alpine images, so that
//! a native upgrade leaves the filesystem as running them would (apk.md §6.2):
//!
//! - busybox's applet installer (`busybox --install -s` in its `.post-install`, `.post-upgrade`
//!   and `.trigger`): [`ensure_applet_links`];
//! - ca-certificates' trigger (`update-ca-certificates`, Alpine's C implementation):
//!   [`update_ca_certificates`];
//! - `.pre-install`/`.pre-upgrade` scripts made only of user and group creations
//!   (`addgroup`, `adduser`, `groupadd`, `useradd`), applied with [`crate::users`]:
//!   [`emulate_script`].
//!
//! A script is emulated only when it consists of exactly those commands; anything more is
//! reported as not run by the caller.

use std::collections::BTreeMap;

use super::ApkError;
use super::edit::{content_of, lp, put, whiteout};
use super::package::Package;
use crate::layer::{EntryKind, LayerPath, Metadata};
use crate::rootfs::{FsView, NodeKind, Overlay};
use crate::shell::{noop_reason, split_and_expand};
use crate::users::{self, UsersCommand, UsersOptions};

/// Whether `script` of package `package` is busybox's applet installer: only comments,
/// `busybox mkdir -p` of the usual directories, and `busybox --install -s` (as in Alpine's
/// busybox `.post-install`, `.post-upgrade` and `.trigger`), which [`ensure_applet_links`]
/// emulates. Anything else in it means the script does more, and it is reported unrun.
pub(super) fn busybox_install_script(package: &str, script: &[u8]) -> bool {
    if package != "busybox" {
        return false;
    }
    let text = String::from_utf8_lossy(script);
    let mut installs = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let command = line
            .trim_start_matches("exec ")
            .trim_end_matches("|| exit 1")
            .trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["/bin/busybox" | "busybox", "--install", "-s"] => installs = true,
            ["/bin/busybox" | "busybox", "mkdir", "-p", dirs @ ..]
                if dirs.iter().all(|d| {
                    matches!(
                        d.trim_matches('"'),
                        "/bin" | "/sbin" | "/usr/bin" | "/usr/sbin"
                    )
                }) => {}
            _ => return false,
        }
    }
    installs
}

/// `busybox --install -s`, without running busybox: a symlink to `/bin/busybox` for every
/// applet path listed in `/etc/busybox-paths.d/busybox` (shipped by Alpine's busybox package)
/// where nothing exists yet. Existing files are never replaced, and the links are not recorded
/// in the installed db, as with apk. Returns a warning when the list is missing.
pub(super) fn ensure_applet_links(
    overlay: &mut Overlay<'_>,
    epoch: i64,
) -> Result<Vec<String>, ApkError> {
    let list = lp("etc/busybox-paths.d/busybox");
    let resolved_list = overlay
        .resolve(&list, true)
        .map_err(ApkError::view(list.absolute()))?;
    let exists = overlay
        .lstat_exact(&resolved_list)
        .map_err(ApkError::view(list.absolute()))?
        .is_some();
    if !exists {
        return Ok(vec![
            "busybox: applet links not created: /etc/busybox-paths.d/busybox is missing".into(),
        ]);
    }
    let text = String::from_utf8_lossy(&content_of(overlay, &resolved_list)?).into_owned();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Ok(path) = LayerPath::new(line.trim_start_matches('/')) else {
            continue;
        };
        let Some(parent) = path.parent() else {
            continue;
        };
        let parent = overlay
            .resolve(&parent, true)
            .map_err(ApkError::view(parent.absolute()))?;
        let parent_node = overlay
            .lstat_exact(&parent)
            .map_err(ApkError::view(parent.absolute()))?;
        let mut parent_is_dir = parent_node
            .as_ref()
            .is_some_and(|node| matches!(node.kind, NodeKind::Dir));
        // The scripts' `mkdir -p /bin /sbin /usr/bin /usr/sbin`, where /usr exists.
        if parent_node.is_none()
            && matches!(parent.as_str(), "bin" | "sbin" | "usr/bin" | "usr/sbin")
            && match parent.parent() {
                Some(up) => is_dir(overlay, &up)?,
                None => true,
            }
        {
            put(
                overlay,
                parent.clone(),
                EntryKind::Dir,
                root_meta(0o755, epoch),
            );
            parent_is_dir = true;
        }
        let Ok(target) = parent.join(path.file_name()) else {
            continue;
        };
        if !parent_is_dir
            || overlay
                .lstat_exact(&target)
                .map_err(ApkError::view(target.absolute()))?
                .is_some()
        {
            continue;
        }
        put(
            overlay,
            target,
            EntryKind::Symlink("/bin/busybox".into()),
            root_meta(0o777, epoch),
        );
    }
    Ok(Vec::new())
}

/// Root-owned metadata with `mode`, stamped with the build's SOURCE_DATE_EPOCH.
fn root_meta(mode: u32, epoch: i64) -> Metadata {
    Metadata {
        mode,
        uid: 0,
        gid: 0,
        mtime: epoch,
        xattrs: BTreeMap::new(),
    }
}

const CERTS_DIR: &str = "/usr/share/ca-certificates/";
const LOCAL_CERTS_DIR: &str = "/usr/local/share/ca-certificates/";

/// Whether `script` of package `package` only runs `update-ca-certificates` (any path, any
/// arguments, `exec` and redirections allowed), as ca-certificates' `.trigger` does.
pub(super) fn update_ca_certificates_script(package: &str, script: &[u8]) -> bool {
    if package != "ca-certificates" {
        return false;
    }
    let text = String::from_utf8_lossy(script);
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match commands.as_slice() {
        [command] => {
            let words: Vec<&str> = command.split_whitespace().collect();
            let program = match words.as_slice() {
                ["exec", program, ..] | [program, ..] => *program,
                [] => return false,
            };
            // Only options and redirections may follow: no second command.
            program.rsplit('/').next() == Some("update-ca-certificates")
                && !command.contains([';', '|', '`', '$'])
                && !command.contains("&&")
                && !words.contains(&"&")
        }
        _ => false,
    }
}

/// The link name Alpine's update-ca-certificates gives a certificate file: `ca-cert-` + its
/// name without `.crt` + `.pem`, with `,` and spaces as `_` and parentheses as `=`.
fn link_name(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".crt").unwrap_or(file_name);
    format!("ca-cert-{stem}.pem")
        .chars()
        .map(|c| match c {
            ',' | ' ' => '_',
            '(' | ')' => '=',
            other => other,
        })
        .collect()
}

/// Alpine's `update-ca-certificates`, without running it: every certificate named in
/// `/etc/ca-certificates.conf` (relative to /usr/share/ca-certificates; lines starting with
/// `#` or `!` skipped) and every regular file in /usr/local/share/ca-certificates gets a
/// symlink `/etc/ssl/certs/ca-cert-NAME.pem`, and their contents, concatenated in that order,
/// become `/etc/ssl/certs/ca-certificates.crt` (0644, rewritten every time, as the program
/// renames a new file into place); symlinks in /etc/ssl/certs into those directories that no
/// certificate wants any more are removed, and wrong ones replaced. Local certificates are
/// taken in bytewise order (the program takes directory order, which no layer can fix). The
/// hooks in /etc/ca-certificates/update.d are not run: the returned warnings name them, and
/// any listed certificate that cannot be read.
pub(super) fn update_ca_certificates(
    overlay: &mut Overlay<'_>,
    epoch: i64,
) -> Result<Vec<String>, ApkError> {
    let mut warnings = Vec::new();
    // (link name, absolute target), in the program's order; a later duplicate name wins.
    let mut wanted: Vec<(String, String)> = Vec::new();
    let conf = lp("etc/ca-certificates.conf");
    if is_file(overlay, &conf)? {
        let text = String::from_utf8_lossy(&content_of(overlay, &conf)?).into_owned();
        for line in text.lines() {
            if line.starts_with('#') || line.starts_with('!') || line.is_empty() {
                continue;
            }
            let name = line.rsplit('/').next().unwrap_or(line);
            wanted.push((link_name(name), format!("{CERTS_DIR}{line}")));
        }
    }
    let local = lp("usr/local/share/ca-certificates");
    if is_dir(overlay, &local)? {
        for name in overlay
            .read_dir(&local)
            .map_err(ApkError::view(local.absolute()))?
        {
            if name.starts_with('.') {
                continue;
            }
            let Ok(path) = local.join(&name) else {
                continue;
            };
            if is_file(overlay, &path)? {
                wanted.push((link_name(&name), format!("{LOCAL_CERTS_DIR}{name}")));
            }
        }
    }
    let mut bundle = Vec::new();
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for (name, target) in &wanted {
        targets.insert(name.clone(), target.clone());
        let path = LayerPath::new(target.trim_start_matches('/'))
            .map_err(|_| ApkError::Unsupported(format!("certificate path `{target}`")))?;
        let resolved = overlay
            .resolve(&path, true)
            .map_err(ApkError::view(path.absolute()))?;
        if is_file(overlay, &resolved)? {
            bundle.extend_from_slice(&content_of(overlay, &resolved)?);
        } else {
            warnings.push(format!(
                "ca-certificates: `{target}` is listed but is not a readable file; not in the bundle"
            ));
        }
    }

    let certs = lp("etc/ssl/certs");
    if !is_dir(overlay, &certs)? {
        put(
            overlay,
            lp("etc/ssl"),
            EntryKind::Dir,
            root_meta(0o755, epoch),
        );
        put(
            overlay,
            certs.clone(),
            EntryKind::Dir,
            root_meta(0o755, epoch),
        );
    }
    let existing = overlay
        .read_dir(&certs)
        .map_err(ApkError::view(certs.absolute()))?;
    for name in existing.iter().filter(|n| !n.starts_with('.')) {
        let Ok(path) = certs.join(name) else { continue };
        let Some(node) = overlay
            .lstat_exact(&path)
            .map_err(ApkError::view(path.absolute()))?
        else {
            continue;
        };
        let NodeKind::Symlink(link) = node.kind else {
            continue;
        };
        match targets.get(name) {
            None if link.starts_with(CERTS_DIR) || link.starts_with(LOCAL_CERTS_DIR) => {
                whiteout(overlay, path);
            }
            Some(target) if *target != link => put(
                overlay,
                path,
                EntryKind::Symlink(target.clone()),
                root_meta(0o777, epoch),
            ),
            _ => {}
        }
        targets.remove(name);
    }
    for (name, target) in targets {
        let Ok(path) = certs.join(&name) else {
            continue;
        };
        put(
            overlay,
            path,
            EntryKind::Symlink(target),
            root_meta(0o777, epoch),
        );
    }
    put(
        overlay,
        lp("etc/ssl/certs/ca-certificates.crt"),
        EntryKind::File(crate::layer::FileContent::Bytes(bundle.into())),
        root_meta(0o644, epoch),
    );

    let hooks_dir = lp("etc/ca-certificates/update.d");
    if is_dir(overlay, &hooks_dir)? {
        let hooks: Vec<String> = overlay
            .read_dir(&hooks_dir)
            .map_err(ApkError::view(hooks_dir.absolute()))?
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect();
        if !hooks.is_empty() {
            warnings.push(format!(
                "ca-certificates: hooks in /etc/ca-certificates/update.d not run ({})",
                hooks.join(", ")
            ));
        }
    }
    Ok(warnings)
}

fn is_file(view: &dyn FsView, path: &LayerPath) -> Result<bool, ApkError> {
    Ok(view
        .lstat_exact(path)
        .map_err(ApkError::view(path.absolute()))?
        .is_some_and(|node| matches!(node.kind, NodeKind::File { .. })))
}

fn is_dir(view: &dyn FsView, path: &LayerPath) -> Result<bool, ApkError> {
    Ok(view
        .lstat_exact(path)
        .map_err(ApkError::view(path.absolute()))?
        .is_some_and(|node| matches!(node.kind, NodeKind::Dir)))
}

/// Emulates a pre-install/upgrade script made only of recognized users commands.
pub(super) fn emulate_script(
    pkg: &Package,
    action: &str,
    script: &[u8],
    overlay: &mut Overlay<'_>,
    epoch: i64,
    warnings: &mut Vec<String>,
) -> Result<(), ApkError> {
    let text = String::from_utf8_lossy(script);
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let Some(commands) = users_script(&body) else {
        warnings.push(format!("{}: .{action} script not run", pkg.id()));
        return Ok(());
    };
    let options = UsersOptions {
        source_date_epoch: epoch,
        shell_env: None,
    };
    for command in &commands {
        // Scripts silence these errors (`2>/dev/null`): an existing user or group is fine.
        match users::apply(command, overlay, &options) {
            Ok(diff) => overlay.apply(diff),
            Err(err) => warnings.push(format!("{}: .{action}: {err} (ignored)", pkg.id())),
        }
    }
    Ok(())
}

/// The commands of a script made only of user and group creations (`addgroup`, `adduser`,
/// `groupadd`, `useradd`) and builtins that change nothing; `None` for any other script.
fn users_script(body: &str) -> Option<Vec<UsersCommand>> {
    let mut commands = Vec::new();
    for command in split_and_expand(body, &|_| None).ok()? {
        if command.globbed && command.program() != "echo" {
            return None;
        }
        if noop_reason(&command).is_some() {
            continue;
        }
        match users::args::parse(&command)?.ok()? {
            creation @ (UsersCommand::AddGroup(_)
            | UsersCommand::AddUser(_)
            | UsersCommand::GroupAdd(_)
            | UsersCommand::UserAdd(_)) => commands.push(creation),
            _ => return None,
        }
    }
    Some(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_applet_installer_scripts_are_recognized_and_nothing_more() {
        let post_install = b"#!/bin/busybox sh\n\n# We need the symlinks early\n\
            /bin/busybox mkdir -p \"/bin\" \"/sbin\" \"/usr/bin\" \"/usr/sbin\"\n\
            /bin/busybox --install -s || exit 1\n";
        assert!(busybox_install_script("busybox", post_install));
        assert!(busybox_install_script(
            "busybox",
            b"#!/bin/sh\nexec /bin/busybox --install -s\n"
        ));
        // The same script in another package, or with more work in it, is not emulated.
        assert!(!busybox_install_script("toybox", post_install));
        assert!(!busybox_install_script(
            "busybox",
            b"#!/bin/sh\n/bin/busybox --install -s\nrm -f /bin/old-applet\n"
        ));
        assert!(!busybox_install_script(
            "busybox",
            b"#!/bin/sh\n/bin/busybox mkdir -p /opt\n"
        ));
        assert!(!busybox_install_script(
            "busybox",
            b"#!/bin/sh\n# nothing\n"
        ));
    }

    #[test]
    fn update_ca_certificates_triggers_and_link_names() {
        for script in [
            &b"#!/bin/sh\nexec /usr/bin/update-ca-certificates --fresh >/dev/null 2>&1\n"[..],
            b"#!/bin/sh\n# refresh\nupdate-ca-certificates\n",
        ] {
            assert!(update_ca_certificates_script("ca-certificates", script));
        }
        assert!(!update_ca_certificates_script(
            "ca-certificates",
            b"#!/bin/sh\nupdate-ca-certificates; rm -rf /etc/ssl\n"
        ));
        assert!(!update_ca_certificates_script(
            "other",
            b"update-ca-certificates\n"
        ));
        assert_eq!(
            link_name("mozilla/ISRG_Root_X1.crt".rsplit('/').next().unwrap()),
            "ca-cert-ISRG_Root_X1.pem"
        );
        assert_eq!(
            link_name("Acme (Test), Root.crt"),
            "ca-cert-Acme_=Test=__Root.pem"
        );
        assert_eq!(link_name("local.pem"), "ca-cert-local.pem.pem");
    }
}
