//! Package constraints as `apk add` and `/etc/apk/world` spell them: `name[@tag][op version]`.
//!
//! Operators: `=`, `<`, `<=`, `>`, `>=`, `~` (fuzzy: version prefix), `<~`, `>~`, and `><`
//! (the version is a package checksum, `Q1...`). A leading `!` marks a conflict ("must not be
//! installed"). Names may hold provide prefixes (`so:libz.so.1`, `cmd:sh`, `/bin/sh`). A
//! [`PackageConstraint`] is parsed once from user text and tested against candidate versions
//! with [`PackageConstraint::matches`].

use std::fmt;

use super::version::{self, Version, VersionError};

/// A version operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionOp {
    /// `=`
    Equal,
    /// `<`
    Less,
    /// `<=`
    LessEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterEqual,
    /// `~`: the candidate's version starts with the given one, token-wise.
    Fuzzy,
    /// `<~`: less, or fuzzily equal.
    LessFuzzy,
    /// `>~`: greater, or fuzzily equal.
    GreaterFuzzy,
}

impl VersionOp {
    /// The operator as apk writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Equal => "=",
            VersionOp::Less => "<",
            VersionOp::LessEqual => "<=",
            VersionOp::Greater => ">",
            VersionOp::GreaterEqual => ">=",
            VersionOp::Fuzzy => "~",
            VersionOp::LessFuzzy => "<~",
            VersionOp::GreaterFuzzy => ">~",
        }
    }
}

/// What a constraint asks of the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any version (no operator).
    Any,
    /// A version comparison.
    Version(VersionOp, Version),
    /// `><Q1...`: the package with this checksum.
    Checksum(String),
}

/// One `apk add` argument or world line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageConstraint {
    /// The package or provided name (`python3`, `so:libz.so.1`).
    pub name: String,
    /// The repository tag after `@`, if any.
    pub tag: Option<String>,
    /// The version requirement.
    pub requirement: Requirement,
    /// `!name`: the package must not be installed.
    pub conflict: bool,
}

/// Why a constraint could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConstraintError {
    /// No package name before the operator.
    #[error("package constraint `{0}` has no package name")]
    MissingName(String),
    /// An operator with nothing after it.
    #[error("package constraint `{0}` has an operator but no version")]
    MissingVersion(String),
    /// An unknown operator or stray operator characters.
    #[error("package constraint `{spec}` has an unknown operator `{op}`")]
    BadOperator {
        /// The whole constraint.
        spec: String,
        /// The operator characters found.
        op: String,
    },
    /// The version is not an apk version.
    #[error("package constraint `{spec}`: {cause}")]
    BadVersion {
        /// The whole constraint.
        spec: String,
        /// The version error. Its text is the message's end, so it is not also chained as a
        /// source (a printed chain would show it twice).
        cause: VersionError,
    },
    /// A character that cannot be part of a package name.
    #[error("package constraint `{spec}`: `{ch}` cannot appear in a package name")]
    BadName {
        /// The whole constraint.
        spec: String,
        /// The offending character.
        ch: char,
    },
}

impl PackageConstraint {
    /// Parses `[!]name[@tag][op version]`.
    pub fn parse(spec: &str) -> Result<PackageConstraint, ConstraintError> {
        let (conflict, body) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let op_start = body.find(['<', '>', '=', '~']).unwrap_or(body.len());
        let (name_tag, rest) = body.split_at(op_start);
        let (name, tag) = match name_tag.split_once('@') {
            Some((name, tag)) => (name, Some(tag.to_owned())),
            None => (name_tag, None),
        };
        if name.is_empty() || tag.as_deref() == Some("") {
            return Err(ConstraintError::MissingName(spec.to_owned()));
        }
        if let Some(ch) = name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '@' | '!' | '\'' | '"'))
        {
            return Err(ConstraintError::BadName {
                spec: spec.to_owned(),
                ch,
            });
        }
        let op_len = rest
            .bytes()
            .take_while(|b| matches!(b, b'<' | b'>' | b'=' | b'~'))
            .count();
        let (op, version) = rest.split_at(op_len);
        let requirement = if op.is_empty() {
            Requirement::Any
        } else if version.is_empty() {
            return Err(ConstraintError::MissingVersion(spec.to_owned()));
        } else if op == "><" {
            Requirement::Checksum(version.to_owned())
        } else {
            let op = match op {
                "=" => VersionOp::Equal,
                "<" => VersionOp::Less,
                "<=" => VersionOp::LessEqual,
                ">" => VersionOp::Greater,
                ">=" => VersionOp::GreaterEqual,
                "~" | "=~" => VersionOp::Fuzzy,
                "<~" => VersionOp::LessFuzzy,
                ">~" => VersionOp::GreaterFuzzy,
                other => {
                    return Err(ConstraintError::BadOperator {
                        spec: spec.to_owned(),
                        op: other.to_owned(),
                    });
                }
            };
            let version = Version::parse(version).map_err(|cause| ConstraintError::BadVersion {
                spec: spec.to_owned(),
                cause,
            })?;
            Requirement::Version(op, version)
        };
        Ok(PackageConstraint {
            name: name.to_owned(),
            tag,
            requirement,
            conflict,
        })
    }

    /// True when a package of version `candidate` satisfies the version requirement (the
    /// conflict flag inverts it). Checksum requirements never match a bare version.
    pub fn matches(&self, candidate: &str) -> bool {
        let ok = match &self.requirement {
            Requirement::Any => true,
            Requirement::Checksum(_) => false,
            Requirement::Version(op, want) => {
                use std::cmp::Ordering::*;
                let fuzzy = matches!(
                    op,
                    VersionOp::Fuzzy | VersionOp::LessFuzzy | VersionOp::GreaterFuzzy
                );
                let order = version::compare_fuzzy(candidate, want.as_str(), fuzzy);
                match op {
                    VersionOp::Equal | VersionOp::Fuzzy => order == Equal,
                    VersionOp::Less => order == Less,
                    VersionOp::LessEqual | VersionOp::LessFuzzy => order != Greater,
                    VersionOp::Greater => order == Greater,
                    VersionOp::GreaterEqual | VersionOp::GreaterFuzzy => order != Less,
                }
            }
        };
        ok != self.conflict
    }
}

impl fmt::Display for PackageConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conflict {
            f.write_str("!")?;
        }
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, "@{tag}")?;
        }
        match &self.requirement {
            Requirement::Any => Ok(()),
            Requirement::Version(op, version) => write!(f, "{}{version}", op.as_str()),
            Requirement::Checksum(sum) => write!(f, "><{sum}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (spec, name, tag, requirement as displayed, conflict)
        for (spec, name, tag, shown, conflict) in [
            ("python3", "python3", None, "python3", false),
            (
                "python3=3.11.9-r0",
                "python3",
                None,
                "python3=3.11.9-r0",
                false,
            ),
            ("python3~3.11", "python3", None, "python3~3.11", false),
            ("musl>1.2", "musl", None, "musl>1.2", false),
            ("musl>=1.2.4", "musl", None, "musl>=1.2.4", false),
            ("musl<2", "musl", None, "musl<2", false),
            ("musl<=2", "musl", None, "musl<=2", false),
            ("musl<~2", "musl", None, "musl<~2", false),
            ("musl>~2", "musl", None, "musl>~2", false),
            ("curl@edge", "curl", Some("edge"), "curl@edge", false),
            (
                "curl@edge=8.0-r0",
                "curl",
                Some("edge"),
                "curl@edge=8.0-r0",
                false,
            ),
            (
                "!busybox-extras",
                "busybox-extras",
                None,
                "!busybox-extras",
                true,
            ),
            ("so:libz.so.1", "so:libz.so.1", None, "so:libz.so.1", false),
            ("cmd:sh", "cmd:sh", None, "cmd:sh", false),
            ("foo><Q1abc=", "foo", None, "foo><Q1abc=", false),
        ] {
            let c = PackageConstraint::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(c.name, name, "{spec}");
            assert_eq!(c.tag.as_deref(), tag, "{spec}");
            assert_eq!(c.to_string(), shown, "{spec}");
            assert_eq!(c.conflict, conflict, "{spec}");
        }
    }

    #[test]
    fn parse_errors() {
        for (spec, needle) in [
            ("=1.0", "no package name"),
            ("foo=", "no version"),
            ("foo=>1", "unknown operator `=>`"),
            ("foo=1.0_bogus", "invalid apk version"),
            ("@edge", "no package name"),
            ("foo@", "no package name"),
        ] {
            let err = PackageConstraint::parse(spec).expect_err(spec).to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn matching_table() {
        for (spec, candidate, want) in [
            ("p", "1.0", true),
            ("p=1.2", "1.2-r0", false),
            ("p=1.2-r0", "1.2-r0", true),
            ("p~1.2", "1.2.5-r3", true),
            ("p~1.2", "1.3", false),
            ("p>1.2", "1.2.1", true),
            ("p<1.2", "1.2_rc1", true),
            ("p>=1.2", "1.2", true),
            ("p<~3.6", "3.5", true),
            ("p<~3.6", "3.6.1", true),
            ("p<~3.6", "3.7", false),
            ("!p>=2", "1.0", true),
        ] {
            let c = PackageConstraint::parse(spec).expect(spec);
            assert_eq!(c.matches(candidate), want, "{spec} vs {candidate}");
        }
    }
}
