//! Which pip a `RUN pip install` runs in the image, and whether kiln's native install is that
//! pip's result exactly.
//!
//! Docker runs the RUN's shell, which finds the program word (`pip`, `pip3`, `/venv/bin/pip`,
//! `python3` for `python3 -m pip`) on the RUN's `PATH` in the IMAGE. kiln's native install
//! writes what the pip of the detected interpreter ([`crate::python::target`]) would write into
//! its own prefix, its `--user` site or a `--target`/`--prefix` directory. [`decide`] looks at
//! the pip the PATH finds and answers [`Launcher::Native`] only when that is the pip which would
//! run; otherwise it gives the reason the real pip must run in the sandbox:
//!
//! - nothing on PATH has that name (the shell fails, `pip: not found`; so does the sandbox);
//! - the pip (or python) belongs to a virtual environment (a `pyvenv.cfg` beside its `bin`);
//! - the pip's shebang names another interpreter than the detected one;
//! - `python3 -m pip` where the interpreter has no `pip` package.
//!
//! [`is_debian_python`] tells the install step that the interpreter's own prefix follows
//! Debian's scheme (its pip installs into `/usr/local/lib/python3.X/dist-packages`), which the
//! native step does not emulate; `--user`, `--target` and `--prefix` are unaffected.

use crate::layer::LayerPath;
use crate::python::target::PythonTarget;
use crate::rootfs::{FsView, NodeKind, ViewError};

/// Docker's default PATH for a Linux RUN when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What runs `pip install` for this RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// The pip of the detected interpreter: kiln's native install is exact.
    Native,
    /// The real pip must run (in the sandbox), for this reason.
    Sandbox(String),
}

/// Decides which pip `launcher` (as written in the RUN) is in the image `fs`, with the RUN's
/// `PATH` (`None`: Docker's default) and working directory, against the detected `target`.
pub fn decide(
    fs: &dyn FsView,
    launcher: &str,
    path_var: Option<&str>,
    workdir: &str,
    target: &PythonTarget,
) -> Result<Launcher, ViewError> {
    let path_var = path_var.unwrap_or(DEFAULT_PATH);
    let Some(found) = find_program(fs, launcher, path_var, workdir)? else {
        return Ok(Launcher::Sandbox(format!(
            "the image has no `{launcher}` on PATH ({path_var}), so the RUN fails as Docker's \
             does"
        )));
    };
    if let Some(venv) = venv_of(fs, &found)? {
        return Ok(Launcher::Sandbox(format!(
            "the image's {launcher} is a virtualenv's ({venv})"
        )));
    }
    let base = launcher.rsplit('/').next().unwrap_or(launcher);
    let is_python = base.starts_with("python");
    let interpreter = if is_python {
        found.clone()
    } else {
        match shebang_interpreter(fs, &found, path_var)? {
            Some(interpreter) => interpreter,
            None => {
                return Ok(Launcher::Sandbox(format!(
                    "the image's {} is not a Python launcher script kiln can read",
                    found.absolute()
                )));
            }
        }
    };
    if !is_python {
        if let Some(venv) = venv_of(fs, &interpreter)? {
            return Ok(Launcher::Sandbox(format!(
                "the image's {launcher} is a virtualenv's ({venv})"
            )));
        }
    }
    let resolved = |path: &LayerPath| -> Result<LayerPath, ViewError> { fs.resolve(path, true) };
    let detected = LayerPath::new(&target.interpreter)
        .map_err(|_| ViewError::NotFound(format!("interpreter `{}`", target.interpreter)))?;
    if resolved(&interpreter)? != resolved(&detected)? {
        return Ok(Launcher::Sandbox(format!(
            "the image's {launcher} runs {}, not {} that kiln installs for",
            interpreter.absolute(),
            target.interpreter
        )));
    }
    let version = format!("python{}.{}", target.version.major, target.version.minor);
    if is_python {
        let prefix = if target.interpreter.starts_with("/usr/local/") {
            "usr/local"
        } else {
            "usr"
        };
        if !is_dir(fs, &format!("{prefix}/lib/{version}/site-packages/pip"))? {
            return Ok(Launcher::Sandbox(format!(
                "the image's {} has no pip module (`{launcher} -m pip` fails as in Docker)",
                target.interpreter
            )));
        }
    }
    Ok(Launcher::Native)
}

/// The program the shell runs for `word`: a path as written (relative to `workdir`), or the
/// first executable regular file of that name on `path_var`.
fn find_program(
    fs: &dyn FsView,
    word: &str,
    path_var: &str,
    workdir: &str,
) -> Result<Option<LayerPath>, ViewError> {
    let candidates: Vec<String> = if word.contains('/') {
        vec![crate::python::config::image_path(workdir, word)]
    } else {
        path_var
            .split(':')
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| format!("{}/{word}", dir.trim_end_matches('/')))
            .collect()
    };
    for candidate in candidates {
        let Ok(path) = LayerPath::new(&candidate) else {
            continue;
        };
        if let Some((_, node)) = fs.stat(&path, true)? {
            if matches!(node.kind, NodeKind::File { .. }) && node.meta.mode & 0o111 != 0 {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

/// The virtual environment `program` (unresolved: `/venv/bin/python` is a symlink to the base
/// interpreter) lives in: the directory above its `bin` when that holds a `pyvenv.cfg`.
fn venv_of(fs: &dyn FsView, program: &LayerPath) -> Result<Option<String>, ViewError> {
    let text = program.absolute();
    let Some((bin, _)) = text.rsplit_once('/') else {
        return Ok(None);
    };
    let Some((root, _)) = bin.rsplit_once('/') else {
        return Ok(None);
    };
    let root = if root.is_empty() { "/" } else { root };
    let Ok(config) = LayerPath::new(&format!("{}/pyvenv.cfg", root.trim_end_matches('/'))) else {
        return Ok(None);
    };
    Ok(match fs.stat(&config, true)? {
        Some((_, node)) if matches!(node.kind, NodeKind::File { .. }) => Some(root.to_owned()),
        _ => None,
    })
}

/// The interpreter a launcher script's `#!` line names (`#!/usr/bin/env python3` looked up on
/// PATH); `None` when the file has no such line.
fn shebang_interpreter(
    fs: &dyn FsView,
    script: &LayerPath,
    path_var: &str,
) -> Result<Option<LayerPath>, ViewError> {
    let bytes = fs.read_file(script)?;
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(line) = std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.strip_prefix("#!"))
    else {
        return Ok(None);
    };
    let mut words = line.split_whitespace();
    let Some(program) = words.next() else {
        return Ok(None);
    };
    if program.ends_with("/env") {
        let Some(name) = words.find(|w| !w.starts_with('-')) else {
            return Ok(None);
        };
        return find_program(fs, name, path_var, "/");
    }
    Ok(LayerPath::new(program).ok())
}

/// The interpreter is Debian's own (`/usr/bin/python3.X` beside `/usr/lib/python3/dist-packages`).
pub fn is_debian_python(fs: &dyn FsView, target: &PythonTarget) -> Result<bool, ViewError> {
    Ok(target.interpreter.starts_with("/usr/bin/") && is_dir(fs, "usr/lib/python3/dist-packages")?)
}

fn is_dir(fs: &dyn FsView, path: &str) -> Result<bool, ViewError> {
    let Ok(path) = LayerPath::new(path) else {
        return Ok(false);
    };
    Ok(matches!(fs.stat(&path, true)?, Some((_, node)) if node.kind == NodeKind::Dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Diff, Entry, EntryKind, FileContent, Metadata};
    use crate::python::target::{Libc, PythonVersion};
    use crate::rootfs::MemFs;

    fn target(interpreter: &str) -> PythonTarget {
        PythonTarget {
            version: PythonVersion {
                major: 3,
                minor: 11,
                patch: Some(9),
            },
            interpreter: interpreter.to_owned(),
            libc: Libc::Musl { major: 1, minor: 2 },
            arch: "x86_64".to_owned(),
        }
    }

    fn image(entries: &[(&str, Option<&str>, Option<&str>)]) -> MemFs {
        // (path, file content, symlink target); neither: a directory.
        let mut diff = Diff::new();
        for (path, content, link) in entries {
            let (kind, mode) = match (content, link) {
                (Some(text), _) => (
                    EntryKind::File(FileContent::Bytes(text.as_bytes().to_vec().into())),
                    0o755,
                ),
                (None, Some(target)) => (EntryKind::Symlink((*target).to_owned()), 0o777),
                (None, None) => (EntryKind::Dir, 0o755),
            };
            diff.insert(
                LayerPath::new(path).unwrap(),
                Entry {
                    kind,
                    meta: Metadata::root_owned(mode),
                },
            );
        }
        MemFs::from_diff(&diff)
    }

    fn decision(fs: &MemFs, launcher: &str, interpreter: &str) -> Launcher {
        decide(fs, launcher, None, "/", &target(interpreter)).unwrap()
    }

    #[test]
    fn which_pip_runs() {
        let official = [
            ("usr/local/bin/python3.11", Some("\x7fELF"), None),
            ("usr/local/bin/python3", None, Some("python3.11")),
            (
                "usr/local/bin/pip",
                Some("#!/usr/local/bin/python3.11\nimport pip\n"),
                None,
            ),
            ("usr/local/lib/python3.11/site-packages/pip", None, None),
        ];
        let fs = image(&official);
        let local = "/usr/local/bin/python3.11";
        assert_eq!(decision(&fs, "pip", local), Launcher::Native);
        assert_eq!(decision(&fs, "python3", local), Launcher::Native);
        let Launcher::Sandbox(why) = decision(&fs, "pip3", local) else {
            panic!("pip3 is not there")
        };
        assert!(why.contains("no `pip3` on PATH"), "{why}");

        let mut venv = official.to_vec();
        venv.extend([
            ("venv/pyvenv.cfg", Some("home = /usr/local/bin\n"), None),
            ("venv/bin/python", None, Some("/usr/local/bin/python3.11")),
            ("venv/bin/pip", Some("#!/venv/bin/python\n"), None),
        ]);
        let fs = image(&venv);
        assert_eq!(
            decision(&fs, "/venv/bin/pip", local),
            Launcher::Sandbox("the image's /venv/bin/pip is a virtualenv's (/venv)".to_owned())
        );
        assert!(matches!(
            decision(&fs, "/venv/bin/python", local),
            Launcher::Sandbox(_)
        ));
        let path = "/venv/bin:/usr/local/bin:/usr/bin:/bin";
        assert!(matches!(
            decide(&fs, "pip", Some(path), "/", &target(local)).unwrap(),
            Launcher::Sandbox(why) if why.contains("virtualenv's (/venv)")
        ));

        let debian = [
            ("usr/bin/python3.11", Some("\x7fELF"), None),
            ("usr/bin/pip", Some("#!/usr/bin/python3\n"), None),
            ("usr/bin/python3", None, Some("python3.11")),
            ("usr/lib/python3/dist-packages/pip", None, None),
        ];
        let fs = image(&debian);
        // Its pip is the interpreter's own; the install step knows the scheme is Debian's.
        assert_eq!(
            decision(&fs, "pip", "/usr/bin/python3.11"),
            Launcher::Native
        );
        assert!(is_debian_python(&fs, &target("/usr/bin/python3.11")).unwrap());
        assert!(!is_debian_python(&fs, &target(local)).unwrap());

        let no_pip = [("usr/local/bin/python3.11", Some("\x7fELF"), None)];
        let fs = image(&no_pip);
        assert!(
            matches!(decision(&fs, "pip", local), Launcher::Sandbox(why) if why.contains("no `pip` on PATH"))
        );
        assert!(matches!(
            decision(&fs, "/usr/local/bin/python3.11", local),
            Launcher::Sandbox(why) if why.contains("has no pip module")
        ));
    }
}
