//! Table tests of the RUN recognizer: what it maps each command to, and how it refuses.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "APP_USER" => Some("appuser".to_owned()),
        "UID" => Some("1000".to_owned()),
        "PKGS" => Some("curl  git".to_owned()),
        _ => None,
    }
}

fn ok(script: &str) -> Vec<NativeCommand> {
    recognize(script, &env).unwrap_or_else(|e| panic!("{script}: {e}"))
}

fn err(script: &str) -> String {
    match recognize(script, &env) {
        Ok(cmds) => panic!("{script}: expected an error, got {cmds:?}"),
        Err(e) => e.to_string(),
    }
}

fn group(group: &str, gid: Option<u32>, system: bool, member: Option<&str>) -> NativeCommand {
    NativeCommand::AddGroup(AddGroupArgs {
        group: group.to_owned(),
        gid,
        system,
        member: member.map(str::to_owned),
    })
}

fn user(name: &str, edit: impl FnOnce(&mut AddUserArgs)) -> NativeCommand {
    let mut args = AddUserArgs {
        user: name.to_owned(),
        disabled_password: true,
        ..AddUserArgs::default()
    };
    edit(&mut args);
    NativeCommand::AddUser(args)
}

fn pkgs(specs: &[&str]) -> Vec<PackageConstraint> {
    specs
        .iter()
        .map(|s| PackageConstraint::parse(s).expect("valid spec"))
        .collect()
}

fn pip(args: &[&str]) -> NativeCommand {
    pip_via("pip", args)
}

fn pip_via(launcher: &str, args: &[&str]) -> NativeCommand {
    NativeCommand::Pip {
        launcher: launcher.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

fn upgrade() -> NativeCommand {
    NativeCommand::ApkUpgrade {
        available: false,
        no_cache: false,
        update_cache: false,
        latest: false,
    }
}

fn add(no_cache: bool, virtual_name: Option<&str>, specs: &[&str]) -> NativeCommand {
    NativeCommand::ApkAdd {
        no_cache,
        update_cache: false,
        upgrade: false,
        virtual_name: virtual_name.map(str::to_owned),
        packages: pkgs(specs),
    }
}

fn noop(script: &str) -> bool {
    matches!(
        ok(script).as_slice(),
        [NativeCommand::Noop { .. } | NativeCommand::RemoveCache { .. }]
    )
}

#[test]
fn seed_lines() {
    assert_eq!(
        ok("addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser"),
        [
            group("appuser", Some(1000), false, None),
            user("appuser", |a| {
                a.uid = Some(1000);
                a.group = Some("appuser".into())
            }),
        ]
    );
    let cmds = ok("apk update && apk upgrade && rm -rf /var/cache/apk/*");
    assert_eq!(cmds[..2], [NativeCommand::ApkUpdate, upgrade()]);
    assert_eq!(
        cmds[2],
        NativeCommand::RemoveCache {
            paths: vec!["/var/cache/apk/*".to_owned()]
        }
    );
    assert_eq!(
        ok("pip install --no-cache-dir --user -r requirements.txt"),
        [pip(&["--no-cache-dir", "--user", "-r", "requirements.txt"])]
    );
}

#[test]
fn recognized_table() {
    for (script, want) in [
        ("addgroup -S web", vec![group("web", None, true, None)]),
        (
            "addgroup -g1000 app",
            vec![group("app", Some(1000), false, None)],
        ),
        (
            "addgroup --gid=7 app",
            vec![group("app", Some(7), false, None)],
        ),
        (
            "addgroup appuser wheel",
            vec![group("wheel", None, false, Some("appuser"))],
        ),
        (
            "adduser appuser wheel",
            vec![group("wheel", None, false, Some("appuser"))],
        ),
        (
            "adduser -S -G web web",
            vec![user("web", |a| {
                a.system = true;
                a.group = Some("web".into())
            })],
        ),
        (
            "adduser -DH -s /sbin/nologin svc",
            vec![user("svc", |a| {
                a.no_home = true;
                a.shell = Some("/sbin/nologin".into())
            })],
        ),
        (
            "adduser -D -h /srv/app -g 'App User' app",
            vec![user("app", |a| {
                a.home = Some("/srv/app".into());
                a.gecos = Some("App User".into())
            })],
        ),
        ("adduser app -D", vec![user("app", |_| {})]),
        (
            "adduser --disabled-password --uid 1001 app",
            vec![user("app", |a| a.uid = Some(1001))],
        ),
        (
            "adduser -D -k /etc/skel2 app",
            vec![user("app", |a| a.skel = Some("/etc/skel2".into()))],
        ),
        (
            "adduser -D -u \"$UID\" \"$APP_USER\"",
            vec![user("appuser", |a| a.uid = Some(1000))],
        ),
        (
            "adduser -D -u ${UID} ${APP_USER:-x}",
            vec![user("appuser", |a| a.uid = Some(1000))],
        ),
        ("adduser -D -- -weird", vec![user("-weird", |_| {})]),
        (
            "groupadd -r -g 999 docker",
            vec![NativeCommand::GroupAdd(GroupAddArgs {
                group: "docker".into(),
                gid: Some(999),
                system: true,
                force: false,
            })],
        ),
        (
            "groupadd -f app",
            vec![NativeCommand::GroupAdd(GroupAddArgs {
                group: "app".into(),
                force: true,
                ..Default::default()
            })],
        ),
        (
            "useradd -m -u 1000 -g app -G wheel,audio -s /bin/bash -c 'A B' -d /home/a a",
            vec![NativeCommand::UserAdd(UserAddArgs {
                user: "a".into(),
                uid: Some(1000),
                group: Some("app".into()),
                groups: vec!["wheel".into(), "audio".into()],
                create_home: Some(true),
                home: Some("/home/a".into()),
                shell: Some("/bin/bash".into()),
                comment: Some("A B".into()),
                ..Default::default()
            })],
        ),
        (
            "useradd -rMN svc",
            vec![NativeCommand::UserAdd(UserAddArgs {
                user: "svc".into(),
                system: true,
                create_home: Some(false),
                user_group: Some(false),
                ..Default::default()
            })],
        ),
        (
            "useradd -U app",
            vec![NativeCommand::UserAdd(UserAddArgs {
                user: "app".into(),
                user_group: Some(true),
                ..Default::default()
            })],
        ),
        ("apk update", vec![NativeCommand::ApkUpdate]),
        ("apk -q update", vec![NativeCommand::ApkUpdate]),
        (
            "apk upgrade --no-cache -a",
            vec![NativeCommand::ApkUpgrade {
                available: true,
                no_cache: true,
                update_cache: false,
                latest: false,
            }],
        ),
        (
            "apk --update-cache upgrade",
            vec![NativeCommand::ApkUpgrade {
                available: false,
                no_cache: false,
                update_cache: true,
                latest: false,
            }],
        ),
        ("apk add --no-cache curl", vec![add(true, None, &["curl"])]),
        (
            "apk --no-cache add curl 'python3~3.11' 'musl>=1.2' \"zlib<2\" git=2.45.2-r0",
            vec![add(
                true,
                None,
                &[
                    "curl",
                    "python3~3.11",
                    "musl>=1.2",
                    "zlib<2",
                    "git=2.45.2-r0",
                ],
            )],
        ),
        (
            "apk add -t .build-deps gcc musl-dev",
            vec![add(false, Some(".build-deps"), &["gcc", "musl-dev"])],
        ),
        (
            "apk add --virtual=.deps gcc",
            vec![add(false, Some(".deps"), &["gcc"])],
        ),
        ("apk add $PKGS", vec![add(false, None, &["curl", "git"])]),
        ("apk add curl@edge", vec![add(false, None, &["curl@edge"])]),
        (
            "apk del .build-deps",
            vec![NativeCommand::ApkDel {
                packages: vec![".build-deps".into()],
                rdepends: false,
                purge: false,
            }],
        ),
        (
            "apk del -r --purge a b",
            vec![NativeCommand::ApkDel {
                packages: vec!["a".into(), "b".into()],
                rdepends: true,
                purge: true,
            }],
        ),
        (
            "pip3 install flask==3.0",
            vec![pip_via("pip3", &["flask==3.0"])],
        ),
        (
            "python -m pip install -U pip",
            vec![pip_via("python", &["-U", "pip"])],
        ),
        (
            "python3 -m pip install 'requests>=2' --user",
            vec![pip_via("python3", &["requests>=2", "--user"])],
        ),
        (
            "/venv/bin/pip install x",
            vec![pip_via("/venv/bin/pip", &["x"])],
        ),
        (
            "pip install -r requirements.txt # comment && rm -rf /",
            vec![pip(&["-r", "requirements.txt"])],
        ),
        (
            "apk update;apk upgrade",
            vec![NativeCommand::ApkUpdate, upgrade()],
        ),
        (
            "apk update ; \n apk upgrade",
            vec![NativeCommand::ApkUpdate, upgrade()],
        ),
        (
            "apk update &&\n    apk upgrade",
            vec![NativeCommand::ApkUpdate, upgrade()],
        ),
        ("  apk update  ", vec![NativeCommand::ApkUpdate]),
        ("a\\pk up'da'\"te\"", vec![NativeCommand::ApkUpdate]),
        ("", vec![]),
    ] {
        assert_eq!(ok(script), want, "{script}");
    }
}

#[test]
fn noops() {
    for script in [
        "true",
        ":",
        "echo done",
        "echo \"built $APP_USER\"",
        "set -eux",
        "set -o pipefail",
        "rm -rf /var/cache/apk/*",
        "rm -fr /var/cache/apk",
        "rm -r -f /root/.cache/pip",
        "rm -Rf /root/.cache /var/cache/apk/*",
        "rm -rf -- /root/.cache/pip/*",
        "rm -rf '/var/cache/apk/*'",
    ] {
        assert!(noop(script), "{script}");
    }
}

#[test]
fn refused_table() {
    // (script, text the error must contain)
    for (script, needle) in [
        ("apk update || true", "`||` is not supported"),
        ("apk update || true", "`apk update || true`"),
        ("cat /etc/passwd | grep root", "pipes"),
        ("apk update > /dev/null", "redirections"),
        ("apk add 'a' 2>&1", "redirections"),
        ("apk add foo>=1", "redirections"),
        ("(apk update)", "subshells"),
        ("{ apk update; }", "shell keyword `{`"),
        ("adduser -D -u $(id -u) x", "`$(...)`"),
        ("adduser -D -u \"$(id -u)\" x", "`$(...)`"),
        ("adduser -D -u `id -u` x", "backticks"),
        ("if true; then apk update; fi", "shell keyword `if`"),
        ("for p in a b; do apk add $p; done", "shell keyword `for`"),
        ("FOO=1 apk update", "variable assignments"),
        ("sleep 10 &", "background"),
        ("apk update && && apk upgrade", "empty command"),
        ("apk update &&", "empty command"),
        ("rm -rf /", "not `/`"),
        ("rm -rf /var/cache/apk/* /etc", "not `/etc`"),
        ("rm /var/cache/apk/x", "only `rm -rf`"),
        ("rm -rfv /var/cache/apk", "option `-v` for `rm`"),
        ("rm -rf ~/.cache/pip", "tilde"),
        (
            "curl -o x https://example.invalid",
            "`curl` is not a known command",
        ),
        ("cd /tmp && apk update", "`cd` is not a known command"),
        ("adduser -D -x app", "option `-x` for `adduser`"),
        ("adduser -D --nope app", "option `--nope` for `adduser`"),
        ("adduser app", "add -D"),
        ("adduser -D", "usage: adduser"),
        ("adduser -D -u 1000", "usage: adduser"),
        ("adduser -D -u abc app", "invalid number 'abc'"),
        (
            "adduser -D -u 300000 app",
            "number 300000 is not in 0..256000 range",
        ),
        ("adduser -D -u", "option requires an argument: -u"),
        ("adduser -D a b", "second operand"),
        ("addgroup -g 5 user group", "`-g` cannot be used"),
        ("addgroup a b c", "usage: addgroup"),
        ("addgroup -G x g", "option `-G` for `addgroup`"),
        ("useradd -U -g app a", "-U and -g conflict"),
        ("useradd -p secret a", "option `-p` for `useradd`"),
        ("groupadd -K GID_MIN=100 g", "option `-K` for `groupadd`"),
        (
            "apk add --allow-untrusted x",
            "option `--allow-untrusted` for `apk`",
        ),
        ("apk add -X https://repo x", "option `-X` for `apk`"),
        ("apk update -a", "option `--available` for `apk update`"),
        ("apk fix", "`apk fix` is not understood"),
        ("apk", "no applet"),
        ("apk add", "no packages"),
        ("apk del", "no packages"),
        ("apk upgrade musl", "takes no package names"),
        ("apk add ./local.apk", "local package file"),
        ("apk add 'foo=1.0_bogus'", "bad package spec"),
        ("apk add py3-*", "unquoted glob"),
        ("pip freeze", "only `pip install`"),
        ("python -c 'print(1)'", "`python` is not a known command"),
        ("python -m venv /v", "only understood with `pip install`"),
        ("apk add 'unterminated", "unterminated single quote"),
        ("apk add \"unterminated", "unterminated double quote"),
        ("adduser -D ${NOPE:?must be set}", "failed to expand"),
        ("true 1", "`true` is not a known command"),
    ] {
        let got = err(script);
        assert!(got.contains(needle), "{script}: {got}");
    }
}
