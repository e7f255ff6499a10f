//! Native steps: each reads the stage's lower filesystem and returns a `Diff` and the inputs it
//! consumed. `copy` implements COPY and ADD.

pub mod copy;
