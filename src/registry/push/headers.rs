//! The upload protocol's headers: `OCI-Chunk-Min-Length`, `Location` (relative or absolute),
//! `Range`, and `Docker-Content-Digest` checked on a finished upload.

use reqwest::Url;

use super::super::RegistryError;
use super::super::client::header;
use crate::digest::Digest;
/// `OCI-Chunk-Min-Length`, when sent.
pub(crate) fn chunk_min(response: &reqwest::Response) -> Option<u64> {
    header(response, "oci-chunk-min-length").and_then(|v| v.trim().parse().ok())
}

/// The response's `Location`, resolved against the request URL (absolute or relative).
pub(crate) fn location(request: &Url, response: &reqwest::Response) -> Result<Url, RegistryError> {
    let value = header(response, "location").ok_or_else(|| RegistryError::Status {
        method: "POST".to_owned(),
        url: request.to_string(),
        status: response.status().as_u16(),
        detail: Some("the registry sent no Location for the upload session".to_owned()),
        hint: None,
    })?;
    request.join(&value).map_err(|e| RegistryError::Status {
        method: "POST".to_owned(),
        url: request.to_string(),
        status: response.status().as_u16(),
        detail: Some(format!("invalid upload Location `{value}`: {e}")),
        hint: None,
    })
}

/// The end of a `Range: 0-<end>` header (with or without a `bytes=` prefix).
pub(crate) fn range_end(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    value.split_once('-')?.1.trim().parse().ok()
}

/// Checks `Docker-Content-Digest` on a finished upload, when the registry sends it.
pub(crate) fn check_committed(
    response: &reqwest::Response,
    digest: &Digest,
    url: &Url,
) -> Result<(), RegistryError> {
    if let Some(returned) =
        header(response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
        && &returned != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: "uploaded blob".to_owned(),
            url: url.to_string(),
            expected: digest.clone(),
            actual: returned,
        });
    }
    Ok(())
}
