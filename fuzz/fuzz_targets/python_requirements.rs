//! Fuzzes pip requirements files (options, `-r`/`-c` includes, markers, hashes, line
//! continuations) and `pylock.toml` wheel selection for a CPython 3.11 musl target. The first
//! byte picks the format; for requirements, `-r x` includes read the same input again, so
//! include cycles and depth limits are exercised too.
#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;

use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target::{Libc, PythonTarget, PythonVersion};
use libfuzzer_sys::fuzz_target;

struct Target {
    target: PythonTarget,
    tags: Tags,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let target = PythonTarget {
            version: PythonVersion {
                major: 3,
                minor: 11,
                patch: Some(16),
            },
            interpreter: "/usr/local/bin/python3.11".to_owned(),
            libc: Libc::Musl { major: 1, minor: 2 },
            arch: "x86_64".to_owned(),
        };
        let tags = Tags::for_target(&target, LinuxTag::Exclude);
        Target { target, tags }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let target = target();
    let env = target.target.marker_environment();
    if selector & 1 == 0 {
        let mut read = |_: &str| -> std::io::Result<String> { Ok(text.to_owned()) };
        if let Ok(file) = kiln::python::requirements::parse("requirements.txt", &mut read, &env) {
            for line in &file.requirements {
                let _ = line.normalized_name();
                let _ = line.pinned_version();
            }
        }
    } else {
        let Ok(python) = pep440_rs::Version::from_str("3.11.16") else {
            return;
        };
        let _ = kiln::python::pylock::select("pylock.toml", text, &env, &python, &target.tags);
    }
});
