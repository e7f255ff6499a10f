//! Go's `path/filepath.Match` on Unix, which Docker uses for COPY source wildcards: `*` (any run
//! of non-`/` characters), `?` (one non-`/` character), `[...]` classes with ranges and `^`
//! negation, and `\` escapes. A malformed pattern is an error even when an earlier part already
//! failed to match, as in Go.
//!
//! [`go_match`] is the entry point; [`has_wildcards`] tells whether a path component needs it.

/// A pattern Go's `filepath.Match` rejects (`filepath.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern `{0}`")]
pub struct BadPattern(pub String);

/// True when `name` contains an unescaped `*`, `?` or `[` (Docker's `containsWildcards`).
pub fn has_wildcards(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Reports whether `name` matches the shell pattern `pattern`, exactly as Go's
/// `filepath.Match` does on Unix.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern(pattern.to_owned());
    let mut pat = pattern;
    let mut name = name;
    'chunks: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains('/'));
        }
        match match_chunk(chunk, name) {
            Ok(Some(left)) if left.is_empty() || !pat.is_empty() => {
                name = left;
                continue;
            }
            Err(()) => return Err(bad()),
            _ => {}
        }
        if star {
            // Try skipping more and more characters (never a `/`).
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let skip = i + c.len_utf8();
                match match_chunk(chunk, &name[skip..]) {
                    Ok(Some(left)) => {
                        if pat.is_empty() && !left.is_empty() {
                            continue;
                        }
                        name = left;
                        continue 'chunks;
                    }
                    Ok(None) => {}
                    Err(()) => return Err(bad()),
                }
            }
        }
        // No match: still check that the rest of the pattern is well formed.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            if match_chunk(chunk, "").is_err() {
                return Err(bad());
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next unbracketed `*`.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let bytes = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Matches `chunk` (no `*`) at the start of `s`: `Ok(Some(rest))` on a match, `Ok(None)` on a
/// mismatch, `Err(())` on a malformed chunk.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<Option<&'a str>, ()> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(first) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            '[' => {
                let mut current = None;
                if !failed {
                    let c = s.chars().next().ok_or(())?;
                    s = &s[c.len_utf8()..];
                    current = Some(c);
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.starts_with(']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.starts_with('-') {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if let Some(c) = current {
                        if lo <= c && c <= hi {
                            matched = true;
                        }
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let c = s.chars().next().ok_or(())?;
                    if c == '/' {
                        failed = true;
                    }
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == '\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(());
                    }
                }
                let literal = chunk.chars().next().ok_or(())?;
                if !failed {
                    if s.starts_with(literal) {
                        s = &s[literal.len_utf8()..];
                    } else {
                        failed = true;
                    }
                }
                chunk = &chunk[literal.len_utf8()..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One possibly escaped character of a class, and the rest of the chunk.
fn get_esc(chunk: &str) -> Result<(char, &str), ()> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(());
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
        if chunk.is_empty() {
            return Err(());
        }
    }
    let c = chunk.chars().next().ok_or(())?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own `filepath.Match` cases (as carried in moby/patternmatcher): pattern, name,
    /// expected (`None` = ErrBadPattern).
    #[test]
    fn go_filepath_match_table() {
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(false)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("a[", "x", None),
            ("a/b[", "x", None),
            ("*x", "xxx", Some(true)),
        ];
        for (pattern, name, want) in cases {
            let got = go_match(pattern, name).ok();
            assert_eq!(got, *want, "go_match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn wildcard_detection_respects_escapes() {
        for (name, want) in [
            ("plain", false),
            ("*.txt", true),
            ("a?", true),
            ("[ab]", true),
            ("a\\*b", false),
            ("a\\\\*", true),
        ] {
            assert_eq!(has_wildcards(name), want, "{name}");
        }
    }
}
