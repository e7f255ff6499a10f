//! The build executor: runs a plan stage by stage, step by step, through the step cache.
//!
//! [`build`] parses and plans the Dockerfile, then builds the stages the target needs in
//! dependency order. Each stage starts from its base ([`base`]: scratch, an earlier stage, a
//! local OCI layout or archive, a registry image), and its instructions run with Docker's
//! semantics ([`executor`]): config instructions change the config; COPY, ADD, WORKDIR and RUN
//! produce a [`Diff`] that the [`StepCache`] turns into a layer ([`commit`]), reusing the stored
//! one when an identical Diff was written before. The result is an assembled image in the
//! store; outputs are written by the caller.
//!
//! The platforms are the caller's to decide ([`BuildPlatforms`]): the build never assumes the
//! machine it runs on is the one it builds for.

mod base;
pub mod cache;
mod commit;
mod config_instructions;
mod copy;
mod executor;
mod native_run;
mod platforms;
pub mod progress;
mod sandboxed_run;
mod scratch;
pub mod shared_cache;
mod shared_steps;
mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use cache::{CacheError, StepCache};
pub use platforms::{MultiPlatformOutcome, build_for_platforms, check_target_platform};
pub use progress::{Quiet, Reporter, StepOutcome};

use crate::dockerfile::{self, plan::PlanOptions};
use crate::image::{BuiltImage, Platform};
use crate::layer::{Compression, Diff};
use crate::material::Material;
use crate::store::Store;

/// Everything a build needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The build context directory.
    pub context_dir: PathBuf,
    /// The Dockerfile to read.
    pub dockerfile: PathBuf,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform built for, and the one building.
    pub platforms: BuildPlatforms,
    /// Layer compression.
    pub compression: Compression,
    /// File times are clamped to this, and image times set to it (SOURCE_DATE_EPOCH, default 0).
    pub source_date_epoch: i64,
    /// Where the store and the step cache live.
    pub cache_dir: PathBuf,
    /// `--no-cache`: write every layer again (the store still deduplicates identical blobs).
    pub no_cache: bool,
    /// Compression worker threads.
    pub threads: usize,
    /// Annotations for the image manifest.
    pub annotations: BTreeMap<String, String>,
    /// Labels set on the built image's config after its Dockerfile's own (`--label`; they win
    /// over a `LABEL` of the same name, as in BuildKit).
    pub labels: BTreeMap<String, String>,
    /// How `FROM <registry reference>` pulls: insecure registries, credentials, offline mode.
    pub registry: crate::registry::RegistryOptions,
    /// `--apk-repository`: repositories added after the image's /etc/apk/repositories.
    pub apk_repositories: Vec<String>,
    /// `--apk-repositories-file`: repositories used instead of the image's
    /// /etc/apk/repositories.
    pub apk_repositories_override: Option<Vec<String>>,
    /// `--offline`: native steps use only what is cached.
    pub offline: bool,
    /// List the installed packages of the result, for an SBOM.
    pub list_packages: bool,
    /// How sandboxed RUN commands run: network, secrets.
    pub sandbox: crate::sandbox::SandboxOptions,
    /// `--build-context NAME=...`: what `FROM NAME` and `COPY --from=NAME` use.
    pub named_contexts: BTreeMap<String, crate::dockerfile::plan::NamedContext>,
    /// `--cache-from` and `--cache-to`: step results shared between machines.
    pub shared_cache: shared_cache::SharedCacheOptions,
}

/// A base image a stage started from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRecord {
    /// The FROM reference as written (after ARG expansion).
    pub reference: String,
    /// Where it was read from, pinned (`docker://reg/repo@sha256:...`, `oci:DIR@sha256:...`).
    pub source: String,
    /// Its manifest digest.
    pub digest: crate::digest::Digest,
}

/// The platform a build is for and the platform of the machine running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlatforms {
    /// What is built: bases are chosen for it, and `FROM scratch` stages say it.
    pub target: Platform,
    /// Whether `target` was asked for, or is a default.
    pub target_source: TargetSource,
    /// The machine running the build: `BUILDPLATFORM`, and the only platform whose programs a
    /// sandboxed RUN can execute.
    pub build: Platform,
}

/// Where a build's target platform came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// Asked for (`--platform`): every stage's config says the target platform.
    Requested,
    /// A default (the build machine's): a stage's config keeps its base image's platform.
    Default,
}

impl BuildPlatforms {
    /// Builds for `target` when given, else for the build machine's platform.
    pub fn new(target: Option<Platform>, build: Platform) -> BuildPlatforms {
        match target {
            Some(target) => BuildPlatforms {
                target,
                target_source: TargetSource::Requested,
                build,
            },
            None => BuildPlatforms {
                target: build.clone(),
                target_source: TargetSource::Default,
                build,
            },
        }
    }

    /// The target platform when it was asked for.
    pub fn requested(&self) -> Option<&Platform> {
        match self.target_source {
            TargetSource::Requested => Some(&self.target),
            TargetSource::Default => None,
        }
    }
}

/// What a build produced.
pub struct BuildOutcome {
    /// The assembled target image, in the store.
    pub image: BuiltImage,
    /// The store holding every blob of the image.
    pub store: Store,
    /// Steps whose layer came from the cache.
    pub cached_steps: usize,
    /// Steps whose layer was written.
    pub built_steps: usize,
    /// What the steps consumed from outside the context, for provenance.
    pub materials: Vec<Material>,
    /// The base images the stages started from.
    pub bases: Vec<BaseRecord>,
    /// The context as used: sha256 over the diffIDs of the layers made from it.
    pub context_digest: Option<crate::digest::Digest>,
    /// The packages installed in the result, when `list_packages` was asked.
    pub packages: Vec<crate::attest::sbom::SbomPackage>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("failed to read the Dockerfile `{path}`")]
    ReadDockerfile {
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile does not parse.
    #[error("failed to parse `{path}`")]
    Parse {
        /// Its path.
        path: PathBuf,
        /// The cause, with the line.
        #[source]
        source: dockerfile::ParseError,
    },
    /// The Dockerfile parses but cannot be planned.
    #[error("invalid Dockerfile `{path}`")]
    Plan {
        /// Its path.
        path: PathBuf,
        /// The cause, with the line.
        #[source]
        source: dockerfile::plan::PlanError,
    },
    /// An instruction failed.
    #[error("{dockerfile}:{line}: `{instruction}` failed{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Step {
        /// The Dockerfile's path.
        dockerfile: String,
        /// 1-based line.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// What went wrong, when kiln says it; `None` when the cause is the step's own error,
        /// which says it.
        message: Option<String>,
        /// The cause, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A build beside this one (another platform's) failed first, so this one stopped.
    #[error("stopped: the build of another platform failed")]
    Cancelled,
    /// The store or the cache failed.
    #[error("{context}")]
    Storage {
        /// What kiln was doing.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BuildError {
    fn storage(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BuildError::Storage {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// The store kept inside a cache directory.
pub fn open_store(cache_dir: &Path) -> Result<Store, BuildError> {
    Store::open(&cache_dir.join("store")).map_err(|e| {
        BuildError::storage(
            format!("failed to open the store in `{}`", cache_dir.display()),
            e,
        )
    })
}

/// The default cache directory: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else
/// `$HOME/.cache/kiln`, else `.kiln-cache` in the current directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kiln");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache/kiln");
    }
    PathBuf::from(".kiln-cache")
}

/// Builds the target stage of `options.dockerfile`.
pub fn build(options: &BuildOptions, reporter: &dyn Reporter) -> Result<BuildOutcome, BuildError> {
    let parsed = read_dockerfile(options)?;
    let plan = plan_for(options, &parsed, &options.platforms)?;
    let store = open_store(&options.cache_dir)?;
    let cache = StepCache::open(&options.cache_dir)
        .map_err(|e| BuildError::storage("failed to open the step cache", e))?;
    let outcome = build_plan(options, &plan, &store, &cache, reporter, None, None)?;
    cache
        .save()
        .map_err(|e| BuildError::storage("failed to save the stat cache", e))?;
    Ok(outcome)
}

/// Reads and parses `options.dockerfile`.
fn read_dockerfile(options: &BuildOptions) -> Result<dockerfile::ast::Dockerfile, BuildError> {
    let text = std::fs::read(&options.dockerfile).map_err(|source| BuildError::ReadDockerfile {
        path: options.dockerfile.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    dockerfile::parse(&text).map_err(|source| BuildError::Parse {
        path: options.dockerfile.clone(),
        source,
    })
}

/// The plan of `parsed` for `platforms` (whose values the automatic platform ARGs take).
fn plan_for(
    options: &BuildOptions,
    parsed: &dockerfile::ast::Dockerfile,
    platforms: &BuildPlatforms,
) -> Result<dockerfile::plan::Plan, BuildError> {
    let plan_options = PlanOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        platform_args: platform_args(&platforms.target, &platforms.build),
        named_contexts: options.named_contexts.clone(),
    };
    dockerfile::plan::plan(parsed, &plan_options).map_err(|source| BuildError::Plan {
        path: options.dockerfile.clone(),
        source,
    })
}

/// Builds the stages `plan` needs for `options.platforms` and assembles the target stage.
/// Stages in `shared` were built already (for every platform at once) and are reused as they
/// are, with what they consumed.
fn build_plan(
    options: &BuildOptions,
    plan: &dockerfile::plan::Plan,
    store: &Store,
    cache: &StepCache,
    reporter: &dyn Reporter,
    shared: Option<&platforms::SharedStages>,
    cancelled: Option<&std::sync::atomic::AtomicBool>,
) -> Result<BuildOutcome, BuildError> {
    let mut executor = executor::Executor::new(options, plan, store, cache, reporter)?;
    executor.cancelled = cancelled;
    if let Some(shared) = shared {
        shared.seed(&mut executor);
    }
    let mut final_stage: Option<stage::StageState> = None;
    for index in plan.needed_stages() {
        final_stage = Some(match executor.stages.get(&index) {
            Some(built) => built.clone(),
            None => executor.build_stage(index)?,
        });
    }
    executor.export_shared_cache(plan.target)?;
    let Some(mut stage) = final_stage else {
        return Err(BuildError::Storage {
            context: "the plan has no stage to build".to_owned(),
            source: "empty plan".into(),
        });
    };
    if !options.labels.is_empty() {
        stage
            .config
            .config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(options.labels.clone());
    }
    let image = crate::image::assemble(store, &stage.config, &stage.layers, &options.annotations)
        .map_err(|e| BuildError::storage("failed to assemble the image", e))?;
    let (cached_steps, built_steps) = executor.counts();
    let materials = executor.materials().to_vec();
    let bases = executor.bases().to_vec();
    let context_digest = executor.context_digest();
    let packages = if options.list_packages {
        executor.installed_packages(&mut stage)?
    } else {
        Vec::new()
    };
    drop(executor);
    Ok(BuildOutcome {
        image,
        store: store.clone(),
        cached_steps,
        built_steps,
        materials,
        bases,
        context_digest,
        packages,
    })
}

/// BuildKit's automatic platform ARGs: `TARGETPLATFORM` and its parts for `target`,
/// `BUILDPLATFORM` and its parts for `build`.
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, platform) in [("TARGET", target), ("BUILD", build)] {
        args.insert(format!("{prefix}PLATFORM"), platform.to_string());
        args.insert(format!("{prefix}OS"), platform.os.clone());
        args.insert(format!("{prefix}ARCH"), platform.architecture.clone());
        args.insert(
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        );
    }
    args
}

/// A Diff's size for progress notes.
fn describe_diff(diff: &Diff) -> String {
    format!("{} entries, {} bytes", diff.len(), diff.content_size())
}
