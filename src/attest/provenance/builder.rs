//! Who ran the build and when: the builder id (the GitHub Actions workflow, or kiln's local
//! id) with its run URL, and whether the statement records times and an invocation id.

use super::source::strip_userinfo;
use crate::attest::AttestError;

/// `builder.id` of a build outside a recognized CI (placeholder host).
pub const LOCAL_BUILDER_ID: &str = "https://kiln.example/builder/local/v1";

/// Who ran the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Builder {
    /// `builder.id`.
    pub id: String,
    /// The CI run (`.../actions/runs/<id>/attempts/<n>`), used as the invocation id when timing
    /// is recorded.
    pub run_url: Option<String>,
}

impl Builder {
    /// A build outside CI: [`LOCAL_BUILDER_ID`].
    pub fn local() -> Builder {
        Builder {
            id: LOCAL_BUILDER_ID.to_owned(),
            run_url: None,
        }
    }

    /// The builder as environment variables describe it (`get` looks one up): on GitHub
    /// Actions `GITHUB_SERVER_URL` + `GITHUB_WORKFLOW_REF` (+ `GITHUB_REPOSITORY`,
    /// `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT` for the run URL); else [`Builder::local`].
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Builder {
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        let Some(workflow_ref) = non_empty("GITHUB_WORKFLOW_REF") else {
            return Builder::local();
        };
        let server = non_empty("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        let server = strip_userinfo(server.trim_end_matches('/'));
        let run_url = match (
            non_empty("GITHUB_REPOSITORY"),
            non_empty("GITHUB_RUN_ID"),
            non_empty("GITHUB_RUN_ATTEMPT"),
        ) {
            (Some(repo), Some(run), attempt) => Some(format!(
                "{server}/{repo}/actions/runs/{run}/attempts/{}",
                attempt.as_deref().unwrap_or("1")
            )),
            _ => None,
        };
        Builder {
            id: format!("{server}/{workflow_ref}"),
            run_url,
        }
    }

    /// [`Builder::from_env`] over the process environment.
    pub fn from_process_env() -> Builder {
        Builder::from_env(|name| std::env::var(name).ok())
    }
}

/// Whether the statement records when and as which run it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timing {
    /// No `runDetails.metadata`: two builds of the same inputs give identical statements.
    Reproducible,
    /// `metadata.invocationId`, `startedOn`, `finishedOn` (Unix seconds, written RFC 3339 UTC).
    Recorded {
        /// A unique id of this run (the CI run URL, or [`new_invocation_id`]).
        invocation_id: String,
        /// When the build started.
        started_on: i64,
        /// When it finished.
        finished_on: i64,
    },
}

/// A random `urn:uuid:` (version 4) for [`Timing::Recorded`] outside CI.
pub fn new_invocation_id() -> Result<String, AttestError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| AttestError::Random(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn builder_from_github_env() {
        let env = BTreeMap::from([
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
            (
                "GITHUB_WORKFLOW_REF",
                "acme/app/.github/workflows/build.yml@refs/heads/main",
            ),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ]);
        let builder = Builder::from_env(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(
            builder.id,
            "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main"
        );
        assert_eq!(
            builder.run_url.as_deref(),
            Some("https://github.com/acme/app/actions/runs/42/attempts/2")
        );
        assert_eq!(Builder::from_env(|_| None), Builder::local());
    }

    #[test]
    fn invocation_ids_are_uuids() {
        let a = new_invocation_id().unwrap();
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_ne!(a, new_invocation_id().unwrap());
    }
}
