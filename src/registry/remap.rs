//! Where a reference's registry really lives: the `[[registry]]` tables of
//! containers-registries.conf(5), the file podman, buildah and skopeo read.
//!
//! A table's `prefix` (`ghcr.io`, `ghcr.io/acme`, `docker.io/library/python`, or `*.example.com`)
//! matches a reference's `registry/repository` at a `/` boundary; the longest match wins. Its
//! `location` replaces the prefix for every operation (pull and push), so a pipeline written
//! for `ghcr.io/acme/app` runs unchanged against a registry on 127.0.0.1. `insecure = true`
//! makes the location (or mirror) an insecure registry as Docker means it: HTTPS without
//! verifying the certificate, else plain HTTP, `blocked = true` refuses the prefix,
//! `[[registry.mirror]]` entries are tried in order before the location when pulling
//! (`pull-from-mirror = "all" | "digest-only" | "tag-only"`, default `all`).
//!
//! The original reference stays the image's name: provenance, the reference cache and messages
//! record `ghcr.io/acme/app@sha256:...`, as BuildKit records a base pulled through a mirror.
//! Short-name settings (`unqualified-search-registries`, aliases) are ignored: kiln qualifies
//! short names as Docker does (`docker.io/library/...`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryError;
use super::reference::Reference;

/// The `[[registry]]` tables of one registries.conf file.
#[derive(Clone, Debug, Default)]
pub struct RegistryMap {
    origin: Option<PathBuf>,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
    pull_from_mirror: PullFromMirror,
}

#[derive(Clone, Debug)]
struct Mirror {
    location: String,
    insecure: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Deserialize)]
struct FileV2 {
    #[serde(default)]
    registry: Vec<TableV2>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TableV2 {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<MirrorV2>,
    #[serde(default)]
    pull_from_mirror: PullFromMirror,
}

#[derive(Deserialize)]
struct MirrorV2 {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// One place to try for a reference: the reference as the registry at that place names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The rewritten reference.
    pub reference: Reference,
}

impl RegistryMap {
    /// Parses registries.conf `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<RegistryMap, RegistryError> {
        let bad = |detail: String| {
            RegistryError::Usage(format!("registries.conf `{}`: {detail}", origin.display()))
        };
        let file: FileV2 = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut entries = Vec::new();
        for (index, table) in file.registry.into_iter().enumerate() {
            let which = format!("[[registry]] #{}", index + 1);
            let prefix = match (&table.prefix, &table.location) {
                (Some(prefix), _) => prefix.trim().to_owned(),
                (None, Some(location)) => location.trim().to_owned(),
                (None, None) => {
                    return Err(bad(format!("{which} has neither prefix nor location")));
                }
            };
            if prefix.is_empty() {
                return Err(bad(format!("{which} has an empty prefix")));
            }
            if names_tag_or_digest(&prefix) {
                return Err(bad(format!(
                    "{which}: prefix `{prefix}` names a tag or digest; kiln matches registries and repository namespaces only"
                )));
            }
            let location = table
                .location
                .as_deref()
                .map(|l| l.trim().trim_end_matches('/').to_owned())
                .unwrap_or_default();
            if prefix.starts_with("*.") && !location.is_empty() {
                return Err(bad(format!(
                    "{which}: a wildcard prefix `{prefix}` cannot have a location"
                )));
            }
            entries.push(Entry {
                location: if location.is_empty() {
                    prefix.clone()
                } else {
                    location
                },
                prefix,
                insecure: table.insecure,
                blocked: table.blocked,
                mirrors: table
                    .mirror
                    .into_iter()
                    .map(|m| Mirror {
                        location: m.location.trim().trim_end_matches('/').to_owned(),
                        insecure: m.insecure,
                    })
                    .collect(),
                pull_from_mirror: table.pull_from_mirror,
            });
        }
        Ok(RegistryMap {
            origin: Some(origin.to_owned()),
            entries,
        })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<RegistryMap, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RegistryError::Usage(format!(
                "cannot read registries.conf `{}`: {e}",
                path.display()
            ))
        })?;
        RegistryMap::parse(&text, path)
    }

    /// The file the containers tools would read: `$CONTAINERS_REGISTRIES_CONF`, else
    /// `$HOME/.config/containers/registries.conf`, else `/etc/containers/registries.conf`
    /// (the last two only when they exist). `None` when there is none.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            return Some(PathBuf::from(path));
        }
        let user = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".config/containers/registries.conf"));
        user.into_iter()
            .chain([PathBuf::from("/etc/containers/registries.conf")])
            .find(|path| path.is_file())
    }

    /// The places to try for `reference`, in order: for a pull, the mirrors that apply and then
    /// the location; for a push, the location only. A reference no table matches is its own
    /// single location. Fails when the matching table is `blocked`.
    pub fn locations(
        &self,
        reference: &Reference,
        for_pull: bool,
    ) -> Result<Vec<Location>, RegistryError> {
        let name = reference.name();
        let Some(entry) = self.matching(&name, reference.registry()) else {
            return Ok(vec![Location {
                reference: reference.clone(),
            }]);
        };
        if entry.blocked {
            return Err(RegistryError::Usage(format!(
                "`{reference}` is blocked by registries.conf `{}` (prefix `{}`)",
                self.origin_text(),
                entry.prefix
            )));
        }
        let mut out = Vec::new();
        let mirrors_apply = for_pull
            && match entry.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => reference.digest().is_some(),
                PullFromMirror::TagOnly => reference.digest().is_none(),
            };
        if mirrors_apply {
            for mirror in &entry.mirrors {
                out.push(Location {
                    reference: self.rewrite(reference, &entry.prefix, &mirror.location)?,
                });
            }
        }
        out.push(Location {
            reference: if entry.prefix.starts_with("*.") {
                reference.clone()
            } else {
                self.rewrite(reference, &entry.prefix, &entry.location)?
            },
        });
        Ok(out)
    }

    fn matching(&self, name: &str, registry: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|entry| match entry.prefix.strip_prefix("*.") {
                Some(domain) => {
                    let host = registry.split(':').next().unwrap_or(registry);
                    host.ends_with(&format!(".{domain}"))
                }
                None => {
                    name == entry.prefix
                        || name
                            .strip_prefix(entry.prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                }
            })
            // The longest prefix wins; a wildcard loses to any exact prefix.
            .max_by_key(|entry| {
                if entry.prefix.starts_with("*.") {
                    0
                } else {
                    entry.prefix.len() + 1
                }
            })
    }

    fn rewrite(
        &self,
        reference: &Reference,
        prefix: &str,
        location: &str,
    ) -> Result<Reference, RegistryError> {
        let name = reference.name();
        let rest = &name[prefix.len()..];
        let mut text = format!("{location}{rest}");
        if let Some(tag) = reference.tag() {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = reference.digest() {
            text.push('@');
            text.push_str(&digest.to_string());
        }
        text.parse::<Reference>().map_err(|e| {
            RegistryError::Usage(format!(
                "registries.conf `{}` maps `{reference}` to `{text}`, which is not a valid reference: {}",
                self.origin_text(),
                e.reason
            ))
        })
    }

    /// The registries (`host[:port]`) of every location and mirror marked `insecure`.
    pub fn insecure_hosts(&self) -> Vec<String> {
        let host = |location: &str| {
            location
                .split('/')
                .next()
                .unwrap_or(location)
                .to_ascii_lowercase()
        };
        let mut hosts = Vec::new();
        for entry in &self.entries {
            if entry.insecure {
                hosts.push(host(&entry.location));
            }
            hosts.extend(
                entry
                    .mirrors
                    .iter()
                    .filter(|m| m.insecure)
                    .map(|m| host(&m.location)),
            );
        }
        hosts
    }

    fn origin_text(&self) -> String {
        self.origin
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(built in)".to_owned())
    }
}

/// Whether a prefix goes below repository names (`repo:tag`, `repo@sha256:...`), which kiln does
/// not match on.
fn names_tag_or_digest(prefix: &str) -> bool {
    prefix.contains('@')
        || prefix
            .split_once('/')
            .is_some_and(|(_, path)| path.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> RegistryMap {
        RegistryMap::parse(text, Path::new("registries.conf")).unwrap()
    }

    /// Each place as text, with whether its registry is insecure.
    fn places(map: &RegistryMap, reference: &str, for_pull: bool) -> Vec<(String, bool)> {
        let insecure = map.insecure_hosts();
        map.locations(&reference.parse().unwrap(), for_pull)
            .unwrap()
            .into_iter()
            .map(|l| {
                let registry = l.reference.registry().to_owned();
                (l.reference.to_string(), insecure.contains(&registry))
            })
            .collect()
    }

    #[test]
    fn prefixes_rewrite_at_path_boundaries_and_the_longest_wins() {
        let m = map(r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "ghcr.io/acme"
location = "127.0.0.1:5000/acme"

[[registry]]
prefix = "ghcr.io/acme/base"
location = "127.0.0.1:6000/mirrored/base"
insecure = true

[[registry]]
prefix = "docker.io/library/python"
location = "127.0.0.1:5000/library/python"
"#);
        assert_eq!(
            places(&m, "ghcr.io/acme/app:latest", false),
            [("127.0.0.1:5000/acme/app:latest".to_owned(), false)]
        );
        assert_eq!(
            places(&m, "ghcr.io/acme/base/sub:1", true),
            [("127.0.0.1:6000/mirrored/base/sub:1".to_owned(), true)]
        );
        assert_eq!(
            places(&m, "python:3.11-alpine", true),
            [(
                "127.0.0.1:5000/library/python:3.11-alpine".to_owned(),
                false
            )]
        );
        // `ghcr.io/acmecorp` does not start at a boundary of `ghcr.io/acme`.
        assert_eq!(
            places(&m, "ghcr.io/acmecorp/app", true),
            [("ghcr.io/acmecorp/app".to_owned(), false)]
        );
        let pinned = format!("ghcr.io/acme/app@sha256:{}", "a".repeat(64));
        assert_eq!(
            places(&m, &pinned, true),
            [(
                format!("127.0.0.1:5000/acme/app@sha256:{}", "a".repeat(64)),
                false
            )]
        );
    }

    #[test]
    fn mirrors_come_first_for_pulls_only_and_follow_pull_from_mirror() {
        let m = map(r#"
[[registry]]
location = "docker.io"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "mirror.internal:5000"
insecure = true

[[registry]]
prefix = "quay.io"
location = "quay.io"
[[registry.mirror]]
location = "m1.internal/quay"
[[registry.mirror]]
location = "m2.internal/quay"
"#);
        let pinned = format!("alpine@sha256:{}", "b".repeat(64));
        assert_eq!(
            places(&m, &pinned, true),
            [
                (
                    format!(
                        "mirror.internal:5000/library/alpine@sha256:{}",
                        "b".repeat(64)
                    ),
                    true
                ),
                (
                    format!("docker.io/library/alpine@sha256:{}", "b".repeat(64)),
                    false
                ),
            ]
        );
        assert_eq!(
            places(&m, "alpine:3", true).len(),
            1,
            "digest-only skips tags"
        );
        assert_eq!(
            places(&m, "quay.io/x/y:1", true),
            [
                ("m1.internal/quay/x/y:1".to_owned(), false),
                ("m2.internal/quay/x/y:1".to_owned(), false),
                ("quay.io/x/y:1".to_owned(), false),
            ]
        );
        assert_eq!(
            places(&m, "quay.io/x/y:1", false).len(),
            1,
            "pushes skip mirrors"
        );
    }

    #[test]
    fn blocked_wildcard_and_bad_tables_are_named() {
        let m = map(r#"
[[registry]]
prefix = "*.untrusted.example"
blocked = true
"#);
        let err = m
            .locations(&"reg.untrusted.example/a/b:1".parse().unwrap(), true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blocked by registries.conf `registries.conf`"),
            "{err}"
        );
        assert_eq!(places(&m, "untrusted.example.org/a:1", true).len(), 1);

        for (text, expected) in [
            (
                "[[registry]]\ninsecure = true\n",
                "#1 has neither prefix nor location",
            ),
            (
                "[[registry]]\nprefix = \"*.a.example\"\nlocation = \"b.example\"\n",
                "cannot have a location",
            ),
            (
                "[[registry]]\nprefix = \"ghcr.io/a/b:tag\"\n",
                "names a tag or digest",
            ),
            ("[[registry]\n", "registries.conf `x.conf`"),
        ] {
            let err = RegistryMap::parse(text, Path::new("x.conf"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
