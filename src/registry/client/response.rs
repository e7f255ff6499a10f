//! What a [`Session`] does with a response: GETs whose status must be expected, the
//! registry's error body turned into a [`RegistryError`] naming the URL and status, throttling
//! reported with its limits, and bodies read within a size limit.

use futures_util::StreamExt;
use reqwest::{Method, Url};

use super::super::RegistryError;
use super::{Body, Retry, Session, describe_transport, error_detail};

impl Session {
    /// Returns the response when its status is one of `ok`, else the registry's error.
    /// An idempotent `GET url` with `headers`, whose status must be one of `ok`.
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        ok: &[u16],
    ) -> Result<reqwest::Response, RegistryError> {
        let response = self
            .send(
                Method::GET,
                url.clone(),
                headers,
                Body::Empty,
                Retry::Idempotent,
            )
            .await?;
        self.expect(response, ok, "GET", url).await
    }

    pub(crate) async fn expect(
        &self,
        response: reqwest::Response,
        ok: &[u16],
        method: &str,
        url: &Url,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = response.status().as_u16();
        if ok.contains(&status) {
            return Ok(response);
        }
        Err(self.status_error(response, method, url).await)
    }

    /// The error for an unexpected response.
    pub(crate) async fn status_error(
        &self,
        response: reqwest::Response,
        method: &str,
        url: &Url,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let detail = error_detail(&body);
        if status == 403 {
            return self.unauthorized(
                &Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
                url,
                403,
                detail,
            );
        }
        let hint = match status {
            404 if method == "GET" || method == "HEAD" => Some(format!(
                "check the repository name and tag, and that you may read `{}`",
                url.path()
            )),
            413 => Some("the registry refused the request body as too large".to_owned()),
            _ => None,
        };
        RegistryError::Status {
            method: method.to_owned(),
            url: self.effective(url).to_string(),
            status,
            detail,
            hint,
        }
    }

    /// Reads a response body of at most `limit` bytes (a manifest).
    pub(crate) async fn read_limited(
        &self,
        response: reqwest::Response,
        url: &Url,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(len) = response.content_length()
            && len > limit
        {
            return Err(RegistryError::ManifestTooLarge {
                url: url.to_string(),
                size: len,
                limit,
            });
        }
        let mut out = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Connect {
                action: "read".to_owned(),
                url: url.to_string(),
                detail: describe_transport(&e),
                hint: None,
            })?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(RegistryError::ManifestTooLarge {
                    url: url.to_string(),
                    size: out.len() as u64,
                    limit,
                });
            }
        }
        Ok(out)
    }
}
