//! Writing the index: every file read and checked, its stamp taken before, the groups
//! serialized behind their name table, the whole renamed into place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::format::{FORMAT, Header, MAGIC, indexed_entry};
use super::freshness::{change_time, relative, stamps};
use super::{INDEX_DIR, INDEX_FILE};
use crate::scan::ScanError;
use crate::scan::db::Database;
use crate::scan::entries::Wanted;
use crate::scan::files::database_tree;

/// How many times [`write()`] starts again when files change while it indexes them.
const ATTEMPTS: usize = 100;

/// What [`write()`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The index file.
    pub path: PathBuf,
    /// The database files indexed.
    pub files: usize,
    /// The package names with advisories.
    pub names: usize,
    /// The entries (advisory and package name pairs).
    pub entries: usize,
}

/// Indexes the database in `dir`: reads every file, checking every entry (a malformed one
/// fails naming its file and entry, and no index is written), and replaces `DIR/.kiln/index`.
pub fn write(dir: &Path) -> Result<Written, ScanError> {
    if !dir.is_dir() {
        return Err(ScanError::NoDatabase(dir.to_owned()));
    }
    let path = dir.join(INDEX_DIR).join(INDEX_FILE);
    let failed = |source| ScanError::WriteIndex {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join(INDEX_DIR)).map_err(failed)?;
    let mut attempt = 0;
    let (mut temp, directories, directory_stats, files, stats) = loop {
        // The temporary file's change time is the clock tick indexing starts in; a change made
        // from then on gets that time or a later one.
        let temp = tempfile::NamedTempFile::new_in(dir.join(INDEX_DIR)).map_err(failed)?;
        let started =
            change_time(&nix::sys::stat::fstat(temp.as_file()).map_err(|e| failed(e.into()))?);
        let (directories, files) = database_tree(dir)?;
        let directory_stats = stamps(&directories)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        // Taken before the files are read: a file changed while it is read no longer matches.
        let stats = stamps(&files).into_iter().collect::<Result<Vec<_>, _>>()?;
        if directory_stats
            .iter()
            .chain(&stats)
            .all(|stamp| stamp.changed < started)
        {
            break (temp, directories, directory_stats, files, stats);
        }
        attempt += 1;
        if attempt == ATTEMPTS {
            return Err(failed(std::io::Error::other(
                "the database's files keep changing while they are indexed",
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let db = Database::read_files(dir, files, &Wanted::everything())?;
    let unindexable = |path: &Path, entry: String, reason: &str| ScanError::Malformed {
        path: path.to_owned(),
        entry,
        reason: format!("{reason}, which the index cannot hold"),
    };

    let mut directory_listing = Vec::new();
    for (path, stat) in directories.iter().zip(&directory_stats) {
        let relative = match relative(dir, path) {
            b"" => b".".as_slice(),
            relative => relative,
        };
        if relative.contains(&b'\n') {
            return Err(unindexable(
                path,
                "the directory name".to_owned(),
                "a line break in the name",
            ));
        }
        // A directory's size says nothing the times do not.
        let times = stat.text.split_once(' ').map_or("", |(_, times)| times);
        directory_listing.extend_from_slice(times.as_bytes());
        directory_listing.push(b' ');
        directory_listing.extend_from_slice(relative);
        directory_listing.push(b'\n');
    }
    let mut listing = Vec::new();
    let mut position = HashMap::new();
    for (line, (path, stat)) in db.files.iter().zip(&stats).enumerate() {
        let relative = relative(dir, path);
        if relative.contains(&b'\n') {
            return Err(unindexable(
                path,
                "the file name".to_owned(),
                "a line break in the name",
            ));
        }
        listing.extend_from_slice(stat.text.as_bytes());
        listing.push(b' ');
        listing.extend_from_slice(relative);
        listing.push(b'\n');
        position.insert(path.as_path(), line);
    }

    let mut table = Vec::new();
    let mut body = Vec::new();
    let mut entries = 0;
    for ((ecosystem, name), group) in &db.entries {
        let ecosystem_name = ecosystem.to_string();
        let first_file = group.first().map_or(dir, |entry| entry.file.as_path());
        if ecosystem_name.contains(char::is_whitespace) {
            return Err(unindexable(
                first_file,
                format!("ecosystem `{ecosystem_name}`"),
                "white space in the ecosystem's name",
            ));
        }
        if name.is_empty() || name.contains(['\n', '\r']) {
            return Err(unindexable(
                first_file,
                format!("package `{name}`"),
                "an empty name or a line break in it",
            ));
        }
        let indexed = group
            .iter()
            .map(|entry| indexed_entry(entry, &position))
            .collect::<Vec<_>>();
        let start = body.len();
        serde_json::to_writer(&mut body, &indexed).map_err(|e| ScanError::WriteIndex {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        table.extend_from_slice(
            format!("{ecosystem_name} {start} {} {name}\n", body.len() - start).as_bytes(),
        );
        entries += group.len();
    }

    let header = Header {
        directories: directories.len(),
        files: db.files.len(),
        names: db.entries.len(),
        directories_bytes: directory_listing.len() as u64,
        listing_bytes: listing.len() as u64,
        table_bytes: table.len() as u64,
        body_bytes: body.len() as u64,
        alpine_branches: db.alpine_branches.clone(),
        ecosystems: db.ecosystems.iter().map(ToString::to_string).collect(),
    };
    let header = serde_json::to_string(&header).map_err(|e| failed(std::io::Error::other(e)))?;
    for part in [
        format!("{MAGIC} {FORMAT}\n{header}\n").as_bytes(),
        &directory_listing,
        &listing,
        &table,
        &body,
    ] {
        std::io::Write::write_all(&mut temp, part).map_err(failed)?;
    }
    // Readable by all, like the database files (a temporary file is private).
    temp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(&path).map_err(|e| failed(e.error))?;
    Ok(Written {
        path,
        files: db.files.len(),
        names: db.entries.len(),
        entries,
    })
}
