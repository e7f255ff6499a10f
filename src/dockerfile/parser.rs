//! The Dockerfile parser: text to [`Dockerfile`], following BuildKit's rules exactly.

use super::ast::Dockerfile;

/// A parse failure, with the 1-based line it was found on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Dockerfile:{line}: {message}")]
pub struct ParseError {
    /// 1-based physical line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses Dockerfile text.
pub fn parse(_text: &str) -> Result<Dockerfile, ParseError> {
    Err(ParseError {
        line: 1,
        message: "the Dockerfile parser is not implemented yet".to_owned(),
    })
}
