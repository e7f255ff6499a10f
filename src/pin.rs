//! `kiln pin`: keeps a Dockerfile's FROM lines pinned by digest, as Renovate does.
//!
//! Each `FROM` naming a registry image by tag is resolved to the digest the registry serves for
//! that tag now (the index digest for a multi-platform image, so every platform stays
//! selectable) and rewritten as `name:tag@sha256:...`; a FROM already pinned is checked against
//! the tag's current digest and updated when the tag moved. Stages, `scratch`, local `oci:`
//! bases and references built from ARGs are left alone. Only the image word of each FROM line
//! changes; the rest of the file is kept byte for byte, and the file is replaced atomically.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::dockerfile;
use crate::registry::{self, Reference, RegistryOptions};

/// One FROM line's pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// 1-based line of the FROM.
    pub line: usize,
    /// The image word as written.
    pub written: String,
    /// The digest the tag resolves to now.
    pub current: Digest,
    /// The digest the line was pinned to, if it was.
    pub pinned: Option<Digest>,
    /// The image word to write (`name:tag@sha256:...`).
    pub updated: String,
}

impl Pin {
    /// True when the line is not pinned, or pinned to another digest than the tag's current one.
    pub fn is_stale(&self) -> bool {
        self.pinned.as_ref() != Some(&self.current)
    }
}

/// Why pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The Dockerfile could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile does not parse.
    #[error("failed to parse `{path}`")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with the line.
        #[source]
        source: dockerfile::ParseError,
    },
    /// A FROM reference is not a valid image reference.
    #[error("{path}:{line}: `{image}` is not a valid image reference")]
    Reference {
        /// The file.
        path: PathBuf,
        /// The FROM's line.
        line: usize,
        /// The image word.
        image: String,
        /// The cause.
        #[source]
        source: registry::ReferenceError,
    },
    /// The registry could not resolve a tag.
    #[error("{path}:{line}: failed to resolve `{image}`")]
    Resolve {
        /// The file.
        path: PathBuf,
        /// The FROM's line.
        line: usize,
        /// The image word.
        image: String,
        /// The cause.
        #[source]
        source: Box<registry::RegistryError>,
    },
}

/// Resolves every pinnable FROM of the Dockerfile at `path` (reads the registry, writes nothing).
pub fn plan(path: &Path, options: &RegistryOptions) -> Result<Vec<Pin>, PinError> {
    let text = std::fs::read_to_string(path).map_err(|source| PinError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let parsed = dockerfile::parse(&text).map_err(|source| PinError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let mut stage_names: Vec<String> = Vec::new();
    let mut pins = Vec::new();
    for node in parsed.nodes.iter().filter(|n| n.keyword == "from") {
        let Some(image) = node.args.first() else {
            continue;
        };
        if let [_, as_word, name] = node.args.as_slice()
            && as_word.eq_ignore_ascii_case("as")
        {
            stage_names.push(name.to_lowercase());
        }
        if !names_registry_image(image, &stage_names) || image.contains('$') {
            continue;
        }
        let reference: Reference = image.parse().map_err(|source| PinError::Reference {
            path: path.to_owned(),
            line: node.start_line,
            image: image.clone(),
            source,
        })?;
        let pinned = reference.digest().cloned();
        let by_tag = match reference.tag() {
            Some(tag) => Reference::new(
                reference.registry(),
                reference.repository(),
                Some(tag),
                None,
            ),
            // Pinned by digest only: nothing to follow.
            None if pinned.is_some() => continue,
            None => Reference::new(
                reference.registry(),
                reference.repository(),
                Some("latest"),
                None,
            ),
        }
        .map_err(|source| PinError::Reference {
            path: path.to_owned(),
            line: node.start_line,
            image: image.clone(),
            source,
        })?;
        let (current, _) =
            registry::fetch_raw_manifest(&by_tag, options).map_err(|source| PinError::Resolve {
                path: path.to_owned(),
                line: node.start_line,
                image: image.clone(),
                source: Box::new(source),
            })?;
        let base = image.split('@').next().unwrap_or(image);
        let base = if reference.tag().is_none() {
            format!("{base}:latest")
        } else {
            base.to_owned()
        };
        pins.push(Pin {
            line: node.start_line,
            written: image.clone(),
            updated: format!("{base}@{current}"),
            current,
            pinned,
        });
    }
    Ok(pins)
}

/// True when `image` names a registry image (not `scratch`, a stage, or a local layout).
fn names_registry_image(image: &str, stage_names: &[String]) -> bool {
    let lower = image.to_lowercase();
    lower != "scratch"
        && !stage_names.contains(&lower)
        && !image.starts_with("oci:")
        && !image.starts_with("oci-archive:")
}

/// Rewrites the stale pins of `pins` into the Dockerfile at `path` (atomically).
pub fn apply(path: &Path, pins: &[Pin]) -> Result<(), PinError> {
    let io = |action: &'static str| {
        move |source| PinError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let text = std::fs::read_to_string(path).map_err(io("read"))?;
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    for pin in pins.iter().filter(|p| p.is_stale()) {
        if let Some(line) = lines.get_mut(pin.line - 1)
            && let Some(at) = line.find(&pin.written)
        {
            line.replace_range(at..at + pin.written.len(), &pin.updated);
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a temp file beside"))?;
    std::io::Write::write_all(&mut temp, lines.concat().as_bytes()).map_err(io("write"))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = temp.as_file().set_permissions(meta.permissions());
    }
    temp.persist(path).map_err(|e| PinError::Io {
        action: "replace",
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}
