//! The attestation commands: `kiln attest`, `kiln keygen` and `kiln verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;
use kiln::build;
use kiln::image;

use super::build::AttestModeName;

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Directory to write `private.pem` (mode 0600) and `public.pem` into (`cosign.key` and
    /// `cosign.pub` with `--format cosign`); existing files are never overwritten.
    dir: PathBuf,
    /// Key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    algorithm: KeyAlgorithmName,
    /// Private key file format: unencrypted PKCS#8 PEM, or cosign's password-encrypted
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` (password from KILN_PASSWORD or COSIGN_PASSWORD).
    #[arg(long, value_enum, default_value = "pkcs8")]
    format: KeyFormatName,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KeyFormatName {
    Pkcs8,
    Cosign,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KeyAlgorithmName {
    EcdsaP256,
    Ed25519,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The image: `oci:DIR[:TAG]`, `oci:DIR@sha256:...`, or a registry reference (its
    /// attestations are read from the `sha256-<hex>` fallback tag).
    image: String,
    /// A trusted public key (PEM); repeatable.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// A policy file (TOML or JSON): require_provenance, require_signed, require_base_digest,
    /// allowed_registries, required_predicate_types.
    #[arg(long)]
    policy: Option<PathBuf>,
    #[command(flatten)]
    registry: super::RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// The registry base images (`name@sha256:...`) that the trusted provenance statements of the
/// verified image name in `resolvedDependencies` (`pkg:docker/...` with a sha256 digest).
fn base_images(
    layout: &Path,
    report: &attest::VerifyReport,
    keys: &[attest::PublicKey],
) -> anyhow::Result<Vec<String>> {
    let mut bases = Vec::new();
    for found in report
        .attestations
        .iter()
        .filter(|f| f.trusted && f.predicate_type == "https://slsa.dev/provenance/v1")
    {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(found.blob.hex()))
            .with_context(|| format!("failed to read attestation {}", found.blob))?;
        let what = format!("attestation {}", found.blob);
        let payload = if found.signed {
            attest::Envelope::from_slice(&bytes, &what)?
                .verify(keys, 1, &what)?
                .payload
        } else {
            bytes
        };
        let statement = attest::Statement::from_slice(&payload, &what)?;
        let dependencies = statement.predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for dependency in dependencies {
            let (Some(uri), Some(hex)) = (
                dependency["uri"].as_str(),
                dependency["digest"]["sha256"].as_str(),
            ) else {
                continue;
            };
            let Some(rest) = uri.strip_prefix("pkg:docker/") else {
                continue;
            };
            let name = rest.split(['@', '?']).next().unwrap_or(rest);
            if name.starts_with("oci:") || name.starts_with("oci-archive:") {
                continue;
            }
            let base = format!("{name}@sha256:{hex}");
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }
    Ok(bases)
}

/// Pulls `image` and the referrers listed in its `sha256-<hex>` fallback tag into the OCI
/// layout `layout` (image tagged `image`, the fallback tag kept), for `attest::verify`.
fn fetch_with_referrers(
    image: &str,
    options: &kiln::registry::RegistryOptions,
    cache_dir: &Path,
    layout: &Path,
) -> anyhow::Result<()> {
    use kiln::image::manifest::{Descriptor, Index, MEDIA_TYPE_OCI_INDEX, Manifest};
    let reference = super::parse_references(&[image.to_owned()])?.remove(0);
    let store = build::open_store(cache_dir)?;
    let pulled = kiln::registry::pull(&reference, &image::Platform::host(), &store, options)
        .with_context(|| format!("failed to pull `{image}`"))?;
    let built = image::BuiltImage::from_store(&store, &pulled.manifest_digest)?;
    image::layout::write_oci_layout(
        &store,
        layout,
        &[(built.clone(), vec!["verify:image".to_owned()])],
    )?;
    let digest = &built.manifest.digest;
    let fallback_tag = format!("sha256-{}", digest.hex());
    let Ok(fallback) = reference.with_tag(&fallback_tag) else {
        return Ok(());
    };
    // The referrers API when the registry has one, else the fallback tag; none: verify
    // reports the missing attestations.
    let index_bytes = match kiln::registry::fetch_referrers(&reference, digest, options) {
        Ok(Some(bytes)) => bytes,
        _ => match kiln::registry::fetch_raw_manifest(&fallback, options) {
            Ok((_, bytes)) => bytes,
            Err(_) => return Ok(()),
        },
    };
    let index_digest = kiln::digest::Digest::of(&index_bytes);
    let index: Index = serde_json::from_slice(&index_bytes)
        .with_context(|| format!("the referrers index of `{image}` is not an OCI index"))?;
    store.put_bytes(&index_bytes)?;
    let blobs = layout.join("blobs/sha256");
    let copy = |digest: &kiln::digest::Digest| -> anyhow::Result<()> {
        let target = blobs.join(digest.hex());
        if !target.exists() {
            std::fs::copy(store.blob_path(digest), &target)
                .with_context(|| format!("failed to copy blob {digest} into the scratch layout"))?;
        }
        Ok(())
    };
    copy(&index_digest)?;
    for referrer in &index.manifests {
        let (manifest_digest, bytes) = kiln::registry::fetch_raw_manifest(
            &reference.with_digest(referrer.digest.clone()),
            options,
        )?;
        store.put_bytes(&bytes)?;
        copy(&manifest_digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("referrer {manifest_digest} is not an OCI manifest"))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            kiln::registry::fetch_blob(&reference, blob, &store, options)?;
            copy(&blob.digest)?;
        }
    }
    let index_path = layout.join("index.json");
    let mut top: Index = serde_json::from_slice(
        &std::fs::read(&index_path).context("failed to read the scratch layout's index")?,
    )?;
    let mut entry = Descriptor::new(MEDIA_TYPE_OCI_INDEX, index_digest, index_bytes.len() as u64);
    entry
        .annotations
        .insert("org.opencontainers.image.ref.name".to_owned(), fallback_tag);
    top.manifests.push(entry);
    std::fs::write(&index_path, image::canonical::to_vec(&top)?)
        .context("failed to write the scratch layout's index")?;
    Ok(())
}

pub(crate) fn run_keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let algorithm = match args.algorithm {
        KeyAlgorithmName::EcdsaP256 => attest::KeyAlgorithm::EcdsaP256,
        KeyAlgorithmName::Ed25519 => attest::KeyAlgorithm::Ed25519,
    };
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("failed to create `{}`", args.dir.display()))?;
    let (private, public) = match args.format {
        KeyFormatName::Pkcs8 => attest::keygen(&args.dir, algorithm)?,
        KeyFormatName::Cosign => {
            let [first, second] = attest::cosign_key::PASSWORD_VARIABLES;
            let password = attest::cosign_key::password_from_env().with_context(|| {
                format!("`kiln keygen --format cosign` encrypts the key with a password: set {first} (or {second})")
            })?;
            attest::keys::keygen_cosign(&args.dir, algorithm, &password)?
        }
    };
    let key = attest::PublicKey::load(&public)?;
    eprintln!(
        "kiln: wrote `{}` (keep it secret) and `{}` (keyid {})",
        private.display(),
        public.display(),
        key.keyid()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // A registry image is copied, with its referrers, into a scratch layout first.
    let scratch;
    let (dir, reference) = match args.image.strip_prefix("oci:") {
        Some(rest) => kiln::dockerfile::plan::split_local_reference(rest),
        None => {
            let cache_dir = args
                .cache_dir
                .clone()
                .unwrap_or_else(build::default_cache_dir);
            scratch = tempfile::Builder::new()
                .prefix("verify-")
                .tempdir()
                .context("failed to create a scratch directory")?;
            let layout = scratch.path().join("layout");
            fetch_with_referrers(
                &args.image,
                &args.registry.options(&cache_dir)?,
                &cache_dir,
                &layout,
            )?;
            (layout.display().to_string(), Some("image".to_owned()))
        }
    };
    let mut keys = args
        .keys
        .iter()
        .map(|path| attest::PublicKey::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match &args.policy {
        Some(path) => attest::Policy::load(path)?,
        None => attest::Policy {
            require_provenance: true,
            require_signed: true,
            ..attest::Policy::default()
        },
    };
    keys.extend(policy.load_keys()?);
    let report = attest::verify(Path::new(&dir), reference.as_deref(), &keys, &policy)?;
    // cosign's tags and Sigstore bundles too (in the layout, or in the registry), reported per
    // layout; a layout holding entries of which none verifies fails.
    let mut layout_failures = Vec::new();
    let all_findings = if args.image.starts_with("oci:") {
        attest::layout_signatures::verify_layout(
            Path::new(&dir),
            reference.as_deref(),
            &keys,
            None,
        )?
    } else {
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        let options = args.registry.options(&cache_dir)?;
        let store = build::open_store(&cache_dir)?;
        cosign_layouts(
            &args.image,
            &keys,
            policy.require_exact_repository,
            &options,
            &store,
        )?
    };
    for findings in all_findings {
        if findings.found == 0 {
            eprintln!("{}: none", findings.label);
            continue;
        }
        eprintln!(
            "{}: {} found, {} verified{}",
            findings.label,
            findings.found,
            findings.verified.len(),
            if findings.verified.is_empty() {
                String::new()
            } else {
                format!(" ({})", findings.verified.join(", "))
            }
        );
        for problem in &findings.problems {
            eprintln!("  not verified: {problem}");
        }
        if findings.verified.is_empty() {
            layout_failures.push(format!(
                "{}: none of {} entries verified with the trusted keys",
                findings.label, findings.found
            ));
        }
    }
    // The chain: each registry base the provenance names must carry its own trusted provenance.
    let mut chain_failures = Vec::new();
    if policy.require_base_provenance {
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        let options = args.registry.options(&cache_dir)?;
        for base in base_images(Path::new(&dir), &report, &keys)? {
            let scratch = tempfile::Builder::new()
                .prefix("verify-base-")
                .tempdir()
                .context("failed to create a scratch directory")?;
            let layout = scratch.path().join("layout");
            let base_policy = attest::Policy {
                require_provenance: true,
                require_signed: policy.require_signed,
                ..attest::Policy::default()
            };
            let outcome = fetch_with_referrers(&base, &options, &cache_dir, &layout)
                .and_then(|()| Ok(attest::verify(&layout, Some("image"), &keys, &base_policy)?));
            match outcome {
                Ok(base_report) if base_report.passed() => {
                    eprintln!("base {base}: provenance verified");
                }
                Ok(base_report) => {
                    for failure in &base_report.failures {
                        chain_failures.push(format!("base-provenance: {base}: {failure}"));
                    }
                }
                Err(e) => chain_failures.push(format!("base-provenance: {base}: {e:#}")),
            }
        }
    }
    for found in &report.attestations {
        eprintln!(
            "found {} for {} ({}; {})",
            found.predicate_type,
            found.image,
            if found.signed { "signed" } else { "unsigned" },
            if found.trusted {
                format!("verified by {}", found.verified_by.join(", "))
            } else {
                "not trusted".to_owned()
            }
        );
    }
    chain_failures.extend(layout_failures);
    if report.passed() && chain_failures.is_empty() {
        eprintln!("kiln: verified `{}`: every check passed", args.image);
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &report.failures {
            eprintln!("FAILED {failure}");
        }
        for failure in &chain_failures {
            eprintln!("FAILED {failure}");
        }
        Ok(ExitCode::from(1))
    }
}

#[derive(clap::Args)]
pub(crate) struct AttestArgs {
    /// The image: `oci:DIR[:TAG]` or `oci:DIR@sha256:...`.
    image: String,
    /// A JSON predicate to wrap in an in-toto statement whose subject is the image.
    #[arg(long, conflicts_with = "sbom", required_unless_present = "sbom")]
    predicate: Option<PathBuf>,
    /// The predicate type URI (with --predicate).
    #[arg(long = "type", default_value = "https://slsa.dev/provenance/v1")]
    predicate_type: String,
    /// Attach an SBOM of the image's packages instead of a predicate file.
    #[arg(long)]
    sbom: bool,
    /// The SBOM's format (with --sbom).
    #[arg(long, value_enum, default_value = "spdx")]
    sbom_format: SbomFormat,
    /// Sign the statement (DSSE) with this private key.
    #[arg(long, env = "KILN_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// How to attach it.
    #[arg(long, value_enum, default_value = "referrers")]
    attest_mode: AttestModeName,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// The SBOM formats kiln writes.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum SbomFormat {
    /// SPDX 2.3 JSON (predicate type `https://spdx.dev/Document`).
    #[default]
    Spdx,
    /// CycloneDX 1.6 JSON (predicate type `https://cyclonedx.org/bom`).
    Cyclonedx,
}

impl SbomFormat {
    /// The SBOM of `params` in this format, as an in-toto statement about `subjects`.
    pub(crate) fn statement(
        self,
        params: &attest::SbomParams,
        subjects: &[attest::Subject],
    ) -> Result<attest::Statement, attest::AttestError> {
        match self {
            SbomFormat::Spdx => attest::spdx_statement(params, subjects),
            SbomFormat::Cyclonedx => attest::cyclonedx::cyclonedx_statement(params, subjects),
        }
    }
}

/// The image `DIR[:TAG]` names in an OCI layout (the host's platform when the layout holds
/// several, else the one it holds), imported into `store`, and the tag or digest it was named by.
pub(crate) fn load_layout_image(
    store: &kiln::store::Store,
    layout: &str,
) -> anyhow::Result<(image::BuiltImage, Option<String>)> {
    let (dir, reference) = kiln::dockerfile::plan::split_local_reference(layout);
    let platform = image::Platform::host();
    let base =
        image::base::load_oci_layout(store, Path::new(&dir), reference.as_deref(), &platform)
            .or_else(|_| {
                // Any platform: an image built for another architecture is read as it is.
                let descriptor =
                    image::base::import_layout(store, Path::new(&dir), reference.as_deref())?;
                let built = image::BuiltImage::from_store(store, &descriptor.digest)?;
                image::base::load_oci_layout(
                    store,
                    Path::new(&dir),
                    Some(&descriptor.digest.to_string()),
                    &built.manifest.platform,
                )
            })?;
    Ok((
        image::BuiltImage::from_store(store, &base.manifest_digest)?,
        reference,
    ))
}

/// The packages installed in `built`'s file system (its layers read from `store`), as listed
/// for the SBOM.
pub(crate) fn image_packages(
    store: &kiln::store::Store,
    built: &image::BuiltImage,
) -> anyhow::Result<Vec<attest::SbomPackage>> {
    let scratch = tempfile::Builder::new()
        .prefix("packages-")
        .tempdir_in(store.root())
        .context("failed to create a scratch directory")?;
    let mut fs = kiln::rootfs::LowerFs::with_scratch_dir(scratch.path());
    for layer in &built.layers {
        fs.push_layer_blob(store, layer)?;
    }
    Ok(attest::packages_from_rootfs(&fs)?)
}

/// Wraps `statement` (signed with `sign_key`, or not) and attaches it to `built` in the OCI
/// layout `dir` (named by `reference` there).
pub(crate) fn sign_and_attach(
    dir: &str,
    reference: Option<&str>,
    built: &image::BuiltImage,
    statement: &attest::Statement,
    sign_key: Option<&Path>,
    mode: AttestModeName,
) -> anyhow::Result<()> {
    let attestation = match sign_key {
        Some(path) => {
            let key = attest::SigningKey::load(path).context("failed to load the signing key")?;
            attest::Attestation::signed(statement, &[&key])?
        }
        None => attest::Attestation::unsigned(statement)?,
    };
    let mode = match mode {
        AttestModeName::Referrers => attest::AttachMode::Referrers,
        AttestModeName::Index => attest::AttachMode::Index,
    };
    let target = match (reference, mode) {
        (Some(tag), attest::AttachMode::Index) => tag.to_owned(),
        _ => built.manifest.digest.to_string(),
    };
    attest::attach(Path::new(dir), Some(&target), &[attestation], mode)?;
    eprintln!(
        "kiln: attached {} to {}",
        statement.predicate_type, built.manifest.digest
    );
    Ok(())
}

pub(crate) fn run_attest(args: AttestArgs) -> anyhow::Result<ExitCode> {
    let Some(rest) = args.image.strip_prefix("oci:") else {
        return Err(super::usage(format!(
            "invalid image `{}`: kiln attest writes to OCI layouts: oci:DIR[:TAG]",
            args.image
        )));
    };
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let (built, reference) = load_layout_image(&store, rest)
        .with_context(|| format!("failed to read `{}`", args.image))?;
    let (dir, _) = kiln::dockerfile::plan::split_local_reference(rest);
    let subject = attest::Subject::image(
        reference.as_deref().unwrap_or("image"),
        &built.manifest.digest,
        &built.manifest.platform,
    );
    let statement = if args.sbom {
        let packages = image_packages(&store, &built)?;
        args.sbom_format.statement(
            &attest::SbomParams {
                image_name: args.image.clone(),
                image_digest: built.manifest.digest.clone(),
                source_date_epoch: 0,
                packages,
            },
            &[subject],
        )?
    } else {
        let path = args.predicate.as_deref().unwrap_or(Path::new("-"));
        let text = std::fs::read(path)
            .with_context(|| format!("failed to read the predicate `{}`", path.display()))?;
        let predicate: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("the predicate `{}` is not JSON", path.display()))?;
        attest::Statement::new(&[subject], &args.predicate_type, predicate)
    };
    sign_and_attach(
        &dir,
        reference.as_deref(),
        &built,
        &statement,
        args.sign_key.as_deref(),
        args.attest_mode,
    )
    .with_context(|| format!("failed to attach the attestation to `{}`", args.image))?;
    Ok(ExitCode::SUCCESS)
}

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
fn fetch_tag(
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
fn existing_tag_manifest(
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
fn existing_fallback_index(
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

use attest::layout_signatures::LayoutFindings;

/// Reads cosign's `.sig` and `.att` tags and the Sigstore bundle referrers of `image` (and of
/// each platform manifest of an index) and checks each entry against `keys`.
fn cosign_layouts(
    image: &str,
    keys: &[attest::PublicKey],
    exact_repository: bool,
    options: &kiln::registry::RegistryOptions,
    store: &kiln::store::Store,
) -> anyhow::Result<Vec<LayoutFindings>> {
    let reference = super::parse_references(&[image.to_owned()])?.remove(0);
    let (digest, bytes) = kiln::registry::fetch_raw_manifest(&reference, options)
        .with_context(|| format!("failed to read `{image}`"))?;
    let mut subjects = vec![digest];
    if let Ok(index) = serde_json::from_slice::<image::manifest::Index>(&bytes)
        && !index.manifests.is_empty()
    {
        subjects.extend(index.manifests.into_iter().map(|m| m.digest));
    }
    let blob = |tagged: &kiln::registry::Reference,
                descriptor: &image::manifest::Descriptor|
     -> anyhow::Result<Vec<u8>> {
        kiln::registry::fetch_blob(tagged, descriptor, store, options)?;
        Ok(store.read_bytes(&descriptor.digest)?)
    };
    let mut out = Vec::new();
    for subject in &subjects {
        let short = &subject.hex()[..12];
        // cosign's .sig tag.
        let tagged = reference
            .with_tag(&attest::cosign::signature_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut sig = LayoutFindings {
            label: format!("cosign .sig for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) = existing_tag_manifest(&tagged, store, options)? {
            for layer in &manifest.layers {
                sig.found += 1;
                let payload = blob(&tagged, layer)?;
                match attest::cosign::verify_signature_layer(layer, &payload, keys, subject) {
                    Ok(identity) if exact_repository && identity != reference.name() => {
                        sig.problems.push(format!(
                            "layer {}: signed for `{identity}`, not `{}` (require_exact_repository)",
                            layer.digest,
                            reference.name()
                        ));
                    }
                    Ok(identity) => sig.verified.push(format!("signature for {identity}")),
                    Err(problem) => sig.problems.push(problem),
                }
            }
        }
        out.push(sig);
        // cosign's .att tag.
        let tagged = reference
            .with_tag(&attest::cosign::attestation_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut att = LayoutFindings {
            label: format!("cosign .att for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) = existing_tag_manifest(&tagged, store, options)? {
            for layer in &manifest.layers {
                att.found += 1;
                let envelope = blob(&tagged, layer)?;
                let what = format!("layer {}", layer.digest);
                match attest::cosign::verify_envelope(&envelope, &what, keys, subject) {
                    Ok(predicate_type) => att.verified.push(predicate_type),
                    Err(problem) => att.problems.push(problem),
                }
            }
        }
        out.push(att);
        // Sigstore bundles among the referrers (fallback tag).
        let tagged = reference
            .with_tag(&attest::attach::fallback_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bundles = LayoutFindings {
            label: format!("sigstore bundles for {short}"),
            ..LayoutFindings::default()
        };
        let index = fetch_tag(&tagged, options, "for its bundles")?
            .and_then(|bytes| serde_json::from_slice::<image::manifest::Index>(&bytes).ok());
        for entry in index.map(|i| i.manifests).unwrap_or_default() {
            if !attest::bundle::may_be_bundle(&entry) {
                continue;
            }
            let by_digest = kiln::registry::Reference::new(
                reference.registry(),
                reference.repository(),
                None,
                Some(entry.digest.clone()),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (_, manifest_bytes) = kiln::registry::fetch_raw_manifest(&by_digest, options)?;
            let manifest: image::manifest::Manifest = serde_json::from_slice(&manifest_bytes)
                .with_context(|| format!("referrer {} is not an OCI manifest", entry.digest))?;
            if !attest::bundle::is_bundle(&manifest) {
                continue;
            }
            bundles.found += 1;
            let Some(layer) = manifest.layers.first() else {
                bundles
                    .problems
                    .push(format!("referrer {} has no layer", entry.digest));
                continue;
            };
            let bundle = blob(&by_digest, layer)?;
            let what = format!("bundle {}", layer.digest);
            match attest::bundle::verify_bundle(&bundle, &what, keys, subject) {
                Ok(predicate_type) => bundles.verified.push(predicate_type),
                Err(problem) => bundles.problems.push(problem),
            }
        }
        out.push(bundles);
    }
    Ok(out)
}

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
