//! `kiln lock pip --from-image`: the target read from a base image (the seed's
//! python:3.11-alpine stand-in, an OCI layout) locks exactly as the same target given with
//! `--python-version 3.11 --platform musllinux_1_2_x86_64`, against a local index of real wheels
//! (see `support/simple_index.rs`).

#[path = "support/apk_fixture.rs"]
mod apk_fixture;
#[path = "support/seed_standins.rs"]
mod seed_standins;
#[path = "support/simple_index.rs"]
mod simple_index;
mod support;

use std::path::Path;

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
