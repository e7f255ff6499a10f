//! Alpine packages, natively: version ordering ([`version`]), package constraints as `apk
//! add` spells them ([`constraint`]), apk's command line ([`args`]), checksum encodings ([`checksum`]), the signed container
//! and keyring ([`signed`]), repository indexes ([`index`]), package files ([`package`]), the
//! installed database ([`db`]), and solving and applying `apk upgrade` / `apk add` onto a
//! lower filesystem ([`solve`], [`install`], entry point [`run`]), and snapshots of the package
//! cache as local repositories ([`export`]).

pub mod args;
pub mod checksum;
pub mod command;
pub mod constraint;
pub mod db;
mod edit;
mod emulate;
pub mod error;
pub mod export;
mod fetch;
pub mod index;
pub mod install;
pub mod package;
pub mod signed;
pub mod solve;
pub mod state;
pub mod version;

pub use checksum::Checksum;
pub use command::{ApkOptions, ApkOutcome, run};
pub use constraint::{ConstraintError, PackageConstraint, Requirement, VersionOp};
pub use error::ApkError;
pub use index::{Index, PackageInfo, Provide};
pub use package::{DataEntry, Package, PkgInfo, Trust};
pub use signed::Keyring;
pub use version::{Version, VersionError};
