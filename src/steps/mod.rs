//! Native steps: each reads the stage's lower filesystem and returns a `Diff` and the inputs it
//! consumed. `copy` implements COPY and ADD; `run` recognizes the RUN commands kiln applies
//! natively; `pip` computes `pip install` natively; `users` applies adduser/addgroup/useradd/groupadd; `etc_files` parses
//! /etc/passwd and /etc/group.

pub mod copy;
pub mod etc_files;
pub mod pip;
pub mod run;
pub mod users;
