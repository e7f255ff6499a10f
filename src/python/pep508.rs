//! The one place kiln turns PEP 508 text (`name[extras] specifiers ; markers`) into a
//! [`Requirement`]: requirement files, `pip install` arguments, `kiln lock` specs and the
//! `Requires-Dist` of downloaded metadata all come through here.
//!
//! `pep508_rs` 0.9.2 panics ("`PackageName` validation should match PEP 508 parsing") on a
//! name that ends in `.`, `-` or `_` when more text follows it (`foo. x`, `foo- ==1`,
//! `foo_;python_version>"3"`); its own check only covers such a name at the very end of the
//! text. A requirements file or a wheel's METADATA could abort the whole build with it, so
//! that case is refused here, with an error, before the parser sees it; the same for an extra
//! (`pkg[extra.]`, "`ExtraName` validation should match PEP 508 parsing"). Its marker parser
//! measures the word after an expression in characters and slices the text with that count as
//! bytes, so a non-ASCII character outside a quoted value in the markers panics there too
//! (`a; python_version == "3" é`); PEP 508 allows such characters only inside quoted values,
//! so that is refused here as well. Its errors' own `Display` panics on a span ending inside a
//! multibyte character, so they are written here.

use std::str::FromStr;

use pep508_rs::Requirement;

/// Parses one PEP 508 requirement; the error says what is wrong (no panic on any input).
pub fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let name = leading_name(text);
    check_name_end("package name", name)?;
    let after_name = text.trim_start()[name.len()..].trim_start();
    if let Some(extras) = after_name.strip_prefix('[') {
        let extras = extras.split(']').next().unwrap_or_default();
        for extra in extras.split(',') {
            check_name_end("extra", leading_name(extra))?;
        }
    }
    check_markers_ascii(text)?;
    // Not the error's own Display: it slices the input by a span counted in characters and
    // panics when that span ends inside a multibyte character (found by fuzzing).
    Requirement::from_str(text).map_err(|e| {
        format!(
            "{} (at character {} of `{}`)",
            e.message,
            e.start + 1,
            e.input
        )
    })
}

/// The run of name characters (`A-Za-z0-9._-`) at the start of `text`, after whitespace.
fn leading_name(text: &str) -> &str {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(text.len());
    &text[..end]
}

/// Refuses a non-ASCII character outside a quoted value in the markers (after the `;` that
/// starts them: the first one, or for a URL requirement the first one after whitespace).
fn check_markers_ascii(text: &str) -> Result<(), String> {
    let is_url = matches!((text.find('@'), text.find(';')), (Some(at), Some(semi)) if at < semi);
    let start = if is_url {
        text.char_indices()
            .zip(text.chars().skip(1))
            .find(|((_, c), next)| c.is_whitespace() && *next == ';')
            .map(|((i, c), _)| i + c.len_utf8())
    } else {
        text.find(';')
    };
    let Some(start) = start else { return Ok(()) };
    let markers = &text[start + 1..];
    let mut quote = None;
    for c in markers.chars() {
        match quote {
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if !c.is_ascii() => {
                return Err(format!(
                    "non-ASCII character `{c}` outside a quoted value in the markers `{}` \
                     (PEP 508)",
                    markers.trim()
                ));
            }
            None => {}
        }
    }
    Ok(())
}

fn check_name_end(what: &str, name: &str) -> Result<(), String> {
    match name.chars().last() {
        Some(last @ ('.' | '-' | '_')) => Err(format!(
            "{what} `{name}` must end with a letter or a digit, not `{last}` (PEP 508)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_outside_quoted_marker_values_is_an_error_not_a_panic() {
        // Each of these panicked inside pep508_rs's marker parser (found by fuzzing).
        for text in [
            "a; python_version == \"3\" \u{e9}",
            "a ; python_version == '3' and\u{feff}x",
            "a @ https://example.invalid/a.whl ; os_name == 'posix' \u{2003}or\u{e9}",
        ] {
            let err = parse_requirement(text).expect_err(text);
            assert!(err.contains("non-ASCII character"), "{text}: {err}");
        }
        // Inside quoted values (and before the markers) they stay the parser's business.
        parse_requirement("a; platform_release == '\u{e9}t\u{e9}'").unwrap();
    }

    #[test]
    fn names_ending_in_a_separator_are_errors_not_panics() {
        // Each of these panicked inside pep508_rs before the check (the first one is what the
        // fuzzer found in a requirements file).
        for text in [
            "feral. To check",
            "foo- ==1.0",
            "foo_;python_version>'3'",
            "a.[x]",
            "b-",
            "pkg[s27.]",
            "pkg [a, b_ ,c]",
        ] {
            let err = parse_requirement(text).expect_err(text);
            assert!(
                err.contains("must end with a letter or a digit"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn ordinary_requirements_still_parse() {
        for (text, name) in [
            ("flask==3.1.3", "flask"),
            (
                "  zope.interface>=5 ; python_version >= '3.8'",
                "zope-interface",
            ),
            ("typing_extensions[dev]", "typing-extensions"),
            ("a-b.c_d", "a-b-c-d"),
        ] {
            let requirement = parse_requirement(text).expect(text);
            assert_eq!(requirement.name.as_ref(), name, "{text}");
        }
        assert!(parse_requirement("").is_err());
        assert!(parse_requirement("-e .").is_err());
    }
}
