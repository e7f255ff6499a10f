//! The executor's side of the shared cache ([`super::shared_cache`]): looking a step up by its
//! key (reporting skipped entries as warnings), taking a RUN's result from it, and noting each
//! step's result for `--cache-to`.

use super::executor::{Executor, StepFailure};
use super::shared_cache::{Found, PendingKey, StepResult};
use super::stage::StageState;
use super::{BuildError, StepOutcome};
use crate::digest::Digest;
use crate::dockerfile::plan::CopyInstruction;
use crate::layer::Layer;
use crate::material::Material;

impl Executor<'_> {
    /// `COPY --from=<stage>` through the shared cache, keyed before its files are computed: by
    /// the layers below it, the source stage's layers (which fix every file it can copy), the
    /// instruction with its variables expanded, the working directory, the platform and the
    /// layer settings. A hit adds the layer without reading the source stage's files (no
    /// extraction of its layers); a miss leaves the key for [`Executor::commit_layer`] to
    /// export under. `None` when the shared cache is not used or the source is not a stage.
    pub(super) fn copy_from_stage_shared(
        &mut self,
        state: &mut StageState,
        copy: &CopyInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Option<StepOutcome>, BuildError> {
        if self.options.no_cache || !(self.shared.importing() || self.shared.exporting()) {
            return Ok(None);
        }
        let Some(from) = &copy.from else {
            return Ok(None);
        };
        if !copy.heredocs.is_empty() {
            return Ok(None);
        }
        let escape = self.plan.escape;
        let expand = |word: &str| state.expand(word, escape).map_err(failure.wrap());
        let from = expand(from)?;
        let Some(source) = self
            .plan
            .stage_by_reference(&from, self.current_stage)
            .and_then(|index| self.stages.get(&index))
        else {
            return Ok(None);
        };
        let options = self.write_options();
        let mut hasher = crate::digest::Hasher::new();
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"kiln-copy-from-stage-v1");
        field(format!("{:?}", options.compression).as_bytes());
        field(options.source_date_epoch.to_string().as_bytes());
        field(state.platform().to_string().as_bytes());
        for layer in &state.layers {
            field(layer.diff_id.to_string().as_bytes());
        }
        field(b"from");
        for layer in &source.layers {
            field(layer.diff_id.to_string().as_bytes());
        }
        field(format!("{copy:?}").as_bytes());
        for source in &copy.sources {
            field(expand(source)?.as_bytes());
        }
        field(expand(&copy.dest)?.as_bytes());
        for flag in [&copy.chown, &copy.chmod, &copy.checksum]
            .into_iter()
            .flatten()
        {
            field(expand(flag)?.as_bytes());
        }
        field(state.workdir().as_bytes());
        let key = hasher.finish().0;
        if let Some(found) = self.shared_lookup(&key)
            && let Some(layer) = found.layer
        {
            self.cached += 1;
            self.note_step(state, key, "copy", Some(layer.clone()), Vec::new());
            self.reporter
                .note(&format!("layer {} from the shared cache", layer.digest));
            self.add_layer(state, layer, None, &failure.planned.text, failure)?;
            return Ok(Some(StepOutcome::Cached));
        }
        self.pending_step_key = Some(PendingKey {
            key,
            kind: "copy",
            materials_from: self.materials.len(),
        });
        Ok(None)
    }

    /// The result under `key` in the `--cache-from` caches (none with `--no-cache`).
    pub(super) fn shared_lookup(&mut self, key: &Digest) -> Option<Found> {
        if self.options.no_cache || !self.shared.importing() {
            return None;
        }
        let found = self.shared.lookup(key, self.store);
        for warning in self.shared.take_warnings() {
            self.reporter.note(&format!("warning: {warning}"));
        }
        found
    }

    /// Adds a RUN's result taken from a shared cache: its layer (from the store) and what it
    /// consumed when it ran, for the provenance.
    pub(super) fn take_shared_run(
        &mut self,
        state: &mut StageState,
        key: &Digest,
        found: Found,
        history_text: &str,
        failure: &StepFailure<'_>,
    ) -> Result<StepOutcome, BuildError> {
        self.cached += 1;
        self.note_run(state, key, found.layer.as_ref(), found.materials.clone());
        self.materials.extend(found.materials);
        Ok(match found.layer {
            Some(layer) => {
                self.reporter
                    .note(&format!("layer {} from the shared cache", layer.digest));
                self.add_layer(state, layer, None, history_text, failure)?;
                StepOutcome::Cached
            }
            None => StepOutcome::ConfigOnly,
        })
    }

    /// Notes a RUN's result (before its layer joins `state`) for `--cache-to`.
    pub(super) fn note_run(
        &mut self,
        state: &StageState,
        key: &Digest,
        layer: Option<&Layer>,
        materials: Vec<Material>,
    ) {
        self.note_step(state, key.clone(), "run", layer.cloned(), materials);
    }

    /// Notes a step's result (before its layer joins `state`) for `--cache-to`.
    pub(super) fn note_step(
        &mut self,
        state: &StageState,
        key: Digest,
        kind: &'static str,
        layer: Option<Layer>,
        materials: Vec<Material>,
    ) {
        if !self.shared.exporting() {
            return;
        }
        let step = self.current_step_text.clone();
        self.shared.note(StepResult {
            key,
            kind,
            step,
            platform: state.platform().to_string(),
            parents: state.layers.iter().map(|l| l.diff_id.clone()).collect(),
            layer,
            materials,
            stage: self.current_stage,
        });
    }

    /// Writes the noted results to the `--cache-to` cache (the final stage's with
    /// `mode=min`), after the build succeeded.
    pub(super) fn export_shared_cache(&mut self, final_stage: usize) -> Result<(), BuildError> {
        if !self.shared.exporting() {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let summary = self
            .shared
            .export(self.store, final_stage, now)
            .map_err(|e| BuildError::storage("failed to export the build cache (--cache-to)", e))?;
        self.reporter.note(&format!(
            "cache: {} entries written, {} already there",
            summary.written, summary.present
        ));
        Ok(())
    }
}
