//! The local vulnerability database: a directory of JSON files in the open formats, read for
//! the package names one scan looks up ([`Wanted`]) and indexed by the name advisories use.
//!
//! Layout (`kiln scan --db DIR`): every `*.json` file below DIR, in any sub-directory, is one
//! of
//! - an Alpine secdb file (`v3.20/main.json`: `distroversion`, `packages[].pkg.name` = the
//!   origin (source) package, `packages[].pkg.secfixes` = fixed version -> ids, where the
//!   version `"0"` lists ids that never affected Alpine's package);
//! - an OSV record (`id`, `affected[].package.{ecosystem,name}`, `affected[].ranges[].events`
//!   with `introduced`/`fixed`/`last_affected`, `affected[].versions`), for the ecosystems
//!   `PyPI` (PEP 440 ordering, PEP 503 names), `Alpine:vX.Y` (apk ordering, origin names) and
//!   `Debian:N` (dpkg ordering, source package names); records with `withdrawn` set are
//!   ignored, as are other ecosystems;
//! - a JSON array of OSV records (an export of many in one file);
//! - Debian's security tracker export (source package -> CVE id -> `releases` -> code name ->
//!   `status`, `fixed_version`, `urgency`), read by the generic path only.
//!
//! With an index (`DIR/.kiln/index`, [`super::index`]) the files are not read at all.
//!
//! Files are read on every core at once (`files.rs`). Each is parsed once into borrowed
//! text (the fast path, in `typed.rs`); only the entries for wanted names are validated and
//! kept, so a scan of a few dozen packages against tens of thousands of advisories costs little
//! more than reading the bytes. A file in none of these shapes, or a kept entry whose versions
//! cannot be read, is read again as a generic JSON tree (`generic.rs`), which checks every
//! entry and names the file and the entry in its error (`kiln db fetch` checks every entry of
//! every file it writes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::ScanError;
use super::entries::FileEntries;
pub use super::entries::{Advisory, Affected, Ecosystem, Entry, Event, Wanted};
use super::files::{Opener, in_parallel};
use super::generic::read_value;

/// The loaded database.
#[derive(Debug, Default)]
pub struct Database {
    /// Entries by (ecosystem, name): the origin for Alpine, the source package for Debian, the
    /// PEP 503 name for PyPI.
    pub(super) entries: BTreeMap<(Ecosystem, String), Vec<Entry>>,
    /// The Alpine branches secdb files were read for.
    pub(super) alpine_branches: Vec<String>,
    /// The ecosystems any advisory names.
    pub(super) ecosystems: Vec<Ecosystem>,
    /// The directory and the files read, in order (for [`Database::digest`]).
    pub(super) dir: PathBuf,
    pub(super) files: Vec<PathBuf>,
}

impl Database {
    /// Reads `files` (the database's, in [`super::files::database_files`] order) for the `wanted` names.
    pub(super) fn read_files(
        dir: &Path,
        files: Vec<PathBuf>,
        wanted: &Wanted,
    ) -> Result<Database, ScanError> {
        let mut db = Database {
            dir: dir.to_owned(),
            ..Database::default()
        };
        let reads = in_parallel(&files, |opener, buffer, _, path| {
            read_file(path, wanted, opener, buffer)
        });
        for read in reads {
            db.merge(read?);
        }
        db.files = files;
        Ok(db)
    }

    /// Which database this is: sha256 over each file's sha256 and path (relative to the
    /// directory), in order. Computed on demand (for `--attest`): it reads the files again.
    pub fn digest(&self) -> Result<crate::digest::Digest, ScanError> {
        let mut listing = String::new();
        for path in &self.files {
            let bytes = std::fs::read(path).map_err(|source| ScanError::Read {
                path: path.clone(),
                source,
            })?;
            let relative = path.strip_prefix(&self.dir).unwrap_or(path);
            listing.push_str(&format!(
                "{} {}\n",
                crate::digest::Digest::of(&bytes).hex(),
                relative.display()
            ));
        }
        Ok(crate::digest::Digest::of(listing.as_bytes()))
    }

    fn merge(&mut self, file: FileEntries) {
        for (key, entry) in file.entries {
            self.entries.entry(key).or_default().push(entry);
        }
        if let Some(branch) = file.alpine_branch
            && !self.alpine_branches.contains(&branch)
        {
            self.alpine_branches.push(branch);
        }
        for ecosystem in file.ecosystems {
            if !self.ecosystems.contains(&ecosystem) {
                self.ecosystems.push(ecosystem);
            }
        }
    }

    /// Adds one parsed file's advisories, every entry checked.
    pub fn add_file(&mut self, path: &Path, value: &Value) -> Result<(), ScanError> {
        let entries = read_value(&Arc::new(path.to_owned()), value, &Wanted::everything())?;
        self.merge(entries);
        Ok(())
    }

    /// The entries for `name` in `ecosystem`.
    pub fn entries(&self, ecosystem: &Ecosystem, name: &str) -> &[Entry] {
        self.entries
            .get(&(ecosystem.clone(), name.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// True when a secdb file for Alpine branch `branch` (`v3.20`) was read.
    pub fn has_alpine_branch(&self, branch: &str) -> bool {
        self.alpine_branches.iter().any(|b| b == branch)
    }

    /// True when some advisory (kept or not) names `ecosystem`.
    pub fn has_ecosystem(&self, ecosystem: &Ecosystem) -> bool {
        self.ecosystems.contains(ecosystem)
    }
}

/// The entries one file holds for `wanted`, read into `buffer`.
fn read_file(
    path: &Path,
    wanted: &Wanted,
    opener: &mut Opener,
    buffer: &mut Vec<u8>,
) -> Result<FileEntries, ScanError> {
    let failed = |source| ScanError::Read {
        path: path.to_owned(),
        source,
    };
    buffer.clear();
    std::io::Read::read_to_end(&mut opener.open(path).map_err(failed)?, buffer).map_err(failed)?;
    let file = Arc::new(path.to_owned());
    if let Some(entries) = super::typed::read(buffer, &file, wanted) {
        return Ok(entries);
    }
    let value: Value = serde_json::from_slice(buffer).map_err(|e| ScanError::Malformed {
        path: path.to_owned(),
        entry: "the file".to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    read_value(&file, &value, wanted)
}
