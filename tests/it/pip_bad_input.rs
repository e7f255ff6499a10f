//! Bad input for `pip install`: a pin that no wheel satisfies for the target fails naming the
//! package, the target and its tags, why each wheel does not fit, and the closest versions that
//! do have a wheel for the target; pip refuses the same pin for the same target.

use std::collections::BTreeMap;
use std::process::Command;

use kiln::image::platform::Platform;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::MemFs;
use kiln::steps::pip::{PipRequest, pip_install};

fn put(diff: &mut Diff, at: &str, data: &[u8]) {
    diff.insert(
        LayerPath::new(at).unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(data.into())),
            meta: Metadata::root_owned(0o755),
        },
    );
}

#[test]
fn a_pin_without_a_wheel_for_the_target_names_the_tags_and_the_closest_versions() {
    let links = tempfile::tempdir().unwrap();
    // File names are all the selection reads: the files are never downloaded.
    for name in [
        "native-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "native-2.0-cp311-cp311-musllinux_1_2_aarch64.whl",
        "native-2.0.tar.gz",
        "native-1.9-cp311-cp311-musllinux_1_1_x86_64.whl",
        "native-1.5-py3-none-any.whl",
        "native-1.0-cp39-cp39-musllinux_1_1_x86_64.whl",
    ] {
        std::fs::write(links.path().join(name), b"not read").unwrap();
    }
    let mut diff = Diff::new();
    put(
        &mut diff,
        "lib/ld-musl-x86_64.so.1",
        b"\x7fELF\0musl\x001.2.5\0",
    );
    put(&mut diff, "usr/local/bin/python3.11", b"\x7fELF");
    put(&mut diff, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
    put(&mut diff, "etc/group", b"root:x:0:root\n");
    let fs = MemFs::from_diff(&diff);
    let dir = links.path().display().to_string();
    let env: BTreeMap<&str, &str> = [("PIP_FIND_LINKS", dir.as_str())].into();
    let env_fn = |name: &str| env.get(name).map(|v| (*v).to_owned());
    let work = tempfile::tempdir().unwrap();
    let err = pip_install(
        &[
            "--target".to_owned(),
            "/deps".to_owned(),
            "native==2.0".to_owned(),
        ],
        &PipRequest {
            fs: &fs,
            workdir: "/",
            user: "",
            env: &env_fn,
            platform: &Platform::new("linux", "amd64", None),
            source_date_epoch: 0,
            scratch_dir: work.path(),
            cache_dir: work.path(),
            offline: false,
        },
    )
    .unwrap_err()
    .to_string();
    for want in [
        "`native` 2.0 has no wheel for CPython 3.11 on musl 1.2 x86_64",
        "whose tags are, best first: cp311-cp311-musllinux_1_2_x86_64, \
         cp311-cp311-musllinux_1_1_x86_64, cp311-cp311-musllinux_1_0_x86_64, ... (",
        "native-2.0-cp311-cp311-manylinux_2_17_x86_64.whl: ",
        "native-2.0-cp311-cp311-musllinux_1_2_aarch64.whl: ",
        "the closest versions with a wheel for this target: 1.9, 1.5",
    ] {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("1.0,") && !err.ends_with("1.0"),
        "cp39 does not fit: {err}"
    );

    // pip, for the same target and the same files, refuses the pin too.
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--no-input",
            "install",
        ])
        .args([
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
        ])
        .arg(links.path())
        .args([
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
        ])
        .args(["--abi", "cp311", "--target"])
        .arg(work.path().join("t"))
        .args([
            "--platform",
            "musllinux_1_2_x86_64",
            "--platform",
            "musllinux_1_1_x86_64",
        ])
        .arg("native==2.0")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_FIND_LINKS")
        .output()
        .expect("python3 -m pip runs; install Python 3 with pip");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("No matching distribution found for native==2.0"),
        "{stderr}"
    );
}
