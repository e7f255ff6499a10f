//! SLSA provenance v1 in an in-toto Statement v1: what was built ([`Subject`]s: image manifest
//! digests), from what (`externalParameters`: Dockerfile, target, platforms, non-secret build
//! args, base images as written, the context source; `resolvedDependencies`: the
//! [`Material`]s), by whom ([`Builder`]) and when ([`Timing`]).
//!
//! kiln's URIs (placeholders under [`super::KILN_URI_BASE`] until the project has a home):
//! - `buildType` = [`BUILD_TYPE`]; its `externalParameters` keys are `dockerfile`
//!   (`{path, digest}`), `target`, `platforms`, `buildArgs`, `baseImages` (the `FROM`
//!   references as the Dockerfile wrote them; stage names and `scratch` left out) and `source`
//!   (a ResourceDescriptor: the git checkout, or the context digest). The same source is
//!   also the first of the `resolvedDependencies` (`git+...` with `gitCommit`, or `context`
//!   with the context's sha256).
//! - `builder.id`: on GitHub Actions (`GITHUB_WORKFLOW_REF` set) it is
//!   `$GITHUB_SERVER_URL/$GITHUB_WORKFLOW_REF` (`https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main`),
//!   the workflow that ran kiln; elsewhere [`LOCAL_BUILDER_ID`]. `builder.version.kiln` is the
//!   crate version.
//!
//! Secrets: build args named in the caller's deny-list, or whose name contains `TOKEN`,
//! `SECRET`, `PASSWORD`, `PASSWD` or `KEY` (any case), are left out, and the finished statement
//! is scanned for their values (6 bytes or longer): a hit is an error, not a leak. URL userinfo
//! (`user:pass@`) is stripped from the git remote and from material URIs.
//!
//! Reproducible mode ([`Timing::Reproducible`]) writes no `runDetails.metadata` at all (no
//! invocation id, no times), so equal inputs give byte-identical statements; the bytes come from
//! [`crate::image::canonical::to_vec`].

mod builder;
mod source;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AttestError;
use super::material::{
    Material, MaterialKind, percent_encode, split_reference, validate_descriptor,
};
use crate::digest::Digest;
use crate::image::{Platform, rfc3339};
pub use builder::{Builder, LOCAL_BUILDER_ID, Timing, new_invocation_id};
pub use source::{ContextSource, DockerfileSource, GitSource, strip_userinfo};

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1 predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// kiln's `buildType` (placeholder host, see the module docs).
pub const BUILD_TYPE: &str = "https://kiln.example/attestations/build-type/v1";

/// Build-arg name fragments that mark an argument secret by default (matched case-insensitively).
pub const SECRET_ARG_PATTERNS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY"];
/// Secret values shorter than this are not searched for in the output (too many false hits).
const MIN_SCANNED_SECRET_LEN: usize = 6;

/// An artifact the statement is about: an image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `pkg:docker/<name>@<tag>?platform=<os>%2F<arch>` (BuildKit's form) or a plain name.
    pub name: String,
    /// The manifest digest.
    pub digest: Digest,
}

impl Subject {
    /// The image manifest `digest` of `image` (`ghcr.io/acme/app:v1`) for `platform`, named as
    /// BuildKit names it.
    pub fn image(image: &str, digest: &Digest, platform: &Platform) -> Subject {
        let (name, version) = split_reference(image);
        Subject {
            name: format!(
                "pkg:docker/{name}@{version}?platform={}",
                percent_encode(&platform.to_string())
            ),
            digest: digest.clone(),
        }
    }
}

/// An in-toto ResourceDescriptor as a statement subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDescriptor {
    /// The name (`_` when meaningless).
    #[serde(default)]
    pub name: String,
    /// Algorithm to hex.
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`] for statements kiln writes.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the statement is about.
    pub subject: Vec<SubjectDescriptor>,
    /// The predicate's type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    #[serde(default)]
    pub predicate: Value,
}

impl Statement {
    /// A v1 statement about `subjects`.
    pub fn new(subjects: &[Subject], predicate_type: &str, predicate: Value) -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: subjects
                .iter()
                .map(|s| SubjectDescriptor {
                    name: s.name.clone(),
                    digest: BTreeMap::from([("sha256".to_owned(), s.digest.hex().to_owned())]),
                })
                .collect(),
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// The statement as canonical JSON (the DSSE payload, or the attestation layer).
    pub fn to_bytes(&self) -> Result<Vec<u8>, AttestError> {
        Ok(crate::image::canonical::to_vec(self)?)
    }

    /// Parses a statement; `what` names it in errors.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Statement, AttestError> {
        serde_json::from_slice(bytes).map_err(|source| AttestError::Parse {
            what: what.to_owned(),
            source,
        })
    }

    /// The subjects' sha256 digests (subjects without a valid sha256 are skipped).
    pub fn subject_digests(&self) -> Vec<Digest> {
        self.subject
            .iter()
            .filter_map(|s| s.digest.get("sha256"))
            .filter_map(|hex| Digest::from_hex(hex).ok())
            .collect()
    }
}

/// Everything a provenance statement says. Build one with [`ProvenanceParams::new`] and set
/// the fields that apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenanceParams {
    /// The image manifests built (at least one).
    pub subjects: Vec<Subject>,
    /// The Dockerfile; default None (read from stdin).
    pub dockerfile: Option<DockerfileSource>,
    /// `--target`; default None (the last stage).
    pub target: Option<String>,
    /// The platforms built; default empty.
    pub platforms: Vec<Platform>,
    /// `--build-arg`s as given; secret ones are filtered out when writing.
    pub build_args: BTreeMap<String, String>,
    /// Extra build-arg names to treat as secret (beyond [`SECRET_ARG_PATTERNS`]); default empty.
    pub secret_build_args: BTreeSet<String>,
    /// `FROM` references as the Dockerfile wrote them (no `scratch`, no stage names).
    pub base_images: Vec<String>,
    /// The context; default [`ContextSource::None`].
    pub context: ContextSource,
    /// Everything resolved during the build.
    pub materials: Vec<Material>,
    /// Who built it; default [`Builder::local`].
    pub builder: Builder,
    /// Default [`Timing::Reproducible`].
    pub timing: Timing,
    /// The base-image policy the build was checked against (`kiln build --policy`); default
    /// None. Written as `internalParameters.basePolicy`.
    pub base_policy: Option<BasePolicyRecord>,
}

/// What `kiln build --policy` checked: the policy file's digest and the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasePolicyRecord {
    /// sha256 of the policy file's bytes.
    pub digest: Digest,
    /// `passed` (a failing policy stops the build, so no provenance records a failure).
    pub verdict: String,
    /// The keyids of the keys the policy trusted.
    pub trusted_keyids: Vec<String>,
}

impl ProvenanceParams {
    /// Params for `subjects` with every other field at its default.
    pub fn new(subjects: Vec<Subject>) -> ProvenanceParams {
        ProvenanceParams {
            subjects,
            dockerfile: None,
            target: None,
            platforms: Vec::new(),
            build_args: BTreeMap::new(),
            secret_build_args: BTreeSet::new(),
            base_images: Vec::new(),
            context: ContextSource::None,
            materials: Vec::new(),
            builder: Builder::local(),
            timing: Timing::Reproducible,
            base_policy: None,
        }
    }

    /// True when the build arg `name` must not be written (deny-list or default pattern).
    pub fn is_secret_arg(&self, name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        self.secret_build_args.contains(name)
            || SECRET_ARG_PATTERNS.iter().any(|p| upper.contains(p))
    }
}

/// Builds the SLSA v1 provenance statement for `params`.
///
/// Fails when there is no subject, a material is not a valid ResourceDescriptor, or a secret
/// build arg's value would appear in the output.
pub fn statement(params: &ProvenanceParams) -> Result<Statement, AttestError> {
    if params.subjects.is_empty() {
        return Err(AttestError::InvalidDescriptor {
            what: "subject",
            uri: "(none)".to_owned(),
            reason: "a provenance statement needs at least one subject".to_owned(),
        });
    }
    let mut external = serde_json::Map::new();
    if let Some(dockerfile) = &params.dockerfile {
        external.insert(
            "dockerfile".into(),
            json!({"path": dockerfile.path, "digest": {"sha256": dockerfile.digest.hex()}}),
        );
    }
    if let Some(target) = &params.target {
        external.insert("target".into(), json!(target));
    }
    if !params.platforms.is_empty() {
        let platforms: Vec<String> = params.platforms.iter().map(|p| p.to_string()).collect();
        external.insert("platforms".into(), json!(platforms));
    }
    let args: BTreeMap<&String, &String> = params
        .build_args
        .iter()
        .filter(|(name, _)| !params.is_secret_arg(name))
        .collect();
    if !args.is_empty() {
        external.insert("buildArgs".into(), json!(args));
    }
    if !params.base_images.is_empty() {
        external.insert("baseImages".into(), json!(params.base_images));
    }
    let mut dependencies: Vec<Material> = Vec::new();
    match &params.context {
        ContextSource::Git(git) => {
            external.insert(
                "source".into(),
                json!({"uri": git.uri(), "digest": {"gitCommit": git.commit}}),
            );
            dependencies.push(git.material());
        }
        ContextSource::Local {
            digest: Some(digest),
        } => {
            external.insert(
                "source".into(),
                json!({"uri": "context", "digest": {"sha256": digest.hex()}}),
            );
            // The context is what the build resolved its files from, so it is a resolved
            // dependency too, as SLSA's own build types list their source.
            dependencies.push(Material::new(
                MaterialKind::BuildContext,
                "context",
                digest.clone(),
            ));
        }
        ContextSource::Local { digest: None } | ContextSource::None => {}
    }
    for material in &params.materials {
        let mut material = material.clone();
        material.uri = strip_userinfo(&material.uri);
        material.validate()?;
        if !dependencies.iter().any(|d| d.same_descriptor(&material)) {
            dependencies.push(material);
        }
    }
    for subject in &params.subjects {
        validate_descriptor(
            "subject",
            &subject.name,
            &BTreeMap::from([("sha256".to_owned(), subject.digest.hex().to_owned())]),
        )?;
    }

    let mut run_details = json!({
        "builder": {"id": params.builder.id, "version": {"kiln": env!("CARGO_PKG_VERSION")}},
    });
    if let Timing::Recorded {
        invocation_id,
        started_on,
        finished_on,
    } = &params.timing
    {
        run_details["metadata"] = json!({
            "invocationId": invocation_id,
            "startedOn": rfc3339(*started_on),
            "finishedOn": rfc3339(*finished_on),
        });
    }
    let mut predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": Value::Object(external),
            "resolvedDependencies": dependencies,
        },
        "runDetails": run_details,
    });
    if let Some(policy) = &params.base_policy {
        predicate["buildDefinition"]["internalParameters"] = json!({
            "basePolicy": {
                "digest": {policy.digest.algorithm(): policy.digest.hex()},
                "verdict": policy.verdict,
                "trustedKeyids": policy.trusted_keyids,
            },
        });
    }
    let statement = Statement::new(&params.subjects, SLSA_PROVENANCE_V1, predicate);
    check_no_secrets(params, &statement.to_bytes()?, "provenance")?;
    Ok(statement)
}

/// Fails when the value of a secret build arg occurs in `bytes`.
pub(crate) fn check_no_secrets(
    params: &ProvenanceParams,
    bytes: &[u8],
    document: &'static str,
) -> Result<(), AttestError> {
    for (name, value) in &params.build_args {
        if value.len() >= MIN_SCANNED_SECRET_LEN
            && params.is_secret_arg(name)
            && bytes
                .windows(value.len())
                .any(|window| window == value.as_bytes())
        {
            return Err(AttestError::SecretLeak {
                name: name.clone(),
                document,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_live_under_the_placeholder_base() {
        assert!(BUILD_TYPE.starts_with(super::super::KILN_URI_BASE));
        assert!(LOCAL_BUILDER_ID.starts_with(super::super::KILN_URI_BASE));
    }
}
