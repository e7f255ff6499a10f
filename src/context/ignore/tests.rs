//! Tests of `context::ignore`.

use super::*;

fn single(pattern: &str) -> DockerIgnore {
    DockerIgnore::parse(pattern, ".dockerignore").expect("valid pattern")
}

/// moby/patternmatcher `TestMatches` (pattern, path, excluded with parent matching).
#[test]
fn patternmatcher_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("docs", "docs/README.md", true),
        ("docs/", "docs/README.md", true),
        ("/docs", "docs/README.md", true),
        ("./docs/../docs", "docs/README.md", true),
        ("*.go", "dir/x.go", false),
        ("*/*.go", "dir/x.go", true),
        ("**/*.go", "dir/x.go", true),
    ];
    for (pattern, path, want) in cases {
        let ignore = single(pattern);
        let got = ignore.matches(path).is_excluded();
        assert_eq!(got, *want, "pattern {pattern:?} path {path:?}");
    }
}

/// Several patterns: the last matching one wins (patternmatcher multi-pattern cases plus
/// Docker's documented examples).
#[test]
fn last_matching_pattern_wins() {
    let cases: &[(&str, &str, bool)] = &[
        ("**\n!util/docker/web", "util/docker/web/foo", false),
        (
            "**\n!util/docker/web\nutil/docker/web/foo",
            "util/docker/web/foo",
            true,
        ),
        (
            "**\n!dist/*.whl",
            "dist/proxy.py-2.4.0rc3-py3-none-any.whl",
            false,
        ),
        ("!fileutils.go\n*.go", "fileutils.go", true),
        ("*.go\n!fileutils.go", "fileutils.go", false),
        ("docs\n!docs/README.md", "docs/README.md", false),
        ("docs/\n!docs/README.md", "docs/README.md", false),
        ("docs/*\n!docs/README.md", "docs/README.md", false),
        ("docs\n!docs/README.md", "docs/other.md", true),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-secret.md",
            true,
        ),
        (
            "*.md\nREADME-secret.md\n!README*.md",
            "README-secret.md",
            false,
        ),
        ("# comment\n\n   \nsecret", "secret", true),
        ("#secret", "#secret", false),
        (" #secret", "#secret", true),
        ("! /inverted\n*", "inverted", true),
        ("*\n! /inverted", "inverted", false),
    ];
    for (text, path, want) in cases {
        let ignore = DockerIgnore::parse(text, ".dockerignore").expect("valid file");
        assert_eq!(
            ignore.matches(path).is_excluded(),
            *want,
            "{text:?} {path:?}"
        );
    }
}

#[test]
fn matches_carry_the_pattern_as_written() {
    let ignore =
        DockerIgnore::parse("# c\n/build/\n!build/keep  \n", ".dockerignore").expect("valid");
    match ignore.matches("build/out.o") {
        IgnoreMatch::Exclude(p) => assert_eq!((p.original.as_str(), p.line), ("/build/", 2)),
        other => panic!("unexpected {other:?}"),
    }
    match ignore.matches("build/keep") {
        IgnoreMatch::Include(p) => {
            assert_eq!((p.original.as_str(), p.line), ("!build/keep", 3))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ignore.matches("src/main.rs"), IgnoreMatch::None);
    assert_eq!(ignore.matches("."), IgnoreMatch::None);
}

#[test]
fn bad_files_are_errors_with_their_line() {
    assert_eq!(
        DockerIgnore::parse("a\n!\n", ".dockerignore"),
        Err(IgnoreError::LoneBang {
            file: ".dockerignore".into(),
            line: 2
        })
    );
    assert!(matches!(
        DockerIgnore::parse("ok\n[", "x.dockerignore"),
        Err(IgnoreError::BadPattern { line: 2, .. })
    ));
}

#[test]
fn clean_is_go_filepath_clean() {
    for (raw, want) in [
        ("", "."),
        ("a/b/", "a/b"),
        ("/a/../..", "/"),
        ("../a", "../a"),
        ("a/./b//c", "a/b/c"),
        ("/", "/"),
    ] {
        assert_eq!(clean(raw), want, "{raw}");
    }
}

/// The definition: every pattern in order against the path and each parent.
fn reference_is_excluded(ignore: &DockerIgnore, path: &str) -> Option<usize> {
    let mut candidates: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
    candidates.push(path);
    let mut result: Option<(bool, usize)> = None;
    for pattern in ignore.patterns() {
        let excluded = matches!(result, Some((false, _)));
        if pattern.exception != excluded {
            continue;
        }
        if candidates.iter().any(|c| pattern.matcher.matches(c)) {
            result = Some((pattern.exception, pattern.line));
        }
    }
    result
        .filter(|(exception, _)| !exception)
        .map(|(_, line)| line)
}

#[test]
fn the_index_decides_as_trying_every_pattern_does() {
    let text = "\
*.log\n!keep.log\nbuild/**\n!build/keep/**\n**/*.tmp\n**/cache\nsrc/gen?/*.rs\n[ab]*/x\n\
docs\n!docs/readme.md\na/b/c\n*\n!src\n!src/**\nsrc/*/skip\n**\n!**/*.md\n";
    let ignore = DockerIgnore::parse(text, ".dockerignore").unwrap();
    let paths = [
        "a.log",
        "keep.log",
        "x/keep.log",
        "build/o/x.o",
        "build/keep/y",
        "src/a.tmp",
        "deep/er/cache",
        "deep/cache/f",
        "src/gen1/m.rs",
        "src/gen12/m.rs",
        "a1/x",
        "c/x",
        "docs/readme.md",
        "docs/other",
        "a/b/c/d",
        "src/mod/skip",
        "src/mod/keep",
        "README.md",
        "plain",
        "dir/sub/file.md",
    ];
    // Prefixes of the pattern list too, so that each pattern is the last one somewhere.
    let patterns = ignore.patterns().len();
    for n in 0..=patterns {
        let lines: Vec<&str> = text.lines().take(n).collect();
        let partial = DockerIgnore::parse(&lines.join("\n"), ".dockerignore").unwrap();
        for path in paths {
            let got = match partial.matches(path) {
                IgnoreMatch::Exclude(p) => Some(p.line),
                _ => None,
            };
            assert_eq!(
                got,
                reference_is_excluded(&partial, path),
                "{n} patterns, {path}"
            );
        }
    }
}

#[test]
fn a_100000_line_ignore_file_costs_little_per_path() {
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&match i % 5 {
            0 => format!("build/out{i}/file.o\n"),
            1 => format!("src/mod{}/gen{i}.tmp\n", i % 40),
            2 => format!("cache{i}/**\n"),
            3 => format!("**/*.bak{i}\n"),
            _ => format!("!src/mod{}/keep{i}.txt\n", i % 40),
        });
    }
    text.push_str("*.log\n");
    let ignore = DockerIgnore::parse(&text, ".dockerignore").unwrap();
    let started = std::time::Instant::now();
    let mut excluded = 0;
    for d in 0..40 {
        for f in 0..42 {
            excluded += usize::from(
                ignore
                    .matches(&format!("src/mod{d}/file{f}.txt"))
                    .is_excluded(),
            );
        }
    }
    for f in 0..20 {
        excluded += usize::from(ignore.matches(&format!("top{f}.log")).is_excluded());
    }
    let elapsed = started.elapsed();
    assert_eq!(excluded, 20);
    // Trying every pattern on every path took minutes here; the index takes milliseconds.
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "{elapsed:?} for 1,700 paths"
    );
}
