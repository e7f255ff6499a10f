//! apk version strings: validity, ordering and fuzzy (`~`) matching, as apk-tools 3 defines them.
//!
//! Grammar: `digits {"." digits} [letter] {"_" suffix [digits]} ["~" hexhash] ["-r" digits]`,
//! suffixes `alpha < beta < pre < rc < (none) < cvs < svn < git < hg < p`.
//!
//! Comparison walks both strings token by token while the token kinds agree: digit runs compare
//! numerically, except that for runs after the first a leading `0` on either side makes them
//! compare as byte strings (`8.2.0015 < 8.2.002`); letters by character; suffixes by the order
//! above; suffix numbers and revisions numerically; hashes as strings. When the kinds differ, a
//! pre-release suffix makes its side smaller; otherwise the side whose next token comes earlier
//! in `digit < letter < suffix < suffix-number < hash < revision < end < invalid` is greater.
//! With fuzzy matching, the first version matches when the second ran out first (`3.6.9 ~ 3.6`).
//!
//! Invalid strings still compare (apk-tools compares whatever it is given); [`Version::parse`]
//! is where validity is enforced. Data enters as `&str` and leaves as an [`Ordering`].

use std::cmp::Ordering;
use std::fmt;

/// A valid apk version string (`1.36.1-r29`, `3.0_rc1`, `1.0~1a2b-r0`).
#[derive(Clone, Debug)]
pub struct Version(String);

/// Why a version string is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid apk version `{version}`: {reason}")]
pub struct VersionError {
    /// The string given.
    pub version: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Version {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let mut tokens = Tokens::new(text);
        loop {
            match tokens.next_token().kind {
                Kind::End => return Ok(Version(text.to_owned())),
                Kind::Invalid => {
                    return Err(VersionError {
                        version: text.to_owned(),
                        reason: format!(
                            "unexpected `{}` at byte {}; expected digits{{.digits}}[letter]{{_suffix[N]}}[~hash][-rN]",
                            text.get(tokens.invalid_at..).unwrap_or(""),
                            tokens.invalid_at
                        ),
                    });
                }
                _ => {}
            }
        }
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        compare(&self.0, &other.0) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}

/// True when `text` is a valid apk version.
pub fn is_valid(text: &str) -> bool {
    Version::parse(text).is_ok()
}

/// Compares two version strings (valid or not), as `apk version -t A B`.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_inner(a, b, false)
}

/// True when `version` fuzzily matches `prefix` (`apk`'s `~`): `prefix`'s tokens are a prefix of
/// `version`'s (`3.6.9 ~ 3.6`, `3.6_pre1 ~ 3.6`, but not `3.8 ~ 3.8.1`).
pub fn fuzzy_match(version: &str, prefix: &str) -> bool {
    compare_inner(version, prefix, true) == Ordering::Equal
}

/// Compares with fuzzy matching on or off: the result apk's operators test against.
pub fn compare_fuzzy(a: &str, b: &str, fuzzy: bool) -> Ordering {
    compare_inner(a, b, fuzzy)
}

/// Token kinds, in the order that decides comparisons when the kinds differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    Hash,
    Revision,
    End,
    Invalid,
}

/// Suffix names in order; the first four are pre-releases (they sort before "no suffix").
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
const PRE_RELEASES: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    suffix: usize,
}

struct Tokens<'a> {
    rest: &'a str,
    full: &'a str,
    last: Kind,
    started: bool,
    invalid_at: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens {
            rest: text,
            full: text,
            last: Kind::InitialDigit,
            started: false,
            invalid_at: 0,
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let len = self.rest.bytes().take_while(|&b| pred(b)).count();
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        taken
    }

    fn token(&mut self, kind: Kind, text: &'a str, suffix: usize) -> Token<'a> {
        self.last = kind;
        Token { kind, text, suffix }
    }

    fn invalid(&mut self) -> Token<'a> {
        self.invalid_at = self.full.len() - self.rest.len();
        self.last = Kind::Invalid;
        Token {
            kind: Kind::Invalid,
            text: "",
            suffix: 0,
        }
    }

    fn next_token(&mut self) -> Token<'a> {
        if matches!(self.last, Kind::End | Kind::Invalid) && self.started {
            return Token {
                kind: self.last,
                text: "",
                suffix: 0,
            };
        }
        if !self.started {
            self.started = true;
            let digits = self.take_while(|b| b.is_ascii_digit());
            if digits.is_empty() {
                return self.invalid();
            }
            return self.token(Kind::InitialDigit, digits, 0);
        }
        let Some(&first) = self.rest.as_bytes().first() else {
            return self.token(Kind::End, "", 0);
        };
        let before = self.rest;
        let last = self.last;
        match first {
            b'a'..=b'z' if last <= Kind::Digit => {
                self.rest = &before[1..];
                self.token(Kind::Letter, &before[..1], 0)
            }
            b'.' if last <= Kind::Digit => {
                self.rest = &before[1..];
                let digits = self.take_while(|b| b.is_ascii_digit());
                if digits.is_empty() {
                    self.rest = before;
                    return self.invalid();
                }
                self.token(Kind::Digit, digits, 0)
            }
            b'_' if last <= Kind::SuffixNumber => {
                self.rest = &before[1..];
                let name = self.take_while(|b| b.is_ascii_lowercase());
                match SUFFIXES.iter().position(|s| *s == name) {
                    Some(index) => self.token(Kind::Suffix, name, index),
                    None => {
                        self.rest = before;
                        self.invalid()
                    }
                }
            }
            b'0'..=b'9' if last == Kind::Suffix => {
                let digits = self.take_while(|b| b.is_ascii_digit());
                self.token(Kind::SuffixNumber, digits, 0)
            }
            b'~' if last < Kind::Hash => {
                self.rest = &before[1..];
                let hash = self.take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if hash.is_empty() {
                    self.rest = before;
                    return self.invalid();
                }
                self.token(Kind::Hash, hash, 0)
            }
            b'-' if last < Kind::Revision && before.starts_with("-r") => {
                self.rest = &before[2..];
                let digits = self.take_while(|b| b.is_ascii_digit());
                if digits.is_empty() {
                    self.rest = before;
                    return self.invalid();
                }
                self.token(Kind::Revision, digits, 0)
            }
            _ => self.invalid(),
        }
    }
}

/// Compares two digit strings as numbers of any length.
fn numeric(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn token_cmp(a: &Token<'_>, b: &Token<'_>) -> Ordering {
    match a.kind {
        Kind::Digit if a.text.starts_with('0') || b.text.starts_with('0') => {
            a.text.as_bytes().cmp(b.text.as_bytes())
        }
        Kind::InitialDigit | Kind::Digit | Kind::SuffixNumber | Kind::Revision => {
            numeric(a.text, b.text)
        }
        Kind::Letter | Kind::Hash => a.text.cmp(b.text),
        Kind::Suffix => a.suffix.cmp(&b.suffix),
        Kind::End | Kind::Invalid => Ordering::Equal,
    }
}

fn compare_inner(a: &str, b: &str, fuzzy: bool) -> Ordering {
    let mut ta = Tokens::new(a);
    let mut tb = Tokens::new(b);
    let mut x = ta.next_token();
    let mut y = tb.next_token();
    while x.kind == y.kind && x.kind < Kind::End {
        let order = token_cmp(&x, &y);
        if order != Ordering::Equal {
            return order;
        }
        x = ta.next_token();
        y = tb.next_token();
    }
    if x.kind == y.kind || (fuzzy && y.kind == Kind::End) {
        return Ordering::Equal;
    }
    if x.kind == Kind::Suffix && x.suffix < PRE_RELEASES {
        return Ordering::Less;
    }
    if y.kind == Kind::Suffix && y.suffix < PRE_RELEASES {
        return Ordering::Greater;
    }
    // The side whose next token comes later in the kind order is the smaller version.
    y.kind.cmp(&x.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_table() {
        use Ordering::*;
        for (a, want, b) in [
            ("1.10", Greater, "1.9"),
            ("1.2", Less, "1.2.0"),
            ("1.2", Less, "1.2-r0"),
            ("1.2-r9", Less, "1.2-r10"),
            ("1.0a", Less, "1.0.1"),
            ("1.0_rc1", Less, "1.0"),
            ("1.0", Less, "1.0_p"),
            ("1.0_p1", Greater, "1.0-r1"),
            ("1.01", Less, "1.1"),
            ("8.2.0015", Less, "8.2.002"),
            ("1.0~1234-r1", Greater, "1.0~1234-r0"),
            ("20240101", Greater, "3.0"),
            ("1.36.1-r29", Greater, "1.36.1-r28"),
            (
                "99999999999999999999999.1",
                Greater,
                "99999999999999999999998.2",
            ),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn validity_and_errors() {
        assert!(is_valid("1.36.1-r29"));
        assert!(!is_valid("1.0-r"));
        let err = Version::parse("0.1_foo").expect_err("bad suffix");
        assert!(err.to_string().contains("`_foo` at byte 3"), "{err}");
        assert!(fuzzy_match("3.6.9", "3.6"));
        assert!(!fuzzy_match("3.8", "3.8.1"));
    }
}
