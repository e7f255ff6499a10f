//! kill -9 at random moments during `kiln build`, `kiln push` and `kiln pull`: afterwards every
//! blob of the store hashes to its name, the output layout holds no partial image, and the next
//! run finishes with the same digest as an uninterrupted one (leaving no scratch directory of
//! the killed run behind). Also two builds sharing one cache at once. `KILN_CRASH_TRIALS` sets
//! the kills per operation (default 2; `scripts/reliability` runs 20).

use crate::support;
use crate::support::registry as registry_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registry_support::{Auth, TestRegistry, sha256, skopeo};
use support::write_files;

fn trials() -> usize {
    std::env::var("KILN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn kiln_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs to completion; returns stdout trimmed and how long it took.
fn run(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = kiln_command(args).output().unwrap();
    assert!(
        output.status.success(),
        "kiln {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        started.elapsed(),
    )
}

/// Starts `kiln ARGS` and kills it with SIGKILL after `delay` (if it is still running).
fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = kiln_command(args).spawn().unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    // Child::kill sends SIGKILL.
    let _ = child.kill();
    let _ = child.wait();
    killed
}

/// A delay in [0, limit), different for each trial (xorshift over the trial number).
fn delay_for(trial: usize, limit: Duration) -> Duration {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (trial as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    limit.mul_f64((x % 10_000) as f64 / 10_000.0)
}

/// Every blob of the store under `cache` hashes to its name.
fn assert_store_consistent(store: &Path) {
    let blobs = store.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&blobs) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{name}"),
            "store blob {} does not match its name",
            entry.path().display()
        );
    }
}

/// The build scratch directories left under `cache/tmp`.
fn scratch_left(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("tmp")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn big_context(dir: &Path) {
    // Incompressible bytes, so compressing and copying take a measurable time.
    let mut state = 0x1234_5678u64;
    let noise: Vec<u8> = (0..6 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("noise.bin"), &noise).unwrap();
    write_files(
        dir,
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY noise.bin /data/noise.bin\nCOPY small /data/small\n",
            ),
            ("small/a.txt", "a\n"),
            ("small/b.txt", "b\n"),
        ],
    );
}

fn build_args<'a>(cache: &'a str, layout: &'a str, ctx: &'a str) -> Vec<&'a str> {
    vec![
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache,
        "-t",
        "app:1",
        "--output",
        layout,
        ctx,
    ]
}

#[test]
fn kill_9_during_build_push_and_pull_leaves_a_consistent_store_and_the_same_digest() {
    let trials = trials();
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    big_context(&ctx);
    let ctx = ctx.to_str().unwrap().to_owned();

    // The uninterrupted reference.
    let reference_cache = work.path().join("reference-cache");
    let reference_layout = format!("type=oci,dest={}", work.path().join("reference").display());
    let (digest, build_time) = run(&build_args(
        reference_cache.to_str().unwrap(),
        &reference_layout,
        &ctx,
    ));

    // Builds: one cache and one layout for all trials, as on a CI runner that gets killed.
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let layout_spec = format!("type=oci,dest={}", layout.display());
    let mut killed_builds = 0;
    for trial in 0..trials {
        let args = build_args(cache.to_str().unwrap(), &layout_spec, &ctx);
        // Wipe the step cache's record of earlier trials so each one does the work again.
        let _ = std::fs::remove_dir_all(cache.join("steps"));
        killed_builds += usize::from(run_and_kill(&args, delay_for(trial, build_time)));
        assert_store_consistent(&cache.join("store"));
        let (again, _) = run(&args);
        assert_eq!(
            again, digest,
            "build trial {trial}: another digest after a kill"
        );
        assert_eq!(scratch_left(&cache), Vec::<PathBuf>::new(), "trial {trial}");
        let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:1", layout.display())]);
        assert_eq!(sha256(&raw), digest, "trial {trial}: the layout's image");
    }

    // Pushes of that layout.
    let push_target = reg.reference("crash/img:1");
    let source = format!("oci:{}:1", layout.display());
    let push_args = |cache: &Path| -> Vec<String> {
        vec![
            "push".into(),
            "--cache-dir".into(),
            cache.display().to_string(),
            source.clone(),
            push_target.clone(),
        ]
    };
    let first_push_cache = work.path().join("push-cache-0");
    let started = Instant::now();
    let args = push_args(&first_push_cache);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(run(&args).0, digest);
    let push_time = started.elapsed();
    let mut killed_pushes = 0;
    for trial in 0..trials {
        let target = reg.reference(&format!("crash/img{trial}:1"));
        let push_cache = work.path().join(format!("push-cache-{}", trial + 1));
        let args = [
            "push",
            "--cache-dir",
            push_cache.to_str().unwrap(),
            &source,
            &target,
        ];
        killed_pushes += usize::from(run_and_kill(&args, delay_for(trial + 100, push_time)));
        assert_store_consistent(&push_cache.join("store"));
        assert_eq!(run(&args).0, digest, "push trial {trial}");
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]);
        assert_eq!(
            sha256(&raw),
            digest,
            "push trial {trial}: the registry's manifest"
        );
    }

    // Pulls of the pushed image, into one cache.
    let pull_cache = work.path().join("pull-cache");
    let pull_args = [
        "pull",
        "--cache-dir",
        pull_cache.to_str().unwrap(),
        &push_target,
    ];
    let started = Instant::now();
    let (pulled, _) = run(&[
        "pull",
        "--cache-dir",
        work.path().join("pull-reference").to_str().unwrap(),
        &push_target,
    ]);
    assert_eq!(pulled, digest);
    let pull_time = started.elapsed();
    let mut killed_pulls = 0;
    for trial in 0..trials {
        let _ = std::fs::remove_dir_all(pull_cache.join("store/blobs"));
        killed_pulls += usize::from(run_and_kill(&pull_args, delay_for(trial + 200, pull_time)));
        assert_store_consistent(&pull_cache.join("store"));
        assert_eq!(run(&pull_args).0, digest, "pull trial {trial}");
        assert_store_consistent(&pull_cache.join("store"));
    }
    eprintln!(
        "kill -9: builds {trials}/{trials} recovered ({killed_builds} killed mid-run), pushes \
         {trials}/{trials} ({killed_pushes} killed mid-run), pulls {trials}/{trials} \
         ({killed_pulls} killed mid-run)"
    );
}

#[test]
fn two_builds_sharing_one_cache_at_once_give_the_digests_of_separate_caches() {
    let work = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    let mut contexts = Vec::new();
    for name in ["one", "two"] {
        let ctx = work.path().join(name);
        write_files(
            &ctx,
            &[
                ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
                ("file.txt", &name.repeat(100_000)),
                ("shared.txt", "the same in both\n"),
            ],
        );
        let alone = work.path().join(format!("alone-{name}"));
        let (digest, _) = run(&[
            "build",
            "--progress=quiet",
            "--cache-dir",
            alone.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ]);
        expected.push(digest);
        contexts.push(ctx);
    }
    let shared = work.path().join("shared");
    for round in 0..trials() {
        let children: Vec<_> = contexts
            .iter()
            .map(|ctx| {
                kiln_command(&[
                    "build",
                    "--progress=quiet",
                    "--no-cache",
                    "--cache-dir",
                    shared.to_str().unwrap(),
                    ctx.to_str().unwrap(),
                ])
                .spawn()
                .unwrap()
            })
            .collect();
        let got: Vec<String> = children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().unwrap();
                assert!(
                    output.status.success(),
                    "round {round}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            })
            .collect();
        assert_eq!(got, expected, "round {round}");
        assert_store_consistent(&shared.join("store"));
    }
}
