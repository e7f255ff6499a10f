//! `apk upgrade` and `apk add` natively on the fixture's Alpine-like lower rootfs and signed
//! local repository: the plan, the files, whiteouts and `.apk-new` in the Diff, the rewritten
//! installed db (compared as text with a hand-written one), scripts.tar, users created by a
//! `.pre-install`, a `replaces` takeover, an unsatisfiable `apk add` naming the conflict, and
//! refusals for what is not available (an uncached mirror offline, an untrusted index) with nothing
//! written.

use crate::support::apk_fixture;

use apk_fixture::{BUSYBOX_RECORD, fixture, installed_record};
use kiln::apk::db::ScriptsTar;
use kiln::apk::{ApkError, ApkOptions, PackageConstraint, run};
use kiln::layer::{Diff, EntryKind, FileContent, LayerPath};
use kiln::rootfs::{FsView, MemFs, Overlay};
use kiln::steps::run::NativeCommand;

fn upgrade() -> NativeCommand {
    NativeCommand::ApkUpgrade {
        available: false,
        no_cache: false,
        update_cache: false,
        latest: false,
    }
}

fn add(specs: &[&str]) -> NativeCommand {
    NativeCommand::ApkAdd {
        no_cache: true,
        update_cache: false,
        upgrade: false,
        virtual_name: None,
        packages: specs
            .iter()
            .map(|s| PackageConstraint::parse(s).expect("spec"))
            .collect(),
    }
}

fn text_of(diff: &Diff, path: &str) -> String {
    match diff
        .get(&LayerPath::new(path).expect("path"))
        .map(|e| &e.kind)
    {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        other => panic!("{path}: expected a file in the diff, found {other:?}"),
    }
}

fn kind_of<'d>(diff: &'d Diff, path: &str) -> Option<&'d EntryKind> {
    diff.get(&LayerPath::new(path).expect("path"))
        .map(|e| &e.kind)
}

#[test]
fn update_and_upgrade_produce_the_expected_layer() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let options = ApkOptions {
        source_date_epoch: 1_700_000_100,
        ..ApkOptions::default()
    };
    let outcome = run(&[NativeCommand::ApkUpdate, upgrade()], &lower, &options).expect("upgrade");
    assert_eq!(outcome.details.len(), 1);
    assert_eq!(
        outcome.details[0].to_string(),
        "(1/2) Upgrading libgreet (1.0-r0 -> 1.1-r0)\n(2/2) Upgrading hello (1.0-r0 -> 1.1-r0)\n"
    );
    let diff = &outcome.diff;
    let paths: Vec<String> = diff.iter().map(|(p, _)| p.as_str().to_owned()).collect();
    assert_eq!(
        paths,
        [
            "etc/hello.conf.apk-new",
            "lib/apk/db/installed",
            "lib/apk/db/scripts.tar",
            "lib/apk/db/triggers",
            "usr/bin/hello",
            "usr/bin/hi",
            "usr/lib/libgreet.so.1",
            "usr/share/hello/new.txt",
            "usr/share/hello/old.txt",
        ]
    );
    assert_eq!(
        text_of(diff, "usr/bin/hello"),
        "#!/bin/sh\necho hello 1.1\n"
    );
    assert_eq!(text_of(diff, "usr/lib/libgreet.so.1"), "libgreet 1.1\n");
    assert_eq!(
        kind_of(diff, "usr/share/hello/old.txt"),
        Some(&EntryKind::Whiteout)
    );
    assert_eq!(
        kind_of(diff, "usr/bin/hi"),
        Some(&EntryKind::Symlink("hello".into()))
    );
    // The user's /etc/hello.conf stays; the package's version lands beside it.
    assert_eq!(
        text_of(diff, "etc/hello.conf.apk-new"),
        "greeting=hello\nloud=yes\n"
    );
    let hello_bin = diff
        .get(&LayerPath::new("usr/bin/hello").expect("path"))
        .expect("entry");
    assert_eq!(hello_bin.meta.mode, 0o755);
    assert_eq!(hello_bin.meta.mtime, apk_fixture::MTIME as i64);

    let expected_db = format!(
        "{BUSYBOX_RECORD}\n{}\n{}\n",
        installed_record(fx.package("hello-1.1-r0")),
        installed_record(fx.package("libgreet-1.1-r0"))
    );
    assert_eq!(text_of(diff, "lib/apk/db/installed"), expected_db);
    let db_entry = diff
        .get(&LayerPath::new("lib/apk/db/installed").expect("path"))
        .expect("db");
    assert_eq!(db_entry.meta.mtime, 1_700_000_100);

    let scripts = match kind_of(diff, "lib/apk/db/scripts.tar") {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            ScriptsTar::parse(bytes, "scripts.tar").expect("tar")
        }
        other => panic!("scripts.tar: {other:?}"),
    };
    let names: Vec<String> = scripts
        .scripts
        .iter()
        .map(|s| format!("{}.{}.{}", s.package, s.checksum, s.action))
        .collect();
    assert_eq!(
        names,
        [format!(
            "hello-1.1-r0.{}.post-upgrade",
            fx.package("hello-1.1-r0").checksum
        )]
    );

    assert_eq!(
        outcome
            .warnings
            .iter()
            .filter(|w| w.contains("post-upgrade script not run"))
            .count(),
        1
    );
    let uris: Vec<&str> = outcome
        .materials
        .iter()
        .map(|m| m.uri.rsplit('/').next().unwrap_or(""))
        .collect();
    assert_eq!(
        uris,
        ["APKINDEX.tar.gz", "libgreet-1.1-r0.apk", "hello-1.1-r0.apk"]
    );
    let hello_material = &outcome.materials[2];
    assert_eq!(
        hello_material.apk_checksum(),
        Some(fx.package("hello-1.1-r0").checksum.as_str())
    );
    assert_eq!(
        hello_material.sha256.as_ref().map(|d| d.hex().len()),
        Some(64)
    );

    // Applied on the lower, the result reads as an upgraded system; a second upgrade does nothing.
    let mut upper = Overlay::new(&lower);
    upper.apply(outcome.diff.clone());
    let again = run(&[upgrade()], &upper, &options).expect("second upgrade");
    assert_eq!(again.details[0].to_string(), "OK: nothing to do\n");
    assert!(
        again
            .materials
            .iter()
            .all(|m| m.uri.ends_with("APKINDEX.tar.gz"))
    );
}

#[test]
fn add_runs_pre_install_users_and_replaces() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let outcome = run(
        &[add(&["greeter", "hello-extra"])],
        &lower,
        &ApkOptions::default(),
    )
    .expect("add");
    // add keeps installed versions: hello stays 1.0.
    assert_eq!(
        outcome.details[0].to_string(),
        "(1/2) Installing greeter (2.0-r0)\n(2/2) Installing hello-extra (1.0-r0)\n"
    );
    let diff = &outcome.diff;
    assert_eq!(
        text_of(diff, "etc/apk/world"),
        "busybox\ngreeter\nhello\nhello-extra\n"
    );
    let passwd = text_of(diff, "etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("greeter:"))
        .expect("user created");
    let uid: u32 = line
        .split(':')
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("uid");
    assert!((100..1000).contains(&uid), "{line}");
    let state = diff
        .get(&LayerPath::new("var/lib/greeter/state").expect("path"))
        .expect("state");
    assert_eq!(state.meta.uid, uid);
    assert_eq!(state.meta.mode, 0o640);
    assert!(kind_of(diff, "var/lib/greeter/.keep_greeter").is_none());
    let db = text_of(diff, "lib/apk/db/installed");
    assert!(
        db.contains(&format!(
            "F:var/lib/greeter\nM:{uid}:{uid}:750\nR:state\na:{uid}:{uid}:640\n"
        )),
        "{db}"
    );
    // hello-extra replaces hello's file: it takes the file and the db entry.
    assert_eq!(text_of(diff, "usr/share/hello/new.txt"), "extra\n");
    assert!(db.contains("r:hello\n"), "{db}");
    let triggers = text_of(diff, "lib/apk/db/triggers");
    assert_eq!(
        triggers,
        format!(
            "{} /usr/share/greeter/*\n",
            fx.package("greeter-2.0-r0").checksum
        )
    );
}

#[test]
fn add_of_an_unsatisfiable_constraint_names_the_conflict() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let err = run(&[add(&["breaker"])], &lower, &ApkOptions::default()).expect_err("unsatisfiable");
    assert!(matches!(err, ApkError::Unsatisfiable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("breaker-1.0-r0[hello<1.0]"), "{text}");
    assert!(text.contains("world[hello]"), "{text}");

    let err =
        run(&[add(&["hello>2"])], &lower, &ApkOptions::default()).expect_err("no such version");
    assert!(err.to_string().contains("world[hello>2]"), "{err}");
}

#[test]
fn file_conflicts_without_replaces_are_refused() {
    let fx = fixture();
    // A package shipping hello's binary, without replaces and with another origin.
    let spec = apk_fixture::PkgSpec {
        name: "impostor",
        version: "1.0-r0",
        nodes: vec![
            apk_fixture::Node::Dir("usr", 0o755),
            apk_fixture::Node::Dir("usr/bin", 0o755),
            apk_fixture::Node::File("usr/bin/hello", "fake\n", 0o755),
        ],
        ..apk_fixture::PkgSpec::default()
    };
    let built = apk_fixture::build_apk(&spec);
    let arch_dir = fx.repo.join(apk_fixture::ARCH);
    std::fs::write(arch_dir.join("impostor-1.0-r0.apk"), &built.bytes).expect("write");
    let mut records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();
    records.push(built.index_record());
    std::fs::write(
        fx.index_path(),
        apk_fixture::build_index(&records, apk_fixture::test_key(), "RSA"),
    )
    .expect("index");
    let lower = MemFs::from_diff(&fx.lower);
    let err = run(&[add(&["impostor"])], &lower, &ApkOptions::default()).expect_err("conflict");
    let text = err.to_string();
    assert!(matches!(err, ApkError::FileConflict { .. }), "{err:?}");
    assert!(
        text.contains("impostor-1.0-r0")
            && text.contains("/usr/bin/hello")
            && text.contains("hello-1.0-r0"),
        "{text}"
    );
}

#[test]
fn unsupported_and_untrusted_repositories_are_refused() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    // An HTTP mirror with nothing cached, offline: refused naming the URL, nothing fetched.
    let options = ApkOptions {
        repositories: Some(vec!["https://alpine.example/v3.20/main".into()]),
        offline: true,
        ..ApkOptions::default()
    };
    let err = run(&[upgrade()], &lower, &options).expect_err("offline");
    assert!(matches!(err, ApkError::Offline { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("https://alpine.example/v3.20/main/x86_64/APKINDEX.tar.gz"),
        "{err}"
    );

    // A repository signed by a key the lower does not trust.
    let mut records: Vec<String> = fx.packages.values().map(|p| p.index_record()).collect();
    records.sort();
    std::fs::write(
        fx.index_path(),
        apk_fixture::build_index(&records, apk_fixture::untrusted_key(), "RSA"),
    )
    .expect("index");
    let err = run(
        &[NativeCommand::ApkUpdate, upgrade()],
        &lower,
        &ApkOptions::default(),
    )
    .expect_err("untrusted");
    assert!(matches!(err, ApkError::UnknownKey { .. }), "{err:?}");
    assert!(err.to_string().contains("APKINDEX.tar.gz"), "{err}");
    let _ = lower.read_dir(&LayerPath::root());
}

#[test]
fn tampered_repository_package_is_refused_before_anything_is_applied() {
    let fx = fixture();
    // libgreet 1.1 on disk is replaced by 1.0's bytes: its control member no longer matches C:.
    let arch_dir = fx.repo.join(apk_fixture::ARCH);
    std::fs::write(
        arch_dir.join("libgreet-1.1-r0.apk"),
        &fx.package("libgreet-1.0-r0").bytes,
    )
    .expect("write");
    let lower = MemFs::from_diff(&fx.lower);
    let err = run(&[upgrade()], &lower, &ApkOptions::default()).expect_err("tampered");
    let text = err.to_string();
    assert!(matches!(err, ApkError::ChecksumMismatch { .. }), "{err:?}");
    assert!(
        text.contains("libgreet-1.0-r0") && text.contains("libgreet-1.1-r0.apk"),
        "{text}"
    );
}
