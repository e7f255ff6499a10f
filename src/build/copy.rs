//! COPY and ADD: their flags and variables expanded, heredoc sources written as files, the
//! source chosen (the build context, an earlier stage, a `--build-context` directory or image),
//! then [`copy_step::copy`] computes the Diff and [`Executor::commit_layer`] makes it a layer.

use std::path::Path;

use super::BuildError;
use super::executor::{Applied, Executor, StepFailure};
use super::stage::StageState;
use crate::context::{Context, ContextError};
use crate::digest::Digest;
use crate::dockerfile::plan::{CopyInstruction, NamedContext};
use crate::layer::Diff;
use crate::material::{Material, MaterialKind};
use crate::steps::copy::{self as copy_step, AddMode, CopyRequest, CopySource};

impl Executor<'_> {
    /// COPY or ADD: one layer, recorded for provenance when it read the context.
    pub(super) fn copy(
        &mut self,
        state: &mut StageState,
        copy: &CopyInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        if let Some(outcome) = self.copy_from_stage_shared(state, copy, failure)? {
            return Ok(Applied::step(outcome));
        }
        let diff = self.copy_diff(state, copy, failure)?;
        let outcome = self.commit_layer(state, diff, &failure.planned.text, failure)?;
        // What the build read from the context, for provenance: each such layer by its
        // diffID, and a pinned ADD by the checksum it was verified against.
        if copy.from.is_none()
            && copy.heredocs.is_empty()
            && let Some(layer) = state.layers.last()
        {
            self.context_layers.push(layer.diff_id.clone());
        }
        if let Some(checksum) = &copy.checksum
            && let Some(hex) = checksum.strip_prefix("sha256:")
            && let Ok(digest) = Digest::from_hex(hex)
        {
            self.materials.push(Material::new(
                MaterialKind::BuildContext,
                format!("context:{}", copy.sources.join(" ")),
                digest,
            ));
        }
        Ok(Applied::step(outcome))
    }

    /// The build context, opened on first use with the Dockerfile's own ignore file when it
    /// has one (`NAME.dockerignore`).
    pub(super) fn context(&mut self) -> Result<&Context, ContextError> {
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
            state.expand(word, escape).map_err(failure.wrap())
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
                    expand_heredoc(&heredoc.content, state, escape).map_err(failure.wrap())?
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
                        let wanted = state.platform_as_written();
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
        let output = copy_step::copy(&request).map_err(failure.wrap())?;
        Ok(output.diff)
    }
}

/// A heredoc body with its variables expanded.
fn expand_heredoc(
    content: &str,
    state: &StageState,
    escape: char,
) -> Result<String, crate::dockerfile::shell::ExpandError> {
    // Heredoc bodies expand variables line by line but keep quotes, as a shell heredoc does.
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let protected = body.replace('\'', "\u{1}").replace('"', "\u{2}");
        let expanded = state.expand(&protected, escape)?;
        out.push_str(&expanded.replace('\u{1}', "'").replace('\u{2}', "\""));
        out.push_str(newline);
    }
    Ok(out)
}
