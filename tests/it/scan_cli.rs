//! `kiln scan` end to end: an Alpine 3.20.3 image with apk packages and Python distributions,
//! written as an OCI layout, scanned against a database written here in Alpine secdb and OSV
//! formats (a fix in a later release, an id marked not affected with `"0"`, a secdb file of
//! another branch, Python ranges with introduced/fixed/last_affected, a withdrawn advisory,
//! PEP 503 name spellings, an array of records). The expected findings come from an
//! independent computation: apk orderings looked up in apk-tools' own version vectors
//! (`peer-tests/apk-version`), PyPI ranges evaluated by Python's `packaging.version` in the
//! sbom tests' venv. Also: --fail-on thresholds and exit codes, table/json/sarif output, and
//! errors for a malformed database that name the file and the entry.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kiln::image::{ImageConfig, assemble, rfc3339, write_oci_layout};
use kiln::layer::{self, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata, WriteOptions};
use kiln::store::Store;
use serde_json::{Value, json};

/// (package, origin, installed version) of the image's apk packages.
const APK_PACKAGES: &[(&str, &str, &str)] = &[
    ("libcrypto3", "openssl", "1.0.4-r3"),
    ("busybox", "busybox", "2.16.1-r3"),
    ("gamma", "gamma", "2.3.0b-r1"),
    ("musl", "musl", "20050718-r2"),
];

/// (origin, fixed version, ids) in the v3.20 secdb; `"0"` = not affected.
const SECFIXES: &[(&str, &str, &str)] = &[
    ("openssl", "1.0.4-r4", "CVE-2024-0001"),
    ("openssl", "0", "CVE-2020-9999"),
    ("busybox", "2.1.0-r2", "CVE-2024-0002"),
    ("gamma", "2.3.0b-r2", "CVE-2024-0003 GHSA-xxxx-yyyy-zzzz"),
    ("musl", "3.9.8-r5", "CVE-2024-0004"),
];

/// (METADATA Name, version) of the image's Python distributions.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("Flask", "2.2.0"),
    ("requests", "2.31.0"),
    ("werkzeug", "3.0.0rc1"),
    ("zope_interface", "6.4"),
];

fn osv_records() -> Vec<Value> {
    let pypi = |name: &str| json!({"ecosystem": "PyPI", "name": name});
    vec![
        json!({"id": "PYSEC-2024-1", "aliases": ["CVE-2024-1001"], "database_specific": {"severity": "HIGH"},
               "affected": [{"package": pypi("flask"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.2.5"}]}]}]}),
        json!({"id": "GHSA-aaaa-bbbb-cccc", "database_specific": {"severity": "MODERATE"},
               "affected": [{"package": pypi("Requests"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.32.0"}]}]}]}),
        json!({"id": "GHSA-dddd-eeee-ffff", "database_specific": {"severity": "LOW"},
               "affected": [{"package": pypi("requests"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.32.0"}, {"last_affected": "2.32.3"}]}]}]}),
        json!({"id": "PYSEC-2024-2", "database_specific": {"severity": "HIGH"},
               "affected": [{"package": pypi("Werkzeug"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.0.0"}, {"fixed": "3.0.3"}]}]}]}),
        json!({"id": "PYSEC-2024-3", "database_specific": {"severity": "CRITICAL"},
               "affected": [{"package": pypi("zope.interface"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "6.0"}, {"fixed": "6.4.post1"}]}]}]}),
        json!({"id": "PYSEC-2024-4", "withdrawn": "2024-05-01T00:00:00Z", "database_specific": {"severity": "CRITICAL"},
               "affected": [{"package": pypi("flask"), "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}),
    ]
}

fn file(diff: &mut Diff, path: &str, content: &str) {
    diff.insert(
        LayerPath::new(path).unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::Bytes(Arc::from(content.as_bytes()))),
            meta: Metadata::root_owned(0o644),
        },
    );
}

/// Writes the Alpine image as `DIR/layout` (tag `v1`).
fn write_image(dir: &Path) -> PathBuf {
    let store = Store::open(&dir.join("store")).unwrap();
    let diff = image_diff();
    let layer = layer::write(&diff, &store, &WriteOptions::default()).unwrap();
    let config = ImageConfig {
        created: Some(rfc3339(0)),
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        ..ImageConfig::default()
    };
    let image = assemble(&store, &config, &[layer], &BTreeMap::new()).unwrap();
    let layout = dir.join("layout");
    write_oci_layout(&store, &layout, &[(image, vec!["app:v1".to_owned()])]).unwrap();
    layout
}

/// The image's single layer.
fn image_diff() -> Diff {
    let mut diff = Diff::new();
    file(&mut diff, "etc/alpine-release", "3.20.3\n");
    file(
        &mut diff,
        "etc/os-release",
        "ID=alpine\nVERSION_ID=3.20.3\n",
    );
    let installed: String = APK_PACKAGES
        .iter()
        .map(|(name, origin, version)| format!("P:{name}\nV:{version}\nA:x86_64\no:{origin}\n\n"))
        .collect();
    file(&mut diff, "lib/apk/db/installed", &installed);
    for (name, version) in PYTHON_PACKAGES {
        file(
            &mut diff,
            &format!("usr/local/lib/python3.12/site-packages/{name}-{version}.dist-info/METADATA"),
            &format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        );
    }
    diff
}

/// Writes the database: secdb for v3.20 (and a v3.19 one that must not apply), OSV records
/// one per file plus the last two as an array.
fn write_db(dir: &Path) -> PathBuf {
    let db = dir.join("db");
    let mut by_origin: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for (origin, fixed, ids) in SECFIXES {
        by_origin
            .entry(origin)
            .or_default()
            .insert((*fixed).to_owned(), json!([ids]));
    }
    let secdb = |branch: &str, packages: Vec<Value>| {
        json!({"apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
               "archs": ["x86_64"], "reponame": "main", "urlprefix": "https://alpine.invalid",
               "distroversion": branch, "packages": packages})
    };
    let packages = by_origin
        .into_iter()
        .map(|(name, secfixes)| json!({"pkg": {"name": name, "secfixes": secfixes}}))
        .collect();
    std::fs::create_dir_all(db.join("alpine/v3.20")).unwrap();
    std::fs::create_dir_all(db.join("alpine/v3.19")).unwrap();
    std::fs::create_dir_all(db.join("osv/PyPI")).unwrap();
    std::fs::write(
        db.join("alpine/v3.20/main.json"),
        secdb("v3.20", packages).to_string(),
    )
    .unwrap();
    std::fs::write(
        db.join("alpine/v3.19/main.json"),
        secdb(
            "v3.19",
            vec![json!({"pkg": {"name": "busybox", "secfixes": {"99.0-r0": ["CVE-2019-0000"]}}})],
        )
        .to_string(),
    )
    .unwrap();
    let records = osv_records();
    let (single, array) = records.split_at(records.len() - 2);
    for record in single {
        let id = record["id"].as_str().unwrap();
        std::fs::write(db.join(format!("osv/PyPI/{id}.json")), record.to_string()).unwrap();
    }
    std::fs::write(
        db.join("osv/all.json"),
        Value::from(array.to_vec()).to_string(),
    )
    .unwrap();
    db
}

/// apk-tools' version vectors: `A op B` lines, op in `<`, `=`, `>`.
fn apk_vectors() -> BTreeMap<(String, String), std::cmp::Ordering> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/peer-tests/apk-version/test/unit/version.data");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("apk version vectors missing at {}: {e}", path.display()));
    let mut vectors = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
        if let [a, op, b] = fields.as_slice() {
            let order = match *op {
                "<" => std::cmp::Ordering::Less,
                "=" => std::cmp::Ordering::Equal,
                ">" => std::cmp::Ordering::Greater,
                _ => continue,
            };
            vectors.insert((a.to_string(), b.to_string()), order);
            vectors.insert((b.to_string(), a.to_string()), order.reverse());
        }
    }
    vectors
}

/// The findings as (package, installed, fixed_in, first id, severity).
type Expected = BTreeSet<(String, String, String, String, String)>;

/// The Alpine findings by apk-tools' vectors: installed before the fixed version, by origin.
fn expected_apk() -> Expected {
    let vectors = apk_vectors();
    let mut expected = Expected::new();
    for (name, origin, installed) in APK_PACKAGES {
        for (fix_origin, fixed, ids) in SECFIXES {
            if fix_origin != origin || *fixed == "0" {
                continue;
            }
            let order = vectors
                .get(&(installed.to_string(), fixed.to_string()))
                .unwrap_or_else(|| panic!("{installed} vs {fixed} is not in apk's vectors"));
            if *order == std::cmp::Ordering::Less {
                let first = ids.split_whitespace().next().unwrap();
                expected.insert((
                    name.to_string(),
                    installed.to_string(),
                    fixed.to_string(),
                    first.to_owned(),
                    "unknown".to_owned(),
                ));
            }
        }
    }
    expected
}

fn expected_pypi(temp: &Path) -> Expected {
    let records = temp.join("records.json");
    std::fs::write(&records, Value::from(osv_records()).to_string()).unwrap();
    let installed = temp.join("installed.json");
    std::fs::write(&installed, json!(PYTHON_PACKAGES).to_string()).unwrap();
    let output = Command::new(support::packaging_python())
        .arg("-c")
        .arg(support::OSV_PYPI_ORACLE)
        .arg(&records)
        .arg(&installed)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<(String, String, String, String, String)> =
        serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter().collect()
}

fn findings_of(report: &Value) -> Expected {
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

fn scan(layout: &Path, db: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    let image = format!("oci:{}:v1", layout.display());
    let mut args = vec![
        "scan",
        &image,
        "--db",
        db.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    support::kiln(&args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn scan_reports_exactly_the_independently_computed_findings() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let db = write_db(temp.path());
    let cache = temp.path().join("cache");
    let output = scan(&layout, &db, &cache, &["--format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut expected = expected_apk();
    expected.extend(expected_pypi(temp.path()));
    assert_eq!(findings_of(&report), expected);
    // The fixture exercises both sides of each rule.
    assert!(expected.iter().any(|f| f.0 == "libcrypto3"), "{expected:?}");
    assert!(!expected.iter().any(|f| f.0 == "busybox"), "{expected:?}");
    assert!(
        expected.iter().any(|f| f.0 == "zope-interface"),
        "{expected:?}"
    );
    assert!(!expected.iter().any(|f| f.0 == "werkzeug"), "{expected:?}");
    assert!(
        !expected.iter().any(|f| f.3 == "PYSEC-2024-4"),
        "{expected:?}"
    );
    assert!(
        !report.to_string().contains("CVE-2020-9999"),
        "an id marked not affected (\"0\") was reported"
    );
    assert_eq!(report["distro"], "alpine-3.20.3");
    let libcrypto = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["package"] == "libcrypto3")
        .unwrap();
    assert_eq!(
        libcrypto["purl"],
        "pkg:apk/alpine/libcrypto3@1.0.4-r3?arch=x86_64&distro=alpine-3.20.3&upstream=openssl"
    );

    // The table names each finding; SARIF has one result per finding.
    let table = scan(&layout, &db, &cache, &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    for (package, installed, fixed, id, _) in &expected {
        let line = text
            .lines()
            .find(|l| l.contains(id.as_str()) && l.starts_with(package.as_str()))
            .unwrap_or_else(|| panic!("no table line for {package} {id}:\n{text}"));
        assert!(
            line.contains(installed.as_str()) && line.contains(fixed.as_str()),
            "{line}"
        );
    }
    let sarif = scan(&layout, &db, &cache, &["--format", "sarif"]);
    let sarif: Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        expected.len()
    );
}

#[test]
fn fail_on_sets_the_exit_code_and_rejects_unknown_severities() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let db = write_db(temp.path());
    let cache = temp.path().join("cache");
    // The worst finding is critical (zope-interface).
    let critical = scan(&layout, &db, &cache, &["--fail-on", "critical"]);
    assert_eq!(critical.status.code(), Some(1), "{}", stderr(&critical));
    assert!(
        stderr(&critical).contains("at or above critical"),
        "{}",
        stderr(&critical)
    );
    // A database whose worst is medium: high passes, medium fails.
    let medium_db = temp.path().join("medium-db");
    std::fs::create_dir_all(&medium_db).unwrap();
    std::fs::write(medium_db.join("r.json"), osv_records()[1].to_string()).unwrap();
    let high = scan(&layout, &medium_db, &cache, &["--fail-on", "high"]);
    assert_eq!(high.status.code(), Some(0), "{}", stderr(&high));
    let medium = scan(&layout, &medium_db, &cache, &["--fail-on", "medium"]);
    assert_eq!(medium.status.code(), Some(1), "{}", stderr(&medium));
    // An unknown severity is a usage error.
    let bad = scan(&layout, &db, &cache, &["--fail-on", "severe"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("severe"), "{}", stderr(&bad));
}

#[test]
fn malformed_database_files_are_named_with_the_entry() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let cache = temp.path().join("cache");
    for (file, content, entry) in [
        (
            "main.json",
            json!({"distroversion": "v3.20", "packages": [{"pkg": {"name": "openssl", "secfixes": {"not a version!": ["CVE-1"]}}}]}),
            "packages[0] (openssl) secfixes `not a version!`",
        ),
        (
            "GHSA-1.json",
            json!({"id": "GHSA-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "flask"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0 beta ???"}]}]}]}),
            "GHSA-1 affected[0] ranges[0].events[1]",
        ),
        ("other.json", json!({"hello": "world"}), "the file"),
    ] {
        let db = temp.path().join(format!("bad-{file}"));
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join(file), content.to_string()).unwrap();
        let output = scan(&layout, &db, &cache, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(
            message.contains(file) && message.contains(entry),
            "{message}"
        );
    }
    // An advisory for a package the image does not have is skipped unchecked: the scan reads
    // only what it matches (`kiln db fetch` checks every entry).
    let unrelated = temp.path().join("unrelated-db");
    std::fs::create_dir_all(&unrelated).unwrap();
    std::fs::write(
        unrelated.join("GHSA-2.json"),
        json!({"id": "GHSA-2", "affected": [{"package": {"ecosystem": "PyPI", "name": "not-installed"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0 beta ???"}]}]}]}).to_string(),
    )
    .unwrap();
    let skipped = scan(&layout, &unrelated, &cache, &[]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    let missing = scan(&layout, &temp.path().join("nowhere"), &cache, &[]);
    assert!(
        stderr(&missing).contains("kiln db fetch"),
        "{}",
        stderr(&missing)
    );
}

/// `kiln db index`: the index gives the same reports as the files; a file added, changed or
/// removed afterwards makes the scan refuse it, naming the file and the command; a malformed
/// index is named; a malformed database file is named and no index is written.
#[test]
fn the_index_gives_the_same_reports_and_is_refused_when_stale() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let db = write_db(temp.path());
    let cache = temp.path().join("cache");
    let reports = || {
        ["json", "table", "sarif"].map(|format| {
            let output = scan(&layout, &db, &cache, &["--format", format]);
            assert!(output.status.success(), "{}", stderr(&output));
            String::from_utf8(output.stdout).unwrap()
        })
    };
    let from_files = reports();
    let index = support::kiln(&["db", "index", db.to_str().unwrap()]);
    assert!(index.status.success(), "{}", stderr(&index));
    assert!(stderr(&index).contains(".kiln/index"), "{}", stderr(&index));
    let index_file = db.join(".kiln/index");
    assert!(index_file.is_file());
    assert_eq!(reports(), from_files);
    let report: Value = serde_json::from_str(&from_files[0]).unwrap();
    let mut expected = expected_apk();
    expected.extend(expected_pypi(temp.path()));
    assert_eq!(findings_of(&report), expected);

    let refused = |what: &str| {
        let output = scan(&layout, &db, &cache, &[]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(
            message.contains(what)
                && message.contains("out of date")
                && message.contains(&format!("kiln db index {}", db.display())),
            "{message}"
        );
        let index = support::kiln(&["db", "index", db.to_str().unwrap()]);
        assert!(index.status.success(), "{}", stderr(&index));
    };
    let added = db.join("osv/GHSA-late.json");
    std::fs::write(
        &added,
        json!({"id": "GHSA-late", "affected": [{"package": {"ecosystem": "PyPI", "name": "werkzeug"}, "versions": ["3.0.0rc1"]}]}).to_string(),
    )
    .unwrap();
    refused("`osv/GHSA-late.json` was added");
    let with_added = scan(&layout, &db, &cache, &["--format", "json"]);
    assert!(
        String::from_utf8_lossy(&with_added.stdout).contains("GHSA-late"),
        "the re-indexed database does not report the added advisory"
    );
    // Rewritten in place, right after indexing.
    std::fs::write(
        &added,
        json!({"id": "GHSA-late", "affected": [{"package": {"ecosystem": "PyPI", "name": "werkzeug"}, "versions": ["0.1"]}]}).to_string(),
    )
    .unwrap();
    refused("`osv/GHSA-late.json` changed");
    std::fs::remove_file(&added).unwrap();
    refused("`osv/GHSA-late.json` was removed");
    assert_eq!(reports(), from_files);

    std::fs::write(
        &index_file,
        "kiln vulnerability database index 1\n{\"files\": 1}\n",
    )
    .unwrap();
    let malformed = scan(&layout, &db, &cache, &[]);
    let message = stderr(&malformed);
    assert_eq!(malformed.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "malformed vulnerability database index `{}`",
            index_file.display()
        )) && message.contains("header"),
        "{message}"
    );

    // Indexing checks every entry, even those no image names.
    std::fs::remove_file(&index_file).unwrap();
    std::fs::write(
        db.join("GHSA-2.json"),
        json!({"id": "GHSA-2", "affected": [{"package": {"ecosystem": "PyPI", "name": "not-installed"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0 beta ???"}]}]}]}).to_string(),
    )
    .unwrap();
    let bad = support::kiln(&["db", "index", db.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("GHSA-2.json")
            && stderr(&bad).contains("GHSA-2 affected[0] ranges[0].events[1]"),
        "{}",
        stderr(&bad)
    );
    assert!(!index_file.exists());
}

/// `kiln scan --attest --sign-key` attaches the report with cosign's vulnerability predicate,
/// signed: `kiln verify` finds it with the public key and a policy that requires it.
#[test]
fn scan_attest_attaches_a_signed_vulnerability_report() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let db = write_db(temp.path());
    let cache = temp.path().join("cache");
    let keys = temp.path().join("keys");
    support::kiln_ok(&["keygen", keys.to_str().unwrap()]);
    let private = keys.join("private.pem");
    let output = scan(
        &layout,
        &db,
        &cache,
        &["--attest", "--sign-key", private.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let image = format!("oci:{}:v1", layout.display());
    let policy = temp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "require_signed = true\nrequired_predicate_types = [\"https://cosign.sigstore.dev/attestation/vuln/v1\"]\n",
    )
    .unwrap();
    let verified = support::kiln(&[
        "verify",
        &image,
        "--key",
        keys.join("public.pem").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let text = support::kiln_ok(&["inspect", &image]);
    assert!(
        text.contains("https://cosign.sigstore.dev/attestation/vuln/v1"),
        "{text}"
    );
}

/// `kiln build --scan-db DIR --fail-on SEVERITY` scans the result before writing it: at the
/// threshold the build fails and no output exists; below it the build writes the image and
/// prints the findings.
#[test]
fn build_with_scan_db_fails_before_writing_at_the_threshold() {
    let temp = tempfile::tempdir().unwrap();
    let db = write_db(temp.path());
    let context = temp.path().join("ctx");
    let rootfs = context.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("lib/apk/db")).unwrap();
    std::fs::write(rootfs.join("etc/alpine-release"), "3.20.3\n").unwrap();
    let installed: String = APK_PACKAGES
        .iter()
        .map(|(name, origin, version)| format!("P:{name}\nV:{version}\nA:x86_64\no:{origin}\n\n"))
        .collect();
    std::fs::write(rootfs.join("lib/apk/db/installed"), installed).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let cache = temp.path().join("cache");
    let build = |out: &Path, extra: &[&str]| {
        let dest = format!("type=oci,dest={}", out.display());
        let mut args = vec![
            "build",
            "--progress=quiet",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-t",
            "app:1",
            "--output",
            &dest,
            "--scan-db",
            db.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(context.to_str().unwrap());
        support::kiln(&args)
    };
    // The secdb findings have no severity: `unknown` is the threshold that catches them.
    let refused = temp.path().join("refused");
    let failed = build(&refused, &["--fail-on", "unknown"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("nothing was written"),
        "{}",
        stderr(&failed)
    );
    assert!(
        stderr(&failed).contains("CVE-2024-0001"),
        "{}",
        stderr(&failed)
    );
    assert!(!refused.exists(), "the refused image was written");
    let written = temp.path().join("written");
    let passed = build(&written, &["--fail-on", "low"]);
    assert!(passed.status.success(), "{}", stderr(&passed));
    assert!(
        stderr(&passed).contains("libcrypto3"),
        "{}",
        stderr(&passed)
    );
    assert!(written.join("index.json").is_file());
}

/// A static file server (`python3 -m http.server`) on 127.0.0.1, stopped by its PID on drop.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        support::require_tool("python3");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("failed to start python3 -m http.server");
        // Owned at once, so the server is stopped (and waited for) on every path.
        let server = FileServer { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("python3 -m http.server did not listen on 127.0.0.1:{port}");
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn db_fetch_keeps_verified_database_files_only() {
    let temp = tempfile::tempdir().unwrap();
    let served = write_db(temp.path());
    std::fs::write(served.join("notes.json"), "{\"hello\": 1}").unwrap();
    let server = FileServer::start(&served);
    let base = format!("http://127.0.0.1:{}", server.port);
    let secdb = std::fs::read(served.join("alpine/v3.20/main.json")).unwrap();
    let pin = kiln::digest::Digest::of(&secdb).hex().to_owned();
    let fetched = temp.path().join("fetched");
    let good = support::kiln(&[
        "db",
        "fetch",
        "--db",
        fetched.to_str().unwrap(),
        &format!("{base}/alpine/v3.20/main.json#sha256={pin}"),
        &format!("{base}/osv/all.json"),
    ]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert_eq!(
        std::fs::read(fetched.join("alpine/v3.20/main.json")).unwrap(),
        secdb
    );
    assert!(fetched.join("osv/all.json").is_file());
    assert!(
        fetched.join(".kiln/index").is_file(),
        "kiln db fetch wrote no index"
    );
    // A wrong pin, a file that is not a database file: refused, nothing kept.
    let wrong = "0".repeat(64);
    let other = temp.path().join("other");
    for (url, message) in [
        (
            format!("{base}/alpine/v3.20/main.json#sha256={wrong}"),
            "expected",
        ),
        (format!("{base}/notes.json"), "not a vulnerability database"),
        (format!("{base}/missing.json"), "HTTP 404"),
    ] {
        let output = support::kiln(&["db", "fetch", "--db", other.to_str().unwrap(), &url]);
        assert_eq!(output.status.code(), Some(1), "{url}: {}", stderr(&output));
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
    assert!(!other.join("alpine/v3.20/main.json").exists());
    assert!(!other.join("notes.json").exists());
    // The fetched database scans like the original.
    let layout = write_image(temp.path());
    let cache = temp.path().join("cache");
    let scanned = scan(&layout, &fetched, &cache, &["--format", "json"]);
    assert!(scanned.status.success(), "{}", stderr(&scanned));
    let report: Value = serde_json::from_slice(&scanned.stdout).unwrap();
    assert!(report.to_string().contains("CVE-2024-0001"), "{report}");
}

/// `kiln scan --sbom FILE` finds the same as scanning the image, from kiln's SPDX and
/// CycloneDX documents of that image.
#[test]
fn scanning_the_sbom_finds_what_scanning_the_image_finds() {
    let temp = tempfile::tempdir().unwrap();
    let layout = write_image(temp.path());
    let db = write_db(temp.path());
    let cache = temp.path().join("cache");
    let from_image = scan(&layout, &db, &cache, &["--format", "json"]);
    assert!(from_image.status.success(), "{}", stderr(&from_image));
    let expected = findings_of(&serde_json::from_slice(&from_image.stdout).unwrap());
    let fs = kiln::rootfs::memfs::MemFs::from_diff(&image_diff());
    let params = kiln::attest::SbomParams {
        image_name: "app:v1".to_owned(),
        image_digest: kiln::digest::Digest::of(b"m"),
        source_date_epoch: 0,
        packages: kiln::attest::packages_from_rootfs(&fs).unwrap(),
    };
    for (name, document) in [
        (
            "sbom.spdx.json",
            kiln::attest::spdx_document(&params).unwrap(),
        ),
        (
            "sbom.cdx.json",
            kiln::attest::cyclonedx::cyclonedx_document(&params).unwrap(),
        ),
    ] {
        let path = temp.path().join(name);
        std::fs::write(&path, document.to_string()).unwrap();
        let output = support::kiln(&[
            "scan",
            "--sbom",
            path.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(findings_of(&report), expected, "{name}");
    }
    let neither = temp.path().join("neither.json");
    std::fs::write(&neither, "{}").unwrap();
    let output = support::kiln(&[
        "scan",
        "--sbom",
        neither.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("neither an SPDX"),
        "{}",
        stderr(&output)
    );
}
