//! The registry commands through the `kiln` binary against a real registry (Debian's
//! docker-registry on 127.0.0.1): `kiln build --push`, a build `FROM` the pushed image (pulled,
//! then rebuilt offline from the cache), `kiln push` of an OCI layout, `kiln pull` with an
//! export, and buildx's pushing `--output` types; skopeo reads back the same digests.

use crate::support;
use crate::support::registry as registry_support;

use registry_support::{Auth, TestRegistry, skopeo};
use support::{kiln, kiln_ok, write_files};

#[test]
fn build_push_pull_and_offline_rebuild() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache = cache.to_str().unwrap();
    let base_context = work.path().join("base");
    write_files(
        &base_context,
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/home/appuser:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\nappuser:x:1000:\n"),
            ("Dockerfile", "FROM scratch\nCOPY etc /etc\nENV BASE=yes\n"),
        ],
    );
    let base_ref = reg.reference("kiln/base:1");
    let base_digest = kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        cache,
        "-t",
        &base_ref,
        "--push",
        base_context.to_str().unwrap(),
    ]);
    let base_digest = base_digest.trim();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{base_ref}"),
    ]);
    assert_eq!(
        registry_support::sha256(&raw),
        base_digest,
        "skopeo reads the pushed manifest"
    );

    // A build FROM the pushed image pulls it, with a fresh cache, then again offline.
    let app_context = work.path().join("app");
    write_files(
        &app_context,
        &[
            ("app.txt", "hello\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM {base_ref}@{base_digest}\nCOPY --chown=appuser app.txt /home/appuser/\n"
                ),
            ),
        ],
    );
    let app_cache = work.path().join("app-cache");
    let app_cache = app_cache.to_str().unwrap();
    let layout = work.path().join("layout");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "--cache-dir",
            app_cache,
            "-t",
            "app:1",
        ];
        args.extend_from_slice(extra);
        let dest = format!("type=oci,dest={}", layout.display());
        args.extend_from_slice(&["--output", &dest, app_context.to_str().unwrap()]);
        kiln_ok(&args)
    };
    let online = build(&[]);
    drop(reg);
    let offline = build(&["--offline"]);
    assert_eq!(online, offline, "the offline rebuild comes from the cache");

    // Pushing to a registry that is gone fails naming it.
    let output = kiln(&[
        "push",
        "--cache-dir",
        app_cache,
        &format!("oci:{}:1", layout.display()),
        &base_ref,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(base_ref.split('/').next().unwrap()),
        "{stderr}"
    );

    // `kiln push` of the layout and `kiln pull` back, to a new registry.
    let reg = TestRegistry::start(Auth::None);
    let target = reg.reference("kiln/app:1");
    let pushed = kiln_ok(&[
        "push",
        "--cache-dir",
        app_cache,
        &format!("oci:{}:1", layout.display()),
        &target,
    ]);
    assert_eq!(pushed.trim(), online.trim());
    let exported = work.path().join("pulled");
    let pulled = kiln_ok(&[
        "pull",
        "--cache-dir",
        work.path().join("pull-cache").to_str().unwrap(),
        &target,
        "--output",
        &format!("type=oci,dest={}", exported.display()),
    ]);
    assert_eq!(pulled.trim(), online.trim());
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:1", exported.display())]);
    assert_eq!(registry_support::sha256(&raw), online.trim());

    // The pulled image's filesystem, unpacked: the base's files and the app's.
    let unpacked = work.path().join("unpacked");
    kiln_ok(&[
        "pull",
        "--cache-dir",
        work.path().join("pull-cache").to_str().unwrap(),
        &target,
        "-o",
        unpacked.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(unpacked.join("etc/passwd"))
            .unwrap()
            .contains("appuser")
    );
    assert_eq!(
        std::fs::read_to_string(unpacked.join("home/appuser/app.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn offline_build_without_cache_names_the_missing_image() {
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("Dockerfile", "FROM 127.0.0.1:9/kiln/none:1\n")],
    );
    let output = kiln(&[
        "build",
        "--offline",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        work.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kiln/none"), "{stderr}");
}

/// Credentials through the CLI against an htpasswd registry: none (a 401 naming the registry,
/// never the password), `KILN_REGISTRY_AUTH_<HOST>`, and `kiln login --password-stdin` into a
/// Docker config directory.
#[test]
fn credentials_from_the_environment_and_kiln_login() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let reg = TestRegistry::start(Auth::Htpasswd);
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ],
    );
    let cache = work.path().join("cache");
    let docker_config = work.path().join("docker-config");
    let target = reg.reference("kiln/private:1");
    let push = |envs: &[(&str, String)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .args([
                "build",
                "--progress=quiet",
                "--provenance=false",
                "--sbom=false",
            ])
            .arg("--cache-dir")
            .arg(&cache)
            .args(["-t", &target, "--push"])
            .arg(work.path())
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR");
        for (key, value) in envs {
            command.env(key, value);
        }
        command.output().unwrap()
    };

    let denied = push(&[]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&reg.host()),
        "the error names the registry: {stderr}"
    );
    assert!(!stderr.contains(registry_support::PASSWORD));

    let variable = kiln::registry::auth::env_var_name(&reg.host());
    let allowed = push(&[(
        variable.as_str(),
        format!("{}:{}", registry_support::USER, registry_support::PASSWORD),
    )]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    let mut login = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "login",
            &reg.host(),
            "-u",
            registry_support::USER,
            "--password-stdin",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", registry_support::PASSWORD).as_bytes())
        .unwrap();
    let login = login.wait_with_output().unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let config = std::fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(config.contains(&reg.host()) && !config.contains(registry_support::PASSWORD));
    let after_login = push(&[]);
    assert!(
        after_login.status.success(),
        "{}",
        String::from_utf8_lossy(&after_login.stderr)
    );
}

/// `kiln pin` against a real registry: an unpinned FROM is pinned to the tag's digest, `--check`
/// passes, the tag moves to a new image, `--check` fails and `kiln pin` follows it; stages and
/// `scratch` are left alone.
#[test]
fn pin_follows_a_moved_tag() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let base = reg.reference("kiln/base:3.11");
    let push_base = |content: &str| {
        let ctx = work.path().join(format!("base-{content}"));
        write_files(
            &ctx,
            &[("f", content), ("Dockerfile", "FROM scratch\nCOPY f /\n")],
        );
        kiln_ok(&[
            "build",
            "--progress=quiet",
            "--provenance=false",
            "--sbom=false",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            &base,
            "--push",
            ctx.to_str().unwrap(),
        ])
        .trim()
        .to_owned()
    };
    let first = push_base("one\n");
    let dockerfile = work.path().join("Dockerfile");
    let original = format!(
        "# the app\nFROM {base} AS build\nRUN true\n\nFROM scratch\nCOPY --from=build /f /f\n"
    );
    std::fs::write(&dockerfile, &original).unwrap();

    let check = kiln(&["pin", "--check", dockerfile.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(1),
        "unpinned: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    let pinned = std::fs::read_to_string(&dockerfile).unwrap();
    assert_eq!(pinned, original.replace(&base, &format!("{base}@{first}")));
    assert!(
        kiln(&["pin", "--check", dockerfile.to_str().unwrap()])
            .status
            .success()
    );

    let second = push_base("two\n");
    assert_ne!(first, second);
    let check = kiln(&["pin", "--check", dockerfile.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("tag moved"));
    kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&dockerfile).unwrap(),
        original.replace(&base, &format!("{base}@{second}"))
    );
}

#[test]
fn buildx_pushing_outputs_push_to_their_names() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")],
    );
    let context = work.path().to_str().unwrap();
    let cache = work.path().join("cache");
    let cache = cache.to_str().unwrap();
    let registry_name = reg.reference("kiln/out:registry");
    let image_name = reg.reference("kiln/out:image");
    let layout = work.path().join("layout");
    let digest = kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--provenance=false",
        "--sbom=false",
        "--cache-dir",
        cache,
        "--output",
        &format!("type=registry,name={registry_name}"),
        "--output",
        &format!("type=image,name={image_name},push=true,oci-mediatypes=true"),
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        context,
    ]);
    for name in [&registry_name, &image_name] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ]);
        assert_eq!(registry_support::sha256(&raw), digest.trim(), "{name}");
    }
    // The names are the image's names in the layout too, as -t tags would be.
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(index.contains(&registry_name), "{index}");

    for (spec, message) in [
        ("type=image", "push=true"),
        ("type=registry,push=false", "always pushes"),
        ("type=registry,compression=zstd", "`compression`"),
    ] {
        let output = kiln(&["build", "--cache-dir", cache, "--output", spec, context]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}
