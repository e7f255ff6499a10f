//! `kiln build --platform linux/amd64,linux/arm64`: the flag's list of platforms, and what a
//! build for several of them writes: one OCI image index (sorted by platform) to
//! `type=oci` and `type=oci-archive`, one directory per platform for `type=local` (buildx's
//! `platform-split`), the index pushed to the registry, attestations and signatures for every
//! platform manifest, and `--metadata-file` naming the index and each platform's image.
//!
//! Also `--push-by-digest` (buildx `type=image,push-by-digest=true`), for one platform or
//! several: the push names the repository and no tag, and the digest is printed, for
//! `kiln manifest create` to gather the images built on several runners into one index.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;

use kiln::attest;
use kiln::build::{self, BuildOptions, Reporter};
use kiln::digest::Digest;
use kiln::image::{self, Platform};

use super::attach::{make_attestations, push_attestations};
use super::attest::AttestModeName;
use super::build_args::{BuildArgs, ProgressMode};
use super::*;

/// The platforms `--platform` lists (comma-separated, repeatable, as buildx takes them), in
/// order; each must be a Linux platform kiln knows, and none may be given twice.
pub(crate) fn parse_platforms(values: &[String]) -> anyhow::Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for text in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if text.is_empty() {
            return Err(usage(format!(
                "invalid --platform `{}`: an empty platform in the list",
                values.join(",")
            )));
        }
        let platform = text
            .parse::<Platform>()
            .map_err(|e| usage(format!("invalid --platform `{text}`: {e}")))?;
        build::check_target_platform(&platform).map_err(usage)?;
        if platforms
            .iter()
            .any(|p| p.normalized() == platform.normalized())
        {
            return Err(usage(format!(
                "--platform names `{platform}` twice; an image index holds one image per platform"
            )));
        }
        platforms.push(platform);
    }
    Ok(platforms)
}

/// Refuses, before anything is built, the outputs that cannot hold several platforms.
pub(crate) fn check_outputs(outputs: &[OutputSpec], platforms: &[Platform]) -> anyhow::Result<()> {
    if platforms.len() < 2 {
        return Ok(());
    }
    for output in outputs {
        if let OutputKind::DockerArchive = output.kind {
            return Err(usage(format!(
                "type=docker-archive (`{}`) holds one image, and --platform lists {}: \
                 docker's format has no image index (buildx refuses it too); use \
                 type=oci-archive, or build one platform per docker-archive",
                output.dest.display(),
                platforms.len()
            )));
        }
    }
    Ok(())
}

/// The directory buildx's local exporter gives one platform's files under `platform-split`:
/// the platform with `/` as `_` (`linux_arm64`, `linux_arm_v7`).
pub(crate) fn platform_dir_name(platform: &Platform) -> String {
    platform.to_string().replace('/', "_")
}

/// Where a push goes: the given references, or, with `--push-by-digest`, each one's
/// repository by `digest` alone (no tag moves).
pub(crate) fn push_references(
    targets: &[kiln::registry::Reference],
    digest: &Digest,
    by_digest: bool,
) -> anyhow::Result<Vec<kiln::registry::Reference>> {
    if !by_digest {
        return Ok(targets.to_vec());
    }
    let mut by_repository: Vec<kiln::registry::Reference> = Vec::new();
    for target in targets {
        let reference = kiln::registry::Reference::new(
            target.registry(),
            target.repository(),
            None,
            Some(digest.clone()),
        )
        .map_err(|e| anyhow::anyhow!("invalid push target `{target}`: {e}"))?;
        if !by_repository.iter().any(|r| {
            r.registry() == reference.registry() && r.repository() == reference.repository()
        }) {
            by_repository.push(reference);
        }
    }
    Ok(by_repository)
}

/// The settings a multi-platform build runs with, resolved by `run_build`.
pub(crate) struct PlatformsRun<'a> {
    pub(crate) args: &'a BuildArgs,
    pub(crate) options: &'a BuildOptions,
    pub(crate) targets: &'a [Platform],
    pub(crate) outputs: &'a [OutputSpec],
    pub(crate) push_targets: &'a [kiln::registry::Reference],
    pub(crate) reporter: &'a dyn Reporter,
    pub(crate) started: Instant,
    pub(crate) started_on: i64,
    pub(crate) base_policy: Option<&'a attest::provenance::BasePolicyRecord>,
}

/// Builds for every platform of `run.targets`, then writes, pushes, attests and signs the index.
pub(crate) fn run_platforms(run: PlatformsRun<'_>) -> anyhow::Result<ExitCode> {
    let PlatformsRun {
        args,
        options,
        targets,
        outputs,
        push_targets,
        reporter,
        started,
        started_on,
        base_policy,
    } = run;
    let outcome = build::build_for_platforms(options, targets, reporter)?;
    let store = &outcome.store;
    if let Some(db) = &args.scan_db {
        for built in &outcome.builds {
            super::scan::check_build(db, &built.packages, args.fail_on)
                .with_context(|| format!("the scan of {} failed", built.image.manifest.platform))?;
        }
    }
    // Each platform's attestations name that platform's manifest (and its platform); they are
    // made side by side, one thread per platform.
    let attestations_by_platform = each_platform(&outcome.builds, |built| {
        make_attestations(args, options, built, started_on, base_policy)
    })?;
    let attestations: Vec<attest::Attestation> =
        attestations_by_platform.iter().flatten().cloned().collect();
    let signing_key = match &args.sign_key {
        Some(path) => {
            Some(attest::SigningKey::load(path).context("failed to load the signing key")?)
        }
        None => None,
    };
    let index = &outcome.index;
    let named = [(index.clone(), args.tags.clone())];
    for output in outputs {
        match output.kind {
            OutputKind::OciLayout => {
                image::layout::write_oci_layout(store, &output.dest, &named).with_context(
                    || format!("failed to write the output `{}`", output.dest.display()),
                )?;
                let signed_subject = if attestations.is_empty() {
                    index.digest.clone()
                } else {
                    attach_to_index_layout(
                        &output.dest,
                        index,
                        &args.tags,
                        &attestations,
                        args.attest_mode,
                    )?
                };
                if let Some(key) = &signing_key {
                    let docker_reference = match args.tags.first() {
                        Some(tag) => parse_references(std::slice::from_ref(tag))?
                            .remove(0)
                            .name(),
                        None => String::new(),
                    };
                    attest::layout_signatures::sign_layout(
                        &output.dest,
                        &signed_subject,
                        &docker_reference,
                        key,
                        &attestations,
                        args.signature_format.formats(),
                    )
                    .with_context(|| {
                        format!(
                            "failed to write the signatures into `{}`",
                            output.dest.display()
                        )
                    })?;
                }
            }
            OutputKind::OciArchive => {
                image::archive::write_oci_archive(store, &output.dest, &named).with_context(
                    || format!("failed to write the output `{}`", output.dest.display()),
                )?
            }
            OutputKind::Local => {
                // buildx's local exporter with several platforms: one directory each.
                std::fs::create_dir_all(&output.dest)
                    .with_context(|| format!("failed to create `{}`", output.dest.display()))?;
                for built in &outcome.builds {
                    let dest = output
                        .dest
                        .join(platform_dir_name(&built.image.manifest.platform));
                    write_local(store, &[(built.image.clone(), Vec::new())], &dest).with_context(
                        || format!("failed to write the output `{}`", dest.display()),
                    )?;
                }
            }
            OutputKind::DockerArchive => {
                unreachable!("refused by check_outputs before the build")
            }
        }
    }
    if !push_targets.is_empty() {
        let targets = push_references(push_targets, &index.digest, args.push_by_digest)?;
        let bytes = store.read_bytes(&index.digest)?;
        let bases: Vec<_> = outcome
            .builds
            .iter()
            .flat_map(|built| built.bases.iter().cloned())
            .collect();
        let push_options = super::cache_flags::with_mount_sources(
            options.registry.clone(),
            &options.shared_cache,
            &bases,
            &targets,
        );
        let pushed = kiln::registry::push_manifest(
            store,
            &bytes,
            image::manifest::MEDIA_TYPE_OCI_INDEX,
            &targets,
            &push_options,
        )
        .context("failed to push the image index")?;
        report_push(&pushed, args.progress != ProgressMode::Quiet);
        // Each manifest's referrers and signatures go on their own thread: the registry round
        // trips of one platform wait on nothing of another's. One thread does both for a
        // manifest, since both update its `sha256-<hex>` fallback tag.
        let sign = |subject: &image::manifest::Descriptor, about: &[attest::Attestation]| {
            match &signing_key {
                Some(key) => super::sign::push_signatures(
                    args.signature_format,
                    store,
                    std::slice::from_ref(subject),
                    about,
                    key,
                    &targets,
                    &options.registry,
                ),
                None => Ok(()),
            }
        };
        let platforms: Vec<(&build::BuildOutcome, &Vec<attest::Attestation>)> = outcome
            .builds
            .iter()
            .zip(&attestations_by_platform)
            .collect();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let index_signed = scope.spawn(|| sign(&index.to_descriptor(), &[]));
            each_platform(&platforms, |(built, platform_attestations)| {
                if !platform_attestations.is_empty() {
                    push_attestations(built, platform_attestations, &targets, options)?;
                }
                sign(&built.image.manifest.to_descriptor(), platform_attestations)
            })?;
            index_signed
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("signing the index panicked")))
        })?;
    }
    if let Some(path) = &args.metadata_file {
        write_metadata(path, &metadata_json(index, &args.tags))?;
    }
    if let Some(path) = &args.iidfile {
        // buildx writes the index digest when the build has no single config.
        write_file_atomically(
            path,
            index.digest.to_string().as_bytes(),
            "the image ID file",
        )?;
    }
    if args.progress != ProgressMode::Quiet {
        let built: usize = outcome.builds.iter().map(|b| b.built_steps).sum();
        let cached: usize = outcome.builds.iter().map(|b| b.cached_steps).sum();
        for built in &outcome.builds {
            eprintln!(
                "kiln: {} {}",
                built.image.manifest.platform, built.image.manifest.digest
            );
        }
        eprintln!(
            "kiln: built index {} for {} platforms ({} layers written, {} cached) in {:.2}s",
            index.digest,
            targets.len(),
            built + outcome.shared_built_steps,
            cached + outcome.shared_cached_steps,
            started.elapsed().as_secs_f64()
        );
        if outputs.is_empty() && push_targets.is_empty() {
            eprintln!(
                "kiln: no --output given: the image stays in the cache at `{}`; add \
                 `--output type=oci,dest=DIR` to export it",
                options.cache_dir.display()
            );
        }
    }
    println!("{}", index.digest);
    Ok(ExitCode::SUCCESS)
}

/// `work` applied to every item on its own thread; the results in order, or the first error.
fn each_platform<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a platform's thread panicked")))
            })
            .collect()
    })
}

/// Attaches the attestations of every platform to the index in the layout `dir` (under each
/// tag, or by digest when untagged): as referrers of each platform manifest, or, in index mode,
/// as buildx's attestation manifests inside the index. Returns the digest the layout now
/// names the image by (index mode writes a new index).
fn attach_to_index_layout(
    dir: &std::path::Path,
    index: &image::BuiltIndex,
    tags: &[String],
    attestations: &[attest::Attestation],
    mode: AttestModeName,
) -> anyhow::Result<Digest> {
    let mode = match mode {
        AttestModeName::Referrers => attest::AttachMode::Referrers,
        AttestModeName::Index => attest::AttachMode::Index,
    };
    let references: Vec<String> = if tags.is_empty() || mode == attest::AttachMode::Referrers {
        vec![index.digest.to_string()]
    } else {
        // The layout names each entry `repo:tag` (`:latest` when the tag was left out).
        tags.iter()
            .map(|tag| {
                let last = tag.rsplit('/').next().unwrap_or(tag);
                if last.contains(':') {
                    tag.clone()
                } else {
                    format!("{tag}:latest")
                }
            })
            .collect()
    };
    let mut named = index.digest.clone();
    for reference in &references {
        let attached = attest::attach(dir, Some(reference), attestations, mode)
            .with_context(|| format!("failed to attach attestations to `{}`", dir.display()))?;
        if let Some(top) = attached.index {
            named = top.digest;
        }
    }
    Ok(named)
}

/// The `--metadata-file` document of a multi-platform build, shaped like buildx's
/// (`containerimage.digest` and `containerimage.descriptor` name the index; buildx lists no
/// per-platform digests), plus `kiln.platforms`: each platform's manifest and config digests.
fn metadata_json(index: &image::BuiltIndex, tags: &[String]) -> serde_json::Value {
    let platforms: Vec<serde_json::Value> = index
        .images
        .iter()
        .map(|image| {
            serde_json::json!({
                "platform": image.manifest.platform.to_string(),
                "containerimage.digest": image.manifest.digest.to_string(),
                "containerimage.config.digest": image.config_digest.to_string(),
                "containerimage.descriptor": image.manifest.to_descriptor(),
            })
        })
        .collect();
    let mut value = serde_json::json!({
        "containerimage.digest": index.digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": image::manifest::MEDIA_TYPE_OCI_INDEX,
            "digest": index.digest.to_string(),
            "size": index.size,
        },
        "kiln.platforms": platforms,
    });
    if !tags.is_empty() {
        value["image.name"] = serde_json::Value::String(tags.join(","));
    }
    value
}
