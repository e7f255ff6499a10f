//! The shared step cache: step results kept in a registry repository or a directory, so that
//! a runner with an empty local cache builds what another runner built without running or
//! compressing anything (`--cache-from`, `--cache-to`).
//!
//! An entry is one step key's result, immutable, under the tag `kiln-step-<key hex>` ([`entry`]):
//! an OCI manifest whose config is the key's [`entry::Record`] and whose layer is the step's
//! layer blob. Keys are content digests only, so they are equal on every machine:
//!
//! - a RUN (native or sandboxed) is keyed before it runs by the diffIDs of the layers below it,
//!   its command, environment (with build arguments), working directory, user, network, mounts
//!   (a bind mount by the content of what it shows), the hosts file, the target platform and the
//!   layer settings. The packages and wheels it fetched are not known before it runs: the record
//!   lists them (with their digests) and a build that takes the entry puts them in its
//!   provenance, as if it had fetched them;
//! - a COPY from an earlier stage is keyed before it reads a file by the layers below it, the
//!   source stage's layers' diffIDs (which fix every file it can copy), the instruction with
//!   its variables expanded, the working directory, the platform and the layer settings;
//! - every other step that writes a layer (COPY, ADD, WORKDIR) computes its files first, so its
//!   key is the digest of the layer's uncompressed content (its diffID, from one hashing pass
//!   without compression) and the compression settings: exactly the bytes it would write.
//!
//! Lookups go through the [`CacheLocation`]s of `--cache-from` in order; the first entry that
//! checks out wins. An entry is checked before use: its record is for this key, its manifest
//! lists the layers its record names, each blob matches its digest (the download verifies it)
//! and decompresses to the recorded diffID. An entry that fails a check is skipped with a
//! warning naming it and why, and the step runs. Entries to export are collected while the
//! build runs and written when it succeeded ([`SharedCache::export`]): each only when its tag
//! is absent (`HEAD` first), its blobs before its manifest, so a reader never sees half an
//! entry and concurrent builds never corrupt one.

mod backend;
pub mod entry;

use std::io::Read;

use backend::Backend;
use entry::{Record, RecordedMaterial};

use crate::digest::{Digest, HashingWriter};
use crate::image::manifest::Manifest;
use crate::layer::Layer;
use crate::material::Material;
use crate::registry::{Reference, RegistryOptions, Repository};
use crate::store::Store;

/// Where a shared cache lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry repository (`type=registry,ref=REPO`).
    Registry(Reference),
    /// A local directory (`type=local,src=DIR` / `dest=DIR`).
    Local(std::path::PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(reference) => write!(f, "{reference}"),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Which steps `--cache-to` exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportMode {
    /// Only the steps of the final stage (buildx's default).
    #[default]
    Min,
    /// The steps of every stage built.
    Max,
}

/// The shared caches of a build. Default: none.
#[derive(Clone, Debug, Default)]
pub struct SharedCacheOptions {
    /// `--cache-from`, tried in order.
    pub import: Vec<CacheLocation>,
    /// `--cache-to`.
    pub export: Option<(CacheLocation, ExportMode)>,
}

/// Why the shared cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    /// A registry operation failed.
    #[error("cache `{location}`: failed to {action}")]
    Registry {
        /// The cache.
        location: String,
        /// What kiln was doing.
        action: String,
        /// The cause.
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
    /// A file operation failed.
    #[error("cache `{location}`: failed to {action} `{}`", path.display())]
    Io {
        /// The cache.
        location: String,
        /// What kiln was doing.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A store operation failed.
    #[error("cache `{location}`: failed to store a blob")]
    Store {
        /// The cache.
        location: String,
        /// The cause.
        #[source]
        source: crate::store::StoreError,
    },
}

/// A step result taken from a shared cache.
pub struct Found {
    /// The step's layer (its blob now in the build's store); `None` when it changed no file.
    pub layer: Option<Layer>,
    /// What the step consumed when it ran.
    pub materials: Vec<Material>,
}

/// A step's result waiting to be exported.
pub struct StepResult {
    /// Its key.
    pub key: Digest,
    /// `run`, `copy` or `layer` (see [`Record::kind`]).
    pub kind: &'static str,
    /// The instruction as written.
    pub step: String,
    /// The platform it ran for.
    pub platform: String,
    /// The diffIDs of the layers below it.
    pub parents: Vec<Digest>,
    /// Its layer, if it made one.
    pub layer: Option<Layer>,
    /// What it consumed.
    pub materials: Vec<Material>,
    /// The stage it belongs to.
    pub stage: usize,
}

/// The key of a step keyed before its files were computed (a RUN, a COPY from a stage),
/// waiting for the layer the step is about to commit.
pub struct PendingKey {
    /// The step key.
    pub key: Digest,
    /// `run` or `copy` (see [`Record::kind`]).
    pub kind: &'static str,
    /// Where the step's materials start in the build's list of materials.
    pub materials_from: usize,
}

/// What [`SharedCache::export`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Entries written.
    pub written: usize,
    /// Entries that were there already.
    pub present: usize,
}

/// A build's view of its shared caches: lookups, and the results to export.
pub struct SharedCache {
    options: SharedCacheOptions,
    registry: RegistryOptions,
    /// One session per `--cache-from` registry, opened on first use (or why it could not be).
    sessions: Vec<Option<Result<Repository, String>>>,
    results: Vec<StepResult>,
    warnings: Vec<String>,
}

/// Opens the place `location` names: a registry session, or nothing for a directory.
fn open(
    location: &CacheLocation,
    registry: &RegistryOptions,
    write: bool,
) -> Result<Option<Repository>, SharedCacheError> {
    match location {
        CacheLocation::Registry(reference) => Repository::open(reference, registry, write)
            .map(Some)
            .map_err(|source| SharedCacheError::Registry {
                location: location.to_string(),
                action: "open the repository".to_owned(),
                source: Box::new(source),
            }),
        CacheLocation::Local(_) => Ok(None),
    }
}

/// The backend of `location`, through `repository` when it is a registry.
fn backend<'a>(
    location: &'a CacheLocation,
    repository: Option<&'a Repository>,
    registry: &'a RegistryOptions,
) -> Option<Backend<'a>> {
    match (location, repository) {
        (CacheLocation::Local(dir), _) => Some(Backend::Local { dir }),
        (CacheLocation::Registry(_), Some(repository)) => Some(Backend::Registry {
            repository,
            options: registry,
        }),
        (CacheLocation::Registry(_), None) => None,
    }
}

impl SharedCache {
    /// The caches of `options`, reached with `registry`.
    pub fn new(options: SharedCacheOptions, registry: RegistryOptions) -> SharedCache {
        SharedCache {
            sessions: options.import.iter().map(|_| None).collect(),
            options,
            registry,
            results: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Whether any cache is read.
    pub fn importing(&self) -> bool {
        !self.options.import.is_empty()
    }

    /// Whether a cache is written.
    pub fn exporting(&self) -> bool {
        self.options.export.is_some()
    }

    /// Warnings since the last call (skipped entries, unreachable caches).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The result stored under `key` in the first cache that has a sound entry, its blobs
    /// copied into `store`. A cache that cannot be read, or an entry that fails a check, is a
    /// warning and the next cache is tried.
    pub fn lookup(&mut self, key: &Digest, store: &Store) -> Option<Found> {
        let tag = entry::tag_for(key);
        for (location, session) in self.options.import.iter().zip(&mut self.sessions) {
            if session.is_none() {
                *session = Some(match open(location, &self.registry, false) {
                    Ok(Some(repository)) => Ok(repository),
                    // A directory needs no session.
                    Ok(None) => Err(String::new()),
                    Err(e) => {
                        let why = error_chain(&e);
                        self.warnings.push(format!(
                            "cache `{location}` could not be opened ({why}); it is not used"
                        ));
                        Err(why)
                    }
                });
            }
        }
        for (location, session) in self.options.import.iter().zip(&self.sessions) {
            let repository = match session {
                Some(Ok(repository)) => Some(repository),
                _ => None,
            };
            let Some(backend) = backend(location, repository, &self.registry) else {
                continue;
            };
            match read_checked(&backend, &tag, key, store) {
                Ok(Ok(Some(found))) => return Some(found),
                Ok(Ok(None)) => {}
                Ok(Err(why)) => self.warnings.push(format!(
                    "ignoring the cache entry `{tag}` of `{location}`: {why}; the step runs"
                )),
                Err(e) => self.warnings.push(format!(
                    "cache `{location}` could not be read ({}); the step runs",
                    error_chain(&e)
                )),
            }
        }
        None
    }

    /// Notes a step's result for export (nothing happens unless a cache is written).
    pub fn note(&mut self, result: StepResult) {
        if self.exporting() && !self.results.iter().any(|r| r.key == result.key) {
            self.results.push(result);
        }
    }

    /// Writes the noted results of `stages` (`mode=min`: the final stage only) to the
    /// `--cache-to` cache, each only when its entry is absent. `now` is the creation time
    /// recorded (Unix seconds).
    pub fn export(
        &self,
        store: &Store,
        final_stage: usize,
        now: i64,
    ) -> Result<ExportSummary, SharedCacheError> {
        let Some((location, mode)) = &self.options.export else {
            return Ok(ExportSummary::default());
        };
        let repository = open(location, &self.registry, true)?;
        let backend = backend(location, repository.as_ref(), &self.registry)
            .expect("an opened cache has a backend");
        let mut summary = ExportSummary::default();
        for result in &self.results {
            if *mode == ExportMode::Min && result.stage != final_stage {
                continue;
            }
            let tag = entry::tag_for(&result.key);
            if backend.has_entry(&tag)? {
                summary.present += 1;
                continue;
            }
            let record = Record {
                version: 1,
                key: result.key.clone(),
                kind: result.kind.to_owned(),
                step: result.step.clone(),
                platform: result.platform.clone(),
                parents: result.parents.clone(),
                layers: result.layer.iter().cloned().collect(),
                materials: result.materials.iter().map(RecordedMaterial::of).collect(),
                created: crate::image::rfc3339(now),
            };
            let record_bytes = serde_json::to_vec(&record).map_err(|e| SharedCacheError::Io {
                location: location.to_string(),
                action: "serialize the record of",
                path: tag.clone().into(),
                source: std::io::Error::other(e),
            })?;
            let (record_digest, record_size) =
                store
                    .put_bytes(&record_bytes)
                    .map_err(|source| SharedCacheError::Store {
                        location: location.to_string(),
                        source,
                    })?;
            let manifest = entry::manifest_for(&record, record_digest, record_size);
            let manifest_bytes =
                serde_json::to_vec(&manifest).map_err(|e| SharedCacheError::Io {
                    location: location.to_string(),
                    action: "serialize the manifest of",
                    path: tag.clone().into(),
                    source: std::io::Error::other(e),
                })?;
            let mut blobs = manifest.layers.clone();
            blobs.push(manifest.config.clone());
            backend.write_entry(&tag, &manifest_bytes, &blobs, store)?;
            summary.written += 1;
        }
        Ok(summary)
    }
}

/// The entry `tag` of `backend` for `key`: `Ok(Ok(None))` when absent, `Ok(Err(why))` when it
/// fails a check.
fn read_checked(
    backend: &Backend<'_>,
    tag: &str,
    key: &Digest,
    store: &Store,
) -> Result<Result<Option<Found>, String>, SharedCacheError> {
    let Some(bytes) = backend.read_entry(tag)? else {
        return Ok(Ok(None));
    };
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(e) => return Ok(Err(format!("its manifest does not parse: {e}"))),
    };
    if manifest.config.media_type != entry::RECORD_MEDIA_TYPE {
        return Ok(Err(format!(
            "its config is `{}`, not a kiln step record",
            manifest.config.media_type
        )));
    }
    backend.fetch_blob(&manifest.config, store)?;
    let record_bytes = store
        .read_bytes(&manifest.config.digest)
        .map_err(|source| SharedCacheError::Store {
            location: tag.to_owned(),
            source,
        })?;
    let record: Record = match serde_json::from_slice(&record_bytes) {
        Ok(record) => record,
        Err(e) => return Ok(Err(format!("its record does not parse: {e}"))),
    };
    if let Err(why) = entry::check(&manifest, &record, key) {
        return Ok(Err(why));
    }
    for (descriptor, layer) in manifest.layers.iter().zip(&record.layers) {
        backend.fetch_blob(descriptor, store)?;
        match diff_id_of(store, &layer.digest) {
            Ok(diff_id) if diff_id == layer.diff_id => {}
            Ok(diff_id) => {
                return Ok(Err(format!(
                    "its layer {} decompresses to diffID {diff_id}, but its record says {}",
                    layer.digest, layer.diff_id
                )));
            }
            Err(e) => {
                return Ok(Err(format!(
                    "its layer {} does not decompress: {e}",
                    layer.digest
                )));
            }
        }
    }
    Ok(Ok(Some(Found {
        layer: record.layers.into_iter().next(),
        materials: record
            .materials
            .iter()
            .map(RecordedMaterial::to_material)
            .collect(),
    })))
}

/// The diffID of the stored layer blob `digest`: sha256 of its decompressed bytes.
fn diff_id_of(store: &Store, digest: &Digest) -> std::io::Result<Digest> {
    let mut reader = crate::layer::reader::open_file_decompressed(&store.blob_path(digest))?;
    let mut sink = HashingWriter::new(std::io::sink());
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        std::io::Write::write_all(&mut sink, &buffer[..read])?;
    }
    Ok(sink.finish().1)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What [`prune`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneSummary {
    /// Entries removed.
    pub removed: Vec<String>,
    /// Entries kept (younger than the limit).
    pub kept: usize,
    /// Entries without a readable creation time, left alone.
    pub unreadable: Vec<String>,
    /// Blobs of a local cache no entry references any more, removed.
    pub blobs_removed: usize,
}

/// Removes the entries of `location` created more than `older_than` seconds before `now`
/// (Unix seconds). A registry must allow deletes; the error says how when it does not. The
/// registry's own garbage collection frees the blobs; a local cache's unreferenced blobs are
/// removed here.
pub fn prune(
    location: &CacheLocation,
    older_than: i64,
    now: i64,
    registry: &RegistryOptions,
) -> Result<PruneSummary, SharedCacheError> {
    let repository = open(location, registry, false)?;
    let backend =
        backend(location, repository.as_ref(), registry).expect("an opened cache has a backend");
    let mut summary = PruneSummary::default();
    for tag in backend.list_entries()? {
        let Some(bytes) = backend.read_entry(&tag)? else {
            continue;
        };
        let created = serde_json::from_slice::<Manifest>(&bytes)
            .ok()
            .and_then(|m| m.annotations.get(entry::CREATED_ANNOTATION).cloned())
            .and_then(|text| entry::parse_created(&text));
        match created {
            Some(created) if now - created > older_than => {
                backend.delete_entry(&tag, &Digest::of(&bytes))?;
                summary.removed.push(tag);
            }
            Some(_) => summary.kept += 1,
            None => summary.unreadable.push(tag),
        }
    }
    summary.blobs_removed = backend.collect_garbage()?;
    Ok(summary)
}
