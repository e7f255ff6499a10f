//! `kiln debug dockerfile FILE` prints BuildKit's parse dump for every upstream positive case,
//! and fails naming the line for every negative case.

use crate::support;

use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/peer-tests/buildkit-dockerfile-parser"
    ));
    assert!(
        dir.is_dir(),
        "the BuildKit parser fixtures are missing at {}; they come with the shared folder",
        dir.display()
    );
    dir
}

#[test]
fn debug_dockerfile_matches_every_buildkit_dump() {
    let mut checked = 0;
    let mut cases: Vec<_> = std::fs::read_dir(fixtures().join("testfiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    for case in cases {
        let expected = std::fs::read(case.join("result")).unwrap();
        let output = support::kiln(&[
            "debug",
            "dockerfile",
            case.join("Dockerfile").to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}: {}",
            case.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&expected),
            "dump differs for {}",
            case.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 25,
        "expected every positive case, checked {checked}"
    );
}

#[test]
fn debug_dockerfile_rejects_every_negative_case_with_a_line() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures().join("testfiles-negative")).unwrap() {
        let case = entry.unwrap().path();
        let output = support::kiln(&[
            "debug",
            "dockerfile",
            case.join("Dockerfile").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: {stderr}",
            case.display()
        );
        assert!(
            stderr.contains("Dockerfile:"),
            "{}: the error names the line: {stderr}",
            case.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}
