//! The text formats inside a wheel: member names checked before they become paths, RECORD's
//! CSV (Python's default dialect) and the relative paths RECORD lists for files installed
//! outside site-packages.

use crate::layer::LayerPath;

/// Refuses absolute names, `..`, backslashes that hide them, NULs and empty components.
pub(crate) fn check_member_name(name: &str) -> Result<(), &'static str> {
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute paths are not allowed");
    }
    if name.contains('\0') {
        return Err("NUL bytes are not allowed");
    }
    if name.len() > 1 && name.as_bytes()[1] == b':' {
        return Err("drive-letter paths are not allowed");
    }
    for component in name.trim_end_matches('/').split(['/', '\\']) {
        match component {
            ".." => return Err("`..` would escape the install directory"),
            "" | "." => return Err("empty or `.` path components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// `target` relative to directory `base`, with `..` as needed (`../../../bin/flask`).
pub(crate) fn relative(target: &LayerPath, base: &LayerPath) -> String {
    let t: Vec<&str> = target
        .as_str()
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let b: Vec<&str> = base.as_str().split('/').filter(|c| !c.is_empty()).collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", b.len() - common).collect();
    parts.extend(&t[common..]);
    parts.join("/")
}

/// Python csv QUOTE_MINIMAL for one field.
pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Splits one CSV line (Python's default dialect); None on an unterminated quote.
pub(crate) fn parse_csv_line(line: &str) -> Option<Vec<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if current.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    if in_quotes {
        return None;
    }
    fields.push(current);
    Some(fields)
}
