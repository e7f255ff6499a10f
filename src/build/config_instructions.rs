//! The instructions that change the image config (ARG, ENV, LABEL, MAINTAINER, USER, WORKDIR,
//! EXPOSE, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, VOLUME, ONBUILD), with Docker's
//! parsing of their values (ports, signals, durations).
//!
//! Each is one function from the stage's state and the instruction to an [`Applied`]. WORKDIR
//! is here too: it changes the config, and adds a layer only when it must create directories.

use std::collections::BTreeMap;

use super::executor::{Applied, Executor, StepFailure};
use super::stage::StageState;
use super::{BuildError, platform_args};
use crate::dockerfile::plan::{CommandLine, HealthcheckInstruction};
use crate::image::config::{EmptyObject, Healthcheck};
use crate::layer::{Diff, Entry, EntryKind, LayerPath, Metadata};
use crate::rootfs::{FsView, NodeKind};
use crate::steps::copy::{self as copy_step};

impl Executor<'_> {
    /// `word` expanded against `state`, a failure of this instruction when it does not expand.
    pub(super) fn expand(
        &self,
        state: &StageState,
        word: &str,
        failure: &StepFailure<'_>,
    ) -> Result<String, BuildError> {
        state.expand(word, self.plan.escape).map_err(failure.wrap())
    }

    pub(super) fn arg(
        &self,
        state: &mut StageState,
        words: &[(String, Option<String>)],
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        for (name, default) in words {
            let value = match self.options.build_args.get(name) {
                Some(given) => Some(given.clone()),
                None => match default {
                    Some(raw) => Some(self.expand(state, raw, failure)?),
                    None => self
                        .plan
                        .global_args
                        .get(name)
                        .cloned()
                        .flatten()
                        .or_else(|| {
                            platform_args(
                                &self.options.platforms.target,
                                &self.options.platforms.build,
                            )
                            .get(name)
                            .cloned()
                            .filter(|_| name.starts_with("BUILD"))
                        })
                        .or_else(|| self.target_platform_arg(state, name)),
                },
            };
            state.args.insert(name.clone(), value);
        }
        Ok(Applied::config())
    }

    /// TARGETPLATFORM and its parts: the platform asked for (as in BuildKit, also in a stage
    /// pinned to another by `FROM --platform=$BUILDPLATFORM`: that is how a cross-compiling
    /// stage learns its target), else the platform the stage is built for.
    fn target_platform_arg(&self, state: &StageState, name: &str) -> Option<String> {
        if !name.starts_with("TARGET") {
            return None;
        }
        let target = match self.options.platforms.requested() {
            Some(requested) => requested.clone(),
            None => state.platform(),
        };
        platform_args(&target, &self.options.platforms.build)
            .get(name)
            .cloned()
    }

    pub(super) fn env(
        &self,
        state: &mut StageState,
        pairs: &[(String, String)],
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        // Every pair is expanded against the state before the instruction, as BuildKit does:
        // `ENV a=two b=$a` gives `b` the earlier `a`.
        let pairs = self.expand_pairs(state, pairs, "ENV", failure)?;
        let history = pairs_history("ENV", &pairs);
        for (key, value) in pairs {
            state.set_env(key, value);
        }
        Ok(Applied::config_as(history))
    }

    pub(super) fn label(
        &self,
        state: &mut StageState,
        pairs: &[(String, String)],
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let pairs = self.expand_pairs(state, pairs, "LABEL", failure)?;
        let history = pairs_history("LABEL", &pairs);
        let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(pairs);
        Ok(Applied::config_as(history))
    }

    /// ENV's or LABEL's pairs, each key and value expanded against the state before the
    /// instruction; a key that expands to nothing is refused.
    fn expand_pairs(
        &self,
        state: &StageState,
        pairs: &[(String, String)],
        what: &str,
        failure: &StepFailure<'_>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let mut expanded = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let key = self.expand(state, key, failure)?;
            let value = self.expand(state, value, failure)?;
            if key.is_empty() {
                return Err(failure.msg(format!("{what} names can not be blank")));
            }
            expanded.push((key, value));
        }
        Ok(expanded)
    }

    pub(super) fn user(
        &self,
        state: &mut StageState,
        user: &str,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let user = self.expand(state, user, failure)?;
        let history = format!("USER {user}");
        state.config.config.user = Some(user);
        Ok(Applied::config_as(history))
    }

    pub(super) fn workdir(
        &mut self,
        state: &mut StageState,
        raw: &str,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let dir = self.expand(state, raw, failure)?;
        let absolute = if dir.starts_with('/') {
            dir
        } else {
            format!("{}/{}", state.workdir().trim_end_matches('/'), dir)
        };
        let path = LayerPath::new_clamped(&absolute).map_err(failure.err("invalid WORKDIR"))?;
        state.config.config.working_dir = Some(path.absolute());
        let history = format!("WORKDIR {}", path.absolute());
        let diff = self.workdir_diff(state, &path, failure)?;
        if diff.is_empty() {
            return Ok(Applied::config_as(history));
        }
        let outcome = self.commit_layer(state, diff, &history, failure)?;
        Ok(Applied::step(outcome))
    }

    /// The directories WORKDIR must create: the path and its missing ancestors, owned by the
    /// stage's USER as BuildKit creates them.
    fn workdir_diff(
        &self,
        state: &mut StageState,
        path: &LayerPath,
        failure: &StepFailure<'_>,
    ) -> Result<Diff, BuildError> {
        let mut diff = Diff::new();
        if path.is_root() {
            return Ok(diff);
        }
        let user = state.config.config.user.clone().filter(|u| !u.is_empty());
        let fs = state
            .fs(self.store, self.scratch.dir.path())
            .map_err(failure.wrap())?;
        let mut missing = Vec::new();
        for candidate in path.ancestors().into_iter().chain([path.clone()]) {
            match fs.stat(&candidate, true).map_err(failure.wrap())? {
                Some((_, node)) if node.kind == NodeKind::Dir => {}
                Some((resolved, _)) => {
                    return Err(failure.msg(format!(
                        "cannot create WORKDIR: `{}` exists and is not a directory",
                        resolved.absolute()
                    )));
                }
                None => missing.push(candidate),
            }
        }
        if missing.is_empty() {
            return Ok(diff);
        }
        let (uid, gid) = match &user {
            Some(user) => match copy_step::parse_chown(user, fs) {
                Ok(owner) => (owner.uid, owner.gid),
                // BuildKit creates the directories as root when the USER's name (or group)
                // is not in the stage's passwd (or group) file, or the file is missing.
                Err(
                    copy_step::CopyError::UnknownUser { .. }
                    | copy_step::CopyError::UnknownGroup { .. },
                ) => (0, 0),
                Err(e) => {
                    return Err(failure
                        .err(&format!("cannot create WORKDIR as USER `{user}`"))(
                        e
                    ));
                }
            },
            None => (0, 0),
        };
        for dir in missing {
            let resolved = fs.resolve(&dir, true).map_err(failure.wrap())?;
            let mut meta = Metadata::root_owned(0o755);
            meta.uid = uid;
            meta.gid = gid;
            diff.insert(
                resolved,
                Entry {
                    kind: EntryKind::Dir,
                    meta,
                },
            );
        }
        Ok(diff)
    }

    pub(super) fn expose(
        &self,
        state: &mut StageState,
        words: &[String],
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let mut shown = Vec::new();
        for word in words {
            let word = self.expand(state, word, failure)?;
            shown.extend(expand_port_spec(&word).map_err(|e| failure.msg(e))?);
        }
        let ports = state
            .config
            .config
            .exposed_ports
            .get_or_insert_with(BTreeMap::new);
        for port in &shown {
            ports.insert(port.clone(), EmptyObject {});
        }
        Ok(Applied::config_as(format!("EXPOSE {}", shown.join(" "))))
    }

    pub(super) fn stop_signal(
        &self,
        state: &mut StageState,
        signal: &str,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let signal = self.expand(state, signal, failure)?;
        validate_signal(&signal).map_err(|e| failure.msg(e))?;
        state.config.config.stop_signal = Some(signal);
        Ok(Applied::config())
    }

    pub(super) fn volume(
        &self,
        state: &mut StageState,
        words: &[String],
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        let mut expanded = Vec::new();
        for word in words {
            let word = self.expand(state, word, failure)?;
            if word.trim().is_empty() {
                return Err(failure.msg("VOLUME specified can not be an empty string"));
            }
            expanded.push(word);
        }
        let volumes = state
            .config
            .config
            .volumes
            .get_or_insert_with(BTreeMap::new);
        for word in expanded {
            volumes.insert(word, EmptyObject {});
        }
        Ok(Applied::config())
    }
}

/// The config-only instructions that need nothing but the stage's state.
impl StageState {
    pub(super) fn maintainer(&mut self, name: &str) -> Applied {
        self.config.author = Some(name.to_owned());
        Applied::config()
    }

    pub(super) fn cmd(&mut self, command: &CommandLine) -> Applied {
        self.config.config.cmd = Some(command_words(command, &self.shell));
        self.cmd_set = true;
        Applied::config()
    }

    /// ENTRYPOINT; it clears a CMD inherited from the base, not one set in this stage.
    pub(super) fn entrypoint(&mut self, command: &CommandLine) -> Applied {
        let words = command_words(command, &self.shell);
        self.config.config.entrypoint = if words.is_empty() { None } else { Some(words) };
        if !self.cmd_set {
            self.config.config.cmd = None;
        }
        Applied::config()
    }

    pub(super) fn shell(&mut self, words: &[String]) -> Applied {
        self.shell = words.to_vec();
        self.config.config.shell = Some(words.to_vec());
        Applied::config()
    }

    pub(super) fn healthcheck(
        &mut self,
        check: &HealthcheckInstruction,
        failure: &StepFailure<'_>,
    ) -> Result<Applied, BuildError> {
        self.config.config.healthcheck =
            Some(healthcheck_config(check).map_err(|e| failure.msg(e))?);
        Ok(Applied::config())
    }

    pub(super) fn onbuild(&mut self, trigger: &str) -> Applied {
        self.config
            .config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.to_owned());
        Applied::config()
    }
}

/// The history text of an ENV or LABEL: its expanded pairs as `key=value`.
fn pairs_history(what: &str, pairs: &[(String, String)]) -> String {
    let mut text = what.to_owned();
    for (key, value) in pairs {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(value);
    }
    text
}

fn command_words(command: &CommandLine, shell: &[String]) -> Vec<String> {
    match command {
        CommandLine::Exec(words) => words.clone(),
        CommandLine::Shell(text) => {
            let mut words = shell.to_vec();
            words.push(text.clone());
            words
        }
    }
}

/// Docker's EXPOSE: `80`, `80/tcp`, `53/UDP`, `8000-8002` (one entry per port).
fn expand_port_spec(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_lowercase()),
        None => (word, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto `{proto}` in EXPOSE `{word}`"));
    }
    let parse = |p: &str| -> Result<u32, String> {
        p.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .ok_or_else(|| format!("invalid port `{p}` in EXPOSE `{word}`"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if end < start {
        return Err(format!("invalid port range `{ports}` in EXPOSE `{word}`"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn validate_signal(signal: &str) -> Result<(), String> {
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
    ];
    if signal.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
}

/// Go's `time.ParseDuration` for the units HEALTHCHECK uses, in nanoseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration `{text}` (use units like 30s, 1m30s, 500ms)");
    if text == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as i64)
}

fn healthcheck_config(check: &HealthcheckInstruction) -> Result<Healthcheck, String> {
    match check {
        HealthcheckInstruction::None => Ok(Healthcheck {
            test: Some(vec!["NONE".to_owned()]),
            ..Healthcheck::default()
        }),
        HealthcheckInstruction::Cmd { command, options } => {
            let test = match command {
                CommandLine::Exec(words) => {
                    let mut test = vec!["CMD".to_owned()];
                    test.extend(words.iter().cloned());
                    test
                }
                CommandLine::Shell(text) => vec!["CMD-SHELL".to_owned(), text.clone()],
            };
            let mut config = Healthcheck {
                test: Some(test),
                ..Healthcheck::default()
            };
            for (name, value) in options {
                match name.as_str() {
                    "retries" => {
                        let retries: i64 = value.parse().map_err(|_| {
                            format!("invalid --retries `{value}`: expected an integer")
                        })?;
                        if retries < 0 {
                            return Err("--retries cannot be negative".to_owned());
                        }
                        config.retries = Some(retries).filter(|r| *r != 0);
                    }
                    duration_flag => {
                        let nanos = parse_duration(value)?;
                        if nanos != 0 && nanos < 1_000_000 {
                            return Err(format!("--{duration_flag} cannot be less than 1ms"));
                        }
                        let slot = match duration_flag {
                            "interval" => &mut config.interval,
                            "timeout" => &mut config.timeout,
                            "start-period" => &mut config.start_period,
                            _ => &mut config.start_interval,
                        };
                        *slot = Some(nanos).filter(|n| *n != 0);
                    }
                }
            }
            Ok(config)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_expand_like_docker() {
        assert_eq!(expand_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expand_port_spec("http").is_err());
        assert!(expand_port_spec("80/icmp").is_err());
    }

    #[test]
    fn durations_follow_go() {
        for (text, nanos) in [
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("0", 0),
            ("1.5s", 1_500_000_000),
        ] {
            assert_eq!(parse_duration(text).unwrap(), nanos, "{text}");
        }
        for bad in ["", "5", "3x", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "99"] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
    }
}
