//! Variable expansion and word splitting for instruction arguments (`$VAR`, `${VAR:-x}`, quotes).
//!
//! This is BuildKit's Dockerfile shell lexer (not a shell: no command substitution, no globbing).
//! [`crate::shell`], which reads the commands of a RUN line natively, expands their words with it.
//! Words enter as the raw argument text plus a variable lookup and the escape character;
//! [`expand_word`] returns one string (quotes removed, escapes applied, no splitting), and
//! [`expand_words`] also splits unquoted text and unquoted expansion results on whitespace.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR?msg}`,
//! `${VAR:?msg}` (the error names the variable), BuildKit's pattern forms `${VAR#p}`,
//! `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}`, `${VAR//p/r}` (`*` and `?` wildcards,
//! no brackets), single and double quotes, escapes. Positional and special parameters (`$1`,
//! `$@`, `$$`, ...) are never set. Unset variables expand to the empty string.
//! Rejected: `${}`, `${VAR:=w}`, `${VAR:w}`, unterminated quotes and braces, and `${...}`
//! nested more than [`MAX_NESTING`] deep (the lexer recurses once per level; BuildKit's grows
//! its stack instead, kiln's thread stack would overflow near ten thousand levels).
//!
//! The file is one grammar, BuildKit's lexer state machine, and stays whole so it can be read
//! side by side with BuildKit's `shell/lex.go`; only the wildcard patterns of the trim and
//! replace forms live in the `pattern` submodule.

mod pattern;

use pattern::Glob;

/// How deep `${...}` forms may nest inside each other: far beyond any real Dockerfile, far
/// below what overflows a 1 MiB stack.
pub const MAX_NESTING: usize = 256;

/// An expansion failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message} in `{}`", shortened(word))]
pub struct ExpandError {
    /// The word being expanded.
    pub word: String,
    /// What is wrong.
    pub message: String,
}

/// `word` cut to its first 200 characters (a hostile word can be megabytes long).
fn shortened(word: &str) -> String {
    const SHOWN: usize = 200;
    match word.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &word[..end]),
        None => word.to_owned(),
    }
}

/// Expands one word: variables substituted, quotes removed, escapes applied; no splitting.
pub fn expand_word(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(word, lookup, escape, Mode::default())
        .run()
        .map(|(s, _)| s)
}

/// Expands and splits into words (unquoted whitespace separates, as for COPY and EXPOSE).
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(word, lookup, escape, Mode::default())
        .run()
        .map(|(_, w)| w)
}

/// Splits a whole instruction line into words, quotes and escapes kept, no variables set
/// (how the parser finds `<<EOF` words).
pub(crate) fn split_raw(line: &str) -> Result<Vec<String>, ExpandError> {
    let mode = Mode {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        heredoc: true,
    };
    Lexer::new(line, &|_| None, '\\', mode)
        .run()
        .map(|(_, w)| w)
}

/// Reads a heredoc delimiter word: `Some((without quotes, with quotes))` when it is exactly
/// one word, variables left as written.
pub(crate) fn heredoc_name(rest: &str) -> Option<(String, String)> {
    let mut mode = Mode {
        raw_quotes: false,
        raw_escapes: false,
        skip_unset: true,
        heredoc: false,
    };
    let plain = Lexer::new(rest, &|_| None, '\\', mode).run().ok()?.1;
    mode.raw_quotes = true;
    let raw = Lexer::new(rest, &|_| None, '\\', mode).run().ok()?.1;
    match (<[String; 1]>::try_from(plain), <[String; 1]>::try_from(raw)) {
        (Ok([plain]), Ok([raw])) => Some((plain, raw)),
        _ => None,
    }
}

/// Lexer switches (all off for ordinary expansion).
#[derive(Clone, Copy, Default)]
struct Mode {
    /// Keep quote characters in the output.
    raw_quotes: bool,
    /// Keep escape characters in the output.
    raw_escapes: bool,
    /// Leave references to unset variables as written.
    skip_unset: bool,
    /// Keep `<<` and the blanks after it together (finding heredoc words on a line).
    heredoc: bool,
}

/// Word accumulator: splits on whitespace that came from unquoted text or expansions.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
    mode: Mode,
    /// How many `${` the lexer is inside of.
    nesting: usize,
}

type Lexed = Result<(String, Vec<String>), String>;

impl<'a> Lexer<'a> {
    fn new(
        source: &'a str,
        lookup: &'a dyn Fn(&str) -> Option<String>,
        escape: char,
        mode: Mode,
    ) -> Self {
        Lexer {
            source,
            chars: source.chars().collect(),
            pos: 0,
            lookup,
            escape,
            mode,
            nesting: 0,
        }
    }

    fn run(mut self) -> Result<(String, Vec<String>), ExpandError> {
        let raw_escapes = self.mode.raw_escapes;
        self.process_until(None, raw_escapes)
            .map_err(|message| ExpandError {
                word: self.source.to_owned(),
                message,
            })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes up to `stop` (consumed) or the end; reaching the end while looking for
    /// `stop` is an error.
    fn process_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Lexed {
        let saved = self.mode.raw_escapes;
        self.mode.raw_escapes = raw_escapes;
        let out = self.process_until_inner(stop, raw_escapes);
        self.mode.raw_escapes = saved;
        out
    }

    fn process_until_inner(&mut self, stop: Option<char>, raw_escapes: bool) -> Lexed {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                '<' if self.mode.heredoc && self.chars.get(self.pos + 1) == Some(&'<') => {
                    // `<<` keeps the blanks after it in the same word (`<< EOF`).
                    let start = self.pos;
                    self.pos += 2;
                    while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
                        self.pos += 1;
                    }
                    let s: String = self.chars[start..self.pos].iter().collect();
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    /// `'...'`: everything literal up to the next `'`.
    fn single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.pos += 1;
        if self.mode.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_owned(),
                    );
                }
                Some('\'') => {
                    if self.mode.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"..."`: literal except `$` expansions and escapes of `"`, `$` and the escape char.
    fn double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.pos += 1;
        if self.mode.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_owned(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.mode.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.mode.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                ch = n;
                                self.pos += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$NAME` or `${...}`, with the `$` not yet consumed.
    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match (self.lookup)(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        if self.nesting >= MAX_NESTING {
            return Err(format!(
                "variable expansions nested more than {MAX_NESTING} levels deep"
            ));
        }
        self.nesting += 1;
        let expanded = self.braced();
        self.nesting -= 1;
        expanded
    }

    /// The rest of a `${...}` form, after the `{`.
    fn braced(&mut self) -> Result<String, String> {
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_owned()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_owned()),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        match ch {
            Some('}') => Ok(match (self.lookup)(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some('/') => self.replace(&name),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let colon = ch == Some(':');
                let op = if colon { self.next() } else { ch };
                let modifier = format!(
                    "{}{}",
                    if colon { ":" } else { "" },
                    op.unwrap_or('\u{fffd}')
                );
                let word = self.until_brace(matches!(op, Some('#' | '%')))?;
                let found = (self.lookup)(&name);
                if found.is_none() && self.mode.skip_unset {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                // With a colon, an empty value counts as unset.
                let unset = match &found {
                    None => true,
                    Some(v) => colon && v.is_empty(),
                };
                let value = found.clone().unwrap_or_default();
                match op {
                    Some('-') => Ok(if unset { word } else { value }),
                    Some('+') => Ok(if unset { String::new() } else { word }),
                    Some('?') if unset => {
                        let default = if found.is_none() {
                            "is not allowed to be unset"
                        } else {
                            "is not allowed to be empty"
                        };
                        let message = if word.is_empty() { default } else { &word };
                        Err(format!("{name}: {message}"))
                    }
                    Some('?') => Ok(value),
                    Some(op @ ('#' | '%')) => {
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let glob = Glob::new(pattern)?;
                        Ok(if op == '#' {
                            glob.trim_prefix(&value, greedy)
                        } else {
                            glob.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            other => Err(format!(
                "unsupported modifier ({}) in substitution",
                other.unwrap_or('\u{fffd}')
            )),
        }
    }

    /// The word of a `${NAME<op>word}` form, up to the closing brace (consumed).
    fn until_brace(&mut self, raw_escapes: bool) -> Result<String, String> {
        match self.process_until(Some('}'), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".to_owned()),
            Err(e) => Err(e),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`, after the first `/`.
    fn replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = match self.process_until(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.peek().is_none() => {
                return Err("syntax error: missing '/' in ${}".to_owned());
            }
            Err(e) => return Err(e),
        };
        let replacement = self.until_brace(true)?;
        let Some(value) = (self.lookup)(name) else {
            if self.mode.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        Ok(Glob::new(&pattern)?.replace(&value, &replacement, all))
    }

    /// A variable name: letters, digits and `_`; or all digits (positional); or one special
    /// parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

#[cfg(test)]
mod tests;
