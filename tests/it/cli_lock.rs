//! `kiln lock pip` through the command line, against a local index of real wheels (see
//! `support/simple_index.rs`): `--from-image` (the seed's python:3.11-alpine stand-in, an OCI
//! layout) locks exactly as the same target given with `--python-version 3.11 --platform
//! musllinux_1_2_x86_64`; and `kiln build` installs the written `pylock.toml` with the same
//! distributions as a `RUN pip install` of the loose requirements, which the host's Python reads
//! back from the image; platforms that need different sets get markers, or a clear refusal.

use crate::support;
use crate::support::seed_standins;
use crate::support::simple_index;

use std::path::Path;
use std::process::Command;

use support::{kiln_ok, run_ok, write_files};

fn lock_body(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn from_image_locks_for_the_image_target() {
    let wheels = simple_index::resolver_wheels();
    let server = simple_index::IndexServer::start(&wheels, &[]);
    let index = server.url();
    let work = tempfile::tempdir().unwrap();
    let standins = seed_standins::write(&work.path().join("standins"), "/unused");
    let image = format!(
        "oci:{}:{}",
        standins.base_layout.display(),
        seed_standins::BASE_TAG
    );
    let cache = work.path().join("cache");
    let from_image = work.path().join("from-image.txt");
    let from_flags = work.path().join("from-flags.txt");
    let common = ["lock", "pip", "flask", "requests", "--index-url", &index];
    let cache_arg = ["--cache-dir", cache.to_str().unwrap()];
    let mut args: Vec<&str> = common.to_vec();
    args.extend(["--from-image", &image, "--image-platform", "linux/amd64"]);
    args.extend(cache_arg);
    args.extend(["-o", from_image.to_str().unwrap()]);
    support::kiln_ok(&args);
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        "--python-version",
        "3.11",
        "--platform",
        "musllinux_1_2_x86_64",
    ]);
    args.extend(cache_arg);
    args.extend(["-o", from_flags.to_str().unwrap()]);
    support::kiln_ok(&args);
    let body = lock_body(&from_image);
    assert_eq!(body, lock_body(&from_flags));
    assert!(body.contains("markupsafe==3.0.4"), "{body}");
    let header = std::fs::read_to_string(&from_image).unwrap();
    assert!(
        header.starts_with("# Written by kiln lock pip for CPython 3.11 on musllinux_1_2_x86_64:"),
        "{header}"
    );

    // Neither a target nor an image: a usage error (exit 2).
    let output = support::kiln(&["lock", "pip", "flask", "--index-url", &index]);
    assert_eq!(output.status.code(), Some(2));
}

/// `name==version` of every distribution in a site-packages directory, read by the host's Python.
fn distributions(site: &Path) -> String {
    run_ok(Command::new("python3").arg("-c").arg(
        "import sys, importlib.metadata as m; \
         print(sorted(f\"{d.metadata['Name'].lower()}=={d.version}\" for d in m.distributions(path=[sys.argv[1]])))",
    ).arg(site))
}

#[test]
fn build_installs_the_lock_as_it_installs_the_loose_requirements() {
    support::require_tool("umoci");
    let wheels = simple_index::resolver_wheels();
    let server = simple_index::IndexServer::start(&wheels, &[]);
    let index = server.url();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    let cache = work.path().join("cache");
    let base = "FROM scratch AS base\nCOPY rootfs/ /\nFROM base\nWORKDIR /app\n";
    write_files(
        &context,
        &[
            ("rootfs/usr/local/bin/python3.11", ""),
            // The official image's pip: the launcher the RUN's PATH finds, and its package.
            ("rootfs/usr/local/bin/pip", "#!/usr/local/bin/python3.11\n"),
            (
                "rootfs/usr/local/lib/python3.11/site-packages/pip/__init__.py",
                "",
            ),
            ("rootfs/lib/ld-musl-x86_64.so.1", "musl\u{0}1.2.5\u{0}"),
            ("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("rootfs/etc/group", "root:x:0:root\n"),
            (
                "Dockerfile.loose",
                &format!(
                    "{base}ARG PIP_INDEX_URL\nRUN pip install --user flask gunicorn requests\n"
                ),
            ),
            (
                "Dockerfile.lock",
                &format!("{base}COPY pylock.toml .\nRUN pip install --user -r pylock.toml\n"),
            ),
        ],
    );
    // The shell runs only executable files: the pip launcher is one.
    std::fs::set_permissions(
        context.join("rootfs/usr/local/bin/pip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    kiln_ok(&[
        "lock",
        "pip",
        "flask",
        "gunicorn",
        "requests",
        "--python-version",
        "3.11",
        "--platform",
        "musllinux_1_2_x86_64",
        "--index-url",
        &index,
        "--cache-dir",
        cache.to_str().unwrap(),
        "-o",
        context.join("pylock.toml").to_str().unwrap(),
    ]);
    let mut listed = Vec::new();
    for variant in ["loose", "lock"] {
        let layout = work.path().join(format!("layout-{variant}"));
        kiln_ok(&[
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--build-arg",
            &format!("PIP_INDEX_URL={index}"),
            "-f",
            context
                .join(format!("Dockerfile.{variant}"))
                .to_str()
                .unwrap(),
            "-t",
            "app:1",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            context.to_str().unwrap(),
        ]);
        let bundle = work.path().join(format!("bundle-{variant}"));
        run_ok(
            Command::new("umoci")
                .args([
                    "unpack",
                    "--rootless",
                    "--image",
                    &format!("{}:1", layout.display()),
                ])
                .arg(&bundle),
        );
        listed.push(distributions(
            &bundle.join("rootfs/root/.local/lib/python3.11/site-packages"),
        ));
    }
    assert_eq!(listed[0], listed[1]);
    for pin in [
        "flask==3.1.3",
        "gunicorn==27.0.1",
        "markupsafe==3.0.4",
        "charset-normalizer==",
    ] {
        assert!(listed[0].contains(pin), "{pin} in {}", listed[0]);
    }
}

#[test]
fn platforms_that_need_different_sets() {
    let wheels = simple_index::resolver_wheels();
    let server = simple_index::IndexServer::start(&wheels, &[]);
    let index = server.url();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let lock = |requirements: &str| {
        let input = work.path().join("requirements.in");
        std::fs::write(&input, requirements).unwrap();
        let mut args = vec!["lock", "pip", "-r", input.to_str().unwrap()];
        args.extend(["--python-version", "3.11", "--index-url", &index]);
        for platform in simple_index::PLATFORMS {
            args.extend(["--platform", platform]);
        }
        args.extend(["--cache-dir", cache.to_str().unwrap()]);
        support::kiln(&args)
    };
    // A project only aarch64 needs is written with a marker.
    let output = lock("requests\npackaging ; platform_machine == 'aarch64'\n");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("packaging==26.4 ; platform_machine == 'aarch64' \\\n    --hash=sha256:"),
        "{text}"
    );
    assert!(text.contains("\nrequests=="), "{text}");
    // Different versions per platform cannot share one file: the error names them.
    let output = lock("requests\nurllib3<2 ; platform_machine == 'aarch64'\n");
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.contains(
            "the platforms need different versions of `urllib3` (1.26.20 for \
             musllinux_1_2_aarch64; 2.8.0 for musllinux_1_2_x86_64)"
        ),
        "{err}"
    );
}
