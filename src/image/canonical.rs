//! Canonical JSON: the one serializer for every manifest, config and index blob kiln writes.
//!
//! A blob's digest covers its exact bytes, so the bytes must be a function of the value alone.
//! [`to_vec`] writes object keys sorted by their UTF-8 bytes, no insignificant whitespace and
//! integers only (OLPC canonical JSON's rules, through `olpc-cjson`, strings in NFC as it keeps
//! them), so map iteration order, struct field order and the serde_json feature set cannot
//! change a digest.
//!
//! One departure from OLPC: control characters (U+0000..U+001F) are escaped as RFC 8259 and
//! serde_json escape them (`\t`, `\n`, `\u0001`, ...). OLPC writes them raw, which is not JSON:
//! umoci, containerd and Docker refuse a config whose `history[].created_by` holds a raw tab.
//! For every string without a control character the bytes are exactly OLPC's, so digests of
//! such images do not change.

use std::io::{self, Write};

use olpc_cjson::CanonicalFormatter;
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

use super::ImageError;

/// Serializes `value` as canonical JSON.
///
/// Fails when the value cannot be represented (a float, a map with non-string keys); `what`
/// in the error is the Rust type name, so the caller can tell which blob was being written.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, JsonCanonical::default());
    value
        .serialize(&mut serializer)
        .map_err(|source| ImageError::Serialize {
            what: std::any::type_name::<T>(),
            source,
        })?;
    Ok(out)
}

/// OLPC's canonical formatter with RFC 8259 escapes for control characters.
///
/// Every call goes through the inner formatter (it buffers each object's members to sort them,
/// so writing around it would put bytes in the wrong place); an escape is handed to it as a
/// string fragment of plain ASCII, which it copies unchanged.
#[derive(Default)]
struct JsonCanonical(CanonicalFormatter);

/// The JSON text for an escaped character, as serde_json's own compact formatter writes it.
fn escape_text(escape: CharEscape) -> std::borrow::Cow<'static, str> {
    match escape {
        CharEscape::Quote => "\\\"".into(),
        CharEscape::ReverseSolidus => "\\\\".into(),
        CharEscape::Solidus => "\\/".into(),
        CharEscape::Backspace => "\\b".into(),
        CharEscape::FormFeed => "\\f".into(),
        CharEscape::LineFeed => "\\n".into(),
        CharEscape::CarriageReturn => "\\r".into(),
        CharEscape::Tab => "\\t".into(),
        CharEscape::AsciiControl(byte) => format!("\\u{byte:04x}").into(),
    }
}

macro_rules! delegate {
    ($($name:ident),* $(,)?) => {
        $(
            fn $name<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
                self.0.$name(writer)
            }
        )*
    };
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(
            fn $name<W: ?Sized + Write>(&mut self, writer: &mut W, value: $ty) -> io::Result<()> {
                self.0.$name(writer, value)
            }
        )*
    };
}

impl Formatter for JsonCanonical {
    delegate!(
        write_null,
        begin_string,
        end_string,
        begin_array,
        end_array,
        end_array_value,
        begin_object,
        end_object,
        end_object_key,
        begin_object_value,
        end_object_value,
    );
    delegate!(
        write_bool: bool,
        write_i8: i8,
        write_i16: i16,
        write_i32: i32,
        write_i64: i64,
        write_i128: i128,
        write_u8: u8,
        write_u16: u16,
        write_u32: u32,
        write_u64: u64,
        write_u128: u128,
        write_f32: f32,
        write_f64: f64,
        write_number_str: &str,
        write_string_fragment: &str,
        begin_array_value: bool,
        begin_object_key: bool,
    );

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        self.0
            .write_string_fragment(writer, &escape_text(char_escape))
    }

    /// Only reached with serde_json's `raw_value` feature: the fragment is parsed and written
    /// again canonically, so it gets the same key order and escapes as everything else.
    fn write_raw_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let value: serde_json::Value = serde_json::from_str(fragment)?;
        let mut text = Vec::new();
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut text, JsonCanonical::default());
        value.serialize(&mut serializer)?;
        let text = String::from_utf8(text).map_err(io::Error::other)?;
        self.0.write_string_fragment(writer, &text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

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

    /// Every control character is escaped as serde_json escapes it, in values and in keys
    /// (keys still sorted), and the text parses back to the same strings.
    #[test]
    fn control_characters_are_escaped_and_round_trip() {
        let all: String = (0u8..0x20).chain([0x7f]).map(char::from).collect();
        let mut map = BTreeMap::new();
        map.insert(format!("k{all}"), vec![all.clone(), "a\"b\\c/".to_owned()]);
        map.insert("\t".to_owned(), vec![String::new()]);
        let bytes = super::to_vec(&map).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&map).unwrap());
        assert!(bytes.iter().all(|b| *b >= 0x20), "a raw control byte");
        let back: BTreeMap<String, Vec<String>> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, map);
    }

    /// Without control characters the bytes are OLPC canonical JSON's, so no digest moves.
    #[test]
    fn bytes_without_control_characters_are_olpc_bytes() {
        let value = serde_json::json!({
            "b": [1, -2, u64::MAX, null, true],
            "a": {"z": "quote \" back \\ slash / é ü \u{7f}", "y": {}},
            "Ä": "e\u{301}",
        });
        let mut olpc = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(
            &mut olpc,
            olpc_cjson::CanonicalFormatter::new(),
        );
        serde::Serialize::serialize(&value, &mut serializer).unwrap();
        assert_eq!(super::to_vec(&value).unwrap(), olpc);
    }
}
