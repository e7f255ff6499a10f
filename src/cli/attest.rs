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
    /// Directory to write `private.pem` (mode 0600) and `public.pem` into; existing files are
    /// never overwritten.
    dir: PathBuf,
    /// Key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    algorithm: KeyAlgorithmName,
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
    let (private, public) = attest::keygen(&args.dir, algorithm)?;
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
    let keys = args
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
    let report = attest::verify(Path::new(&dir), reference.as_deref(), &keys, &policy)?;
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
