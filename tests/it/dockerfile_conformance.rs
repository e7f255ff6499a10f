//! BuildKit's Dockerfile parser fixtures run against `kiln::dockerfile::parse` and `dump`.
//!
//! The fixtures live in the shared peer-tests folder beside the repository
//! (`../shared/peer-tests/buildkit-dockerfile-parser`, see its PROVENANCE.md). Every positive
//! case must parse and dump byte for byte to its `result`; every negative case must fail with
//! an error naming a line; `testfile-line` checks instruction line ranges. A missing fixture
//! folder fails the tests.

use std::fs;
use std::path::{Path, PathBuf};

use kiln::dockerfile::{dump::dump, parse};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/peer-tests/buildkit-dockerfile-parser"
);

/// Cases known not to pass, with the reason. Each must still fail as described.
const UNSUPPORTED: &[(&str, &str)] = &[];

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(FIXTURES);
    assert!(
        dir.join("PROVENANCE.md").is_file(),
        "BuildKit parser fixtures not found at {}: the shared/ folder must sit beside the \
         repository clone",
        dir.display()
    );
    dir
}

/// The case folders of `dir`, sorted.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {}", dir.display());
    out
}

fn read_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

fn case_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn positive_cases_dump_exactly() {
    let dir = fixtures().join("testfiles");
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in cases(&dir) {
        let name = case_name(&case);
        let input = read_text(&case.join("Dockerfile"));
        let want = read_text(&case.join("result"));
        let got = parse(&input).map(|file| dump(&file));
        let ok = matches!(&got, Ok(text) if *text == want);
        match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => assert!(!ok, "{name} is listed as unsupported ({why}) but passes"),
            None if ok => passed += 1,
            None => failures.push(format!("{name}:\n--- want\n{want}--- got\n{got:?}\n")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{passed} positive cases passed");
}

#[test]
fn negative_cases_fail_with_a_line() {
    let dir = fixtures().join("testfiles-negative");
    for case in cases(&dir) {
        let name = case_name(&case);
        let input = read_text(&case.join("Dockerfile"));
        let err = parse(&input).expect_err(&name);
        assert!(err.line >= 1, "{name}: error without a line: {err}");
        assert!(
            err.to_string().contains(&format!(":{}:", err.line)),
            "{name}: {err}"
        );
    }
}

#[test]
fn negative_case_messages() {
    let dir = fixtures().join("testfiles-negative");
    let want = [
        ("empty_dockerfile", 1, "file with no instructions"),
        ("only_comments", 1, "file with no instructions"),
        (
            "shykes-nested-json",
            1,
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
    ];
    for (name, line, message) in want {
        let path = dir.join(name).join("Dockerfile");
        assert!(path.is_file(), "negative case {name} is missing");
        let err = parse(&read_text(&path)).expect_err(name);
        assert_eq!((err.line, err.message.as_str()), (line, message), "{name}");
    }
}

#[test]
fn line_numbers() {
    let input = read_text(&fixtures().join("testfile-line").join("Dockerfile"));
    let file = parse(&input).expect("testfile-line parses");
    let ranges: Vec<(usize, usize)> = file
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(ranges, [(5, 5), (11, 12), (17, 31)]);
    assert_eq!(file.nodes.first().map(|n| n.start_line), Some(5));
    assert_eq!(file.nodes.last().map(|n| n.end_line), Some(31));
}
