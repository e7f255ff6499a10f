//! Where the build's inputs came from, as the provenance names them: the Dockerfile (path and
//! digest), the context (a git checkout, a plain directory or none) and the git checkout itself,
//! read from `.git` without the git CLI, its remote URL stripped of userinfo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::attest::AttestError;
use crate::attest::material::{Material, MaterialKind};
use crate::digest::Digest;

/// The Dockerfile as an external parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerfileSource {
    /// Its path relative to the context (or as given on the command line).
    pub path: String,
    /// The sha256 of its bytes.
    pub digest: Digest,
}

/// Where the build context came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextSource {
    /// A git checkout ([`GitSource::detect`]).
    Git(GitSource),
    /// A plain directory, pinned by a digest over its files when the caller has one.
    Local {
        /// A digest over the context's files (the caller's definition), if computed.
        digest: Option<Digest>,
    },
    /// No context (a Dockerfile from stdin with no COPY).
    None,
}

/// A git checkout: remote URL (userinfo stripped), commit and the ref HEAD points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSource {
    /// `remote.origin.url`, userinfo removed; None when there is no origin remote.
    pub url: Option<String>,
    /// The commit HEAD resolves to (40 or 64 hex).
    pub commit: String,
    /// `refs/heads/main` etc.; None for a detached HEAD.
    pub reference: Option<String>,
}

impl GitSource {
    /// Reads `.git` in `dir` or its nearest ancestor that has one (a directory, or a
    /// `gitdir: ...` file as in worktrees and submodules) without the git CLI: `HEAD`, the ref
    /// file or `packed-refs`, and `[remote "origin"] url` from `config`. Ok(None) when there is
    /// no `.git`.
    pub fn detect(dir: &Path) -> Result<Option<GitSource>, AttestError> {
        let Some(dot_git) = dir.ancestors().map(|d| d.join(".git")).find(|p| p.exists()) else {
            return Ok(None);
        };
        let git_err = |path: &Path, reason: String| AttestError::Git {
            path: path.to_owned(),
            reason,
        };
        let read = |path: &Path| -> Result<Option<String>, AttestError> {
            match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(AttestError::io("read", path, e)),
            }
        };
        let git_dir: PathBuf = if dot_git.is_dir() {
            dot_git.clone()
        } else {
            let text = read(&dot_git)?.unwrap_or_default();
            let target = text
                .trim()
                .strip_prefix("gitdir:")
                .ok_or_else(|| git_err(&dot_git, "not a `gitdir:` file".to_owned()))?
                .trim();
            let base = dot_git.parent().unwrap_or(Path::new("."));
            base.join(target)
        };
        let common_dir = match read(&git_dir.join("commondir"))? {
            Some(rel) => git_dir.join(rel.trim()),
            None => git_dir.clone(),
        };
        let head_path = git_dir.join("HEAD");
        let head =
            read(&head_path)?.ok_or_else(|| git_err(&head_path, "HEAD is missing".to_owned()))?;
        let head = head.trim();
        let (reference, commit) = match head.strip_prefix("ref:") {
            Some(name) => {
                let name = name.trim();
                if name.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(git_err(&head_path, format!("unsafe ref name `{name}`")));
                }
                let loose = match read(&git_dir.join(name))? {
                    Some(text) => Some(text),
                    None => read(&common_dir.join(name))?,
                };
                let commit = match loose {
                    Some(text) => text.trim().to_owned(),
                    None => packed_ref(&common_dir, name, &read)?.ok_or_else(|| {
                        git_err(
                            &head_path,
                            format!("HEAD points at `{name}`, which has no commit yet"),
                        )
                    })?,
                };
                (Some(name.to_owned()), commit)
            }
            None => (None, head.to_owned()),
        };
        let commit_ok = matches!(commit.len(), 40 | 64)
            && commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !commit_ok {
            return Err(git_err(
                &head_path,
                "HEAD does not resolve to a 40- or 64-character lowercase hex commit".to_owned(),
            ));
        }
        let url = read(&common_dir.join("config"))?
            .and_then(|config| origin_url(&config))
            .map(|url| strip_userinfo(&url));
        Ok(Some(GitSource {
            url,
            commit,
            reference,
        }))
    }

    /// `git+<url>[@<ref>]` as a material URI (`git+local` without a remote).
    pub fn uri(&self) -> String {
        let url = self.url.as_deref().unwrap_or("local");
        match &self.reference {
            Some(reference) => format!("git+{url}@{reference}"),
            None => format!("git+{url}"),
        }
    }

    /// The checkout as a ResourceDescriptor pinned by `gitCommit`.
    pub fn material(&self) -> Material {
        Material {
            kind: MaterialKind::GitCheckout,
            uri: self.uri(),
            sha256: None,
            other_digests: BTreeMap::from([("gitCommit".to_owned(), self.commit.clone())]),
            name: None,
        }
    }
}

/// The commit `name` has in `packed-refs` of `common_dir`, if listed there.
fn packed_ref(
    common_dir: &Path,
    name: &str,
    read: &dyn Fn(&Path) -> Result<Option<String>, AttestError>,
) -> Result<Option<String>, AttestError> {
    let Some(text) = read(&common_dir.join("packed-refs"))? else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, r)| r.trim() == name)
        .map(|(hash, _)| hash.to_owned()))
}

/// `url` of `[remote "origin"]` in a git config file.
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            in_origin = header.eq_ignore_ascii_case("[remote\"origin\"]");
            continue;
        }
        if !in_origin {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("url")
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Removes `user[:password]@` from a `scheme://` URL; other strings are returned unchanged
/// (scp-style `git@host:path` names a login, not a secret).
pub fn strip_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_table() {
        for (input, output) in [
            (
                "https://user:ghp_x@github.com/a/b.git",
                "https://github.com/a/b.git",
            ),
            ("https://tok@github.com/a/b", "https://github.com/a/b"),
            ("https://github.com/a/b", "https://github.com/a/b"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
            ("ssh://git@host/p?x=@y", "ssh://host/p?x=@y"),
        ] {
            assert_eq!(strip_userinfo(input), output, "{input}");
        }
    }

    #[test]
    fn origin_url_is_read_from_its_section() {
        let config = "[core]\n\turl = nope\n[remote \"upstream\"]\n\turl = https://u\n[remote \"origin\"]\n\tfetch = +refs/*\n\turl = https://github.com/acme/app.git\n";
        assert_eq!(
            origin_url(config).as_deref(),
            Some("https://github.com/acme/app.git")
        );
        assert_eq!(origin_url("[core]\n"), None);
    }
}
