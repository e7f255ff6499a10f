//! The build planner: turns a parsed [`Dockerfile`] into stages of typed instructions.
//!
//! Planning needs no I/O. It splits the file into stages at each FROM, resolves the global
//! ARGs that FROM lines may use, gives every instruction its typed form with its flags checked
//! (an unknown flag or instruction is an error naming the line), and works out which stages the
//! target needs (through `FROM <stage>` and `COPY --from=<stage>`). Arguments stay unexpanded
//! here: ENV and ARG values depend on the base image's environment, which only the executor
//! knows, so [`crate::build`] expands them as it dispatches each instruction.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::{Dockerfile, Heredoc, Node};
use super::shell;

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

fn split_flag(flag: &str) -> (&str, Option<&str>) {
    let body = flag.trim_start_matches("--");
    match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    }
}

fn bool_flag(value: Option<&str>, line: usize, name: &str) -> Result<bool, PlanError> {
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(plan_error(
            line,
            format!("invalid value `{other}` for --{name}: expected true or false"),
        )),
    }
}

fn parse_arg_words(node: &Node) -> Result<Vec<(String, Option<String>)>, PlanError> {
    if node.args.is_empty() {
        return Err(plan_error(
            node.start_line,
            "ARG requires at least one argument",
        ));
    }
    node.args
        .iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), Some(value.to_owned()))),
            None => Ok((word.clone(), None)),
        })
        .collect()
}

fn key_value_triples(node: &Node, what: &str) -> Result<Vec<(String, String)>, PlanError> {
    if node.args.is_empty() || node.args.len() % 3 != 0 {
        return Err(plan_error(
            node.start_line,
            format!("{what} requires at least one key=value argument"),
        ));
    }
    Ok(node
        .args
        .chunks(3)
        .map(|triple| (triple[0].clone(), triple[1].clone()))
        .collect())
}

fn command_line(node: &Node) -> CommandLine {
    if node.json_form {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn single_arg(node: &Node, what: &str) -> Result<String, PlanError> {
    match node.args.as_slice() {
        [one] if !one.trim().is_empty() => Ok(one.clone()),
        _ => Err(plan_error(
            node.start_line,
            format!("{what} requires exactly one argument"),
        )),
    }
}

fn no_flags(node: &Node) -> Result<(), PlanError> {
    match node.flags.first() {
        None => Ok(()),
        Some(flag) => Err(plan_error(
            node.start_line,
            format!(
                "unknown flag: {} ({} takes no flags)",
                flag.split('=').next().unwrap_or(flag),
                node.keyword.to_uppercase()
            ),
        )),
    }
}

/// The instruction as `docker history` and error messages show it.
fn instruction_text(node: &Node) -> String {
    let mut text = node.keyword.to_uppercase();
    for flag in &node.flags {
        text.push(' ');
        text.push_str(flag);
    }
    if !node.original.is_empty() {
        text.push(' ');
        text.push_str(node.original.trim());
    }
    text
}

fn plan_instruction(node: &Node) -> Result<Instruction, PlanError> {
    let line = node.start_line;
    let keyword = node.keyword.as_str();
    Ok(match keyword {
        "arg" => {
            no_flags(node)?;
            Instruction::Arg(parse_arg_words(node)?)
        }
        "env" => {
            no_flags(node)?;
            Instruction::Env(key_value_triples(node, "ENV")?)
        }
        "label" => {
            no_flags(node)?;
            Instruction::Label(key_value_triples(node, "LABEL")?)
        }
        "workdir" => {
            no_flags(node)?;
            Instruction::Workdir(single_arg(node, "WORKDIR")?)
        }
        "user" => {
            no_flags(node)?;
            Instruction::User(single_arg(node, "USER")?)
        }
        "expose" => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(plan_error(line, "EXPOSE requires at least one argument"));
            }
            Instruction::Expose(node.args.clone())
        }
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint(command_line(node))
        }
        "shell" => {
            no_flags(node)?;
            if !node.json_form || node.args.is_empty() {
                return Err(plan_error(
                    line,
                    "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                ));
            }
            Instruction::Shell(node.args.clone())
        }
        "stopsignal" => {
            no_flags(node)?;
            Instruction::StopSignal(single_arg(node, "STOPSIGNAL")?)
        }
        "maintainer" => {
            no_flags(node)?;
            Instruction::Maintainer(single_arg(node, "MAINTAINER")?)
        }
        "volume" => {
            no_flags(node)?;
            if node.args.is_empty() || node.args.iter().any(|v| v.trim().is_empty()) {
                return Err(plan_error(
                    line,
                    "VOLUME specified can not be an empty string",
                ));
            }
            Instruction::Volume(node.args.clone())
        }
        "onbuild" => {
            no_flags(node)?;
            let Some(next) = &node.next else {
                return Err(plan_error(line, "ONBUILD requires at least one argument"));
            };
            match next.keyword.as_str() {
                "onbuild" => {
                    return Err(plan_error(
                        line,
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                "from" | "maintainer" => {
                    return Err(plan_error(
                        line,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            next.keyword.to_uppercase()
                        ),
                    ));
                }
                _ => {}
            }
            // Validate the trigger now so a broken trigger fails where it is written.
            plan_instruction(next)?;
            Instruction::Onbuild(instruction_text(next))
        }
        "healthcheck" => plan_healthcheck(node)?,
        "copy" | "add" => plan_copy(node, keyword == "add")?,
        "run" => plan_run(node)?,
        other => {
            return Err(plan_error(
                line,
                format!("unknown instruction: {}", other.to_uppercase()),
            ));
        }
    })
}

fn plan_healthcheck(node: &Node) -> Result<Instruction, PlanError> {
    let line = node.start_line;
    let mut options = BTreeMap::new();
    for flag in &node.flags {
        let (name, value) = split_flag(flag);
        match name {
            "interval" | "timeout" | "start-period" | "start-interval" | "retries" => {
                let value =
                    value.ok_or_else(|| plan_error(line, format!("--{name} needs a value")))?;
                options.insert(name.to_owned(), value.to_owned());
            }
            other => return Err(plan_error(line, format!("unknown flag: --{other}"))),
        }
    }
    let Some(kind) = node.args.first() else {
        return Err(plan_error(
            line,
            "HEALTHCHECK requires an argument: NONE or CMD",
        ));
    };
    match kind.to_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 || !options.is_empty() {
                return Err(plan_error(
                    line,
                    "HEALTHCHECK NONE takes no other arguments",
                ));
            }
            Ok(Instruction::Healthcheck(HealthcheckInstruction::None))
        }
        "CMD" => {
            let rest = &node.args[1..];
            let command = if node.json_form {
                CommandLine::Exec(rest.to_vec())
            } else {
                CommandLine::Shell(rest.first().cloned().unwrap_or_default())
            };
            if matches!(&command, CommandLine::Shell(s) if s.trim().is_empty())
                || matches!(&command, CommandLine::Exec(v) if v.is_empty())
            {
                return Err(plan_error(line, "missing command after HEALTHCHECK CMD"));
            }
            Ok(Instruction::Healthcheck(HealthcheckInstruction::Cmd {
                command,
                options,
            }))
        }
        other => Err(plan_error(
            line,
            format!("unknown type `{other}` in HEALTHCHECK (try CMD)"),
        )),
    }
}

fn plan_copy(node: &Node, is_add: bool) -> Result<Instruction, PlanError> {
    let line = node.start_line;
    let what = if is_add { "ADD" } else { "COPY" };
    let mut copy = CopyInstruction {
        is_add,
        sources: Vec::new(),
        dest: String::new(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        checksum: None,
        parents: false,
        excludes: Vec::new(),
        heredocs: node.heredocs.clone(),
    };
    for flag in &node.flags {
        let (name, value) = split_flag(flag);
        let need = |v: Option<&str>| -> Result<String, PlanError> {
            v.map(str::to_owned)
                .ok_or_else(|| plan_error(line, format!("--{name} needs a value")))
        };
        match name {
            "from" if !is_add => copy.from = Some(need(value)?),
            "chown" => copy.chown = Some(need(value)?),
            "chmod" => copy.chmod = Some(need(value)?),
            "link" => copy.link = bool_flag(value, line, name)?,
            "parents" => copy.parents = bool_flag(value, line, name)?,
            "exclude" => copy.excludes.push(need(value)?),
            "checksum" if is_add => copy.checksum = Some(need(value)?),
            "keep-git-dir" if is_add => {
                bool_flag(value, line, name)?;
            }
            other => {
                return Err(plan_error(
                    line,
                    format!("unknown flag: --{other} (in {what})"),
                ));
            }
        }
    }
    let mut words = node.args.clone();
    if words.len() < 2 && copy.heredocs.is_empty() {
        return Err(plan_error(
            line,
            format!(
                "{what} requires at least two arguments, but only {} provided",
                words.len()
            ),
        ));
    }
    let Some(dest) = words.pop() else {
        return Err(plan_error(line, format!("{what} requires a destination")));
    };
    copy.dest = dest;
    copy.sources = words;
    Ok(Instruction::Copy(copy))
}

fn plan_run(node: &Node) -> Result<Instruction, PlanError> {
    let line = node.start_line;
    let mut run = RunInstruction {
        command: command_line(node),
        mounts: Vec::new(),
        network: None,
        security: None,
        sandbox: None,
        heredocs: node.heredocs.clone(),
    };
    for flag in &node.flags {
        let (name, value) = split_flag(flag);
        let value = value.map(str::to_owned);
        match name {
            "mount" => run
                .mounts
                .push(value.ok_or_else(|| plan_error(line, "--mount needs a value"))?),
            "network" => run.network = value,
            "security" => run.security = value,
            "sandbox" => run.sandbox = value,
            other => {
                return Err(plan_error(
                    line,
                    format!("unknown flag: --{other} (in RUN)"),
                ));
            }
        }
    }
    if matches!(&run.command, CommandLine::Shell(s) if s.trim().is_empty())
        || matches!(&run.command, CommandLine::Exec(v) if v.is_empty())
    {
        return Err(plan_error(line, "RUN requires a command"));
    }
    Ok(Instruction::Run(run))
}

/// Plans an ONBUILD trigger inherited from a base image, reporting errors at the FROM `line`.
pub fn plan_trigger(
    text: &str,
    line: usize,
    escape: char,
) -> Result<PlannedInstruction, PlanError> {
    let source = if escape == '\\' {
        text.to_owned()
    } else {
        format!("# escape={escape}\n{text}")
    };
    let parsed = super::parser::parse(&source).map_err(|e| {
        plan_error(
            line,
            format!(
                "invalid ONBUILD trigger `{text}` in the base image: {}",
                e.message
            ),
        )
    })?;
    let [node] = parsed.nodes.as_slice() else {
        return Err(plan_error(
            line,
            format!("invalid ONBUILD trigger `{text}` in the base image"),
        ));
    };
    let instruction = plan_instruction(node).map_err(|e| {
        plan_error(
            line,
            format!(
                "ONBUILD trigger `{text}` from the base image: {}",
                e.message
            ),
        )
    })?;
    Ok(PlannedInstruction {
        instruction,
        line,
        text: instruction_text(node),
    })
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

    /// The stages the target needs, in build order (dependencies first).
    pub fn needed_stages(&self) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut pending = vec![self.target];
        while let Some(index) = pending.pop() {
            if !needed.insert(index) {
                continue;
            }
            let stage = &self.stages[index];
            if let BaseRef::Stage(parent) = stage.base {
                pending.push(parent);
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
                pending.extend(
                    froms
                        .into_iter()
                        .filter_map(|from| self.stage_by_reference(from, index)),
                );
            }
        }
        needed.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::ast::Node;

    fn node(keyword: &str, flags: &[&str], args: &[&str], line: usize) -> Node {
        Node {
            keyword: keyword.to_owned(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            json_form: false,
            next: None,
            heredocs: Vec::new(),
            original: args.join(" "),
            start_line: line,
            end_line: line,
        }
    }

    fn file(nodes: Vec<Node>) -> Dockerfile {
        Dockerfile {
            escape: '\\',
            syntax: None,
            nodes,
        }
    }

    #[test]
    fn stages_targets_and_dependencies() {
        let f = file(vec![
            node("from", &[], &["scratch", "AS", "build"], 1),
            node("copy", &[], &["a", "/a"], 2),
            node("from", &[], &["scratch", "as", "unused"], 3),
            node("from", &[], &["build"], 4),
            node("copy", &["--from=build"], &["/a", "/b"], 5),
        ]);
        let plan = plan(&f, &PlanOptions::default()).unwrap();
        assert_eq!(plan.target, 2);
        assert_eq!(plan.stages[2].base, BaseRef::Stage(0));
        assert_eq!(plan.needed_stages(), vec![0, 2]);

        let options = PlanOptions {
            target: Some("unused".into()),
            ..Default::default()
        };
        assert_eq!(super::plan(&f, &options).unwrap().target, 1);
        let options = PlanOptions {
            target: Some("nope".into()),
            ..Default::default()
        };
        let err = super::plan(&f, &options).unwrap_err();
        assert!(
            err.message
                .contains("target stage `nope` could not be found"),
            "{err}"
        );

        // A stage a RUN bind-mounts is needed too.
        let f = file(vec![
            node("from", &[], &["scratch", "AS", "tools"], 1),
            node("from", &[], &["scratch", "AS", "other"], 2),
            node("from", &[], &["scratch"], 3),
            node(
                "run",
                &["--mount=type=bind,target=/t,FROM=tools"],
                &["true"],
                4,
            ),
        ]);
        assert_eq!(
            super::plan(&f, &PlanOptions::default())
                .unwrap()
                .needed_stages(),
            vec![0, 2]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (nodes, line, needle) in [
            (
                vec![node("copy", &[], &["a", "b"], 3)],
                3,
                "before the first FROM",
            ),
            (
                vec![
                    node("from", &[], &["scratch"], 1),
                    node("frobnicate", &[], &["x"], 2),
                ],
                2,
                "unknown instruction: FROBNICATE",
            ),
            (
                vec![
                    node("from", &[], &["scratch"], 1),
                    node("copy", &["--bogus=1"], &["a", "b"], 4),
                ],
                4,
                "unknown flag: --bogus",
            ),
            (
                vec![
                    node("from", &[], &["scratch"], 1),
                    node("copy", &[], &["a"], 5),
                ],
                5,
                "at least two arguments",
            ),
            (
                vec![
                    node("from", &[], &["scratch"], 1),
                    node("copy", &["--from=later"], &["a", "b"], 2),
                    node("from", &[], &["scratch", "AS", "later"], 3),
                ],
                2,
                "defined after",
            ),
            (
                vec![node("from", &[], &["a", "b"], 7)],
                7,
                "FROM requires either one argument",
            ),
        ] {
            let err = plan(&file(nodes), &PlanOptions::default()).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.message.contains(needle), "{err}");
        }
    }

    #[test]
    fn local_base_references() {
        for (text, want) in [
            (
                "oci:out/base:1.0",
                BaseRef::OciLayout {
                    dir: "out/base".into(),
                    reference: Some("1.0".into()),
                },
            ),
            (
                "oci:out/base",
                BaseRef::OciLayout {
                    dir: "out/base".into(),
                    reference: None,
                },
            ),
            (
                "oci-archive:b.tar:latest",
                BaseRef::OciArchive {
                    file: "b.tar".into(),
                    reference: Some("latest".into()),
                },
            ),
            (
                "python:3.11-alpine",
                BaseRef::Registry("python:3.11-alpine".into()),
            ),
            ("SCRATCH", BaseRef::Scratch),
        ] {
            assert_eq!(classify_base(text, &[], &BTreeMap::new()), want, "{text}");
        }
    }
}
