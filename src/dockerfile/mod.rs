//! The Dockerfile front end: parse text into a tree, expand variables, plan stages and steps.

pub mod ast;
pub mod dump;
pub mod parser;
pub mod plan;
pub mod shell;

pub use ast::{Dockerfile, Heredoc, Node};
pub use parser::{ParseError, parse};
