//! BuildKit's s-expression dump of a parse tree (`kiln debug dockerfile`).

use super::ast::Dockerfile;

/// Renders `file` in BuildKit's `Node.Dump()` format, one line per instruction.
pub fn dump(_file: &Dockerfile) -> String {
    String::new()
}
