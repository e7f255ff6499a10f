//! Installing a ca-certificates package natively on the fixture's Alpine-like rootfs: its
//! trigger (`update-ca-certificates`) is emulated as Alpine's C implementation behaves: a
//! `ca-cert-NAME.pem` symlink for every certificate in /etc/ca-certificates.conf and in
//! /usr/local/share/ca-certificates, their contents concatenated into
//! /etc/ssl/certs/ca-certificates.crt, a stale link into those directories removed, and an
//! unrelated link left alone.

use crate::support::apk_fixture;

use std::collections::BTreeMap;
use std::sync::Arc;

use apk_fixture::{MTIME, Node, PkgSpec, build_apk, fixture, write_repository};
use kiln::apk::{ApkOptions, PackageConstraint, run};
use kiln::layer::{Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::MemFs;
use kiln::steps::run::NativeCommand;

const ROOT_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
const ROOT_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
const CORP: &str = "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n";

fn meta(mode: u32) -> Metadata {
    Metadata {
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME as i64,
        xattrs: BTreeMap::new(),
    }
}

#[test]
fn the_ca_certificates_trigger_rebuilds_links_and_the_bundle() {
    let fx = fixture();
    let package = build_apk(&PkgSpec {
        name: "ca-certificates",
        version: "20241121-r1",
        scripts: vec![(
            ".trigger",
            "#!/bin/sh\nexec /usr/bin/update-ca-certificates --fresh >/dev/null 2>&1\n",
        )],
        triggers: Some(
            "/usr/share/ca-certificates* /usr/local/share/ca-certificates* /etc/ssl/certs*",
        ),
        nodes: vec![
            Node::Dir("etc", 0o755),
            Node::File(
                "etc/ca-certificates.conf",
                "# Mozilla roots\nmozilla/Root_A.crt\n!mozilla/Distrusted.crt\nmozilla/Root_B.crt\n",
                0o644,
            ),
            Node::Dir("usr", 0o755),
            Node::Dir("usr/share", 0o755),
            Node::Dir("usr/share/ca-certificates", 0o755),
            Node::Dir("usr/share/ca-certificates/mozilla", 0o755),
            Node::File(
                "usr/share/ca-certificates/mozilla/Root_A.crt",
                ROOT_A,
                0o644,
            ),
            Node::File(
                "usr/share/ca-certificates/mozilla/Root_B.crt",
                ROOT_B,
                0o644,
            ),
        ],
        ..PkgSpec::default()
    });
    let repo = tempfile::tempdir().unwrap();
    write_repository(repo.path(), &[&package]);

    // The lower: a local certificate, a link left from a removed root, an unrelated link.
    let mut lower = fx.lower.clone();
    let mut put = |path: &str, kind: EntryKind, mode: u32| {
        lower.insert(
            LayerPath::new(path).unwrap(),
            Entry {
                kind,
                meta: meta(mode),
            },
        );
    };
    for dir in [
        "etc/ssl",
        "etc/ssl/certs",
        "usr/local",
        "usr/local/share",
        "usr/local/share/ca-certificates",
    ] {
        put(dir, EntryKind::Dir, 0o755);
    }
    put(
        "usr/local/share/ca-certificates/corp.crt",
        EntryKind::File(FileContent::Bytes(Arc::from(CORP.as_bytes()))),
        0o644,
    );
    put(
        "etc/ssl/certs/ca-cert-Old_Root.pem",
        EntryKind::Symlink("/usr/share/ca-certificates/mozilla/Old_Root.crt".into()),
        0o777,
    );
    put(
        "etc/ssl/certs/vendor.pem",
        EntryKind::Symlink("/opt/vendor/vendor.pem".into()),
        0o777,
    );
    let fs = MemFs::from_diff(&lower);
    let options = ApkOptions {
        repositories: Some(vec![repo.path().display().to_string()]),
        source_date_epoch: 1_700_000_100,
        ..ApkOptions::default()
    };
    let add = NativeCommand::ApkAdd {
        no_cache: true,
        update_cache: false,
        upgrade: false,
        virtual_name: None,
        packages: vec![PackageConstraint::parse("ca-certificates").unwrap()],
    };
    let outcome = run(&[add], &fs, &options).unwrap();
    assert!(
        outcome
            .warnings
            .iter()
            .all(|w| !w.contains("ca-certificates")),
        "the trigger is emulated: {:?}",
        outcome.warnings
    );
    let kind = |path: &str| {
        outcome
            .diff
            .get(&LayerPath::new(path).unwrap())
            .map(|e| e.kind.clone())
    };
    let link = |target: &str| Some(EntryKind::Symlink(target.into()));
    assert_eq!(
        kind("etc/ssl/certs/ca-cert-Root_A.pem"),
        link("/usr/share/ca-certificates/mozilla/Root_A.crt")
    );
    assert_eq!(
        kind("etc/ssl/certs/ca-cert-Root_B.pem"),
        link("/usr/share/ca-certificates/mozilla/Root_B.crt")
    );
    assert_eq!(
        kind("etc/ssl/certs/ca-cert-corp.pem"),
        link("/usr/local/share/ca-certificates/corp.crt")
    );
    assert_eq!(
        kind("etc/ssl/certs/ca-cert-Distrusted.pem"),
        None,
        "`!` lines are skipped"
    );
    assert_eq!(
        kind("etc/ssl/certs/ca-cert-Old_Root.pem"),
        Some(EntryKind::Whiteout)
    );
    assert_eq!(
        kind("etc/ssl/certs/vendor.pem"),
        None,
        "links elsewhere stay"
    );
    match kind("etc/ssl/certs/ca-certificates.crt") {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                format!("{ROOT_A}{ROOT_B}{CORP}")
            )
        }
        other => panic!("the bundle: {other:?}"),
    }
}
