//! Core metadata (`METADATA`, PEP 566/643): the fields an installer needs to check a set of
//! distributions: `Name`, `Version`, `Requires-Python`, `Requires-Dist`, `Provides-Extra`.
//!
//! [`CoreMetadata::parse`] reads the RFC 822 style header block (it stops at the first blank
//! line, where the description body starts; folded lines are joined). The bytes come from a
//! wheel's `.dist-info/METADATA` or from a PEP 658 `<file>.metadata` served by an index, which
//! is the same file byte for byte.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::Requirement;

/// The installer-relevant fields of a distribution's core metadata.
#[derive(Clone, Debug)]
pub struct CoreMetadata {
    /// `Name` as written.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Requires-Python`, when given.
    pub requires_python: Option<VersionSpecifiers>,
    /// `Requires-Dist`, in file order.
    pub requires_dist: Vec<Requirement>,
    /// `Provides-Extra`, as written.
    pub provides_extra: Vec<String>,
}

/// Why a METADATA file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid core metadata for `{what}`: {problem}")]
pub struct MetadataError {
    /// The distribution or file it came from.
    pub what: String,
    /// What is wrong.
    pub problem: String,
}

impl CoreMetadata {
    /// Parses a METADATA file; `what` names its source in errors (`flask-3.1.3-py3-none-any.whl`).
    pub fn parse(what: &str, bytes: &[u8]) -> Result<CoreMetadata, MetadataError> {
        let err = |problem: String| MetadataError {
            what: what.to_owned(),
            problem,
        };
        let text = String::from_utf8_lossy(bytes);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                headers.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let field = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let name = field("name").ok_or_else(|| err("no `Name` field".to_owned()))?;
        let version_text = field("version").ok_or_else(|| err("no `Version` field".to_owned()))?;
        let version = Version::from_str(&version_text)
            .map_err(|e| err(format!("invalid `Version: {version_text}`: {e}")))?;
        let requires_python = match field("requires-python") {
            Some(text) if !text.is_empty() => Some(
                VersionSpecifiers::from_str(&text)
                    .map_err(|e| err(format!("invalid `Requires-Python: {text}`: {e}")))?,
            ),
            _ => None,
        };
        let mut requires_dist = Vec::new();
        for (_, value) in headers.iter().filter(|(k, _)| k == "requires-dist") {
            let requirement = crate::python::pep508::parse_requirement(value)
                .map_err(|e| err(format!("invalid `Requires-Dist: {value}`: {e}")))?;
            requires_dist.push(requirement);
        }
        let provides_extra = headers
            .iter()
            .filter(|(k, _)| k == "provides-extra")
            .map(|(_, v)| v.clone())
            .collect();
        Ok(CoreMetadata {
            name,
            version,
            requires_python,
            requires_dist,
            provides_extra,
        })
    }
}

/// A requirement without its marker, as users write it (`click>=8.1.3`, `foo[bar]==1`).
pub fn requirement_spec(requirement: &Requirement) -> String {
    let mut out = requirement.name.to_string();
    if !requirement.extras.is_empty() {
        let extras: Vec<&str> = requirement.extras.iter().map(|e| e.as_ref()).collect();
        out.push_str(&format!("[{}]", extras.join(",")));
    }
    if let Some(pep508_rs::VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url
    {
        out.push_str(&specifiers.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flask_like_metadata() {
        let text = "Metadata-Version: 2.1\nName: Flask\nVersion: 3.1.3\nRequires-Python: >=3.9\n\
                    Requires-Dist: Werkzeug>=3.1.0\nRequires-Dist: click>=8.1.3\n\
                    Requires-Dist: asgiref>=3.2 ; extra == \"async\"\nProvides-Extra: async\n\
                    Summary: a\n  folded\n\nRequires-Dist: body-is-not-parsed\n";
        let meta = CoreMetadata::parse("flask", text.as_bytes()).unwrap();
        assert_eq!(meta.name, "Flask");
        assert_eq!(meta.version.to_string(), "3.1.3");
        assert_eq!(meta.requires_dist.len(), 3);
        assert_eq!(requirement_spec(&meta.requires_dist[1]), "click>=8.1.3");
        assert_eq!(meta.provides_extra, ["async"]);
        assert!(CoreMetadata::parse("x", b"Name: x\n").is_err());
    }
}
