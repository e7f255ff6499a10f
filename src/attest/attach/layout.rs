//! An opened OCI layout for attaching ([`Layout`]): its `index.json` (under the layout's lock
//! when writable), blobs read back verified and written through the [`Store`], the images a
//! reference names, and `index.json` replaced through a temp file and a rename.

use std::path::Path;

use super::is_attestation_manifest;
use crate::attest::AttestError;
use crate::digest::Digest;
use crate::image::manifest::{
    Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::image::{Platform, canonical};
use crate::store::Store;

/// An opened layout: its store, `index.json`, and blob access.
pub(crate) struct Layout<'a> {
    pub dir: &'a Path,
    /// Present when opened for writing ([`Store::open`] creates directories).
    store: Option<Store>,
    pub index: Index,
    /// The layout's exclusive lock, held from reading `index.json` to writing it when opened
    /// for writing (another kiln process may be merging into the same layout).
    _lock: Option<crate::lock::DirLock>,
}

impl<'a> Layout<'a> {
    /// Opens the layout at `dir`; `writable` opens its blob store for writing too.
    pub fn open(dir: &'a Path, writable: bool) -> Result<Layout<'a>, AttestError> {
        crate::image::layout::check_layout_file(dir)?;
        let lock = if writable {
            Some(crate::image::layout::lock_layout(dir)?)
        } else {
            None
        };
        let index = crate::image::layout::read_index(dir)?.ok_or_else(|| AttestError::Attach {
            path: dir.to_owned(),
            reason: "the layout has no `index.json`".to_owned(),
        })?;
        let store = if writable {
            Some(Store::open(dir)?)
        } else {
            None
        };
        Ok(Layout {
            dir,
            store,
            index,
            _lock: lock,
        })
    }

    fn store(&self) -> Result<&Store, AttestError> {
        self.store.as_ref().ok_or_else(|| AttestError::Attach {
            path: self.dir.to_owned(),
            reason: "the layout was opened read-only".to_owned(),
        })
    }

    /// Stores `bytes` as a blob; returns its digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), AttestError> {
        Ok(self.store()?.put_bytes(bytes)?)
    }

    /// Reads and verifies a blob named by a descriptor (digest and size).
    pub fn read(&self, descriptor: &Descriptor) -> Result<Vec<u8>, AttestError> {
        let path = self
            .dir
            .join("blobs")
            .join(descriptor.digest.algorithm())
            .join(descriptor.digest.hex());
        let bytes = std::fs::read(&path).map_err(|e| AttestError::io("read blob", &path, e))?;
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest {
            return Err(crate::image::ImageError::DigestMismatch {
                what: format!("blob `{}`", path.display()),
                expected: descriptor.digest.clone(),
                actual,
            }
            .into());
        }
        if bytes.len() as u64 != descriptor.size {
            return Err(crate::image::ImageError::SizeMismatch {
                what: format!("blob {} in `{}`", descriptor.digest, self.dir.display()),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            }
            .into());
        }
        Ok(bytes)
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<T, AttestError> {
        let bytes = self.read(descriptor)?;
        serde_json::from_slice(&bytes).map_err(|source| AttestError::Parse {
            what: format!("{} {}", descriptor.media_type, descriptor.digest),
            source,
        })
    }

    /// Stores a canonical JSON document; returns its descriptor.
    pub fn put_json<T: serde::Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, AttestError> {
        let bytes = canonical::to_vec(value)?;
        let (digest, size) = self.put_bytes(&bytes)?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// The `index.json` entry `reference` names: a tag (`ref.name`, or the full
    /// `io.containerd.image.name`), a digest (`sha256:...`, optionally after `@`), or None
    /// when the layout has exactly one entry that is not a fallback tag.
    pub fn find(&self, reference: Option<&str>) -> Result<usize, AttestError> {
        let entries = &self.index.manifests;
        let found = match reference {
            None => {
                let images: Vec<usize> = (0..entries.len())
                    .filter(|&i| {
                        !entries[i]
                            .ref_name()
                            .is_some_and(|r| r.starts_with("sha256-"))
                    })
                    .collect();
                if images.len() == 1 {
                    Some(images[0])
                } else {
                    None
                }
            }
            Some(reference) => {
                let digest = reference
                    .rsplit_once('@')
                    .map_or(reference, |(_, d)| d)
                    .parse::<Digest>()
                    .ok();
                entries.iter().position(|e| match &digest {
                    Some(d) => &e.digest == d,
                    None => {
                        e.ref_name() == Some(reference)
                            || e.annotations
                                .get(crate::image::manifest::ANNOTATION_IMAGE_NAME)
                                == Some(&reference.to_owned())
                    }
                })
            }
        };
        found.ok_or_else(|| {
            crate::image::ImageError::RefNotFound {
                reference: reference.unwrap_or("(the only image)").to_owned(),
                source_name: format!("oci:{}", self.dir.display()),
                available: entries
                    .iter()
                    .map(|e| {
                        e.ref_name()
                            .map_or_else(|| e.digest.to_string(), str::to_owned)
                    })
                    .collect(),
            }
            .into()
        })
    }

    /// The image manifests under entry `descriptor` (itself, or an index's non-attestation
    /// entries), each with its platform.
    pub fn images_of(
        &self,
        descriptor: &Descriptor,
    ) -> Result<(Option<Index>, Vec<Descriptor>), AttestError> {
        match descriptor.media_type.as_str() {
            MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
                let mut image = Descriptor::new(
                    &descriptor.media_type,
                    descriptor.digest.clone(),
                    descriptor.size,
                );
                image.platform = match &descriptor.platform {
                    Some(p) => Some(p.clone()),
                    None => self.platform_from_config(descriptor)?,
                };
                Ok((None, vec![image]))
            }
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
                let index: Index = self.read_json(descriptor)?;
                let images = index
                    .manifests
                    .iter()
                    .filter(|d| !is_attestation_manifest(d))
                    .cloned()
                    .collect();
                Ok((Some(index), images))
            }
            other => Err(crate::image::ImageError::UnsupportedMediaType {
                media_type: other.to_owned(),
                what: format!("index.json entry {}", descriptor.digest),
            }
            .into()),
        }
    }

    fn platform_from_config(&self, manifest: &Descriptor) -> Result<Option<Platform>, AttestError> {
        let manifest: Manifest = self.read_json(manifest)?;
        let config: serde_json::Value = self.read_json(&manifest.config)?;
        let field = |k: &str| config.get(k).and_then(|v| v.as_str());
        Ok(match (field("os"), field("architecture")) {
            (Some(os), Some(arch)) => Some(Platform::new(os, arch, field("variant"))),
            _ => None,
        })
    }

    /// Writes `index.json` (temp file, fsync, rename) and drops the store's empty ingest dir.
    pub fn write_index(&self) -> Result<(), AttestError> {
        use std::io::Write as _;
        let path = self.dir.join("index.json");
        let bytes = canonical::to_vec(&self.index)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-index-")
            .tempfile_in(self.dir)
            .map_err(|e| AttestError::io("create a temp file in", self.dir, e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| AttestError::io("set the mode of", temp.path(), e))?;
        }
        temp.write_all(&bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| AttestError::io("write", &path, e))?;
        temp.persist(&path)
            .map_err(|e| AttestError::io("rename into place", &path, e.error))?;
        Ok(())
    }

    /// Removes the store's ingest directory when it is empty (best effort: it is hidden and
    /// ignored by readers either way).
    pub fn tidy(&self) {
        let _ = std::fs::remove_dir(self.dir.join(".kiln-ingest"));
    }
}
