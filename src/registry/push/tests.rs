//! Tests of `registry::push`.

use reqwest::Url;

use super::headers::range_end;
use super::*;

#[test]
fn ranges() {
    let cases = [
        ("0-49999", Some(49999)),
        ("bytes=0-9", Some(9)),
        ("0-", None),
        ("x", None),
    ];
    for (text, end) in cases {
        assert_eq!(range_end(text), end, "{text}");
    }
}

#[test]
fn digest_query_is_merged() {
    let digest = Digest::of(b"x");
    let cases = [
        (
            "http://h/v2/r/blobs/uploads/u?_state=abc%3D",
            "http://h/v2/r/blobs/uploads/u?_state=abc%3D&digest=sha256%3A",
        ),
        (
            "http://h/v2/r/blobs/uploads/u",
            "http://h/v2/r/blobs/uploads/u?digest=sha256%3A",
        ),
    ];
    for (base, prefix) in cases {
        let mut url = Url::parse(base).unwrap();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        assert!(url.as_str().starts_with(prefix), "{url}");
    }
    // Relative Location resolution.
    let request = Url::parse("http://h:5000/v2/r/blobs/uploads/").unwrap();
    assert_eq!(
        request
            .join("/v2/r/blobs/uploads/u?_state=x")
            .unwrap()
            .as_str(),
        "http://h:5000/v2/r/blobs/uploads/u?_state=x"
    );
}
