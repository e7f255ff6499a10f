//! Signatures and attestations of base images kept in kiln's cache, so `kiln build --policy`
//! verifies a base it has verified once even when its registry cannot be reached (`--offline`,
//! or the registry down).
//!
//! After a base passes the policy online, [`save`] copies what the registry holds for it into
//! `<cache>/base-signatures/sha256-<hex>/` (hex of the digest the reference resolved to): an
//! OCI image layout whose image entry is the base's manifest (or index, with the manifests it
//! lists), plus cosign's `.sig`/`.att` entries and the `sha256-<hex>` referrers fallback entry
//! (kiln's DSSE referrers and Sigstore bundles, blobs included) for it and each manifest it
//! lists: the shape `kiln verify oci:DIR` reads. A base named by tag is found offline through
//! the digest the registry module's reference cache resolves the tag to, the one the build
//! pulls ([`crate::registry::cached_digest`]). [`verify_cached`] runs the same checks on that
//! layout; nothing in it is trusted for being there: every signature is checked again with the
//! trusted keys, and a blob whose bytes do not match its digest fails the check that reads it.

use std::path::{Path, PathBuf};

use super::{AttestError, Policy, PublicKey};
use crate::digest::Digest;
use crate::image::manifest::{
    ANNOTATION_REF_NAME, Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use crate::registry::{Reference, RegistryError, RegistryOptions};
use crate::store::Store;

const DIR_NAME: &str = "base-signatures";

/// The cached layout of the base `digest` under the cache directory `cache_root`.
pub fn entry_dir(cache_root: &Path, digest: &Digest) -> PathBuf {
    cache_root
        .join(DIR_NAME)
        .join(format!("{}-{}", digest.algorithm(), digest.hex()))
}

fn registry_error(reference: &Reference) -> impl Fn(RegistryError) -> AttestError + '_ {
    move |source| AttestError::Registry {
        reference: reference.to_string(),
        source: Box::new(source),
    }
}

/// The manifest under `tagged`, or None when the registry has no such tag (404).
fn fetch_optional(
    tagged: &Reference,
    options: &RegistryOptions,
) -> Result<Option<(Digest, Vec<u8>)>, AttestError> {
    match crate::registry::fetch_raw_manifest(tagged, options) {
        Ok(found) => Ok(Some(found)),
        Err(RegistryError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(registry_error(tagged)(e)),
    }
}

fn media_type_of(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match value["mediaType"].as_str() {
        Some(media_type) => media_type.to_owned(),
        None if value.get("manifests").is_some() => MEDIA_TYPE_OCI_INDEX.to_owned(),
        None => MEDIA_TYPE_OCI_MANIFEST.to_owned(),
    }
}

/// Copies the base `reference`'s signatures and attestations from its registry into the
/// cache under `cache_root` (see the module docs), replacing an earlier copy. Returns the
/// cached layout.
pub fn save(
    reference: &Reference,
    options: &RegistryOptions,
    cache_root: &Path,
) -> Result<PathBuf, AttestError> {
    let parent = cache_root.join(DIR_NAME);
    std::fs::create_dir_all(&parent).map_err(|e| AttestError::io("create", &parent, e))?;
    let temp = tempfile::Builder::new()
        .prefix(".tmp-base-")
        .tempdir_in(&parent)
        .map_err(|e| AttestError::io("create a temp directory in", &parent, e))?;
    let dir = temp.path();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| AttestError::io("write", &dir.join("oci-layout"), e))?;
    let store = Store::open(dir)?;
    let by_digest = |digest: &Digest| reference.with_digest(digest.clone());
    let fetch_blobs = |at: &Reference, manifest: &Manifest| -> Result<(), AttestError> {
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            crate::registry::fetch_blob(at, blob, &store, options).map_err(registry_error(at))?;
        }
        Ok(())
    };
    let parse_manifest = |bytes: &[u8], what: &Digest| {
        serde_json::from_slice::<Manifest>(bytes).map_err(|source| AttestError::Parse {
            what: format!("manifest {what} of `{reference}`"),
            source,
        })
    };

    let (top, bytes) = crate::registry::fetch_raw_manifest(reference, options)
        .map_err(registry_error(reference))?;
    store.put_bytes(&bytes)?;
    let media_type = media_type_of(&bytes);
    let mut entries = vec![Descriptor::new(
        &media_type,
        top.clone(),
        bytes.len() as u64,
    )];
    let mut subjects = vec![top.clone()];
    if media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST {
        let index: Index = serde_json::from_slice(&bytes).map_err(|source| AttestError::Parse {
            what: format!("index {top} of `{reference}`"),
            source,
        })?;
        for child in index
            .manifests
            .iter()
            .filter(|d| !super::attach::is_attestation_manifest(d))
        {
            let (_, child_bytes) =
                crate::registry::fetch_raw_manifest(&by_digest(&child.digest), options)
                    .map_err(registry_error(reference))?;
            store.put_bytes(&child_bytes)?;
            subjects.push(child.digest.clone());
        }
    } else {
        // The verifier reads the platform from the config.
        let manifest = parse_manifest(&bytes, &top)?;
        crate::registry::fetch_blob(reference, &manifest.config, &store, options)
            .map_err(registry_error(reference))?;
    }
    let tag_of = |tag: &str| {
        reference.with_tag(tag).map_err(|e| AttestError::Attach {
            path: dir.to_owned(),
            reason: format!("cannot name the tag `{tag}` of `{reference}`: {e}"),
        })
    };
    for subject in &subjects {
        for tag in [
            super::cosign::signature_tag(subject),
            super::cosign::attestation_tag(subject),
        ] {
            let tagged = tag_of(&tag)?;
            let Some((digest, bytes)) = fetch_optional(&tagged, options)? else {
                continue;
            };
            store.put_bytes(&bytes)?;
            fetch_blobs(&tagged, &parse_manifest(&bytes, &digest)?)?;
            let mut entry = Descriptor::new(&media_type_of(&bytes), digest, bytes.len() as u64);
            entry
                .annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), tag);
            entries.push(entry);
        }
        let tag = super::attach::fallback_tag(subject);
        let referrers = match crate::registry::fetch_referrers(reference, subject, options) {
            Ok(Some(bytes)) => Some(bytes),
            _ => fetch_optional(&tag_of(&tag)?, options)?.map(|(_, bytes)| bytes),
        };
        let Some(index_bytes) = referrers else {
            continue;
        };
        let (index_digest, index_size) = store.put_bytes(&index_bytes)?;
        let index: Index =
            serde_json::from_slice(&index_bytes).map_err(|source| AttestError::Parse {
                what: format!("the referrers index of {subject} in `{reference}`"),
                source,
            })?;
        for referrer in &index.manifests {
            let at = by_digest(&referrer.digest);
            let (digest, bytes) =
                crate::registry::fetch_raw_manifest(&at, options).map_err(registry_error(&at))?;
            store.put_bytes(&bytes)?;
            fetch_blobs(&at, &parse_manifest(&bytes, &digest)?)?;
        }
        let mut entry = Descriptor::new(MEDIA_TYPE_OCI_INDEX, index_digest, index_size);
        entry
            .annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), tag);
        entries.push(entry);
    }
    let mut index = Index::empty();
    index.manifests = entries;
    let index_bytes = crate::image::canonical::to_vec(&index)?;
    std::fs::write(dir.join("index.json"), index_bytes)
        .map_err(|e| AttestError::io("write", &dir.join("index.json"), e))?;
    let _ = std::fs::remove_dir(dir.join(".kiln-ingest"));

    let target = entry_dir(cache_root, &top);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| AttestError::io("replace", &target, e))?;
    }
    let kept = temp.keep();
    std::fs::rename(&kept, &target)
        .map_err(|e| AttestError::io("rename into place", &target, e))?;
    Ok(target)
}

/// One failed check of a cached base: the check's name and why.
pub type CachedFailure = (&'static str, String);

/// Checks the cached signatures of the base `reference`, whose manifest digest is `digest`
/// (None when it is a tag never resolved), cached under `cache_root`, against
/// `policy` and the trusted `keys`, as `kiln build --policy` does online: a trusted signature
/// in any layout when `require_signed`, trusted provenance and the predicate types the policy
/// names. With `exact_repository`, a `.sig` payload must name `reference`'s repository.
/// Returns the failures; empty when the cached base complies.
pub fn verify_cached(
    cache_root: &Path,
    reference: &Reference,
    digest: Option<&Digest>,
    keys: &[PublicKey],
    policy: &Policy,
) -> Vec<CachedFailure> {
    let Some(digest) = digest else {
        return vec![(
            "signature",
            "its registry cannot be read and no verified copy of its signatures is cached \
             (a tag is found once it was pulled); build once with the registry reachable, \
             or pin the base by digest"
                .to_owned(),
        )];
    };
    let dir = entry_dir(cache_root, digest);
    if !dir.join("index.json").exists() {
        return vec![(
            "signature",
            format!(
                "its registry cannot be read and no signatures of {digest} are cached at `{}`; build once with the registry reachable",
                dir.display()
            ),
        )];
    }
    let damaged = |e: AttestError| {
        vec![(
            "cache",
            format!(
                "the cached signatures at `{}` cannot be read: {e}; remove that directory and build once with the registry reachable",
                dir.display()
            ),
        )]
    };
    let name = reference.name();
    let exact = policy.require_exact_repository.then_some(name.as_str());
    let at = digest.to_string();
    let findings = match super::layout_signatures::verify_layout(&dir, Some(&at), keys, exact) {
        Ok(findings) => findings,
        Err(e) => return damaged(e),
    };
    let report = match super::verify(
        &dir,
        Some(&at),
        keys,
        &Policy {
            require_provenance: policy.require_provenance,
            require_signed: true,
            required_predicate_types: policy.required_predicate_types.clone(),
            ..Policy::default()
        },
    ) {
        Ok(report) => report,
        Err(e) => return damaged(e),
    };
    let mut failures = Vec::new();
    let signed = findings.iter().any(|f| !f.verified.is_empty())
        || report.attestations.iter().any(|a| a.trusted);
    if policy.require_signed && !signed {
        let problems: Vec<&str> = findings
            .iter()
            .flat_map(|f| f.problems.iter().map(String::as_str))
            .collect();
        failures.push((
            "signature",
            format!(
                "no cached signature or attestation (at `{}`) verifies with the trusted keys{}; trust its signer's key (--policy-key), or remove that directory if it was altered and build once with the registry reachable",
                dir.display(),
                if problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problems.join("; "))
                }
            ),
        ));
    }
    if policy.require_provenance || !policy.required_predicate_types.is_empty() {
        for failure in &report.failures {
            failures.push((
                "provenance",
                format!("{failure} (cached at `{}`)", dir.display()),
            ));
        }
    }
    failures
}
