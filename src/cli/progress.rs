//! Progress display: numbered plain lines (CI, `--progress plain`) or a live line per step on a
//! terminal.

use std::sync::Mutex;
use std::time::Duration;

use kiln::build::{Reporter, StepOutcome};

/// Prints each step as a numbered line, as `docker build --progress=plain` does.
pub(crate) struct PlainReporter {
    step: Mutex<usize>,
}

impl PlainReporter {
    pub(crate) fn new() -> PlainReporter {
        PlainReporter {
            step: Mutex::new(0),
        }
    }
}

impl Reporter for PlainReporter {
    fn step_started(&self, stage: &str, position: usize, total: usize, text: &str) {
        if let Ok(mut step) = self.step.lock() {
            *step += 1;
            eprintln!("#{step} [{stage} {position}/{total}] {text}");
        }
    }

    fn step_finished(&self, outcome: StepOutcome, elapsed: Duration) {
        if let Ok(step) = self.step.lock() {
            match outcome {
                StepOutcome::Cached => eprintln!("#{step} CACHED"),
                _ => eprintln!("#{step} DONE {:.1}s", elapsed.as_secs_f64()),
            }
        }
    }

    fn note(&self, message: &str) {
        if let Ok(step) = self.step.lock() {
            eprintln!("#{step} {message}");
        }
    }
}

/// On a terminal: one line per step, rewritten in place when the step ends, with its status
/// and time (a long step shows what it is doing until then). Colour unless `NO_COLOR` is set.
pub(crate) struct TtyReporter {
    current: Mutex<String>,
    colour: bool,
}

impl TtyReporter {
    pub(crate) fn new() -> TtyReporter {
        TtyReporter {
            current: Mutex::new(String::new()),
            colour: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()),
        }
    }

    /// `text` in the SGR style `code` (`1` bold, `32` green), or plain with `NO_COLOR`.
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

impl Reporter for TtyReporter {
    fn step_started(&self, stage: &str, position: usize, total: usize, text: &str) {
        if let Ok(mut current) = self.current.lock() {
            *current = format!("[{stage} {position}/{total}] {text}");
            eprint!("\x1b[2K\r{} {current} ...", self.paint("1", "=>"));
        }
    }

    fn step_finished(&self, outcome: StepOutcome, elapsed: Duration) {
        if let Ok(current) = self.current.lock() {
            let status = match outcome {
                StepOutcome::Cached => self.paint("34", "CACHED"),
                _ => self.paint("32", &format!("{:.1}s", elapsed.as_secs_f64())),
            };
            eprintln!("\x1b[2K\r{} {current} {status}", self.paint("1", "=>"));
        }
    }

    fn note(&self, message: &str) {
        if let Ok(current) = self.current.lock() {
            eprint!("\x1b[2K\r{} {current} ({message})", self.paint("1", "=>"));
        }
    }
}
