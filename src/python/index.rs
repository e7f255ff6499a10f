//! Where distributions come from: `--find-links` locations and package indexes (the simple
//! repository API), fetched ON THE BUILD HOST on the container's behalf, the way the pip inside
//! the container would reach the network.
//!
//! A [`Source`] is a find-links location or an index, each either a host directory (an
//! absolute path or a `file://` URL) or an HTTP(S) URL:
//!
//! * find-links directory: a flat directory of distribution files; find-links URL: a flat HTML
//!   page of links;
//! * index directory: PEP 503 layout, `<root>/<normalized-name>/` holding the files, or an
//!   `index.html` of links next to them; `<file>.metadata` beside a wheel is its PEP 658
//!   metadata;
//! * index URL: `GET <root>/<normalized-name>/` asking for PEP 691 JSON
//!   (`application/vnd.pypi.simple.v1+json`) and falling back to PEP 503 HTML (`#sha256=`
//!   fragments, `data-requires-python`, `data-yanked`, `data-core-metadata`).
//!
//! [`IndexClient::files`] lists a project's [`DistFile`]s across all sources;
//! [`IndexClient::fetch`] copies one into kiln's download cache ([`DownloadCache`]: found by
//! its sha256, verified before the atomic rename, reused when present); [`IndexClient::core_metadata`] gets
//! the PEP 658 `.metadata` file when the source has one. A link on a remote page may not point
//! at a `file://` URL (a remote index never reads host files). User names and passwords in URLs
//! are used for requests but never appear in messages or materials ([`redact`]). With
//! `offline`, no HTTP request is made: only host directories and the cache are used.

mod client;
mod listing;
mod types;

pub use client::{IndexClient, SIMPLE_ACCEPT, parallel};
pub use types::{
    CachedFile, DistFile, FileLocation, IndexError, Location, MetadataHint, Source, SourceKind,
    project_of, redact,
};

#[cfg(test)]
mod tests;
