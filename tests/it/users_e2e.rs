//! End to end through the library: an Alpine-like busybox rootfs, the seed's
//! `addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser` recognized and applied
//! natively, both layers written to a store, assembled, written as an OCI layout, unpacked with
//! umoci and run with runc: `id appuser` and `ls -ld /home/appuser` must show the new user.
//! busybox-static, umoci and runc are required; a missing one fails the test.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln::image::{ImageConfig, Platform, assemble, layout::write_oci_layout, rfc3339};
use kiln::layer::{self, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::rootfs::MemFs;
use kiln::steps::run::recognize;
use kiln::steps::users::{UsersOptions, apply_all};
use kiln::store::Store;

const SEED_RUN: &str = "addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
";

const GROUP: &str = "root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
shadow:x:42:
users:x:100:games
nogroup:x:65533:
nobody:x:65534:
";

const SHADOW: &str = "root:*::0:::::
bin:!::0:::::
daemon:!::0:::::
nobody:!::0:::::
";

fn path(raw: &str) -> LayerPath {
    LayerPath::new(raw).expect("valid path")
}

fn meta(mode: u32, gid: u32) -> Metadata {
    Metadata {
        mode,
        uid: 0,
        gid,
        mtime: 0,
        xattrs: BTreeMap::new(),
    }
}

fn bytes(text: &str, mode: u32, gid: u32) -> Entry {
    Entry {
        kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_bytes()))),
        meta: meta(mode, gid),
    }
}

/// A runnable busybox rootfs with Alpine-like /etc files.
fn base_rootfs() -> Diff {
    let busybox = support::busybox();
    let size = std::fs::metadata(&busybox).expect("busybox metadata").len();
    let mut diff = Diff::new();
    for dir in ["bin", "etc", "home", "root", "tmp", "proc", "sys", "dev"] {
        diff.insert(
            path(dir),
            Entry {
                kind: EntryKind::Dir,
                meta: meta(if dir == "tmp" { 0o1777 } else { 0o755 }, 0),
            },
        );
    }
    diff.insert(
        path("bin/busybox"),
        Entry {
            kind: EntryKind::File(FileContent::HostFile {
                path: busybox,
                size,
                stamp: None,
            }),
            meta: meta(0o755, 0),
        },
    );
    for applet in ["sh", "id", "cat", "ls"] {
        diff.insert(
            path(&format!("bin/{applet}")),
            Entry {
                kind: EntryKind::Symlink("/bin/busybox".into()),
                meta: meta(0o777, 0),
            },
        );
    }
    diff.insert(path("etc/passwd"), bytes(PASSWD, 0o644, 0));
    diff.insert(path("etc/group"), bytes(GROUP, 0o644, 0));
    diff.insert(path("etc/shadow"), bytes(SHADOW, 0o640, 42));
    diff
}

#[test]
fn seed_users_run_in_a_container() {
    support::require_tool("umoci");
    support::require_tool("runc");
    let work = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&work.path().join("store")).expect("store");

    let base = base_rootfs();
    let commands = recognize(SEED_RUN, &|_| None).expect("the seed's RUN is recognized");
    let options = UsersOptions {
        source_date_epoch: 1_717_200_000,
        shell_env: None,
    };
    let users = apply_all(&commands, &MemFs::from_diff(&base), &options).expect("applies");

    let write = WriteOptions {
        compression: layer::Compression::Gzip { level: 1 },
        source_date_epoch: 1_717_200_000,
        threads: 1,
    };
    let layers = vec![
        layer::write(&base, &store, &write).expect("base layer"),
        layer::write(&users, &store, &write).expect("users layer"),
    ];
    let platform: Platform = "linux/amd64".parse().expect("platform");
    let mut config = ImageConfig {
        created: Some(rfc3339(1_717_200_000)),
        architecture: platform.architecture,
        os: platform.os,
        ..ImageConfig::default()
    };
    config.config.env = Some(vec!["PATH=/bin".into()]);
    config.config.cmd = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "id appuser && ls -ldn /home/appuser && cat /etc/group".into(),
    ]);
    let image = assemble(&store, &config, &layers, &BTreeMap::new()).expect("assembles");
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).expect("layout dir");
    write_oci_layout(&store, &layout, &[(image, vec!["users:test".into()])]).expect("layout");

    let (status, stdout, stderr) = support::run_image(&layout, "test", work.path());
    assert_eq!(status, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("uid=1000(appuser) gid=1000(appuser) groups=1000(appuser)"),
        "{stdout}"
    );
    let ls = lines.next().unwrap_or_default();
    let fields: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(
        (
            fields.first().copied(),
            fields.get(2).copied(),
            fields.get(3).copied()
        ),
        (Some("drwxr-sr-x"), Some("1000"), Some("1000")),
        "{ls}"
    );
    assert!(ls.ends_with("/home/appuser"), "{ls}");
    assert!(
        stdout.contains("\nappuser:x:1000:appuser\n"),
        "group file in the container:\n{stdout}"
    );
}
