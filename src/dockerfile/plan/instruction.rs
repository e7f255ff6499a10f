//! Each instruction's typed form: its flags checked against what the instruction takes (an
//! unknown flag is an error naming the line) and its arguments split as BuildKit splits them.

use std::collections::BTreeMap;

use super::{
    CommandLine, CopyInstruction, HealthcheckInstruction, Instruction, PlanError,
    PlannedInstruction, RunInstruction, plan_error,
};
use crate::dockerfile::ast::Node;
use crate::dockerfile::parser;

pub(super) fn split_flag(flag: &str) -> (&str, Option<&str>) {
    let body = flag.trim_start_matches("--");
    match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    }
}

pub(super) fn bool_flag(value: Option<&str>, line: usize, name: &str) -> Result<bool, PlanError> {
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(plan_error(
            line,
            format!("invalid value `{other}` for --{name}: expected true or false"),
        )),
    }
}

pub(super) fn parse_arg_words(node: &Node) -> Result<Vec<(String, Option<String>)>, PlanError> {
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

pub(super) fn key_value_triples(
    node: &Node,
    what: &str,
) -> Result<Vec<(String, String)>, PlanError> {
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

pub(super) fn command_line(node: &Node) -> CommandLine {
    if node.json_form {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

pub(super) fn single_arg(node: &Node, what: &str) -> Result<String, PlanError> {
    match node.args.as_slice() {
        [one] if !one.trim().is_empty() => Ok(one.clone()),
        _ => Err(plan_error(
            node.start_line,
            format!("{what} requires exactly one argument"),
        )),
    }
}

pub(super) fn no_flags(node: &Node) -> Result<(), PlanError> {
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
pub(super) fn instruction_text(node: &Node) -> String {
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

pub(super) fn plan_instruction(node: &Node) -> Result<Instruction, PlanError> {
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

pub(super) fn plan_healthcheck(node: &Node) -> Result<Instruction, PlanError> {
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

pub(super) fn plan_copy(node: &Node, is_add: bool) -> Result<Instruction, PlanError> {
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

pub(super) fn plan_run(node: &Node) -> Result<Instruction, PlanError> {
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
    let parsed = parser::parse(&source).map_err(|e| {
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
