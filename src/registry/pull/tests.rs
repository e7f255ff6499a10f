//! Tests of `registry::pull`.

use super::*;

fn desc(platform: Option<&str>, digest_byte: char, media_type: &str) -> Descriptor {
    let mut d = Descriptor::new(
        media_type,
        Digest::from_hex(&digest_byte.to_string().repeat(64)).unwrap(),
        10,
    );
    d.platform = platform.map(|p| p.parse().unwrap());
    d
}

#[test]
fn platform_selection_table() {
    let mut attestation = desc(Some("linux/amd64"), 'e', MEDIA_TYPE_OCI_MANIFEST);
    attestation.annotations.insert(
        "vnd.docker.reference.type".into(),
        "attestation-manifest".into(),
    );
    let mut unknown = desc(None, 'f', MEDIA_TYPE_OCI_MANIFEST);
    unknown.platform = Some(Platform::new("unknown", "unknown", None));
    let index = Index {
        manifests: vec![
            attestation,
            unknown,
            desc(Some("linux/amd64"), 'a', MEDIA_TYPE_OCI_MANIFEST),
            desc(Some("linux/arm64/v8"), 'b', MEDIA_TYPE_OCI_MANIFEST),
            desc(Some("linux/arm/v7"), 'c', MEDIA_TYPE_OCI_MANIFEST),
        ],
        ..Index::empty()
    };
    let cases = [
        ("linux/amd64", Some('a')),
        ("linux/arm64", Some('b')),
        ("linux/arm64/v8", Some('b')),
        ("linux/arm/v7", Some('c')),
        ("linux/arm/v6", None),
        ("linux/s390x", None),
    ];
    for (platform, expected) in cases {
        let result = select_platform(&index, &platform.parse().unwrap(), "x");
        match expected {
            Some(c) => assert_eq!(result.unwrap().digest.hex().chars().next(), Some(c)),
            None => {
                let e = result.unwrap_err().to_string();
                assert!(
                    e.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
                    "{e}"
                );
                assert!(!e.contains("unknown"), "{e}");
            }
        }
    }
}

#[test]
fn sniffing() {
    assert_eq!(sniff(br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#, "x").unwrap(), Kind::Index);
    assert_eq!(
        sniff(br#"{"schemaVersion":2,"config":{},"layers":[]}"#, "x").unwrap(),
        Kind::Manifest
    );
    let e = sniff(b"<html>", "reg/x@sha256:1").unwrap_err().to_string();
    assert!(
        e.contains("reg/x@sha256:1") && e.contains("not a valid"),
        "{e}"
    );
    let e = sniff(
        br#"{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#,
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("schema 1"), "{e}");
}
