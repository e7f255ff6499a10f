//! Canonical JSON: the one serializer for every manifest, config and index blob kiln writes.
//!
//! A blob's digest covers its exact bytes, so the bytes must be a function of the value alone.
//! [`to_vec`] writes object keys sorted by their UTF-8 bytes and no insignificant whitespace
//! (the rules of OLPC canonical JSON), so map iteration order, struct field order and the
//! serde_json feature set cannot change a digest. kiln itself writes integers only; a number
//! with a fraction or beyond 64 bits can still arrive in the free JSON of a document another
//! tool wrote (an index.json kiln merges into), and it is kept, written in the shortest form
//! that reads back to the same value, rather than refusing that layout (found by fuzzing). Strings are escaped as standard JSON
//! escapes them (`\"`, `\\`, `\n`, `\u0001`, ...) and otherwise written as they are: OLPC's
//! own rules (as the `olpc-cjson` crate implements them) write control characters raw, which no
//! JSON parser accepts (so an annotation or label holding one made an unreadable index), and
//! NFC-normalize every string (so an environment value could change on its way through kiln).

use serde::Serialize;
use serde_json::Value;

use super::ImageError;

/// Serializes `value` as canonical JSON.
///
/// Fails when the value cannot be represented (a map with non-string keys); `what`
/// in the error is the Rust type name, so the caller can tell which blob was being written.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    let failed = |source: serde_json::Error| ImageError::Serialize {
        what: std::any::type_name::<T>(),
        source,
    };
    let tree = serde_json::to_value(value).map_err(failed)?;
    let mut out = Vec::new();
    write_canonical(&tree, &mut out).map_err(failed)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_writer(&mut *out, value)
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
            Ok(())
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
            Ok(())
        }
    }
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
    fn control_characters_are_escaped_and_strings_kept_as_they_are() {
        // Found by fuzzing: OLPC canonical JSON wrote U+0001 raw, which serde_json (and Go's
        // encoding/json) refuse to read back; and it NFC-normalized `e` + U+0301 into U+00E9.
        let mut map = HashMap::new();
        map.insert("annotation", "a\u{1}b\n\t\"\\/");
        map.insert("env", "PATH=e\u{301}");
        let bytes = super::to_vec(&map).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "{\"annotation\":\"a\\u0001b\\n\\t\\\"\\\\/\",\"env\":\"PATH=e\u{301}\"}"
        );
        let back: HashMap<String, String> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back["annotation"], "a\u{1}b\n\t\"\\/");
        assert_eq!(back["env"], "PATH=e\u{301}");
    }

    #[test]
    fn nested_objects_are_sorted_by_bytes_and_integers_kept() {
        let value = serde_json::json!({"b": {"z": [1, -2, {"y": null, "x": true}], "a": u64::MAX}, "B": "é", "a": ""});
        let bytes = super::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                r#"{{"B":"é","a":"","b":{{"a":{},"z":[1,-2,{{"x":true,"y":null}}]}}}}"#,
                u64::MAX
            )
        );
    }

    #[test]
    fn foreign_numbers_are_kept_in_their_shortest_exact_form() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"half":0.5,"huge":730000410000012999890,"neg":-1e-7}"#)
                .unwrap();
        let bytes = super::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"half":0.5,"huge":7.30000410000013e+20,"neg":-1e-7}"#
        );
        let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn a_map_json_cannot_hold_is_refused() {
        let map = HashMap::from([(vec![1u8], 1u8)]);
        assert!(super::to_vec(&map).is_err());
    }
}
