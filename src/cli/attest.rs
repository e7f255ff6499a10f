//! The attestation commands `kiln attest` and `kiln keygen`, and the SBOM and attachment
//! choices `kiln build` shares (`kiln verify` is in `verify`, signing in `sign`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;
use kiln::build;
use kiln::image;

/// How attestations are attached to an image (`--attest-mode`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AttestModeName {
    /// OCI 1.1 referrers: artifact manifests with a `subject`, listed in the `sha256-<hex>`
    /// fallback tag; tags keep naming the image manifest.
    Referrers,
    /// buildx-style: an attestation manifest inside an image index the tag then names.
    Index,
}

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
