//! Signing in a registry: the signature layouts (cosign's `.sig`/`.att` tags, Sigstore bundle
//! referrers) a signing push writes, and `kiln sign` for an image already pushed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;
use kiln::build;
use kiln::image;

/// Which signature layouts a signing push writes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SignatureFormatName {
    /// cosign's tags: `sha256-<hex>.sig` (simple signing) and `sha256-<hex>.att` (DSSE).
    CosignTags,
    /// Sigstore bundle v0.3 referrers, listed in the `sha256-<hex>` fallback tag.
    Bundle,
    /// Both layouts.
    Both,
}

impl SignatureFormatName {
    /// Whether cosign's `.sig`/`.att` tags are written.
    pub(crate) fn cosign_tags(self) -> bool {
        matches!(
            self,
            SignatureFormatName::CosignTags | SignatureFormatName::Both
        )
    }

    /// The layouts, as the library names them.
    pub(crate) fn formats(self) -> attest::layout_signatures::SignatureFormats {
        attest::layout_signatures::SignatureFormats {
            cosign_tags: self.cosign_tags(),
            bundles: self.bundles(),
        }
    }

    /// Whether Sigstore bundle referrers are written.
    pub(crate) fn bundles(self) -> bool {
        matches!(
            self,
            SignatureFormatName::Bundle | SignatureFormatName::Both
        )
    }
}

/// Signs `subjects` (and puts the signed `attestations` about them) in the layouts `format`
/// names, in every target's repository.
pub(crate) fn push_signatures(
    format: SignatureFormatName,
    store: &kiln::store::Store,
    subjects: &[image::manifest::Descriptor],
    attestations: &[attest::Attestation],
    key: &attest::SigningKey,
    targets: &[kiln::registry::Reference],
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    if format.cosign_tags() {
        push_cosign_tags(store, subjects, attestations, key, targets, options)
            .context("failed to push cosign's .sig/.att tags")?;
    }
    if format.bundles() {
        push_bundles(store, subjects, attestations, key, targets, options)
            .context("failed to push the Sigstore bundles")?;
    }
    Ok(())
}

/// The bytes of the manifest under `tagged`, or None when the registry has no such tag (404);
/// `purpose` says why it was read, for the error.
pub(crate) fn fetch_tag(
    tagged: &kiln::registry::Reference,
    options: &kiln::registry::RegistryOptions,
    purpose: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    match kiln::registry::fetch_raw_manifest(tagged, options) {
        Ok((_, bytes)) => Ok(Some(bytes)),
        Err(kiln::registry::RegistryError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read `{tagged}` {purpose}")),
    }
}

/// The manifest under `tagged`, or None when the registry has no such tag (404).
pub(crate) fn existing_tag_manifest(
    tagged: &kiln::registry::Reference,
    store: &kiln::store::Store,
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<Option<image::manifest::Manifest>> {
    let Some(bytes) = fetch_tag(tagged, options, "to keep the entries already under it")? else {
        return Ok(None);
    };
    let manifest: image::manifest::Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{tagged}` is not an OCI image manifest"))?;
    // The push walks the manifest from the store: bring its blobs (already on the registry,
    // so nothing is uploaded again) in first.
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        kiln::registry::fetch_blob(tagged, blob, store, options)
            .with_context(|| format!("failed to fetch {} of `{tagged}`", blob.digest))?;
    }
    Ok(Some(manifest))
}

/// Writes (or extends) `tag` in `target`'s repository with `layers`.
pub(crate) fn push_tag_layers(
    store: &kiln::store::Store,
    target: &kiln::registry::Reference,
    tag: &str,
    layers: &[image::manifest::Descriptor],
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    let tagged = target.with_tag(tag).map_err(|e| anyhow::anyhow!("{e}"))?;
    let existing = existing_tag_manifest(&tagged, store, options)?;
    let bytes = attest::cosign::merge_manifest(store, existing.as_ref(), layers)?;
    kiln::registry::push_manifest(
        store,
        &bytes,
        image::manifest::MEDIA_TYPE_OCI_MANIFEST,
        std::slice::from_ref(&tagged),
        options,
    )
    .with_context(|| format!("failed to push `{tagged}`"))?;
    Ok(())
}

/// Signs every manifest in `subjects` with `key` under cosign's `.sig` tag of each target's
/// repository, and puts the signed `attestations` whose subject it is under its `.att` tag.
/// Entries already under those tags are kept.
pub(crate) fn push_cosign_tags(
    store: &kiln::store::Store,
    subjects: &[image::manifest::Descriptor],
    attestations: &[attest::Attestation],
    key: &attest::SigningKey,
    targets: &[kiln::registry::Reference],
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    for target in targets {
        let docker_reference = target.name();
        for subject in subjects.iter().map(|s| &s.digest) {
            let signature =
                attest::cosign::signature_layer(store, key, &docker_reference, subject)?;
            let tag = attest::cosign::signature_tag(subject);
            push_tag_layers(store, target, &tag, &[signature], options)?;
            let mut envelopes = Vec::new();
            for attestation in attestations {
                if attestation.subjects().contains(subject)
                    && let Some(layer) = attest::cosign::attestation_layer(store, attestation)?
                {
                    envelopes.push(layer);
                }
            }
            if !envelopes.is_empty() {
                let tag = attest::cosign::attestation_tag(subject);
                push_tag_layers(store, target, &tag, &envelopes, options)?;
            }
        }
    }
    Ok(())
}

/// The manifests a signature of `descriptor` (in `store`) covers: itself and, for an index,
/// each of its child manifests (containers/image checks each platform's manifest).
pub(crate) fn signing_subjects(
    store: &kiln::store::Store,
    descriptor: &image::manifest::Descriptor,
) -> anyhow::Result<Vec<image::manifest::Descriptor>> {
    let mut subjects = vec![descriptor.clone()];
    if descriptor.media_type == image::manifest::MEDIA_TYPE_OCI_INDEX
        || descriptor.media_type == image::manifest::MEDIA_TYPE_DOCKER_LIST
    {
        let digest = &descriptor.digest;
        let index: image::manifest::Index = serde_json::from_slice(&store.read_bytes(digest)?)
            .with_context(|| format!("{digest} is not an image index"))?;
        subjects.extend(index.manifests);
    }
    Ok(subjects)
}

/// Pushes a Sigstore bundle v0.3 referrer per signature (one per manifest in `subjects`) and
/// per signed attestation whose subject it is, by digest, and lists them in each subject's
/// `sha256-<hex>` fallback tag index (keeping its earlier entries) on registries without the
/// referrers API.
pub(crate) fn push_bundles(
    store: &kiln::store::Store,
    subjects: &[image::manifest::Descriptor],
    attestations: &[attest::Attestation],
    key: &attest::SigningKey,
    targets: &[kiln::registry::Reference],
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    for target in targets {
        for subject in subjects {
            let mut bundles = vec![(
                attest::bundle::signature_bundle(key, &target.name(), &subject.digest)?,
                attest::bundle::SIGN_PREDICATE_TYPE.to_owned(),
            )];
            for attestation in attestations {
                if attestation.subjects().contains(&subject.digest)
                    && let Some(bundle) = attest::bundle::attestation_bundle(attestation, key)?
                {
                    bundles.push((bundle, attestation.predicate_type().to_owned()));
                }
            }
            let mut entries = Vec::new();
            for (bundle, predicate_type) in &bundles {
                let (bytes, descriptor) =
                    attest::bundle::referrer_manifest(store, bundle, predicate_type, subject)?;
                let by_digest = kiln::registry::Reference::new(
                    target.registry(),
                    target.repository(),
                    None,
                    Some(descriptor.digest.clone()),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                kiln::registry::push_manifest(
                    store,
                    &bytes,
                    &descriptor.media_type,
                    &[by_digest],
                    options,
                )
                .context("failed to push a Sigstore bundle")?;
                entries.push(descriptor);
            }
            if kiln::registry::supports_referrers(target, &subject.digest, options).unwrap_or(false)
            {
                continue;
            }
            let tag = attest::attach::fallback_tag(&subject.digest);
            let tagged = target.with_tag(&tag).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut index = existing_fallback_index(&tagged, store, options)?
                .unwrap_or_else(image::manifest::Index::empty);
            for entry in entries {
                if !index.manifests.iter().any(|m| m.digest == entry.digest) {
                    index.manifests.push(entry);
                }
            }
            let bytes = image::canonical::to_vec(&index)?;
            store.put_bytes(&bytes)?;
            kiln::registry::push_manifest(
                store,
                &bytes,
                image::manifest::MEDIA_TYPE_OCI_INDEX,
                std::slice::from_ref(&tagged),
                options,
            )
            .with_context(|| format!("failed to push the fallback tag `{tagged}`"))?;
        }
    }
    Ok(())
}

/// The index under the fallback tag `tagged`, with every referrer it lists brought into
/// `store` (the push walks the index from the store; nothing is uploaded again), or None when
/// the registry has no such tag.
pub(crate) fn existing_fallback_index(
    tagged: &kiln::registry::Reference,
    store: &kiln::store::Store,
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<Option<image::manifest::Index>> {
    let Some(bytes) = fetch_tag(tagged, options, "to keep the referrers it lists")? else {
        return Ok(None);
    };
    let index: image::manifest::Index = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{tagged}` is not an OCI index"))?;
    for entry in &index.manifests {
        let by_digest = kiln::registry::Reference::new(
            tagged.registry(),
            tagged.repository(),
            None,
            Some(entry.digest.clone()),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_, manifest_bytes) = kiln::registry::fetch_raw_manifest(&by_digest, options)?;
        let manifest: image::manifest::Manifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("referrer {} is not an OCI manifest", entry.digest))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            kiln::registry::fetch_blob(&by_digest, blob, store, options)?;
        }
        store.put_bytes(&manifest_bytes)?;
    }
    Ok(Some(index))
}

#[derive(clap::Args)]
pub(crate) struct SignArgs {
    /// The image in a registry (`registry/repository:tag` or `...@sha256:...`) or in an OCI
    /// layout (`oci:DIR[:TAG]`, `oci:DIR@sha256:...`); an index is signed with each platform
    /// manifest it lists.
    image: String,
    /// For `oci:DIR`: the `registry/repository` the signature names (cosign's
    /// docker-reference); default: that of the entry's `io.containerd.image.name`, else none.
    #[arg(long)]
    identity: Option<String>,
    /// The private key (PKCS#8 PEM, or cosign's encrypted key with KILN_PASSWORD or
    /// COSIGN_PASSWORD).
    #[arg(long)]
    key: PathBuf,
    /// The signature layouts: `cosign-tags`, `bundle` or `both`.
    #[arg(long, value_enum, default_value = "both")]
    signature_format: SignatureFormatName,
    #[command(flatten)]
    registry: super::RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// `kiln sign`: signs an image already in a registry, like `cosign sign --key`.
pub(crate) fn run_sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = attest::SigningKey::load(&args.key).context("failed to load the signing key")?;
    if let Some(rest) = args.image.strip_prefix("oci:") {
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        let signed = attest::layout_signatures::sign_layout_image(
            Path::new(&dir),
            reference.as_deref(),
            args.identity.as_deref(),
            &key,
            args.signature_format.formats(),
        )
        .with_context(|| format!("failed to sign `{}`", args.image))?;
        eprintln!(
            "kiln: signed {} manifest(s) of `{}`",
            signed.len(),
            args.image
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.identity.is_some() {
        return Err(super::usage(
            "--identity is for oci:DIR images; a registry image is signed for its own repository"
                .to_owned(),
        ));
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let options = args.registry.options(&cache_dir)?;
    let reference = super::parse_references(std::slice::from_ref(&args.image))?.remove(0);
    let (digest, bytes) = kiln::registry::fetch_raw_manifest(&reference, &options)
        .with_context(|| format!("failed to read `{}`", args.image))?;
    store.put_bytes(&bytes)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| image::manifest::MEDIA_TYPE_OCI_MANIFEST.to_owned());
    let descriptor =
        image::manifest::Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
    let subjects = signing_subjects(&store, &descriptor)?;
    // Signatures live in the image's repository, tagged by digest: the target carries no tag.
    let target = kiln::registry::Reference::new(
        reference.registry(),
        reference.repository(),
        None,
        Some(digest.clone()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    push_signatures(
        args.signature_format,
        &store,
        &subjects,
        &[],
        &key,
        &[target],
        &options,
    )?;
    eprintln!(
        "kiln: signed {} manifest(s) of `{}`",
        subjects.len(),
        args.image
    );
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}
