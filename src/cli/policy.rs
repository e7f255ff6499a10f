//! `kiln build --policy`: every registry base image a build needs, checked against a
//! `kiln verify` policy and trusted keys before any step runs.

use anyhow::Context as _;

use kiln::attest;
use kiln::build;

use super::verify::{cosign_layouts, fetch_with_referrers};

/// `kiln build --policy`: checks every registry base image the build needs against `policy`
/// (the `kiln verify` format) and the trusted `keys` before any step runs. Returns the
/// failures, each naming the base, the check and the fix; empty when every base complies.
pub(crate) fn check_build_policy(
    options: &build::BuildOptions,
    policy: &attest::Policy,
    policy_name: &str,
    keys: &[attest::PublicKey],
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(&options.dockerfile)
        .with_context(|| format!("failed to read `{}`", options.dockerfile.display()))?;
    let parsed = kiln::dockerfile::parse(&String::from_utf8_lossy(&text))
        .with_context(|| format!("failed to parse `{}`", options.dockerfile.display()))?;
    let platform = options.platforms.target.clone();
    let plan = kiln::dockerfile::plan::plan(
        &parsed,
        &kiln::dockerfile::plan::PlanOptions {
            build_args: options.build_args.clone(),
            target: options.target.clone(),
            platform_args: build::platform_args(&platform, &options.platforms.build),
            named_contexts: options.named_contexts.clone(),
        },
    )
    .with_context(|| format!("failed to plan `{}`", options.dockerfile.display()))?;
    let store = build::open_store(&options.cache_dir)?;
    let mut failures = Vec::new();
    for index in plan.needed_stages() {
        let kiln::dockerfile::plan::BaseRef::Registry(base) = &plan.stages[index].base else {
            continue;
        };
        let reference = super::parse_references(std::slice::from_ref(base))?.remove(0);
        let failed_before = failures.len();
        let mut fail = |check: &str, reason: String| {
            failures.push(format!(
                "base `{base}`: {check}: {reason} (policy `{policy_name}`)"
            ));
        };
        if !policy.allowed_registries.is_empty()
            && !policy
                .allowed_registries
                .iter()
                .any(|r| r == reference.registry())
        {
            fail(
                "allowed-registries",
                format!(
                    "registry `{}` is not one of {:?}; use a base from an allowed registry or add it to allowed_registries",
                    reference.registry(),
                    policy.allowed_registries
                ),
            );
            continue;
        }
        if policy.require_base_digest && reference.digest().is_none() {
            fail(
                "base-digest",
                "not pinned by digest; write `FROM name@sha256:...` (`kiln pin` pins a Dockerfile)"
                    .to_owned(),
            );
        }
        if !(policy.require_signed
            || policy.require_provenance
            || !policy.required_predicate_types.is_empty())
        {
            continue;
        }
        let online = if options.offline {
            Err(anyhow::anyhow!("--offline"))
        } else {
            cosign_layouts(
                base,
                keys,
                policy.require_exact_repository,
                &options.registry,
                &store,
            )
        };
        let layouts = match online {
            Ok(layouts) => layouts,
            Err(e) => {
                // The registry cannot be read: the signatures cached when the base last passed.
                let cached = attest::base_cache::verify_cached(
                    &options.cache_dir,
                    &reference,
                    kiln::registry::cached_digest(&reference, &options.registry, &store).as_ref(),
                    keys,
                    policy,
                );
                if cached.is_empty() {
                    eprintln!("kiln: base `{base}` verified from cached signatures ({e:#})");
                }
                for (check, reason) in cached {
                    fail(check, reason);
                }
                continue;
            }
        };
        let signed_in_cosign_layouts = layouts.iter().any(|l| !l.verified.is_empty());
        // kiln's own DSSE referrers, with the provenance and predicate checks.
        let scratch = tempfile::Builder::new()
            .prefix("policy-")
            .tempdir()
            .context("failed to create a scratch directory")?;
        let layout = scratch.path().join("layout");
        let kiln_report =
            fetch_with_referrers(base, &options.registry, &options.cache_dir, &layout).and_then(
                |()| {
                    Ok(attest::verify(
                        &layout,
                        Some("image"),
                        keys,
                        &attest::Policy {
                            require_provenance: policy.require_provenance,
                            require_signed: true,
                            required_predicate_types: policy.required_predicate_types.clone(),
                            ..attest::Policy::default()
                        },
                    )?)
                },
            );
        let kiln_trusted = kiln_report
            .as_ref()
            .is_ok_and(|r| r.attestations.iter().any(|a| a.trusted));
        if policy.require_signed && !signed_in_cosign_layouts && !kiln_trusted {
            fail(
                "signature",
                "no signature or attestation verifies with the trusted keys (--policy-key); sign the base (`kiln push --sign-key`) or trust its signer's key".to_owned(),
            );
        }
        if policy.require_provenance || !policy.required_predicate_types.is_empty() {
            match &kiln_report {
                Ok(report) => {
                    for failure in &report.failures {
                        fail("provenance", failure.to_string());
                    }
                }
                Err(e) => fail("provenance", format!("{e:#}")),
            }
        }
        if failures.len() == failed_before
            && let Err(e) =
                attest::base_cache::save(&reference, &options.registry, &options.cache_dir)
        {
            eprintln!("kiln: warning: the signatures of base `{base}` were not cached: {e:#}");
        }
    }
    Ok(failures)
}
