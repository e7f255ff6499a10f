//! BuildKit's shell-lexer vectors (`envVarTest`, `wordsTest`) run against
//! `kiln::dockerfile::shell::{expand_word, expand_words}`.
//!
//! The vector files live in `../shared/peer-tests/buildkit-dockerfile-shell` (see its
//! PROVENANCE.md for the harness rules followed here). A missing folder fails the tests.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use kiln::dockerfile::shell::{expand_word, expand_words};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/peer-tests/buildkit-dockerfile-shell"
);

fn read_vectors(name: &str) -> String {
    let path = PathBuf::from(VECTORS).join(name);
    let bytes = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "BuildKit shell vectors not found at {}: {e}; the shared/ folder must sit beside \
             the repository clone",
            path.display()
        )
    });
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

#[test]
fn env_var_test() {
    let text = read_vectors("envVarTest");
    let env: HashMap<&str, &str> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .collect();
    let lookup = |name: &str| env.get(name).map(|v| (*v).to_owned());
    let mut failures = Vec::new();
    let mut run = 0;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, source, expected] = fields[..] else {
            panic!("envVarTest:{}: expected 3 fields: {line:?}", i + 1);
        };
        if platform == "W" {
            continue;
        }
        assert!(
            matches!(platform, "A" | "U"),
            "envVarTest:{}: {line:?}",
            i + 1
        );
        run += 1;
        let got = expand_word(source, &lookup, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(s), want) => want != "error" && s == want,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert_eq!(run, 228, "A and U vectors run");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test() {
    let text = read_vectors("wordsTest");
    let mut env: HashMap<String, String> = HashMap::new();
    let mut run = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = format!(" {rest}");
            let rest = rest.trim_start_matches(' ');
            let (name, value) = rest
                .split_once('=')
                .unwrap_or_else(|| panic!("wordsTest:{}: ENV without =", i + 1));
            env.insert(name.to_owned(), value.to_owned());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            panic!("wordsTest:{}: expected one `|`: {line:?}", i + 1);
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        run += 1;
        let lookup = |name: &str| env.get(name).cloned();
        let got = expand_words(input, &lookup, '\\').unwrap_or_else(|_| vec!["error".to_owned()]);
        if got != expected {
            failures.push(format!(
                "line {}: {input:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert_eq!(run, 24, "word vectors run");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
