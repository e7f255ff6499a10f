//! DSSE (Dead Simple Signing Envelope) v1: [`pae`], signing and verifying [`Envelope`]s.
//!
//! `SIGNATURE = Sign(PAE(payloadType, payload))` with
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (LEN = decimal byte
//! count, no padding, no trailing newline). The envelope is
//! `{"payload": base64(body), "payloadType": type, "signatures": [{"keyid", "sig": base64}]}`,
//! written as canonical JSON with standard base64; both standard and URL-safe base64, padded or
//! not, are accepted on input.
//!
//! Verification follows the spec: signatures are checked *before* the payload is parsed, the
//! keyid is only a hint (every trusted key is tried on every signature), `threshold` distinct
//! trusted keys must verify, and the caller gets the exact verified bytes back
//! ([`Verified::payload`]) so nothing re-reads the envelope afterwards.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::AttestError;
use super::keys::{PublicKey, SigningKey};

/// The payload type of in-toto statements (the only one cosign accepts).
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// Media type of a DSSE envelope blob (cosign's `.att` layers, OCI referrers).
pub const MEDIA_TYPE_DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The Pre-Authentication Encoding of `payload` with `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key (securesystemslib's keyid for keys kiln signs with).
    #[serde(default)]
    pub keyid: String,
    /// base64 of the signature.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// base64 of the payload.
    pub payload: String,
    /// The payload's type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// The result of a successful [`Envelope::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The exact payload bytes that were signed.
    pub payload: Vec<u8>,
    /// The payload type that was signed.
    pub payload_type: String,
    /// The keyids (per [`PublicKey::keyid`]) of the trusted keys that verified, sorted.
    pub keyids: Vec<String>,
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl Envelope {
    /// Signs `payload` of `payload_type` with every key in `keys` (at least one).
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        keys: &[&SigningKey],
    ) -> Result<Envelope, AttestError> {
        if keys.is_empty() {
            return Err(AttestError::Envelope {
                what: "being signed".to_owned(),
                reason: "no signing key given".to_owned(),
            });
        }
        let message = pae(payload_type, payload);
        Ok(Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: keys
                .iter()
                .map(|key| EnvelopeSignature {
                    keyid: key.public_key().keyid(),
                    sig: STANDARD.encode(key.sign(&message)),
                })
                .collect(),
        })
    }

    /// The envelope as canonical JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, AttestError> {
        Ok(crate::image::canonical::to_vec(self)?)
    }

    /// Parses an envelope; `what` names it in errors.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Envelope, AttestError> {
        serde_json::from_slice(bytes).map_err(|source| AttestError::Parse {
            what: format!("DSSE envelope {what}"),
            source,
        })
    }

    /// The payload bytes, NOT verified: for reports about envelopes that failed verification.
    pub fn payload_unverified(&self) -> Option<Vec<u8>> {
        decode_base64(&self.payload)
    }

    /// Verifies that at least `threshold` (>= 1) distinct keys of `trusted` signed the envelope
    /// and returns the signed bytes. `what` names the envelope in errors.
    pub fn verify(
        &self,
        trusted: &[PublicKey],
        threshold: usize,
        what: &str,
    ) -> Result<Verified, AttestError> {
        let threshold = threshold.max(1);
        let payload = decode_base64(&self.payload).ok_or_else(|| AttestError::Envelope {
            what: what.to_owned(),
            reason: "`payload` is not base64".to_owned(),
        })?;
        let message = pae(&self.payload_type, &payload);
        let mut verified_by = vec![false; trusted.len()];
        for signature in &self.signatures {
            let Some(sig) = decode_base64(&signature.sig) else {
                continue;
            };
            for (i, key) in trusted.iter().enumerate() {
                if !verified_by[i] && key.verify(&message, &sig) {
                    verified_by[i] = true;
                }
            }
        }
        let mut keyids: Vec<String> = trusted
            .iter()
            .zip(&verified_by)
            .filter(|(_, ok)| **ok)
            .map(|(key, _)| key.keyid())
            .collect();
        keyids.sort();
        keyids.dedup();
        if keyids.len() < threshold {
            return Err(AttestError::SignatureNotVerified {
                what: what.to_owned(),
                verified: keyids.len(),
                threshold,
                signatures: self.signatures.len(),
                keys: trusted.len(),
            });
        }
        Ok(Verified {
            payload,
            payload_type: self.payload_type.clone(),
            keyids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::keys::KeyAlgorithm;

    #[test]
    fn pae_matches_the_spec_vectors() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(
            pae(
                PAYLOAD_TYPE_IN_TOTO,
                br#"{"_type":"https://in-toto.io/Statement/v1"}"#
            ),
            br#"DSSEv1 28 application/vnd.in-toto+json 43 {"_type":"https://in-toto.io/Statement/v1"}"#
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ed = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let env = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, b"{}", &[&key, &ed]).unwrap();
        let both = [key.public_key(), ed.public_key()];
        let ok = env.verify(&both, 2, "test").unwrap();
        assert_eq!(ok.payload, b"{}");
        assert_eq!(ok.keyids.len(), 2);
        let parsed = Envelope::from_slice(&env.to_bytes().unwrap(), "test").unwrap();
        assert_eq!(parsed, env);

        let mut tampered = env.clone();
        tampered.payload = STANDARD.encode(b"{ }");
        assert!(tampered.verify(&both, 1, "test").is_err());
        let mut retyped = env.clone();
        retyped.payload_type = "application/json".into();
        assert!(retyped.verify(&both, 1, "test").is_err());
        // A wrong keyid does not matter; the key does.
        let mut renamed = env.clone();
        renamed.signatures[0].keyid = "nope".into();
        assert!(renamed.verify(&both[..1], 1, "test").is_ok());
        let stranger = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(env.verify(&[stranger.public_key()], 1, "test").is_err());
        // URL-safe, unpadded base64 is accepted.
        let mut url = env.clone();
        url.payload = URL_SAFE_NO_PAD.encode(b"{}");
        assert!(url.verify(&both, 2, "test").is_ok());
    }
}
