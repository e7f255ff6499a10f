//! `kiln build`: flags ([`BuildArgs`], in `build_args`) to [`BuildOptions`], the build, its
//! outputs and push (attestations are made and attached in `attach`); and `kiln apk-export`.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};

use kiln::attest;
use kiln::build::{self, BuildOptions, Reporter};
use kiln::image::{self, Platform};
use kiln::layer::Compression;

use super::attach::{attach_to_layout, make_attestations, push_attestations};
pub(crate) use super::build_args::*;
use super::progress::{PlainReporter, TtyReporter};
use super::*;

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
            Some((names, by_digest)) => {
                args.push = true;
                args.push_by_digest |= by_digest;
                push_names.extend(names);
            }
            None => outputs.push(parse_output(spec)?),
        }
    }
    args.push |= args.push_by_digest;
    let targets = super::build_platforms::parse_platforms(&args.platforms)?;
    super::build_platforms::check_outputs(&outputs, &targets)?;
    let platform = match targets.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
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
        platforms: build::BuildPlatforms::new(platform, Platform::host()),
        compression,
        cache_dir: cache_dir.clone(),
        no_cache: args.no_cache,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        annotations,
        labels,
        named_contexts: named_contexts(&args.build_contexts)?,
        shared_cache: super::cache_flags::shared_cache_options(&args.cache_from, &args.cache_to)?,
        sandbox: kiln::sandbox::SandboxOptions {
            qemu_dir: args.qemu_dir.clone(),
            ..sandbox_options(&args.secrets, &args.ssh, &args.network, &args.add_hosts)?
        },
    };

    let started = Instant::now();
    if args.progress != ProgressMode::Quiet {
        eprintln!("kiln: {}", kiln::sandbox::capabilities::detect().summary());
    }
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
        let mut failures = Vec::new();
        for target in targets
            .iter()
            .map(Some)
            .chain(targets.is_empty().then_some(None))
        {
            let target_options = BuildOptions {
                platforms: build::BuildPlatforms::new(target.cloned(), Platform::host()),
                ..options.clone()
            };
            failures.extend(super::policy::check_build_policy(
                &target_options,
                &policy,
                &path.display().to_string(),
                &keys,
            )?);
        }
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
    if targets.len() > 1 {
        return super::build_platforms::run_platforms(super::build_platforms::PlatformsRun {
            args: &args,
            options: &options,
            targets: &targets,
            outputs: &outputs,
            push_targets: &push_targets,
            reporter,
            started,
            started_on,
            base_policy: base_policy_record.as_ref(),
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
            if let Some(key) = &signing_key {
                let docker_reference = match args.tags.first() {
                    Some(tag) => super::parse_references(std::slice::from_ref(tag))?
                        .remove(0)
                        .name(),
                    None => String::new(),
                };
                attest::layout_signatures::sign_layout(
                    &output.dest,
                    &outcome.image.manifest.digest,
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
    }
    if !push_targets.is_empty() {
        let push_targets = super::build_platforms::push_references(
            &push_targets,
            &outcome.image.manifest.digest,
            args.push_by_digest,
        )?;
        let push_options = super::cache_flags::with_mount_sources(
            options.registry.clone(),
            &options.shared_cache,
            &outcome.bases,
            &push_targets,
        );
        let pushed =
            kiln::registry::push(&outcome.store, &outcome.image, &push_targets, &push_options)
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
/// (`push-by-digest=true` pushes by digest only) give the references to push to (none: the
/// `-t` tags); any other output gives `None`.
/// The second value says whether `push-by-digest=true` asks to push by digest only.
fn registry_output(spec: &str) -> anyhow::Result<Option<(Vec<String>, bool)>> {
    let mut kind = None;
    let mut push = None;
    let mut by_digest = false;
    let mut names = Vec::new();
    let mut others = Vec::new();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", value)) => kind = Some(value),
            Some(("push", value)) => push = Some(value == "true"),
            Some(("push-by-digest", value)) => by_digest = value == "true",
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
                     output (it takes name=, push= and push-by-digest=)"
                )));
            }
            Ok(Some((names, by_digest)))
        }
        (Some("image"), _) => Err(usage(format!(
            "unsupported --output `{spec}`: type=image without push=true keeps the image in \
             the builder's store; kiln keeps every image in its cache (--cache-dir) already, \
             use type=oci,dest=DIR to export it or push=true to push it"
        ))),
        _ => Ok(None),
    }
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
