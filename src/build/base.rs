//! Where a stage starts: `FROM scratch`, an earlier stage, a `--build-context` directory or
//! OCI layout, a local OCI layout or archive, or a registry image pulled for the target
//! platform.
//!
//! The platform a base is chosen for is the stage's `FROM --platform`, else the build's target
//! ([`super::BuildPlatforms`]); a stage's config says that platform when it was asked for, and
//! its base's otherwise.

use std::path::Path;

use super::executor::{Executor, StepFailure};
use super::stage::{StageState, scratch_state};
use super::{BaseRecord, BuildError};
use crate::context::Context;
use crate::dockerfile::plan::{BaseRef, Instruction, NamedContext, PlannedInstruction};
use crate::image::base::BaseImage;
use crate::image::config::History;
use crate::image::{Platform, rfc3339};
use crate::steps::copy::{self as copy_step, AddMode, CopyRequest, CopySource};

impl Executor<'_> {
    /// The state stage `index` starts from.
    pub(super) fn start_stage(&mut self, index: usize) -> Result<StageState, BuildError> {
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
            None => self.options.platforms.requested().cloned(),
        };
        let wanted = platform
            .clone()
            .unwrap_or_else(|| self.options.platforms.target.clone());
        let epoch_time = rfc3339(self.options.source_date_epoch);
        let mut state = match &stage.base {
            BaseRef::Scratch => scratch_state(wanted),
            BaseRef::Context(name) => {
                // `FROM NAME` of a `--build-context NAME=DIR`: the directory's files (its
                // .dockerignore applied) as the stage's one layer, on an empty config.
                let dir = match self.options.named_contexts.get(name) {
                    Some(NamedContext::Dir(dir)) => dir.clone(),
                    _ => return Err(failure.msg(format!("no build context `{name}`"))),
                };
                let context = Context::open(&dir, None)
                    .map_err(failure.err("failed to read the named build context"))?;
                let mut state = scratch_state(wanted);
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
                let diff = copy_step::copy(&request).map_err(failure.wrap())?.diff;
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
    pub(super) fn start_from_base(&mut self, written: &str, base: BaseImage) -> StageState {
        self.bases.push(BaseRecord {
            reference: written.to_owned(),
            source: base.source.clone(),
            digest: base.manifest_digest.clone(),
        });
        self.reporter
            .note(&format!("base {written} resolved to {}", base.source));
        StageState::from_base(base.config, base.layers)
    }
}
