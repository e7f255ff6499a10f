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
        Ok(DockerIgnore { patterns })
    }

    /// The patterns in file order.
    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    /// True when any pattern is an exception (`!`), so an excluded directory may still hold
    /// included files and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
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
        let parents: Vec<&str> = match path.rfind('/') {
            Some(idx) => path[..idx].split('/').collect(),
            None => Vec::new(),
        };
        let mut result = IgnoreMatch::None;
        for pattern in &self.patterns {
            let excluded = result.is_excluded();
            // An exclusion is only worth testing while the path is included, an exception only
            // while it is excluded.
            if pattern.exception != excluded {
                continue;
            }
            let mut hit = pattern.matcher.matches(path);
            if !hit {
                for i in 0..parents.len() {
                    if pattern.matcher.matches(&parents[..=i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
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
        self.patterns
            .iter()
            .any(|p| p.exception && (p.dirs > depth || p.cleaned.contains("**")))
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

/// Backtracking match of the whole of `text` against `tokens` (anchored at both ends).
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Char(c) => text.first() == Some(c) && match_tokens(rest, &text[1..]),
        Token::AnyOne => text.first().is_some_and(|c| *c != '/') && match_tokens(rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first().is_some_and(|c| {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated
            }) && match_tokens(rest, &text[1..])
        }
        Token::Star => {
            for skip in 0..=text.len() {
                if match_tokens(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::AnyTail => true,
        Token::AnyDirs => {
            // `(.*/)?`: nothing, or anything up to and including some `/`.
            if match_tokens(rest, text) {
                return true;
            }
            (0..text.len()).any(|i| text[i] == '/' && match_tokens(rest, &text[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(pattern: &str) -> DockerIgnore {
        DockerIgnore::parse(pattern, ".dockerignore").expect("valid pattern")
    }

    /// moby/patternmatcher `TestMatches` (pattern, path, excluded with parent matching).
    #[test]
    fn patternmatcher_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("docs", "docs/README.md", true),
            ("docs/", "docs/README.md", true),
            ("/docs", "docs/README.md", true),
            ("./docs/../docs", "docs/README.md", true),
            ("*.go", "dir/x.go", false),
            ("*/*.go", "dir/x.go", true),
            ("**/*.go", "dir/x.go", true),
        ];
        for (pattern, path, want) in cases {
            let ignore = single(pattern);
            let got = ignore.matches(path).is_excluded();
            assert_eq!(got, *want, "pattern {pattern:?} path {path:?}");
        }
    }

    /// Several patterns: the last matching one wins (patternmatcher multi-pattern cases plus
    /// Docker's documented examples).
    #[test]
    fn last_matching_pattern_wins() {
        let cases: &[(&str, &str, bool)] = &[
            ("**\n!util/docker/web", "util/docker/web/foo", false),
            (
                "**\n!util/docker/web\nutil/docker/web/foo",
                "util/docker/web/foo",
                true,
            ),
            (
                "**\n!dist/*.whl",
                "dist/proxy.py-2.4.0rc3-py3-none-any.whl",
                false,
            ),
            ("!fileutils.go\n*.go", "fileutils.go", true),
            ("*.go\n!fileutils.go", "fileutils.go", false),
            ("docs\n!docs/README.md", "docs/README.md", false),
            ("docs/\n!docs/README.md", "docs/README.md", false),
            ("docs/*\n!docs/README.md", "docs/README.md", false),
            ("docs\n!docs/README.md", "docs/other.md", true),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-secret.md",
                true,
            ),
            (
                "*.md\nREADME-secret.md\n!README*.md",
                "README-secret.md",
                false,
            ),
            ("# comment\n\n   \nsecret", "secret", true),
            ("#secret", "#secret", false),
            (" #secret", "#secret", true),
            ("! /inverted\n*", "inverted", true),
            ("*\n! /inverted", "inverted", false),
        ];
        for (text, path, want) in cases {
            let ignore = DockerIgnore::parse(text, ".dockerignore").expect("valid file");
            assert_eq!(
                ignore.matches(path).is_excluded(),
                *want,
                "{text:?} {path:?}"
            );
        }
    }

    #[test]
    fn matches_carry_the_pattern_as_written() {
        let ignore =
            DockerIgnore::parse("# c\n/build/\n!build/keep  \n", ".dockerignore").expect("valid");
        match ignore.matches("build/out.o") {
            IgnoreMatch::Exclude(p) => assert_eq!((p.original.as_str(), p.line), ("/build/", 2)),
            other => panic!("unexpected {other:?}"),
        }
        match ignore.matches("build/keep") {
            IgnoreMatch::Include(p) => {
                assert_eq!((p.original.as_str(), p.line), ("!build/keep", 3))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(ignore.matches("src/main.rs"), IgnoreMatch::None);
        assert_eq!(ignore.matches("."), IgnoreMatch::None);
    }

    #[test]
    fn bad_files_are_errors_with_their_line() {
        assert_eq!(
            DockerIgnore::parse("a\n!\n", ".dockerignore"),
            Err(IgnoreError::LoneBang {
                file: ".dockerignore".into(),
                line: 2
            })
        );
        assert!(matches!(
            DockerIgnore::parse("ok\n[", "x.dockerignore"),
            Err(IgnoreError::BadPattern { line: 2, .. })
        ));
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (raw, want) in [
            ("", "."),
            ("a/b/", "a/b"),
            ("/a/../..", "/"),
            ("../a", "../a"),
            ("a/./b//c", "a/b/c"),
            ("/", "/"),
        ] {
            assert_eq!(clean(raw), want, "{raw}");
        }
    }
}
