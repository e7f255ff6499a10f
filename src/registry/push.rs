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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use reqwest::{Method, Url};

use super::client::{Body, Retry, Session, header};
use super::{Reference, RegistryError, RegistryOptions, UploadMode};
use crate::digest::Digest;
use crate::image::BuiltImage;
use crate::image::manifest::{
    Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::store::Store;

mod failure;
mod headers;

use failure::{Fail, manifest_put_retryable};
use headers::{check_committed, chunk_min, location, range_end};

/// Largest PATCH body: GHCR refuses larger ones with 416.
const MAX_CHUNK: u64 = 4 << 20;
/// Resumes (after a 416 or a dropped connection) allowed within one chunked upload.
const MAX_RESUMES: u32 = 8;

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

    /// The ladder for one blob, inside one retry loop.
    async fn push_blob(&self, descriptor: &Descriptor) -> Result<(), RegistryError> {
        let digest = &descriptor.digest;
        let attempts = self.session.attempts();
        let mut chunked = self.options.upload == UploadMode::Chunked;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut session_url: Option<Url> = None;
            let result = self
                .attempt_blob(descriptor, attempt, &mut chunked, &mut session_url)
                .await;
            match result {
                Ok(how) => {
                    match how {
                        "exists" => self.stats.existing.fetch_add(1, Ordering::Relaxed),
                        "mounted" => self.stats.mounted.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            self.stats
                                .bytes
                                .fetch_add(descriptor.size, Ordering::Relaxed);
                            self.stats.uploaded.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    self.session.reporter.blob_done(digest, how);
                    return Ok(());
                }
                Err(fail) => {
                    if let Some(url) = session_url {
                        self.cancel(url).await;
                    }
                    self.session.reporter.blob_rollback(digest);
                    match fail {
                        Fail::Retry(e) if attempt < attempts => {
                            if self.options.upload == UploadMode::Auto && !chunked {
                                chunked = true;
                            }
                            let delay = self.session.delay(attempt);
                            tracing::warn!(%digest, error = %e, ?delay, "blob upload failed; retrying");
                            tokio::time::sleep(delay).await;
                        }
                        Fail::Retry(e) | Fail::Fatal(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// The repository to mount `digest` from: the only `mount_from` repository (the mount
    /// itself says whether it has the blob), or among several the first whose `HEAD` finds it.
    async fn mount_source(&self, digest: &Digest) -> Option<String> {
        let candidates: Vec<&String> = self
            .options
            .mount_from
            .iter()
            .filter(|from| **from != self.repo)
            .collect();
        if let [only] = candidates.as_slice() {
            return Some((*only).clone());
        }
        for from in candidates {
            let url = self
                .session
                .url(&format!("v2/{from}/blobs/{digest}"))
                .ok()?;
            if let Ok(response) = self
                .session
                .send(Method::HEAD, url, &[], Body::Empty, Retry::Idempotent)
                .await
                && response.status().is_success()
            {
                return Some(from.clone());
            }
        }
        None
    }

    /// One climb of the ladder; `session_url` holds an open upload session to cancel on failure.
    async fn attempt_blob(
        &self,
        descriptor: &Descriptor,
        attempt: u32,
        chunked: &mut bool,
        session_url: &mut Option<Url>,
    ) -> Result<&'static str, Fail> {
        let digest = &descriptor.digest;
        let session = &self.session;
        // 1. HEAD.
        let url = session.url(&format!("v2/{}/blobs/{digest}", self.repo))?;
        let response = session
            .send(
                Method::HEAD,
                url.clone(),
                &[],
                Body::Empty,
                Retry::Idempotent,
            )
            .await?;
        if response.status().is_success() {
            return Ok("exists");
        }
        // 2. Mount (first attempt only: a failed mount is not retried).
        let uploads = session.url(&format!("v2/{}/blobs/uploads/", self.repo))?;
        let mut min_chunk = None;
        if attempt == 1
            && let Some(from) = self.mount_source(digest).await
        {
            let mut mount = uploads.clone();
            mount
                .query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", &from);
            match session
                .send(
                    Method::POST,
                    mount.clone(),
                    &[],
                    Body::Empty,
                    Retry::Idempotent,
                )
                .await
            {
                Ok(response) if response.status().as_u16() == 201 => return Ok("mounted"),
                Ok(response) if response.status().as_u16() == 202 => {
                    min_chunk = chunk_min(&response);
                    *session_url = Some(location(&mount, &response)?);
                }
                Ok(response) => {
                    tracing::debug!(status = response.status().as_u16(), %digest, "mount refused; uploading");
                }
                Err(e) => tracing::debug!(error = %e, %digest, "mount failed; uploading"),
            }
        }
        // Only an upload needs the bytes: a blob the registry has or mounts may be absent here.
        if !self.store.contains(digest) {
            return Err(Fail::Fatal(RegistryError::Usage(format!(
                "blob {digest} is not in the store at `{}` and the registry has none to mount; \
                 build or pull the image first",
                self.store.root().display()
            ))));
        }
        // 3. POST a session (unless the mount opened one).
        let upload_url = match session_url.clone() {
            Some(url) => url,
            None => {
                let response = session
                    .send(
                        Method::POST,
                        uploads.clone(),
                        &[],
                        Body::Empty,
                        Retry::Idempotent,
                    )
                    .await?;
                let response = session.expect(response, &[202], "POST", &uploads).await?;
                min_chunk = chunk_min(&response);
                let url = location(&uploads, &response)?;
                *session_url = Some(url.clone());
                url
            }
        };
        session.reporter.blob_started(digest, descriptor.size);
        // 4. Upload.
        let path = self.store.blob_path(digest);
        if *chunked {
            self.chunked_upload(descriptor, upload_url, min_chunk, session_url)
                .await?;
        } else {
            let mut put = upload_url.clone();
            put.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let result = session
                .send(
                    Method::PUT,
                    put.clone(),
                    &[("content-type", "application/octet-stream".to_owned())],
                    Body::File {
                        path,
                        offset: 0,
                        len: descriptor.size,
                        digest: digest.clone(),
                    },
                    Retry::Once,
                )
                .await?;
            let response = session.expect(result, &[201, 204], "PUT", &put).await?;
            check_committed(&response, digest, &put)?;
        }
        *session_url = None;
        Ok("uploaded")
    }

    /// Chunked PATCH upload with resume, then the closing PUT.
    async fn chunked_upload(
        &self,
        descriptor: &Descriptor,
        mut url: Url,
        min_chunk: Option<u64>,
        session_url: &mut Option<Url>,
    ) -> Result<(), Fail> {
        let session = &self.session;
        let digest = &descriptor.digest;
        // At most 4 MiB (GHCR's PATCH limit) unless the registry demands larger chunks.
        let chunk = match min_chunk {
            Some(min) if min > MAX_CHUNK => min,
            _ => MAX_CHUNK,
        };
        let path = self.store.blob_path(digest);
        let mut offset = 0u64;
        let mut resumes = 0;
        while offset < descriptor.size {
            let len = chunk.min(descriptor.size - offset);
            let result = session
                .send(
                    Method::PATCH,
                    url.clone(),
                    &[
                        ("content-type", "application/octet-stream".to_owned()),
                        ("content-range", format!("{offset}-{}", offset + len - 1)),
                    ],
                    Body::File {
                        path: path.clone(),
                        offset,
                        len,
                        digest: digest.clone(),
                    },
                    Retry::Once,
                )
                .await;
            let needs_resume = match &result {
                Err(RegistryError::Connect { .. }) => true,
                Ok(response) => response.status().as_u16() == 416,
                Err(_) => false,
            };
            if needs_resume {
                resumes += 1;
                if resumes > MAX_RESUMES {
                    return Err(Fail::Retry(match result {
                        Err(e) => e,
                        Ok(response) => session.status_error(response, "PATCH", &url).await,
                    }));
                }
                let (next_url, next_offset) = self.upload_status(&url).await?;
                url = next_url;
                *session_url = Some(url.clone());
                offset = next_offset;
                continue;
            }
            let response = session.expect(result?, &[202], "PATCH", &url).await?;
            let next = location(&url, &response)?;
            offset = match header(&response, "range").as_deref().and_then(range_end) {
                Some(end) => end + 1,
                None => offset + len,
            };
            url = next;
            *session_url = Some(url.clone());
        }
        let mut put = url.clone();
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = session
            .send(Method::PUT, put.clone(), &[], Body::Empty, Retry::Once)
            .await?;
        let response = session.expect(response, &[201, 204], "PUT", &put).await?;
        check_committed(&response, digest, &put)?;
        Ok(())
    }

    /// `GET <upload url>` -> (its Location, the next offset from `Range`).
    async fn upload_status(&self, url: &Url) -> Result<(Url, u64), Fail> {
        let response = self.session.get(url, &[], &[204]).await?;
        let next = match header(&response, "location") {
            Some(_) => location(url, &response)?,
            None => url.clone(),
        };
        // distribution reports an empty session as `0-0` (not `0--1`): resume from 0 then. If
        // one byte had arrived, the PATCH from 0 gets a 416 and the next status check says so.
        let offset = match header(&response, "range").as_deref().and_then(range_end) {
            None | Some(0) => 0,
            Some(end) => end + 1,
        };
        Ok((next, offset))
    }

    /// Abandons an upload session (best effort).
    async fn cancel(&self, url: Url) {
        let _ = self
            .session
            .send(Method::DELETE, url, &[], Body::Empty, Retry::Once)
            .await;
    }
}

#[cfg(test)]
mod tests;
