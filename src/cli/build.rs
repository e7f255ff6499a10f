//! `kiln build`: flags to [`BuildOptions`], the build, its outputs, attestations and push.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use kiln::attest;
use kiln::build::{self, BuildOptions, Reporter};
use kiln::image::{self, Platform};
use kiln::layer::Compression;

use super::attest::AttestModeName;
use super::progress::{PlainReporter, TtyReporter};
use super::*;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressionName {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    Auto,
    Plain,
    Quiet,
}

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// Build context directory; `-` reads the Dockerfile from standard input and builds with
    /// an empty context, as `docker build -` does.
    context: PathBuf,
    /// Dockerfile path (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set when the Dockerfile came from standard input (the provenance names it `-`).
    #[arg(skip)]
    dockerfile_from_stdin: bool,
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
    /// Print nothing but the manifest digest on success (`--progress quiet`).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Set a label `KEY=VALUE` on the image's config; repeatable. It wins over a Dockerfile
    /// `LABEL` of the same name.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Write the image ID (the config digest, `sha256:...`) to FILE, as `docker build` does.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Resolve every base image tag at its registry. kiln always does (a base pinned by digest
    /// needs no lookup); the flag is taken for `docker build` command lines.
    #[arg(long, conflicts_with = "offline")]
    pull: bool,
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
    /// Attach an SBOM of the image's distribution and its apk, Debian and Python packages
    /// (`--sbom=false` to leave it out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    sbom: bool,
    /// The SBOM's format: SPDX 2.3 JSON, or CycloneDX 1.6 JSON (predicate type
    /// `https://cyclonedx.org/bom`).
    #[arg(long, value_enum, default_value = "spdx")]
    sbom_format: super::attest::SbomFormat,
    /// Scan the result's packages against this vulnerability database (see `kiln scan`) before
    /// anything is written or pushed; the findings are printed to stderr.
    #[arg(long, value_name = "DIR")]
    scan_db: Option<PathBuf>,
    /// With --scan-db: fail the build (nothing written or pushed) when a finding is at or above
    /// this severity.
    #[arg(long, value_enum, value_name = "SEVERITY", requires = "scan_db")]
    fail_on: Option<super::scan::SeverityName>,
    /// Sign the attestations (DSSE) with this private key (PKCS#8 PEM, ECDSA P-256 or
    /// Ed25519, as `kiln keygen` writes).
    #[arg(long, env = "KILN_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// Check every registry base image against this policy (the `kiln verify` format) before
    /// any step runs; the build stops, naming the base, the check and the fix, when one fails.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A public key (PEM) the policy trusts; repeatable.
    #[arg(long = "policy-key", requires = "policy")]
    policy_keys: Vec<PathBuf>,
    /// How attestations are attached to OCI layout outputs and pushes.
    #[arg(long, value_enum, default_value = "referrers")]
    attest_mode: AttestModeName,
    /// With `--push` and `--sign-key`: also sign the pushed manifest, and put the signed
    /// attestations, in these layouts: `cosign-tags` (the `sha256-<hex>.sig` and `.att` tags
    /// cosign 2, containers/image and Kyverno read), `bundle` (Sigstore bundle v0.3
    /// referrers, cosign 3's default) or `both`.
    #[arg(long, value_enum, default_value = "both")]
    signature_format: super::sign::SignatureFormatName,
    /// Leave times and the invocation id out of the provenance, so two builds of the same
    /// inputs give byte-identical attestations.
    #[arg(long)]
    reproducible: bool,
    /// A build arg whose value must never reach the provenance (names containing TOKEN,
    /// SECRET, PASSWORD, PASSWD or KEY are always kept out); repeatable.
    #[arg(long = "secret-build-arg")]
    secret_build_args: Vec<String>,
    /// An apk repository (an HTTP(S) mirror or a directory) added after the image's
    /// /etc/apk/repositories; repeatable.
    #[arg(long = "apk-repository")]
    apk_repositories: Vec<String>,
    /// Use the repositories listed in FILE instead of the image's /etc/apk/repositories (as
    /// `apk --repositories-file`); lines starting with `./` are relative to FILE's directory,
    /// as `kiln apk-export` writes them.
    #[arg(long = "apk-repositories-file", value_name = "FILE")]
    apk_repositories_file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`;
    /// repeatable. Its value never reaches a layer, the history or the provenance.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent $SSH_AUTH_SOCK names) or
    /// `ID=SOCKET`; repeatable. Commands reach the agent through a proxy, never its keys.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    ssh: Vec<String>,
    /// Network of sandboxed RUN commands without `--network`: `none` (loopback only) or `host`.
    #[arg(long, default_value = "none")]
    network: String,
    /// A named build context, `NAME=DIR` or `NAME=oci-layout://DIR[:TAG][@sha256:...]`, that
    /// `FROM NAME` and `COPY --from=NAME` use (buildx's); repeatable.
    #[arg(long = "build-context", value_name = "NAME=DIR|oci-layout://DIR")]
    build_contexts: Vec<String>,
    /// An `/etc/hosts` entry for sandboxed RUN commands, `HOST:IP` (or `HOST=IP`); repeatable.
    /// `host-gateway` is refused: there is no daemon gateway to map it to.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

pub(crate) fn key_value_pairs(
    values: &[String],
    what: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
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

pub(crate) fn source_date_epoch(
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

/// The name that stands for standard input, for the context and for `-f`.
const STDIN: &str = "-";

/// Reads the Dockerfile from standard input when `-f -` or the context `-` asks for it (as
/// `docker build -f - DIR` and `docker build - < Dockerfile` do), writes it to a temporary
/// directory and points `args` at it: `-f -` keeps the context, `-` builds with an empty one.
/// Returns the directory, which must live until the build is done.
fn take_stdin_dockerfile(args: &mut BuildArgs) -> anyhow::Result<Option<tempfile::TempDir>> {
    let file_from_stdin = args.file.as_deref() == Some(Path::new(STDIN));
    let context_from_stdin = args.context.as_path() == Path::new(STDIN);
    if !file_from_stdin && !context_from_stdin {
        return Ok(None);
    }
    if context_from_stdin && args.file.is_some() {
        return Err(usage(
            "`kiln build -` reads the Dockerfile from standard input, so it takes no -f; \
             give a context directory with `-f -` instead"
                .to_owned(),
        ));
    }
    let asked = if file_from_stdin {
        "-f -"
    } else {
        "kiln build -"
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(usage(format!(
            "`{asked}` reads the Dockerfile from standard input, which is a terminal; \
             pipe the Dockerfile in (`{asked} < Dockerfile`)"
        )));
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut stdin.lock(), &mut text)
        .with_context(|| format!("`{asked}`: failed to read the Dockerfile from standard input"))?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(usage(format!(
            "`{asked}`: standard input holds no Dockerfile (it was empty); \
             pipe the Dockerfile in (`{asked} < Dockerfile`)"
        )));
    }
    // docker also takes a context archive on standard input; kiln takes only a Dockerfile.
    let is_tar = text.get(257..262) == Some(b"ustar".as_slice());
    let is_compressed =
        text.starts_with(&[0x1f, 0x8b]) || text.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if is_tar || is_compressed {
        return Err(usage(format!(
            "`{asked}`: standard input holds an archive; kiln reads only a Dockerfile there \
             (unpack the context into a directory and build that)"
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-stdin-")
        .tempdir()
        .context("failed to create a directory for the Dockerfile read from standard input")?;
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, &text)
        .with_context(|| format!("failed to write `{}`", dockerfile.display()))?;
    if context_from_stdin {
        let context = dir.path().join("context");
        std::fs::create_dir(&context)
            .with_context(|| format!("failed to create `{}`", context.display()))?;
        args.context = context;
    }
    args.file = Some(dockerfile);
    args.dockerfile_from_stdin = true;
    Ok(Some(dir))
}

pub(crate) fn run_build(mut args: BuildArgs) -> anyhow::Result<ExitCode> {
    // Kept alive until the build is done: it holds the Dockerfile read from standard input.
    let _stdin_dockerfile = take_stdin_dockerfile(&mut args)?;
    args.tags = expand_tag_templates(&args.tags, &args.context)?;
    let build_args = key_value_pairs(&args.build_args, "--build-arg")?;
    let annotations = key_value_pairs(&args.annotations, "--annotation")?;
    let labels = key_value_pairs(&args.labels, "--label")?;
    if args.quiet {
        args.progress = ProgressMode::Quiet;
    }
    let mut outputs = Vec::new();
    let mut push_names = Vec::new();
    for spec in &args.outputs {
        match registry_output(spec)? {
            Some(names) => {
                args.push = true;
                push_names.extend(names);
            }
            None => outputs.push(parse_output(spec)?),
        }
    }
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
    // The sandbox names paths below it from other directories (the overlay's layer links).
    let cache_dir = std::path::absolute(&cache_dir)
        .with_context(|| format!("invalid --cache-dir `{}`", cache_dir.display()))?;
    // A pushing output's names are the image's names, as -t tags are.
    for name in expand_tag_templates(&push_names, &args.context)? {
        if !args.tags.contains(&name) {
            args.tags.push(name);
        }
    }
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
        registry: args.registry.options(&cache_dir)?,
        apk_repositories: args.apk_repositories.clone(),
        apk_repositories_override: match &args.apk_repositories_file {
            Some(file) => Some(read_repositories_file(file)?),
            None => None,
        },
        offline: args.registry.offline,
        list_packages: args.sbom || args.scan_db.is_some(),
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
        labels,
        named_contexts: named_contexts(&args.build_contexts)?,
        sandbox: sandbox_options(&args.secrets, &args.ssh, &args.network, &args.add_hosts)?,
    };

    let started = Instant::now();
    let plain = PlainReporter::new();
    let tty = TtyReporter::new();
    let reporter: &dyn Reporter = match args.progress {
        ProgressMode::Quiet => &build::Quiet,
        ProgressMode::Auto if std::io::stderr().is_terminal() => &tty,
        ProgressMode::Auto | ProgressMode::Plain => &plain,
    };
    let started_on = unix_now();
    let mut base_policy_record = None;
    if let Some(path) = &args.policy {
        let policy = attest::Policy::load(path)?;
        let mut keys = args
            .policy_keys
            .iter()
            .map(|key| attest::PublicKey::load(key))
            .collect::<Result<Vec<_>, _>>()?;
        keys.extend(policy.load_keys()?);
        let failures = super::policy::check_build_policy(
            &options,
            &policy,
            &path.display().to_string(),
            &keys,
        )?;
        if !failures.is_empty() {
            for failure in &failures {
                eprintln!("POLICY FAILED {failure}");
            }
            return Err(anyhow::anyhow!(
                "the base images do not comply with the policy `{}`; nothing was built",
                path.display()
            ));
        }
        let policy_bytes = std::fs::read(path)
            .with_context(|| format!("failed to read the policy `{}`", path.display()))?;
        base_policy_record = Some(attest::provenance::BasePolicyRecord {
            digest: kiln::digest::Digest::of(&policy_bytes),
            verdict: "passed".to_owned(),
            trusted_keyids: keys.iter().map(|k| k.keyid()).collect(),
        });
    }
    let outcome = build::build(&options, reporter)?;
    if let Some(db) = &args.scan_db {
        super::scan::check_build(db, &outcome.packages, args.fail_on)?;
    }
    let attestations = make_attestations(
        &args,
        &options,
        &outcome,
        started_on,
        base_policy_record.as_ref(),
    )?;
    let signing_key = match &args.sign_key {
        Some(path) => {
            Some(attest::SigningKey::load(path).context("failed to load the signing key")?)
        }
        None => None,
    };
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
            if let Some(key) = &signing_key
                && args.signature_format.cosign_tags()
            {
                let docker_reference = match args.tags.first() {
                    Some(tag) => super::parse_references(std::slice::from_ref(tag))?
                        .remove(0)
                        .name(),
                    None => String::new(),
                };
                attest::cosign::sign_layout(
                    &output.dest,
                    &outcome.image.manifest.digest,
                    &docker_reference,
                    key,
                    &attestations,
                )
                .with_context(|| {
                    format!(
                        "failed to write cosign's tags into `{}`",
                        output.dest.display()
                    )
                })?;
            }
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
        if let Some(key) = &signing_key {
            let manifest = &outcome.image.manifest;
            let subject = image::manifest::Descriptor::new(
                &manifest.media_type,
                manifest.digest.clone(),
                manifest.size,
            );
            super::sign::push_signatures(
                args.signature_format,
                &outcome.store,
                &[subject],
                &attestations,
                key,
                &push_targets,
                &options.registry,
            )?;
        }
    }
    if let Some(path) = &args.metadata_file {
        write_metadata(path, &image::metadata_json(&outcome.image))?;
    }
    if let Some(path) = &args.iidfile {
        write_file_atomically(
            path,
            outcome.image.config_digest.to_string().as_bytes(),
            "the image ID file",
        )?;
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

/// buildx's pushing outputs: `type=registry[,name=REF]...` and `type=image,push=true[,name=REF]`
/// give the references to push to (none: the `-t` tags); any other output gives `None`.
fn registry_output(spec: &str) -> anyhow::Result<Option<Vec<String>>> {
    let mut kind = None;
    let mut push = None;
    let mut names = Vec::new();
    let mut others = Vec::new();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", value)) => kind = Some(value),
            Some(("push", value)) => push = Some(value == "true"),
            Some(("name", value)) => names.push(value.to_owned()),
            Some((key, _)) => others.push(key),
            None => others.push(part),
        }
    }
    match (kind, push) {
        (Some("registry"), Some(false)) => Err(usage(format!(
            "invalid --output `{spec}`: type=registry always pushes"
        ))),
        (Some("registry"), _) | (Some("image"), Some(true)) => {
            // kiln always writes OCI media types and pushes what it built.
            if let Some(key) = others.iter().find(|k| **k != "oci-mediatypes") {
                return Err(usage(format!(
                    "invalid --output `{spec}`: kiln does not support `{key}` for a pushing \
                     output (it takes name= and push=)"
                )));
            }
            Ok(Some(names))
        }
        (Some("image"), _) => Err(usage(format!(
            "unsupported --output `{spec}`: type=image without push=true keeps the image in \
             the builder's store; kiln keeps every image in its cache (--cache-dir) already, \
             use type=oci,dest=DIR to export it or push=true to push it"
        ))),
        _ => Ok(None),
    }
}

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
        for material in &outcome.materials {
            if let Ok(digest) = kiln::digest::Digest::from_hex(&material.sha256) {
                params
                    .materials
                    .push(attest::Material::sha256(material.uri.clone(), &digest));
            }
        }
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
            if let Some(wheel) = outcome.materials.iter().find(|m| {
                let file = m.uri.rsplit('/').next().unwrap_or("");
                file.ends_with(".whl") && file.to_lowercase().starts_with(&prefix)
            }) {
                package.checksum = Some(("SHA256".to_owned(), wheel.sha256.clone()));
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

/// The repository lines of an `--apk-repositories-file`, with `./` lines made absolute against
/// the file's directory.
fn read_repositories_file(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "failed to read the apk repositories file `{}`",
            file.display()
        )
    })?;
    let base = std::path::absolute(file.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("failed to resolve `{}`", file.display()))?;
    Ok(text
        .lines()
        .map(|line| match line.trim().strip_prefix("./") {
            Some(relative) => base.join(relative).display().to_string(),
            None => line.to_owned(),
        })
        .collect())
}

/// `kiln apk-export`.
#[derive(clap::Args)]
pub(crate) struct ApkExportArgs {
    /// A new directory to write the repositories and the `repositories` file into.
    dest: PathBuf,
    /// The cache to export from (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub(crate) fn run_apk_export(args: ApkExportArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let summary = kiln::apk::export::export_cache(&cache_dir.join("apk"), &args.dest)?;
    for (url, dir) in &summary.repositories {
        eprintln!("kiln: {url} -> {}/{dir}", args.dest.display());
    }
    eprintln!(
        "kiln: exported {} repositories and {} packages; build with --apk-repositories-file {}",
        summary.repositories.len(),
        summary.packages,
        args.dest.join("repositories").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Expands the tag templates the seed's CI uses: `{{date}}` (today, UTC, `YYYYMMDD`),
/// `{{git_sha}}` and `{{git_short_sha}}` (the commit the context is checked out at).
pub(crate) fn expand_tag_templates(tags: &[String], context: &Path) -> anyhow::Result<Vec<String>> {
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

/// `--secret`, `--ssh` and `--network`, checked before anything is built.
/// Parses `--build-context NAME=VALUE`s as buildx does, for the kinds kiln reads: a directory,
/// or `oci-layout://DIR[:TAG][@sha256:...]`. Other kinds are refused by name.
fn named_contexts(
    specs: &[String],
) -> anyhow::Result<BTreeMap<String, kiln::dockerfile::plan::NamedContext>> {
    use kiln::dockerfile::plan::{NamedContext, split_local_reference};
    let mut contexts = BTreeMap::new();
    for spec in specs {
        let (name, value) = spec
            .split_once('=')
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
            .ok_or_else(|| usage(format!("--build-context `{spec}`: expected NAME=VALUE")))?;
        let context = if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (dir, reference) = split_local_reference(rest);
            if !Path::new(&dir).join("index.json").is_file() {
                return Err(usage(format!(
                    "--build-context `{spec}`: `{dir}` is not an OCI layout (no index.json)"
                )));
            }
            NamedContext::OciLayout { dir, reference }
        } else if let Some((kind, _)) = value.split_once("://") {
            return Err(usage(format!(
                "--build-context `{spec}`: `{kind}://` contexts are not supported yet; \
                 give a directory or oci-layout://DIR"
            )));
        } else if value.starts_with("target:") || value.starts_with("git@") {
            return Err(usage(format!(
                "--build-context `{spec}`: this kind of context is not supported yet; \
                 give a directory or oci-layout://DIR"
            )));
        } else {
            let dir = PathBuf::from(value);
            if !dir.is_dir() {
                return Err(usage(format!(
                    "--build-context `{spec}`: `{value}` is not a directory"
                )));
            }
            NamedContext::Dir(dir)
        };
        if contexts.insert(name.to_owned(), context).is_some() {
            return Err(usage(format!(
                "--build-context: `{name}` is given more than once"
            )));
        }
    }
    Ok(contexts)
}

fn sandbox_options(
    secrets: &[String],
    ssh: &[String],
    network: &str,
    add_hosts: &[String],
) -> anyhow::Result<kiln::sandbox::SandboxOptions> {
    let mut options = kiln::sandbox::SandboxOptions {
        network: network
            .parse()
            .map_err(|e: String| UsageError(format!("--network: {e}")))?,
        ..Default::default()
    };
    for spec in secrets {
        let (id, source) = kiln::sandbox::parse_secret(spec).map_err(UsageError)?;
        options.secrets.insert(id, source);
    }
    for spec in ssh {
        let (id, socket) = kiln::sandbox::parse_ssh(spec).map_err(UsageError)?;
        options.ssh.insert(id, socket);
    }
    for spec in add_hosts {
        let entry = kiln::sandbox::parse_add_host(spec)
            .map_err(|e| UsageError(format!("--add-host {e}")))?;
        options.extra_hosts.push(entry);
    }
    Ok(options)
}
