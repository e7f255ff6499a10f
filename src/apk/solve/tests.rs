//! Tests of the solver: plans for add, upgrade and del on small universes.

use super::*;
use crate::apk::checksum::Checksum;
use crate::apk::index::{Record, parse_records};

fn pkg(spec: &str, sum: u8) -> PackageInfo {
    // "name version [D:deps] [p:provides]" with `|` between fields.
    let mut parts = spec.split('|');
    let head: Vec<&str> = parts.next().unwrap_or_default().split(' ').collect();
    let mut text = format!(
        "C:{}\nP:{}\nV:{}\n",
        Checksum([sum; 20]).q1(),
        head[0],
        head[1]
    );
    for extra in parts {
        text.push_str(extra);
        text.push('\n');
    }
    let records: Vec<Record> = parse_records(&text, "t").expect("records");
    PackageInfo::from_record(&records[0], "t").expect("info")
}

fn world(text: &str) -> Vec<PackageConstraint> {
    text.split_whitespace()
        .map(|w| PackageConstraint::parse(w).expect("constraint"))
        .collect()
}

fn run(
    installed: &[PackageInfo],
    repo: &[PackageInfo],
    w: &str,
    mode: Mode,
) -> Result<String, ApkError> {
    let mut u = Universe::new();
    for p in installed {
        u.add_installed(p.clone());
    }
    for p in repo {
        u.add_available(p.clone(), 0);
    }
    Ok(solve(&u, &world(w), installed, mode)?.to_string())
}

#[test]
fn scenarios() {
    let a1 = pkg("a 1|D:b", 1);
    let b1 = pkg("b 1", 2);
    let a2 = pkg("a 2|D:b", 3);
    let b2 = pkg("b 2", 4);
    // apk-tools solver test basic3: upgrade moves a and b, dependencies first.
    assert_eq!(
        run(
            &[a1.clone(), b1.clone()],
            &[a2.clone(), b2.clone()],
            "a",
            Mode::Upgrade
        )
        .expect("ok"),
        "(1/2) Upgrading b (1 -> 2)\n(2/2) Upgrading a (1 -> 2)\n"
    );
    // add keeps installed versions.
    assert_eq!(
        run(
            &[a1.clone(), b1.clone()],
            &[a2.clone(), b2.clone()],
            "a",
            Mode::Add
        )
        .expect("ok"),
        "OK: nothing to do\n"
    );
    // A new dependency-free world entry under add.
    let c1 = pkg("c 1|D:so:libx.so.1", 5);
    let x1 = pkg("libx 1|p:so:libx.so.1=1", 6);
    assert_eq!(
        run(
            &[a1.clone(), b1.clone()],
            &[a2.clone(), b2.clone(), c1.clone(), x1.clone()],
            "a c",
            Mode::Add
        )
        .expect("ok"),
        "(1/2) Installing libx (1)\n(2/2) Installing c (1)\n"
    );
    // A package nothing requires any more is purged.
    assert_eq!(
        run(
            &[a1.clone(), b1.clone()],
            &[pkg("a 2", 7)],
            "a",
            Mode::Upgrade
        )
        .expect("ok"),
        "(1/2) Upgrading a (1 -> 2)\n(2/2) Purging b (1)\n"
    );
    // A learned constraint: world says b<2, so upgrade keeps b 1.
    assert_eq!(
        run(
            &[a1.clone(), b1.clone()],
            &[a2.clone(), b2.clone()],
            "a b<2",
            Mode::Upgrade
        )
        .expect("ok"),
        "(1/1) Upgrading a (1 -> 2)\n"
    );
    // Unsatisfiable: a dependency no version meets, naming both requirers.
    let d = pkg("d 1|D:b>5", 8);
    let err = run(&[a1.clone(), b1.clone()], &[a2, b2, d], "a d", Mode::Add)
        .expect_err("unsat")
        .to_string();
    assert!(err.contains("required by: d-1[b>5]"), "{err}");
    // A conflict with an installed package.
    let e = pkg("e 1|D:!b", 9);
    let err = run(&[a1, b1], &[e], "a e", Mode::Add)
        .expect_err("conflict")
        .to_string();
    assert!(err.contains("e-1[!b]"), "{err}");
    let err = run(&[], &[], "nothing", Mode::Add)
        .expect_err("missing")
        .to_string();
    assert!(
        err.contains("nothing (no such package)") && err.contains("world[nothing]"),
        "{err}"
    );
}
