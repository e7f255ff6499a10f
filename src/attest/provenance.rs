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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AttestError;
use super::material::{
    Material, MaterialKind, percent_encode, split_reference, validate_descriptor,
};
use crate::digest::Digest;
use crate::image::{Platform, rfc3339};

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1 predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// kiln's `buildType` (placeholder host, see the module docs).
pub const BUILD_TYPE: &str = "https://kiln.example/attestations/build-type/v1";
/// `builder.id` of a build outside a recognized CI (placeholder host).
pub const LOCAL_BUILDER_ID: &str = "https://kiln.example/builder/local/v1";

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

/// The Dockerfile as an external parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerfileSource {
    /// Its path relative to the context (or as given on the command line).
    pub path: String,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

/// Where the build context came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextSource {
    /// A git checkout ([`GitSource::detect`]).
    Git(GitSource),
    /// A plain directory, pinned by a digest over its files when the caller has one.
    Local {
        /// A digest over the context's files (the caller's definition), if computed.
        digest: Option<Digest>,
    },
    /// No context (a Dockerfile from stdin with no COPY).
    None,
}

/// A git checkout: remote URL (userinfo stripped), commit and the ref HEAD points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSource {
    /// `remote.origin.url`, userinfo removed; None when there is no origin remote.
    pub url: Option<String>,
    /// The commit HEAD resolves to (40 or 64 hex).
    pub commit: String,
    /// `refs/heads/main` etc.; None for a detached HEAD.
    pub reference: Option<String>,
}

impl GitSource {
    /// Reads `.git` in `dir` or its nearest ancestor that has one (a directory, or a
    /// `gitdir: ...` file as in worktrees and submodules) without the git CLI: `HEAD`, the ref
    /// file or `packed-refs`, and `[remote "origin"] url` from `config`. Ok(None) when there is
    /// no `.git`.
    pub fn detect(dir: &Path) -> Result<Option<GitSource>, AttestError> {
        let Some(dot_git) = dir.ancestors().map(|d| d.join(".git")).find(|p| p.exists()) else {
            return Ok(None);
        };
        let git_err = |path: &Path, reason: String| AttestError::Git {
            path: path.to_owned(),
            reason,
        };
        let read = |path: &Path| -> Result<Option<String>, AttestError> {
            match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(AttestError::io("read", path, e)),
            }
        };
        let git_dir: PathBuf = if dot_git.is_dir() {
            dot_git.clone()
        } else {
            let text = read(&dot_git)?.unwrap_or_default();
            let target = text
                .trim()
                .strip_prefix("gitdir:")
                .ok_or_else(|| git_err(&dot_git, "not a `gitdir:` file".to_owned()))?
                .trim();
            let base = dot_git.parent().unwrap_or(Path::new("."));
            base.join(target)
        };
        let common_dir = match read(&git_dir.join("commondir"))? {
            Some(rel) => git_dir.join(rel.trim()),
            None => git_dir.clone(),
        };
        let head_path = git_dir.join("HEAD");
        let head =
            read(&head_path)?.ok_or_else(|| git_err(&head_path, "HEAD is missing".to_owned()))?;
        let head = head.trim();
        let (reference, commit) = match head.strip_prefix("ref:") {
            Some(name) => {
                let name = name.trim();
                if name.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(git_err(&head_path, format!("unsafe ref name `{name}`")));
                }
                let loose = match read(&git_dir.join(name))? {
                    Some(text) => Some(text),
                    None => read(&common_dir.join(name))?,
                };
                let commit = match loose {
                    Some(text) => text.trim().to_owned(),
                    None => packed_ref(&common_dir, name, &read)?.ok_or_else(|| {
                        git_err(
                            &head_path,
                            format!("HEAD points at `{name}`, which has no commit yet"),
                        )
                    })?,
                };
                (Some(name.to_owned()), commit)
            }
            None => (None, head.to_owned()),
        };
        let commit_ok = matches!(commit.len(), 40 | 64)
            && commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !commit_ok {
            return Err(git_err(
                &head_path,
                "HEAD does not resolve to a 40- or 64-character lowercase hex commit".to_owned(),
            ));
        }
        let url = read(&common_dir.join("config"))?
            .and_then(|config| origin_url(&config))
            .map(|url| strip_userinfo(&url));
        Ok(Some(GitSource {
            url,
            commit,
            reference,
        }))
    }

    /// `git+<url>[@<ref>]` as a material URI (`git+local` without a remote).
    pub fn uri(&self) -> String {
        let url = self.url.as_deref().unwrap_or("local");
        match &self.reference {
            Some(reference) => format!("git+{url}@{reference}"),
            None => format!("git+{url}"),
        }
    }

    /// The checkout as a ResourceDescriptor pinned by `gitCommit`.
    pub fn material(&self) -> Material {
        Material {
            kind: MaterialKind::GitCheckout,
            uri: self.uri(),
            sha256: None,
            other_digests: BTreeMap::from([("gitCommit".to_owned(), self.commit.clone())]),
            name: None,
        }
    }
}

fn packed_ref(
    common_dir: &Path,
    name: &str,
    read: &dyn Fn(&Path) -> Result<Option<String>, AttestError>,
) -> Result<Option<String>, AttestError> {
    let Some(text) = read(&common_dir.join("packed-refs"))? else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, r)| r.trim() == name)
        .map(|(hash, _)| hash.to_owned()))
}

/// `url` of `[remote "origin"]` in a git config file.
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            in_origin = header.eq_ignore_ascii_case("[remote\"origin\"]");
            continue;
        }
        if !in_origin {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("url")
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Removes `user[:password]@` from a `scheme://` URL; other strings are returned unchanged
/// (scp-style `git@host:path` names a login, not a secret).
pub fn strip_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

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
    fn userinfo_table() {
        for (input, output) in [
            (
                "https://user:ghp_x@github.com/a/b.git",
                "https://github.com/a/b.git",
            ),
            ("https://tok@github.com/a/b", "https://github.com/a/b"),
            ("https://github.com/a/b", "https://github.com/a/b"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
            ("ssh://git@host/p?x=@y", "ssh://host/p?x=@y"),
        ] {
            assert_eq!(strip_userinfo(input), output, "{input}");
        }
    }

    #[test]
    fn origin_url_is_read_from_its_section() {
        let config = "[core]\n\turl = nope\n[remote \"upstream\"]\n\turl = https://u\n[remote \"origin\"]\n\tfetch = +refs/*\n\turl = https://github.com/acme/app.git\n";
        assert_eq!(
            origin_url(config).as_deref(),
            Some("https://github.com/acme/app.git")
        );
        assert_eq!(origin_url("[core]\n"), None);
    }

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
    fn uris_live_under_the_placeholder_base() {
        assert!(BUILD_TYPE.starts_with(super::super::KILN_URI_BASE));
        assert!(LOCAL_BUILDER_ID.starts_with(super::super::KILN_URI_BASE));
    }

    #[test]
    fn invocation_ids_are_uuids() {
        let a = new_invocation_id().unwrap();
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_ne!(a, new_invocation_id().unwrap());
    }
}
