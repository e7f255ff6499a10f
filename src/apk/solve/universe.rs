//! The solver's universe: every candidate package (repository index entries merged with the
//! installed ones by `C:`, plus virtual packages), indexed by the names it provides, and what
//! "a candidate satisfies a constraint" means (provides, versions, checksums, conflicts).

use std::collections::{BTreeMap, BTreeSet};

use crate::apk::checksum::Checksum;
use crate::apk::index::PackageInfo;
use crate::apk::{PackageConstraint, Requirement};

/// One choosable package.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its header.
    pub info: PackageInfo,
    /// Index of the repository it is available from (first listed wins), if any.
    pub repo: Option<usize>,
    /// True when it is the installed package (same `C:`).
    pub installed: bool,
    /// True for a virtual package `apk add --virtual` is creating: it exists only in the
    /// installed db, with no file to fetch.
    pub virtual_package: bool,
}

/// Every candidate, indexed by the names it provides.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    /// The candidates.
    pub candidates: Vec<Candidate>,
    /// Names for which `apk add -u` prefers the newest version over the installed one.
    pub(super) prefer_newest: BTreeSet<String>,
    by_name: BTreeMap<String, Vec<usize>>,
    by_checksum: BTreeMap<Checksum, usize>,
}

impl Universe {
    /// An empty universe.
    pub fn new() -> Universe {
        Universe::default()
    }

    /// Adds an index entry from repository `repo`; a package already present by `C:` (installed
    /// or in an earlier repository) only gains the repository.
    pub fn add_available(&mut self, info: PackageInfo, repo: usize) {
        if let Some(&idx) = self.by_checksum.get(&info.checksum) {
            let cand = &mut self.candidates[idx];
            if cand.repo.is_none() {
                cand.repo = Some(repo);
            }
            return;
        }
        self.push(Candidate {
            info,
            repo: Some(repo),
            installed: false,
            virtual_package: false,
        });
    }

    /// Adds an installed package; one already present by `C:` is marked installed.
    pub fn add_installed(&mut self, info: PackageInfo) {
        if let Some(&idx) = self.by_checksum.get(&info.checksum) {
            self.candidates[idx].installed = true;
            return;
        }
        self.push(Candidate {
            info,
            repo: None,
            installed: true,
            virtual_package: false,
        });
    }

    /// Adds the virtual package `apk add --virtual` creates (see [`Candidate::virtual_package`]).
    pub fn add_virtual(&mut self, info: PackageInfo) {
        self.push(Candidate {
            info,
            repo: None,
            installed: false,
            virtual_package: true,
        });
    }

    fn push(&mut self, cand: Candidate) {
        let idx = self.candidates.len();
        self.by_checksum.insert(cand.info.checksum, idx);
        let mut names = vec![cand.info.name.clone()];
        names.extend(cand.info.provides.iter().map(|p| p.name.clone()));
        for name in names {
            let list = self.by_name.entry(name).or_default();
            if !list.contains(&idx) {
                list.push(idx);
            }
        }
        self.candidates.push(cand);
    }

    /// `apk add -u ROOTS`: prefer the newest version of `roots` and of everything any of
    /// their candidates depends on, transitively, instead of what is installed.
    pub fn prefer_newest_for(&mut self, roots: &[String]) {
        let mut queue: Vec<String> = roots.to_vec();
        while let Some(name) = queue.pop() {
            if !self.prefer_newest.insert(name.clone()) {
                continue;
            }
            for &idx in self.providers(&name) {
                let info = &self.candidates[idx].info;
                queue.push(info.name.clone());
                queue.extend(
                    info.depends
                        .iter()
                        .filter(|d| !d.conflict)
                        .map(|d| d.name.clone()),
                );
            }
        }
    }

    pub(super) fn providers(&self, name: &str) -> &[usize] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The version `cand` provides `name` at: its own version for its name, the `p:` version,
    /// or `None` for an unversioned provide (or a name it does not provide).
    pub(super) fn provided_version<'c>(&self, cand: &'c Candidate, name: &str) -> Option<&'c str> {
        if cand.info.name == name {
            return Some(&cand.info.version);
        }
        cand.info
            .provides
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.version.as_deref())
    }

    pub(super) fn provides_name(&self, cand: &Candidate, name: &str) -> bool {
        cand.info.name == name || cand.info.provides.iter().any(|p| p.name == name)
    }

    /// True when `cand`, standing for `c.name`, satisfies `c` (a conflict inverts).
    pub fn satisfies(&self, cand: &Candidate, c: &PackageConstraint) -> bool {
        if !self.provides_name(cand, &c.name) {
            return c.conflict;
        }
        let ok = match &c.requirement {
            Requirement::Any => true,
            Requirement::Checksum(sum) => Checksum::parse(sum).ok() == Some(cand.info.checksum),
            Requirement::Version(..) => match self.provided_version(cand, &c.name) {
                // `matches` applies the conflict flag itself.
                Some(v) => return c.matches(v),
                None => false,
            },
        };
        ok != c.conflict
    }
}
