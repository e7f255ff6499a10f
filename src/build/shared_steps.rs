//! The executor's side of the shared cache ([`super::shared_cache`]): looking a step up by its
//! key (reporting skipped entries as warnings), taking a RUN's result from it, and noting each
//! step's result for `--cache-to`.

use super::executor::{Executor, StepFailure};
use super::shared_cache::{Found, StepResult};
use super::stage::StageState;
use super::{BuildError, StepOutcome};
use crate::digest::Digest;
use crate::layer::Layer;
use crate::material::Material;

impl Executor<'_> {
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
