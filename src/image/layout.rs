//! Writing OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
//!
//! Each tag becomes one `index.json` entry annotated the way BuildKit's OCI exporter does:
//! `org.opencontainers.image.ref.name` = the tag (`v1`, what `skopeo oci:DIR:v1` and
//! `umoci --image DIR:v1` look up) and `io.containerd.image.name` = the full name
//! (`repo:v1`). An image with no tags gets one entry without annotations.
//!
//! Writing into an existing layout merges like skopeo: other blobs and entries stay, entries
//! whose ref name is being written are replaced. Blobs are hard-linked from the store when
//! possible, copied (and verified) otherwise, each through a temp name and a rename; the
//! rewritten `index.json` lands last, so a failure never leaves a half blob or an index
//! pointing at a missing one.
//!
//! Two kiln processes may write one layout at once (two builds with the same `--output
//! type=oci,dest=DIR`): each merge holds the layout's exclusive lock ([`lock_layout`]) from
//! reading `index.json` to renaming the new one, so neither loses the other's entries. Whoever
//! takes the lock first also removes what a killed writer left (temp files, an ingest
//! directory): while the lock is held, no live writer can own them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index};
use super::{Exportable, ImageError, blobs, canonical};
use crate::digest::Digest;
use crate::lock::DirLock;
use crate::store::Store;

/// The content of the `oci-layout` file.
pub(crate) const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A `name[:tag]` split the way outputs need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageName {
    /// `name:tag`, with `latest` added when no tag was given.
    pub full: String,
    /// The repository part.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

/// Parses `repo[:tag]` (`ghcr.io/acme/app:1.2`, `localhost:5000/app`, `app`); digests are
/// rejected because an output cannot be named by its own digest.
pub(crate) fn parse_name(name: &str) -> Result<ImageName, ImageError> {
    let invalid = |reason| ImageError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.contains('@') {
        return Err(invalid("a digest cannot name an output; use `repo:tag`"));
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, "latest"),
    };
    let tag_ok = tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
        })
        && !tag.is_empty();
    if !tag_ok {
        return Err(invalid(
            "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with `.` or `-`",
        ));
    }
    let repo_ok = !repository.is_empty()
        && !repository.starts_with('/')
        && !repository.ends_with('/')
        && !repository.contains("//")
        && repository
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/' | b':'));
    if !repo_ok {
        return Err(invalid(
            "the repository must be lowercase [a-z0-9._-] components separated by `/`",
        ));
    }
    Ok(ImageName {
        full: format!("{repository}:{tag}"),
        repository: repository.to_owned(),
        tag: tag.to_owned(),
    })
}

/// The index entries for `images`: one per tag, or one bare entry for an untagged image.
pub(crate) fn index_entries<T: Exportable>(
    images: &[(T, Vec<String>)],
) -> Result<Vec<Descriptor>, ImageError> {
    let mut entries = Vec::new();
    for (image, names) in images {
        if names.is_empty() {
            entries.push(image.descriptor());
        }
        for name in names {
            let name = parse_name(name)?;
            let mut descriptor = image.descriptor();
            descriptor
                .annotations
                .insert(ANNOTATION_IMAGE_NAME.to_owned(), name.full);
            descriptor
                .annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), name.tag);
            entries.push(descriptor);
        }
    }
    Ok(entries)
}

/// Every blob `images` need, deduplicated and sorted.
pub(crate) fn image_blobs<T: Exportable>(images: &[(T, Vec<String>)]) -> BTreeSet<Digest> {
    let mut set = BTreeSet::new();
    for (image, _) in images {
        set.extend(image.blobs());
    }
    set
}

/// `existing` with `entries` added: an existing entry is dropped when a new one has its ref
/// name, or when both are untagged and name the same manifest. New entries keep their order
/// after the surviving old ones; a repeated new ref name keeps the last.
pub(crate) fn merge_index(existing: Index, entries: Vec<Descriptor>) -> Index {
    let key = |d: &Descriptor| match d.ref_name() {
        Some(name) => (Some(name.to_owned()), None),
        None => (None, Some(d.digest.clone())),
    };
    let mut last_of: BTreeMap<_, usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        last_of.insert(key(entry), i);
    }
    let mut index = existing;
    index
        .manifests
        .retain(|old| !last_of.contains_key(&key(old)));
    for (i, entry) in entries.into_iter().enumerate() {
        if last_of.get(&key(&entry)) == Some(&i) {
            index.manifests.push(entry);
        }
    }
    index
}

/// Writes `images` (each with its `repo:tag` names; an image or a multi-platform index) into
/// the OCI layout at `dest`, creating it or merging into the layout already there.
pub fn write_oci_layout<T: Exportable>(
    store: &Store,
    dest: &Path,
    images: &[(T, Vec<String>)],
) -> Result<(), ImageError> {
    let entries = index_entries(images)?;
    let _lock = lock_layout(dest)?;
    let layout_file = dest.join("oci-layout");
    let index_file = dest.join("index.json");
    let existing = if layout_file.exists() {
        check_layout_file(dest)?;
        read_index(dest)?
    } else {
        let non_empty = std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if non_empty {
            return Err(ImageError::NotALayout {
                path: dest.to_owned(),
                reason: "the directory is not empty and has no `oci-layout` file".to_owned(),
            });
        }
        None
    };

    // The marker first: a write killed before `index.json` leaves a layout (of no image) that
    // the next write recognizes, cleans and completes, not a directory it must refuse.
    if !layout_file.exists() {
        blobs::write_file_atomic(&layout_file, OCI_LAYOUT_FILE)?;
    }
    let blob_dir = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir)
        .map_err(|e| ImageError::io("create the layout directory", &blob_dir, e))?;
    for digest in image_blobs(images) {
        copy_blob(store, &digest, &blob_dir)?;
    }
    let index = merge_index(existing.unwrap_or_else(Index::empty), entries);
    blobs::write_file_atomic(&index_file, &canonical::to_vec(&index)?)
}

/// Creates the layout directory `dir` if needed and waits for its exclusive lock (held by one
/// merge at a time, released when the returned value drops). Then, when `dir` is a layout,
/// removes what killed writers left: `.tmp-*` files at the top and in `blobs/sha256/`, and the
/// `.kiln-ingest` directory.
pub(crate) fn lock_layout(dir: &Path) -> Result<DirLock, ImageError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ImageError::io("create the layout directory", dir, e))?;
    let lock =
        DirLock::exclusive(dir).map_err(|e| ImageError::io("lock the layout directory", dir, e))?;
    if dir.join("oci-layout").is_file() || only_temp_files(dir) {
        remove_leftovers(dir);
    }
    Ok(lock)
}

/// Whether everything in `dir` is a `.tmp-*` file: what a first write killed while writing the
/// `oci-layout` marker leaves.
fn only_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|entry| {
            entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry.file_type().is_ok_and(|t| t.is_file())
        })
    })
}

/// Best effort: a leftover that cannot be removed is hidden and ignored by readers anyway.
fn remove_leftovers(dir: &Path) {
    for folder in [dir.to_owned(), dir.join("blobs/sha256")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_temp = entry.file_name().to_string_lossy().starts_with(".tmp-");
            if is_temp && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let ingest = dir.join(".kiln-ingest");
    if ingest.is_dir() {
        let _ = std::fs::remove_dir_all(&ingest);
    }
}

/// Checks `dir/oci-layout` says version 1.0.0.
pub(crate) fn check_layout_file(dir: &Path) -> Result<(), ImageError> {
    let path = dir.join("oci-layout");
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::NotALayout {
            path: dir.to_owned(),
            reason: "no `oci-layout` file".to_owned(),
        },
        _ => ImageError::io("read", &path, e),
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
            what: format!("`{}`", path.display()),
            source,
        })?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some("1.0.0") => Ok(()),
        other => Err(ImageError::NotALayout {
            path: dir.to_owned(),
            reason: format!("unsupported imageLayoutVersion {other:?}; kiln reads 1.0.0"),
        }),
    }
}

/// Reads `dir/index.json`, if there is one.
pub fn read_index(dir: &Path) -> Result<Option<Index>, ImageError> {
    let path = dir.join("index.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io("read", &path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ImageError::Parse {
            what: format!("`{}`", path.display()),
            source,
        })
}

/// Puts the store blob `digest` into `blob_dir`: a hard link when the file systems allow,
/// else a verified copy; either way through a temp name and a rename.
fn copy_blob(store: &Store, digest: &Digest, blob_dir: &Path) -> Result<(), ImageError> {
    let target = blob_dir.join(digest.hex());
    if target.exists() {
        return Ok(());
    }
    let source = store.blob_path(digest);
    let link = blob_dir.join(format!(".tmp-link-{}-{}", digest.hex(), std::process::id()));
    let _ = std::fs::remove_file(&link);
    if std::fs::hard_link(&source, &link).is_ok() {
        let renamed = std::fs::rename(&link, &target);
        // When `target` appeared meanwhile as another link to the same store file, rename(2)
        // succeeds without doing anything and `link` stays: remove it either way.
        let _ = std::fs::remove_file(&link);
        return renamed.map_err(|e| ImageError::io("rename a blob into", &target, e));
    }
    let (temp, actual, _) = blobs::write_temp(blob_dir, blobs::open_blob(store, digest)?)?;
    if &actual != digest {
        return Err(ImageError::DigestMismatch {
            what: format!("store blob `{}`", source.display()),
            expected: digest.clone(),
            actual,
        });
    }
    temp.persist(&target)
        .map_err(|e| ImageError::io("rename a blob into", &target, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn name_table() {
        // input, full, tag
        for (input, full, tag) in [
            ("app", "app:latest", "latest"),
            ("app:v1", "app:v1", "v1"),
            ("ghcr.io/acme/app:1.2", "ghcr.io/acme/app:1.2", "1.2"),
            ("localhost:5000/app", "localhost:5000/app:latest", "latest"),
            ("localhost:5000/app:x_y", "localhost:5000/app:x_y", "x_y"),
        ] {
            let name = parse_name(input).unwrap();
            assert_eq!(
                (name.full.as_str(), name.tag.as_str()),
                (full, tag),
                "{input}"
            );
        }
        for bad in [
            "",
            "App:v1",
            "app:",
            "app:-x",
            "app@sha256:00",
            "/app",
            "a//b",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }
}
