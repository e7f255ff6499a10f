//! One repository spoken to many times: [`Repository`] holds one session (one HTTP client, one
//! token) for a run of small requests, such as the shared build cache's lookups, where opening
//! a session per request (loading the trust store, probing TLS, fetching a token) would cost
//! more than the requests themselves.

use std::sync::Arc;

use reqwest::Method;

use super::client::{Body, MANIFEST_ACCEPT, Retry, Session};
use super::{Reference, RegistryError, RegistryOptions};
use crate::image::manifest::Descriptor;
use crate::store::Store;

/// An open session on one repository (at the location registries.conf maps it to).
pub struct Repository {
    reference: Reference,
    session: Arc<Session>,
    options: RegistryOptions,
}

impl Repository {
    /// Opens `reference`'s repository for reading, or for reading and writing when `write`.
    pub fn open(
        reference: &Reference,
        options: &RegistryOptions,
        write: bool,
    ) -> Result<Repository, RegistryError> {
        if options.offline {
            return Err(RegistryError::Offline {
                reference: reference.to_string(),
                missing: "the repository".to_owned(),
            });
        }
        let place = options.at_locations(reference, !write, |place| Ok(place.clone()))?;
        let actions = if write { "pull,push" } else { "pull" };
        let scope = format!("repository:{}:{actions}", place.repository());
        let session = Arc::new(Session::new(&place, vec![scope], options)?);
        Ok(Repository {
            reference: place,
            session,
            options: options.clone(),
        })
    }

    /// The repository, as reached.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The bytes of the manifest tagged `tag` (digest-checked when the registry names it), or
    /// `None` when there is no such tag. Blocks the calling thread.
    pub fn manifest(&self, tag: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let result = super::block_on(super::pull::fetch_manifest(
            &self.session,
            self.reference.repository(),
            tag,
            None,
        ));
        match result {
            Ok((_, bytes)) => Ok(Some(bytes)),
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the manifest tagged `tag` exists (`HEAD`). Blocks the calling thread.
    pub fn has_manifest(&self, tag: &str) -> Result<bool, RegistryError> {
        super::block_on(async {
            let url = self.session.url(&format!(
                "v2/{}/manifests/{tag}",
                self.reference.repository()
            ))?;
            let response = self
                .session
                .send(
                    Method::HEAD,
                    url.clone(),
                    &[("accept", MANIFEST_ACCEPT.to_owned())],
                    Body::Empty,
                    Retry::Idempotent,
                )
                .await?;
            match response.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                _ => Err(self.session.status_error(response, "HEAD", &url).await),
            }
        })
    }

    /// Copies the blob `descriptor` into `store`, verified while it streams (skipped when the
    /// store has it). Blocks the calling thread.
    pub fn fetch_blob(&self, descriptor: &Descriptor, store: &Store) -> Result<(), RegistryError> {
        if store.contains(&descriptor.digest) {
            return Ok(());
        }
        super::block_on(super::pull::blob::download_blob(
            &self.session,
            store,
            self.reference.repository(),
            descriptor,
        ))
    }

    /// Pushes the image manifest `bytes` of `media_type` to `tag`, after its layers and
    /// config (from `store`; each `HEAD`ed first). Needs a repository opened for writing.
    /// Blocks the calling thread.
    pub fn push_manifest(
        &self,
        store: &Store,
        bytes: &[u8],
        media_type: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        super::block_on(super::push::push_manifest_in(
            self.session.clone(),
            self.reference.repository(),
            store,
            bytes,
            media_type,
            tag,
            &self.options,
        ))
    }
}
