//! One statement ready to attach ([`Attestation`]): its bytes (the statement, or a DSSE
//! envelope holding it), what it claims, and the media types it is stored under in each
//! attach mode.

use super::MEDIA_TYPE_IN_TOTO;
use crate::attest::AttestError;
use crate::attest::dsse::{Envelope, MEDIA_TYPE_DSSE_ENVELOPE, PAYLOAD_TYPE_IN_TOTO};
use crate::attest::keys::SigningKey;
use crate::attest::provenance::Statement;
use crate::attest::sbom::SPDX_PREDICATE_TYPE;
use crate::digest::Digest;

/// One statement ready to attach: the bytes (a statement, or a DSSE envelope holding one),
/// their media type and what they claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    predicate_type: String,
    subjects: Vec<Digest>,
    signed: bool,
    bytes: Vec<u8>,
}

impl Attestation {
    /// An unsigned statement (canonical JSON).
    pub fn unsigned(statement: &Statement) -> Result<Attestation, AttestError> {
        Ok(Attestation {
            predicate_type: statement.predicate_type.clone(),
            subjects: statement.subject_digests(),
            signed: false,
            bytes: statement.to_bytes()?,
        })
    }

    /// The statement in a DSSE envelope signed by `keys`.
    pub fn signed(statement: &Statement, keys: &[&SigningKey]) -> Result<Attestation, AttestError> {
        let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &statement.to_bytes()?, keys)?;
        Ok(Attestation {
            predicate_type: statement.predicate_type.clone(),
            subjects: statement.subject_digests(),
            signed: true,
            bytes: envelope.to_bytes()?,
        })
    }

    /// The statement's predicate type.
    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }

    /// The bytes that are stored (statement or envelope).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The digests of the statement's subjects.
    pub fn subjects(&self) -> &[Digest] {
        &self.subjects
    }

    /// True for a DSSE envelope.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The layer media type inside a buildx attestation manifest.
    pub fn index_media_type(&self) -> String {
        if !self.signed {
            return MEDIA_TYPE_IN_TOTO.to_owned();
        }
        let kind = if self
            .predicate_type
            .starts_with("https://slsa.dev/provenance/")
        {
            "provenance"
        } else if self.predicate_type == SPDX_PREDICATE_TYPE {
            "spdx"
        } else {
            "statement"
        };
        format!("application/vnd.in-toto.{kind}+dsse")
    }

    /// The blob (and artifact) media type of an OCI referrer.
    pub fn referrer_media_type(&self) -> &'static str {
        if self.signed {
            MEDIA_TYPE_DSSE_ENVELOPE
        } else {
            MEDIA_TYPE_IN_TOTO
        }
    }
}
