//! One blob streamed from the registry into the store, verified while it arrives; a transfer
//! that breaks or arrives damaged is restarted, bounded by the retry policy.

use futures_util::StreamExt;
use reqwest::Url;
use std::io::Write;

use super::super::RegistryError;
use super::super::client::Session;
use crate::image::manifest::Descriptor;
use crate::store::Store;
/// Streams blob `descriptor` into the store, verifying size and digest; a transfer that breaks
/// is restarted (bounded by the retry policy).
pub(crate) async fn download_blob(
    session: &Session,
    store: &Store,
    repo: &str,
    descriptor: &Descriptor,
) -> Result<(), RegistryError> {
    let url = session.url(&format!("v2/{repo}/blobs/{}", descriptor.digest))?;
    let what = format!("blob {}", descriptor.digest);
    let attempts = session.attempts();
    let mut attempt = 0;
    loop {
        attempt += 1;
        session
            .reporter
            .blob_started(&descriptor.digest, descriptor.size);
        match download_once(session, store, &url, descriptor, &what).await {
            Ok(()) => {
                session.reporter.blob_done(&descriptor.digest, "downloaded");
                return Ok(());
            }
            Err(Transfer::Broken(detail)) if attempt < attempts => {
                session.reporter.blob_rollback(&descriptor.digest);
                tracing::warn!(%url, %detail, "blob download broke; restarting it");
                tokio::time::sleep(session.delay(attempt)).await;
            }
            Err(Transfer::Broken(detail)) => {
                return Err(RegistryError::Connect {
                    action: "download".to_owned(),
                    url: url.to_string(),
                    detail,
                    hint: None,
                });
            }
            Err(Transfer::Damaged(e)) if attempt < attempts => {
                session.reporter.blob_rollback(&descriptor.digest);
                tracing::warn!(%url, error = %e, "blob download damaged; restarting it");
                tokio::time::sleep(session.delay(attempt)).await;
            }
            Err(Transfer::Damaged(e) | Transfer::Fatal(e)) => return Err(e),
        }
    }
}

pub(crate) enum Transfer {
    /// The connection broke mid-body: restart.
    Broken(String),
    /// The bytes arrived whole but are not the blob: restart, and report this error at the end.
    Damaged(RegistryError),
    /// Anything else.
    Fatal(RegistryError),
}

impl From<RegistryError> for Transfer {
    fn from(e: RegistryError) -> Self {
        Transfer::Fatal(e)
    }
}

pub(crate) async fn download_once(
    session: &Session,
    store: &Store,
    url: &Url,
    descriptor: &Descriptor,
    what: &str,
) -> Result<(), Transfer> {
    let response = session.get(url, &[], &[200]).await?;
    let mut writer = store.writer().map_err(RegistryError::from)?;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Transfer::Broken(super::super::client::describe_transport(&e)))?;
        if writer.len() + chunk.len() as u64 > descriptor.size {
            return Err(Transfer::Fatal(RegistryError::SizeMismatch {
                what: what.to_owned(),
                url: url.to_string(),
                expected: descriptor.size,
                actual: writer.len() + chunk.len() as u64,
            }));
        }
        writer.write_all(&chunk).map_err(|source| {
            Transfer::Fatal(RegistryError::Io {
                action: "write a blob into the store at",
                path: store.root().to_owned(),
                source,
            })
        })?;
        session
            .reporter
            .blob_progress(&descriptor.digest, chunk.len() as u64);
    }
    if writer.len() != descriptor.size {
        return Err(Transfer::Broken(format!(
            "the body ended after {} of {} bytes",
            writer.len(),
            descriptor.size
        )));
    }
    match writer.commit(Some(&descriptor.digest)) {
        Ok(_) => Ok(()),
        // Nothing was stored; bytes damaged on the way are fetched again (bounded), and a
        // registry that keeps serving other bytes fails with the mismatch after the last try.
        Err(crate::store::StoreError::DigestMismatch {
            expected, actual, ..
        }) => Err(Transfer::Damaged(RegistryError::DigestMismatch {
            what: what.to_owned(),
            url: url.to_string(),
            expected,
            actual,
        })),
        Err(e) => Err(Transfer::Fatal(e.into())),
    }
}
