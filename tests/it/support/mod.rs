//! Test harness shared by the integration tests: running the kiln binary, requiring the real
//! tools the tests check kiln's output with (a missing tool fails the test, never skips it),
//! and making fixture contexts. The submodules hold the larger fixtures (an apk repository,
//! registries, Python indexes and wheels, the Debian rootfs, the corpus' stand-ins).

#![allow(dead_code)]

pub mod apk_fixture;
pub mod busybox_users;
pub mod corpus;
pub mod debian_arm64;
pub mod debian_rootfs;
pub mod fault_proxy;
pub mod registry;
pub mod seed_standins;
pub mod simple_index;
pub mod wheels;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Panics with an install hint when `tool` is not on PATH.
pub fn require_tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "required tool `{tool}` is not installed; `.ci/run` installs it (apt-get install {})",
            debian_package(tool)
        ),
    }
}

/// The Debian package that installs `tool` (the one `.ci/run` names).
fn debian_package(tool: &str) -> &str {
    match tool {
        "busybox" => "busybox-static",
        "htpasswd" => "apache2-utils",
        "dpkg-source" => "dpkg-dev",
        "getcap" | "setcap" => "libcap2-bin",
        "ldd" => "libc-bin",
        "newuidmap" | "newgidmap" => "uidmap",
        "node" => "nodejs",
        "script" | "setpriv" | "unshare" => "util-linux",
        "ssh-add" | "ssh-agent" | "ssh-keygen" => "openssh-client",
        other => other,
    }
}

/// The statically linked busybox used to make runnable images.
pub fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    let output = Command::new(&path).arg("--help").output();
    match output {
        Ok(_) => path,
        Err(e) => panic!(
            "busybox-static is required at /bin/busybox ({e}); `.ci/run` installs it \
             (apt-get install busybox-static)"
        ),
    }
}

/// Set in a child process started by [`alone_in_own_process`] to the test it runs.
const ALONE_VARIABLE: &str = "KILN_TEST_ALONE";

/// For a test that needs a process to itself (it reads process-wide figures such as the peak
/// RSS, or sets a variable kiln reads once per process), since the integration tests share one:
/// in the test run, starts this test binary again with only `name` (`module::test`) selected and
/// `env` set, fails when that child fails or does not run exactly that test, and returns false;
/// in the child, returns true and the test does its work there.
pub fn alone_in_own_process(name: &str, env: &[(&str, &OsStr)]) -> bool {
    if std::env::var_os(ALONE_VARIABLE).is_some_and(|running| running == name) {
        return true;
    }
    let child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ALONE_VARIABLE, name)
        .envs(env.iter().copied())
        .output()
        .expect("failed to start the test binary again");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, run alone in a child process ({}):\n{stdout}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
    false
}

/// Runs `kiln ARGS` and returns its output.
pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("failed to start the kiln binary")
}

/// Runs `kiln ARGS`, panicking with its stderr when it fails; returns stdout.
pub fn kiln_ok(args: &[&str]) -> String {
    let output = kiln(args);
    assert!(
        output.status.success(),
        "kiln {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes `files` (relative path, content) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("relative paths have a parent")).unwrap();
        std::fs::write(full, content).unwrap();
    }
}

/// Reads a JSON blob of an OCI layout by digest (`sha256:...`).
pub fn layout_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The manifest, and the config of the first image in an OCI layout's index.
pub fn layout_image(layout: &Path) -> (serde_json::Value, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest = layout_blob_json(layout, &digest);
    let config = layout_blob_json(layout, manifest["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

/// The last layer blob of the first image in an OCI layout (the step under test).
pub fn last_layer(layout: &Path) -> PathBuf {
    let (manifest, _) = layout_image(layout);
    let digest = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One tar entry as the comparison sees it: kind, mode, owner, link target, content digest.
pub type Listing = std::collections::BTreeMap<String, String>;

/// Every entry of a gzip layer blob: path -> `kind mode uid gid link sha256`.
pub fn layer_listing(blob: &Path) -> Listing {
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut listing = Listing::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Fifo => "fifo",
            other => panic!("unexpected entry type {other:?} at {path}"),
        };
        listing.insert(
            path,
            format!(
                "{kind} mode={:o} uid={} gid={} link={link} sha256={}",
                header.mode().unwrap() & 0o7777,
                header.uid().unwrap(),
                header.gid().unwrap(),
                hex(&<sha2::Sha256 as sha2::Digest>::digest(&content))
            ),
        );
    }
    listing
}

/// Unpacks `layout:tag` with umoci and runs it with runc; returns (exit status, stdout, stderr).
pub fn run_image(layout: &Path, tag: &str, work: &Path) -> (i32, String, String) {
    require_tool("umoci");
    require_tool("runc");
    let bundle = work.join(format!("bundle-{tag}"));
    run_ok(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:{tag}", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let state = work.join("runc-state");
    let id = format!("kiln-test-{}-{tag}", std::process::id());
    let output = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .expect("failed to start runc");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The python of a venv at `target/NAME` holding the PyPI `packages` (installed through pip's
/// own configuration), made on first use; `probe` is the Python statement that succeeds once
/// they are importable. Callers in one test binary serialize on a lock.
pub fn python_venv(name: &str, packages: &[&str], probe: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", probe])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return python;
    }
    require_tool("python3");
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("failed to start python3");
    assert!(
        created.status.success(),
        "`python3 -m venv {}` failed (install python3-venv): {}",
        venv.display(),
        String::from_utf8_lossy(&created.stderr)
    );
    let installed = Command::new(venv.join("bin/pip"))
        .arg("install")
        .args(packages)
        .output()
        .expect("failed to start the venv's pip");
    assert!(
        installed.status.success() && ready(&python),
        "`pip install {}` into {} failed; these tests need PyPI through pip's configuration:\n{}",
        packages.join(" "),
        venv.display(),
        String::from_utf8_lossy(&installed.stderr)
    );
    python
}

/// A layout holding a two-platform index (tagged `multi`) built from two single-platform
/// builds; returns it and the digests of the index and its two manifests.
pub fn two_platform_layout(work: &Path, cache: &Path) -> (PathBuf, Vec<String>) {
    let multi = work.join("multi");
    std::fs::create_dir_all(multi.join("blobs/sha256")).unwrap();
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let ctx = work.join(format!("ctx-{arch}"));
        write_files(
            &ctx,
            &[
                ("hello.txt", arch),
                ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
            ],
        );
        let layout = work.join(format!("layout-{arch}"));
        let digest = kiln_ok(&[
            "build",
            "--progress=quiet",
            "--provenance=false",
            "--sbom=false",
            "--platform",
            &format!("linux/{arch}"),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            ctx.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
        for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                multi.join("blobs/sha256").join(entry.file_name()),
            )
            .unwrap();
        }
        let size = std::fs::metadata(multi.join("blobs/sha256").join(&digest[7..]))
            .unwrap()
            .len();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
        digests.push(digest);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let index_digest = registry::sha256(&index);
    std::fs::write(multi.join("blobs/sha256").join(&index_digest[7..]), &index).unwrap();
    std::fs::write(
        multi.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        multi.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest,
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    digests.insert(0, index_digest);
    (multi, digests)
}

/// OSV's range evaluation for PyPI with `packaging.version` doing every comparison (the scan
/// tests' independent oracle): argv[1] the OSV records, argv[2] `[name, version]` pairs.
pub const OSV_PYPI_ORACLE: &str = r#"
import json, re, sys
from packaging.version import Version
records = json.load(open(sys.argv[1]))
installed = json.load(open(sys.argv[2]))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
out = []
for name, version in installed:
    v = Version(version)
    for r in records:
        if r.get("withdrawn"):
            continue
        for a in r["affected"]:
            if a["package"]["ecosystem"] != "PyPI" or norm(a["package"]["name"]) != norm(name):
                continue
            for rng in a["ranges"]:
                key = lambda e: Version("0") if e.get("introduced") == "0" else Version(list(e.values())[0])
                events = sorted(rng["events"], key=key)
                hit = False
                for e in events:
                    if "introduced" in e and (e["introduced"] == "0" or v >= Version(e["introduced"])): hit = True
                    elif "fixed" in e and v >= Version(e["fixed"]): hit = False
                    elif "last_affected" in e and v > Version(e["last_affected"]): hit = False
                if hit:
                    fixed = [e["fixed"] for e in events if "fixed" in e and Version(e["fixed"]) > v]
                    out.append([norm(name), version, fixed[0] if fixed else "", r["id"], r["database_specific"]["severity"].lower().replace("moderate", "medium")])
print(json.dumps(out))
"#;

/// A python with `packaging` installed: the SBOM tests' venv, made by the same helper (and
/// lock), so the tests never build it at once.
pub fn packaging_python() -> PathBuf {
    python_venv("sbom-venv", &["packaging"], "import packaging.version")
}
