//! The distributions already installed where the image's pip looks, and what pip does with
//! them when it installs another version.
//!
//! pip's resolver sees every distribution on its interpreter's `sys.path` (pip's
//! `get_default_environment`, first found per name wins), unless `--ignore-installed` or
//! `--target` (which implies it). For the interpreters kiln installs for natively (not a
//! virtualenv: those run in the sandbox) [`find`] builds that path from the image as `site.py`
//! would: `PYTHONPATH`, the standard library directories, the user site when it exists (also
//! for an install that is not `--user`), then the interpreter's site directories (Debian's
//! `dist-packages` for Debian's Python), each site directory followed by the directories its
//! `.pth` files add. Each `*.dist-info/METADATA` gives a name, a version and its dependencies
//! (pip's `stdlib_pkgs`, `python`, `wsgiref` and `argparse`, are skipped as pip skips them).
//! `python -m pip` also puts the working directory first on the path: such a RUN goes to the
//! sandbox when distributions are there (`crate::steps::pip::sandbox_reason`).
//!
//! After resolution, [`check_replacement`] applies pip's `get_dist_to_uninstall`: a new version
//! installed with `--user` over one in the global site leaves that one in place (the user site
//! shadows it); any other installed distribution of that name would be uninstalled, which
//! kiln's native step does not do (a layer would need whiteouts of its RECORD), so the RUN goes
//! to the sandbox, saying which distribution it would replace. A source version equal to the
//! installed one is not reinstalled, as pip does, unless `--force-reinstall`.

use std::collections::BTreeMap;

use pep440_rs::Version;

use super::error::PipError;
pub(crate) use super::scheme::InstallSite;
use super::scheme::sys_prefix;
use crate::layer::LayerPath;
use crate::python::config::image_path;
use crate::python::launcher;
use crate::python::metadata::CoreMetadata;
use crate::python::resolver::InstalledVersion;
use crate::python::target::PythonTarget;
use crate::python::wheel::normalize_name;
use crate::rootfs::{FsView, NodeKind, ViewError};

/// What pip finds installed under one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A `.dist-info` distribution.
    Dist {
        /// Name, version, dependencies and directory.
        installed: InstalledVersion,
        /// Its directory is the user site (or a directory a `.pth` file there adds).
        in_user_site: bool,
    },
    /// Something kiln does not read: an `.egg-info`, or two distributions of the name in one
    /// directory (pip's pick depends on the directory's order on disk). `why` says which.
    Unread {
        /// For the build output.
        why: String,
    },
}

/// The distributions pip sees, by normalized name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Installed {
    found: BTreeMap<String, Found>,
}

impl Installed {
    /// Nothing installed: `--target`, `--ignore-installed`.
    pub(crate) fn none() -> Installed {
        Installed::default()
    }

    /// The `.dist-info` distributions, as candidates for the resolver.
    pub(crate) fn candidates(&self) -> BTreeMap<String, InstalledVersion> {
        self.found
            .iter()
            .filter_map(|(name, found)| match found {
                Found::Dist { installed, .. } => Some((name.clone(), installed.clone())),
                Found::Unread { .. } => None,
            })
            .collect()
    }

    /// What pip finds installed under `name` (normalized).
    pub(crate) fn get(&self, name: &str) -> Option<&Found> {
        self.found.get(name)
    }
}

/// What to do with a source distribution of `name` at `version` that the resolution chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Replacement {
    /// Nothing of that name is in the way: install it.
    Install,
    /// The same version is installed where pip would uninstall it: pip leaves it.
    AlreadyThere,
}

/// pip's `get_dist_to_uninstall` and reinstall rule for a chosen source distribution: whether
/// to install it, skip it, or (by error) run pip in the sandbox.
pub(crate) fn check_replacement(
    installed: &Installed,
    name: &str,
    version: &Version,
    site: InstallSite,
    force_reinstall: bool,
) -> Result<Replacement, PipError> {
    let Some(found) = installed.get(name) else {
        return Ok(Replacement::Install);
    };
    let (dist, in_user_site) = match found {
        Found::Dist {
            installed,
            in_user_site,
        } => (installed, *in_user_site),
        Found::Unread { why } => {
            return Err(PipError::InstalledUnread {
                package: name.to_owned(),
                why: why.clone(),
            });
        }
    };
    // A --user install shadows the global site's distribution and leaves it in place.
    if site == InstallSite::User && !in_user_site {
        return Ok(Replacement::Install);
    }
    if !force_reinstall && dist.version == *version {
        return Ok(Replacement::AlreadyThere);
    }
    Err(PipError::ReplacesInstalled {
        package: dist.display_name.clone(),
        installed: dist.version.to_string(),
        location: dist.location.clone(),
        version: version.to_string(),
    })
}

/// Everything the search path depends on.
pub(crate) struct PathInputs<'a> {
    pub(crate) fs: &'a dyn FsView,
    pub(crate) target: &'a PythonTarget,
    /// The user base (`PYTHONUSERBASE`, or `<home>/.local`).
    pub(crate) user_base: &'a str,
    pub(crate) workdir: &'a str,
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

/// The distributions the image's pip would see installed.
pub(crate) fn find(inputs: &PathInputs<'_>) -> Result<Installed, PipError> {
    let mut installed = Installed::default();
    for (dir, in_user_site) in search_path(inputs)? {
        read_site_dir(inputs.fs, &dir, in_user_site, &mut installed)?;
    }
    Ok(installed)
}

fn read_err(path: &LayerPath) -> impl FnOnce(ViewError) -> PipError + '_ {
    move |source| PipError::Read {
        path: path.absolute(),
        source,
    }
}

/// The directory at `raw` with symlinks resolved, when it is one.
fn existing_dir(fs: &dyn FsView, raw: &str) -> Result<Option<LayerPath>, PipError> {
    let Ok(path) = LayerPath::new(raw) else {
        return Ok(None);
    };
    match fs.stat(&path, true).map_err(read_err(&path))? {
        Some((resolved, node)) if node.kind == NodeKind::Dir => Ok(Some(resolved)),
        _ => Ok(None),
    }
}

/// `sys.path` as `site.py` builds it for the interpreter, existing directories only, each
/// marked when it belongs to the user site.
fn search_path(inputs: &PathInputs<'_>) -> Result<Vec<(LayerPath, bool)>, PipError> {
    let fs = inputs.fs;
    let target = inputs.target;
    let version = format!("python{}.{}", target.version.major, target.version.minor);
    let prefix = sys_prefix(&target.interpreter);
    let prefix = prefix.trim_end_matches('/');
    let set = |name: &str| (inputs.env)(name).filter(|v| !v.is_empty());
    let mut path: Vec<(LayerPath, bool)> = Vec::new();
    let push = |path: &mut Vec<(LayerPath, bool)>, dir: LayerPath, user: bool| {
        if !path.iter().any(|(known, _)| *known == dir) {
            path.push((dir, user));
        }
    };
    if let Some(python_path) = set("PYTHONPATH") {
        for entry in python_path.split(':').filter(|e| !e.is_empty()) {
            if let Some(dir) = existing_dir(fs, &image_path(inputs.workdir, entry))? {
                push(&mut path, dir, false);
            }
        }
    }
    for stdlib in [
        format!("{prefix}/lib/{version}"),
        format!("{prefix}/lib/{version}/lib-dynload"),
    ] {
        if let Some(dir) = existing_dir(fs, &stdlib)? {
            push(&mut path, dir, false);
        }
    }
    let mut site_dirs: Vec<(String, bool)> = Vec::new();
    if set("PYTHONNOUSERSITE").is_none() {
        let base = inputs.user_base.trim_end_matches('/');
        site_dirs.push((format!("{base}/lib/{version}/site-packages"), true));
    }
    let debian = launcher::is_debian_python(fs, target).map_err(|source| PipError::Read {
        path: "/usr/lib/python3/dist-packages".to_owned(),
        source,
    })?;
    if debian {
        site_dirs.push((format!("/usr/local/lib/{version}/dist-packages"), false));
        site_dirs.push(("/usr/lib/python3/dist-packages".to_owned(), false));
        site_dirs.push((format!("/usr/lib/{version}/dist-packages"), false));
    } else {
        site_dirs.push((format!("{prefix}/lib/{version}/site-packages"), false));
    }
    for (site, user) in site_dirs {
        let Some(dir) = existing_dir(fs, &site)? else {
            continue;
        };
        push(&mut path, dir.clone(), user);
        for added in pth_dirs(fs, &dir)? {
            push(&mut path, added, user);
        }
    }
    Ok(path)
}

/// The directories the `.pth` files of site directory `dir` add (site.py's `addpackage`:
/// every line that is not a comment or an `import` names a directory relative to `dir`,
/// added when it exists), in file name order.
fn pth_dirs(fs: &dyn FsView, dir: &LayerPath) -> Result<Vec<LayerPath>, PipError> {
    let mut out = Vec::new();
    let names = fs.read_dir(dir).map_err(read_err(dir))?;
    for name in names
        .iter()
        .filter(|n| n.ends_with(".pth") && !n.starts_with('.'))
    {
        let Ok(file) = dir.join(name) else {
            continue;
        };
        let bytes = match fs.read_file(&file) {
            Ok(bytes) => bytes,
            Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => continue,
            Err(source) => return Err(read_err(&file)(source)),
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim_end();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("import ")
                || line.starts_with("import\t")
            {
                continue;
            }
            if let Some(added) = existing_dir(fs, &image_path(&dir.absolute(), line))? {
                out.push(added);
            }
        }
    }
    Ok(out)
}

/// Adds what directory `dir` holds to `installed` (names already found earlier on the path
/// win, as in pip).
fn read_site_dir(
    fs: &dyn FsView,
    dir: &LayerPath,
    in_user_site: bool,
    installed: &mut Installed,
) -> Result<(), PipError> {
    let mut here: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for entry in fs.read_dir(dir).map_err(read_err(dir))? {
        let Ok(path) = dir.join(&entry) else {
            continue;
        };
        let legacy = [
            (".egg-info", "an .egg-info"),
            (".egg-link", "a develop install's .egg-link"),
        ]
        .into_iter()
        .find_map(|(suffix, what)| entry.strip_suffix(suffix).map(|stem| (stem, what)));
        if let Some((stem, what)) = legacy {
            let name = normalize_name(stem.split('-').next().unwrap_or(stem));
            here.entry(name).or_default().push(Found::Unread {
                why: format!(
                    "it is installed as {} ({what}, which kiln does not read)",
                    path.absolute()
                ),
            });
            continue;
        }
        if !entry.ends_with(".dist-info") {
            continue;
        }
        let Ok(metadata_path) = path.join("METADATA") else {
            continue;
        };
        let bytes = match fs.read_file(&metadata_path) {
            Ok(bytes) => bytes,
            // pip skips a distribution whose metadata it cannot read.
            Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => continue,
            Err(source) => return Err(read_err(&metadata_path)(source)),
        };
        let Ok(metadata) = CoreMetadata::parse(&metadata_path.absolute(), &bytes) else {
            continue;
        };
        here.entry(normalize_name(&metadata.name))
            .or_default()
            .push(Found::Dist {
                installed: InstalledVersion {
                    display_name: metadata.name,
                    version: metadata.version,
                    requires_dist: metadata.requires_dist,
                    location: dir.absolute(),
                },
                in_user_site,
            });
    }
    for (name, mut found) in here {
        // pip's `stdlib_pkgs`: never treated as installed distributions.
        if installed.found.contains_key(&name)
            || ["python", "wsgiref", "argparse"].contains(&name.as_str())
        {
            continue;
        }
        let chosen = if found.len() == 1 {
            found.remove(0)
        } else {
            Found::Unread {
                why: format!(
                    "{} holds {} distributions of it, and pip takes the first one the \
                     directory lists",
                    dir.absolute(),
                    found.len()
                ),
            }
        };
        installed.found.insert(name, chosen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::layer::{Diff, Entry, EntryKind, FileContent, Metadata};
    use crate::python::target::{Libc, PythonVersion};
    use crate::rootfs::MemFs;

    fn put(diff: &mut Diff, at: &str, kind: EntryKind) {
        diff.insert(
            LayerPath::new(at).unwrap(),
            Entry {
                kind,
                meta: Metadata::root_owned(0o755),
            },
        );
    }

    fn file(diff: &mut Diff, at: &str, text: &str) {
        put(
            diff,
            at,
            EntryKind::File(FileContent::Bytes(text.as_bytes().into())),
        );
    }

    fn dist(diff: &mut Diff, site: &str, name: &str, version: &str, requires: &[&str]) {
        let mut text = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for r in requires {
            text.push_str(&format!("Requires-Dist: {r}\n"));
        }
        file(
            diff,
            &format!(
                "{site}/{}-{version}.dist-info/METADATA",
                name.replace('-', "_")
            ),
            &text,
        );
    }

    fn target() -> PythonTarget {
        PythonTarget {
            interpreter: "/usr/local/bin/python3.11".into(),
            version: PythonVersion {
                major: 3,
                minor: 11,
                patch: Some(11),
            },
            libc: Libc::Musl { major: 1, minor: 2 },
            arch: "x86_64".into(),
        }
    }

    const SITE: &str = "usr/local/lib/python3.11/site-packages";
    const USER_SITE: &str = "root/.local/lib/python3.11/site-packages";

    fn found(fs: &MemFs, env: &[(&str, &str)]) -> Installed {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env_fn = |name: &str| env.get(name).cloned();
        find(&PathInputs {
            fs,
            target: &target(),
            user_base: "/root/.local",
            workdir: "/app",
            env: &env_fn,
        })
        .unwrap()
    }

    fn where_is(installed: &Installed, name: &str) -> Option<(String, String, bool)> {
        match installed.get(name)? {
            Found::Dist {
                installed,
                in_user_site,
            } => Some((
                installed.version.to_string(),
                installed.location.clone(),
                *in_user_site,
            )),
            Found::Unread { why } => Some(("unread".into(), why.clone(), false)),
        }
    }

    #[test]
    fn the_first_on_the_path_wins_and_pth_files_add_directories() {
        let mut diff = Diff::new();
        dist(&mut diff, SITE, "setuptools", "65.5.0", &[]);
        dist(&mut diff, SITE, "pip", "24.0", &[]);
        dist(&mut diff, USER_SITE, "setuptools", "80.9.0", &[]);
        dist(&mut diff, "opt/extra", "packaging", "24.1", &[]);
        file(
            &mut diff,
            &format!("{SITE}/extra.pth"),
            "# comment\nimport os\n/opt/extra\n/nowhere\n",
        );
        dist(&mut diff, "app/vendor", "pip", "1.0", &[]);
        file(&mut diff, &format!("{SITE}/old-1.0-py3.11.egg-info"), "");
        file(
            &mut diff,
            &format!("{SITE}/devel.egg-link"),
            "/src/devel\n.\n",
        );
        dist(&mut diff, SITE, "wsgiref", "0.1.2", &[]);
        let fs = MemFs::from_diff(&diff);
        let plain = found(&fs, &[]);
        assert_eq!(
            where_is(&plain, "setuptools"),
            Some(("80.9.0".into(), format!("/{USER_SITE}"), true))
        );
        assert_eq!(
            where_is(&plain, "pip"),
            Some(("24.0".into(), format!("/{SITE}"), false))
        );
        assert_eq!(
            where_is(&plain, "packaging"),
            Some(("24.1".into(), "/opt/extra".into(), false))
        );
        assert!(matches!(plain.get("old"), Some(Found::Unread { .. })));
        assert!(matches!(plain.get("devel"), Some(Found::Unread { .. })));
        assert_eq!(plain.get("wsgiref"), None);
        let with_path = found(&fs, &[("PYTHONPATH", "vendor"), ("PYTHONNOUSERSITE", "1")]);
        assert_eq!(
            where_is(&with_path, "pip"),
            Some(("1.0".into(), "/app/vendor".into(), false))
        );
        assert_eq!(
            where_is(&with_path, "setuptools"),
            Some(("65.5.0".into(), format!("/{SITE}"), false))
        );
    }

    #[test]
    fn replacing_follows_pips_uninstall_rule() {
        let mut diff = Diff::new();
        dist(&mut diff, SITE, "setuptools", "65.5.0", &[]);
        dist(&mut diff, USER_SITE, "packaging", "23.2", &[]);
        let installed = found(&MemFs::from_diff(&diff), &[]);
        let v = |s: &str| Version::from_str(s).unwrap();
        let check = |name: &str, version: &str, site: InstallSite, force: bool| {
            check_replacement(&installed, name, &v(version), site, force)
                .map_err(|e| e.sandbox_reason().unwrap())
        };
        assert_eq!(
            check("setuptools", "80.9.0", InstallSite::User, false),
            Ok(Replacement::Install)
        );
        assert_eq!(
            check("setuptools", "65.5.0", InstallSite::Other, false),
            Ok(Replacement::AlreadyThere)
        );
        assert_eq!(
            check("setuptools", "80.9.0", InstallSite::Other, false),
            Err("it would replace setuptools 65.5.0 installed in \
                 /usr/local/lib/python3.11/site-packages with 80.9.0"
                .to_owned())
        );
        assert!(check("setuptools", "65.5.0", InstallSite::Other, true).is_err());
        assert!(check("packaging", "24.1", InstallSite::User, false).is_err());
        assert_eq!(
            check("flask", "3.1.3", InstallSite::Other, false),
            Ok(Replacement::Install)
        );
    }
}
