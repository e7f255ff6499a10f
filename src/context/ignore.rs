//! `.dockerignore` with Docker's semantics (moby/patternmatcher and its `ignorefile` reader).
//!
//! Reading: a line whose first character is `#` is a comment; lines are trimmed; blank lines are
//! skipped; a leading `!` makes an exception (re-include); each pattern is cleaned like Go's
//! `filepath.Clean` and a leading `/` is dropped, so `/foo/bar` means `foo/bar`.
//!
//! Matching ([`DockerIgnore::matches`]): every pattern is tried in order and the last one that
//! matches the path, or one of its parent directories, decides. Patterns are compiled the way
//! patternmatcher compiles them to a regular expression: `*` and `?` never cross a `/`, `**`
//! (with an optional following `/`) crosses any number of directories, `[...]` is a class,
//! `\` escapes the next character. Results are reasons, not booleans: an [`IgnoreMatch`] names
//! the pattern as the user wrote it and its line.
//!
//! Cost: patterns are indexed by the literal a matching path must equal, start with or end
//! with ([`PatternIndex`]), so a path is checked only against the patterns that can match it
//! (plus those with no literal at all, like `*`): a 100,000-line file costs about as much per
//! path as a short one, not 100,000 pattern tests.

use std::collections::HashMap;

use super::glob::go_match;

/// Why a `.dockerignore` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line is a lone `!`.
    #[error("illegal exclusion pattern `!` at {file}:{line}")]
    LoneBang {
        /// The ignore file's name.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// A pattern is malformed (an unclosed `[`, a trailing `\`, ...).
    #[error("syntax error in pattern `{pattern}` at {file}:{line}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
        /// The ignore file's name.
        file: String,
        /// 1-based line.
        line: usize,
    },
}

/// One pattern of a `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePattern {
    /// The line as the user wrote it (trimmed).
    pub original: String,
    /// 1-based line number in the ignore file.
    pub line: usize,
    /// True for `!` exceptions.
    pub exception: bool,
    /// The cleaned pattern, without `!` or a leading `/`.
    pub cleaned: String,
    /// How many `/`-separated components the cleaned pattern has.
    dirs: usize,
    matcher: Matcher,
}

/// What the ignore file says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreMatch<'a> {
    /// No pattern matched: the path is part of the context.
    None,
    /// The path is excluded by this pattern (the last one that matched).
    Exclude(&'a IgnorePattern),
    /// An exception re-included the path after an earlier pattern excluded it.
    Include(&'a IgnorePattern),
}

impl IgnoreMatch<'_> {
    /// True when the path is left out of the context.
    pub fn is_excluded(&self) -> bool {
        matches!(self, IgnoreMatch::Exclude(_))
    }
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
    index: PatternIndex,
}

/// The patterns (by position) filed under the literal a path must have for them to match it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PatternIndex {
    /// The path must equal the key.
    exact: HashMap<String, Vec<usize>>,
    /// The path must start with the key.
    prefix: HashMap<String, Vec<usize>>,
    /// The path must end with the key.
    suffix: HashMap<String, Vec<usize>>,
    /// No literal to file them under: tried on every path.
    anywhere: Vec<usize>,
    /// Whether there is any `!` pattern.
    has_exceptions: bool,
    /// The most components of a `!` pattern without `**`.
    exception_depth: usize,
    /// Whether some `!` pattern has `**` (it may re-include at any depth).
    exception_any_depth: bool,
}

impl PatternIndex {
    fn build(patterns: &[IgnorePattern]) -> PatternIndex {
        let mut index = PatternIndex::default();
        for (position, pattern) in patterns.iter().enumerate() {
            if pattern.exception {
                index.has_exceptions = true;
                if pattern.cleaned.contains("**") {
                    index.exception_any_depth = true;
                }
                index.exception_depth = index.exception_depth.max(pattern.dirs);
            }
            let file = |map: &mut HashMap<String, Vec<usize>>, key: String| {
                map.entry(key).or_default().push(position);
            };
            match &pattern.matcher {
                Matcher::Exact(literal) => file(&mut index.exact, literal.clone()),
                Matcher::Prefix(literal) if !literal.is_empty() => {
                    file(&mut index.prefix, literal.clone())
                }
                Matcher::Suffix(literal) if !literal.is_empty() => {
                    // `**/x` also matches `x` itself.
                    if let Some(bare) = literal.strip_prefix('/') {
                        file(&mut index.exact, bare.to_owned());
                    }
                    file(&mut index.suffix, literal.clone());
                }
                Matcher::Tokens(tokens) => {
                    let literal = |tokens: &mut dyn Iterator<Item = &Token>| -> String {
                        tokens
                            .map_while(|t| match t {
                                Token::Char(c) => Some(*c),
                                _ => None,
                            })
                            .collect()
                    };
                    let head = literal(&mut tokens.iter());
                    let tail: String = literal(&mut tokens.iter().rev()).chars().rev().collect();
                    if !head.is_empty() {
                        file(&mut index.prefix, head);
                    } else if !tail.is_empty() {
                        file(&mut index.suffix, tail);
                    } else {
                        index.anywhere.push(position);
                    }
                }
                Matcher::Prefix(_) | Matcher::Suffix(_) => index.anywhere.push(position),
            }
        }
        index
    }

    /// The positions of the patterns that may match one of `candidates`, in file order.
    fn candidates(&self, candidates: &[&str]) -> Vec<usize> {
        let mut found = self.anywhere.clone();
        for text in candidates {
            if let Some(positions) = self.exact.get(*text) {
                found.extend(positions);
            }
            if self.prefix.is_empty() && self.suffix.is_empty() {
                continue;
            }
            for (at, _) in text.char_indices().skip(1).chain([(text.len(), ' ')]) {
                if let Some(positions) = self.prefix.get(&text[..at]) {
                    found.extend(positions);
                }
            }
            for (at, _) in text.char_indices() {
                if let Some(positions) = self.suffix.get(&text[at..]) {
                    found.extend(positions);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

impl DockerIgnore {
    /// Parses the text of an ignore file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<DockerIgnore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let (exception, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            if exception && body.is_empty() {
                return Err(IgnoreError::LoneBang {
                    file: file.to_owned(),
                    line,
                });
            }
            let mut cleaned = clean(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            // patternmatcher checks the syntax with filepath.Match(pattern, ".").
            if go_match(&cleaned, ".").is_err() {
                return Err(IgnoreError::BadPattern {
                    pattern: trimmed.to_owned(),
                    file: file.to_owned(),
                    line,
                });
            }
            patterns.push(IgnorePattern {
                original: trimmed.to_owned(),
                line,
                exception,
                dirs: cleaned.split('/').count(),
                matcher: Matcher::compile(&cleaned),
                cleaned,
            });
        }
        let index = PatternIndex::build(&patterns);
        Ok(DockerIgnore { patterns, index })
    }

    /// The patterns in file order.
    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    /// True when any pattern is an exception (`!`), so an excluded directory may still hold
    /// included files and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.index.has_exceptions
    }

    /// What the file says about `path` (relative to the context root, `/`-separated), checking
    /// the path and each of its parent directories against every pattern, as
    /// patternmatcher's `MatchesOrParentMatches` does.
    pub fn matches(&self, path: &str) -> IgnoreMatch<'_> {
        let path = clean(path);
        let path = path.trim_start_matches('/');
        if path.is_empty() || path == "." {
            return IgnoreMatch::None;
        }
        // The path and each parent directory (`a`, `a/b`, ..., the path itself).
        let mut candidates: Vec<&str> =
            path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        candidates.push(path);
        let mut result = IgnoreMatch::None;
        // Patterns that match none of the candidates change nothing, so the fold over those
        // that may match, in file order, decides as the fold over all of them would.
        for position in self.index.candidates(&candidates) {
            let pattern = &self.patterns[position];
            let excluded = result.is_excluded();
            // An exclusion is only worth testing while the path is included, an exception only
            // while it is excluded.
            if pattern.exception != excluded {
                continue;
            }
            let hit = candidates.iter().any(|c| pattern.matcher.matches(c));
            if hit {
                result = if pattern.exception {
                    IgnoreMatch::Include(pattern)
                } else {
                    IgnoreMatch::Exclude(pattern)
                };
            }
        }
        result
    }

    /// True when an exception pattern could re-include something below directory `dir`, so an
    /// excluded `dir` must still be walked.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let depth = dir.split('/').count();
        self.index.exception_any_depth || self.index.exception_depth > depth
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// A compiled pattern, in the four shapes patternmatcher distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// No wildcard at all: the path equals the pattern.
    Exact(String),
    /// A literal followed by a final `**`: the path starts with the literal.
    Prefix(String),
    /// A leading `**` followed by a literal: the path ends with the literal (or, for `**/x`,
    /// is `x`).
    Suffix(String),
    /// Everything else, as a small regular expression.
    Tokens(Vec<Token>),
}

/// One element of the regular expression patternmatcher builds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A literal character.
    Char(char),
    /// `*`: `[^/]*`.
    Star,
    /// `?`: `[^/]`.
    AnyOne,
    /// `**` followed by more pattern: `(.*/)?`.
    AnyDirs,
    /// A final `**`: `.*`.
    AnyTail,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

impl Matcher {
    fn compile(pattern: &str) -> Matcher {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut shape = Shape::Exact;
        let mut i = 0;
        let mut step = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        if shape == Shape::Exact {
                            shape = Shape::Prefix;
                        } else {
                            shape = Shape::Regexp;
                        }
                        tokens.push(Token::AnyTail);
                    } else {
                        tokens.push(Token::AnyDirs);
                        shape = Shape::Regexp;
                    }
                    if step == 0 {
                        shape = Shape::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    shape = Shape::Regexp;
                }
                '?' => {
                    tokens.push(Token::AnyOne);
                    shape = Shape::Regexp;
                }
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        tokens.push(Token::Char(next));
                        shape = Shape::Regexp;
                    }
                    None => tokens.push(Token::Char('\\')),
                },
                '[' => {
                    let (class, next) = parse_class(&chars, i);
                    tokens.push(class);
                    i = next;
                    shape = Shape::Regexp;
                }
                other => tokens.push(Token::Char(other)),
            }
            step += 1;
        }
        match shape {
            Shape::Exact => Matcher::Exact(pattern.to_owned()),
            Shape::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
            Shape::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
            Shape::Regexp => Matcher::Tokens(tokens),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(literal) => path == literal,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Matcher::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(tokens, &chars)
            }
        }
    }
}

/// Parses a class starting after `[`; returns the token and the index after `]`. The syntax was
/// already validated with Go's matcher, so a malformed class cannot reach here; a missing `]`
/// ends the class at the end of the pattern.
fn parse_class(chars: &[char], start: usize) -> (Token, usize) {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() {
        if chars[i] == ']' && !first {
            return (Token::Class { negated, ranges }, i + 1);
        }
        first = false;
        let mut lo = chars[i];
        if lo == '\\' && i + 1 < chars.len() {
            i += 1;
            lo = chars[i];
        }
        i += 1;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            hi = chars[i];
            if hi == '\\' && i + 1 < chars.len() {
                i += 1;
                hi = chars[i];
            }
            i += 1;
        }
        ranges.push((lo, hi));
    }
    (Token::Class { negated, ranges }, i)
}

/// Whether the whole of `text` matches `tokens` (anchored at both ends), in time linear in
/// both: the tokens are states of an automaton walked once over the text with the set of
/// states the match may be in, so a pattern of many `*` cannot make it backtrack (a fuzzed
/// `.dockerignore` line of 60 `*` took over 10 s when each `*` tried every split).
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let states = tokens.len() + 1;
    // `before[i]`: the match may stand just before token i. `in_dirs[i]`: inside the `.*` of the
    // `**/` token i (`(.*/)?`), waiting for the `/` that ends it.
    let mut before = vec![false; states];
    let mut in_dirs = vec![false; states];
    before[0] = true;
    skip_empty_matches(tokens, &mut before);
    for &c in text {
        let mut next_before = vec![false; states];
        let mut next_in_dirs = vec![false; states];
        for (i, token) in tokens.iter().enumerate() {
            if in_dirs[i] {
                next_in_dirs[i] = true;
                if c == '/' {
                    next_before[i + 1] = true;
                }
            }
            if !before[i] {
                continue;
            }
            match token {
                Token::Char(expected) => next_before[i + 1] |= *expected == c,
                Token::AnyOne => next_before[i + 1] |= c != '/',
                Token::Class { negated, ranges } => {
                    let inside = ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                    next_before[i + 1] |= inside != *negated;
                }
                Token::Star => next_before[i] |= c != '/',
                Token::AnyTail => next_before[i] = true,
                Token::AnyDirs => {
                    next_in_dirs[i] = true;
                    if c == '/' {
                        next_before[i + 1] = true;
                    }
                }
            }
        }
        skip_empty_matches(tokens, &mut next_before);
        if !next_before.iter().chain(&next_in_dirs).any(|&state| state) {
            return false;
        }
        before = next_before;
        in_dirs = next_in_dirs;
    }
    before[tokens.len()]
}

/// Adds the states reached by tokens that may match nothing (`*`, `**`, `**/`); such moves
/// only go forward, so one pass in order reaches every one.
fn skip_empty_matches(tokens: &[Token], before: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if before[i] && matches!(token, Token::Star | Token::AnyTail | Token::AnyDirs) {
            before[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests;
