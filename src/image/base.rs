//! Loading base images from an OCI layout directory or an oci-archive.
//!
//! The reference picks an `index.json` entry: a tag (matched against
//! `org.opencontainers.image.ref.name`, or the full `io.containerd.image.name`), a digest
//! (`sha256:...`), or nothing when the layout holds exactly one entry. An entry that is an
//! image index (OCI or Docker list) is resolved to the first manifest matching the platform,
//! skipping attestation entries, as containerd does. OCI and Docker schema-2 manifests,
//! configs and layer media types are accepted.
//!
//! Every blob the image uses (index, manifest, config, layers) is copied into the store and
//! verified against its digest and size on the way; a mismatch names the blob and both
//! digests. The result is a [`BaseImage`] value whose layers are ready for `assemble`.

use std::io::Read;
use std::path::{Component, Path};

use super::layout::{check_layout_file, read_index};
use super::manifest::{
    ANNOTATION_IMAGE_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest, layer_compression,
};
use super::{ImageConfig, ImageError, Platform, blobs};
use crate::digest::{Digest, HashingReader};
use crate::layer::Layer;
use crate::store::Store;

/// How deep image indexes may nest before kiln gives up.
const MAX_INDEX_DEPTH: usize = 4;
/// Largest manifest, index or config kiln reads into memory (registries cap manifests at 4 MiB).
const MAX_JSON_BLOB: u64 = 16 << 20;

/// A base image whose blobs are all in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseImage {
    /// The config, as stored.
    pub config: ImageConfig,
    /// The layers, bottom first: digest, size and media type from the manifest, diffID from
    /// `config.rootfs.diff_ids` at the same position.
    pub layers: Vec<Layer>,
    /// The digest of the platform-specific image manifest.
    pub manifest_digest: Digest,
    /// Where it came from, for provenance and messages (`oci:DIR:tag`, `oci-archive:FILE@sha256:...`).
    pub source: String,
}

/// Loads the image `reference` for `platform` from the OCI layout directory `dir`.
pub fn load_oci_layout(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<BaseImage, ImageError> {
    load(
        store,
        dir,
        reference,
        platform,
        &format!("oci:{}", dir.display()),
    )
}

/// Loads the image `reference` for `platform` from the oci-archive `file`.
///
/// The archive's layout files are unpacked into a private temp directory (only `oci-layout`,
/// `index.json` and `blobs/<alg>/<hex>` regular files; anything with `..`, an absolute path or
/// another type is refused), then read as a layout.
pub fn load_oci_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<BaseImage, ImageError> {
    let scratch = unpacked_archive(store, file)?;
    load(
        store,
        scratch.path(),
        reference,
        platform,
        &format!("oci-archive:{}", file.display()),
    )
}

/// Like [`import_layout`], for an oci-archive `file`.
pub fn import_oci_archive(
    store: &Store,
    file: &Path,
    reference: Option<&str>,
) -> Result<Descriptor, ImageError> {
    let scratch = unpacked_archive(store, file)?;
    import_layout(store, scratch.path(), reference)
}

/// The layout files of the oci-archive `file`, unpacked into a temp directory of the store
/// (removed when dropped).
fn unpacked_archive(store: &Store, file: &Path) -> Result<tempfile::TempDir, ImageError> {
    let scratch = tempfile::Builder::new()
        .prefix(".kiln-oci-archive-")
        .tempdir_in(store.root())
        .map_err(|e| ImageError::io("create a temp directory in", store.root(), e))?;
    unpack_layout_archive(file, scratch.path())?;
    Ok(scratch)
}

fn unpack_layout_archive(file: &Path, dest: &Path) -> Result<(), ImageError> {
    let reader = std::fs::File::open(file).map_err(|e| ImageError::io("open", file, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
    let entries = archive
        .entries()
        .map_err(|e| ImageError::io("read archive", file, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io("read archive", file, e))?;
        let path = entry
            .path()
            .map_err(|e| ImageError::io("read archive", file, e))?
            .into_owned();
        let bad = || ImageError::BadArchiveEntry {
            archive: file.to_owned(),
            entry: path.display().to_string(),
        };
        let parts: Vec<&str> = path
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| match c {
                Component::Normal(s) => s.to_str().ok_or_else(bad),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let allowed = match parts.as_slice() {
            ["oci-layout"] | ["index.json"] => true,
            ["blobs", alg, hex] => {
                alg.bytes().all(|b| b.is_ascii_alphanumeric())
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }
            _ => false,
        };
        if !kind.is_file() || !allowed {
            // Unknown extras (a README, a docker manifest.json) are ignored; links are refused.
            if kind.is_file() {
                continue;
            }
            return Err(bad());
        }
        let target = parts.iter().fold(dest.to_owned(), |p, part| p.join(part));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ImageError::io("create directory", parent, e))?;
        }
        let mut out =
            std::fs::File::create(&target).map_err(|e| ImageError::io("create", &target, e))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| ImageError::io("unpack archive entry to", &target, e))?;
    }
    Ok(())
}

/// The `index.json` entry `reference` names (a tag, a full image name or a digest; with no
/// reference, the only entry), and how to name what was chosen in messages.
fn select_entry(
    dir: &Path,
    index: &Index,
    reference: Option<&str>,
    source_name: &str,
) -> Result<(Descriptor, String), ImageError> {
    let available: Vec<String> = index
        .manifests
        .iter()
        .map(|d| match d.ref_name() {
            Some(name) => name.to_owned(),
            None => d.digest.to_string(),
        })
        .collect();
    let selected = match reference {
        None => match index.manifests.as_slice() {
            [only] => (only.clone(), source_name.to_owned()),
            _ => {
                return Err(ImageError::AmbiguousRef {
                    source_name: source_name.to_owned(),
                    available,
                });
            }
        },
        Some(reference) => {
            let by_digest = reference.parse::<Digest>().ok();
            let found = index.manifests.iter().find(|d| match &by_digest {
                Some(digest) => &d.digest == digest,
                None => {
                    d.ref_name() == Some(reference)
                        || d.annotations.get(ANNOTATION_IMAGE_NAME).map(String::as_str)
                            == Some(reference)
                }
            });
            let separator = if by_digest.is_some() { "@" } else { ":" };
            let found = match (found, &by_digest) {
                (Some(d), _) => Some(d.clone()),
                // A digest not listed in index.json may still name a blob of the layout (a
                // platform manifest inside an index, pinned by digest).
                (None, Some(digest)) => describe_loose_blob(dir, digest)?,
                (None, None) => None,
            };
            match found {
                Some(d) => (d, format!("{source_name}{separator}{reference}")),
                None => {
                    return Err(ImageError::RefNotFound {
                        reference: reference.to_owned(),
                        source_name: source_name.to_owned(),
                        available,
                    });
                }
            }
        }
    };
    Ok(selected)
}

/// Copies everything `reference` names in the layout at `dir` into `store`, verified: an
/// image manifest with its config and layers, or an index with every manifest it lists
/// (attestations included). Returns the descriptor of what `reference` names, for pushing it
/// whole.
pub fn import_layout(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
) -> Result<Descriptor, ImageError> {
    check_layout_file(dir)?;
    let index = read_index(dir)?.ok_or_else(|| ImageError::NotALayout {
        path: dir.to_owned(),
        reason: "no `index.json`".to_owned(),
    })?;
    let source_name = format!("oci:{}", dir.display());
    let (descriptor, _) = select_entry(dir, &index, reference, &source_name)?;
    import_tree(store, dir, &descriptor, 0)?;
    Ok(descriptor)
}

fn import_tree(
    store: &Store,
    dir: &Path,
    descriptor: &Descriptor,
    depth: usize,
) -> Result<(), ImageError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(ImageError::IndexTooDeep(MAX_INDEX_DEPTH));
    }
    let what = format!("{} {}", descriptor.media_type, descriptor.digest);
    match descriptor.media_type.as_str() {
        MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
            let bytes = import_json_blob(store, dir, descriptor, &what)?;
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
                    what: format!("image index {}", descriptor.digest),
                    source,
                })?;
            for child in &index.manifests {
                import_tree(store, dir, child, depth + 1)?;
            }
            Ok(())
        }
        _ => {
            let bytes = import_json_blob(store, dir, descriptor, &what)?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
                    what: format!("manifest {}", descriptor.digest),
                    source,
                })?;
            import_blob(store, dir, &manifest.config, &what)?;
            for layer in &manifest.layers {
                import_blob(store, dir, layer, &what)?;
            }
            Ok(())
        }
    }
}

fn load(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
    source_name: &str,
) -> Result<BaseImage, ImageError> {
    check_layout_file(dir)?;
    let index = read_index(dir)?.ok_or_else(|| ImageError::NotALayout {
        path: dir.to_owned(),
        reason: "no `index.json`".to_owned(),
    })?;
    let (descriptor, source) = select_entry(dir, &index, reference, source_name)?;

    let (manifest_descriptor, manifest) = resolve(store, dir, &descriptor, platform, 0)?;
    let config_what = format!("config {} of {source}", manifest.config.digest);
    if !matches!(
        manifest.config.media_type.as_str(),
        MEDIA_TYPE_OCI_CONFIG | MEDIA_TYPE_DOCKER_CONFIG
    ) {
        return Err(ImageError::UnsupportedMediaType {
            media_type: manifest.config.media_type.clone(),
            what: config_what,
        });
    }
    let config_bytes = import_json_blob(store, dir, &manifest.config, &config_what)?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Parse {
            what: config_what.clone(),
            source,
        })?;
    let actual = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
    if !platform.matches(&actual) {
        return Err(ImageError::PlatformMismatch {
            what: source.clone(),
            requested: platform.to_string(),
            actual: actual.to_string(),
        });
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCountMismatch {
            what: source.clone(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let mut layers = Vec::new();
    for (descriptor, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let what = format!("layer {} of {source}", descriptor.digest);
        if layer_compression(&descriptor.media_type).is_none() {
            return Err(ImageError::UnsupportedMediaType {
                media_type: descriptor.media_type.clone(),
                what,
            });
        }
        import_blob(store, dir, descriptor, &what)?;
        layers.push(Layer {
            diff_id: diff_id.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
        });
    }
    Ok(BaseImage {
        config,
        layers,
        manifest_digest: manifest_descriptor.digest,
        source,
    })
}

/// A descriptor for the layout blob `digest` when it exists, with the media type its own
/// `mediaType` field declares (Docker and OCI manifests and indexes all carry one; an OCI
/// manifest without it is taken as an OCI manifest when it has `config` and `layers`).
fn describe_loose_blob(dir: &Path, digest: &Digest) -> Result<Option<Descriptor>, ImageError> {
    let path = dir.join("blobs/sha256").join(digest.hex());
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io("read blob", &path, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
            what: format!("blob `{}`", path.display()),
            source,
        })?;
    let media_type = match value.get("mediaType").and_then(|m| m.as_str()) {
        Some(media_type) => media_type.to_owned(),
        None if value.get("config").is_some() && value.get("layers").is_some() => {
            MEDIA_TYPE_OCI_MANIFEST.to_owned()
        }
        None if value.get("manifests").is_some() => MEDIA_TYPE_OCI_INDEX.to_owned(),
        None => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: "(none)".to_owned(),
                what: format!("blob `{}`", path.display()),
            });
        }
    };
    Ok(Some(Descriptor::new(
        &media_type,
        digest.clone(),
        bytes.len() as u64,
    )))
}

/// The index entry to follow for `platform` (an image manifest, or a nested index without a
/// platform, searched next), and the platforms the index offers, for error messages.
/// Attestation entries (`vnd.docker.reference.type`) and `unknown/unknown` are never chosen.
pub fn select_manifest<'i>(
    index: &'i Index,
    platform: &Platform,
) -> (Option<&'i Descriptor>, Vec<String>) {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"))
        .filter(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| !(p.os == "unknown" && p.architecture == "unknown"))
        })
        .collect();
    let chosen = candidates.iter().copied().find(|d| match &d.platform {
        Some(p) => platform.matches(p),
        None => matches!(
            d.media_type.as_str(),
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST
        ),
    });
    let available = candidates
        .iter()
        .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
        .collect();
    (chosen, available)
}

/// Follows `descriptor` through image indexes to the image manifest for `platform`.
fn resolve(
    store: &Store,
    dir: &Path,
    descriptor: &Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<(Descriptor, Manifest), ImageError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(ImageError::IndexTooDeep(MAX_INDEX_DEPTH));
    }
    let what = format!("{} {}", descriptor.media_type, descriptor.digest);
    match descriptor.media_type.as_str() {
        MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
            let bytes = import_json_blob(store, dir, descriptor, &what)?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
                    what: format!("image manifest {}", descriptor.digest),
                    source,
                })?;
            Ok((descriptor.clone(), manifest))
        }
        MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
            let bytes = import_json_blob(store, dir, descriptor, &what)?;
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
                    what: format!("image index {}", descriptor.digest),
                    source,
                })?;
            let (chosen, candidates) = select_manifest(&index, platform);
            match chosen {
                Some(d) => resolve(store, dir, d, platform, depth + 1),
                None => Err(ImageError::PlatformNotFound {
                    platform: platform.to_string(),
                    what: format!("image index {}", descriptor.digest),
                    available: candidates,
                }),
            }
        }
        other => Err(ImageError::UnsupportedMediaType {
            media_type: other.to_owned(),
            what: format!("index entry {}", descriptor.digest),
        }),
    }
}

/// Copies the layout blob `descriptor` into the store, verifying size and digest.
fn import_blob(
    store: &Store,
    dir: &Path,
    descriptor: &Descriptor,
    what: &str,
) -> Result<(), ImageError> {
    let path = dir.join("blobs/sha256").join(descriptor.digest.hex());
    let file = std::fs::File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))?;
    // Read one byte past the descriptor's size so an over-long blob is caught.
    let mut reader = HashingReader::new(file.take(descriptor.size.saturating_add(1)));
    let what = format!("{what} (`{}`)", path.display());
    let size = match blobs::import(store, &mut reader, &descriptor.digest, &what) {
        Ok(size) => size,
        Err(ImageError::DigestMismatch {
            what,
            expected,
            actual,
        }) => {
            let (_, _, read) = reader.finish();
            if read != descriptor.size {
                return Err(ImageError::SizeMismatch {
                    what,
                    expected: descriptor.size,
                    actual: read,
                });
            }
            return Err(ImageError::DigestMismatch {
                what,
                expected,
                actual,
            });
        }
        Err(e) => return Err(e),
    };
    if size != descriptor.size {
        return Err(ImageError::SizeMismatch {
            what,
            expected: descriptor.size,
            actual: size,
        });
    }
    Ok(())
}

/// Like [`import_blob`], for small JSON blobs, returning their (verified) bytes.
fn import_json_blob(
    store: &Store,
    dir: &Path,
    descriptor: &Descriptor,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    if descriptor.size > MAX_JSON_BLOB {
        return Err(ImageError::SizeMismatch {
            what: format!("{what} (larger than kiln reads for a JSON document)"),
            expected: MAX_JSON_BLOB,
            actual: descriptor.size,
        });
    }
    import_blob(store, dir, descriptor, what)?;
    blobs::read_bytes(store, &descriptor.digest)
}
