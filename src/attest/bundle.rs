//! Sigstore bundles v0.3 attached as OCI 1.1 referrers, what cosign 3, Kyverno's
//! `SigstoreBundle` verifier, sigstore policy-controller and Flux read.
//!
//! Each signature and each attestation becomes one bundle: a `dsseEnvelope` bundle whose
//! `verificationMaterial` names the signing key by a `publicKey.hint` (the key's keyid; a
//! verifier maps it to a trusted public key), with no transparency-log entries and no
//! timestamps, since kiln signs offline with a key. The image signature is an in-toto statement
//! about the manifest digest with the predicate type [`SIGN_PREDICATE_TYPE`] and an empty
//! predicate; attestations carry their own DSSE envelope unchanged.
//!
//! The bundle is the single layer of an image manifest with `artifactType`
//! [`BUNDLE_MEDIA_TYPE`], the empty config, `subject` = the signed manifest and the
//! annotations [`CONTENT_ANNOTATION`] and [`PREDICATE_TYPE_ANNOTATION`]; registries without
//! the referrers API find it through the `sha256-<hex>` fallback tag index.

use std::collections::BTreeMap;

use super::dsse::Envelope;
use super::{AttestError, Attestation, SigningKey};
use crate::digest::Digest;
use crate::image::manifest::{Descriptor, MEDIA_TYPE_OCI_MANIFEST, Manifest};
use crate::store::Store;

/// Media type (and `artifactType`) of a Sigstore bundle v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Referrer annotation saying what the bundle holds.
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer annotation naming the predicate type of the bundle's statement.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// The predicate type of cosign's image signature statements in bundles.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The bundle JSON around a signed DSSE envelope (`envelope_json`, as [`Envelope::to_bytes`]
/// writes it), naming the key by `key_hint`.
pub fn bundle_json(envelope_json: &[u8], key_hint: &str) -> Result<Vec<u8>, AttestError> {
    let envelope: serde_json::Value =
        serde_json::from_slice(envelope_json).map_err(|e| AttestError::Parse {
            what: "a DSSE envelope to bundle".to_owned(),
            source: e,
        })?;
    let bundle = serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint},
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope,
    });
    Ok(crate::image::canonical::to_vec(&bundle)?)
}

/// The image signature of `subject` as a bundle: a statement with [`SIGN_PREDICATE_TYPE`]
/// about `docker_reference@subject`, in a DSSE envelope signed by `key`.
pub fn signature_bundle(
    key: &SigningKey,
    docker_reference: &str,
    subject: &Digest,
) -> Result<Vec<u8>, AttestError> {
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": docker_reference, "digest": {subject.algorithm(): subject.hex()}}],
        "predicateType": SIGN_PREDICATE_TYPE,
        "predicate": {},
    });
    let payload = crate::image::canonical::to_vec(&statement)?;
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[key])?;
    bundle_json(&envelope.to_bytes()?, &key.public_key().keyid())
}

/// A signed attestation as a bundle; None for an unsigned one.
pub fn attestation_bundle(
    attestation: &Attestation,
    key: &SigningKey,
) -> Result<Option<Vec<u8>>, AttestError> {
    if !attestation.is_signed() {
        return Ok(None);
    }
    bundle_json(attestation.bytes(), &key.public_key().keyid()).map(Some)
}

/// Stores `bundle` and its referrer manifest (see the module docs) in `store`; returns the
/// manifest bytes and its descriptor for the fallback index (with `artifactType` and the
/// annotations, as the OCI spec asks of fallback index entries).
pub fn referrer_manifest(
    store: &Store,
    bundle: &[u8],
    predicate_type: &str,
    subject: &Descriptor,
) -> Result<(Vec<u8>, Descriptor), AttestError> {
    let (bundle_digest, bundle_size) = store.put_bytes(bundle)?;
    let (empty_digest, empty_size) = store.put_bytes(b"{}")?;
    let annotations = BTreeMap::from([
        (CONTENT_ANNOTATION.to_owned(), "dsse-envelope".to_owned()),
        (
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            predicate_type.to_owned(),
        ),
    ]);
    let mut subject = subject.clone();
    subject.annotations.clear();
    subject.platform = None;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config: Descriptor::new(EMPTY_MEDIA_TYPE, empty_digest, empty_size),
        layers: vec![Descriptor::new(
            BUNDLE_MEDIA_TYPE,
            bundle_digest,
            bundle_size,
        )],
        annotations: annotations.clone(),
        extra: BTreeMap::from([
            (
                "artifactType".to_owned(),
                serde_json::Value::from(BUNDLE_MEDIA_TYPE),
            ),
            (
                "subject".to_owned(),
                serde_json::to_value(&subject).map_err(|e| AttestError::Parse {
                    what: "the bundle's subject descriptor".to_owned(),
                    source: e,
                })?,
            ),
        ]),
    };
    let bytes = crate::image::canonical::to_vec(&manifest)?;
    let (digest, size) = store.put_bytes(&bytes)?;
    let mut descriptor = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, digest, size);
    descriptor.annotations = annotations;
    descriptor.extra.insert(
        "artifactType".to_owned(),
        serde_json::Value::from(BUNDLE_MEDIA_TYPE),
    );
    Ok((bytes, descriptor))
}

/// Whether the referrers-index entry `entry` may name a bundle: its `artifactType` says so, or
/// it has none (tools that predate OCI 1.1, skopeo 1.9 among them, drop it when they copy the
/// fallback index); [`is_bundle`] decides from the manifest then.
pub fn may_be_bundle(entry: &Descriptor) -> bool {
    match entry.extra.get("artifactType").and_then(|v| v.as_str()) {
        Some(artifact_type) => artifact_type == BUNDLE_MEDIA_TYPE,
        None => true,
    }
}

/// Whether the referrer manifest `manifest` holds a bundle (its `artifactType`).
pub fn is_bundle(manifest: &Manifest) -> bool {
    manifest.extra.get("artifactType").and_then(|v| v.as_str()) == Some(BUNDLE_MEDIA_TYPE)
}

/// Checks a bundle: a v0.3 DSSE bundle signed by one of `keys` whose statement is about
/// `digest`. Returns its predicate type.
pub fn verify_bundle(
    bundle: &[u8],
    what: &str,
    keys: &[super::PublicKey],
    digest: &Digest,
) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bundle).map_err(|e| format!("{what}: not JSON: {e}"))?;
    if value["mediaType"] != BUNDLE_MEDIA_TYPE {
        return Err(format!(
            "{what}: media type {} is not {BUNDLE_MEDIA_TYPE}",
            value["mediaType"]
        ));
    }
    let envelope = value
        .get("dsseEnvelope")
        .ok_or_else(|| format!("{what}: no dsseEnvelope (kiln reads DSSE bundles only)"))?;
    let bytes = serde_json::to_vec(envelope).map_err(|e| format!("{what}: {e}"))?;
    super::cosign::verify_envelope(&bytes, what, keys, digest)
}
