//! Choosing the package set: the universe of candidates (repository index entries merged with
//! installed packages by `C:`) and a deterministic solver for `apk upgrade` and `apk add`
//! (apk.md §7.1-§7.3), producing a printable [`Plan`]. No network, nothing written.
//!
//! The solver walks world's constraints breadth first; for each required name it picks, among
//! the providers that satisfy every constraint known for that name, the best by apk's
//! preference order (§7.2, simplified): installed first when not upgrading (`apk add`), then
//! the higher version provided for the requested name, then installed, then higher
//! `provider_priority`, then the first-listed repository. A package's name and provides are
//! then resolved to it and its dependencies queued. When a later constraint (or a `!conflict`)
//! rejects an earlier choice, the constraint is learned and the solve restarts; a name no
//! provider can satisfy is reported with every constraint and who asked for it. `install_if`
//! packages join when every `i:` condition holds for the chosen set. The final set is the
//! closure of world: installed packages outside it are removed.
//!
//! Simplifications (apk's full solver differs in corner cases): no backtracking beyond learned
//! constraints, repository pinning (`@tag`) is not applied, and versioned-provide exclusivity
//! is not enforced between different package names.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::index::PackageInfo;
use super::version;
use super::{ApkError, PackageConstraint, Requirement};

mod universe;

pub use universe::{Candidate, Universe};

/// `apk upgrade` or `apk add`/`apk del`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Prefer the newest version of every package (`apk upgrade`, also with `--latest`).
    Upgrade,
    /// Prefer what the repositories have, then the newest: installed packages no repository
    /// offers are replaced, downgraded if need be (`apk upgrade --available`).
    UpgradeAvailable,
    /// Prefer installed versions (`apk add`, `apk del`).
    Add,
}

/// What happens to one package name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Not installed before.
    Install,
    /// A newer version.
    Upgrade,
    /// An older version.
    Downgrade,
    /// Same version, other `C:`.
    Replace,
    /// No longer required.
    Remove,
}

/// One change of the plan.
#[derive(Clone, Debug)]
pub struct Change {
    /// What happens.
    pub kind: ChangeKind,
    /// The installed package, if any.
    pub old: Option<PackageInfo>,
    /// The package to install (index into [`Universe::candidates`]), if any.
    pub new: Option<usize>,
    /// The new package's header.
    pub new_info: Option<PackageInfo>,
}

/// The result of solving: changes in apply order (dependencies first, removals last).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The changes.
    pub changes: Vec<Change>,
    /// The world the plan satisfies.
    pub world: Vec<PackageConstraint>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.changes.len();
        if total == 0 {
            return writeln!(f, "OK: nothing to do");
        }
        for (i, change) in self.changes.iter().enumerate() {
            let n = i + 1;
            let old = change.old.as_ref();
            let new = change.new_info.as_ref();
            match (&change.kind, old, new) {
                (ChangeKind::Install, _, Some(p)) => {
                    writeln!(f, "({n}/{total}) Installing {} ({})", p.name, p.version)?
                }
                (ChangeKind::Remove, Some(o), _) => {
                    writeln!(f, "({n}/{total}) Purging {} ({})", o.name, o.version)?
                }
                (kind, Some(o), Some(p)) => {
                    let verb = match kind {
                        ChangeKind::Upgrade => "Upgrading",
                        ChangeKind::Downgrade => "Downgrading",
                        _ => "Replacing",
                    };
                    writeln!(
                        f,
                        "({n}/{total}) {verb} {} ({} -> {})",
                        p.name, o.version, p.version
                    )?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A constraint and who asked for it (`world`, or a package `name-version`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Need {
    constraint: PackageConstraint,
    by: String,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.by, self.constraint)
    }
}

enum Attempt {
    Done(BTreeMap<String, usize>),
    Learn(Need),
}

/// Solves `world` over `universe` (see the module docs); `installed` are the currently
/// installed packages (for the changeset).
pub fn solve(
    universe: &Universe,
    world: &[PackageConstraint],
    installed: &[PackageInfo],
    mode: Mode,
) -> Result<Plan, ApkError> {
    let mut learned: Vec<Need> = Vec::new();
    let chosen = loop {
        match attempt(universe, world, mode, &learned)? {
            Attempt::Done(chosen) => break chosen,
            Attempt::Learn(need) => {
                if learned.contains(&need) || learned.len() > 1000 {
                    return Err(ApkError::Unsatisfiable(format!(
                        "  {need} cannot be satisfied"
                    )));
                }
                learned.push(need);
            }
        }
    };
    Ok(Plan {
        changes: changeset(universe, world, installed, &chosen),
        world: world.to_vec(),
    })
}

fn attempt(
    universe: &Universe,
    world: &[PackageConstraint],
    mode: Mode,
    learned: &[Need],
) -> Result<Attempt, ApkError> {
    // Package name -> candidate; any provided name -> candidate.
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    let mut resolved: BTreeMap<String, usize> = BTreeMap::new();
    let mut needs: Vec<Need> = Vec::new();
    let mut queue: VecDeque<Need> = world
        .iter()
        .map(|c| Need {
            constraint: c.clone(),
            by: "world".into(),
        })
        .collect();
    let mut install_if_done: BTreeSet<usize> = BTreeSet::new();
    loop {
        while let Some(need) = queue.pop_front() {
            let c = &need.constraint;
            needs.push(need.clone());
            if c.conflict {
                if let Some(&idx) = resolved.get(&c.name) {
                    if !universe.satisfies(&universe.candidates[idx], c) {
                        return Ok(Attempt::Learn(need));
                    }
                }
                continue;
            }
            if let Some(&idx) = resolved.get(&c.name) {
                if universe.satisfies(&universe.candidates[idx], c) {
                    continue;
                }
                return Ok(Attempt::Learn(need));
            }
            let known: Vec<&Need> = learned
                .iter()
                .chain(needs.iter())
                .filter(|n| n.constraint.name == c.name)
                .collect();
            let conflicts: Vec<&Need> = needs.iter().filter(|n| n.constraint.conflict).collect();
            let ok: Vec<usize> = universe
                .providers(&c.name)
                .iter()
                .copied()
                .filter(|&idx| {
                    let cand = &universe.candidates[idx];
                    cand.info.unknown_upper.is_empty()
                        && known
                            .iter()
                            .all(|n| universe.satisfies(cand, &n.constraint))
                        && chosen
                            .get(&cand.info.name)
                            .is_none_or(|&other| other == idx)
                        && conflicts
                            .iter()
                            .all(|n| universe.satisfies(cand, &n.constraint))
                        && learned
                            .iter()
                            .filter(|n| n.constraint.name == cand.info.name)
                            .all(|n| universe.satisfies(cand, &n.constraint))
                })
                .collect();
            let Some(best) = ok
                .iter()
                .copied()
                .max_by(|&a, &b| prefer(universe, &c.name, mode, a, b))
            else {
                return Err(unsatisfiable(universe, &c.name, &known, learned));
            };
            let cand = &universe.candidates[best];
            chosen.insert(cand.info.name.clone(), best);
            resolved.insert(cand.info.name.clone(), best);
            for p in &cand.info.provides {
                resolved.entry(p.name.clone()).or_insert(best);
            }
            // Constraints seen earlier on names this package now provides must still hold.
            for earlier in needs
                .iter()
                .filter(|n| resolved.get(&n.constraint.name) == Some(&best))
            {
                if !universe.satisfies(cand, &earlier.constraint) {
                    return Ok(Attempt::Learn(earlier.clone()));
                }
            }
            for dep in &cand.info.depends {
                queue.push_back(Need {
                    constraint: dep.clone(),
                    by: cand.info.id(),
                });
            }
        }
        // install_if: a package joins when each of its conditions holds for the chosen set.
        let mut joined = false;
        for (idx, cand) in universe.candidates.iter().enumerate() {
            if cand.info.install_if.is_empty()
                || chosen.contains_key(&cand.info.name)
                || install_if_done.contains(&idx)
            {
                continue;
            }
            let holds = cand.info.install_if.iter().all(|cond| {
                resolved
                    .get(&cond.name)
                    .is_some_and(|&r| universe.satisfies(&universe.candidates[r], cond))
            });
            if holds {
                install_if_done.insert(idx);
                queue.push_back(Need {
                    constraint: PackageConstraint {
                        name: cand.info.name.clone(),
                        tag: None,
                        requirement: Requirement::Any,
                        conflict: false,
                    },
                    by: format!("install_if of {}", cand.info.id()),
                });
                joined = true;
                break;
            }
        }
        if !joined {
            break;
        }
    }
    Ok(Attempt::Done(chosen))
}

/// apk's preference between two providers of `name` (Greater = `a` is better).
fn prefer(universe: &Universe, name: &str, mode: Mode, a: usize, b: usize) -> Ordering {
    let ca = &universe.candidates[a];
    let cb = &universe.candidates[b];
    let installed = ca.installed.cmp(&cb.installed);
    if mode == Mode::Add && installed != Ordering::Equal && !universe.prefer_newest.contains(name) {
        return installed;
    }
    if mode == Mode::UpgradeAvailable {
        let available = ca.repo.is_some().cmp(&cb.repo.is_some());
        if available != Ordering::Equal {
            return available;
        }
    }
    let va = universe.provided_version(ca, name);
    let vb = universe.provided_version(cb, name);
    let by_version = match (va, vb) {
        (Some(x), Some(y)) => version::compare(x, y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    };
    by_version
        .then_with(|| {
            if ca.info.name == cb.info.name {
                version::compare(&ca.info.version, &cb.info.version)
            } else {
                Ordering::Equal
            }
        })
        .then(installed)
        .then_with(|| {
            ca.info
                .provider_priority
                .unwrap_or(0)
                .cmp(&cb.info.provider_priority.unwrap_or(0))
        })
        // Lower repository index wins; installed-only candidates come last.
        .then_with(|| {
            cb.repo
                .unwrap_or(usize::MAX)
                .cmp(&ca.repo.unwrap_or(usize::MAX))
        })
        .then_with(|| cb.info.name.cmp(&ca.info.name))
}

fn unsatisfiable(universe: &Universe, name: &str, known: &[&Need], learned: &[Need]) -> ApkError {
    let mut lines: Vec<String> = Vec::new();
    let providers: Vec<String> = universe
        .providers(name)
        .iter()
        .map(|&i| universe.candidates[i].info.id())
        .collect();
    if providers.is_empty() {
        lines.push(format!("  {name} (no such package):"));
    } else {
        lines.push(format!("  {name} (available: {}):", providers.join(", ")));
    }
    let mut seen = BTreeSet::new();
    for need in known
        .iter()
        .copied()
        .chain(learned.iter().filter(|n| n.constraint.name == name))
    {
        let text = need.to_string();
        if seen.insert(text.clone()) {
            lines.push(format!("    required by: {text}"));
        }
    }
    ApkError::Unsatisfiable(lines.join("\n"))
}

fn changeset(
    universe: &Universe,
    world: &[PackageConstraint],
    installed: &[PackageInfo],
    chosen: &BTreeMap<String, usize>,
) -> Vec<Change> {
    let old: BTreeMap<&str, &PackageInfo> =
        installed.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut order: Vec<usize> = Vec::new();
    let mut visiting: BTreeSet<usize> = BTreeSet::new();
    let mut starts: Vec<&str> = world
        .iter()
        .filter(|c| !c.conflict)
        .map(|c| c.name.as_str())
        .collect();
    starts.sort_by_key(|n| n.to_ascii_lowercase());
    let resolve = |name: &str| -> Option<usize> {
        chosen.get(name).copied().or_else(|| {
            chosen
                .values()
                .copied()
                .find(|&i| universe.provides_name(&universe.candidates[i], name))
        })
    };
    fn visit(
        idx: usize,
        universe: &Universe,
        resolve: &dyn Fn(&str) -> Option<usize>,
        visiting: &mut BTreeSet<usize>,
        order: &mut Vec<usize>,
    ) {
        if !visiting.insert(idx) {
            return;
        }
        let mut deps: Vec<usize> = universe.candidates[idx]
            .info
            .depends
            .iter()
            .filter(|d| !d.conflict)
            .filter_map(|d| resolve(&d.name))
            .collect();
        deps.sort_by(|a, b| {
            universe.candidates[*a]
                .info
                .name
                .cmp(&universe.candidates[*b].info.name)
        });
        for dep in deps {
            visit(dep, universe, resolve, visiting, order);
        }
        order.push(idx);
    }
    for name in starts {
        if let Some(idx) = resolve(name) {
            visit(idx, universe, &resolve, &mut visiting, &mut order);
        }
    }
    for &idx in chosen.values() {
        visit(idx, universe, &resolve, &mut visiting, &mut order);
    }
    let mut changes = Vec::new();
    for idx in order {
        let info = &universe.candidates[idx].info;
        let before = old.get(info.name.as_str()).copied();
        let kind = match before {
            None => ChangeKind::Install,
            Some(o) if o.checksum == info.checksum => continue,
            Some(o) => match version::compare(&info.version, &o.version) {
                Ordering::Greater => ChangeKind::Upgrade,
                Ordering::Less => ChangeKind::Downgrade,
                Ordering::Equal => ChangeKind::Replace,
            },
        };
        changes.push(Change {
            kind,
            old: before.cloned(),
            new: Some(idx),
            new_info: Some(info.clone()),
        });
    }
    for (name, info) in &old {
        if !chosen.contains_key(*name) {
            changes.push(Change {
                kind: ChangeKind::Remove,
                old: Some((*info).clone()),
                new: None,
                new_info: None,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests;
