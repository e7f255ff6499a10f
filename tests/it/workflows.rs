//! The GitHub workflows that run the pipeline with kiln: valid against SchemaStore's
//! github-workflow schema (as check-jsonschema vendors it, from PyPI, in a venv the test makes
//! under `target/workflow-venv`), and doing what the pipeline needs: the triggers (changes, by
//! hand, monthly), GHCR login, build with provenance, SBOM and signing, the three tags, push,
//! verification with `kiln verify`, the job summary, and the pin of DOCKERFILE.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

const WORKFLOWS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.github/workflows");

/// The venv's bin directory, creating the venv on first use.
fn venv_bin() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/workflow-venv");
    let bin = venv.join("bin");
    if bin.join("check-jsonschema").is_file() {
        return bin;
    }
    support::require_tool("python3");
    support::run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let installed = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "check-jsonschema"])
        .output()
        .expect("failed to start the venv's pip");
    assert!(
        installed.status.success(),
        "`pip install check-jsonschema` into {} failed; this test needs the Python index pip is \
         configured for:\n{}",
        venv.display(),
        String::from_utf8_lossy(&installed.stderr)
    );
    bin
}

fn check_jsonschema(files: &[PathBuf]) -> std::process::Output {
    Command::new(venv_bin().join("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(files)
        .output()
        .expect("failed to start check-jsonschema")
}

/// The workflow as JSON, read by a YAML 1.2 parser (so `on` stays a string key).
fn load(name: &str) -> Value {
    let script = "import json, sys\nfrom ruamel.yaml import YAML\n\
                  print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))";
    let out = support::run_ok(
        Command::new(venv_bin().join("python"))
            .args(["-c", script])
            .arg(Path::new(WORKFLOWS).join(name)),
    );
    serde_json::from_str(&out).expect("the YAML reads as JSON")
}

/// Every `run:` script of every job, joined.
fn scripts(workflow: &Value) -> String {
    let mut out = String::new();
    for job in workflow["jobs"].as_object().expect("jobs").values() {
        for step in job["steps"].as_array().expect("steps") {
            if let Some(run) = step["run"].as_str() {
                out.push_str(run);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn workflows_validate_against_the_github_workflow_schema() {
    let files: Vec<PathBuf> = std::fs::read_dir(WORKFLOWS)
        .expect("the workflows directory")
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");
    let valid = check_jsonschema(&files);
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );

    // The validator does refuse a workflow GitHub would: a job without `runs-on`.
    let broken = tempfile::tempdir().unwrap();
    let file = broken.path().join("broken.yml");
    std::fs::write(
        &file,
        "name: x\non: push\njobs:\n  a:\n    steps:\n      - run: echo\n",
    )
    .unwrap();
    let refused = check_jsonschema(&[file]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("'runs-on' is a required property"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
}

#[test]
fn the_base_workflow_runs_monthly_and_publishes_a_verified_signed_image() {
    let workflow = load("build-base-image.yml");
    let on = &workflow["on"];
    assert!(on.get("workflow_dispatch").is_some(), "{on}");
    assert_eq!(on["schedule"][0]["cron"], "0 4 1 * *", "monthly");
    let paths = on["push"]["paths"].to_string();
    assert!(paths.contains("base-image/**"), "{paths}");
    assert_eq!(
        workflow["jobs"]["build"]["permissions"]["packages"],
        "write"
    );

    let runs = scripts(&workflow);
    for expected in [
        "cargo install --locked --path .",
        "kiln login ghcr.io",
        "--password-stdin",
        "kiln build -f base-image/Dockerfile",
        "-t \"$IMAGE:latest\" -t \"$IMAGE:{{git_sha}}\" -t \"$IMAGE:{{date}}\"",
        "--provenance=true --sbom=true --sign-key",
        "--platform linux/amd64,linux/arm64",
        "--push base-image",
        "GITHUB_STEP_SUMMARY",
        "FROM $IMAGE:latest@$DIGEST",
        "kiln verify --key",
        "kiln pin DOCKERFILE",
    ] {
        assert!(runs.contains(expected), "`{expected}` in:\n{runs}");
    }
    assert!(!runs.contains("docker "), "no Docker: {runs}");
    assert!(!runs.contains("buildx"), "no buildx: {runs}");
    // The secret is written to a private file and removed; it never appears on a command line.
    assert!(runs.contains("umask 077"), "{runs}");
    assert!(
        runs.contains("rm -f \"$RUNNER_TEMP/signing.pem\""),
        "{runs}"
    );
}

#[test]
fn the_app_workflow_builds_dockerfile_on_the_pinned_base_and_verifies_the_chain() {
    let workflow = load("build-app.yml");
    let paths = workflow["on"]["push"]["paths"].to_string();
    assert!(
        paths.contains("DOCKERFILE") && paths.contains("app/**"),
        "{paths}"
    );
    let runs = scripts(&workflow);
    for expected in [
        "kiln pin --check DOCKERFILE",
        "kiln build -f DOCKERFILE",
        "--build-arg PIP_INDEX_URL",
        "--platform linux/amd64,linux/arm64",
        "--provenance=true --sbom=true",
        "-t \"$IMAGE:latest\" -t \"$IMAGE:{{git_sha}}\" -t \"$IMAGE:{{date}}\"",
        "--policy .github/kiln-app-policy.toml",
        "GITHUB_STEP_SUMMARY",
    ] {
        assert!(runs.contains(expected), "`{expected}` in:\n{runs}");
    }
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.github/kiln-app-policy.toml"
    ))
    .unwrap();
    assert!(
        policy.contains("require_base_provenance = true"),
        "{policy}"
    );
    assert!(policy.contains("require_base_digest = true"), "{policy}");
}

#[test]
fn the_test_workflow_runs_ci_on_pull_requests_and_pushes_to_main() {
    let workflow = load("tests.yml");
    let on = &workflow["on"];
    assert!(on.get("pull_request").is_some(), "{on}");
    assert_eq!(on["push"]["branches"][0], "main", "{on}");
    assert!(
        on["pull_request"].get("paths").is_none() && on["push"].get("paths").is_none(),
        "every change is tested: {on}"
    );
    assert_eq!(workflow["permissions"]["contents"], "read");
    let job = &workflow["jobs"]["test"];
    assert!(
        job["container"]["image"]
            .as_str()
            .is_some_and(|image| image.contains("bookworm")),
        "{job}"
    );
    assert!(
        job["container"]["options"]
            .as_str()
            .is_some_and(|options| options.contains("--privileged")),
        "user namespaces, mounts and runc need it: {job}"
    );
    let runs = scripts(&workflow);
    for expected in [
        "cargo fmt --check",
        "cargo clippy --locked --all-targets -- -D warnings",
        ".ci/run",
    ] {
        assert!(runs.contains(expected), "`{expected}` in:\n{runs}");
    }
    // `.ci/run` ends with the test suite the README documents.
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.trim_end().ends_with("cargo test --locked"), "{ci}");
}

#[test]
fn the_release_workflow_builds_kilns_image_for_amd64_and_arm64_signed_with_provenance() {
    let workflow = load("release.yml");
    assert!(
        workflow["on"]["push"]["tags"].is_array(),
        "{}",
        workflow["on"]
    );
    let platforms: Vec<&str> = workflow["jobs"]["platform"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("a platform matrix")
        .iter()
        .map(|entry| entry["arch"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    let runs = scripts(&workflow);
    for expected in [
        "scripts/kiln-image -t",
        "scripts/kiln-image --debug -t",
        "--sign-key",
        "--push",
        "imagetools create",
        "cosign sign --yes --recursive",
    ] {
        assert!(runs.contains(expected), "`{expected}` in:\n{runs}");
    }
    let index = &workflow["jobs"]["index"];
    assert_eq!(index["permissions"]["id-token"], "write", "keyless signing");
    assert!(
        index["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|step| step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with("actions/attest-build-provenance@"))),
        "{index}"
    );
}
