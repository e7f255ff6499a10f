//! Attestations: what a build consumed, SLSA v1 provenance, an SPDX 2.3 SBOM, DSSE signatures,
//! and attaching them to (and verifying them in) an OCI image layout.
//!
//! Data flow: the executor collects [`Material`]s (base image `ref@digest`, context files,
//! apk packages, wheels) while it builds; after `image::assemble` and
//! `image::layout::write_oci_layout`, the caller
//! 1. builds an in-toto Statement with [`provenance::statement`] (and, optionally, an SBOM with
//!    [`sbom::spdx_statement`] from packages listed by [`sbom::packages_from_rootfs`]);
//! 2. optionally signs it into a DSSE [`dsse::Envelope`] with a [`keys::SigningKey`];
//! 3. wraps each in an [`attach::Attestation`] and calls [`attach::attach`], either
//!    buildx-style (an attestation manifest inside the image index) or as OCI 1.1 referrers
//!    (artifact manifests with `subject`, listed under the `sha256-<hex>` fallback tag);
//! 4. later, [`verify::verify`] finds them by either layout, checks signatures against trusted
//!    public keys, the subject digest and a [`verify::Policy`].
//!
//! Every document is serialized with [`crate::image::canonical::to_vec`]; nothing here reads
//! the clock or the environment unless asked ([`provenance::Builder::from_process_env`],
//! [`provenance::Timing`]), so reproducible mode gives byte-identical statements.
//!
//! ```no_run
//! # fn main() -> Result<(), kiln::attest::AttestError> {
//! use std::path::Path;
//! use kiln::attest::{self, provenance, AttachMode, Attestation, Policy, PublicKey, SigningKey};
//! use kiln::image::Platform;
//!
//! let digest = "sha256:8914eb54f968791faf6a8638949e480fef81e697984fba772b3976835194c6d4".parse().unwrap();
//! let platform = Platform::new("linux", "amd64", None);
//! let mut params = attest::ProvenanceParams::new(vec![
//!     attest::Subject::image("ghcr.io/acme/app:v1", &digest, &platform),
//! ]);
//! params.base_images = vec!["python:3.11-alpine".into()];
//! params.builder = attest::Builder::from_process_env();
//! let statement = provenance::statement(&params)?;
//! let key = SigningKey::load(Path::new("cosign.key"))?;
//! attest::attach(
//!     Path::new("out/layout"),
//!     Some("v1"),
//!     &[Attestation::signed(&statement, &[&key])?],
//!     AttachMode::Index,
//! )?;
//! let report = attest::verify(
//!     Path::new("out/layout"),
//!     Some("v1"),
//!     &[PublicKey::load(Path::new("cosign.pub"))?],
//!     &Policy::load(Path::new("policy.toml"))?,
//! )?;
//! for failure in &report.failures {
//!     eprintln!("{failure}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! kiln's own URIs (`buildType`, the local builder id, the SPDX namespace) live under
//! [`KILN_URI_BASE`], a placeholder in the reserved `.example` domain (RFC 2606) until the project
//! has a home; change that one constant to move them.

pub mod attach;
pub mod base_cache;
pub mod bundle;
pub mod cosign;
pub mod cosign_key;
pub mod cyclonedx;
pub mod distro;
pub mod dsse;
pub mod keys;
pub mod layout_signatures;
mod license;
pub mod material;
pub mod package;
pub mod provenance;
pub mod sbom;
pub mod verify;

use std::path::{Path, PathBuf};

pub use attach::{AttachMode, AttachOutcome, Attestation, attach};
pub use dsse::Envelope;
pub use keys::{KeyAlgorithm, PublicKey, SigningKey, keygen};
pub use material::Material;
pub use provenance::{Builder, ProvenanceParams, Statement, Subject, Timing};
pub use sbom::{SbomPackage, SbomParams, packages_from_rootfs, spdx_document, spdx_statement};
pub use verify::{Policy, VerifyReport, verify};

/// The placeholder base of every URI kiln mints for itself (documented in the module docs).
pub const KILN_URI_BASE: &str = "https://kiln.example";

/// Why an attestation could not be made, signed, attached or read.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// An image, layout or canonical-JSON operation failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be parsed.
    #[error("failed to parse {what}")]
    Parse {
        /// The document and where it came from.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A key file could not be used.
    #[error("failed to load key `{source_name}`: {reason}")]
    Key {
        /// The key file (or `<memory>`).
        source_name: String,
        /// What is wrong with it, and the fix when there is one.
        reason: String,
    },
    /// A key file exists where `keygen` would write.
    #[error("refusing to overwrite the existing key file `{}`; move it away or pick another directory", path.display())]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("failed to read random bytes from the operating system: {0}")]
    Random(String),
    /// A DSSE envelope is malformed.
    #[error("malformed DSSE envelope {what}: {reason}")]
    Envelope {
        /// Which envelope (layer digest or file).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No signature of an envelope verified with enough trusted keys.
    #[error(
        "DSSE signature check failed for {what}: {verified} of {threshold} required trusted keys verified ({signatures} signatures, {keys} trusted keys); pass the public key that signed it"
    )]
    SignatureNotVerified {
        /// Which envelope (layer digest or file).
        what: String,
        /// Distinct trusted keys that verified a signature.
        verified: usize,
        /// How many were required.
        threshold: usize,
        /// Signatures in the envelope.
        signatures: usize,
        /// Trusted keys given.
        keys: usize,
    },
    /// A git checkout's metadata could not be read.
    #[error("failed to read git metadata in `{}`: {reason}", path.display())]
    Git {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A material or subject is not a valid in-toto ResourceDescriptor.
    #[error("invalid {what} `{uri}`: {reason}")]
    InvalidDescriptor {
        /// `material` or `subject`.
        what: &'static str,
        /// Its URI or name.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// A secret build argument's value would have been written into an attestation.
    #[error(
        "the value of the secret build argument `{name}` appears in the {document}; refusing to write it (remove the secret from the URL, path or label that carries it)"
    )]
    SecretLeak {
        /// The build argument's name (never its value).
        name: String,
        /// Which document.
        document: &'static str,
    },
    /// Reading the final image's file system failed.
    #[error("failed to read `{path}` from the image file system")]
    Rootfs {
        /// The path in the image.
        path: String,
        /// The cause.
        #[source]
        source: crate::rootfs::view::ViewError,
    },
    /// The layout cannot take the attestation.
    #[error("cannot attach to `{}`: {reason}", path.display())]
    Attach {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading signatures from a registry failed.
    #[error("failed to read the signatures of `{reference}` from its registry")]
    Registry {
        /// The image.
        reference: String,
        /// The cause (boxed: registry errors are large).
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
    /// A policy file is invalid.
    #[error("invalid policy `{source_name}`: {reason}")]
    Policy {
        /// The policy file.
        source_name: String,
        /// What is wrong (parser message, unknown key).
        reason: String,
    },
}

impl AttestError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> AttestError {
        AttestError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
