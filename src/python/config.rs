//! pip's configuration as the pip inside the image would see it: configuration files read from
//! the IMAGE, `PIP_*` variables from the RUN's environment, and the command line on top.
//!
//! [`load`] follows pip's `configuration.py` and `ConfigOptionParser`:
//!
//! * Files, lowest precedence first: global (`$XDG_CONFIG_DIRS/pip/pip.conf`, default
//!   `/etc/xdg/pip/pip.conf`, then `/etc/pip.conf`), user (`~/.pip/pip.conf`, then
//!   `$XDG_CONFIG_HOME/pip/pip.conf`, default `~/.config/pip/pip.conf`; skipped when
//!   `PIP_CONFIG_FILE` names an existing file), site (`<sys.prefix>/pip.conf`), then the file
//!   named by `PIP_CONFIG_FILE` (relative to WORKDIR). `PIP_CONFIG_FILE=/dev/null` disables all
//!   files. Later files override earlier ones key by key.
//! * Sections: `[global]` < `[install]` < environment, whatever file they are in (pip merges the
//!   files first, then orders by section).
//! * Environment: `PIP_<OPTION>` (upper case, `-` as `_`), e.g. `PIP_INDEX_URL`.
//! * List options (`find-links`, `extra-index-url`) take whitespace-separated values; the
//!   highest-precedence source replaces the lower ones, and command-line values are appended
//!   (optparse appends to the configured default). Booleans accept pip's `strtobool` words.
//!
//! Keys kiln does not act on (timeouts, `cert`, `trusted-host`, ...) are ignored, as pip ignores
//! keys that name no option. [`ConfigValue::origin`] says where each value came from, so errors
//! can point at the file or variable to change.

use crate::layer::LayerPath;
use crate::rootfs::{FsView, ViewError};

/// A setting with the place it was read from (`/etc/pip.conf [global]`, `PIP_INDEX_URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValue {
    /// The raw value.
    pub value: String,
    /// Where it came from, for messages.
    pub origin: String,
}

/// The settings kiln acts on, after files and environment (not yet the command line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipConfig {
    /// `index-url`.
    pub index_url: Option<ConfigValue>,
    /// `extra-index-url` (split on whitespace).
    pub extra_index_urls: Vec<ConfigValue>,
    /// `find-links` (split on whitespace).
    pub find_links: Vec<ConfigValue>,
    /// `no-index`.
    pub no_index: Option<bool>,
    /// `require-hashes`.
    pub require_hashes: Option<bool>,
    /// `no-deps`.
    pub no_deps: Option<bool>,
    /// `user`.
    pub user: Option<bool>,
    /// `target`.
    pub target: Option<ConfigValue>,
    /// `prefix`.
    pub prefix: Option<ConfigValue>,
    /// `only-binary` (comma-separated).
    pub only_binary: Vec<String>,
    /// `no-binary` (comma-separated).
    pub no_binary: Vec<String>,
    /// `constraint` (`PIP_CONSTRAINT`; split on whitespace): constraint files.
    pub constraints: Vec<ConfigValue>,
    /// `break-system-packages` (`PIP_BREAK_SYSTEM_PACKAGES`).
    pub break_system_packages: Option<bool>,
    /// `upgrade` (`PIP_UPGRADE`).
    pub upgrade: Option<bool>,
    /// `upgrade-strategy` (`PIP_UPGRADE_STRATEGY`).
    pub upgrade_strategy: Option<ConfigValue>,
    /// `force-reinstall` (`PIP_FORCE_REINSTALL`).
    pub force_reinstall: Option<bool>,
    /// `ignore-installed` (`PIP_IGNORE_INSTALLED`).
    pub ignore_installed: Option<bool>,
    /// The configuration files that were read, in load order (image paths).
    pub files_read: Vec<String>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file is not valid INI.
    #[error("{file}:{line}: {problem} (pip configuration file in the image)")]
    Syntax {
        /// The image path.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A boolean option has a value pip would refuse.
    #[error(
        "{origin}: `{value}` is not a valid value for `{key}` (use true/false, yes/no, on/off \
         or 1/0)"
    )]
    Bool {
        /// The option.
        key: String,
        /// The value.
        value: String,
        /// Where it was set.
        origin: String,
    },
    /// Reading a file from the image failed (other than it being absent).
    #[error("failed to read pip configuration file `{file}` from the image")]
    Read {
        /// The image path.
        file: String,
        /// The cause.
        #[source]
        source: ViewError,
    },
}

/// Where a value sits in pip's precedence: section first, then variant, then file order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    section: u8,
    variant: u8,
    order: usize,
}

struct RawValue {
    rank: Rank,
    key: String,
    value: String,
    origin: String,
}

/// Inputs of [`load`].
pub struct ConfigInputs<'a> {
    /// The stage filesystem (configuration files are read from the image).
    pub fs: &'a dyn FsView,
    /// The RUN's environment (ENV and ARG values).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Home directory of the RUN user in the image.
    pub home: &'a str,
    /// WORKDIR of the RUN (for a relative `PIP_CONFIG_FILE`).
    pub workdir: &'a str,
    /// `sys.prefix` of the image's Python (`/usr/local`), for the site file.
    pub sys_prefix: &'a str,
}

const VARIANT_GLOBAL: u8 = 0;
const VARIANT_USER: u8 = 1;
const VARIANT_SITE: u8 = 2;
const VARIANT_ENV_FILE: u8 = 3;

/// Options read from the environment, by pip option name.
const ENV_OPTIONS: &[&str] = &[
    "index-url",
    "extra-index-url",
    "find-links",
    "no-index",
    "require-hashes",
    "no-deps",
    "user",
    "target",
    "prefix",
    "only-binary",
    "no-binary",
    "constraint",
    "break-system-packages",
    "upgrade",
    "upgrade-strategy",
    "force-reinstall",
    "ignore-installed",
];

/// Joins `path` to `base` unless it is absolute.
pub fn image_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

/// Reads pip's configuration files from the image and `PIP_*` from the environment.
pub fn load(inputs: &ConfigInputs<'_>) -> Result<PipConfig, ConfigError> {
    let env = inputs.env;
    let mut raw: Vec<RawValue> = Vec::new();
    let mut files_read = Vec::new();
    let config_file = env("PIP_CONFIG_FILE")
        .filter(|v| !v.is_empty())
        .map(|v| image_path(inputs.workdir, &v));
    let devnull = config_file.as_deref() == Some("/dev/null");
    if !devnull {
        let home = inputs.home.trim_end_matches('/');
        let mut files: Vec<(u8, String)> = Vec::new();
        let xdg_dirs = env("XDG_CONFIG_DIRS")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "/etc/xdg".to_owned());
        for dir in xdg_dirs.split(':').filter(|d| !d.is_empty()) {
            files.push((VARIANT_GLOBAL, format!("{dir}/pip/pip.conf")));
        }
        files.push((VARIANT_GLOBAL, "/etc/pip.conf".to_owned()));
        let env_file_exists = match &config_file {
            Some(path) => read_optional(inputs.fs, path)?.is_some(),
            None => false,
        };
        if !env_file_exists {
            files.push((VARIANT_USER, format!("{home}/.pip/pip.conf")));
            let xdg_home = env("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| format!("{home}/.config"));
            files.push((VARIANT_USER, format!("{xdg_home}/pip/pip.conf")));
        }
        files.push((
            VARIANT_SITE,
            format!("{}/pip.conf", inputs.sys_prefix.trim_end_matches('/')),
        ));
        if let Some(path) = &config_file {
            files.push((VARIANT_ENV_FILE, path.clone()));
        }
        for (order, (variant, file)) in files.into_iter().enumerate() {
            let Some(bytes) = read_optional(inputs.fs, &file)? else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for (section, key, value) in parse_ini(&file, &text)? {
                let section_rank = match section.as_str() {
                    "global" => 0,
                    "install" => 1,
                    _ => continue,
                };
                raw.push(RawValue {
                    rank: Rank {
                        section: section_rank,
                        variant,
                        order,
                    },
                    origin: format!("{file} [{section}]"),
                    key,
                    value,
                });
            }
            files_read.push(file);
        }
    }
    for key in ENV_OPTIONS {
        let name = format!("PIP_{}", key.to_ascii_uppercase().replace('-', "_"));
        if let Some(value) = env(&name) {
            raw.push(RawValue {
                rank: Rank {
                    section: 2,
                    variant: 0,
                    order: 0,
                },
                key: (*key).to_owned(),
                value,
                origin: name,
            });
        }
    }
    raw.sort_by_key(|v| v.rank);
    let mut out = PipConfig {
        files_read,
        ..PipConfig::default()
    };
    // Ascending precedence: each later value replaces the earlier one.
    for RawValue {
        key, value, origin, ..
    } in raw
    {
        let single = || ConfigValue {
            value: value.trim().to_owned(),
            origin: origin.clone(),
        };
        let list = || -> Vec<ConfigValue> {
            value
                .split_whitespace()
                .map(|v| ConfigValue {
                    value: v.to_owned(),
                    origin: origin.clone(),
                })
                .collect()
        };
        let boolean = || strtobool(&key, &value, &origin);
        let commas = || -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match key.as_str() {
            "index-url" | "i" => out.index_url = Some(single()),
            "extra-index-url" => out.extra_index_urls = list(),
            "find-links" | "f" => out.find_links = list(),
            "no-index" => out.no_index = Some(boolean()?),
            "require-hashes" => out.require_hashes = Some(boolean()?),
            "no-deps" => out.no_deps = Some(boolean()?),
            "user" => out.user = Some(boolean()?),
            "target" | "t" => out.target = Some(single()),
            "prefix" => out.prefix = Some(single()),
            "only-binary" => out.only_binary = commas(),
            "no-binary" => out.no_binary = commas(),
            "constraint" | "c" => out.constraints = list(),
            "break-system-packages" => out.break_system_packages = Some(boolean()?),
            "upgrade" | "U" => out.upgrade = Some(boolean()?),
            "upgrade-strategy" => out.upgrade_strategy = Some(single()),
            "force-reinstall" => out.force_reinstall = Some(boolean()?),
            "ignore-installed" | "I" => out.ignore_installed = Some(boolean()?),
            _ => {}
        }
    }
    Ok(out)
}

fn read_optional(fs: &dyn FsView, file: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let Ok(path) = LayerPath::new(file) else {
        return Ok(None);
    };
    match fs.read_file(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => Ok(None),
        Err(source) => Err(ConfigError::Read {
            file: file.to_owned(),
            source,
        }),
    }
}

/// pip's `strtobool`.
fn strtobool(key: &str, value: &str, origin: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Ok(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::Bool {
            key: key.to_owned(),
            value: value.to_owned(),
            origin: origin.to_owned(),
        }),
    }
}

/// Python `configparser.RawConfigParser` subset: `[section]`, `key = value` / `key: value`,
/// `#`/`;` comment lines, indented continuation lines. Keys are lower-cased with `_` as `-`
/// and a leading `--` dropped (pip's `_normalize_name`).
fn parse_ini(file: &str, text: &str) -> Result<Vec<(String, String, String)>, ConfigError> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut section: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some(last) if section.is_some() => {
                    last.2.push('\n');
                    last.2.push_str(trimmed);
                    continue;
                }
                _ => {
                    return Err(ConfigError::Syntax {
                        file: file.to_owned(),
                        line: number,
                        problem: "continuation line without a key".to_owned(),
                    });
                }
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err(ConfigError::Syntax {
                    file: file.to_owned(),
                    line: number,
                    problem: format!("malformed section header `{trimmed}`"),
                });
            };
            section = Some(name.trim().to_owned());
            continue;
        }
        let Some(current) = &section else {
            return Err(ConfigError::Syntax {
                file: file.to_owned(),
                line: number,
                problem: "option before the first [section] header".to_owned(),
            });
        };
        let split = trimmed
            .find(['=', ':'])
            .ok_or_else(|| ConfigError::Syntax {
                file: file.to_owned(),
                line: number,
                problem: format!("expected `key = value`, found `{trimmed}`"),
            })?;
        let key = trimmed[..split]
            .trim()
            .to_ascii_lowercase()
            .replace('_', "-");
        let key = key.strip_prefix("--").unwrap_or(&key).to_owned();
        let value = trimmed[split + 1..].trim().to_owned();
        out.push((current.clone(), key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_subset() {
        let text = "# c\n[global]\nindex_url = https://a.invalid/simple\nfind-links =\n    /x\n    /y\n\
                    [install]\n--no-index: yes\n";
        let items = parse_ini("f", text).unwrap();
        assert_eq!(items[0].1, "index-url");
        assert_eq!(items[1].2, "\n/x\n/y");
        assert_eq!(
            items[2],
            ("install".into(), "no-index".into(), "yes".into())
        );
        assert!(parse_ini("f", "key = v\n").is_err());
        assert!(parse_ini("f", "[global\n").is_err());
    }
}
