//! Progress reporting: the executor tells a [`Reporter`] what it does; the CLI decides how to
//! show it (plain lines in CI, a live display on a terminal, nothing with `--progress quiet`).

use std::time::Duration;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// A layer was written.
    Built,
    /// The layer came from the step cache.
    Cached,
    /// Only the config changed.
    ConfigOnly,
}

/// Receives build events. Every method has a do-nothing default.
pub trait Reporter: Sync {
    /// A step starts: `[stage n/m] TEXT`.
    fn step_started(&self, _stage: &str, _position: usize, _total: usize, _text: &str) {}
    /// A step ended.
    fn step_finished(&self, _outcome: StepOutcome, _elapsed: Duration) {}
    /// A note worth a line (base image loaded, output written).
    fn note(&self, _message: &str) {}
}

/// A reporter that shows nothing.
pub struct Quiet;

impl Reporter for Quiet {}
