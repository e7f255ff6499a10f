//! Instruction dispatch: Docker's semantics for each instruction, applied to one stage's state.
//!
//! A stage's state is its image config, its layers, the ARGs in scope and a lazily built
//! [`LowerFs`] (only steps that read the filesystem pay for indexing the base layers). Variable
//! expansion happens here, not in the planner, because ENV values may use the base image's
//! environment. ENV takes precedence over ARG of the same name, as in Docker.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use super::{
    BaseRecord, BuildError, BuildOptions, Material, Reporter, StepCache, StepOutcome, describe_diff,
};
use crate::context::Context;
use crate::dockerfile::plan::{
    BaseRef, CommandLine, CopyInstruction, HealthcheckInstruction, Instruction, NamedContext, Plan,
    PlannedInstruction, RunInstruction,
};
use crate::dockerfile::shell;
use crate::image::config::{EmptyObject, Healthcheck, History, ImageConfig, RuntimeConfig};
use crate::image::{Platform, rfc3339};
use crate::layer::{self, Diff, Entry, EntryKind, Layer, LayerPath, Metadata, WriteOptions};
use crate::rootfs::{FsView, LowerFs, NodeKind, Overlay};
use crate::steps::copy::{self as copy_step, AddMode, CopyRequest, CopySource};
use crate::steps::pip::{PipRequest, pip_install};
use crate::steps::run::{self as run_step, NativeCommand};
use crate::steps::users::{self, UsersOptions};
use crate::store::Store;

mod sandboxed;

/// A filesystem operation not yet applied to the stage's LowerFs.
#[derive(Clone)]
enum PendingFs {
    Blob(Layer),
    Diff(Box<Diff>),
}

/// One stage's state while it is built, and its result afterwards.
#[derive(Clone)]
pub(super) struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// How many of `layers` the stage started with (its FROM's): the sandbox keeps those
    /// unpacked between builds.
    pub base_layers: usize,
    fs: Option<LowerFs>,
    pending: Vec<PendingFs>,
    args: BTreeMap<String, Option<String>>,
    cmd_set: bool,
    shell: Vec<String>,
    env_index: EnvIndex,
}

/// Where each name sits in the config's `Env` list, so that setting or reading a variable
/// does not scan the list (a scan made 100,000 ENV lines quadratic). Built on first use and
/// kept up to date by [`StageState::set_env`]; an answer is trusted only while the list has
/// the length it was indexed at and the entry found still carries the name, otherwise the
/// list is scanned (and re-indexed on the next write).
#[derive(Clone, Default)]
struct EnvIndex {
    positions: HashMap<String, usize>,
    indexed_len: usize,
}

impl EnvIndex {
    fn rebuild(&mut self, env: &[String]) {
        self.positions.clear();
        for (position, kv) in env.iter().enumerate() {
            let name = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            // The last of duplicate names wins, as when the list is read into an environment.
            self.positions.insert(name.to_owned(), position);
        }
        self.indexed_len = env.len();
    }

    /// `Some(position)` of `name`, `Some(None)` when it is known to be absent, `None` when
    /// the index cannot tell.
    fn find(&self, env: &[String], name: &str) -> Option<Option<usize>> {
        if self.indexed_len != env.len() {
            return None;
        }
        match self.positions.get(name) {
            None => Some(None),
            Some(&position) => env
                .get(position)
                .filter(|kv| env_value_of(kv, name).is_some())
                .map(|_| Some(position)),
        }
    }
}

/// The value in `NAME=value` when the entry is for `name`.
fn env_value_of<'a>(kv: &'a str, name: &str) -> Option<&'a str> {
    kv.split_once('=')
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl StageState {
    fn env_value(&self, name: &str) -> Option<String> {
        let env = self.config.config.env.as_ref()?;
        match self.env_index.find(env, name) {
            Some(found) => found.and_then(|position| env_value_of(&env[position], name)),
            None => env.iter().rev().find_map(|kv| env_value_of(kv, name)),
        }
        .map(str::to_owned)
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(value) = self.env_value(name) {
            return Some(value);
        }
        self.args.get(name).cloned().flatten()
    }

    /// What a RUN sees: the ARGs in scope, overridden by ENV.
    fn environment(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for kv in self.config.config.env.iter().flatten() {
            if let Some((key, value)) = kv.split_once('=') {
                env.insert(key.to_owned(), value.to_owned());
            }
        }
        env
    }

    fn set_env(&mut self, key: String, value: String) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        let found = match self.env_index.find(env, &key) {
            Some(found) => found,
            None => {
                self.env_index.rebuild(env);
                self.env_index.find(env, &key).flatten()
            }
        };
        match found {
            Some(position) => env[position] = entry,
            None => {
                self.env_index.positions.insert(key, env.len());
                env.push(entry);
                self.env_index.indexed_len = env.len();
            }
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    fn fs(
        &mut self,
        store: &Store,
        scratch: &Path,
    ) -> Result<&LowerFs, crate::rootfs::RootfsError> {
        let fs = self
            .fs
            .get_or_insert_with(|| LowerFs::with_scratch_dir(scratch));
        for pending in self.pending.drain(..) {
            match pending {
                PendingFs::Blob(layer) => fs.push_layer_blob(store, &layer)?,
                PendingFs::Diff(diff) => fs.push_diff(&diff)?,
            }
        }
        Ok(fs)
    }

    fn push_diff(&mut self, diff: Diff) -> Result<(), crate::rootfs::RootfsError> {
        match &mut self.fs {
            Some(fs) if self.pending.is_empty() => fs.push_diff(&diff),
            _ => {
                self.pending.push(PendingFs::Diff(Box::new(diff)));
                Ok(())
            }
        }
    }
}

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

pub(super) struct Executor<'a> {
    options: &'a BuildOptions,
    plan: &'a Plan,
    store: &'a Store,
    cache: &'a StepCache,
    reporter: &'a dyn Reporter,
    context: Option<Context>,
    stages: BTreeMap<usize, StageState>,
    scratch: super::scratch::BuildScratch,
    dockerfile_name: String,
    current_stage: usize,
    materials: Vec<Material>,
    bases: Vec<BaseRecord>,
    context_layers: Vec<crate::digest::Digest>,
    cached: usize,
    built: usize,
    /// The rootfs the last sandboxed RUN left: (stage, its layers' diffIDs then, the rootfs).
    live_rootfs: Option<(
        usize,
        Vec<crate::digest::Digest>,
        crate::sandbox::LiveRootfs,
    )>,
}

/// Wraps a failure of one instruction with its line and text.
struct StepFailure<'p> {
    dockerfile: &'p str,
    planned: &'p PlannedInstruction,
}

impl StepFailure<'_> {
    fn msg(&self, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            dockerfile: self.dockerfile.to_owned(),
            line: self.planned.line,
            instruction: self.planned.text.clone(),
            message: message.into(),
            source: None,
        }
    }

    fn err<E: std::error::Error + Send + Sync + 'static>(
        &self,
        message: &str,
    ) -> impl FnOnce(E) -> BuildError + '_ {
        let message = message.to_owned();
        move |source| BuildError::Step {
            dockerfile: self.dockerfile.to_owned(),
            line: self.planned.line,
            instruction: self.planned.text.clone(),
            message,
            source: Some(Box::new(source)),
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
    pub fn context_digest(&self) -> Option<crate::digest::Digest> {
        if self.context_layers.is_empty() {
            return None;
        }
        let joined: Vec<String> = self.context_layers.iter().map(|d| d.to_string()).collect();
        Some(crate::digest::Digest::of(joined.join("\n").as_bytes()))
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

    fn write_options(&self) -> WriteOptions {
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

    fn start_stage(&mut self, index: usize) -> Result<StageState, BuildError> {
        let stage = &self.plan.stages[index];
        let failure_planned = PlannedInstruction {
            instruction: Instruction::Workdir(String::new()),
            line: stage.line,
            text: format!("FROM {}", stage.base_text),
        };
        let failure = StepFailure {
            dockerfile: &self.dockerfile_name,
            planned: &failure_planned,
        };
        let platform = match &stage.platform {
            Some(text) => Some(
                text.parse::<Platform>()
                    .map_err(failure.err("invalid --platform"))?,
            ),
            None => self.options.platform.clone(),
        };
        let epoch_time = rfc3339(self.options.source_date_epoch);
        let mut state = match &stage.base {
            BaseRef::Scratch => scratch_state(platform.clone().unwrap_or_else(Platform::host)),
            BaseRef::Context(name) => {
                // `FROM NAME` of a `--build-context NAME=DIR`: the directory's files (its
                // .dockerignore applied) as the stage's one layer, on an empty config.
                let dir = match self.options.named_contexts.get(name) {
                    Some(NamedContext::Dir(dir)) => dir.clone(),
                    _ => return Err(failure.msg(format!("no build context `{name}`"))),
                };
                let context = Context::open(&dir, None)
                    .map_err(failure.err("failed to read the named build context"))?;
                let mut state = scratch_state(platform.clone().unwrap_or_else(Platform::host));
                let scratch = self.scratch.dir.path().to_owned();
                let target = state
                    .fs(self.store, &scratch)
                    .map_err(failure.err("failed to read the stage's filesystem"))?;
                let request = CopyRequest {
                    sources: &[".".to_owned()],
                    dest: "/",
                    workdir: "/",
                    from: CopySource::Context(&context),
                    target,
                    chown: None,
                    chmod: None,
                    link: false,
                    add: AddMode::Copy,
                    scratch_dir: &scratch,
                };
                let diff = copy_step::copy(&request)
                    .map_err(|e| failure.msg(error_chain(&e)))?
                    .diff;
                let dockerfile_name = self.dockerfile_name.clone();
                let failure = StepFailure {
                    dockerfile: &dockerfile_name,
                    planned: &failure_planned,
                };
                self.commit_layer(
                    &mut state,
                    diff,
                    &format!("FROM {name} (build context)"),
                    &failure,
                )?;
                state
            }
            BaseRef::Stage(parent) => {
                let mut state = self
                    .stages
                    .get(parent)
                    .cloned()
                    .ok_or_else(|| failure.msg(format!("stage {parent} was not built")))?;
                state.args.clear();
                state.cmd_set = false;
                state.base_layers = state.layers.len();
                state
            }
            BaseRef::OciLayout { .. } | BaseRef::OciArchive { .. } => {
                let wanted = platform.clone().unwrap_or_else(Platform::host);
                let base = match &stage.base {
                    BaseRef::OciLayout { dir, reference } => crate::image::base::load_oci_layout(
                        self.store,
                        Path::new(dir),
                        reference.as_deref(),
                        &wanted,
                    ),
                    BaseRef::OciArchive { file, reference } => {
                        crate::image::base::load_oci_archive(
                            self.store,
                            Path::new(file),
                            reference.as_deref(),
                            &wanted,
                        )
                    }
                    _ => unreachable!("matched above"),
                }
                .map_err(failure.err("failed to load the base image"))?;
                self.start_from_base(&stage.base_text, base)
            }
            BaseRef::Registry(text) => {
                let wanted = platform.clone().unwrap_or_else(Platform::host);
                let reference: crate::registry::Reference = text
                    .parse()
                    .map_err(failure.err("invalid base image reference"))?;
                let pulled =
                    crate::registry::pull(&reference, &wanted, self.store, &self.options.registry)
                        .map_err(failure.err("failed to pull the base image"))?;
                self.start_from_base(&stage.base_text, pulled.into())
            }
        };
        // A base whose history does not account for every layer (some tools write none) gets
        // entries prepended, as BuildKit does, so the result keeps one per layer.
        let layered = state
            .config
            .history
            .iter()
            .filter(|h| h.empty_layer != Some(true))
            .count();
        if layered < state.layers.len() {
            let missing = state.layers.len() - layered;
            state
                .config
                .history
                .splice(0..0, std::iter::repeat_n(History::default(), missing));
        }
        if let Some(platform) = platform {
            state.config.architecture = platform.architecture;
            state.config.os = platform.os;
            state.config.variant = platform.variant;
        }
        state.config.created = Some(epoch_time);
        Ok(state)
    }

    /// A stage's initial state from a loaded base image, recorded for provenance.
    fn start_from_base(
        &mut self,
        written: &str,
        base: crate::image::base::BaseImage,
    ) -> StageState {
        self.bases.push(BaseRecord {
            reference: written.to_owned(),
            source: base.source.clone(),
            digest: base.manifest_digest.clone(),
        });
        self.reporter
            .note(&format!("base {written} resolved to {}", base.source));
        let shell = base
            .config
            .config
            .shell
            .clone()
            .unwrap_or_else(default_shell);
        StageState {
            pending: base.layers.iter().cloned().map(PendingFs::Blob).collect(),
            base_layers: base.layers.len(),
            layers: base.layers,
            config: base.config,
            fs: None,
            args: BTreeMap::new(),
            cmd_set: false,
            shell,
            env_index: EnvIndex::default(),
        }
    }

    fn dispatch(
        &mut self,
        state: &mut StageState,
        planned: &PlannedInstruction,
        stage_name: &str,
        position: usize,
        total: usize,
    ) -> Result<(), BuildError> {
        let started = Instant::now();
        self.reporter
            .step_started(stage_name, position, total, &planned.text);
        let dockerfile_name = self.dockerfile_name.clone();
        let failure = StepFailure {
            dockerfile: &dockerfile_name,
            planned,
        };
        let escape = self.plan.escape;
        let expand = |state: &StageState, word: &str| -> Result<String, BuildError> {
            shell::expand_word(word, &|name| state.lookup(name), escape)
                .map_err(|e| failure.msg(e.to_string()))
        };
        let mut history_text = planned.text.clone();
        let mut outcome = StepOutcome::ConfigOnly;
        match &planned.instruction {
            Instruction::Arg(words) => {
                for (name, default) in words {
                    let value = match self.options.build_args.get(name) {
                        Some(given) => Some(given.clone()),
                        None => match default {
                            Some(raw) => Some(expand(state, raw)?),
                            None => self
                                .plan
                                .global_args
                                .get(name)
                                .cloned()
                                .flatten()
                                .or_else(|| {
                                    super::platform_args(&Platform::host())
                                        .get(name)
                                        .cloned()
                                        .filter(|_| name.starts_with("BUILD"))
                                })
                                .or_else(|| self.target_platform_arg(state, name)),
                        },
                    };
                    state.args.insert(name.clone(), value);
                }
            }
            Instruction::Env(pairs) => {
                // Every pair is expanded against the state before the instruction, as
                // BuildKit does: `ENV a=two b=$a` gives `b` the earlier `a`.
                let pairs = expand_pairs(pairs, "ENV", &|word| expand(state, word), &failure)?;
                history_text = pairs_history("ENV", &pairs);
                for (key, value) in pairs {
                    state.set_env(key, value);
                }
            }
            Instruction::Label(pairs) => {
                let pairs = expand_pairs(pairs, "LABEL", &|word| expand(state, word), &failure)?;
                history_text = pairs_history("LABEL", &pairs);
                let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(pairs);
            }
            Instruction::Maintainer(name) => state.config.author = Some(name.clone()),
            Instruction::User(user) => {
                let user = expand(state, user)?;
                history_text = format!("USER {user}");
                state.config.config.user = Some(user);
            }
            Instruction::Workdir(raw) => {
                let dir = expand(state, raw)?;
                let absolute = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{}", state.workdir().trim_end_matches('/'), dir)
                };
                let path =
                    LayerPath::new_clamped(&absolute).map_err(failure.err("invalid WORKDIR"))?;
                state.config.config.working_dir = Some(path.absolute());
                history_text = format!("WORKDIR {}", path.absolute());
                let diff = self
                    .workdir_diff(state, &path)
                    .map_err(|e| failure.msg(e))?;
                if !diff.is_empty() {
                    outcome = self.commit_layer(state, diff, &history_text, &failure)?;
                }
            }
            Instruction::Expose(words) => {
                let mut shown = Vec::new();
                for word in words {
                    let word = expand(state, word)?;
                    shown.extend(expand_port_spec(&word).map_err(|e| failure.msg(e))?);
                }
                let ports = state
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for port in &shown {
                    ports.insert(port.clone(), EmptyObject {});
                }
                history_text = format!("EXPOSE {}", shown.join(" "));
            }
            Instruction::Cmd(command) => {
                state.config.config.cmd = Some(command_words(command, &state.shell));
                state.cmd_set = true;
            }
            Instruction::Entrypoint(command) => {
                let words = command_words(command, &state.shell);
                state.config.config.entrypoint = if words.is_empty() { None } else { Some(words) };
                if !state.cmd_set {
                    state.config.config.cmd = None;
                }
            }
            Instruction::Shell(words) => {
                state.shell = words.clone();
                state.config.config.shell = Some(words.clone());
            }
            Instruction::StopSignal(signal) => {
                let signal = expand(state, signal)?;
                validate_signal(&signal).map_err(|e| failure.msg(e))?;
                state.config.config.stop_signal = Some(signal);
            }
            Instruction::Healthcheck(check) => {
                state.config.config.healthcheck =
                    Some(healthcheck_config(check, &state.shell).map_err(|e| failure.msg(e))?);
            }
            Instruction::Volume(words) => {
                let mut expanded = Vec::new();
                for word in words {
                    let word = expand(state, word)?;
                    if word.trim().is_empty() {
                        return Err(failure.msg("VOLUME specified can not be an empty string"));
                    }
                    expanded.push(word);
                }
                let volumes = state
                    .config
                    .config
                    .volumes
                    .get_or_insert_with(BTreeMap::new);
                for word in expanded {
                    volumes.insert(word, EmptyObject {});
                }
            }
            Instruction::Onbuild(trigger) => {
                state
                    .config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.clone());
            }
            Instruction::Copy(copy) => {
                let diff = self.copy_diff(state, copy, &failure)?;
                outcome = self.commit_layer(state, diff, &history_text, &failure)?;
                // What the build read from the context, for provenance: each such layer by
                // its diffID, and a pinned ADD by the checksum it was verified against.
                if copy.from.is_none()
                    && copy.heredocs.is_empty()
                    && let Some(layer) = state.layers.last()
                {
                    self.context_layers.push(layer.diff_id.clone());
                }
                if let Some(checksum) = &copy.checksum
                    && let Some(hex) = checksum.strip_prefix("sha256:")
                {
                    self.materials.push(Material {
                        uri: format!("context:{}", copy.sources.join(" ")),
                        sha256: hex.to_owned(),
                    });
                }
            }
            Instruction::Run(run) => {
                if self.needs_sandbox(state, run, &failure)? {
                    outcome = self.sandboxed_run(state, run, &history_text, &failure)?;
                } else {
                    match self.run_diff(state, run, &failure)? {
                        Ok(diff) => {
                            if !diff.is_empty() {
                                outcome =
                                    self.commit_layer(state, diff, &history_text, &failure)?;
                            }
                        }
                        // Native would not be exact: the real tool runs, and the output says so.
                        Err(why) => {
                            self.reporter.note(&why);
                            outcome = self.sandboxed_run(state, run, &history_text, &failure)?;
                        }
                    }
                }
            }
        }
        if outcome == StepOutcome::ConfigOnly {
            state.config.history.push(History {
                created: Some(rfc3339(self.options.source_date_epoch)),
                created_by: Some(history_text),
                comment: Some("kiln".to_owned()),
                empty_layer: Some(true),
            });
        }
        self.reporter.step_finished(outcome, started.elapsed());
        Ok(())
    }

    fn target_platform_arg(&self, state: &StageState, name: &str) -> Option<String> {
        if !name.starts_with("TARGET") {
            return None;
        }
        let platform = Platform::new(
            &state.config.os,
            &state.config.architecture,
            state.config.variant.as_deref(),
        );
        super::platform_args(&platform).get(name).cloned()
    }

    /// The directories WORKDIR must create: the path and its missing ancestors, owned by the
    /// stage's USER as BuildKit creates them.
    fn workdir_diff(&self, state: &mut StageState, path: &LayerPath) -> Result<Diff, String> {
        let mut diff = Diff::new();
        if path.is_root() {
            return Ok(diff);
        }
        let user = state.config.config.user.clone().filter(|u| !u.is_empty());
        let fs = state
            .fs(self.store, self.scratch.dir.path())
            .map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for candidate in path.ancestors().into_iter().chain([path.clone()]) {
            match fs.stat(&candidate, true).map_err(|e| e.to_string())? {
                Some((_, node)) if node.kind == NodeKind::Dir => {}
                Some((resolved, _)) => {
                    return Err(format!(
                        "cannot create WORKDIR: `{}` exists and is not a directory",
                        resolved.absolute()
                    ));
                }
                None => missing.push(candidate),
            }
        }
        if missing.is_empty() {
            return Ok(diff);
        }
        let (uid, gid) = match &user {
            Some(user) => match copy_step::parse_chown(user, fs) {
                Ok(owner) => (owner.uid, owner.gid),
                // BuildKit creates the directories as root when the USER's name (or group)
                // is not in the stage's passwd (or group) file, or the file is missing.
                Err(
                    copy_step::CopyError::UnknownUser { .. }
                    | copy_step::CopyError::UnknownGroup { .. },
                ) => (0, 0),
                Err(e) => return Err(format!("cannot create WORKDIR as USER `{user}`: {e}")),
            },
            None => (0, 0),
        };
        for dir in missing {
            let resolved = fs.resolve(&dir, true).map_err(|e| e.to_string())?;
            let mut meta = Metadata::root_owned(0o755);
            meta.uid = uid;
            meta.gid = gid;
            diff.insert(
                resolved,
                Entry {
                    kind: EntryKind::Dir,
                    meta,
                },
            );
        }
        Ok(diff)
    }

    fn context(&mut self) -> Result<&Context, crate::context::ContextError> {
        if self.context.is_none() {
            let ignore_file = self
                .options
                .dockerfile
                .with_file_name(format!("{}.dockerignore", self.dockerfile_name));
            let ignore = ignore_file.is_file().then_some(ignore_file);
            self.context = Some(Context::open(&self.options.context_dir, ignore.as_deref())?);
        }
        Ok(self.context.as_ref().expect("just set"))
    }

    fn copy_diff(
        &mut self,
        state: &mut StageState,
        copy: &CopyInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Diff, BuildError> {
        let escape = self.plan.escape;
        let expand = |state: &StageState, word: &str| -> Result<String, BuildError> {
            shell::expand_word(word, &|name| state.lookup(name), escape)
                .map_err(|e| failure.msg(e.to_string()))
        };
        if copy.parents {
            return Err(failure.msg("--parents is not supported yet"));
        }
        if !copy.excludes.is_empty() {
            return Err(failure.msg("--exclude is not supported yet"));
        }
        let mut sources = Vec::new();
        for source in &copy.sources {
            sources.push(expand(state, source)?);
        }
        let dest = expand(state, &copy.dest)?;
        let chown = copy
            .chown
            .as_deref()
            .map(|c| expand(state, c))
            .transpose()?;
        let chmod = copy
            .chmod
            .as_deref()
            .map(|c| expand(state, c))
            .transpose()?;
        let checksum = copy
            .checksum
            .as_deref()
            .map(|c| expand(state, c))
            .transpose()?;
        let from = copy.from.as_deref().map(|f| expand(state, f)).transpose()?;

        // Heredoc sources become files in a private context of their own.
        let heredoc_names: Vec<&str> = sources
            .iter()
            .filter_map(|s| {
                s.strip_prefix("<<").map(|n| {
                    n.trim_start_matches('-')
                        .trim_matches(|c| c == '"' || c == '\'')
                })
            })
            .collect();
        let heredoc_context = if heredoc_names.is_empty() {
            None
        } else {
            if heredoc_names.len() != sources.len() || from.is_some() {
                return Err(
                    failure.msg("a COPY with heredocs may not also copy files or use --from")
                );
            }
            let mut files = Vec::new();
            for name in &heredoc_names {
                if name.is_empty() || name.contains('/') || *name == "." || *name == ".." {
                    return Err(failure.msg(format!("invalid heredoc name `{name}`")));
                }
                let heredoc = copy
                    .heredocs
                    .iter()
                    .find(|h| h.name == *name)
                    .ok_or_else(|| failure.msg(format!("heredoc `{name}` has no body")))?;
                let content = if heredoc.expand {
                    expand_heredoc(&heredoc.content, state, escape).map_err(|e| failure.msg(e))?
                } else {
                    heredoc.content.clone()
                };
                files.push((name.to_string(), content));
            }
            // Heredoc files live in the cache under a name derived from their content, so the
            // same heredoc is the same file (same metadata) in the next build: a cache hit.
            let mut key = crate::digest::Hasher::new();
            for (name, content) in &files {
                for part in [name.as_bytes(), content.as_bytes()] {
                    key.update(&(part.len() as u64).to_le_bytes());
                    key.update(part);
                }
            }
            let heredocs_root = self.options.cache_dir.join("heredocs");
            let dir = heredocs_root.join(key.finish().0.hex());
            if !dir.is_dir() {
                std::fs::create_dir_all(&heredocs_root)
                    .map_err(failure.err("failed to create the heredoc directory"))?;
                let temp = tempfile::Builder::new()
                    .prefix(".tmp-")
                    .tempdir_in(&heredocs_root)
                    .map_err(failure.err("failed to create a heredoc directory"))?;
                for (name, content) in &files {
                    std::fs::write(temp.path().join(name), content)
                        .map_err(failure.err("failed to write a heredoc file"))?;
                }
                let temp = temp.keep();
                if std::fs::rename(&temp, &dir).is_err() {
                    // Another build put the same files there first.
                    let _ = std::fs::remove_dir_all(&temp);
                }
            }
            let names = files.into_iter().map(|(name, _)| name).collect::<Vec<_>>();
            Some((dir, names))
        };

        let workdir = state.workdir();
        let scratch = self.scratch.dir.path().to_owned();
        // `--from=` an earlier stage, else a `--build-context` of that name: a directory (read
        // like the context) or an image in an OCI layout (read like a stage).
        let mut named_dir = None;
        let mut named_image = None;
        let from_stage = match &from {
            None => None,
            Some(reference) => match self.plan.stage_by_reference(reference, self.current_stage) {
                Some(index) => Some(index),
                None => match self.options.named_contexts.get(reference) {
                    Some(NamedContext::Dir(dir)) => {
                        named_dir = Some(
                            Context::open(dir, None)
                                .map_err(failure.err("failed to read the named build context"))?,
                        );
                        None
                    }
                    Some(NamedContext::OciLayout { dir, reference }) => {
                        let wanted = Platform {
                            architecture: state.config.architecture.clone(),
                            os: state.config.os.clone(),
                            variant: state.config.variant.clone(),
                            ..Platform::host()
                        };
                        let base = crate::image::base::load_oci_layout(
                            self.store,
                            Path::new(dir),
                            reference.as_deref(),
                            &wanted,
                        )
                        .map_err(failure.err("failed to load the named build context's image"))?;
                        named_image = Some(self.start_from_base(&format!("oci:{dir}"), base));
                        None
                    }
                    None => {
                        return Err(failure.msg(format!(
                            "COPY --from=`{reference}` names no earlier stage and no \
                             --build-context; copying from a registry image is not supported yet"
                        )));
                    }
                },
            },
        };
        let mut from_state = match from_stage {
            Some(index) => Some(self.stages.get(&index).cloned().ok_or_else(|| {
                failure.msg(format!("stage {index} was not built before this COPY"))
            })?),
            None => named_image,
        };
        let store = self.store;
        let heredoc_ctx_owned = match &heredoc_context {
            Some((dir, _)) => Some(
                Context::open(dir, None)
                    .map_err(failure.err("failed to read the heredoc files"))?,
            ),
            None => named_dir,
        };
        if heredoc_ctx_owned.is_none() && from_state.is_none() {
            self.context()
                .map_err(failure.err("failed to open the build context"))?;
        }
        let from_fs = match from_state.as_mut() {
            Some(from_state) => Some(
                from_state
                    .fs(store, &scratch)
                    .map_err(failure.err("failed to read the source stage"))?
                    .clone(),
            ),
            None => None,
        };
        let target_fs = state
            .fs(store, &scratch)
            .map_err(failure.err("failed to read the stage's filesystem"))?;
        let source = match (&heredoc_ctx_owned, &from_fs) {
            (Some(ctx), _) => CopySource::Context(ctx),
            (None, Some(fs)) => CopySource::Stage(fs),
            (None, None) => CopySource::Context(self.context.as_ref().expect("opened above")),
        };
        let sources = match &heredoc_context {
            Some((_, names)) => names.clone(),
            None => sources,
        };
        let request = CopyRequest {
            sources: &sources,
            dest: &dest,
            workdir: &workdir,
            from: source,
            target: target_fs,
            chown: chown.as_deref(),
            chmod: chmod.as_deref(),
            link: copy.link,
            add: if copy.is_add {
                AddMode::Add {
                    checksum: checksum.as_deref(),
                }
            } else {
                AddMode::Copy
            },
            scratch_dir: &scratch,
        };
        let output = copy_step::copy(&request).map_err(|e| failure.msg(error_chain(&e)))?;
        Ok(output.diff)
    }

    /// A RUN made only of commands kiln computes natively becomes one Diff, as Docker would
    /// have made one layer of it ([`Executor::needs_sandbox`] sends every other RUN to the
    /// sandbox). `Ok(Err(message))` when the image shows that a native step would not be
    /// exact (a virtualenv's pip, an sdist to build, ...): the RUN then runs in the sandbox and
    /// the message says why.
    fn run_diff(
        &mut self,
        state: &mut StageState,
        run: &RunInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Result<Diff, String>, BuildError> {
        let CommandLine::Shell(script) = &run.command else {
            return Err(failure.msg("an exec-form RUN runs in the sandbox"));
        };
        let commands = run_step::recognize(script, &|name| state.lookup(name))
            .map_err(|e| failure.msg(e.to_string()))?;
        let user = state.config.config.user.clone().unwrap_or_default();
        let runs_as_root = matches!(user.as_str(), "" | "root" | "0" | "0:0" | "root:root");
        if let Some(command) = commands.iter().find(|c| {
            !runs_as_root && !matches!(c, NativeCommand::Pip { .. } | NativeCommand::Noop { .. })
        }) {
            return Err(failure.msg(format!(
                "`{}` needs root, but this RUN runs as USER `{user}`",
                describe_native(command)
            )));
        }
        let platform = Platform::new(
            &state.config.os,
            &state.config.architecture,
            state.config.variant.as_deref(),
        );
        let workdir = state.workdir();
        let run_env = state.environment();
        let apk_options = crate::apk::ApkOptions {
            repositories: self.options.apk_repositories_override.clone(),
            extra_repositories: self.options.apk_repositories.clone(),
            cache_dir: Some(self.options.cache_dir.join("apk")),
            offline: self.options.offline,
            source_date_epoch: self.options.source_date_epoch,
            ..crate::apk::ApkOptions::default()
        };
        let options = UsersOptions {
            source_date_epoch: self.options.source_date_epoch,
            shell_env: state.env_value("SHELL"),
        };
        let fs = state
            .fs(self.store, self.scratch.dir.path())
            .map_err(failure.err("failed to read the stage's filesystem"))?;
        // Each command sees the effects of the ones before it, as in the shell; consecutive apk
        // commands run as one transaction, as `apk update && apk upgrade` does.
        let mut overlay = Overlay::new(fs);
        let mut rest = commands.as_slice();
        while let Some(command) = rest.first() {
            let diff = if is_apk(command) {
                let count = rest.iter().take_while(|c| is_apk(c)).count();
                let (apk_commands, after) = rest.split_at(count);
                rest = after;
                let outcome = crate::apk::run(apk_commands, &overlay, &apk_options)
                    .map_err(|e| failure.msg(error_chain(&e)))?;
                for warning in &outcome.warnings {
                    self.reporter.note(&format!("warning: {warning}"));
                }
                self.materials
                    .extend(outcome.materials.iter().map(|m| Material {
                        uri: m.uri.clone(),
                        sha256: m.sha256.clone(),
                    }));
                outcome.diff
            } else if let NativeCommand::Pip { launcher, args } = command {
                rest = &rest[1..];
                let env = |name: &str| run_env.get(name).cloned();
                let request = PipRequest {
                    fs: &overlay,
                    workdir: &workdir,
                    user: &user,
                    env: &env,
                    platform: &platform,
                    source_date_epoch: self.options.source_date_epoch,
                    scratch_dir: self.scratch.dir.path(),
                    cache_dir: &self.options.cache_dir.join("pip"),
                    offline: self.options.offline,
                };
                let in_sandbox = |why: String| {
                    Ok(Err(format!(
                        "RUN {}: runs pip in the sandbox: {why}",
                        script.trim()
                    )))
                };
                if let Some(why) = crate::steps::pip::sandbox_reason(launcher, &request)
                    .map_err(|e| failure.msg(error_chain(&e)))?
                {
                    return in_sandbox(why);
                }
                let outcome = match pip_install(args, &request) {
                    Ok(outcome) => outcome,
                    Err(e) => match e.sandbox_reason() {
                        Some(why) => return in_sandbox(why),
                        None => return Err(failure.msg(error_chain(&e))),
                    },
                };
                self.materials
                    .extend(outcome.materials.iter().map(|m| Material {
                        uri: m.uri.clone(),
                        sha256: m.sha256.clone(),
                    }));
                outcome.diff
            } else {
                rest = &rest[1..];
                match command {
                    NativeCommand::RemoveCache { paths } => {
                        remove_paths(&overlay, paths).map_err(|e| failure.msg(e.to_string()))?
                    }
                    other => users::apply(other, &overlay, &options)
                        .map_err(|e| failure.msg(error_chain(&e)))?,
                }
            };
            overlay.apply(diff);
        }
        Ok(Ok(overlay.into_diff()))
    }

    /// True when a file of `diff` was extracted from a stored layer into this build's scratch
    /// directory.
    fn reads_extracted(&self, diff: &Diff) -> bool {
        let scratch = self.scratch.dir.path();
        diff.iter().any(|(_, entry)| {
            matches!(&entry.kind, EntryKind::File(crate::layer::FileContent::HostFile { path, .. }) if path.starts_with(scratch))
        })
    }

    fn commit_layer(
        &mut self,
        state: &mut StageState,
        diff: Diff,
        history_text: &str,
        failure: &StepFailure<'_>,
    ) -> Result<StepOutcome, BuildError> {
        let options = self.write_options();
        let stat_key = self
            .cache
            .stat_key(&diff, &options)
            .map_err(failure.err("failed to read the step's inputs"))?;
        let (cached, by_content) = if self.options.no_cache {
            (None, false)
        } else {
            match self.cache.lookup(&stat_key, self.store) {
                Some(layer) => (Some(layer), false),
                // Seen files with new stats (a fresh checkout, a touch), or files extracted
                // from stored layers (COPY --from a stage: new scratch paths every build): the
                // content may be the same, and one pass without compression is cheaper than
                // compressing it again.
                None if self.cache.seen_before(&diff) || self.reads_extracted(&diff) => (
                    self.cache
                        .lookup_content(&diff, &options, self.store)
                        .map_err(failure.err("failed to read the step's inputs"))?,
                    true,
                ),
                None => (None, false),
            }
        };
        let (layer, outcome) = match cached {
            Some(layer) => {
                if by_content && !self.reads_extracted(&diff) {
                    // Remember the new stats, so the next build hits without a content pass
                    // (scratch paths are new every build: nothing to remember).
                    self.cache
                        .record(&stat_key, &diff, &layer, &options)
                        .map_err(failure.err("failed to record the layer in the step cache"))?;
                }
                self.cached += 1;
                (layer, StepOutcome::Cached)
            }
            None => {
                self.reporter
                    .note(&format!("writing layer: {}", describe_diff(&diff)));
                let layer = layer::write(&diff, self.store, &options)
                    .map_err(failure.err("failed to write the layer"))?;
                self.cache
                    .record(&stat_key, &diff, &layer, &options)
                    .map_err(failure.err("failed to record the layer in the step cache"))?;
                self.built += 1;
                (layer, StepOutcome::Built)
            }
        };
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
        state.layers.push(layer);
        state.config.history.push(History {
            created: Some(rfc3339(self.options.source_date_epoch)),
            created_by: Some(history_text.to_owned()),
            comment: Some("kiln".to_owned()),
            empty_layer: None,
        });
        state
            .push_diff(diff)
            .map_err(failure.err("failed to apply the layer to the stage's filesystem"))?;
        Ok(outcome)
    }
}

/// An error and its causes on one line (`a: b: c`), for messages that carry no source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        cause = next.source();
    }
    text
}

fn is_apk(command: &NativeCommand) -> bool {
    matches!(
        command,
        NativeCommand::ApkUpdate
            | NativeCommand::ApkUpgrade { .. }
            | NativeCommand::ApkAdd { .. }
            | NativeCommand::ApkDel { .. }
    )
}

/// Whiteouts for `rm -rf PATH...` (a trailing `/*` removes a directory's contents).
fn remove_paths(view: &dyn FsView, paths: &[String]) -> Result<Diff, crate::rootfs::ViewError> {
    let mut diff = Diff::new();
    for raw in paths {
        let (dir, contents_only) = match raw.strip_suffix("/*") {
            Some(dir) => (dir, true),
            None => (raw.as_str(), false),
        };
        let Ok(path) = LayerPath::new_clamped(dir) else {
            continue;
        };
        let Some((resolved, node)) = view.stat(&path, contents_only)? else {
            continue;
        };
        if !contents_only {
            diff.whiteout(resolved);
        } else if node.kind == NodeKind::Dir {
            for name in view.read_dir(&resolved)? {
                if let Ok(child) = resolved.join(&name) {
                    diff.whiteout(child);
                }
            }
        }
    }
    Ok(diff)
}

/// A recognized command as the user wrote it, for messages.
fn describe_native(command: &NativeCommand) -> String {
    match command {
        NativeCommand::ApkUpdate => "apk update".to_owned(),
        NativeCommand::ApkUpgrade { .. } => "apk upgrade".to_owned(),
        NativeCommand::ApkAdd { packages, .. } => format!(
            "apk add {}",
            packages
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        NativeCommand::ApkDel { packages, .. } => format!("apk del {}", packages.join(" ")),
        NativeCommand::Pip { launcher, args } => {
            let module = if launcher
                .rsplit('/')
                .next()
                .unwrap_or(launcher)
                .starts_with("python")
            {
                " -m pip"
            } else {
                ""
            };
            format!("{launcher}{module} install {}", args.join(" "))
        }
        other => format!("{other:?}"),
    }
}

/// ENV's or LABEL's pairs, each key and value expanded by `expand` (against one state, the
/// one before the instruction); a key that expands to nothing is refused.
fn expand_pairs(
    pairs: &[(String, String)],
    what: &str,
    expand: &dyn Fn(&str) -> Result<String, BuildError>,
    failure: &StepFailure<'_>,
) -> Result<Vec<(String, String)>, BuildError> {
    let mut expanded = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let key = expand(key)?;
        let value = expand(value)?;
        if key.is_empty() {
            return Err(failure.msg(format!("{what} names can not be blank")));
        }
        expanded.push((key, value));
    }
    Ok(expanded)
}

/// The history text of an ENV or LABEL: its expanded pairs as `key=value`.
fn pairs_history(what: &str, pairs: &[(String, String)]) -> String {
    let mut text = what.to_owned();
    for (key, value) in pairs {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(value);
    }
    text
}

fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned()]
}

fn command_words(command: &CommandLine, shell: &[String]) -> Vec<String> {
    match command {
        CommandLine::Exec(words) => words.clone(),
        CommandLine::Shell(text) => {
            let mut words = shell.to_vec();
            words.push(text.clone());
            words
        }
    }
}

fn expand_heredoc(content: &str, state: &StageState, escape: char) -> Result<String, String> {
    // Heredoc bodies expand variables line by line but keep quotes, as a shell heredoc does.
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let protected = body.replace('\'', "\u{1}").replace('"', "\u{2}");
        let expanded = shell::expand_word(&protected, &|name| state.lookup(name), escape)
            .map_err(|e| e.to_string())?;
        out.push_str(&expanded.replace('\u{1}', "'").replace('\u{2}', "\""));
        out.push_str(newline);
    }
    Ok(out)
}

/// Docker's EXPOSE: `80`, `80/tcp`, `53/UDP`, `8000-8002` (one entry per port).
fn expand_port_spec(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_lowercase()),
        None => (word, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto `{proto}` in EXPOSE `{word}`"));
    }
    let parse = |p: &str| -> Result<u32, String> {
        p.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .ok_or_else(|| format!("invalid port `{p}` in EXPOSE `{word}`"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if end < start {
        return Err(format!("invalid port range `{ports}` in EXPOSE `{word}`"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn validate_signal(signal: &str) -> Result<(), String> {
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
    ];
    if signal.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
}

/// Go's `time.ParseDuration` for the units HEALTHCHECK uses, in nanoseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration `{text}` (use units like 30s, 1m30s, 500ms)");
    if text == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as i64)
}

fn healthcheck_config(
    check: &HealthcheckInstruction,
    shell: &[String],
) -> Result<Healthcheck, String> {
    let _ = shell;
    match check {
        HealthcheckInstruction::None => Ok(Healthcheck {
            test: Some(vec!["NONE".to_owned()]),
            ..Healthcheck::default()
        }),
        HealthcheckInstruction::Cmd { command, options } => {
            let test = match command {
                CommandLine::Exec(words) => {
                    let mut test = vec!["CMD".to_owned()];
                    test.extend(words.iter().cloned());
                    test
                }
                CommandLine::Shell(text) => vec!["CMD-SHELL".to_owned(), text.clone()],
            };
            let mut config = Healthcheck {
                test: Some(test),
                ..Healthcheck::default()
            };
            for (name, value) in options {
                match name.as_str() {
                    "retries" => {
                        let retries: i64 = value.parse().map_err(|_| {
                            format!("invalid --retries `{value}`: expected an integer")
                        })?;
                        if retries < 0 {
                            return Err("--retries cannot be negative".to_owned());
                        }
                        config.retries = Some(retries).filter(|r| *r != 0);
                    }
                    duration_flag => {
                        let nanos = parse_duration(value)?;
                        if nanos != 0 && nanos < 1_000_000 {
                            return Err(format!("--{duration_flag} cannot be less than 1ms"));
                        }
                        let slot = match duration_flag {
                            "interval" => &mut config.interval,
                            "timeout" => &mut config.timeout,
                            "start-period" => &mut config.start_period,
                            _ => &mut config.start_interval,
                        };
                        *slot = Some(nanos).filter(|n| *n != 0);
                    }
                }
            }
            Ok(config)
        }
    }
}

/// A stage's state on `FROM scratch` (or a directory context): no layers, Docker's default
/// PATH, the platform's os and architecture.
fn scratch_state(platform: Platform) -> StageState {
    StageState {
        config: ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: RuntimeConfig {
                env: Some(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                ]),
                ..RuntimeConfig::default()
            },
            ..ImageConfig::default()
        },
        layers: Vec::new(),
        base_layers: 0,
        fs: None,
        pending: Vec::new(),
        args: BTreeMap::new(),
        cmd_set: false,
        shell: default_shell(),
        env_index: EnvIndex::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_expand_like_docker() {
        assert_eq!(expand_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expand_port_spec("http").is_err());
        assert!(expand_port_spec("80/icmp").is_err());
    }

    #[test]
    fn durations_follow_go() {
        for (text, nanos) in [
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("0", 0),
            ("1.5s", 1_500_000_000),
        ] {
            assert_eq!(parse_duration(text).unwrap(), nanos, "{text}");
        }
        for bad in ["", "5", "3x", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "99"] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
    }
}
