//! Docker's semantics on inputs people bring: configs that stay valid JSON whatever the strings
//! hold, multi-pair ENV expanded against the state before the instruction, deep expansions and
//! huge Dockerfiles that fail or finish in bounded time, USER without `/etc/passwd`, the
//! Dockerfile on standard input, and the sandbox's hostname and `/etc/hosts`.

use crate::support;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

/// A context with a busybox root filesystem under `rootfs/` (enough for a sandboxed RUN).
fn busybox_context(dir: &Path) {
    std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
    std::fs::copy(busybox(), dir.join("rootfs/bin/busybox")).unwrap();
    symlink("busybox", dir.join("rootfs/bin/sh")).unwrap();
}

/// `kiln build` of `context` into the OCI layout `layout` tagged `tag`; the manifest digest.
fn build(context: &Path, work: &Path, layout: &Path, tag: &str, extra: &[&str]) -> String {
    let cache = work.join("cache");
    let mut args = vec![
        "build".to_owned(),
        "--progress".to_owned(),
        "quiet".to_owned(),
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

/// Every control character, U+0000..U+001F and U+007F.
fn control_characters() -> String {
    (0u8..0x20).chain([0x7f]).map(char::from).collect()
}

/// Every JSON file of a layout (index.json and each blob that starts like JSON) parses as
/// strict RFC 8259 JSON.
fn assert_layout_json_is_valid(layout: &Path) {
    let mut files: Vec<PathBuf> = vec![layout.join("index.json")];
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut checked = 0;
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        if bytes.first() == Some(&b'{') {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                panic!("{} is not valid JSON: {e}", file.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "index, manifest and config at least");
}

/// Control characters in a RUN line (a tab), in a heredoc, and in LABEL and ENV values (every
/// one of U+0000..U+001F and U+007F, from the Dockerfile and from a build argument) reach the
/// config as RFC 8259 escapes: umoci, skopeo and oci-image-tool read the image, and every
/// string comes back exactly.
#[test]
fn control_characters_make_valid_configs_that_round_trip() {
    require_tool("umoci");
    require_tool("skopeo");
    require_tool("oci-image-tool");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    let all = control_characters();
    // A Dockerfile line cannot hold a line feed or a carriage return: those come from the
    // build argument, the rest from the Dockerfile's own bytes.
    let in_line: String = all.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
    let from_arg: String = all.chars().filter(|c| *c != '\0').collect();
    // NUL cannot be in a process's environment, so the ENV holding it comes after the RUNs.
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nARG CTL\nRUN echo\tone > /tab\n\
         RUN <<EOF\necho\ttwo > /heredoc\nEOF\n\
         LABEL raw=\"{in_line}\" arg=\"$CTL\"\nENV RAW=\"{in_line}\" ARGV=\"$CTL\"\n"
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();

    for (layout, extra) in [
        ("plain", vec!["--provenance=false", "--sbom=false"]),
        ("attested", vec![]),
    ] {
        let layout = work.path().join(layout);
        let mut args = vec!["--build-arg".to_owned(), format!("CTL={from_arg}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        build(&context, work.path(), &layout, "v1", &refs);
        assert_layout_json_is_valid(&layout);

        let inspected = run_ok(Command::new("skopeo").args([
            "inspect",
            "--config",
            &format!("oci:{}:v1", layout.display()),
        ]));
        let config: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        let labels = &config["config"]["Labels"];
        assert_eq!(labels["raw"], in_line.as_str());
        assert_eq!(labels["arg"], from_arg.as_str());
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&format!("RAW={in_line}").as_str()), "{env:?}");
        assert!(
            env.contains(&format!("ARGV={from_arg}").as_str()),
            "{env:?}"
        );
        let history: Vec<&str> = config["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["created_by"].as_str())
            .collect();
        assert!(history.contains(&"RUN echo\tone > /tab"), "{history:?}");

        let bundle = work
            .path()
            .join(format!("bundle-{}", layout.display()).replace('/', "_"));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &format!("{}:v1", layout.display())])
                .arg(&bundle),
        );
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/tab")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/heredoc")).unwrap(),
            "two\n"
        );
    }
    // oci-image-tool 1.0.0-rc1 predates OCI 1.1 and refuses the attestations' fallback-tag
    // index, so it checks the image built without them.
    let out = run_ok(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=v1"])
            .arg(work.path().join("plain")),
    );
    assert!(out.contains("Validation succeeded"), "{out}");
}

/// The config of the first image in `layout`.
fn config_of(layout: &Path) -> serde_json::Value {
    layout_image(layout).1
}

/// The config's `Env` as `NAME=value` strings.
fn env_of(config: &serde_json::Value) -> Vec<String> {
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// ENV and LABEL expand every pair against the state before the instruction (BuildKit's
/// rule: `ENV a=two b=$a` gives `b` the earlier `a`); ARG defaults expand one after the other
/// (BuildKit adds each ARG to the state before expanding the next).
#[test]
fn multi_pair_env_and_label_expand_against_the_earlier_state() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[(
            "Dockerfile",
            "FROM scratch\nENV a=one\nENV a=two b=$a c=${a}x\n\
             LABEL a=$a b=$a\nENV a=three\nLABEL a=$a late=$a\n\
             ARG x=1 y=$x\nENV y=$y\n",
        )],
    );
    let layout = work.path().join("layout");
    build(&context, work.path(), &layout, "v1", &[]);
    let config = config_of(&layout);
    let env = env_of(&config);
    for want in ["a=three", "b=one", "c=onex", "y=1"] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"a": "three", "b": "two", "late": "three"})
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(history.contains(&"ENV a=two b=one c=onex"), "{history:?}");
}

/// `${v:-${v:-...}}` nested deeper than the 10,300 levels that overflowed the stack (here
/// 12,000, a 72 KB Dockerfile) fails the build with an error naming the Dockerfile's line.
#[test]
fn deeply_nested_expansion_fails_naming_the_line() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    let levels = 12_000;
    let word = format!("{}x{}", "${v:-".repeat(levels), "}".repeat(levels));
    let dockerfile = format!("FROM scratch\nENV v={word}\n");
    assert!(dockerfile.len() > 72_000);
    write_files(&context, &[("Dockerfile", &dockerfile)]);
    let output = kiln(&[
        "build",
        "--progress",
        "plain",
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
        "--output",
        &format!("type=oci,dest={}", work.path().join("layout").display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(
        stderr.contains("variable expansions nested more than 256 levels deep"),
        "{stderr}"
    );
}

/// Builds a `FROM scratch` Dockerfile of `lines` ENV lines; the time it took.
fn time_env_lines(work: &Path, lines: usize) -> std::time::Duration {
    let context = work.join(format!("env-{lines}"));
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..lines {
        dockerfile.push_str(&format!("ENV V{i}=value{i}\n"));
    }
    write_files(&context, &[("Dockerfile", &dockerfile)]);
    let layout = work.join(format!("layout-{lines}"));
    let started = std::time::Instant::now();
    build(
        &context,
        work,
        &layout,
        "v1",
        &["--provenance=false", "--sbom=false"],
    );
    let took = started.elapsed();
    let env = env_of(&config_of(&layout));
    assert_eq!(env.len(), lines + 1, "PATH and every ENV");
    took
}

/// 100,000 ENV lines build in linear time: ten times the lines take nowhere near a hundred
/// times as long (setting a variable used to scan every earlier one), and well under the
/// bound in a debug build.
#[test]
fn one_hundred_thousand_env_lines_build_in_linear_time() {
    let work = tempfile::tempdir().unwrap();
    let small = time_env_lines(work.path(), 10_000);
    let large = time_env_lines(work.path(), 100_000);
    assert!(
        large < std::time::Duration::from_secs(30),
        "100,000 ENV lines took {large:?}"
    );
    assert!(
        large < small * 30,
        "10,000 ENV lines took {small:?}, 100,000 took {large:?}: not linear"
    );
}

/// (uid, gid) of `path`.
fn owner_of(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

/// In a stage without `/etc/passwd` and `/etc/group`, `root` is 0:0 and numbers are taken as
/// they are, for COPY --chown, WORKDIR and a sandboxed RUN (BuildKit's rule); WORKDIR under an
/// unknown name creates root-owned directories as BuildKit does; a RUN or a COPY --chown that
/// needs an unknown name fails naming it.
#[test]
fn root_and_numeric_users_need_no_passwd_file() {
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    write_files(
        &context,
        &[
            ("f", "file\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY rootfs/ /\n\
                 COPY --chown=root f /by-root\nCOPY --chown=root:root f /by-root-root\n\
                 COPY --chown=1000 f /by-number\nCOPY --chown=1000:root f /by-number-root\n\
                 USER root\nWORKDIR /as-root\nRUN id -u > /as-root/ids && id -g >> /as-root/ids\n\
                 USER 1000\nWORKDIR /as-number\nRUN id -u > ids && id -g >> ids\n\
                 USER nobody\nWORKDIR /as-unknown\nUSER 0:0\n",
            ),
        ],
    );
    assert!(!context.join("rootfs/etc").exists());
    let layout = work.path().join("layout");
    // The last USER is numeric: umoci resolves the config's USER against /etc/passwd too.
    build(&context, work.path(), &layout, "v1", &[]);
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:v1", layout.display())])
            .arg(&bundle),
    );
    let root = bundle.join("rootfs");
    for (path, want) in [
        ("by-root", (0, 0)),
        ("by-root-root", (0, 0)),
        ("by-number", (1000, 1000)),
        ("by-number-root", (1000, 0)),
        ("as-root", (0, 0)),
        ("as-number", (1000, 1000)),
        ("as-unknown", (0, 0)),
    ] {
        assert_eq!(owner_of(&root.join(path)), want, "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("as-root/ids")).unwrap(),
        "0\n0\n"
    );
    // A number with no passwd entry runs with group 0, as runc resolves it.
    assert_eq!(
        std::fs::read_to_string(root.join("as-number/ids")).unwrap(),
        "1000\n0\n"
    );

    for (step, instruction) in [
        ("USER nobody\nRUN id", "RUN id"),
        ("COPY --chown=nobody f /f", "COPY --chown=nobody f /f"),
    ] {
        let failing = work.path().join(format!("ctx-{}", instruction.len()));
        busybox_context(&failing);
        write_files(
            &failing,
            &[
                ("f", "file\n"),
                (
                    "Dockerfile",
                    &format!("FROM scratch\nCOPY rootfs/ /\n{step}\n"),
                ),
            ],
        );
        let output = kiln(&[
            "build",
            "--progress",
            "plain",
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={}", work.path().join("failed").display()),
            failing.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(instruction), "{stderr}");
        assert!(stderr.contains("unable to find user nobody"), "{stderr}");
    }
}

/// Runs `kiln ARGS` with `stdin` on its standard input.
fn kiln_with_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the kiln binary");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin)
        .expect("kiln reads its standard input");
    child.wait_with_output().expect("kiln finishes")
}

/// `kiln build -f - DIR` reads the Dockerfile from standard input and the files from DIR;
/// `kiln build -` reads it from standard input with an empty context (a COPY finds nothing);
/// an empty standard input, `-` with `-f`, and an archive fail with a usage error.
#[test]
fn the_dockerfile_can_come_from_standard_input() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(&context, &[("hello.txt", "hello\n")]);
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let output_arg = format!("type=oci,dest={}", layout.display());
    let base_args = [
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--output",
        &output_arg,
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base_args
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    let args = with(&["-t", "kiln-test:file", "-f", "-", context.to_str().unwrap()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = kiln_with_stdin(
        &refs,
        b"FROM scratch\nCOPY hello.txt /hello.txt\nLABEL from=stdin\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let args = with(&["-t", "kiln-test:nocontext", "-"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = kiln_with_stdin(&refs, b"FROM scratch\nENV only=stdin\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert!(
        tags.contains(&"file") && tags.contains(&"nocontext"),
        "{tags:?}"
    );

    let output = kiln_with_stdin(&refs, b"FROM scratch\nCOPY hello.txt /hello.txt\n");
    assert_eq!(
        output.status.code(),
        Some(1),
        "an empty context has no files"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("hello.txt"));

    for (extra, stdin, want) in [
        (
            vec!["-f", "-", context.to_str().unwrap()],
            &b""[..],
            "standard input holds no Dockerfile",
        ),
        (
            vec!["-"],
            &b"\n  \n"[..],
            "standard input holds no Dockerfile",
        ),
        (vec!["-f", "-", "-"], &b"FROM scratch\n"[..], "takes no -f"),
    ] {
        let args = with(&extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = kiln_with_stdin(&refs, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
    let mut archive = vec![0u8; 1024];
    archive[257..262].copy_from_slice(b"ustar");
    let args = with(&["-"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = kiln_with_stdin(&refs, &archive);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds an archive"), "{stderr}");
}

/// A sandboxed RUN sees BuildKit's hostname (`buildkitsandbox`) and BuildKit's `/etc/hosts`
/// with the `--add-host` entries; the image's own `/etc/hosts` is left as it was; a
/// `host-gateway` or a bad address is refused with a usage error.
#[test]
fn sandboxed_runs_see_buildkits_hostname_and_added_hosts() {
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    busybox_context(&context);
    write_files(
        &context,
        &[
            ("rootfs/etc/hosts", "# the image's own\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY rootfs/ /\n\
                 RUN hostname > /hostname && cat /etc/hosts > /hosts\n",
            ),
        ],
    );
    let layout = work.path().join("layout");
    build(
        &context,
        work.path(),
        &layout,
        "v1",
        &[
            "--add-host",
            "db.internal:10.0.0.2",
            "--add-host",
            "six:::1",
            "--add-host",
            "eq=192.168.1.1",
        ],
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:v1", layout.display())])
            .arg(&bundle),
    );
    let root = bundle.join("rootfs");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    assert_eq!(read("hostname"), "buildkitsandbox\n");
    assert_eq!(
        read("hosts"),
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         10.0.0.2\tdb.internal\n::1\tsix\n192.168.1.1\teq\n"
    );
    assert_eq!(read("etc/hosts"), "# the image's own\n");

    for (spec, want) in [
        ("gw:host-gateway", "host-gateway"),
        ("db:10.0.0.300", "invalid IP address"),
        ("nohost", "expected HOST:IP"),
    ] {
        let output = kiln(&[
            "build",
            "--add-host",
            spec,
            "--output",
            &format!("type=oci,dest={}", work.path().join("refused").display()),
            context.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(want), "{spec}: {stderr}");
    }
}

/// The provenance statement of the image tagged `tag` in `layout`.
fn provenance_of(layout: &Path, cache: &Path, tag: &str) -> serde_json::Value {
    let inspected = kiln_ok(&[
        "inspect",
        "--format",
        "json",
        "--cache-dir",
        cache.to_str().unwrap(),
        &format!("oci:{}:{tag}", layout.display()),
    ]);
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let blob = inspected["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["predicateType"] == "https://slsa.dev/provenance/v1")
        .and_then(|a| a["blob"].as_str())
        .expect("a provenance statement")
        .trim_start_matches("sha256:")
        .to_owned();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(blob)).unwrap()).unwrap()
}

/// A `FROM scratch` build lists its context among the resolved dependencies (by its digest;
/// by repository and commit when the context is a git checkout), not only in
/// `externalParameters`.
#[test]
fn provenance_lists_the_context_as_a_resolved_dependency() {
    let git = require_tool("git");
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let layout = work.path().join("layout");
    build(&context, work.path(), &layout, "v1", &["--reproducible"]);
    let statement = provenance_of(&layout, &work.path().join("cache"), "v1");
    let definition = &statement["predicate"]["buildDefinition"];
    let source = &definition["externalParameters"]["source"];
    assert_eq!(source["uri"], "context", "{definition}");
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    assert!(
        dependencies
            .iter()
            .any(|d| d["uri"] == "context" && d["digest"] == source["digest"]),
        "{definition}"
    );

    let git_run = |args: &[&str]| {
        run_ok(
            Command::new(&git)
                .args(["-c", "user.name=kiln", "-c", "user.email=kiln@localhost"])
                .args(args)
                .current_dir(&context),
        )
    };
    git_run(&["init", "-q"]);
    git_run(&[
        "remote",
        "add",
        "origin",
        "https://example.com/acme/app.git",
    ]);
    git_run(&["add", "."]);
    git_run(&["commit", "-q", "-m", "context"]);
    let commit = git_run(&["rev-parse", "HEAD"]).trim().to_owned();
    let layout = work.path().join("layout-git");
    build(&context, work.path(), &layout, "v1", &["--reproducible"]);
    let statement = provenance_of(&layout, &work.path().join("cache"), "v1");
    let dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        dependencies
            .iter()
            .any(|d| d["digest"]["gitCommit"] == commit.as_str()
                && d["uri"]
                    .as_str()
                    .is_some_and(|u| u.contains("example.com/acme/app"))),
        "{dependencies:?}"
    );
}

/// buildx's `--build-context NAME=DIR|oci-layout://DIR[:TAG]`: `FROM NAME` starts from the
/// directory's files (its .dockerignore applied) or the layout's image, and `COPY --from=NAME`
/// copies from either, in place of a stage of the same name (never built); other kinds of
/// context are refused by name.
#[test]
fn named_build_contexts_serve_from_and_copy_from() {
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let base_context = work.path().join("base-ctx");
    write_files(
        &base_context,
        &[
            ("b.txt", "from the image\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY b.txt /b.txt\nENV FROM_IMAGE=yes\n",
            ),
        ],
    );
    let base = work.path().join("base");
    build(
        &base_context,
        work.path(),
        &base,
        "1",
        &["--provenance=false", "--sbom=false"],
    );
    let extra = work.path().join("extra");
    write_files(
        &extra,
        &[
            ("e.txt", "extra\n"),
            ("ignored.txt", "no\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[
            ("m.txt", "main\n"),
            (
                "Dockerfile",
                "FROM registry.invalid/never-pulled AS extra\n\
                 FROM extra AS from_dir\nCOPY m.txt /m.txt\n\
                 FROM img\nCOPY --from=extra e.txt /copied/e.txt\n\
                 COPY --from=img /b.txt /copied/b.txt\nCOPY --from=from_dir / /from-dir/\n",
            ),
        ],
    );
    let layout = work.path().join("layout");
    let extra_arg = format!("extra={}", extra.display());
    let img_arg = format!("img=oci-layout://{}:1", base.display());
    build(
        &context,
        work.path(),
        &layout,
        "v1",
        &["--build-context", &extra_arg, "--build-context", &img_arg],
    );
    let config = config_of(&layout);
    assert!(
        env_of(&config).contains(&"FROM_IMAGE=yes".to_owned()),
        "{config}"
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:v1", layout.display())])
            .arg(&bundle),
    );
    let root = bundle.join("rootfs");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    assert_eq!(read("b.txt"), "from the image\n");
    assert_eq!(read("copied/e.txt"), "extra\n");
    assert_eq!(read("copied/b.txt"), "from the image\n");
    assert_eq!(read("from-dir/e.txt"), "extra\n");
    assert_eq!(read("from-dir/m.txt"), "main\n");
    assert!(!root.join("from-dir/ignored.txt").exists());

    for (spec, want) in [
        ("x=docker-image://alpine", "not supported yet"),
        ("x=/nonexistent/dir", "is not a directory"),
        ("novalue", "expected NAME=VALUE"),
    ] {
        let output = kiln(&[
            "build",
            "--build-context",
            spec,
            "--output",
            &format!("type=oci,dest={}", work.path().join("refused").display()),
            context.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(want), "{spec}: {stderr}");
    }
}
