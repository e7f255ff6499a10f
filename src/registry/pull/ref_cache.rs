//! The reference cache of pulls: reference -> manifest digest, one small JSON file per
//! reference, so digest-pinned bases and `offline` need no network.

use std::path::{Path, PathBuf};

use std::io::Write;

use super::super::{Reference, RegistryError};
use crate::digest::Digest;
/// reference -> manifest digest, one small JSON file per reference.
pub(crate) struct RefCache {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RefEntry {
    reference: String,
    digest: Digest,
}

impl RefCache {
    pub(crate) fn new(dir: PathBuf) -> RefCache {
        RefCache { dir }
    }

    pub(crate) fn key(reference: &Reference) -> String {
        format!("{}:{}", reference.name(), reference.manifest_ref())
    }

    pub(crate) fn path(&self, reference: &Reference) -> PathBuf {
        let key = RefCache::key(reference);
        self.dir
            .join(format!("{}.json", Digest::of(key.as_bytes()).hex()))
    }

    pub(crate) fn get(&self, reference: &Reference) -> Option<Digest> {
        let bytes = std::fs::read(self.path(reference)).ok()?;
        let entry: RefEntry = serde_json::from_slice(&bytes).ok()?;
        (entry.reference == RefCache::key(reference)).then_some(entry.digest)
    }

    pub(crate) fn put(&self, reference: &Reference, digest: &Digest) -> Result<(), RegistryError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let entry = RefEntry {
            reference: RefCache::key(reference),
            digest: digest.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| RegistryError::Usage(e.to_string()))?;
        let mut temp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io("create a temp file in", &self.dir))?;
        temp.write_all(&bytes).map_err(io("write", temp.path()))?;
        let target = self.path(reference);
        temp.persist(&target)
            .map_err(|e| io("rename a temp file to", &target)(e.error))?;
        Ok(())
    }
}
