//! `kiln build --policy FILE --policy-key PUB` checks every registry base image before the
//! first step: a base without a trusted signature, a base not pinned by digest when the policy
//! demands it, and a base from a registry the policy does not allow each stop the build with
//! nothing written or pushed; a compliant base builds. The bases live on Debian's
//! docker-registry on 127.0.0.1.

use crate::support;
use crate::support::registry as registry_support;

use std::path::Path;

use registry_support::{Auth, TestRegistry};
use support::{kiln, kiln_ok, write_files};

fn push_base(work: &Path, target: &str, extra: &[&str]) -> String {
    let ctx = work.join(target.replace([':', '/'], "-"));
    write_files(
        &ctx,
        &[
            ("base.txt", target),
            ("Dockerfile", "FROM scratch\nCOPY base.txt /\n"),
        ],
    );
    let cache = work.join("cache");
    let mut args = vec![
        "build",
        "--progress=quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        target,
        "--push",
    ];
    args.extend_from_slice(extra);
    let ctx_text = ctx.display().to_string();
    args.push(&ctx_text);
    kiln_ok(&args).trim().to_owned()
}

#[test]
fn the_policy_stops_the_build_before_its_first_step() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    kiln_ok(&["keygen", work.path().join("k").to_str().unwrap()]);
    let key = work.path().join("k/private.pem").display().to_string();
    let public = work.path().join("k/public.pem");
    let signed_ref = reg.reference("test/signed:1");
    let signed = push_base(work.path(), &signed_ref, &["--sign-key", &key]);
    let bare_ref = reg.reference("test/bare:1");
    let bare = push_base(
        work.path(),
        &bare_ref,
        &["--provenance=false", "--sbom=false"],
    );
    let signed_name = signed_ref.trim_end_matches(":1");
    let bare_name = bare_ref.trim_end_matches(":1");

    let strict = work.path().join("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "require_signed = true\nrequire_provenance = true\nrequire_base_digest = true\nallowed_registries = [\"{}\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let elsewhere = work.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, "allowed_registries = [\"ghcr.io\"]\n").unwrap();

    let build = |name: &str, from: &str, policy: &Path| {
        let ctx = work.path().join(format!("app-{name}"));
        write_files(
            &ctx,
            &[
                ("app.txt", "app\n"),
                ("Dockerfile", &format!("FROM {from}\nCOPY app.txt /\n")),
            ],
        );
        let dest = work.path().join(format!("out-{name}"));
        let out = kiln(&[
            "build",
            "--progress=plain",
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--policy-key",
            public.to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={}", dest.display()),
            ctx.to_str().unwrap(),
        ]);
        (out, dest)
    };
    let refused = |name: &str, from: &str, policy: &Path, check: &str| {
        let (out, dest) = build(name, from, policy);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the build ran:\n{stderr}");
        assert!(
            stderr.contains(&format!("POLICY FAILED base `{from}`: {check}")),
            "{name}: the failure does not name the base and the check:\n{stderr}"
        );
        assert!(
            !stderr.contains("COPY"),
            "{name}: a step ran before the policy stopped the build:\n{stderr}"
        );
        assert!(!dest.exists(), "{name}: an output was written");
    };

    refused(
        "unsigned",
        &format!("{bare_name}@{bare}"),
        &strict,
        "signature",
    );
    refused("by-tag", &signed_ref, &strict, "base-digest");
    refused(
        "registry",
        &format!("{signed_name}@{signed}"),
        &elsewhere,
        "allowed-registries",
    );

    let (ok, dest) = build("compliant", &format!("{signed_name}@{signed}"), &strict);
    assert!(
        ok.status.success(),
        "a compliant base was refused:\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(dest.join("index.json").exists());
    // The provenance records the policy's digest and the verdict.
    let policy_digest = registry_support::sha256(&std::fs::read(&strict).unwrap());
    let provenance = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .filter_map(|entry| {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(entry.unwrap().path()).ok()?)
                .ok()
        })
        .find(|doc| doc["predicateType"] == "https://slsa.dev/provenance/v1")
        .expect("no provenance statement in the layout");
    let recorded = &provenance["predicate"]["buildDefinition"]["internalParameters"]["basePolicy"];
    assert_eq!(
        format!(
            "sha256:{}",
            recorded["digest"]["sha256"].as_str().unwrap_or_default()
        ),
        policy_digest,
        "{provenance:#}"
    );
    assert_eq!(recorded["verdict"], "passed");

    // Keys named in the policy file (relative to it) are trusted without --policy-key.
    let keyed = work.path().join("keyed.toml");
    std::fs::write(
        &keyed,
        "require_signed = true\nrequire_base_digest = true\nkeys = [\"k/public.pem\"]\n",
    )
    .unwrap();
    let from = format!("{signed_name}@{signed}");
    let ctx = work.path().join("app-keyed");
    write_files(
        &ctx,
        &[
            ("app.txt", "app\n"),
            ("Dockerfile", &format!("FROM {from}\nCOPY app.txt /\n")),
        ],
    );
    let run = |policy: &Path| {
        kiln(&[
            "build",
            "--progress=quiet",
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ])
    };
    let ok = run(&keyed);
    assert!(
        ok.status.success(),
        "the policy file's key was not trusted:\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let unkeyed = work.path().join("unkeyed.toml");
    std::fs::write(&unkeyed, "require_signed = true\n").unwrap();
    assert!(
        !run(&unkeyed).status.success(),
        "no trusted key, yet it built"
    );
}
