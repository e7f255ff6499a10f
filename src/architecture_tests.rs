//! The architecture check: reads every `src/**/*.rs`, collects the module paths each file names
//! (`use crate::...`, `use super::...` and inline `crate::`/`super::` paths) and fails when
//!
//! - a domain module (everything but `steps`, `build`, `cli`, `main.rs` and `lib.rs`) names
//!   something in `steps`, `build` or `cli`: domains sit below the steps that use them;
//! - two sibling files of one module name each other (a file-level circle such as `a.rs` using
//!   `super::b` while `b.rs` uses `super::a`): one of them holds what both need, or a third
//!   file does.
//!
//! A parent (`mod.rs`) and its children may name each other: the parent declares what its
//! children share. Comment lines and `#[cfg(test)]` inline modules are not read, since test code
//! may reach across for fixtures. Each failure names the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules that may use any domain, and that no domain may use.
const UPPER: &[&str] = &["steps", "build", "cli"];

/// File-level circles known when this check was written, in modules reshaped separately
/// (issue 16): pairs of sibling files, the smaller path first. Remove a pair once its circle is
/// gone; a pair that no longer matches fails the check, so the list cannot go stale.
const KNOWN_CIRCLES: &[(&str, &str)] = &[];

/// One module path named by a file, and where.
#[derive(Clone, Debug)]
struct Reference {
    line: usize,
    segments: Vec<String>,
}

/// The module path of a source file relative to `src/` (`apk/install.rs` -> `[apk, install]`,
/// `apk/mod.rs` -> `[apk]`, `lib.rs` -> `[]`).
fn module_of(relative: &Path) -> Vec<String> {
    let mut segments: Vec<String> = relative
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segments.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last).to_owned();
    if !(stem == "mod" || (segments.is_empty() && (stem == "lib" || stem == "main"))) {
        segments.push(stem);
    }
    segments
}

/// The text of `source` without comment lines and without `#[cfg(test)]` inline modules, as
/// (line number, line) pairs.
fn code_lines(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i64> = None;
    let mut pending_cfg_test = false;
    for (index, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += brace_balance(line);
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if line.starts_with("//") {
            continue;
        }
        if line == "#[cfg(test)]" {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test {
            pending_cfg_test = false;
            if line.starts_with("mod ") && line.ends_with('{') {
                skip_depth = Some(brace_balance(line));
                continue;
            }
        }
        // A trailing comment may name paths that are not used.
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push((index + 1, code.to_owned()));
    }
    out
}

fn brace_balance(line: &str) -> i64 {
    line.chars().fold(0, |n, c| match c {
        '{' => n + 1,
        '}' => n - 1,
        _ => n,
    })
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its flat paths.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = tree[open + 1..].trim_end().trim_end_matches('}');
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand_use_tree(p))
        .map(|p| match (prefix.is_empty(), p.as_str()) {
            (true, _) => p,
            (false, "self") => prefix.to_owned(),
            (false, _) => format!("{prefix}::{p}"),
        })
        .collect()
}

/// Every `crate::`/`super::`/`self::` path the lines name, with the line it starts on.
fn references(lines: &[(usize, String)]) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut pending_use: Option<(usize, String)> = None;
    for (number, line) in lines {
        let mut rest = line.as_str();
        if pending_use.is_none() {
            if let Some(at) = find_use(rest) {
                pending_use = Some((*number, String::new()));
                rest = &rest[at..];
            }
        }
        if let Some((start, text)) = pending_use.as_mut() {
            match rest.find(';') {
                Some(end) => {
                    text.push_str(&rest[..end]);
                    for path in expand_use_tree(text) {
                        push_path(&mut out, *start, &path);
                    }
                    pending_use = None;
                    rest = &rest[end + 1..];
                }
                None => {
                    text.push_str(rest);
                    continue;
                }
            }
        }
        for root in ["crate::", "super::"] {
            let mut from = 0;
            while let Some(found) = rest[from..].find(root) {
                let at = from + found;
                let boundary = at == 0
                    || !rest[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '$');
                let end = rest[at..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .map_or(rest.len(), |e| at + e);
                if boundary {
                    push_path(&mut out, *number, &rest[at..end]);
                }
                from = end.max(at + root.len());
            }
        }
    }
    out
}

/// Where a `use` item's tree starts in `line`, if the line begins one.
fn find_use(line: &str) -> Option<usize> {
    let mut words = line.trim_start();
    for visibility in ["pub(crate) ", "pub(super) ", "pub "] {
        words = words.strip_prefix(visibility).unwrap_or(words);
    }
    let tree = words.strip_prefix("use ")?;
    Some(line.len() - tree.len())
}

fn push_path(out: &mut Vec<Reference>, line: usize, path: &str) {
    let segments: Vec<String> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if matches!(
        segments.first().map(String::as_str),
        Some("crate" | "super" | "self")
    ) {
        out.push(Reference { line, segments });
    }
}

/// The absolute module path a reference names, from the module of the file it is in.
fn absolute(module: &[String], reference: &[String]) -> Vec<String> {
    // In `a/b.rs` (module a::b) `super` is `a`; in `a/mod.rs` (module a) it is the crate root.
    let mut base: Vec<String> = module.to_vec();
    let mut segments = reference.iter().peekable();
    match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            base.clear();
            segments.next();
        }
        Some("self") => {
            segments.next();
        }
        _ => {}
    }
    while segments.peek().map(|s| s.as_str()) == Some("super") {
        segments.next();
        base.pop();
    }
    base.extend(segments.cloned());
    base
}

/// The file defining the longest prefix of `path` that is a module of `files`.
fn resolve<'f>(files: &'f BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<&'f PathBuf> {
    (0..=path.len()).rev().find_map(|n| files.get(&path[..n]))
}

/// Checks the tree of `.rs` files under `src` and returns one message per violation.
fn check(src: &Path, known_circles: &[(&str, &str)]) -> Vec<String> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
        let entry = entry.unwrap_or_else(|e| panic!("walking {}: {e}", src.display()));
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).unwrap_or(path);
            // `main.rs` is its own crate root; its `crate::` is not the library's.
            if relative == Path::new("main.rs") {
                continue;
            }
            files.insert(module_of(relative), path.to_path_buf());
        }
    }
    let label = |path: &Path| {
        format!(
            "src/{}",
            path.strip_prefix(src).unwrap_or(path).to_string_lossy()
        )
    };
    let mut problems = Vec::new();
    // (file, named file) -> first line naming it.
    let mut edges: BTreeMap<(PathBuf, PathBuf), usize> = BTreeMap::new();
    for (module, path) in &files {
        let source = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let is_domain = module
            .first()
            .is_some_and(|top| !UPPER.contains(&top.as_str()));
        for reference in references(&code_lines(&source)) {
            let target = absolute(module, &reference.segments);
            if is_domain
                && target
                    .first()
                    .is_some_and(|top| UPPER.contains(&top.as_str()))
            {
                problems.push(format!(
                    "{}:{}: the domain module `{}` uses `{}`, which is above it",
                    label(path),
                    reference.line,
                    module.join("::"),
                    target.join("::")
                ));
            }
            if let Some(named) = resolve(&files, &target) {
                edges
                    .entry((path.clone(), named.clone()))
                    .or_insert(reference.line);
            }
        }
    }
    let module_of_file: BTreeMap<&PathBuf, &Vec<String>> =
        files.iter().map(|(m, p)| (p, m)).collect();
    let mut known_seen = BTreeSet::new();
    for ((from, to), line) in &edges {
        if from >= to {
            continue;
        }
        let Some(back) = edges.get(&(to.clone(), from.clone())) else {
            continue;
        };
        let (a, b) = (module_of_file[from], module_of_file[to]);
        let siblings = a.len() == b.len() && !a.is_empty() && a[..a.len() - 1] == b[..b.len() - 1];
        if !siblings {
            continue;
        }
        let pair = (label(from), label(to));
        if known_circles
            .iter()
            .any(|(x, y)| (*x, *y) == (pair.0.as_str(), pair.1.as_str()))
        {
            known_seen.insert(pair);
            continue;
        }
        problems.push(format!(
            "{}:{line} and {}:{back}: the two files of `{}` use each other",
            pair.0,
            pair.1,
            a[..a.len() - 1].join("::")
        ));
    }
    for (x, y) in known_circles {
        if !known_seen.contains(&(x.to_string(), y.to_string())) {
            problems.push(format!(
                "{x} and {y} no longer use each other: remove them from KNOWN_CIRCLES"
            ));
        }
    }
    problems
}

#[test]
fn domains_are_below_steps_and_no_sibling_files_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check(&src, KNOWN_CIRCLES);
    assert!(
        problems.is_empty(),
        "architecture violations:\n{}",
        problems.join("\n")
    );
}

#[cfg(test)]
mod checker {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
        }
        dir
    }

    #[test]
    fn a_domain_using_a_step_fails_with_file_and_line() {
        let dir = tree(&[
            ("lib.rs", "pub mod apk;\npub mod steps;\n"),
            (
                "apk/mod.rs",
                "//! apk\n// crate::steps in a comment is fine\nuse crate::steps::run::{A, B};\n",
            ),
            ("steps/mod.rs", "pub mod run;\n"),
            ("steps/run.rs", "use crate::apk::X;\n"),
        ]);
        let problems = check(dir.path(), &[]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("src/apk/mod.rs:3: the domain module `apk` uses `steps::run::A`"),
            "{problems:?}"
        );
    }

    #[test]
    fn inline_paths_and_nested_groups_count() {
        let dir = tree(&[
            ("lib.rs", ""),
            (
                "sandbox/idmap.rs",
                "fn f() {\n    let x = crate::build::go();\n}\n",
            ),
            (
                "sandbox/mod.rs",
                "use crate::{layer::Diff, cli::{self, args::Args}};\n",
            ),
            ("build/mod.rs", "use crate::steps::x;\n"),
        ]);
        let problems = check(dir.path(), &[]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("src/sandbox/idmap.rs:2:"))
        );
        assert!(problems.iter().any(|p| p.contains("uses `cli`")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("uses `cli::args::Args`"))
        );
    }

    #[test]
    fn sibling_circle_fails_and_parent_child_does_not() {
        let dir = tree(&[
            ("lib.rs", ""),
            ("sandbox/mod.rs", "mod exec;\nmod overlay;\npub struct E;\n"),
            (
                "sandbox/exec.rs",
                "use super::E;\nfn f() { super::overlay::MODE; }\n",
            ),
            ("sandbox/overlay.rs", "use super::{E, exec};\n"),
            ("sandbox/ok.rs", "use super::overlay::X;\n"),
        ]);
        let problems = check(dir.path(), &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0],
            "src/sandbox/exec.rs:2 and src/sandbox/overlay.rs:1: the two files of `sandbox` use each other"
        );
    }

    #[test]
    fn test_modules_and_comments_are_not_read() {
        let dir = tree(&[
            ("lib.rs", ""),
            (
                "apk/a.rs",
                "//! [`crate::steps::run`]\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::steps::run;\n    fn g() { if true { } }\n}\n",
            ),
        ]);
        assert_eq!(check(dir.path(), &[]), Vec::<String>::new());
    }

    #[test]
    fn a_known_circle_passes_until_it_is_gone() {
        let circle = [
            ("lib.rs", ""),
            ("registry/auth.rs", "use super::client;\n"),
            ("registry/client.rs", "use super::auth;\n"),
        ];
        let known = [("src/registry/auth.rs", "src/registry/client.rs")];
        assert_eq!(check(tree(&circle).path(), &known), Vec::<String>::new());
        let fixed = tree(&circle[..2]);
        assert_eq!(
            check(fixed.path(), &known),
            [
                "src/registry/auth.rs and src/registry/client.rs no longer use each other: remove them from KNOWN_CIRCLES"
            ]
        );
    }

    #[test]
    fn use_trees_expand() {
        assert_eq!(
            expand_use_tree("super::{db::{A, B}, install::{self, C as D}, E}"),
            [
                "super::db::A",
                "super::db::B",
                "super::install",
                "super::install::C",
                "super::E"
            ]
        );
    }
}
