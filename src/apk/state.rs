//! apk's state in an image, loaded from the lower filesystem and changed in memory while
//! commands apply: the installed db, world, scripts.tar and triggers ([`State`]), and writing
//! back the files that changed.

use std::sync::Arc;

use super::ApkError;
use super::PackageConstraint;
use super::db::{InstalledDb, ScriptsTar};
use super::db::{parse_triggers, parse_world, write_triggers, write_world};
use super::edit::{lp, put};
use crate::layer::{EntryKind, FileContent, Metadata};
use crate::rootfs::{FsView, Overlay};
use crate::users::etc::read_etc;

/// apk's state files, loaded from the lower filesystem and changed in memory.
#[derive(Clone, Debug)]
pub struct State {
    /// `/lib/apk/db/installed`.
    pub db: InstalledDb,
    /// `/etc/apk/world`.
    pub world: Vec<PackageConstraint>,
    /// True when world must be rewritten.
    pub world_changed: bool,
    /// `/lib/apk/db/scripts.tar`.
    pub scripts: ScriptsTar,
    /// `/lib/apk/db/triggers`.
    pub triggers: Vec<(String, Vec<String>)>,
    /// True when installed/scripts.tar/triggers must be rewritten.
    pub db_changed: bool,
}

fn read_optional(view: &dyn FsView, path: &str) -> Result<Option<Vec<u8>>, ApkError> {
    read_etc(view, &lp(path)).map_err(ApkError::view(format!("/{path}")))
}

fn text(bytes: Vec<u8>, path: &str) -> Result<String, ApkError> {
    String::from_utf8(bytes).map_err(|_| ApkError::Malformed {
        file: format!("/{path}"),
        line: 0,
        message: "not UTF-8".into(),
    })
}

impl State {
    /// Reads the state files of `view`; missing files read as empty.
    pub fn load(view: &dyn FsView) -> Result<State, ApkError> {
        let installed = match read_optional(view, "lib/apk/db/installed")? {
            Some(bytes) => text(bytes, "lib/apk/db/installed")?,
            None => String::new(),
        };
        let world = match read_optional(view, "etc/apk/world")? {
            Some(bytes) => text(bytes, "etc/apk/world")?,
            None => String::new(),
        };
        let scripts = match read_optional(view, "lib/apk/db/scripts.tar")? {
            Some(bytes) => ScriptsTar::parse(&bytes, "/lib/apk/db/scripts.tar")?,
            None => ScriptsTar::default(),
        };
        let triggers = match read_optional(view, "lib/apk/db/triggers")? {
            Some(bytes) => parse_triggers(&text(bytes, "lib/apk/db/triggers")?),
            None => Vec::new(),
        };
        Ok(State {
            db: InstalledDb::parse(&installed, "/lib/apk/db/installed")?,
            world: parse_world(&world, "/etc/apk/world")?,
            world_changed: false,
            scripts,
            triggers,
            db_changed: false,
        })
    }

    /// Writes the changed state files into `overlay` (paths resolved through symlinks such as
    /// `/lib/apk -> ../usr/lib/apk`), keeping each replaced file's owner and mode.
    pub fn write(&self, overlay: &mut Overlay<'_>, mtime: i64) -> Result<(), ApkError> {
        let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
        if self.db_changed {
            let mut db = self.db.clone();
            db.sort();
            files.push(("lib/apk/db/installed", db.write().into_bytes()));
            files.push(("lib/apk/db/scripts.tar", self.scripts.write()));
            files.push((
                "lib/apk/db/triggers",
                write_triggers(&self.triggers).into_bytes(),
            ));
        }
        if self.world_changed {
            files.push(("etc/apk/world", write_world(&self.world).into_bytes()));
        }
        for (path, bytes) in files {
            let target = overlay
                .resolve(&lp(path), true)
                .map_err(ApkError::view(format!("/{path}")))?;
            let mut meta = match overlay
                .lstat_exact(&target)
                .map_err(ApkError::view(format!("/{path}")))?
            {
                Some(node) => node.meta,
                None => Metadata::root_owned(0o644),
            };
            meta.mtime = mtime;
            put(
                overlay,
                target,
                EntryKind::File(FileContent::Bytes(Arc::from(bytes))),
                meta,
            );
        }
        Ok(())
    }
}
