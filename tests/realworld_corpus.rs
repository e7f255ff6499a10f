//! Real-world Dockerfiles (tests/corpus/realworld-dockerfiles: byte for byte from public
//! projects, with their contexts) built side by side with kiln and with buildah on the same
//! Debian bookworm stand-in base, and the two images compared: root filesystems path by path
//! (type, mode, owner, content, link target) and configs (Env as a set, Cmd, Entrypoint,
//! WorkingDir, User, ExposedPorts, Volumes, Labels without `io.buildah.version`, StopSignal,
//! Healthcheck). A difference fails the test unless [`EXPECTED`] lists it with the reason
//! kiln is right.
//!
//! The stand-in (the debootstrapped rootfs of tests/support/debian_rootfs.rs, with
//! registry-style member names and the official images' config) is pushed once per run to
//! Debian's docker-registry on 127.0.0.1 under every FROM name of the cases; both builders
//! reach it through the same registries.conf (buildah pulls into a private vfs store and
//! builds with `--pull-never`).
//!
//! Which cases run: `KILN_CORPUS` unset runs the default list, [`DEFAULT_CASES`]
//! (`dotnet-runtime-deps-bookworm`), chosen to keep this test within a few minutes on two
//! cores; `KILN_CORPUS=all` runs every case of cases.tsv; `KILN_CORPUS=a,b` runs those.
//! `scripts/corpus` runs them all. Per-case times and results are in docs/corpus.md.
//! The builds need the network (`--network host`: apt-get reaches Debian's mirror).
//! Both images are read straight from their layers; `KILN_CORPUS_CROSSCHECK=1` also unpacks
//! them with umoci and checks that reader against the unpacked trees.

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/debian_rootfs.rs"]
mod debian_rootfs;
#[path = "support/registry.rs"]
mod registry;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use corpus::Case;
use registry::{Auth, TestRegistry};
use support::{require_tool, run_ok};

/// The cases the default test run builds (each well under a minute with both builders).
const DEFAULT_CASES: &[&str] = &["dotnet-runtime-deps-bookworm"];

/// A difference kiln's image is allowed to have from buildah's: case, path (or `config.FIELD`),
/// and why kiln is right (what BuildKit does) or why the difference is not a builder's.
const EXPECTED: &[(&str, &str, &str)] = &[];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/realworld-dockerfiles")
}

fn selected_cases(all: Vec<Case>) -> Vec<Case> {
    let wanted: Vec<String> = match std::env::var("KILN_CORPUS") {
        Ok(list) if list == "all" => return all,
        Ok(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        Err(_) => DEFAULT_CASES.iter().map(|s| (*s).to_owned()).collect(),
    };
    wanted
        .iter()
        .map(|name| {
            all.iter()
                .find(|case| &case.name == name)
                .unwrap_or_else(|| panic!("KILN_CORPUS names `{name}`, which cases.tsv lacks"))
                .clone()
        })
        .collect()
}

/// The registry and registries.conf serving the stand-in under every FROM name.
struct Bases {
    registry: TestRegistry,
    registries_conf: PathBuf,
}

fn serve_bases(work: &Path, cases: &[Case]) -> Bases {
    require_tool("skopeo");
    let registry = TestRegistry::start(Auth::None);
    let layout = work.join("standin");
    corpus::standin_layout(&debian_rootfs::debian_rootfs_tar(), &layout);
    let registries_conf = work.join("registries.conf");
    std::fs::write(&registries_conf, corpus::registries_conf(&registry.host())).unwrap();
    let mut names: Vec<&String> = cases.iter().flat_map(|c| &c.from_names).collect();
    names.sort();
    names.dedup();
    for name in names {
        let qualified = corpus::qualify(name);
        run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{}", layout.display(), corpus::standin_tag(name)),
            &format!(
                "docker://{}",
                corpus::location(&registry.host(), &qualified)
            ),
        ]));
    }
    Bases {
        registry,
        registries_conf,
    }
}

/// The flags both builders take from cases.tsv: target and build args.
fn case_flags(case: &Case) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(target) = &case.target {
        flags.extend(["--target".to_owned(), target.clone()]);
    }
    for arg in &case.build_args {
        flags.extend(["--build-arg".to_owned(), arg.clone()]);
    }
    flags
}

/// Builds the case with kiln into the OCI layout `out` (tag `kiln`).
fn build_with_kiln(case: &Case, bases: &Bases, work: &Path, out: &Path) {
    let dir = corpus_root().join(&case.name);
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .args(["--progress", "plain", "--network", "host"])
        .arg("--cache-dir")
        .arg(work.join("kiln-cache"))
        .arg("--registries-conf")
        .arg(&bases.registries_conf)
        .args([
            "--provenance=false",
            "--sbom=false",
            "--source-date-epoch",
            "0",
        ])
        .arg("-f")
        .arg(dir.join(&case.dockerfile))
        .args(case_flags(case))
        .arg("-o")
        .arg(format!("type=oci,dest={}", out.display()))
        .args(["-t", "corpus-case:kiln"])
        .arg(dir.join("context"))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("failed to start the kiln binary");
    assert!(
        output.status.success(),
        "{}: kiln build failed ({}):\n{}",
        case.name,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds the case with buildah in a private vfs store under `work` into the OCI layout `out`
/// (tag `buildah`).
fn build_with_buildah(case: &Case, bases: &Bases, work: &Path, out: &Path) {
    require_tool("buildah");
    let dir = corpus_root().join(&case.name);
    let buildah = || {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(work.join("buildah-root"))
            .arg("--runroot")
            .arg(work.join("buildah-runroot"))
            .args(["--storage-driver", "vfs"])
            .env("CONTAINERS_REGISTRIES_CONF", &bases.registries_conf);
        command
    };
    for name in &case.from_names {
        let qualified = corpus::qualify(name);
        run_ok(buildah().args(["pull", "--quiet", &qualified]));
    }
    let dockerfile = dir.join(
        case.buildah_dockerfile
            .as_deref()
            .unwrap_or(&case.dockerfile),
    );
    run_ok(
        buildah()
            .args([
                "bud",
                "--quiet",
                "--isolation",
                "chroot",
                "--network",
                "host",
                "--pull-never",
                "--timestamp",
                "0",
                "-f",
            ])
            .arg(dockerfile)
            .args(case_flags(case))
            .args(["-t", "corpus-case"])
            .arg(dir.join("context")),
    );
    run_ok(buildah().args([
        "push",
        "--quiet",
        "corpus-case",
        &format!("oci:{}:buildah", out.display()),
    ]));
}

fn image_config(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .and_then(|list| {
            list.iter().find(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
        })
        .unwrap_or_else(|| panic!("{} has no image tagged `{tag}`", layout.display()));
    let manifest = support::layout_blob_json(layout, manifest["digest"].as_str().unwrap());
    support::layout_blob_json(layout, manifest["config"]["digest"].as_str().unwrap())
}

/// Builds and compares one case; returns the unlisted differences.
fn run_case(case: &Case, bases: &Bases, scratch: &Path) -> Vec<String> {
    let work = tempfile::tempdir_in(scratch).unwrap();
    let kiln_out = work.path().join("kiln-image");
    let buildah_out = work.path().join("buildah-image");

    let started = Instant::now();
    build_with_kiln(case, bases, work.path(), &kiln_out);
    let kiln_time = started.elapsed();
    let started = Instant::now();
    build_with_buildah(case, bases, work.path(), &buildah_out);
    let buildah_time = started.elapsed();
    eprintln!(
        "corpus {}: kiln {:.1} s, buildah {:.1} s",
        case.name,
        kiln_time.as_secs_f64(),
        buildah_time.as_secs_f64()
    );

    let kiln_tree = corpus::read_image_tree(&kiln_out, "kiln");
    let buildah_tree = corpus::read_image_tree(&buildah_out, "buildah");
    if std::env::var_os("KILN_CORPUS_CROSSCHECK").is_some() {
        let unpacked = corpus::read_tree(&corpus::unpack(
            &kiln_out,
            "kiln",
            &work.path().join("kiln-bundle"),
        ));
        let diffs = corpus::tree_differences(&kiln_tree, &unpacked);
        assert!(diffs.is_empty(), "layer reader vs umoci: {diffs:#?}");
        let unpacked = corpus::read_tree(&corpus::unpack(
            &buildah_out,
            "buildah",
            &work.path().join("buildah-bundle"),
        ));
        let diffs = corpus::tree_differences(&buildah_tree, &unpacked);
        assert!(
            diffs.is_empty(),
            "layer reader vs umoci (buildah): {diffs:#?}"
        );
    }
    // A comparison of two empty or broken unpacks would pass: both trees must hold the base.
    for (builder, tree) in [("kiln", &kiln_tree), ("buildah", &buildah_tree)] {
        assert!(
            tree.len() > 1000 && tree.contains_key("/usr/bin/python3.11"),
            "{}: {builder}'s image does not hold the stand-in base ({} entries)",
            case.name,
            tree.len()
        );
    }
    eprintln!(
        "corpus {}: {} paths compared, both images read in {:.1} s",
        case.name,
        kiln_tree.len(),
        started.elapsed().as_secs_f64() - buildah_time.as_secs_f64()
    );
    let mut found: Vec<(String, String)> = corpus::tree_differences(&kiln_tree, &buildah_tree);
    let kiln_config = corpus::compared_config(&image_config(&kiln_out, "kiln"));
    let buildah_config = corpus::compared_config(&image_config(&buildah_out, "buildah"));
    for (field, value) in &kiln_config {
        if buildah_config.get(field) != Some(value) {
            found.push((
                format!("config.{field}"),
                format!("kiln {value} vs buildah {}", buildah_config[field]),
            ));
        }
    }
    let unlisted: Vec<String> = found
        .into_iter()
        .filter(|(path, _)| {
            !EXPECTED
                .iter()
                .any(|(name, listed, _)| *name == case.name && listed == path)
        })
        .map(|(path, what)| format!("{}: {path}: {what}", case.name))
        .collect();
    if unlisted.is_empty() {
        eprintln!("corpus {}: no unlisted differences", case.name);
    } else {
        eprintln!(
            "corpus {}: unlisted differences:\n{}",
            case.name,
            unlisted.join("\n")
        );
    }
    // A case's scratch (two images, a vfs store) is large: removed before the next case.
    drop(work);
    unlisted
}

#[test]
fn realworld_dockerfiles_build_as_buildah_builds_them() {
    let cases = selected_cases(corpus::read_cases(&corpus_root()));
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let bases = serve_bases(scratch.path(), &cases);
    eprintln!(
        "corpus: stand-in base served in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut unlisted = Vec::new();
    for case in &cases {
        unlisted.extend(run_case(case, &bases, scratch.path()));
    }
    assert!(
        unlisted.is_empty(),
        "differences between kiln's and buildah's images that EXPECTED does not list:\n{}\n\
         (registry log tail: {})",
        unlisted.join("\n"),
        bases.registry.log().lines().last().unwrap_or("")
    );
}
