//! Canonical JSON: the one serializer for every manifest, config and index blob kiln writes.
//!
//! A blob's digest covers its exact bytes, so the bytes must be a function of the value alone.
//! [`to_vec`] uses OLPC canonical JSON (`olpc-cjson`): object keys sorted by their UTF-8 bytes,
//! no insignificant whitespace, integers only. Map iteration order, struct field order and the
//! serde_json feature set therefore cannot change a digest.

use serde::Serialize;

use super::ImageError;

/// Serializes `value` as canonical JSON.
///
/// Fails when the value cannot be represented (a float, a map with non-string keys); `what`
/// in the error is the Rust type name, so the caller can tell which blob was being written.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut serializer)
        .map_err(|source| ImageError::Serialize {
            what: std::any::type_name::<T>(),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_and_whitespace_is_dropped() {
        let mut map = HashMap::new();
        for key in ["zeta", "alpha", "Mid", "beta"] {
            map.insert(key, vec![1, 2]);
        }
        let bytes = super::to_vec(&map).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"Mid":[1,2],"alpha":[1,2],"beta":[1,2],"zeta":[1,2]}"#
        );
    }

    #[test]
    fn floats_are_rejected() {
        assert!(super::to_vec(&1.5f64).is_err());
    }
}
