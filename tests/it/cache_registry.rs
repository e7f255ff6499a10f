//! The shared build cache (`--cache-to`, `--cache-from`) between runners that share nothing but
//! a registry (Debian's docker-registry on 127.0.0.1) or a cache directory: each runner has its
//! own HOME and kiln cache directory, and builds the seed app (`DOCKERFILE`, with `app/`) on a
//! base pushed to the registry.
//!
//! - runner A builds and exports; runner B, with an empty local cache, builds the same with
//!   `--cache-from`: no layer written (nothing compressed), no RUN executed (no pip or apk
//!   cache appears), no layer blob uploaded (the registry's access log), the same manifest
//!   digest; a changed `app/app.py` rebuilds only its own layer;
//! - four builds export to one cache ref at once: every entry is there and sound afterwards;
//! - a poisoned entry (its layer blob does not match its record) is skipped with a warning and
//!   the step runs;
//! - the same with `type=local` directories, and `kiln cache prune`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::registry::{Auth, TestRegistry};
use crate::support::{require_tool, seed_standins, wheels};

use kiln::image::manifest::{MEDIA_TYPE_OCI_MANIFEST, Manifest};
use kiln::registry::{Reference, RegistryOptions};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A registry with the seed app's base pushed to it, and the app's context.
struct Fleet {
    registry: TestRegistry,
    work: tempfile::TempDir,
    context: PathBuf,
    wheels: PathBuf,
}

/// One CI runner: its own HOME and kiln cache directory.
struct Runner {
    home: PathBuf,
}

impl Fleet {
    fn start() -> Fleet {
        require_tool("docker-registry");
        let registry = TestRegistry::start(Auth::None);
        let work = tempfile::tempdir().unwrap();
        let standins_dir = work.path().join("standins");
        let mirror = standins_dir
            .join("apk-mirror")
            .join(seed_standins::MIRROR_PATH);
        let standins = seed_standins::write(&standins_dir, mirror.to_str().unwrap());
        let python = registry.reference("library/python:3.11-alpine");
        let fleet = Fleet {
            context: work.path().join("context"),
            wheels: wheels::seed_wheel_dir("musllinux_1_2_x86_64"),
            registry,
            work,
        };
        let builder = fleet.runner("base-builder");
        builder.kiln_ok(&[
            "push",
            &format!(
                "oci:{}:{}",
                standins.base_layout.display(),
                seed_standins::BASE_TAG
            ),
            &python,
        ]);
        // The repository's base-image/Dockerfile on the stand-in (users, apk upgrade).
        let base_dir = fleet.work.path().join("base");
        std::fs::create_dir_all(&base_dir).unwrap();
        let base_text = std::fs::read_to_string(format!("{REPO}/base-image/Dockerfile"))
            .unwrap()
            .replace("FROM python:3.11-alpine", &format!("FROM {python}"));
        std::fs::write(base_dir.join("Dockerfile"), base_text).unwrap();
        let base = fleet
            .registry
            .reference("kiln-project/python-slsa-base:latest");
        let base_digest = builder.kiln_ok(&[
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &base,
            base_dir.to_str().unwrap(),
        ]);

        // The app: DOCKERFILE pinned to that base, app/ as in this checkout.
        std::fs::create_dir_all(fleet.context.join("app")).unwrap();
        for file in ["app.py", "requirements.txt"] {
            std::fs::copy(
                format!("{REPO}/app/{file}"),
                fleet.context.join("app").join(file),
            )
            .unwrap();
        }
        let dockerfile = std::fs::read_to_string(format!("{REPO}/DOCKERFILE")).unwrap();
        let from = dockerfile
            .lines()
            .find(|line| line.starts_with("FROM ") && line.ends_with(" AS base"))
            .unwrap();
        let pinned = format!(
            "FROM {}@{base_digest} AS base",
            fleet
                .registry
                .reference("kiln-project/python-slsa-base:latest")
        );
        std::fs::write(
            fleet.context.join("Dockerfile"),
            dockerfile.replace(from, &pinned),
        )
        .unwrap();
        fleet
    }

    fn runner(&self, name: &str) -> Runner {
        let home = self.work.path().join("runners").join(name);
        std::fs::create_dir_all(home.join("cache")).unwrap();
        Runner { home }
    }

    /// A copy of the app's context with `app/app.py` changed.
    fn changed_context(&self, name: &str) -> PathBuf {
        let context = self.work.path().join(name);
        std::fs::create_dir_all(context.join("app")).unwrap();
        for file in ["Dockerfile", "app/requirements.txt"] {
            std::fs::copy(self.context.join(file), context.join(file)).unwrap();
        }
        let app = std::fs::read_to_string(self.context.join("app/app.py")).unwrap();
        std::fs::write(
            context.join("app/app.py"),
            format!("{app}\n# changed on a branch\n"),
        )
        .unwrap();
        context
    }

    /// `kiln build` of `context` by `runner`, pushing to `target` with `extra` flags.
    fn build_command(
        &self,
        runner: &Runner,
        context: &Path,
        target: &str,
        extra: &[String],
    ) -> Command {
        let mut command = runner.command();
        command.args([
            "build",
            "--progress",
            "plain",
            "--build-arg",
            &format!("PIP_FIND_LINKS={}", self.wheels.display()),
            "--push",
            "-t",
            &self.registry.reference(target),
        ]);
        command.args(extra);
        command.arg(context);
        command
    }

    fn build(&self, runner: &Runner, context: &Path, target: &str, extra: &[String]) -> Build {
        let output = self
            .build_command(runner, context, target, extra)
            .output()
            .expect("failed to start kiln");
        Build::of(output)
    }

    fn cache_ref(&self, name: &str) -> String {
        self.registry.reference(name)
    }

    fn registry_options(&self) -> RegistryOptions {
        RegistryOptions::default().use_environment(false)
    }

    /// The image manifest `repository:latest` on the registry.
    fn manifest(&self, repository: &str) -> Manifest {
        let reference: Reference = self
            .registry
            .reference(&format!("{repository}:latest"))
            .parse()
            .unwrap();
        let (_, bytes) = kiln::registry::fetch_raw_manifest(&reference, &self.registry_options())
            .expect("fetch the manifest");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The cache entries of `repository`: (tag, manifest, record).
    fn entries(&self, repository: &str) -> Vec<(String, Manifest, serde_json::Value)> {
        let options = self.registry_options();
        let cache: Reference = self.cache_ref(repository).parse().unwrap();
        let store = kiln::store::Store::open(&self.work.path().join("inspect-store")).unwrap();
        let mut entries = Vec::new();
        for tag in kiln::registry::list_tags(&cache, &options).unwrap() {
            assert!(tag.starts_with("kiln-step-"), "{tag}");
            let (_, bytes) =
                kiln::registry::fetch_raw_manifest(&cache.with_tag(&tag).unwrap(), &options)
                    .unwrap();
            let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
            // Every blob is there and matches its digest (the fetch verifies it).
            for blob in manifest.layers.iter().chain([&manifest.config]) {
                kiln::registry::fetch_blob(&cache, blob, &store, &options)
                    .unwrap_or_else(|e| panic!("entry {tag}: blob {}: {e}", blob.digest));
            }
            let record: serde_json::Value =
                serde_json::from_slice(&store.read_bytes(&manifest.config.digest).unwrap())
                    .unwrap();
            assert_eq!(
                record["key"],
                format!("sha256:{}", &tag["kiln-step-".len()..])
            );
            entries.push((tag, manifest, record));
        }
        entries
    }
}

impl Runner {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .env("HOME", &self.home)
            .env("KILN_CACHE_DIR", self.home.join("cache"))
            .env_remove("XDG_CACHE_HOME")
            .env_remove("DOCKER_CONFIG")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn kiln_ok(&self, args: &[&str]) -> String {
        let output = self
            .command()
            .args(args)
            .output()
            .expect("failed to start kiln");
        assert!(
            output.status.success(),
            "kiln {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// What the native steps fetched into this runner's cache (pip wheels, apk indexes).
    fn fetched(&self) -> Vec<String> {
        let mut found = Vec::new();
        for dir in ["pip", "apk"] {
            let path = self.home.join("cache").join(dir);
            if path.exists() {
                for entry in walk(&path) {
                    found.push(entry.display().to_string());
                }
            }
        }
        found
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A finished build: its manifest digest and its counts.
struct Build {
    digest: String,
    stderr: String,
    written: usize,
    cached: usize,
}

impl Build {
    fn of(output: Output) -> Build {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "kiln build failed ({}):\n{stderr}",
            output.status
        );
        // "kiln: built sha256:... (N layers written, M cached) in S s"
        let summary = stderr
            .lines()
            .find(|line| line.starts_with("kiln: built "))
            .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
        let counts = summary.split_once('(').unwrap().1;
        let written = counts.split(' ').next().unwrap().parse().unwrap();
        let cached = counts
            .split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Build {
            digest: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr,
            written,
            cached,
        }
    }
}

/// The digests of the blobs uploaded (monolithic `PUT ...?digest=` or the final PUT of a
/// chunked upload) and the number of `PATCH`es, from the access log after `mark`.
fn uploads_since(registry: &TestRegistry, mark: usize) -> (Vec<String>, usize) {
    let log = registry.log();
    let mut digests = Vec::new();
    let mut patches = 0;
    for line in log.get(mark..).unwrap_or("").lines() {
        if line.contains("\"PATCH ") && line.contains("/blobs/uploads/") {
            patches += 1;
        }
        if line.contains("\"PUT ") && line.contains("/blobs/uploads/") {
            let digest = line
                .split("digest=")
                .nth(1)
                .map(|rest| rest.split([' ', '&']).next().unwrap().replace("%3A", ":"))
                .unwrap_or_default();
            digests.push(digest);
        }
    }
    (digests, patches)
}

#[test]
fn a_cold_runner_takes_every_step_from_the_registry_cache() {
    let fleet = Fleet::start();
    let cache = fleet.cache_ref("ci/app-cache");
    let a = fleet.runner("a");
    let built_a = fleet.build(
        &a,
        &fleet.context,
        "team/app-a:latest",
        &[format!("--cache-to=type=registry,ref={cache},mode=max")],
    );
    assert!(built_a.written >= 4, "A builds: {}", built_a.stderr);
    assert!(
        built_a.stderr.contains("cache: ") && built_a.stderr.contains("entries written"),
        "{}",
        built_a.stderr
    );
    let entries = fleet.entries("ci/app-cache");
    let run_entries = entries
        .iter()
        .filter(|(_, _, record)| record["kind"] == "run")
        .count();
    assert!(run_entries >= 1, "the pip RUN has an entry: {entries:#?}");
    for (tag, manifest, record) in &entries {
        assert_eq!(
            manifest.media_type.as_deref(),
            Some(MEDIA_TYPE_OCI_MANIFEST)
        );
        assert!(
            manifest
                .annotations
                .contains_key("org.opencontainers.image.created"),
            "{tag}"
        );
        // Nothing of runner A's machine in the record: no path below its HOME.
        let text = record.to_string();
        assert!(!text.contains(a.home.to_str().unwrap()), "{tag}: {text}");
    }

    // Runner B: empty local cache, only --cache-from.
    let b = fleet.runner("b");
    let mark = fleet.registry.mark();
    let built_b = fleet.build(
        &b,
        &fleet.context,
        "team/app-b:latest",
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert_eq!(built_b.digest, built_a.digest, "{}", built_b.stderr);
    assert_eq!(built_b.written, 0, "nothing compressed: {}", built_b.stderr);
    assert!(built_b.cached >= built_a.written, "{}", built_b.stderr);
    assert!(
        !built_b.stderr.contains("writing layer"),
        "{}",
        built_b.stderr
    );
    assert_eq!(
        b.fetched(),
        Vec::<String>::new(),
        "no RUN ran: pip and apk fetched nothing"
    );
    let layers: Vec<String> = fleet
        .manifest("team/app-b")
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    let (uploaded, patches) = uploads_since(&fleet.registry, mark);
    assert_eq!(patches, 0, "no chunked upload");
    for digest in &uploaded {
        assert!(
            !layers.contains(digest),
            "layer {digest} was uploaded again; uploads: {uploaded:?}\n{}",
            built_b.stderr
        );
    }
    // "kiln: pushed ... (N blobs uploaded, M mounted, K already there, B bytes sent)"
    let mounted: usize = built_b
        .stderr
        .lines()
        .find(|line| line.starts_with("kiln: pushed "))
        .and_then(|line| line.split(", ").nth(1))
        .and_then(|part| part.strip_suffix(" mounted"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no push line: {}", built_b.stderr));
    assert_eq!(
        mounted,
        layers.len(),
        "every layer joined by a cross-repository mount: {}",
        built_b.stderr
    );
    // --cache-from alone writes nothing.
    assert_eq!(fleet.entries("ci/app-cache").len(), entries.len());

    // A branch changes app/app.py: only the layer of that COPY is written.
    let c = fleet.runner("c");
    let changed = fleet.changed_context("changed");
    let built_c = fleet.build(
        &c,
        &changed,
        "team/app-c:latest",
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert_ne!(built_c.digest, built_a.digest);
    assert_eq!(built_c.written, 1, "{}", built_c.stderr);
    assert_eq!(c.fetched(), Vec::<String>::new(), "pip did not run");

    // Prune: nothing is 30 days old; everything is older than 0s a second later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let kept = a.kiln_ok(&["cache", "prune", &cache, "--older-than", "30d"]);
    assert!(kept.is_empty());
    assert_eq!(fleet.entries("ci/app-cache").len(), entries.len());
    let output = a
        .command()
        .args(["cache", "prune", &cache, "--older-than", "0s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} entries removed", entries.len())),
        "{stderr}"
    );
    assert!(fleet.entries("ci/app-cache").is_empty());
}

#[test]
fn four_builds_exporting_to_one_cache_at_once_leave_every_entry_sound() {
    let fleet = Fleet::start();
    let cache = fleet.cache_ref("ci/shared-cache");
    let changed = fleet.changed_context("changed");
    let mut children = Vec::new();
    for index in 0..4 {
        let runner = fleet.runner(&format!("r{index}"));
        let context = if index % 2 == 0 {
            fleet.context.clone()
        } else {
            changed.clone()
        };
        let child = fleet
            .build_command(
                &runner,
                &context,
                &format!("team/app-{index}:latest"),
                &[format!("--cache-to=type=registry,ref={cache},mode=max")],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let builds: Vec<Build> = children
        .into_iter()
        .map(|child| Build::of(child.wait_with_output().unwrap()))
        .collect();
    assert_eq!(builds[0].digest, builds[2].digest);
    assert_eq!(builds[1].digest, builds[3].digest);

    // Every entry is whole (its blobs present and matching), and a fresh runner takes every
    // step of both variants from the cache without a warning.
    let entries = fleet.entries("ci/shared-cache");
    assert!(!entries.is_empty());
    for (context, expected, name) in [
        (&fleet.context, &builds[0].digest, "check-original"),
        (&changed, &builds[1].digest, "check-changed"),
    ] {
        let runner = fleet.runner(name);
        let built = fleet.build(
            &runner,
            context,
            &format!("team/{name}:latest"),
            &[format!("--cache-from=type=registry,ref={cache}")],
        );
        assert_eq!(&built.digest, expected);
        assert_eq!(built.written, 0, "{}", built.stderr);
        assert!(!built.stderr.contains("warning"), "{}", built.stderr);
    }
}

#[test]
fn a_poisoned_entry_is_skipped_with_a_warning_and_the_step_runs() {
    let fleet = Fleet::start();
    let cache = fleet.cache_ref("ci/poisoned");
    let a = fleet.runner("a");
    let built_a = fleet.build(
        &a,
        &fleet.context,
        "team/app-a:latest",
        &[format!("--cache-to=type=registry,ref={cache},mode=max")],
    );
    let entries = fleet.entries("ci/poisoned");
    let (pip_tag, _, pip_record) = entries
        .iter()
        .find(|(_, _, record)| {
            record["kind"] == "run" && record["step"].as_str().unwrap().contains("pip install")
        })
        .expect("the pip RUN's entry")
        .clone();
    let (_, other_manifest, _) = entries
        .iter()
        .find(|(_, _, record)| record["step"].as_str().unwrap().contains("app/app.py"))
        .expect("the app.py COPY's entry")
        .clone();

    // The pip entry now names the app.py layer blob, keeping its record's diffID: the blob
    // is valid in the registry, but it is not what the record says.
    let other_layer = &other_manifest.layers[0];
    let mut record = pip_record.clone();
    record["layers"][0]["digest"] = serde_json::Value::String(other_layer.digest.to_string());
    record["layers"][0]["size"] = serde_json::json!(other_layer.size);
    let store = kiln::store::Store::open(&fleet.work.path().join("poison-store")).unwrap();
    let options = fleet.registry_options();
    let cache_reference: Reference = cache.parse().unwrap();
    kiln::registry::fetch_blob(&cache_reference, other_layer, &store, &options).unwrap();
    let record_bytes = serde_json::to_vec(&record).unwrap();
    let (record_digest, record_size) = store.put_bytes(&record_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "artifactType": "application/vnd.kiln.step-cache.v1",
        "config": {
            "mediaType": "application/vnd.kiln.step-cache.record.v1+json",
            "digest": record_digest.to_string(),
            "size": record_size,
        },
        "layers": [other_layer],
        "annotations": {"org.opencontainers.image.created": record["created"]},
    });
    kiln::registry::push_manifest(
        &store,
        &serde_json::to_vec(&manifest).unwrap(),
        MEDIA_TYPE_OCI_MANIFEST,
        &[cache_reference.with_tag(&pip_tag).unwrap()],
        &options,
    )
    .unwrap();

    let b = fleet.runner("b");
    let built_b = fleet.build(
        &b,
        &fleet.context,
        "team/app-b:latest",
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert!(
        built_b
            .stderr
            .contains(&format!("warning: ignoring the cache entry `{pip_tag}`")),
        "{}",
        built_b.stderr
    );
    assert!(
        built_b.stderr.contains("decompresses to diffID"),
        "{}",
        built_b.stderr
    );
    assert_eq!(built_b.written, 1, "the pip RUN ran: {}", built_b.stderr);
    assert!(!b.fetched().is_empty(), "pip fetched its wheels");
    assert_eq!(built_b.digest, built_a.digest, "and gave the same image");
}

#[test]
fn a_local_cache_directory_carries_the_steps_between_runners() {
    let fleet = Fleet::start();
    let dir = fleet.work.path().join("runner-cache-volume");
    let a = fleet.runner("a");
    let built_a = fleet.build(
        &a,
        &fleet.context,
        "team/app-a:latest",
        &[format!(
            "--cache-to=type=local,dest={},mode=max",
            dir.display()
        )],
    );
    let entries = std::fs::read_dir(dir.join("entries")).unwrap().count();
    assert!(entries >= 4, "{entries} entries");

    let b = fleet.runner("b");
    let built_b = fleet.build(
        &b,
        &fleet.context,
        "team/app-b:latest",
        &[format!("--cache-from=type=local,src={}", dir.display())],
    );
    assert_eq!(built_b.digest, built_a.digest);
    assert_eq!(built_b.written, 0, "{}", built_b.stderr);
    assert_eq!(b.fetched(), Vec::<String>::new());

    // mode=min keeps the final stage's steps only: the build stage's pip RUN is not there.
    let min_dir = fleet.work.path().join("min-volume");
    let c = fleet.runner("c");
    fleet.build(
        &c,
        &fleet.context,
        "team/app-c:latest",
        &[format!("--cache-to=type=local,dest={}", min_dir.display())],
    );
    let min_entries = std::fs::read_dir(min_dir.join("entries")).unwrap().count();
    assert!(min_entries < entries, "{min_entries} < {entries}");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let spec = format!("type=local,src={}", dir.display());
    let output = a
        .command()
        .args(["cache", "prune", &spec, "--older-than", "0s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.join("entries")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count(),
        0,
        "unreferenced blobs go too: {stderr}"
    );
}

#[test]
fn cache_flags_refuse_what_kiln_does_not_do() {
    let runner_home = tempfile::tempdir().unwrap();
    for (flag, needle) in [
        ("--cache-to=type=gha", "cache type `gha`"),
        ("--cache-from=type=registry,ref=r/c,mode=max", "key `mode`"),
        (
            "--cache-to=type=local,dest=/x,compression=zstd",
            "key `compression`",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("HOME", runner_home.path())
            .env("KILN_CACHE_DIR", runner_home.path().join("cache"))
            .args(["build", flag, "."])
            .current_dir(REPO)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(needle), "{flag}: {stderr}");
    }
}

/// A docker-registry started with deletes disabled (its default); killed when dropped.
struct NoDeleteRegistry {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl NoDeleteRegistry {
    fn start() -> NoDeleteRegistry {
        let binary = require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::registry::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        NoDeleteRegistry {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for NoDeleteRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prune_on_a_registry_that_refuses_deletes_says_how_to_allow_them() {
    let registry = NoDeleteRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let runner = Runner {
        home: work.path().join("runner"),
    };
    std::fs::create_dir_all(runner.home.join("cache")).unwrap();
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\n",
    )
    .unwrap();
    std::fs::write(context.join("hello"), "hello\n").unwrap();
    let cache = format!("127.0.0.1:{}/ci/cache", registry.port);
    runner.kiln_ok(&[
        "build",
        "--progress",
        "plain",
        "--cache-to",
        &format!("type=registry,ref={cache}"),
        context.to_str().unwrap(),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let output = runner
        .command()
        .args(["cache", "prune", &cache, "--older-than", "0s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for needle in ["HTTP 405", "storage: delete: enabled: true", "kiln-step-"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}
