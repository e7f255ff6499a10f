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

#[test]
fn plain_http_memory_belongs_to_one_options_value_and_its_clones() {
    let first = RegistryOptions::default();
    let clone = first.clone();
    let other = RegistryOptions::default();
    first.plain_http_hosts.insert("127.0.0.1:5000");
    assert!(clone.plain_http_hosts.contains("127.0.0.1:5000"));
    assert!(!other.plain_http_hosts.contains("127.0.0.1:5000"));
    assert!(!first.plain_http_hosts.contains("127.0.0.1:5001"));
}
