//! The verifier configurations in `docs/examples` parse and carry the fields their verifiers
//! need: the Kyverno ClusterPolicy (YAML, parsed with Python's yaml), containers-policy.json
//! and its registries.d file. Syntax only: Debian's skopeo is built with sigstore verification
//! disabled ("Debian-local change: sigstore disabled"), so it cannot run the containers/image
//! policy here, and Kyverno needs a cluster.

use std::path::Path;
use std::process::Command;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML document `text` as JSON, parsed by Python's yaml (python3-yaml).
fn yaml_to_json(text: &str) -> serde_json::Value {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with yaml is required (apt-get install python3-yaml)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the YAML does not parse:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kyverno_example_parses_and_verifies_signature_and_provenance_with_a_key() {
    let policy = yaml_to_json(&example("kyverno-verify-images.yaml"));
    assert_eq!(policy["apiVersion"], "kyverno.io/v1");
    assert_eq!(policy["kind"], "ClusterPolicy");
    let verify = &policy["spec"]["rules"][0]["verifyImages"][0];
    assert!(verify["imageReferences"][0].is_string());
    let key = &verify["attestors"][0]["entries"][0]["keys"];
    assert!(
        key["publicKeys"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(key["rekor"]["ignoreTlog"], true);
    assert_eq!(key["ctlog"]["ignoreSCT"], true);
    assert_eq!(
        verify["attestations"][0]["type"],
        "https://slsa.dev/provenance/v1"
    );
}

#[test]
fn the_containers_policy_example_uses_sigstore_signed_with_a_key_path() {
    let policy: serde_json::Value =
        serde_json::from_str(&example("containers-policy.json")).unwrap();
    let rule = &policy["transports"]["docker"]["registry.example.com/acme"][0];
    assert_eq!(rule["type"], "sigstoreSigned");
    assert!(rule["keyPath"].is_string());
    let registries = yaml_to_json(&example("containers-registries.d-kiln.yaml"));
    assert_eq!(
        registries["docker"]["registry.example.com"]["use-sigstore-attachments"],
        true
    );
}
