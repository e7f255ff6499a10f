//! The Python a stage will run: interpreter version and path, libc, architecture.
//!
//! [`detect`] reads a stage's filesystem (`&dyn FsView`) and its image [`Platform`], never the
//! host: a build on a glibc x86_64 machine for `linux/arm64` Alpine gets a musl aarch64 target.
//!
//! * Python: the first `pythonX.Y` regular file (or symlink) in `/usr/local/bin`, then
//!   `/usr/bin`; its path becomes the launcher shebang (`#!/usr/local/bin/python3.11`, what pip
//!   writes from `sys.executable` in the official images). The patch version comes from
//!   `include/pythonX.Y/patchlevel.h` when the headers are there; otherwise it is unknown and
//!   markers see `X.Y` (equal to `X.Y.0` under PEP 440).
//! * musl: the loader `/lib/ld-musl-<arch>.so.1` (its name must agree with the platform); the
//!   version from Alpine's `/lib/apk/db/installed` (`P:musl` / `V:1.2.4-r2`), else from the
//!   loader binary, which holds the version as a NUL-terminated `1.x.y` string.
//! * glibc: `libc.so.6` in `/lib*`, `/usr/lib*` or a multiarch dir; the version from the
//!   `release version X.Y` banner inside it, or a `libc-X.Y.so` file name.
//!
//! The result feeds [`crate::python::tags::Tags`] and the marker environment for
//! requirements ([`PythonTarget::marker_environment`]).

use std::fmt;

use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

use crate::image::platform::Platform;
use crate::layer::LayerPath;
use crate::rootfs::{FsView, NodeKind, ViewError};

/// A `major.minor[.patch]` CPython version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PythonVersion {
    /// Major version (3).
    pub major: u8,
    /// Minor version (11).
    pub minor: u8,
    /// Patch level when known (16 for 3.11.16).
    pub patch: Option<u16>,
}

impl fmt::Display for PythonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(patch) => write!(f, "{}.{}.{patch}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

/// The C library of the target, with the version that bounds its wheel tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    /// musl `major.minor` (musllinux tags, PEP 656).
    Musl {
        /// Major version (1).
        major: u16,
        /// Minor version (2).
        minor: u16,
    },
    /// glibc `major.minor` (manylinux tags, PEP 600).
    Glibc {
        /// Major version (2).
        major: u16,
        /// Minor version (36).
        minor: u16,
    },
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Libc::Musl { major, minor } => write!(f, "musl {major}.{minor}"),
            Libc::Glibc { major, minor } => write!(f, "glibc {major}.{minor}"),
        }
    }
}

/// Everything the installer needs to know about the target interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonTarget {
    /// The interpreter version.
    pub version: PythonVersion,
    /// Absolute path of the interpreter inside the image, for launcher shebangs.
    pub interpreter: String,
    /// The C library.
    pub libc: Libc,
    /// The `sysconfig` machine name: `x86_64`, `aarch64`, `armv7l`, `i686`, `ppc64le`, `s390x`.
    pub arch: String,
}

/// Why the target could not be detected.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No `pythonX.Y` interpreter in the usual places.
    #[error(
        "no Python interpreter found in the stage (looked for /usr/local/bin/python3.N and \
         /usr/bin/python3.N); use a Python base image such as python:3.11-alpine, or install \
         Python in an earlier step"
    )]
    NoPython,
    /// Neither a musl loader nor a glibc was found.
    #[error(
        "no C library found in the stage (looked for /lib/ld-musl-<arch>.so.1 and libc.so.6); \
         kiln cannot tell which wheels (musllinux or manylinux) the image can load"
    )]
    NoLibc,
    /// The libc was found but its version could not be read.
    #[error("found {what} at `{path}` but could not read its version")]
    LibcVersion {
        /// `musl` or `glibc`.
        what: &'static str,
        /// Where the library is.
        path: String,
    },
    /// The musl loader is for another architecture than the image platform.
    #[error(
        "the image platform is {platform} ({arch}) but the musl loader `{path}` is for {found}; \
         pass the matching --platform"
    )]
    ArchMismatch {
        /// The platform as given.
        platform: String,
        /// Its machine name.
        arch: String,
        /// The loader path.
        path: String,
        /// The loader's arch.
        found: String,
    },
    /// The platform is not a Linux platform kiln knows wheels for.
    #[error("platform `{0}` has no Python wheel tags kiln knows (linux/amd64, linux/arm64, ...)")]
    Platform(String),
    /// Reading the stage failed.
    #[error("failed to read the stage filesystem while detecting Python")]
    Read(#[source] ViewError),
}

/// Maps an OCI platform to the machine name wheels use (`amd64` -> `x86_64`).
pub fn wheel_arch(platform: &Platform) -> Result<String, TargetError> {
    let normalized = platform.normalized();
    if normalized.os != "linux" {
        return Err(TargetError::Platform(describe(platform)));
    }
    let arch = match (
        normalized.architecture.as_str(),
        normalized.variant.as_deref(),
    ) {
        ("amd64", _) => "x86_64",
        ("arm64", _) => "aarch64",
        ("386", _) => "i686",
        ("arm", Some("v7")) => "armv7l",
        ("arm", Some("v6")) => "armv6l",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        _ => return Err(TargetError::Platform(describe(platform))),
    };
    Ok(arch.to_owned())
}

fn describe(platform: &Platform) -> String {
    match &platform.variant {
        Some(v) => format!("{}/{}/{v}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}

fn path(raw: &str) -> LayerPath {
    // Only called with the constant paths of this module, which are valid.
    LayerPath::new(raw).unwrap_or_else(|_| LayerPath::root())
}

/// Detects the target Python of a stage from its filesystem and image platform.
pub fn detect(fs: &dyn FsView, platform: &Platform) -> Result<PythonTarget, TargetError> {
    let arch = wheel_arch(platform)?;
    let (interpreter, major, minor, prefix) = find_python(fs)?;
    let patch = read_patch(fs, prefix, major, minor);
    let libc = detect_libc(fs, platform, &arch)?;
    Ok(PythonTarget {
        version: PythonVersion {
            major,
            minor,
            patch,
        },
        interpreter,
        libc,
        arch,
    })
}

fn find_python(fs: &dyn FsView) -> Result<(String, u8, u8, &'static str), TargetError> {
    for (dir, prefix) in [("usr/local/bin", "usr/local"), ("usr/bin", "usr")] {
        let dir_path = path(dir);
        let names = match fs.stat(&dir_path, true).map_err(TargetError::Read)? {
            Some((resolved, node)) if node.kind == NodeKind::Dir => {
                fs.read_dir(&resolved).map_err(TargetError::Read)?
            }
            _ => continue,
        };
        // Highest version first when several are installed (python3.9 and python3.11).
        let mut found: Vec<(u8, u8, String)> = names
            .iter()
            .filter_map(|name| parse_python_name(name).map(|(a, b)| (a, b, name.clone())))
            .collect();
        found.sort();
        while let Some((major, minor, name)) = found.pop() {
            let candidate = dir_path.join(&name).map_err(|_| TargetError::NoPython)?;
            if let Some((_, node)) = fs.stat(&candidate, true).map_err(TargetError::Read)? {
                if matches!(node.kind, NodeKind::File { .. }) {
                    return Ok((candidate.absolute(), major, minor, prefix));
                }
            }
        }
    }
    Err(TargetError::NoPython)
}

/// `python3.11` -> (3, 11); anything else (`python3`, `python3.11-config`) -> None.
fn parse_python_name(name: &str) -> Option<(u8, u8)> {
    let rest = name.strip_prefix("python")?;
    let (major, minor) = rest.split_once('.')?;
    if major.is_empty()
        || minor.is_empty()
        || !(major.chars().chain(minor.chars())).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn read_patch(fs: &dyn FsView, prefix: &str, major: u8, minor: u8) -> Option<u16> {
    let header = path(&format!(
        "{prefix}/include/python{major}.{minor}/patchlevel.h"
    ));
    let text = String::from_utf8(fs.read_file(&header).ok()?).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("#define") && l.contains("PY_VERSION "))?;
    let quoted = line.split('"').nth(1)?;
    let want = format!("{major}.{minor}.");
    let patch: String = quoted
        .strip_prefix(&want)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    patch.parse().ok()
}

fn detect_libc(fs: &dyn FsView, platform: &Platform, arch: &str) -> Result<Libc, TargetError> {
    let lib = path("lib");
    if let Some((resolved, node)) = fs.stat(&lib, true).map_err(TargetError::Read)? {
        if node.kind == NodeKind::Dir {
            for name in fs.read_dir(&resolved).map_err(TargetError::Read)? {
                let Some(loader_arch) = name
                    .strip_prefix("ld-musl-")
                    .and_then(|r| r.strip_suffix(".so.1"))
                else {
                    continue;
                };
                let loader = format!("/lib/{name}");
                if !musl_arch_matches(loader_arch, arch) {
                    return Err(TargetError::ArchMismatch {
                        platform: describe(platform),
                        arch: arch.to_owned(),
                        path: loader,
                        found: loader_arch.to_owned(),
                    });
                }
                let (major, minor) = musl_version(fs, &loader).ok_or(TargetError::LibcVersion {
                    what: "musl",
                    path: loader.clone(),
                })?;
                return Ok(Libc::Musl { major, minor });
            }
        }
    }
    let triplet = format!("{arch}-linux-gnu");
    let dirs = [
        "lib".to_owned(),
        "lib64".to_owned(),
        format!("lib/{triplet}"),
        "usr/lib".to_owned(),
        "usr/lib64".to_owned(),
        format!("usr/lib/{triplet}"),
    ];
    for dir in &dirs {
        let libc = path(&format!("{dir}/libc.so.6"));
        if let Some((resolved, node)) = fs.stat(&libc, true).map_err(TargetError::Read)? {
            if !matches!(node.kind, NodeKind::File { .. }) {
                continue;
            }
            if let Some(version) = glibc_version_from_name(resolved.file_name()) {
                return Ok(version);
            }
            let bytes = fs.read_file(&resolved).map_err(TargetError::Read)?;
            return glibc_version_from_binary(&bytes).ok_or(TargetError::LibcVersion {
                what: "glibc",
                path: libc.absolute(),
            });
        }
    }
    Err(TargetError::NoLibc)
}

/// musl's loader names use the musl arch spelling (`armhf` for armv7 hard-float).
fn musl_arch_matches(loader_arch: &str, arch: &str) -> bool {
    loader_arch == arch
        || matches!(
            (loader_arch, arch),
            ("armhf", "armv7l" | "armv6l")
                | ("arm", "armv7l" | "armv6l")
                | ("i386", "i686")
                | ("powerpc64le", "ppc64le")
        )
}

fn musl_version(fs: &dyn FsView, loader: &str) -> Option<(u16, u16)> {
    // Alpine records the musl package version in its installed database.
    if let Ok(db) = fs.read_file(&path("lib/apk/db/installed")) {
        let text = String::from_utf8_lossy(&db);
        for stanza in text.split("\n\n") {
            if stanza.lines().any(|l| l == "P:musl") {
                if let Some(v) = stanza.lines().find_map(|l| l.strip_prefix("V:")) {
                    if let Some(version) = major_minor(v) {
                        return Some(version);
                    }
                }
            }
        }
    }
    let bytes = fs.read_file(&path(loader)).ok()?;
    musl_version_from_binary(&bytes)
}

/// Finds musl's `__libc_version` string: a NUL-delimited `1.x.y` in the loader.
pub fn musl_version_from_binary(bytes: &[u8]) -> Option<(u16, u16)> {
    bytes.split(|b| *b == 0).find_map(|chunk| {
        let text = std::str::from_utf8(chunk).ok()?;
        let parts: Vec<&str> = text.split('.').collect();
        let numeric = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        if numeric && parts[0] == "1" {
            major_minor(text)
        } else {
            None
        }
    })
}

/// Finds glibc's banner `... release version 2.36.` in `libc.so.6`.
pub fn glibc_version_from_binary(bytes: &[u8]) -> Option<Libc> {
    let needle = b"release version ";
    let at = bytes.windows(needle.len()).position(|w| w == needle)?;
    let rest = &bytes[at + needle.len()..];
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(rest.len());
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let (major, minor) = major_minor(text.trim_end_matches('.'))?;
    Some(Libc::Glibc { major, minor })
}

fn glibc_version_from_name(name: &str) -> Option<Libc> {
    let version = name.strip_prefix("libc-")?.strip_suffix(".so")?;
    let (major, minor) = major_minor(version)?;
    Some(Libc::Glibc { major, minor })
}

/// `1.2.4-r2` -> (1, 2).
fn major_minor(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl PythonTarget {
    /// CPython 3.11.16 on musl 1.2 for `arch`, as python:3.11-alpine has it: the target the
    /// unit tests share.
    #[cfg(test)]
    pub(crate) fn cpython_311_musl(arch: &str) -> PythonTarget {
        PythonTarget {
            version: PythonVersion {
                major: 3,
                minor: 11,
                patch: Some(16),
            },
            interpreter: "/usr/local/bin/python3.11".to_owned(),
            libc: Libc::Musl { major: 1, minor: 2 },
            arch: arch.to_owned(),
        }
    }

    /// The PEP 508 marker environment of the target (not the host): `platform_machine` is the
    /// target arch, `python_full_version` the target version (`X.Y` when the patch is unknown).
    pub fn marker_environment(&self) -> MarkerEnvironment {
        let python_version = format!("{}.{}", self.version.major, self.version.minor);
        let full = self.version.to_string();
        let build = |full: &str, short: &str| {
            MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
                implementation_name: "cpython",
                implementation_version: full,
                os_name: "posix",
                platform_machine: &self.arch,
                platform_python_implementation: "CPython",
                platform_release: "",
                platform_system: "Linux",
                platform_version: "",
                python_full_version: full,
                python_version: short,
                sys_platform: "linux",
            })
        };
        // Versions made of integers always parse; the fallback only keeps this infallible.
        build(&full, &python_version)
            .or_else(|_| build("3.0", "3.0"))
            .unwrap_or_else(|_| unreachable!("constant versions parse"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Diff, Entry, EntryKind, FileContent, Metadata};
    use crate::rootfs::MemFs;

    fn file(diff: &mut Diff, at: &str, bytes: &[u8]) {
        diff.insert(
            LayerPath::new(at).unwrap(),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(bytes.into())),
                meta: Metadata::root_owned(0o755),
            },
        );
    }

    fn symlink(diff: &mut Diff, at: &str, target: &str) {
        diff.insert(
            LayerPath::new(at).unwrap(),
            Entry {
                kind: EntryKind::Symlink(target.to_owned()),
                meta: Metadata::root_owned(0o777),
            },
        );
    }

    fn alpine(arch: &str) -> MemFs {
        let mut diff = Diff::new();
        file(
            &mut diff,
            &format!("lib/ld-musl-{arch}.so.1"),
            b"\x7fELF\0musl\x001.2.5\0x",
        );
        symlink(
            &mut diff,
            &format!("lib/libc.musl-{arch}.so.1"),
            &format!("ld-musl-{arch}.so.1"),
        );
        file(&mut diff, "usr/local/bin/python3.11", b"\x7fELF");
        symlink(&mut diff, "usr/local/bin/python3", "python3.11");
        symlink(&mut diff, "usr/local/bin/python", "python3");
        file(
            &mut diff,
            "usr/local/include/python3.11/patchlevel.h",
            b"#define PY_MINOR_VERSION 11\n#define PY_VERSION      \t\"3.11.16\"\n",
        );
        MemFs::from_diff(&diff)
    }

    #[test]
    fn detects_alpine_python_and_musl() {
        let fs = alpine("x86_64");
        let target = detect(&fs, &Platform::new("linux", "amd64", None)).unwrap();
        assert_eq!(target.interpreter, "/usr/local/bin/python3.11");
        assert_eq!(target.version.to_string(), "3.11.16");
        assert_eq!(target.libc, Libc::Musl { major: 1, minor: 2 });
        assert_eq!(target.arch, "x86_64");
    }

    #[test]
    fn apk_db_wins_over_binary_scan() {
        let mut diff = Diff::new();
        file(
            &mut diff,
            "lib/apk/db/installed",
            b"P:busybox\nV:1.36.1-r0\n\nP:musl\nV:1.3.0-r1\nA:x86_64\n\n",
        );
        let mut fs = alpine("x86_64");
        fs.apply(&diff);
        let target = detect(&fs, &Platform::new("linux", "amd64", None)).unwrap();
        assert_eq!(target.libc, Libc::Musl { major: 1, minor: 3 });
    }

    #[test]
    fn loader_for_another_arch_is_refused() {
        let fs = alpine("x86_64");
        let err = detect(&fs, &Platform::new("linux", "arm64", None)).unwrap_err();
        assert!(err.to_string().contains("ld-musl-x86_64.so.1"), "{err}");
    }

    #[test]
    fn detects_debian_glibc() {
        let mut diff = Diff::new();
        file(&mut diff, "usr/bin/python3.11", b"\x7fELF");
        file(&mut diff, "usr/bin/python3.9", b"\x7fELF");
        file(
            &mut diff,
            "usr/lib/aarch64-linux-gnu/libc.so.6",
            b"GNU C Library (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36.\n",
        );
        symlink(&mut diff, "lib", "usr/lib");
        let fs = MemFs::from_diff(&diff);
        let target = detect(&fs, &Platform::new("linux", "arm64", None)).unwrap();
        assert_eq!(target.interpreter, "/usr/bin/python3.11");
        assert_eq!(target.version.patch, None);
        assert_eq!(
            target.libc,
            Libc::Glibc {
                major: 2,
                minor: 36
            }
        );
        assert_eq!(target.arch, "aarch64");
    }

    #[test]
    fn no_python_is_a_clear_error() {
        let mut diff = Diff::new();
        file(&mut diff, "lib/ld-musl-x86_64.so.1", b"1.2.4\0");
        file(&mut diff, "usr/bin/python3", b"not versioned");
        let fs = MemFs::from_diff(&diff);
        let err = detect(&fs, &Platform::new("linux", "amd64", None)).unwrap_err();
        assert!(matches!(err, TargetError::NoPython), "{err}");
        assert!(err.to_string().contains("python:3.11-alpine"));
    }

    #[test]
    fn markers_use_the_target() {
        let fs = alpine("aarch64");
        let target = detect(&fs, &Platform::new("linux", "arm64", None)).unwrap();
        let env = target.marker_environment();
        let req: pep508_rs::Requirement =
            "blinker; platform_machine == 'aarch64' and python_full_version >= '3.11.4'"
                .parse()
                .unwrap();
        assert!(req.marker.evaluate(&env, &[]));
    }
}
