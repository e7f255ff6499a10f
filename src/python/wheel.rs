//! Installs one wheel into a [`Diff`], following the binary distribution format spec (PEP 427)
//! and what pip does, without touching the host outside a caller-given scratch directory.
//!
//! [`install_wheel`] takes a wheel file on the host, the sha256 it must have, and an
//! [`InstallOptions`] (the [`Scheme`], the target interpreter, tags, owner, time, scratch dir),
//! and returns an [`InstalledWheel`] holding one Diff:
//!
//! 1. The file name must be a wheel compatible with the target's [`Tags`] (an sdist is refused:
//!    kiln installs wheels only), and the file's sha256 must match.
//! 2. Every archive member must be named safely (no absolute path, no `..`, no symlink), be
//!    listed in the wheel's `RECORD`, and hash to what `RECORD` says: a RECORD that lies fails
//!    the install.
//! 3. The archive root goes to purelib or platlib (`Root-Is-Purelib`), and
//!    `{name}-{version}.data/{purelib,platlib,scripts,headers,data}/` to the scheme's paths.
//!    Scripts whose first line starts with `#!python` get `#!<target interpreter>`.
//! 4. `console_scripts`/`gui_scripts` entry points become launchers with pip's (distlib 0.3.x)
//!    text and a `#!<target interpreter>` shebang, mode 0755.
//! 5. The `.dist-info` gets `INSTALLER` (`kiln`; pip writes `pip`), `REQUESTED` when asked,
//!    and a regenerated `RECORD`: rows sorted as pip sorts them, paths relative to the
//!    site-packages directory, `sha256=<urlsafe base64, no padding>`, sizes, RECORD itself
//!    with empty hash and size, `\r\n` line ends (Python's csv writer).
//!
//! No `.pyc` is written (pip's `--no-compile`): pip's pycs embed install times and paths and
//! are not reproducible. No `direct_url.json` either (installs from an index never get one).
//! Modes are 0644, or 0755 when the zip entry has any execute bit; directories 0755; everything
//! is owned by the caller's uid/gid with the caller's mtime. Members larger than
//! [`MEMORY_LIMIT`] are streamed to files in the scratch directory, which must outlive the Diff.

mod error;
mod install;
mod names;
mod record;
mod scheme;
mod scripts;
mod sink;

pub use error::WheelError;
pub use install::{INSTALLER, install_wheel};
pub use names::{normalize_name, record_hash};
pub use scheme::{InstallOptions, InstalledWheel, Owner, Requested, Scheme};
pub use scripts::{launcher_script, scripts_from_entry_points, shebang};
pub use sink::MEMORY_LIMIT;

#[cfg(test)]
mod tests;
