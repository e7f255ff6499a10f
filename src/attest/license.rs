//! SPDX license expressions kiln declares as they are: a table of the well-known license and
//! exception ids (the common ones in Alpine and PyPI) and [`is_known_expression`], which SPDX
//! and CycloneDX documents use to choose between a declared license and NOASSERTION.

/// SPDX license ids accepted as `licenseDeclared` (the common ones in Alpine and PyPI).
const KNOWN_LICENSES: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-2.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-4.0",
    "CC0-1.0",
    "curl",
    "EPL-2.0",
    "GFDL-1.3-or-later",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "libtiff",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Vim",
    "X11",
    "Zlib",
    "ZPL-2.1",
];
/// Exception ids accepted after `WITH`.
const KNOWN_EXCEPTIONS: &[&str] = &[
    "GCC-exception-3.1",
    "Classpath-exception-2.0",
    "LLVM-exception",
];

/// True when `license` is an expression over [`KNOWN_LICENSES`] with AND/OR/WITH/parentheses.
pub(crate) fn is_known_expression(license: &str) -> bool {
    let spaced = license.replace('(', " ( ").replace(')', " ) ");
    let mut after_with = false;
    let mut any = false;
    let mut depth = 0i32;
    for token in spaced.split_whitespace() {
        match token {
            "(" => depth += 1,
            ")" => depth -= 1,
            "AND" | "OR" => {}
            "WITH" => {
                after_with = true;
                continue;
            }
            id if after_with => {
                if !KNOWN_EXCEPTIONS.contains(&id) {
                    return false;
                }
            }
            id => {
                let id = id.strip_suffix('+').unwrap_or(id);
                if !KNOWN_LICENSES.contains(&id) {
                    return false;
                }
                any = true;
            }
        }
        if depth < 0 {
            return false;
        }
        after_with = false;
    }
    any && depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_expressions() {
        for (text, known) in [
            ("MIT", true),
            ("MIT AND BSD-2-Clause", true),
            ("(GPL-2.0-or-later OR MIT) AND Zlib", true),
            ("GPL-2.0-only WITH GCC-exception-3.1", true),
            ("custom", false),
            ("GPL-2.0", false),
            ("MIT AND", true),
            ("(MIT", false),
            ("", false),
            ("BSD 3-Clause License", false),
        ] {
            assert_eq!(is_known_expression(text), known, "{text}");
        }
    }
}
