//! The words after `pip install` in a `RUN` line, as a typed request.
//!
//! [`parse`] takes the arguments after `install` (the RUN recognizer strips `pip install`,
//! `pip3 install` or `python -m pip install`) and returns a [`PipInstall`]. It accepts the
//! options a Dockerfile's pip install commonly carries; any other option fails with
//! [`PipArgsError::UnknownFlag`] naming it, so a build never silently ignores what the user
//! asked pip to do. Options take their value as the next word or after `=` (`--target=/x`),
//! and short options also joined (`-rreq.txt`), as pip's optparse does.

/// Where packages go (pip's install schemes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum InstallLocation {
    /// The interpreter's own site-packages (pip's default).
    #[default]
    System,
    /// `--user`: `~/.local` of the RUN user.
    User,
    /// `--prefix P`.
    Prefix(String),
    /// `--target T`.
    Target(String),
}

/// Output verbosity: `-q` counts down, `-v` counts up.
pub type Verbosity = i32;

/// A parsed `pip install` request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PipInstall {
    /// `-r FILE` / `--requirement FILE`, in order (paths as written, relative to WORKDIR).
    pub requirement_files: Vec<String>,
    /// `-c FILE` / `--constraint FILE`.
    pub constraint_files: Vec<String>,
    /// Requirement specifiers given as arguments (`flask==3.1.3`).
    pub specs: Vec<String>,
    /// Where to install.
    pub location: InstallLocation,
    /// `--no-deps`.
    pub no_deps: bool,
    /// `--require-hashes`.
    pub require_hashes: bool,
    /// `--index-url` / `-i`.
    pub index_url: Option<String>,
    /// `--extra-index-url` values.
    pub extra_index_urls: Vec<String>,
    /// `--find-links` / `-f` values.
    pub find_links: Vec<String>,
    /// `--no-index`.
    pub no_index: bool,
    /// `--only-binary` values.
    pub only_binary: Vec<String>,
    /// `--upgrade` / `-U`.
    pub upgrade: bool,
    /// `--upgrade-strategy` (`only-if-needed`, pip's default, or `eager`).
    pub upgrade_strategy: Option<String>,
    /// `--force-reinstall`: reinstall every resolved distribution, even one already installed.
    pub force_reinstall: bool,
    /// `-I` / `--ignore-installed`: resolve as if nothing were installed, writing over what is.
    pub ignore_installed: bool,
    /// `--break-system-packages`: install even where the image's Python is marked
    /// EXTERNALLY-MANAGED (PEP 668).
    pub break_system_packages: bool,
    /// `--pre`.
    pub pre: bool,
    /// `--no-compile` (kiln never compiles: see `python::wheel`).
    pub no_compile: bool,
    /// `--no-cache-dir` (no effect: kiln's cache is content-addressed).
    pub no_cache_dir: bool,
    /// `--disable-pip-version-check` (no effect).
    pub disable_pip_version_check: bool,
    /// `--no-warn-script-location` (no effect).
    pub no_warn_script_location: bool,
    /// Net `-v` minus `-q`.
    pub verbosity: Verbosity,
}

/// Why the arguments cannot be handled natively.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PipArgsError {
    /// An option kiln does not know.
    #[error(
        "`pip install {0}` is not supported by kiln's native pip step; remove the option, or run \
         pip in a container step"
    )]
    UnknownFlag(String),
    /// An option without its value.
    #[error("`pip install {0}` needs a value")]
    MissingValue(String),
    /// Two install locations (`--user` with `--target`, ...).
    #[error("`pip install`: {0} and {1} cannot be combined")]
    Conflict(String, String),
    /// Nothing to install.
    #[error("`pip install` was given nothing to install (no -r FILE and no requirement)")]
    Nothing,
}

const WITH_VALUE: &[&str] = &[
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "--prefix",
    "-t",
    "--target",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--only-binary",
    "--upgrade-strategy",
];

/// Parses the arguments after `pip install`.
pub fn parse(args: &[String]) -> Result<PipInstall, PipArgsError> {
    let mut out = PipInstall::default();
    let mut location_flag: Option<String> = None;
    let mut set_location = |out: &mut PipInstall, flag: &str, location: InstallLocation| {
        if let Some(previous) = &location_flag {
            if previous != flag {
                return Err(PipArgsError::Conflict(previous.clone(), flag.to_owned()));
            }
        }
        location_flag = Some(flag.to_owned());
        out.location = location;
        Ok(())
    };
    let mut iter = args.iter();
    let mut only_args = false;
    while let Some(arg) = iter.next() {
        if only_args || !arg.starts_with('-') || arg == "-" {
            out.specs.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_args = true;
            continue;
        }
        // Split `--flag=value` and `-rFILE`.
        let (flag, inline): (String, Option<String>) =
            if let Some((f, v)) = arg.split_once('=').filter(|_| arg.starts_with("--")) {
                (f.to_owned(), Some(v.to_owned()))
            } else if !arg.starts_with("--") && arg.len() > 2 && WITH_VALUE.contains(&&arg[..2]) {
                (arg[..2].to_owned(), Some(arg[2..].to_owned()))
            } else {
                (arg.clone(), None)
            };
        let value = if WITH_VALUE.contains(&flag.as_str()) {
            match inline {
                Some(v) => Some(v),
                None => Some(
                    iter.next()
                        .cloned()
                        .ok_or_else(|| PipArgsError::MissingValue(flag.clone()))?,
                ),
            }
        } else if inline.is_some() {
            return Err(PipArgsError::UnknownFlag(arg.clone()));
        } else {
            None
        };
        let value = value.unwrap_or_default();
        match flag.as_str() {
            "-r" | "--requirement" => out.requirement_files.push(value),
            "-c" | "--constraint" => out.constraint_files.push(value),
            "--user" => set_location(&mut out, "--user", InstallLocation::User)?,
            "--prefix" => set_location(&mut out, "--prefix", InstallLocation::Prefix(value))?,
            "-t" | "--target" => {
                set_location(&mut out, "--target", InstallLocation::Target(value))?
            }
            "-i" | "--index-url" => out.index_url = Some(value),
            "--extra-index-url" => out.extra_index_urls.push(value),
            "-f" | "--find-links" => out.find_links.push(value),
            "--only-binary" => out.only_binary.extend(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            "--no-index" => out.no_index = true,
            "--no-deps" => out.no_deps = true,
            "--require-hashes" => out.require_hashes = true,
            "-U" | "--upgrade" => out.upgrade = true,
            "--upgrade-strategy" => match value.as_str() {
                "only-if-needed" | "eager" => out.upgrade_strategy = Some(value),
                _ => return Err(PipArgsError::UnknownFlag(format!("{flag} {value}"))),
            },
            "--force-reinstall" => out.force_reinstall = true,
            "-I" | "--ignore-installed" => out.ignore_installed = true,
            "--break-system-packages" => out.break_system_packages = true,
            "--pre" => out.pre = true,
            "--no-compile" => out.no_compile = true,
            "--no-cache-dir" => out.no_cache_dir = true,
            "--disable-pip-version-check" => out.disable_pip_version_check = true,
            "--no-warn-script-location" => out.no_warn_script_location = true,
            "-q" | "--quiet" => out.verbosity -= 1,
            "-v" | "--verbose" => out.verbosity += 1,
            short if !short.starts_with("--") && short.chars().skip(1).all(|c| c == 'q') => {
                out.verbosity -= (short.len() - 1) as i32
            }
            short if !short.starts_with("--") && short.chars().skip(1).all(|c| c == 'v') => {
                out.verbosity += (short.len() - 1) as i32
            }
            _ => return Err(PipArgsError::UnknownFlag(arg.clone())),
        }
    }
    if out.requirement_files.is_empty() && out.specs.is_empty() {
        return Err(PipArgsError::Nothing);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn dockerfile_forms() {
        let p = parse(&words("--no-cache-dir --user -r requirements.txt")).unwrap();
        assert_eq!(p.location, InstallLocation::User);
        assert_eq!(p.requirement_files, ["requirements.txt"]);
        assert!(p.no_cache_dir);
        let p = parse(&words(
            "-qq --prefix=/install --no-deps --require-hashes -rreq.txt -r more.txt flask==3.1.3 \
             --index-url https://example.invalid/simple --only-binary :all: -U --no-compile -v --force-reinstall -I",
        ))
        .unwrap();
        assert_eq!(p.location, InstallLocation::Prefix("/install".into()));
        assert_eq!(p.requirement_files, ["req.txt", "more.txt"]);
        assert_eq!(p.specs, ["flask==3.1.3"]);
        assert_eq!(p.only_binary, [":all:"]);
        assert_eq!(p.verbosity, -1);
        assert!(p.no_deps && p.require_hashes && p.upgrade && p.no_compile);
        assert!(p.force_reinstall && p.ignore_installed);
        let p = parse(&words("--target /app/deps gunicorn")).unwrap();
        assert_eq!(p.location, InstallLocation::Target("/app/deps".into()));
    }

    #[test]
    fn refusals_name_the_flag() {
        for (args, want) in [
            ("-e . ", PipArgsError::UnknownFlag("-e".into())),
            (
                "--upgrade-strategy sometimes flask",
                PipArgsError::UnknownFlag("--upgrade-strategy sometimes".into()),
            ),
            (
                "--user=yes flask",
                PipArgsError::UnknownFlag("--user=yes".into()),
            ),
            ("-r", PipArgsError::MissingValue("-r".into())),
            (
                "--user --target /x flask",
                PipArgsError::Conflict("--user".into(), "--target".into()),
            ),
            ("--user -q", PipArgsError::Nothing),
        ] {
            assert_eq!(parse(&words(args)).unwrap_err(), want, "{args}");
        }
        assert!(
            PipArgsError::UnknownFlag("-e".into())
                .to_string()
                .contains("pip install -e")
        );
    }
}
