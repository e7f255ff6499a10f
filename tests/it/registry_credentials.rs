//! Credentials from a docker credential helper, end to end: `config.json` names a helper for the
//! registry (`credHelpers`), kiln runs `docker-credential-<name> get` with the registry on stdin
//! (the helper here is a shell script on PATH, as a real one would be), and pushes to Debian's
//! docker-registry with htpasswd auth; a helper that answers a wrong secret gets a 401 that
//! names the registry and never the secret, and a helper that fails is named.

use crate::support;
use crate::support::registry as registry_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use registry_support::{Auth, PASSWORD, TestRegistry, USER, skopeo};
use support::write_files;

/// Writes `docker-credential-NAME` into `bin`: on `get`, it reads the server URL and prints
/// `secret` as its password, or fails when `secret` is empty.
fn helper(bin: &Path, name: &str, secret: &str) {
    let script = if secret.is_empty() {
        "#!/bin/sh\necho 'credentials not found in native keychain' >&2\nexit 1\n".to_owned()
    } else {
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{secret}\"}}' \"$server\"\n"
        )
    };
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn kiln_with(docker_config: &Path, bin: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("PATH", path)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("failed to start kiln")
}

#[test]
fn a_credential_helper_supplies_the_password() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let config = work.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"credHelpers":{{"{}":"kilngood"}},"auths":{{}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    helper(&bin, "kilngood", PASSWORD);
    write_files(
        &work.path().join("ctx"),
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ],
    );
    let target = reg.reference("helped/image:1");
    let cache = work.path().join("cache");
    let build = |extra: &str| {
        kiln_with(
            &config,
            &bin,
            &[
                "build",
                "--progress",
                "quiet",
                "--provenance=false",
                "--cache-dir",
                cache.to_str().unwrap(),
                "-t",
                &format!("{target}{extra}"),
                "--push",
                work.path().join("ctx").to_str().unwrap(),
            ],
        )
    };
    let pushed = build("");
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let digest = String::from_utf8_lossy(&pushed.stdout).trim().to_owned();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{target}"),
    ]);
    assert_eq!(registry_support::sha256(&raw), digest);

    // The helper answers a wrong secret: 401, the registry named, the secret never shown.
    helper(&bin, "kilngood", "not-the-Password-42");
    let refused = build("-again");
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("401") && message.contains(&reg.host()),
        "{message}"
    );
    assert!(!message.contains("not-the-Password-42"), "{message}");

    // The helper fails: its name is in the message.
    helper(&bin, "kilngood", "");
    let failed = build("-third");
    assert_eq!(failed.status.code(), Some(1));
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(message.contains("docker-credential-kilngood"), "{message}");
}
