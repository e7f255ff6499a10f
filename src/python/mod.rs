//! Python packages for the target image: native `pip install` without running pip.
//!
//! The target comes from the stage's filesystem and platform ([`target::detect`]), never from
//! the host. [`tags`] ranks wheels for it as the target's own pip would; [`requirements`] reads
//! `requirements.txt` the way pip does, with markers evaluated for the target; [`pip_args`]
//! turns the words of a `RUN pip install ...` into a typed request; [`wheel`] installs one
//! verified wheel into a [`crate::layer::Diff`] laid out like pip's `--user`, `--prefix` or
//! `--target` schemes.
//!
//! [`launcher`] decides whether the pip a RUN's PATH finds is the one kiln emulates;
//! [`install`] holds what a native `pip install` decides (settings, wheels, scheme, errors).
//!
//! [`config`] reads pip's configuration files from the image and `PIP_*` from the RUN's
//! environment; [`index`] lists and fetches distribution files from find-links locations and
//! simple-API indexes (host directories or HTTP); [`metadata`] parses core metadata;
//! [`pep508`] parses one requirement (refusing what would make the parser panic);
//! [`resolve`] picks the best wheel for a requirement and checks that a pinned set is complete;
//! [`resolver`] resolves loose requirements with backtracking; [`pylock`] reads and writes
//! PEP 751 lock files; [`lock`] resolves for several platforms and writes a lock (`kiln lock`).
//!
//! Data enters as a stage view, a platform, requirement files and distribution sources; it
//! leaves as one Diff per installed wheel (`crate::steps::pip` merges them into one step).

pub mod config;
pub mod index;
pub mod install;
pub mod launcher;
pub mod lock;
pub mod metadata;
pub mod pep508;
pub mod pip_args;
pub mod pylock;
pub mod requirements;
pub mod resolve;
pub mod resolver;
pub mod tags;
pub mod target;
pub mod wheel;
