//! Fuzzes `.dockerignore` parsing and matching: the patterns are the input's lines, and the
//! candidate paths are the same lines (so paths look like patterns and the other way round)
//! plus a few fixed ones; Go's `filepath.Match` is fuzzed on each line against each path.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Matching is (patterns x paths); the known quadratic cost (issue 15) is fixed separately.
const MAX_INPUT: usize = 4 * 1024;
const MAX_PATHS: usize = 32;
const FIXED_PATHS: &[&str] = &[
    "Dockerfile",
    ".dockerignore",
    "src/main.rs",
    "a/b/c/d",
    ".git/config",
    "node_modules/x/y.js",
    "dir/",
    "é/ü",
];

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let candidates: Vec<&str> = FIXED_PATHS
        .iter()
        .copied()
        .chain(text.lines().take(MAX_PATHS))
        .collect();
    for pattern in text.lines().take(MAX_PATHS) {
        for name in &candidates {
            let _ = kiln::context::go_match(pattern, name);
        }
        let _ = kiln::context::has_wildcards(pattern);
    }
    let Ok(ignore) = kiln::context::DockerIgnore::parse(text, ".dockerignore") else {
        return;
    };
    let _ = ignore.has_exceptions();
    for path in &candidates {
        let _ = ignore.matches(path).is_excluded();
        let _ = ignore.may_include_below(path);
    }
});
