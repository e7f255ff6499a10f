//! shadow's user commands (`useradd`, `groupadd`, `usermod`, `groupdel`): the lines they write
//! to passwd, group and the shadow files, aging fields, subordinate ids and backups.

use super::*;

#[test]
fn shadow_useradd_and_groupadd() {
    let mut lower = alpine();
    lower.insert(
        path("etc/login.defs"),
        file(
            "UID_MIN 1000\nUMASK 077\n# comment\nPASS_MAX_DAYS 90\n",
            0o644,
            0,
        ),
    );
    let diff = run(
        &lower,
        "groupadd -r svcgrp && useradd -m -G wheel,audio -c 'App' app && useradd -r -M -N -s /bin/false daemon2",
    )
    .expect("applies");
    assert_eq!(
        added(&diff, "etc/passwd", PASSWD),
        [
            "app:x:1000:1000:App:/home/app:/bin/sh",
            "daemon2:x:999:100::/home/daemon2:/bin/false"
        ]
    );
    let group = text(&diff, "etc/group");
    assert!(group.contains("\nwheel:x:10:root,app\n"), "{group}");
    assert!(group.contains("\naudio:x:18:app\n"), "{group}");
    // Without /etc/gshadow useradd locks the user group in /etc/group ("!"); groupadd
    // always writes "x".
    assert!(group.ends_with("svcgrp:x:998:\napp:!:1000:\n"), "{group}");
    // login.defs has no PASS_MIN_DAYS/PASS_WARN_AGE (empty fields); a system account gets
    // no aging at all.
    assert!(
        text(&diff, "etc/shadow").ends_with("app:!:19875::90::::\ndaemon2:!:19875::::::\n"),
        "{}",
        text(&diff, "etc/shadow")
    );
    assert_eq!(diff.get(&path("home/app")).expect("home").meta.mode, 0o700);
    assert!(diff.get(&path("home/daemon2")).is_none());
    for (script, want) in [
        ("groupadd wheel", "groupadd: group 'wheel' already exists"),
        ("groupadd -g 10 x", "groupadd: GID '10' already exists"),
        ("useradd root", "useradd: user 'root' already exists"),
        ("useradd -G nope x", "useradd: group 'nope' does not exist"),
        ("useradd -u 0 x", "useradd: UID 0 is not unique"),
        (
            "useradd wheel",
            "useradd: group wheel exists - if you want to add this user to that group, use -g.",
        ),
    ] {
        let err = run(&lower, script).expect_err(script);
        assert_eq!(err.to_string(), want, "{script}");
    }
    assert!(run(&lower, "groupadd -f wheel").expect("force").is_empty());
}

#[test]
fn useradd_writes_shadows_aging_subordinate_ids_and_backups() {
    let lower = debian_like();
    let diff = run(
        &lower,
        "useradd -m app && useradd -r svc && useradd -u 500 low",
    )
    .expect("applies");
    // The regular user: SOURCE_DATE_EPOCH's day and login.defs' aging; the system account
    // and nothing else gets aging fields.
    assert_eq!(
        added(&diff, "etc/shadow", SHADOW),
        [
            "app:!:19875:0:99999:7:::",
            "svc:!:19875::::::",
            "low:!:19875:0:99999:7:::"
        ]
    );
    // Subordinate ids: the lowest free range, not for the system account nor for a uid
    // outside UID_MIN..UID_MAX; the allocation sorts the existing ranges, the new one is
    // appended.
    assert_eq!(text(&diff, "etc/subuid"), "app:100000:65536\n");
    assert_eq!(
        text(&diff, "etc/subgid"),
        "base:100000:65536\nold:300000:65536\napp:165536:65536\n"
    );
    assert_eq!(
        text(&diff, "etc/subgid-"),
        "old:300000:65536\nbase:100000:65536\n"
    );
    // shadow's backups are copies with the old owner and mtime and `mode & 0664`, of the file
    // as the last command to write it found it.
    let backup = diff.get(&path("etc/shadow-")).expect("shadow backup");
    assert_eq!(
        (backup.meta.mode, backup.meta.gid, backup.meta.mtime),
        (0o640, 42, EPOCH)
    );
    let untouched_since = diff.get(&path("etc/subgid-")).expect("subgid backup");
    assert_eq!(untouched_since.meta.mtime, 100);
    assert_eq!(
        text(&diff, "etc/shadow-"),
        format!("{SHADOW}app:!:19875:0:99999:7:::\nsvc:!:19875::::::\n")
    );
    // A user group below GID_MIN (uid 500) does not take the uid as its gid.
    assert!(text(&diff, "etc/passwd").ends_with("low:x:500:1001::/home/low:/bin/sh\n"));
}

#[test]
fn last_change_is_the_epoch_day_or_empty() {
    assert_eq!(last_change_field(EPOCH), "19875");
    assert_eq!(last_change_field(0), "");
    assert_eq!(last_change_field(86_399), "");
    assert_eq!(last_change_field(-5), "");
    let fs = MemFs::from_diff(&debian_like());
    let commands = recognize("useradd a && adduser -D b", &|_| None).expect("recognized");
    let zero = UsersOptions {
        source_date_epoch: 0,
        shell_env: None,
    };
    let diff = apply_all(&commands, &fs, &zero).expect("applies");
    assert_eq!(
        added(&diff, "etc/shadow", SHADOW),
        ["a:!::0:99999:7:::", "b:!::0:99999:7:::"]
    );
}

#[test]
fn usermod_adds_to_and_removes_from_groups() {
    let mut lower = debian_like();
    lower.insert(
        path("etc/gshadow"),
        file("wheel:!::root\naudio:!::\nvideo:!:adm:app\n", 0o640, 42),
    );
    let diff = run(
        &lower,
        "useradd -N app && usermod -aG wheel,18 app && usermod -a -G wheel app",
    )
    .expect("applies");
    let group = text(&diff, "etc/group");
    assert!(group.contains("\nwheel:x:10:root,app\n"), "{group}");
    assert!(group.contains("\naudio:x:18:app\n"), "{group}");
    assert_eq!(
        text(&diff, "etc/gshadow"),
        "wheel:!::root,app\naudio:!::app\nvideo:!:adm:app\n"
    );
    // Without -a, the user leaves the groups not listed (here video in gshadow, audio).
    let diff = run(&lower, "useradd -N -G audio app && usermod -G wheel app").expect("applies");
    let group = text(&diff, "etc/group");
    assert!(group.contains("\nwheel:x:10:root,app\n"), "{group}");
    assert!(group.contains("\naudio:x:18:\n"), "{group}");
    assert_eq!(
        text(&diff, "etc/gshadow"),
        "wheel:!::root,app\naudio:!::\nvideo:!:adm:\n"
    );
    for (script, want) in [
        (
            "usermod -aG wheel nobody2",
            "usermod: user 'nobody2' does not exist",
        ),
        (
            "usermod -aG nope root",
            "usermod: group 'nope' does not exist",
        ),
    ] {
        let err = run(&lower, script).expect_err(script);
        assert_eq!(err.to_string(), want, "{script}");
    }
    for (script, message) in [
        (
            "usermod -a root",
            "-a flag is ONLY allowed with the -G flag",
        ),
        ("usermod -s /bin/sh root", "usermod -s is not emulated"),
    ] {
        let err = recognize(script, &|_| None).expect_err(script);
        assert!(err.sandbox_reason().contains(message), "{script}: {err}");
    }
}

#[test]
fn groupdel_removes_the_group_unless_it_is_a_primary_group() {
    let mut lower = debian_like();
    lower.insert(
        path("etc/gshadow"),
        file("wheel:!::root\naudio:!::\n", 0o640, 42),
    );
    let diff = run(&lower, "groupdel wheel && groupdel audio").expect("applies");
    let group = text(&diff, "etc/group");
    assert!(
        !group.contains("\nwheel:") && !group.contains("\naudio:"),
        "{group}"
    );
    assert_eq!(text(&diff, "etc/gshadow"), "");
    let diff = run(&lower, "groupdel cdrom").expect("applies");
    assert!(
        diff.get(&path("etc/gshadow")).is_none(),
        "no cdrom line there"
    );
    for (script, want) in [
        ("groupdel nope", "groupdel: group 'nope' does not exist"),
        (
            "groupdel root",
            "groupdel: cannot remove the primary group of user 'root'",
        ),
    ] {
        let err = run(&lower, script).expect_err(script);
        assert_eq!(err.to_string(), want, "{script}");
    }
}
