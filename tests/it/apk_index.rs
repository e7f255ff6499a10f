//! Signed `APKINDEX.tar.gz` verification against keys read from the lower filesystem's
//! `/etc/apk/keys`: a good index (RSA and RSA256), an unknown key, a tampered signature, a
//! tampered body, and an unsigned index are each accepted or refused with the index and key
//! named.

use crate::support::apk_fixture;

use apk_fixture::{ARCH, build_index, fixture, gzip, test_key, untrusted_key};
use kiln::apk::{ApkError, Index, Keyring};
use kiln::rootfs::MemFs;

fn lower_keys(fx: &apk_fixture::ApkFixture) -> Keyring {
    let lower = MemFs::from_diff(&fx.lower);
    Keyring::from_view(&lower).expect("keys read")
}

#[test]
fn good_index_verifies_and_parses() {
    let fx = fixture();
    let keys = lower_keys(&fx);
    assert_eq!(keys.names(), [test_key().name.clone()]);
    let bytes = std::fs::read(fx.index_path()).expect("index");
    let index =
        Index::parse(&bytes, "file:///repo/x86_64/APKINDEX.tar.gz", &keys).expect("verifies");
    assert_eq!(index.signed_by, test_key().name);
    assert_eq!(index.description.as_deref(), Some("kiln-fixture-1"));
    let ids: Vec<String> = index.packages.iter().map(|p| p.id()).collect();
    assert_eq!(
        ids,
        [
            "hello-1.0-r0",
            "hello-1.1-r0",
            "libgreet-1.0-r0",
            "libgreet-1.1-r0",
            "greeter-2.0-r0",
            "hello-extra-1.0-r0",
            "breaker-1.0-r0"
        ]
    );
    for info in &index.packages {
        let built = fx.package(&info.id());
        assert_eq!(info.checksum.q1(), built.checksum, "{}", info.id());
        assert_eq!(info.size, built.bytes.len() as u64);
        assert_eq!(info.arch.as_deref(), Some(ARCH));
    }
    let hello = &index.packages[1];
    assert_eq!(hello.depends[0].to_string(), "libgreet>=1.1");
    assert_eq!(hello.provides[0].to_string(), "cmd:hello=1.1-r0");

    // RSA256 (SHA-256) signatures verify too.
    let records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();
    let sha256 = build_index(&records, test_key(), "RSA256");
    let index = Index::parse(&sha256, "sha256 index", &keys).expect("RSA256 verifies");
    assert_eq!(index.packages.len(), records.len());
}

#[test]
fn unknown_key_is_refused_naming_index_and_key() {
    let fx = fixture();
    let records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();
    let bytes = build_index(&records, untrusted_key(), "RSA");
    let err = Index::parse(
        &bytes,
        "https://alpine.example/main/x86_64/APKINDEX.tar.gz",
        &lower_keys(&fx),
    )
    .expect_err("untrusted");
    assert!(matches!(err, ApkError::UnknownKey { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("https://alpine.example/main/x86_64/APKINDEX.tar.gz"),
        "{text}"
    );
    assert!(text.contains(&untrusted_key().name), "{text}");
    assert!(text.contains(&test_key().name), "{text}");
}

#[test]
fn tampered_signature_or_body_is_refused() {
    let fx = fixture();
    let keys = lower_keys(&fx);
    let good = std::fs::read(fx.index_path()).expect("index");
    let records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();

    // A signature made over other bytes.
    let mut forged = apk_fixture::signature_member(
        "RSA",
        &test_key().name,
        &test_key().sign_sha1(b"something else"),
    );
    let body_start = good.len() - body_len_of(&good);
    forged.extend_from_slice(&good[body_start..]);
    let err = Index::parse(&forged, "forged.tar.gz", &keys).expect_err("forged");
    assert!(matches!(err, ApkError::BadSignature { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("forged.tar.gz") && text.contains(&test_key().name),
        "{text}"
    );

    // The signed body changed after signing: another P: value in the same-length record.
    let mut tampered_records = records.clone();
    tampered_records[0] = tampered_records[0].replace("P:breaker", "P:breakex");
    assert_ne!(tampered_records, records);
    let mut tampered = good[..body_start].to_vec();
    tampered.extend_from_slice(&apk_index_body(&tampered_records));
    let err = Index::parse(&tampered, "tampered.tar.gz", &keys).expect_err("tampered");
    assert!(matches!(err, ApkError::BadSignature { .. }), "{err:?}");

    // No signature member at all.
    let err =
        Index::parse(&apk_index_body(&records), "unsigned.tar.gz", &keys).expect_err("unsigned");
    assert!(matches!(err, ApkError::Unsigned { .. }), "{err:?}");
    assert!(err.to_string().contains("unsigned.tar.gz"));
}

/// The index body (DESCRIPTION + APKINDEX tar, gzipped) exactly as the fixture builds it.
fn apk_index_body(records: &[String]) -> Vec<u8> {
    let signed = build_index(records, test_key(), "RSA");
    let sig_len = signed.len() - body_len_of(&signed);
    signed[sig_len..].to_vec()
}

/// Length of everything after the first gzip member.
fn body_len_of(bytes: &[u8]) -> usize {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(bytes);
    let mut sink = Vec::new();
    decoder.read_to_end(&mut sink).expect("first member");
    decoder.into_inner().len()
}

#[test]
fn index_with_a_malformed_record_names_the_line() {
    let fx = fixture();
    let mut records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();
    records.push("C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=\nP:odd\nV:1.0\nnot a field\n".into());
    let bytes = build_index(&records, test_key(), "RSA");
    let err = Index::parse(&bytes, "odd-index", &lower_keys(&fx)).expect_err("malformed");
    let text = err.to_string();
    assert!(
        text.contains("odd-index: APKINDEX") && text.contains("not a field"),
        "{text}"
    );
    let _ = gzip(b"");
}
