//! Tests for `Context`: source resolution over a real temporary directory.

use std::fs;
use std::os::unix::fs::symlink;

use super::*;

/// A context with files, a nested dir, symlinks in and out of the root, and an ignore file.
fn fixture(ignore: &str) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for (path, body) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("src/main.py", "print()"),
        ("src/lib/util.py", "x = 1"),
        ("src/lib/data.json", "{}"),
        ("secret/key", "k"),
        ("build/out.o", "o"),
        ("build/keep.txt", "keep"),
    ] {
        let host = root.join(path);
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(host, body).expect("write");
    }
    symlink("src/lib", root.join("lib-link")).expect("symlink");
    symlink("/etc/passwd", root.join("abs-out")).expect("symlink");
    symlink("../outside", root.join("rel-out")).expect("symlink");
    symlink("loop", root.join("loop")).expect("symlink");
    fs::write(root.join(".dockerignore"), ignore).expect("write ignore");
    let context = Context::open(root, None).expect("open context");
    (dir, context)
}

fn names(matches: &[ContextMatch]) -> Vec<String> {
    matches
        .iter()
        .map(|m| m.matched.as_str().to_owned())
        .collect()
}

#[test]
fn sources_resolve_to_sorted_matches() {
    let (_dir, context) = fixture("secret\nbuild\n!build/keep.txt\n");
    let cases: &[(&str, &[&str])] = &[
        ("a.txt", &["a.txt"]),
        ("/a.txt", &["a.txt"]),
        ("./src/../a.txt", &["a.txt"]),
        ("*.txt", &["a.txt", "b.txt"]),
        ("/*.md", &["c.md"]),
        ("src/*/*.py", &["src/lib/util.py"]),
        ("src/*", &["src/lib", "src/main.py"]),
        ("[ab].txt", &["a.txt", "b.txt"]),
        ("?.md", &["c.md"]),
        (".", &[""]),
        ("/", &[""]),
        ("lib-link/util.py", &["src/lib/util.py"]),
        ("lib-link", &["lib-link"]),
        ("build/*", &["build/keep.txt"]),
        ("b*", &["b.txt", "build"]),
    ];
    for (src, want) in cases {
        let got = context
            .resolve(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(names(&got), *want, "{src}");
    }
    let link = context.resolve("lib-link").expect("resolves");
    assert_eq!(link[0].entry.path.as_str(), "src/lib");
    assert_eq!(link[0].entry.kind, ContextKind::Dir);
}

#[test]
fn bad_sources_are_errors_naming_the_source() {
    let (_dir, context) = fixture("secret\n*.md\n");
    let cases: &[(&str, &str)] = &[
        (
            "missing.txt",
            "COPY source `missing.txt` not found in the build context",
        ),
        (
            "*.nothing",
            "COPY source `*.nothing` not found in the build context",
        ),
        ("../x", "COPY source `../x` is outside the build context"),
        (
            "src/../../x",
            "COPY source `src/../../x` is outside the build context",
        ),
        (
            "abs-out",
            "COPY source `abs-out` is outside the build context: symlink `abs-out` points to `/etc/passwd`",
        ),
        (
            "rel-out/x",
            "COPY source `rel-out/x` is outside the build context: symlink `rel-out` points to `../outside`",
        ),
        (
            "loop",
            "COPY source `loop`: too many levels of symbolic links",
        ),
        (
            "secret/key",
            "COPY source `secret/key` not found in the build context: it is excluded by `secret` (line 1 of the ignore file)",
        ),
        ("*.md", "COPY source `*.md` not found in the build context"),
        ("a[", "COPY source `a[` is not a valid pattern"),
    ];
    for (src, want) in cases {
        let err = context.resolve(src).expect_err(src);
        assert_eq!(err.to_string(), *want, "{src}");
    }
}

#[test]
fn walk_is_sorted_skips_ignored_and_keeps_symlinks() {
    let (_dir, context) = fixture("**/*.json\nbuild\n!build/keep.txt\n");
    let root = context.resolve(".").expect("root");
    let listed: Vec<String> = context
        .walk(&root[0].entry)
        .expect("walk")
        .iter()
        .map(|e| e.path.as_str().to_owned())
        .collect();
    assert_eq!(
        listed,
        [
            ".dockerignore",
            "a.txt",
            "abs-out",
            "b.txt",
            "build",
            "build/keep.txt",
            "c.md",
            "lib-link",
            "loop",
            "rel-out",
            "secret",
            "secret/key",
            "src",
            "src/lib",
            "src/lib/util.py",
            "src/main.py",
        ]
    );
    let walked = context.walk(&root[0].entry).expect("walk");
    let link = walked
        .iter()
        .find(|e| e.path.as_str() == "abs-out")
        .expect("listed");
    assert_eq!(link.kind, ContextKind::Symlink("/etc/passwd".into()));
    let file = walked
        .iter()
        .find(|e| e.path.as_str() == "src/main.py")
        .expect("listed");
    let meta = fs::symlink_metadata(&file.host_path).expect("stat");
    assert_eq!(file.kind, ContextKind::File { size: 7 });
    assert_eq!(file.stamp, HostStamp::of(&meta));
    assert_eq!(file.host_path, context.root.join("src/main.py"));
}

#[test]
fn a_file_name_that_is_not_utf8_is_an_error_naming_it_unless_ignored_or_unmatched() {
    use std::os::unix::ffi::OsStrExt;
    let (dir, context) = fixture("**/*.bak\n");
    let bad = dir
        .path()
        .join("src")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    fs::write(&bad, "x").expect("write");
    let ignored = dir
        .path()
        .join("src")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.bak"));
    fs::write(&ignored, "x").expect("write");
    // Neither a wildcard it does not match nor the ignored one fails.
    assert_eq!(
        names(&context.resolve("src/*.py").expect("resolve")),
        ["src/main.py"]
    );

    let root = context.resolve(".").expect("root");
    let error = context.walk(&root[0].entry).expect_err("not UTF-8");
    let ContextError::Read { path, cause } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(path, &bad);
    assert!(cause.to_string().contains("not valid UTF-8"), "{cause}");
    let error = context
        .resolve("src/*.txt")
        .expect_err("matched, not UTF-8");
    assert!(
        matches!(&error, ContextError::Read { path, .. } if path == &bad),
        "{error:?}"
    );

    fs::remove_file(&bad).expect("remove");
    let walked = context
        .walk(&root[0].entry)
        .expect("the ignored name is passed over");
    assert!(walked.iter().all(|e| e.host_path != ignored));
}

#[test]
fn a_dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("a"), "a").expect("write");
    fs::write(dir.path().join("b"), "b").expect("write");
    fs::write(dir.path().join(".dockerignore"), "a\n").expect("write");
    fs::write(dir.path().join("Dockerfile.dockerignore"), "b\n").expect("write");
    let specific = dir.path().join("Dockerfile.dockerignore");
    let context = Context::open(dir.path(), Some(&specific)).expect("open");
    assert!(context.resolve("a").is_ok());
    assert!(context.resolve("b").is_err());
    let missing = dir.path().join("Other.dockerignore");
    let context = Context::open(dir.path(), Some(&missing)).expect("open");
    assert!(context.resolve("a").is_err());
    assert!(context.resolve("b").is_ok());
}
