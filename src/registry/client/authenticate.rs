//! How a [`Session`] authenticates: the credential or Bearer token for the operation's scopes,
//! the challenge a 401 answers with, and the error when the registry still refuses.

use std::path::PathBuf;

use reqwest::header::HeaderValue;
use reqwest::{Method, Url};

use super::super::RegistryError;
use super::super::auth::{self, Challenge, Credential};
use super::Session;

impl Session {
    pub(super) fn scope_key(&self, extra: Option<&str>) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        if let Some(extra) = extra
            && !scopes.iter().any(|s| s == extra)
        {
            scopes.push(extra.to_owned());
        }
        scopes
    }

    /// The Authorization header for a request to the registry's own origin, if any.
    pub(super) async fn authorization(&self) -> Result<Option<HeaderValue>, RegistryError> {
        let mut state = self.auth.lock().await;
        let value = match state.challenge.clone() {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.credential.as_ref().and_then(auth::basic_header) {
                Some(header) => header,
                None => return Ok(None),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            }) => {
                let scopes = self.scope_key(scope.as_deref());
                let key = scopes.join(" ");
                let fresh = state.tokens.get(&key).filter(|t| t.is_fresh()).cloned();
                let token = match fresh {
                    Some(token) => token,
                    None => {
                        let token = auth::fetch_token(
                            &self.http,
                            &realm,
                            service.as_deref(),
                            &scopes,
                            self.credential.as_ref(),
                        )
                        .await?;
                        state.tokens.insert(key, token.clone());
                        token
                    }
                };
                format!("Bearer {}", token.value)
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| RegistryError::Credentials {
            action: "use",
            path: PathBuf::from(self.registry.clone()),
            detail: "the credential contains characters HTTP headers cannot carry".to_owned(),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Records the registry's challenge and drops cached tokens (they were refused).
    pub(super) async fn authenticate(
        &self,
        header: Option<&str>,
        url: &Url,
        method: &Method,
    ) -> Result<(), RegistryError> {
        let challenge = header.and_then(auth::parse_challenge);
        let Some(challenge) = challenge else {
            return Err(self.unauthorized(method, url, 401, None));
        };
        if challenge == Challenge::Basic
            && !matches!(self.credential, Some(Credential::Basic { .. }))
        {
            return Err(self.unauthorized(method, url, 401, None));
        }
        let mut state = self.auth.lock().await;
        state.tokens.clear();
        state.challenge = Some(challenge);
        Ok(())
    }

    pub(super) fn unauthorized(
        &self,
        method: &Method,
        url: &Url,
        status: u16,
        detail: Option<String>,
    ) -> RegistryError {
        let hint = match &self.credential {
            None => format!(
                "no credentials for `{0}`: run `kiln login {0}` or set {1}=user:password",
                self.registry,
                auth::env_var_name(&self.registry)
            ),
            Some(_) => format!(
                "the credentials for `{0}` were refused or lack permission; check them (`kiln login {0}`)",
                self.registry
            ),
        };
        RegistryError::Unauthorized {
            method: method.to_string(),
            url: self.effective(url).to_string(),
            status,
            detail,
            hint,
        }
    }
}
