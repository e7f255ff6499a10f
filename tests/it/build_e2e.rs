//! End-to-end builds through the `kiln` binary, checked with independent tools: images run
//! under runc, validate with oci-image-tool, unpack with umoci and copy with skopeo; builds are
//! reproducible across directories and times; the step cache reuses layers; bad input fails
//! with a clear error and writes nothing.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::Command;

use support::*;

/// A busybox context: enough of a root filesystem to run `sh` as a non-root user.
fn busybox_context(dir: &Path) {
    let busybox = busybox();
    std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
    std::fs::copy(&busybox, dir.join("rootfs/bin/busybox")).unwrap();
    // busybox's user applets as Alpine links them: kiln computes `adduser` natively only when
    // the PATH finds busybox's.
    for applet in ["sh", "adduser", "addgroup"] {
        symlink("busybox", dir.join("rootfs/bin").join(applet)).unwrap();
    }
    write_files(
        dir,
        &[
            (
                "rootfs/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000:Linux User,,,:/home/appuser:/bin/sh\n",
            ),
            (
                "rootfs/etc/group",
                "root:x:0:root\nappuser:x:1000:appuser\n",
            ),
            ("config.txt", "configured\n"),
            (
                "Dockerfile",
                r#"# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS runtime
ARG GREETING_WORD=hello
ENV GREETING="${GREETING_WORD} kiln" \
    APP_HOME=/srv/app
COPY rootfs/ /
COPY --chown=appuser:appuser --chmod=0640 config.txt ${APP_HOME}/
WORKDIR $APP_HOME
USER appuser
LABEL org.opencontainers.image.title="busybox demo" stage=runtime
EXPOSE 8080 53/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/busybox", "true"]
VOLUME /data
ONBUILD COPY . /onbuild
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "echo \"$GREETING from $(pwd) as $(busybox id -u):$(busybox id -g)\"; busybox cat config.txt"]
"#,
            ),
        ],
    );
}

fn build_to_layout(
    context: &Path,
    cache: &Path,
    layout: &Path,
    tag: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "build".to_owned(),
        "--progress".to_owned(),
        "plain".to_owned(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "-t".to_owned(),
        format!("kiln-test:{tag}"),
        "--output".to_owned(),
        format!("type=oci,dest={}", layout.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(context.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln_ok(&refs).trim().to_owned()
}

/// A successful `kiln build --progress plain` of `context` into the OCI layout `dest`: the
/// manifest digest and the build log.
fn build_logged(cache: &Path, dest: &Path, context: &Path) -> (String, String) {
    let output = kiln(&[
        "build",
        "--progress",
        "plain",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--output",
        &format!("type=oci,dest={}", dest.display()),
        context.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        log,
    )
}

#[test]
fn busybox_image_runs_under_runc_with_its_config() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    let layout = work.path().join("layout");
    let digest = build_to_layout(&context, &work.path().join("cache"), &layout, "demo", &[]);
    assert!(digest.starts_with("sha256:"), "{digest}");

    let (status, stdout, stderr) = run_image(&layout, "demo", work.path());
    assert_eq!(status, 0, "runc failed:\n{stderr}");
    assert_eq!(
        stdout,
        "hello kiln from /srv/app as 1000:1000\nconfigured\n"
    );

    let (manifest, config) = layout_image(&layout);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "two COPYs; WORKDIR makes no layer when the directory exists"
    );
    let runtime = &config["config"];
    assert_eq!(runtime["User"], "appuser");
    assert_eq!(runtime["WorkingDir"], "/srv/app");
    assert_eq!(runtime["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(runtime["StopSignal"], "SIGTERM");
    assert_eq!(
        runtime["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(runtime["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(runtime["OnBuild"], serde_json::json!(["COPY . /onbuild"]));
    assert_eq!(
        runtime["Healthcheck"],
        serde_json::json!({"Test": ["CMD", "/bin/busybox", "true"], "Interval": 30_000_000_000i64, "Timeout": 3_000_000_000i64})
    );
    assert_eq!(
        runtime["Labels"]["org.opencontainers.image.title"],
        "busybox demo"
    );
    let env: Vec<&str> = runtime["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello kiln"), "{env:?}");
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let history = config["history"].as_array().unwrap();
    let layered = history
        .iter()
        .filter(|h| h.get("empty_layer").is_none())
        .count();
    assert_eq!(
        layered, 2,
        "one non-empty history entry per layer: {history:?}"
    );
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 2);
}

#[test]
fn images_pass_oci_image_tool_umoci_and_skopeo() {
    require_tool("oci-image-tool");
    require_tool("skopeo");
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    // oci-image-tool 1.0.0-rc1 predates OCI 1.1 and refuses a layout whose index.json lists
    // the attestations' fallback-tag index, so it checks the image built without them.
    let plain = work.path().join("plain");
    let plain_digest = build_to_layout(
        &context,
        &cache,
        &plain,
        "v1",
        &["--provenance=false", "--sbom=false"],
    );
    let out = run_ok(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=v1"])
            .arg(&plain),
    );
    assert!(out.contains("Validation succeeded"), "{out}");

    // By default provenance and an SBOM are attached as OCI 1.1 referrers: the tags still name
    // the same image manifest, and a `sha256-<hex>` fallback tag lists the attestations.
    let digest = build_to_layout(&context, &cache, &layout, "v1", &["-t", "kiln-test:latest"]);
    assert_eq!(digest, plain_digest, "attestations do not change the image");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let fallback = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["annotations"]["org.opencontainers.image.ref.name"] == fallback.as_str()),
        "{index}"
    );

    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:latest", layout.display())])
            .arg(&bundle),
    );
    let config_file = bundle.join("rootfs/srv/app/config.txt");
    let meta = std::fs::metadata(&config_file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(),
        Path::new("busybox")
    );

    let copy = work.path().join("copy");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v1", copy.display()),
    ]));
    let inspected =
        run_ok(Command::new("skopeo").args(["inspect", &format!("oci:{}:v1", copy.display())]));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(
        inspected["Digest"], digest,
        "skopeo keeps the manifest bytes"
    );

    for (kind, file) in [
        ("oci-archive", "image.oci.tar"),
        ("docker-archive", "image.docker.tar"),
    ] {
        let dest = work.path().join(file);
        kiln_ok(&[
            "build",
            "--progress",
            "quiet",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            "demo:v1",
            "--output",
            &format!("type={kind},dest={}", dest.display()),
            context.to_str().unwrap(),
        ]);
        let inspected =
            run_ok(Command::new("skopeo").args(["inspect", &format!("{kind}:{}", dest.display())]));
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(
            inspected["Layers"].as_array().unwrap().len(),
            2,
            "{kind}: {inspected}"
        );
        assert_eq!(inspected["Architecture"], "amd64", "{kind}");
    }
}

#[test]
fn builds_are_reproducible_across_directories_times_and_caches() {
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("one/ctx");
    let second = work.path().join("two/elsewhere/ctx");
    busybox_context(&first);
    busybox_context(&second);
    // Different mtimes in the second context: clamped to SOURCE_DATE_EPOCH, so they do not count.
    run_ok(
        Command::new("touch")
            .args(["-d", "2001-02-03 04:05:06"])
            .arg(second.join("config.txt")),
    );
    run_ok(
        Command::new("touch")
            .args(["-h", "-d", "2011-02-03 04:05:06"])
            .arg(second.join("rootfs/bin/sh")),
    );
    let a = build_to_layout(
        &first,
        &work.path().join("cache-a"),
        &work.path().join("out-a"),
        "t",
        &[],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build_to_layout(
        &second,
        &work.path().join("cache-b"),
        &work.path().join("out-b"),
        "t",
        &[],
    );
    assert_eq!(a, b, "same inputs must give the same manifest digest");

    let epoch = build_to_layout(
        &first,
        &work.path().join("cache-a"),
        &work.path().join("out-c"),
        "t",
        &["--source-date-epoch", "1700000000"],
    );
    assert_ne!(a, epoch, "SOURCE_DATE_EPOCH stamps the config");
    let (_, config) = layout_image(&work.path().join("out-c"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    let zstd = build_to_layout(
        &first,
        &work.path().join("cache-a"),
        &work.path().join("out-z"),
        "t",
        &["--compression", "zstd"],
    );
    let (_, gzip_config) = layout_image(&work.path().join("out-a"));
    let (zstd_manifest, zstd_config) = layout_image(&work.path().join("out-z"));
    assert_ne!(a, zstd);
    assert_eq!(
        gzip_config["rootfs"], zstd_config["rootfs"],
        "diffIDs do not depend on compression"
    );
    assert_eq!(
        zstd_manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn step_cache_reuses_layers_and_redoes_only_what_changed() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
            ),
        ],
    );
    let cache = work.path().join("cache");
    let build = |name: &str| build_logged(&cache, &work.path().join(name), &context);
    let (first, log) = build("one");
    assert!(log.contains("(2 layers written, 0 cached)"), "{log}");
    let (again, log) = build("two");
    assert_eq!(first, again);
    assert!(log.contains("(0 layers written, 2 cached)"), "{log}");
    // A fresh checkout of the same bytes (new inodes and times) is found by content.
    std::fs::remove_file(context.join("a.txt")).unwrap();
    std::fs::write(context.join("a.txt"), "a\n").unwrap();
    let (same, log) = build("fresh");
    assert_eq!(first, same);
    assert!(log.contains("(0 layers written, 2 cached)"), "{log}");
    std::fs::write(context.join("b.txt"), "changed\n").unwrap();
    let (changed, log) = build("three");
    assert_ne!(first, changed);
    assert!(log.contains("(1 layers written, 1 cached)"), "{log}");
}

#[test]
fn multi_stage_copy_from_add_archives_wildcards_and_dockerignore() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[
            ("keep.txt", "kept\n"),
            ("skip.txt", "ignored\n"),
            ("pinned.bin", "pinned content\n"),
            (".dockerignore", "*.txt\n!keep.txt\n"),
        ],
    );
    // A real gzip'd tar made with GNU tar, auto-extracted by ADD.
    write_files(
        &work.path().join("tree"),
        &[("inner/file", "from the archive\n")],
    );
    run_ok(
        Command::new("tar")
            .arg("-czf")
            .arg(context.join("archive.tar.gz"))
            .arg("-C")
            .arg(work.path().join("tree"))
            .arg("inner"),
    );
    let pinned = kiln::digest::Digest::of(b"pinned content\n");
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM scratch AS files\nCOPY *.txt /txt/\nADD archive.tar.gz /unpacked/\nADD --checksum={pinned} pinned.bin /pinned.bin\n\
             FROM scratch AS final\nCOPY --from=files /txt /copied\nCOPY --from=0 /unpacked/inner/file /file-from-index\n\
             FROM scratch AS other\nCOPY keep.txt /other\n"
        ),
    )
    .unwrap();
    let layout = work.path().join("layout");
    build_to_layout(
        &context,
        &work.path().join("cache"),
        &layout,
        "final",
        &["--target", "final"],
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:final", layout.display())])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("copied/keep.txt")).unwrap(),
        "kept\n"
    );
    assert!(
        !rootfs.join("copied/skip.txt").exists(),
        ".dockerignore excludes skip.txt"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("file-from-index")).unwrap(),
        "from the archive\n"
    );
    assert!(
        !rootfs.join("other").exists(),
        "--target final does not include later stages"
    );

    std::fs::write(context.join("pinned.bin"), "tampered\n").unwrap();
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--target",
        "files",
        context.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&pinned.to_string()),
        "the checksum error shows the expected digest: {stderr}"
    );
}

#[test]
fn local_oci_base_supports_chown_by_name() {
    let work = tempfile::tempdir().unwrap();
    let base_context = work.path().join("base");
    busybox_context(&base_context);
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    build_to_layout(&base_context, &cache, &layout, "base", &[]);
    let app = work.path().join("app");
    write_files(
        &app,
        &[
            ("hello.txt", "hello from the app\n"),
            (
                "Dockerfile",
                &format!(
                    "FROM oci:{}:base\nCOPY --chown=appuser hello.txt /home/appuser/\nCMD [\"sh\", \"-c\", \"busybox cat /home/appuser/hello.txt; echo \\\"$GREETING\\\"\"]\n",
                    layout.display()
                ),
            ),
        ],
    );
    let app_layout = work.path().join("app-layout");
    build_to_layout(&app, &cache, &app_layout, "app", &[]);
    let (manifest, config) = layout_image(&app_layout);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        4,
        "two base layers, the inherited ONBUILD COPY, and the COPY"
    );
    assert!(
        config["config"]["OnBuild"].is_null(),
        "ONBUILD triggers are consumed by the child build"
    );
    let (status, stdout, stderr) = run_image(&app_layout, "app", work.path());
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, "hello from the app\nhello kiln\n");
    let bundle = work.path().join("bundle-app");
    let meta = std::fs::metadata(bundle.join("rootfs/home/appuser/hello.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let onbuild = bundle.join("rootfs/onbuild/hello.txt");
    assert!(
        onbuild.exists(),
        "the base's ONBUILD COPY ran in the child build"
    );
}

#[test]
fn bad_input_fails_naming_the_line_and_writes_nothing() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown instruction",
            "FROM scratch\nFROBNICATE x\n",
            "Dockerfile:2",
        ),
        (
            "unterminated heredoc",
            "FROM scratch\nCOPY <<EOF /x\nhello\n",
            "heredoc",
        ),
        (
            "copy outside the context",
            "FROM scratch\nCOPY ../x /x\n",
            "../x",
        ),
        (
            "missing stage",
            "FROM scratch\nCOPY --from=nope /a /b\n",
            "nope",
        ),
        (
            "run without handler",
            "FROM scratch\nRUN make all\n",
            "make all",
        ),
        (
            "missing source",
            "FROM scratch\nCOPY absent.txt /\n",
            "absent.txt",
        ),
        (
            "registry base",
            "FROM python:3.11-alpine\n",
            "python:3.11-alpine",
        ),
        (
            "bad arg before from",
            "COPY a b\nFROM scratch\n",
            "Dockerfile:1",
        ),
    ];
    for (name, dockerfile, needle) in cases {
        let work = tempfile::tempdir().unwrap();
        let context = work.path().join("ctx");
        write_files(&context, &[("Dockerfile", dockerfile)]);
        let dest = work.path().join("out");
        let output = kiln(&[
            "build",
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={}", dest.display()),
            context.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{name}: expected `{needle}` in:\n{stderr}"
        );
        assert!(
            !dest.exists(),
            "{name}: a failed build must not write its output"
        );
    }
}

#[test]
fn symlinks_and_archives_cannot_escape_their_root() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(&work.path().join("outside"), &[("secret", "do not copy\n")]);
    write_files(
        &context,
        &[("Dockerfile", "FROM scratch\nCOPY link /stolen\n")],
    );
    symlink("../outside/secret", context.join("link")).unwrap();
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("link"), "{stderr}");

    // A tar whose entry climbs out of the root, written byte by byte as an attacker would.
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape.sh");
    header.set_size(4);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut evil = Vec::new();
    evil.extend_from_slice(header.as_bytes());
    evil.extend_from_slice(b"boom");
    evil.resize(512 + 512 + 1024, 0);
    std::fs::write(context.join("evil.tar"), evil).unwrap();
    write_files(
        &context,
        &[("Dockerfile", "FROM scratch\nADD evil.tar /\n")],
    );
    let dest = work.path().join("out");
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--output",
        &format!("type=oci,dest={}", dest.display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("escape.sh"),
        "the error names the entry: {stderr}"
    );
    assert!(!dest.exists());
    assert!(!work.path().join("escape.sh").exists());
}

#[test]
fn workdir_creates_missing_directories_owned_by_user() {
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nUSER appuser\nWORKDIR /data/work\nWORKDIR /data\n",
    )
    .unwrap();
    let layout = work.path().join("layout");
    let metadata = work.path().join("metadata.json");
    let digest = build_to_layout(
        &context,
        &work.path().join("cache"),
        &layout,
        "wd",
        &["--metadata-file", metadata.to_str().unwrap()],
    );
    let (manifest, config) = layout_image(&layout);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "the COPY, and one WORKDIR layer (the second WORKDIR exists already)"
    );
    assert_eq!(config["config"]["WorkingDir"], "/data");
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:wd", layout.display())])
            .arg(&bundle),
    );
    for dir in ["data", "data/work"] {
        let meta = std::fs::metadata(bundle.join("rootfs").join(dir)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1000, 0o755),
            "{dir}"
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], digest);
    assert_eq!(
        metadata["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn command_line_labels_win_over_the_dockerfile_and_iidfile_names_the_config() {
    let work = tempfile::tempdir().unwrap();
    write_files(
        work.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nLABEL a=dockerfile b=kept\nCOPY Dockerfile /\n",
        )],
    );
    let layout = work.path().join("layout");
    let iidfile = work.path().join("iid");
    let output = kiln(&[
        "build",
        "-q",
        "--pull",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--label",
        "a=command-line",
        "--label",
        "org.opencontainers.image.source=https://example.test/o/app",
        "--iidfile",
        iidfile.to_str().unwrap(),
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        work.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "-q prints no progress: {output:?}"
    );
    let (manifest, config) = layout_image(&layout);
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({
            "a": "command-line",
            "b": "kept",
            "org.opencontainers.image.source": "https://example.test/o/app",
        })
    );
    assert_eq!(
        std::fs::read_to_string(&iidfile).unwrap(),
        manifest["config"]["digest"].as_str().unwrap()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        index["manifests"][0]["digest"].as_str().unwrap(),
        "standard output is the manifest digest"
    );
}

/// Every path below `root` with what a local export must keep: kind, mode, link target or
/// content digest (owners are the caller's, as buildx's local exporter writes them).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let what = if meta.file_type().is_symlink() {
            format!(
                "symlink {}",
                std::fs::read_link(entry.path()).unwrap().display()
            )
        } else if meta.is_dir() {
            format!("dir {:o}", meta.mode() & 0o7777)
        } else {
            let content = std::fs::read(entry.path()).unwrap();
            format!(
                "file {:o} {} links={}",
                meta.mode() & 0o7777,
                kiln::digest::Digest::of(&content),
                meta.nlink()
            )
        };
        let path = entry.path().strip_prefix(root).unwrap();
        found.insert(path.display().to_string(), what);
    }
    found
}

#[test]
fn a_local_output_is_the_filesystem_umoci_unpacks() {
    let umoci = require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    write_files(
        &context,
        &[("v1/app.txt", "one\n"), ("v2/app.txt", "two\n")],
    );
    std::fs::hard_link(context.join("v2/app.txt"), context.join("v2/app-link.txt")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCOPY v1/ /srv/\nCOPY --chmod=4750 v2/ /srv/\n\
         WORKDIR /srv/empty\n",
    )
    .unwrap();
    let layout = work.path().join("layout");
    let local = work.path().join("local");
    build_to_layout(
        &context,
        &work.path().join("cache"),
        &layout,
        "local",
        &["-o", local.to_str().unwrap()],
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--image", &format!("{}:local", layout.display())])
            .arg(&bundle),
    );
    let exported = tree(&local);
    assert_eq!(exported, tree(&bundle.join("rootfs")));
    // The later layer's file, with its mode; the hard link kept.
    assert!(
        exported["srv/app.txt"].starts_with("file 4750")
            && exported["srv/app.txt"].ends_with("links=2"),
        "{exported:#?}"
    );
    assert_eq!(exported["bin/sh"], "symlink busybox");

    // A directory with something in it is left alone.
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--output",
        &format!("type=local,dest={}", local.display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(tree(&local), exported);
}

#[test]
fn command_line_mistakes_exit_2() {
    let work = tempfile::tempdir().unwrap();
    write_files(work.path(), &[("Dockerfile", "FROM scratch\n")]);
    let context = work.path().to_str().unwrap();
    for args in [
        vec!["build", "--output", "type=tarball,dest=x", context],
        vec!["build", "--platform", "linux", context],
        vec!["build", "--compression-level", "12", context],
        vec!["build", "--bogus-flag", context],
        vec!["build", "--source-date-epoch", "yesterday", context],
        vec!["build", "--label", "no-value", context],
        vec!["build", "--pull", "--offline", context],
    ] {
        let output = kiln(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn run_adduser_is_computed_natively_and_the_user_exists_under_runc() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    write_files(
        &context,
        &[
            ("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("rootfs/etc/group", "root:x:0:root\n"),
            ("rootfs/etc/shadow", "root:*::0:::::\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY rootfs/ /\nRUN busybox mkdir -p /home && exit 7\n",
            ),
        ],
    );
    std::fs::create_dir_all(context.join("rootfs/home")).unwrap();

    // A RUN kiln cannot compute runs in the sandbox; when it fails, the error names the line,
    // the command and its exit code.
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:3")
            && stderr.contains("mkdir")
            && stderr.contains("exit code: 7"),
        "{stderr}"
    );

    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\n\
         RUN addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser\n\
         USER appuser\nCMD [\"/bin/busybox\", \"sh\", \"-c\", \"busybox id; busybox ls -ldn /home/appuser\"]\n",
    )
    .unwrap();
    let layout = work.path().join("layout");
    build_to_layout(&context, &work.path().join("cache"), &layout, "users", &[]);
    let (status, stdout, stderr) = run_image(&layout, "users", work.path());
    assert_eq!(status, 0, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("uid=1000(appuser) gid=1000(appuser) groups=1000(appuser)")
    );
    let home = lines.next().unwrap_or_default();
    assert!(
        home.starts_with("drwxr-sr-x") && home.contains(" 1000 "),
        "{home}"
    );

    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nRUN apk update && apk upgrade\n",
    )
    .unwrap();
    let output = kiln(&[
        "build",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apk update") && stderr.contains("Dockerfile:3"),
        "{stderr}"
    );
}

#[test]
fn heredoc_copies_are_cache_hits_on_rebuild() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[(
            "Dockerfile",
            "FROM scratch\nARG NAME=kiln\nCOPY <<EOF /greeting.txt\nhello ${NAME}\nEOF\n",
        )],
    );
    let cache = work.path().join("cache");
    let build = || {
        let output = kiln(&[
            "build",
            "--progress",
            "plain",
            "--cache-dir",
            cache.to_str().unwrap(),
            context.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(build().contains("(1 layers written, 0 cached)"));
    let log = build();
    assert!(log.contains("(0 layers written, 1 cached)"), "{log}");
}

#[test]
fn copy_from_a_stage_of_stored_layers_is_a_cache_hit_on_rebuild() {
    let work = tempfile::tempdir().unwrap();
    let base_context = work.path().join("base");
    write_files(
        &base_context,
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /data/a.txt\n"),
        ],
    );
    let base = work.path().join("base-layout");
    kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        work.path().join("base-cache").to_str().unwrap(),
        "-t",
        "base:latest",
        "-o",
        &format!("type=oci,dest={}", base.display()),
        base_context.to_str().unwrap(),
    ]);
    // The first stage's files come from the base's stored layer, so the COPY reads copies
    // extracted to new scratch paths in every build.
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[(
            "Dockerfile",
            &format!(
                "FROM oci:{}:latest AS files\nFROM scratch\nCOPY --from=files /data /copied/\n",
                base.display()
            ),
        )],
    );
    let cache = work.path().join("cache");
    let build = |name: &str| build_logged(&cache, &work.path().join(name), &context);
    let (first, log) = build("one");
    assert!(log.contains("(1 layers written, 0 cached)"), "{log}");
    let (again, log) = build("two");
    assert_eq!(first, again);
    assert!(
        log.contains("(0 layers written, 1 cached)"),
        "nothing is compressed again:\n{log}"
    );
}
