//! `kiln manifest create REF --from SRC...` (and buildx's spelling, `kiln imagetools create -t REF
//! SRC...`): one image index published from platform manifests built and pushed elsewhere, for
//! example by `kiln build --platform linux/arm64` on one runner and `linux/amd64` on another.
//!
//! A source is a registry reference (`registry/repo@sha256:...` or `:tag`), a bare
//! `sha256:...` (in the target's repository) or an OCI layout `oci:DIR[:TAG]`; it names an
//! image manifest, whose platform is read from its config, or an index, whose image manifests
//! (and the buildx attestation manifests describing them) are all taken. The index lists them
//! in canonical order ([`kiln::image::compose`]): sorted by platform, so the order of the
//! sources never changes its digest.
//!
//! Publishing: every platform manifest goes to the target repository by digest first, its blobs
//! mounted from the source repository when both are on the same registry (copied through the
//! store otherwise, or when the registry refuses the mount); then each platform manifest's
//! attestations in the source repository are copied: its referrers (the referrers API, else the
//! `sha256-<hex>` fallback tag) and cosign's `.sig`/`.att` tags, or, for an `oci:` source, what
//! the layout holds for it. The index goes last, and its digest is printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use kiln::attest;
use kiln::build;
use kiln::digest::Digest;
use kiln::image::compose::{PlatformEntry, compose_index};
use kiln::image::manifest::{
    Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST, Manifest,
};
use kiln::image::{self, Platform};
use kiln::registry::{Reference, RegistryOptions};
use kiln::store::Store;

use super::{RegistryFlags, parse_references, usage};

#[derive(clap::Args)]
pub(crate) struct ManifestArgs {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(clap::Subcommand)]
enum ManifestCommand {
    /// Publish one image index listing platform manifests pushed elsewhere, with their
    /// attestations (buildx's `imagetools create`).
    Create(CreateArgs),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Where to push the index (`registry/repository:tag`).
    target: String,
    /// A platform manifest or an index of them: `registry/repo@sha256:...`,
    /// `registry/repo:tag`, a bare `sha256:...` in the target's repository, or
    /// `oci:DIR[:TAG]`; repeatable, in any order (the index is sorted by platform).
    #[arg(long = "from", required = true, value_name = "DIGEST_OR_REF")]
    sources: Vec<String>,
    #[command(flatten)]
    flags: CreateFlags,
}

#[derive(clap::Args)]
struct CreateFlags {
    /// Print the index (the exact bytes that would be pushed) and push nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ImagetoolsArgs {
    #[command(subcommand)]
    command: ImagetoolsCommand,
}

#[derive(clap::Subcommand)]
enum ImagetoolsCommand {
    /// `kiln manifest create` in buildx's spelling: `-t REF SRC...`.
    Create(ImagetoolsCreateArgs),
}

#[derive(clap::Args)]
struct ImagetoolsCreateArgs {
    /// Where to push the index; repeatable.
    #[arg(short = 't', long = "tag", required = true)]
    tags: Vec<String>,
    /// The sources (as `kiln manifest create --from`).
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    #[command(flatten)]
    flags: CreateFlags,
}

pub(crate) fn run_manifest(args: ManifestArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ManifestCommand::Create(create) => {
            run_create(&[create.target], &create.sources, &create.flags)
        }
    }
}

pub(crate) fn run_imagetools(args: ImagetoolsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImagetoolsCommand::Create(create) => {
            run_create(&create.tags, &create.sources, &create.flags)
        }
    }
}

/// Where a source's manifests are read from.
#[derive(Clone)]
enum Origin {
    Registry(Reference),
    Layout {
        dir: PathBuf,
        reference: Option<String>,
    },
}

/// One `--from`, as written and resolved, with what was read from it.
struct Source {
    text: String,
    origin: Origin,
    /// The manifest or index it names, in the store.
    top: Descriptor,
    entries: Vec<PlatformEntry>,
}

fn run_create(
    targets: &[String],
    sources: &[String],
    flags: &CreateFlags,
) -> anyhow::Result<ExitCode> {
    let targets = parse_references(targets)?;
    let cache_dir = flags
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let options = flags.registry.options(&cache_dir)?;
    let mut read = Vec::with_capacity(sources.len());
    for text in sources {
        let origin = resolve_source(text, &targets[0])?;
        read.push(
            read_source(text, origin, &store, &options)
                .with_context(|| format!("failed to read the source `{text}`"))?,
        );
    }
    let index = compose_index(read.iter().flat_map(|s| s.entries.clone()).collect())
        .map_err(|e| usage(e.to_string()))?;
    let bytes = image::canonical::to_vec(&index)?;
    let digest = Digest::of(&bytes);
    if flags.dry_run {
        println!("{}", String::from_utf8_lossy(&bytes));
        eprintln!("kiln: dry run: index {digest} not pushed");
        return Ok(ExitCode::SUCCESS);
    }
    store.put_bytes(&bytes)?;
    for source in &read {
        publish_source(source, &index, &store, &targets, &options)
            .with_context(|| format!("failed to copy `{}` to the target", source.text))?;
    }
    let pushed =
        kiln::registry::push_manifest(&store, &bytes, MEDIA_TYPE_OCI_INDEX, &targets, &options)
            .context("failed to push the index")?;
    super::report_push(&pushed, true);
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

/// `reference` with no tag, pinned to `digest`.
fn by_digest(reference: &Reference, digest: &Digest) -> anyhow::Result<Reference> {
    Reference::new(
        reference.registry(),
        reference.repository(),
        None,
        Some(digest.clone()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn resolve_source(text: &str, target: &Reference) -> anyhow::Result<Origin> {
    if let Some(rest) = text.strip_prefix("oci:") {
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        return Ok(Origin::Layout {
            dir: PathBuf::from(dir),
            reference,
        });
    }
    if text.starts_with("sha256:") {
        let digest: Digest = text
            .parse()
            .map_err(|e| usage(format!("invalid source `{text}`: {e}")))?;
        return Ok(Origin::Registry(by_digest(target, &digest)?));
    }
    let reference = text.parse::<Reference>().map_err(|e| {
        usage(format!(
            "invalid source `{text}`: {e} (expected a registry reference, a bare sha256:... \
             in the target's repository, or oci:DIR[:TAG])"
        ))
    })?;
    Ok(Origin::Registry(reference))
}

/// The media type a manifest or index declares (an OCI document may leave it out: then its
/// shape tells).
fn media_type_of(bytes: &[u8]) -> anyhow::Result<String> {
    let document: serde_json::Value =
        serde_json::from_slice(bytes).context("not a JSON manifest or index")?;
    Ok(match document["mediaType"].as_str() {
        Some(media_type) => media_type.to_owned(),
        None if document.get("manifests").is_some() => MEDIA_TYPE_OCI_INDEX.to_owned(),
        None => MEDIA_TYPE_OCI_MANIFEST.to_owned(),
    })
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
}

fn is_manifest(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// Brings the manifest `digest` of `origin` into the store (a layout's is there already).
fn fetch_manifest(
    origin: &Origin,
    digest: &Digest,
    store: &Store,
    options: &RegistryOptions,
) -> anyhow::Result<Vec<u8>> {
    if let Origin::Registry(reference) = origin
        && !store.contains(digest)
    {
        let (_, bytes) =
            kiln::registry::fetch_raw_manifest(&by_digest(reference, digest)?, options)?;
        store.put_bytes(&bytes)?;
    }
    Ok(store.read_bytes(digest)?)
}

/// The platform the config of the image manifest `bytes` names, if it names one.
fn platform_of(
    origin: &Origin,
    bytes: &[u8],
    store: &Store,
    options: &RegistryOptions,
) -> anyhow::Result<Option<Platform>> {
    let manifest: Manifest = serde_json::from_slice(bytes).context("not an image manifest")?;
    if let Origin::Registry(reference) = origin {
        let at = by_digest(reference, &Digest::of(bytes))?;
        kiln::registry::fetch_blob(&at, &manifest.config, store, options)?;
    }
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_bytes(&manifest.config.digest)?)
            .unwrap_or(serde_json::Value::Null);
    let field = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    Ok(match (field("os"), field("architecture")) {
        (Some(os), Some(architecture)) => {
            let mut platform = Platform::new(os, architecture, field("variant"));
            platform.os_version = field("os.version").map(str::to_owned);
            Some(platform)
        }
        _ => None,
    })
}

fn read_source(
    text: &str,
    origin: Origin,
    store: &Store,
    options: &RegistryOptions,
) -> anyhow::Result<Source> {
    let (digest, bytes) = match &origin {
        Origin::Registry(reference) => {
            let (digest, bytes) = kiln::registry::fetch_raw_manifest(reference, options)?;
            store.put_bytes(&bytes)?;
            (digest, bytes)
        }
        Origin::Layout { dir, reference } => {
            let descriptor = image::base::import_layout(store, dir, reference.as_deref())?;
            let bytes = store.read_bytes(&descriptor.digest)?;
            (descriptor.digest, bytes)
        }
    };
    let media_type = media_type_of(&bytes)?;
    let top = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let mut entries = Vec::new();
    if is_manifest(&media_type) {
        let mut manifest = top.clone();
        manifest.platform = platform_of(&origin, &bytes, store, options)?;
        entries.push(PlatformEntry {
            source: text.to_owned(),
            manifest,
            attestations: Vec::new(),
        });
    } else if is_index(&media_type) {
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("index {digest} is not an image index"))?;
        let (attestations, images): (Vec<Descriptor>, Vec<Descriptor>) = index
            .manifests
            .into_iter()
            .partition(attest::attach::is_attestation_manifest);
        for attestation in &attestations {
            fetch_manifest(&origin, &attestation.digest, store, options)?;
        }
        for child in images {
            if !is_manifest(&child.media_type) {
                anyhow::bail!(
                    "index {digest} lists {} of type `{}`: kiln manifest create takes image \
                     manifests and indexes of image manifests",
                    child.digest,
                    child.media_type
                );
            }
            let child_bytes = fetch_manifest(&origin, &child.digest, store, options)?;
            let mut manifest = Descriptor::new(&child.media_type, child.digest.clone(), child.size);
            manifest.platform = match child.platform {
                Some(platform) => Some(platform),
                None => platform_of(&origin, &child_bytes, store, options)?,
            };
            let describing = attestations
                .iter()
                .filter(|a| {
                    a.annotations
                        .get(attest::attach::ANNOTATION_REFERENCE_DIGEST)
                        == Some(&child.digest.to_string())
                })
                .cloned()
                .collect();
            entries.push(PlatformEntry {
                source: text.to_owned(),
                manifest,
                attestations: describing,
            });
        }
    } else {
        anyhow::bail!("{digest} is a `{media_type}`, not an image manifest or index");
    }
    Ok(Source {
        text: text.to_owned(),
        origin,
        top,
        entries,
    })
}

/// Puts every manifest of `source` that `index` lists into each target repository (by digest,
/// blobs mounted or copied), then the attestations of its platform manifests.
fn publish_source(
    source: &Source,
    index: &Index,
    store: &Store,
    targets: &[Reference],
    options: &RegistryOptions,
) -> anyhow::Result<()> {
    let listed: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            source.entries.iter().any(|e| {
                e.manifest.digest == d.digest || e.attestations.iter().any(|a| a.digest == d.digest)
            })
        })
        .collect();
    for descriptor in &listed {
        for target in targets {
            copy_manifest(source, descriptor, store, target, options)?;
        }
    }
    match &source.origin {
        Origin::Registry(reference) => {
            for entry in &source.entries {
                let already_there = targets.iter().all(|t| {
                    t.registry() == reference.registry() && t.repository() == reference.repository()
                });
                if !already_there {
                    copy_attestations(reference, &entry.manifest.digest, store, targets, options)?;
                }
            }
        }
        Origin::Layout { dir, .. } => {
            let bytes = store.read_bytes(&source.top.digest)?;
            super::registry::push_layout_referrers(
                store,
                dir,
                &bytes,
                &source.top,
                targets,
                options,
            )?;
        }
    }
    Ok(())
}

/// Pushes the manifest `descriptor` of `source` to `target` by digest. On the same registry its
/// blobs are mounted from the source repository; what cannot be mounted is fetched into the
/// store and uploaded.
fn copy_manifest(
    source: &Source,
    descriptor: &Descriptor,
    store: &Store,
    target: &Reference,
    options: &RegistryOptions,
) -> anyhow::Result<()> {
    let bytes = store.read_bytes(&descriptor.digest)?;
    let destination = by_digest(target, &descriptor.digest)?;
    let push = |options: &RegistryOptions| {
        kiln::registry::push_manifest(
            store,
            &bytes,
            &descriptor.media_type,
            std::slice::from_ref(&destination),
            options,
        )
    };
    let Origin::Registry(from) = &source.origin else {
        push(options)?;
        return Ok(());
    };
    if from.registry() == target.registry() {
        let mounting = options.clone().mount_from(from.repository());
        match push(&mounting) {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, digest = %descriptor.digest, "mount-only copy failed; copying the blobs")
            }
        }
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest {} is not an image manifest", descriptor.digest))?;
    let at = by_digest(from, &descriptor.digest)?;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        kiln::registry::fetch_blob(&at, blob, store, options)?;
    }
    push(options).with_context(|| format!("failed to push manifest {}", descriptor.digest))?;
    Ok(())
}

/// Copies the referrers of `subject` (referrers API, else its fallback tag) and cosign's
/// `.sig`/`.att` tags for it from `source`'s repository to every target.
fn copy_attestations(
    source: &Reference,
    subject: &Digest,
    store: &Store,
    targets: &[Reference],
    options: &RegistryOptions,
) -> anyhow::Result<()> {
    let tag = attest::attach::fallback_tag(subject);
    let tagged = source.with_tag(&tag).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listed = match kiln::registry::fetch_referrers(source, subject, options) {
        Ok(Some(bytes)) => Some(bytes),
        _ => super::sign::fetch_tag(&tagged, options, "for the attestations")?,
    };
    if let Some(index_bytes) = listed {
        let referrers: Index = serde_json::from_slice(&index_bytes).with_context(|| {
            format!(
                "the referrers of {subject} in `{}` are not an OCI index",
                source.name()
            )
        })?;
        if !referrers.manifests.is_empty() {
            for referrer in &referrers.manifests {
                let at = by_digest(source, &referrer.digest)?;
                let (_, bytes) = kiln::registry::fetch_raw_manifest(&at, options)?;
                store.put_bytes(&bytes)?;
                let manifest: Manifest = serde_json::from_slice(&bytes).with_context(|| {
                    format!("referrer {} is not an OCI manifest", referrer.digest)
                })?;
                for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    kiln::registry::fetch_blob(&at, blob, store, options)?;
                }
            }
            let (digest, size) = store.put_bytes(&index_bytes)?;
            let descriptor = Descriptor::new(MEDIA_TYPE_OCI_INDEX, digest, size);
            super::attach::push_referrers(store, subject, &tag, &descriptor, targets, options)?;
            eprintln!(
                "kiln: copied {} referrer(s) of {subject}",
                referrers.manifests.len()
            );
        }
    }
    for tag in [
        attest::cosign::signature_tag(subject),
        attest::cosign::attestation_tag(subject),
    ] {
        let tagged = source.with_tag(&tag).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(manifest) = super::sign::existing_tag_manifest(&tagged, store, options)? {
            for target in targets {
                super::sign::push_tag_layers(store, target, &tag, &manifest.layers, options)?;
            }
            eprintln!("kiln: copied {tag}");
        }
    }
    Ok(())
}
