//! Alpine packages: version ordering ([`version`]) and package constraints as `apk add` spells
//! them ([`constraint`]). Signed indexes, packages and the installed database come later.

pub mod constraint;
pub mod version;

pub use constraint::{ConstraintError, PackageConstraint, Requirement, VersionOp};
pub use version::{Version, VersionError};
