//! Python packages for the target image: native `pip install` without running pip.
//!
//! The target comes from the stage's filesystem and platform ([`target::detect`]), never from
//! the host. [`tags`] ranks wheels for it as the target's own pip would; [`requirements`] reads
//! `requirements.txt` the way pip does, with markers evaluated for the target; [`pip_args`]
//! turns the words of a `RUN pip install ...` into a typed request; [`wheel`] installs one
//! verified wheel into a [`crate::layer::Diff`] laid out like pip's `--user`, `--prefix` or
//! `--target` schemes.
//!
//! Data enters as a stage view, a platform, requirement files and wheel files on the host (the
//! index client that fetches them comes later); it leaves as one Diff per installed wheel.

pub mod pip_args;
pub mod requirements;
pub mod tags;
pub mod target;
pub mod wheel;
