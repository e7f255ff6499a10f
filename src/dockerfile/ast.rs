//! The raw parse tree of a Dockerfile: one [`Node`] per instruction, as BuildKit's parser
//! produces it, before any instruction-specific meaning is given to the words.

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character from the `# escape=` directive (`\` by default).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded, not acted on).
    pub syntax: Option<String>,
    /// The instructions, in file order.
    pub nodes: Vec<Node>,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The keyword, lowercased (`from`, `run`, ...).
    pub keyword: String,
    /// The leading `--flag[=value]` words, quotes removed.
    pub flags: Vec<String>,
    /// The argument nodes, as BuildKit's dump shows them.
    pub args: Vec<String>,
    /// True when the arguments came from a JSON array (exec form).
    pub json_form: bool,
    /// For ONBUILD: the nested instruction.
    pub next: Option<Box<Node>>,
    /// Heredoc bodies referenced by the instruction (`<<EOF`), in order. For `ONBUILD`, the
    /// nested instruction's heredocs, recorded on both the `ONBUILD` node and `next`.
    pub heredocs: Vec<Heredoc>,
    /// The logical line after the keyword and flags, as written (continuations joined).
    pub original: String,
    /// First physical line (1-based).
    pub start_line: usize,
    /// Last physical line consumed (1-based), continuations and heredoc bodies included.
    pub end_line: usize,
}

/// A heredoc attached to an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`).
    pub name: String,
    /// The body, each line ending in `\n` (the last one only if the file had it), already
    /// chomped (leading tabs removed from every line) when `chomp` is true; chomping again is
    /// harmless.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`): no variable expansion.
    pub expand: bool,
    /// True for `<<-EOF`: leading tabs are stripped from the body lines.
    pub chomp: bool,
}
