//! Variable expansion and word splitting for instruction arguments (`$VAR`, `${VAR:-x}`, quotes).

/// An expansion failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message} in `{word}`")]
pub struct ExpandError {
    /// The word being expanded.
    pub word: String,
    /// What is wrong.
    pub message: String,
}

/// Expands one word: variables substituted, quotes removed, escapes applied; no splitting.
pub fn expand_word(
    word: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
    _escape: char,
) -> Result<String, ExpandError> {
    Err(ExpandError {
        word: word.to_owned(),
        message: "expansion is not implemented yet".to_owned(),
    })
}

/// Expands and splits into words (unquoted whitespace separates, as for COPY and EXPOSE).
pub fn expand_words(
    word: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
    _escape: char,
) -> Result<Vec<String>, ExpandError> {
    Err(ExpandError {
        word: word.to_owned(),
        message: "expansion is not implemented yet".to_owned(),
    })
}
