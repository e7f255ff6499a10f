//! RUN in the sandbox: which RUNs go there, their step-cache key, and committing their layer.
//!
//! A RUN goes to the sandbox when kiln cannot compute it natively (an unrecognized command or
//! flag, a users command the image's own tool would do differently, the exec form, a heredoc,
//! `--mount`, `--network`, `--security`) or when it says `--sandbox=always`; for a shell-form
//! RUN kiln could have computed, the build output says why. Its result is cached under a key of
//! everything it can see: the parent layers, the command, environment, working directory, user,
//! network and the identities of its mounts (never a secret's value), since its Diff only exists
//! after it ran. A RUN for another architecture than the build machine's runs its programs
//! through a qemu interpreter the sandbox registers for it ([`sandbox::binfmt`]).

use super::executor::{Executor, StepFailure};
use super::stage::StageState;
use super::{BuildError, StepOutcome};
use crate::context::ContextKind;
use crate::dockerfile::plan::{CommandLine, RunInstruction};
use crate::layer::LayerPath;
use crate::rootfs::{FsView, LowerFs, NodeKind};
use crate::sandbox::{self, NetworkMode, RunRequest, SandboxError};
use crate::steps::copy::{self as copy_step, AddMode, CopyRequest, CopySource};
use crate::steps::run as run_step;
use crate::steps::users;

impl Executor<'_> {
    /// True when `run` must execute in the sandbox. When kiln could have computed a shell-form
    /// RUN but cannot do it exactly, the build output says why (`RUN useradd --foo x: runs in
    /// the sandbox: useradd --foo is not emulated`).
    pub(super) fn needs_sandbox(
        &self,
        state: &mut StageState,
        run: &RunInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<bool, BuildError> {
        match run.sandbox.as_deref() {
            None | Some("auto") => {}
            Some("always") => return Ok(true),
            Some(other) => {
                return Err(failure.msg(format!(
                    "invalid --sandbox=`{other}` (expected always or auto)"
                )));
            }
        }
        if !run.mounts.is_empty()
            || run.network.is_some()
            || run.security.is_some()
            || !run.heredocs.is_empty()
        {
            return Ok(true);
        }
        let CommandLine::Shell(script) = &run.command else {
            return Ok(true);
        };
        let reason = match run_step::recognize(script, &|name| state.lookup(name)) {
            Err(e) => Some(e.sandbox_reason()),
            Ok(commands) => {
                let options = users::UsersOptions {
                    source_date_epoch: self.options.source_date_epoch,
                    shell_env: state.env_value("SHELL"),
                };
                let path_env = state.env_value("PATH");
                let fs = state
                    .fs(self.store, self.scratch.dir.path())
                    .map_err(failure.err("failed to read the stage's filesystem"))?;
                users::sandbox_reason(&commands, fs, path_env.as_deref(), &options)
                    .map_err(failure.wrap())?
            }
        };
        if let Some(reason) = &reason {
            self.reporter.note(&format!(
                "RUN {}: runs in the sandbox: {reason}",
                script.trim()
            ));
        }
        Ok(reason.is_some())
    }

    /// Runs `run` in the sandbox (or takes its layer from the step cache) and adds its layer.
    pub(super) fn sandboxed_run(
        &mut self,
        state: &mut StageState,
        run: &RunInstruction,
        history_text: &str,
        failure: &StepFailure<'_>,
    ) -> Result<StepOutcome, BuildError> {
        let emulation = self.foreign_execution(state, failure)?;
        if let Some(security) = &run.security
            && security != "sandbox"
        {
            return Err(failure.msg(format!(
                "RUN --security={security} is not supported: kiln's sandbox never grants extra \
                 privileges"
            )));
        }
        let network = match run.network.as_deref() {
            None | Some("default") => self.options.sandbox.network,
            Some(text) => text
                .parse::<NetworkMode>()
                .map_err(|e| failure.msg(format!("invalid RUN --network: {e}")))?,
        };
        let escape = self.plan.escape;
        let mut mounts = Vec::new();
        for spec in &run.mounts {
            let expanded = state.expand(spec, escape).map_err(failure.wrap())?;
            mounts.push(sandbox::parse_mount(&expanded).map_err(|e| failure.msg(e))?);
        }
        let mut bind_sources = std::collections::BTreeMap::new();
        let mut bind_keys = Vec::new();
        for (index, mount) in mounts.iter().enumerate() {
            if let sandbox::RunMount::Bind { source, from, .. } = mount {
                let (prepared, key) = self.bind_source(source, from.as_deref(), failure)?;
                bind_sources.insert(index, prepared);
                bind_keys.push(key);
            }
        }
        let argv = self.sandbox_argv(state, run);
        let env = state.environment();
        let workdir = state.workdir();
        let user = state.config.config.user.clone().unwrap_or_default();

        let write_options = self.write_options();
        let key = self.run_key(state, run, network, &mounts, &bind_keys);
        if !self.options.no_cache
            && let Some(result) = self.cache.lookup_result(&key, self.store)
        {
            self.cached += 1;
            self.note_run(state, &key, result.as_ref(), Vec::new());
            return Ok(match result {
                Some(layer) => {
                    self.add_layer(state, layer, None, history_text, failure)?;
                    StepOutcome::Cached
                }
                None => StepOutcome::ConfigOnly,
            });
        }
        if let Some(found) = self.shared_lookup(&key) {
            self.cache
                .record_result(&key, found.layer.as_ref())
                .map_err(failure.err("failed to record the step in the step cache"))?;
            return self.take_shared_run(state, &key, found, history_text, failure);
        }

        if let sandbox::capabilities::SandboxCapability::Unavailable(why) =
            sandbox::capabilities::detect()
        {
            return Err(failure.msg(format!(
                "this RUN needs kiln's sandbox (user and mount namespaces), which this \
                 environment forbids: {why}; {}",
                why.remedies()
            )));
        }
        let fs = state
            .fs(self.store, self.scratch.dir.path())
            .map_err(failure.err("failed to read the stage's filesystem"))?
            .clone();
        let request = RunRequest {
            fs: &fs,
            argv,
            env,
            workdir,
            user,
            network,
            mounts: &mounts,
            secrets: &self.options.sandbox.secrets,
            ssh: &self.options.sandbox.ssh,
            extra_hosts: &self.options.sandbox.extra_hosts,
            bind_sources: &bind_sources,
            scratch_dir: self.scratch.sandbox.path(),
            cache_dir: &self.options.cache_dir.join("run-mounts"),
            base: sandbox::BaseLayers {
                store: self.store,
                layers: &state.layers[..state.base_layers],
            },
            rootfs_cache_dir: &self.options.cache_dir.join("sandbox-rootfs"),
            reuse: self
                .live_rootfs
                .take()
                .filter(|(stage, chain, _)| {
                    *stage == self.current_stage && *chain == layer_chain(state)
                })
                .map(|(_, _, live)| live),
            emulation: emulation.as_ref(),
        };
        let reporter = self.reporter;
        let mut pending_line = Vec::new();
        let mut show = |bytes: &[u8]| {
            pending_line.extend_from_slice(bytes);
            while let Some(end) = pending_line.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending_line.drain(..=end).collect();
                reporter.note(String::from_utf8_lossy(&line).trim_end());
            }
        };
        let result = sandbox::run(request, &mut show);
        if !pending_line.is_empty() {
            reporter.note(String::from_utf8_lossy(&pending_line).trim_end());
        }
        let output = result.map_err(|e| match e {
            SandboxError::Failed { ref output, .. } => {
                let summary = e.to_string();
                let output = output.trim_end();
                failure.msg(if output.is_empty() {
                    summary
                } else {
                    format!("{summary}\n{output}")
                })
            }
            other => failure.wrap()(other),
        })?;
        let diff = output.diff;
        if diff.is_empty() {
            self.cache
                .record_result(&key, None)
                .map_err(failure.err("failed to record the step in the step cache"))?;
            self.note_run(state, &key, None, Vec::new());
            self.built += 1;
            self.live_rootfs = Some((self.current_stage, layer_chain(state), output.details));
            return Ok(StepOutcome::ConfigOnly);
        }
        self.reporter.note(&format!(
            "writing layer: {}",
            crate::build::describe_diff(&diff)
        ));
        let layer = crate::layer::write(&diff, self.store, &write_options)
            .map_err(failure.err("failed to write the layer"))?;
        self.cache
            .record_result(&key, Some(&layer))
            .map_err(failure.err("failed to record the step in the step cache"))?;
        self.note_run(state, &key, Some(&layer), Vec::new());
        self.built += 1;
        self.add_layer(state, layer, Some(diff), history_text, failure)?;
        // The layer is written: the next RUN of this stage may change the files in place.
        self.live_rootfs = Some((self.current_stage, layer_chain(state), output.details));
        Ok(StepOutcome::Built)
    }

    /// The step key of a RUN, from everything it can see before it runs (content digests
    /// only, so equal on every machine): the layers below it, the command, environment,
    /// working directory, user, network, hosts file, mounts, the platform and the layer
    /// settings. Native and sandboxed RUNs share it: both give the same layer.
    pub(super) fn run_key(
        &self,
        state: &StageState,
        run: &RunInstruction,
        network: NetworkMode,
        mounts: &[sandbox::RunMount],
        bind_keys: &[crate::digest::Digest],
    ) -> crate::digest::Digest {
        let write_options = self.write_options();
        let mut hasher = crate::digest::Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"kiln-run-v2");
        field(format!("{:?}", write_options.compression).as_bytes());
        field(write_options.source_date_epoch.to_string().as_bytes());
        for layer in &state.layers {
            field(layer.diff_id.to_string().as_bytes());
        }
        field(state.platform().to_string().as_bytes());
        for word in &self.sandbox_argv(state, run) {
            field(word.as_bytes());
        }
        for (name, value) in &state.environment() {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        field(state.workdir().as_bytes());
        field(
            state
                .config
                .config
                .user
                .clone()
                .unwrap_or_default()
                .as_bytes(),
        );
        field(format!("{network:?}").as_bytes());
        // The hosts file is part of what the command sees (BuildKit keys it too).
        field(sandbox::hosts_file(&self.options.sandbox.extra_hosts).as_bytes());
        for mount in mounts {
            field(mount.cache_identity().as_bytes());
        }
        for key in bind_keys {
            field(key.to_string().as_bytes());
        }
        hasher.finish().0
    }

    /// The interpreter a RUN of this stage needs, when its platform is not the build
    /// machine's. The error names the platform, why it cannot run and the fix, before anything
    /// ran or was written.
    fn foreign_execution(
        &self,
        state: &StageState,
        failure: &StepFailure<'_>,
    ) -> Result<Option<sandbox::binfmt::Registration>, BuildError> {
        let host = &self.options.platforms.build;
        let target = crate::image::Platform::new(
            &state.config.os,
            &state.config.architecture,
            state.config.variant.as_deref(),
        );
        match sandbox::binfmt::execution(&target, host, self.options.sandbox.qemu_dir.as_deref()) {
            Ok(sandbox::binfmt::Execution::Register(registration)) => Ok(Some(registration)),
            Ok(_) => Ok(None),
            Err(reason) => Err(failure.msg(format!(
                "this RUN executes {} programs, but this machine is {}: {reason} (native steps \
                 — COPY, apk, pip, adduser — need no interpreter)",
                sandbox::binfmt::shown(&target),
                sandbox::binfmt::shown(host),
            ))),
        }
    }

    /// What a `RUN --mount=type=bind` shows (its `source` of the context, or of the stage
    /// `from`, as `COPY` would take it), and a digest of it for the step-cache key: the
    /// content of the files for the context (their paths on this machine are not part of it,
    /// so the key travels), the stage's layers for a stage.
    fn bind_source(
        &mut self,
        source: &str,
        from: Option<&str>,
        failure: &StepFailure<'_>,
    ) -> Result<(sandbox::BindSource, crate::digest::Digest), BuildError> {
        let scratch = self.scratch.dir.path().to_owned();
        let empty = LowerFs::new();
        let sources = [source.to_owned()];
        let request = |from| CopyRequest {
            sources: &sources,
            dest: "/",
            workdir: "/",
            from,
            target: &empty,
            chown: None,
            chmod: None,
            link: false,
            add: AddMode::Copy,
            scratch_dir: &scratch,
        };
        let Some(reference) = from else {
            let options = self.write_options();
            let context = self
                .context()
                .map_err(failure.err("failed to open the build context"))?;
            let found = context
                .resolve(source)
                .map_err(failure.err("invalid RUN --mount=type=bind source"))?;
            let [found] = found.as_slice() else {
                return Err(failure.msg(format!(
                    "RUN --mount=type=bind source `{source}` names {} paths; it must name one",
                    found.len()
                )));
            };
            let file_name = (found.entry.kind != ContextKind::Dir)
                .then(|| found.matched.file_name().to_owned());
            let diff = copy_step::copy(&request(CopySource::Context(context)))
                .map_err(failure.wrap())?
                .diff;
            let key = crate::build::cache::content_key(&diff, &options)
                .map_err(failure.err("failed to read the bind mount's source"))?;
            return Ok((sandbox::BindSource { diff, file_name }, key));
        };
        let index = self
            .plan
            .stage_by_reference(reference, self.current_stage)
            .ok_or_else(|| {
                failure.msg(format!(
                    "RUN --mount from=`{reference}` names no earlier stage (kiln mounts stages, \
                     not images)"
                ))
            })?;
        let mut from_state =
            self.stages.get(&index).cloned().ok_or_else(|| {
                failure.msg(format!("stage {index} was not built before this RUN"))
            })?;
        let fs = from_state
            .fs(self.store, &scratch)
            .map_err(failure.err("failed to read the source stage"))?
            .clone();
        let invalid_source = format!("invalid RUN --mount source `{source}`");
        let path = LayerPath::new_clamped(source).map_err(failure.err(&invalid_source))?;
        let Some((_, node)) = fs.stat(&path, true).map_err(failure.err(&invalid_source))? else {
            return Err(failure.msg(format!(
                "RUN --mount source `{source}` does not exist in stage `{reference}`"
            )));
        };
        let file_name = (node.kind != NodeKind::Dir).then(|| path.file_name().to_owned());
        let diff = copy_step::copy(&request(CopySource::Stage(&fs)))
            .map_err(failure.wrap())?
            .diff;
        let mut hasher = crate::digest::Hasher::new();
        for part in std::iter::once("kiln-bind-stage-v1".to_owned())
            .chain(from_state.layers.iter().map(|l| l.diff_id.to_string()))
            .chain(std::iter::once(path.absolute()))
        {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Ok((sandbox::BindSource { diff, file_name }, hasher.finish().0))
    }

    /// The program and arguments: exec form verbatim, shell form through SHELL. A heredoc that
    /// is the whole command is the script; otherwise the shell reads the heredocs itself.
    fn sandbox_argv(&self, state: &StageState, run: &RunInstruction) -> Vec<String> {
        match &run.command {
            CommandLine::Exec(words) => words.clone(),
            CommandLine::Shell(text) => {
                let script = match run.heredocs.as_slice() {
                    [] => text.clone(),
                    [only] if is_only_heredoc(text, &only.name) => only.content.clone(),
                    heredocs => {
                        let mut script = text.clone();
                        for heredoc in heredocs {
                            script.push('\n');
                            script.push_str(&heredoc.content);
                            if !heredoc.content.ends_with('\n') {
                                script.push('\n');
                            }
                            script.push_str(&heredoc.name);
                        }
                        script
                    }
                };
                let mut argv = state.shell.clone();
                argv.push(script);
                argv
            }
        }
    }
}

/// True when the shell text is nothing but the heredoc marker (`<<EOF`, `<<-"EOF"`).
fn is_only_heredoc(text: &str, name: &str) -> bool {
    let marker = text.trim().trim_start_matches("<<").trim_start_matches('-');
    marker.trim_matches(|c| c == '"' || c == '\'') == name
}

/// The diffIDs of a stage's layers: a rootfs left by a RUN is reused only while they are the
/// same (no other step changed the filesystem since).
fn layer_chain(state: &StageState) -> Vec<crate::digest::Digest> {
    state.layers.iter().map(|l| l.diff_id.clone()).collect()
}
