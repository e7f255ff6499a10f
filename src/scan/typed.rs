//! The fast path of [`super::db::Database::load`]: secdb and OSV files deserialized straight
//! into the few fields kiln uses (everything else skipped unparsed), several times faster than
//! a generic JSON tree on 50,000 advisories. Any file this path does not take in whole (an
//! unexpected shape, an unreadable version) is read again by the generic path, which names the
//! file and the entry in its error.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An Alpine secdb file.
#[derive(Deserialize)]
pub(crate) struct Secdb {
    pub distroversion: String,
    pub packages: Vec<SecdbPackage>,
}

#[derive(Deserialize)]
pub(crate) struct SecdbPackage {
    pub pkg: SecdbPkg,
}

#[derive(Deserialize)]
pub(crate) struct SecdbPkg {
    pub name: String,
    #[serde(default)]
    pub secfixes: Option<BTreeMap<String, Vec<String>>>,
}

/// An OSV record.
#[derive(Deserialize)]
pub(crate) struct Osv {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub database_specific: Option<SeverityWord>,
    #[serde(default)]
    pub affected: Vec<OsvAffected>,
}

#[derive(Deserialize)]
pub(crate) struct OsvAffected {
    pub package: OsvPackage,
    #[serde(default)]
    pub ranges: Vec<OsvRange>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<SeverityWord>,
    #[serde(default)]
    pub database_specific: Option<SeverityWord>,
}

#[derive(Deserialize)]
pub(crate) struct OsvPackage {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
pub(crate) struct OsvRange {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<OsvEvent>,
}

#[derive(Deserialize)]
pub(crate) struct OsvEvent {
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
    pub limit: Option<String>,
}

/// `{"severity": "HIGH", ...}` where the severity may be a word or something else (skipped).
#[derive(Deserialize)]
pub(crate) struct SeverityWord {
    #[serde(default)]
    pub severity: Option<serde_json::Value>,
}

/// A file in one of the shapes the fast path takes.
pub(crate) enum File {
    Secdb(Secdb),
    Osv(Vec<Osv>),
}

/// Parses `bytes` as a secdb file or OSV record(s); None when it is neither (or not JSON).
pub(crate) fn parse(bytes: &[u8]) -> Option<File> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'[' {
        return serde_json::from_slice(bytes).ok().map(File::Osv);
    }
    let looks_like_secdb = bytes.windows(15).any(|w| w == b"\"distroversion\"");
    if looks_like_secdb {
        serde_json::from_slice(bytes).ok().map(File::Secdb)
    } else {
        let record: Osv = serde_json::from_slice(bytes).ok()?;
        Some(File::Osv(vec![record]))
    }
}
