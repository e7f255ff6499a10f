//! Listings of distribution files: a host directory, or an index page (PEP 691 JSON or
//! PEP 503 HTML, read by a tolerant anchor scanner), turned into [`DistFile`]s.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::Url;

use super::types::{DistFile, FileLocation, IndexError, MetadataHint, Source, project_of, redact};

/// The distribution files in a host directory (a find-links dir or a PEP 503 project dir).
pub(crate) fn list_dir(dir: &Path, display: &str) -> Result<Vec<DistFile>, IndexError> {
    let entries = std::fs::read_dir(dir).map_err(|e| IndexError::Local {
        path: dir.to_owned(),
        source: e,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| project_of(n).is_some())
        .collect();
    names.sort();
    Ok(names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let metadata = if dir.join(format!("{name}.metadata")).is_file() {
                MetadataHint::Present { sha256: None }
            } else {
                MetadataHint::Absent
            };
            DistFile {
                filename: name.clone(),
                location: FileLocation::Local(path),
                sha256: None,
                requires_python: None,
                yanked: None,
                metadata,
                source: display.to_owned(),
            }
        })
        .collect())
}

/// A fetched index page.
pub(crate) enum Page {
    Json(String),
    Html(String),
}

impl Page {
    /// The files the page lists; `local` pages may link `file://` URLs.
    pub(crate) fn into_files(
        self,
        base: &Url,
        source: &Source,
        local: bool,
    ) -> Result<Vec<DistFile>, IndexError> {
        let page_name = if local {
            base.to_file_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| base.to_string())
        } else {
            redact(base)
        };
        let mut out = Vec::new();
        let mut add = |filename: String,
                       href: &str,
                       sha256: Option<String>,
                       requires_python: Option<String>,
                       yanked: Option<String>,
                       metadata: MetadataHint|
         -> Result<(), IndexError> {
            let url = base.join(href).map_err(|e| IndexError::Page {
                url: page_name.clone(),
                problem: format!("bad link `{href}`: {e}"),
            })?;
            let location = match url.scheme() {
                "http" | "https" => FileLocation::Http(url),
                "file" if local => {
                    FileLocation::Local(url.to_file_path().map_err(|_| IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("bad file link `{href}`"),
                    })?)
                }
                "file" => {
                    return Err(IndexError::RemoteFileLink {
                        page: page_name.clone(),
                        link: href.to_owned(),
                    });
                }
                other => {
                    return Err(IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("unsupported link scheme `{other}`"),
                    });
                }
            };
            if project_of(&filename).is_none() {
                return Ok(());
            }
            out.push(DistFile {
                filename,
                location,
                sha256: sha256.map(|h| h.to_ascii_lowercase()),
                requires_python,
                yanked,
                metadata,
                source: source.display.clone(),
            });
            Ok(())
        };
        match self {
            Page::Json(text) => {
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| IndexError::Page {
                        url: page_name.clone(),
                        problem: format!("invalid JSON: {e}"),
                    })?;
                let files = value
                    .get("files")
                    .and_then(|f| f.as_array())
                    .ok_or_else(|| IndexError::Page {
                        url: page_name.clone(),
                        problem: "no `files` array".to_owned(),
                    })?;
                for file in files {
                    let (Some(filename), Some(href)) = (
                        file.get("filename").and_then(|v| v.as_str()),
                        file.get("url").and_then(|v| v.as_str()),
                    ) else {
                        continue;
                    };
                    let sha256 = file
                        .get("hashes")
                        .and_then(|h| h.get("sha256"))
                        .and_then(|h| h.as_str())
                        .map(str::to_owned);
                    let requires_python = file
                        .get("requires-python")
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_owned);
                    let yanked = match file.get("yanked") {
                        Some(serde_json::Value::Bool(true)) => Some(String::new()),
                        Some(serde_json::Value::String(reason)) => Some(reason.clone()),
                        _ => None,
                    };
                    let hint = file
                        .get("core-metadata")
                        .or_else(|| file.get("dist-info-metadata"));
                    let metadata = match hint {
                        None => MetadataHint::Unknown,
                        Some(serde_json::Value::Bool(false)) => MetadataHint::Absent,
                        Some(serde_json::Value::Object(map)) => MetadataHint::Present {
                            sha256: map
                                .get("sha256")
                                .and_then(|v| v.as_str())
                                .map(|s| s.to_ascii_lowercase()),
                        },
                        Some(_) => MetadataHint::Present { sha256: None },
                    };
                    add(
                        filename.to_owned(),
                        href,
                        sha256,
                        requires_python,
                        yanked,
                        metadata,
                    )?;
                }
            }
            Page::Html(text) => {
                for anchor in anchors(&text) {
                    let Some(href) = anchor.attrs.get("href") else {
                        continue;
                    };
                    let (path_part, fragment) = match href.split_once('#') {
                        Some((p, f)) => (p, Some(f)),
                        None => (href.as_str(), None),
                    };
                    let filename = if anchor.text.trim().is_empty() {
                        path_part.rsplit('/').next().unwrap_or_default().to_owned()
                    } else {
                        anchor.text.trim().to_owned()
                    };
                    let sha256 = fragment
                        .and_then(|f| f.strip_prefix("sha256="))
                        .map(str::to_owned);
                    let requires_python = anchor
                        .attrs
                        .get("data-requires-python")
                        .filter(|s| !s.trim().is_empty())
                        .cloned();
                    let yanked = anchor.attrs.get("data-yanked").cloned();
                    let hint = anchor
                        .attrs
                        .get("data-core-metadata")
                        .or_else(|| anchor.attrs.get("data-dist-info-metadata"));
                    let metadata = match hint {
                        None => MetadataHint::Unknown,
                        Some(v) if v == "false" => MetadataHint::Absent,
                        Some(v) => MetadataHint::Present {
                            sha256: v.strip_prefix("sha256=").map(|s| s.to_ascii_lowercase()),
                        },
                    };
                    add(filename, href, sha256, requires_python, yanked, metadata)?;
                }
            }
        }
        Ok(out)
    }
}

pub(crate) struct Anchor {
    attrs: BTreeMap<String, String>,
    text: String,
}

/// The `<a ...>text</a>` elements of an HTML page (a tolerant scanner, enough for PEP 503).
pub(crate) fn anchors(html: &str) -> Vec<Anchor> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<a") {
        let start = at + found;
        let after = start + 2;
        at = after;
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let Some(end_rel) = lower[after..].find('>') else {
            break;
        };
        let tag_end = after + end_rel;
        let attrs = parse_attrs(&html[after..tag_end]);
        let close = lower[tag_end..]
            .find("</a")
            .map_or(html.len(), |i| tag_end + i);
        let text = unescape(&html[tag_end + 1..close.max(tag_end + 1)]);
        out.push(Anchor { attrs, text });
        at = close.max(tag_end + 1);
    }
    out
}

pub(crate) fn parse_attrs(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let chars: Vec<char> = tag.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                let vstart = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                value = chars[vstart..i].iter().collect();
                i += 1;
            } else {
                let vstart = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vstart..i].iter().collect();
            }
        }
        out.insert(name, unescape(&value));
    }
    out
}

pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}
