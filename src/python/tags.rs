//! Wheel platform tags: the target's supported tags in priority order, wheel filenames, and
//! which wheel fits best.
//!
//! [`Tags::for_target`] reproduces `packaging.tags.sys_tags()` (what pip uses) as the target's
//! own pip would compute it, in the same order: `cpXY-cpXY`, `cpXY-abi3`, `cpXY-none`, `cp3N-abi3`
//! down to `cp32`, `pyXY`/`py3`/`py3N` with each platform, then `cpXY-none-any` and the
//! `py*-none-any` tags. Platforms are `musllinux_1_Y` down to `musllinux_1_0` on musl, and
//! `manylinux_2_Y` down to `2_17` (down to `2_5` on x86_64/i686) with the legacy aliases
//! (`manylinux2014`, `manylinux2010`, `manylinux1`) on glibc. `linux_<arch>` is left out unless
//! asked for ([`LinuxTag::Include`]): it names "built on this machine", which a cross build
//! cannot promise, and the public index never accepts such uploads.
//!
//! [`WheelFilename`] parses `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl` with
//! compressed tag sets (`py2.py3`, `manylinux2014_x86_64.manylinux_2_17_x86_64`);
//! [`Tags::compatibility`] returns [`Compatibility::Compatible`] with the best rank over the
//! cartesian product, or [`Compatibility::Incompatible`] with the reason and the tags at fault.

use std::collections::HashMap;
use std::fmt;

use crate::python::target::{Libc, PythonTarget};

/// One `python-abi-platform` tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Interpreter tag (`cp311`, `py3`).
    pub python: String,
    /// ABI tag (`cp311`, `abi3`, `none`).
    pub abi: String,
    /// Platform tag (`musllinux_1_2_x86_64`, `any`).
    pub platform: String,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.python, self.abi, self.platform)
    }
}

/// Whether `linux_<arch>` (a wheel built on the machine itself) counts as compatible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LinuxTag {
    /// Leave it out (the default for kiln: the target is not the build machine).
    #[default]
    Exclude,
    /// Include it last among the platforms, as pip running inside the image would.
    Include,
}

/// The target's supported tags, best first.
#[derive(Clone, Debug)]
pub struct Tags {
    list: Vec<Tag>,
    rank: HashMap<(String, String, String), usize>,
    pythons: Vec<String>,
    abis: Vec<String>,
    platforms: Vec<String>,
}

/// How well a wheel fits, lower rank is better (0 = the target's most specific tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compatibility {
    /// The wheel installs; `rank` is the index of its best tag in [`Tags::iter`].
    Compatible {
        /// Index of the best matching tag (0 is best).
        rank: usize,
        /// The best matching tag.
        tag: Tag,
    },
    /// The wheel does not install on the target.
    Incompatible(IncompatibleReason),
}

/// Why a wheel does not fit the target. Each names the wheel's tags at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IncompatibleReason {
    /// No interpreter tag the target accepts (`cp312` for a 3.11 target).
    #[error("python tag `{wheel}` does not match the target (accepts {accepted})")]
    Python {
        /// The wheel's python tags, as in the filename.
        wheel: String,
        /// A short list of what the target accepts.
        accepted: String,
    },
    /// The interpreter fits but no ABI tag does.
    #[error("ABI tag `{wheel}` does not match the target (accepts {accepted})")]
    Abi {
        /// The wheel's ABI tags.
        wheel: String,
        /// A short list of what the target accepts.
        accepted: String,
    },
    /// The interpreter and ABI fit but no platform tag does.
    #[error("platform tag `{wheel}` does not match the target (accepts {accepted})")]
    Platform {
        /// The wheel's platform tags.
        wheel: String,
        /// A short list of what the target accepts.
        accepted: String,
    },
    /// Each field fits on its own but no combination is supported (`cp311-abi3-any`).
    #[error("no tag of `{wheel}` is supported by the target")]
    Combination {
        /// The wheel's tag triple.
        wheel: String,
    },
}

impl Tags {
    /// The tags for a detected target.
    pub fn for_target(target: &PythonTarget, linux: LinuxTag) -> Tags {
        Tags::new(
            (target.version.major, target.version.minor),
            target.libc,
            &target.arch,
            linux,
        )
    }

    /// The tags for CPython `python` (major, minor) on `libc` and `arch` (`x86_64`, `aarch64`).
    pub fn new(python: (u8, u8), libc: Libc, arch: &str, linux: LinuxTag) -> Tags {
        let (major, minor) = python;
        let platforms = platform_tags(libc, arch, linux);
        let cp = format!("cp{major}{minor}");
        let mut list = Vec::new();
        let mut push = |python: &str, abi: &str, platform: &str| {
            list.push(Tag {
                python: python.to_owned(),
                abi: abi.to_owned(),
                platform: platform.to_owned(),
            })
        };
        // packaging.tags.cpython_tags
        for abi in [cp.as_str(), "abi3", "none"] {
            for platform in &platforms {
                push(&cp, abi, platform);
            }
        }
        if major == 3 {
            for older in (2..minor).rev() {
                let older_cp = format!("cp3{older}");
                for platform in &platforms {
                    push(&older_cp, "abi3", platform);
                }
            }
        }
        // packaging.tags.compatible_tags
        let mut py_versions = vec![format!("py{major}{minor}"), format!("py{major}")];
        for older in (0..minor).rev() {
            py_versions.push(format!("py{major}{older}"));
        }
        for version in &py_versions {
            for platform in &platforms {
                push(version, "none", platform);
            }
        }
        push(&cp, "none", "any");
        for version in &py_versions {
            push(version, "none", "any");
        }
        let mut rank = HashMap::new();
        for (index, tag) in list.iter().enumerate() {
            rank.entry((tag.python.clone(), tag.abi.clone(), tag.platform.clone()))
                .or_insert(index);
        }
        let mut pythons: Vec<String> = Vec::new();
        let mut abis: Vec<String> = Vec::new();
        for tag in &list {
            if !pythons.contains(&tag.python) {
                pythons.push(tag.python.clone());
            }
            if !abis.contains(&tag.abi) {
                abis.push(tag.abi.clone());
            }
        }
        let mut all_platforms = platforms;
        all_platforms.push("any".to_owned());
        Tags {
            list,
            rank,
            pythons,
            abis,
            platforms: all_platforms,
        }
    }

    /// The tags, best first.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.list.iter()
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are no tags (never, for a real target).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The rank of one tag (0 = best), if the target supports it.
    pub fn rank(&self, python: &str, abi: &str, platform: &str) -> Option<usize> {
        self.rank
            .get(&(python.to_owned(), abi.to_owned(), platform.to_owned()))
            .copied()
    }

    /// Whether a wheel installs on the target, and how well.
    pub fn compatibility(&self, wheel: &WheelFilename) -> Compatibility {
        let mut best: Option<usize> = None;
        for python in &wheel.python {
            for abi in &wheel.abi {
                for platform in &wheel.platform {
                    if let Some(rank) = self.rank(python, abi, platform) {
                        best = Some(best.map_or(rank, |b| b.min(rank)));
                    }
                }
            }
        }
        if let Some(rank) = best {
            return Compatibility::Compatible {
                rank,
                tag: self.list[rank].clone(),
            };
        }
        let short = |items: &[String]| {
            let mut shown: Vec<&str> = items.iter().take(4).map(String::as_str).collect();
            if items.len() > 4 {
                shown.push("...");
            }
            shown.join(", ")
        };
        let reason = if !wheel.python.iter().any(|p| self.pythons.contains(p)) {
            IncompatibleReason::Python {
                wheel: wheel.python.join("."),
                accepted: short(&self.pythons),
            }
        } else if !wheel.abi.iter().any(|a| self.abis.contains(a)) {
            IncompatibleReason::Abi {
                wheel: wheel.abi.join("."),
                accepted: short(&self.abis),
            }
        } else if !wheel.platform.iter().any(|p| self.platforms.contains(p)) {
            IncompatibleReason::Platform {
                wheel: wheel.platform.join("."),
                accepted: short(&self.platforms),
            }
        } else {
            IncompatibleReason::Combination {
                wheel: wheel.tag_string(),
            }
        };
        Compatibility::Incompatible(reason)
    }
}

/// The platform part of the tags, best first (`packaging.tags.platform_tags` for Linux).
fn platform_tags(libc: Libc, arch: &str, linux: LinuxTag) -> Vec<String> {
    let mut out = Vec::new();
    match libc {
        Libc::Musl { major, minor } => {
            for m in (0..=minor).rev() {
                out.push(format!("musllinux_{major}_{m}_{arch}"));
            }
        }
        Libc::Glibc { major, minor } => {
            // packaging._manylinux.platform_tags: 2.17 is the oldest everywhere, 2.5 on x86.
            let oldest = if matches!(arch, "x86_64" | "i686") {
                5
            } else {
                17
            };
            let mut maxima = vec![(major, minor)];
            // Compatibility across glibc major versions: glibc 1.x ends at 1.x's last minor.
            for older_major in (2..major).rev() {
                maxima.push((older_major, 50));
            }
            for (max_major, max_minor) in maxima {
                let min_minor = if max_major == 2 { oldest } else { 0 };
                for m in (min_minor..=max_minor).rev() {
                    out.push(format!("manylinux_{max_major}_{m}_{arch}"));
                    let legacy = match (max_major, m) {
                        (2, 17) => Some("manylinux2014"),
                        (2, 12) => Some("manylinux2010"),
                        (2, 5) => Some("manylinux1"),
                        _ => None,
                    };
                    if let Some(legacy) = legacy {
                        let legacy_ok = match legacy {
                            "manylinux2014" => true,
                            _ => matches!(arch, "x86_64" | "i686"),
                        };
                        if legacy_ok {
                            out.push(format!("{legacy}_{arch}"));
                        }
                    }
                }
            }
        }
    }
    if linux == LinuxTag::Include {
        out.push(format!("linux_{arch}"));
    }
    out
}

/// A parsed wheel filename (PEP 427, binary distribution format spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelFilename {
    /// Distribution name as written (`MarkupSafe`, `markupsafe`).
    pub name: String,
    /// Version as written.
    pub version: String,
    /// Optional build tag: leading number and the rest (`1`, `1abc`).
    pub build: Option<BuildTag>,
    /// Python tags of the compressed set.
    pub python: Vec<String>,
    /// ABI tags of the compressed set.
    pub abi: Vec<String>,
    /// Platform tags of the compressed set.
    pub platform: Vec<String>,
}

/// A build tag: sorts by its leading number, then the rest as a string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildTag {
    /// The leading digits.
    pub number: u64,
    /// What follows them.
    pub rest: String,
}

/// Why a filename is not a wheel filename.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilenameError {
    /// A source distribution (needs a build backend).
    #[error(
        "`{0}` is a source distribution: sdists need a build backend; kiln installs wheels only \
         (use a version that publishes a wheel for the target, or build the wheel first)"
    )]
    Sdist(String),
    /// Not a `.whl` file at all.
    #[error("`{0}` is not a wheel file (expected a name ending in `.whl`)")]
    NotAWheel(String),
    /// A `.whl` name with the wrong number of parts or an empty part.
    #[error(
        "invalid wheel filename `{0}`: expected `{{name}}-{{version}}(-{{build}})?-{{python}}-{{abi}}-{{platform}}.whl`"
    )]
    Malformed(String),
    /// A build tag that does not start with a digit.
    #[error("invalid wheel filename `{0}`: the build tag must start with a digit")]
    BuildTag(String),
}

impl WheelFilename {
    /// Parses a wheel filename (just the file name, no directory).
    pub fn parse(filename: &str) -> Result<WheelFilename, FilenameError> {
        let lower = filename.to_ascii_lowercase();
        let Some(stem) = filename
            .strip_suffix(".whl")
            .filter(|_| !filename.contains('/'))
        else {
            if [".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar"]
                .iter()
                .any(|ext| lower.ends_with(ext))
            {
                return Err(FilenameError::Sdist(filename.to_owned()));
            }
            return Err(FilenameError::NotAWheel(filename.to_owned()));
        };
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(FilenameError::Malformed(filename.to_owned()));
        }
        let (name, version, build, python, abi, platform) = match parts.as_slice() {
            [n, v, p, a, pl] => (*n, *v, None, *p, *a, *pl),
            [n, v, b, p, a, pl] => (*n, *v, Some(*b), *p, *a, *pl),
            _ => return Err(FilenameError::Malformed(filename.to_owned())),
        };
        let build = match build {
            None => None,
            Some(raw) => {
                let digits: String = raw.chars().take_while(char::is_ascii_digit).collect();
                let number = digits
                    .parse()
                    .map_err(|_| FilenameError::BuildTag(filename.to_owned()))?;
                Some(BuildTag {
                    number,
                    rest: raw[digits.len()..].to_owned(),
                })
            }
        };
        let split = |s: &str| -> Vec<String> { s.split('.').map(str::to_owned).collect() };
        let python = split(python);
        let abi = split(abi);
        let platform = split(platform);
        if python
            .iter()
            .chain(&abi)
            .chain(&platform)
            .any(|t| t.is_empty())
        {
            return Err(FilenameError::Malformed(filename.to_owned()));
        }
        Ok(WheelFilename {
            name: name.to_owned(),
            version: version.to_owned(),
            build,
            python,
            abi,
            platform,
        })
    }

    /// The tag triple as in the filename (`cp311-cp311-musllinux_1_2_x86_64`).
    pub fn tag_string(&self) -> String {
        format!(
            "{}-{}-{}",
            self.python.join("."),
            self.abi.join("."),
            self.platform.join(".")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn musl() -> Tags {
        Tags::new(
            (3, 11),
            Libc::Musl { major: 1, minor: 2 },
            "x86_64",
            LinuxTag::Exclude,
        )
    }

    #[test]
    fn filenames_parse() {
        let w = WheelFilename::parse(
            "numpy-2.0.0-1abc-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.name, "numpy");
        assert_eq!(
            w.build,
            Some(BuildTag {
                number: 1,
                rest: "abc".into()
            })
        );
        assert_eq!(w.platform.len(), 2);
        let w = WheelFilename::parse("six-1.16.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(w.python, ["py2", "py3"]);
        for (bad, want) in [
            ("flask-3.1.3.tar.gz", "sdists need a build backend"),
            ("flask-3.1.3.zip", "sdists need a build backend"),
            ("flask-3.1.3.egg", "not a wheel"),
            ("flask-3.1.3-py3-none.whl", "invalid wheel filename"),
            ("flask-3.1.3-x1-py3-none-any.whl", "build tag"),
            ("flask--3.1.3-py3-none-any.whl", "invalid wheel filename"),
        ] {
            let err = WheelFilename::parse(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn compatibility_ranks_and_reasons() {
        let tags = musl();
        let table = [
            (
                "markupsafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl",
                Ok(0),
            ),
            (
                "markupsafe-2.1.5-cp311-cp311-musllinux_1_1_x86_64.whl",
                Ok(1),
            ),
            ("psutil-7.2.2-cp36-abi3-musllinux_1_2_x86_64.whl", Ok(21)),
            ("flask-3.1.3-py3-none-any.whl", Ok(tags.len() - 12)),
            ("six-1.16.0-py2.py3-none-any.whl", Ok(tags.len() - 12)),
            (
                "m-1-cp312-cp312-musllinux_1_2_x86_64.whl",
                Err("python tag `cp312`"),
            ),
            (
                "m-1-cp311-cp311-manylinux_2_17_x86_64.whl",
                Err("platform tag `manylinux_2_17_x86_64`"),
            ),
            (
                "m-1-cp311-cp311-musllinux_1_2_aarch64.whl",
                Err("platform tag `musllinux_1_2_aarch64`"),
            ),
            (
                "m-1-cp311-cp311-linux_x86_64.whl",
                Err("platform tag `linux_x86_64`"),
            ),
            (
                "m-1-cp311-cp311m-musllinux_1_2_x86_64.whl",
                Err("ABI tag `cp311m`"),
            ),
            ("m-1-py3-cp311-any.whl", Err("no tag of `py3-cp311-any`")),
        ];
        for (name, want) in table {
            let wheel = WheelFilename::parse(name).unwrap();
            match (tags.compatibility(&wheel), want) {
                (Compatibility::Compatible { rank, .. }, Ok(r)) => assert_eq!(rank, r, "{name}"),
                (Compatibility::Incompatible(reason), Err(text)) => {
                    assert!(reason.to_string().contains(text), "{name}: {reason}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn glibc_platforms_follow_packaging() {
        let plats = platform_tags(
            Libc::Glibc {
                major: 2,
                minor: 19,
            },
            "x86_64",
            LinuxTag::Exclude,
        );
        assert_eq!(
            &plats[..4],
            [
                "manylinux_2_19_x86_64",
                "manylinux_2_18_x86_64",
                "manylinux_2_17_x86_64",
                "manylinux2014_x86_64"
            ]
        );
        assert!(plats.contains(&"manylinux2010_x86_64".to_owned()));
        assert_eq!(plats.last().unwrap(), "manylinux1_x86_64");
        let plats = platform_tags(
            Libc::Glibc {
                major: 2,
                minor: 17,
            },
            "aarch64",
            LinuxTag::Include,
        );
        assert_eq!(
            plats,
            [
                "manylinux_2_17_aarch64",
                "manylinux2014_aarch64",
                "linux_aarch64"
            ]
        );
    }
}
