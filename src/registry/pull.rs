//! Pulling an image from a registry into the store: [`pull`].
//!
//! The manifest is fetched with an Accept list naming OCI and Docker manifests and indexes; an
//! index (or Docker manifest list) is resolved to the first entry matching the platform,
//! skipping attestation entries and `unknown/unknown`, the rules `image::base` applies to OCI
//! layouts. The config and the layers then stream into the store, hashed on the way and
//! committed only when they match their digest (`BlobWriter::commit(Some(digest))`); layers go
//! in parallel (`RegistryOptions::jobs`), and blobs the store already holds are not fetched.
//! Finally the image is read back through `image::load_oci_layout` over the store (the same
//! diffID, layer-count, media-type and platform checks as layout bases).
//!
//! The reference cache (`<store>/.kiln-refs/` by default) maps a tag reference to the manifest
//! digest it last resolved to; the manifest and index bytes are kept as store blobs. So a
//! reference pinned by digest whose blobs are stored needs no network at all, and
//! `offline(true)` resolves tags from the cache and fails with an error naming what is missing.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::Method;

use super::client::{Body, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Retry, Session, header};
use super::{Reference, RegistryError, RegistryOptions};
use crate::digest::Digest;
use crate::image::manifest::{
    Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::image::{BaseImage, ImageConfig, Platform};
use crate::layer::Layer;
use crate::store::Store;

pub(crate) mod blob;
mod ref_cache;

use blob::download_blob;
use ref_cache::RefCache;

/// How deep image indexes may nest (as `image::base`).
const MAX_INDEX_DEPTH: usize = 4;
/// Largest image config kiln reads into memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// An image pulled into the store.
#[derive(Clone, Debug, PartialEq)]
pub struct PulledImage {
    /// The reference as asked for.
    pub reference: Reference,
    /// The index the reference named, when it named one.
    pub index_digest: Option<Digest>,
    /// The platform-specific image manifest's digest.
    pub manifest_digest: Digest,
    /// The image config.
    pub config: ImageConfig,
    /// The layers, bottom first, with diffIDs from the config.
    pub layers: Vec<Layer>,
    /// `docker://registry/repository@sha256:...` (the platform manifest), for provenance.
    pub source: String,
}

impl From<PulledImage> for BaseImage {
    fn from(image: PulledImage) -> BaseImage {
        BaseImage {
            config: image.config,
            layers: image.layers,
            manifest_digest: image.manifest_digest,
            source: image.source,
        }
    }
}

/// Pulls `reference` for `platform` into `store` (see the module docs). Blocks the calling
/// thread; must not be called from inside a tokio runtime.
pub fn pull(
    reference: &Reference,
    platform: &Platform,
    store: &Store,
    options: &RegistryOptions,
) -> Result<PulledImage, RegistryError> {
    options.at_locations(reference, true, |place| {
        let mut image = super::block_on(pull_async(place, platform, store, options))?;
        if place != reference {
            // The image keeps the name it was asked for; only the bytes came from elsewhere.
            image.source = format!("docker://{}@{}", reference.name(), image.manifest_digest);
            image.reference = reference.clone();
        }
        Ok(image)
    })
}

/// The kind of a manifest-like document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// Lazily opened registry session: pinned, cached pulls never open one.
struct Lazy<'a> {
    reference: &'a Reference,
    options: &'a RegistryOptions,
    session: Option<Arc<Session>>,
}

impl Lazy<'_> {
    fn get(&mut self, missing: &str) -> Result<Arc<Session>, RegistryError> {
        if self.options.offline {
            return Err(RegistryError::Offline {
                reference: self.reference.to_string(),
                missing: missing.to_owned(),
            });
        }
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        let scope = format!("repository:{}:pull", self.reference.repository());
        let session = Arc::new(Session::new(self.reference, vec![scope], self.options)?);
        self.session = Some(session.clone());
        Ok(session)
    }
}

async fn pull_async(
    reference: &Reference,
    platform: &Platform,
    store: &Store,
    options: &RegistryOptions,
) -> Result<PulledImage, RegistryError> {
    let cache = RefCache::new(
        options
            .cache_dir
            .clone()
            .unwrap_or_else(|| store.root().join(".kiln-refs")),
    );
    let mut lazy = Lazy {
        reference,
        options,
        session: None,
    };
    let repo = reference.repository().to_owned();

    // 1. The digest the reference names, and its bytes.
    let pinned = reference.digest().cloned();
    let mut top = match &pinned {
        Some(digest) => Some(digest.clone()),
        None if options.offline => {
            Some(cache.get(reference).ok_or_else(|| RegistryError::Offline {
                reference: reference.to_string(),
                missing: "the manifest digest".to_owned(),
            })?)
        }
        None => None,
    };
    if top.is_none() {
        // Resolve the tag with HEAD (not counted by Docker Hub's pull limit); GET only when the
        // store lacks the manifest.
        let session = lazy.get("the manifest")?;
        let url = session.url(&format!("v2/{repo}/manifests/{}", reference.manifest_ref()))?;
        let response = session
            .send(
                Method::HEAD,
                url.clone(),
                &[("accept", MANIFEST_ACCEPT.to_owned())],
                Body::Empty,
                Retry::Idempotent,
            )
            .await?;
        if response.status().is_success()
            && let Some(digest) =
                header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
            && store.contains(&digest)
        {
            top = Some(digest);
        }
    }
    let (top_digest, top_bytes) = match top {
        Some(digest) => {
            let bytes = manifest_bytes(&mut lazy, store, &repo, &digest).await?;
            (digest, bytes)
        }
        None => {
            let session = lazy.get("the manifest")?;
            let (digest, bytes) =
                fetch_manifest(&session, &repo, &reference.manifest_ref(), None).await?;
            store.put_bytes(&bytes)?;
            (digest, bytes)
        }
    };
    if pinned.is_none() && !options.offline {
        cache.put(reference, &top_digest)?;
    }

    // 2. Index -> platform manifest.
    let mut digest = top_digest.clone();
    let mut bytes = top_bytes;
    let mut index_digest = None;
    let mut depth = 0;
    let manifest: Manifest = loop {
        let what = format!("{}@{digest}", reference.name());
        match sniff(&bytes, &what)? {
            Kind::Manifest => {
                break serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::InvalidDocument {
                        what: "image manifest".to_owned(),
                        url: what.clone(),
                        detail: e.to_string(),
                    }
                })?;
            }
            Kind::Index => {
                depth += 1;
                if depth > MAX_INDEX_DEPTH {
                    return Err(RegistryError::InvalidDocument {
                        what: "image index".to_owned(),
                        url: what,
                        detail: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
                    });
                }
                let index: Index =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidDocument {
                        what: "image index".to_owned(),
                        url: what.clone(),
                        detail: e.to_string(),
                    })?;
                index_digest.get_or_insert(digest.clone());
                let child = select_platform(&index, platform, &what)?;
                bytes = manifest_bytes(&mut lazy, store, &repo, &child.digest).await?;
                digest = child.digest;
            }
        }
    };

    // 3. Config, then layers in parallel.
    let config_what = format!("config {} of {}", manifest.config.digest, reference.name());
    if manifest.config.size > MAX_CONFIG_BYTES {
        return Err(RegistryError::SizeMismatch {
            what: format!("{config_what} (larger than kiln reads)"),
            url: reference.name(),
            expected: MAX_CONFIG_BYTES,
            actual: manifest.config.size,
        });
    }
    let mut missing: Vec<Descriptor> = Vec::new();
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if store.contains(&descriptor.digest) {
            options.reporter.blob_done(&descriptor.digest, "cached");
        } else if !missing.iter().any(|d| d.digest == descriptor.digest) {
            missing.push(descriptor.clone());
        }
    }
    if !missing.is_empty() {
        let session = lazy.get(&format!("blob {}", missing[0].digest))?;
        let results: Vec<Result<(), RegistryError>> = futures_util::stream::iter(missing)
            .map(|descriptor| {
                let session = session.clone();
                let repo = repo.clone();
                async move { download_blob(&session, store, &repo, &descriptor).await }
            })
            .buffer_unordered(options.jobs)
            .collect()
            .await;
        for result in results {
            result?;
        }
    }

    // 4. Read it back through the layout loader (diffIDs, platform, media types).
    let source = format!("docker://{}@{digest}", reference.name());
    let base = load_from_store(store, &digest, platform)?;
    Ok(PulledImage {
        reference: reference.clone(),
        index_digest,
        manifest_digest: digest,
        config: base.config,
        layers: base.layers,
        source,
    })
}

/// Fetches the manifest or index `reference` names, as the registry serves it (for
/// `kiln inspect`): its digest, verified, and its bytes. Blocks the calling thread.
pub fn fetch_raw_manifest(
    reference: &Reference,
    options: &RegistryOptions,
) -> Result<(Digest, Vec<u8>), RegistryError> {
    options.at_locations(reference, true, |reference| {
        fetch_raw_manifest_at(reference, options)
    })
}

fn fetch_raw_manifest_at(
    reference: &Reference,
    options: &RegistryOptions,
) -> Result<(Digest, Vec<u8>), RegistryError> {
    super::block_on(async {
        let session = open_session(reference, options, "the manifest")?;
        fetch_manifest(
            &session,
            reference.repository(),
            &reference.manifest_ref(),
            reference.digest(),
        )
        .await
    })
}

/// A session for one call on `reference`'s repository (pull scope); `missing` names what the
/// call needs, for the error `--offline` gives.
fn open_session(
    reference: &Reference,
    options: &RegistryOptions,
    missing: &str,
) -> Result<Arc<Session>, RegistryError> {
    Lazy {
        reference,
        options,
        session: None,
    }
    .get(missing)
}

/// Whether the registry of `reference` serves the OCI 1.1 referrers API
/// (`GET /v2/<name>/referrers/<digest>` answers 200 with an index); registries without it
/// (distribution 2.x, some hosted ones) answer 404, and attestations then go under the
/// `sha256-<hex>` fallback tag. Blocks the calling thread.
pub fn supports_referrers(
    reference: &Reference,
    digest: &Digest,
    options: &RegistryOptions,
) -> Result<bool, RegistryError> {
    Ok(fetch_referrers(reference, digest, options)?.is_some())
}

/// The referrers index the registry's OCI 1.1 referrers API serves for `digest`, or `None`
/// when the registry has no such API. Blocks the calling thread.
pub fn fetch_referrers(
    reference: &Reference,
    digest: &Digest,
    options: &RegistryOptions,
) -> Result<Option<Vec<u8>>, RegistryError> {
    options.at_locations(reference, true, |reference| {
        fetch_referrers_at(reference, digest, options)
    })
}

fn fetch_referrers_at(
    reference: &Reference,
    digest: &Digest,
    options: &RegistryOptions,
) -> Result<Option<Vec<u8>>, RegistryError> {
    super::block_on(async {
        let session = open_session(reference, options, "the referrers API")?;
        let url = session.url(&format!("v2/{}/referrers/{digest}", reference.repository()))?;
        let response = session
            .send(
                Method::GET,
                url.clone(),
                &[("accept", MEDIA_TYPE_OCI_INDEX.to_owned())],
                Body::Empty,
                Retry::Idempotent,
            )
            .await?;
        let is_index =
            header(&response, "content-type").is_some_and(|t| t.starts_with(MEDIA_TYPE_OCI_INDEX));
        if response.status().as_u16() != 200 || !is_index {
            return Ok(None);
        }
        Ok(Some(
            session
                .read_limited(response, &url, MAX_MANIFEST_BYTES)
                .await?,
        ))
    })
}

/// Copies the blob `descriptor` of `reference`'s repository into `store` (verified while it
/// streams; skipped when the store has it). Blocks the calling thread.
pub fn fetch_blob(
    reference: &Reference,
    descriptor: &Descriptor,
    store: &Store,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    if store.contains(&descriptor.digest) {
        return Ok(());
    }
    options.at_locations(reference, true, |reference| {
        super::block_on(async {
            let session = open_session(reference, options, &format!("blob {}", descriptor.digest))?;
            download_blob(&session, store, reference.repository(), descriptor).await
        })
    })
}

/// The bytes of manifest `digest`: from the store, or fetched (and stored) by digest.
async fn manifest_bytes(
    lazy: &mut Lazy<'_>,
    store: &Store,
    repo: &str,
    digest: &Digest,
) -> Result<Vec<u8>, RegistryError> {
    if store.contains(digest) {
        return Ok(store.read_bytes(digest)?);
    }
    let session = lazy.get(&format!("manifest {digest}"))?;
    let (_, bytes) = fetch_manifest(&session, repo, &digest.to_string(), Some(digest)).await?;
    store.put_bytes(&bytes)?;
    Ok(bytes)
}

/// GETs a manifest (by tag or digest), checks the size limit and the digest (the requested
/// one, else `Docker-Content-Digest` when sent), and returns its digest and bytes. A body cut
/// off or damaged on the way is fetched again, like a blob (bounded by the retry policy).
pub(crate) async fn fetch_manifest(
    session: &Session,
    repo: &str,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<(Digest, Vec<u8>), RegistryError> {
    let attempts = session.attempts();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_manifest_once(session, repo, reference, expected).await {
            Err(e @ (RegistryError::Connect { .. } | RegistryError::DigestMismatch { .. }))
                if attempt < attempts =>
            {
                tracing::warn!(error = %e, "manifest download broke; fetching it again");
                tokio::time::sleep(session.delay(attempt)).await;
            }
            result => return result,
        }
    }
}

async fn fetch_manifest_once(
    session: &Session,
    repo: &str,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<(Digest, Vec<u8>), RegistryError> {
    let url = session.url(&format!("v2/{repo}/manifests/{reference}"))?;
    let response = session
        .get(&url, &[("accept", MANIFEST_ACCEPT.to_owned())], &[200])
        .await?;
    let announced = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
    let bytes = session
        .read_limited(response, &url, MAX_MANIFEST_BYTES)
        .await?;
    let actual = Digest::of(&bytes);
    if let Some(expected) = expected.or(announced.as_ref())
        && expected != &actual
    {
        return Err(RegistryError::DigestMismatch {
            what: "manifest".to_owned(),
            url: url.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok((actual, bytes))
}

/// Whether `bytes` is an image manifest or an index, from its `mediaType` (or its shape when
/// an OCI document omits it). Schema 1 and anything else are refused.
fn sniff(bytes: &[u8], what: &str) -> Result<Kind, RegistryError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidDocument {
            what: "image manifest or index (JSON)".to_owned(),
            url: what.to_owned(),
            detail: e.to_string(),
        })?;
    let media_type = value.get("mediaType").and_then(|m| m.as_str());
    match media_type {
        Some(MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST) => Ok(Kind::Manifest),
        Some(MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST) => Ok(Kind::Index),
        None if value.get("config").is_some() && value.get("layers").is_some() => {
            Ok(Kind::Manifest)
        }
        None if value.get("manifests").is_some() => Ok(Kind::Index),
        Some(other) => Err(RegistryError::UnsupportedMediaType {
            media_type: other.to_owned(),
            what: format!(
                "{what} (kiln reads OCI and Docker schema-2 manifests and indexes{})",
                if other.contains("manifest.v1") {
                    "; schema 1 is obsolete: re-push the image with a current tool"
                } else {
                    ""
                }
            ),
        }),
        None => Err(RegistryError::InvalidDocument {
            what: "image manifest or index".to_owned(),
            url: what.to_owned(),
            detail: "no `mediaType`, `layers` or `manifests` field".to_owned(),
        }),
    }
}

/// The index entry for `platform`, by the same rules as local layouts
/// ([`crate::image::base::select_manifest`]).
fn select_platform(
    index: &Index,
    platform: &Platform,
    what: &str,
) -> Result<Descriptor, RegistryError> {
    match crate::image::base::select_manifest(index, platform) {
        (Some(chosen), _) => Ok(chosen.clone()),
        (None, available) => Err(RegistryError::PlatformNotFound {
            platform: platform.to_string(),
            reference: what.to_owned(),
            available,
        }),
    }
}

/// Reads the image manifest `digest` (all blobs in the store) through `image::load_oci_layout`,
/// using a scratch layout whose `blobs` directory is the store's.
fn load_from_store(
    store: &Store,
    digest: &Digest,
    platform: &Platform,
) -> Result<BaseImage, RegistryError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| RegistryError::Io {
            action,
            path,
            source,
        }
    };
    let root = std::fs::canonicalize(store.root()).map_err(io("resolve", store.root()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempdir_in(&root)
        .map_err(io("create a temp directory in", &root))?;
    let dir = scratch.path();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io("write", &dir.join("oci-layout")))?;
    std::fs::write(
        dir.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .map_err(io("write", &dir.join("index.json")))?;
    std::os::unix::fs::symlink(root.join("blobs"), dir.join("blobs"))
        .map_err(io("link the store's blobs into", dir))?;
    Ok(crate::image::load_oci_layout(
        store,
        dir,
        Some(&digest.to_string()),
        platform,
    )?)
}

/// The manifest digest `reference` names: its own, or the one its tag resolved to when it was
/// last pulled (what an `offline` pull uses); None when neither is known.
pub fn cached_digest(
    reference: &Reference,
    options: &RegistryOptions,
    store: &Store,
) -> Option<Digest> {
    reference.digest().cloned().or_else(|| {
        RefCache::new(
            options
                .cache_dir
                .clone()
                .unwrap_or_else(|| store.root().join(".kiln-refs")),
        )
        .get(reference)
    })
}

#[cfg(test)]
mod tests;
