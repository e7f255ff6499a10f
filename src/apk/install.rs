//! Applying a [`Plan`] onto an [`Overlay`] of the lower filesystem, as apk-tools' commit does
//! (apk.md §7.4, §7.5), updating the apk [`State`] that travels with it.
//!
//! For each change, in plan order: the package's `.pre-install`/`.pre-upgrade` is emulated
//! when every command in it is a recognized `addgroup`/`adduser` (so files owned by the user
//! it creates get the right ids), otherwise reported; data entries are extracted with owners
//! resolved by name against the target's `/etc/passwd` and `/etc/group` (falling back to the
//! numeric id); a file owned by another package is overwritten only under apk's
//! origin/`replaces`/`replaces_priority` rules, else [`ApkError::FileConflict`]; under `/etc` a
//! file modified since it was installed (its content differs from the db `Z:`) is kept and the
//! new one written as `<file>.apk-new`; files of the old version the new one no longer ships
//! become whiteouts; the db record is rebuilt from the extracted entries, and scripts.tar and
//! triggers follow the new checksum. Post-install/upgrade/deinstall scripts and triggers are not
//! run: each is returned as a warning naming the package.
//!
//! Left out: directory permission updates of existing directories, removal of directories that
//! become empty, `@etc/init.d` and `protected_paths.d` rules (all of `/etc` is protected),
//! hard links in packages (refused as unsupported), devices.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ApkError;
use super::checksum::Checksum;
use super::db::{Acl, DbDir, DbFile, InstalledPackage, StoredScript};
use super::edit::{content_of, put, whiteout};
use super::emulate::{
    busybox_install_script, emulate_script, ensure_applet_links, update_ca_certificates,
    update_ca_certificates_script,
};
use super::index::PackageInfo;
use super::package::Package;
use super::solve::{ChangeKind, Plan, Universe};
use super::state::State;
use crate::layer::reader::TarKind;
use crate::layer::{EntryKind, FileContent, LayerPath, Metadata};
use crate::rootfs::{FsView, NodeKind, Overlay};
use crate::users::etc::{EtcReadError, read_group, read_passwd};

/// User and group ids by name, from the view's /etc/passwd and /etc/group.
/// Ids by name.
type IdMap = BTreeMap<String, u32>;

fn id_maps(view: &dyn FsView) -> Result<(IdMap, IdMap), ApkError> {
    let view_error = |e: EtcReadError| ApkError::view(e.path)(e.source);
    let users = read_passwd(view)
        .map_err(view_error)?
        .into_iter()
        .map(|e| (e.name, e.uid))
        .collect();
    let groups = read_group(view)
        .map_err(view_error)?
        .into_iter()
        .map(|e| (e.name, e.gid))
        .collect();
    Ok((users, groups))
}

/// Inputs of [`apply_plan`] besides the plan.
pub struct ApplyContext<'a> {
    /// The candidates the plan indexes into.
    pub universe: &'a Universe,
    /// Verified packages by candidate index.
    pub packages: &'a BTreeMap<usize, Package>,
    /// SOURCE_DATE_EPOCH for emulated script output.
    pub source_date_epoch: i64,
    /// `apk del --purge`: removed packages' modified configuration files go too.
    pub purge_modified_config: bool,
}

/// Applies `plan` onto `overlay`, updating `state`; returns warnings (scripts and triggers
/// not emulated).
pub fn apply_plan(
    plan: &Plan,
    ctx: &ApplyContext<'_>,
    overlay: &mut Overlay<'_>,
    state: &mut State,
) -> Result<Vec<String>, ApkError> {
    let mut warnings = Vec::new();
    let mut touched_dirs: BTreeSet<String> = BTreeSet::new();
    let mut fired: BTreeSet<String> = BTreeSet::new();
    let mut applet_links_due = false;
    let mut ca_certificates_due = false;
    for change in &plan.changes {
        state.db_changed = true;
        let old = change
            .old
            .as_ref()
            .and_then(|o| state.db.get(&o.name).cloned());
        match (change.kind.clone(), change.new) {
            (ChangeKind::Remove, _) | (_, None) => {
                let Some(old) = old else { continue };
                for action in ["pre-deinstall", "post-deinstall"] {
                    if has_script(state, &old, action) {
                        warnings.push(format!("{}: .{action} script not run", old.info.id()));
                    }
                }
                purge(
                    overlay,
                    &old,
                    &BTreeSet::new(),
                    state,
                    &mut touched_dirs,
                    ctx.purge_modified_config,
                )?;
                remove_record(state, &old);
            }
            (_, Some(idx)) if ctx.universe.candidates[idx].virtual_package => {
                let info = ctx.universe.candidates[idx].info.clone();
                if let Some(old) = &old {
                    remove_record(state, old);
                }
                state.db.packages.retain(|p| p.info.name != info.name);
                state.db.packages.push(virtual_record(info));
            }
            (kind, Some(idx)) => {
                let pkg = ctx.packages.get(&idx).ok_or_else(|| {
                    ApkError::Unsupported(format!(
                        "installing `{}` without its verified package file",
                        ctx.universe.candidates[idx].info.id()
                    ))
                })?;
                let upgrade = !matches!(kind, ChangeKind::Install);
                let (pre, post) = if upgrade {
                    ("pre-upgrade", "post-upgrade")
                } else {
                    ("pre-install", "post-install")
                };
                if let Some(script) = pkg.scripts.get(pre) {
                    emulate_script(
                        pkg,
                        pre,
                        script,
                        overlay,
                        ctx.source_date_epoch,
                        &mut warnings,
                    )?;
                }
                let info = ctx.universe.candidates[idx].info.clone();
                let record = extract(pkg, info, old.as_ref(), overlay, state, &mut touched_dirs)?;
                if let Some(old) = &old {
                    let keep: BTreeSet<String> = record.files().map(|(p, _)| p).collect();
                    purge(overlay, old, &keep, state, &mut touched_dirs, false)?;
                    remove_record(state, old);
                }
                if let Some(script) = pkg.scripts.get(post) {
                    if busybox_install_script(pkg.info.name.as_str(), script) {
                        applet_links_due = true;
                    } else {
                        warnings.push(format!("{}: .{post} script not run", pkg.id()));
                    }
                }
                if pkg.scripts.contains_key("trigger") {
                    fired.insert(record.info.checksum.q1());
                }
                add_record(state, record, pkg);
            }
        }
    }
    // Triggers: those of packages changed now fire; others fire on directories touched.
    for (sum, globs) in &state.triggers {
        let matched: Vec<&String> = touched_dirs
            .iter()
            .filter(|dir| globs.iter().any(|g| glob_match(g, dir)))
            .collect();
        if fired.contains(sum) || !matched.is_empty() {
            let owner = state
                .db
                .packages
                .iter()
                .find(|p| p.info.checksum.q1() == *sum);
            let trigger = owner.and_then(|p| {
                state
                    .scripts
                    .scripts
                    .iter()
                    .find(|s| s.action == "trigger" && s.identity() == Some(p.info.checksum))
            });
            if let (Some(owner), Some(trigger)) = (owner, trigger) {
                if busybox_install_script(&owner.info.name, &trigger.content) {
                    applet_links_due = true;
                    continue;
                }
                if update_ca_certificates_script(&owner.info.name, &trigger.content) {
                    ca_certificates_due = true;
                    continue;
                }
            }
            let name = owner.map(|p| p.info.id()).unwrap_or_else(|| sum.clone());
            warnings.push(format!(
                "{name}: trigger not run (directories {})",
                if matched.is_empty() {
                    globs.join(" ")
                } else {
                    matched
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            ));
        }
    }
    // apk runs busybox's trigger first: later triggers may need its applets.
    if applet_links_due {
        warnings.extend(ensure_applet_links(overlay, ctx.source_date_epoch)?);
    }
    if ca_certificates_due {
        warnings.extend(update_ca_certificates(overlay, ctx.source_date_epoch)?);
    }
    Ok(warnings)
}

/// The installed-db record of a virtual package, with the fields apk writes for one (no `U:`,
/// `L:` or files).
fn virtual_record(info: PackageInfo) -> InstalledPackage {
    let mut record = InstalledPackage::new(info);
    record
        .header
        .retain(|(letter, _)| !matches!(letter, 'U' | 'L'));
    record
}

fn has_script(state: &State, pkg: &InstalledPackage, action: &str) -> bool {
    state
        .scripts
        .scripts
        .iter()
        .any(|s| s.action == action && s.identity() == Some(pkg.info.checksum))
}

fn is_protected(path: &str) -> bool {
    path == "etc" || path.starts_with("etc/")
}

/// Extracts `pkg` and returns its new db record.
fn extract(
    pkg: &Package,
    info: crate::apk::PackageInfo,
    old: Option<&InstalledPackage>,
    overlay: &mut Overlay<'_>,
    state: &mut State,
    touched: &mut BTreeSet<String>,
) -> Result<InstalledPackage, ApkError> {
    let (users, groups) = id_maps(overlay)?;
    let name = pkg.info.name.clone();
    let mut owners: BTreeMap<String, String> = state.db.owners();
    owners.retain(|_, owner| *owner != name);
    let old_sums: BTreeMap<String, String> = old
        .map(|o| {
            o.files()
                .filter_map(|(p, f)| f.checksum.clone().map(|z| (p, z)))
                .collect()
        })
        .unwrap_or_default();
    let mut record = InstalledPackage::new(info);
    if !pkg.info.replaces.is_empty() {
        record.replaces = Some(
            pkg.info
                .replaces
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    record.replaces_priority = pkg.info.replaces_priority;
    let mut dirs: Vec<DbDir> = Vec::new();
    let shown = pkg.id();
    for entry in &pkg.entries {
        let path_str = entry.path.as_str().to_owned();
        let uid = entry
            .uname
            .as_ref()
            .and_then(|n| users.get(n))
            .copied()
            .unwrap_or(entry.meta.uid);
        let gid = entry
            .gname
            .as_ref()
            .and_then(|n| groups.get(n))
            .copied()
            .unwrap_or(entry.meta.gid);
        let meta = Metadata {
            uid,
            gid,
            ..entry.meta.clone()
        };
        let acl = |default: u32| {
            (uid != 0 || gid != 0 || meta.mode != default || !meta.xattrs.is_empty()).then_some(
                Acl {
                    uid,
                    gid,
                    mode: meta.mode,
                    xattrs: None,
                },
            )
        };
        if entry.kind == TarKind::Dir {
            let resolved = overlay
                .resolve(&entry.path, true)
                .map_err(ApkError::view(entry.path.absolute()))?;
            match overlay
                .lstat_exact(&resolved)
                .map_err(ApkError::view(resolved.absolute()))?
            {
                Some(node) if node.kind == NodeKind::Dir => {}
                Some(_) => {
                    return Err(ApkError::UnsafeEntry {
                        package: shown,
                        entry: path_str,
                        reason: "a non-directory exists at this path".into(),
                    });
                }
                None => put(overlay, resolved, EntryKind::Dir, meta.clone()),
            }
            if !dirs.iter().any(|d| d.path == path_str) {
                dirs.push(DbDir {
                    path: path_str,
                    acl: acl(0o755),
                    files: Vec::new(),
                });
            }
            continue;
        }
        let parent = entry.path.parent().unwrap_or_else(LayerPath::root);
        let resolved_parent = overlay
            .resolve(&parent, true)
            .map_err(ApkError::view(parent.absolute()))?;
        let target =
            resolved_parent
                .join(entry.path.file_name())
                .map_err(|e| ApkError::UnsafeEntry {
                    package: shown.clone(),
                    entry: path_str.clone(),
                    reason: e.to_string(),
                })?;
        // Ownership (apk.md §7.4).
        if let Some(owner) = owners.get(&path_str).cloned() {
            let owner_pkg = state.db.get(&owner).cloned();
            let same_origin = owner_pkg
                .as_ref()
                .is_some_and(|o| o.info.origin.is_some() && o.info.origin == pkg.info.origin);
            let new_replaces = pkg.info.replaces.iter().any(|c| c.name == owner);
            let old_replaces = owner_pkg
                .as_ref()
                .is_some_and(|o| o.replaces_list().iter().any(|c| c.name == name));
            let old_prio = if old_replaces {
                owner_pkg
                    .as_ref()
                    .and_then(|o| o.replaces_priority)
                    .unwrap_or(0)
            } else {
                -1
            };
            let new_prio = if new_replaces {
                pkg.info.replaces_priority.unwrap_or(0)
            } else {
                -1
            };
            if !same_origin {
                if old_prio > new_prio {
                    continue;
                }
                if new_prio < 0 {
                    return Err(ApkError::FileConflict {
                        package: shown,
                        path: entry.path.absolute(),
                        owner: owner_pkg.map(|o| o.info.id()).unwrap_or(owner),
                    });
                }
            }
            take_file(state, &owner, &path_str);
        }
        let (kind, default_mode) = match &entry.kind {
            TarKind::File => (
                EntryKind::File(FileContent::Bytes(
                    entry
                        .content
                        .clone()
                        .unwrap_or_else(|| Arc::from(Vec::new())),
                )),
                0o644,
            ),
            TarKind::Symlink(t) => (EntryKind::Symlink(t.clone()), 0o777),
            TarKind::Fifo => (EntryKind::Fifo, 0o644),
            other => {
                return Err(ApkError::Unsupported(format!(
                    "package `{shown}`: entry `{path_str}` of type {other:?}"
                )));
            }
        };
        // Protected files modified since installed are kept; the new one becomes .apk-new.
        let mut dest = target.clone();
        let mut skip = false;
        if is_protected(&path_str) && matches!(entry.kind, TarKind::File) {
            if let Some(node) = overlay
                .lstat_exact(&target)
                .map_err(ApkError::view(target.absolute()))?
            {
                if matches!(node.kind, NodeKind::File { .. }) {
                    let on_disk = Checksum::sha1_of(&content_of(overlay, &target)?);
                    let recorded = old_sums
                        .get(&path_str)
                        .and_then(|z| Checksum::parse(z).ok());
                    if recorded != Some(on_disk) {
                        if Some(on_disk) == entry.checksum {
                            skip = true;
                        } else {
                            dest = resolved_parent
                                .join(&format!("{}.apk-new", entry.path.file_name()))
                                .map_err(|e| ApkError::UnsafeEntry {
                                    package: shown.clone(),
                                    entry: path_str.clone(),
                                    reason: e.to_string(),
                                })?;
                        }
                    }
                }
            }
        }
        if !skip {
            put(overlay, dest, kind, meta.clone());
        }
        touched.insert(resolved_parent.absolute());
        let dir_path = parent.as_str().to_owned();
        if !dirs.iter().any(|d| d.path == dir_path) {
            dirs.push(DbDir {
                path: dir_path.clone(),
                acl: None,
                files: Vec::new(),
            });
        }
        let file_acl = match &entry.kind {
            TarKind::Symlink(_) => Some(Acl {
                uid: 0,
                gid: 0,
                mode: 0o777,
                xattrs: None,
            }),
            _ => acl(default_mode),
        };
        if let Some(dir) = dirs.iter_mut().find(|d| d.path == dir_path) {
            dir.files.push(DbFile {
                name: entry.path.file_name().to_owned(),
                acl: file_acl,
                checksum: entry.checksum.map(|c| c.q1()),
            });
        }
    }
    record.dirs = dirs;
    Ok(record)
}

/// Removes `path` from `owner`'s db record (ownership moves to the new package).
fn take_file(state: &mut State, owner: &str, path: &str) {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", path),
    };
    for pkg in state
        .db
        .packages
        .iter_mut()
        .filter(|p| p.info.name == owner)
    {
        for d in pkg.dirs.iter_mut().filter(|d| d.path == dir) {
            d.files.retain(|f| f.name != name);
        }
    }
}

/// Deletes the files of `old` not in `keep` and not owned by another package; modified
/// protected files stay unless `modified_too` (`apk del --purge`).
fn purge(
    overlay: &mut Overlay<'_>,
    old: &InstalledPackage,
    keep: &BTreeSet<String>,
    state: &State,
    touched: &mut BTreeSet<String>,
    modified_too: bool,
) -> Result<(), ApkError> {
    let mut others = state.db.owners();
    others.retain(|_, owner| *owner != old.info.name);
    for (path, file) in old.files() {
        if keep.contains(&path) || others.contains_key(&path) {
            continue;
        }
        let Ok(layer_path) = LayerPath::new(&path) else {
            continue;
        };
        let parent = layer_path.parent().unwrap_or_else(LayerPath::root);
        let resolved_parent = overlay
            .resolve(&parent, true)
            .map_err(ApkError::view(parent.absolute()))?;
        let Ok(target) = resolved_parent.join(layer_path.file_name()) else {
            continue;
        };
        let Some(node) = overlay
            .lstat_exact(&target)
            .map_err(ApkError::view(target.absolute()))?
        else {
            continue;
        };
        if !modified_too && is_protected(&path) && matches!(node.kind, NodeKind::File { .. }) {
            let on_disk = Checksum::sha1_of(&content_of(overlay, &target)?);
            let recorded = file
                .checksum
                .as_deref()
                .and_then(|z| Checksum::parse(z).ok());
            if recorded != Some(on_disk) {
                continue;
            }
        }
        whiteout(overlay, target);
        touched.insert(resolved_parent.absolute());
    }
    Ok(())
}

fn remove_record(state: &mut State, old: &InstalledPackage) {
    let sum = old.info.checksum;
    state.db.packages.retain(|p| p.info.checksum != sum);
    state.scripts.scripts.retain(|s| s.identity() != Some(sum));
    let q1 = sum.q1();
    state.triggers.retain(|(s, _)| *s != q1);
}

fn add_record(state: &mut State, record: InstalledPackage, pkg: &Package) {
    let sum = record.info.checksum;
    let mtime = u64::try_from(record.info.build_time.unwrap_or(0)).unwrap_or(0);
    for (action, content) in &pkg.scripts {
        state.scripts.scripts.push(StoredScript {
            package: pkg.id(),
            checksum: sum.q1(),
            action: action.clone(),
            content: content.to_vec(),
            mtime,
        });
    }
    if !pkg.info.triggers.is_empty() {
        state.triggers.push((sum.q1(), pkg.info.triggers.clone()));
    }
    state
        .db
        .packages
        .retain(|p| p.info.name != record.info.name);
    state.db.packages.push(record);
}

/// fnmatch with FNM_PATHNAME: `*` and `?` do not match `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn inner(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                inner(&p[1..], s) || (s.first().is_some_and(|c| *c != b'/') && inner(p, &s[1..]))
            }
            (Some(b'?'), Some(c)) if *c != b'/' => inner(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => inner(&p[1..], &s[1..]),
            _ => false,
        }
    }
    inner(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_globs() {
        for (pattern, path, want) in [
            ("/usr/bin", "/usr/bin", true),
            ("/lib/modules/*", "/lib/modules/6.1", true),
            ("/lib/modules/*", "/lib/modules/6.1/kernel", false),
            ("/usr/share/fonts/*", "/usr/share/fonts", false),
            ("/usr/?in", "/usr/bin", true),
        ] {
            assert_eq!(glob_match(pattern, path), want, "{pattern} {path}");
        }
    }
}
