//! The attestation commands: `kiln keygen` and `kiln verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;

use super::*;

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
    /// The image: `oci:DIR[:TAG]` or `oci:DIR@sha256:...`.
    image: String,
    /// A trusted public key (PEM); repeatable.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// A policy file (TOML or JSON): require_provenance, require_signed, require_base_digest,
    /// allowed_registries, required_predicate_types.
    #[arg(long)]
    policy: Option<PathBuf>,
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
    let Some(rest) = args.image.strip_prefix("oci:") else {
        return Err(usage(format!(
            "invalid image `{}`: kiln verify reads OCI layouts: oci:DIR[:TAG]",
            args.image
        )));
    };
    let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
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
    if report.passed() {
        eprintln!("kiln: verified `{}`: every check passed", args.image);
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &report.failures {
            eprintln!("FAILED {failure}");
        }
        Ok(ExitCode::from(1))
    }
}
