//! RUN computed natively: a shell-form RUN made only of commands kiln knows (apk, pip, the
//! users and groups tools, `rm -rf` of caches) becomes one Diff, as Docker would have made one
//! layer of it. Each command's step sees the effects of the ones before it.
//!
//! [`Executor::run`] decides between this and the sandbox ([`super::sandboxed_run`]).

use super::executor::{Applied, Executor, StepFailure};
use super::stage::StageState;
use super::{BuildError, StepOutcome};
use crate::dockerfile::plan::{CommandLine, RunInstruction};
use crate::layer::{Diff, LayerPath};
use crate::material::StepOutput;
use crate::rootfs::{FsView, NodeKind, Overlay};
use crate::steps::pip::{PipRequest, pip_install};
use crate::steps::run::{self as run_step, NativeCommand};
use crate::steps::users::{self, UsersOptions};

impl Executor<'_> {
    /// RUN: natively when kiln can compute it exactly, else in the sandbox.
    pub(super) fn run(
        &mut self,
        state: &mut StageState,
        run: &RunInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let history = &failure.planned.text;
        if self.needs_sandbox(state, run, failure)? {
            return Ok(Applied::step(
                self.sandboxed_run(state, run, history, failure)?,
            ));
        }
        // A shared cache keys a RUN before it runs, so a runner that never ran it takes its
        // layer without resolving or fetching anything.
        let shared_key = (!self.options.no_cache
            && (self.shared.importing() || self.shared.exporting()))
        .then(|| self.run_key(state, run, self.options.sandbox.network, &[], &[]));
        if let Some(key) = &shared_key
            && let Some(found) = self.shared_lookup(key)
        {
            return Ok(Applied::step(
                self.take_shared_run(state, key, found, history, failure)?,
            ));
        }
        let materials_before = self.materials.len();
        match self.run_diff(state, run, failure)? {
            Ok(diff) if diff.is_empty() => {
                if let Some(key) = &shared_key {
                    let materials = self.materials[materials_before..].to_vec();
                    self.note_run(state, key, None, materials);
                }
                Ok(Applied::step(StepOutcome::ConfigOnly))
            }
            Ok(diff) => {
                self.pending_step_key = shared_key.map(|key| super::shared_cache::PendingKey {
                    key,
                    kind: "run",
                    materials_from: materials_before,
                });
                Ok(Applied::step(
                    self.commit_layer(state, diff, history, failure)?,
                ))
            }
            // Native would not be exact: the real tool runs, and the output says so.
            Err(why) => {
                self.reporter.note(&why);
                Ok(Applied::step(
                    self.sandboxed_run(state, run, history, failure)?,
                ))
            }
        }
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
        let commands =
            run_step::recognize(script, &|name| state.lookup(name)).map_err(failure.wrap())?;
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
        let platform = state.platform();
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
            let output = if is_apk(command) {
                let count = rest.iter().take_while(|c| is_apk(c)).count();
                let (apk_commands, after) = rest.split_at(count);
                rest = after;
                let outcome = crate::apk::run(apk_commands, &overlay, &apk_options)
                    .map_err(failure.wrap())?;
                without_details(outcome)
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
                if let Some(why) =
                    crate::steps::pip::sandbox_reason(launcher, &request).map_err(failure.wrap())?
                {
                    return in_sandbox(why);
                }
                let outcome = match pip_install(args, &request) {
                    Ok(outcome) => outcome,
                    Err(e) => match e.sandbox_reason() {
                        Some(why) => return in_sandbox(why),
                        None => return Err(failure.wrap()(e)),
                    },
                };
                without_details(outcome)
            } else {
                rest = &rest[1..];
                match command {
                    NativeCommand::RemoveCache { paths } => {
                        StepOutput::of_diff(remove_paths(&overlay, paths).map_err(failure.wrap())?)
                    }
                    other => users::apply(other, &overlay, &options).map_err(failure.wrap())?,
                }
            };
            for warning in &output.warnings {
                self.reporter.note(&format!("warning: {warning}"));
            }
            // Recorded as each command runs: a RUN that goes to the sandbox later keeps what
            // its native commands fetched before.
            self.materials.extend(output.materials);
            overlay.apply(output.diff);
        }
        Ok(Ok(overlay.into_diff()))
    }
}

/// A step's output without what only that step returns.
fn without_details<D>(output: StepOutput<D>) -> StepOutput {
    StepOutput {
        diff: output.diff,
        materials: output.materials,
        warnings: output.warnings,
        details: (),
    }
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
