//! Unit tables for `--chown` and `--chmod` parsing against an in-memory destination stage.

use std::sync::Arc;

use super::*;
use crate::rootfs::memfs::MemFs;

fn target() -> MemFs {
    let mut diff = Diff::new();
    let file = |body: &str| Entry {
        kind: EntryKind::File(FileContent::Bytes(Arc::from(body.as_bytes()))),
        meta: Metadata::root_owned(0o644),
    };
    let passwd = "root:x:0:0::/root:/bin/sh\n# odd line\nappuser:x:1000:1001::/home/a:/bin/sh\n";
    diff.insert(LayerPath::new("etc/passwd").expect("path"), file(passwd));
    diff.insert(
        LayerPath::new("etc/group").expect("path"),
        file("staff:x:50:\n"),
    );
    MemFs::from_diff(&diff)
}

#[test]
fn chown_values_resolve_like_buildkit() {
    let target = target();
    let cases: &[(&str, Option<(u32, u32)>)] = &[
        ("appuser", Some((1000, 1001))),
        ("root", Some((0, 0))),
        ("1000", Some((1000, 1000))),
        ("1000:50", Some((1000, 50))),
        ("appuser:staff", Some((1000, 50))),
        ("7:staff", Some((7, 50))),
        ("ghost", None),
        ("appuser:ghosts", None),
        ("", None),
        (":50", None),
        ("99999999999", None),
    ];
    for (value, want) in cases {
        let got = parse_chown(value, &target).ok().map(|o| (o.uid, o.gid));
        assert_eq!(got, *want, "{value:?}");
    }
    // No passwd file at all: names are unknown, numbers still work.
    let empty = MemFs::new();
    assert!(matches!(
        parse_chown("appuser", &empty),
        Err(CopyError::UnknownUser { .. })
    ));
    assert!(parse_chown("5:6", &empty).is_ok());
}

#[test]
fn chmod_values_are_octal() {
    for (value, want) in [
        ("755", Some(0o755)),
        ("0644", Some(0o644)),
        ("4755", Some(0o4755)),
        ("7777", Some(0o7777)),
        ("17777", None),
        ("888", None),
        ("u+x", None),
        ("", None),
    ] {
        assert_eq!(parse_chmod(value).ok(), want, "{value:?}");
    }
}
