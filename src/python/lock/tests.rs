//! Tests of `python::lock`.

use super::*;

#[test]
fn platforms() {
    let t = LockTarget::parse("3.11", "musllinux_1_2_x86_64").unwrap();
    assert_eq!(t.python.libc, Libc::Musl { major: 1, minor: 2 });
    assert_eq!(t.python.arch, "x86_64");
    let t = LockTarget::parse("3.12.1", "manylinux2014_aarch64").unwrap();
    assert_eq!(
        t.python.libc,
        Libc::Glibc {
            major: 2,
            minor: 17
        }
    );
    assert_eq!(t.python.version.patch, Some(1));
    assert!(LockTarget::parse("3.11", "win_amd64").is_err());
    assert!(LockTarget::parse("2", "musllinux_1_2_x86_64").is_err());
}

#[test]
fn written_requirements_read_back_per_platform() {
    let targets = vec![
        LockTarget::parse("3.11", "musllinux_1_2_x86_64").unwrap(),
        LockTarget::parse("3.11", "musllinux_1_2_aarch64").unwrap(),
    ];
    let file = |name: &str, sha: char| LockedFile {
        filename: name.to_owned(),
        uri: format!("http://index.invalid/{name}"),
        size: 1,
        sha256: sha.to_string().repeat(64),
    };
    let lock = Lock {
        targets: targets.clone(),
        packages: vec![
            LockedPackage {
                name: "arm-only".into(),
                version: "1.0".into(),
                marker: Some("platform_machine == 'aarch64'".into()),
                files: vec![file("arm_only-1.0-py3-none-any.whl", 'a')],
            },
            LockedPackage {
                name: "markupsafe".into(),
                version: "3.0.4".into(),
                marker: None,
                files: vec![
                    file(
                        "markupsafe-3.0.4-cp311-cp311-musllinux_1_2_aarch64.whl",
                        'b',
                    ),
                    file("markupsafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl", 'c'),
                ],
            },
        ],
    };
    let text = lock.requirements_txt("kiln lock pip ...");
    for (target, want) in targets.iter().zip([1, 2]) {
        let parsed = requirements::parse(
            "requirements.txt",
            &mut |_| Ok(text.clone()),
            &target.python.marker_environment(),
        )
        .unwrap();
        assert_eq!(parsed.requirements.len(), want, "{text}");
        assert!(parsed.hash_checking);
        assert_eq!(parsed.requirements.last().unwrap().hashes.len(), 2);
    }
}
