//! Image references as Docker spells them: `[registry[:port]/]repository[:tag][@sha256:...]`.
//!
//! Parsing applies Docker's normalization: a first component without `.` or `:` that is not
//! `localhost` is a path component on Docker Hub, and single-component Hub names get the
//! `library/` prefix, so `python:3.11-alpine` is `docker.io/library/python:3.11-alpine`, served
//! by the API host `registry-1.docker.io`. A digest pins the image exactly and wins over a tag
//! (`name:tag@sha256:...` keeps the tag for display only). No tag and no digest means `latest`.
//!
//! [`Reference::transport`] decides how to reach the registry, as Docker does: HTTPS with a
//! verified certificate; for loopback registries (`localhost`, 127.0.0.0/8, `[::1]`) plain HTTP
//! when the port does not speak TLS; for insecure registries HTTPS without verification, then
//! plain HTTP.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Longest `host/name` accepted, as Docker's reference package does.
const MAX_NAME_LEN: usize = 255;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it, and the expected form.
    pub reason: String,
}

/// How kiln talks to a registry host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with the certificate verified (every host not listed below).
    Https,
    /// HTTPS with the certificate verified, or plain HTTP when the port does not speak TLS
    /// (loopback hosts).
    HttpsOrPlain,
    /// HTTPS without verifying the certificate, else plain HTTP (hosts listed with
    /// `--insecure-registry`, `insecure = true`, or every host with `--tls-verify=false`).
    Insecure,
}

impl Reference {
    /// A reference from its parts (already normalized; `registry` as in `docker.io` or
    /// `127.0.0.1:5000`). Validates each part as [`FromStr`] does.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &digest {
            text.push('@');
            text.push_str(&digest.to_string());
        }
        text.parse()
    }

    /// The registry as named: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) kiln sends API requests to: `registry-1.docker.io` for Docker Hub,
    /// the registry name otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path: `library/python`, `acme/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What the manifest endpoint is asked for: the digest when pinned (it wins), else the tag,
    /// else `latest`.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        Reference::new(&self.registry, &self.repository, Some(tag), None)
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// True for `localhost`, 127.0.0.0/8 and `[::1]` (with any port).
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }

    /// [`Transport::Insecure`] for hosts in `insecure` (compared with the registry name, with
    /// and without its port), [`Transport::HttpsOrPlain`] for loopback hosts,
    /// [`Transport::Https`] otherwise.
    pub fn transport(&self, insecure: &[String]) -> Transport {
        let host_only = split_port(&self.registry).0;
        if insecure
            .iter()
            .any(|h| h == &self.registry || h == host_only)
        {
            Transport::Insecure
        } else if self.is_loopback() {
            Transport::HttpsOrPlain
        } else {
            Transport::Https
        }
    }
}

/// `host[:port]` split into the host and the optional port (IPv6 hosts keep their brackets).
fn split_port(registry: &str) -> (&str, Option<&str>) {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => {
                let (host, rest) = registry.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (registry, None),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    }
}

/// True for `localhost`, 127.0.0.0/8 and `[::1]`, with or without a port.
pub fn host_is_loopback(registry: &str) -> bool {
    let host = split_port(registry).0;
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_name_component(s: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let bytes = s.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_tag(s: &str) -> bool {
    // [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_registry_host(s: &str) -> bool {
    let (host, port) = split_port(s);
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5)
    {
        return false;
    }
    if host.starts_with('[') {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        return host.ends_with(']') && bare.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(err(
                "it is empty; expected `[registry/]name[:tag][@sha256:...]`",
            ));
        }
        if input.trim() != input || input.contains(char::is_whitespace) {
            return Err(err("it contains whitespace"));
        }
        if input.contains("://") {
            return Err(err(
                "it has a URL scheme; write the reference without `docker://` or `https://`",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| err(&e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // The tag is after the last `:` that follows the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(err(&format!(
                "tag `{tag}` must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
            )));
        }
        if name.is_empty() {
            return Err(err("the repository name is empty"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                if !is_registry_host(first) {
                    return Err(err(&format!(
                        "`{first}` is not a valid registry host[:port]"
                    )));
                }
                (first.to_ascii_lowercase(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if let Some(bad) = repository.split('/').find(|c| !is_name_component(c)) {
            let reason = if bad.bytes().any(|b| b.is_ascii_uppercase()) {
                format!(
                    "repository component `{bad}` has uppercase letters; repository names must be lowercase"
                )
            } else if bad.is_empty() {
                "the repository has an empty path component (`//` or a trailing `/`)".to_owned()
            } else {
                format!(
                    "repository component `{bad}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`"
                )
            };
            return Err(err(&reason));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(err(&format!(
                "the name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/python:3.11-alpine`,
    /// `ghcr.io/a/b@sha256:...` (tag and digest both when both were given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// input, registry, repository, tag, has digest, api host
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
        &'static str,
    );

    #[test]
    fn normalization_table() {
        let cases: &[Case] = &[
            (
                "python:3.11-alpine",
                "docker.io",
                "library/python",
                Some("3.11-alpine"),
                false,
                "registry-1.docker.io",
            ),
            (
                "alpine",
                "docker.io",
                "library/alpine",
                None,
                false,
                "registry-1.docker.io",
            ),
            (
                "docker.io/alpine",
                "docker.io",
                "library/alpine",
                None,
                false,
                "registry-1.docker.io",
            ),
            (
                "index.docker.io/library/alpine:3",
                "docker.io",
                "library/alpine",
                Some("3"),
                false,
                "registry-1.docker.io",
            ),
            (
                "user/app",
                "docker.io",
                "user/app",
                None,
                false,
                "registry-1.docker.io",
            ),
            (
                "ghcr.io/acme/app:v1",
                "ghcr.io",
                "acme/app",
                Some("v1"),
                false,
                "ghcr.io",
            ),
            (
                "ghcr.io/acme/team/app",
                "ghcr.io",
                "acme/team/app",
                None,
                false,
                "ghcr.io",
            ),
            (
                "127.0.0.1:5000/app:1.0",
                "127.0.0.1:5000",
                "app",
                Some("1.0"),
                false,
                "127.0.0.1:5000",
            ),
            (
                "localhost/app",
                "localhost",
                "app",
                None,
                false,
                "localhost",
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000",
                "a/b",
                Some("t"),
                false,
                "localhost:5000",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000",
                "app",
                None,
                false,
                "[::1]:5000",
            ),
            (
                "Registry.Example.com/app",
                "registry.example.com",
                "app",
                None,
                false,
                "registry.example.com",
            ),
            (
                "python@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io",
                "library/python",
                None,
                true,
                "registry-1.docker.io",
            ),
            (
                "python:3.11@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io",
                "library/python",
                Some("3.11"),
                true,
                "registry-1.docker.io",
            ),
            (
                "a.b/c__d/e-f--g.h_i:T_1.0-x",
                "a.b",
                "c__d/e-f--g.h_i",
                Some("T_1.0-x"),
                false,
                "a.b",
            ),
        ];
        for (input, registry, repository, tag, pinned, api) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository(), *repository, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest().is_some(), *pinned, "{input}");
            assert_eq!(r.api_host(), *api, "{input}");
        }
    }

    #[test]
    fn digest_wins_over_tag() {
        let r: Reference = format!("python:3.11@{D}").parse().unwrap();
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/python:3.11@{D}"));
        let r: Reference = "python".parse().unwrap();
        assert_eq!(r.manifest_ref(), "latest");
    }

    #[test]
    fn malformed_table() {
        // input, a fragment the error must contain
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Python:3", "uppercase"),
            ("python:", "tag ``"),
            ("python:-bad", "tag `-bad`"),
            ("python@sha256:abc", "malformed digest"),
            ("python@md5:0123", "unsupported digest algorithm"),
            ("docker://alpine", "URL scheme"),
            ("ghcr.io/", "empty"),
            ("ghcr.io//x", "empty path component"),
            ("a b", "whitespace"),
            ("bad_host.:5000/x", "not a valid registry host"),
            ("host:port:5000/x", "not a valid registry host"),
            ("a/-b", "repository component `-b`"),
            ("a/b..c", "repository component `b..c`"),
        ];
        for (input, fragment) in cases {
            let e = input.parse::<Reference>().expect_err(input).to_string();
            assert!(e.contains(fragment), "{input}: {e}");
            assert!(e.contains("invalid image reference"), "{input}: {e}");
        }
        let long = format!("ghcr.io/{}", "a".repeat(300));
        assert!(long.parse::<Reference>().is_err());
    }

    #[test]
    fn transports() {
        let insecure = vec![
            "reg.internal:5000".to_owned(),
            "plain.example".to_owned(),
            "127.0.0.1:7000".to_owned(),
        ];
        let cases: &[(&str, Transport)] = &[
            ("127.0.0.1:5000/a", Transport::HttpsOrPlain),
            ("127.1.2.3/a", Transport::HttpsOrPlain),
            ("localhost:1234/a", Transport::HttpsOrPlain),
            ("[::1]:5000/a", Transport::HttpsOrPlain),
            ("127.0.0.1:7000/a", Transport::Insecure),
            ("ghcr.io/a/b", Transport::Https),
            ("alpine", Transport::Https),
            ("reg.internal:5000/a", Transport::Insecure),
            ("reg.internal:6000/a", Transport::Https),
            ("plain.example:8080/a", Transport::Insecure),
            ("10.0.0.1:5000/a", Transport::Https),
        ];
        for (input, transport) in cases {
            let r: Reference = input.parse().unwrap();
            assert_eq!(r.transport(&insecure), *transport, "{input}");
        }
    }
}
