//! A build's attestations: the provenance and SBOM statements (signed when a key is given),
//! attached to the OCI layout or pushed to a registry as OCI 1.1 referrers.

use std::path::Path;

use anyhow::Context as _;

use kiln::attest;
use kiln::build::{self, BuildOptions};
use kiln::image::{self};

use super::attest::AttestModeName;
use super::build_args::{BuildArgs, STDIN};
use super::*;

/// The provenance and SBOM statements for a build, signed when a key is given.
pub(crate) fn make_attestations(
    args: &BuildArgs,
    options: &BuildOptions,
    outcome: &build::BuildOutcome,
    started_on: i64,
    base_policy: Option<&attest::provenance::BasePolicyRecord>,
) -> anyhow::Result<Vec<attest::Attestation>> {
    if !args.provenance && !args.sbom {
        return Ok(Vec::new());
    }
    let image = &outcome.image;
    let name = args
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| "kiln-image".to_owned());
    let subjects = vec![attest::Subject::image(
        &name,
        &image.manifest.digest,
        &image.manifest.platform,
    )];
    let key = args
        .sign_key
        .as_deref()
        .map(attest::SigningKey::load)
        .transpose()
        .context("failed to load the signing key")?;
    let wrap = |statement: &attest::Statement| -> anyhow::Result<attest::Attestation> {
        Ok(match &key {
            Some(key) => attest::Attestation::signed(statement, &[key])?,
            None => attest::Attestation::unsigned(statement)?,
        })
    };
    let mut out = Vec::new();
    if args.provenance {
        let mut params = attest::ProvenanceParams::new(subjects.clone());
        let dockerfile_bytes = std::fs::read(&options.dockerfile)
            .with_context(|| format!("failed to read `{}`", options.dockerfile.display()))?;
        params.dockerfile = Some(attest::provenance::DockerfileSource {
            path: if args.dockerfile_from_stdin {
                STDIN.to_owned()
            } else {
                options
                    .dockerfile
                    .strip_prefix(&options.context_dir)
                    .unwrap_or(&options.dockerfile)
                    .display()
                    .to_string()
            },
            digest: kiln::digest::Digest::of(&dockerfile_bytes),
        });
        params.target = options.target.clone();
        params.platforms = vec![image.manifest.platform.clone()];
        params.build_args = options.build_args.clone();
        params.secret_build_args = args.secret_build_args.iter().cloned().collect();
        params.base_images = outcome.bases.iter().map(|b| b.reference.clone()).collect();
        for base in &outcome.bases {
            params.materials.push(attest::Material::docker_image(
                &base.reference,
                &base.digest,
                &image.manifest.platform,
            ));
        }
        params.materials.extend(outcome.materials.iter().cloned());
        params.context = match attest::provenance::GitSource::detect(&options.context_dir)? {
            Some(git) => attest::provenance::ContextSource::Git(git),
            None => attest::provenance::ContextSource::Local {
                digest: outcome.context_digest.clone(),
            },
        };
        params.builder = attest::Builder::from_process_env();
        params.timing = if args.reproducible {
            attest::Timing::Reproducible
        } else {
            attest::Timing::Recorded {
                invocation_id: attest::provenance::new_invocation_id()?,
                started_on,
                finished_on: unix_now(),
            }
        };
        params.base_policy = base_policy.cloned();
        out.push(wrap(&attest::provenance::statement(&params)?)?);
    }
    if args.sbom {
        // A Python distribution installed from a wheel this build fetched is pinned by that
        // wheel's sha256 (wheel names spell the project with `_`, lower case).
        let mut packages = outcome.packages.clone();
        for package in packages.iter_mut() {
            if package.checksum.is_some() || package.kind != attest::sbom::PackageKind::Python {
                continue;
            }
            let prefix = format!(
                "{}-{}-",
                package.name.to_lowercase().replace(['-', '.'], "_"),
                package.version
            );
            if let Some(sha256) = outcome.materials.iter().find_map(|m| {
                let file = m.uri.rsplit('/').next().unwrap_or("");
                (file.ends_with(".whl") && file.to_lowercase().starts_with(&prefix))
                    .then_some(m.sha256.as_ref())
                    .flatten()
            }) {
                package.checksum = Some(("SHA256".to_owned(), sha256.hex().to_owned()));
            }
        }
        let sbom = args.sbom_format.statement(
            &attest::SbomParams {
                image_name: name.clone(),
                image_digest: image.manifest.digest.clone(),
                source_date_epoch: options.source_date_epoch,
                packages,
            },
            &subjects,
        )?;
        out.push(wrap(&sbom)?);
    }
    Ok(out)
}

pub(crate) fn attach_to_layout(
    dir: &Path,
    image: &image::BuiltImage,
    tags: &[String],
    attestations: &[attest::Attestation],
    mode: AttestModeName,
) -> anyhow::Result<()> {
    let attached = match mode {
        AttestModeName::Referrers => attest::attach(
            dir,
            Some(&image.manifest.digest.to_string()),
            attestations,
            attest::AttachMode::Referrers,
        )
        .map(|_| ()),
        AttestModeName::Index if tags.is_empty() => attest::attach(
            dir,
            Some(&image.manifest.digest.to_string()),
            attestations,
            attest::AttachMode::Index,
        )
        .map(|_| ()),
        AttestModeName::Index => tags.iter().try_for_each(|tag| {
            // The layout names each entry `repo:tag` (`:latest` when the tag was left out).
            let last = tag.rsplit('/').next().unwrap_or(tag);
            let reference = if last.contains(':') {
                tag.clone()
            } else {
                format!("{tag}:latest")
            };
            attest::attach(
                dir,
                Some(&reference),
                attestations,
                attest::AttachMode::Index,
            )
            .map(|_| ())
        }),
    };
    attached.with_context(|| format!("failed to attach attestations to `{}`", dir.display()))
}

/// Pushes the attestations as OCI 1.1 referrers: their artifact manifests, and the
/// `sha256-<hex>` fallback tag index that lists them (for registries without a referrers API).
pub(crate) fn push_attestations(
    outcome: &build::BuildOutcome,
    attestations: &[attest::Attestation],
    targets: &[kiln::registry::Reference],
    options: &BuildOptions,
) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("attest-")
        .tempdir_in(outcome.store.root())
        .context("failed to create a scratch layout")?;
    let layout = scratch.path().join("layout");
    let images = [(outcome.image.clone(), Vec::new())];
    image::layout::write_oci_layout(&outcome.store, &layout, &images)?;
    let attached = attest::attach(
        &layout,
        Some(&outcome.image.manifest.digest.to_string()),
        attestations,
        attest::AttachMode::Referrers,
    )?;
    let subject = &outcome.image.manifest.digest;
    for tag in &attached.fallback_tags {
        let descriptor = image::base::import_layout(&outcome.store, &layout, Some(tag))?;
        push_referrers(
            &outcome.store,
            subject,
            tag,
            &descriptor,
            targets,
            &options.registry,
        )?;
    }
    Ok(())
}

/// Pushes the referrers that the index `descriptor` (in `store`, the `tag` fallback index of
/// `subject`) lists to each of `targets`: by digest to a registry with the referrers API, else
/// under the fallback tag, merged with what the registry already lists there.
pub(crate) fn push_referrers(
    store: &kiln::store::Store,
    subject: &kiln::digest::Digest,
    tag: &str,
    descriptor: &image::manifest::Descriptor,
    targets: &[kiln::registry::Reference],
    registry_options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    {
        let bytes = store.read_bytes(&descriptor.digest)?;
        let index: image::manifest::Index = serde_json::from_slice(&bytes)
            .context("the attestations' referrers index is not an OCI index")?;
        for target in targets {
            // A registry with the referrers API indexes artifact manifests by their subject;
            // others get the fallback tag index that lists them.
            if kiln::registry::supports_referrers(target, subject, registry_options)
                .unwrap_or(false)
            {
                for referrer in &index.manifests {
                    let manifest = store.read_bytes(&referrer.digest)?;
                    // By digest only: the tags keep naming the image.
                    let by_digest = kiln::registry::Reference::new(
                        target.registry(),
                        target.repository(),
                        None,
                        Some(referrer.digest.clone()),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    kiln::registry::push_manifest(
                        store,
                        &manifest,
                        &referrer.media_type,
                        &[by_digest],
                        registry_options,
                    )
                    .context("failed to push an attestation")?;
                }
            } else {
                let tagged = target.with_tag(tag).map_err(|e| anyhow::anyhow!("{e}"))?;
                // Keep what earlier pushes listed under the fallback tag (other attestations of
                // the same image), as the OCI spec asks of clients maintaining it.
                let mut merged = index.clone();
                if let Ok((_, existing)) =
                    kiln::registry::fetch_raw_manifest(&tagged, registry_options)
                    && let Ok(existing) =
                        serde_json::from_slice::<image::manifest::Index>(&existing)
                {
                    for earlier in existing.manifests {
                        if merged.manifests.iter().any(|m| m.digest == earlier.digest) {
                            continue;
                        }
                        // The push walks the index from the store: bring the earlier referrer
                        // (already on the registry, so nothing is uploaded again) in first.
                        let by_digest = kiln::registry::Reference::new(
                            target.registry(),
                            target.repository(),
                            None,
                            Some(earlier.digest.clone()),
                        )
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                        let (_, manifest_bytes) =
                            kiln::registry::fetch_raw_manifest(&by_digest, registry_options)?;
                        let manifest: image::manifest::Manifest =
                            serde_json::from_slice(&manifest_bytes).with_context(|| {
                                format!("referrer {} is not an OCI manifest", earlier.digest)
                            })?;
                        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                            kiln::registry::fetch_blob(&by_digest, blob, store, registry_options)?;
                        }
                        store.put_bytes(&manifest_bytes)?;
                        merged.manifests.insert(0, earlier);
                    }
                }
                let merged_bytes = image::canonical::to_vec(&merged)?;
                store.put_bytes(&merged_bytes)?;
                kiln::registry::push_manifest(
                    store,
                    &merged_bytes,
                    &descriptor.media_type,
                    &[tagged],
                    registry_options,
                )
                .context("failed to push the attestations")?;
            }
        }
    }
    Ok(())
}
