//! Platforms (`os/architecture[/variant]`): parsing, display, and matching against index entries.
//!
//! Parsing applies containerd's architecture aliases (`aarch64` -> `arm64`, `x86_64` ->
//! `amd64`, `armhf` -> `arm/v7`, `armel` -> `arm/v6`, `i386` -> `386`, bare `arm` -> `arm/v7`)
//! but keeps an explicit variant as written: `linux/arm64/v8` stays `v8`, which is what Docker's
//! own arm64 configs carry. Matching ([`Platform::matches`]) compares containerd-normalized
//! forms, where arm64 `v8` equals no variant and amd64 `v1` equals no variant, so `linux/arm64`
//! and `linux/arm64/v8` select the same index entry.
//!
//! A platform is always given explicitly; [`Platform::host`] exists only so the CLI can default
//! `--platform` to the machine it runs on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OCI platform, as in an index entry's `platform` and the config's os/architecture/variant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, GOARCH spelling (`amd64`, `arm64`, `arm`, `386`, ...).
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`).
    pub os: String,
    /// Architecture variant (`v7`, `v8`), when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version` (Windows images only); kept so index entries survive a rewrite.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// `os.features` (Windows images only); kept so index entries survive a rewrite.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

/// Why a platform string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid platform `{input}`: expected `os/architecture[/variant]`, e.g. `linux/amd64` or `linux/arm/v7`"
)]
pub struct PlatformError {
    /// The string as given.
    pub input: String,
}

impl Platform {
    /// A platform from its parts, with architecture aliases applied as in [`FromStr`].
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, default_variant) = normalize_arch(&architecture.to_ascii_lowercase());
        let variant = variant
            .map(str::to_ascii_lowercase)
            .or(default_variant.map(str::to_owned));
        Platform {
            architecture,
            os: os.to_ascii_lowercase(),
            variant,
            os_version: None,
            os_features: None,
        }
    }

    /// The platform of the machine kiln runs on.
    ///
    /// Only the CLI uses this, to default `--platform`; the library never guesses a platform.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// containerd's normalized form, used for comparisons: arm64 `v8`/`8`/`v8.0` and amd64
    /// `v1` become no variant, bare `arm` becomes `v7`, numeric arm variants get their `v`.
    pub fn normalized(&self) -> Platform {
        let (architecture, default_variant) =
            normalize_arch(&self.architecture.to_ascii_lowercase());
        let variant = self
            .variant
            .as_deref()
            .map(str::to_ascii_lowercase)
            .or(default_variant.map(str::to_owned));
        let variant = match (architecture.as_str(), variant.as_deref()) {
            ("arm64", Some("8" | "v8" | "v8.0")) => None,
            ("arm64", Some("9" | "9.0" | "v9.0")) => Some("v9".to_owned()),
            ("amd64", Some("v1")) => None,
            ("arm", None) => Some("v7".to_owned()),
            ("arm", Some(v @ ("5" | "6" | "7" | "8"))) => Some(format!("v{v}")),
            (_, v) => v.map(str::to_owned),
        };
        Platform {
            architecture,
            os: self.os.to_ascii_lowercase(),
            variant,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    /// True when `candidate` (an index entry's platform) satisfies this requested platform:
    /// same os and architecture after normalization, and the same variant when this platform
    /// names one (no variant requested matches any).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let want = self.normalized();
        let have = candidate.normalized();
        want.os == have.os
            && want.architecture == have.architecture
            && (self.variant.is_none() || want.variant == have.variant)
    }
}

/// containerd's architecture aliases, with the variant an alias implies.
fn normalize_arch(arch: &str) -> (String, Option<&'static str>) {
    match arch {
        "aarch64" => ("arm64".to_owned(), None),
        "x86_64" | "x86-64" => ("amd64".to_owned(), None),
        "i386" => ("386".to_owned(), None),
        "armhf" => ("arm".to_owned(), Some("v7")),
        "armel" => ("arm".to_owned(), Some("v6")),
        "arm" => ("arm".to_owned(), Some("v7")),
        other => (other.to_owned(), None),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// Parses `os/architecture[/variant]` (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PlatformError {
            input: s.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(err());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn parse_table() {
        // input, Display after parsing
        for (input, shown) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/386", "linux/386"),
            ("linux/riscv64", "linux/riscv64"),
        ] {
            let parsed: Platform = input.parse().unwrap();
            assert_eq!(parsed.to_string(), shown, "{input}");
        }
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux amd64/x",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn match_table() {
        // wanted, candidate, matches
        for (want, have, expected) in [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/amd64/v1", true),
            ("linux/amd64", "linux/arm64", false),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/arm/v7", "linux/arm/v6", false),
            ("linux/arm/v7", "linux/arm", true),
            ("linux/amd64", "windows/amd64", false),
        ] {
            let want: Platform = want.parse().unwrap();
            let have: Platform = have.parse().unwrap();
            assert_eq!(want.matches(&have), expected, "{want} vs {have}");
        }
    }

    #[test]
    fn serializes_like_an_index_entry() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
    }
}
