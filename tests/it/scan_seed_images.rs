//! `kiln scan` of the seed pipeline's own images, built here as the pipeline test builds them
//! from the same cached fixtures (the python:3.11-alpine stand-in and its apk mirror, the
//! debootstrapped Debian bookworm base, the seed's wheels): the base from
//! `base-image/Dockerfile` (or the Debian base's Dockerfile) and the app from `DOCKERFILE` on
//! it, written as OCI layouts. Each is scanned against a database written here in the real
//! formats (Alpine secdb, OSV for PyPI and `Debian:12`): a package fixed in a later release, ids
//! marked not affected (`"0"`), Python ranges with introduced/fixed/last_affected, a withdrawn
//! advisory, an epoch, a record for another release. The expected findings come from an
//! independent computation over the packages the test reads from the unpacked image itself:
//! Python's `packaging.version` for PyPI, `dpkg --compare-versions` and `dpkg-query` for Debian,
//! and for Alpine a port of apk-tools' version comparison (written here from apk-tools'
//! `version.c`, not kiln's code) that must first reproduce every vector of apk-tools' own
//! `version.data` (2.x lines).
//!
//! Also: Debian's ordering in kiln (`kiln::scan::dpkg`) against `dpkg --compare-versions` on
//! many pairs, and the Debian image's SBOM listing every installed dpkg package.

use crate::support;
use crate::support::debian_rootfs;
use crate::support::seed_standins;
use crate::support::wheels;

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::{require_tool, run_ok};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// (package, installed, fixed in or "", first id, severity) of each finding.
type Findings = BTreeSet<(String, String, String, String, String)>;

/// Runs `kiln ARGS` with the test's cache, panicking with stderr on failure; returns stdout.
fn kiln_ok(cache: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_CACHE_DIR", cache)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("failed to start kiln");
    assert!(
        output.status.success(),
        "kiln {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kiln build` of `dockerfile` in `context` into the OCI layout `out` (tag `1`).
fn build(cache: &Path, dockerfile: &Path, context: &Path, out: &Path, extra: &[&str]) {
    let dest = format!("type=oci,dest={}", out.display());
    let mut args = vec![
        "build",
        "--progress",
        "quiet",
        "--provenance=false",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        "seed:1",
        "--output",
        &dest,
    ];
    args.extend_from_slice(extra);
    args.push(context.to_str().unwrap());
    kiln_ok(cache, &args);
}

/// The repository's DOCKERFILE with its FROM of the base replaced by `base` (a named build
/// context), written into `dir`.
fn dockerfile_on(dir: &Path, base: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("{REPO}/DOCKERFILE")).unwrap();
    let from = text
        .lines()
        .find(|line| line.starts_with("FROM ghcr.io/"))
        .expect("DOCKERFILE starts from the base on ghcr.io");
    let path = dir.join("DOCKERFILE");
    std::fs::write(&path, text.replace(from, &format!("FROM {base} AS base"))).unwrap();
    path
}

/// Unpacks the layout's image with umoci; the rootfs.
fn unpack(layout: &Path, work: &Path, name: &str) -> PathBuf {
    require_tool("umoci");
    let bundle = work.join(format!("bundle-{name}"));
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// `kiln scan --format json` of the layout's image against `db`: from its files, then from
/// the index `kiln db index` writes, which must give the same report.
fn scan(cache: &Path, layout: &Path, db: &Path) -> Value {
    let image = format!("oci:{}:1", layout.display());
    let args = [
        "scan",
        &image,
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ];
    let index = db.join(".kiln/index");
    assert!(
        !index.exists(),
        "{} is left from an earlier scan",
        index.display()
    );
    let from_files = kiln_ok(cache, &args);
    kiln_ok(cache, &["db", "index", db.to_str().unwrap()]);
    assert!(
        index.is_file(),
        "kiln db index wrote no {}",
        index.display()
    );
    let from_index = kiln_ok(cache, &args);
    std::fs::remove_file(&index).unwrap();
    assert_eq!(from_index, from_files, "the index gives another report");
    serde_json::from_str(&from_files).unwrap()
}

fn findings_of(report: &Value) -> Findings {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_owned(),
                f["installed"].as_str().unwrap().to_owned(),
                f["fixed_in"].as_str().unwrap_or("").to_owned(),
                f["ids"][0].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The Python distributions below `site` (a site-packages directory): (METADATA Name,
/// Version), read here from the files.
fn python_dists(site: &Path) -> Vec<(String, String)> {
    let mut dists = Vec::new();
    for entry in std::fs::read_dir(site).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".dist-info") {
            continue;
        }
        let metadata = std::fs::read_to_string(path.join("METADATA")).unwrap();
        let field = |key: &str| {
            metadata
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .trim()
                .to_owned()
        };
        dists.push((field("Name:"), field("Version:")));
    }
    dists.sort();
    assert!(!dists.is_empty(), "no distributions in {}", site.display());
    dists
}

/// OSV PyPI records around the installed versions: the first distribution fixed in a later
/// release, the second fixed at its own version (not affected), the third affected up to its
/// own version (`last_affected`, no fix), the fourth only in a withdrawn record; names spelled
/// as upstream spells them.
fn pypi_records(dists: &[(String, String)]) -> Vec<Value> {
    assert!(dists.len() >= 4, "{dists:?}");
    let pypi = |name: &str| json!({"ecosystem": "PyPI", "name": name});
    let range = |events: Value| json!([{"type": "ECOSYSTEM", "events": events}]);
    let (a, b, c, d) = (&dists[0], &dists[1], &dists[2], &dists[3]);
    vec![
        json!({"id": "PYSEC-2099-1", "aliases": ["CVE-2099-1001"], "database_specific": {"severity": "HIGH"},
               "affected": [{"package": pypi(&a.0), "ranges": range(json!([{"introduced": "0"}, {"fixed": format!("{}.post1", a.1)}]))}]}),
        json!({"id": "PYSEC-2099-2", "database_specific": {"severity": "MODERATE"},
               "affected": [{"package": pypi(&b.0.to_uppercase()), "ranges": range(json!([{"introduced": "0"}, {"fixed": b.1}]))}]}),
        json!({"id": "GHSA-2099-cccc-dddd", "database_specific": {"severity": "LOW"},
               "affected": [{"package": pypi(&c.0), "ranges": range(json!([{"introduced": "0"}, {"last_affected": c.1}]))}]}),
        json!({"id": "PYSEC-2099-4", "withdrawn": "2099-01-01T00:00:00Z", "database_specific": {"severity": "CRITICAL"},
               "affected": [{"package": pypi(&d.0), "ranges": range(json!([{"introduced": "0"}]))}]}),
    ]
}

fn expected_pypi(work: &Path, records: &[Value], dists: &[(String, String)]) -> Findings {
    let records_file = work.join("pypi-records.json");
    std::fs::write(&records_file, Value::from(records.to_vec()).to_string()).unwrap();
    let installed = work.join("pypi-installed.json");
    std::fs::write(&installed, json!(dists).to_string()).unwrap();
    let out = run_ok(
        Command::new(support::packaging_python())
            .arg("-c")
            .arg(support::OSV_PYPI_ORACLE)
            .arg(&records_file)
            .arg(&installed),
    );
    let rows: Vec<(String, String, String, String, String)> = serde_json::from_str(&out).unwrap();
    rows.into_iter().collect()
}

/// apk-tools' version comparison (`src/version.c` of the 2.x series: tokens of digits,
/// letters, `_suffix` + number, `-r` revision, a zero run after a dot), ported to Python,
/// checked against every vector of apk-tools' `version.data` that 2.x already had (lines
/// 1-733), then used to compare `argv[2]`'s pairs: prints `<`, `=` or `>` for each.
const APK_ORACLE: &str = r##"
import json, sys
INVALID, DIGIT_OR_ZERO, DIGIT, LETTER, SUFFIX, SUFFIX_NO, REVISION_NO, END = -1, 0, 1, 2, 3, 4, 5, 6
PRE, POST = ["alpha", "beta", "pre", "rc"], ["cvs", "svn", "git", "hg", "p"]

def next_token(t, s, p):
    if p >= len(s):
        n = END
    elif t in (DIGIT, DIGIT_OR_ZERO) and "a" <= s[p] <= "z":
        n = LETTER
    elif t == LETTER and s[p].isdigit():
        n = DIGIT
    elif t == SUFFIX and s[p].isdigit():
        n = SUFFIX_NO
    else:
        n = INVALID
        if s[p] == ".":
            n = DIGIT_OR_ZERO
        elif s[p] == "_":
            n = SUFFIX
        elif s[p] == "-" and p + 1 < len(s) and s[p + 1] == "r":
            n = REVISION_NO
            p += 1
        p += 1
    if n < t and not ((n == DIGIT_OR_ZERO and t == DIGIT) or (n == SUFFIX and t == SUFFIX_NO) or (n == DIGIT and t == LETTER)):
        n = INVALID
    return n, p

def get_token(t, s, p):
    if p >= len(s):
        return END, 0, p
    v, i, nt = 0, p, INVALID
    if t == DIGIT_OR_ZERO and s[i] == "0":
        while i < len(s) and s[i] == "0":
            i += 1
        v = -(i - p)
        # After the zero run a digit run follows (`1.06`, `1.0.1`), except before a suffix
        # (`6.0_pre1`), which is read as one (as apk-tools 2.14 orders `6.0_pre1 < 6.0`).
        if i >= len(s) or s[i] != "_":
            nt = DIGIT
    elif t in (DIGIT_OR_ZERO, DIGIT, SUFFIX_NO, REVISION_NO):
        while i < len(s) and s[i].isdigit():
            v = v * 10 + int(s[i])
            i += 1
    elif t == LETTER:
        v, i = ord(s[i]), i + 1
    elif t == SUFFIX:
        for k, suffix in enumerate(PRE):
            if s.startswith(suffix, p):
                v, i = k - len(PRE), p + len(suffix)
                break
        else:
            for k, suffix in enumerate(POST):
                if s.startswith(suffix, p):
                    v, i = k, p + len(suffix)
                    break
            else:
                return INVALID, -1, p
    else:
        return INVALID, -1, p
    if i >= len(s):
        t = END
    elif nt != INVALID:
        t = nt
    else:
        t, i = next_token(t, s, i)
    return t, v, i

def compare(a, b):
    at = bt = DIGIT
    av = bv = 0
    ap = bp = 0
    while at == bt and at not in (END, INVALID) and av == bv:
        at, av, ap = get_token(at, a, ap)
        bt, bv, bp = get_token(bt, b, bp)
    if av != bv:
        return "<" if av < bv else ">"
    if at == bt:
        return "="
    if at == SUFFIX and get_token(at, a, ap)[1] < 0:
        return "<"
    if bt == SUFFIX and get_token(bt, b, bp)[1] < 0:
        return ">"
    if at > bt:
        return "<"
    if bt > at:
        return ">"
    return "="

failures = []
for number, line in enumerate(open(sys.argv[1]).read().split("\n")[:733], 1):
    line = line.split("#")[0].rstrip()
    if " " not in line:
        continue
    a, op, b = line.split(" ", 2)
    if compare(a, b) != op:
        failures.append(f"line {number}: {line} (port says {compare(a, b)})")
if failures:
    sys.exit("the apk-tools port disagrees with version.data:\n" + "\n".join(failures))
print(json.dumps([compare(a, b) for a, b in json.load(open(sys.argv[2]))]))
"##;

/// `<`, `=` or `>` for each pair, from the apk-tools port.
fn apk_orders(work: &Path, pairs: &[(String, String)]) -> Vec<Ordering> {
    let vectors = Path::new(REPO).join("../shared/peer-tests/apk-version/test/unit/version.data");
    assert!(
        vectors.is_file(),
        "apk-tools' vectors missing at {}",
        vectors.display()
    );
    let pairs_file = work.join("apk-pairs.json");
    std::fs::write(&pairs_file, json!(pairs).to_string()).unwrap();
    require_tool("python3");
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(APK_ORACLE)
            .arg(&vectors)
            .arg(&pairs_file),
    );
    let ops: Vec<String> = serde_json::from_str(&out).unwrap();
    ops.iter()
        .map(|op| match op.as_str() {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            _ => Ordering::Greater,
        })
        .collect()
}

/// (name, version, origin) of the apk packages in `rootfs`'s installed database.
fn apk_installed(rootfs: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(rootfs.join("lib/apk/db/installed")).unwrap();
    text.split("\n\n")
        .filter_map(|record| {
            let field = |key: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::to_owned)
            };
            let name = field("P:")?;
            let version = field("V:")?;
            let origin = field("o:").unwrap_or_else(|| name.clone());
            Some((name, version, origin))
        })
        .collect()
}

/// The Alpine stand-in base and the seed app on it, as the pipeline test builds them (the
/// base from `base-image/Dockerfile` with `apk upgrade` from the stand-in mirror; the app from
/// `DOCKERFILE` with the musllinux wheels): (base layout, app layout).
fn alpine_seed_images(work: &Path, cache: &Path) -> (PathBuf, PathBuf) {
    let standins_dir = work.join("standins");
    let mirror = standins_dir
        .join("apk-mirror")
        .join(seed_standins::MIRROR_PATH);
    let standins = seed_standins::write(&standins_dir, mirror.to_str().unwrap());
    let base_context = Path::new(REPO).join("base-image");
    let base = work.join("alpine-base");
    let python_alpine = format!(
        "python:3.11-alpine=oci-layout://{}",
        standins.base_layout.display()
    );
    build(
        cache,
        &base_context.join("Dockerfile"),
        &base_context,
        &base,
        &["--build-context", &python_alpine],
    );
    let app = work.join("alpine-app");
    let wheels = wheels::seed_wheel_dir("musllinux_1_2_x86_64");
    let find_links = format!("PIP_FIND_LINKS={}", wheels.display());
    let seed_base = format!("seed-base=oci-layout://{}:1", base.display());
    build(
        cache,
        &dockerfile_on(work, "seed-base"),
        Path::new(REPO),
        &app,
        &["--build-context", &seed_base, "--build-arg", &find_links],
    );
    (base, app)
}

#[test]
fn alpine_seed_images_have_exactly_the_independently_computed_findings() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (base, app) = alpine_seed_images(work.path(), &cache);
    let rootfs = unpack(&app, work.path(), "alpine-app");
    let apk = apk_installed(&rootfs);
    let dists = python_dists(&rootfs.join("home/appuser/.local/lib/python3.11/site-packages"));
    let origins: BTreeSet<&str> = apk.iter().map(|(_, _, o)| o.as_str()).collect();
    assert!(
        origins.contains("busybox") && origins.contains("hello"),
        "{origins:?}"
    );

    // secdb v3.20 for every origin: a fix in a later release (the version with `-r` one
    // higher), one in an earlier release, an id marked not affected (`"0"`); and a v3.19 file
    // whose fix must not apply to this 3.20 image.
    let mut by_origin: Vec<(&str, &str)> = Vec::new();
    for (_, version, origin) in &apk {
        if !by_origin.iter().any(|(o, _)| o == origin) {
            by_origin.push((origin, version));
        }
    }
    let mut secfixes: Vec<(String, String, String)> = Vec::new();
    for (index, (origin, version)) in by_origin.iter().enumerate() {
        let (upstream, revision) = version.rsplit_once("-r").unwrap();
        let revision: u32 = revision.parse().unwrap();
        secfixes.push((
            origin.to_string(),
            format!("{upstream}-r{}", revision + 1),
            format!("CVE-2099-{:04}", 2 * index),
        ));
        secfixes.push((
            origin.to_string(),
            format!("0.{index}-r0"),
            format!("CVE-2099-{:04}", 2 * index + 1),
        ));
        secfixes.push((
            origin.to_string(),
            "0".to_owned(),
            format!("CVE-2098-{index:04}"),
        ));
    }
    let db = work.path().join("db");
    let mut packages = serde_json::Map::new();
    for (origin, fixed, id) in &secfixes {
        let entry = packages
            .entry(origin.clone())
            .or_insert_with(|| json!({"pkg": {"name": origin, "secfixes": {}}}));
        entry["pkg"]["secfixes"]
            .as_object_mut()
            .unwrap()
            .entry(fixed.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(json!(id));
    }
    let secdb = |branch: &str, packages: Vec<Value>| {
        json!({"apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
               "archs": ["x86_64"], "reponame": "main", "urlprefix": "https://alpine.invalid",
               "distroversion": branch, "packages": packages})
    };
    support::write_files(
        &db,
        &[
            (
                "alpine/v3.20/main.json",
                &secdb("v3.20", packages.values().cloned().collect()).to_string(),
            ),
            (
                "alpine/v3.19/main.json",
                &secdb(
                    "v3.19",
                    vec![json!({"pkg": {"name": "busybox", "secfixes": {"99.0-r0": ["CVE-2019-0000"]}}})],
                )
                .to_string(),
            ),
        ],
    );
    let records = pypi_records(&dists);
    for record in &records {
        let id = record["id"].as_str().unwrap();
        support::write_files(
            &db,
            &[(&format!("osv/PyPI/{id}.json"), &record.to_string())],
        );
    }

    // The expected findings: apk by origin with the apk-tools port, PyPI by packaging.
    let mut pairs = Vec::new();
    let mut candidates = Vec::new();
    for (name, version, origin) in &apk {
        for (fix_origin, fixed, id) in &secfixes {
            if fix_origin == origin && fixed != "0" {
                pairs.push((version.clone(), fixed.clone()));
                candidates.push((name.clone(), version.clone(), fixed.clone(), id.clone()));
            }
        }
    }
    let mut expected: Findings = candidates
        .into_iter()
        .zip(apk_orders(work.path(), &pairs))
        .filter(|(_, order)| *order == Ordering::Less)
        .map(|((name, version, fixed, id), _)| (name, version, fixed, id, "unknown".to_owned()))
        .collect();
    let expected_apk = expected.len();
    expected.extend(expected_pypi(work.path(), &records, &dists));
    assert_eq!(
        expected_apk,
        apk.len(),
        "one later fix per package: {expected:?}"
    );
    assert_eq!(
        expected.len() - expected_apk,
        2,
        "PyPI: the later fix and last_affected: {expected:?}"
    );

    let report = scan(&cache, &app, &db);
    assert_eq!(findings_of(&report), expected, "{report:#}");
    assert!(
        report["distro"]
            .as_str()
            .unwrap()
            .starts_with("alpine-3.20."),
        "{report:#}"
    );
    assert!(
        !report.to_string().contains("CVE-2098-"),
        "a \"0\" id was reported"
    );
    assert!(
        !report.to_string().contains("CVE-2019-0000"),
        "another branch's fix applied"
    );

    // The base: the same apk findings, no Python ones.
    let base_report = scan(&cache, &base, &db);
    let base_rootfs = unpack(&base, work.path(), "alpine-base");
    assert_eq!(
        apk_installed(&base_rootfs),
        apk,
        "the app adds no apk packages"
    );
    let apk_only: Findings = expected
        .iter()
        .filter(|f| f.4 == "unknown")
        .cloned()
        .collect();
    assert_eq!(findings_of(&base_report), apk_only, "{base_report:#}");
}

/// dpkg's answer for `a` against `b`.
fn dpkg_order(a: &str, b: &str) -> Ordering {
    let holds = |op: &str| {
        Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .status()
            .expect("failed to start dpkg")
            .success()
    };
    if holds("lt") {
        Ordering::Less
    } else if holds("eq") {
        Ordering::Equal
    } else {
        Ordering::Greater
    }
}

#[test]
fn dpkg_ordering_agrees_with_dpkg_compare_versions() {
    require_tool("dpkg");
    let mut versions: Vec<String> = [
        "0",
        "1",
        "1.0",
        "1.0-0",
        "1.0-1",
        "1.0-1+b1",
        "1.0+b1",
        "1.0~rc1",
        "1.0~rc1-1",
        "1.0~~",
        "1.0~",
        "1.0a",
        "1.0+",
        "1.0.0",
        "1.00",
        "1.002",
        "1.2",
        "1:0.9",
        "1:1.0",
        "2:0",
        "0:1.0",
        "10",
        "9",
        "1.0-1~deb12u1",
        "1.0-1+deb12u1",
        "1.0-1+deb12u10",
        "1.0-1+deb12u2",
        "2.36-9+deb12u4",
        "2.36-9+deb12u13",
        "3.0.11-1~deb12u2",
        "1:1.2.13.dfsg-1",
        "1.2.13.dfsg-1+b1",
        "1.2.13~dfsg-1",
        "1.0-a",
        "1.0-A",
        "1.0-.",
        "1.0a~",
        "1.0A",
        "1.0.a",
        "1.0-1.1",
        "1.0-1.0",
        "5.2.15-2+b2",
        "5.2.15-2+b10",
        "7.88.1-10+deb12u8",
        "3.11.2-6+deb12u6",
        "1:3.11.2",
        "2.9.14+dfsg-1.3~deb12u1",
    ]
    .map(str::to_owned)
    .to_vec();
    // Pseudo-random versions from a fixed seed: digits, letters, `.+~` and revisions.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let alphabet = b"0123456789abz.+~";
    for _ in 0..40 {
        let mut version = format!("{}", next(10));
        for _ in 0..next(6) {
            version.push(alphabet[next(alphabet.len() as u64) as usize] as char);
        }
        if next(2) == 0 {
            version.push_str(&format!("-{}", next(3)));
            if next(2) == 0 {
                version.push(['~', '+', '.'][next(3) as usize]);
                version.push_str(&format!("b{}", next(12)));
            }
        }
        if next(4) == 0 {
            version = format!("{}:{version}", next(3));
        }
        versions.push(version);
    }
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for (i, a) in versions.iter().enumerate() {
        assert!(kiln::scan::dpkg::is_valid(a), "{a}");
        for b in &versions[i..] {
            let (kiln, dpkg) = (kiln::scan::dpkg::compare(a, b), dpkg_order(a, b));
            if kiln != dpkg {
                disagreements.push(format!("{a} vs {b}: kiln {kiln:?}, dpkg {dpkg:?}"));
            }
            checked += 1;
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(checked > 3000, "{checked}");
}

/// The Debian base and the app on it, as the pipeline test builds them: (base, app).
fn debian_seed_images(work: &Path, cache: &Path) -> (PathBuf, PathBuf) {
    let rootfs_tar = debian_rootfs::debian_rootfs_tar();
    let context = work.join("debian-base");
    std::fs::create_dir_all(&context).unwrap();
    let in_context = context.join("rootfs.tar");
    if std::fs::hard_link(&rootfs_tar, &in_context).is_err() {
        std::fs::copy(&rootfs_tar, &in_context).unwrap();
    }
    let checksum = format!(
        "sha256:{}",
        kiln::digest::Digest::of(&std::fs::read(&rootfs_tar).unwrap()).hex()
    );
    std::fs::write(
        context.join("pip"),
        "#!/usr/bin/python3\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n",
    )
    .unwrap();
    std::fs::set_permissions(
        context.join("pip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM scratch\n\
             ADD --checksum={checksum} rootfs.tar /\n\
             COPY pip /usr/bin/pip\n\
             ENV PIP_BREAK_SYSTEM_PACKAGES=1\n\
             ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\n\
             RUN groupadd -g 1000 appuser && useradd -m -u 1000 -g appuser appuser\n\
             WORKDIR /app\n\
             USER appuser\n\
             CMD [\"python3\"]\n"
        ),
    )
    .unwrap();
    let base = work.join("debian-base-layout");
    build(cache, &context.join("Dockerfile"), &context, &base, &[]);
    let app = work.join("debian-app");
    let wheels = wheels::seed_wheel_dir("manylinux_2_17_x86_64");
    let find_links = format!("PIP_FIND_LINKS={}", wheels.display());
    let seed_base = format!("seed-base=oci-layout://{}:1", base.display());
    build(
        cache,
        &dockerfile_on(work, "seed-base"),
        Path::new(REPO),
        &app,
        &["--build-context", &seed_base, "--build-arg", &find_links],
    );
    (base, app)
}

/// An installed Debian package as dpkg-query reports it.
#[derive(Debug, Clone)]
struct DebPackage {
    name: String,
    version: String,
    source: String,
    source_version: String,
}

/// The installed packages of `rootfs`'s dpkg database, from `dpkg-query --admindir`.
fn dpkg_installed(rootfs: &Path) -> Vec<DebPackage> {
    require_tool("dpkg-query");
    let out = run_ok(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", rootfs.join("var/lib/dpkg").display()))
            .args([
                "-W",
                "-f",
                "${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\n",
            ]),
    );
    out.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields[0].trim() == "ii").then(|| DebPackage {
                name: fields[1].to_owned(),
                version: fields[2].to_owned(),
                source: fields[3].to_owned(),
                source_version: fields[4].to_owned(),
            })
        })
        .collect()
}

/// The SPDX document of the layout's SBOM attestation.
fn spdx_of(layout: &Path) -> Value {
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::metadata(&path).unwrap().len() > 64 << 20 {
            continue;
        }
        let Ok(statement) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        if statement["predicateType"] == "https://spdx.dev/Document" {
            return statement["predicate"].clone();
        }
    }
    panic!("no SPDX attestation in {}", layout.display());
}

#[test]
fn debian_seed_images_match_debian_advisories_by_source_package_with_dpkg_ordering() {
    require_tool("dpkg");
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (base, app) = debian_seed_images(work.path(), &cache);
    let rootfs = unpack(&app, work.path(), "debian-app");
    let debs = dpkg_installed(&rootfs);
    assert!(debs.len() > 50, "{debs:?}");

    // The SBOM lists every installed dpkg package, with its source.
    let spdx = spdx_of(&app);
    let purls: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["referenceLocator"].as_str().map(str::to_owned))
        .filter(|purl| purl.starts_with("pkg:deb/debian/"))
        .collect();
    for deb in &debs {
        let prefix = format!("pkg:deb/debian/{}@", deb.name);
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with(&prefix) && p.contains("distro=debian-12")),
            "{} is not in the SBOM",
            deb.name
        );
    }

    // Records around what is installed: glibc fixed in a later release; the first package with
    // an epoch "fixed" in a version without one (not affected: the epoch wins); python3.11
    // affected from just before its version (`~`) to a later one; a binNMU's source fixed at
    // the binary's version (affected: advisories name source versions); a withdrawn record
    // and one for Debian 11, both for glibc.
    let source_of = |name: &str| {
        debs.iter()
            .find(|d| d.source == name)
            .unwrap_or_else(|| panic!("no package built from {name}: {debs:?}"))
            .clone()
    };
    let glibc = source_of("glibc");
    let python = source_of("python3.11");
    let epoch = debs
        .iter()
        .find(|d| d.source_version.contains(':'))
        .expect("a package with an epoch")
        .clone();
    let bin_nmu = debs.iter().find(|d| d.version != d.source_version).cloned();
    let debian =
        |name: &str, release: &str| json!({"ecosystem": format!("Debian:{release}"), "name": name});
    let range = |events: Value| json!([{"type": "ECOSYSTEM", "events": events}]);
    let mut records = vec![
        json!({"id": "DEBIAN-CVE-2099-0001", "aliases": ["CVE-2099-0001"],
               "affected": [{"package": debian("glibc", "12"), "ranges": range(json!([{"introduced": "0"}, {"fixed": format!("{}+kiln1", glibc.source_version)}]))}]}),
        json!({"id": "DEBIAN-CVE-2099-0002",
               "affected": [{"package": debian(&epoch.source, "12"), "ranges": range(json!([{"introduced": "0"}, {"fixed": format!("{}+kiln2", epoch.source_version.split_once(':').unwrap().1)}]))}]}),
        json!({"id": "DEBIAN-CVE-2099-0003", "database_specific": {"severity": "HIGH"},
               "affected": [{"package": debian("python3.11", "12"), "ranges": range(json!([{"introduced": format!("{}~", python.source_version)}, {"fixed": format!("{}+deb12u99", python.source_version)}]))}]}),
        json!({"id": "DEBIAN-CVE-2099-0004", "withdrawn": "2099-01-01T00:00:00Z",
               "affected": [{"package": debian("glibc", "12"), "ranges": range(json!([{"introduced": "0"}]))}]}),
        json!({"id": "DEBIAN-CVE-2099-0005",
               "affected": [{"package": debian("glibc", "11"), "ranges": range(json!([{"introduced": "0"}]))}]}),
    ];
    if let Some(bin_nmu) = &bin_nmu {
        records.push(json!({"id": "DEBIAN-CVE-2099-0006",
            "affected": [{"package": debian(&bin_nmu.source, "12"), "ranges": range(json!([{"introduced": "0"}, {"fixed": bin_nmu.version}]))}]}));
    }
    let dists = python_dists(&rootfs.join("home/appuser/.local/lib/python3.11/site-packages"));
    let pypi = pypi_records(&dists);
    let db = work.path().join("db");
    std::fs::create_dir_all(db.join("osv")).unwrap();
    std::fs::write(
        db.join("osv/debian.json"),
        Value::from(records.clone()).to_string(),
    )
    .unwrap();
    std::fs::write(
        db.join("osv/pypi.json"),
        Value::from(pypi.clone()).to_string(),
    )
    .unwrap();

    // The expected Debian findings, every comparison made by dpkg.
    let mut expected = Findings::new();
    for record in &records {
        if record.get("withdrawn").is_some() {
            continue;
        }
        let affected = &record["affected"][0];
        if affected["package"]["ecosystem"] != "Debian:12" {
            continue;
        }
        let events = affected["ranges"][0]["events"].as_array().unwrap();
        let introduced = events[0]["introduced"].as_str().unwrap();
        let fixed = events.get(1).and_then(|e| e["fixed"].as_str());
        for deb in debs
            .iter()
            .filter(|d| d.source == affected["package"]["name"])
        {
            let installed = &deb.source_version;
            let after_introduced =
                introduced == "0" || dpkg_order(installed, introduced) != Ordering::Less;
            let before_fix = fixed.is_none_or(|f| dpkg_order(installed, f) == Ordering::Less);
            if after_introduced && before_fix {
                expected.insert((
                    deb.name.clone(),
                    deb.version.clone(),
                    fixed.unwrap_or("").to_owned(),
                    record["id"].as_str().unwrap().to_owned(),
                    record["database_specific"]["severity"]
                        .as_str()
                        .unwrap_or("unknown")
                        .to_lowercase(),
                ));
            }
        }
    }
    let glibc_binaries = debs.iter().filter(|d| d.source == "glibc").count();
    let python_binaries = debs.iter().filter(|d| d.source == "python3.11").count();
    assert_eq!(
        expected.len(),
        glibc_binaries
            + python_binaries
            + bin_nmu.map_or(0, |b| {
                debs.iter().filter(|d| d.source == b.source).count()
            }),
        "{expected:?}"
    );
    let base_expected = expected.clone();
    expected.extend(expected_pypi(work.path(), &pypi, &dists));

    let report = scan(&cache, &app, &db);
    assert_eq!(report["distro"], "debian-12", "{report:#}");
    assert_eq!(findings_of(&report), expected, "{report:#}");
    assert!(
        !report.to_string().contains("DEBIAN-CVE-2099-0002"),
        "the epoch was ignored"
    );
    let base_report = scan(&cache, &base, &db);
    assert_eq!(findings_of(&base_report), base_expected, "{base_report:#}");

    // The same kind of advisories in Debian's security tracker export (source package -> CVE
    // -> release code name), checked against dpkg: (source, CVE, release, status, fixed
    // version, urgency, expected severity).
    let mut tracked = vec![
        (
            "glibc",
            "CVE-2099-0101",
            "bookworm",
            "resolved",
            format!("{}+kiln1", glibc.source_version),
            "high",
            "high",
        ),
        (
            "glibc",
            "CVE-2099-0102",
            "bookworm",
            "resolved",
            "0".to_owned(),
            "high",
            "high",
        ),
        (
            "glibc",
            "CVE-2099-0103",
            "bookworm",
            "open",
            String::new(),
            "unimportant",
            "low",
        ),
        (
            "glibc",
            "CVE-2099-0104",
            "bullseye",
            "open",
            String::new(),
            "high",
            "high",
        ),
        (
            "glibc",
            "CVE-2099-0105",
            "sid",
            "open",
            String::new(),
            "high",
            "high",
        ),
        (
            &epoch.source,
            "CVE-2099-0106",
            "bookworm",
            "resolved",
            format!("{}+kiln2", epoch.source_version.split_once(':').unwrap().1),
            "low",
            "low",
        ),
        (
            "python3.11",
            "CVE-2099-0107",
            "bookworm",
            "resolved",
            format!("{}+deb12u99", python.source_version),
            "medium**",
            "medium",
        ),
        (
            "python3.11",
            "CVE-2099-0108",
            "bookworm",
            "resolved",
            python.source_version.clone(),
            "medium",
            "medium",
        ),
    ];
    if let Some(bin_nmu) = debs.iter().find(|d| d.version != d.source_version) {
        tracked.push((
            &bin_nmu.source,
            "CVE-2099-0109",
            "bookworm",
            "undetermined",
            String::new(),
            "not yet assigned",
            "unknown",
        ));
    }
    let mut tracker = serde_json::Map::new();
    let mut expected = Findings::new();
    for (source, cve, release, status, fixed, urgency, severity) in &tracked {
        let mut entry =
            json!({"status": status, "repositories": {*release: "0"}, "urgency": urgency});
        if *status == "resolved" {
            entry["fixed_version"] = json!(fixed);
        }
        let package = tracker
            .entry(source.to_string())
            .or_insert_with(|| json!({}));
        package[*cve] = json!({"description": format!("{cve} in {source}"), "scope": "remote",
                                "releases": {*release: entry}});
        if *release != "bookworm" || fixed == "0" {
            continue;
        }
        for deb in debs.iter().filter(|d| d.source == *source) {
            if fixed.is_empty() || dpkg_order(&deb.source_version, fixed) == Ordering::Less {
                expected.insert((
                    deb.name.clone(),
                    deb.version.clone(),
                    fixed.clone(),
                    cve.to_string(),
                    severity.to_string(),
                ));
            }
        }
    }
    assert!(
        expected.iter().any(|f| f.3 == "CVE-2099-0101")
            && expected.iter().any(|f| f.3 == "CVE-2099-0103"),
        "{expected:?}"
    );
    let tracker_db = work.path().join("tracker-db");
    std::fs::create_dir_all(&tracker_db).unwrap();
    std::fs::write(
        tracker_db.join("debian-security-tracker.json"),
        Value::from(tracker).to_string(),
    )
    .unwrap();
    let report = scan(&cache, &app, &tracker_db);
    assert_eq!(findings_of(&report), expected, "{report:#}");
}
