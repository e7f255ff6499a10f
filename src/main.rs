//! The `kiln` command line: flags become library calls; errors are reported with their causes.
//!
//! Flags follow `docker build`/buildx where they overlap. Exit codes: 0 success, 1 the build or
//! a check failed, 2 the command line was wrong.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use kiln::attest;
use kiln::build::{self, BuildOptions, Reporter, StepOutcome};
use kiln::image::{self, Platform};
use kiln::layer::Compression;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles without a daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (like `docker build`).
    Build(Box<BuildArgs>),
    /// Push an image from an OCI layout or archive to one or more registry references.
    Push(PushArgs),
    /// Pull an image from a registry into the cache, and optionally export it.
    Pull(PullArgs),
    /// Store credentials for a registry in the Docker config, as `docker login` does.
    Login(LoginArgs),
    /// Show an image's manifest or index: platforms, layers, sizes, attestations.
    Inspect(InspectArgs),
    /// Pin every FROM of a Dockerfile to the digest its tag names now (`name:tag@sha256:...`).
    Pin(PinArgs),
    /// Create a signing key pair for attestations (`private.pem`, `public.pem`).
    Keygen(KeygenArgs),
    /// Verify the attestations of an image in an OCI layout: signatures, subject, policy.
    Verify(VerifyArgs),
    /// Inspect how kiln reads its inputs.
    Debug {
        #[command(subcommand)]
        what: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Print the parse tree of a Dockerfile in BuildKit's dump format.
    Dockerfile {
        /// The Dockerfile to parse.
        file: PathBuf,
    },
}

/// Flags shared by every command that talks to a registry.
#[derive(clap::Args, Clone, Default)]
struct RegistryFlags {
    /// Talk plain HTTP to this registry (`host[:port]`; loopback registries always are);
    /// repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Use only what is cached; fail naming anything that would need the network.
    #[arg(long)]
    offline: bool,
}

impl RegistryFlags {
    fn options(&self, cache_dir: &Path) -> kiln::registry::RegistryOptions {
        let mut options = kiln::registry::RegistryOptions::default()
            .offline(self.offline)
            .cache_dir(cache_dir.join("registry"));
        for host in &self.insecure_registries {
            options = options.insecure_registry(host);
        }
        options
    }
}

#[derive(clap::Args)]
struct PushArgs {
    /// What to push: `oci:DIR[:TAG]`, `oci:DIR@sha256:...` or `oci-archive:FILE[:TAG]`.
    source: String,
    /// Where to push it (`registry/repository:tag`); repeatable.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Mount blobs from this repository of the target registry instead of uploading them.
    #[arg(long)]
    mount_from: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PullArgs {
    /// The image (`name[:tag][@sha256:...]`, Docker's normalization).
    reference: String,
    /// The platform to pick from a multi-platform image (default: the host's).
    #[arg(long)]
    platform: Option<String>,
    /// Export it: `type=oci,dest=DIR`, `type=oci-archive,dest=FILE` or
    /// `type=docker-archive,dest=FILE`; repeatable.
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct LoginArgs {
    /// The registry (`ghcr.io`, `127.0.0.1:5000`).
    server: String,
    /// User name.
    #[arg(short = 'u', long)]
    username: String,
    /// Read the password from standard input (recommended: it keeps it out of the process list).
    #[arg(long)]
    password_stdin: bool,
    /// The password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// A registry reference (`name[:tag][@sha256:...]`) or `oci:DIR[:TAG]`.
    image: String,
    /// Print the manifest or index bytes exactly as stored.
    #[arg(long)]
    raw: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: InspectFormat,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PinArgs {
    /// The Dockerfile to pin.
    file: PathBuf,
    /// Change nothing; exit 1 when a FROM is unpinned or its tag moved.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InspectFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// Directory to write `private.pem` (mode 0600) and `public.pem` into; existing files are
    /// never overwritten.
    dir: PathBuf,
    /// Key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    algorithm: KeyAlgorithmName,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlgorithmName {
    EcdsaP256,
    Ed25519,
}

#[derive(clap::Args)]
struct VerifyArgs {
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AttestModeName {
    /// OCI 1.1 referrers: artifact manifests with a `subject`, listed in the `sha256-<hex>`
    /// fallback tag; tags keep naming the image manifest.
    Referrers,
    /// buildx-style: an attestation manifest inside an image index the tag then names.
    Index,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionName {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressMode {
    Auto,
    Plain,
    Quiet,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Build context directory.
    context: PathBuf,
    /// Dockerfile path (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Name and tag for the image (`name:tag`); repeatable. `{{date}}` (YYYYMMDD, UTC),
    /// `{{git_sha}}` and `{{git_short_sha}}` (the context's commit) are expanded.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Build-time variable `KEY=VALUE` (or `KEY` to take it from the environment); repeatable.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// Target platform `os/arch[/variant]` (default: the base image's, or the host's).
    #[arg(long)]
    platform: Option<String>,
    /// Output: `type=oci,dest=DIR`, `type=oci-archive,dest=FILE`, `type=docker-archive,dest=FILE`.
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionName,
    /// Compression level (gzip 1-9, default 5; zstd 1-19, default 3).
    #[arg(long)]
    compression_level: Option<i32>,
    /// Directory for the blob store and the step cache (default: $KILN_CACHE_DIR, else
    /// $XDG_CACHE_HOME/kiln, else ~/.cache/kiln).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Write every layer again instead of reusing cached ones.
    #[arg(long)]
    no_cache: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Write the build result (digests, descriptor) as JSON to this file, like buildx.
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// Clamp file times to, and stamp the image with, this Unix time (default: $SOURCE_DATE_EPOCH,
    /// else 0).
    #[arg(long)]
    source_date_epoch: Option<i64>,
    /// Add an annotation `KEY=VALUE` to the image manifest; repeatable.
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// Push the image to every `-t` reference after building.
    #[arg(long)]
    push: bool,
    /// Attach SLSA v1 provenance (`--provenance=false` to leave it out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    provenance: bool,
    /// Attach an SPDX 2.3 SBOM of the image's apk and Python packages (`--sbom=false` to leave
    /// it out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    sbom: bool,
    /// Sign the attestations (DSSE) with this private key (PKCS#8 PEM, ECDSA P-256 or
    /// Ed25519, as `kiln keygen` writes).
    #[arg(long, env = "KILN_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// How attestations are attached to OCI layout outputs and pushes.
    #[arg(long, value_enum, default_value = "referrers")]
    attest_mode: AttestModeName,
    /// Leave times and the invocation id out of the provenance, so two builds of the same
    /// inputs give byte-identical attestations.
    #[arg(long)]
    reproducible: bool,
    /// A build arg whose value must never reach the provenance (names containing TOKEN,
    /// SECRET, PASSWORD, PASSWD or KEY are always kept out); repeatable.
    #[arg(long = "secret-build-arg")]
    secret_build_args: Vec<String>,
    /// An apk repository (a directory) added after the image's /etc/apk/repositories;
    /// repeatable.
    #[arg(long = "apk-repository")]
    apk_repositories: Vec<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// A command-line mistake: reported like any error, but exits with 2 as clap's own do.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

enum OutputKind {
    OciLayout,
    OciArchive,
    DockerArchive,
}

struct OutputSpec {
    kind: OutputKind,
    dest: PathBuf,
}

fn parse_output(spec: &str) -> anyhow::Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    let mut tar = None;
    for part in spec.split(',') {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            usage(format!(
                "invalid --output `{spec}`: expected key=value pairs"
            ))
        })?;
        match key {
            "type" => kind = Some(value.to_owned()),
            "dest" => dest = Some(PathBuf::from(value)),
            "tar" => tar = Some(value == "true"),
            "name" | "annotation" => {}
            other => {
                return Err(usage(format!(
                    "invalid --output `{spec}`: unknown key `{other}`"
                )));
            }
        }
    }
    let kind =
        kind.ok_or_else(|| usage(format!("invalid --output `{spec}`: type= is required")))?;
    let dest =
        dest.ok_or_else(|| usage(format!("invalid --output `{spec}`: dest= is required")))?;
    let kind = match (kind.as_str(), tar) {
        ("oci", Some(true)) | ("oci-archive", _) => OutputKind::OciArchive,
        ("oci", _) => OutputKind::OciLayout,
        ("docker-archive" | "docker", _) => OutputKind::DockerArchive,
        (other, _) => {
            return Err(usage(format!(
                "unsupported output type `{other}`: kiln writes type=oci (a directory), \
             type=oci-archive and type=docker-archive"
            )));
        }
    };
    Ok(OutputSpec { kind, dest })
}

/// Prints each step as a numbered line, as `docker build --progress=plain` does.
struct PlainReporter {
    step: Mutex<usize>,
}

impl Reporter for PlainReporter {
    fn step_started(&self, stage: &str, position: usize, total: usize, text: &str) {
        if let Ok(mut step) = self.step.lock() {
            *step += 1;
            eprintln!("#{step} [{stage} {position}/{total}] {text}");
        }
    }

    fn step_finished(&self, outcome: StepOutcome, elapsed: Duration) {
        if let Ok(step) = self.step.lock() {
            match outcome {
                StepOutcome::Cached => eprintln!("#{step} CACHED"),
                _ => eprintln!("#{step} DONE {:.1}s", elapsed.as_secs_f64()),
            }
        }
    }

    fn note(&self, message: &str) {
        if let Ok(step) = self.step.lock() {
            eprintln!("#{step} {message}");
        }
    }
}

/// On a terminal: one line per step, rewritten in place when the step ends, with its status
/// and time (a long step shows what it is doing until then).
struct TtyReporter {
    current: Mutex<String>,
}

impl Reporter for TtyReporter {
    fn step_started(&self, stage: &str, position: usize, total: usize, text: &str) {
        if let Ok(mut current) = self.current.lock() {
            *current = format!("[{stage} {position}/{total}] {text}");
            eprint!("\x1b[2K\r\x1b[1m=>\x1b[0m {current} ...");
        }
    }

    fn step_finished(&self, outcome: StepOutcome, elapsed: Duration) {
        if let Ok(current) = self.current.lock() {
            let status = match outcome {
                StepOutcome::Cached => "\x1b[34mCACHED\x1b[0m".to_owned(),
                _ => format!("\x1b[32m{:.1}s\x1b[0m", elapsed.as_secs_f64()),
            };
            eprintln!("\x1b[2K\r\x1b[1m=>\x1b[0m {current} {status}");
        }
    }

    fn note(&self, message: &str) {
        if let Ok(current) = self.current.lock() {
            eprint!("\x1b[2K\r\x1b[1m=>\x1b[0m {current} ({message})");
        }
    }
}

fn key_value_pairs(values: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for value in values {
        match value.split_once('=') {
            Some((key, val)) => {
                out.insert(key.to_owned(), val.to_owned());
            }
            None if what == "--build-arg" => {
                // Docker takes a bare name from the environment, and drops it when unset.
                if let Ok(val) = std::env::var(value) {
                    out.insert(value.clone(), val);
                }
            }
            None => {
                return Err(usage(format!(
                    "invalid {what} `{value}`: expected KEY=VALUE"
                )));
            }
        }
    }
    Ok(out)
}

fn source_date_epoch(
    flag: Option<i64>,
    build_args: &BTreeMap<String, String>,
) -> anyhow::Result<i64> {
    if let Some(epoch) = flag {
        return Ok(epoch);
    }
    let from_arg = build_args.get("SOURCE_DATE_EPOCH").cloned();
    let from_env = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty());
    match from_arg.or(from_env) {
        None => Ok(0),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|e| *e >= 0)
            .ok_or_else(|| {
                usage(format!(
                    "invalid SOURCE_DATE_EPOCH `{text}`: expected a non-negative integer of seconds"
                ))
            }),
    }
}

fn run_build(mut args: BuildArgs) -> anyhow::Result<ExitCode> {
    args.tags = expand_tag_templates(&args.tags, &args.context)?;
    let build_args = key_value_pairs(&args.build_args, "--build-arg")?;
    let annotations = key_value_pairs(&args.annotations, "--annotation")?;
    let outputs = args
        .outputs
        .iter()
        .map(|spec| parse_output(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platform = args
        .platform
        .as_deref()
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|e| usage(format!("invalid --platform `{p}`: {e}")))
        })
        .transpose()?;
    let compression = match (args.compression, args.compression_level) {
        (CompressionName::Gzip, level) => {
            let level = level.unwrap_or(kiln::layer::DEFAULT_GZIP_LEVEL as i32);
            if !(1..=9).contains(&level) {
                return Err(usage(format!(
                    "invalid --compression-level {level} for gzip: expected 1 to 9"
                )));
            }
            Compression::Gzip {
                level: level as u32,
            }
        }
        (CompressionName::Zstd, level) => {
            let level = level.unwrap_or(kiln::layer::DEFAULT_ZSTD_LEVEL);
            if !(1..=19).contains(&level) {
                return Err(usage(format!(
                    "invalid --compression-level {level} for zstd: expected 1 to 19"
                )));
            }
            Compression::Zstd { level }
        }
        (CompressionName::Uncompressed, _) => Compression::None,
    };
    let context_dir = args.context.clone();
    if !context_dir.is_dir() {
        bail!(
            "build context `{}` is not a directory",
            context_dir.display()
        );
    }
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| context_dir.join("Dockerfile"));
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    if args.push && args.tags.is_empty() {
        return Err(usage(
            "--push needs at least one -t NAME:TAG to push to".to_owned(),
        ));
    }
    let push_targets = if args.push {
        parse_references(&args.tags)?
    } else {
        Vec::new()
    };
    let options = BuildOptions {
        registry: args.registry.options(&cache_dir),
        apk_repositories: args.apk_repositories.clone(),
        offline: args.registry.offline,
        list_packages: args.sbom,
        source_date_epoch: source_date_epoch(args.source_date_epoch, &build_args)?,
        context_dir,
        dockerfile,
        build_args,
        target: args.target.clone(),
        platform,
        compression,
        cache_dir: cache_dir.clone(),
        no_cache: args.no_cache,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        annotations,
    };

    let started = Instant::now();
    let plain = PlainReporter {
        step: Mutex::new(0),
    };
    let tty = TtyReporter {
        current: Mutex::new(String::new()),
    };
    let reporter: &dyn Reporter = match args.progress {
        ProgressMode::Quiet => &build::Quiet,
        ProgressMode::Auto if std::io::stderr().is_terminal() => &tty,
        ProgressMode::Auto | ProgressMode::Plain => &plain,
    };
    let started_on = unix_now();
    let outcome = build::build(&options, reporter)?;
    let attestations = make_attestations(&args, &options, &outcome, started_on)?;
    let images = [(outcome.image.clone(), args.tags.clone())];
    write_outputs(&outcome.store, &images, &outputs)?;
    for output in &outputs {
        if let OutputKind::OciLayout = output.kind
            && !attestations.is_empty()
        {
            attach_to_layout(
                &output.dest,
                &outcome.image,
                &args.tags,
                &attestations,
                args.attest_mode,
            )?;
        }
    }
    if !push_targets.is_empty() {
        let pushed = kiln::registry::push(
            &outcome.store,
            &outcome.image,
            &push_targets,
            &options.registry,
        )
        .context("failed to push the image")?;
        report_push(&pushed, args.progress != ProgressMode::Quiet);
        if !attestations.is_empty() {
            push_attestations(&outcome, &attestations, &push_targets, &options)?;
        }
    }
    if let Some(path) = &args.metadata_file {
        write_metadata(path, &image::metadata_json(&outcome.image))?;
    }
    if args.progress != ProgressMode::Quiet {
        eprintln!(
            "kiln: built {} ({} layers written, {} cached) in {:.2}s",
            outcome.image.manifest.digest,
            outcome.built_steps,
            outcome.cached_steps,
            started.elapsed().as_secs_f64()
        );
        if outputs.is_empty() {
            eprintln!(
                "kiln: no --output given: the image stays in the cache at `{}`; add \
                 `--output type=oci,dest=DIR` to export it",
                options.cache_dir.display()
            );
        }
    }
    println!("{}", outcome.image.manifest.digest);
    Ok(ExitCode::SUCCESS)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The provenance and SBOM statements for a build, signed when a key is given.
fn make_attestations(
    args: &BuildArgs,
    options: &BuildOptions,
    outcome: &build::BuildOutcome,
    started_on: i64,
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
            path: options
                .dockerfile
                .strip_prefix(&options.context_dir)
                .unwrap_or(&options.dockerfile)
                .display()
                .to_string(),
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
        for material in &outcome.materials {
            if let Ok(digest) = kiln::digest::Digest::from_hex(&material.sha256) {
                params
                    .materials
                    .push(attest::Material::sha256(material.uri.clone(), &digest));
            }
        }
        params.context = match attest::provenance::GitSource::detect(&options.context_dir)? {
            Some(git) => attest::provenance::ContextSource::Git(git),
            None => attest::provenance::ContextSource::Local { digest: None },
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
        out.push(wrap(&attest::provenance::statement(&params)?)?);
    }
    if args.sbom {
        let sbom = attest::spdx_statement(
            &attest::SbomParams {
                image_name: name.clone(),
                image_digest: image.manifest.digest.clone(),
                source_date_epoch: options.source_date_epoch,
                packages: outcome.packages.clone(),
            },
            &subjects,
        )?;
        out.push(wrap(&sbom)?);
    }
    Ok(out)
}

fn attach_to_layout(
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
fn push_attestations(
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
    for tag in &attached.fallback_tags {
        let descriptor = image::base::import_layout(&outcome.store, &layout, Some(tag))?;
        let bytes = outcome.store.read_bytes(&descriptor.digest)?;
        let mut tagged = Vec::new();
        for target in targets {
            tagged.push(target.with_tag(tag).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        kiln::registry::push_manifest(
            &outcome.store,
            &bytes,
            &descriptor.media_type,
            &tagged,
            &options.registry,
        )
        .context("failed to push the attestations")?;
    }
    Ok(())
}

fn run_pin(args: PinArgs) -> anyhow::Result<ExitCode> {
    let options = args.registry.options(&build::default_cache_dir());
    let pins = kiln::pin::plan(&args.file, &options)?;
    let stale: Vec<&kiln::pin::Pin> = pins.iter().filter(|p| p.is_stale()).collect();
    for pin in &pins {
        let state = match (&pin.pinned, pin.is_stale()) {
            (None, _) => "not pinned",
            (Some(_), true) => "tag moved",
            (Some(_), false) => "up to date",
        };
        eprintln!(
            "{}:{}: {} ({state})",
            args.file.display(),
            pin.line,
            pin.updated
        );
    }
    if args.check {
        return Ok(if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if !stale.is_empty() {
        kiln::pin::apply(&args.file, &pins)?;
        eprintln!(
            "kiln: pinned {} FROM line(s) in `{}`",
            stale.len(),
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let (digest, bytes) = if let Some(rest) = args.image.strip_prefix("oci:") {
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        let store = build::open_store(&cache_dir)?;
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        let descriptor = image::base::import_layout(&store, Path::new(&dir), reference.as_deref())
            .with_context(|| format!("failed to read `{}`", args.image))?;
        let bytes = store.read_bytes(&descriptor.digest)?;
        (descriptor.digest, bytes)
    } else {
        let reference = parse_references(std::slice::from_ref(&args.image))?.remove(0);
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        kiln::registry::fetch_raw_manifest(&reference, &args.registry.options(&cache_dir))
            .with_context(|| format!("failed to inspect `{}`", args.image))?
    };
    if args.raw {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{}` is not a JSON manifest or index", args.image))?;
    let media_type = document["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let size = |d: &serde_json::Value| d["size"].as_u64().unwrap_or(0);
    let summary = if let Some(manifests) = document["manifests"].as_array() {
        let entries: Vec<serde_json::Value> = manifests
            .iter()
            .map(|m| {
                let platform = match (m["platform"]["os"].as_str(), m["platform"]["architecture"].as_str()) {
                    (Some(os), Some(arch)) => {
                        let variant = m["platform"]["variant"].as_str().map(|v| format!("/{v}")).unwrap_or_default();
                        format!("{os}/{arch}{variant}")
                    }
                    _ => String::new(),
                };
                let role = if m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest" {
                    format!("attestations for {}", m["annotations"]["vnd.docker.reference.digest"].as_str().unwrap_or("?"))
                } else if let Some(artifact) = m["artifactType"].as_str() {
                    format!("artifact {artifact}")
                } else {
                    "image".to_owned()
                };
                serde_json::json!({"digest": m["digest"], "mediaType": m["mediaType"], "size": size(m), "platform": platform, "role": role})
            })
            .collect();
        serde_json::json!({"name": args.image, "digest": digest.to_string(), "mediaType": media_type, "manifests": entries})
    } else {
        let layers: Vec<serde_json::Value> = document["layers"]
            .as_array()
            .map(|layers| layers.iter().map(|l| serde_json::json!({"digest": l["digest"], "mediaType": l["mediaType"], "size": size(l)})).collect())
            .unwrap_or_default();
        let total: u64 = layers.iter().map(size).sum();
        serde_json::json!({"name": args.image, "digest": digest.to_string(), "mediaType": media_type,
            "config": document["config"]["digest"], "artifactType": document["artifactType"],
            "subject": document["subject"]["digest"], "layers": layers, "totalSize": total})
    };
    match args.format {
        InspectFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        InspectFormat::Text => {
            println!("Name:      {}", args.image);
            println!("MediaType: {media_type}");
            println!("Digest:    {digest}");
            if let Some(entries) = summary["manifests"].as_array() {
                println!("Manifests:");
                for entry in entries {
                    println!(
                        "  {}  {:>10} bytes  {}  {}",
                        entry["digest"].as_str().unwrap_or("?"),
                        entry["size"],
                        entry["platform"]
                            .as_str()
                            .filter(|p| !p.is_empty())
                            .unwrap_or("-"),
                        entry["role"].as_str().unwrap_or("")
                    );
                }
            } else {
                if let Some(subject) = summary["subject"].as_str() {
                    println!("Subject:   {subject}");
                }
                println!("Config:    {}", summary["config"].as_str().unwrap_or("-"));
                println!("Layers:");
                for layer in summary["layers"].as_array().into_iter().flatten() {
                    println!(
                        "  {}  {:>10} bytes  {}",
                        layer["digest"].as_str().unwrap_or("?"),
                        layer["size"],
                        layer["mediaType"].as_str().unwrap_or("")
                    );
                }
                println!("Total:     {} bytes", summary["totalSize"]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Expands the tag templates the seed's CI uses: `{{date}}` (today, UTC, `YYYYMMDD`),
/// `{{git_sha}}` and `{{git_short_sha}}` (the commit the context is checked out at).
fn expand_tag_templates(tags: &[String], context: &Path) -> anyhow::Result<Vec<String>> {
    if !tags.iter().any(|t| t.contains("{{")) {
        return Ok(tags.to_vec());
    }
    let date = image::rfc3339(unix_now())[..10].replace('-', "");
    let commit = match attest::provenance::GitSource::detect(context)? {
        Some(git) => Some(git.commit),
        None => None,
    };
    tags.iter()
        .map(|tag| {
            let mut out = tag.replace("{{date}}", &date);
            if out.contains("{{git_sha}}") || out.contains("{{git_short_sha}}") {
                let Some(commit) = &commit else {
                    return Err(usage(format!(
                        "tag `{tag}` uses the git commit, but `{}` is not in a git checkout",
                        context.display()
                    )));
                };
                out = out
                    .replace("{{git_sha}}", commit)
                    .replace("{{git_short_sha}}", &commit[..commit.len().min(7)]);
            }
            if out.contains("{{") {
                return Err(usage(format!(
                    "unknown template in tag `{tag}`: kiln expands {{{{date}}}}, {{{{git_sha}}}} and {{{{git_short_sha}}}}"
                )));
            }
            Ok(out)
        })
        .collect()
}

fn run_keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
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

fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
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

fn write_outputs(
    store: &kiln::store::Store,
    images: &[(image::BuiltImage, Vec<String>)],
    outputs: &[OutputSpec],
) -> anyhow::Result<()> {
    for output in outputs {
        let written = match output.kind {
            OutputKind::OciLayout => image::layout::write_oci_layout(store, &output.dest, images),
            OutputKind::OciArchive => {
                image::archive::write_oci_archive(store, &output.dest, images)
            }
            OutputKind::DockerArchive => {
                image::archive::write_docker_archive(store, &output.dest, images)
            }
        };
        written
            .with_context(|| format!("failed to write the output `{}`", output.dest.display()))?;
    }
    Ok(())
}

fn parse_references(texts: &[String]) -> anyhow::Result<Vec<kiln::registry::Reference>> {
    texts
        .iter()
        .map(|text| {
            text.parse::<kiln::registry::Reference>()
                .map_err(|e| usage(format!("invalid image reference `{text}`: {e}")))
        })
        .collect()
}

fn report_push(pushed: &kiln::registry::PushResult, verbose: bool) {
    if verbose {
        eprintln!(
            "kiln: pushed {} to {} ({} blobs uploaded, {} mounted, {} already there, {} bytes sent)",
            pushed.digest,
            pushed.pushed.join(", "),
            pushed.blobs_uploaded,
            pushed.blobs_mounted,
            pushed.blobs_existing,
            pushed.bytes_uploaded
        );
    }
}

fn run_push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let targets = parse_references(&args.targets)?;
    let descriptor = if let Some(rest) = args.source.strip_prefix("oci:") {
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        image::base::import_layout(&store, Path::new(&dir), reference.as_deref())
    } else if let Some(rest) = args.source.strip_prefix("oci-archive:") {
        let (file, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        image::base::import_oci_archive(&store, Path::new(&file), reference.as_deref())
    } else {
        return Err(usage(format!(
            "invalid source `{}`: expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]",
            args.source
        )));
    }
    .with_context(|| format!("failed to read `{}`", args.source))?;
    let mut options = args.registry.options(&cache_dir);
    if let Some(repository) = &args.mount_from {
        options = options.mount_from(repository);
    }
    let bytes = store.read_bytes(&descriptor.digest)?;
    let pushed =
        kiln::registry::push_manifest(&store, &bytes, &descriptor.media_type, &targets, &options)
            .context("failed to push")?;
    report_push(&pushed, true);
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

fn run_pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let reference = parse_references(std::slice::from_ref(&args.reference))?.remove(0);
    let outputs = args
        .outputs
        .iter()
        .map(|spec| parse_output(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platform = match &args.platform {
        Some(text) => text
            .parse::<Platform>()
            .map_err(|e| usage(format!("invalid --platform `{text}`: {e}")))?,
        None => Platform::host(),
    };
    let options = args.registry.options(&cache_dir);
    let pulled = kiln::registry::pull(&reference, &platform, &store, &options)
        .with_context(|| format!("failed to pull `{}`", args.reference))?;
    let manifest_digest = pulled.manifest_digest.clone();
    let built = image::BuiltImage::from_store(&store, &manifest_digest)?;
    let tag = reference
        .tag()
        .map(|t| format!("{}:{t}", reference.name()))
        .into_iter()
        .collect();
    write_outputs(&store, &[(built, tag)], &outputs)?;
    eprintln!("kiln: pulled {} as {}", args.reference, pulled.source);
    println!("{manifest_digest}");
    Ok(ExitCode::SUCCESS)
}

fn run_login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => password.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("failed to read the password from standard input")?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            return Err(usage(
                "kiln login needs --password-stdin (or -p PASSWORD)".to_owned(),
            ));
        }
    };
    let options = args.registry.options(&build::default_cache_dir());
    let path = kiln::registry::login(&args.server, &args.username, &password, &options)
        .with_context(|| format!("failed to log in to `{}`", args.server))?;
    eprintln!(
        "Login Succeeded (credentials stored in `{}`)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_metadata(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("failed to create a temp file in `{}`", dir.display()))?;
    temp.write_all(text.as_bytes())?;
    temp.write_all(b"\n")?;
    temp.persist(path)
        .with_context(|| format!("failed to write the metadata file `{}`", path.display()))?;
    Ok(())
}

fn run_debug_dockerfile(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read `{}`", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed = kiln::dockerfile::parse(&text)
        .with_context(|| format!("failed to parse `{}`", file.display()))?;
    print!("{}", kiln::dockerfile::dump::dump(&parsed));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Build(args) => run_build(*args),
        Command::Push(args) => run_push(args),
        Command::Pull(args) => run_pull(args),
        Command::Login(args) => run_login(args),
        Command::Inspect(args) => run_inspect(args),
        Command::Pin(args) => run_pin(args),
        Command::Keygen(args) => run_keygen(args),
        Command::Verify(args) => run_verify(args),
        Command::Debug {
            what: DebugCommand::Dockerfile { file },
        } => run_debug_dockerfile(&file),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
