//! Distributions already installed where pip looks, as candidates of the resolution, offered
//! the way pip's resolver offers them (`factory.py` `_iter_found_candidates`,
//! `found_candidates.py`).
//!
//! An installed version that satisfies every requirement on its project so far is a candidate
//! like the sources' versions, and its dependencies are its installed `Requires-Dist`. Where it
//! goes in the order depends on whether the project may be upgraded ([`Upgrade`]):
//!
//! - not eligible (no `--upgrade`; with `--upgrade`, a project the user did not name, unless
//!   the strategy is `eager`): the installed version first, then the sources' versions newest
//!   first without the installed one (pip's `_iter_built_with_prepended`);
//! - eligible: the sources' versions newest first, the installed one placed before the first
//!   version that is not newer than it, or last (pip's `_iter_built_with_inserted`), so an
//!   installed version equal to the newest is kept.
//!
//! What to do with a decided source version when another version is installed (replace it,
//! shadow it from the user site) is the installer's business, not the resolver's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::Requirement;

use super::{Dependencies, Provider, Versions};

/// One installed distribution, as its `.dist-info/METADATA` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledVersion {
    /// The name as its metadata spells it.
    pub display_name: String,
    /// The installed version.
    pub version: Version,
    /// Its `Requires-Dist`.
    pub requires_dist: Vec<Requirement>,
    /// The directory on the interpreter's path that holds it.
    pub location: String,
}

/// Which projects pip may upgrade past an installed version that satisfies the requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// No `--upgrade`: pip's `to-satisfy-only`.
    Never,
    /// `--upgrade` (strategy `only-if-needed`): the projects the user named (normalized).
    Named(BTreeSet<String>),
    /// `--upgrade --upgrade-strategy eager`: every project.
    Eager,
}

impl Upgrade {
    fn allows(&self, name: &str) -> bool {
        match self {
            Upgrade::Never => false,
            Upgrade::Named(names) => names.contains(name),
            Upgrade::Eager => true,
        }
    }
}

/// A candidate: the installed distribution, or one from the inner provider.
#[derive(Clone, Debug)]
pub enum Choice<D> {
    /// Keep what is installed.
    Installed(Arc<InstalledVersion>),
    /// Install this.
    New(D),
}

/// A [`Provider`] that adds the installed distributions (by normalized name) to `inner`'s.
pub struct WithInstalled<'a, P> {
    inner: &'a P,
    installed: BTreeMap<String, Arc<InstalledVersion>>,
    upgrade: Upgrade,
}

impl<'a, P: Provider> WithInstalled<'a, P> {
    /// `installed` maps normalized names to what pip would find installed for them.
    pub fn new(
        inner: &'a P,
        installed: BTreeMap<String, InstalledVersion>,
        upgrade: Upgrade,
    ) -> WithInstalled<'a, P> {
        WithInstalled {
            inner,
            installed: installed
                .into_iter()
                .map(|(name, dist)| (name, Arc::new(dist)))
                .collect(),
            upgrade,
        }
    }
}

/// The candidates in pip's order: `found` (newest first) with `installed` prepended when
/// upgrades are not allowed, else inserted before the first version not newer than it.
fn with_installed<D>(
    found: Vec<(Version, D)>,
    installed: Option<&Arc<InstalledVersion>>,
    prefers_installed: bool,
) -> Vec<(Version, Choice<D>)> {
    let Some(installed) = installed else {
        return found
            .into_iter()
            .map(|(v, d)| (v, Choice::New(d)))
            .collect();
    };
    let kept = || {
        (
            installed.version.clone(),
            Choice::Installed(installed.clone()),
        )
    };
    let mut out = Vec::with_capacity(found.len() + 1);
    if prefers_installed {
        out.push(kept());
        out.extend(
            found
                .into_iter()
                .filter(|(v, _)| *v != installed.version)
                .map(|(v, d)| (v, Choice::New(d))),
        );
        return out;
    }
    let mut placed = false;
    for (version, dist) in found {
        if !placed && installed.version >= version {
            out.push(kept());
            placed = true;
        }
        out.push((version, Choice::New(dist)));
    }
    if !placed {
        out.push(kept());
    }
    out
}

impl<P: Provider> Provider for WithInstalled<'_, P> {
    type Dist = Choice<P::Dist>;
    type Error = P::Error;

    fn versions(
        &self,
        name: &str,
        specifiers: &VersionSpecifiers,
    ) -> Result<Versions<Self::Dist>, Self::Error> {
        let versions = self.inner.versions(name, specifiers)?;
        // As pip: an installed version outside the specifiers is no candidate.
        let installed = self
            .installed
            .get(name)
            .filter(|dist| specifiers.contains(&dist.version));
        Ok(Versions {
            found: with_installed(versions.found, installed, !self.upgrade.allows(name)),
            why_none: versions.why_none,
        })
    }

    fn dependencies(
        &self,
        name: &str,
        version: &Version,
        dist: &Self::Dist,
    ) -> Result<Dependencies, Self::Error> {
        match dist {
            Choice::New(inner) => self.inner.dependencies(name, version, inner),
            // Installed: its Requires-Python is not checked again (pip does not).
            Choice::Installed(installed) => Ok(Dependencies {
                requires_dist: installed.requires_dist.clone(),
                display_name: installed.display_name.clone(),
                requires_other_python: None,
            }),
        }
    }

    fn prefetch(&self, names: &[String]) {
        self.inner.prefetch(names);
    }

    fn is_installed(&self, dist: &Self::Dist) -> bool {
        matches!(dist, Choice::Installed(_))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn v(text: &str) -> Version {
        Version::from_str(text).unwrap()
    }

    fn installed(version: &str) -> Arc<InstalledVersion> {
        Arc::new(InstalledVersion {
            display_name: "setuptools".into(),
            version: v(version),
            requires_dist: Vec::new(),
            location: "/usr/local/lib/python3.11/site-packages".into(),
        })
    }

    fn order(found: &[&str], installed_version: &str, prefers_installed: bool) -> Vec<String> {
        let found = found.iter().map(|x| (v(x), ())).collect();
        with_installed(
            found,
            Some(&installed(installed_version)),
            prefers_installed,
        )
        .into_iter()
        .map(|(version, choice)| match choice {
            Choice::Installed(_) => format!("installed {version}"),
            Choice::New(()) => version.to_string(),
        })
        .collect()
    }

    #[test]
    fn installed_first_unless_upgrading() {
        assert_eq!(
            order(&["80.1", "65.5.0", "60"], "65.5.0", true),
            ["installed 65.5.0", "80.1", "60"]
        );
        // Upgrading: the newest wins; an installed version equal to a source's comes first.
        assert_eq!(
            order(&["80.1", "65.5.0", "60"], "65.5.0", false),
            ["80.1", "installed 65.5.0", "65.5.0", "60"]
        );
        assert_eq!(order(&["80.1"], "81", false), ["installed 81", "80.1"]);
        assert_eq!(order(&["80.1"], "1", false), ["80.1", "installed 1"]);
    }

    #[test]
    fn upgrade_rules() {
        let named = Upgrade::Named(["gunicorn".to_owned()].into());
        assert!(named.allows("gunicorn") && !named.allows("packaging"));
        assert!(Upgrade::Eager.allows("packaging"));
        assert!(!Upgrade::Never.allows("gunicorn"));
    }
}
