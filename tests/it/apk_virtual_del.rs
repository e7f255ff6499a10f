//! `apk add --virtual`, `apk del` (plain and `-r`) and `apk upgrade --available` natively on the
//! fixture's Alpine-like rootfs and signed repository (also `del --purge` and `add -u`): the plans, the installed db records
//! (a virtual package exactly as apk records one), world, whiteouts, kept configuration, and the
//! warning when a deleted package is still needed.

use crate::support::apk_fixture;

use apk_fixture::{fixture, write_repository};
use kiln::apk::{ApkOptions, PackageConstraint, run};
use kiln::layer::{Diff, EntryKind, FileContent, LayerPath};
use kiln::rootfs::MemFs;
use kiln::steps::run::NativeCommand;

const EPOCH: i64 = 1_700_000_100;

fn options() -> ApkOptions {
    ApkOptions {
        source_date_epoch: EPOCH,
        ..ApkOptions::default()
    }
}

fn add(virtual_name: Option<&str>, specs: &[&str]) -> NativeCommand {
    add_with(virtual_name, false, specs)
}

fn add_with(virtual_name: Option<&str>, upgrade: bool, specs: &[&str]) -> NativeCommand {
    NativeCommand::ApkAdd {
        no_cache: true,
        update_cache: false,
        upgrade,
        virtual_name: virtual_name.map(str::to_owned),
        packages: specs
            .iter()
            .map(|s| PackageConstraint::parse(s).expect("spec"))
            .collect(),
    }
}

fn del(names: &[&str], rdepends: bool) -> NativeCommand {
    del_with(names, rdepends, false)
}

fn del_with(names: &[&str], rdepends: bool, purge: bool) -> NativeCommand {
    NativeCommand::ApkDel {
        packages: names.iter().map(|s| (*s).to_owned()).collect(),
        rdepends,
        purge,
    }
}

fn upgrade(available: bool) -> NativeCommand {
    NativeCommand::ApkUpgrade {
        available,
        no_cache: false,
        update_cache: false,
        latest: false,
    }
}

fn text_of(fs: &Diff, path: &str) -> String {
    match fs.get(&LayerPath::new(path).unwrap()).map(|e| &e.kind) {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        other => panic!("{path}: expected a file in the diff, found {other:?}"),
    }
}

fn is_whiteout(diff: &Diff, path: &str) -> bool {
    matches!(
        diff.get(&LayerPath::new(path).unwrap()).map(|e| &e.kind),
        Some(EntryKind::Whiteout)
    )
}

/// The record of `name` in an installed db text.
fn record<'t>(installed: &'t str, name: &str) -> Option<&'t str> {
    installed
        .split("\n\n")
        .find(|r| r.lines().any(|l| l == format!("P:{name}")))
}

#[test]
fn virtual_build_deps_are_added_then_deleted_with_their_dependencies() {
    let fx = fixture();
    let mut fs = MemFs::from_diff(&fx.lower);
    let added = run(&[add(Some(".build-deps"), &["greeter"])], &fs, &options()).unwrap();
    assert_eq!(
        added.details[0].to_string(),
        "(1/2) Installing greeter (2.0-r0)\n(2/2) Installing .build-deps (20231114.221500)\n"
    );
    let installed = text_of(&added.diff, "lib/apk/db/installed");
    let virtual_record = record(&installed, ".build-deps").expect("the virtual package's record");
    let fields: Vec<&str> = virtual_record.lines().skip(1).collect();
    assert_eq!(
        fields,
        [
            "P:.build-deps",
            "V:20231114.221500",
            "A:noarch",
            "S:0",
            "I:0",
            "T:virtual meta package",
            "D:greeter",
        ],
        "{virtual_record}"
    );
    assert!(virtual_record.starts_with("C:Q1"), "{virtual_record}");
    assert_eq!(
        text_of(&added.diff, "etc/apk/world"),
        ".build-deps=20231114.221500\nbusybox\nhello\n",
        "world names the virtual package, not what it pulls in"
    );
    assert!(
        added
            .diff
            .get(&LayerPath::new("var/lib/greeter/state").unwrap())
            .is_some()
    );

    // The same again gives the same record: nothing of the wall clock or the pid leaks in.
    let again = run(&[add(Some(".build-deps"), &["greeter"])], &fs, &options()).unwrap();
    assert_eq!(text_of(&again.diff, "lib/apk/db/installed"), installed);

    fs.apply(&added.diff);
    let deleted = run(&[del(&[".build-deps"], false)], &fs, &options()).unwrap();
    assert_eq!(
        deleted.details[0].to_string(),
        "(1/2) Purging .build-deps (20231114.221500)\n(2/2) Purging greeter (2.0-r0)\n"
    );
    assert!(is_whiteout(&deleted.diff, "var/lib/greeter/state"));
    let installed = text_of(&deleted.diff, "lib/apk/db/installed");
    assert!(record(&installed, ".build-deps").is_none());
    assert!(record(&installed, "greeter").is_none());
    assert!(record(&installed, "hello").is_some());
    assert_eq!(text_of(&deleted.diff, "etc/apk/world"), "busybox\nhello\n");
    assert!(
        deleted.warnings.iter().all(|w| !w.contains("apk del")),
        "{:?}",
        deleted.warnings
    );
}

#[test]
fn del_removes_what_only_it_needed_and_keeps_modified_config() {
    let fx = fixture();
    let fs = MemFs::from_diff(&fx.lower);
    let outcome = run(&[del(&["hello"], false)], &fs, &options()).unwrap();
    assert_eq!(
        outcome.details[0].to_string(),
        "(1/2) Purging hello (1.0-r0)\n(2/2) Purging libgreet (1.0-r0)\n"
    );
    assert!(is_whiteout(&outcome.diff, "usr/bin/hello"));
    assert!(
        outcome
            .diff
            .get(&LayerPath::new("etc/hello.conf").unwrap())
            .is_none(),
        "the modified /etc/hello.conf stays, as apk leaves it"
    );
    assert_eq!(text_of(&outcome.diff, "etc/apk/world"), "busybox\n");

    // libgreet is not in world; -r removes the world entry that needs it (hello) as well.
    let outcome = run(&[del(&["libgreet"], true)], &fs, &options()).unwrap();
    assert_eq!(
        outcome.details[0].to_string(),
        "(1/2) Purging hello (1.0-r0)\n(2/2) Purging libgreet (1.0-r0)\n"
    );
    assert!(
        outcome
            .warnings
            .contains(&"apk del: `libgreet` is not in world".to_owned()),
        "{:?}",
        outcome.warnings
    );
}

#[test]
fn del_of_a_package_still_needed_keeps_it_and_says_why() {
    let fx = fixture();
    let mut fs = MemFs::from_diff(&fx.lower);
    let added = run(&[add(None, &["greeter"])], &fs, &options()).unwrap();
    fs.apply(&added.diff);
    let outcome = run(&[del(&["hello"], false)], &fs, &options()).unwrap();
    assert_eq!(outcome.details[0].to_string(), "OK: nothing to do\n");
    assert!(
        outcome.warnings.contains(
            &"apk del: `hello` is not removed: a package in world still depends on it".to_owned()
        ),
        "{:?}",
        outcome.warnings
    );
    assert_eq!(
        text_of(&outcome.diff, "etc/apk/world"),
        "busybox\ngreeter\n"
    );
}

#[test]
fn upgrade_available_downgrades_to_what_the_repository_offers() {
    let fx = fixture();
    let mut fs = MemFs::from_diff(&fx.lower);
    let upgraded = run(&[upgrade(false)], &fs, &options()).unwrap();
    fs.apply(&upgraded.diff);

    // A repository that only has the 1.0 releases (as after a mirror rollback).
    let old_repo = tempfile::tempdir().unwrap();
    write_repository(
        old_repo.path(),
        &[fx.package("hello-1.0-r0"), fx.package("libgreet-1.0-r0")],
    );
    let only_old = ApkOptions {
        repositories: Some(vec![old_repo.path().display().to_string()]),
        ..options()
    };
    let plain = run(&[upgrade(false)], &fs, &only_old).unwrap();
    assert_eq!(plain.details[0].to_string(), "OK: nothing to do\n");
    let available = run(&[upgrade(true)], &fs, &only_old).unwrap();
    assert_eq!(
        available.details[0].to_string(),
        "(1/2) Downgrading libgreet (1.1-r0 -> 1.0-r0)\n(2/2) Downgrading hello (1.1-r0 -> 1.0-r0)\n"
    );
    assert_eq!(
        text_of(&available.diff, "usr/bin/hello"),
        text_of(&fx.lower, "usr/bin/hello")
    );
}

#[test]
fn del_purge_removes_modified_config_as_well() {
    let fx = fixture();
    let fs = MemFs::from_diff(&fx.lower);
    let outcome = run(&[del_with(&["hello"], false, true)], &fs, &options()).unwrap();
    assert!(is_whiteout(&outcome.diff, "usr/bin/hello"));
    assert!(
        is_whiteout(&outcome.diff, "etc/hello.conf"),
        "--purge removes the modified /etc/hello.conf too"
    );
}

#[test]
fn add_upgrade_prefers_the_newest_of_the_named_packages_and_their_dependencies() {
    let fx = fixture();
    let fs = MemFs::from_diff(&fx.lower);
    let plain = run(&[add(None, &["hello"])], &fs, &options()).unwrap();
    assert_eq!(
        plain.details[0].to_string(),
        "OK: nothing to do\n",
        "apk add keeps what is installed"
    );
    let upgraded = run(&[add_with(None, true, &["hello"])], &fs, &options()).unwrap();
    assert_eq!(
        upgraded.details[0].to_string(),
        "(1/2) Upgrading libgreet (1.0-r0 -> 1.1-r0)\n(2/2) Upgrading hello (1.0-r0 -> 1.1-r0)\n"
    );
}
