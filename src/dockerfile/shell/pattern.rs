//! The patterns of `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`: `*` and `?` wildcards with
//! backslash escapes (no bracket expressions, as in BuildKit), matched against the value for
//! the shortest or longest prefix, suffix, or every occurrence.

/// A shell pattern from `${VAR#p}`, `${VAR%p}` or `${VAR/p/r}`: `*` any string, `?` one
/// character, `\\*`, `\\?` and `\\\\` literal (no bracket expressions, as in BuildKit).
pub(super) struct Glob(Vec<GlobToken>);

#[derive(Clone, Copy, PartialEq)]
enum GlobToken {
    Star,
    One,
    Char(char),
}

impl Glob {
    pub(super) fn new(pattern: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => GlobToken::Star,
                '?' => GlobToken::One,
                '\\' => match chars.peek() {
                    // `}` and `/` are escaped for `${}`, the escape is not part of the pattern
                    Some('}' | '/') => continue,
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        GlobToken::Char(n)
                    }
                    other => {
                        let shown = other.map(|c| c.to_string()).unwrap_or_default();
                        return Err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'"
                        ));
                    }
                },
                c => GlobToken::Char(c),
            });
        }
        Ok(Glob(tokens))
    }

    /// Where a match of the pattern starting at `start` of `text` can end: one flag per
    /// position. The pattern is walked once over a set of positions (O(pattern x text)), so
    /// patterns with many `*` cost no more than others (trying every split recursively was
    /// exponential in the number of `*`).
    fn match_ends(tokens: &[GlobToken], text: &[char], start: usize) -> Vec<bool> {
        let mut reached = vec![false; text.len() + 1];
        reached[start] = true;
        for token in tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                GlobToken::Star => {
                    if let Some(first) = reached.iter().position(|&r| r) {
                        next[first..].iter_mut().for_each(|n| *n = true);
                    }
                }
                GlobToken::One => next[1..].copy_from_slice(&reached[..text.len()]),
                GlobToken::Char(c) => {
                    for i in 0..text.len() {
                        next[i + 1] = reached[i] && text[i] == *c;
                    }
                }
            }
            reached = next;
            if !reached.contains(&true) {
                break;
            }
        }
        reached
    }

    /// The end of the shortest or longest match starting at `start`.
    fn prefix_len(&self, text: &[char], start: usize, greedy: bool) -> Option<usize> {
        let ends = Self::match_ends(&self.0, text, start);
        let mut hits = (start..=text.len()).filter(|&end| ends[end]);
        if greedy {
            hits.next_back()
        } else {
            hits.next()
        }
    }

    pub(super) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        match self.prefix_len(&text, 0, greedy) {
            Some(end) => text[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// Matched from the end: the reversed pattern over the reversed text.
    pub(super) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        let reversed_text: Vec<char> = text.iter().rev().copied().collect();
        let reversed_pattern: Vec<GlobToken> = self.0.iter().rev().copied().collect();
        let ends = Self::match_ends(&reversed_pattern, &reversed_text, 0);
        let mut lengths = (0..=text.len()).filter(|&len| ends[len]);
        let length = if greedy {
            lengths.next_back()
        } else {
            lengths.next()
        };
        match length {
            Some(length) => text[..text.len() - length].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// Replaces the leftmost (longest) match, or every non-overlapping match.
    pub(super) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut replaced = false;
        while pos <= text.len() {
            if all || !replaced {
                if let Some(end) = self.prefix_len(&text, pos, true) {
                    out.push_str(replacement);
                    replaced = true;
                    if end > pos {
                        pos = end;
                        continue;
                    }
                }
            }
            if let Some(&c) = text.get(pos) {
                out.push(c);
            }
            pos += 1;
        }
        out
    }
}
