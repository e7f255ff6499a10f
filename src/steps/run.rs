//! The RUN recognizer: turns a RUN's shell text into typed [`NativeCommand`]s kiln can apply
//! without running a container, or says precisely which command it does not understand.
//!
//! Data enters as the shell-form text of one RUN (line continuations already joined by the
//! parser) plus a variable lookup (the stage's ENV and ARG values). [`recognize`] then:
//!
//! 1. splits the text into commands on unquoted `&&`, `;` and newlines, honouring single quotes,
//!    double quotes, backslash escapes and `#` comments, and refuses every other shell
//!    construct: `||`, pipes, `&`, redirections, subshells and groups, `$(...)`, backticks,
//!    `$((...))`, reserved words (`if`, `for`, ...), `VAR=value` prefixes and unquoted glob
//!    characters (outside the cache-cleaning `rm`);
//! 2. expands each word as a POSIX shell would (quotes removed, `$VAR`/`${VAR...}` expanded and
//!    unquoted expansions split on whitespace) with [`crate::dockerfile::shell::expand_words`];
//! 3. maps the words of each command to a [`NativeCommand`], parsing options the way the tool
//!    does (combined short options, attached values, long options, `--`) and refusing unknown
//!    flags by name.
//!
//! `&&` and `;` are treated alike: every recognized command succeeds or the native step fails,
//! so a `;`-separated command after a failure never runs either way.
//!
//! [`NativeCommand::Noop`] covers commands whose effect on the image is nothing: `true`, `:`,
//! `echo`, `set -e`-style shell options, and `rm -rf` of exactly the cache paths native steps
//! never write (`/var/cache/apk/*`, `/root/.cache/pip`, ...). That is exact when the lower
//! layers hold nothing there, which is how base images ship them.

use crate::apk::constraint::{ConstraintError, PackageConstraint};
use crate::dockerfile::shell::{ExpandError, expand_words};

/// busybox's `CONFIG_LAST_ID` on Alpine: the largest uid or gid `adduser -u`/`addgroup -g` take.
pub const BUSYBOX_LAST_ID: u32 = 256_000;

/// One command of a RUN that kiln applies natively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeCommand {
    /// busybox `addgroup`: create a group, or add a user to a group.
    AddGroup(AddGroupArgs),
    /// busybox `adduser` (creating a user; `adduser USER GROUP` becomes [`NativeCommand::AddGroup`]).
    AddUser(AddUserArgs),
    /// shadow's `groupadd`.
    GroupAdd(GroupAddArgs),
    /// shadow's `useradd`.
    UserAdd(UserAddArgs),
    /// shadow's `usermod -G` (with or without `-a`), the only usermod kiln computes.
    UserMod(UserModArgs),
    /// shadow's `groupdel GROUP`.
    GroupDel {
        /// The group to delete.
        group: String,
    },
    /// busybox `deluser USER`.
    DelUser {
        /// The login name.
        user: String,
    },
    /// busybox `delgroup GROUP` or `delgroup USER GROUP`.
    DelGroup(DelGroupArgs),
    /// `apk update`: refresh the package indexes.
    ApkUpdate,
    /// `apk upgrade`.
    ApkUpgrade {
        /// `-a`/`--available`: also downgrade/replace packages to match the repositories.
        available: bool,
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-l`/`--latest`: prefer the latest version over the pinned one.
        latest: bool,
    },
    /// `apk add`.
    ApkAdd {
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-u`/`--upgrade`: upgrade the named packages if already installed.
        upgrade: bool,
        /// `-t NAME`/`--virtual NAME`: group the packages under a virtual package.
        virtual_name: Option<String>,
        /// The packages asked for.
        packages: Vec<PackageConstraint>,
    },
    /// `apk del`.
    ApkDel {
        /// The package (or virtual package) names.
        packages: Vec<String>,
        /// `-r`/`--rdepends`: also remove packages that depend on them.
        rdepends: bool,
        /// `--purge`: also remove modified configuration files.
        purge: bool,
    },
    /// `pip install`, `pip3 install`, `python -m pip install` or `python3 -m pip install`.
    Pip {
        /// The program word as written (`pip`, `/venv/bin/pip`, `python3` for `-m pip`): which
        /// pip runs is decided from the image's PATH (see `crate::steps::pip::launcher_decision`).
        launcher: String,
        /// The raw arguments after `install`.
        args: Vec<String>,
    },
    /// A command with no effect on the image.
    Noop {
        /// Why it has none (shown in progress output).
        reason: String,
    },
    /// `rm -rf` of well-known package-cache paths (`/var/cache/apk/*`, `/root/.cache/pip`):
    /// native steps leave nothing there, but what the lower layers hold must still go.
    RemoveCache {
        /// The paths as written (a trailing `/*` means the directory's contents).
        paths: Vec<String>,
    },
}

/// Arguments of busybox `addgroup [-g GID] [-S] GROUP` or `addgroup USER GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddGroupArgs {
    /// The group to create, or to add `member` to.
    pub group: String,
    /// `-g GID`.
    pub gid: Option<u32>,
    /// `-S`: take the gid from the system range (100-999).
    pub system: bool,
    /// `addgroup USER GROUP`: the user to add to an existing group.
    pub member: Option<String>,
}

/// Arguments of busybox `adduser [OPTIONS] USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddUserArgs {
    /// The login name.
    pub user: String,
    /// `-h DIR`: home directory (default `/home/USER`).
    pub home: Option<String>,
    /// `-g GECOS`: the GECOS field (default `Linux User,,,`).
    pub gecos: Option<String>,
    /// `-s SHELL`: login shell (default root's shell; `/bin/false` with `-S`).
    pub shell: Option<String>,
    /// `-G GROUP`: primary group, which must exist (default: a new group named after the user;
    /// `nogroup` with `-S`).
    pub group: Option<String>,
    /// `-S`: system user (uid from 100-999; implies `-D`).
    pub system: bool,
    /// `-D`: no password (the account is locked: `!` in /etc/shadow).
    pub disabled_password: bool,
    /// `-H`: do not create the home directory.
    pub no_home: bool,
    /// `-u UID`.
    pub uid: Option<u32>,
    /// `-k SKEL`: skeleton directory (default `/etc/skel`).
    pub skel: Option<String>,
}

/// Arguments of shadow's `groupadd [-g GID] [-r] [-f] GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupAddArgs {
    /// The group to create.
    pub group: String,
    /// `-g GID`.
    pub gid: Option<u32>,
    /// `-r`: system group.
    pub system: bool,
    /// `-f`: succeed if the group exists (and drop `-g` if the gid is taken).
    pub force: bool,
}

/// Arguments of shadow's `useradd [OPTIONS] USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAddArgs {
    /// The login name.
    pub user: String,
    /// `-u UID`.
    pub uid: Option<u32>,
    /// `-g GROUP`: primary group name or number (must exist).
    pub group: Option<String>,
    /// `-G G1,G2`: supplementary groups.
    pub groups: Vec<String>,
    /// `-m` (`Some(true)`) or `-M` (`Some(false)`); `None` follows `CREATE_HOME` in login.defs.
    pub create_home: Option<bool>,
    /// `-d DIR`: home directory (default `HOME/USER` from /etc/default/useradd, `/home/USER`).
    pub home: Option<String>,
    /// `-s SHELL`.
    pub shell: Option<String>,
    /// `-r`: system account.
    pub system: bool,
    /// `-U` (`Some(true)`) or `-N` (`Some(false)`); `None` follows `USERGROUPS_ENAB`.
    pub user_group: Option<bool>,
    /// `-c COMMENT`: the GECOS field.
    pub comment: Option<String>,
    /// `-k SKEL`: the skeleton directory `-m` copies (default `SKEL` of
    /// /etc/default/useradd, else `/etc/skel`).
    pub skel: Option<String>,
    /// `-l`/`--no-log-init`: leave /var/log/faillog and /var/log/lastlog alone.
    pub no_log_init: bool,
}

/// Arguments of busybox `delgroup [USER] GROUP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelGroupArgs {
    /// The group to delete, or to remove `member` from.
    pub group: String,
    /// `delgroup USER GROUP`: the user to remove from the group's member list.
    pub member: Option<String>,
}

/// Arguments of shadow's `usermod [-a] -G G1,G2 USER`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserModArgs {
    /// The login name.
    pub user: String,
    /// `-G G1,G2`: the supplementary groups (names or numbers).
    pub groups: Vec<String>,
    /// `-a`: add to `groups`, keeping the others; without it the user leaves every group
    /// not listed.
    pub append: bool,
}

/// Why a RUN could not be recognized.
#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    /// A shell construct or command kiln does not apply natively.
    #[error(
        "RUN command `{command}` is not understood natively: {reason}; kiln applies apk, addgroup/adduser, groupadd/useradd, pip install and cache cleanup joined with `&&` or `;`"
    )]
    NotUnderstood {
        /// The command text.
        command: String,
        /// What is not understood.
        reason: String,
    },
    /// An option the tool has but kiln does not model, or that the tool does not have.
    #[error("RUN command `{command}`: unknown or unsupported option `{flag}` for `{tool}`")]
    UnknownFlag {
        /// The command text.
        command: String,
        /// The tool (`adduser`, `apk add`).
        tool: String,
        /// The flag as written.
        flag: String,
    },
    /// An option or operand is missing or malformed.
    #[error("RUN command `{command}`: {tool}: {message}")]
    Usage {
        /// The command text.
        command: String,
        /// The tool.
        tool: String,
        /// What is wrong, in the tool's words where it has them.
        message: String,
    },
    /// Variable expansion failed.
    #[error("RUN command `{command}`: failed to expand variables")]
    Expand {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ExpandError,
    },
    /// An `apk add` package spec is malformed.
    #[error("RUN command `{command}`: bad package spec")]
    Package {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ConstraintError,
    },
}

impl RecognizeError {
    /// Why the RUN goes to the sandbox instead, in a few words for the build output
    /// (`useradd --foo is not emulated`).
    pub fn sandbox_reason(&self) -> String {
        match self {
            RecognizeError::NotUnderstood { reason, .. } => reason.clone(),
            RecognizeError::UnknownFlag { tool, flag, .. } => {
                format!("{tool} {flag} is not emulated")
            }
            RecognizeError::Usage { tool, message, .. } => format!("{tool}: {message}"),
            RecognizeError::Expand { source, .. } => {
                format!("its words do not expand natively ({source})")
            }
            RecognizeError::Package { source, .. } => format!("apk package spec: {source}"),
        }
    }
}

/// One word as written, and whether it holds unquoted glob characters.
#[derive(Debug)]
struct RawWord {
    text: String,
    glob: bool,
}

/// One command's words, and its text for messages.
#[derive(Debug)]
struct RawCommand {
    words: Vec<RawWord>,
    text: String,
}

/// Splits `script` into commands and recognizes each (see the module docs).
pub fn recognize(
    script: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<NativeCommand>, RecognizeError> {
    let mut out = Vec::new();
    for raw in split_commands(script)? {
        let mut words = Vec::new();
        for word in &raw.words {
            let fields = expand_words(&word.text, lookup, '\\').map_err(|source| {
                RecognizeError::Expand {
                    command: raw.text.clone(),
                    source,
                }
            })?;
            words.extend(fields);
        }
        if words.is_empty() {
            continue;
        }
        let globbed = raw.words.iter().any(|w| w.glob);
        out.push(map_command(&raw.text, &words, globbed)?);
    }
    Ok(out)
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "select", "!", "{", "}", "[[", "]]", "in", "time",
];

/// Lexes `script` into commands (see the module docs for what is refused).
// The word/command macros reset state that the final expansion, at the end of input, never reads.
#[allow(unused_assignments)]
fn split_commands(script: &str) -> Result<Vec<RawCommand>, RecognizeError> {
    let chars: Vec<char> = script.chars().collect();
    let mut commands = Vec::new();
    let mut words: Vec<RawWord> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut glob = false;
    let mut start = 0;
    let mut i = 0;

    let segment = |from: usize, at: usize| -> String {
        // From the command start to the next separator after `at`, for messages.
        let mut end = at.min(chars.len());
        while end < chars.len() && !matches!(chars[end], ';' | '\n') {
            if chars[end] == '&' && chars.get(end + 1) == Some(&'&') {
                break;
            }
            end += 1;
        }
        chars[from.min(end)..end]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned()
    };
    let refuse = |from: usize, at: usize, reason: &str| RecognizeError::NotUnderstood {
        command: segment(from, at),
        reason: reason.to_owned(),
    };

    macro_rules! end_word {
        () => {
            if in_word {
                words.push(RawWord {
                    text: std::mem::take(&mut word),
                    glob,
                });
                in_word = false;
                glob = false;
            }
        };
    }
    // The separator that ended the previous command: after `&&` a command must follow
    // (newlines may come first).
    let mut after_and = false;
    macro_rules! end_command {
        ($at:expr, $sep:expr) => {{
            end_word!();
            let sep: Sep = $sep;
            let text: String = chars[start..$at]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned();
            if words.is_empty() {
                let dangling = match sep {
                    Sep::Newline => false,
                    Sep::And | Sep::Semi => true,
                    Sep::End => after_and,
                };
                if dangling {
                    return Err(refuse(start, $at, "empty command before a separator"));
                }
            } else {
                after_and = sep == Sep::And;
                if let Some(first) = words.first() {
                    if RESERVED.contains(&first.text.as_str()) {
                        return Err(refuse(
                            start,
                            $at,
                            &format!("shell keyword `{}`", first.text),
                        ));
                    }
                    if is_assignment(&first.text) {
                        return Err(refuse(
                            start,
                            $at,
                            "variable assignments (`NAME=value`) are not supported",
                        ));
                    }
                }
                commands.push(RawCommand {
                    words: std::mem::take(&mut words),
                    text,
                });
            }
        }};
    }

    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' => {
                if c == ';' && chars.get(i + 1) == Some(&';') {
                    return Err(refuse(start, i, "`;;` outside `case`"));
                }
                end_command!(i, if c == ';' { Sep::Semi } else { Sep::Newline });
                i += 1;
                start = i;
            }
            '&' => {
                if chars.get(i + 1) == Some(&'&') {
                    end_command!(i, Sep::And);
                    i += 2;
                    start = i;
                } else {
                    return Err(refuse(start, i, "background jobs (`&`) are not supported"));
                }
            }
            '|' => {
                let reason = if chars.get(i + 1) == Some(&'|') {
                    "`||` is not supported"
                } else {
                    "pipes (`|`) are not supported"
                };
                return Err(refuse(start, i, reason));
            }
            '>' | '<' => return Err(refuse(start, i, "redirections are not supported")),
            '(' | ')' => {
                return Err(refuse(start, i, "subshells (`( ... )`) are not supported"));
            }
            '`' => {
                return Err(refuse(
                    start,
                    i,
                    "command substitution (backticks) is not supported",
                ));
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&next) => {
                        word.push('\\');
                        word.push(next);
                        in_word = true;
                    }
                    None => {
                        word.push('\\');
                        in_word = true;
                    }
                }
                i += 2;
            }
            '\'' => {
                let close = (i + 1..chars.len()).find(|&j| chars[j] == '\'');
                let Some(close) = close else {
                    return Err(refuse(start, i, "unterminated single quote"));
                };
                word.extend(&chars[i..=close]);
                in_word = true;
                i = close + 1;
            }
            '"' => {
                word.push('"');
                in_word = true;
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(refuse(start, i, "unterminated double quote"));
                    };
                    match d {
                        '"' => {
                            word.push('"');
                            i += 1;
                            break;
                        }
                        '\\' => {
                            word.push('\\');
                            if let Some(&next) = chars.get(i + 1) {
                                word.push(next);
                            }
                            i += 2;
                        }
                        '`' => {
                            return Err(refuse(
                                start,
                                i,
                                "command substitution (backticks) is not supported",
                            ));
                        }
                        '$' if chars.get(i + 1) == Some(&'(') => {
                            return Err(refuse(
                                start,
                                i,
                                "command substitution (`$(...)`) is not supported",
                            ));
                        }
                        other => {
                            word.push(other);
                            i += 1;
                        }
                    }
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                return Err(refuse(
                    start,
                    i,
                    "command substitution (`$(...)`) is not supported",
                ));
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                // Copy `${...}` whole, so operators inside it are not taken as shell syntax.
                let close = (i + 2..chars.len()).find(|&j| chars[j] == '}');
                let Some(close) = close else {
                    return Err(refuse(start, i, "unterminated `${`"));
                };
                word.extend(&chars[i..=close]);
                in_word = true;
                i = close + 1;
            }
            '*' | '?' | '[' => {
                glob = true;
                word.push(c);
                in_word = true;
                i += 1;
            }
            '~' if !in_word => {
                return Err(refuse(start, i, "tilde expansion (`~`) is not supported"));
            }
            other => {
                word.push(other);
                in_word = true;
                i += 1;
            }
        }
    }
    end_command!(chars.len(), Sep::End);
    Ok(commands)
}

/// What ended a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sep {
    And,
    Semi,
    Newline,
    End,
}

/// `NAME=...` with a valid shell variable name.
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Cache paths native steps never write, whose removal changes nothing (`rm -rf PATH`).
const CACHE_PATHS: &[&str] = &[
    "/var/cache/apk",
    "/var/cache/apk/",
    "/var/cache/apk/*",
    "/root/.cache",
    "/root/.cache/",
    "/root/.cache/*",
    "/root/.cache/pip",
    "/root/.cache/pip/",
    "/root/.cache/pip/*",
    "/etc/apk/cache",
    "/etc/apk/cache/*",
];

/// Maps one expanded command to its [`NativeCommand`].
fn map_command(
    text: &str,
    words: &[String],
    globbed: bool,
) -> Result<NativeCommand, RecognizeError> {
    let program = words[0].as_str();
    let args = &words[1..];
    let not_understood = |reason: String| RecognizeError::NotUnderstood {
        command: text.to_owned(),
        reason,
    };
    if globbed && program != "rm" && program != "echo" {
        return Err(not_understood(
            "unquoted glob characters (`*`, `?`, `[`) are not supported here".to_owned(),
        ));
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    match base {
        "true" | ":" if args.is_empty() => Ok(NativeCommand::Noop {
            reason: format!("`{program}` does nothing"),
        }),
        "echo" => Ok(NativeCommand::Noop {
            reason: "`echo` only prints".to_owned(),
        }),
        "set" if args.iter().all(|a| is_shell_option(a)) && !args.is_empty() => {
            Ok(NativeCommand::Noop {
                reason: "shell options do not change the image".to_owned(),
            })
        }
        "rm" => recognize_rm(text, args),
        "addgroup" => recognize_addgroup(text, args),
        "adduser" => recognize_adduser(text, args),
        "groupadd" => recognize_groupadd(text, args),
        "useradd" => recognize_useradd(text, args),
        // The other user and group tools run for real: chpasswd hashes with a random salt,
        // and the rest are not emulated.
        "usermod" => recognize_usermod(text, args),
        "deluser" => {
            let (_, operands) = getopt(text, "deluser", args, &[])?;
            operand_count(text, "deluser", &operands, 1..=1, "deluser USER")?;
            Ok(NativeCommand::DelUser {
                user: operands[0].clone(),
            })
        }
        "delgroup" => {
            let (_, operands) = getopt(text, "delgroup", args, &[])?;
            operand_count(text, "delgroup", &operands, 1..=2, "delgroup [USER] GROUP")?;
            Ok(NativeCommand::DelGroup(match operands.as_slice() {
                [user, group] => DelGroupArgs {
                    group: group.clone(),
                    member: Some(user.clone()),
                },
                _ => DelGroupArgs {
                    group: operands[0].clone(),
                    member: None,
                },
            }))
        }
        "groupdel" => {
            let (_, operands) = getopt(text, "groupdel", args, &[])?;
            operand_count(
                text,
                "groupdel",
                &operands,
                1..=1,
                "groupdel [options] GROUP",
            )?;
            Ok(NativeCommand::GroupDel {
                group: operands[0].clone(),
            })
        }
        "userdel" | "groupmod" | "chpasswd" | "gpasswd" | "passwd" | "chage" | "chsh" | "chfn" => {
            Err(not_understood(format!("`{base}` is not emulated")))
        }
        "apk" => recognize_apk(text, args),
        "pip" | "pip3" => recognize_pip(text, program, args),
        "python" | "python3" if args.first().map(String::as_str) == Some("-m") => {
            match args.get(1).map(String::as_str) {
                Some("pip") => recognize_pip(text, program, &args[2..]),
                _ => Err(not_understood(format!(
                    "`{program} -m` is only understood with `pip install`"
                ))),
            }
        }
        _ => Err(not_understood(format!(
            "`{program}` is not a known command"
        ))),
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

fn recognize_rm(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    let mut recursive = false;
    let mut force = false;
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
            for c in arg[1..].chars() {
                match c {
                    'r' | 'R' => recursive = true,
                    'f' => force = true,
                    _ => {
                        return Err(RecognizeError::UnknownFlag {
                            command: text.to_owned(),
                            tool: "rm".to_owned(),
                            flag: format!("-{c}"),
                        });
                    }
                }
            }
        } else {
            paths.push(arg.as_str());
        }
    }
    let unknown: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !CACHE_PATHS.contains(p))
        .collect();
    if !recursive || !force || paths.is_empty() || !unknown.is_empty() {
        return Err(RecognizeError::NotUnderstood {
            command: text.to_owned(),
            reason: format!(
                "only `rm -rf` of package-manager caches ({}) is understood{}",
                CACHE_PATHS.join(", "),
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!(", not `{}`", unknown.join(" "))
                }
            ),
        });
    }
    Ok(NativeCommand::RemoveCache {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// How an option takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
}

/// One option a tool accepts: short letter (or `'\0'`), long name (or `""`), a key, and
/// whether it takes a value.
struct Opt {
    short: char,
    long: &'static str,
    key: &'static str,
    arg: Arg,
}

const fn opt(short: char, long: &'static str, key: &'static str, arg: Arg) -> Opt {
    Opt {
        short,
        long,
        key,
        arg,
    }
}

/// getopt_long-style parsing with permutation (options may follow operands, as with musl and
/// glibc), combined short options (`-DH`), attached values (`-u1000`, `--uid=1000`) and `--`.
/// Returns (key, value) pairs in order and the operands.
#[allow(clippy::type_complexity)]
fn getopt(
    text: &str,
    tool: &str,
    args: &[String],
    table: &[Opt],
) -> Result<(Vec<(&'static str, Option<String>)>, Vec<String>), RecognizeError> {
    let unknown = |flag: &str| RecognizeError::UnknownFlag {
        command: text.to_owned(),
        tool: tool.to_owned(),
        flag: flag.to_owned(),
    };
    let missing = |flag: &str| RecognizeError::Usage {
        command: text.to_owned(),
        tool: tool.to_owned(),
        message: format!("option requires an argument: {flag}"),
    };
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let Some(o) = table.iter().find(|o| !o.long.is_empty() && o.long == name) else {
                return Err(unknown(arg));
            };
            let value = match (o.arg, attached) {
                (Arg::None, None) => None,
                (Arg::None, Some(_)) => return Err(unknown(arg)),
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    let v = args.get(i).cloned().ok_or_else(|| missing(arg))?;
                    i += 1;
                    Some(v)
                }
            };
            opts.push((o.key, value));
        } else if arg.len() > 1 && arg.starts_with('-') {
            let letters: Vec<char> = arg[1..].chars().collect();
            let mut k = 0;
            while k < letters.len() {
                let c = letters[k];
                k += 1;
                let Some(o) = table.iter().find(|o| o.short == c) else {
                    return Err(unknown(&format!("-{c}")));
                };
                if o.arg == Arg::Required {
                    let rest: String = letters[k..].iter().collect();
                    let value = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| missing(&format!("-{c}")))?;
                        i += 1;
                        v
                    } else {
                        rest
                    };
                    opts.push((o.key, Some(value)));
                    break;
                }
                opts.push((o.key, None));
            }
        } else {
            operands.push(arg.clone());
        }
    }
    Ok((opts, operands))
}

/// Parses a decimal id in `0..=max` with busybox's messages.
fn parse_id(text: &str, tool: &str, value: &str, max: u32) -> Result<u32, RecognizeError> {
    let usage = |message: String| RecognizeError::Usage {
        command: text.to_owned(),
        tool: tool.to_owned(),
        message,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage(format!("invalid number '{value}'")));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= u64::from(max) => Ok(n as u32),
        _ => Err(usage(format!("number {value} is not in 0..{max} range"))),
    }
}

fn operand_count(
    text: &str,
    tool: &str,
    operands: &[String],
    range: std::ops::RangeInclusive<usize>,
    usage: &str,
) -> Result<(), RecognizeError> {
    if range.contains(&operands.len()) {
        Ok(())
    } else {
        Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: tool.to_owned(),
            message: format!("usage: {usage}"),
        })
    }
}

fn recognize_addgroup(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('g', "gid", "gid", Arg::Required),
        opt('S', "system", "system", Arg::None),
    ];
    let (opts, operands) = getopt(text, "addgroup", args, TABLE)?;
    operand_count(
        text,
        "addgroup",
        &operands,
        1..=2,
        "addgroup [-g GID] [-S] [USER] GROUP",
    )?;
    let mut out = AddGroupArgs::default();
    for (key, value) in opts {
        match key {
            "gid" => {
                out.gid = Some(parse_id(
                    text,
                    "addgroup",
                    value.as_deref().unwrap_or(""),
                    BUSYBOX_LAST_ID,
                )?)
            }
            _ => out.system = true,
        }
    }
    if let [user, group] = operands.as_slice() {
        if out.gid.is_some() {
            return Err(RecognizeError::Usage {
                command: text.to_owned(),
                tool: "addgroup".to_owned(),
                message: "`-g` cannot be used when adding a user to a group".to_owned(),
            });
        }
        out.member = Some(user.clone());
        out.group = group.clone();
    } else {
        out.group = operands[0].clone();
    }
    Ok(NativeCommand::AddGroup(out))
}

fn recognize_adduser(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('h', "home", "home", Arg::Required),
        opt('g', "gecos", "gecos", Arg::Required),
        opt('s', "shell", "shell", Arg::Required),
        opt('G', "ingroup", "group", Arg::Required),
        opt('D', "disabled-password", "nopass", Arg::None),
        opt('\0', "empty-password", "nopass", Arg::None),
        opt('S', "system", "system", Arg::None),
        opt('H', "no-create-home", "nohome", Arg::None),
        opt('u', "uid", "uid", Arg::Required),
        opt('k', "skel", "skel", Arg::Required),
    ];
    let (opts, operands) = getopt(text, "adduser", args, TABLE)?;
    operand_count(
        text,
        "adduser",
        &operands,
        1..=2,
        "adduser [OPTIONS] USER [GROUP]",
    )?;
    if opts.is_empty() {
        if let [user, group] = operands.as_slice() {
            // busybox runs `addgroup -- USER GROUP`.
            return Ok(NativeCommand::AddGroup(AddGroupArgs {
                group: group.clone(),
                gid: None,
                system: false,
                member: Some(user.clone()),
            }));
        }
    } else if operands.len() == 2 {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "adduser".to_owned(),
            message: format!(
                "a second operand (`{}`) is only understood without options (`adduser USER GROUP`)",
                operands[1]
            ),
        });
    }
    let mut out = AddUserArgs {
        user: operands[0].clone(),
        ..AddUserArgs::default()
    };
    for (key, value) in opts {
        match (key, value) {
            ("home", v) => out.home = v,
            ("gecos", v) => out.gecos = v,
            ("shell", v) => out.shell = v,
            ("group", v) => out.group = v,
            ("skel", v) => out.skel = v,
            ("uid", v) => {
                out.uid = Some(parse_id(
                    text,
                    "adduser",
                    v.as_deref().unwrap_or(""),
                    BUSYBOX_LAST_ID,
                )?)
            }
            ("nopass", _) => out.disabled_password = true,
            ("system", _) => out.system = true,
            (_, _) => out.no_home = true,
        }
    }
    if out.system {
        out.disabled_password = true;
    }
    if !out.disabled_password {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "adduser".to_owned(),
            message: "without -D, adduser asks for a password interactively, which fails in a build; add -D".to_owned(),
        });
    }
    Ok(NativeCommand::AddUser(out))
}

fn recognize_groupadd(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('g', "gid", "gid", Arg::Required),
        opt('r', "system", "system", Arg::None),
        opt('f', "force", "force", Arg::None),
    ];
    let (opts, operands) = getopt(text, "groupadd", args, TABLE)?;
    operand_count(
        text,
        "groupadd",
        &operands,
        1..=1,
        "groupadd [options] GROUP",
    )?;
    let mut out = GroupAddArgs {
        group: operands[0].clone(),
        ..GroupAddArgs::default()
    };
    for (key, value) in opts {
        match key {
            "gid" => {
                out.gid = Some(parse_id(
                    text,
                    "groupadd",
                    value.as_deref().unwrap_or(""),
                    u32::MAX - 1,
                )?)
            }
            "system" => out.system = true,
            _ => out.force = true,
        }
    }
    Ok(NativeCommand::GroupAdd(out))
}

fn recognize_useradd(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('u', "uid", "uid", Arg::Required),
        opt('g', "gid", "gid", Arg::Required),
        opt('G', "groups", "groups", Arg::Required),
        opt('m', "create-home", "m", Arg::None),
        opt('M', "no-create-home", "M", Arg::None),
        opt('d', "home-dir", "home", Arg::Required),
        opt('s', "shell", "shell", Arg::Required),
        opt('r', "system", "system", Arg::None),
        opt('N', "no-user-group", "N", Arg::None),
        opt('U', "user-group", "U", Arg::None),
        opt('c', "comment", "comment", Arg::Required),
        opt('k', "skel", "skel", Arg::Required),
        opt('l', "no-log-init", "no-log-init", Arg::None),
    ];
    let (opts, operands) = getopt(text, "useradd", args, TABLE)?;
    operand_count(text, "useradd", &operands, 1..=1, "useradd [options] LOGIN")?;
    let mut out = UserAddArgs {
        user: operands[0].clone(),
        ..UserAddArgs::default()
    };
    for (key, value) in opts {
        match (key, value) {
            ("uid", v) => {
                out.uid = Some(parse_id(
                    text,
                    "useradd",
                    v.as_deref().unwrap_or(""),
                    u32::MAX - 1,
                )?)
            }
            ("gid", v) => out.group = v,
            ("groups", v) => {
                out.groups = v
                    .unwrap_or_default()
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            ("m", _) => out.create_home = Some(true),
            ("M", _) => out.create_home = Some(false),
            ("home", v) => out.home = v,
            ("shell", v) => out.shell = v,
            ("system", _) => out.system = true,
            ("N", _) => out.user_group = Some(false),
            ("U", _) => out.user_group = Some(true),
            ("skel", v) => out.skel = v,
            ("no-log-init", _) => out.no_log_init = true,
            (_, v) => out.comment = v,
        }
    }
    if out.skel.is_some() && out.create_home != Some(true) {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "useradd".to_owned(),
            message: "-k flag is only allowed with -m flag".to_owned(),
        });
    }
    if out.user_group == Some(true) && out.group.is_some() {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "useradd".to_owned(),
            message: "options -U and -g conflict".to_owned(),
        });
    }
    Ok(NativeCommand::UserAdd(out))
}

fn recognize_usermod(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('a', "append", "append", Arg::None),
        opt('G', "groups", "groups", Arg::Required),
    ];
    let (opts, operands) = getopt(text, "usermod", args, TABLE)?;
    operand_count(text, "usermod", &operands, 1..=1, "usermod [options] LOGIN")?;
    let mut out = UserModArgs {
        user: operands[0].clone(),
        ..UserModArgs::default()
    };
    let mut groups_given = false;
    for (key, value) in opts {
        match key {
            "append" => out.append = true,
            _ => {
                groups_given = true;
                out.groups = value
                    .unwrap_or_default()
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    if !groups_given {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "usermod".to_owned(),
            message: if out.append {
                "-a flag is ONLY allowed with the -G flag".to_owned()
            } else {
                "no changes".to_owned()
            },
        });
    }
    Ok(NativeCommand::UserMod(out))
}

fn recognize_apk(text: &str, args: &[String]) -> Result<NativeCommand, RecognizeError> {
    const TABLE: &[Opt] = &[
        opt('\0', "no-cache", "no-cache", Arg::None),
        opt('U', "update-cache", "update-cache", Arg::None),
        opt('q', "quiet", "quiet", Arg::None),
        opt('v', "verbose", "verbose", Arg::None),
        opt('\0', "no-progress", "quiet", Arg::None),
        opt('\0', "progress", "quiet", Arg::None),
        opt('t', "virtual", "virtual", Arg::Required),
        opt('a', "available", "available", Arg::None),
        opt('u', "upgrade", "upgrade", Arg::None),
        opt('l', "latest", "latest", Arg::None),
        opt('r', "rdepends", "rdepends", Arg::None),
        opt('\0', "purge", "purge", Arg::None),
    ];
    let (opts, operands) = getopt(text, "apk", args, TABLE)?;
    let Some((applet, rest)) = operands.split_first() else {
        return Err(RecognizeError::Usage {
            command: text.to_owned(),
            tool: "apk".to_owned(),
            message: "no applet given (add, del, update, upgrade)".to_owned(),
        });
    };
    let allowed: &[&str] = match applet.as_str() {
        "update" => &["no-cache", "update-cache", "quiet", "verbose"],
        "upgrade" => &[
            "no-cache",
            "update-cache",
            "quiet",
            "verbose",
            "available",
            "latest",
        ],
        "add" => &[
            "no-cache",
            "update-cache",
            "quiet",
            "verbose",
            "virtual",
            "upgrade",
        ],
        "del" => &["no-cache", "quiet", "verbose", "rdepends", "purge"],
        other => {
            return Err(RecognizeError::NotUnderstood {
                command: text.to_owned(),
                reason: format!("`apk {other}` is not understood (only add, del, update, upgrade)"),
            });
        }
    };
    let tool = format!("apk {applet}");
    let mut set = std::collections::BTreeMap::new();
    for (key, value) in opts {
        if !allowed.contains(&key) {
            let flag = TABLE
                .iter()
                .find(|o| o.key == key)
                .map(|o| format!("--{}", o.long))
                .unwrap_or_else(|| key.to_owned());
            return Err(RecognizeError::UnknownFlag {
                command: text.to_owned(),
                tool,
                flag,
            });
        }
        set.insert(key, value);
    }
    let has = |key: &str| set.contains_key(key);
    let no_operands = |what: &str| -> Result<(), RecognizeError> {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(RecognizeError::Usage {
                command: text.to_owned(),
                tool: tool.clone(),
                message: format!("{what} takes no package names (got `{}`)", rest.join(" ")),
            })
        }
    };
    match applet.as_str() {
        "update" => {
            no_operands("apk update")?;
            Ok(NativeCommand::ApkUpdate)
        }
        "upgrade" => {
            no_operands("apk upgrade (of named packages)")?;
            Ok(NativeCommand::ApkUpgrade {
                available: has("available"),
                no_cache: has("no-cache"),
                update_cache: has("update-cache"),
                latest: has("latest"),
            })
        }
        "add" => {
            if rest.is_empty() && !has("virtual") {
                return Err(RecognizeError::Usage {
                    command: text.to_owned(),
                    tool,
                    message: "no packages given".to_owned(),
                });
            }
            let mut packages = Vec::new();
            for spec in rest {
                if spec.ends_with(".apk") || spec.starts_with("./") || spec.starts_with("../") {
                    return Err(RecognizeError::NotUnderstood {
                        command: text.to_owned(),
                        reason: format!("installing the local package file `{spec}`"),
                    });
                }
                packages.push(PackageConstraint::parse(spec).map_err(|source| {
                    RecognizeError::Package {
                        command: text.to_owned(),
                        source,
                    }
                })?);
            }
            Ok(NativeCommand::ApkAdd {
                no_cache: has("no-cache"),
                update_cache: has("update-cache"),
                upgrade: has("upgrade"),
                virtual_name: set.get("virtual").cloned().flatten(),
                packages,
            })
        }
        _ => {
            if rest.is_empty() {
                return Err(RecognizeError::Usage {
                    command: text.to_owned(),
                    tool,
                    message: "no packages given".to_owned(),
                });
            }
            Ok(NativeCommand::ApkDel {
                packages: rest.to_vec(),
                rdepends: has("rdepends"),
                purge: has("purge"),
            })
        }
    }
}

fn recognize_pip(
    text: &str,
    launcher: &str,
    args: &[String],
) -> Result<NativeCommand, RecognizeError> {
    match args.split_first() {
        Some((sub, rest)) if sub == "install" => Ok(NativeCommand::Pip {
            launcher: launcher.to_owned(),
            args: rest.to_vec(),
        }),
        _ => Err(RecognizeError::NotUnderstood {
            command: text.to_owned(),
            reason: "only `pip install` is understood".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "APP_USER" => Some("appuser".to_owned()),
            "UID" => Some("1000".to_owned()),
            "PKGS" => Some("curl  git".to_owned()),
            _ => None,
        }
    }

    fn ok(script: &str) -> Vec<NativeCommand> {
        recognize(script, &env).unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn err(script: &str) -> String {
        match recognize(script, &env) {
            Ok(cmds) => panic!("{script}: expected an error, got {cmds:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn group(group: &str, gid: Option<u32>, system: bool, member: Option<&str>) -> NativeCommand {
        NativeCommand::AddGroup(AddGroupArgs {
            group: group.to_owned(),
            gid,
            system,
            member: member.map(str::to_owned),
        })
    }

    fn user(name: &str, edit: impl FnOnce(&mut AddUserArgs)) -> NativeCommand {
        let mut args = AddUserArgs {
            user: name.to_owned(),
            disabled_password: true,
            ..AddUserArgs::default()
        };
        edit(&mut args);
        NativeCommand::AddUser(args)
    }

    fn pkgs(specs: &[&str]) -> Vec<PackageConstraint> {
        specs
            .iter()
            .map(|s| PackageConstraint::parse(s).expect("valid spec"))
            .collect()
    }

    fn pip(args: &[&str]) -> NativeCommand {
        pip_via("pip", args)
    }

    fn pip_via(launcher: &str, args: &[&str]) -> NativeCommand {
        NativeCommand::Pip {
            launcher: launcher.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn upgrade() -> NativeCommand {
        NativeCommand::ApkUpgrade {
            available: false,
            no_cache: false,
            update_cache: false,
            latest: false,
        }
    }

    fn add(no_cache: bool, virtual_name: Option<&str>, specs: &[&str]) -> NativeCommand {
        NativeCommand::ApkAdd {
            no_cache,
            update_cache: false,
            upgrade: false,
            virtual_name: virtual_name.map(str::to_owned),
            packages: pkgs(specs),
        }
    }

    fn noop(script: &str) -> bool {
        matches!(
            ok(script).as_slice(),
            [NativeCommand::Noop { .. } | NativeCommand::RemoveCache { .. }]
        )
    }

    #[test]
    fn seed_lines() {
        assert_eq!(
            ok("addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser"),
            [
                group("appuser", Some(1000), false, None),
                user("appuser", |a| {
                    a.uid = Some(1000);
                    a.group = Some("appuser".into())
                }),
            ]
        );
        let cmds = ok("apk update && apk upgrade && rm -rf /var/cache/apk/*");
        assert_eq!(cmds[..2], [NativeCommand::ApkUpdate, upgrade()]);
        assert_eq!(
            cmds[2],
            NativeCommand::RemoveCache {
                paths: vec!["/var/cache/apk/*".to_owned()]
            }
        );
        assert_eq!(
            ok("pip install --no-cache-dir --user -r requirements.txt"),
            [pip(&["--no-cache-dir", "--user", "-r", "requirements.txt"])]
        );
    }

    #[test]
    fn recognized_table() {
        for (script, want) in [
            ("addgroup -S web", vec![group("web", None, true, None)]),
            (
                "addgroup -g1000 app",
                vec![group("app", Some(1000), false, None)],
            ),
            (
                "addgroup --gid=7 app",
                vec![group("app", Some(7), false, None)],
            ),
            (
                "addgroup appuser wheel",
                vec![group("wheel", None, false, Some("appuser"))],
            ),
            (
                "adduser appuser wheel",
                vec![group("wheel", None, false, Some("appuser"))],
            ),
            (
                "adduser -S -G web web",
                vec![user("web", |a| {
                    a.system = true;
                    a.group = Some("web".into())
                })],
            ),
            (
                "adduser -DH -s /sbin/nologin svc",
                vec![user("svc", |a| {
                    a.no_home = true;
                    a.shell = Some("/sbin/nologin".into())
                })],
            ),
            (
                "adduser -D -h /srv/app -g 'App User' app",
                vec![user("app", |a| {
                    a.home = Some("/srv/app".into());
                    a.gecos = Some("App User".into())
                })],
            ),
            ("adduser app -D", vec![user("app", |_| {})]),
            (
                "adduser --disabled-password --uid 1001 app",
                vec![user("app", |a| a.uid = Some(1001))],
            ),
            (
                "adduser -D -k /etc/skel2 app",
                vec![user("app", |a| a.skel = Some("/etc/skel2".into()))],
            ),
            (
                "adduser -D -u \"$UID\" \"$APP_USER\"",
                vec![user("appuser", |a| a.uid = Some(1000))],
            ),
            (
                "adduser -D -u ${UID} ${APP_USER:-x}",
                vec![user("appuser", |a| a.uid = Some(1000))],
            ),
            ("adduser -D -- -weird", vec![user("-weird", |_| {})]),
            (
                "groupadd -r -g 999 docker",
                vec![NativeCommand::GroupAdd(GroupAddArgs {
                    group: "docker".into(),
                    gid: Some(999),
                    system: true,
                    force: false,
                })],
            ),
            (
                "groupadd -f app",
                vec![NativeCommand::GroupAdd(GroupAddArgs {
                    group: "app".into(),
                    force: true,
                    ..Default::default()
                })],
            ),
            (
                "useradd -m -u 1000 -g app -G wheel,audio -s /bin/bash -c 'A B' -d /home/a a",
                vec![NativeCommand::UserAdd(UserAddArgs {
                    user: "a".into(),
                    uid: Some(1000),
                    group: Some("app".into()),
                    groups: vec!["wheel".into(), "audio".into()],
                    create_home: Some(true),
                    home: Some("/home/a".into()),
                    shell: Some("/bin/bash".into()),
                    comment: Some("A B".into()),
                    ..Default::default()
                })],
            ),
            (
                "useradd -rMN svc",
                vec![NativeCommand::UserAdd(UserAddArgs {
                    user: "svc".into(),
                    system: true,
                    create_home: Some(false),
                    user_group: Some(false),
                    ..Default::default()
                })],
            ),
            (
                "useradd -U app",
                vec![NativeCommand::UserAdd(UserAddArgs {
                    user: "app".into(),
                    user_group: Some(true),
                    ..Default::default()
                })],
            ),
            ("apk update", vec![NativeCommand::ApkUpdate]),
            ("apk -q update", vec![NativeCommand::ApkUpdate]),
            (
                "apk upgrade --no-cache -a",
                vec![NativeCommand::ApkUpgrade {
                    available: true,
                    no_cache: true,
                    update_cache: false,
                    latest: false,
                }],
            ),
            (
                "apk --update-cache upgrade",
                vec![NativeCommand::ApkUpgrade {
                    available: false,
                    no_cache: false,
                    update_cache: true,
                    latest: false,
                }],
            ),
            ("apk add --no-cache curl", vec![add(true, None, &["curl"])]),
            (
                "apk --no-cache add curl 'python3~3.11' 'musl>=1.2' \"zlib<2\" git=2.45.2-r0",
                vec![add(
                    true,
                    None,
                    &[
                        "curl",
                        "python3~3.11",
                        "musl>=1.2",
                        "zlib<2",
                        "git=2.45.2-r0",
                    ],
                )],
            ),
            (
                "apk add -t .build-deps gcc musl-dev",
                vec![add(false, Some(".build-deps"), &["gcc", "musl-dev"])],
            ),
            (
                "apk add --virtual=.deps gcc",
                vec![add(false, Some(".deps"), &["gcc"])],
            ),
            ("apk add $PKGS", vec![add(false, None, &["curl", "git"])]),
            ("apk add curl@edge", vec![add(false, None, &["curl@edge"])]),
            (
                "apk del .build-deps",
                vec![NativeCommand::ApkDel {
                    packages: vec![".build-deps".into()],
                    rdepends: false,
                    purge: false,
                }],
            ),
            (
                "apk del -r --purge a b",
                vec![NativeCommand::ApkDel {
                    packages: vec!["a".into(), "b".into()],
                    rdepends: true,
                    purge: true,
                }],
            ),
            (
                "pip3 install flask==3.0",
                vec![pip_via("pip3", &["flask==3.0"])],
            ),
            (
                "python -m pip install -U pip",
                vec![pip_via("python", &["-U", "pip"])],
            ),
            (
                "python3 -m pip install 'requests>=2' --user",
                vec![pip_via("python3", &["requests>=2", "--user"])],
            ),
            (
                "/venv/bin/pip install x",
                vec![pip_via("/venv/bin/pip", &["x"])],
            ),
            (
                "pip install -r requirements.txt # comment && rm -rf /",
                vec![pip(&["-r", "requirements.txt"])],
            ),
            (
                "apk update;apk upgrade",
                vec![NativeCommand::ApkUpdate, upgrade()],
            ),
            (
                "apk update ; \n apk upgrade",
                vec![NativeCommand::ApkUpdate, upgrade()],
            ),
            (
                "apk update &&\n    apk upgrade",
                vec![NativeCommand::ApkUpdate, upgrade()],
            ),
            ("  apk update  ", vec![NativeCommand::ApkUpdate]),
            ("a\\pk up'da'\"te\"", vec![NativeCommand::ApkUpdate]),
            ("", vec![]),
        ] {
            assert_eq!(ok(script), want, "{script}");
        }
    }

    #[test]
    fn noops() {
        for script in [
            "true",
            ":",
            "echo done",
            "echo \"built $APP_USER\"",
            "set -eux",
            "set -o pipefail",
            "rm -rf /var/cache/apk/*",
            "rm -fr /var/cache/apk",
            "rm -r -f /root/.cache/pip",
            "rm -Rf /root/.cache /var/cache/apk/*",
            "rm -rf -- /root/.cache/pip/*",
            "rm -rf '/var/cache/apk/*'",
        ] {
            assert!(noop(script), "{script}");
        }
    }

    #[test]
    fn refused_table() {
        // (script, text the error must contain)
        for (script, needle) in [
            ("apk update || true", "`||` is not supported"),
            ("apk update || true", "`apk update || true`"),
            ("cat /etc/passwd | grep root", "pipes"),
            ("apk update > /dev/null", "redirections"),
            ("apk add 'a' 2>&1", "redirections"),
            ("apk add foo>=1", "redirections"),
            ("(apk update)", "subshells"),
            ("{ apk update; }", "shell keyword `{`"),
            ("adduser -D -u $(id -u) x", "`$(...)`"),
            ("adduser -D -u \"$(id -u)\" x", "`$(...)`"),
            ("adduser -D -u `id -u` x", "backticks"),
            ("if true; then apk update; fi", "shell keyword `if`"),
            ("for p in a b; do apk add $p; done", "shell keyword `for`"),
            ("FOO=1 apk update", "variable assignments"),
            ("sleep 10 &", "background"),
            ("apk update && && apk upgrade", "empty command"),
            ("apk update &&", "empty command"),
            ("rm -rf /", "not `/`"),
            ("rm -rf /var/cache/apk/* /etc", "not `/etc`"),
            ("rm /var/cache/apk/x", "only `rm -rf`"),
            ("rm -rfv /var/cache/apk", "option `-v` for `rm`"),
            ("rm -rf ~/.cache/pip", "tilde"),
            (
                "curl -o x https://example.invalid",
                "`curl` is not a known command",
            ),
            ("cd /tmp && apk update", "`cd` is not a known command"),
            ("adduser -D -x app", "option `-x` for `adduser`"),
            ("adduser -D --nope app", "option `--nope` for `adduser`"),
            ("adduser app", "add -D"),
            ("adduser -D", "usage: adduser"),
            ("adduser -D -u 1000", "usage: adduser"),
            ("adduser -D -u abc app", "invalid number 'abc'"),
            (
                "adduser -D -u 300000 app",
                "number 300000 is not in 0..256000 range",
            ),
            ("adduser -D -u", "option requires an argument: -u"),
            ("adduser -D a b", "second operand"),
            ("addgroup -g 5 user group", "`-g` cannot be used"),
            ("addgroup a b c", "usage: addgroup"),
            ("addgroup -G x g", "option `-G` for `addgroup`"),
            ("useradd -U -g app a", "-U and -g conflict"),
            ("useradd -p secret a", "option `-p` for `useradd`"),
            ("groupadd -K GID_MIN=100 g", "option `-K` for `groupadd`"),
            (
                "apk add --allow-untrusted x",
                "option `--allow-untrusted` for `apk`",
            ),
            ("apk add -X https://repo x", "option `-X` for `apk`"),
            ("apk update -a", "option `--available` for `apk update`"),
            ("apk fix", "`apk fix` is not understood"),
            ("apk", "no applet"),
            ("apk add", "no packages"),
            ("apk del", "no packages"),
            ("apk upgrade musl", "takes no package names"),
            ("apk add ./local.apk", "local package file"),
            ("apk add 'foo=1.0_bogus'", "bad package spec"),
            ("apk add py3-*", "unquoted glob"),
            ("pip freeze", "only `pip install`"),
            ("python -c 'print(1)'", "`python` is not a known command"),
            ("python -m venv /v", "only understood with `pip install`"),
            ("apk add 'unterminated", "unterminated single quote"),
            ("apk add \"unterminated", "unterminated double quote"),
            ("adduser -D ${NOPE:?must be set}", "failed to expand"),
            ("true 1", "`true` is not a known command"),
        ] {
            let got = err(script);
            assert!(got.contains(needle), "{script}: {got}");
        }
    }
}
