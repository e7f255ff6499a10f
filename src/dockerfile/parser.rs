//! The Dockerfile parser: text to [`Dockerfile`], following BuildKit's rules exactly.
//!
//! Text enters through [`parse`] and leaves as a [`Dockerfile`]: one [`Node`] per instruction,
//! with the argument nodes BuildKit's parser would build (see `dump` for its printed form).
//! The rules, in the order they apply:
//!
//! 1. Physical lines are split after `\n` (a `\r\n` or `\n` terminator is removed, a UTF-8 BOM
//!    on line 1 is dropped).
//! 2. Parser directives (`# syntax=`, `# escape=`, `# check=`) are read only at the top of the
//!    file; the first other line ends directive scanning.
//! 3. Comment lines are dropped; a line ending in the escape character continues onto the next
//!    line (comment and blank lines inside a continuation are skipped).
//! 4. Each logical line is split into keyword, `--flags` and arguments, and the arguments are
//!    shaped per instruction (JSON or shell form, `ENV`/`LABEL` pairs, nested `ONBUILD`).
//! 5. `RUN`/`COPY`/`ADD` (and `ONBUILD` of those) in shell form may name heredocs (`<<EOF`);
//!    their bodies are the following physical lines up to the delimiter.
//!
//! Unknown keywords are accepted here (as BuildKit does); the planner rejects them.
//! Every error carries the 1-based line of the instruction it was found in.

use super::ast::{Dockerfile, Heredoc, Node};
use super::shell;

/// A parse failure, with the 1-based line it was found on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Dockerfile:{line}: {message}")]
pub struct ParseError {
    /// 1-based physical line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// The message BuildKit gives for a JSON array holding something other than strings.
const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// Parses Dockerfile text.
///
/// Returns an error for a file with no instructions, a bad or repeated parser directive,
/// an `ENV`/`LABEL` that is neither `key value` nor `key=value ...`, a JSON array with
/// non-string elements, and an unterminated heredoc.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives::default();
    let mut nodes = Vec::new();
    let mut next = 0usize; // index of the next physical line to read

    while next < lines.len() {
        let line_no = next + 1;
        let first = trim_newline(lines[next]).trim_start();
        next += 1;
        directives.scan(first, line_no)?;
        if is_comment(first) {
            continue;
        }
        let escape = directives.escape;
        let (first, mut complete) = trim_continuation(first, escape);
        if complete && first.is_empty() {
            continue;
        }
        let mut logical = first.to_owned();
        while !complete && next < lines.len() {
            let raw = trim_newline(lines[next]);
            directives.scan(raw, next + 1)?;
            next += 1;
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            let (part, done) = trim_continuation(raw, escape);
            logical.push_str(part);
            complete = done;
        }

        let mut node = node_from_line(&logical, escape)
            .map_err(|message| ParseError::new(line_no, message))?;
        node.start_line = line_no;
        node.end_line = next;

        if can_contain_heredoc(&node) && logical.contains("<<") {
            for mut heredoc in heredocs_from_line(&logical) {
                let mut terminated = false;
                while next < lines.len() {
                    let raw = lines[next];
                    next += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    if heredoc.chomp {
                        heredoc.content.push_str(raw.trim_start_matches('\t'));
                    } else {
                        heredoc.content.push_str(raw);
                    }
                }
                if !terminated {
                    return Err(ParseError::new(
                        line_no,
                        format!(
                            "unterminated heredoc `{}` started on line {line_no}",
                            heredoc.name
                        ),
                    ));
                }
                node.heredocs.push(heredoc);
            }
            node.end_line = next;
            if let Some(nested) = node.next.as_deref_mut() {
                nested.heredocs = node.heredocs.clone();
            }
        }
        if let Some(nested) = node.next.as_deref_mut() {
            nested.start_line = node.start_line;
            nested.end_line = node.end_line;
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(ParseError::new(1, "file with no instructions"));
    }
    Ok(Dockerfile {
        escape: directives.escape,
        syntax: directives.syntax,
        nodes,
    })
}

/// The parser-directive state: which directives were seen, and whether scanning is over.
struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            seen: Vec::new(),
            done: false,
        }
    }
}

impl Directives {
    /// Looks at one physical line (newline removed); records a directive or ends scanning.
    fn scan(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(ParseError::new(
                line_no,
                format!("only one {name} parser directive can be used"),
            ));
        }
        match name.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::new(
                            line_no,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ));
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_owned()),
            _ => {}
        }
        self.seen.push(name);
        Ok(())
    }
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (RE2 `\s` is `[\t\n\f\r ]`).
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let is_s = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_s);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let value = rest
        .trim_start_matches(is_s)
        .strip_prefix('=')?
        .trim_start_matches(is_s)
        .trim_end_matches(is_s);
    // `.` does not match `\n`; a value holding one cannot match.
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((name, value))
}

/// Removes the line terminator (any trailing `\r` and `\n`).
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// True when the first non-whitespace character is `#`.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips a trailing continuation (escape char plus spaces/TABs, not itself escaped).
/// Returns the remaining text and whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// BuildKit's whitespace separator `[\t\v\f\r ]`.
fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]` (the input is already trimmed).
fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_sep)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Builds the node for one logical line (line numbers are filled in by the caller).
fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_sep) {
        Some(i) => (&trimmed[..i], Some(trimmed[i..].trim_start_matches(is_sep))),
        None => (trimmed, None),
    };
    let (args, flags) = match rest {
        Some(rest) => {
            let (args, flags) = extract_builder_flags(rest);
            (args.trim(), flags)
        }
        None => ("", Vec::new()),
    };
    let keyword = keyword.to_lowercase();
    let mut node = Node {
        keyword: keyword.clone(),
        flags,
        args: Vec::new(),
        json_form: false,
        next: None,
        heredocs: Vec::new(),
        original: args.to_owned(),
        start_line: 0,
        end_line: 0,
    };
    match keyword.as_str() {
        "from" | "expose" => node.args = split_whitespace(args),
        "add" | "copy" | "volume" => match parse_json(args)? {
            Some(list) => {
                node.args = list;
                node.json_form = true;
            }
            None => node.args = split_whitespace(args),
        },
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json_form) = parse_maybe_json(args)?;
        }
        "healthcheck" => {
            let sep = args.find(|c: char| c.is_whitespace()).unwrap_or(args.len());
            if sep > 0 {
                let rest = args[sep..].trim_start();
                let (cmd, json) = parse_maybe_json(rest)?;
                node.args.push(args[..sep].to_owned());
                node.args.extend(cmd);
                node.json_form = json;
            }
        }
        "env" => node.args = parse_name_val(args, "ENV", escape)?,
        "label" => node.args = parse_name_val(args, "LABEL", escape)?,
        "arg" => node.args = parse_words(args, escape),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !args.is_empty() {
                node.args.push(args.to_owned());
            }
        }
        "onbuild" => {
            if !args.is_empty() {
                node.next = Some(Box::new(node_from_line(args, escape)?));
            }
        }
        _ => node.args.push(String::new()),
    }
    Ok(node)
}

/// Takes the leading `--flag` words off `line`; returns the rest and the flags.
///
/// Quotes are removed from flag words and a backslash keeps the next character (BuildKit
/// uses a literal backslash here, whatever the escape directive says). A lone `--` ends the
/// flags and is dropped.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let ch = if at_end { '\0' } else { chars[pos].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || chars.get(pos + 1).map(|c| c.1) != Some('-') {
                return (&line[chars[pos].0..], words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[chars[pos].0..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some(&(_, next)) = chars.get(pos + 1) {
                        pos += 1;
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.get(pos + 1) {
                        Some(&(_, next)) => {
                            pos += 1;
                            word.push(next);
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => {}
        }
        pos += 1;
    }
    ("", words)
}

/// Parses `rest` as a JSON array of strings: `Ok(None)` when it is not a JSON array at all,
/// an error when it is one but holds a non-string.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(rest)
    else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `RUN`/`CMD`/`ENTRYPOINT`/`SHELL`: a JSON array, or the whole text as one node.
fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Some(list) => (list, true),
        None => (vec![rest.to_owned()], false),
    })
}

/// `ENV`/`LABEL`: the legacy `key value` form or `key=value ...` pairs, as triples.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_sep) else {
            return Err(format!("{key} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_sep);
        return Ok(vec![rest[..i].to_owned(), value.to_owned(), String::new()]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::dump::go_quote(word)
            ));
        };
        out.extend([k.to_owned(), v.to_owned(), "=".to_owned()]);
    }
    Ok(out)
}

/// Quote-aware word splitting (quotes and escapes kept verbatim), as for `ENV`/`LABEL`/`ARG`.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if pos + 1 == chars.len() {
                        pos += 1;
                        continue;
                    }
                    word.push(ch);
                    pos += 1;
                    word.push(chars[pos]);
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    if pos + 1 == chars.len() {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    word.push(ch);
                    pos += 1;
                    word.push(chars[pos]);
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => {}
        }
        pos += 1;
    }
    words
}

/// True for `RUN`/`COPY`/`ADD` in shell form, directly or under `ONBUILD`.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.keyword[..], node.next.as_deref()) {
        ("onbuild", Some(nested)) => nested,
        _ => node,
    };
    matches!(node.keyword.as_str(), "run" | "copy" | "add") && !node.json_form
}

/// The heredocs named on a logical line (`<<EOF`, `<<-EOF`, `<<'EOF'`, `2<<EOF`), in order,
/// with empty bodies.
fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let words = shell::split_raw(line).unwrap_or_default();
    words.iter().filter_map(|w| parse_heredoc(w)).collect()
}

/// Reads one heredoc word: `^(\d*)<<(-?)\s*([^<]*)$` with a single-word delimiter.
fn parse_heredoc(word: &str) -> Option<Heredoc> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (plain, raw) = shell::heredoc_name(rest)?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Some(Heredoc {
        expand: quotes(&plain) == quotes(&raw),
        name: plain,
        content: String::new(),
        chomp,
    })
}

#[cfg(test)]
mod tests;
