//! The command line of `apk` as kiln applies it: `apk [OPTIONS] add|del|update|upgrade ...`,
//! parsed as apk-tools parses it into a typed [`ApkCommand`]. Global options are accepted only
//! with the applets that take them; an option kiln does not model is refused by name.

use super::constraint::{ConstraintError, PackageConstraint};
use crate::shell::{Arg, Opt, ShellError, getopt, opt};

/// One apk command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApkCommand {
    /// `apk update`: refresh the package indexes.
    Update,
    /// `apk upgrade`.
    Upgrade {
        /// `-a`/`--available`: also downgrade/replace packages to match the repositories.
        available: bool,
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-l`/`--latest`: prefer the latest version over the pinned one.
        latest: bool,
    },
    /// `apk add`.
    Add {
        /// `--no-cache`: do not keep indexes or packages in the image.
        no_cache: bool,
        /// `-U`/`--update-cache`: refresh the indexes first.
        update_cache: bool,
        /// `-u`/`--upgrade`: upgrade the named packages if already installed.
        upgrade: bool,
        /// `-t NAME`/`--virtual NAME`: group the packages under a virtual package.
        virtual_name: Option<String>,
        /// The packages asked for.
        packages: Vec<PackageConstraint>,
    },
    /// `apk del`.
    Del {
        /// The package (or virtual package) names.
        packages: Vec<String>,
        /// `-r`/`--rdepends`: also remove packages that depend on them.
        rdepends: bool,
        /// `--purge`: also remove modified configuration files.
        purge: bool,
    },
}

/// Why an apk command line is not understood.
#[derive(Debug, thiserror::Error)]
pub enum ApkArgsError {
    /// The options or operands.
    #[error(transparent)]
    Line(#[from] ShellError),
    /// An `apk add` package spec is malformed.
    #[error("`{command}`: bad package spec")]
    Package {
        /// The command text.
        command: String,
        /// The cause.
        #[source]
        source: ConstraintError,
    },
}

/// Parses the arguments of `apk` (after the program word) of the command `text`.
pub fn parse(text: &str, args: &[String]) -> Result<ApkCommand, ApkArgsError> {
    const TABLE: &[Opt] = &[
        opt('\0', "no-cache", "no-cache", Arg::None),
        opt('U', "update-cache", "update-cache", Arg::None),
        opt('q', "quiet", "quiet", Arg::None),
        opt('v', "verbose", "verbose", Arg::None),
        opt('\0', "no-progress", "quiet", Arg::None),
        opt('\0', "progress", "quiet", Arg::None),
        opt('t', "virtual", "virtual", Arg::Required),
        opt('a', "available", "available", Arg::None),
        opt('u', "upgrade", "upgrade", Arg::None),
        opt('l', "latest", "latest", Arg::None),
        opt('r', "rdepends", "rdepends", Arg::None),
        opt('\0', "purge", "purge", Arg::None),
    ];
    let (opts, operands) = getopt(text, "apk", args, TABLE)?;
    let Some((applet, rest)) = operands.split_first() else {
        return Err(ApkArgsError::from(ShellError::Usage {
            command: text.to_owned(),
            tool: "apk".to_owned(),
            message: "no applet given (add, del, update, upgrade)".to_owned(),
        }));
    };
    let allowed: &[&str] = match applet.as_str() {
        "update" => &["no-cache", "update-cache", "quiet", "verbose"],
        "upgrade" => &[
            "no-cache",
            "update-cache",
            "quiet",
            "verbose",
            "available",
            "latest",
        ],
        "add" => &[
            "no-cache",
            "update-cache",
            "quiet",
            "verbose",
            "virtual",
            "upgrade",
        ],
        "del" => &["no-cache", "quiet", "verbose", "rdepends", "purge"],
        other => {
            return Err(ApkArgsError::from(ShellError::NotUnderstood {
                command: text.to_owned(),
                reason: format!("`apk {other}` is not understood (only add, del, update, upgrade)"),
            }));
        }
    };
    let tool = format!("apk {applet}");
    let mut set = std::collections::BTreeMap::new();
    for (key, value) in opts {
        if !allowed.contains(&key) {
            let flag = TABLE
                .iter()
                .find(|o| o.key == key)
                .map(|o| format!("--{}", o.long))
                .unwrap_or_else(|| key.to_owned());
            return Err(ApkArgsError::from(ShellError::UnknownFlag {
                command: text.to_owned(),
                tool,
                flag,
            }));
        }
        set.insert(key, value);
    }
    let has = |key: &str| set.contains_key(key);
    let no_operands = |what: &str| -> Result<(), ApkArgsError> {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(ApkArgsError::from(ShellError::Usage {
                command: text.to_owned(),
                tool: tool.clone(),
                message: format!("{what} takes no package names (got `{}`)", rest.join(" ")),
            }))
        }
    };
    match applet.as_str() {
        "update" => {
            no_operands("apk update")?;
            Ok(ApkCommand::Update)
        }
        "upgrade" => {
            no_operands("apk upgrade (of named packages)")?;
            Ok(ApkCommand::Upgrade {
                available: has("available"),
                no_cache: has("no-cache"),
                update_cache: has("update-cache"),
                latest: has("latest"),
            })
        }
        "add" => {
            if rest.is_empty() && !has("virtual") {
                return Err(ApkArgsError::from(ShellError::Usage {
                    command: text.to_owned(),
                    tool,
                    message: "no packages given".to_owned(),
                }));
            }
            let mut packages = Vec::new();
            for spec in rest {
                if spec.ends_with(".apk") || spec.starts_with("./") || spec.starts_with("../") {
                    return Err(ApkArgsError::from(ShellError::NotUnderstood {
                        command: text.to_owned(),
                        reason: format!("installing the local package file `{spec}`"),
                    }));
                }
                packages.push(PackageConstraint::parse(spec).map_err(|source| {
                    ApkArgsError::Package {
                        command: text.to_owned(),
                        source,
                    }
                })?);
            }
            Ok(ApkCommand::Add {
                no_cache: has("no-cache"),
                update_cache: has("update-cache"),
                upgrade: has("upgrade"),
                virtual_name: set.get("virtual").cloned().flatten(),
                packages,
            })
        }
        _ => {
            if rest.is_empty() {
                return Err(ApkArgsError::from(ShellError::Usage {
                    command: text.to_owned(),
                    tool,
                    message: "no packages given".to_owned(),
                }));
            }
            Ok(ApkCommand::Del {
                packages: rest.to_vec(),
                rdepends: has("rdepends"),
                purge: has("purge"),
            })
        }
    }
}
