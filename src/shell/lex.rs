//! The lexer of a RUN line's shell text: splits it into simple commands on unquoted `&&`, `;`
//! and newlines, keeping each word as written (quotes and escapes intact, for expansion after),
//! and refuses every construct kiln does not model by name (see [`super`]).

use super::ShellError;

/// One word as written, and whether it holds unquoted glob characters.
#[derive(Debug)]
pub struct RawWord {
    /// The text, quotes and escapes kept.
    pub text: String,
    /// Whether it holds unquoted `*`, `?` or `[`.
    pub glob: bool,
}

/// One command's words, and its text for messages.
#[derive(Debug)]
pub struct RawCommand {
    /// The words, unexpanded.
    pub words: Vec<RawWord>,
    /// The command as written, trimmed.
    pub text: String,
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "select", "!", "{", "}", "[[", "]]", "in", "time",
];

/// Lexes `script` into commands (see the module docs for what is refused).
// The word/command macros reset state that the final expansion, at the end of input, never reads.
#[allow(unused_assignments)]
pub fn split_commands(script: &str) -> Result<Vec<RawCommand>, ShellError> {
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
    let refuse = |from: usize, at: usize, reason: &str| ShellError::NotUnderstood {
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
