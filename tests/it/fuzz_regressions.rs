//! Replays every input the fuzz targets (fuzz/, see fuzz/README.md) once crashed on, through
//! the same library calls as the target, under the normal `cargo test`: such an input must now
//! give a result or an error, never a panic. Inputs live in `fuzz/regressions/<target>/`.

use std::path::{Path, PathBuf};

use kiln::python::target::{Libc, PythonTarget, PythonVersion};

fn regression_inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    inputs
}

/// As the `python_requirements` target: byte 0 even = a requirements file whose `-r`/`-c`
/// includes read the same text again.
#[test]
fn python_requirements_inputs_give_errors_not_panics() {
    let target = PythonTarget {
        version: PythonVersion {
            major: 3,
            minor: 11,
            patch: Some(16),
        },
        interpreter: "/usr/local/bin/python3.11".to_owned(),
        libc: Libc::Musl { major: 1, minor: 2 },
        arch: "x86_64".to_owned(),
    };
    let env = target.marker_environment();
    for input in regression_inputs("python_requirements") {
        let bytes = std::fs::read(&input).expect("reading a regression input");
        let (selector, rest) = bytes.split_first().expect("a non-empty input");
        assert_eq!(
            selector & 1,
            0,
            "{}: expected a requirements input",
            input.display()
        );
        let text = std::str::from_utf8(rest).expect("UTF-8 text");
        let mut read = |_: &str| -> std::io::Result<String> { Ok(text.to_owned()) };
        // Returning at all (an error or a result, no panic) is what the input once failed to do.
        let _ = kiln::python::requirements::parse("requirements.txt", &mut read, &env);
    }
}

/// As the `oci_json` target: what parses as a manifest, an index or a config is written as
/// canonical JSON, which must parse back to the same value.
#[test]
fn oci_json_inputs_survive_canonical_json() {
    use kiln::image::{ImageConfig, Index, Manifest};
    for input in regression_inputs("oci_json") {
        let bytes = std::fs::read(&input).expect("reading a regression input");
        let shown = input.display();
        if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
            let canonical = kiln::image::canonical::to_vec(&manifest).expect("serializes");
            let again: Manifest = serde_json::from_slice(&canonical)
                .unwrap_or_else(|e| panic!("{shown}: canonical manifest does not parse: {e}"));
            assert_eq!(manifest, again, "{shown}");
        }
        if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
            let canonical = kiln::image::canonical::to_vec(&index).expect("serializes");
            let again: Index = serde_json::from_slice(&canonical)
                .unwrap_or_else(|e| panic!("{shown}: canonical index does not parse: {e}"));
            assert_eq!(index, again, "{shown}");
        }
        if let Ok(config) = serde_json::from_slice::<ImageConfig>(&bytes) {
            let canonical = kiln::image::canonical::to_vec(&config).expect("serializes");
            let _: ImageConfig = serde_json::from_slice(&canonical)
                .unwrap_or_else(|e| panic!("{shown}: canonical config does not parse: {e}"));
        }
    }
}

/// As the `shell_expand` target: byte 0 even = `\` escapes, odd = backquote. Besides giving no
/// panic, each input must expand quickly: one found a pattern match (`${PATHS%o****...#*:}`)
/// that took over 10 s when matching backtracked over every `*`.
#[test]
fn shell_expand_inputs_expand_quickly() {
    let lookup = |name: &str| -> Option<String> {
        match name {
            "EMPTY" => Some(String::new()),
            "HOME" => Some("/root".to_owned()),
            "PATHS" => Some("/usr/local/bin:/usr/bin:/bin".to_owned()),
            "SPACED" => Some("a b  c".to_owned()),
            "DOLLAR" => Some("$HOME${HOME}".to_owned()),
            "UNICODE" => Some("é€😀".to_owned()),
            _ => None,
        }
    };
    for input in regression_inputs("shell_expand") {
        let bytes = std::fs::read(&input).expect("reading a regression input");
        let (selector, rest) = bytes.split_first().expect("a non-empty input");
        let word = std::str::from_utf8(rest).expect("shell_expand inputs are UTF-8");
        let escape = if selector & 1 == 0 { '\\' } else { '`' };
        let started = std::time::Instant::now();
        let _ = kiln::dockerfile::shell::expand_word(word, &lookup, escape);
        let _ = kiln::dockerfile::shell::expand_words(word, &lookup, escape);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(2),
            "{} took {took:?} to expand",
            input.display()
        );
    }
}

/// As the `dockerignore` target: the lines are both the patterns and the paths matched. One
/// input (a line of 60 `*`) made matching backtrack over every split for more than 10 s.
#[test]
fn dockerignore_inputs_match_quickly() {
    for input in regression_inputs("dockerignore") {
        let bytes = std::fs::read(&input).expect("reading a regression input");
        let text = String::from_utf8_lossy(&bytes);
        let started = std::time::Instant::now();
        let lines: Vec<&str> = text.lines().take(32).collect();
        for pattern in &lines {
            for name in &lines {
                let _ = kiln::context::go_match(pattern, name);
            }
        }
        if let Ok(ignore) = kiln::context::DockerIgnore::parse(&text, ".dockerignore") {
            for path in &lines {
                let _ = ignore.matches(path).is_excluded();
                let _ = ignore.may_include_below(path);
            }
        }
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(2),
            "{} took {took:?} to match",
            input.display()
        );
    }
}
