//! Signing keys: ECDSA P-256 (cosign-compatible) and Ed25519, as PEM files.
//!
//! Formats: private keys are unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what
//! [`keygen`], `openssl genpkey` and `cosign import-key-pair` inputs use; SEC1
//! `EC PRIVATE KEY` is read too); public keys are SPKI PEM (`-----BEGIN PUBLIC KEY-----`, the
//! `cosign.pub` format). cosign's own password-encrypted keys (`ENCRYPTED SIGSTORE PRIVATE KEY`,
//! `ENCRYPTED COSIGN PRIVATE KEY`) are decrypted with the password from `KILN_PASSWORD` or
//! `COSIGN_PASSWORD` (see [`super::cosign_key`]); [`keygen_cosign`] writes them. PKCS#8
//! `ENCRYPTED PRIVATE KEY` is refused with a message saying so.
//!
//! Signatures: ECDSA P-256 with SHA-256, ASN.1 DER encoded (what cosign and securesystemslib
//! produce and expect); Ed25519 (RFC 8032, verified with `verify_strict`).
//!
//! Key ids: [`PublicKey::keyid`] is securesystemslib's default, the sha256 of the canonical JSON
//! `{"keytype":..,"keyval":{"public":..},"scheme":..}` where, for ECDSA, keytype is `ecdsa`,
//! scheme `ecdsa-sha2-nistp256` and `public` the SPKI PEM text (trailing newline included); for
//! Ed25519 keytype and scheme are `ed25519` and `public` the raw key in hex. securesystemslib's
//! `Envelope.verify` only tries a key on signatures carrying its keyid, so envelopes kiln signs
//! carry exactly this id. kiln's own verification never trusts the keyid: it tries every trusted
//! key on every signature.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use sha2::Digest as _;

use super::{AttestError, cosign_key};

/// File name of the private key [`keygen`] writes.
pub const PRIVATE_KEY_FILE: &str = "private.pem";
/// File name of the public key [`keygen`] writes.
pub const PUBLIC_KEY_FILE: &str = "public.pem";

/// The signature algorithms kiln signs and verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (cosign's default key type).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

/// A private key.
#[derive(Clone)]
pub enum SigningKey {
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({:?}, keyid {})",
            self.algorithm(),
            self.public_key().keyid()
        )
    }
}

/// A public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(&text[start..start + end])
}

fn key_error(source_name: &str, reason: impl Into<String>) -> AttestError {
    AttestError::Key {
        source_name: source_name.to_owned(),
        reason: reason.into(),
    }
}

fn read_key_file(path: &Path) -> Result<String, AttestError> {
    let bytes = std::fs::read(path).map_err(|e| AttestError::io("read key file", path, e))?;
    String::from_utf8(bytes).map_err(|_| key_error(&path.display().to_string(), "not PEM text"))
}

impl SigningKey {
    /// Parses a PEM private key; `source_name` names it in errors.
    pub fn from_pem(text: &str, source_name: &str) -> Result<SigningKey, AttestError> {
        match pem_label(text) {
            Some("PRIVATE KEY") => {
                if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
                    return Ok(SigningKey::EcdsaP256(key));
                }
                ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                    .map(SigningKey::Ed25519)
                    .map_err(|_| {
                        key_error(
                            source_name,
                            "not an ECDSA P-256 or Ed25519 PKCS#8 private key",
                        )
                    })
            }
            Some("EC PRIVATE KEY") => p256::SecretKey::from_sec1_pem(text)
                .map(|k| SigningKey::EcdsaP256(k.into()))
                .map_err(|_| key_error(source_name, "not a P-256 SEC1 private key")),
            Some(label) if cosign_key::is_cosign_label(label) => {
                let password = cosign_key::password_from_env().ok_or_else(|| {
                    key_error(
                        source_name,
                        format!(
                            "`{label}` is password-encrypted; set its password in {} or {}",
                            cosign_key::PASSWORD_VARIABLES[0],
                            cosign_key::PASSWORD_VARIABLES[1]
                        ),
                    )
                })?;
                let mut der = cosign_key::decrypt(text, &password, source_name)?;
                let key = SigningKey::from_pkcs8_der(&der, source_name);
                der.fill(0);
                key
            }
            Some(label) if label.contains("ENCRYPTED") => Err(key_error(
                source_name,
                format!(
                    "PKCS#8 encrypted keys are not supported (`{label}`); decrypt it (`openssl pkcs8 -topk8 -nocrypt`) or use `kiln keygen --format cosign`"
                ),
            )),
            Some(label) => Err(key_error(
                source_name,
                format!("a `{label}` PEM block is not a private key kiln can sign with"),
            )),
            None => Err(key_error(source_name, "no PEM block found")),
        }
    }

    /// Parses a PKCS#8 DER private key (ECDSA P-256 or Ed25519).
    pub fn from_pkcs8_der(der: &[u8], source_name: &str) -> Result<SigningKey, AttestError> {
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(SigningKey::EcdsaP256(key));
        }
        ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(SigningKey::Ed25519)
            .map_err(|_| {
                key_error(
                    source_name,
                    "not an ECDSA P-256 or Ed25519 PKCS#8 private key",
                )
            })
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, AttestError> {
        let document = match self {
            SigningKey::EcdsaP256(key) => key.to_pkcs8_der(),
            SigningKey::Ed25519(key) => {
                use ed25519_dalek::pkcs8::EncodePrivateKey as _;
                key.to_pkcs8_der()
            }
        };
        document
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| key_error("<memory>", format!("PKCS#8 encoding failed: {e}")))
    }

    /// Reads a PEM private key file.
    pub fn load(path: &Path) -> Result<SigningKey, AttestError> {
        SigningKey::from_pem(&read_key_file(path)?, &path.display().to_string())
    }

    /// Which algorithm the key is for.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            SigningKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            SigningKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::EcdsaP256(key) => PublicKey::EcdsaP256(*key.verifying_key()),
            SigningKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
        }
    }

    /// Signs `message`: DER-encoded ECDSA-SHA256, or a 64-byte Ed25519 signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::EcdsaP256(key) => {
                let signature: p256::ecdsa::DerSignature = key.sign(message);
                signature.as_bytes().to_vec()
            }
            SigningKey::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }

    /// The key as unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, AttestError> {
        let pem = match self {
            SigningKey::EcdsaP256(key) => key.to_pkcs8_pem(LineEnding::LF),
            SigningKey::Ed25519(key) => {
                use ed25519_dalek::pkcs8::EncodePrivateKey as _;
                key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            }
        };
        pem.map(|p| p.to_string())
            .map_err(|e| key_error("<memory>", format!("PKCS#8 encoding failed: {e}")))
    }

    /// A new random key from the operating system's random source.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<SigningKey, AttestError> {
        let mut seed = [0u8; 32];
        let key = loop {
            getrandom::fill(&mut seed).map_err(|e| AttestError::Random(e.to_string()))?;
            match algorithm {
                KeyAlgorithm::Ed25519 => {
                    break SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed));
                }
                // A scalar >= the group order (probability ~2^-32) is drawn again.
                KeyAlgorithm::EcdsaP256 => {
                    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed) {
                        break SigningKey::EcdsaP256(key);
                    }
                }
            }
        };
        seed.fill(0);
        Ok(key)
    }
}

impl PublicKey {
    /// Parses an SPKI PEM public key; `source_name` names it in errors.
    pub fn from_pem(text: &str, source_name: &str) -> Result<PublicKey, AttestError> {
        match pem_label(text) {
            Some("PUBLIC KEY") => {
                if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
                    return Ok(PublicKey::EcdsaP256(key));
                }
                ed25519_dalek::VerifyingKey::from_public_key_pem(text)
                    .map(PublicKey::Ed25519)
                    .map_err(|_| {
                        key_error(source_name, "not an ECDSA P-256 or Ed25519 SPKI public key")
                    })
            }
            Some(label) => Err(key_error(
                source_name,
                format!("expected a `PUBLIC KEY` PEM block, found `{label}`"),
            )),
            None => Err(key_error(source_name, "no PEM block found")),
        }
    }

    /// Reads an SPKI PEM public key file.
    pub fn load(path: &Path) -> Result<PublicKey, AttestError> {
        PublicKey::from_pem(&read_key_file(path)?, &path.display().to_string())
    }

    /// The key as SPKI PEM (64-column base64, LF line ends, trailing newline).
    pub fn to_pem(&self) -> Result<String, AttestError> {
        let pem = match self {
            PublicKey::EcdsaP256(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::Ed25519(key) => {
                use ed25519_dalek::pkcs8::EncodePublicKey as _;
                key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            }
        };
        pem.map_err(|e| key_error("<memory>", format!("SPKI encoding failed: {e}")))
    }

    /// securesystemslib's `(keytype, scheme)` for the key.
    pub fn keytype_and_scheme(&self) -> (&'static str, &'static str) {
        match self {
            PublicKey::EcdsaP256(_) => ("ecdsa", "ecdsa-sha2-nistp256"),
            PublicKey::Ed25519(_) => ("ed25519", "ed25519"),
        }
    }

    /// securesystemslib's default keyid (see the module docs).
    pub fn keyid(&self) -> String {
        let public = match self {
            // SPKI PEM of a valid point always encodes.
            PublicKey::EcdsaP256(_) => self.to_pem().unwrap_or_default(),
            PublicKey::Ed25519(key) => hex::encode(key.to_bytes()),
        };
        let (keytype, scheme) = self.keytype_and_scheme();
        // Canonical JSON (sorted keys, no whitespace); PEM text and hex need no escaping.
        let canonical = format!(
            r#"{{"keytype":"{keytype}","keyval":{{"public":"{public}"}},"scheme":"{scheme}"}}"#
        );
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// True when `signature` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::EcdsaP256(key) => p256::ecdsa::Signature::from_der(signature)
                .map(|sig| key.verify(message, &sig).is_ok())
                .unwrap_or(false),
            PublicKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| key.verify_strict(message, &sig).is_ok())
                .unwrap_or(false),
        }
    }
}

/// Writes a new key pair into `dir` (created if missing): [`PRIVATE_KEY_FILE`] (PKCS#8 PEM,
/// mode 0600) and [`PUBLIC_KEY_FILE`] (SPKI PEM, mode 0644). Existing files are never
/// overwritten. Returns (private, public) paths.
pub fn keygen(dir: &Path, algorithm: KeyAlgorithm) -> Result<(PathBuf, PathBuf), AttestError> {
    std::fs::create_dir_all(dir).map_err(|e| AttestError::io("create directory", dir, e))?;
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(AttestError::KeyExists { path: path.clone() });
        }
    }
    let key = SigningKey::generate(algorithm)?;
    write_new_file(&private_path, key.to_pkcs8_pem()?.as_bytes(), 0o600)?;
    write_new_file(&public_path, key.public_key().to_pem()?.as_bytes(), 0o644)?;
    Ok((private_path, public_path))
}

/// File name of the private key [`keygen_cosign`] writes (cosign's name).
pub const COSIGN_PRIVATE_KEY_FILE: &str = "cosign.key";
/// File name of the public key [`keygen_cosign`] writes (cosign's name).
pub const COSIGN_PUBLIC_KEY_FILE: &str = "cosign.pub";

/// Writes a new key pair into `dir` (created if missing) in cosign's format:
/// [`COSIGN_PRIVATE_KEY_FILE`] (`ENCRYPTED SIGSTORE PRIVATE KEY` under `password`, mode 0600)
/// and [`COSIGN_PUBLIC_KEY_FILE`] (SPKI PEM, mode 0644). Existing files are never overwritten.
/// Returns (private, public) paths.
pub fn keygen_cosign(
    dir: &Path,
    algorithm: KeyAlgorithm,
    password: &[u8],
) -> Result<(PathBuf, PathBuf), AttestError> {
    std::fs::create_dir_all(dir).map_err(|e| AttestError::io("create directory", dir, e))?;
    let private_path = dir.join(COSIGN_PRIVATE_KEY_FILE);
    let public_path = dir.join(COSIGN_PUBLIC_KEY_FILE);
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(AttestError::KeyExists { path: path.clone() });
        }
    }
    let key = SigningKey::generate(algorithm)?;
    let mut der = key.to_pkcs8_der()?;
    let encrypted = cosign_key::encrypt(&der, password);
    der.fill(0);
    write_new_file(&private_path, encrypted?.as_bytes(), 0o600)?;
    write_new_file(&public_path, key.public_key().to_pem()?.as_bytes(), 0o644)?;
    Ok((private_path, public_path))
}

/// Writes `bytes` to a temp file with `mode`, fsyncs, and links it into place without
/// replacing an existing file.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AttestError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-key-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| AttestError::io("create a temp file in", dir, e))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| AttestError::io("set the mode of", temp.path(), e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| AttestError::io("write", path, e))?;
    temp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            AttestError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            AttestError::io("move into place", path, e.error)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sign_verify_both_algorithms() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let key = SigningKey::generate(alg).unwrap();
            let pem = key.to_pkcs8_pem().unwrap();
            let again = SigningKey::from_pem(&pem, "mem").unwrap();
            let public = PublicKey::from_pem(&again.public_key().to_pem().unwrap(), "mem").unwrap();
            assert_eq!(public, key.public_key());
            let sig = again.sign(b"hello");
            assert!(public.verify(b"hello", &sig), "{alg:?}");
            assert!(!public.verify(b"hellp", &sig), "{alg:?}");
            let other = SigningKey::generate(alg).unwrap().public_key();
            assert!(!other.verify(b"hello", &sig), "{alg:?}");
            assert_eq!(public.keyid().len(), 64);
        }
    }

    #[test]
    fn pkcs8_encrypted_keys_are_refused_by_name() {
        let label = "ENCRYPTED PRIVATE KEY";
        let text = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        let err = SigningKey::from_pem(&text, "enc.pem")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PKCS#8 encrypted keys are not supported") && err.contains("enc.pem"),
            "{err}"
        );
    }

    #[test]
    fn cosign_keygen_round_trips_through_the_encrypted_format() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let sub = dir.path().join(format!("{alg:?}"));
            let (private, public) = keygen_cosign(&sub, alg, b"pw").unwrap();
            let text = std::fs::read_to_string(&private).unwrap();
            assert!(text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
            let der = cosign_key::decrypt(&text, b"pw", "k").unwrap();
            let key = SigningKey::from_pkcs8_der(&der, "k").unwrap();
            assert_eq!(PublicKey::load(&public).unwrap(), key.public_key());
        }
    }

    #[test]
    fn keygen_writes_modes_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keygen(dir.path(), KeyAlgorithm::EcdsaP256).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
        let key = SigningKey::load(&private).unwrap();
        assert_eq!(PublicKey::load(&public).unwrap(), key.public_key());
        assert!(matches!(
            keygen(dir.path(), KeyAlgorithm::Ed25519),
            Err(AttestError::KeyExists { .. })
        ));
    }
}
