//! The build planner: turns a parsed [`Dockerfile`] into stages of typed instructions.
//!
//! Planning needs no I/O. It splits the file into stages at each FROM, resolves the global
//! ARGs that FROM lines may use, gives every instruction its typed form with its flags checked
//! (an unknown flag or instruction is an error naming the line), and works out which stages the
//! target needs (through `FROM <stage>` and `COPY --from=<stage>`). Arguments stay unexpanded
//! here: ENV and ARG values depend on the base image's environment, which only the executor
//! knows, so [`crate::build`] expands them as it dispatches each instruction. Each
//! instruction's typed form is made in [`instruction`].

use std::collections::{BTreeMap, BTreeSet};

use super::ast::{Dockerfile, Heredoc, Node};
use super::shell;

mod instruction;

pub use instruction::plan_trigger;
use instruction::{instruction_text, parse_arg_words, plan_instruction, split_flag};

/// A plan failure, naming the Dockerfile line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Dockerfile:{line}: {message}")]
pub struct PlanError {
    /// 1-based line of the instruction.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn plan_error(line: usize, message: impl Into<String>) -> PlanError {
    PlanError {
        line,
        message: message.into(),
    }
}

/// A command for RUN, CMD, ENTRYPOINT or HEALTHCHECK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// JSON form: run exactly these words.
    Exec(Vec<String>),
    /// Shell form: run through the stage's SHELL.
    Shell(String),
}

/// COPY or ADD, with its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyInstruction {
    /// True for ADD.
    pub is_add: bool,
    /// Source words, unexpanded.
    pub sources: Vec<String>,
    /// Destination word, unexpanded.
    pub dest: String,
    /// `--from=<stage|index|image>`.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--checksum=` (ADD only).
    pub checksum: Option<String>,
    /// `--parents` (recorded; kiln does not implement it yet and refuses it at dispatch).
    pub parents: bool,
    /// `--exclude=` patterns.
    pub excludes: Vec<String>,
    /// Inline files (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
}

/// RUN, with its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInstruction {
    /// The command.
    pub command: CommandLine,
    /// `--mount=` specs, verbatim.
    pub mounts: Vec<String>,
    /// `--network=`.
    pub network: Option<String>,
    /// `--security=`.
    pub security: Option<String>,
    /// `--sandbox=` (a kiln flag): `always` runs the command in the sandbox even when kiln could
    /// compute it natively.
    pub sandbox: Option<String>,
    /// Heredoc bodies.
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK, with its flags (durations still as written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthcheckInstruction {
    /// `HEALTHCHECK NONE`.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Cmd {
        /// The test command.
        command: CommandLine,
        /// `--interval`, `--timeout`, `--start-period`, `--start-interval`, `--retries`.
        options: BTreeMap<String, String>,
    },
}

/// One typed instruction inside a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `ARG name[=default]...`: raw words.
    Arg(Vec<(String, Option<String>)>),
    /// `ENV k=v...`: raw key and value words.
    Env(Vec<(String, String)>),
    /// `LABEL k=v...`: raw key and value words.
    Label(Vec<(String, String)>),
    /// `WORKDIR path`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
    /// `EXPOSE port[/proto]...`.
    Expose(Vec<String>),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `SHELL ["exe", "flag"]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL sig`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(HealthcheckInstruction),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `ONBUILD <instruction>`: the trigger text, recorded in the image.
    Onbuild(String),
    /// `MAINTAINER name` (deprecated; sets the author).
    Maintainer(String),
    /// `COPY` or `ADD`.
    Copy(CopyInstruction),
    /// `RUN`.
    Run(RunInstruction),
}

/// An instruction with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedInstruction {
    /// The typed instruction.
    pub instruction: Instruction,
    /// 1-based first line.
    pub line: usize,
    /// The instruction as written (keyword uppercased, rest verbatim), for messages and history.
    pub text: String,
}

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseRef {
    /// `FROM scratch`.
    Scratch,
    /// `FROM <earlier stage>`.
    Stage(usize),
    /// `FROM oci:DIR[:ref]` or `FROM oci:DIR@sha256:...`.
    OciLayout {
        /// The layout directory.
        dir: String,
        /// Tag or digest inside it.
        reference: Option<String>,
    },
    /// `FROM oci-archive:FILE[:ref]`.
    OciArchive {
        /// The archive file.
        file: String,
        /// Tag or digest inside it.
        reference: Option<String>,
    },
    /// A registry reference (`python:3.11-alpine`, `ghcr.io/o/n@sha256:...`).
    Registry(String),
    /// A `--build-context NAME=DIR` named by FROM: the directory's files as the only layer.
    Context(String),
}

/// A `--build-context NAME=...` that `FROM NAME` and `COPY --from=NAME` use (buildx's named
/// contexts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory on the build host (`NAME=DIR`).
    Dir(std::path::PathBuf),
    /// An image in an OCI layout (`NAME=oci-layout://DIR[:TAG][@sha256:...]`).
    OciLayout {
        /// The layout directory.
        dir: String,
        /// Tag or digest inside it.
        reference: Option<String>,
    },
}

/// One build stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Position in the file (0-based), as `--from=<index>` names it.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: BaseRef,
    /// The FROM reference after global-ARG expansion, as written.
    pub base_text: String,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// Line of the FROM.
    pub line: usize,
    /// The instructions after FROM.
    pub instructions: Vec<PlannedInstruction>,
}

impl Stage {
    /// `name` or the index, for messages and history (`build`, `stage-1`).
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("stage-{}", self.index),
        }
    }
}

/// A whole plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Every stage in file order.
    pub stages: Vec<Stage>,
    /// Global ARGs (before the first FROM), with their values after `--build-arg`.
    pub global_args: BTreeMap<String, Option<String>>,
    /// Index of the stage to build.
    pub target: usize,
    /// The escape character of the file.
    pub escape: char,
    /// `--build-context` names: they win over stages of the same name, as in buildx.
    pub named_contexts: BTreeSet<String>,
}

/// Inputs to planning that come from the command line.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// Automatic platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `BUILDPLATFORM`, ...).
    pub platform_args: BTreeMap<String, String>,
    /// `--build-context` names.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// Plans `file`.
pub fn plan(file: &Dockerfile, options: &PlanOptions) -> Result<Plan, PlanError> {
    let mut global_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    let escape = file.escape;

    for node in &file.nodes {
        let keyword = node.keyword.as_str();
        if keyword == "from" {
            let stage = plan_from(node, stages.len(), &stages, &global_args, options, escape)?;
            stages.push(stage);
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            if keyword == "arg" {
                for (name, default) in parse_arg_words(node)? {
                    let lookup = |n: &str| lookup_global(&global_args, options, n);
                    let value = match options.build_args.get(&name) {
                        Some(given) => Some(given.clone()),
                        None => match default {
                            Some(raw) => Some(
                                shell::expand_word(&raw, &lookup, escape)
                                    .map_err(|e| plan_error(node.start_line, e.to_string()))?,
                            ),
                            None => None,
                        },
                    };
                    global_args.insert(name, value);
                }
                continue;
            }
            return Err(plan_error(
                node.start_line,
                format!(
                    "{} instruction before the first FROM: only ARG may come before FROM",
                    keyword.to_uppercase()
                ),
            ));
        };
        let instruction = plan_instruction(node)?;
        stage.instructions.push(PlannedInstruction {
            instruction,
            line: node.start_line,
            text: instruction_text(node),
        });
    }

    if stages.is_empty() {
        return Err(plan_error(
            1,
            "no FROM instruction: a build needs at least one stage",
        ));
    }
    let target = match &options.target {
        None => stages.len() - 1,
        Some(wanted) => {
            let wanted_lower = wanted.to_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(wanted_lower.as_str()))
                .ok_or_else(|| {
                    let names: Vec<String> = stages.iter().filter_map(|s| s.name.clone()).collect();
                    plan_error(
                        1,
                        format!(
                            "target stage `{wanted}` could not be found (stages: {})",
                            if names.is_empty() {
                                "none named".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    )
                })?
        }
    };
    let plan = Plan {
        stages,
        global_args,
        target,
        escape,
        named_contexts: options.named_contexts.keys().cloned().collect(),
    };
    plan.check_copy_from_stages()?;
    Ok(plan)
}

fn lookup_global(
    global_args: &BTreeMap<String, Option<String>>,
    options: &PlanOptions,
    name: &str,
) -> Option<String> {
    if let Some(value) = global_args.get(name) {
        return value.clone();
    }
    options.platform_args.get(name).cloned()
}

fn plan_from(
    node: &Node,
    index: usize,
    earlier: &[Stage],
    global_args: &BTreeMap<String, Option<String>>,
    options: &PlanOptions,
    escape: char,
) -> Result<Stage, PlanError> {
    let line = node.start_line;
    let lookup = |n: &str| lookup_global(global_args, options, n);
    let mut platform = None;
    for flag in &node.flags {
        let (name, value) = split_flag(flag);
        match name {
            "platform" => {
                let raw = value.ok_or_else(|| plan_error(line, "--platform needs a value"))?;
                platform = Some(
                    shell::expand_word(raw, &lookup, escape)
                        .map_err(|e| plan_error(line, e.to_string()))?,
                );
            }
            other => {
                return Err(plan_error(
                    line,
                    format!("unknown flag: --{other} (FROM takes --platform)"),
                ));
            }
        }
    }
    let (image_word, name) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            (image.clone(), Some(name.to_lowercase()))
        }
        _ => {
            return Err(plan_error(
                line,
                "FROM requires either one argument, or three: FROM <source> [AS <name>]",
            ));
        }
    };
    if let Some(name) = &name {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(plan_error(
                line,
                format!(
                    "invalid name for build stage: `{name}`, name can't start with a number or contain symbols"
                ),
            ));
        }
        if earlier
            .iter()
            .any(|s| s.name.as_deref() == Some(name.as_str()))
        {
            return Err(plan_error(line, format!("duplicate stage name `{name}`")));
        }
    }
    let base_text = shell::expand_word(&image_word, &lookup, escape)
        .map_err(|e| plan_error(line, e.to_string()))?;
    if base_text.is_empty() {
        return Err(plan_error(
            line,
            format!("base name ({image_word}) should not be blank"),
        ));
    }
    let base = classify_base(&base_text, earlier, &options.named_contexts);
    Ok(Stage {
        index,
        name,
        base,
        base_text,
        platform,
        line,
        instructions: Vec::new(),
    })
}

fn classify_base(
    text: &str,
    earlier: &[Stage],
    named_contexts: &BTreeMap<String, NamedContext>,
) -> BaseRef {
    if text.eq_ignore_ascii_case("scratch") {
        return BaseRef::Scratch;
    }
    // A named context replaces a stage of the same name, as in buildx.
    match named_contexts.get(text) {
        Some(NamedContext::Dir(_)) => return BaseRef::Context(text.to_owned()),
        Some(NamedContext::OciLayout { dir, reference }) => {
            return BaseRef::OciLayout {
                dir: dir.clone(),
                reference: reference.clone(),
            };
        }
        None => {}
    }
    let lower = text.to_lowercase();
    if let Some(stage) = earlier
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return BaseRef::Stage(stage.index);
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        let (dir, reference) = split_local_reference(rest);
        return BaseRef::OciLayout { dir, reference };
    }
    if let Some(rest) = text.strip_prefix("oci-archive:") {
        let (file, reference) = split_local_reference(rest);
        return BaseRef::OciArchive { file, reference };
    }
    BaseRef::Registry(text.to_owned())
}

/// Splits `DIR[:ref]` or `DIR@sha256:...` as skopeo's `oci:` transport does.
pub fn split_local_reference(rest: &str) -> (String, Option<String>) {
    if let Some(at) = rest.rfind("@sha256:") {
        return (rest[..at].to_owned(), Some(rest[at + 1..].to_owned()));
    }
    match rest.rfind(':') {
        Some(colon) if !rest[colon + 1..].contains('/') => (
            rest[..colon].to_owned(),
            Some(rest[colon + 1..].to_owned()).filter(|r| !r.is_empty()),
        ),
        _ => (rest.to_owned(), None),
    }
}

impl Plan {
    /// Finds the stage a `--from=` value or `FROM <name>` names: a stage name or an index of an
    /// earlier stage. `None` means it names an image or a `--build-context` (which replaces a
    /// stage of the same name), not a stage.
    pub fn stage_by_reference(&self, reference: &str, before: usize) -> Option<usize> {
        if self.named_contexts.contains(reference) {
            return None;
        }
        let lower = reference.to_lowercase();
        let before = before.min(self.stages.len());
        if let Some(stage) = self.stages[..before]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(stage.index);
        }
        reference.parse::<usize>().ok().filter(|i| *i < before)
    }

    fn check_copy_from_stages(&self) -> Result<(), PlanError> {
        for stage in &self.stages {
            for planned in &stage.instructions {
                if let Instruction::Copy(CopyInstruction {
                    from: Some(from), ..
                }) = &planned.instruction
                {
                    if from.contains('$') || self.named_contexts.contains(from) {
                        continue;
                    }
                    let names_a_later_stage = self.stages[stage.index..]
                        .iter()
                        .any(|s| s.name.as_deref() == Some(from.to_lowercase().as_str()));
                    if let Ok(index) = from.parse::<usize>()
                        && index >= stage.index
                    {
                        return Err(plan_error(
                            planned.line,
                            format!("COPY --from={from}: stage {index} is not an earlier stage"),
                        ));
                    }
                    if names_a_later_stage && self.stage_by_reference(from, stage.index).is_none() {
                        return Err(plan_error(
                            planned.line,
                            format!(
                                "COPY --from={from}: stage `{from}` is defined after this instruction"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The stages stage `index` reads: its `FROM` stage, `COPY --from` and `RUN --mount=from=`.
    pub fn dependencies(&self, index: usize) -> Vec<usize> {
        let stage = &self.stages[index];
        let mut found = Vec::new();
        if let BaseRef::Stage(parent) = stage.base {
            found.push(parent);
        }
        for planned in &stage.instructions {
            let froms: Vec<&str> = match &planned.instruction {
                Instruction::Copy(CopyInstruction {
                    from: Some(from), ..
                }) => vec![from.as_str()],
                // `RUN --mount=type=bind,from=build,...` (and caches seeded from a stage).
                Instruction::Run(run) => run
                    .mounts
                    .iter()
                    .flat_map(|spec| spec.split(','))
                    .filter_map(|field| field.trim().split_once('='))
                    .filter(|(key, _)| key.trim().eq_ignore_ascii_case("from"))
                    .map(|(_, value)| value.trim())
                    .collect(),
                _ => Vec::new(),
            };
            found.extend(
                froms
                    .into_iter()
                    .filter_map(|from| self.stage_by_reference(from, index)),
            );
        }
        found
    }

    /// The stages the target needs, in build order (dependencies first).
    pub fn needed_stages(&self) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut pending = vec![self.target];
        while let Some(index) = pending.pop() {
            if !needed.insert(index) {
                continue;
            }
            pending.extend(self.dependencies(index));
        }
        needed.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
