//! Package verification: a good package read through the index's `C:` and through its own
//! signature; refusals for a control member that does not match `C:`, data that does not match
//! `datahash`, a file whose content does not match its `APK-TOOLS.checksum.SHA1`, and an entry
//! escaping the root, each naming the package (and the entry), with nothing returned.

use crate::support::apk_fixture;

use apk_fixture::{
    BuiltPackage, Node, PkgSpec, TarOut, build_apk, build_apk_with_data, fixture, gzip, test_key,
};
use kiln::apk::{ApkError, Checksum, Keyring, Package, Trust};
use kiln::layer::reader::TarKind;

fn trust(pkg: &BuiltPackage) -> Trust<'static> {
    Trust::Index(Checksum::parse(&pkg.checksum).expect("fixture checksum"))
}

#[test]
fn good_package_reads_through_index_and_signature() {
    let fx = fixture();
    let built = fx.package("greeter-2.0-r0");
    let pkg = Package::open(&built.bytes, "greeter-2.0-r0.apk", trust(built)).expect("verifies");
    assert_eq!(pkg.id(), "greeter-2.0-r0");
    assert_eq!(pkg.checksum.q1(), built.checksum);
    assert_eq!(pkg.info.datahash.as_deref(), Some(built.datahash.as_str()));
    assert_eq!(pkg.info.triggers, ["/usr/share/greeter/*"]);
    assert_eq!(pkg.scripts.keys().collect::<Vec<_>>(), ["pre-install"]);
    let paths: Vec<&str> = pkg.entries.iter().map(|e| e.path.as_str()).collect();
    // `.keep_*` files are not installed.
    assert_eq!(
        paths,
        ["var", "var/lib", "var/lib/greeter", "var/lib/greeter/state"]
    );
    let state = &pkg.entries[3];
    assert_eq!(state.uname.as_deref(), Some("greeter"));
    assert_eq!(state.meta.mode, 0o640);
    assert_eq!(state.checksum, Some(Checksum::sha1_of(b"fresh\n")));
    assert_eq!(state.content.as_deref(), Some(&b"fresh\n"[..]));

    let hello = fx.package("hello-1.1-r0");
    let mut keys = Keyring::new();
    keys.add_pem(&test_key().name, &test_key().public_pem)
        .expect("key");
    let pkg =
        Package::open(&hello.bytes, "hello-1.1-r0.apk", Trust::Signature(&keys)).expect("signed");
    assert_eq!(pkg.signed_by.as_deref(), Some(test_key().name.as_str()));
    let link = pkg
        .entries
        .iter()
        .find(|e| e.path.as_str() == "usr/bin/hi")
        .expect("link");
    assert_eq!(link.kind, TarKind::Symlink("hello".into()));
    assert_eq!(link.checksum, Some(Checksum::sha1_of(b"hello")));

    let err = Package::open(
        &hello.bytes,
        "hello-1.1-r0.apk",
        Trust::Signature(&Keyring::new()),
    )
    .expect_err("no keys");
    assert!(matches!(err, ApkError::UnknownKey { .. }), "{err}");
}

#[test]
fn control_not_matching_the_index_is_refused() {
    let fx = fixture();
    let old = fx.package("hello-1.0-r0");
    let new = fx.package("hello-1.1-r0");
    let err = Package::open(&new.bytes, "hello-1.1-r0.apk", trust(old)).expect_err("wrong C:");
    let text = err.to_string();
    assert!(
        text.contains("hello-1.1-r0") && text.contains("index C:"),
        "{text}"
    );
    assert!(
        text.contains(&old.checksum) && text.contains(&new.checksum),
        "{text}"
    );
}

#[test]
fn data_not_matching_datahash_is_refused() {
    let fx = fixture();
    let built = fx.package("libgreet-1.1-r0");
    // Replace the data member by another (valid) one: C: still matches, datahash does not.
    let mut bytes = built.bytes[..built.control.end].to_vec();
    let other = apk_fixture::data_tar(&fx.package("libgreet-1.0-r0").spec);
    bytes.extend_from_slice(&gzip(&other));
    let err = Package::open(&bytes, "libgreet-1.1-r0.apk", trust(built)).expect_err("datahash");
    assert!(matches!(err, ApkError::ChecksumMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("libgreet-1.1-r0") && text.contains("datahash"),
        "{text}"
    );
    assert!(text.contains(&built.datahash), "{text}");
}

fn spec_with(nodes: Vec<Node>) -> PkgSpec {
    PkgSpec {
        name: "evil",
        version: "1.0-r0",
        nodes,
        ..PkgSpec::default()
    }
}

#[test]
fn file_checksum_mismatch_is_refused_naming_the_entry() {
    let spec = spec_with(vec![Node::Dir("etc", 0o755)]);
    let mut tar = TarOut::new();
    tar.entry(
        "etc/",
        tar::EntryType::Directory,
        0o755,
        ("root", "root"),
        None,
        b"",
        &[],
    );
    tar.entry(
        "etc/motd",
        tar::EntryType::Regular,
        0o644,
        ("root", "root"),
        None,
        b"tampered\n",
        &[(
            "APK-TOOLS.checksum.SHA1",
            Checksum::sha1_of(b"original\n").hex(),
        )],
    );
    let built = build_apk_with_data(&spec, gzip(&tar.finish()), test_key());
    let err = Package::open(&built.bytes, "evil.apk", trust(&built)).expect_err("checksum");
    assert!(matches!(err, ApkError::FileChecksum { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("evil-1.0-r0") && text.contains("etc/motd"),
        "{text}"
    );
    assert!(
        text.contains(&Checksum::sha1_of(b"original\n").hex()),
        "{text}"
    );
}

#[test]
fn escaping_entries_are_refused_naming_the_entry() {
    for (name, kind, link) in [
        ("../escape", tar::EntryType::Regular, None),
        ("usr/../../etc/shadow", tar::EntryType::Regular, None),
        ("usr/evil", tar::EntryType::Link, Some("../../etc/shadow")),
    ] {
        let spec = spec_with(vec![]);
        let mut tar = TarOut::new();
        tar.entry(
            "usr/",
            tar::EntryType::Directory,
            0o755,
            ("root", "root"),
            None,
            b"",
            &[],
        );
        tar.entry(name, kind, 0o644, ("root", "root"), link, b"", &[]);
        let built = build_apk_with_data(&spec, gzip(&tar.finish()), test_key());
        let err = Package::open(&built.bytes, "evil.apk", trust(&built)).expect_err(name);
        assert!(
            matches!(err, ApkError::UnsafeEntry { .. }),
            "{name}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("evil-1.0-r0") && text.contains(name),
            "{text}"
        );
    }
    // The fixture's own packages are fine.
    let ok = build_apk(&spec_with(vec![Node::Dir("usr", 0o755)]));
    Package::open(&ok.bytes, "ok.apk", trust(&ok)).expect("plain package");
}
