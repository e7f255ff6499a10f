//! Tests of the Dockerfile word expansion and splitting.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "A" => Some("a b".to_owned()),
        "E" => Some(String::new()),
        _ => None,
    }
}

/// Forms the upstream vectors do not cover: (input, expected or "error").
const WORD_CASES: &[(&str, &str)] = &[
    ("${A-x}", "a b"),
    ("${E-x}", ""),
    ("${U-x}", "x"),
    ("${E:-x}", "x"),
    ("${A+x}", "x"),
    ("${E+x}", "x"),
    ("${U+x}", ""),
    ("${E:+x}", ""),
    ("${U?}", "error"),
    ("${E?}", ""),
    ("${A:=x}", "error"),
    ("${A#a}", " b"),
    ("${A#*}", "a b"),
    ("${A##*}", ""),
    ("${A%b}", "a "),
    ("${A%%a*}", ""),
    ("${A%?*}", "a "),
    ("${A/ /_}", "a_b"),
    ("${U/a/b}", ""),
    ("${A//?/x}", "xxx"),
    ("${A/\\q/x}", "error"),
    ("`$A", "$A"),
];

#[test]
fn word_table() {
    for (input, want) in WORD_CASES {
        let got = expand_word(input, &env, '`').unwrap_or_else(|_| "error".to_owned());
        assert_eq!(got, *want, "{input:?}");
    }
}

#[test]
fn error_names_the_variable() {
    let err = expand_word("${NOPE:?must be set}", &env, '\\').expect_err("unset");
    assert_eq!(err.message, "NOPE: must be set");
    let err = expand_word("${E:?}", &env, '\\').expect_err("empty");
    assert_eq!(err.message, "E: is not allowed to be empty");
}

#[test]
fn words_split_expansions_not_quotes() {
    let got = expand_words("x$A \"$A\"", &env, '\\').expect("expands");
    assert_eq!(got, ["xa", "b", "a b"]);
}

/// `${v:-${v:-...}}` nested: up to the limit it expands (on a thread with a 1 MiB stack,
/// half of what a tokio worker gets), one more level is an error, and ten thousand levels
/// are an error rather than a stack overflow.
#[test]
fn nesting_is_limited() {
    fn nested(levels: usize) -> String {
        format!("{}x{}", "${v:-".repeat(levels), "}".repeat(levels))
    }
    let outcome = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            (
                expand_word(&nested(MAX_NESTING), &env, '\\'),
                expand_word(&format!("\"{}\"", nested(MAX_NESTING)), &env, '\\'),
                expand_word(&nested(MAX_NESTING + 1), &env, '\\'),
                expand_word(&nested(10_300), &env, '\\'),
            )
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert_eq!(outcome.0.as_deref(), Ok("x"));
    assert_eq!(outcome.1.as_deref(), Ok("x"));
    for err in [outcome.2.unwrap_err(), outcome.3.unwrap_err()] {
        assert_eq!(
            err.message,
            format!("variable expansions nested more than {MAX_NESTING} levels deep")
        );
        assert!(err.to_string().len() < 400, "the word is shortened: {err}");
    }
}

/// Many `*` against a long value that does not match: polynomial, not exponential.
#[test]
fn patterns_with_many_stars_are_fast() {
    let long = |name: &str| match name {
        "L" => Some("a".repeat(2_000)),
        _ => None,
    };
    let pattern = format!("{}b", "*a".repeat(30));
    let started = std::time::Instant::now();
    for form in ["#", "##", "%", "%%"] {
        let word = format!("${{L{form}{pattern}}}");
        assert_eq!(expand_word(&word, &long, '\\').unwrap(), "a".repeat(2_000));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn heredoc_names() {
    assert_eq!(heredoc_name("EOF"), Some(("EOF".into(), "EOF".into())));
    assert_eq!(heredoc_name("'EOF'"), Some(("EOF".into(), "'EOF'".into())));
    assert_eq!(heredoc_name("$X"), Some(("$X".into(), "$X".into())));
    assert_eq!(heredoc_name("A B"), None);
}
