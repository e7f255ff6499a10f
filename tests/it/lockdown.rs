//! kiln where rootless builders cannot run, and kaniko's command line.
//!
//! - kiln's own image (kiln-image/Dockerfile, built by scripts/kiln-image with a static kiln)
//!   runs under runc as uid 1000 with no capabilities, `noNewPrivileges`, a read-only root and
//!   a seccomp profile that denies what Docker's default profile denies to an unprivileged
//!   container (`unshare`, `setns`, `mount`, `pivot_root`, `clone` with namespace flags,
//!   `clone3` with ENOSYS). From mounted contexts it builds the seed pipeline (the base with
//!   users and `apk upgrade`, the app with pip) natively and pushes it to Debian's
//!   docker-registry on 127.0.0.1 with htpasswd auth, the app through `/kaniko/executor` with the
//!   credentials in `/kaniko/.docker/config.json`; the app is the image `kiln build` makes on
//!   the host. A Dockerfile with a RUN only the sandbox can run fails there, naming the step,
//!   seccomp and the ways out.
//! - In a user namespace whose `user.max_user_namespaces` is 0, native steps build, the first
//!   line names the sysctl, and a sandboxed RUN fails naming it.
//! - `kiln kaniko`, run as `executor`, with the command line of GitLab's kaniko template,
//!   pushes the image `kiln build` pushes, and writes kaniko's digest files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

use crate::support::registry::{self, Auth, PASSWORD, TestRegistry, USER};
use crate::support::{require_tool, run_ok, seed_standins, wheels};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BASE: &str = "ghcr.io/kiln-project/python-slsa-base";
const APP: &str = "ghcr.io/kiln-project/python-slsa-app";

/// A docker `config.json` with the test registry's credentials, in `dir`.
fn write_docker_config(dir: &Path, registry: &TestRegistry) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            registry.host()
        ),
    )
    .unwrap();
    path
}

/// The seccomp profile of the test: what Docker's default profile refuses an unprivileged
/// container, as rules on an allow-all default (the profile's allow list is not the point).
/// Its clone rule refuses any namespace flag; clone3 gets ENOSYS as in Docker's, so libc falls
/// back to clone.
fn locked_down_seccomp() -> serde_json::Value {
    let namespace_flags: [u64; 7] = [
        0x0002_0000, // CLONE_NEWNS
        0x0200_0000, // CLONE_NEWCGROUP
        0x0400_0000, // CLONE_NEWUTS
        0x0800_0000, // CLONE_NEWIPC
        0x1000_0000, // CLONE_NEWUSER
        0x2000_0000, // CLONE_NEWPID
        0x4000_0000, // CLONE_NEWNET
    ];
    let mut rules = vec![
        serde_json::json!({
            "names": ["unshare", "setns", "mount", "umount2", "pivot_root", "open_tree",
                      "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
        }),
        serde_json::json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS,
        }),
    ];
    for flag in namespace_flags {
        rules.push(serde_json::json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
}

/// kiln's image, built by scripts/kiln-image (dev profile: a static kiln compiles faster) and
/// unpacked by umoci into a runc bundle whose config is locked down.
struct KilnImageBundle {
    bundle: PathBuf,
    /// The bundle's config as umoci wrote it (plus what the test adds); each run starts from it.
    config: serde_json::Value,
    state: PathBuf,
    runs: usize,
}

impl KilnImageBundle {
    fn build(work: &Path) -> KilnImageBundle {
        require_tool("umoci");
        require_tool("runc");
        require_tool("readelf");
        let layout = work.join("kiln-image-oci");
        let output = Command::new(format!("{REPO}/scripts/kiln-image"))
            .args(["--profile", "dev", "-q", "-t", "kiln:test", "--cache-dir"])
            .arg(work.join("kiln-image-cache"))
            .arg("--output")
            .arg(format!("type=oci,dest={}", layout.display()))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("failed to run scripts/kiln-image");
        assert!(
            output.status.success(),
            "scripts/kiln-image failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bundle = work.join("kiln-bundle");
        run_ok(Command::new("umoci").args([
            "unpack",
            "--image",
            &format!("{}:test", layout.display()),
            bundle.to_str().unwrap(),
        ]));
        let rootfs = bundle.join("rootfs");
        for absent in ["bin/sh", "usr/bin/sh", "bin/busybox"] {
            assert!(
                !rootfs.join(absent).exists(),
                "the image has no shell: {absent}"
            );
        }
        let tmp = std::fs::metadata(rootfs.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777, "/tmp");
        let config =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        KilnImageBundle {
            bundle,
            config,
            state: work.join("runc-state"),
            runs: 0,
        }
    }

    /// Runs `args` in the image as uid 1000, with the locked-down settings, `env` added (an
    /// entry `!NAME` removes the image's NAME) and
    /// `binds` (host path = container path; read-only unless named in `writable`) mounted.
    fn run(&mut self, args: &[&str], env: &[String], binds: &[&Path], writable: &Path) -> Output {
        let path = self.bundle.join("config.json");
        let mut config = self.config.clone();
        let process = &mut config["process"];
        process["terminal"] = false.into();
        process["args"] = serde_json::json!(args);
        process["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        process["noNewPrivileges"] = true.into();
        process["capabilities"] = serde_json::json!({
            "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
        });
        let process_env = process["env"].as_array_mut().unwrap();
        let removed: Vec<String> = env
            .iter()
            .filter_map(|e| e.strip_prefix('!'))
            .chain(["KILN_CACHE_DIR"])
            .map(|name| format!("{name}="))
            .collect();
        process_env.retain(|e| !removed.iter().any(|r| e.as_str().unwrap().starts_with(r)));
        process_env.extend(
            env.iter()
                .filter(|e| !e.starts_with('!'))
                .map(|e| e.as_str().into()),
        );
        config["root"]["readonly"] = true.into();
        let mounts = config["mounts"].as_array_mut().unwrap();
        // The tmpfs first: the binds below /tmp go on top of it.
        let mut mounts_added = vec![serde_json::json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev"],
        })];
        mounts_added.extend(binds.iter().map(|bind| {
            serde_json::json!({
                "destination": bind, "type": "bind", "source": bind,
                "options": ["rbind", "ro"],
            })
        }));
        mounts_added.push(serde_json::json!({
            "destination": writable, "type": "bind", "source": writable,
            "options": ["rbind", "rw"],
        }));
        mounts.retain(|m| m["destination"] != "/tmp");
        for bind in binds.iter().copied().chain([writable]) {
            mounts.retain(|m| m["destination"] != bind.to_str().unwrap());
        }
        mounts.extend(mounts_added);
        config["linux"]["seccomp"] = locked_down_seccomp();
        // The registry listens on the host's 127.0.0.1.
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        self.runs += 1;
        let id = format!("kiln-lockdown-{}-{}", std::process::id(), self.runs);
        let output = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("failed to start runc");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &id])
            .output();
        output
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies the seed's base (base-image/Dockerfile) and app (DOCKERFILE on the base's tag, the
/// app/ directory) into contexts under `work`: (base context, app context, app Dockerfile).
fn seed_contexts(work: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let base = work.join("base-context");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::copy(
        format!("{REPO}/base-image/Dockerfile"),
        base.join("Dockerfile"),
    )
    .unwrap();
    let app = work.join("app-context");
    std::fs::create_dir_all(app.join("app")).unwrap();
    for file in ["app.py", "requirements.txt"] {
        std::fs::copy(format!("{REPO}/app/{file}"), app.join("app").join(file)).unwrap();
    }
    let dockerfile = std::fs::read_to_string(format!("{REPO}/DOCKERFILE")).unwrap();
    let from = dockerfile
        .lines()
        .find(|line| line.starts_with("FROM ghcr.io/"))
        .expect("DOCKERFILE starts from the base on ghcr.io");
    let app_dockerfile = app.join("Dockerfile");
    std::fs::write(
        &app_dockerfile,
        dockerfile.replace(from, &format!("FROM {BASE}:latest AS base")),
    )
    .unwrap();
    (base, app, app_dockerfile)
}

#[test]
fn kiln_image_builds_the_seed_pipeline_in_a_locked_down_container() {
    require_tool("skopeo");
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let registry = TestRegistry::start(Auth::Htpasswd);
    let docker_config = write_docker_config(&work.join("docker"), &registry);
    let conf = work.join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io/library/python\"\nlocation = \"{0}/library/python\"\n\n\
             [[registry]]\nprefix = \"ghcr.io/kiln-project\"\nlocation = \"{0}/kiln-project\"\n",
            registry.host()
        ),
    )
    .unwrap();
    let host_kiln = |args: &[&str], cache: &str| -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("DOCKER_CONFIG", work.join("docker"))
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .env("KILN_CACHE_DIR", work.join(cache))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    };

    // The stand-in python:3.11-alpine and its apk mirror (a directory the base names).
    let standins_dir = work.join("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write(&standins_dir, mirror.to_str().unwrap());
    let pushed = host_kiln(
        &[
            "push",
            &format!(
                "oci:{}:{}",
                standins.base_layout.display(),
                seed_standins::BASE_TAG
            ),
            "python:3.11-alpine",
        ],
        "host-cache",
    );
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));

    let (base_context, app_context, app_dockerfile) = seed_contexts(work);
    let wheels = wheels::seed_wheel_dir("musllinux_1_2_x86_64");
    let find_links = format!("PIP_FIND_LINKS={}", wheels.display());
    let out = work.join("out");
    std::fs::create_dir(&out).unwrap();
    nix::unistd::chown(
        &out,
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();
    let kaniko_config = Path::new("/kaniko/.docker/config.json");

    let mut image = KilnImageBundle::build(work);
    // The container sees the contexts, the mirror, the wheels and the registries.conf read-only
    // at their host paths, and writes only to `out`; the credentials are kaniko's file.
    let binds: Vec<&Path> = vec![&base_context, &app_context, &standins_dir, &wheels, &conf];
    let env = [
        format!("CONTAINERS_REGISTRIES_CONF={}", conf.display()),
        format!("KILN_CACHE_DIR={}", out.join("cache").display()),
    ];
    // kaniko's config.json, mounted where kaniko's image has it.
    image.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": kaniko_config, "type": "bind", "source": docker_config,
            "options": ["rbind", "ro"],
        }));

    // The base: users and `apk upgrade`, natively, pushed with `kiln build` (the image's
    // DOCKER_CONFIG is kaniko's directory).
    let base_env = env.to_vec();
    let base = image.run(
        &[
            "/usr/bin/kiln",
            "build",
            "--progress",
            "plain",
            "-t",
            &format!("{BASE}:latest"),
            "--push",
            base_context.to_str().unwrap(),
        ],
        &base_env,
        &binds,
        &out,
    );
    let base_log = text(&base.stderr);
    assert!(base.status.success(), "the base build failed:\n{base_log}");
    let first_line = base_log.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with(
            "kiln: sandbox: unavailable (unshare: Operation not permitted: a seccomp filter"
        ) && first_line.ends_with("; native steps only"),
        "the first line says what the environment allows: {first_line}"
    );
    let base_digest = text(&base.stdout).trim().to_owned();

    // The app: pip install, COPY --from --chown, pushed through kaniko's entry point with
    // kaniko's flags and kaniko's credentials file, found without DOCKER_CONFIG.
    let digest_file = out.join("digest");
    let mut app_env = env.to_vec();
    app_env.push("!DOCKER_CONFIG".to_owned());
    let app = image.run(
        &[
            "/kaniko/executor",
            "--context",
            &format!("dir://{}", app_context.display()),
            "--dockerfile",
            app_dockerfile.to_str().unwrap(),
            "--destination",
            &format!("{APP}:latest"),
            "--build-arg",
            &find_links,
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
        &app_env,
        &binds,
        &out,
    );
    assert!(
        app.status.success(),
        "the app build failed:\n{}",
        text(&app.stderr)
    );
    let app_digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(app_digest.starts_with("sha256:"), "{app_digest:?}");

    // What the registry holds is what kiln builds on the host from the same inputs.
    let creds = format!("{USER}:{PASSWORD}");
    let inspect = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&registry::skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{}/{path}:latest", registry.host()),
        ]))
        .unwrap()
    };
    assert_eq!(
        inspect("kiln-project/python-slsa-base")["Digest"],
        base_digest.as_str()
    );
    assert_eq!(
        inspect("kiln-project/python-slsa-app")["Digest"],
        app_digest.as_str()
    );
    let host_build = host_kiln(
        &[
            "build",
            "-q",
            "-f",
            app_dockerfile.to_str().unwrap(),
            "--build-arg",
            &find_links,
            app_context.to_str().unwrap(),
        ],
        "host-build-cache",
    );
    assert!(host_build.status.success(), "{}", text(&host_build.stderr));
    assert_eq!(
        text(&host_build.stdout).trim(),
        app_digest,
        "the locked-down container and the host build the same image"
    );

    // A RUN only the sandbox can run fails, naming the step, the reason and the ways out.
    let sandboxed = work.join("sandboxed-context");
    std::fs::create_dir_all(&sandboxed).unwrap();
    std::fs::write(
        sandboxed.join("Dockerfile"),
        format!("FROM {BASE}:latest\nUSER root\nRUN make install\n"),
    )
    .unwrap();
    let mut sandboxed_binds = binds.clone();
    sandboxed_binds.push(&sandboxed);
    let refused = image.run(
        &[
            "/usr/bin/kiln",
            "build",
            "--progress",
            "plain",
            sandboxed.to_str().unwrap(),
        ],
        &base_env,
        &sandboxed_binds,
        &out,
    );
    let refused_log = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{refused_log}");
    for expected in [
        "Dockerfile:3: `RUN make install` failed",
        "needs kiln's sandbox (user and mount namespaces)",
        "unshare: Operation not permitted: a seccomp filter forbids user namespaces",
        "native instructions",
        "where user namespaces are allowed",
    ] {
        assert!(
            refused_log.contains(expected),
            "`{expected}` in:\n{refused_log}"
        );
    }
}

#[test]
fn kaniko_command_line_of_the_gitlab_template_pushes_what_kiln_build_pushes() {
    require_tool("skopeo");
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let registry = TestRegistry::start(Auth::Htpasswd);
    write_docker_config(&work.join("docker"), &registry);
    // A project as GitLab checks it out: $CI_PROJECT_DIR with its Dockerfile.
    let project = work.join("builds/group/project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/main.txt"), "hello from the project\n").unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        "FROM scratch\nARG VERSION=dev\nCOPY src/ /srv/\nLABEL version=$VERSION\nWORKDIR /srv\n",
    )
    .unwrap();
    // kaniko's entry point is the same binary under the name `executor`.
    let executor = work.join("kaniko/executor");
    std::fs::create_dir_all(executor.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), &executor).unwrap();
    let image = format!("{}/group/project", registry.host());
    let run = |program: &Path, args: &[&str], cache: &str| -> Output {
        Command::new(program)
            .args(args)
            .env("DOCKER_CONFIG", work.join("docker"))
            .env("KILN_CACHE_DIR", work.join(cache))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    };

    // GitLab's template: `/kaniko/executor --context "${CI_PROJECT_DIR}" --dockerfile
    // "${CI_PROJECT_DIR}/Dockerfile" --destination "${CI_REGISTRY_IMAGE}:${CI_COMMIT_TAG}"`,
    // plus the digest files pipelines pass on to later jobs.
    let project_dir = project.to_str().unwrap();
    let kaniko = run(
        &executor,
        &[
            "--context",
            project_dir,
            "--dockerfile",
            &format!("{project_dir}/Dockerfile"),
            "--destination",
            &format!("{image}:v1.0.0"),
            "--build-arg",
            "VERSION=1.0.0",
            "--digest-file",
            work.join("digest").to_str().unwrap(),
            "--image-name-with-digest-file",
            work.join("image-name").to_str().unwrap(),
        ],
        "kaniko-cache",
    );
    assert!(kaniko.status.success(), "{}", text(&kaniko.stderr));
    let digest = std::fs::read_to_string(work.join("digest")).unwrap();
    assert!(
        digest.starts_with("sha256:") && !digest.ends_with('\n'),
        "{digest:?}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("image-name")).unwrap(),
        format!("{image}@{digest}\n")
    );

    let kiln_build = run(
        Path::new(env!("CARGO_BIN_EXE_kiln")),
        &[
            "build",
            "-q",
            "--build-arg",
            "VERSION=1.0.0",
            "-t",
            &format!("{image}:built"),
            "--push",
            project_dir,
        ],
        "build-cache",
    );
    assert!(kiln_build.status.success(), "{}", text(&kiln_build.stderr));
    assert_eq!(text(&kiln_build.stdout).trim(), digest, "the same image");
    let creds = format!("{USER}:{PASSWORD}");
    for tag in ["v1.0.0", "built"] {
        let inspected: serde_json::Value = serde_json::from_slice(&registry::skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{image}:{tag}"),
        ]))
        .unwrap();
        assert_eq!(inspected["Digest"], digest.as_str(), "{tag}");
    }

    // --no-push with kaniko's local outputs: the same image in an OCI layout and a
    // docker-archive tarball, read back by skopeo.
    let layout = work.join("layout");
    let tarball = work.join("image.tar");
    let local = run(
        &executor,
        &[
            "--context",
            &format!("dir://{project_dir}"),
            "--destination",
            &format!("{image}:v1.0.0"),
            "--build-arg=VERSION=1.0.0",
            "--no-push",
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "--tar-path",
            tarball.to_str().unwrap(),
        ],
        "kaniko-cache",
    );
    assert!(local.status.success(), "{}", text(&local.stderr));
    let from_layout: serde_json::Value = serde_json::from_slice(&registry::skopeo(&[
        "inspect",
        &format!("oci:{}:v1.0.0", layout.display()),
    ]))
    .unwrap();
    assert_eq!(from_layout["Digest"], digest.as_str());
    let from_tarball: serde_json::Value = serde_json::from_slice(&registry::skopeo(&[
        "inspect",
        "--config",
        &format!("docker-archive:{}", tarball.display()),
    ]))
    .unwrap();
    assert_eq!(from_tarball["config"]["Labels"]["version"], "1.0.0");

    // --registry-mirror: Docker Hub's `library/project` is pulled from the mirror (this
    // registry), never from Docker Hub.
    let pushed_base = run(
        Path::new(env!("CARGO_BIN_EXE_kiln")),
        &[
            "push",
            &format!("oci:{}:v1.0.0", layout.display()),
            &format!("{}/library/project:1", registry.host()),
        ],
        "kaniko-cache",
    );
    assert!(
        pushed_base.status.success(),
        "{}",
        text(&pushed_base.stderr)
    );
    let on_hub = work.join("on-hub");
    std::fs::create_dir_all(&on_hub).unwrap();
    std::fs::write(
        on_hub.join("Dockerfile"),
        "FROM project:1
LABEL stage=mirrored
",
    )
    .unwrap();
    let mirrored = run(
        &executor,
        &[
            "--context",
            on_hub.to_str().unwrap(),
            "--no-push",
            "--registry-mirror",
            &registry.host(),
        ],
        "mirror-cache",
    );
    assert!(mirrored.status.success(), "{}", text(&mirrored.stderr));

    // A flag kiln cannot honour is named, never ignored; so is a context kind it lacks.
    for (args, expected) in [
        (
            vec![
                "--no-push",
                "--context",
                project_dir,
                "--snapshot-mode=redo",
            ],
            "kaniko's `--snapshot-mode`",
        ),
        (
            vec![
                "--no-push",
                "--context",
                "git://example.test/group/project.git",
            ],
            "`git://` contexts are not supported",
        ),
        (
            vec![
                "--context",
                project_dir,
                "--cache=true",
                "--cache-ttl=24h",
                "--destination",
                "x.test/a",
            ],
            "kaniko's `--cache-ttl=24h`",
        ),
    ] {
        let refused = run(&executor, &args, "kaniko-cache");
        let stderr = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs kiln in a user namespace of its own whose `user.max_user_namespaces` is 0 (the sysctl
/// is per user namespace, so the machine's stays as it is).
fn kiln_without_user_namespaces(args: &[&str], cache: &Path) -> Output {
    require_tool("unshare");
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"";
    Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_CACHE_DIR", cache)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("failed to start unshare")
}

#[test]
fn with_user_namespaces_disabled_native_steps_build_and_a_sandboxed_run_names_the_sysctl() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /srv/\nWORKDIR /srv\n",
    )
    .unwrap();
    std::fs::write(
        context.join("Dockerfile.run"),
        "FROM scratch\nCOPY hello.txt /srv/\nRUN make install\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let context_arg = context.to_str().unwrap();

    let native =
        kiln_without_user_namespaces(&["build", "--progress", "plain", context_arg], &cache);
    let log = text(&native.stderr);
    assert!(native.status.success(), "{log}");
    assert_eq!(
        log.lines().next().unwrap_or_default(),
        "kiln: sandbox: unavailable (unshare: No space left on device: user namespaces are \
         disabled (user.max_user_namespaces = 0)); native steps only"
    );

    let dockerfile = context.join("Dockerfile.run");
    let refused = kiln_without_user_namespaces(
        &[
            "build",
            "--progress",
            "plain",
            "-f",
            dockerfile.to_str().unwrap(),
            context_arg,
        ],
        &cache,
    );
    let log = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{log}");
    for expected in [
        "Dockerfile.run:3: `RUN make install` failed",
        "user.max_user_namespaces = 0",
        "native instructions",
        "allows unprivileged user namespaces",
    ] {
        assert!(log.contains(expected), "`{expected}` in:\n{log}");
    }
}
