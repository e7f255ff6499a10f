//! A busybox upgrade natively on the fixture's Alpine-like rootfs: its `.post-upgrade` and
//! `.trigger` (`busybox --install -s`, as Alpine's) are emulated by creating the applet links
//! listed in `/etc/busybox-paths.d/busybox` that do not exist yet, never replacing a file and
//! never recording the links in the installed db; nothing about busybox is left as a warning.

use crate::support::apk_fixture;

use apk_fixture::{Node, PkgSpec, build_apk, fixture, write_repository};
use kiln::apk::{ApkOptions, run};
use kiln::layer::{EntryKind, FileContent, LayerPath};
use kiln::rootfs::MemFs;
use kiln::steps::run::NativeCommand;

const APPLETS: &str =
    "/bin/sh\n/bin/ls\n/bin/echo\n/usr/bin/env\n/sbin/adduser\n/usr/sbin/chroot\n";

#[test]
fn busybox_upgrade_creates_missing_applet_links_only() {
    let fx = fixture();
    let busybox = build_apk(&PkgSpec {
        name: "busybox",
        version: "1.36.1-r1",
        provides: vec!["/bin/sh", "cmd:busybox=1.36.1-r1", "cmd:sh=1.36.1-r1"],
        scripts: vec![
            (
                ".post-upgrade",
                "#!/bin/busybox sh\n\n# We need the symlinks early\n\
                 /bin/busybox mkdir -p \"/bin\" \"/sbin\" \"/usr/bin\" \"/usr/sbin\"\n\
                 /bin/busybox --install -s || exit 1\n",
            ),
            (".trigger", "#!/bin/sh\nexec /bin/busybox --install -s\n"),
        ],
        triggers: Some("/bin /usr/bin /sbin /usr/sbin"),
        nodes: vec![
            Node::Dir("bin", 0o755),
            Node::File("bin/busybox", "busybox 1.36.1-r1\n", 0o755),
            Node::Dir("etc", 0o755),
            Node::Dir("etc/busybox-paths.d", 0o755),
            Node::File("etc/busybox-paths.d/busybox", APPLETS, 0o644),
        ],
        ..PkgSpec::default()
    });
    let repo = tempfile::tempdir().unwrap();
    write_repository(repo.path(), &[&busybox]);
    let options = ApkOptions {
        repositories: Some(vec![repo.path().display().to_string()]),
        source_date_epoch: 1_700_000_100,
        ..ApkOptions::default()
    };
    let lower = MemFs::from_diff(&fx.lower);
    let upgrade = NativeCommand::ApkUpgrade {
        available: false,
        no_cache: false,
        update_cache: false,
        latest: false,
    };
    let outcome = run(&[upgrade], &lower, &options).unwrap();
    assert_eq!(
        outcome.details[0].to_string(),
        "(1/1) Upgrading busybox (1.36.1-r0 -> 1.36.1-r1)\n"
    );
    assert!(
        outcome.warnings.iter().all(|w| !w.contains("busybox")),
        "busybox's script and trigger are emulated: {:?}",
        outcome.warnings
    );

    let kind = |path: &str| {
        outcome
            .diff
            .get(&LayerPath::new(path).unwrap())
            .map(|e| e.kind.clone())
    };
    let link = Some(EntryKind::Symlink("/bin/busybox".into()));
    for applet in ["bin/echo", "usr/bin/env", "usr/sbin/chroot", "bin/sh"] {
        assert_eq!(kind(applet), link, "{applet}");
    }
    assert_eq!(
        kind("usr/sbin"),
        Some(EntryKind::Dir),
        "made as the script's mkdir -p does"
    );
    // Links the lower already has are left alone.
    assert_eq!(kind("bin/ls"), None);
    assert_eq!(kind("sbin/adduser"), None);
    match kind("bin/busybox") {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            assert_eq!(&bytes[..], b"busybox 1.36.1-r1\n")
        }
        other => panic!("bin/busybox: {other:?}"),
    }

    let installed = match kind("lib/apk/db/installed") {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        other => panic!("installed db: {other:?}"),
    };
    let record = installed
        .split("\n\n")
        .find(|r| r.contains("P:busybox\n"))
        .unwrap();
    assert!(record.contains("V:1.36.1-r1\n"), "{record}");
    for applet in ["R:echo", "R:env", "R:chroot"] {
        assert!(
            !record.contains(applet),
            "links are not the package's files: {record}"
        );
    }
    let triggers = match kind("lib/apk/db/triggers") {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        other => panic!("triggers: {other:?}"),
    };
    assert!(
        triggers.contains(&format!(
            "{} /bin /usr/bin /sbin /usr/sbin",
            busybox.checksum
        )),
        "{triggers}"
    );
}
