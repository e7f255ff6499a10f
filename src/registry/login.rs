//! `kiln login`: a credential checked against the registry (its `/v2/` challenge, as
//! `docker login` does), then stored in docker's `config.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::auth::{Credential, config_key, docker_config_dir};
use super::client::Session;
use super::reference::DOCKER_HUB;
use super::{RegistryError, RegistryOptions};

/// Checks `username`/`password` against `registry` (as `docker login` does: the `/v2/`
/// challenge, then a token or a Basic request), then stores them in `config.json` in
/// `config_dir` (or the default docker config directory): base64 `user:password` under
/// `auths.<registry>` (`https://index.docker.io/v1/` for Docker Hub), the file written
/// atomically with mode 0600 and every other key kept.
pub fn login(
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<PathBuf, RegistryError> {
    let registry = registry.to_ascii_lowercase();
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "https://index.docker.io/v1/" => {
            DOCKER_HUB.to_owned()
        }
        _ => registry,
    };
    let credential = Credential::basic(username, password);
    let options_with = options.clone().credential(&registry, credential);
    super::block_on(Session::verify_login(&registry, &options_with))?;
    let dir = docker_config_dir(options).ok_or_else(|| RegistryError::Credentials {
        action: "store",
        path: PathBuf::from("$HOME/.docker"),
        detail: "neither $DOCKER_CONFIG nor $HOME is set; pass a config directory".to_owned(),
    })?;
    store_login(&dir, &registry, username, password)
}

/// Writes the credential into `<dir>/config.json` (see [`login`]); returns the file's path.
pub fn store_login(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<PathBuf, RegistryError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = dir.join("config.json");
    let io = |action: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| RegistryError::Io {
            action,
            path: p,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create the docker config directory", dir))?;
    let mut config: serde_json::Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
            action: "store",
            path: path.clone(),
            detail: format!("the existing file is not valid JSON ({e}); fix or remove it"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(source) => return Err(io("read", &path)(source)),
    };
    let object = config
        .as_object_mut()
        .ok_or_else(|| RegistryError::Credentials {
            action: "store",
            path: path.clone(),
            detail: "the existing file is not a JSON object".to_owned(),
        })?;
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    if let Some(auths) = auths.as_object_mut() {
        auths.insert(
            config_key(registry).to_owned(),
            serde_json::json!({ "auth": BASE64.encode(format!("{username}:{password}")) }),
        );
    }
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| RegistryError::Credentials {
        action: "store",
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io("create a temp file in", dir))?;
    temp.write_all(&bytes)
        .and_then(|()| temp.write_all(b"\n"))
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io("write", temp.path()))?;
    temp.persist(&path)
        .map_err(|e| io("rename a temp file to", &path)(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::auth::{DOCKER_HUB_CONFIG_KEY, lookup};
    use super::*;

    #[test]
    fn store_then_lookup_config_json() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"other.io":"nothing"},"auths":{"keep.io":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        let path = store_login(dir.path(), "127.0.0.1:5000", "alice", "pa:ss").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        store_login(dir.path(), DOCKER_HUB, "bob", "pw").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("credHelpers") && text.contains("keep.io"),
            "{text}"
        );
        assert!(text.contains(DOCKER_HUB_CONFIG_KEY), "{text}");
        let options = RegistryOptions::default()
            .use_environment(false)
            .config_dir(dir.path());
        assert_eq!(
            lookup("127.0.0.1:5000", &options).unwrap(),
            Some(Credential::basic("alice", "pa:ss"))
        );
        assert_eq!(
            lookup("docker.io", &options).unwrap(),
            Some(Credential::basic("bob", "pw"))
        );
        assert_eq!(lookup("nowhere.io", &options).unwrap(), None);
        // A helper that does not exist is an error naming the registry, not a panic.
        let e = lookup("other.io", &options).unwrap_err().to_string();
        assert!(e.contains("other.io"), "{e}");
    }
}
