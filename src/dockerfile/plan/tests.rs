//! Tests of the planner: stages, typed instructions, flags and the errors naming lines.

use super::*;
use crate::dockerfile::ast::Node;

fn node(keyword: &str, flags: &[&str], args: &[&str], line: usize) -> Node {
    Node {
        keyword: keyword.to_owned(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        json_form: false,
        next: None,
        heredocs: Vec::new(),
        original: args.join(" "),
        start_line: line,
        end_line: line,
    }
}

fn file(nodes: Vec<Node>) -> Dockerfile {
    Dockerfile {
        escape: '\\',
        syntax: None,
        nodes,
    }
}

#[test]
fn stages_targets_and_dependencies() {
    let f = file(vec![
        node("from", &[], &["scratch", "AS", "build"], 1),
        node("copy", &[], &["a", "/a"], 2),
        node("from", &[], &["scratch", "as", "unused"], 3),
        node("from", &[], &["build"], 4),
        node("copy", &["--from=build"], &["/a", "/b"], 5),
    ]);
    let plan = plan(&f, &PlanOptions::default()).unwrap();
    assert_eq!(plan.target, 2);
    assert_eq!(plan.stages[2].base, BaseRef::Stage(0));
    assert_eq!(plan.needed_stages(), vec![0, 2]);

    let options = PlanOptions {
        target: Some("unused".into()),
        ..Default::default()
    };
    assert_eq!(super::plan(&f, &options).unwrap().target, 1);
    let options = PlanOptions {
        target: Some("nope".into()),
        ..Default::default()
    };
    let err = super::plan(&f, &options).unwrap_err();
    assert!(
        err.message
            .contains("target stage `nope` could not be found"),
        "{err}"
    );

    // A stage a RUN bind-mounts is needed too.
    let f = file(vec![
        node("from", &[], &["scratch", "AS", "tools"], 1),
        node("from", &[], &["scratch", "AS", "other"], 2),
        node("from", &[], &["scratch"], 3),
        node(
            "run",
            &["--mount=type=bind,target=/t,FROM=tools"],
            &["true"],
            4,
        ),
    ]);
    assert_eq!(
        super::plan(&f, &PlanOptions::default())
            .unwrap()
            .needed_stages(),
        vec![0, 2]
    );
}

#[test]
fn errors_name_the_line() {
    for (nodes, line, needle) in [
        (
            vec![node("copy", &[], &["a", "b"], 3)],
            3,
            "before the first FROM",
        ),
        (
            vec![
                node("from", &[], &["scratch"], 1),
                node("frobnicate", &[], &["x"], 2),
            ],
            2,
            "unknown instruction: FROBNICATE",
        ),
        (
            vec![
                node("from", &[], &["scratch"], 1),
                node("copy", &["--bogus=1"], &["a", "b"], 4),
            ],
            4,
            "unknown flag: --bogus",
        ),
        (
            vec![
                node("from", &[], &["scratch"], 1),
                node("copy", &[], &["a"], 5),
            ],
            5,
            "at least two arguments",
        ),
        (
            vec![
                node("from", &[], &["scratch"], 1),
                node("copy", &["--from=later"], &["a", "b"], 2),
                node("from", &[], &["scratch", "AS", "later"], 3),
            ],
            2,
            "defined after",
        ),
        (
            vec![node("from", &[], &["a", "b"], 7)],
            7,
            "FROM requires either one argument",
        ),
    ] {
        let err = plan(&file(nodes), &PlanOptions::default()).unwrap_err();
        assert_eq!(err.line, line, "{err}");
        assert!(err.message.contains(needle), "{err}");
    }
}

#[test]
fn local_base_references() {
    for (text, want) in [
        (
            "oci:out/base:1.0",
            BaseRef::OciLayout {
                dir: "out/base".into(),
                reference: Some("1.0".into()),
            },
        ),
        (
            "oci:out/base",
            BaseRef::OciLayout {
                dir: "out/base".into(),
                reference: None,
            },
        ),
        (
            "oci-archive:b.tar:latest",
            BaseRef::OciArchive {
                file: "b.tar".into(),
                reference: Some("latest".into()),
            },
        ),
        (
            "python:3.11-alpine",
            BaseRef::Registry("python:3.11-alpine".into()),
        ),
        ("SCRATCH", BaseRef::Scratch),
    ] {
        assert_eq!(classify_base(text, &[], &BTreeMap::new()), want, "{text}");
    }
}
