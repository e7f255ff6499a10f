//! busybox's user commands (`adduser`, `addgroup`, `deluser`, `delgroup`): the seed's golden
//! lines, one line per flag combination, and busybox's error messages.

use super::*;

#[test]
fn seed_golden_lines() {
    let diff = run(
        &alpine(),
        "addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser",
    )
    .expect("applies");
    assert_eq!(
        added(&diff, "etc/passwd", PASSWD),
        ["appuser:x:1000:1000:Linux User,,,:/home/appuser:/bin/sh"]
    );
    assert_eq!(added(&diff, "etc/group", GROUP), ["appuser:x:1000:appuser"]);
    assert_eq!(
        added(&diff, "etc/shadow", SHADOW),
        ["appuser:!:19875:0:99999:7:::"]
    );
    // Backups: passwd- and shadow- are the stock files; group- is the file after addgroup.
    assert_eq!(text(&diff, "etc/passwd-"), PASSWD);
    assert_eq!(text(&diff, "etc/shadow-"), SHADOW);
    assert_eq!(
        text(&diff, "etc/group-"),
        format!("{GROUP}appuser:x:1000:\n")
    );
    assert!(diff.get(&path("etc/gshadow")).is_none());
    let shadow = diff.get(&path("etc/shadow")).expect("shadow");
    assert_eq!(
        (
            shadow.meta.mode,
            shadow.meta.uid,
            shadow.meta.gid,
            shadow.meta.mtime
        ),
        (0o640, 0, 42, EPOCH)
    );
    let home = diff.get(&path("home/appuser")).expect("home");
    assert_eq!(home.kind, EntryKind::Dir);
    assert_eq!(
        (home.meta.mode, home.meta.uid, home.meta.gid),
        (0o2755, 1000, 1000)
    );
    let paths: Vec<String> = diff.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        paths,
        [
            "/etc",
            "/etc/group",
            "/etc/group-",
            "/etc/passwd",
            "/etc/passwd-",
            "/etc/shadow",
            "/etc/shadow-",
            "/home",
            "/home/appuser"
        ]
    );
}

#[test]
fn busybox_lines_table() {
    // (script, added passwd lines, added group lines, added shadow lines)
    for (script, passwd, group, shadow) in [
        (
            "adduser -D app",
            vec!["app:x:1000:1000:Linux User,,,:/home/app:/bin/sh"],
            vec!["app:x:1000:"],
            vec!["app:!:19875:0:99999:7:::"],
        ),
        (
            "adduser -S svc",
            vec!["svc:x:100:65533:Linux User,,,:/home/svc:/bin/false"],
            vec![],
            vec!["svc:!:19875:0:99999:7:::"],
        ),
        (
            "addgroup -S web && adduser -S -G web -H -h /var/www -s /sbin/nologin -g 'Web' web",
            vec!["web:x:100:101:Web:/var/www:/sbin/nologin"],
            vec!["web:x:101:web"],
            vec!["web:!:19875:0:99999:7:::"],
        ),
        ("addgroup docker", vec![], vec!["docker:x:1000:"], vec![]),
        (
            "addgroup -g 4242 x && addgroup y",
            vec![],
            vec!["x:x:4242:", "y:x:1000:"],
            vec![],
        ),
        (
            "adduser -D -u 2000 a && adduser -D b",
            vec![
                "a:x:2000:2000:Linux User,,,:/home/a:/bin/sh",
                "b:x:1000:1000:Linux User,,,:/home/b:/bin/sh",
            ],
            vec!["a:x:2000:", "b:x:1000:"],
            vec!["a:!:19875:0:99999:7:::", "b:!:19875:0:99999:7:::"],
        ),
    ] {
        let diff = run(&alpine(), script).unwrap_or_else(|e| panic!("{script}: {e}"));
        let get = |raw: &str, before: &str| {
            if diff.get(&path(raw)).is_some() {
                added(&diff, raw, before)
            } else {
                Vec::new()
            }
        };
        assert_eq!(get("etc/passwd", PASSWD), passwd, "{script}: passwd");
        assert_eq!(get("etc/shadow", SHADOW), shadow, "{script}: shadow");
        let group_file = if diff.get(&path("etc/group")).is_some() {
            text(&diff, "etc/group")
        } else {
            GROUP.to_owned()
        };
        let new_groups: Vec<&str> = group_file
            .lines()
            .filter(|l| !GROUP.lines().any(|g| g == *l))
            .filter(|l| !l.starts_with("nogroup:"))
            .collect();
        assert_eq!(new_groups, group, "{script}: group");
    }
}

#[test]
fn system_user_joins_nogroup() {
    let diff = run(&alpine(), "adduser -S svc").expect("applies");
    assert!(text(&diff, "etc/group").contains("\nnogroup:x:65533:svc\n"));
}

#[test]
fn errors_are_busybox_messages() {
    for (script, want) in [
        ("addgroup root", "addgroup: group 'root' in use"),
        ("addgroup -g 10 x", "addgroup: gid '10' in use"),
        ("adduser -D root", "adduser: user 'root' in use"),
        ("adduser -D -u 0 x", "adduser: uid '0' in use"),
        ("adduser -D -u 5000 wheel", "adduser: group 'wheel' in use"),
        ("adduser -D -G nope x", "adduser: unknown group nope"),
        (
            "addgroup nobody-else wheel",
            "addgroup: unknown user nobody-else",
        ),
        ("addgroup root nope", "addgroup: unknown group nope"),
        (
            "addgroup -g 1000 a && addgroup -g 1000 b",
            "addgroup: gid '1000' in use",
        ),
        (
            "adduser -D appuser && adduser -D appuser",
            "adduser: user 'appuser' in use",
        ),
        (
            "adduser -D .hidden",
            "adduser: illegal character with code 46 at position 0",
        ),
        (
            "adduser -D 'a:b'",
            "adduser: illegal character with code 58 at position 1",
        ),
        (
            "addgroup 'a/b'",
            "addgroup: illegal character with code 47 at position 1",
        ),
    ] {
        let err = run(&alpine(), script).expect_err(script);
        assert_eq!(err.to_string(), want, "{script}");
    }
}

#[test]
fn busybox_deluser_and_delgroup() {
    let lower = alpine();
    let diff = run(
        &lower,
        "adduser -D a && addgroup a wheel && addgroup a audio && deluser a",
    )
    .expect("applies");
    assert_eq!(text(&diff, "etc/passwd"), PASSWD);
    assert_eq!(text(&diff, "etc/shadow"), SHADOW);
    // The user left wheel and audio, and its own group went too.
    assert_eq!(text(&diff, "etc/group"), GROUP);
    // busybox links the backup at every rewrite: group- is the file after the member removal.
    assert_eq!(text(&diff, "etc/group-"), format!("{GROUP}a:x:1000:\n"));
    let diff = run(&lower, "addgroup a && delgroup a").expect("applies");
    assert_eq!(text(&diff, "etc/group"), GROUP);
    let diff = run(&lower, "delgroup root wheel").expect("applies");
    assert!(text(&diff, "etc/group").contains("\nwheel:x:10:\n"));
    for (script, want) in [
        ("deluser nope", "deluser: unknown user nope"),
        ("delgroup nope", "delgroup: unknown group nope"),
        (
            "delgroup nobody",
            "delgroup: 'nobody' still has 'nobody' as their primary group!",
        ),
    ] {
        let err = run(&lower, script).expect_err(script);
        assert_eq!(err.to_string(), want, "{script}");
    }
}
