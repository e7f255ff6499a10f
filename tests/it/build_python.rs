//! The application Dockerfile's shape through `kiln build`, with no container and no Python in
//! the image: `pip install --no-cache-dir --user -r requirements.txt` in a build stage on a
//! python-alpine-like base (musl loader, python3.11), the result copied into the runtime stage
//! with `--chown`, real wheels from a local find-links directory given as a build arg; the host's
//! Python reads the installed distributions back.

use crate::support;
use crate::support::wheels;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use support::{busybox, kiln_ok, layout_image, run_ok, write_files};

#[test]
fn seed_app_dockerfile_installs_wheels_natively() {
    let wheel_dir = wheels::seed_wheel_dir("musllinux_1_2_x86_64");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    let requirements = std::fs::read_to_string(wheels::SEED_REQUIREMENTS).unwrap();
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
            ("rootfs/etc/shadow", "root:*::0:::::\n"),
            ("rootfs/home/.keep", ""),
            ("requirements.txt", &requirements),
            ("app.py", "print('hello')\n"),
            (
                "Dockerfile",
                "FROM scratch AS base\nCOPY rootfs/ /\n\
                 FROM base AS build\nARG PIP_FIND_LINKS\nWORKDIR /app\nCOPY requirements.txt .\n\
                 RUN pip install --no-cache-dir --user -r requirements.txt\n\
                 FROM base\n\
                 RUN addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser\n\
                 WORKDIR /app\n\
                 COPY --from=build --chown=appuser:appuser /root/.local /home/appuser/.local\n\
                 COPY --chown=appuser:appuser app.py .\n\
                 USER appuser\nENV PATH=/home/appuser/.local/bin:$PATH\nEXPOSE 8080\n\
                 CMD [\"gunicorn\", \"--bind\", \"0.0.0.0:8080\", \"app:app\"]\n",
            ),
        ],
    );
    // busybox with its user applets linked: kiln computes `adduser` natively only when the
    // image's PATH finds busybox's.
    let bin = context.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox(), bin.join("busybox")).unwrap();
    for applet in ["sh", "adduser", "addgroup"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    // The shell runs only executable files: the pip launcher is one.
    std::fs::set_permissions(
        context.join("rootfs/usr/local/bin/pip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let layout = work.path().join("layout");
    let digest = kiln_ok(&[
        "build",
        "--progress",
        "plain",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--build-arg",
        &format!("PIP_FIND_LINKS={}", wheel_dir.display()),
        "-t",
        "app:1",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        context.to_str().unwrap(),
    ]);
    assert!(digest.starts_with("sha256:"));
    let (_, config) = layout_image(&layout);
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("PATH=/home/appuser/.local/bin:"), "{env}");

    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:1", layout.display())])
            .arg(&bundle),
    );
    let site = bundle.join("rootfs/home/appuser/.local/lib/python3.11/site-packages");
    let flask = std::fs::metadata(site.join("flask/__init__.py")).unwrap();
    assert_eq!((flask.uid(), flask.gid()), (1000, 1000));
    let launcher =
        std::fs::read_to_string(bundle.join("rootfs/home/appuser/.local/bin/gunicorn")).unwrap();
    assert!(
        launcher.starts_with("#!/usr/local/bin/python3.11\n"),
        "{launcher}"
    );

    let listed = run_ok(Command::new("python3").arg("-c").arg(
        "import sys, importlib.metadata as m; \
         print(sorted(f\"{d.metadata['Name'].lower()}=={d.version}\" for d in m.distributions(path=[sys.argv[1]])))",
    ).arg(&site));
    for pin in [
        "flask==3.1.3",
        "gunicorn==27.0.1",
        "werkzeug==3.1.9",
        "markupsafe==3.0.4",
    ] {
        assert!(listed.contains(pin), "{pin} in {listed}");
    }
}
