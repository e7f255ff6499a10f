//! The repository's own pipeline end to end, as `scripts/demo` and the workflows run it: the
//! base image (`base-image/Dockerfile`), `kiln pin` of `DOCKERFILE` to the pushed digest, the
//! application image on it (pip install --user, COPY --from --chown, USER appuser), both pushed
//! with signed provenance and an SBOM to Debian's docker-registry on 127.0.0.1 under their real
//! names (`ghcr.io/kiln-project/...`, `python:3.11-alpine`) through a registries.conf, the chain
//! verified with `kiln verify`, and the app pulled back with skopeo.
//!
//! Two bases:
//! - the Alpine-like stand-in for python:3.11-alpine (tests/it/support/seed_standins.rs), through
//!   the repository's real `base-image/Dockerfile` (users, `apk update && apk upgrade`); it has
//!   busybox but no Python, so the image runs a shell check under runc;
//! - a real Debian bookworm rootfs with CPython 3.11 made by `debootstrap` (Debian's package,
//!   from the mirror apt is configured for; cached in `~/.cache/kiln-tests`), pinned with
//!   `ADD --checksum`, on which the app image runs under runc and answers HTTP as uid 1000.

use crate::support;
use crate::support::debian_rootfs;
use crate::support::registry;
use crate::support::seed_standins;
use crate::support::wheels;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use registry::{Auth, TestRegistry};
use support::{require_tool, run_ok};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BASE: &str = "ghcr.io/kiln-project/python-slsa-base";
const APP: &str = "ghcr.io/kiln-project/python-slsa-app";

/// One pipeline run's surroundings: the registry, the registries.conf naming it for ghcr.io and
/// Docker Hub, a signing key, kiln's cache.
struct Pipeline {
    registry: TestRegistry,
    work: tempfile::TempDir,
    conf: PathBuf,
}

impl Pipeline {
    fn start() -> Pipeline {
        let registry = TestRegistry::start(Auth::None);
        let work = tempfile::tempdir().unwrap();
        let conf = work.path().join("registries.conf");
        std::fs::write(
            &conf,
            format!(
                "[[registry]]\nprefix = \"docker.io/library/python\"\nlocation = \"{0}/library/python\"\n\n\
                 [[registry]]\nprefix = \"ghcr.io/kiln-project\"\nlocation = \"{0}/kiln-project\"\n",
                registry.host()
            ),
        )
        .unwrap();
        let pipeline = Pipeline {
            registry,
            work,
            conf,
        };
        pipeline.kiln_ok(&["keygen", pipeline.path("keys").to_str().unwrap()]);
        pipeline
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn kiln(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", &self.conf)
            .env("KILN_CACHE_DIR", self.path("cache"))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("failed to start kiln")
    }

    fn kiln_ok(&self, args: &[&str]) -> String {
        let output = self.kiln(args);
        assert!(
            output.status.success(),
            "kiln {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `kiln build --push` with signed provenance and SBOM, tagged `latest`, the commit (when
    /// the context is in this checkout) and the date, as the workflows do; the digest.
    fn build_and_push(
        &self,
        image: &str,
        dockerfile: &Path,
        context: &Path,
        extra: &[&str],
    ) -> String {
        let key = self.path("keys/private.pem");
        let mut tags = vec![format!("{image}:latest"), format!("{image}:{{{{date}}}}")];
        if context.starts_with(REPO) {
            tags.push(format!("{image}:{{{{git_sha}}}}"));
        }
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "-f",
            dockerfile.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--push",
        ];
        for tag in &tags {
            args.extend(["-t", tag.as_str()]);
        }
        args.extend(extra);
        args.push(context.to_str().unwrap());
        let digest = self.kiln_ok(&args);
        assert!(digest.starts_with("sha256:"), "{digest}");
        digest
    }

    /// `kiln verify` of `reference` with the app policy and the pipeline's key.
    fn verify(&self, reference: &str, key: &Path) -> Output {
        self.kiln(&[
            "verify",
            "--key",
            key.to_str().unwrap(),
            "--policy",
            &format!("{REPO}/.github/kiln-app-policy.toml"),
            reference,
        ])
    }

    /// skopeo's view of `repository:tag` on the local registry (as pushed under its real name).
    fn skopeo_inspect(&self, repository: &str, tag: &str, config: bool) -> serde_json::Value {
        let path = repository.strip_prefix("ghcr.io/").unwrap();
        let mut args = vec!["inspect", "--tls-verify=false"];
        if config {
            args.push("--config");
        }
        let target = format!("docker://{}/{path}:{tag}", self.registry.host());
        args.push(&target);
        serde_json::from_slice(&registry::skopeo(&args)).unwrap()
    }

    /// Pulls `repository:latest` back with skopeo into an OCI layout and unpacks it with umoci.
    fn pull_and_unpack(&self, repository: &str, name: &str) -> PathBuf {
        let path = repository.strip_prefix("ghcr.io/").unwrap();
        let layout = self.path(&format!("{name}-layout"));
        registry::skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/{path}:latest", self.registry.host()),
            &format!("oci:{}:latest", layout.display()),
        ]);
        require_tool("umoci");
        let bundle = self.path(&format!("{name}-bundle"));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:latest", layout.display()))
                .arg(&bundle),
        );
        bundle
    }
}

/// A copy of the repository's DOCKERFILE with the base reference `base` (a tag, unpinned), in
/// `dir`.
fn dockerfile_on(dir: &Path, base: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("{REPO}/DOCKERFILE")).unwrap();
    let from = text
        .lines()
        .find(|line| line.starts_with("FROM ghcr.io/"))
        .expect("DOCKERFILE starts from the base on ghcr.io");
    assert!(
        from.contains("@sha256:"),
        "the committed base is pinned: {from}"
    );
    let path = dir.join("DOCKERFILE");
    std::fs::write(&path, text.replace(from, &format!("FROM {base} AS base"))).unwrap();
    path
}

fn from_line(dockerfile: &Path) -> String {
    std::fs::read_to_string(dockerfile)
        .unwrap()
        .lines()
        .find(|line| line.starts_with("FROM ghcr.io/"))
        .unwrap()
        .to_owned()
}

/// Edits an unpacked bundle's runc config: not a terminal, `args` when given, extra `env`,
/// and the host's network namespace when `host_network` (so a server can be reached on
/// 127.0.0.1).
fn configure_bundle(bundle: &Path, args: Option<&[&str]>, env: &[String], host_network: bool) {
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    if let Some(args) = args {
        config["process"]["args"] = serde_json::json!(args);
    }
    let process_env = config["process"]["env"].as_array_mut().unwrap();
    process_env.extend(env.iter().map(|e| e.as_str().into()));
    if host_network {
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// A container started with `runc run` in the background; killed and deleted on drop.
struct Container {
    state: PathBuf,
    id: String,
    child: Child,
    log: PathBuf,
}

impl Container {
    fn start(bundle: &Path, state: &Path, name: &str) -> Container {
        require_tool("runc");
        let id = format!("kiln-seed-{}-{name}", std::process::id());
        let log = state.with_extension(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("runc")
            .arg("--root")
            .arg(state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("failed to start runc");
        Container {
            state: state.to_owned(),
            id,
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The host pid of the container's first process.
    fn pid(&self) -> u32 {
        let state = run_ok(
            Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(["state", &self.id]),
        );
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        state["pid"].as_u64().unwrap() as u32
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let runc = |args: &[&str]| {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(args)
                .output();
        };
        runc(&["kill", &self.id, "KILL"]);
        let _ = self.child.wait();
        runc(&["delete", "--force", &self.id]);
    }
}

/// GET `path` on 127.0.0.1:`port` with HTTP/1.0: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn uid_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap()
        .to_owned()
}

/// The pipeline for linux/amd64 and linux/arm64, as the workflows run it: the stand-in base is
/// an index of both (as python:3.11-alpine is), base and app are each pushed as one image index
/// (the arm64 apk and pip steps computed natively), the pin names the base's index, and the
/// chain verifies.
#[test]
fn alpine_pipeline_for_two_platforms_pushes_an_index_each_and_verifies_the_chain() {
    let p = Pipeline::start();
    let standins_dir = p.path("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write_multi_platform(&standins_dir, mirror.to_str().unwrap());
    p.kiln_ok(&[
        "push",
        &format!(
            "oci:{}:{}",
            standins.base_layout.display(),
            seed_standins::BASE_TAG
        ),
        "python:3.11-alpine",
    ]);
    let platforms = ["--platform", "linux/amd64,linux/arm64"];
    let base_dir = Path::new(REPO).join("base-image");
    let base_digest = p.build_and_push(BASE, &base_dir.join("Dockerfile"), &base_dir, &platforms);
    let dockerfile = p.path("DOCKERFILE");
    std::fs::copy(format!("{REPO}/DOCKERFILE"), &dockerfile).unwrap();
    p.kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        from_line(&dockerfile),
        format!("FROM {BASE}:latest@{base_digest} AS base"),
        "the pin names the base's index"
    );
    let find_links = format!(
        "PIP_FIND_LINKS={} {}",
        wheels::seed_wheel_dir("musllinux_1_2_x86_64").display(),
        wheels::seed_wheel_dir("musllinux_1_2_aarch64").display()
    );
    let mut app_args = vec!["--build-arg", find_links.as_str()];
    app_args.extend(platforms);
    let app_digest = p.build_and_push(APP, &dockerfile, Path::new(REPO), &app_args);
    let verified = p.verify(&format!("{APP}@{app_digest}"), &p.path("keys/public.pem"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success(), "{report}");

    for (image, digest) in [(BASE, &base_digest), (APP, &app_digest)] {
        let path = image.strip_prefix("ghcr.io/").unwrap();
        let raw = registry::skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{path}:latest", p.registry.host()),
        ]);
        assert_eq!(&registry::sha256(&raw), digest, "{image}");
        let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let arches: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(arches, ["amd64", "arm64"], "{image}: {index}");
    }
    let arm64_config: serde_json::Value = serde_json::from_slice(&registry::skopeo(&[
        "inspect",
        "--config",
        "--override-arch",
        "arm64",
        "--tls-verify=false",
        &format!(
            "docker://{}/{}:latest",
            p.registry.host(),
            APP.strip_prefix("ghcr.io/").unwrap()
        ),
    ]))
    .unwrap();
    assert_eq!(arm64_config["architecture"], "arm64");
    assert_eq!(arm64_config["config"]["User"], "appuser");
}

#[test]
fn alpine_pipeline_pins_the_pushed_base_and_verifies_the_chain() {
    let p = Pipeline::start();
    let standins_dir = p.path("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write(&standins_dir, mirror.to_str().unwrap());
    p.kiln_ok(&[
        "push",
        &format!(
            "oci:{}:{}",
            standins.base_layout.display(),
            seed_standins::BASE_TAG
        ),
        "python:3.11-alpine",
    ]);

    // The base, from the repository's own base-image/Dockerfile.
    let base_dir = Path::new(REPO).join("base-image");
    let base_digest = p.build_and_push(BASE, &base_dir.join("Dockerfile"), &base_dir, &[]);
    let pushed = p.skopeo_inspect(BASE, "latest", false);
    assert_eq!(pushed["Digest"], base_digest.as_str());
    let config = p.skopeo_inspect(BASE, "latest", true);
    assert_eq!(config["config"]["User"], "appuser");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.source"],
        "https://github.com/kiln-project/kiln"
    );
    let today = p.skopeo_inspect(BASE, &chrono_free_today(), false);
    assert_eq!(today["Digest"], base_digest.as_str(), "the YYYYMMDD tag");

    // DOCKERFILE's committed pin is not this base: --check says so, `kiln pin` fixes a copy.
    let dockerfile = p.path("DOCKERFILE");
    std::fs::copy(format!("{REPO}/DOCKERFILE"), &dockerfile).unwrap();
    let stale = p.kiln(&["pin", "--check", dockerfile.to_str().unwrap()]);
    assert_eq!(stale.status.code(), Some(1), "{stale:?}");
    p.kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        from_line(&dockerfile),
        format!("FROM {BASE}:latest@{base_digest} AS base")
    );
    p.kiln_ok(&["pin", "--check", dockerfile.to_str().unwrap()]);

    // The application, with the repository root as context (its .dockerignore sends app/).
    let wheels = wheels::seed_wheel_dir("musllinux_1_2_x86_64");
    let find_links = format!("PIP_FIND_LINKS={}", wheels.display());
    let app_digest = p.build_and_push(
        APP,
        &dockerfile,
        Path::new(REPO),
        &["--build-arg", &find_links],
    );
    let verified = p.verify(&format!("{APP}@{app_digest}"), &p.path("keys/public.pem"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success(), "{report}");
    assert!(
        report.contains(&format!("base {BASE}@{base_digest}: provenance verified")),
        "the chain reaches the base: {report}"
    );
    // A key the pipeline did not sign with is refused.
    p.kiln_ok(&["keygen", p.path("other-keys").to_str().unwrap()]);
    let refused = p.verify(
        &format!("{APP}@{app_digest}"),
        &p.path("other-keys/public.pem"),
    );
    assert_eq!(refused.status.code(), Some(1));

    // What a user pulls: the app's files owned by appuser; the base's upgrade and user.
    let bundle = p.pull_and_unpack(APP, "app");
    let rootfs = bundle.join("rootfs");
    for path in [
        "app/app.py",
        "home/appuser/.local/lib/python3.11/site-packages/flask/__init__.py",
        "home/appuser/.local/bin/gunicorn",
    ] {
        let meta = std::fs::metadata(rootfs.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{path}");
    }
    let launcher =
        std::fs::read_to_string(rootfs.join("home/appuser/.local/bin/gunicorn")).unwrap();
    assert!(
        launcher.starts_with("#!/usr/local/bin/python3.11\n"),
        "{launcher}"
    );
    configure_bundle(
        &bundle,
        Some(&[
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox id; /usr/bin/hello; /bin/busybox pwd",
        ]),
        &[],
        false,
    );
    let state = p.path("runc");
    let mut container = Container::start(&bundle, &state, "alpine");
    let status = container.child.wait().unwrap();
    let log = container.log();
    assert!(status.success(), "{log}");
    assert_eq!(
        log, "uid=1000(appuser) gid=1000(appuser) groups=1000(appuser)\nhello 1.1\n/app\n",
        "USER appuser, the upgraded package, WORKDIR"
    );

    // The base moves (a rebuild with another SOURCE_DATE_EPOCH): pin --check notices, pin follows.
    let moved = p.build_and_push(
        BASE,
        &base_dir.join("Dockerfile"),
        &base_dir,
        &["--source-date-epoch", "86400"],
    );
    assert_ne!(moved, base_digest);
    let stale = p.kiln(&["pin", "--check", dockerfile.to_str().unwrap()]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("tag moved")
            || String::from_utf8_lossy(&stale.stdout).contains("tag moved"),
        "{stale:?}"
    );
    p.kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        from_line(&dockerfile),
        format!("FROM {BASE}:latest@{moved} AS base")
    );
}

/// Today as `YYYYMMDD` (UTC), as kiln's `{{date}}` tag writes it, from `date`.
fn chrono_free_today() -> String {
    run_ok(Command::new("date").args(["-u", "+%Y%m%d"]))
        .trim()
        .to_owned()
}

#[test]
fn debian_base_runs_the_app_under_runc_as_uid_1000() {
    let rootfs_tar = debian_rootfs::debian_rootfs_tar();
    let p = Pipeline::start();

    // The base: the debootstrapped rootfs pinned by checksum, the same user and layout as
    // base-image/Dockerfile, Debian's useradd in place of busybox's adduser.
    let context = p.path("debian-base");
    std::fs::create_dir_all(&context).unwrap();
    let in_context = context.join("rootfs.tar");
    if std::fs::hard_link(&rootfs_tar, &in_context).is_err() {
        std::fs::copy(&rootfs_tar, &in_context).unwrap();
    }
    let checksum = registry::sha256(&registry::read(&rootfs_tar));
    // The base stands in for an image with Python and pip: the rootfs has Debian's python3 but
    // not its pip, so a launcher like Debian's takes its place (kiln installs natively for the
    // pip of the image's interpreter and never runs it). Debian marks its Python
    // EXTERNALLY-MANAGED (PEP 668); pip installs in such images need PIP_BREAK_SYSTEM_PACKAGES.
    std::fs::write(
        context.join("pip"),
        "#!/usr/bin/python3\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n",
    )
    .unwrap();
    std::fs::set_permissions(
        context.join("pip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM scratch\n\
             ADD --checksum={checksum} rootfs.tar /\n\
             COPY pip /usr/bin/pip\n\
             ENV PIP_BREAK_SYSTEM_PACKAGES=1\n\
             ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\n\
             LABEL org.opencontainers.image.description=\"Debian bookworm with CPython 3.11 and a non-root user\"\n\
             RUN groupadd -g 1000 appuser && useradd -m -u 1000 -g appuser appuser\n\
             WORKDIR /app\n\
             USER appuser\n\
             CMD [\"python3\"]\n"
        ),
    )
    .unwrap();
    let base_digest = p.build_and_push(
        &format!("{BASE}-debian"),
        &context.join("Dockerfile"),
        &context,
        &[],
    );

    // The app: the repository's DOCKERFILE on that base, pinned by `kiln pin`.
    let dockerfile = dockerfile_on(p.work.path(), &format!("{BASE}-debian:latest"));
    p.kiln_ok(&["pin", dockerfile.to_str().unwrap()]);
    assert_eq!(
        from_line(&dockerfile),
        format!("FROM {BASE}-debian:latest@{base_digest} AS base")
    );
    let wheels = wheels::seed_wheel_dir("manylinux_2_17_x86_64");
    let find_links = format!("PIP_FIND_LINKS={}", wheels.display());
    let app_digest = p.build_and_push(
        APP,
        &dockerfile,
        Path::new(REPO),
        &["--build-arg", &find_links],
    );
    let verified = p.verify(&format!("{APP}@{app_digest}"), &p.path("keys/public.pem"));
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Pulled back with skopeo, run under runc: gunicorn serves the app on 127.0.0.1 as uid 1000.
    let bundle = p.pull_and_unpack(APP, "debian-app");
    let port = registry::free_port();
    configure_bundle(
        &bundle,
        None,
        &[format!("GUNICORN_CMD_ARGS=--bind 127.0.0.1:{port}")],
        true,
    );
    let container = Container::start(&bundle, &p.path("runc"), "debian");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        match http_get(port, "/") {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the app did not answer on 127.0.0.1:{port} ({e}); its output:\n{}",
                    container.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(status, 200, "{body}\n{}", container.log());
    let greeting: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(greeting["message"], "Hello from a kiln-built image");
    assert!(
        greeting["python"].as_str().unwrap().starts_with("3.11."),
        "{greeting}"
    );
    assert_eq!(
        http_get(port, "/healthz").unwrap(),
        (200, "{\"status\":\"ok\"}\n".to_owned())
    );
    let uid = uid_of(container.pid());
    assert!(
        uid.starts_with("Uid:\t1000\t1000"),
        "served by appuser: {uid}"
    );
    let log = container.log();
    assert!(log.contains("Listening at: http://127.0.0.1:"), "{log}");
    assert!(
        log.contains("\"GET / HTTP/1.0\" 200"),
        "access log on stdout: {log}"
    );
}
