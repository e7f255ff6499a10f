//! `requirements.txt` as pip reads it, with environment markers evaluated for the target.
//!
//! [`parse`] follows pip's `req_file.py`: lines ending in `\` are joined with the next, `#`
//! starts a comment at the start of a line or after whitespace, `-r FILE` / `-c FILE` nest
//! files relative to the including file, and each requirement line is
//! `name[extras] specifiers ; marker` followed by per-requirement options (`--hash=sha256:...`).
//! Global option lines (`--index-url`, `--extra-index-url`, `--find-links`, `--no-index`,
//! `--only-binary`, `--no-binary`, `--prefer-binary`, `--pre`, `--require-hashes`,
//! `--trusted-host`) are recorded in [`RequirementsFile`]; anything else fails naming the line.
//!
//! Markers are evaluated against the target's [`MarkerEnvironment`] (from
//! [`crate::python::target::PythonTarget::marker_environment`]), not the host's: pip gets this
//! wrong for cross installs. Requirements whose markers do not match go to
//! [`RequirementsFile::skipped`], as pip's "Ignoring ...: markers don't match".
//!
//! Hash-checking mode (any `--hash`, or `--require-hashes`) is enforced as pip does: every
//! requirement must then be pinned with `==`/`===` and carry at least one hash. Editable
//! (`-e`) and direct URL requirements are refused; `${VAR}` is not expanded.
//!
//! Files are read through a caller-given function, so they may come from the host or from a
//! stage's filesystem; [`parse_host_file`] reads the host.

use std::path::Path;

use pep508_rs::{MarkerEnvironment, Requirement, VersionOrUrl};

/// Deepest `-r` nesting accepted (guards against include cycles).
const MAX_DEPTH: usize = 16;

/// One requirement line.
#[derive(Clone, Debug)]
pub struct RequirementLine {
    /// The parsed PEP 508 requirement.
    pub requirement: Requirement,
    /// Allowed sha256 digests of the distribution file, lower-case hex.
    pub hashes: Vec<String>,
    /// The file it came from, as named (the top file or a `-r` path joined to its includer).
    pub file: String,
    /// 1-based line number of its first physical line.
    pub line: usize,
}

impl RequirementLine {
    /// The PEP 503 normalized project name.
    pub fn normalized_name(&self) -> String {
        crate::python::wheel::normalize_name(self.requirement.name.as_ref())
    }

    /// The exact version when pinned with `==X` (no wildcard) or `===X`.
    pub fn pinned_version(&self) -> Option<String> {
        let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &self.requirement.version_or_url
        else {
            return None;
        };
        let mut iter = specifiers.iter();
        let (Some(only), None) = (iter.next(), iter.next()) else {
            return None;
        };
        use pep440_rs::Operator;
        matches!(only.operator(), Operator::Equal | Operator::ExactEqual)
            .then(|| only.version().to_string())
    }
}

/// A parsed requirements file with everything it included.
#[derive(Clone, Debug, Default)]
pub struct RequirementsFile {
    /// Requirements whose markers match the target, in file order.
    pub requirements: Vec<RequirementLine>,
    /// Requirements whose markers do not match the target.
    pub skipped: Vec<RequirementLine>,
    /// Constraints from `-c` files (markers matching the target).
    pub constraints: Vec<RequirementLine>,
    /// `--index-url` / `-i` (the last one wins, as in pip).
    pub index_url: Option<String>,
    /// `--extra-index-url` values.
    pub extra_index_urls: Vec<String>,
    /// `--find-links` / `-f` values.
    pub find_links: Vec<String>,
    /// `--no-index` was given.
    pub no_index: bool,
    /// `--only-binary` values (`:all:`, `:none:` or project names).
    pub only_binary: Vec<String>,
    /// `--no-binary` values.
    pub no_binary: Vec<String>,
    /// `--prefer-binary` was given.
    pub prefer_binary: bool,
    /// `--pre` was given.
    pub pre: bool,
    /// `--trusted-host` values.
    pub trusted_hosts: Vec<String>,
    /// `--require-hashes` was given in a file.
    pub require_hashes: bool,
    /// Hash-checking mode is on (any `--hash`, or `--require-hashes`).
    pub hash_checking: bool,
}

/// Why a requirements file could not be used. Each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    /// The file could not be read.
    #[error("failed to read requirements file `{file}`{}", included_from.as_ref().map(|(f, l)| format!(" (included from {f}:{l})")).unwrap_or_default())]
    Read {
        /// The file.
        file: String,
        /// The `-r` line that named it.
        included_from: Option<(String, usize)>,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line could not be parsed or is not supported.
    #[error("{file}:{line}: {problem}")]
    Line {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, with the fix when there is one.
        problem: String,
    },
    /// Hash-checking mode is on but a requirement is not pinned or not hashed.
    #[error(
        "{file}:{line}: `{package}` {problem}; in hash-checking mode (any --hash, or \
         --require-hashes) every requirement must be pinned with == and list its --hash=sha256:... \
         (generate them with `pip-compile --generate-hashes` or `uv pip compile --generate-hashes`)"
    )]
    HashChecking {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The project.
        package: String,
        /// `is not pinned with ==` or `has no --hash`.
        problem: &'static str,
    },
    /// `-r` nesting too deep (a cycle).
    #[error("{file}:{line}: requirement files nest deeper than {MAX_DEPTH} levels (an -r cycle?)")]
    TooDeep {
        /// The file.
        file: String,
        /// The line with the `-r`.
        line: usize,
    },
}

/// Parses the requirements file `path`, reading files with `read` (paths as written, joined to
/// the including file's directory with `/`), markers evaluated in `env`.
pub fn parse(
    path: &str,
    read: &mut dyn FnMut(&str) -> std::io::Result<String>,
    env: &MarkerEnvironment,
) -> Result<RequirementsFile, RequirementsError> {
    let mut out = RequirementsFile::default();
    parse_into(path, None, read, env, &mut out, Kind::Requirements, 0)?;
    if out.hash_checking {
        for req in out.requirements.iter() {
            let problem = if req.pinned_version().is_none() {
                "is not pinned with =="
            } else if req.hashes.is_empty() {
                "has no --hash"
            } else {
                continue;
            };
            return Err(RequirementsError::HashChecking {
                file: req.file.clone(),
                line: req.line,
                package: req.requirement.name.to_string(),
                problem,
            });
        }
    }
    Ok(out)
}

/// [`parse`] for a file on the host.
pub fn parse_host_file(
    path: &Path,
    env: &MarkerEnvironment,
) -> Result<RequirementsFile, RequirementsError> {
    let name = path.to_string_lossy().into_owned();
    parse(&name, &mut |p: &str| std::fs::read_to_string(p), env)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requirements,
    Constraints,
}

/// Joins an included path to the directory of the including file.
fn relative_to(includer: &str, included: &str) -> String {
    if included.starts_with('/') {
        return included.to_owned();
    }
    match includer.rfind('/') {
        Some(idx) => format!("{}/{included}", &includer[..idx]),
        None => included.to_owned(),
    }
}

/// pip's `join_lines` + `ignore_comments`: logical lines with their first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let is_comment = |l: &str| l.trim_start().starts_with('#');
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if !raw.ends_with('\\') || is_comment(raw) {
            let line = if is_comment(raw) {
                format!(" {raw}")
            } else {
                raw.to_owned()
            };
            match pending.take() {
                Some((first, mut joined)) => {
                    joined.push_str(&line);
                    out.push((first, joined));
                }
                None => out.push((number, line)),
            }
        } else {
            let part = raw.trim_matches('\\');
            match &mut pending {
                Some((_, joined)) => joined.push_str(part),
                None => pending = Some((number, part.to_owned())),
            }
        }
    }
    if let Some(last) = pending {
        out.push(last);
    }
    out.into_iter()
        .filter_map(|(n, line)| {
            let stripped = strip_comment(&line).trim().to_owned();
            (!stripped.is_empty()).then_some((n, stripped))
        })
        .collect()
}

/// Removes `#...` at the start or after whitespace (pip's `(^|\s+)#.*$`).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn parse_into(
    path: &str,
    included_from: Option<(String, usize)>,
    read: &mut dyn FnMut(&str) -> std::io::Result<String>,
    env: &MarkerEnvironment,
    out: &mut RequirementsFile,
    kind: Kind,
    depth: usize,
) -> Result<(), RequirementsError> {
    let text = read(path).map_err(|source| RequirementsError::Read {
        file: path.to_owned(),
        included_from: included_from.clone(),
        source,
    })?;
    for (line, content) in logical_lines(&text) {
        let err = |problem: String| RequirementsError::Line {
            file: path.to_owned(),
            line,
            problem,
        };
        let tokens: Vec<&str> = content.split_whitespace().collect();
        // pip's break_args_options: the requirement is everything before the first option.
        let split = tokens
            .iter()
            .position(|t| t.starts_with('-'))
            .unwrap_or(tokens.len());
        let (args, options) = tokens.split_at(split);
        let options = split_options(options).map_err(err)?;
        if args.is_empty() {
            for (name, value) in options {
                let value_of = || {
                    value
                        .clone()
                        .ok_or_else(|| err(format!("`{name}` needs a value")))
                };
                match name.as_str() {
                    "-r" | "--requirement" | "-c" | "--constraint" => {
                        if depth >= MAX_DEPTH {
                            return Err(RequirementsError::TooDeep {
                                file: path.to_owned(),
                                line,
                            });
                        }
                        let nested = relative_to(path, &value_of()?);
                        let nested_kind = if name.starts_with("-c") || name == "--constraint" {
                            Kind::Constraints
                        } else {
                            kind
                        };
                        parse_into(
                            &nested,
                            Some((path.to_owned(), line)),
                            read,
                            env,
                            out,
                            nested_kind,
                            depth + 1,
                        )?;
                    }
                    "-i" | "--index-url" => out.index_url = Some(value_of()?),
                    "--extra-index-url" => out.extra_index_urls.push(value_of()?),
                    "-f" | "--find-links" => out.find_links.push(value_of()?),
                    "--trusted-host" => out.trusted_hosts.push(value_of()?),
                    "--only-binary" => out.only_binary.extend(comma_list(&value_of()?)),
                    "--no-binary" => out.no_binary.extend(comma_list(&value_of()?)),
                    "--no-index" => out.no_index = true,
                    "--prefer-binary" => out.prefer_binary = true,
                    "--pre" => out.pre = true,
                    "--require-hashes" => {
                        out.require_hashes = true;
                        out.hash_checking = true;
                    }
                    "-e" | "--editable" => {
                        return Err(err(
                            "editable requirements (-e) are not supported: kiln installs wheels \
                             only"
                                .to_owned(),
                        ));
                    }
                    other => {
                        return Err(err(format!(
                            "unsupported option `{other}` in a requirements file"
                        )));
                    }
                }
            }
            continue;
        }
        let spec = args.join(" ");
        let requirement = crate::python::pep508::parse_requirement(&spec)
            .map_err(|e| err(format!("invalid requirement `{spec}`: {e}")))?;
        if matches!(requirement.version_or_url, Some(VersionOrUrl::Url(_))) {
            return Err(err(format!(
                "direct URL requirement `{spec}` is not supported; pin a version from the index \
                 (name==version) instead"
            )));
        }
        let mut hashes = Vec::new();
        for (name, value) in options {
            match name.as_str() {
                "--hash" => {
                    let value = value.ok_or_else(|| err("`--hash` needs a value".to_owned()))?;
                    let Some(hex) = value.strip_prefix("sha256:") else {
                        return Err(err(format!(
                            "hash `{value}`: kiln verifies sha256 only (write --hash=sha256:<hex>)"
                        )));
                    };
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(err(format!(
                            "hash `{value}` is not a sha256 (64 hex digits)"
                        )));
                    }
                    hashes.push(hex.to_ascii_lowercase());
                    out.hash_checking = true;
                }
                other => {
                    return Err(err(format!(
                        "unsupported per-requirement option `{other}` (only --hash is supported)"
                    )));
                }
            }
        }
        let entry = RequirementLine {
            requirement,
            hashes,
            file: path.to_owned(),
            line,
        };
        let applies = entry.requirement.marker.evaluate(env, &[]);
        match (kind, applies) {
            (_, false) => out.skipped.push(entry),
            (Kind::Requirements, true) => out.requirements.push(entry),
            (Kind::Constraints, true) => out.constraints.push(entry),
        }
    }
    Ok(())
}

fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Options that take a value (as the next token or after `=`).
const TAKES_VALUE: &[&str] = &[
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--only-binary",
    "--no-binary",
    "--hash",
    "-e",
    "--editable",
];

/// Splits option tokens into (name, value) pairs: `--x=v`, `--x v`, `-rFILE`, `-r FILE`.
fn split_options(tokens: &[&str]) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut iter = tokens.iter();
    while let Some(token) = iter.next() {
        if let Some((name, value)) = token.split_once('=').filter(|(n, _)| n.starts_with("--")) {
            out.push((name.to_owned(), Some(value.to_owned())));
            continue;
        }
        if !token.starts_with('-') {
            return Err(format!(
                "unexpected `{token}` after the options (one requirement per line)"
            ));
        }
        // `-rFILE`: the option is the first two characters (not bytes: the second may be any
        // character, and the value starts on a character boundary).
        let short_value_at = token
            .char_indices()
            .nth(2)
            .map(|(at, _)| at)
            .filter(|_| !token.starts_with("--"));
        if let Some(at) = short_value_at {
            out.push((token[..at].to_owned(), Some(token[at..].to_owned())));
            continue;
        }
        if TAKES_VALUE.contains(token) {
            let value = iter
                .next()
                .ok_or_else(|| format!("`{token}` needs a value"))?;
            out.push(((*token).to_owned(), Some((*value).to_owned())));
        } else {
            out.push(((*token).to_owned(), None));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_short_option_with_a_multibyte_second_character_is_an_error_not_a_panic() {
        // Found by fuzzing: `-ݗ...` sliced the token at byte 2, inside the character.
        let err = split_options(&["-\u{757}x"]).map(|_| ()).err();
        assert_eq!(err, None, "split as an option, refused later by name");
        let options = split_options(&["-\u{757}x", "-rreq.txt"]).expect("split");
        assert_eq!(options[0], ("-\u{757}".to_owned(), Some("x".to_owned())));
        assert_eq!(options[1], ("-r".to_owned(), Some("req.txt".to_owned())));
        let parsed = parse_files(&[("requirements.txt", "-\u{757}x\n")], "x86_64");
        assert!(parsed.is_err(), "an unknown option");
    }

    fn env(machine: &str) -> MarkerEnvironment {
        crate::python::target::PythonTarget::cpython_311_musl(machine).marker_environment()
    }

    fn parse_files(
        files: &[(&str, &str)],
        machine: &str,
    ) -> Result<RequirementsFile, RequirementsError> {
        let map: BTreeMap<String, String> = files
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(
            files[0].0,
            &mut |p: &str| {
                map.get(p).cloned().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
                })
            },
            &env(machine),
        )
    }

    const H1: &str = "ba0efaa9080b619ff2f3459d1d500c57bddea4a6b424b60a91141db6fd2f08bc";

    #[test]
    fn pip_syntax() {
        let main = format!(
            "# comment\n--index-url https://example.invalid/simple  # trailing\n\
             --only-binary=:all:\n--pre\n-r sub/more.txt\n\
             blinker==1.9.0 \\\n    --hash=sha256:{H1}\n\
             Flask[async]==3.1.3 --hash sha256:{}\n\
             arm-only==1.0 ; platform_machine == 'aarch64' --hash=sha256:{H1}\n",
            H1.to_uppercase()
        );
        let more = format!("# nested\nclick==8.5.1 --hash=sha256:{H1}\n");
        let reqs = parse_files(
            &[("app/requirements.txt", &main), ("app/sub/more.txt", &more)],
            "x86_64",
        )
        .unwrap();
        let names: Vec<String> = reqs
            .requirements
            .iter()
            .map(|r| r.normalized_name())
            .collect();
        assert_eq!(names, ["click", "blinker", "flask"]);
        assert_eq!(reqs.requirements[0].file, "app/sub/more.txt");
        assert_eq!(reqs.requirements[1].line, 6);
        assert_eq!(reqs.requirements[2].hashes, [H1]);
        assert_eq!(
            reqs.requirements[2].pinned_version().as_deref(),
            Some("3.1.3")
        );
        assert_eq!(reqs.requirements[2].requirement.extras.len(), 1);
        assert_eq!(reqs.skipped.len(), 1);
        assert!(reqs.hash_checking && reqs.pre);
        assert_eq!(reqs.only_binary, [":all:"]);
        assert!(reqs.index_url.is_some());
        let arm = parse_files(&[("r.txt", &main), ("sub/more.txt", &more)], "aarch64").unwrap();
        assert_eq!(
            arm.requirements.len(),
            4,
            "the marker is evaluated for the target"
        );
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let table: &[(&str, &str)] = &[
            (
                "flask==3.1.3 --hash=sha256:abc\n",
                "r.txt:1: hash `sha256:abc` is not a sha256",
            ),
            ("flask==3.1.3 --hash=md5:abc\n", "sha256 only"),
            (
                "x==1 --hash=sha256:H\nflask>=3\n",
                "r.txt:2: `flask` is not pinned with ==",
            ),
            ("--require-hashes\nflask==3.1.3\n", "`flask` has no --hash"),
            ("-e .\n", "editable requirements"),
            (
                "flask @ https://example.invalid/f.whl\n",
                "direct URL requirement",
            ),
            ("--frobnicate\n", "unsupported option `--frobnicate`"),
            ("flask==\n", "r.txt:1: invalid requirement"),
            (
                "-r missing.txt\n",
                "failed to read requirements file `missing.txt` (included from r.txt:1)",
            ),
            ("-r r.txt\n", "nest deeper"),
        ];
        for (text, want) in table {
            let text = text.replace('H', H1);
            let err = parse_files(&[("r.txt", &text)], "x86_64")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
