//! `kiln lock pip`: resolve Python requirements for the image's platforms on the build host
//! and write them as a hashed requirements file or a PEP 751 `pylock.toml`, for
//! `RUN pip install -r ...` to install exactly (see docs/pip.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

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
    #[arg(long = "python-version", value_name = "X.Y")]
    python_version: String,
    /// A wheel platform tag of the image (`musllinux_1_2_x86_64`, `manylinux_2_17_aarch64`);
    /// repeatable: the file then holds a hash for each platform's wheel.
    #[arg(long = "platform", value_name = "TAG", required = true)]
    platforms: Vec<String>,
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
    /// A directory (absolute) or page of distribution files (repeatable).
    #[arg(long = "find-links", short = 'f', value_name = "DIR|URL")]
    find_links: Vec<String>,
    /// Ignore the index; use --find-links only.
    #[arg(long = "no-index")]
    no_index: bool,
    /// Consider pre-releases.
    #[arg(long)]
    pre: bool,
    /// Use only host directories and kiln's download cache.
    #[arg(long)]
    offline: bool,
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
    let targets = args
        .platforms
        .iter()
        .map(|p| LockTarget::parse(&args.python_version, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| super::usage(e.to_string()))?;
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
        find_links: args.find_links.clone(),
        no_index: args.no_index,
        pre: args.pre,
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(kiln::build::default_cache_dir)
            .join("pip"),
        offline: args.offline,
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
            eprintln!(
                "locked {} packages for {} into {}",
                locked.packages.len(),
                args.platforms.join(", "),
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
    words.push(format!("--python-version {}", args.python_version));
    for platform in &args.platforms {
        words.push(format!("--platform {platform}"));
    }
    if let Some(output) = &args.output {
        words.push(format!("-o {}", output.display()));
    }
    words.join(" ")
}
