//! `RUN --mount=...` (BuildKit's syntax) and `--secret id=...` (buildx's syntax): parsing them,
//! and what each mount puts in the sandbox.
//!
//! kiln supports `type=bind` (a path of the context or of another stage, read-only unless
//! `rw`, whose writes are then discarded), `type=cache` (a directory kept between builds under
//! the cache directory, outside the image), `type=secret` (a file readable by the command only,
//! never in a layer), `type=ssh` (a proxy of an SSH agent given with `kiln build --ssh`) and
//! `type=tmpfs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One parsed `--mount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunMount {
    /// `type=cache`: a persistent directory at `target`.
    Cache {
        /// Where it appears inside.
        target: String,
        /// The cache's identity (`id=`, default: the target).
        id: String,
        /// `mode=` for a new cache directory (default 0755).
        mode: u32,
        /// `uid=` of a new cache directory.
        uid: u32,
        /// `gid=` of a new cache directory.
        gid: u32,
    },
    /// `type=secret`: the secret `id` as a file at `target`.
    Secret {
        /// The secret's id (`id=`, default: the target's file name).
        id: String,
        /// Where it appears inside (default `/run/secrets/<id>`).
        target: String,
        /// `required=true`: fail when the secret was not given.
        required: bool,
        /// `mode=` (default 0400).
        mode: u32,
        /// `uid=`.
        uid: u32,
        /// `gid=`.
        gid: u32,
    },
    /// `type=tmpfs`: an empty tmpfs at `target`.
    Tmpfs {
        /// Where it appears inside.
        target: String,
    },
    /// `type=ssh`: a socket at `target` that reaches the SSH agent `id` (through a proxy).
    Ssh {
        /// The agent's id (`id=`, default `default`).
        id: String,
        /// Where the socket appears inside (default `/run/buildkit/ssh_agent.N`).
        target: String,
        /// `required=true`: fail when the agent was not given.
        required: bool,
        /// `mode=` of the socket (default 0600).
        mode: u32,
        /// `uid=` of the socket.
        uid: u32,
        /// `gid=` of the socket.
        gid: u32,
    },
    /// `type=bind` (the default type): `source` of the context, or of the stage `from`.
    Bind {
        /// Where it appears inside.
        target: String,
        /// The path in the context or stage (default: its root).
        source: String,
        /// `from=`: a stage name or index instead of the context.
        from: Option<String>,
        /// `rw`: writable, the writes discarded after the command.
        writable: bool,
    },
}

impl RunMount {
    /// The path inside the sandbox.
    pub fn target(&self) -> &str {
        match self {
            RunMount::Cache { target, .. }
            | RunMount::Secret { target, .. }
            | RunMount::Tmpfs { target }
            | RunMount::Ssh { target, .. }
            | RunMount::Bind { target, .. } => target,
        }
    }

    /// What identifies the mount in the step cache key: never a secret's value.
    pub fn cache_identity(&self) -> String {
        match self {
            RunMount::Cache {
                target,
                id,
                mode,
                uid,
                gid,
            } => {
                format!("cache:{id}:{target}:{mode:o}:{uid}:{gid}")
            }
            RunMount::Secret {
                id,
                target,
                mode,
                uid,
                gid,
                ..
            } => {
                format!("secret:{id}:{target}:{mode:o}:{uid}:{gid}")
            }
            RunMount::Tmpfs { target } => format!("tmpfs:{target}"),
            RunMount::Ssh {
                id,
                target,
                mode,
                uid,
                gid,
                ..
            } => format!("ssh:{id}:{target}:{mode:o}:{uid}:{gid}"),
            // The content of the source is keyed by the build (see its step-cache key).
            RunMount::Bind {
                target,
                source,
                from,
                writable,
            } => format!(
                "bind:{}:{source}:{target}:{writable}",
                from.as_deref().unwrap_or("")
            ),
        }
    }
}

/// What a `type=bind` mount shows, prepared by the build from the context or a stage.
#[derive(Clone, Debug)]
pub struct BindSource {
    /// The source as `COPY SOURCE /` would place it: a directory's content, or one file.
    pub diff: crate::layer::Diff,
    /// The file's name when the source is not a directory.
    pub file_name: Option<String>,
}

/// Parses one `--mount` value (`type=cache,target=/root/.cache,id=pip`).
pub fn parse_mount(spec: &str) -> Result<RunMount, String> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), v.trim().to_owned()),
            // Bare flags: `ro`, `readonly`, `required`.
            None => (part.trim().to_lowercase(), "true".to_owned()),
        };
        let key = match key.as_str() {
            "dst" | "destination" => "target".to_owned(),
            "src" => "source".to_owned(),
            "readonly" => "ro".to_owned(),
            _ => key,
        };
        fields.insert(key, value);
    }
    let kind = fields.remove("type").unwrap_or_else(|| "bind".to_owned());
    let octal = |name: &str, default: u32| -> Result<u32, String> {
        match fields.get(name) {
            Some(v) => u32::from_str_radix(v, 8)
                .map_err(|_| format!("invalid {name}=`{v}` in --mount={spec}: expected octal")),
            None => Ok(default),
        }
    };
    let number = |name: &str| -> Result<u32, String> {
        match fields.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid {name}=`{v}` in --mount={spec}")),
            None => Ok(0),
        }
    };
    let target = fields.get("target").cloned();
    match kind.as_str() {
        "cache" => {
            let target = target.ok_or_else(|| format!("--mount={spec} needs a target"))?;
            if fields.contains_key("from") || fields.contains_key("source") {
                return Err(format!(
                    "--mount={spec}: a cache seeded from another stage (from=, source=) is not supported"
                ));
            }
            Ok(RunMount::Cache {
                id: fields.get("id").cloned().unwrap_or_else(|| target.clone()),
                mode: octal("mode", 0o755)?,
                uid: number("uid")?,
                gid: number("gid")?,
                target,
            })
        }
        "secret" => {
            let id = match (fields.get("id"), &target) {
                (Some(id), _) => id.clone(),
                (None, Some(target)) => target.rsplit('/').next().unwrap_or_default().to_owned(),
                (None, None) => return Err(format!("--mount={spec} needs an id or a target")),
            };
            if id.is_empty() {
                return Err(format!("--mount={spec} needs an id"));
            }
            if fields.contains_key("env") {
                return Err(format!(
                    "--mount={spec}: secrets as environment variables (env=) are not supported; \
                     read the file at its target instead"
                ));
            }
            Ok(RunMount::Secret {
                target: target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                required: fields.get("required").is_some_and(|v| v == "true"),
                mode: octal("mode", 0o400)?,
                uid: number("uid")?,
                gid: number("gid")?,
                id,
            })
        }
        "tmpfs" => Ok(RunMount::Tmpfs {
            target: target.ok_or_else(|| format!("--mount={spec} needs a target"))?,
        }),
        "bind" => Ok(RunMount::Bind {
            target: target.ok_or_else(|| format!("--mount={spec} needs a target"))?,
            source: fields
                .get("source")
                .cloned()
                .unwrap_or_else(|| "/".to_owned()),
            from: fields.get("from").cloned(),
            writable: ["rw", "readwrite"]
                .iter()
                .any(|flag| fields.get(*flag).is_some_and(|v| v == "true")),
        }),
        "ssh" => Ok(RunMount::Ssh {
            id: fields
                .get("id")
                .cloned()
                .unwrap_or_else(|| "default".to_owned()),
            // Numbered by the RUN (BuildKit's /run/buildkit/ssh_agent.N) when not given.
            target: target.unwrap_or_default(),
            required: fields.get("required").is_some_and(|v| v == "true"),
            mode: octal("mode", 0o600)?,
            uid: number("uid")?,
            gid: number("gid")?,
        }),
        other => Err(format!("--mount={spec}: unknown mount type `{other}`")),
    }
}

/// Where a `--secret` value comes from (the value itself is read only when a RUN uses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`.
    File(PathBuf),
    /// `env=VAR`.
    Env(String),
}

impl SecretSource {
    /// Reads the secret's bytes.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            SecretSource::File(path) => std::fs::read(path)
                .map_err(|e| format!("failed to read the secret file `{}`: {e}", path.display())),
            SecretSource::Env(var) => std::env::var_os(var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| format!("the secret's environment variable `{var}` is not set")),
        }
    }
}

/// Parses one `--ssh` value as buildx does: `ID` (the agent `$SSH_AUTH_SOCK` names) or
/// `ID=SOCKET`. Key files (`ID=KEY`) are refused: kiln forwards running agents only.
pub fn parse_ssh(spec: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = match spec.split_once('=') {
        Some((id, path)) => (id, PathBuf::from(path)),
        None => (
            spec,
            std::env::var_os("SSH_AUTH_SOCK")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    format!("--ssh {spec}: SSH_AUTH_SOCK is not set (give --ssh {spec}=SOCKET)")
                })?,
        ),
    };
    if id.is_empty() || id.contains(',') {
        return Err(format!("--ssh {spec}: invalid id `{id}`"));
    }
    if path.as_os_str().to_string_lossy().contains(',') {
        return Err(format!(
            "--ssh {spec}: several paths are key files, which kiln does not load; give an agent's socket"
        ));
    }
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => Ok((id.to_owned(), path)),
        Ok(_) => Err(format!(
            "--ssh {spec}: `{}` is not a socket; kiln forwards a running SSH agent (start \
             ssh-agent and ssh-add the key), not key files",
            path.display()
        )),
        Err(e) => Err(format!("--ssh {spec}: `{}`: {e}", path.display())),
    }
}

/// Parses one `--secret` value as buildx does: `id=NAME,src=FILE`, `id=NAME,env=VAR`, or
/// `id=NAME` alone (an environment variable of that name, else a file of that name).
pub fn parse_secret(spec: &str) -> Result<(String, SecretSource), String> {
    let mut id = None;
    let mut source = None;
    let mut kind = None;
    for part in spec.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid --secret `{spec}`: expected KEY=VALUE pairs"))?;
        match key.trim() {
            "id" => id = Some(value.to_owned()),
            "src" | "source" => source = Some(value.to_owned()),
            "env" => {
                source = Some(value.to_owned());
                kind = Some("env");
            }
            "type" => kind = Some(if value == "env" { "env" } else { "file" }),
            other => return Err(format!("invalid --secret `{spec}`: unknown key `{other}`")),
        }
    }
    let id = id
        .or_else(|| source.clone())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("invalid --secret `{spec}`: it needs an id"))?;
    let source = match (kind, source) {
        (Some("env"), Some(var)) => SecretSource::Env(var),
        (_, Some(file)) => SecretSource::File(PathBuf::from(file)),
        (_, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (_, None) => SecretSource::File(PathBuf::from(&id)),
    };
    Ok((id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_buildkit() {
        assert_eq!(
            parse_mount("type=cache,target=/root/.cache,id=pip").unwrap(),
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: "pip".into(),
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            parse_mount("type=secret,id=token").unwrap(),
            RunMount::Secret {
                id: "token".into(),
                target: "/run/secrets/token".into(),
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        assert!(matches!(
            parse_mount("type=secret,dst=/etc/key,required").unwrap(),
            RunMount::Secret { id, required: true, .. } if id == "key"
        ));
        assert_eq!(
            parse_mount("type=bind,source=.,target=/src").unwrap(),
            RunMount::Bind {
                target: "/src".into(),
                source: ".".into(),
                from: None,
                writable: false
            }
        );
        assert_eq!(
            parse_mount("from=build,dst=/out,rw").unwrap(),
            RunMount::Bind {
                target: "/out".into(),
                source: "/".into(),
                from: Some("build".into()),
                writable: true
            }
        );
        assert!(parse_mount("type=bind,source=.").is_err());
        assert_eq!(
            parse_mount("type=ssh,required").unwrap(),
            RunMount::Ssh {
                id: "default".into(),
                target: String::new(),
                required: true,
                mode: 0o600,
                uid: 0,
                gid: 0
            }
        );
        assert!(parse_mount("type=cache").is_err());
    }

    #[test]
    fn ssh_agents_must_be_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, "key").unwrap();
        let err = parse_ssh(&format!("default={}", file.display())).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        let socket = dir.path().join("agent");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(
            parse_ssh(&format!("git={}", socket.display())).unwrap(),
            ("git".to_owned(), socket.clone())
        );
        assert!(parse_ssh(&format!("default={},{}", file.display(), file.display())).is_err());
    }

    #[test]
    fn secrets_parse_like_buildx() {
        assert_eq!(
            parse_secret("id=npm,src=/home/me/.npmrc").unwrap(),
            ("npm".into(), SecretSource::File("/home/me/.npmrc".into()))
        );
        assert_eq!(
            parse_secret("id=tok,env=GITHUB_TOKEN").unwrap(),
            ("tok".into(), SecretSource::Env("GITHUB_TOKEN".into()))
        );
        assert!(parse_secret("src=").is_err());
    }
}
