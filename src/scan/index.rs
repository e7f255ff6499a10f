//! The database index (`DIR/.kiln/index`): what `kiln scan` needs from every file of a
//! database directory, grouped by package name behind an offset table, so that a scan reads
//! the table and the few groups its image's names need instead of opening every file (OSV's
//! exports hold one file per advisory, tens of thousands of them).
//!
//! `kiln db index DIR` writes it, and `kiln db fetch` after each fetch, atomically (a temporary
//! file renamed into place, in a directory of its own so that writing it changes none of the
//! database's directories). It records the database's directories (modification and change
//! times) and files (size, modification and change times). A scan stats them without reading
//! them: when no directory changed, no file was added or removed and the walk is skipped;
//! then every file is compared. An index that no longer matches is refused, naming the file
//! added, removed or changed, rather than report from stale data. The change time cannot be
//! set back, so a file rewritten with its old size and modification time is caught too; the
//! price is that a copy of the directory (new change times) must be indexed again. Times
//! advance in clock ticks, so the index is only written once every recorded change time is
//! older than the tick it started in: a change made while indexing gets a later time.
//!
//! Format, version 1: two text lines, the directory and file listings and the name table as
//! text lines, then the groups as JSON.
//! ```text
//! kiln vulnerability database index 1
//! {"directories":D,"files":F,"names":N,"directories_bytes":DB,"listing_bytes":L,"table_bytes":T,"body_bytes":B,...}
//! MTIME CTIME PATH               D lines: directories, `.` for DIR; times as SECONDS.NANOSECONDS
//! SIZE MTIME CTIME PATH          F lines: files, PATH relative to DIR
//! ECOSYSTEM OFFSET LENGTH NAME   N lines: where NAME's group is in the body
//! [ENTRY, ...][ENTRY, ...]...    the groups (B bytes), each a JSON array
//! ```

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::db::Database;
use super::entries::{Advisory, Affected, Ecosystem, Entry, Event, Wanted};
pub use super::files::INDEX_DIR;
use super::files::{database_tree, in_parallel};
use super::{ScanError, Severity};

/// The index file in [`INDEX_DIR`].
pub const INDEX_FILE: &str = "index";
/// How many times [`write`] starts again when files change while it indexes them.
const ATTEMPTS: usize = 100;

const MAGIC: &str = "kiln vulnerability database index";
const FORMAT: u32 = 1;

/// The index's second line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    directories: usize,
    files: usize,
    names: usize,
    directories_bytes: u64,
    listing_bytes: u64,
    table_bytes: u64,
    body_bytes: u64,
    alpine_branches: Vec<String>,
    ecosystems: Vec<String>,
}

/// One entry of a group: the advisory and either `fixed` (secdb) or `ranges` and `versions`
/// (OSV).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexedEntry {
    /// The source file's line in the listing.
    file: usize,
    ids: Vec<String>,
    severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Vec<Vec<(EventKind, String)>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    versions: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
}

/// What [`write`] wrote.
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

fn indexed_entry(entry: &Entry, position: &HashMap<&Path, usize>) -> IndexedEntry {
    let (fixed, ranges, versions) = match &entry.affected {
        Affected::Before { fixed } => (Some(fixed.clone()), None, Vec::new()),
        Affected::Osv { ranges, versions } => {
            let ranges = ranges
                .iter()
                .map(|events| {
                    events
                        .iter()
                        .map(|event| match event {
                            Event::Introduced(v) => (EventKind::Introduced, v.clone()),
                            Event::Fixed(v) => (EventKind::Fixed, v.clone()),
                            Event::LastAffected(v) => (EventKind::LastAffected, v.clone()),
                        })
                        .collect()
                })
                .collect();
            (None, Some(ranges), versions.clone())
        }
    };
    IndexedEntry {
        // Every entry comes from one of the listed files.
        file: position.get(entry.file.as_path()).copied().unwrap_or(0),
        ids: entry.advisory.ids.clone(),
        severity: entry.advisory.severity.as_str().to_owned(),
        summary: entry.advisory.summary.clone(),
        fixed,
        ranges,
        versions,
    }
}

/// The database in `dir` from its index, for the `wanted` names, when there is an index. An
/// index that does not match the files is refused ([`ScanError::StaleIndex`]).
pub(super) fn load(dir: &Path, wanted: &Wanted) -> Result<Option<Database>, ScanError> {
    let index = dir.join(INDEX_DIR).join(INDEX_FILE);
    let file = match std::fs::File::open(&index) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ScanError::Read {
                path: index,
                source,
            });
        }
    };
    let bad = |reason: String| ScanError::BadIndex {
        index: index.clone(),
        dir: dir.to_owned(),
        reason,
    };
    let read_failed = |source| ScanError::Read {
        path: index.clone(),
        source,
    };
    let total = file.metadata().map_err(read_failed)?.len();

    let mut reader = std::io::BufReader::new(&file);
    let mut first = Vec::new();
    (&mut reader)
        .take(256)
        .read_until(b'\n', &mut first)
        .map_err(read_failed)?;
    let version = first
        .strip_prefix(MAGIC.as_bytes())
        .and_then(|rest| rest.strip_prefix(b" "))
        .and_then(|rest| rest.strip_suffix(b"\n"))
        .ok_or_else(|| bad(format!("it does not start with `{MAGIC} {FORMAT}`")))?;
    if version != FORMAT.to_string().as_bytes() {
        return Err(bad(format!(
            "it is format version `{}`, this kiln reads version {FORMAT}",
            String::from_utf8_lossy(version)
        )));
    }
    let mut second = Vec::new();
    (&mut reader)
        .take(1 << 20)
        .read_until(b'\n', &mut second)
        .map_err(read_failed)?;
    let header: Header =
        serde_json::from_slice(&second).map_err(|e| bad(format!("its header (line 2): {e}")))?;
    let sections_start = (first.len() + second.len()) as u64;
    let sections_bytes = [
        header.directories_bytes,
        header.listing_bytes,
        header.table_bytes,
    ]
    .iter()
    .try_fold(0u64, |sum, bytes| sum.checked_add(*bytes));
    let body_start = sections_bytes.and_then(|bytes| bytes.checked_add(sections_start));
    let described = body_start.and_then(|start| start.checked_add(header.body_bytes));
    let (Some(sections_bytes), Some(body_start), Some(described)) =
        (sections_bytes, body_start, described)
    else {
        return Err(bad("its header's section sizes overflow".to_owned()));
    };
    if described != total {
        return Err(bad(format!(
            "it is {total} bytes long, its header describes {described}: truncated or appended to"
        )));
    }
    let mut sections = vec![0; sections_bytes as usize];
    file.read_exact_at(&mut sections, sections_start)
        .map_err(read_failed)?;
    let (directory_listing, rest) = sections.split_at(header.directories_bytes as usize);
    let (listing, table) = rest.split_at(header.listing_bytes as usize);

    let not_lines =
        |what: &str, count: usize| bad(format!("its {what} does not hold {count} lines"));
    let directories = lines(directory_listing, header.directories)
        .ok_or_else(|| not_lines("directory listing", header.directories))?
        .into_iter()
        .map(|line| split_fields(line, 2).ok_or(line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|line| {
            bad(format!(
                "directory listing line `{}` is not `MTIME CTIME PATH`",
                String::from_utf8_lossy(line)
            ))
        })?;
    let listed = lines(listing, header.files)
        .ok_or_else(|| not_lines("file listing", header.files))?
        .into_iter()
        .map(|line| split_fields(line, 3).ok_or(line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|line| {
            bad(format!(
                "file listing line `{}` is not `SIZE MTIME CTIME PATH`",
                String::from_utf8_lossy(line)
            ))
        })?;
    // No directory changed: the files are the listed ones, without walking the tree.
    let files = if directories_unchanged(dir, &directories) {
        listed
            .iter()
            .map(|(_, path)| dir.join(std::ffi::OsStr::from_bytes(path)))
            .collect()
    } else {
        database_tree(dir)?.1
    };
    check_fresh(dir, &files, &listed).map_err(|reason| ScanError::StaleIndex {
        index: index.clone(),
        dir: dir.to_owned(),
        reason,
    })??;

    let mut db = Database {
        dir: dir.to_owned(),
        alpine_branches: header.alpine_branches,
        ..Database::default()
    };
    for name in &header.ecosystems {
        db.ecosystems.push(
            Ecosystem::from_osv(name)
                .ok_or_else(|| bad(format!("its header names ecosystem `{name}`")))?,
        );
    }
    let mut sources: HashMap<usize, Arc<PathBuf>> = HashMap::new();
    let mut ecosystem: Option<(&str, Ecosystem)> = None;
    for line in lines(table, header.names).ok_or_else(|| {
        bad(format!(
            "its name table does not hold {} lines",
            header.names
        ))
    })? {
        let malformed = || {
            bad(format!(
                "name table line `{}` is not `ECOSYSTEM OFFSET LENGTH NAME`",
                String::from_utf8_lossy(line)
            ))
        };
        let text = std::str::from_utf8(line).map_err(|_| malformed())?;
        let mut fields = text.splitn(4, ' ');
        let (Some(ecosystem_name), Some(offset), Some(length), Some(name)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed());
        };
        if ecosystem
            .as_ref()
            .is_none_or(|(cached, _)| *cached != ecosystem_name)
        {
            ecosystem = Some((
                ecosystem_name,
                Ecosystem::from_osv(ecosystem_name).ok_or_else(malformed)?,
            ));
        }
        let Some((_, current)) = &ecosystem else {
            return Err(malformed());
        };
        if !wanted.keeps(current, name) {
            continue;
        }
        let (Ok(offset), Ok(length)) = (offset.parse::<u64>(), length.parse::<usize>()) else {
            return Err(malformed());
        };
        if offset.saturating_add(length as u64) > header.body_bytes {
            return Err(bad(format!(
                "the group of {current} `{name}` lies outside the body"
            )));
        }
        let mut group = vec![0; length];
        file.read_exact_at(&mut group, body_start + offset)
            .map_err(read_failed)?;
        let group: Vec<IndexedEntry> = serde_json::from_slice(&group)
            .map_err(|e| bad(format!("the group of {current} `{name}`: {e}")))?;
        let kept = db
            .entries
            .entry((current.clone(), name.to_owned()))
            .or_default();
        for indexed in group {
            let source = files.get(indexed.file).ok_or_else(|| {
                bad(format!(
                    "the group of {current} `{name}` names file line {} of {}",
                    indexed.file,
                    files.len()
                ))
            })?;
            let source = sources
                .entry(indexed.file)
                .or_insert_with(|| Arc::new(source.clone()))
                .clone();
            kept.push(
                entry_of(indexed, source)
                    .map_err(|reason| bad(format!("the group of {current} `{name}`: {reason}")))?,
            );
        }
    }
    db.files = files;
    Ok(Some(db))
}

/// True when every listed directory (`times`, relative path) still has the times recorded.
fn directories_unchanged(dir: &Path, directories: &[(&[u8], &[u8])]) -> bool {
    directories.iter().all(|(times, path)| {
        let path = match *path {
            b"." => dir.to_owned(),
            path => dir.join(std::ffi::OsStr::from_bytes(path)),
        };
        nix::sys::stat::lstat(&path).is_ok_and(|stat| {
            let stamp = Stamp::of(&stat);
            stamp.text.split_once(' ').map(|(_, now)| now.as_bytes()) == Some(*times)
        })
    })
}

fn entry_of(indexed: IndexedEntry, file: Arc<PathBuf>) -> Result<Entry, String> {
    let severity = Severity::from_word(&indexed.severity)
        .ok_or_else(|| format!("severity `{}` is not a severity", indexed.severity))?;
    let affected = match (indexed.fixed, indexed.ranges) {
        (Some(fixed), None) if indexed.versions.is_empty() => Affected::Before { fixed },
        (None, Some(ranges)) => Affected::Osv {
            ranges: ranges
                .into_iter()
                .map(|events| {
                    events
                        .into_iter()
                        .map(|(kind, version)| match kind {
                            EventKind::Introduced => Event::Introduced(version),
                            EventKind::Fixed => Event::Fixed(version),
                            EventKind::LastAffected => Event::LastAffected(version),
                        })
                        .collect()
                })
                .collect(),
            versions: indexed.versions,
        },
        _ => return Err("an entry needs either `fixed` or `ranges`".to_owned()),
    };
    Ok(Entry {
        advisory: Arc::new(Advisory {
            ids: indexed.ids,
            severity,
            summary: indexed.summary,
        }),
        affected,
        file,
    })
}

/// `Err(reason)` when the `listed` files (stat text, relative path) are not `files` as they
/// are now; the inner error when a file cannot be stat'ed.
fn check_fresh(
    dir: &Path,
    files: &[PathBuf],
    listed: &[(&[u8], &[u8])],
) -> Result<Result<(), ScanError>, String> {
    let same_names = files.len() == listed.len()
        && files
            .iter()
            .zip(listed)
            .all(|(file, (_, path))| relative(dir, file) == *path);
    if !same_names {
        let listed_paths: std::collections::HashSet<&[u8]> =
            listed.iter().map(|(_, path)| *path).collect();
        let present: std::collections::HashSet<&[u8]> =
            files.iter().map(|file| relative(dir, file)).collect();
        let show = |path: &[u8]| String::from_utf8_lossy(path).into_owned();
        if let Some(added) = files
            .iter()
            .map(|file| relative(dir, file))
            .find(|path| !listed_paths.contains(path))
        {
            return Err(format!("`{}` was added since it was written", show(added)));
        }
        if let Some((_, removed)) = listed.iter().find(|(_, path)| !present.contains(path)) {
            return Err(format!(
                "`{}` was removed since it was written",
                show(removed)
            ));
        }
        return Err("its file listing is not in the order of the files".to_owned());
    }
    // Compared where they are taken, in each thread's buffer: tens of thousands of stamps.
    let same = in_parallel(files, |opener, buffer, index, path| {
        let stat = opener.stat(path).map_err(|source| ScanError::Read {
            path: path.to_owned(),
            source,
        })?;
        buffer.clear();
        write_stamp(buffer, &stat);
        Ok(buffer.as_slice() == listed[index].0)
    });
    for ((file, same), (recorded, _)) in files.iter().zip(same).zip(listed) {
        match same {
            Ok(true) => {}
            Ok(false) => {
                let now = stamps(std::slice::from_ref(file))
                    .pop()
                    .and_then(Result::ok)
                    .map_or_else(String::new, |stamp| stamp.text);
                return Err(format!(
                    "`{}` changed since it was written (size, modification and change times `{now}`, indexed `{}`)",
                    String::from_utf8_lossy(relative(dir, file)),
                    String::from_utf8_lossy(recorded)
                ));
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

/// `SIZE MTIME CTIME`, times as `SECONDS.NANOSECONDS`.
fn write_stamp(out: &mut Vec<u8>, stat: &nix::sys::stat::FileStat) {
    use std::io::Write as _;
    // Writing to a `Vec` cannot fail.
    let _ = write!(
        out,
        "{} {}.{:09} {}.{:09}",
        stat.st_size, stat.st_mtime, stat.st_mtime_nsec, stat.st_ctime, stat.st_ctime_nsec
    );
}

/// A file's or directory's `SIZE MTIME CTIME`, and its change time.
struct Stamp {
    text: String,
    changed: (i64, i64),
}

impl Stamp {
    fn of(stat: &nix::sys::stat::FileStat) -> Stamp {
        let mut text = Vec::new();
        write_stamp(&mut text, stat);
        Stamp {
            text: String::from_utf8_lossy(&text).into_owned(),
            changed: change_time(stat),
        }
    }
}

fn change_time(stat: &nix::sys::stat::FileStat) -> (i64, i64) {
    (stat.st_ctime, stat.st_ctime_nsec)
}

/// The [`Stamp`] of each of `paths`, on every core.
fn stamps(paths: &[PathBuf]) -> Vec<Result<Stamp, ScanError>> {
    in_parallel(paths, |opener, _, _, path| {
        let stat = opener.stat(path).map_err(|source| ScanError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Stamp::of(&stat))
    })
}

/// A listing line split after its first `fields` space-separated fields: those, and the path
/// (the rest, which may hold spaces).
fn split_fields(line: &[u8], fields: usize) -> Option<(&[u8], &[u8])> {
    let mut spaces = line
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b' ')
        .map(|(i, _)| i);
    let last = spaces.nth(fields - 1)?;
    let path = &line[last + 1..];
    (!path.is_empty()).then_some((&line[..last], path))
}

/// The `count` newline-terminated lines of `section`; None when it holds another number.
fn lines(section: &[u8], count: usize) -> Option<Vec<&[u8]>> {
    let body = section.strip_suffix(b"\n").unwrap_or(section);
    if section.is_empty() {
        return (count == 0).then(Vec::new);
    }
    if !section.ends_with(b"\n") {
        return None;
    }
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    (lines.len() == count).then_some(lines)
}

/// `path` relative to `dir`, as bytes: the database walk yields `dir` joined with the rest.
fn relative<'a>(dir: &Path, path: &'a Path) -> &'a [u8] {
    let path = path.as_os_str().as_bytes();
    match path.strip_prefix(dir.as_os_str().as_bytes()) {
        Some(rest) => rest.strip_prefix(b"/").unwrap_or(rest),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn fixture(dir: &Path) {
        write_file(
            &dir.join("alpine/v3.20/main.json"),
            r#"{"distroversion": "v3.20", "packages": [
                {"pkg": {"name": "openssl", "secfixes": {"3.3.2-r1": ["CVE-2 CVE-3"], "0": ["CVE-4"]}}},
                {"pkg": {"name": "musl"}}]}"#,
        );
        write_file(
            &dir.join("osv/PYSEC-1.json"),
            r#"{"id": "PYSEC-1", "aliases": ["CVE-1"], "summary": "s\u00e9",
                "database_specific": {"severity": "MODERATE"},
                "affected": [{"package": {"ecosystem": "PyPI", "name": "Zope.Interface"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "6.4.post1"}]},
                              {"type": "ECOSYSTEM", "events": [{"introduced": "7.0"}, {"last_affected": "7.1"}]}],
                   "versions": ["6.0"]},
                  {"package": {"ecosystem": "Debian:12", "name": "glibc"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]}]}]}"#,
        );
        write_file(
            &dir.join("osv/PYSEC-2.json"),
            r#"{"id": "PYSEC-2", "withdrawn": "2024-01-01T00:00:00Z", "affected": []}"#,
        );
    }

    #[test]
    fn the_index_holds_what_the_files_hold() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        let from_files = Database::load(temp.path(), &Wanted::everything()).unwrap();
        let written = write(temp.path()).unwrap();
        assert_eq!((written.files, written.names, written.entries), (3, 3, 3));
        let from_index = load(temp.path(), &Wanted::everything())
            .unwrap()
            .expect("the index is read");
        assert_eq!(
            format!("{:?}", from_index.entries),
            format!("{:?}", from_files.entries)
        );
        assert_eq!(from_index.alpine_branches, from_files.alpine_branches);
        assert_eq!(from_index.ecosystems, from_files.ecosystems);
        let through_load = Database::load(temp.path(), &Wanted::everything()).unwrap();
        assert_eq!(through_load.files, from_files.files);
        assert_eq!(
            through_load.digest().unwrap().hex(),
            from_files.digest().unwrap().hex()
        );
    }

    #[test]
    fn a_changed_added_or_removed_file_makes_the_index_stale() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        write(temp.path()).unwrap();
        let stale = |what: &str| {
            let err = Database::load(temp.path(), &Wanted::everything()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ScanError::StaleIndex { .. }) && message.contains(what),
                "{message}"
            );
            assert!(message.contains("kiln db index"), "{message}");
            write(temp.path()).unwrap();
            Database::load(temp.path(), &Wanted::everything()).unwrap();
        };
        write_file(
            &temp.path().join("osv/PYSEC-3.json"),
            r#"{"id": "PYSEC-3", "withdrawn": "2024-01-01T00:00:00Z"}"#,
        );
        stale("`osv/PYSEC-3.json` was added");
        std::fs::remove_file(temp.path().join("osv/PYSEC-3.json")).unwrap();
        stale("`osv/PYSEC-3.json` was removed");
        // Same size, same modification time, right after indexing: the change time tells.
        let path = temp.path().join("osv/PYSEC-2.json");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("2024-01-01", "2024-01-02")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        stale("`osv/PYSEC-2.json` changed");
    }

    #[test]
    fn a_malformed_index_is_named() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        let written = write(temp.path()).unwrap();
        let good = std::fs::read(&written.path).unwrap();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not an index\n".to_vec(), "does not start with"),
            (
                String::from_utf8(good.clone())
                    .unwrap()
                    .replacen("index 1\n", "index 9\n", 1)
                    .into_bytes(),
                "format version `9`",
            ),
            (good[..good.len() - 3].to_vec(), "truncated"),
        ];
        let text = String::from_utf8(good.clone()).unwrap();
        let table_line = text.lines().find(|l| l.starts_with("PyPI ")).unwrap();
        cases.push((
            text.replacen(table_line, &table_line.replacen(' ', "_", 1), 1)
                .into_bytes(),
            "name table line",
        ));
        let body_at = text.find("[{").unwrap();
        let mut garbled = good.clone();
        garbled[body_at + 2] = b'#';
        cases.push((garbled, "the group of"));
        for (bytes, expected) in cases {
            std::fs::write(&written.path, &bytes).unwrap();
            let err = load(temp.path(), &Wanted::everything()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ScanError::BadIndex { .. })
                    && message.contains(expected)
                    && message.contains(".kiln/index"),
                "{expected}: {message}"
            );
        }
    }
}
