//! Fuzzes the Dockerfile parser and the planner (ARG/ENV expansion, stage references) on
//! arbitrary text, as `kiln build` reads a Dockerfile from an untrusted context.
#![no_main]

use kiln::dockerfile::plan::{PlanOptions, plan};
use libfuzzer_sys::fuzz_target;

/// Larger inputs only repeat what small ones cover, and the quadratic ENV cost and the deep
/// `${v:-${v:-...}}` stack overflow (issue 15, being fixed separately) would otherwise turn
/// every run into those two known findings.
const MAX_INPUT: usize = 8 * 1024;
/// Nesting depth of `${` allowed through (far below the known overflow).
const MAX_EXPANSIONS: usize = 64;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.matches("${").count() > MAX_EXPANSIONS {
        return;
    }
    let Ok(file) = kiln::dockerfile::parse(text) else {
        return;
    };
    let mut options = PlanOptions::default();
    options
        .build_args
        .insert("FUZZ_ARG".to_owned(), "value with spaces".to_owned());
    options
        .platform_args
        .insert("TARGETPLATFORM".to_owned(), "linux/amd64".to_owned());
    let _ = plan(&file, &options);
});
