//! The POSIX-shell subset kiln reads in RUN lines and in apk's package scripts, and the
//! getopt-style grammar of the tools those lines call.
//!
//! [`split_and_expand`] takes the shell-form text (line continuations already joined) and a
//! variable lookup, and returns its [`SimpleCommand`]s:
//!
//! 1. [`lex::split_commands`] splits the text into commands on unquoted `&&`, `;` and newlines,
//!    honouring single quotes, double quotes, backslash escapes and `#` comments, and refuses
//!    every other shell construct: `||`, pipes, `&`, redirections, subshells and groups,
//!    `$(...)`, backticks, `$((...))`, reserved words (`if`, `for`, ...) and `VAR=value`
//!    prefixes; words with unquoted glob characters are marked, for the caller to decide;
//! 2. each word is expanded as a POSIX shell would (quotes removed, `$VAR`/`${VAR...}` expanded
//!    and unquoted expansions split on whitespace) with
//!    [`crate::dockerfile::shell::expand_words`], the Dockerfile's own variable expansion, which
//!    is the same for the words of a RUN.
//!
//! [`getopt`] parses one command's options as the tools do (combined short options, attached
//! values, long options, `--`); each tool's table lives with the domain that emulates the tool
//! (`crate::users::args`, `crate::apk::args`). [`noop_reason`] names the builtins whose effect
//! on an image is nothing.

pub mod getopt;
pub mod lex;

pub use getopt::{Arg, Opt, getopt, operand_count, opt, parse_id};

use crate::dockerfile::shell::{ExpandError, expand_words};

/// Why a command line is not understood.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A shell construct or command kiln does not model.
    #[error("`{command}` is not understood: {reason}")]
    NotUnderstood {
        /// The command text.
        command: String,
        /// What is not understood.
        reason: String,
    },
    /// An option the tool has but kiln does not model, or that the tool does not have.
    #[error("`{command}`: unknown or unsupported option `{flag}` for `{tool}`")]
    UnknownFlag {
        /// The command text.
        command: String,
        /// The tool (`adduser`, `apk add`).
        tool: String,
        /// The flag as written.
        flag: String,
    },
    /// An option or operand is missing or malformed.
    #[error("`{command}`: {tool}: {message}")]
    Usage {
        /// The command text.
        command: String,
        /// The tool.
        tool: String,
        /// What is wrong, in the tool's words where it has them.
        message: String,
    },
    /// Variable expansion failed.
    #[error("`{command}`: failed to expand variables")]
    Expand {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ExpandError,
    },
}

/// One command of a script, its words expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The command as written, for messages.
    pub text: String,
    /// The expanded words; never empty.
    pub words: Vec<String>,
    /// Whether a word as written held unquoted glob characters (`*`, `?`, `[`).
    pub globbed: bool,
}

impl SimpleCommand {
    /// The program as written (`/bin/true`).
    pub fn program(&self) -> &str {
        &self.words[0]
    }

    /// The program's file name (`true` for `/bin/true`).
    pub fn base(&self) -> &str {
        let program = self.program();
        program.rsplit('/').next().unwrap_or(program)
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.words[1..]
    }
}

/// Splits `script` into commands and expands their words (see the module docs); commands
/// whose words all expand to nothing are dropped.
pub fn split_and_expand(
    script: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<SimpleCommand>, ShellError> {
    let mut out = Vec::new();
    for raw in lex::split_commands(script)? {
        let mut words = Vec::new();
        for word in &raw.words {
            let fields =
                expand_words(&word.text, lookup, '\\').map_err(|source| ShellError::Expand {
                    command: raw.text.clone(),
                    source,
                })?;
            words.extend(fields);
        }
        if words.is_empty() {
            continue;
        }
        out.push(SimpleCommand {
            globbed: raw.words.iter().any(|w| w.glob),
            text: raw.text,
            words,
        });
    }
    Ok(out)
}

/// Why `command` changes nothing in an image, when it is such a builtin: `true` and `:`
/// without arguments, `echo`, and `set` of shell options only.
pub fn noop_reason(command: &SimpleCommand) -> Option<String> {
    let args = command.args();
    match command.base() {
        "true" | ":" if args.is_empty() => Some(format!("`{}` does nothing", command.program())),
        "echo" => Some("`echo` only prints".to_owned()),
        "set" if args.iter().all(|a| is_shell_option(a)) && !args.is_empty() => {
            Some("shell options do not change the image".to_owned())
        }
        _ => None,
    }
}

/// `-e`, `-x`, `-eux`, `-o pipefail`, `+x`.
fn is_shell_option(arg: &str) -> bool {
    arg == "pipefail"
        || arg == "-o"
        || ((arg.starts_with('-') || arg.starts_with('+'))
            && arg.len() > 1
            && arg[1..].chars().all(|c| matches!(c, 'e' | 'u' | 'x' | 'o')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "PKGS").then(|| "curl  git".to_owned())
    }

    #[test]
    fn commands_split_on_and_semicolon_and_newline_with_words_expanded() {
        let commands = split_and_expand(
            "apk add $PKGS && echo 'a b' *.txt;\n  /bin/true # c && x",
            &lookup,
        )
        .expect("understood");
        let words: Vec<&[String]> = commands.iter().map(|c| c.words.as_slice()).collect();
        assert_eq!(
            words,
            [
                &["apk", "add", "curl", "git"][..],
                &["echo", "a b", "*.txt"],
                &["/bin/true"]
            ]
            .map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        );
        assert_eq!(commands[0].text, "apk add $PKGS");
        assert_eq!(
            commands.iter().map(|c| c.globbed).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(commands[2].base(), "true");
    }

    #[test]
    fn constructs_outside_the_subset_are_refused_by_name() {
        for (script, reason) in [
            ("a | b", "pipes"),
            ("a || b", "`||`"),
            ("a > f", "redirections"),
            ("X=1 a", "variable assignments"),
            ("if a; then b; fi", "shell keyword `if`"),
            ("a $(b)", "`$(...)`"),
            ("a &&", "empty command"),
        ] {
            match split_and_expand(script, &lookup) {
                Err(ShellError::NotUnderstood { reason: got, .. }) => {
                    assert!(got.contains(reason), "{script}: {got}")
                }
                other => panic!("{script}: {other:?}"),
            }
        }
    }

    #[test]
    fn builtins_without_effect_are_noops() {
        let reason = |script: &str| {
            let commands = split_and_expand(script, &lookup).expect("understood");
            noop_reason(&commands[0])
        };
        assert_eq!(reason(":").as_deref(), Some("`:` does nothing"));
        assert!(reason("set -eux").is_some());
        assert!(reason("echo hi").is_some());
        assert_eq!(reason("true 1"), None);
        assert_eq!(reason("set foo"), None);
    }

    #[test]
    fn getopt_permutes_and_refuses_unknown_options() {
        const TABLE: &[Opt] = &[
            opt('u', "uid", "uid", Arg::Required),
            opt('D', "", "d", Arg::None),
        ];
        let args: Vec<String> = ["app", "-Du1000", "--", "-x"].map(String::from).to_vec();
        let (opts, operands) = getopt("t", "tool", &args, TABLE).expect("parses");
        assert_eq!(opts, [("d", None), ("uid", Some("1000".to_owned()))]);
        assert_eq!(operands, ["app", "-x"]);
        let unknown = getopt("t", "tool", &["-z".to_owned()], TABLE).expect_err("unknown");
        assert!(matches!(unknown, ShellError::UnknownFlag { flag, .. } if flag == "-z"));
    }
}
