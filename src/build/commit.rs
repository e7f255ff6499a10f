//! Committing a step's result: a Diff becomes a layer through the step cache (reused when an
//! identical Diff was written before), and the layer joins the stage with its history entry.

use super::executor::{Executor, StepFailure};
use super::stage::{PendingFs, StageState};
use super::{BuildError, StepOutcome, describe_diff};
use crate::image::config::History;
use crate::image::rfc3339;
use crate::layer::{self, Diff, EntryKind, Layer};

impl Executor<'_> {
    /// True when a file of `diff` was extracted from a stored layer into this build's scratch
    /// directory.
    fn reads_extracted(&self, diff: &Diff) -> bool {
        let scratch = self.scratch.dir.path();
        diff.iter().any(|(_, entry)| {
            matches!(&entry.kind, EntryKind::File(crate::layer::FileContent::HostFile { path, .. }) if path.starts_with(scratch))
        })
    }

    pub(super) fn commit_layer(
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
        // Not in this machine's cache: a shared cache may hold the layer with this content.
        let (cached, by_content) = match cached {
            None if !self.options.no_cache && self.shared.importing() => {
                let key = crate::build::cache::content_key(&diff, &options)
                    .map_err(failure.err("failed to read the step's inputs"))?;
                let found = self.shared_lookup(&key).and_then(|found| found.layer);
                (found, true)
            }
            other => (other, by_content),
        };
        let pending_key = self.pending_step_key.take();
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
        match pending_key {
            Some(pending) => {
                let materials = self.materials[pending.materials_from..].to_vec();
                self.note_step(
                    state,
                    pending.key,
                    pending.kind,
                    Some(layer.clone()),
                    materials,
                );
            }
            None => {
                let key = crate::build::cache::diff_id_key(&layer.diff_id, &options);
                self.note_step(state, key, "layer", Some(layer.clone()), Vec::new());
            }
        }
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

    /// Adds a sandboxed RUN's layer to the stage: its Diff when it was just made (its files are
    /// on disk already), else the stored blob.
    pub(super) fn add_layer(
        &mut self,
        state: &mut StageState,
        layer: Layer,
        diff: Option<Diff>,
        history_text: &str,
        failure: &StepFailure<'_>,
    ) -> Result<(), BuildError> {
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
        state.layers.push(layer.clone());
        state.config.history.push(History {
            created: Some(rfc3339(self.options.source_date_epoch)),
            created_by: Some(history_text.to_owned()),
            comment: Some("kiln".to_owned()),
            empty_layer: None,
        });
        match diff {
            Some(diff) => state
                .push_diff(diff)
                .map_err(failure.err("failed to apply the layer to the stage's filesystem")),
            None => {
                state.pending.push(PendingFs::Blob(layer));
                Ok(())
            }
        }
    }
}
