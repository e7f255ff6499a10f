//! Several kiln processes writing one OCI layout: two builds with the same `--output
//! type=oci,dest=DIR` at once keep both images (and their attestations), leave no temp files,
//! and the layout stays valid for skopeo; what a killed merge left is removed by the next
//! write. `KILN_LAYOUT_TRIALS` sets the rounds of concurrent builds (default 3;
//! `scripts/reliability` runs 20).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{kiln_ok, require_tool, run_ok};

fn context(dir: &Path, content: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY a.txt /a.txt\n").unwrap();
    std::fs::write(dir.join("a.txt"), content.repeat(20_000)).unwrap();
    dir.to_owned()
}

fn build_command(context: &Path, cache: &Path, layout: &Path, tag: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(["build", "--progress=quiet", "--cache-dir"])
        .arg(cache)
        .args(["-t", tag, "--output"])
        .arg(format!("type=oci,dest={}", layout.display()))
        .arg(context)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Every path under `dir` whose name starts with `.tmp-` or is `.kiln-ingest`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name == ".kiln-ingest" {
                found.push(entry.path());
            } else if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

fn ref_names(layout: &Path) -> Vec<(String, String)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut names: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
            Some((name.to_owned(), m["digest"].as_str()?.to_owned()))
        })
        .collect();
    names.sort();
    names
}

#[test]
fn concurrent_builds_into_one_layout_keep_every_image() {
    require_tool("skopeo");
    let rounds: usize = std::env::var("KILN_LAYOUT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let mut kept = 0;
    for round in 0..rounds {
        let layout = work.path().join(format!("layout-{round}"));
        let builds: Vec<_> = ["a", "b"]
            .iter()
            .map(|name| {
                let ctx = context(
                    &work.path().join(format!("ctx-{round}-{name}")),
                    &format!("{round} {name}\n"),
                );
                let tag = format!("app:{name}");
                let child = build_command(&ctx, &cache, &layout, &tag).spawn().unwrap();
                (name.to_string(), child)
            })
            .collect();
        let mut expected = Vec::new();
        for (name, child) in builds {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: build {name} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let digest = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            expected.push((name, digest));
        }
        expected.sort();
        // Each image, and its attestations under the `sha256-<hex>` fallback tag.
        let mut with_attestations = expected.clone();
        for (_, digest) in &expected {
            with_attestations.push((digest.replace("sha256:", "sha256-"), String::new()));
        }
        with_attestations.sort();
        let found: Vec<(String, String)> = ref_names(&layout)
            .into_iter()
            .map(|(name, digest)| {
                if name.starts_with("sha256-") {
                    (name, String::new())
                } else {
                    (name, digest)
                }
            })
            .collect();
        assert_eq!(
            found, with_attestations,
            "round {round}: index.json lost an image or its attestations"
        );
        assert_eq!(leftovers(&layout), Vec::<PathBuf>::new(), "round {round}");
        for (name, _) in &expected {
            run_ok(
                Command::new("skopeo")
                    .args(["inspect", &format!("oci:{}:{name}", layout.display())]),
            );
        }
        kept += 1;
    }
    eprintln!("concurrent layout writes: {kept}/{rounds} rounds kept both images");
}

#[test]
fn what_a_killed_merge_left_is_removed_by_the_next_write() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let first = context(&work.path().join("one"), "one\n");
    let out = build_command(&first, &cache, &layout, "app:one")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What a merge killed at each point leaves.
    let planted = [
        layout.join(".tmp-index-Xk3"),
        layout.join(".tmp-a1b2"),
        layout.join("blobs/sha256/.tmp-link-0123-4567"),
        layout.join("blobs/sha256/.tmp-Zq9"),
        layout.join(".kiln-ingest/.tmpAbCd"),
    ];
    for path in &planted {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half").unwrap();
    }
    let second = context(&work.path().join("two"), "two\n");
    kiln_ok(&[
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        "app:two",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        second.to_str().unwrap(),
    ]);
    assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
    let names: Vec<String> = ref_names(&layout)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with("sha256-"))
        .collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn a_layout_whose_first_write_was_killed_writing_its_marker_is_completed() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(layout.join(".tmp-Ab12Cd"), b"{\"imageLayout").unwrap();
    let ctx = context(&work.path().join("ctx"), "x\n");
    let out = build_command(&ctx, &work.path().join("cache"), &layout, "app:x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
}

#[test]
fn a_layout_whose_first_write_was_killed_before_its_index_is_completed() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    // Killed after the marker and a blob, before index.json.
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(layout.join("blobs/sha256/.tmp-link-ab-1"), b"half").unwrap();
    let ctx = context(&work.path().join("ctx"), "x\n");
    let out = build_command(&ctx, &work.path().join("cache"), &layout, "app:x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&layout), Vec::<PathBuf>::new());
    let images = ref_names(&layout)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("sha256-"))
        .count();
    assert_eq!(images, 1);
}
