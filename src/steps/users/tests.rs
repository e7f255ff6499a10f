//! Table tests for the users step: golden lines for the seed's commands on Alpine's stock
//! files (written by hand from busybox's formats), ids, errors and home directories. This file
//! holds the fixtures and what both tools share; `busybox` and `shadow` test each tool's
//! commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::layer::{Entry, EntryKind, FileContent, Metadata};
use crate::rootfs::MemFs;
use crate::steps::run::recognize;

mod busybox;
mod shadow;

/// Alpine 3.20's /etc/passwd (alpine-baselayout-data).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/mail:/sbin/nologin
news:x:9:13:news:/usr/lib/news:/sbin/nologin
uucp:x:10:14:uucp:/var/spool/uucppublic:/sbin/nologin
cron:x:16:16:cron:/var/spool/cron:/sbin/nologin
ftp:x:21:21::/var/lib/ftp:/sbin/nologin
sshd:x:22:22:sshd:/dev/null:/sbin/nologin
games:x:35:35:games:/usr/games:/sbin/nologin
ntp:x:123:123:NTP:/var/empty:/sbin/nologin
guest:x:405:100:guest:/dev/null:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
";

/// Alpine 3.20's /etc/group.
const GROUP: &str = "root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
sys:x:3:root,bin
adm:x:4:root,daemon
tty:x:5:
disk:x:6:root
lp:x:7:lp
kmem:x:9:
wheel:x:10:root
floppy:x:11:root
mail:x:12:mail
news:x:13:news
uucp:x:14:uucp
cron:x:16:cron
console:x:17:
audio:x:18:
cdrom:x:19:
dialout:x:20:root
ftp:x:21:
sshd:x:22:
input:x:23:
tape:x:26:root
video:x:27:root
netdev:x:28:
kvm:x:34:kvm
games:x:35:
shadow:x:42:
www-data:x:82:
users:x:100:games
ntp:x:123:
abuild:x:300:
utmp:x:406:
ping:x:999:
nogroup:x:65533:
nobody:x:65534:
";

/// Alpine 3.20's /etc/shadow (first lines; the format is what matters).
const SHADOW: &str = "root:*::0:::::
bin:!::0:::::
daemon:!::0:::::
nobody:!::0:::::
";

/// 2024-06-01T00:00:00Z: day 19875.
const EPOCH: i64 = 1_717_200_000;

fn path(raw: &str) -> LayerPath {
    LayerPath::new(raw).expect("valid path")
}

fn file(text: &str, mode: u32, gid: u32) -> Entry {
    Entry {
        kind: EntryKind::File(FileContent::Bytes(Arc::from(text.as_bytes()))),
        meta: Metadata {
            mode,
            uid: 0,
            gid,
            mtime: 100,
            xattrs: BTreeMap::new(),
        },
    }
}

fn dir(mode: u32) -> Entry {
    Entry {
        kind: EntryKind::Dir,
        meta: Metadata::root_owned(mode),
    }
}

fn alpine() -> Diff {
    let mut diff = Diff::new();
    diff.insert(path("etc"), dir(0o755));
    diff.insert(path("etc/passwd"), file(PASSWD, 0o644, 0));
    diff.insert(path("etc/group"), file(GROUP, 0o644, 0));
    diff.insert(path("etc/shadow"), file(SHADOW, 0o640, 42));
    diff.insert(path("home"), dir(0o755));
    diff
}

fn options() -> UsersOptions {
    UsersOptions {
        source_date_epoch: EPOCH,
        shell_env: None,
    }
}

fn run(lower: &Diff, script: &str) -> Result<Diff, UsersError> {
    let fs = MemFs::from_diff(lower);
    let commands = recognize(script, &|_| None).expect("recognized");
    apply_all(&commands, &fs, &options())
}

fn text(diff: &Diff, raw: &str) -> String {
    match diff.get(&path(raw)).map(|e| &e.kind) {
        Some(EntryKind::File(FileContent::Bytes(bytes))) => String::from_utf8_lossy(bytes).into(),
        other => panic!("{raw}: {other:?}"),
    }
}

/// Lines added at the end of a file.
fn added(diff: &Diff, raw: &str, before: &str) -> Vec<String> {
    let now = text(diff, raw);
    let rest = now
        .strip_prefix(before)
        .unwrap_or_else(|| panic!("{raw}: existing lines not kept byte for byte:\n{now}"));
    rest.lines().map(str::to_owned).collect()
}

#[test]
fn missing_files() {
    let mut bare = Diff::new();
    bare.insert(path("etc/group"), file(GROUP, 0o644, 0));
    let err = run(&bare, "adduser -D x").expect_err("no passwd");
    assert_eq!(
        err.to_string(),
        "adduser: can't open '/etc/passwd': No such file or directory"
    );
    // No shadow file: none is created; no /home: no home, as busybox.
    bare.insert(path("etc/passwd"), file(PASSWD, 0o644, 0));
    let diff = run(&bare, "adduser -D x").expect("applies");
    assert!(diff.get(&path("etc/shadow")).is_none());
    assert!(diff.get(&path("home/x")).is_none());
}

#[test]
fn gshadow_is_updated_when_present() {
    let mut lower = alpine();
    lower.insert(
        path("etc/gshadow"),
        file("root:::root\nwheel:::root\n", 0o640, 42),
    );
    let diff = run(
        &lower,
        "addgroup app && adduser -D -G app u && addgroup u wheel",
    )
    .expect("applies");
    assert_eq!(
        text(&diff, "etc/gshadow"),
        "root:::root\nwheel:::root,u\napp:!::u\n"
    );
    assert!(text(&diff, "etc/group").contains("\nwheel:x:10:root,u\n"));
    // Already a member: nothing to do.
    let again = run(&lower, "addgroup root wheel").expect("applies");
    assert!(again.is_empty());
}

#[test]
fn symlinked_passwd_and_skel_and_existing_home() {
    let mut lower = alpine();
    lower.insert(path("etc/passwd"), {
        let mut e = file("", 0o777, 0);
        e.kind = EntryKind::Symlink("../usr/share/passwd".into());
        e
    });
    lower.insert(path("usr/share/passwd"), file(PASSWD, 0o600, 0));
    lower.insert(path("etc/skel/.profile"), file("export A=1\n", 0o644, 0));
    lower.insert(path("etc/skel/.config"), dir(0o700));
    lower.insert(path("srv/app"), dir(0o700));
    let diff = run(&lower, "adduser -D u && adduser -D -h /srv/app svc").expect("applies");
    assert!(text(&diff, "usr/share/passwd").ends_with("u:x:1000:1000:Linux User,,,:/home/u:/bin/sh\nsvc:x:1001:1001:Linux User,,,:/srv/app:/bin/sh\n"));
    assert!(diff.get(&path("etc/passwd")).is_none());
    let profile = diff.get(&path("home/u/.profile")).expect("skel copied");
    assert_eq!(
        (profile.meta.uid, profile.meta.gid, profile.meta.mode),
        (1000, 1000, 0o644)
    );
    assert_eq!(
        diff.get(&path("home/u/.config")).expect("dir").meta.mode,
        0o700
    );
    let existing = diff.get(&path("srv/app")).expect("existing home chowned");
    assert_eq!((existing.meta.uid, existing.meta.mode), (1001, 0o2755));
    assert!(diff.get(&path("srv/app/.profile")).is_none());
}

#[test]
fn shell_comes_from_env_then_root() {
    let fs = MemFs::from_diff(&alpine());
    let commands = recognize("adduser -D a", &|_| None).expect("recognized");
    let opts = UsersOptions {
        source_date_epoch: 0,
        shell_env: Some("/bin/ash".into()),
    };
    let diff = apply_all(&commands, &fs, &opts).expect("applies");
    assert!(text(&diff, "etc/passwd").ends_with(":/home/a:/bin/ash\n"));
    // SOURCE_DATE_EPOCH 0: the last-change day is left empty, never 0 ("must change").
    assert!(text(&diff, "etc/shadow").ends_with("a:!::0:99999:7:::\n"));
}

#[test]
fn other_commands_are_refused() {
    let fs = MemFs::from_diff(&alpine());
    let err = apply(&NativeCommand::ApkUpdate, &fs, &options()).expect_err("not users");
    assert!(err.to_string().contains("not a users command"), "{err}");
    let noop = NativeCommand::Noop { reason: "x".into() };
    assert!(apply(&noop, &fs, &options()).expect("noop").diff.is_empty());
}

/// A Debian-like lower: shadow's files, login.defs' id ranges, empty subuid/subgid, and
/// `useradd` (a regular file) and busybox's `adduser` link on the PATH.
fn debian_like() -> Diff {
    let mut lower = alpine();
    lower.insert(path("etc/debian_version"), file("12.11\n", 0o644, 0));
    lower.insert(
        path("etc/login.defs"),
        file(
            "UID_MIN 1000\nUID_MAX 60000\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n",
            0o644,
            0,
        ),
    );
    lower.insert(path("etc/subuid"), file("", 0o644, 0));
    lower.insert(
        path("etc/subgid"),
        file("old:300000:65536\nbase:100000:65536\n", 0o644, 0),
    );
    lower.insert(path("usr"), dir(0o755));
    lower.insert(path("usr/sbin"), dir(0o755));
    lower.insert(path("usr/sbin/useradd"), file("ELF", 0o755, 0));
    lower.insert(path("usr/sbin/groupadd"), file("ELF", 0o755, 0));
    lower.insert(path("bin"), dir(0o755));
    lower.insert(path("bin/busybox"), file("ELF", 0o755, 0));
    lower.insert(
        path("bin/adduser"),
        Entry {
            kind: EntryKind::Symlink("busybox".into()),
            meta: Metadata::root_owned(0o777),
        },
    );
    lower
}

#[test]
fn the_image_decides_native_or_sandbox() {
    let reason = |lower: &Diff, script: &str, path_env: Option<&str>| {
        let fs = MemFs::from_diff(lower);
        let commands = recognize(script, &|_| None).expect("recognized");
        sandbox_reason(&commands, &fs, path_env, &options()).expect("reads")
    };
    let debian = debian_like();
    assert_eq!(reason(&debian, "useradd -m app", None), None);
    assert_eq!(reason(&debian, "adduser -D app", None), None);
    assert_eq!(reason(&debian, "apk add x", None), None);
    let missing = reason(&debian, "addgroup g", None).expect("no addgroup");
    assert!(
        missing.contains("`addgroup` is not in this image's PATH"),
        "{missing}"
    );
    let outside = reason(&debian, "useradd app", Some("/bin")).expect("not on PATH");
    assert!(
        outside.contains("`useradd` is not in this image's PATH"),
        "{outside}"
    );

    // Debian's adduser is a script, not busybox's.
    let mut perl = debian.clone();
    perl.insert(
        path("usr/sbin/adduser"),
        file("#!/usr/bin/perl\n", 0o755, 0),
    );
    let not_busybox = reason(&perl, "adduser -D app", None).expect("not busybox");
    assert_eq!(
        not_busybox,
        "adduser in this image is /usr/sbin/adduser, not busybox's; only busybox's adduser is emulated"
    );

    // shadow's useradd outside the Debian family, or busybox's useradd.
    let mut alpine_shadow = alpine();
    for (entry_path, entry) in debian.iter() {
        if entry_path.as_str() != "etc/debian_version" {
            alpine_shadow.insert(entry_path.clone(), entry.clone());
        }
    }
    let foreign = reason(&alpine_shadow, "useradd app", None).expect("not Debian");
    assert!(foreign.contains("no /etc/debian_version"), "{foreign}");

    // A lastlog that already reaches the new uid's record.
    let mut logs = debian.clone();
    logs.insert(path("var"), dir(0o755));
    logs.insert(path("var/log"), dir(0o755));
    logs.insert(
        path("var/log/lastlog"),
        file(&"\0".repeat(300_000), 0o664, 0),
    );
    let lastlog = reason(&logs, "useradd app", None).expect("lastlog record");
    assert!(lastlog.contains("/var/log/lastlog"), "{lastlog}");
    assert_eq!(reason(&logs, "useradd --no-log-init app", None), None);

    // An EXPIRE default.
    let mut expire = debian.clone();
    expire.insert(path("etc/default"), dir(0o755));
    expire.insert(
        path("etc/default/useradd"),
        file("EXPIRE=2030-01-01\n", 0o644, 0),
    );
    let expiring = reason(&expire, "useradd app", None).expect("EXPIRE");
    assert!(expiring.contains("EXPIRE"), "{expiring}");
}

#[test]
fn unemulated_user_commands_and_flags_say_why() {
    for (script, reason) in [
        (
            "useradd --expiredate 2030-01-01 x",
            "useradd --expiredate is not emulated",
        ),
        ("useradd -o -u 0 x", "useradd -o is not emulated"),
        ("adduser -D --foo x", "adduser --foo is not emulated"),
        (
            "usermod -aG wheel -s /bin/sh app",
            "usermod -s is not emulated",
        ),
        ("userdel -r app", "`userdel` is not emulated"),
        ("groupmod -g 2000 app", "`groupmod` is not emulated"),
        ("groupdel -f app", "groupdel -f is not emulated"),
        ("echo 'app:pw' | chpasswd", "pipes"),
        ("/usr/sbin/chpasswd", "`chpasswd` is not emulated"),
        (
            "deluser --remove-home app",
            "deluser --remove-home is not emulated",
        ),
        ("delgroup a b c", "delgroup: usage: delgroup [USER] GROUP"),
        (
            "useradd -k /etc/skel x",
            "useradd: -k flag is only allowed with -m flag",
        ),
    ] {
        let err = recognize(script, &|_| None).expect_err(script);
        let said = err.sandbox_reason();
        assert!(said.contains(reason), "{script}: {said}");
    }
    let commands =
        recognize("useradd -l -m -k /srv/skel --no-log-init app", &|_| None).expect("recognized");
    let NativeCommand::UserAdd(args) = &commands[0] else {
        panic!("{commands:?}");
    };
    assert!(args.no_log_init);
    assert_eq!(args.skel.as_deref(), Some("/srv/skel"));
}
