//! BuildKit's s-expression dump of a parse tree (`kiln debug dockerfile`).
//!
//! [`dump`] renders a [`Dockerfile`] exactly as BuildKit's `Node.Dump()` does: one
//! `(keyword ["--flag" ...] "arg" ...)` line per instruction, strings quoted by Go's
//! `strconv.Quote` rules ([`go_quote`]). Heredoc bodies are not shown, as upstream.

use super::ast::{Dockerfile, Node};

/// Renders `file` in BuildKit's `Node.Dump()` format, one line per instruction.
pub fn dump(file: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &file.nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// One instruction without the surrounding parentheses.
fn dump_node(node: &Node) -> String {
    let mut s = node.keyword.clone();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        s.push_str(" [");
        s.push_str(&flags.join(" "));
        s.push(']');
    }
    if let Some(next) = &node.next {
        s.push_str(" (");
        s.push_str(&dump_node(next));
        s.push(')');
    }
    for arg in &node.args {
        s.push(' ');
        s.push_str(&go_quote(arg));
    }
    s.trim().to_owned()
}

/// Quotes `s` as Go's `strconv.Quote` does: a double-quoted literal with `\"`, `\\`, the C
/// escapes `\a \b \f \n \r \t \v`, `\xHH` for other ASCII controls and DEL, and `\uHHHH` /
/// `\UHHHHHHHH` for non-printable code points; printable text is kept as raw UTF-8.
///
/// "Printable" follows Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols
/// and the ASCII space). Without a Unicode category table, unassigned code points are treated
/// as printable; controls, separators other than U+0020, format characters, private-use
/// characters and noncharacters are escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint` (see [`go_quote`]).
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = matches!(u, 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, Go `strconv.Quote` output).
    const QUOTE_CASES: &[(&str, &str)] = &[
        ("plain", r#""plain""#),
        ("a\"b\\c", r#""a\"b\\c""#),
        ("\t\n\r\x07\x08\x0c\x0b", r#""\t\n\r\a\b\f\v""#),
        ("\0\x1b\x7f", r#""\x00\x1b\x7f""#),
        ("♥ 한국어", r#""♥ 한국어""#),
        ("\u{a0}\u{200b}\u{feff}", r#""\u00a0\u200b\ufeff""#),
        ("\u{e0001}", r#""\U000e0001""#),
        ("", r#""""#),
    ];

    /// (one-instruction Dockerfile, expected dump line without the newline).
    const DUMP_CASES: &[(&str, &str)] = &[
        ("HEALTHCHECK", "(healthcheck)"),
        ("HEALTHCHECK NONE", r#"(healthcheck "NONE")"#),
        ("HEALTHCHECK   CMD   a b", r#"(healthcheck "CMD" "a b")"#),
        (
            "HEALTHCHECK --retries=3 CMD [\"x\"]",
            r#"(healthcheck ["--retries=3"] "CMD" "x")"#,
        ),
        (
            "RUN --mount=\"type=cache\" --x='a b' -- echo",
            r#"(run ["--mount=type=cache" "--x=a b"] "echo")"#,
        ),
        (
            "COPY --chown=me -- --file /d",
            r#"(copy ["--chown=me"] "--file" "/d")"#,
        ),
        ("RUN --only", r#"(run ["--only"])"#),
        ("FOO bar baz", r#"(foo "")"#),
        ("ONBUILD", "(onbuild)"),
        (
            "ONBUILD --x ADD [\"a\", \"b\"]",
            r#"(onbuild ["--x"] (add "a" "b"))"#,
        ),
        ("ENV", "(env)"),
        (
            "ENV a=\"x y\" b=c\\ d",
            r#"(env "a" "\"x y\"" "=" "b" "c\\ d" "=")"#,
        ),
        ("LABEL k  v w", r#"(label "k" "v w" "")"#),
        ("ARG a=1 'b c'", r#"(arg "a=1" "'b c'")"#),
        ("CMD []", "(cmd)"),
        ("CMD [\"\"]", r#"(cmd "")"#),
        ("CMD [\"a\" \"b\"]", r#"(cmd "[\"a\" \"b\"]")"#),
        ("VOLUME [\"/a\" /b", r#"(volume "[\"/a\"" "/b")"#),
        ("USER", "(user)"),
    ];

    #[test]
    fn dump_table() {
        for (input, want) in DUMP_CASES {
            let file = crate::dockerfile::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(dump(&file), format!("{want}\n"), "{input:?}");
        }
    }

    #[test]
    fn quote_table() {
        for (input, want) in QUOTE_CASES {
            assert_eq!(go_quote(input), *want, "{input:?}");
        }
    }
}
