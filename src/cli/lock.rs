//! `kiln lock pip`: resolve Python requirements for the image's platforms on the build host
//! and write them as a hashed requirements file or a PEP 751 `pylock.toml`, for
//! `RUN pip install -r ...` to install exactly (see docs/pip.md). The target is given as
//! `--python-version` and wheel `--platform` tags, or read from a base image (`--from-image`)
//! as the build would read it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use kiln::image::{self, Platform};
use kiln::python::lock::{self, LockRequest, LockTarget};

/// `kiln lock ...`
#[derive(clap::Args)]
pub(crate) struct LockArgs {
    #[command(subcommand)]
    what: LockCommand,
}

#[derive(clap::Subcommand)]
enum LockCommand {
    /// Resolve pip requirements for target platforms; write requirements.txt (with hashes) or
    /// pylock.toml.
    Pip(Box<LockPipArgs>),
}

#[derive(clap::Args)]
struct LockPipArgs {
    /// Requirements to lock (`flask`, `requests>=2`).
    specs: Vec<String>,
    /// Read requirements from FILE (repeatable).
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    requirement_files: Vec<PathBuf>,
    /// Constrain versions with FILE (repeatable).
    #[arg(short = 'c', long = "constraint", value_name = "FILE")]
    constraint_files: Vec<PathBuf>,
    /// The image's Python version (`3.11`, or `3.11.9` for `python_full_version` markers).
    #[arg(
        long = "python-version",
        value_name = "X.Y",
        required_unless_present = "from_image",
        requires = "platforms"
    )]
    python_version: Option<String>,
    /// A wheel platform tag of the image (`musllinux_1_2_x86_64`, `manylinux_2_17_aarch64`);
    /// repeatable: the file then holds a hash for each platform's wheel.
    #[arg(long = "platform", value_name = "TAG", requires = "python_version")]
    platforms: Vec<String>,
    /// Read the target (Python version, musl or glibc, architecture) from this base image, as
    /// the build does: `oci:DIR[:TAG]` or a registry reference.
    #[arg(
        long = "from-image",
        value_name = "IMAGE",
        conflicts_with = "python_version"
    )]
    from_image: Option<String>,
    /// With --from-image: the image platform to read (`linux/amd64`, `linux/arm64`);
    /// repeatable; default: the host's.
    #[arg(
        long = "image-platform",
        value_name = "OS/ARCH",
        requires = "from_image"
    )]
    image_platforms: Vec<String>,
    /// The package index (simple API).
    #[arg(
        long = "index-url",
        short = 'i',
        env = "PIP_INDEX_URL",
        value_name = "URL"
    )]
    index_url: Option<String>,
    /// Another package index (repeatable).
    #[arg(long = "extra-index-url", value_name = "URL")]
    extra_index_urls: Vec<String>,
    /// A directory or page of distribution files (repeatable).
    #[arg(long = "find-links", short = 'f', value_name = "DIR|URL")]
    find_links: Vec<String>,
    /// Ignore the index; use --find-links only.
    #[arg(long = "no-index")]
    no_index: bool,
    /// Consider pre-releases.
    #[arg(long)]
    pre: bool,
    #[command(flatten)]
    registry: super::RegistryFlags,
    /// kiln's cache directory (the downloaded wheels stay there for the build).
    #[arg(long = "cache-dir", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Where to write: `pylock.toml` / `pylock.<name>.toml` write PEP 751, any other name a
    /// requirements file; `-` or nothing prints a requirements file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) fn run_lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let LockCommand::Pip(args) = args.what;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(kiln::build::default_cache_dir);
    let targets = match (&args.from_image, &args.python_version) {
        (Some(image), _) => targets_from_image(&args, image, &cache_dir)?,
        (None, Some(python_version)) => args
            .platforms
            .iter()
            .map(|p| LockTarget::parse(python_version, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| super::usage(e.to_string()))?,
        (None, None) => {
            return Err(super::usage(
                "give --python-version and --platform, or --from-image".to_owned(),
            ));
        }
    };
    if args.specs.is_empty() && args.requirement_files.is_empty() {
        return Err(super::usage(
            "nothing to lock: give requirements or -r FILE".to_owned(),
        ));
    }
    let request = LockRequest {
        requirement_files: args.requirement_files.clone(),
        constraint_files: args.constraint_files.clone(),
        specs: args.specs.clone(),
        targets,
        index_url: args.index_url.clone(),
        extra_index_urls: args.extra_index_urls.clone(),
        // On the host, a relative directory means the current one's (the build itself refuses
        // relative find-links: in an image there is no obvious directory to start from).
        find_links: args
            .find_links
            .iter()
            .map(|link| {
                if link.contains("://") || link.starts_with('/') {
                    return Ok(link.clone());
                }
                std::path::absolute(link)
                    .map(|p| p.to_string_lossy().into_owned())
                    .with_context(|| format!("--find-links `{link}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        no_index: args.no_index,
        pre: args.pre,
        cache_dir: cache_dir.join("pip"),
        offline: args.registry.offline,
    };
    let locked = lock::lock(&request)?;
    let command = command_line(&args);
    let output = args.output.filter(|o| o.as_os_str() != "-");
    match output {
        Some(path) => {
            let text = if lock::is_pylock_path(&path) {
                locked.pylock_toml(&command)
            } else {
                locked.requirements_txt(&command)
            };
            std::fs::write(&path, text)
                .with_context(|| format!("failed to write `{}`", path.display()))?;
            let platforms: Vec<&str> = locked.targets.iter().map(|t| t.platform.as_str()).collect();
            eprintln!(
                "locked {} packages for {} into {}",
                locked.packages.len(),
                platforms.join(", "),
                path.display()
            );
        }
        None => print!("{}", locked.requirements_txt(&command)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The command as written into the file's header: inputs and targets, not index URLs (they
/// may carry credentials) or host paths of the cache.
fn command_line(args: &LockPipArgs) -> String {
    let mut words = vec!["kiln lock pip".to_owned()];
    words.extend(args.specs.iter().cloned());
    for file in &args.requirement_files {
        words.push(format!("-r {}", file.display()));
    }
    for file in &args.constraint_files {
        words.push(format!("-c {}", file.display()));
    }
    if let Some(python_version) = &args.python_version {
        words.push(format!("--python-version {python_version}"));
    }
    for platform in &args.platforms {
        words.push(format!("--platform {platform}"));
    }
    if let Some(image) = &args.from_image {
        words.push(format!("--from-image {image}"));
    }
    for platform in &args.image_platforms {
        words.push(format!("--image-platform {platform}"));
    }
    if let Some(output) = &args.output {
        words.push(format!("-o {}", output.display()));
    }
    words.join(" ")
}

/// One target per image platform, detected from the image's files as the pip step does.
fn targets_from_image(
    args: &LockPipArgs,
    image_ref: &str,
    cache_dir: &Path,
) -> anyhow::Result<Vec<LockTarget>> {
    let platforms = if args.image_platforms.is_empty() {
        vec![Platform::host()]
    } else {
        args.image_platforms
            .iter()
            .map(|text| {
                text.parse::<Platform>()
                    .map_err(|e| super::usage(format!("invalid --image-platform `{text}`: {e}")))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let store = kiln::build::open_store(cache_dir)?;
    let mut targets = Vec::new();
    for platform in &platforms {
        let layers = match image_ref.strip_prefix("oci:") {
            Some(rest) => {
                let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
                image::base::load_oci_layout(
                    &store,
                    Path::new(&dir),
                    reference.as_deref(),
                    platform,
                )
                .with_context(|| format!("failed to read `{image_ref}` for {platform}"))?
                .layers
            }
            None => {
                let reference =
                    super::parse_references(std::slice::from_ref(&image_ref.to_owned()))?.remove(0);
                let options = args.registry.options(cache_dir)?;
                let pulled = kiln::registry::pull(&reference, platform, &store, &options)
                    .with_context(|| format!("failed to pull `{image_ref}` for {platform}"))?;
                image::BuiltImage::from_store(&store, &pulled.manifest_digest)?.layers
            }
        };
        let scratch = tempfile::Builder::new()
            .prefix("lock-")
            .tempdir_in(store.root())
            .context("failed to create a scratch directory")?;
        let mut fs = kiln::rootfs::LowerFs::with_scratch_dir(scratch.path());
        for layer in &layers {
            fs.push_layer_blob(&store, layer)?;
        }
        let python = kiln::python::target::detect(&fs, platform)
            .with_context(|| format!("in `{image_ref}` for {platform}"))?;
        targets.push(LockTarget::for_python(python));
    }
    Ok(targets)
}
