//! The ladder one blob climbs (see the module docs of [`super`]): `HEAD`, cross-repository
//! mount, upload session, monolithic `PUT` or chunked `PATCH`es with resume, commit; the
//! session cancelled and progress rolled back before each new attempt.

use std::sync::atomic::Ordering;

use reqwest::{Method, Url};

use super::Pusher;
use super::failure::Fail;
use super::headers::{check_committed, chunk_min, location, range_end};
use crate::digest::Digest;
use crate::image::manifest::Descriptor;
use crate::registry::client::{Body, Retry, header};
use crate::registry::{RegistryError, UploadMode};

/// Largest PATCH body: GHCR refuses larger ones with 416.
const MAX_CHUNK: u64 = 4 << 20;
/// Resumes (after a 416 or a dropped connection) allowed within one chunked upload.
const MAX_RESUMES: u32 = 8;

impl Pusher<'_> {
    /// The ladder for one blob, inside one retry loop.
    pub(super) async fn push_blob(&self, descriptor: &Descriptor) -> Result<(), RegistryError> {
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
