//! apk checksum encodings: `Q1` + base64 and `X1` + hex of a SHA-1 (index `C:`, db `Z:`,
//! triggers, scripts.tar names), and the helpers that hash raw bytes into them.
//!
//! A [`Checksum`] is parsed once from text ([`Checksum::parse`]) and always written in the
//! `Q1` form apk-tools 2 writes ([`Checksum::q1`]); `X1` ([`Checksum::x1`]) is what apk-tools 3
//! puts in scripts.tar names and is free of `/`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// A SHA-1 identity or content checksum.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checksum(pub [u8; 20]);

/// Why a checksum string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not an apk SHA-1 checksum (expected Q1 + 28 base64 characters, X1 + 40 hex, or 40 hex)"
)]
pub struct ChecksumError(pub String);

impl Checksum {
    /// SHA-1 of `bytes`.
    pub fn sha1_of(bytes: &[u8]) -> Checksum {
        Checksum(Sha1::digest(bytes).into())
    }

    /// Parses `Q1<base64>`, `X1<hex>` or a bare 40-hex SHA-1 (as PAX `APK-TOOLS.checksum.SHA1`
    /// records hold it).
    pub fn parse(text: &str) -> Result<Checksum, ChecksumError> {
        let err = || ChecksumError(text.to_owned());
        let raw: Vec<u8> = if let Some(b64) = text.strip_prefix("Q1") {
            STANDARD.decode(b64).map_err(|_| err())?
        } else if let Some(hex_text) = text.strip_prefix("X1") {
            hex::decode(hex_text).map_err(|_| err())?
        } else {
            hex::decode(text).map_err(|_| err())?
        };
        let bytes: [u8; 20] = raw.try_into().map_err(|_| err())?;
        Ok(Checksum(bytes))
    }

    /// `Q1` + standard base64 with padding (30 characters).
    pub fn q1(&self) -> String {
        format!("Q1{}", STANDARD.encode(self.0))
    }

    /// `X1` + 40 lowercase hex characters.
    pub fn x1(&self) -> String {
        format!("X1{}", hex::encode(self.0))
    }

    /// 40 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.q1())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.q1())
    }
}

/// Lowercase hex SHA-256 of `bytes` (the `.PKGINFO` `datahash`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_table() {
        // SHA-1 of "/bin/busybox", the db `Z:` of busybox's `sh` symlink (apk.md §3.1).
        let sum = Checksum::sha1_of(b"/bin/busybox");
        assert_eq!(sum.q1(), "Q1pcfTfDNEbNKQc2s1tia7da05M8Q=");
        assert_eq!(sum.q1().len(), 30);
        for text in [
            sum.q1(),
            sum.x1(),
            sum.hex(),
            "X1a5c7d37c33446cd290736b35b626bb75ad3933c4".to_owned(),
        ] {
            assert_eq!(Checksum::parse(&text), Ok(sum), "{text}");
        }
        assert_eq!(
            Checksum::sha1_of(b"").hex(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        for bad in [
            "",
            "Q1",
            "Q1abc",
            "X1zz",
            "Q1pcfTfDNEbNKQc2s1tia7da05M8Q",
            "d41d8cd98f00b204e9800998ecf8427e",
        ] {
            assert!(Checksum::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
