//! cosign's password-encrypted private key files (`cosign generate-key-pair` output).
//!
//! The PEM block is `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign 2 and later) or `ENCRYPTED COSIGN
//! PRIVATE KEY` (older cosign); its body is a JSON document:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<32 bytes, base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<24 bytes, base64>"},
//!  "ciphertext":"<base64>"}
//! ```
//!
//! The 32-byte secretbox key is `scrypt(password, salt, N, r, p)`; the plaintext is the private
//! key as PKCS#8 DER. Only the three scrypt parameter sets cosign's library writes are accepted
//! (N = 2^15, 2^16 or 2^17 with r = 8, p = 1): a file cannot make kiln spend unbounded memory or
//! time. kiln writes N = 2^15, what `cosign generate-key-pair` writes, so cosign reads kiln's keys.
//!
//! The password comes from `KILN_PASSWORD`, else `COSIGN_PASSWORD` (an empty value is an empty
//! password, as with cosign). Neither the password nor the key ever appears in an error.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use serde::{Deserialize, Serialize};

use super::AttestError;

/// The PEM label cosign 2 and later write.
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign releases wrote; still read.
pub const LEGACY_COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The environment variables the password is read from, first set wins.
pub const PASSWORD_VARIABLES: [&str; 2] = ["KILN_PASSWORD", "COSIGN_PASSWORD"];

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// log2(N) of the parameter sets cosign's library writes: "legacy" (its default), "standard",
/// "OWASP"; all with r = 8, p = 1.
const ACCEPTED_LOG_N: [u8; 3] = [15, 16, 17];
const WRITTEN_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// True for the PEM labels of cosign's encrypted key format.
pub fn is_cosign_label(label: &str) -> bool {
    label == SIGSTORE_LABEL || label == LEGACY_COSIGN_LABEL
}

/// The password from the environment ([`PASSWORD_VARIABLES`]), or None when neither is set.
pub fn password_from_env() -> Option<Vec<u8>> {
    PASSWORD_VARIABLES
        .iter()
        .find_map(std::env::var_os)
        .map(|value| {
            use std::os::unix::ffi::OsStringExt as _;
            value.into_vec()
        })
}

fn key_error(source_name: &str, reason: impl Into<String>) -> AttestError {
    AttestError::Key {
        source_name: source_name.to_owned(),
        reason: reason.into(),
    }
}

/// The base64 body of the first PEM block labelled `label`, decoded.
fn pem_body(text: &str, label: &str, source_name: &str) -> Result<Vec<u8>, AttestError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| key_error(source_name, format!("no `{label}` PEM block")))?
        + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| {
        key_error(
            source_name,
            format!("the `{label}` PEM block has no END line"),
        )
    })? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| {
            key_error(
                source_name,
                format!("the `{label}` PEM block is not base64"),
            )
        })
}

fn decode_field(
    value: &str,
    field: &str,
    len: usize,
    source_name: &str,
) -> Result<Vec<u8>, AttestError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| {
            key_error(
                source_name,
                format!("the cosign key's `{field}` is not base64"),
            )
        })?;
    if len != 0 && bytes.len() != len {
        return Err(key_error(
            source_name,
            format!(
                "the cosign key's `{field}` is {} bytes, expected {len}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn derive_key(password: &[u8], salt: &[u8], log_n: u8) -> Result<[u8; KEY_LEN], AttestError> {
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P)
        .map_err(|e| key_error("<memory>", format!("scrypt parameters refused: {e}")))?;
    let mut key = [0u8; KEY_LEN];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|e| key_error("<memory>", format!("scrypt failed: {e}")))?;
    Ok(key)
}

/// Decrypts a cosign encrypted key file with `password`: the PKCS#8 DER private key.
/// `source_name` names the file in errors.
pub fn decrypt(text: &str, password: &[u8], source_name: &str) -> Result<Vec<u8>, AttestError> {
    let label = if text.contains(&format!("-----BEGIN {SIGSTORE_LABEL}-----")) {
        SIGSTORE_LABEL
    } else {
        LEGACY_COSIGN_LABEL
    };
    let json = pem_body(text, label, source_name)?;
    let document: EncryptedKey = serde_json::from_slice(&json).map_err(|e| {
        key_error(
            source_name,
            format!("the `{label}` block is not cosign's JSON key document: {e}"),
        )
    })?;
    if document.kdf.name != "scrypt" {
        return Err(key_error(
            source_name,
            format!(
                "unsupported key derivation `{}` (cosign keys use scrypt)",
                document.kdf.name
            ),
        ));
    }
    if document.cipher.name != "nacl/secretbox" {
        return Err(key_error(
            source_name,
            format!(
                "unsupported cipher `{}` (cosign keys use nacl/secretbox)",
                document.cipher.name
            ),
        ));
    }
    let params = &document.kdf.params;
    let log_n = ACCEPTED_LOG_N
        .into_iter()
        .find(|log_n| params.n == 1u64 << log_n)
        .filter(|_| params.r == SCRYPT_R && params.p == SCRYPT_P)
        .ok_or_else(|| {
            key_error(
                source_name,
                format!(
                    "unsupported scrypt parameters N={} r={} p={} (cosign writes N=32768, 65536 or 131072 with r=8, p=1)",
                    params.n, params.r, params.p
                ),
            )
        })?;
    let salt = decode_field(&document.kdf.salt, "salt", 0, source_name)?;
    let nonce = decode_field(&document.cipher.nonce, "nonce", NONCE_LEN, source_name)?;
    let ciphertext = decode_field(&document.ciphertext, "ciphertext", 0, source_name)?;
    let mut key = derive_key(password, &salt, log_n)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    key.fill(0);
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| {
            key_error(
                source_name,
                format!(
                    "wrong password for this encrypted cosign key (or the file is damaged); set the key's password in {} or {}",
                    PASSWORD_VARIABLES[0], PASSWORD_VARIABLES[1]
                ),
            )
        })
}

/// Encrypts a PKCS#8 DER private key with `password` into cosign's format, labelled
/// [`SIGSTORE_LABEL`], with a fresh random salt and nonce.
pub fn encrypt(pkcs8_der: &[u8], password: &[u8]) -> Result<String, AttestError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).map_err(|e| AttestError::Random(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| AttestError::Random(e.to_string()))?;
    let mut key = derive_key(password, &salt, WRITTEN_LOG_N)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    key.fill(0);
    let ciphertext = cipher
        .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), pkcs8_der)
        .map_err(|_| key_error("<memory>", "secretbox encryption failed"))?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let document = EncryptedKey {
        kdf: Kdf {
            name: "scrypt".to_owned(),
            params: ScryptParams {
                n: 1u64 << WRITTEN_LOG_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
            },
            salt: b64(&salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".to_owned(),
            nonce: b64(&nonce),
        },
        ciphertext: b64(&ciphertext),
    };
    let json = serde_json::to_vec(&document).map_err(|e| AttestError::Parse {
        what: "the encrypted key document".to_owned(),
        source: e,
    })?;
    Ok(pem_encode(SIGSTORE_LABEL, &json))
}

/// PEM with 64-column base64 lines and LF line ends.
fn pem_encode(label: &str, bytes: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    // base64 output is ASCII, so splitting at byte offsets stays on char boundaries.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let secret = b"a PKCS#8 document stands here";
        let pem = encrypt(secret, b"correct horse").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert_eq!(decrypt(&pem, b"correct horse", "k").unwrap(), secret);
        let err = decrypt(&pem, b"battery staple", "cosign.key")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wrong password") && err.contains("cosign.key"),
            "{err}"
        );
        assert!(!err.contains("battery"), "the password leaked: {err}");
    }

    #[test]
    fn legacy_label_is_read() {
        let pem = encrypt(b"x", b"")
            .unwrap()
            .replace(SIGSTORE_LABEL, LEGACY_COSIGN_LABEL);
        assert_eq!(decrypt(&pem, b"", "k").unwrap(), b"x");
    }

    #[test]
    fn unbounded_scrypt_parameters_are_refused() {
        let json = br#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAA"},"ciphertext":"AAAA"}"#;
        let pem = pem_encode(SIGSTORE_LABEL, json);
        let err = decrypt(&pem, b"", "k").unwrap_err().to_string();
        assert!(
            err.contains("unsupported scrypt parameters N=1073741824"),
            "{err}"
        );
    }
}
