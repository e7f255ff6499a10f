//! Conformance: every vector of apk-tools' `test/unit/version.data` (copied into the shared
//! peer-tests folder beside the repository, see its PROVENANCE.md for the line format) must
//! agree with `kiln::apk::version`. A missing file fails the test.

use std::cmp::Ordering;

use kiln::apk::version::{compare_fuzzy, is_valid};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/peer-tests/apk-version/test/unit/version.data"
);

/// Checks one `A OP B` line; returns a failure message.
fn check_comparison(a: &str, op: &str, b: &str) -> Option<String> {
    let (negate, set) = match op.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, op),
    };
    let fuzzy = set.contains('~');
    let got = compare_fuzzy(a, b, fuzzy);
    let accepted = match got {
        Ordering::Less => set.contains('<'),
        Ordering::Greater => set.contains('>'),
        Ordering::Equal => set.contains('=') || set.contains('~'),
    };
    (accepted == negate).then(|| format!("`{a} {op} {b}`: got {got:?}"))
}

#[test]
fn every_upstream_vector_passes() {
    let text = std::fs::read_to_string(DATA).unwrap_or_else(|e| {
        panic!("the apk version vectors are missing at {DATA} ({e}); the shared peer-tests folder must sit beside the repository")
    });
    let mut failures = Vec::new();
    let (mut comparisons, mut validity) = (0, 0);
    for (number, raw) in text.split('\n').enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim_end();
        if line.is_empty() {
            continue;
        }
        let failure = match line.split_once(' ') {
            Some((a, rest)) => {
                comparisons += 1;
                match rest.split_once(' ') {
                    Some((op, b)) => check_comparison(a, op, b),
                    None => Some(format!("malformed line `{line}`")),
                }
            }
            None => {
                validity += 1;
                let (want_valid, version) = match line.strip_prefix('!') {
                    Some(rest) => (false, rest),
                    None => (true, line),
                };
                (is_valid(version) != want_valid).then(|| {
                    format!(
                        "`{version}` should be {}",
                        if want_valid { "valid" } else { "invalid" }
                    )
                })
            }
        };
        if let Some(message) = failure {
            failures.push(format!("line {}: {message}", number + 1));
        }
    }
    assert_eq!((comparisons, validity), (754, 31), "vector counts changed");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
