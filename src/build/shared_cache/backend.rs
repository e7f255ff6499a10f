//! Where shared cache entries live: a registry repository (entries are tags, blobs are the
//! repository's blobs) or a local directory (a runner's cache volume: `blobs/sha256/<hex>` as in
//! an OCI layout, and `entries/<tag>` holding each entry's manifest).
//!
//! Both write an entry only when its tag is absent and never change one: two builds writing
//! the same key at once write equal content, and the last rename (or manifest PUT) wins whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::SharedCacheError;
use crate::digest::Digest;
use crate::image::manifest::{Descriptor, MEDIA_TYPE_OCI_MANIFEST};
use crate::registry::{self, RegistryOptions, Repository};
use crate::store::Store;

/// One place entries are read from or written to.
pub(super) enum Backend<'a> {
    Registry {
        repository: &'a Repository,
        options: &'a RegistryOptions,
    },
    Local {
        dir: &'a Path,
    },
}

impl<'a> Backend<'a> {
    fn location(&self) -> String {
        match self {
            Backend::Registry { repository, .. } => repository.reference().to_string(),
            Backend::Local { dir } => dir.display().to_string(),
        }
    }

    fn registry_error(
        &self,
        action: String,
    ) -> impl FnOnce(registry::RegistryError) -> SharedCacheError {
        let location = self.location();
        move |source| SharedCacheError::Registry {
            location,
            action,
            source: Box::new(source),
        }
    }

    fn io_error(
        &self,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> SharedCacheError {
        let location = self.location();
        let path = path.to_owned();
        move |source| SharedCacheError::Io {
            location,
            action,
            path,
            source,
        }
    }

    fn entries_dir(dir: &Path) -> PathBuf {
        dir.join("entries")
    }

    /// The manifest bytes of the entry `tag`, or `None` when there is no such entry.
    pub(super) fn read_entry(&self, tag: &str) -> Result<Option<Vec<u8>>, SharedCacheError> {
        match self {
            Backend::Registry { repository, .. } => repository
                .manifest(tag)
                .map_err(self.registry_error(format!("read the entry `{tag}`"))),
            Backend::Local { dir } => {
                let path = Self::entries_dir(dir).join(tag);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.io_error("read", &path)(e)),
                }
            }
        }
    }

    /// Copies the blob `descriptor` into `store`, verified against its digest.
    pub(super) fn fetch_blob(
        &self,
        descriptor: &Descriptor,
        store: &Store,
    ) -> Result<(), SharedCacheError> {
        if store.contains(&descriptor.digest) {
            return Ok(());
        }
        match self {
            Backend::Registry { repository, .. } => repository
                .fetch_blob(descriptor, store)
                .map_err(self.registry_error(format!("download the blob {}", descriptor.digest))),
            Backend::Local { dir } => {
                let path = dir.join("blobs/sha256").join(descriptor.digest.hex());
                copy_blob(&path, &descriptor.digest, store)
                    .map_err(|e| e.at(self.location(), &path))
            }
        }
    }

    /// Whether the entry `tag` exists.
    pub(super) fn has_entry(&self, tag: &str) -> Result<bool, SharedCacheError> {
        match self {
            Backend::Registry { repository, .. } => repository
                .has_manifest(tag)
                .map_err(self.registry_error(format!("look for the entry `{tag}`"))),
            Backend::Local { dir } => Ok(Self::entries_dir(dir).join(tag).is_file()),
        }
    }

    /// Writes the entry `tag`: the blobs `manifest` references (from `store`), then the
    /// manifest. An entry that appeared meanwhile is left as it is.
    pub(super) fn write_entry(
        &self,
        tag: &str,
        manifest: &[u8],
        blobs: &[Descriptor],
        store: &Store,
    ) -> Result<(), SharedCacheError> {
        match self {
            Backend::Registry { repository, .. } => repository
                .push_manifest(store, manifest, MEDIA_TYPE_OCI_MANIFEST, tag)
                .map_err(self.registry_error(format!("write the entry `{tag}`"))),
            Backend::Local { dir } => {
                let local = Store::open(dir).map_err(|e| SharedCacheError::Store {
                    location: self.location(),
                    source: e,
                })?;
                for blob in blobs {
                    if !local.contains(&blob.digest) {
                        copy_blob(&store.blob_path(&blob.digest), &blob.digest, &local)
                            .map_err(|e| e.at(self.location(), &store.blob_path(&blob.digest)))?;
                    }
                }
                local
                    .put_bytes(manifest)
                    .map_err(|e| SharedCacheError::Store {
                        location: self.location(),
                        source: e,
                    })?;
                let entries = Self::entries_dir(dir);
                std::fs::create_dir_all(&entries).map_err(self.io_error("create", &entries))?;
                let mut temp = tempfile::NamedTempFile::new_in(&entries)
                    .map_err(self.io_error("create a temp file in", &entries))?;
                temp.write_all(manifest)
                    .map_err(self.io_error("write", temp.path()))?;
                let path = entries.join(tag);
                match temp.persist_noclobber(&path) {
                    Ok(_) => Ok(()),
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(self.io_error("rename into place", &path)(e.error)),
                }
            }
        }
    }

    /// The tags of every entry.
    pub(super) fn list_entries(&self) -> Result<Vec<String>, SharedCacheError> {
        let mut tags = match self {
            Backend::Registry {
                repository,
                options,
            } => registry::list_tags(repository.reference(), options)
                .map_err(self.registry_error("list the entries".to_owned()))?,
            Backend::Local { dir } => {
                let entries = Self::entries_dir(dir);
                let reader = match std::fs::read_dir(&entries) {
                    Ok(reader) => reader,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(self.io_error("list", &entries)(e)),
                };
                let mut tags = Vec::new();
                for item in reader {
                    let item = item.map_err(self.io_error("list", &entries))?;
                    tags.push(item.file_name().to_string_lossy().into_owned());
                }
                tags
            }
        };
        tags.retain(|tag| tag.starts_with(super::entry::TAG_PREFIX));
        tags.sort();
        Ok(tags)
    }

    /// Removes the entry `tag`, whose manifest is `digest`.
    pub(super) fn delete_entry(&self, tag: &str, digest: &Digest) -> Result<(), SharedCacheError> {
        match self {
            Backend::Registry {
                repository,
                options,
            } => registry::delete_manifest(repository.reference(), digest, options)
                .map_err(self.registry_error(format!("delete the entry `{tag}`"))),
            Backend::Local { dir } => {
                let path = Self::entries_dir(dir).join(tag);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io_error("remove", &path)(e)),
                }
            }
        }
    }

    /// Removes the blobs of a local cache that no entry references any more (a registry
    /// collects its own garbage); returns how many went.
    pub(super) fn collect_garbage(&self) -> Result<usize, SharedCacheError> {
        let Backend::Local { dir } = self else {
            return Ok(0);
        };
        let mut referenced = std::collections::BTreeSet::new();
        for tag in self.list_entries()? {
            let Some(bytes) = self.read_entry(&tag)? else {
                continue;
            };
            referenced.insert(Digest::of(&bytes).hex().to_owned());
            if let Ok(manifest) = serde_json::from_slice::<crate::image::manifest::Manifest>(&bytes)
            {
                referenced.insert(manifest.config.digest.hex().to_owned());
                for layer in &manifest.layers {
                    referenced.insert(layer.digest.hex().to_owned());
                }
            }
        }
        let blobs = dir.join("blobs/sha256");
        let reader = match std::fs::read_dir(&blobs) {
            Ok(reader) => reader,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_error("list", &blobs)(e)),
        };
        let mut removed = 0;
        for item in reader {
            let item = item.map_err(self.io_error("list", &blobs))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                std::fs::remove_file(item.path()).map_err(self.io_error("remove", &item.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Why copying a blob between directories failed, before the cache's name is attached.
enum CopyError {
    Io(std::io::Error),
    Store(crate::store::StoreError),
}

impl CopyError {
    fn at(self, location: String, path: &Path) -> SharedCacheError {
        match self {
            CopyError::Io(source) => SharedCacheError::Io {
                location,
                action: "copy the blob",
                path: path.to_owned(),
                source,
            },
            CopyError::Store(source) => SharedCacheError::Store { location, source },
        }
    }
}

/// Streams the file `path` into `store` as the blob `digest` (the store refuses other bytes).
fn copy_blob(path: &Path, digest: &Digest, store: &Store) -> Result<(), CopyError> {
    let mut file = std::fs::File::open(path).map_err(CopyError::Io)?;
    let mut writer = store.writer().map_err(CopyError::Store)?;
    std::io::copy(&mut file, &mut writer).map_err(CopyError::Io)?;
    writer.commit(Some(digest)).map_err(CopyError::Store)?;
    Ok(())
}
