//! Native steps: each reads the stage's lower filesystem and returns a `Diff` and the inputs it
//! consumed. `copy` implements COPY and ADD; `run` recognizes the RUN commands kiln applies
//! natively; `pip` computes `pip install` natively; `users` applies adduser/addgroup/useradd/
//! groupadd with [`crate::users`]. Steps use the domains below them (`apk`, `python`, `users`,
//! `shell`, `sandbox`); no domain uses a step.

pub mod copy;
pub mod pip;
pub mod run;
pub mod users;
