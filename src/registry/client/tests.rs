//! Tests of `registry::client`.

use super::*;

#[test]
fn error_details() {
    let body =
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
    assert_eq!(
        error_detail(body).as_deref(),
        Some("MANIFEST_UNKNOWN manifest unknown")
    );
    assert_eq!(
        error_detail(b"404 page not found\n").as_deref(),
        Some("404 page not found")
    );
    assert_eq!(error_detail(b""), None);
}
