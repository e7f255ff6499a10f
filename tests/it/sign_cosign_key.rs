//! cosign's password-encrypted key files (`ENCRYPTED SIGSTORE PRIVATE KEY`), against an
//! independent implementation written here from cosign's format: Python with `hashlib.scrypt`,
//! PyNaCl's `SecretBox` and `cryptography` (Debian's python3-nacl and python3-cryptography).
//!
//! - a key the Python side encrypts signs a build with kiln, and the attestation verifies with
//!   the public key Python wrote; `KILN_PASSWORD` and `COSIGN_PASSWORD` both work;
//! - a wrong password, or none, is refused with a message naming the fix and not the password;
//! - `kiln keygen --format cosign` writes a key the Python side decrypts to the private key
//!   matching `cosign.pub`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::write_files;

const PASSWORD: &str = "correct horse battery";

/// Debian's python3, where python3-nacl and python3-cryptography are installed (a python
/// earlier on PATH, from a version manager, may lack them).
fn python() -> PathBuf {
    let python = PathBuf::from("/usr/bin/python3");
    let probe = Command::new(&python)
        .args([
            "-c",
            "import nacl.secret, cryptography, hashlib; hashlib.scrypt",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "/usr/bin/python3 lacks PyNaCl or cryptography ({}); `.ci/run` installs them \
             (apt-get install python3-nacl python3-cryptography)",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("/usr/bin/python3 is required ({e}); apt-get install python3"),
    }
}

fn run_python(script: &str, args: &[&Path], password: &str) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PW", password)
        .output()
        .expect("failed to start python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a P-256 key in cosign's encrypted format to argv[1] and its SPKI PEM to argv[2].
const PYTHON_WRITE_COSIGN_KEY: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret, nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

key = ec.generate_private_key(ec.SECP256R1())
der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption())
salt = os.urandom(32)
nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
box_key = hashlib.scrypt(os.environ["PW"].encode(), salt=salt, n=32768, r=8, p=1,
                         maxmem=64 * 1024 * 1024, dklen=32)
ciphertext = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
b64 = lambda b: base64.b64encode(b).decode()
doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
       "ciphertext": b64(ciphertext)}
body = base64.b64encode(json.dumps(doc).encode()).decode()
lines = [body[i:i + 64] for i in range(0, len(body), 64)]
with open(sys.argv[1], "w") as f:
    f.write("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
with open(sys.argv[2], "wb") as f:
    f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

/// Decrypts the cosign key argv[1] and prints whether its public key equals the PEM argv[2].
const PYTHON_READ_COSIGN_KEY: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret
from cryptography.hazmat.primitives import serialization

text = open(sys.argv[1]).read()
assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"), text[:60]
body = "".join(l for l in text.splitlines() if not l.startswith("-----"))
doc = json.loads(base64.b64decode(body))
assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox", doc
params = doc["kdf"]["params"]
box_key = hashlib.scrypt(os.environ["PW"].encode(), salt=base64.b64decode(doc["kdf"]["salt"]),
                         n=params["N"], r=params["r"], p=params["p"],
                         maxmem=512 * 1024 * 1024, dklen=32)
der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]),
                                             base64.b64decode(doc["cipher"]["nonce"]))
key = serialization.load_der_private_key(der, password=None)
mine = key.public_key().public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
print("match" if mine == open(sys.argv[2], "rb").read() else "differ")
"#;

fn kiln_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_PASSWORD")
        .env_remove("COSIGN_PASSWORD");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("failed to start the kiln binary")
}

fn build_signed(work: &Path, key: &Path, env: &[(&str, &str)]) -> (Output, PathBuf) {
    let ctx = work.join("ctx");
    write_files(
        &ctx,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let layout = work.join(format!("layout-{}", env.len()));
    let _ = std::fs::remove_dir_all(&layout);
    let out = kiln_with_env(
        &[
            "build",
            "--progress=quiet",
            "--cache-dir",
            work.join("cache").to_str().unwrap(),
            "-t",
            "app:1",
            "--sign-key",
            key.to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            ctx.to_str().unwrap(),
        ],
        env,
    );
    (out, layout)
}

fn assert_verifies(layout: &Path, public: &Path) {
    let out = kiln_with_env(
        &[
            "verify",
            &format!("oci:{}:1", layout.display()),
            "--key",
            public.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "kiln verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_cosign_key_written_by_python_signs_and_a_wrong_password_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("cosign.key");
    let public = work.path().join("cosign.pub");
    run_python(PYTHON_WRITE_COSIGN_KEY, &[&key, &public], PASSWORD);

    for variable in ["KILN_PASSWORD", "COSIGN_PASSWORD"] {
        let (out, layout) = build_signed(work.path(), &key, &[(variable, PASSWORD)]);
        assert!(
            out.status.success(),
            "signing with {variable} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_verifies(&layout, &public);
    }

    let wrong = "tr0ub4dor&3";
    let (out, _) = build_signed(work.path(), &key, &[("KILN_PASSWORD", wrong)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong password signed:\n{stderr}");
    assert!(
        stderr.contains("wrong password") && stderr.contains("cosign.key"),
        "the refusal names neither the cause nor the key:\n{stderr}"
    );
    assert!(
        !stderr.contains(wrong),
        "the password was printed:\n{stderr}"
    );

    let (out, _) = build_signed(work.path(), &key, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no password signed:\n{stderr}");
    assert!(
        stderr.contains("KILN_PASSWORD") && stderr.contains("COSIGN_PASSWORD"),
        "the refusal does not say where the password goes:\n{stderr}"
    );
}

#[test]
fn kiln_keygen_cosign_writes_a_key_python_decrypts() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("keys");
    let refused = kiln_with_env(
        &["keygen", "--format", "cosign", dir.to_str().unwrap()],
        &[],
    );
    assert!(!refused.status.success(), "keygen without a password");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("KILN_PASSWORD"));

    let out = kiln_with_env(
        &["keygen", "--format", "cosign", dir.to_str().unwrap()],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (key, public) = (dir.join("cosign.key"), dir.join("cosign.pub"));
    assert_eq!(
        run_python(PYTHON_READ_COSIGN_KEY, &[&key, &public], PASSWORD).trim(),
        "match"
    );
    // And kiln signs with it.
    let (out, layout) = build_signed(work.path(), &key, &[("KILN_PASSWORD", PASSWORD)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_verifies(&layout, &public);
}
