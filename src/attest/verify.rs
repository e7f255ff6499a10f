//! Verifying the attestations of an image in an OCI layout against trusted keys and a
//! [`Policy`].
//!
//! For each image manifest the reference names (a bare manifest, or every image of an index),
//! [`verify`] collects the statements attached either way [`super::attach()`] writes them:
//! buildx attestation manifests in the index (`vnd.docker.reference.digest` = the image) and
//! OCI referrers listed under the `sha256-<hex>` fallback tag (whose `subject` is the image).
//! Each statement is then checked in this order, and every failure is recorded, not just the
//! first:
//! 1. `signature`: a DSSE envelope must verify with one of the trusted keys (the keyid is
//!    ignored; every key is tried). `signed`: with `require_signed`, a bare statement fails.
//! 2. `parse`: the (verified) payload must be an in-toto statement.
//! 3. `subject`: one of its subjects must have the image manifest's sha256.
//!
//! Statements that pass all three are *trusted*; the policy looks at those only:
//! `provenance-required` (an SLSA provenance statement exists), `predicate-type-required`,
//! `base-digest` (every base image in `externalParameters.baseImages` and every
//! `pkg:docker/...` resolved dependency is pinned by `@sha256:`), `allowed-registry`.
//! [`VerifyReport::passed`] is true when there are no failures; I/O and layout errors are
//! `Err`, not failures.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::AttestError;
use super::attach::{
    ANNOTATION_PREDICATE_TYPE, ANNOTATION_REFERENCE_DIGEST, AttachMode, Layout, fallback_tag,
};
use super::dsse::{Envelope, MEDIA_TYPE_DSSE_ENVELOPE, PAYLOAD_TYPE_IN_TOTO};
use super::keys::PublicKey;
use super::material::{registry_of, split_reference};
use super::provenance::Statement;
use crate::digest::Digest;
use crate::image::manifest::{Descriptor, Index, Manifest};

/// What a verified image must satisfy. Every field defaults to "not required".
///
/// TOML (`policy.toml`) or JSON (`policy.json`) with these keys; unknown keys are an error:
/// ```toml
/// require_provenance = true
/// require_signed = true
/// require_base_digest = true
/// allowed_registries = ["ghcr.io", "docker.io"]
/// required_predicate_types = ["https://spdx.dev/Document"]
/// keys = ["keys/release.pub"]          # trusted public keys, relative to the policy file
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A trusted SLSA provenance statement must exist.
    #[serde(default)]
    pub require_provenance: bool,
    /// Every statement must be in a DSSE envelope signed by a trusted key.
    #[serde(default)]
    pub require_signed: bool,
    /// Base images must be pinned by digest (`FROM name@sha256:...`).
    #[serde(default)]
    pub require_base_digest: bool,
    /// Registries base images may come from (empty: any); `docker.io` covers Docker Hub names.
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    /// Predicate types that must each have a trusted statement.
    #[serde(default)]
    pub required_predicate_types: Vec<String>,
    /// Every registry base image named in the provenance must carry its own trusted provenance
    /// (checked by the caller, which can reach the registry: `kiln verify`).
    #[serde(default)]
    pub require_base_provenance: bool,
    /// cosign `.sig` signatures count only when their `docker-reference` is exactly the
    /// verified image's repository (`registry/repository`), as containers/image's
    /// `matchRepository` demands.
    #[serde(default)]
    pub require_exact_repository: bool,
    /// Public key files (PEM) the policy trusts, besides those given on the command line;
    /// [`Policy::load`] resolves relative paths against the policy file's directory.
    #[serde(default)]
    pub keys: Vec<std::path::PathBuf>,
}

impl Policy {
    /// Parses a policy: JSON when the text starts with `{`, TOML otherwise. `source_name`
    /// names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, AttestError> {
        let invalid = |reason: String| AttestError::Policy {
            source_name: source_name.to_owned(),
            reason,
        };
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))
        } else {
            toml::from_str(text).map_err(|e| invalid(e.to_string()))
        }
    }

    /// Reads and parses a policy file (`.toml` or `.json`).
    pub fn load(path: &Path) -> Result<Policy, AttestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AttestError::io("read policy file", path, e))?;
        let mut policy = Policy::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        for key in &mut policy.keys {
            if key.is_relative() {
                *key = base.join(&*key);
            }
        }
        Ok(policy)
    }

    /// The public keys the policy file names ([`Policy::keys`]), loaded.
    pub fn load_keys(&self) -> Result<Vec<super::PublicKey>, AttestError> {
        self.keys
            .iter()
            .map(|path| super::PublicKey::load(path))
            .collect()
    }
}

/// A named check [`verify`] performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A DSSE envelope did not verify with any trusted key.
    Signature,
    /// A statement is not signed although the policy requires it.
    Signed,
    /// A blob is not a (DSSE-wrapped) in-toto statement.
    Parse,
    /// A statement's subjects do not include the image manifest digest.
    Subject,
    /// No trusted provenance statement.
    ProvenanceRequired,
    /// No trusted statement of a required predicate type.
    PredicateTypeRequired,
    /// A base image is not pinned by digest.
    BaseDigest,
    /// A base image comes from a registry the policy does not allow.
    AllowedRegistry,
}

impl Check {
    /// The check's stable name (`signature`, `signed`, `parse`, `subject`,
    /// `provenance-required`, `predicate-type-required`, `base-digest`, `allowed-registry`).
    pub fn name(self) -> &'static str {
        match self {
            Check::Signature => "signature",
            Check::Signed => "signed",
            Check::Parse => "parse",
            Check::Subject => "subject",
            Check::ProvenanceRequired => "provenance-required",
            Check::PredicateTypeRequired => "predicate-type-required",
            Check::BaseDigest => "base-digest",
            Check::AllowedRegistry => "allowed-registry",
        }
    }
}

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which check.
    pub check: Check,
    /// The image manifest it concerns.
    pub image: Digest,
    /// What exactly failed.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.check.name(), self.image, self.detail)
    }
}

/// One attestation blob found for an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundAttestation {
    /// The image manifest it is attached to.
    pub image: Digest,
    /// Found in the index (buildx) or through the fallback tag (referrers).
    pub found_in: AttachMode,
    /// The blob holding the statement or envelope.
    pub blob: Digest,
    /// The predicate type (from the statement when readable, else the annotation).
    pub predicate_type: String,
    /// True for a DSSE envelope.
    pub signed: bool,
    /// The keyids of the trusted keys that verified it.
    pub verified_by: Vec<String>,
    /// Passed signature, parse and subject checks.
    pub trusted: bool,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The image manifests checked.
    pub images: Vec<Digest>,
    /// Every attestation found.
    pub attestations: Vec<FoundAttestation>,
    /// Every failed check.
    pub failures: Vec<Failure>,
}

impl VerifyReport {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The distinct names of the failed checks, sorted.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        let set: BTreeSet<Check> = self.failures.iter().map(|f| f.check).collect();
        set.into_iter().map(Check::name).collect()
    }
}

fn is_statement_layer(media_type: &str) -> bool {
    media_type == PAYLOAD_TYPE_IN_TOTO
        || media_type == MEDIA_TYPE_DSSE_ENVELOPE
        || (media_type.starts_with("application/vnd.in-toto.") && media_type.ends_with("+dsse"))
}

/// Verifies the attestations of the image `reference` (tag, digest, or None for the only
/// image) in the OCI layout `layout_dir` against `keys` and `policy`.
pub fn verify(
    layout_dir: &Path,
    reference: Option<&str>,
    keys: &[PublicKey],
    policy: &Policy,
) -> Result<VerifyReport, AttestError> {
    let layout = Layout::open(layout_dir, false)?;
    let position = layout.find(reference)?;
    let entry = layout.index.manifests[position].clone();
    let (index, images) = layout.images_of(&entry)?;
    let mut report = VerifyReport {
        images: images.iter().map(|d| d.digest.clone()).collect(),
        attestations: Vec::new(),
        failures: Vec::new(),
    };
    for image in &images {
        let mut layers: Vec<(AttachMode, Descriptor)> = Vec::new();
        if let Some(index) = &index {
            for d in index.manifests.iter().filter(|d| {
                d.annotations.get(ANNOTATION_REFERENCE_DIGEST) == Some(&image.digest.to_string())
            }) {
                let manifest: Manifest = layout.read_json(d)?;
                layers.extend(manifest.layers.into_iter().map(|l| (AttachMode::Index, l)));
            }
        }
        let tag = fallback_tag(&image.digest);
        if let Some(tagged) = layout
            .index
            .manifests
            .iter()
            .find(|e| e.ref_name() == Some(tag.as_str()))
        {
            let referrers: Index = layout.read_json(tagged)?;
            for d in &referrers.manifests {
                let manifest: Manifest = layout.read_json(d)?;
                let subject = manifest
                    .extra
                    .get("subject")
                    .and_then(|s| s.get("digest"))
                    .and_then(|s| s.as_str());
                if subject != Some(image.digest.to_string().as_str()) {
                    continue;
                }
                layers.extend(
                    manifest
                        .layers
                        .into_iter()
                        .map(|l| (AttachMode::Referrers, l)),
                );
            }
        }
        let trusted = check_layers(&layout, image, &layers, keys, policy, &mut report)?;
        check_policy(&image.digest, &trusted, policy, &mut report);
    }
    Ok(report)
}

/// Runs the signature, parse and subject checks; returns the trusted statements.
fn check_layers(
    layout: &Layout<'_>,
    image: &Descriptor,
    layers: &[(AttachMode, Descriptor)],
    keys: &[PublicKey],
    policy: &Policy,
    report: &mut VerifyReport,
) -> Result<Vec<Statement>, AttestError> {
    let mut trusted = Vec::new();
    let fail = |report: &mut VerifyReport, check, detail: String| {
        report.failures.push(Failure {
            check,
            image: image.digest.clone(),
            detail,
        })
    };
    for (found_in, layer) in layers {
        if !is_statement_layer(&layer.media_type) {
            continue;
        }
        let annotated = layer
            .annotations
            .get(ANNOTATION_PREDICATE_TYPE)
            .cloned()
            .unwrap_or_default();
        let what = format!("layer {} ({annotated})", layer.digest);
        let bytes = layout.read(layer)?;
        let signed = layer.media_type != PAYLOAD_TYPE_IN_TOTO;
        let mut found = FoundAttestation {
            image: image.digest.clone(),
            found_in: *found_in,
            blob: layer.digest.clone(),
            predicate_type: annotated.clone(),
            signed,
            verified_by: Vec::new(),
            trusted: false,
        };
        let payload = if signed {
            let envelope = match Envelope::from_slice(&bytes, &what) {
                Ok(envelope) => envelope,
                Err(e) => {
                    fail(report, Check::Parse, format!("{what}: {e}"));
                    report.attestations.push(found);
                    continue;
                }
            };
            if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO {
                fail(
                    report,
                    Check::Parse,
                    format!(
                        "{what}: payloadType is `{}`, not `{PAYLOAD_TYPE_IN_TOTO}`",
                        envelope.payload_type
                    ),
                );
                report.attestations.push(found);
                continue;
            }
            match envelope.verify(keys, 1, &what) {
                Ok(verified) => {
                    found.verified_by = verified.keyids;
                    Some(verified.payload)
                }
                Err(e) => {
                    fail(
                        report,
                        Check::Signature,
                        format!(
                            "{what} is not signed by any of the {} trusted keys: {e}",
                            keys.len()
                        ),
                    );
                    None
                }
            }
        } else {
            if policy.require_signed {
                fail(
                    report,
                    Check::Signed,
                    format!("{what} is an unsigned statement; the policy requires signatures"),
                );
            }
            (!policy.require_signed).then(|| bytes.clone())
        };
        let Some(payload) = payload else {
            report.attestations.push(found);
            continue;
        };
        let statement = match Statement::from_slice(&payload, &what) {
            Ok(s)
                if s.statement_type
                    .starts_with("https://in-toto.io/Statement/") =>
            {
                s
            }
            Ok(s) => {
                fail(
                    report,
                    Check::Parse,
                    format!(
                        "{what}: `_type` is `{}`, not an in-toto statement",
                        s.statement_type
                    ),
                );
                report.attestations.push(found);
                continue;
            }
            Err(e) => {
                fail(report, Check::Parse, format!("{what}: {e}"));
                report.attestations.push(found);
                continue;
            }
        };
        found.predicate_type = statement.predicate_type.clone();
        let subjects = statement.subject_digests();
        if !subjects.contains(&image.digest) {
            fail(
                report,
                Check::Subject,
                format!(
                    "{what}: the statement is about {}, not this image",
                    if subjects.is_empty() {
                        "no sha256 subject".to_owned()
                    } else {
                        subjects
                            .iter()
                            .map(Digest::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
            report.attestations.push(found);
            continue;
        }
        found.trusted = true;
        report.attestations.push(found);
        trusted.push(statement);
    }
    Ok(trusted)
}

/// The base image references a provenance names: `externalParameters.baseImages` as written,
/// and the `pkg:docker/NAME@VERSION` resolved dependencies as `NAME@VERSION`.
fn base_images(statement: &Statement) -> Vec<String> {
    let definition = &statement.predicate["buildDefinition"];
    let mut bases: Vec<String> = definition["externalParameters"]["baseImages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(deps) = definition["resolvedDependencies"].as_array() {
        for uri in deps.iter().filter_map(|d| d["uri"].as_str()) {
            if let Some(rest) = uri.strip_prefix("pkg:docker/") {
                let rest = rest.split('?').next().unwrap_or(rest);
                bases.push(rest.replace("%3A", ":").replace("%3a", ":"));
            }
        }
    }
    bases
}

fn normalize_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

fn check_policy(image: &Digest, trusted: &[Statement], policy: &Policy, report: &mut VerifyReport) {
    let mut fail = |check, detail: String| {
        report.failures.push(Failure {
            check,
            image: image.clone(),
            detail,
        })
    };
    let provenance: Vec<&Statement> = trusted
        .iter()
        .filter(|s| s.predicate_type.starts_with("https://slsa.dev/provenance/"))
        .collect();
    if policy.require_provenance && provenance.is_empty() {
        fail(
            Check::ProvenanceRequired,
            "no trusted SLSA provenance statement is attached to this image".to_owned(),
        );
    }
    for required in &policy.required_predicate_types {
        if !trusted.iter().any(|s| &s.predicate_type == required) {
            fail(
                Check::PredicateTypeRequired,
                format!("no trusted statement of predicate type `{required}`"),
            );
        }
    }
    let needs_bases = policy.require_base_digest || !policy.allowed_registries.is_empty();
    if needs_bases && provenance.is_empty() {
        fail(
            if policy.require_base_digest {
                Check::BaseDigest
            } else {
                Check::AllowedRegistry
            },
            "no trusted provenance names the base images, so they cannot be checked".to_owned(),
        );
        return;
    }
    let bases: BTreeSet<String> = provenance.iter().flat_map(|s| base_images(s)).collect();
    for base in &bases {
        if base == "scratch" {
            continue;
        }
        let (name, version) = split_reference(base);
        if policy.require_base_digest && !version.starts_with("sha256:") {
            fail(
                Check::BaseDigest,
                format!(
                    "base image `{base}` is not pinned by digest; write `FROM {name}@sha256:...`"
                ),
            );
        }
        let registry = normalize_registry(registry_of(&name));
        if !policy.allowed_registries.is_empty()
            && !policy
                .allowed_registries
                .iter()
                .any(|r| normalize_registry(r) == registry)
        {
            fail(
                Check::AllowedRegistry,
                format!(
                    "base image `{base}` comes from `{registry}`, not one of {}",
                    policy.allowed_registries.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_toml_and_json_and_reject_unknown_keys() {
        let toml = "require_provenance = true\nallowed_registries = [\"ghcr.io\"]\n";
        let json = r#"{"require_provenance": true, "allowed_registries": ["ghcr.io"]}"#;
        let a = Policy::parse(toml, "p.toml").unwrap();
        let b = Policy::parse(json, "p.json").unwrap();
        assert_eq!(a, b);
        assert!(a.require_provenance && !a.require_signed);
        let err = Policy::parse("require_provenanse = true\n", "p.toml").unwrap_err();
        assert!(err.to_string().contains("p.toml"), "{err}");
    }
}
