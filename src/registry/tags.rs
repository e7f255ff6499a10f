//! Tags and manifests as things to list and remove: a repository's tags (`GET /tags/list`,
//! paginated), and deleting a manifest by digest.
//!
//! The shared build cache's prune uses these to find and remove old entries. Deleting needs
//! the registry to allow it: CNCF distribution refuses with 405 unless its configuration says
//! `storage: delete: enabled: true`, and the error says so.

use reqwest::{Method, Url};

use super::client::{Body, Retry, Session, header};
use super::{Reference, RegistryError, RegistryOptions};
use crate::digest::Digest;

/// Tags asked for per page: distribution's default page is 100; 1000 keeps a large cache to a
/// few requests, and no registry kiln talks to refuses it.
const TAGS_PAGE: usize = 1000;
/// A repository's tag listing is bounded, so a registry that keeps sending `Link` pages cannot
/// keep kiln reading forever.
const MAX_TAG_PAGES: usize = 10_000;

fn session(
    reference: &Reference,
    actions: &str,
    options: &RegistryOptions,
) -> Result<Session, RegistryError> {
    if options.offline {
        return Err(RegistryError::Offline {
            reference: reference.to_string(),
            missing: "the registry".to_owned(),
        });
    }
    Session::new(
        reference,
        vec![format!("repository:{}:{actions}", reference.repository())],
        options,
    )
}

/// Every tag of `reference`'s repository (an empty list when the repository does not exist),
/// following `Link` pages. Blocks the calling thread.
pub fn list_tags(
    reference: &Reference,
    options: &RegistryOptions,
) -> Result<Vec<String>, RegistryError> {
    options.at_locations(reference, true, |reference| {
        super::block_on(async {
            let session = session(reference, "pull", options)?;
            let mut url = session.url(&format!("v2/{}/tags/list", reference.repository()))?;
            url.query_pairs_mut()
                .append_pair("n", &TAGS_PAGE.to_string());
            let mut tags = Vec::new();
            for _ in 0..MAX_TAG_PAGES {
                let response = session
                    .send(
                        Method::GET,
                        url.clone(),
                        &[],
                        Body::Empty,
                        Retry::Idempotent,
                    )
                    .await?;
                if response.status().as_u16() == 404 && tags.is_empty() {
                    return Ok(tags);
                }
                let response = session.expect(response, &[200], "GET", &url).await?;
                let next = header(&response, "link").and_then(|link| next_page(&url, &link));
                let body = response.bytes().await.map_err(|e| RegistryError::Connect {
                    action: "read".to_owned(),
                    url: url.to_string(),
                    detail: super::client::describe_transport(&e),
                    hint: None,
                })?;
                #[derive(serde::Deserialize)]
                struct TagList {
                    #[serde(default)]
                    tags: Option<Vec<String>>,
                }
                let page: TagList =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidDocument {
                        what: "tag list".to_owned(),
                        url: url.to_string(),
                        detail: e.to_string(),
                    })?;
                tags.extend(page.tags.unwrap_or_default());
                match next {
                    Some(next) => url = next,
                    None => return Ok(tags),
                }
            }
            Err(RegistryError::InvalidDocument {
                what: "tag list".to_owned(),
                url: url.to_string(),
                detail: format!("more than {MAX_TAG_PAGES} pages"),
            })
        })
    })
}

/// The URL of the next page a `Link: <...>; rel="next"` header names, relative to `current`.
fn next_page(current: &Url, link: &str) -> Option<Url> {
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    current.join(target).ok()
}

/// Deletes the manifest `digest` from `reference`'s repository (every tag naming it goes with
/// it). A registry that does not allow deletes answers 405; the error says how to allow them.
/// Blocks the calling thread.
pub fn delete_manifest(
    reference: &Reference,
    digest: &Digest,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    options.at_locations(reference, false, |reference| {
        super::block_on(async {
            let session = session(reference, "pull,push,delete", options)?;
            let url = session.url(&format!("v2/{}/manifests/{digest}", reference.repository()))?;
            let response = session
                .send(
                    Method::DELETE,
                    url.clone(),
                    &[],
                    Body::Empty,
                    Retry::Idempotent,
                )
                .await?;
            match response.status().as_u16() {
                200 | 202 | 204 | 404 => Ok(()),
                405 => Err(RegistryError::Status {
                    method: "DELETE".to_owned(),
                    url: url.to_string(),
                    status: 405,
                    detail: Some("the registry does not allow deleting manifests".to_owned()),
                    hint: Some(
                        "allow deletes on the registry (CNCF distribution: `storage: delete: \
                         enabled: true` in its configuration), or remove old entries with the \
                         registry's own retention policy"
                            .to_owned(),
                    ),
                }),
                _ => Err(session.status_error(response, "DELETE", &url).await),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_follows_only_rel_next() {
        let current = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
        for (link, expected) in [
            (
                "</v2/a/tags/list?n=2&last=b>; rel=\"next\"",
                Some("http://127.0.0.1:5000/v2/a/tags/list?n=2&last=b"),
            ),
            ("</v2/a/tags/list?last=b>; rel=\"prev\"", None),
            ("no brackets; rel=\"next\"", None),
        ] {
            assert_eq!(
                next_page(&current, link).map(|u| u.to_string()),
                expected.map(str::to_owned),
                "{link}"
            );
        }
    }
}
