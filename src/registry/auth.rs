//! Registry authentication: credentials, the `WWW-Authenticate` challenge, Bearer tokens and
//! `login`.
//!
//! Credentials for a registry come from the first source that has them:
//! 1. [`RegistryOptions::credential`](super::RegistryOptions::credential) (the CLI's flags);
//! 2. `KILN_REGISTRY_AUTH_<HOST>=user:password`, where `<HOST>` is the registry name as in the
//!    reference (`docker.io`, `ghcr.io`, `127.0.0.1:5000`) upper-cased with every character
//!    other than `A-Z`/`0-9` replaced by `_`: `KILN_REGISTRY_AUTH_GHCR_IO`,
//!    `KILN_REGISTRY_AUTH_127_0_0_1_5000` (see [`env_var_name`]);
//! 3. docker's `config.json` (`$DOCKER_CONFIG`, else `$HOME/.docker`, or the configured
//!    directory): `auths`, `credHelpers` and `credsStore`, read through the
//!    `docker_credential` crate; Docker Hub's key is `https://index.docker.io/v1/`;
//! 4. podman's `auth.json`: `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`;
//! 5. for `ghcr.io` only: `GITHUB_TOKEN`, else `GH_TOKEN` (user `$GITHUB_ACTOR`, else `kiln`;
//!    GHCR accepts any non-empty user name with a token).
//!
//! A [`Credential`]'s `Debug` prints no secret. Tokens are requested with every scope the
//! operation needs at once (push on the target first, then pull on a mount source), as the
//! Docker token protocol allows: `GET <realm>?service=..&scope=..&scope=..` with Basic
//! credentials, or the OAuth2 `POST` when the credential is an identity (refresh) token.
//! `kiln login` (checking a credential, then storing it) is in [`super::login`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::reference::DOCKER_HUB;
use super::{RegistryError, RegistryOptions};

/// The config.json key docker uses for Docker Hub.
pub(crate) const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";
/// Token lifetime assumed when the server sends none (the protocol's documented default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires, so a request never races its expiry.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// A registry credential. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An OAuth2 identity (refresh) token, as docker stores for `<token>` logins.
    IdentityToken(String),
}

impl Credential {
    /// A user name and password.
    pub fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Parses `user:password` (the password may contain `:`).
    pub fn from_user_password(text: &str) -> Option<Credential> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty()).then(|| Credential::basic(user, password))
    }

    fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                BASE64.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }

    fn username(&self) -> Option<&str> {
        match self {
            Credential::Basic { username, .. } => Some(username),
            Credential::IdentityToken(_) => None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// The environment variable that holds `user:password` for `registry`:
/// `KILN_REGISTRY_AUTH_` + the registry name upper-cased with every non-alphanumeric
/// character replaced by `_` (`127.0.0.1:5000` -> `KILN_REGISTRY_AUTH_127_0_0_1_5000`).
pub fn env_var_name(registry: &str) -> String {
    let mangled: String = registry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KILN_REGISTRY_AUTH_{mangled}")
}

/// The directory holding docker's `config.json`: the configured one, else `$DOCKER_CONFIG`,
/// else `$HOME/.docker`.
pub fn docker_config_dir(options: &RegistryOptions) -> Option<PathBuf> {
    if let Some(dir) = &options.config_dir {
        return Some(dir.clone());
    }
    if !options.use_environment {
        return None;
    }
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))
}

pub(crate) fn config_key(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY
    } else {
        registry
    }
}

/// Finds the credential for `registry` (a reference's registry name), or None for anonymous
/// access. See the module docs for the order.
pub fn lookup(
    registry: &str,
    options: &RegistryOptions,
) -> Result<Option<Credential>, RegistryError> {
    let registry = registry.to_ascii_lowercase();
    if let Some((_, credential)) = options.credentials.iter().find(|(r, _)| r == &registry) {
        return Ok(Some(credential.clone()));
    }
    if options.use_environment {
        let var = env_var_name(&registry);
        if let Some(value) = std::env::var_os(&var) {
            let value = value.to_string_lossy();
            return match Credential::from_user_password(&value) {
                Some(credential) => Ok(Some(credential)),
                None => Err(RegistryError::Credentials {
                    action: "read",
                    path: PathBuf::from(format!("${var}")),
                    detail: "expected `user:password`".to_owned(),
                }),
            };
        }
    }
    if let Some(dir) = docker_config_dir(options)
        && let Some(credential) = from_config_file(&dir.join("config.json"), &registry)?
    {
        return Ok(Some(credential));
    }
    if options.use_environment {
        let podman = std::env::var_os("REGISTRY_AUTH_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_RUNTIME_DIR")
                    .map(|d| PathBuf::from(d).join("containers").join("auth.json"))
            });
        if let Some(file) = podman
            && let Some(credential) = from_config_file(&file, &registry)?
        {
            return Ok(Some(credential));
        }
        if registry == "ghcr.io" {
            let token = std::env::var("GITHUB_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| std::env::var("GH_TOKEN").ok().filter(|t| !t.is_empty()));
            if let Some(token) = token {
                let user = std::env::var("GITHUB_ACTOR")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "kiln".to_owned());
                return Ok(Some(Credential::basic(&user, &token)));
            }
        }
    }
    Ok(None)
}

/// Reads the credential for `registry` from a docker `config.json` or podman `auth.json`
/// (same format). A missing file or entry is `None`.
fn from_config_file(path: &Path, registry: &str) -> Result<Option<Credential>, RegistryError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::Io {
                action: "open the credentials file",
                path: path.to_owned(),
                source,
            });
        }
    };
    let error = |detail: String| RegistryError::Credentials {
        action: "read",
        path: path.to_owned(),
        detail,
    };
    match docker_credential::get_credential_from_reader(
        std::io::BufReader::new(file),
        config_key(registry),
    ) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some(Credential::Basic { username, password }))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credential::IdentityToken(token))),
        Err(E::NoCredentialConfigured) => Ok(None),
        // The helper's output may hold a secret: name the helper only.
        Err(E::HelperFailure { helper, .. }) => Err(error(format!(
            "credential helper `{helper}` failed for `{registry}`; run `{helper} get` to see why"
        ))),
        Err(E::HelperCommunicationError) => Err(error(match configured_helper(path, registry) {
            Some(helper) => format!(
                "credential helper `docker-credential-{helper}` for `{registry}` could not be run or failed; is it on PATH? run `docker-credential-{helper} get` to see why"
            ),
            None => format!(
                "could not run the credential helper configured for `{registry}` (is docker-credential-<name> on PATH?)"
            ),
        })),
        Err(E::ConfigReadError) => Err(error("the file is not valid JSON".to_owned())),
        Err(other) => Err(error(format!("{other} (entry for `{registry}`)"))),
    }
}

/// The helper name `config.json` at `path` gives for `registry` (`credHelpers`, else
/// `credsStore`), for messages.
fn configured_helper(path: &Path, registry: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["credHelpers"][config_key(registry)]
        .as_str()
        .or_else(|| config["credsStore"].as_str())
        .map(str::to_owned)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`: send the credential on every request.
    Basic,
    /// `Bearer realm=..,service=..,scope=..`: fetch a token.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` to ask the token for.
        service: Option<String>,
        /// The `scope` the registry asked for.
        scope: Option<String>,
        /// The registry's `error` (`insufficient_scope`, ...).
        error: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (`Bearer k="v",k2="v,2"` or `Basic realm="x"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        })
    } else {
        None
    }
}

fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            value = value.trim().to_owned();
        }
        out.push((key, value));
    }
    out
}

/// A bearer token and when to stop using it. `Debug` redacts the token.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() + TOKEN_MARGIN < self.expires
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Fetches a token from `realm` for `scopes` (in order; the first is what a few registries
/// look at). `registry_url` is only for error messages.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credential: Option<&Credential>,
) -> Result<Token, RegistryError> {
    let url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
        method: "GET".to_owned(),
        url: realm.to_owned(),
        status: 401,
        detail: Some(format!("the registry's token realm is not a URL: {e}")),
        hint: "the registry's auth configuration is broken; report it to its operator".to_owned(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::Unauthorized {
            method: "GET".to_owned(),
            url: realm.to_owned(),
            status: 401,
            detail: Some("the token realm is not an http(s) URL".to_owned()),
            hint: "the registry's auth configuration is broken".to_owned(),
        });
    }
    let request = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            let mut form: Vec<(&str, String)> = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", refresh.clone()),
                ("client_id", "kiln".to_owned()),
                ("scope", scopes.join(" ")),
            ];
            if let Some(service) = service {
                form.push(("service", service.to_owned()));
            }
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            http.post(url.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        }
        _ => {
            let mut url = url.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(user) = credential.and_then(Credential::username) {
                    query.append_pair("account", user);
                }
                query.append_pair("client_id", "kiln");
            }
            let mut request = http.get(url);
            if let Some(header) = credential.and_then(Credential::basic_header) {
                let mut value = reqwest::header::HeaderValue::from_str(&header).map_err(|_| {
                    RegistryError::Credentials {
                        action: "use",
                        path: PathBuf::from(realm),
                        detail: "the user name or password contains characters HTTP headers cannot carry".to_owned(),
                    }
                })?;
                value.set_sensitive(true);
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            request
        }
    };
    let response = request.send().await.map_err(|e| RegistryError::Connect {
        action: "request a token from".to_owned(),
        url: realm.to_owned(),
        detail: crate::http::classify(&e).detail,
        hint: None,
    })?;
    let status = response.status();
    if status == 401 || status == 403 {
        return Err(RegistryError::Unauthorized {
            method: "GET".to_owned(),
            url: realm.to_owned(),
            status: status.as_u16(),
            detail: None,
            hint: if credential.is_some() {
                "the token server refused the credentials; check the user name and password (`kiln login`)".to_owned()
            } else {
                "the registry needs credentials: run `kiln login` or set KILN_REGISTRY_AUTH_<HOST>"
                    .to_owned()
            },
        });
    }
    if !status.is_success() {
        return Err(RegistryError::Status {
            method: "GET".to_owned(),
            url: realm.to_owned(),
            status: status.as_u16(),
            detail: Some("the token server failed".to_owned()),
            hint: None,
        });
    }
    let bytes = response.bytes().await.map_err(|e| RegistryError::Connect {
        action: "read a token from".to_owned(),
        url: realm.to_owned(),
        detail: crate::http::classify(&e).detail,
        hint: None,
    })?;
    let parsed: TokenResponse =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidDocument {
            what: "token response".to_owned(),
            url: realm.to_owned(),
            detail: e.to_string(),
        })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::InvalidDocument {
            what: "token response".to_owned(),
            url: realm.to_owned(),
            detail: "neither `token` nor `access_token` is set".to_owned(),
        })?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .max(DEFAULT_TOKEN_LIFETIME);
    Ok(Token {
        value,
        expires: Instant::now() + lifetime,
    })
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an `Authorization: Basic` header for `credential`, when it is a user/password.
pub(crate) fn basic_header(credential: &Credential) -> Option<String> {
    credential.basic_header()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let cases: &[(&str, Option<Challenge>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/alpine:pull".into()),
                    error: None,
                }),
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5003/token",service="test-registry",scope="repository:tok/img:pull,push",error="insufficient_scope""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:5003/token".into(),
                    service: Some("test-registry".into()),
                    scope: Some("repository:tok/img:pull,push".into()),
                    error: Some("insufficient_scope".into()),
                }),
            ),
            (r#"Basic realm="basic-realm""#, Some(Challenge::Basic)),
            ("basic", Some(Challenge::Basic)),
            (r#"Bearer service="x""#, None),
            ("Negotiate abc", None),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_challenge(header), expected, "{header}");
        }
    }

    #[test]
    fn env_var_names() {
        let cases = [
            ("ghcr.io", "KILN_REGISTRY_AUTH_GHCR_IO"),
            ("127.0.0.1:5000", "KILN_REGISTRY_AUTH_127_0_0_1_5000"),
            ("docker.io", "KILN_REGISTRY_AUTH_DOCKER_IO"),
            (
                "my-reg.example.com",
                "KILN_REGISTRY_AUTH_MY_REG_EXAMPLE_COM",
            ),
        ];
        for (host, var) in cases {
            assert_eq!(env_var_name(host), var);
        }
    }

    #[test]
    fn debug_redacts() {
        let c = Credential::basic("alice", "s3cret-value");
        let text = format!("{c:?}");
        assert!(
            text.contains("alice") && !text.contains("s3cret-value"),
            "{text}"
        );
        let t = format!("{:?}", Credential::IdentityToken("tok-123".into()));
        assert!(!t.contains("tok-123"));
        let options = RegistryOptions::default().credential("x.io", c);
        assert!(!format!("{options:?}").contains("s3cret"));
    }
}
