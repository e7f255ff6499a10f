//! COPY from a real build context directory into an in-memory destination stage: the mapping
//! rules, --chown/--chmod, symlinks, hard links, .dockerignore and the escape refusals.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;

use kiln::context::Context;
use kiln::layer::{Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::rootfs::memfs::MemFs;
use kiln::steps::copy::{AddMode, CopyOutput, CopyRequest, CopySource, InputOrigin, copy};

/// A context: files (0644), `src/` (0755) with a nested dir, a symlink inside a dir, a symlink
/// at the top, a hard-linked pair, escaping symlinks, and an ignore file.
fn context() -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for (path, body) in [
        ("a.txt", "a"),
        ("b.txt", "bb"),
        ("debug.log", "log"),
        ("src/main.py", "print()"),
        ("src/lib/util.py", "x = 1"),
        ("src/lib/trace.log", "log"),
        ("tree/h1", "same"),
    ] {
        let host = root.join(path);
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(&host, body).expect("write");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::set_permissions(root.join("src/main.py"), fs::Permissions::from_mode(0o755))
        .expect("chmod");
    for d in ["src", "src/lib", "tree"] {
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o750)).expect("chmod");
    }
    fs::hard_link(root.join("tree/h1"), root.join("tree/h2")).expect("hard link");
    symlink("../a.txt", root.join("tree/up")).expect("symlink");
    symlink("a.txt", root.join("link-to-a")).expect("symlink");
    symlink("/etc/shadow", root.join("abs-out")).expect("symlink");
    symlink("../../outside", root.join("rel-out")).expect("symlink");
    fs::write(root.join(".dockerignore"), "*.log\n**/*.log\n").expect("write ignore");
    let context = Context::open(root, None).expect("open context");
    (dir, context)
}

fn path(raw: &str) -> LayerPath {
    LayerPath::new(raw).expect("valid path")
}

fn file(body: &str, mode: u32) -> Entry {
    Entry {
        kind: EntryKind::File(FileContent::Bytes(Arc::from(body.as_bytes()))),
        meta: Metadata::root_owned(mode),
    }
}

/// The destination stage: users and groups, `/app`, `/data -> /app`, a regular `/file`.
fn target() -> MemFs {
    let mut diff = Diff::new();
    diff.insert(
        path("etc/passwd"),
        file(
            "root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1001::/home/appuser:/bin/sh\n",
            0o644,
        ),
    );
    diff.insert(
        path("etc/group"),
        file("root:x:0:\nappgroup:x:2000:\n", 0o644),
    );
    for dir in ["app", "home"] {
        diff.insert(
            path(dir),
            Entry {
                kind: EntryKind::Dir,
                meta: Metadata::root_owned(0o755),
            },
        );
    }
    diff.insert(
        path("data"),
        Entry {
            kind: EntryKind::Symlink("/app".into()),
            meta: Metadata::root_owned(0o777),
        },
    );
    diff.insert(path("file"), file("x", 0o644));
    MemFs::from_diff(&diff)
}

struct Case<'a> {
    sources: &'a [&'a str],
    dest: &'a str,
    workdir: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
}

const fn case<'a>(sources: &'a [&'a str], dest: &'a str) -> Case<'a> {
    Case {
        sources,
        dest,
        workdir: "/",
        chown: None,
        chmod: None,
    }
}

fn run(context: &Context, case: &Case, scratch: &Path) -> Result<CopyOutput, String> {
    let target = target();
    let sources: Vec<String> = case.sources.iter().map(|s| s.to_string()).collect();
    copy(&CopyRequest {
        sources: &sources,
        dest: case.dest,
        workdir: case.workdir,
        from: CopySource::Context(context),
        target: &target,
        chown: case.chown,
        chmod: case.chmod,
        link: false,
        add: AddMode::Copy,
        scratch_dir: scratch,
    })
    .map_err(|e| e.to_string())
}

/// One line per Diff entry: `path kind mode uid:gid`.
fn summary(diff: &Diff) -> Vec<String> {
    diff.iter()
        .map(|(p, e)| {
            let kind = match &e.kind {
                EntryKind::Dir => "dir".to_owned(),
                EntryKind::File(content) => format!("file({})", content.size()),
                EntryKind::Symlink(t) => format!("-> {t}"),
                EntryKind::Hardlink(t) => format!("link {t}"),
                other => format!("{other:?}"),
            };
            format!("{p} {kind} {:o} {}:{}", e.meta.mode, e.meta.uid, e.meta.gid)
        })
        .collect()
}

#[test]
fn copy_maps_sources_onto_the_destination() {
    let (_dir, context) = context();
    let scratch = tempfile::tempdir().expect("scratch");
    let with = |c: Case<'static>, f: fn(&mut Case<'static>)| {
        let mut c = c;
        f(&mut c);
        c
    };
    let cases: Vec<(Case, &[&str])> = vec![
        (case(&["a.txt"], "/app/"), &["/app/a.txt file(1) 644 0:0"]),
        (case(&["a.txt"], "/app"), &["/app/a.txt file(1) 644 0:0"]),
        (
            case(&["a.txt"], "/new/b.txt"),
            &["/new dir 755 0:0", "/new/b.txt file(1) 644 0:0"],
        ),
        (
            case(&["a.txt"], "/new/"),
            &["/new dir 755 0:0", "/new/a.txt file(1) 644 0:0"],
        ),
        (
            case(&["src"], "/opt/"),
            &[
                "/opt dir 755 0:0",
                "/opt/lib dir 750 0:0",
                "/opt/lib/util.py file(5) 644 0:0",
                "/opt/main.py file(7) 755 0:0",
            ],
        ),
        (
            case(&["src/lib"], "/app"),
            &["/app/util.py file(5) 644 0:0"],
        ),
        (
            case(&["*.txt"], "/app/"),
            &["/app/a.txt file(1) 644 0:0", "/app/b.txt file(2) 644 0:0"],
        ),
        (
            case(&["a.txt", "b.txt"], "/out/"),
            &[
                "/out dir 755 0:0",
                "/out/a.txt file(1) 644 0:0",
                "/out/b.txt file(2) 644 0:0",
            ],
        ),
        (
            case(&["*.txt"], "/app"),
            &["/app/a.txt file(1) 644 0:0", "/app/b.txt file(2) 644 0:0"],
        ),
        (
            with(case(&["a.txt"], "rel/"), |c| c.workdir = "/home"),
            &["/home/rel dir 755 0:0", "/home/rel/a.txt file(1) 644 0:0"],
        ),
        (
            with(case(&["a.txt"], "."), |c| c.workdir = "/app"),
            &["/app/a.txt file(1) 644 0:0"],
        ),
        (case(&["a.txt"], "/data/"), &["/app/a.txt file(1) 644 0:0"]),
        (
            case(&["a.txt"], "/data/x/y"),
            &["/app/x dir 755 0:0", "/app/x/y file(1) 644 0:0"],
        ),
        (case(&["a.txt"], "/file"), &["/file file(1) 644 0:0"]),
        (
            with(case(&["a.txt"], "/new/"), |c| c.chown = Some("appuser")),
            &["/new dir 755 1000:1001", "/new/a.txt file(1) 644 1000:1001"],
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chown = Some("1234")),
            &["/app/a.txt file(1) 644 1234:1234"],
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| {
                c.chown = Some("appuser:appgroup")
            }),
            &["/app/a.txt file(1) 644 1000:2000"],
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chown = Some("5:appgroup")),
            &["/app/a.txt file(1) 644 5:2000"],
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chown = Some("appuser:7")),
            &["/app/a.txt file(1) 644 1000:7"],
        ),
        (
            with(case(&["src/lib"], "/lib/"), |c| c.chmod = Some("0600")),
            &["/lib dir 755 0:0", "/lib/util.py file(5) 600 0:0"],
        ),
        (
            case(&["link-to-a"], "/app/"),
            &["/app/link-to-a file(1) 644 0:0"],
        ),
        (
            case(&["tree"], "/t"),
            &[
                "/t dir 755 0:0",
                "/t/h1 file(4) 644 0:0",
                "/t/h2 link /t/h1 644 0:0",
                "/t/up -> ../a.txt 777 0:0",
            ],
        ),
        (
            case(&["src/lib/"], "/l/"),
            &["/l dir 755 0:0", "/l/util.py file(5) 644 0:0"],
        ),
    ];
    for (case, want) in cases {
        let out = run(&context, &case, scratch.path())
            .unwrap_or_else(|e| panic!("{:?} -> {}: {e}", case.sources, case.dest));
        assert_eq!(
            summary(&out.diff),
            want,
            "{:?} -> {}",
            case.sources,
            case.dest
        );
    }
}

#[test]
fn copy_errors_name_the_source_or_destination() {
    let (_dir, context) = context();
    let scratch = tempfile::tempdir().expect("scratch");
    let with = |c: Case<'static>, f: fn(&mut Case<'static>)| {
        let mut c = c;
        f(&mut c);
        c
    };
    let cases: Vec<(Case, &str)> = vec![
        (
            case(&["a.txt", "b.txt"], "/out"),
            "When using COPY with more than one source file, the destination must be a directory and end with a / (destination `/out`)",
        ),
        (
            case(&["*.txt"], "/file"),
            "cannot copy to `/file`: it exists and is not a directory",
        ),
        (
            case(&["*.txt"], "/file/"),
            "cannot copy to `/file`: it exists and is not a directory",
        ),
        (
            case(&["src"], "/file"),
            "cannot copy to `/file`: it exists and is not a directory",
        ),
        (
            case(&["missing"], "/app/"),
            "COPY source `missing` not found in the build context",
        ),
        (
            case(&["../x"], "/app/"),
            "COPY source `../x` is outside the build context",
        ),
        (
            case(&["abs-out"], "/app/"),
            "COPY source `abs-out` is outside the build context: symlink `abs-out` points to `/etc/shadow`",
        ),
        (
            case(&["rel-out"], "/app/"),
            "COPY source `rel-out` is outside the build context: symlink `rel-out` points to `../../outside`",
        ),
        (
            case(&["debug.log"], "/app/"),
            "COPY source `debug.log` not found in the build context: it is excluded by `*.log` (line 1 of the ignore file)",
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chown = Some("nobody")),
            "unable to find user nobody: no matching entries in passwd file",
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| {
                c.chown = Some("appuser:staff")
            }),
            "unable to find group staff: no matching entries in group file",
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chown = Some("1:")),
            "invalid --chown value `1:`: expected user, user:group, uid or uid:gid",
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chmod = Some("u+x")),
            "invalid --chmod value `u+x`: expected an octal mode such as 0755",
        ),
        (
            with(case(&["a.txt"], "/app/"), |c| c.chmod = Some("17777")),
            "invalid --chmod value `17777`: expected an octal mode such as 0755",
        ),
    ];
    for (case, want) in cases {
        let err = run(&context, &case, scratch.path()).expect_err(case.dest);
        assert_eq!(err, want, "{:?} -> {}", case.sources, case.dest);
    }
}

#[test]
fn ignored_files_are_not_copied_and_inputs_are_listed() {
    let (dir, context) = context();
    let scratch = tempfile::tempdir().expect("scratch");
    let out = run(&context, &case(&["."], "/ctx/"), scratch.path()).expect("copy");
    let paths: Vec<String> = out.diff.iter().map(|(p, _)| p.to_string()).collect();
    assert!(!paths.iter().any(|p| p.ends_with(".log")), "{paths:?}");
    assert!(
        paths.contains(&"/ctx/.dockerignore".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/ctx/abs-out".to_owned()),
        "symlinks inside a copied dir stay links"
    );
    let inputs: Vec<(String, u64)> = out
        .details
        .inputs
        .iter()
        .map(|i| (i.path.to_string(), i.size))
        .collect();
    assert_eq!(
        inputs,
        [
            ("/.dockerignore".to_owned(), 15),
            ("/a.txt".to_owned(), 1),
            ("/b.txt".to_owned(), 2),
            ("/src/lib/util.py".to_owned(), 5),
            ("/src/main.py".to_owned(), 7),
            ("/tree/h1".to_owned(), 4),
        ]
    );
    let root = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(
        out.details.inputs[1].origin,
        InputOrigin::Host(root.join("a.txt"))
    );
}
