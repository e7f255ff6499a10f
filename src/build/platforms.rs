//! Building one Dockerfile for several target platforms at once (`--platform
//! linux/amd64,linux/arm64`), into one image index.
//!
//! [`build_for_platforms`] plans the Dockerfile once per target (the automatic platform ARGs
//! differ), builds the stages every target would build identically once ([`SharedStages`]: a
//! stage pinned by `FROM --platform=...` that declares no `TARGET*` ARG and reads only such
//! stages, the cross-compilation pattern), then builds each target's own stages on its own
//! thread, each with its own executor over the one store and step cache. Layers every target
//! makes alike (a `COPY` of the context) are one blob in the content-addressed store. The
//! images are listed in an index in the order the targets were given.

use std::collections::{BTreeMap, BTreeSet};

use super::executor::Executor;
use super::stage::StageState;
use super::{
    BaseRecord, BuildError, BuildOptions, BuildOutcome, BuildPlatforms, Reporter, StepCache,
    StepOutcome,
};
use crate::digest::Digest;
use crate::dockerfile::plan::{Instruction, Plan};
use crate::image::{BuiltIndex, Platform};
use crate::material::Material;

/// Architectures (GOARCH spelling) Linux images are built for.
const KNOWN_ARCHITECTURES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64",
    "ppc64le", "riscv64", "s390x",
];

/// Refuses a target platform no Linux image can have (`linux/amd46`, `darwin/arm64`), naming
/// what is accepted.
pub fn check_target_platform(platform: &Platform) -> Result<(), String> {
    if platform.os != "linux" {
        return Err(format!(
            "unknown platform `{platform}`: kiln builds Linux images, so the os must be `linux`"
        ));
    }
    if !KNOWN_ARCHITECTURES.contains(&platform.architecture.as_str()) {
        return Err(format!(
            "unknown platform `{platform}`: the architecture `{}` is not one of {}",
            platform.architecture,
            KNOWN_ARCHITECTURES.join(", ")
        ));
    }
    Ok(())
}

/// What a multi-platform build produced.
pub struct MultiPlatformOutcome {
    /// The store holding the index and every blob of its images.
    pub store: crate::store::Store,
    /// The index listing every platform's image, in the order of the targets.
    pub index: BuiltIndex,
    /// Each target's build, in the same order.
    pub builds: Vec<BuildOutcome>,
    /// Steps of the shared stages whose layer came from the cache (counted once).
    pub shared_cached_steps: usize,
    /// Steps of the shared stages whose layer was written (counted once).
    pub shared_built_steps: usize,
}

/// Stages built once for every target, with what building them consumed.
pub(super) struct SharedStages {
    stages: BTreeMap<usize, StageState>,
    materials: Vec<Material>,
    bases: Vec<BaseRecord>,
    context_layers: Vec<Digest>,
}

impl SharedStages {
    /// Gives `executor` the shared stages as if it had built them.
    pub(super) fn seed(&self, executor: &mut Executor<'_>) {
        for (index, state) in &self.stages {
            executor.stages.insert(*index, state.detached());
        }
        executor.materials.extend(self.materials.iter().cloned());
        executor.bases.extend(self.bases.iter().cloned());
        executor
            .context_layers
            .extend(self.context_layers.iter().cloned());
    }
}

/// Prefixes each stage name with the platform it is built for, so that the progress lines of
/// targets built side by side say which is which.
struct PlatformReporter<'r> {
    inner: &'r dyn Reporter,
    platform: String,
}

impl Reporter for PlatformReporter<'_> {
    fn step_started(&self, stage: &str, position: usize, total: usize, text: &str) {
        self.inner
            .step_started(&format!("{} {stage}", self.platform), position, total, text);
    }

    fn step_finished(&self, outcome: StepOutcome, elapsed: std::time::Duration) {
        self.inner.step_finished(outcome, elapsed);
    }

    fn note(&self, message: &str) {
        self.inner.note(&format!("{}: {message}", self.platform));
    }
}

/// The stages every plan builds identically: the same planned stage in every plan, pinned to
/// a platform by its `FROM --platform=`, declaring no `TARGET*` ARG (so nothing in it can
/// differ by target), and reading only stages that are shared too. Dependencies come first.
fn shared_stage_indexes(plans: &[Plan]) -> Vec<usize> {
    let Some(first) = plans.first() else {
        return Vec::new();
    };
    let needed = first.needed_stages();
    if plans.len() < 2 || plans.iter().any(|p| p.needed_stages() != needed) {
        return Vec::new();
    }
    let mut shared = BTreeSet::new();
    for &index in &needed {
        let stage = &first.stages[index];
        let same_everywhere = plans.iter().all(|p| p.stages.get(index) == Some(stage));
        let declares_target_arg = stage.instructions.iter().any(|planned| {
            matches!(&planned.instruction, Instruction::Arg(words)
                if words.iter().any(|(name, _)| name.starts_with("TARGET")))
        });
        let reads_only_shared = first.dependencies(index).iter().all(|d| shared.contains(d));
        if same_everywhere && stage.platform.is_some() && !declares_target_arg && reads_only_shared
        {
            shared.insert(index);
        }
    }
    shared.into_iter().collect()
}

/// Builds `options.dockerfile` for every platform of `targets` (at least one, no two alike)
/// and lists the images in one index, in that order. `options.platforms.build` is the
/// machine building; `options.platforms.target` is ignored.
pub fn build_for_platforms(
    options: &BuildOptions,
    targets: &[Platform],
    reporter: &dyn Reporter,
) -> Result<MultiPlatformOutcome, BuildError> {
    let mut seen = BTreeSet::new();
    for target in targets {
        if !seen.insert(target.normalized()) {
            return Err(BuildError::storage(
                format!("`{target}` is given twice in --platform"),
                std::io::Error::other("an index holds one image per platform"),
            ));
        }
    }
    if targets.is_empty() {
        return Err(BuildError::storage(
            "no target platform to build for",
            std::io::Error::other("--platform lists none"),
        ));
    }
    let parsed = super::read_dockerfile(options)?;
    let per_target: Vec<BuildOptions> = targets
        .iter()
        .map(|target| BuildOptions {
            platforms: BuildPlatforms::new(Some(target.clone()), options.platforms.build.clone()),
            ..options.clone()
        })
        .collect();
    let plans = per_target
        .iter()
        .map(|o| super::plan_for(o, &parsed, &o.platforms))
        .collect::<Result<Vec<_>, _>>()?;
    let store = super::open_store(&options.cache_dir)?;
    let cache = StepCache::open(&options.cache_dir)
        .map_err(|e| BuildError::storage("failed to open the step cache", e))?;

    let shared_indexes = shared_stage_indexes(&plans);
    let mut shared_counts = (0, 0);
    let shared = if shared_indexes.is_empty() {
        None
    } else {
        let shared_reporter = PlatformReporter {
            inner: reporter,
            platform: "(all platforms)".to_owned(),
        };
        let mut executor =
            Executor::new(&per_target[0], &plans[0], &store, &cache, &shared_reporter)?;
        let mut stages = BTreeMap::new();
        for index in shared_indexes {
            stages.insert(index, executor.build_stage(index)?);
        }
        shared_counts = executor.counts();
        Some(SharedStages {
            stages,
            materials: executor.materials.clone(),
            bases: executor.bases.clone(),
            context_layers: executor.context_layers.clone(),
        })
    };

    // The first failure stops the other platforms at their next step.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<BuildOutcome, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_target
            .iter()
            .zip(&plans)
            .map(|(target_options, plan)| {
                let store = &store;
                let cache = &cache;
                let shared = shared.as_ref();
                let failed = &failed;
                scope.spawn(move || {
                    let reporter = PlatformReporter {
                        inner: reporter,
                        platform: target_options.platforms.target.to_string(),
                    };
                    let built = super::build_plan(
                        target_options,
                        plan,
                        store,
                        cache,
                        &reporter,
                        shared,
                        Some(failed),
                    );
                    if built.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    built
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(BuildError::storage(
                        "a platform's build panicked",
                        std::io::Error::other("see the panic message above"),
                    ))
                })
            })
            .collect()
    });
    // The failure that stopped the others, not the stops it caused.
    let mut builds = Vec::new();
    let mut cancelled = None;
    for result in results {
        match result {
            Ok(built) => builds.push(built),
            Err(BuildError::Cancelled) => cancelled = Some(BuildError::Cancelled),
            Err(error) => return Err(error),
        }
    }
    if let Some(cancelled) = cancelled {
        return Err(cancelled);
    }
    cache
        .save()
        .map_err(|e| BuildError::storage("failed to save the stat cache", e))?;
    let images: Vec<_> = builds.iter().map(|b| b.image.clone()).collect();
    let index = crate::image::assemble_index(&store, &images, &BTreeMap::new())
        .map_err(|e| BuildError::storage("failed to assemble the image index", e))?;
    Ok(MultiPlatformOutcome {
        store,
        index,
        builds,
        shared_cached_steps: shared_counts.0,
        shared_built_steps: shared_counts.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::plan::PlanOptions;

    fn plans(dockerfile: &str) -> Vec<Plan> {
        let parsed = crate::dockerfile::parse(dockerfile).unwrap();
        let build = Platform::new("linux", "amd64", None);
        ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|target| {
                let options = PlanOptions {
                    platform_args: super::super::platform_args(&target.parse().unwrap(), &build),
                    ..PlanOptions::default()
                };
                crate::dockerfile::plan::plan(&parsed, &options).unwrap()
            })
            .collect()
    }

    #[test]
    fn shared_stages_table() {
        for (dockerfile, shared) in [
            // No stage pinned: every stage is the target's.
            ("FROM alpine AS a\nRUN true\nFROM a\n", vec![]),
            // Pinned to the build platform, reading nothing of the target.
            (
                "FROM --platform=$BUILDPLATFORM alpine AS tools\nRUN make\nFROM alpine\nCOPY --from=tools /x /x\n",
                vec![0],
            ),
            // Declares TARGETARCH: built per platform.
            (
                "FROM --platform=$BUILDPLATFORM alpine AS cross\nARG TARGETARCH\nRUN make $TARGETARCH\nFROM alpine\nCOPY --from=cross /x /x\n",
                vec![],
            ),
            // Pinned to the target: differs by platform.
            (
                "FROM --platform=$TARGETPLATFORM alpine AS t\nRUN make\nFROM t\n",
                vec![],
            ),
            // Shared only when what it reads is shared.
            (
                "FROM alpine AS target\nRUN x\nFROM --platform=$BUILDPLATFORM alpine AS mixed\nCOPY --from=target /x /x\nFROM --platform=linux/amd64 alpine AS fixed\nRUN y\nFROM alpine\nCOPY --from=mixed /x /x\nCOPY --from=fixed /y /y\n",
                vec![2],
            ),
        ] {
            assert_eq!(
                shared_stage_indexes(&plans(dockerfile)),
                shared,
                "{dockerfile}"
            );
        }
    }

    #[test]
    fn unknown_platforms_are_refused() {
        for (text, ok) in [
            ("linux/amd64", true),
            ("linux/arm64/v8", true),
            ("linux/arm/v7", true),
            ("linux/riscv64", true),
            ("linux/amd46", false),
            ("darwin/arm64", false),
            ("windows/amd64", false),
        ] {
            let platform: Platform = text.parse().unwrap();
            assert_eq!(check_target_platform(&platform).is_ok(), ok, "{text}");
        }
    }
}
