//! The `kiln` command line: flags become library calls; errors are reported with their causes.
//!
//! Flags follow `docker build`/buildx where they overlap. Exit codes: 0 success, 1 the build or
//! a check failed, 2 the command line was wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cli;

use cli::UsageError;
use cli::attest::*;
use cli::build::*;
use cli::registry::*;
use cli::sign::*;
use cli::verify::*;

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
    /// Publish one image index from platform manifests pushed elsewhere (`kiln manifest create
    /// REF --from DIGEST...`), with their attestations.
    Manifest(cli::manifest::ManifestArgs),
    /// buildx's spelling of `kiln manifest create`: `kiln imagetools create -t REF SRC...`.
    Imagetools(cli::manifest::ImagetoolsArgs),
    /// Pin every FROM of a Dockerfile to the digest its tag names now (`name:tag@sha256:...`).
    Pin(PinArgs),
    /// Attach an attestation to an existing image in an OCI layout (like `cosign attest`): a
    /// predicate file, or an SBOM of the image's packages.
    Attest(AttestArgs),
    /// Create a signing key pair for attestations (`private.pem`, `public.pem`).
    Keygen(KeygenArgs),
    /// Sign an image in a registry (like `cosign sign --key`): cosign's `.sig` tag and a
    /// Sigstore bundle referrer, for an index also each platform manifest.
    Sign(SignArgs),
    /// Verify the attestations of an image in an OCI layout: signatures, subject, policy.
    Verify(VerifyArgs),
    /// Snapshot the Alpine indexes and packages kiln has cached as local repositories, for
    /// builds that must install the same bytes after the mirror moved on, or offline
    /// (`kiln build --apk-repositories-file DEST/repositories`).
    ApkExport(ApkExportArgs),
    /// Resolve dependencies for the image's platforms and write a lock (`kiln lock pip`).
    Lock(cli::lock::LockArgs),
    /// Report the known vulnerabilities of an image's apk and Python packages from a local
    /// database of Alpine secdb and OSV files (offline).
    Scan(cli::scan::ScanArgs),
    /// Manage the local vulnerability database `kiln scan` reads.
    Db {
        #[command(subcommand)]
        what: cli::scan::DbCommand,
    },
    /// Build with kaniko's executor flags (`--context`, `--dockerfile`, `--destination`, ...),
    /// for pipelines written for kaniko; also run as `executor` or `kaniko`.
    #[command(disable_help_flag = true)]
    Kaniko(cli::kaniko::KanikoCommand),
    /// Manage a shared build cache (`--cache-to`): `kiln cache prune REF --older-than 30d`.
    Cache {
        #[command(subcommand)]
        what: cli::cache_flags::CacheCommand,
    },
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

fn run_debug_dockerfile(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read `{}`", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed = kiln::dockerfile::parse(&text)
        .with_context(|| format!("failed to parse `{}`", file.display()))?;
    print!("{}", kiln::dockerfile::dump::dump(&parsed));
    Ok(ExitCode::SUCCESS)
}

/// Diagnostics on standard error. By default only kiln's own warnings, without time stamps;
/// `KILN_LOG` (or `RUST_LOG`) takes a filter such as `debug` or `kiln=debug,reqwest=trace` for
/// debugging. Colour only on a terminal, and never with `NO_COLOR` set.
fn init_logging() {
    use std::io::IsTerminal as _;
    let requested = std::env::var("KILN_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|filter| !filter.trim().is_empty());
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(requested.is_some());
    match requested {
        Some(filter) => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init(),
        // Dependencies' log lines are for debugging, not for users.
        None => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new("off,kiln=warn"))
            .without_time()
            .init(),
    }
}

/// The command line, read as `kiln kaniko ARGS` when the binary runs as `executor` or `kaniko`
/// (kaniko's entry point, `/kaniko/executor` in kiln's image).
fn parse_command_line() -> Cli {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(|name| name.to_str());
    if matches!(program, Some("executor" | "kaniko")) {
        args.splice(0..1, ["kiln".into(), "kaniko".into()]);
    }
    Cli::parse_from(args)
}

fn main() -> ExitCode {
    let cli = parse_command_line();
    init_logging();
    let result = match cli.command {
        Command::Build(args) => run_build(*args),
        Command::Push(args) => run_push(args),
        Command::Pull(args) => run_pull(args),
        Command::Login(args) => run_login(args),
        Command::Inspect(args) => run_inspect(args),
        Command::Pin(args) => run_pin(args),
        Command::Manifest(args) => cli::manifest::run_manifest(args),
        Command::Imagetools(args) => cli::manifest::run_imagetools(args),
        Command::Attest(args) => run_attest(args),
        Command::Keygen(args) => run_keygen(args),
        Command::Sign(args) => run_sign(args),
        Command::Verify(args) => run_verify(args),
        Command::ApkExport(args) => run_apk_export(args),
        Command::Lock(args) => cli::lock::run_lock(args),
        Command::Scan(args) => cli::scan::run_scan(args),
        Command::Kaniko(args) => cli::kaniko::run_kaniko(args),
        Command::Db { what } => cli::scan::run_db(what),
        Command::Cache { what } => cli::cache_flags::run_cache(what),
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
