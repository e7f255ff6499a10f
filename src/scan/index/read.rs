//! Reading the index: the header checked against the file's length, the listings compared
//! with the files as they are now (a stale index is refused), then only the groups of the
//! wanted names read and turned back into entries.

use std::collections::HashMap;
use std::io::{BufRead as _, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{FORMAT, Header, IndexedEntry, MAGIC, entry_of};
use super::freshness::{check_fresh, directories_unchanged};
use super::{INDEX_DIR, INDEX_FILE};
use crate::scan::ScanError;
use crate::scan::db::Database;
use crate::scan::entries::{Ecosystem, Wanted};
use crate::scan::files::database_tree;

/// The database in `dir` from its index, for the `wanted` names, when there is an index. An
/// index that does not match the files is refused ([`ScanError::StaleIndex`]).
pub(in crate::scan) fn load(dir: &Path, wanted: &Wanted) -> Result<Option<Database>, ScanError> {
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
