//! The index's records: the magic line and format version, the header (line 2) and the JSON
//! entry each group holds, and the conversion between an entry in memory ([`Entry`]) and its
//! indexed form (the source file as its line in the listing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::scan::Severity;
use crate::scan::entries::{Advisory, Affected, Entry, Event};

/// The index's first line, before the format version.
pub(super) const MAGIC: &str = "kiln vulnerability database index";
/// The format version this kiln writes and reads.
pub(super) const FORMAT: u32 = 1;

/// The index's second line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Header {
    pub(super) directories: usize,
    pub(super) files: usize,
    pub(super) names: usize,
    pub(super) directories_bytes: u64,
    pub(super) listing_bytes: u64,
    pub(super) table_bytes: u64,
    pub(super) body_bytes: u64,
    pub(super) alpine_branches: Vec<String>,
    pub(super) ecosystems: Vec<String>,
}

/// One entry of a group: the advisory and either `fixed` (secdb) or `ranges` and `versions`
/// (OSV).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IndexedEntry {
    /// The source file's line in the listing.
    pub(super) file: usize,
    pub(super) ids: Vec<String>,
    pub(super) severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ranges: Option<Vec<Vec<(EventKind, String)>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) versions: Vec<String>,
}

/// The kind of an event of an indexed OSV range.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
}

/// The indexed form of `entry`, its file given by `position` (path -> listing line).
pub(super) fn indexed_entry(entry: &Entry, position: &HashMap<&Path, usize>) -> IndexedEntry {
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

/// The entry an indexed one stands for, from `file` (its line of the listing, resolved).
pub(super) fn entry_of(indexed: IndexedEntry, file: Arc<PathBuf>) -> Result<Entry, String> {
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
