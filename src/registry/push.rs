//! Pushing an image (or an index) from the store to a registry: [`push`], [`push_manifest`].
//!
//! Each blob climbs a ladder inside one retry loop (no nested retries):
//! 1. `HEAD` the blob: present -> done (a second push sends no blob bytes);
//! 2. when `mount_from` repositories are configured, `POST ?mount=<digest>&from=<repo>` (among
//!    several, from the first whose `HEAD` finds the blob):
//!    201 -> mounted; 202 -> the registry opened a normal upload session, which is reused;
//!    any error -> plain upload (Harbor and Quay answer mounts oddly);
//! 3. `POST` an upload session (`Content-Length: 0`), noting `OCI-Chunk-Min-Length`;
//! 4. upload: one monolithic `PUT <Location>&digest=` streaming the blob from the store with
//!    its `Content-Length`, or chunked `PATCH`es of at most 4 MiB (or the registry's minimum)
//!    with `Content-Range`, resuming from the registry's `Range` after a 416 or a dropped
//!    connection, then `PUT ?digest=`. [`UploadMode::Auto`](super::UploadMode) starts
//!    monolithic and switches to chunked after a 413/416 or a dropped connection;
//! 5. on failure the upload session is `DELETE`d, progress is rolled back, and the ladder
//!    restarts after a backoff while the retry policy allows.
//!
//! `Location` headers may be relative or absolute and may already carry a query (`?_state=`);
//! `digest=` is merged into the query properly. Layers go in parallel (bounded by `jobs`),
//! then the config, then the manifest (exact bytes and media type) to every target. For an
//! index, each child manifest is pushed by digest first, then the index to the tags.
//!
//! This file pushes manifests and walks their children; the blob ladder is in `blob.rs`, which
//! failures are retried in `failure.rs`, and the upload protocol's headers in `headers.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use reqwest::Method;

use super::client::{Body, Retry, Session, header};
use super::{Reference, RegistryError, RegistryOptions};
use crate::digest::Digest;
use crate::image::BuiltImage;
use crate::image::manifest::{
    Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::store::Store;

mod blob;
mod failure;
mod headers;

use failure::manifest_put_retryable;

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushResult {
    /// The digest of the manifest (or index) pushed to the targets.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Every target written, as `registry/repository:tag@sha256:...`.
    pub pushed: Vec<String>,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs the registry already had (HEAD 200).
    pub blobs_existing: u64,
    /// Blobs mounted from `mount_from`.
    pub blobs_mounted: u64,
    /// Blob bytes sent.
    pub bytes_uploaded: u64,
}

#[derive(Default)]
struct Stats {
    uploaded: AtomicU64,
    existing: AtomicU64,
    mounted: AtomicU64,
    bytes: AtomicU64,
}

/// Pushes `image` (its layers, config and manifest, all in `store`) to every reference in
/// `targets` (tags, or the manifest digest). Blocks the calling thread.
pub fn push(
    store: &Store,
    image: &BuiltImage,
    targets: &[Reference],
    options: &RegistryOptions,
) -> Result<PushResult, RegistryError> {
    let bytes = store.read_bytes(&image.manifest.digest)?;
    push_manifest(store, &bytes, &image.manifest.media_type, targets, options)
}

/// Pushes the manifest or index `bytes` of `media_type` to every target, after everything it
/// references: an image manifest's layers and config; an index's child manifests (by digest,
/// each after its own blobs), read from `store`. Blocks the calling thread.
pub fn push_manifest(
    store: &Store,
    bytes: &[u8],
    media_type: &str,
    targets: &[Reference],
    options: &RegistryOptions,
) -> Result<PushResult, RegistryError> {
    let mut located = Vec::with_capacity(targets.len());
    for target in targets {
        located.push(options.at_locations(target, false, |place| Ok(place.clone()))?);
    }
    super::block_on(push_async(store, bytes, media_type, &located, options))
}

async fn push_async(
    store: &Store,
    bytes: &[u8],
    media_type: &str,
    targets: &[Reference],
    options: &RegistryOptions,
) -> Result<PushResult, RegistryError> {
    if options.offline {
        return Err(RegistryError::Usage(
            "cannot push in offline mode; drop --offline".to_owned(),
        ));
    }
    if targets.is_empty() {
        return Err(RegistryError::Usage(
            "nothing to push to: give at least one target reference".to_owned(),
        ));
    }
    let digest = Digest::of(bytes);
    for target in targets {
        if let Some(pinned) = target.digest()
            && pinned != &digest
        {
            return Err(RegistryError::Usage(format!(
                "target `{target}` names digest {pinned}, but the manifest being pushed is {digest}"
            )));
        }
    }
    let stats = Arc::new(Stats::default());
    let mut pushed = Vec::new();
    // One session per repository; targets in the same repository share the blob uploads.
    let mut done: Vec<(String, String)> = Vec::new();
    for target in targets {
        let key = (target.registry().to_owned(), target.repository().to_owned());
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        let mut scopes = vec![format!("repository:{}:pull,push", target.repository())];
        for from in &options.mount_from {
            if from != target.repository() {
                scopes.push(format!("repository:{from}:pull"));
            }
        }
        let session = Arc::new(Session::new(target, scopes, options)?);
        let pusher = Pusher {
            session: session.clone(),
            store,
            repo: target.repository().to_owned(),
            options,
            stats: stats.clone(),
        };
        pusher.push_children(bytes, media_type, 0).await?;
        for same in targets
            .iter()
            .filter(|t| t.registry() == target.registry() && t.repository() == target.repository())
        {
            let reference = match same.tag() {
                Some(tag) => tag.to_owned(),
                None => same.manifest_ref(),
            };
            pusher
                .put_manifest(&reference, bytes, media_type, &digest)
                .await?;
            let name = match same.tag() {
                Some(tag) => format!("{}:{tag}@{digest}", same.name()),
                None => format!("{}@{digest}", same.name()),
            };
            options.reporter.manifest_pushed(&name, &digest);
            pushed.push(name);
        }
    }
    Ok(PushResult {
        digest,
        media_type: media_type.to_owned(),
        pushed,
        blobs_uploaded: stats.uploaded.load(Ordering::Relaxed),
        blobs_existing: stats.existing.load(Ordering::Relaxed),
        blobs_mounted: stats.mounted.load(Ordering::Relaxed),
        bytes_uploaded: stats.bytes.load(Ordering::Relaxed),
    })
}

/// Pushes the image manifest `bytes` of `media_type` (after its layers and config, from
/// `store`) to `tag` of `repo`, through an open `session` of that repository.
pub(crate) async fn push_manifest_in(
    session: Arc<Session>,
    repo: &str,
    store: &Store,
    bytes: &[u8],
    media_type: &str,
    tag: &str,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    if options.offline {
        return Err(RegistryError::Usage(
            "cannot push in offline mode; drop --offline".to_owned(),
        ));
    }
    let pusher = Pusher {
        session,
        store,
        repo: repo.to_owned(),
        options,
        stats: Arc::new(Stats::default()),
    };
    pusher.push_children(bytes, media_type, 0).await?;
    pusher
        .put_manifest(tag, bytes, media_type, &Digest::of(bytes))
        .await
}

struct Pusher<'a> {
    session: Arc<Session>,
    store: &'a Store,
    repo: String,
    options: &'a RegistryOptions,
    stats: Arc<Stats>,
}

fn media_kind(media_type: &str) -> Option<bool> {
    match media_type {
        MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => Some(false),
        MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => Some(true),
        _ => None,
    }
}

impl Pusher<'_> {
    /// Pushes everything `bytes` references (not `bytes` itself).
    async fn push_children(
        &self,
        bytes: &[u8],
        media_type: &str,
        depth: usize,
    ) -> Result<(), RegistryError> {
        let what = format!("manifest {}", Digest::of(bytes));
        match media_kind(media_type) {
            Some(false) => {
                let manifest: Manifest =
                    serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidDocument {
                        what: "image manifest".to_owned(),
                        url: what.clone(),
                        detail: e.to_string(),
                    })?;
                let mut layers: Vec<Descriptor> = Vec::new();
                for layer in &manifest.layers {
                    if !layers.iter().any(|l| l.digest == layer.digest) {
                        layers.push(layer.clone());
                    }
                }
                let results: Vec<Result<(), RegistryError>> = futures_util::stream::iter(layers)
                    .map(|layer| async move { self.push_blob(&layer).await })
                    .buffer_unordered(self.options.jobs)
                    .collect()
                    .await;
                for result in results {
                    result?;
                }
                self.push_blob(&manifest.config).await
            }
            Some(true) => {
                if depth > 4 {
                    return Err(RegistryError::InvalidDocument {
                        what: "image index".to_owned(),
                        url: what,
                        detail: "indexes nested more than 4 deep".to_owned(),
                    });
                }
                let index: Index =
                    serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidDocument {
                        what: "image index".to_owned(),
                        url: what.clone(),
                        detail: e.to_string(),
                    })?;
                for child in &index.manifests {
                    if media_kind(&child.media_type).is_none() {
                        // A blob referenced directly by an index (rare): push it as a blob.
                        self.push_blob(child).await?;
                        continue;
                    }
                    let child_bytes = self.store.read_bytes(&child.digest)?;
                    Box::pin(self.push_children(&child_bytes, &child.media_type, depth + 1))
                        .await?;
                    self.put_manifest(
                        &child.digest.to_string(),
                        &child_bytes,
                        &child.media_type,
                        &child.digest,
                    )
                    .await?;
                }
                Ok(())
            }
            None => Err(RegistryError::UnsupportedMediaType {
                media_type: media_type.to_owned(),
                what: format!("{what} (push takes an OCI/Docker image manifest or index)"),
            }),
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes and media type; sent again
    /// (bounded by the retry policy) when the registry got damaged bytes: it answers
    /// `DIGEST_INVALID`/`MANIFEST_INVALID`, or stored a manifest with another digest (a PUT by
    /// tag), which the next PUT replaces.
    async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let attempts = self.session.attempts();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .put_manifest_once(reference, bytes, media_type, digest)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if attempt < attempts && manifest_put_retryable(&e) => {
                    let delay = self.session.delay(attempt);
                    tracing::warn!(%digest, error = %e, ?delay, "manifest upload failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn put_manifest_once(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = self
            .session
            .url(&format!("v2/{}/manifests/{reference}", self.repo))?;
        let response = self
            .session
            .send(
                Method::PUT,
                url.clone(),
                &[("content-type", media_type.to_owned())],
                Body::Bytes(Arc::from(bytes)),
                Retry::Idempotent,
            )
            .await?;
        let response = self
            .session
            .expect(response, &[200, 201, 202], "PUT", &url)
            .await?;
        if let Some(returned) =
            header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
            && &returned != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "pushed manifest (the registry rewrote it)".to_owned(),
                url: url.to_string(),
                expected: digest.clone(),
                actual: returned,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
