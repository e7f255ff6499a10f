//! Names and hashes as pip writes them: PEP 503 names, and RECORD's hash fields.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// Normalizes a distribution name (PEP 503): lower case, runs of `-_.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

/// `sha256=<urlsafe base64 without padding>` as RECORD writes it.
pub fn record_hash(bytes: &[u8]) -> String {
    format!("sha256={}", URL_SAFE_NO_PAD.encode(Sha256::digest(bytes)))
}

/// Accepts `hex`, `sha256:hex` or `sha256=hex`; returns lower-case hex.
pub(crate) fn normalize_expected(expected: &str) -> String {
    let hex = expected
        .strip_prefix("sha256:")
        .or_else(|| expected.strip_prefix("sha256="))
        .unwrap_or(expected);
    hex.to_ascii_lowercase()
}
