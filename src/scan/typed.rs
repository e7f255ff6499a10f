//! The fast path of [`super::db::Database::load`]: a secdb file or OSV record(s) deserialized
//! into borrowed text (no copy of a string without escapes, every field kiln does not use
//! skipped), then only the entries whose names a scan wants are checked and kept. Any file
//! this path does not take in whole (an unexpected shape, a kept entry with an unreadable
//! version) is read again by the generic path, which names the file and the entry in its
//! error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Severity;
use super::entries::{
    Advisory, Affected, Ecosystem, Entry, Event, FileEntries, Wanted, secdb_entry,
};

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A severity stated as a word; any other value (a CVSS list, a number) is
/// [`Severity::Unknown`].
#[derive(Debug, Clone, Copy)]
struct StatedSeverity(Severity);

impl Default for StatedSeverity {
    fn default() -> Self {
        StatedSeverity(Severity::Unknown)
    }
}

impl<'de> Deserialize<'de> for StatedSeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WordVisitor;
        impl<'de> Visitor<'de> for WordVisitor {
            type Value = StatedSeverity;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a severity")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity(
                    Severity::from_word(v).unwrap_or(Severity::Unknown),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<StatedSeverity, E> {
                Ok(StatedSeverity::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatedSeverity, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StatedSeverity::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StatedSeverity, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(StatedSeverity::default())
            }
        }
        deserializer.deserialize_any(WordVisitor)
    }
}

/// `{"severity": ...}` (other keys skipped).
#[derive(Deserialize, Default)]
struct SeverityHolder {
    #[serde(default)]
    severity: StatedSeverity,
}

impl SeverityHolder {
    fn of(holder: &Option<SeverityHolder>) -> Severity {
        holder.as_ref().map_or(Severity::Unknown, |h| h.severity.0)
    }
}

/// One JSON object file or one element of an array file: the fields of a secdb file and of
/// an OSV record, all optional (which of them are present tells the shape).
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow, default)]
    distroversion: Option<Text<'a>>,
    #[serde(borrow, default)]
    packages: Option<Vec<SecdbPackage<'a>>>,
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    aliases: Vec<Text<'a>>,
    #[serde(borrow, default)]
    withdrawn: Option<Text<'a>>,
    #[serde(borrow, default)]
    summary: Option<Text<'a>>,
    /// OSV's CVSS list (not scored), or a word.
    #[serde(default)]
    severity: StatedSeverity,
    #[serde(default)]
    database_specific: Option<SeverityHolder>,
    #[serde(borrow, default)]
    affected: Option<Vec<OsvAffected<'a>>>,
}

#[derive(Deserialize)]
struct SecdbPackage<'a> {
    #[serde(borrow)]
    pkg: SecdbPkg<'a>,
}

#[derive(Deserialize)]
struct SecdbPkg<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow, default)]
    secfixes: Option<BTreeMap<Text<'a>, Vec<Text<'a>>>>,
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Text<'_> {}
impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[derive(Deserialize)]
struct OsvAffected<'a> {
    #[serde(borrow)]
    package: OsvPackage<'a>,
    #[serde(borrow, default)]
    ranges: Vec<OsvRange<'a>>,
    #[serde(borrow, default)]
    versions: Vec<Text<'a>>,
    #[serde(default)]
    ecosystem_specific: Option<SeverityHolder>,
    #[serde(default)]
    database_specific: Option<SeverityHolder>,
}

#[derive(Deserialize)]
struct OsvPackage<'a> {
    #[serde(borrow)]
    ecosystem: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Deserialize)]
struct OsvRange<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    events: Vec<OsvEvent<'a>>,
}

#[derive(Deserialize)]
struct OsvEvent<'a> {
    #[serde(borrow, default)]
    introduced: Option<Text<'a>>,
    #[serde(borrow, default)]
    fixed: Option<Text<'a>>,
    #[serde(borrow, default)]
    last_affected: Option<Text<'a>>,
    #[serde(borrow, default)]
    limit: Option<Text<'a>>,
}

/// The entries of one file for `wanted`; None when the file is not in a shape this path takes
/// or a kept entry is not valid (the generic path then reads it and names the problem).
pub(crate) fn read(bytes: &[u8], file: &Arc<PathBuf>, wanted: &Wanted) -> Option<FileEntries> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    let mut out = FileEntries::default();
    if *first == b'[' {
        // Record by record, each dropped once its entries are taken: an export of tens of
        // thousands of records is never held as one list.
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let records = Records {
            file,
            wanted,
            out: &mut out,
        };
        de::DeserializeSeed::deserialize(records, &mut deserializer).ok()?;
        deserializer.end().ok()?;
        return Some(out);
    }
    let document: Document = serde_json::from_slice(bytes).ok()?;
    if document.distroversion.is_some() && document.packages.is_some() {
        add_secdb(document, file, wanted, &mut out)?;
    } else if document.id.is_some() && document.affected.is_some() {
        add_osv(document, file, wanted, &mut out)?;
    } else if document.id.is_none() || document.withdrawn.is_none() {
        // Neither shape (a withdrawn OSV record may drop its `affected` list).
        return None;
    }
    Some(out)
}

/// A JSON array of OSV records, each added as it is read.
struct Records<'r> {
    file: &'r Arc<PathBuf>,
    wanted: &'r Wanted,
    out: &'r mut FileEntries,
}

impl<'de> de::DeserializeSeed<'de> for Records<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of OSV records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Document<'de>>()? {
            add_osv(record, self.file, self.wanted, self.out)
                .ok_or_else(|| de::Error::custom("a kept entry is not valid"))?;
        }
        Ok(())
    }
}

fn add_secdb(
    document: Document,
    file: &Arc<PathBuf>,
    wanted: &Wanted,
    out: &mut FileEntries,
) -> Option<()> {
    let branch = document.distroversion?.0.into_owned();
    let ecosystem = Ecosystem::Alpine(branch.clone());
    for package in document.packages? {
        if !wanted.keeps(&ecosystem, &package.pkg.name) {
            continue;
        }
        for (fixed, ids) in package.pkg.secfixes.into_iter().flatten() {
            // `0`: these ids never affected Alpine's package.
            if &*fixed == "0" {
                continue;
            }
            if !crate::apk::version::is_valid(&fixed) {
                return None;
            }
            out.entries.push((
                (ecosystem.clone(), package.pkg.name.0.clone().into_owned()),
                secdb_entry(file, &fixed, ids.iter().map(|id| &**id)),
            ));
        }
    }
    out.saw(&ecosystem);
    out.alpine_branch = Some(branch);
    Some(())
}

fn add_osv(
    record: Document,
    file: &Arc<PathBuf>,
    wanted: &Wanted,
    out: &mut FileEntries,
) -> Option<()> {
    let id = record.id?;
    if id.is_empty() {
        return None;
    }
    if record.withdrawn.as_ref().is_some_and(|w| !w.is_empty()) {
        return Some(());
    }
    let record_severity = record
        .severity
        .0
        .max(SeverityHolder::of(&record.database_specific));
    // One advisory shared by the record's entries of the same severity.
    let mut shared: Option<Arc<Advisory>> = None;
    for affected in record.affected? {
        if affected.package.name.is_empty() {
            return None;
        }
        let Some(ecosystem) = Ecosystem::from_osv(&affected.package.ecosystem) else {
            continue;
        };
        out.saw(&ecosystem);
        let key = ecosystem.key(&affected.package.name);
        if !wanted.keeps(&ecosystem, &key) {
            continue;
        }
        let mut ranges = Vec::new();
        for range in affected.ranges {
            if !matches!(&*range.kind, "ECOSYSTEM" | "SEMVER") {
                continue;
            }
            let mut events = Vec::new();
            for event in range.events {
                let version = |v: Text| ecosystem.is_valid_version(&v).then(|| v.0.into_owned());
                let parsed = match (
                    event.introduced,
                    event.fixed,
                    event.last_affected,
                    event.limit,
                ) {
                    (Some(v), _, _, _) if &*v == "0" => Event::Introduced(v.0.into_owned()),
                    (Some(v), _, _, _) => Event::Introduced(version(v)?),
                    (None, Some(v), _, _) => Event::Fixed(version(v)?),
                    (None, None, Some(v), _) => Event::LastAffected(version(v)?),
                    // `limit` bounds a git walk; ecosystem ranges need not honor it.
                    (None, None, None, Some(v)) => {
                        version(v)?;
                        continue;
                    }
                    (None, None, None, None) => return None,
                };
                events.push(parsed);
            }
            ranges.push(events);
        }
        let severity = SeverityHolder::of(&affected.ecosystem_specific)
            .max(SeverityHolder::of(&affected.database_specific))
            .max(record_severity);
        let advisory = match shared.take() {
            Some(existing) if existing.severity == severity => existing,
            _ => Arc::new(Advisory {
                ids: std::iter::once(&id)
                    .chain(&record.aliases)
                    .map(|id| id.0.clone().into_owned())
                    .collect(),
                severity,
                summary: record.summary.as_ref().map(|s| s.0.clone().into_owned()),
            }),
        };
        shared = Some(advisory.clone());
        out.entries.push((
            (ecosystem, key.into_owned()),
            Entry {
                advisory,
                affected: Affected::Osv {
                    ranges,
                    versions: affected
                        .versions
                        .into_iter()
                        .map(|v| v.0.into_owned())
                        .collect(),
                },
                file: file.clone(),
            },
        ));
    }
    Some(())
}
