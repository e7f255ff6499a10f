//! Where and how a wheel is installed: the [`Scheme`] (as image paths), the [`Owner`], whether
//! it was [`Requested`], the [`InstallOptions`] and the [`InstalledWheel`] that comes back.

use std::path::Path;

use super::error::WheelError;
use crate::layer::{Diff, LayerPath};
use crate::python::tags::Tags;
use crate::python::target::PythonVersion;

/// Where each kind of wheel content goes, as image paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// Pure-Python packages (site-packages).
    pub purelib: LayerPath,
    /// Extension modules (the same site-packages on Linux).
    pub platlib: LayerPath,
    /// Scripts and launchers (`bin`).
    pub scripts: LayerPath,
    /// `.data/data/` files (the scheme base).
    pub data: LayerPath,
    /// Base of headers; the distribution name is appended.
    pub headers: LayerPath,
    /// The highest directory the install owns: it and every directory below it that the
    /// install writes into are listed in the Diff with the caller's owner.
    pub root: LayerPath,
}

impl Scheme {
    /// pip `--user` (posix_user): `<home>/.local/lib/pythonX.Y/site-packages`, `<home>/.local/bin`.
    pub fn user(home: &LayerPath, python: PythonVersion) -> Result<Scheme, WheelError> {
        let base = join(home, ".local")?;
        Scheme::prefix(&base, python)
    }

    /// pip `--prefix P` (posix_prefix): `P/lib/pythonX.Y/site-packages`, `P/bin`,
    /// `P/include/pythonX.Y/<name>`.
    pub fn prefix(prefix: &LayerPath, python: PythonVersion) -> Result<Scheme, WheelError> {
        let py = format!("python{}.{}", python.major, python.minor);
        let site = join(prefix, &format!("lib/{py}/site-packages"))?;
        Ok(Scheme {
            purelib: site.clone(),
            platlib: site,
            scripts: join(prefix, "bin")?,
            data: prefix.clone(),
            headers: join(prefix, &format!("include/{py}"))?,
            root: prefix.clone(),
        })
    }

    /// pip `--target T`: packages in `T`, scripts in `T/bin`, data in `T`, headers in
    /// `T/include/python/<name>` (pip installs into a home scheme and moves it into `T`).
    pub fn target(dir: &LayerPath) -> Result<Scheme, WheelError> {
        Ok(Scheme {
            purelib: dir.clone(),
            platlib: dir.clone(),
            scripts: join(dir, "bin")?,
            data: dir.clone(),
            headers: join(dir, "include/python")?,
            root: dir.clone(),
        })
    }
}

pub(crate) fn join(base: &LayerPath, rest: &str) -> Result<LayerPath, WheelError> {
    base.join(rest).map_err(|_| WheelError::Scheme {
        path: format!("{}/{rest}", base.absolute()),
    })
}

/// Who owns the installed files (the `USER` of the `RUN pip install`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Whether the wheel was asked for by the user (pip writes `REQUESTED` then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A top-level requirement (or any listed one in hash-checking mode): write `REQUESTED`.
    Yes,
    /// A dependency pulled in by another: no `REQUESTED`.
    No,
}

/// Everything [`install_wheel`] needs besides the wheel.
#[derive(Clone, Debug)]
pub struct InstallOptions<'a> {
    /// Where things go.
    pub scheme: &'a Scheme,
    /// Absolute interpreter path in the image, for shebangs (`/usr/local/bin/python3.11`).
    pub interpreter: &'a str,
    /// The target's tags; an incompatible wheel is refused.
    pub tags: &'a Tags,
    /// Owner of every entry.
    pub owner: Owner,
    /// mtime of every entry (SOURCE_DATE_EPOCH or 0), never the zip's times.
    pub mtime: i64,
    /// Host directory for members larger than [`MEMORY_LIMIT`]; must outlive the Diff.
    pub scratch: &'a Path,
    /// Whether to write `REQUESTED`.
    pub requested: Requested,
}

/// One installed wheel.
#[derive(Clone, Debug)]
pub struct InstalledWheel {
    /// Distribution name as in the wheel filename.
    pub name: String,
    /// Version as in the wheel filename.
    pub version: String,
    /// The `.dist-info` directory in the image.
    pub dist_info: LayerPath,
    /// The wheel's sha256 (hex), verified.
    pub sha256: String,
    /// What the install adds to the image.
    pub diff: Diff,
}
