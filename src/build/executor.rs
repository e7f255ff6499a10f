//! The executor: builds one stage at a time, one instruction at a time, with Docker's
//! semantics.
//!
//! [`Executor::build_stage`] starts the stage from its base ([`super::base`]), runs its base's
//! ONBUILD triggers, then each instruction through [`Executor::dispatch`], a match that hands
//! each instruction to one function: config instructions ([`super::config_instructions`]),
//! COPY and ADD ([`super::copy`]), RUN computed natively ([`super::native_run`]) or in the
//! sandbox ([`super::sandboxed_run`]). A step that changes files returns a Diff, which
//! [`super::commit`] turns into a layer through the step cache. Variable expansion happens
//! here, not in the planner, because ENV values may use the base image's environment.
//!
//! An executor holds no global state: the platforms it builds for and on come in through
//! [`BuildOptions::platforms`], so several executors may run side by side.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::stage::StageState;
use super::{BaseRecord, BuildError, BuildOptions, Reporter, StepCache, StepOutcome};
use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::plan::{Instruction, Plan, PlannedInstruction};
use crate::image::config::History;
use crate::image::rfc3339;
use crate::layer::WriteOptions;
use crate::material::Material;
use crate::store::Store;

/// Marks `dir` as the top of unrelated directory trees (`chattr +T`), so ext4 places each
/// build's scratch directory in another block group than the last one's. On an ext4 without a
/// journal, the inode allocator skips inodes deleted in the last half minute, one disk block
/// lookup each: a build creating thousands of files (a RUN's copy-ups) right after the
/// previous build removed thousands of scratch files in the same group ran several times
/// slower. Best effort: other filesystems ignore or refuse the flag.
fn spread_subdirectories(dir: &Path) {
    use std::os::fd::AsRawFd;
    /// `FS_TOPDIR_FL` of linux/fs.h.
    const TOPDIR: libc::c_int = 0x0002_0000;
    let Ok(handle) = std::fs::File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: both ioctls read or write one int, which `flags` is.
    unsafe {
        if libc::ioctl(handle.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) == 0
            && flags & TOPDIR == 0
        {
            flags |= TOPDIR;
            libc::ioctl(handle.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// Builds the stages of one plan, for one target platform.
pub(super) struct Executor<'a> {
    pub(super) options: &'a BuildOptions,
    pub(super) plan: &'a Plan,
    pub(super) store: &'a Store,
    pub(super) cache: &'a StepCache,
    pub(super) reporter: &'a dyn Reporter,
    /// The build context, opened on first use.
    pub(super) context: Option<Context>,
    /// The stages built so far, by index.
    pub(super) stages: BTreeMap<usize, StageState>,
    pub(super) scratch: super::scratch::BuildScratch,
    pub(super) dockerfile_name: String,
    pub(super) current_stage: usize,
    /// What steps consumed from outside the context, for provenance.
    pub(super) materials: Vec<Material>,
    pub(super) bases: Vec<BaseRecord>,
    /// The diffIDs of the layers made from context files, in build order.
    pub(super) context_layers: Vec<Digest>,
    pub(super) cached: usize,
    pub(super) built: usize,
    /// The rootfs the last sandboxed RUN left: (stage, its layers' diffIDs then, the rootfs).
    pub(super) live_rootfs: Option<(usize, Vec<Digest>, crate::sandbox::LiveRootfs)>,
    /// The `--cache-from` / `--cache-to` caches.
    pub(super) shared: super::shared_cache::SharedCache,
    /// The shared-cache key of the step whose layer [`Executor::commit_layer`] is about to
    /// commit, when it was keyed before its files were computed (a RUN, a COPY from a stage).
    pub(super) pending_step_key: Option<super::shared_cache::PendingKey>,
    /// The instruction running, as written (for shared cache records).
    pub(super) current_step_text: String,
    /// Set when a build beside this one (another platform's) failed: the next step stops.
    pub(super) cancelled: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Wraps a failure of one instruction with its line and text.
pub(super) struct StepFailure<'p> {
    pub(super) dockerfile: &'p str,
    pub(super) planned: &'p PlannedInstruction,
}

impl StepFailure<'_> {
    /// A failure kiln describes itself, with no underlying error.
    pub(super) fn msg(&self, message: impl Into<String>) -> BuildError {
        self.error(Some(message.into()), None)
    }

    /// A failure of `message`, caused by the error the returned function receives.
    pub(super) fn err<E: std::error::Error + Send + Sync + 'static>(
        &self,
        message: &str,
    ) -> impl FnOnce(E) -> BuildError + '_ {
        let message = message.to_owned();
        move |source| self.error(Some(message), Some(Box::new(source)))
    }

    /// A failure that is the step's own error (which says what failed).
    pub(super) fn wrap<E: std::error::Error + Send + Sync + 'static>(
        &self,
    ) -> impl FnOnce(E) -> BuildError + '_ {
        move |source| self.error(None, Some(Box::new(source)))
    }

    fn error(
        &self,
        message: Option<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BuildError {
        BuildError::Step {
            dockerfile: self.dockerfile.to_owned(),
            line: self.planned.line,
            instruction: self.planned.text.clone(),
            message,
            source,
        }
    }
}

/// What an instruction did, for the stage's history and the progress line.
pub(super) struct Applied {
    /// Whether a layer was written, taken from the cache, or no file changed.
    pub(super) outcome: StepOutcome,
    /// The history text when it is not the instruction as written (ENV and LABEL record
    /// their expanded pairs).
    pub(super) history: Option<String>,
}

impl Applied {
    /// The config changed, and the history says the instruction as written.
    pub(super) fn config() -> Applied {
        Applied {
            outcome: StepOutcome::ConfigOnly,
            history: None,
        }
    }

    /// The config changed, and the history says `text`.
    pub(super) fn config_as(text: String) -> Applied {
        Applied {
            outcome: StepOutcome::ConfigOnly,
            history: Some(text),
        }
    }

    /// A step that may have added a layer (whose history entry it wrote).
    pub(super) fn step(outcome: StepOutcome) -> Applied {
        Applied {
            outcome,
            history: None,
        }
    }
}

impl<'a> Executor<'a> {
    pub fn new(
        options: &'a BuildOptions,
        plan: &'a Plan,
        store: &'a Store,
        cache: &'a StepCache,
        reporter: &'a dyn Reporter,
    ) -> Result<Executor<'a>, BuildError> {
        let scratch_root = options.cache_dir.join("tmp");
        std::fs::create_dir_all(&scratch_root).map_err(|e| {
            BuildError::storage(format!("failed to create `{}`", scratch_root.display()), e)
        })?;
        spread_subdirectories(&scratch_root);
        let scratch = super::scratch::create(&scratch_root).map_err(|e| {
            BuildError::storage(
                format!(
                    "failed to create a scratch directory in `{}`",
                    scratch_root.display()
                ),
                e,
            )
        })?;
        let dockerfile_name = options
            .dockerfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".to_owned());
        Ok(Executor {
            options,
            plan,
            store,
            cache,
            reporter,
            context: None,
            stages: BTreeMap::new(),
            scratch,
            dockerfile_name,
            current_stage: 0,
            materials: Vec::new(),
            bases: Vec::new(),
            context_layers: Vec::new(),
            cached: 0,
            built: 0,
            live_rootfs: None,
            shared: super::shared_cache::SharedCache::new(
                options.shared_cache.clone(),
                options.registry.clone(),
            ),
            pending_step_key: None,
            current_step_text: String::new(),
            cancelled: None,
        })
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.cached, self.built)
    }

    /// What native steps fetched (packages, indexes), for provenance.
    pub fn materials(&self) -> &[Material] {
        &self.materials
    }

    /// The digest of the build context as the build used it: sha256 over the diffIDs of the
    /// layers made from context files, in build order (`None` when nothing came from it).
    pub fn context_digest(&self) -> Option<Digest> {
        if self.context_layers.is_empty() {
            return None;
        }
        let joined: Vec<String> = self.context_layers.iter().map(|d| d.to_string()).collect();
        Some(Digest::of(joined.join("\n").as_bytes()))
    }

    /// The base images the built stages started from, pinned by manifest digest.
    pub fn bases(&self) -> &[BaseRecord] {
        &self.bases
    }

    /// The packages (apk and Python) installed in `state`'s filesystem, for the SBOM.
    pub fn installed_packages(
        &self,
        state: &mut StageState,
    ) -> Result<Vec<crate::attest::sbom::SbomPackage>, BuildError> {
        let fs = state
            .fs(self.store, self.scratch.dir.path())
            .map_err(|e| BuildError::storage("failed to read the image's filesystem", e))?;
        crate::attest::packages_from_rootfs(fs)
            .map_err(|e| BuildError::storage("failed to list the image's packages", e))
    }

    pub(super) fn write_options(&self) -> WriteOptions {
        WriteOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
            threads: self.options.threads.max(1),
        }
    }

    /// Builds stage `index` (its dependencies must be built already) and returns its state.
    pub fn build_stage(&mut self, index: usize) -> Result<StageState, BuildError> {
        let plan = self.plan;
        let stage = &plan.stages[index];
        let stage_name = stage.display_name();
        self.current_stage = index;
        let mut state = self.start_stage(index)?;
        let total = stage.instructions.len() + 1;
        self.reporter
            .step_started(&stage_name, 1, total, &format!("FROM {}", stage.base_text));
        self.reporter
            .step_finished(StepOutcome::ConfigOnly, std::time::Duration::ZERO);

        // ONBUILD triggers of the base run first, then are dropped from the new image.
        let triggers = state.config.config.on_build.take().unwrap_or_default();
        for trigger in triggers {
            let planned = crate::dockerfile::plan::plan_trigger(&trigger, stage.line, plan.escape)
                .map_err(|source| BuildError::Plan {
                    path: self.options.dockerfile.clone(),
                    source,
                })?;
            self.dispatch(&mut state, &planned, &stage_name, 1, total)?;
        }
        for (position, planned) in stage.instructions.iter().enumerate() {
            self.dispatch(&mut state, planned, &stage_name, position + 2, total)?;
        }
        self.stages.insert(index, state.clone());
        Ok(state)
    }

    /// Runs one instruction on `state` and records it in the stage's history.
    fn dispatch(
        &mut self,
        state: &mut StageState,
        planned: &PlannedInstruction,
        stage_name: &str,
        position: usize,
        total: usize,
    ) -> Result<(), BuildError> {
        if self
            .cancelled
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(BuildError::Cancelled);
        }
        let started = Instant::now();
        self.reporter
            .step_started(stage_name, position, total, &planned.text);
        self.current_step_text.clone_from(&planned.text);
        let dockerfile_name = self.dockerfile_name.clone();
        let failure = StepFailure {
            dockerfile: &dockerfile_name,
            planned,
        };
        let failure = &failure;
        let applied = match &planned.instruction {
            Instruction::Arg(words) => self.arg(state, words, failure)?,
            Instruction::Env(pairs) => self.env(state, pairs, failure)?,
            Instruction::Label(pairs) => self.label(state, pairs, failure)?,
            Instruction::Maintainer(name) => state.maintainer(name),
            Instruction::User(user) => self.user(state, user, failure)?,
            Instruction::Workdir(raw) => self.workdir(state, raw, failure)?,
            Instruction::Expose(words) => self.expose(state, words, failure)?,
            Instruction::Cmd(command) => state.cmd(command),
            Instruction::Entrypoint(command) => state.entrypoint(command),
            Instruction::Shell(words) => state.shell(words),
            Instruction::StopSignal(signal) => self.stop_signal(state, signal, failure)?,
            Instruction::Healthcheck(check) => state.healthcheck(check, failure)?,
            Instruction::Volume(words) => self.volume(state, words, failure)?,
            Instruction::Onbuild(trigger) => state.onbuild(trigger),
            Instruction::Copy(copy) => self.copy(state, copy, failure)?,
            Instruction::Run(run) => self.run(state, run, failure)?,
        };
        if applied.outcome == StepOutcome::ConfigOnly {
            state.config.history.push(History {
                created: Some(rfc3339(self.options.source_date_epoch)),
                created_by: Some(applied.history.unwrap_or_else(|| planned.text.clone())),
                comment: Some("kiln".to_owned()),
                empty_layer: Some(true),
            });
        }
        self.reporter
            .step_finished(applied.outcome, started.elapsed());
        Ok(())
    }
}
