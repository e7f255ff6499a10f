//! RUN in the sandbox, end to end through the `kiln` binary on a busybox-static rootfs: the
//! layer a RUN makes matches buildah's (`--isolation chroot`) entry for entry; an unprivileged
//! user can build; failures carry the command's output and exit code; escapes fail inside;
//! secrets reach no blob; cache mounts persist outside the image; foreign architectures are
//! refused; a sandboxed RUN is a step-cache hit the second time.
//!
//! busybox-static and buildah are required; a missing one fails the test.

use crate::support;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;
use support::*;

/// A busybox rootfs in `dir/rootfs`, with every applet linked and the files the RUNs below
/// change. /etc/hosts, /etc/hostname, /etc/resolv.conf and /run exist, since buildah otherwise
/// adds empty ones to every RUN layer.
fn busybox_rootfs(dir: &Path) {
    let busybox = busybox();
    let root = dir.join("rootfs");
    for sub in [
        "bin", "tmp", "root", "proc", "dev", "sys", "run", "olddir", "replace",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = run_ok(Command::new(&busybox).arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    write_files(
        &root,
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napp:x:1000:\n"),
            ("etc/hosts", "127.0.0.1 localhost\n"),
            ("etc/hostname", "base\n"),
            ("etc/resolv.conf", ""),
            ("etc/motd", "motd\n"),
            ("etc/removeme", "bye\n"),
            ("etc/owned", "o\n"),
            ("etc/meta", "m\n"),
            ("olddir/x", "x\n"),
            ("replace/y", "y\n"),
            ("root/.cache/pip/w", "w\n"),
        ],
    );
    symlink("motd", root.join("etc/link")).unwrap();
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Builds the busybox rootfs as a one-layer image `base:latest` in `work/base-layout`.
fn base_layout(work: &Path) -> PathBuf {
    base_layout_with(work, |_| {})
}

/// [`base_layout`] with more files, which `add` puts into the rootfs directory it is given.
fn base_layout_with(work: &Path, add: impl FnOnce(&Path)) -> PathBuf {
    let context = work.join("base");
    busybox_rootfs(&context);
    add(&context.join("rootfs"));
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let layout = work.join("base-layout");
    kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        work.join("base-cache").to_str().unwrap(),
        "-t",
        "base:latest",
        "--provenance=false",
        "--sbom=false",
        "-o",
        &format!("type=oci,dest={}", layout.display()),
        context.to_str().unwrap(),
    ]);
    // Blobs are stored private to their owner; the unprivileged build reads them too.
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    layout
}

/// A directory everyone may read and enter, removed when dropped. Its path is lowercase:
/// buildah names its build container after a `FROM oci:` path.
struct OpenDir(PathBuf);

impl OpenDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_tempdir() -> OpenDir {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kiln-sandbox-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    OpenDir(dir)
}

fn write_dockerfile(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), text).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("Dockerfile"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

/// `kiln build` of `context` into an OCI layout; returns the process output.
fn kiln_build(context: &Path, cache: &Path, layout: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "build".to_owned(),
        "--progress".to_owned(),
        "plain".to_owned(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "-t".to_owned(),
        "sandbox-test:latest".to_owned(),
        "-o".to_owned(),
        format!("type=oci,dest={}", layout.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(context.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln(&refs)
}

fn assert_success(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kiln build failed ({}):\n{stderr}",
        output.status
    );
    stderr
}

const CHANGES: &str = r#"RUN mkdir -p /data/sub /data/empty && echo one > /data/a && echo two > /data/sub/b \
 && echo changed >> /etc/motd && rm /etc/removeme && rm -r /olddir \
 && chmod 4755 /data/a && chmod 700 /data/sub && chmod 600 /etc/meta \
 && chown 1000:1000 /data/sub/b && chown 123:456 /etc/owned \
 && ln /data/a /data/a-link && ln -s ../etc/motd /data/motd-link \
 && ln -sf hosts /etc/link && rm -r /replace && echo now-a-file > /replace \
 && mkfifo /data/fifo
"#;

#[test]
fn run_layer_matches_buildah() {
    let buildah = require_tool("buildah");
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!("FROM oci:{}:latest\n{CHANGES}", layout.display()),
    );

    let kiln_layout = work.path().join("kiln-out");
    assert_success(&kiln_build(
        &context,
        &work.path().join("cache"),
        &kiln_layout,
        &[],
    ));

    let storage = work.path().join("buildah");
    let storage_args = [
        "--root".to_owned(),
        storage.join("root").display().to_string(),
        "--runroot".to_owned(),
        storage.join("run").display().to_string(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    run_ok(
        Command::new(&buildah)
            .args(&storage_args)
            .args([
                "bud",
                "--isolation",
                "chroot",
                "--timestamp",
                "0",
                "-t",
                "sandbox-cmp",
            ])
            .arg(&context),
    );
    let buildah_layout = work.path().join("buildah-out");
    run_ok(
        Command::new(&buildah)
            .args(&storage_args)
            .args(["push", "sandbox-cmp"])
            .arg(format!("oci:{}:latest", buildah_layout.display())),
    );

    let ours = layer_listing(&last_layer(&kiln_layout));
    let theirs = layer_listing(&last_layer(&buildah_layout));
    assert_eq!(
        ours, theirs,
        "kiln's RUN layer (left) differs from buildah's (right)"
    );
    // The comparison covers what the RUN did: spot-check that it is all there.
    for (path, wanted) in [
        ("data/a", "file mode=4755 uid=0 gid=0"),
        ("data/a-link", "hardlink"),
        ("data/sub", "dir mode=700"),
        ("data/sub/b", "file mode=644 uid=1000 gid=1000"),
        ("etc/owned", "file mode=644 uid=123 gid=456"),
        ("etc/meta", "file mode=600"),
        ("etc/.wh.removeme", "file"),
        (".wh.olddir", "file"),
        (
            "data/motd-link",
            "symlink mode=777 uid=0 gid=0 link=../etc/motd",
        ),
        ("etc/link", "symlink mode=777 uid=0 gid=0 link=hosts"),
        ("replace", "file mode=644"),
        ("data/fifo", "fifo"),
    ] {
        let found = ours
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing: {ours:#?}"));
        assert!(
            found.starts_with(wanted),
            "{path}: {found}, wanted {wanted}"
        );
    }
}

/// `kiln build` of `context` as user nobody (no subordinate ids: only root inside), with its
/// cache and output layout (`out`) in `nobody_dir`.
fn build_as_nobody(nobody_dir: &Path, context: &Path) -> std::process::Output {
    Command::new(require_tool("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--progress", "plain", "--cache-dir"])
        .arg(nobody_dir.join("cache"))
        .arg("-o")
        .arg(format!(
            "type=oci,dest={}",
            nobody_dir.join("out").display()
        ))
        .arg(context)
        .env("HOME", nobody_dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

#[test]
fn unprivileged_user_builds_and_sandboxed_runs_are_cached() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN id && echo made by $(id -u) > /made && mkdir /home && chown 0:0 /home \
             && echo locked > /locked && chmod 000 /locked\n",
            layout.display()
        ),
    );
    let nobody_dir = work.path().join("nobody");
    std::fs::create_dir(&nobody_dir).unwrap();
    std::os::unix::fs::chown(&nobody_dir, Some(65534), Some(65534)).unwrap();
    let run_as_nobody = || build_as_nobody(&nobody_dir, &context);
    let first = run_as_nobody();
    let stderr = assert_success(&first);
    assert!(stderr.contains("uid=0(root) gid=0(root)"), "{stderr}");
    let listing = layer_listing(&last_layer(&nobody_dir.join("out")));
    assert!(
        listing["made"].starts_with("file mode=644 uid=0 gid=0"),
        "{listing:#?}"
    );
    assert!(listing.contains_key("home"), "{listing:#?}");
    assert!(
        listing["locked"].starts_with("file mode=0 uid=0 gid=0")
            && listing["locked"].ends_with(&hex(&sha2::Sha256::digest(b"locked\n"))),
        "{listing:#?}"
    );

    assert_eq!(
        cached_bases(&nobody_dir.join("cache")).len(),
        1,
        "the RUN ran on an overlay of the unpacked base"
    );

    let second = run_as_nobody();
    let stderr = assert_success(&second);
    assert!(stderr.contains("CACHED"), "{stderr}");
    assert!(
        !stderr.contains("uid=0(root)"),
        "the RUN ran again:\n{stderr}"
    );
    assert_eq!(first.stdout, second.stdout, "same image digest");
}

#[test]
fn a_failing_command_fails_the_build_with_its_output_and_exit_code() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN echo about to fail && echo the-reason >&2 && exit 3\n",
            layout.display()
        ),
    );
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("out"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "process \"/bin/sh -c echo about to fail && echo the-reason >&2 && exit 3\" did not \
             complete successfully: exit code: 3"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("the-reason"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(!work.path().join("out/index.json").exists());
}

#[test]
fn escapes_fail_inside_the_sandbox() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let host_dir = work.path().join("host-only");
    std::fs::create_dir(&host_dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = host_dir.display();
    let context = work.path().join("run");
    // Each attempt must fail; one that succeeds prints ESCAPED.
    write_dockerfile(
        &context,
        &format!(
            r#"FROM oci:{base}:latest
RUN for attempt in \
      "echo pwned > /proc/1/root{host}/pwned" \
      "ls {host}" \
      "mknod /tmp/disk b 8 0" \
      "mount -t ext4 /dev/vda /mnt" \
      "mount -o remount,rw /proc/sys" \
      "echo hi | nc -w 2 127.0.0.1 {port}" ; do \
      if sh -c "$attempt" >/dev/null 2>&1; then echo "ESCAPED: $attempt"; else echo "refused: $attempt"; fi; \
    done
"#,
            base = layout.display(),
        ),
    );
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("out"),
        &[],
    );
    let stderr = assert_success(&output);
    let refused = stderr
        .lines()
        .filter(|line| line.contains("refused: ") && !line.contains("for attempt"))
        .count();
    assert_eq!(refused, 6, "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.contains("ESCAPED: ") && !line.contains("for attempt")),
        "{stderr}"
    );
    assert!(!host_dir.join("pwned").exists());
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's network"
    );

    // The same connection with RUN --network=host does reach the listener: the check above
    // would have seen it.
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN --network=host echo hi | nc -w 2 127.0.0.1 {port}\n",
            layout.display()
        ),
    );
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut greeting = String::new();
        stream.read_to_string(&mut greeting).unwrap();
        greeting
    });
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("out2"),
        &[],
    );
    assert_success(&output);
    assert_eq!(server.join().unwrap(), "hi\n");
}

#[test]
fn secrets_reach_the_command_but_no_blob_and_cache_mounts_persist() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let secret_value = "s3cret-value-4f9d2b7e";
    let secret_file = work.path().join("token.txt");
    std::fs::write(&secret_file, secret_value).unwrap();
    let context = work.path().join("run");
    // The Dockerfile names the values by digest only: it is in the history.
    let token_sha = hex(&sha2::Sha256::digest(secret_value.as_bytes()));
    let env_sha = hex(&sha2::Sha256::digest(
        format!("from-env-{secret_value}").as_bytes(),
    ));
    let dockerfile = |marker: &str| {
        format!(
            "FROM oci:{}:latest\n\
             RUN --mount=type=secret,id=token --mount=type=secret,id=env-token,target=/etc/tok \
                 --mount=type=cache,target=/var/cache/app \
                 test \"$(sha256sum < /run/secrets/token)\" = \"{token_sha}  -\" \
                 && test \"$(sha256sum < /etc/tok)\" = \"{env_sha}  -\" \
                 && echo {marker} >> /var/cache/app/runs && cat /var/cache/app/runs \
                 && echo used > /used\n",
            layout.display()
        )
    };
    write_dockerfile(&context, &dockerfile("first"));
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    let secret_args = [
        "--secret",
        &format!("id=token,src={}", secret_file.display()),
        "--secret",
        "id=env-token,env=KILN_TEST_SECRET",
    ];
    let run = |out: &Path| {
        let mut args = vec![
            "build".to_owned(),
            "--progress".to_owned(),
            "plain".to_owned(),
            "--cache-dir".to_owned(),
            cache.display().to_string(),
            "-o".to_owned(),
            format!("type=oci,dest={}", out.display()),
        ];
        args.extend(secret_args.iter().map(|s| s.to_string()));
        args.push(context.display().to_string());
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&args)
            .env("KILN_TEST_SECRET", format!("from-env-{secret_value}"))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    };
    assert_success(&run(&out));

    let listing = layer_listing(&last_layer(&out));
    assert!(listing.contains_key("used"), "{listing:#?}");
    for path in listing.keys() {
        assert!(
            !path.starts_with("run/secrets")
                && !path.starts_with("var/cache/app/")
                && path != "etc/tok",
            "{path} is in the layer: {listing:#?}"
        );
    }
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        let mut unpacked = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut unpacked)
                .unwrap();
        }
        for bytes in [&raw, &unpacked] {
            assert!(
                !bytes
                    .windows(secret_value.len())
                    .any(|w| w == secret_value.as_bytes()),
                "the secret is in blob {}",
                path.display()
            );
        }
    }

    // The cache mount kept what the first build wrote.
    write_dockerfile(&context, &dockerfile("second"));
    let stderr = assert_success(&run(&work.path().join("out2")));
    assert!(
        stderr.contains("first") && stderr.contains("second"),
        "{stderr}"
    );
}

/// Without an interpreter for the stage's architecture (an empty `--qemu-dir`), a RUN fails
/// before it runs, naming the platform and the fix; with one, see `sandbox_foreign`.
#[test]
fn a_run_for_a_foreign_architecture_without_qemu_is_refused() {
    let work = open_tempdir();
    let context = work.path().join("run");
    busybox_rootfs(&context);
    write_dockerfile(
        &context,
        "FROM scratch\nCOPY rootfs/ /\nRUN echo hi > /hi\n",
    );
    let (foreign, qemu) = if cfg!(target_arch = "aarch64") {
        ("linux/amd64", "qemu-x86_64-static")
    } else {
        ("linux/arm64", "qemu-aarch64-static")
    };
    let no_qemu = work.path().join("no-qemu");
    std::fs::create_dir(&no_qemu).unwrap();
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("out"),
        &[
            "--platform",
            foreign,
            "--qemu-dir",
            no_qemu.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("this RUN executes {foreign} programs")),
        "{stderr}"
    );
    assert!(stderr.contains(qemu), "{stderr}");
    assert!(stderr.contains("qemu-user-static"), "{stderr}");
}

#[test]
fn consecutive_runs_build_on_each_other_and_other_stages_see_the_result() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{base}:latest AS build\n\
             RUN echo one > /f && echo keep > /k && echo same > /s\n\
             RUN echo two > /f && rm /k && echo new > /n && chmod 600 /s\n\
             RUN cat /f /n > /both\n\
             FROM oci:{base}:latest\n\
             COPY --from=build /f /both /s /out/\n\
             RUN --mount=type=tmpfs,target=/scratch echo tmp > /scratch/t && cat /out/both\n",
            base = layout.display()
        ),
    );
    let out = work.path().join("out");
    let stderr = assert_success(&kiln_build(&context, &work.path().join("cache"), &out, &[]));
    assert!(
        stderr.contains("two\n") || stderr.contains("two"),
        "{stderr}"
    );

    let (manifest, _) = layout_image(&out);
    let copied = manifest["layers"][1]["digest"].as_str().unwrap().to_owned();
    let listing = layer_listing(
        &out.join("blobs/sha256")
            .join(copied.trim_start_matches("sha256:")),
    );
    let digest = |text: &str| hex(&sha2::Sha256::digest(text.as_bytes()));
    assert!(listing["out/f"].ends_with(&digest("two\n")), "{listing:#?}");
    assert!(
        listing["out/both"].ends_with(&digest("two\nnew\n")),
        "{listing:#?}"
    );
    assert!(
        listing["out/s"].starts_with("file mode=600"),
        "{listing:#?}"
    );
    // The last RUN changed nothing in the image: its tmpfs is gone with it.
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "{manifest:#}"
    );
}

#[test]
fn unprivileged_user_with_subordinate_ids_keeps_owners_and_runs_as_user() {
    require_tool("newuidmap");
    require_tool("newgidmap");
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            // The second stage starts from the first, so its RUN runs on a base kiln unpacked
            // with subordinate owners (app's home must be app's for the RUN to write there).
            "FROM oci:{}:latest AS owners\n\
             RUN mkdir -p /home/app && chown app:app /home/app && chown 123:456 /etc/owned\n\
             FROM owners\n\
             USER app\n\
             RUN id > /home/app/id && touch /home/app/made && echo mine > /home/app/private \
                 && chmod 600 /home/app/private\n",
            layout.display()
        ),
    );
    let nobody_dir = work.path().join("nobody");
    std::fs::create_dir(&nobody_dir).unwrap();
    std::os::unix::fs::chown(&nobody_dir, Some(65534), Some(65534)).unwrap();
    // Ranges for nobody, seen only in a private mount namespace: the host's files stay as
    // they are.
    let ranges = work.path().join("subid");
    std::fs::write(&ranges, "nobody:300000:65536\n").unwrap();
    std::fs::set_permissions(&ranges, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = format!(
        "mount --bind {ranges} /etc/subuid && mount --bind {ranges} /etc/subgid && \
         exec setpriv --reuid=65534 --regid=65534 --clear-groups {kiln} build --progress plain \
         --cache-dir {cache} -o type=oci,dest={out} {context}",
        ranges = ranges.display(),
        kiln = env!("CARGO_BIN_EXE_kiln"),
        cache = nobody_dir.join("cache").display(),
        out = nobody_dir.join("out").display(),
        context = context.display(),
    );
    let output = Command::new(require_tool("unshare"))
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("HOME", &nobody_dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_success(&output);
    let (manifest, _) = layout_image(&nobody_dir.join("out"));
    let layers = manifest["layers"].as_array().unwrap();
    let blob = |index: usize| {
        let digest = layers[index]["digest"].as_str().unwrap();
        nobody_dir
            .join("out/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let first = layer_listing(&blob(layers.len() - 2));
    assert!(
        first["home/app"].starts_with("dir mode=755 uid=1000 gid=1000"),
        "{first:#?}"
    );
    assert!(
        first["etc/owned"].starts_with("file mode=644 uid=123 gid=456"),
        "{first:#?}"
    );
    let second = layer_listing(&blob(layers.len() - 1));
    assert!(
        second["home/app/made"].starts_with("file mode=644 uid=1000 gid=1000"),
        "{second:#?}"
    );
    // Readable only by its owner, a subordinate id: kiln still reads it for the layer.
    assert!(
        second["home/app/private"].starts_with("file mode=600 uid=1000 gid=1000")
            && second["home/app/private"].ends_with(&hex(&sha2::Sha256::digest(b"mine\n"))),
        "{second:#?}"
    );
    assert_eq!(
        cached_bases(&nobody_dir.join("cache")).len(),
        2,
        "both stages ran on overlays of unpacked bases"
    );
    // The build removed its scratch files, subordinate owners included.
    let leftovers: Vec<_> = walk(&nobody_dir.join("cache/tmp"));
    assert!(leftovers.is_empty(), "{leftovers:#?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[test]
fn heredocs_exec_form_and_sandbox_always_run_in_the_sandbox() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\n\
             ENV GREETING=hello\n\
             WORKDIR /srv/app\n\
             RUN <<EOF\n\
             echo \"$GREETING from a heredoc\" > script-out\n\
             pwd >> script-out\n\
             EOF\n\
             RUN cat > /srv/app/fed <<DATA\n\
             fed to cat\n\
             DATA\n\
             RUN [\"/bin/sh\", \"-c\", \"echo exec-form > /srv/app/exec\"]\n",
            layout.display()
        ),
    );
    let out = work.path().join("out");
    assert_success(&kiln_build(&context, &work.path().join("cache"), &out, &[]));
    let (manifest, _) = layout_image(&out);
    let layers = manifest["layers"].as_array().unwrap();
    let listing = |index: usize| {
        let digest = layers[index]["digest"].as_str().unwrap();
        layer_listing(
            &out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
    };
    let digest = |text: &str| hex(&sha2::Sha256::digest(text.as_bytes()));
    let n = layers.len();
    assert!(
        listing(n - 3)["srv/app/script-out"].ends_with(&digest("hello from a heredoc\n/srv/app\n"))
    );
    assert!(listing(n - 2)["srv/app/fed"].ends_with(&digest("fed to cat\n")));
    assert!(listing(n - 1)["srv/app/exec"].ends_with(&digest("exec-form\n")));

    // `rm -rf DIR/*` is computed natively, even on a base with no shell; --sandbox=always runs
    // it for real, which needs one.
    let scratch = work.path().join("scratch");
    write_dockerfile(&scratch, "FROM scratch\nRUN rm -rf /var/cache/apk/*\n");
    assert_success(&kiln_build(
        &scratch,
        &work.path().join("cache"),
        &work.path().join("o1"),
        &[],
    ));
    write_dockerfile(
        &scratch,
        "FROM scratch\nRUN --sandbox=always rm -rf /var/cache/apk/*\n",
    );
    let output = kiln_build(
        &scratch,
        &work.path().join("cache"),
        &work.path().join("o2"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`/bin/sh` was not found in the image"),
        "{stderr}"
    );
}

/// `kiln build` with `KILN_SANDBOX_ROOTFS` set to `mode`; returns the manifest digest.
fn build_in_mode(context: &Path, cache: &Path, layout: &Path, mode: &str) -> String {
    build_target_in_mode(context, cache, layout, mode, &[])
}

/// [`build_in_mode`] with more arguments (`--target STAGE`).
fn build_target_in_mode(
    context: &Path,
    cache: &Path,
    layout: &Path,
    mode: &str,
    extra: &[&str],
) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--progress", "plain", "--no-cache", "--cache-dir"])
        .arg(cache)
        .args(extra)
        .arg("-o")
        .arg(format!("type=oci,dest={}", layout.display()))
        .arg(context)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("KILN_SANDBOX_ROOTFS", mode)
        .output()
        .unwrap();
    assert_success(&output);
    let digest = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    digest
}

/// The unpacked bases the sandbox keeps in `cache`.
fn cached_bases(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache.join("sandbox-rootfs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn overlay_and_copy_rootfs_make_the_same_image_and_the_base_is_unpacked_once() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            // Every way a command changes an overlay: new, changed, removed and replaced
            // paths, a directory removed and made again (opaque), metadata only, a file
            // opened for writing but left as it was (copied up, not in the layer), changes
            // over the stage's own earlier steps (a COPY, a removal by the native `rm -rf` of
            // a cache), a directory made again whose removed entries sort apart (`d.x`
            // between `d` and `d/old`), a
            // stage on another stage, and a FROM scratch stage whose first RUN has no base.
            "FROM oci:{base}:latest AS build\n\
             COPY Dockerfile /etc/added\n\
             RUN rm /etc/hostname\n\
             RUN rm -rf /root/.cache/pip\n\
             {CHANGES}\
             RUN mkdir -p /data/d/sub /data/d.x && touch /data/d/old /data/d/sub/s /data/d.x/keep\n\
             RUN rm -rf /data/d && mkdir /data/d && echo n > /data/d/new\n\
             RUN rm -r /data/sub && mkdir /data/sub && echo three > /data/sub/c \
              && echo more >> /etc/added && chown 0:0 /etc/hosts && touch -r /etc/hosts /etc/hosts\n\
             RUN test -e /etc/hostname && exit 1; test -e /root/.cache/pip && exit 1; chmod 640 /data/sub/c && rm /etc/added \
              && cat /data/sub/c /etc/motd > /data/both\n\
             FROM build AS second\n\
             RUN rm -r /data/empty && echo four > /data/sub/d\n\
             FROM scratch\n\
             COPY --from=build /bin/busybox /bin/busybox\n\
             COPY --from=second /data /data\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /data/hi && /bin/busybox rm /data/a-link\"]\n",
            base = layout.display()
        ),
    );

    let copy_cache = work.path().join("copy-cache");
    let copied = build_in_mode(&context, &copy_cache, &work.path().join("copy-out"), "copy");
    assert!(
        cached_bases(&copy_cache).is_empty(),
        "copy mode keeps no base"
    );

    let cache = work.path().join("cache");
    // auto is overlay on any kernel kiln's tests run on (5.11 or later).
    let overlaid = build_in_mode(&context, &cache, &work.path().join("out"), "auto");
    assert_eq!(
        overlaid, copied,
        "the overlay rootfs (left) and the copied rootfs (right) made different images"
    );
    let bases = cached_bases(&cache);
    // One for the busybox base (both stages on it share it) and one for `second`'s FROM.
    assert_eq!(bases.len(), 2, "{bases:?}");
    for base in &bases {
        assert!(
            cache
                .join("sandbox-rootfs")
                .join(base)
                .join("index")
                .is_file(),
            "{base} is complete"
        );
    }

    // The stages' own layers, whiteouts included, not only what the last stage copies.
    for stage in ["build", "second"] {
        let layout = work.path().join(format!("stage-{stage}"));
        let overlaid =
            build_target_in_mode(&context, &cache, &layout, "overlay", &["--target", stage]);
        let copied =
            build_target_in_mode(&context, &copy_cache, &layout, "copy", &["--target", stage]);
        assert_eq!(
            overlaid, copied,
            "stage {stage}: overlay (left) and copy (right)"
        );
    }

    let again = build_in_mode(&context, &cache, &work.path().join("out-again"), "overlay");
    assert_eq!(again, copied);
    assert_eq!(cached_bases(&cache), bases, "the bases were reused");

    // The listing of what the last stage saw, to be sure the RUNs did run.
    let (manifest, _) = layout_image(&work.path().join("out"));
    let last = last_layer(&work.path().join("out"));
    let listing = layer_listing(&last);
    assert!(listing.contains_key("data/hi"), "{listing:#?} {manifest:#}");
    assert!(listing.contains_key("data/.wh.a-link"), "{listing:#?}");
}

#[test]
fn an_unknown_rootfs_mode_is_refused_by_name() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!("FROM oci:{}:latest\nRUN echo hi > /x\n", layout.display()),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--progress", "plain", "--cache-dir"])
        .arg(work.path().join("cache"))
        .arg(&context)
        .env("KILN_SANDBOX_ROOTFS", "tmpfs")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("KILN_SANDBOX_ROOTFS=`tmpfs`") && stderr.contains("overlay, copy or auto"),
        "{stderr}"
    );
}

#[test]
fn bind_mounts_show_context_and_stage_files_read_only_and_key_the_step_cache() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{base}:latest AS build\n\
             RUN mkdir -p /out && echo built > /out/artifact\n\
             FROM oci:{base}:latest\n\
             RUN --mount=type=bind,source=data,target=/src \
                 --mount=type=bind,from=build,source=/out,target=/from-build \
                 --mount=type=bind,source=data/one.txt,target=/one.txt \
                 cat /src/one.txt /src/sub/two.txt /from-build/artifact /one.txt > /combined \
              && (touch /src/new 2>/dev/null && exit 1 || true) \
              && test ! -e /src/ignored.txt\n\
             RUN --mount=type=bind,source=data,target=/rw,rw echo scratch > /rw/one.txt \
              && cat /rw/one.txt > /rw-read\n",
            base = layout.display()
        ),
    );
    write_files(
        &context,
        &[
            ("data/one.txt", "one\n"),
            ("data/sub/two.txt", "two\n"),
            ("data/ignored.txt", "hidden\n"),
            (".dockerignore", "data/ignored.txt\n"),
        ],
    );
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    assert_success(&kiln_build(&context, &cache, &out, &[]));

    let (manifest, _) = layout_image(&out);
    let layers = manifest["layers"].as_array().unwrap();
    let blob = |index: usize| {
        let digest = layers[index]["digest"].as_str().unwrap();
        out.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let digest = |text: &str| hex(&sha2::Sha256::digest(text.as_bytes()));
    let first = layer_listing(&blob(layers.len() - 2));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["combined"],
        "only what the command wrote, no mount point: {first:#?}"
    );
    assert!(
        first["combined"].ends_with(&digest("one\ntwo\nbuilt\none\n")),
        "{first:#?}"
    );
    let second = layer_listing(&blob(layers.len() - 1));
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        ["rw-read"],
        "{second:#?}"
    );
    assert!(second["rw-read"].ends_with(&digest("scratch\n")));
    assert_eq!(
        std::fs::read_to_string(context.join("data/one.txt")).unwrap(),
        "one\n",
        "a rw bind mount writes to a copy"
    );

    let again = assert_success(&kiln_build(
        &context,
        &cache,
        &work.path().join("out-again"),
        &[],
    ));
    assert_eq!(
        again.matches("CACHED").count(),
        3,
        "every RUN is a cache hit:\n{again}"
    );
    std::fs::write(context.join("data/sub/two.txt"), "TWO\n").unwrap();
    let out = work.path().join("out-changed");
    let changed = assert_success(&kiln_build(&context, &cache, &out, &[]));
    assert_eq!(
        changed.matches("CACHED").count(),
        1,
        "the build stage is a hit, both RUNs with a changed source run again:\n{changed}"
    );
    let (manifest, _) = layout_image(&out);
    let layers = manifest["layers"].as_array().unwrap();
    let digest_of = layers[layers.len() - 2]["digest"].as_str().unwrap();
    let first = layer_listing(
        &out.join("blobs/sha256")
            .join(digest_of.trim_start_matches("sha256:")),
    );
    assert!(
        first["combined"].ends_with(&digest("one\nTWO\nbuilt\none\n")),
        "{first:#?}"
    );
}

#[test]
fn a_bind_mount_of_a_missing_source_names_it() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN --mount=type=bind,source=nope,target=/x true\n",
            layout.display()
        ),
    );
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("out"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:2") && stderr.contains("nope"),
        "{stderr}"
    );
}

/// Stops a process the test started, by its PID, when dropped.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies the host program `tool` and the libraries it loads (as `ldd` lists them) into `root`
/// at the same paths.
fn copy_with_libraries(root: &Path, tool: &Path) {
    let libraries = run_ok(Command::new(require_tool("ldd")).arg(tool));
    let mut files = vec![tool.to_owned()];
    files.extend(
        libraries
            .split_whitespace()
            .filter(|word| word.starts_with('/'))
            .map(PathBuf::from),
    );
    for file in &files {
        let inside = root.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::copy(file, &inside).unwrap();
    }
}

/// The `security.capability` attribute of each entry of a layer that has one.
fn layer_capabilities(blob: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut found = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(extensions) = entry.pax_extensions().unwrap() {
            for extension in extensions {
                let extension = extension.unwrap();
                if extension.key().unwrap() == "SCHILY.xattr.security.capability" {
                    found.insert(path.clone(), extension.value_bytes().to_vec());
                }
            }
        }
    }
    found
}

/// The content of the file `path` in a layer blob, if the layer has it.
fn layer_file(blob: &Path, path: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == path {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            return Some(content);
        }
    }
    None
}

/// The blobs of the image's layers in an OCI layout, in order.
fn layer_blobs(layout: &Path) -> Vec<PathBuf> {
    let (manifest, _) = layout_image(layout);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let digest = layer["digest"].as_str().unwrap();
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        })
        .collect()
}

/// A `security.capability` value: effective, `permitted` (low word), revision 2, or revision
/// 3 naming `root`.
fn capability(permitted: u32, root: Option<u32>) -> Vec<u8> {
    let mut value = vec![0x01, 0, 0, if root.is_some() { 3 } else { 2 }];
    value.extend(permitted.to_le_bytes());
    value.extend([0u8; 12]);
    if let Some(root) = root {
        value.extend(root.to_le_bytes());
    }
    value
}

const CAP_NET_RAW: u32 = 1 << 13;
const CAP_NET_BIND_SERVICE: u32 = 1 << 10;

#[test]
fn file_capabilities_reach_the_layer_as_docker_writes_them_and_the_disk_has_the_last_word() {
    let setcap = require_tool("setcap");
    let getcap = require_tool("getcap");
    let work = open_tempdir();
    let layout = base_layout_with(work.path(), |root| {
        copy_with_libraries(root, &setcap);
        copy_with_libraries(root, &getcap);
    });
    let context = work.path().join("caps");
    // The second stage starts from the first: its RUNs run on a base whose capabilities an
    // earlier RUN set, written out by the sandbox.
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{layout}:latest AS caps\n\
             RUN cp /bin/busybox /bin/pinger && {setcap} cap_net_raw+ep /bin/pinger \
                 && {setcap} cap_net_bind_service+ep /etc/meta\n\
             FROM caps\n\
             RUN {getcap} /bin/pinger /etc/meta > /seen && cp /bin/busybox /bin/chowned \
                 && {setcap} cap_net_raw+ep /bin/chowned\n\
             RUN {setcap} -r /etc/meta && chown 0:0 /bin/chowned \
                 && cp -p /bin/pinger /tmp/p && mv /tmp/p /bin/pinger\n",
            layout = layout.display(),
            setcap = setcap.display(),
            getcap = getcap.display(),
        ),
    );
    let check = |out: &Path, what: &str| {
        let blobs = layer_blobs(out);
        assert_eq!(blobs.len(), 4, "{what}");
        assert_eq!(
            layer_capabilities(&blobs[1]),
            BTreeMap::from([
                ("bin/pinger".to_owned(), capability(CAP_NET_RAW, None)),
                // Only its attribute changed: the file is in the layer all the same.
                (
                    "etc/meta".to_owned(),
                    capability(CAP_NET_BIND_SERVICE, None)
                ),
            ]),
            "{what}"
        );
        let seen = String::from_utf8(layer_file(&blobs[2], "seen").unwrap()).unwrap();
        assert!(
            seen.contains("/bin/pinger cap_net_raw=ep")
                && seen.contains("/etc/meta cap_net_bind_service=ep"),
            "a command sees the capabilities of its base ({what}): {seen}"
        );
        assert_eq!(
            layer_capabilities(&blobs[2]),
            BTreeMap::from([("bin/chowned".to_owned(), capability(CAP_NET_RAW, None))]),
            "{what}"
        );
        // setcap -r, a chown (which clears capabilities) and a copy put in place with the
        // same content and times: all three files are in the last layer, without one.
        let last = layer_listing(&blobs[3]);
        assert!(
            ["etc/meta", "bin/chowned", "bin/pinger"]
                .iter()
                .all(|path| last.contains_key(*path)),
            "{what}: {last:#?}"
        );
        assert_eq!(layer_capabilities(&blobs[3]), BTreeMap::new(), "{what}");
    };

    let mut digests = Vec::new();
    for mode in ["overlay", "copy"] {
        let out = work.path().join(format!("out-{mode}"));
        let cache = work.path().join(format!("cache-{mode}"));
        digests.push(build_in_mode(&context, &cache, &out, mode));
        check(&out, mode);
    }
    assert_eq!(
        digests[0], digests[1],
        "both rootfs modes make the same image"
    );

    // Unprivileged, the kernel stores revision 3 naming the namespace's root (uid 65534 on the
    // host); the layers hold the same revision 2 values.
    let nobody_dir = work.path().join("nobody");
    std::fs::create_dir(&nobody_dir).unwrap();
    std::os::unix::fs::chown(&nobody_dir, Some(65534), Some(65534)).unwrap();
    let output = build_as_nobody(&nobody_dir, &context);
    assert_success(&output);
    check(&nobody_dir.join("out"), "unprivileged");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        digests[0],
        "the same image as root's"
    );
}

#[test]
fn image_capabilities_the_kernel_refuses_or_rewrites_change_nothing() {
    let setcap = require_tool("setcap");
    let work = open_tempdir();
    let busybox = busybox();
    let program = std::fs::read(&busybox).unwrap();
    // Files whose capabilities come from a layer written elsewhere: revision 1, and revision 3
    // naming root 0 (the kernel keeps that one as revision 2).
    let mut revision_1 = vec![0x01, 0, 0, 0x01];
    revision_1.extend(CAP_NET_RAW.to_le_bytes());
    revision_1.extend([0u8; 4]);
    let archive = work.path().join("base/caps.tar");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (name, value) in [
        ("bin/v1", revision_1),
        ("bin/v3-root-0", capability(CAP_NET_RAW, Some(0))),
    ] {
        builder
            .append_pax_extensions([("SCHILY.xattr.security.capability", &value[..])])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(program.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(1);
        builder
            .append_data(&mut header, name, &program[..])
            .unwrap();
    }
    builder.finish().unwrap();
    drop(builder);
    let layout = base_layout_with(work.path(), |root| copy_with_libraries(root, &setcap));
    let context = work.path().join("refused");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(&archive, context.join("caps.tar")).unwrap();
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest AS withcaps\nADD caps.tar /\n\
             FROM withcaps\nRUN echo ran > /ran\n",
            layout.display()
        ),
    );
    let mut digests = Vec::new();
    for mode in ["overlay", "copy"] {
        let out = work.path().join(format!("out-{mode}"));
        digests.push(build_in_mode(
            &context,
            &work.path().join(format!("cache-{mode}")),
            &out,
            mode,
        ));
        let blobs = layer_blobs(&out);
        assert_eq!(
            layer_capabilities(&blobs[blobs.len() - 2]).len(),
            2,
            "the ADDed layer keeps both values ({mode})"
        );
        let run_layer = layer_listing(&blobs[blobs.len() - 1]);
        assert_eq!(
            run_layer.keys().collect::<Vec<_>>(),
            ["ran"],
            "the RUN changed nothing else ({mode})"
        );
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn a_relative_cache_dir_works_in_overlay_mode() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("rel");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN echo made > /made\n",
            layout.display()
        ),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "build",
            "--progress",
            "plain",
            "--cache-dir",
            "relative-cache",
        ])
        .args(["-o", "type=oci,dest=relative-out", "rel"])
        .current_dir(work.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .env("KILN_SANDBOX_ROOTFS", "overlay")
        .output()
        .unwrap();
    assert_success(&output);
    let listing = layer_listing(&last_layer(&work.path().join("relative-out")));
    assert!(listing.contains_key("made"), "{listing:#?}");
}

#[test]
fn a_capability_for_another_namespace_root_keeps_naming_it() {
    let setcap = require_tool("setcap");
    let work = open_tempdir();
    let layout = base_layout_with(work.path(), |root| copy_with_libraries(root, &setcap));
    let context = work.path().join("nscap");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\n\
             RUN cp /bin/busybox /bin/nsonly && {setcap} -n 1000 cap_net_raw+ep /bin/nsonly\n",
            layout.display(),
            setcap = setcap.display(),
        ),
    );
    let mut digests = Vec::new();
    for mode in ["overlay", "copy"] {
        let out = work.path().join(format!("out-{mode}"));
        digests.push(build_in_mode(
            &context,
            &work.path().join(format!("cache-{mode}")),
            &out,
            mode,
        ));
        // Effective only where uid 1000 is a user namespace's root, never for every user.
        assert_eq!(
            layer_capabilities(&last_layer(&out)),
            BTreeMap::from([("bin/nsonly".to_owned(), capability(CAP_NET_RAW, Some(1000)))]),
            "{mode}"
        );
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn ssh_mounts_reach_the_agent_through_a_proxy_and_leave_no_trace() {
    let ssh_add = require_tool("ssh-add");
    let work = open_tempdir();
    // The busybox base plus the host's ssh-add and the libraries it loads: a real agent client.
    let layout = base_layout_with(work.path(), |root| copy_with_libraries(root, &ssh_add));

    // A real agent holding a new key.
    let agent_dir = work.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let socket = agent_dir.join("socket");
    let _agent = Started(
        Command::new(require_tool("ssh-agent"))
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let key = agent_dir.join("key");
    run_ok(
        Command::new(require_tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key),
    );
    run_ok(
        Command::new(&ssh_add)
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket),
    );
    let listed = run_ok(
        Command::new(&ssh_add)
            .arg("-l")
            .env("SSH_AUTH_SOCK", &socket),
    );
    assert!(listed.contains("kiln-test-key"), "{listed}");

    let context = work.path().join("run");
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\n\
             RUN --mount=type=ssh ssh-add -l > /root-view && echo $SSH_AUTH_SOCK > /socket-path\n\
             USER app\n\
             RUN --mount=type=ssh,uid=1000 ssh-add -l > /tmp/app-view\n\
             RUN --mount=type=ssh ssh-add -l 2>/dev/null || echo refused > /tmp/refused\n",
            layout.display()
        ),
    );
    let out = work.path().join("out");
    let ssh_arg = format!("default={}", socket.display());
    assert_success(&kiln_build(
        &context,
        &work.path().join("cache"),
        &out,
        &["--ssh", &ssh_arg],
    ));
    let (manifest, config) = layout_image(&out);
    let layers = manifest["layers"].as_array().unwrap();
    let listing_of = |index: usize| {
        let digest = layers[index]["digest"].as_str().unwrap();
        layer_listing(
            &out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
    };
    let digest = |text: &str| hex(&sha2::Sha256::digest(text.as_bytes()));
    let root_view = listing_of(layers.len() - 3);
    assert_eq!(
        root_view.keys().collect::<Vec<_>>(),
        ["root-view", "socket-path"],
        "no socket or mount point in the layer: {root_view:#?}"
    );
    assert!(
        root_view["root-view"].ends_with(&digest(&listed)),
        "{root_view:#?}"
    );
    assert!(
        root_view["socket-path"].ends_with(&digest("/run/buildkit/ssh_agent.0\n")),
        "{root_view:#?}"
    );
    let app_view = listing_of(layers.len() - 2);
    assert!(
        app_view["tmp/app-view"].ends_with(&digest(&listed)),
        "{app_view:#?}"
    );
    let refused = listing_of(layers.len() - 1);
    assert!(
        refused.contains_key("tmp/refused"),
        "a socket owned by root is refused to USER app: {refused:#?}"
    );
    let env = config["config"]["Env"].to_string();
    assert!(!env.contains("SSH_AUTH_SOCK"), "{env}");
    // The private key is in no blob.
    let private = std::fs::read_to_string(&key).unwrap();
    let secret_line = private.lines().nth(1).unwrap().to_owned();
    for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&secret_line));
    }

    // Without --ssh: a required agent fails the build by name; an optional one is left out.
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\nRUN --mount=type=ssh,required ssh-add -l\n",
            layout.display()
        ),
    );
    let output = kiln_build(
        &context,
        &work.path().join("cache"),
        &work.path().join("o2"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("SSH agent `default` is required") && stderr.contains("--ssh default"),
        "{stderr}"
    );
}

#[test]
fn a_symlink_left_where_a_mount_point_was_does_not_lead_out() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let context = work.path().join("run");
    // The first RUN's mount point /a/c is no part of the image; the command moves it away and
    // leaves a symlink to a host directory in its place, which the second RUN's mount target
    // goes through.
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest\n\
             RUN --mount=type=tmpfs,target=/a/c mv /a /b && mkdir /a && ln -s {} /a/c\n\
             RUN --mount=type=tmpfs,target=/a/c/pwned true\n",
            layout.display(),
            outside.display()
        ),
    );
    for mode in ["auto", "copy"] {
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["build", "--progress", "plain", "--no-cache", "--cache-dir"])
            .arg(work.path().join(format!("cache-{mode}")))
            .arg(&context)
            .env("KILN_SANDBOX_ROOTFS", mode)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mode}: {stderr}");
        assert!(
            stderr.contains("Dockerfile:3") && stderr.contains("mount point")
                || stderr.contains("symbolic link"),
            "{mode}: {stderr}"
        );
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "{mode}: something was made outside the rootfs"
        );
    }
}

#[test]
fn a_stage_layer_identical_to_a_base_layer_does_not_bring_back_the_base_file() {
    let work = open_tempdir();
    let layout = base_layout(work.path());
    let context = work.path().join("run");
    // Layers are reproducible: the third RUN makes the first RUN's layer again, and on the
    // rebuild (a cache hit) its file comes from that same blob, which the second stage's base
    // also holds, under an older version of /f.
    write_dockerfile(
        &context,
        &format!(
            "FROM oci:{}:latest AS a\n\
             RUN printf AAAA > /f\n\
             RUN printf BBBB > /f\n\
             FROM a\n\
             RUN printf AAAA > /f\n\
             ARG ROUND\n\
             RUN echo $ROUND > /round && cat /f > /out\n",
            layout.display()
        ),
    );
    let cache = work.path().join("cache");
    let digest = |text: &str| hex(&sha2::Sha256::digest(text.as_bytes()));
    for round in ["first", "second"] {
        let out = work.path().join(round);
        // A new ROUND makes only the last RUN run again.
        let round_arg = format!("ROUND={round}");
        assert_success(&kiln_build(
            &context,
            &cache,
            &out,
            &["--build-arg", &round_arg],
        ));
        let listing = layer_listing(&last_layer(&out));
        assert!(
            listing["out"].ends_with(&digest("AAAA")),
            "{round} build: {listing:#?}"
        );
    }
}

#[test]
fn the_three_most_recently_used_bases_are_kept() {
    let work = open_tempdir();
    let cache = work.path().join("cache");
    for index in 0..4 {
        let dir = work.path().join(format!("base-{index}"));
        std::fs::create_dir(&dir).unwrap();
        let layout = base_layout_with(&dir, |root| {
            std::fs::write(root.join("marker"), index.to_string()).unwrap();
        });
        let context = dir.join("run");
        write_dockerfile(
            &context,
            &format!(
                "FROM oci:{}:latest\nRUN cat /marker > /seen\n",
                layout.display()
            ),
        );
        assert_success(&kiln_build(&context, &cache, &dir.join("out"), &[]));
    }
    let bases = cached_bases(&cache);
    assert_eq!(bases.len(), 3, "{bases:?}");
    assert!(
        bases.iter().all(|name| !name.starts_with('.')),
        "nothing half-written or half-removed is left: {bases:?}"
    );
}
