//! cosign's tag layout for signatures and attestations, what cosign 2, containers/image
//! (podman, CRI-O, skopeo `sigstoreSigned` policies) and Kyverno's cosign verifier read.
//!
//! For an image manifest `sha256:<hex>` in a repository:
//! - `sha256-<hex>.sig` names an OCI image manifest with one layer per signature: the
//!   simple-signing payload ([`simple_signing_payload`], media type [`SIMPLE_SIGNING_MEDIA_TYPE`])
//!   with the base64 signature over the payload bytes in the layer annotation
//!   [`SIGNATURE_ANNOTATION`];
//! - `sha256-<hex>.att` names an OCI image manifest whose layers are DSSE envelopes
//!   ([`DSSE_MEDIA_TYPE`]) holding in-toto statements, each annotated with its
//!   [`PREDICATE_TYPE_ANNOTATION`].
//!
//! Both manifests carry a small image config listing the layers as `rootfs.diff_ids`, as cosign
//! writes it. Writing a tag again keeps the layers already under it ([`merge_manifest`]), so
//! signatures by other keys and other attestations survive.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::{AttestError, Attestation, SigningKey};
use crate::digest::Digest;
use crate::image::manifest::{Descriptor, MEDIA_TYPE_OCI_MANIFEST, Manifest};
use crate::store::Store;

/// Media type of a simple-signing payload layer under a `.sig` tag.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a DSSE envelope layer under an `.att` tag.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Layer annotation naming the in-toto predicate type of an `.att` layer.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The `critical.type` of a cosign container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The tag cosign stores signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// The tag cosign stores attestations of `digest` under: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}-{}.att", digest.algorithm(), digest.hex())
}

/// The simple-signing payload for the manifest `digest` in the repository `docker_reference`
/// (`registry/repository`, no tag), compact JSON with keys in cosign's order.
pub fn simple_signing_payload(
    docker_reference: &str,
    digest: &Digest,
) -> Result<Vec<u8>, AttestError> {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": serde_json::Value::Null,
    });
    serde_json::to_vec(&payload).map_err(|e| AttestError::Parse {
        what: "the simple-signing payload".to_owned(),
        source: e,
    })
}

/// Signs the simple-signing payload of `digest` with `key`, stores the payload in `store`, and
/// returns its `.sig` layer descriptor.
pub fn signature_layer(
    store: &Store,
    key: &SigningKey,
    docker_reference: &str,
    digest: &Digest,
) -> Result<Descriptor, AttestError> {
    let payload = simple_signing_payload(docker_reference, digest)?;
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
    let (payload_digest, size) = store.put_bytes(&payload)?;
    let mut layer = Descriptor::new(SIMPLE_SIGNING_MEDIA_TYPE, payload_digest, size);
    layer
        .annotations
        .insert(SIGNATURE_ANNOTATION.to_owned(), signature);
    Ok(layer)
}

/// Stores a signed attestation's DSSE envelope in `store` and returns its `.att` layer
/// descriptor; None for an unsigned statement (cosign's layout holds envelopes only).
pub fn attestation_layer(
    store: &Store,
    attestation: &Attestation,
) -> Result<Option<Descriptor>, AttestError> {
    if !attestation.is_signed() {
        return Ok(None);
    }
    let (digest, size) = store.put_bytes(attestation.bytes())?;
    let mut layer = Descriptor::new(DSSE_MEDIA_TYPE, digest, size);
    layer.annotations.insert(
        PREDICATE_TYPE_ANNOTATION.to_owned(),
        attestation.predicate_type().to_owned(),
    );
    Ok(Some(layer))
}

/// The `.sig`/`.att` manifest holding `existing`'s layers (a manifest already under the tag)
/// followed by those of `new_layers` not already there (same digest and annotations), with its
/// config; config and manifest are stored in `store`. Returns the manifest bytes.
pub fn merge_manifest(
    store: &Store,
    existing: Option<&Manifest>,
    new_layers: &[Descriptor],
) -> Result<Vec<u8>, AttestError> {
    let mut layers: Vec<Descriptor> = existing.map(|m| m.layers.clone()).unwrap_or_default();
    for layer in new_layers {
        let present = layers
            .iter()
            .any(|l| l.digest == layer.digest && l.annotations == layer.annotations);
        if !present {
            layers.push(layer.clone());
        }
    }
    // cosign's config: an empty image whose rootfs lists the layers (no timestamps, so the
    // manifest is reproducible).
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": layers.iter().map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    });
    let config_bytes = crate::image::canonical::to_vec(&config)?;
    let (config_digest, config_size) = store.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config: Descriptor::new(CONFIG_MEDIA_TYPE, config_digest, config_size),
        layers,
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let bytes = crate::image::canonical::to_vec(&manifest)?;
    store.put_bytes(&bytes)?;
    Ok(bytes)
}

/// The predicate type of the in-toto statement `payload` when one of its subjects is `digest`;
/// otherwise why not.
pub fn statement_about(payload: &[u8], digest: &Digest) -> Result<String, String> {
    let statement: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("the statement is not JSON: {e}"))?;
    let names_digest = statement["subject"].as_array().is_some_and(|subjects| {
        subjects
            .iter()
            .any(|s| s["digest"][digest.algorithm()].as_str() == Some(digest.hex()))
    });
    if !names_digest {
        return Err(format!("the statement's subjects do not include {digest}"));
    }
    statement["predicateType"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the statement has no predicateType".to_owned())
}

/// Checks one `.sig` layer: its signature (annotation) over `payload` by one of `keys`, and a
/// payload naming `digest`. Returns the payload's docker-reference.
pub fn verify_signature_layer(
    layer: &Descriptor,
    payload: &[u8],
    keys: &[super::PublicKey],
    digest: &Digest,
) -> Result<String, String> {
    let signature = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or_else(|| {
            format!(
                "layer {} has no base64 `{SIGNATURE_ANNOTATION}`",
                layer.digest
            )
        })?;
    if !keys.iter().any(|key| key.verify(payload, &signature)) {
        return Err(format!(
            "layer {}: no trusted key made its signature",
            layer.digest
        ));
    }
    let parsed: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| format!("layer {}: the payload is not JSON: {e}", layer.digest))?;
    let critical = &parsed["critical"];
    if critical["image"]["docker-manifest-digest"].as_str() != Some(&digest.to_string()) {
        return Err(format!(
            "layer {}: the payload signs {}, not {digest}",
            layer.digest, critical["image"]["docker-manifest-digest"]
        ));
    }
    Ok(critical["identity"]["docker-reference"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Checks one DSSE envelope (an `.att` layer or a bundle's envelope): signed by one of `keys`
/// and a statement about `digest`. Returns its predicate type.
pub fn verify_envelope(
    envelope: &[u8],
    what: &str,
    keys: &[super::PublicKey],
    digest: &Digest,
) -> Result<String, String> {
    let envelope = super::dsse::Envelope::from_slice(envelope, what).map_err(|e| e.to_string())?;
    let verified = envelope.verify(keys, 1, what).map_err(|e| e.to_string())?;
    statement_about(&verified.payload, digest).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_payload_follow_cosign() {
        let digest = Digest::of(b"manifest");
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", digest.hex())
        );
        assert_eq!(
            attestation_tag(&digest),
            format!("sha256-{}.att", digest.hex())
        );
        let payload = simple_signing_payload("127.0.0.1:5000/app", &digest).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(parsed["critical"]["type"], SIGNATURE_TYPE);
        assert_eq!(
            parsed["critical"]["image"]["docker-manifest-digest"],
            digest.to_string()
        );
        assert_eq!(
            parsed["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/app"
        );
    }

    #[test]
    fn merging_keeps_existing_layers_and_drops_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = Digest::of(b"manifest");
        let a = SigningKey::generate(super::super::KeyAlgorithm::EcdsaP256).unwrap();
        let b = SigningKey::generate(super::super::KeyAlgorithm::Ed25519).unwrap();
        let la = signature_layer(&store, &a, "r/app", &digest).unwrap();
        let lb = signature_layer(&store, &b, "r/app", &digest).unwrap();
        let first: Manifest = serde_json::from_slice(
            &merge_manifest(&store, None, std::slice::from_ref(&la)).unwrap(),
        )
        .unwrap();
        let second: Manifest = serde_json::from_slice(
            &merge_manifest(&store, Some(&first), &[la.clone(), lb.clone()]).unwrap(),
        )
        .unwrap();
        assert_eq!(second.layers, vec![la, lb]);
        let config: serde_json::Value =
            serde_json::from_slice(&store.read_bytes(&second.config.digest).unwrap()).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
}
