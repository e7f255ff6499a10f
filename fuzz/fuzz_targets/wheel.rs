//! Fuzzes the wheel installer end to end on a wheel assembled from the input: `WHEEL`,
//! `METADATA`, `entry_points.txt`, `RECORD` (optionally completed with the true hashes so the
//! fuzzer gets past verification) and arbitrary member names and contents. Also fuzzes the
//! core-metadata parser and the entry-point and launcher helpers directly.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine;
use kiln::layer::LayerPath;
use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target::{Libc, PythonTarget, PythonVersion};
use kiln::python::wheel::{InstallOptions, Owner, Requested, Scheme, install_wheel};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const DIST_INFO: &str = "fuzzpkg-1.0.dist-info";
const WHEEL_NAME: &str = "fuzzpkg-1.0-py3-none-any.whl";
const VALID_WHEEL: &str =
    "Wheel-Version: 1.0\nGenerator: fuzz\nRoot-Is-Purelib: true\nTag: py3-none-any\n";

#[derive(Debug, Arbitrary)]
struct WheelInput {
    /// `None`: a valid `WHEEL` file.
    wheel_file: Option<String>,
    metadata: String,
    entry_points: Option<String>,
    /// Rows for every member with their true hashes come first when set.
    complete_record: bool,
    record_extra: String,
    members: Vec<(String, Vec<u8>)>,
}

struct Fixture {
    dir: tempfile::TempDir,
    tags: Tags,
    scheme: Scheme,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let version = PythonVersion {
            major: 3,
            minor: 11,
            patch: Some(16),
        };
        let target = PythonTarget {
            version,
            interpreter: "/usr/local/bin/python3.11".to_owned(),
            libc: Libc::Musl { major: 1, minor: 2 },
            arch: "x86_64".to_owned(),
        };
        let home = LayerPath::new("home/app").expect("a valid home");
        Fixture {
            dir: tempfile::tempdir().expect("a scratch directory for the fuzz target"),
            tags: Tags::for_target(&target, LinuxTag::Exclude),
            scheme: Scheme::user(&home, version).expect("a valid user scheme"),
        }
    })
}

fn record_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

fuzz_target!(|input: WheelInput| {
    let _ = kiln::python::metadata::CoreMetadata::parse("METADATA", input.metadata.as_bytes());
    if let Some(entry_points) = &input.entry_points {
        for (_, value) in kiln::python::wheel::scripts_from_entry_points(entry_points) {
            let _ = kiln::python::wheel::launcher_script("/usr/local/bin/python3.11", &value);
        }
    }

    let mut files: Vec<(String, Vec<u8>)> = input.members.clone();
    let wheel_file = input.wheel_file.as_deref().unwrap_or(VALID_WHEEL);
    files.push((format!("{DIST_INFO}/WHEEL"), wheel_file.as_bytes().to_vec()));
    files.push((
        format!("{DIST_INFO}/METADATA"),
        input.metadata.clone().into_bytes(),
    ));
    if let Some(entry_points) = &input.entry_points {
        files.push((
            format!("{DIST_INFO}/entry_points.txt"),
            entry_points.clone().into_bytes(),
        ));
    }
    let mut record = String::new();
    if input.complete_record {
        for (name, bytes) in &files {
            record.push_str(&format!("{name},{},{}\n", record_hash(bytes), bytes.len()));
        }
        record.push_str(&format!("{DIST_INFO}/RECORD,,\n"));
    }
    record.push_str(&input.record_extra);
    files.push((format!("{DIST_INFO}/RECORD"), record.into_bytes()));

    let fixture = fixture();
    let wheel_path = fixture.dir.path().join(WHEEL_NAME);
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, content) in &files {
            if zip.start_file(name.as_str(), options).is_err() {
                return;
            }
            if zip.write_all(content).is_err() {
                return;
            }
        }
        if zip.finish().is_err() {
            return;
        }
    }
    std::fs::write(&wheel_path, &bytes).expect("writing the wheel to the scratch directory");
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let options = InstallOptions {
        scheme: &fixture.scheme,
        interpreter: "/usr/local/bin/python3.11",
        tags: &fixture.tags,
        owner: Owner {
            uid: 1000,
            gid: 1000,
        },
        mtime: 0,
        scratch: fixture.dir.path(),
        requested: Requested::Yes,
    };
    if let Ok(installed) = install_wheel(&wheel_path, &sha256, &options) {
        // Every path the install writes stays below the scheme's root.
        let root = fixture.scheme.root.as_str();
        for (path, _) in installed.diff.iter() {
            let path = path.as_str();
            assert!(
                path == root || path.starts_with(&format!("{root}/")),
                "wheel member installed outside the scheme root: {path:?}"
            );
        }
    }
});
