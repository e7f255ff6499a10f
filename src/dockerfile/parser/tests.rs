//! Tests of the Dockerfile parser: directives, continuations, JSON and shell forms, heredocs.

use super::*;

/// (Dockerfile, expected heredocs as (name, content, expand, chomp), start, end).
#[allow(clippy::type_complexity)]
const HEREDOC_CASES: &[(&str, &[(&str, &str, bool, bool)], usize, usize)] = &[
    (
        "FROM a\nRUN <<EOF\necho hi\nEOF\n",
        &[("EOF", "echo hi\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<-EOF\n\techo hi\n\t\tEOF\n",
        &[("EOF", "echo hi\n", true, true)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<'EOF'\necho $HOME\nEOF\n",
        &[("EOF", "echo $HOME\n", false, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<\"EOF\"\nx\nEOF\n",
        &[("EOF", "x\n", false, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN cat <<A <<B\na\nA\nb\nB\n",
        &[("A", "a\n", true, false), ("B", "b\n", true, false)],
        2,
        6,
    ),
    (
        "FROM a\nCOPY <<EOF /dest\nhello\nEOF\n",
        &[("EOF", "hello\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nADD <<EOF /dest\nhello\nEOF",
        &[("EOF", "hello\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN python3 <<EOF\n\nprint(1)\nEOF\n",
        &[("EOF", "\nprint(1)\n", true, false)],
        2,
        5,
    ),
    (
        "FROM a\nRUN 3<<EOF cat /proc/self/fd/3\nx\nEOF\n",
        &[("EOF", "x\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<EOF\n  EOF\nEOF\n",
        &[("EOF", "  EOF\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<  EOF  > foo\nx\nEOF\n",
        &[("EOF", "x\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<$EOF\n$EOF\n",
        &[("$EOF", "", true, false)],
        2,
        3,
    ),
    (
        "FROM a\nRUN <<eo'f'\nx\neof\n",
        &[("eof", "x\n", false, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<eo\\'f\nx\neo'f\n",
        &[("eo'f", "x\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN <<'one two'\nx\none two\n",
        &[("one two", "x\n", false, false)],
        2,
        4,
    ),
    (
        "FROM a\nCOPY <<X <<Y /d\nY\nX\nX\nY\n",
        &[("X", "Y\n", true, false), ("Y", "X\n", true, false)],
        2,
        6,
    ),
    (
        "FROM a\nRUN <<C\n# not a comment\nC\n",
        &[("C", "# not a comment\n", true, false)],
        2,
        4,
    ),
    (
        "FROM a\nRUN --mount=type=cache,target=/x <<M\nx\nM\n",
        &[("M", "x\n", true, false)],
        2,
        4,
    ),
    ("FROM a\nRUN \"<<NO\"\n", &[], 2, 2),
    ("FROM a\nUSER <<NO\n", &[], 2, 2),
    (
        "FROM a\nRUN <<EOF sh\nEOF\n",
        &[("EOF", "", true, false)],
        2,
        3,
    ),
    ("FROM a\nRUN [\"<<EOF\"]\n", &[], 2, 2),
    ("FROM a\nRUN echo a<<EOF\n", &[], 2, 2),
    ("FROM a\nCMD <<EOF\n", &[], 2, 2),
    (
        "FROM a\nRUN <<EOF \\\n  && true\nx\nEOF\n",
        &[("EOF", "x\n", true, false)],
        2,
        5,
    ),
];

#[test]
fn heredocs_table() {
    for (i, (text, want, start, end)) in HEREDOC_CASES.iter().enumerate() {
        let file = parse(text).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let node = &file.nodes[1];
        let got: Vec<_> = node
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp))
            .collect();
        assert_eq!(got, want.to_vec(), "case {i}: {text:?}");
        assert_eq!((node.start_line, node.end_line), (*start, *end), "case {i}");
    }
}

#[test]
fn heredoc_under_onbuild() {
    let file = parse("FROM a\nONBUILD RUN <<EOF\nx\nEOF\nUSER me\n").expect("parses");
    let node = &file.nodes[1];
    assert_eq!(node.heredocs.len(), 1);
    assert_eq!((node.start_line, node.end_line), (2, 4));
    let nested = node.next.as_deref().expect("nested");
    assert_eq!(nested.heredocs, node.heredocs);
    assert_eq!(file.nodes[2].start_line, 5);
}

/// (Dockerfile, error line, message fragment).
const ERROR_CASES: &[(&str, usize, &str)] = &[
    (
        "FROM a\nRUN <<EOF\necho\n",
        2,
        "unterminated heredoc `EOF` started on line 2",
    ),
    (
        "FROM a\n\nRUN <<A <<B\na\nA\nb\n",
        3,
        "unterminated heredoc `B` started on line 3",
    ),
    ("", 1, "file with no instructions"),
    ("# just a comment\n\n", 1, "file with no instructions"),
    ("FROM a\nENV X\n", 2, "ENV must have two arguments"),
    ("FROM a\nLABEL a=b c\n", 2, "can't find = in \"c\""),
    ("FROM a\n\nCMD [\"a\", 1]\n", 3, NOT_STRING_ARRAY),
    ("# escape=x\nFROM a\n", 1, "invalid escape token 'x'"),
    (
        "# escape=`\n# escape=`\nFROM a\n",
        2,
        "only one escape parser directive",
    ),
];

#[test]
fn errors_table() {
    for (text, line, fragment) in ERROR_CASES {
        let err = parse(text).expect_err(text);
        assert_eq!(err.line, *line, "{text:?}: {err}");
        assert!(err.message.contains(fragment), "{text:?}: {err}");
    }
}

#[test]
fn node_fields() {
    let file = parse("# syntax=docker/dockerfile:1\nfrom --platform=$P a AS b\nRUN --mount=type=cache,target=/x \\\n  make\n")
            .expect("parses");
    assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1"));
    let from = &file.nodes[0];
    assert_eq!(from.keyword, "from");
    assert_eq!(from.flags, ["--platform=$P"]);
    assert_eq!(from.args, ["a", "AS", "b"]);
    assert_eq!(from.original, "a AS b");
    let run = &file.nodes[1];
    assert_eq!(run.args, ["make"]);
    assert_eq!((run.start_line, run.end_line), (3, 4));
    assert!(!run.json_form);
}
