//! getopt_long-style option parsing, as the musl and glibc tools kiln emulates parse their
//! command lines: a table of [`Opt`]s in, (key, value) pairs and operands out, unknown options
//! refused by name.

use super::ShellError;

/// How an option takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A flag.
    None,
    /// The next word, or attached (`-u1000`, `--uid=1000`).
    Required,
}

/// One option a tool accepts: short letter (or `'\0'`), long name (or `""`), a key, and
/// whether it takes a value.
#[derive(Debug)]
pub struct Opt {
    /// The short letter, or `'\0'` for none.
    pub short: char,
    /// The long name, or `""` for none.
    pub long: &'static str,
    /// What the option is reported as (several spellings may share one key).
    pub key: &'static str,
    /// Whether it takes a value.
    pub arg: Arg,
}

/// An [`Opt`], in the short form tables use.
pub const fn opt(short: char, long: &'static str, key: &'static str, arg: Arg) -> Opt {
    Opt {
        short,
        long,
        key,
        arg,
    }
}

/// getopt_long-style parsing with permutation (options may follow operands, as with musl and
/// glibc), combined short options (`-DH`), attached values (`-u1000`, `--uid=1000`) and `--`.
/// Returns (key, value) pairs in order and the operands.
#[allow(clippy::type_complexity)]
pub fn getopt(
    text: &str,
    tool: &str,
    args: &[String],
    table: &[Opt],
) -> Result<(Vec<(&'static str, Option<String>)>, Vec<String>), ShellError> {
    let unknown = |flag: &str| ShellError::UnknownFlag {
        command: text.to_owned(),
        tool: tool.to_owned(),
        flag: flag.to_owned(),
    };
    let missing = |flag: &str| ShellError::Usage {
        command: text.to_owned(),
        tool: tool.to_owned(),
        message: format!("option requires an argument: {flag}"),
    };
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let Some(o) = table.iter().find(|o| !o.long.is_empty() && o.long == name) else {
                return Err(unknown(arg));
            };
            let value = match (o.arg, attached) {
                (Arg::None, None) => None,
                (Arg::None, Some(_)) => return Err(unknown(arg)),
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    let v = args.get(i).cloned().ok_or_else(|| missing(arg))?;
                    i += 1;
                    Some(v)
                }
            };
            opts.push((o.key, value));
        } else if arg.len() > 1 && arg.starts_with('-') {
            let letters: Vec<char> = arg[1..].chars().collect();
            let mut k = 0;
            while k < letters.len() {
                let c = letters[k];
                k += 1;
                let Some(o) = table.iter().find(|o| o.short == c) else {
                    return Err(unknown(&format!("-{c}")));
                };
                if o.arg == Arg::Required {
                    let rest: String = letters[k..].iter().collect();
                    let value = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| missing(&format!("-{c}")))?;
                        i += 1;
                        v
                    } else {
                        rest
                    };
                    opts.push((o.key, Some(value)));
                    break;
                }
                opts.push((o.key, None));
            }
        } else {
            operands.push(arg.clone());
        }
    }
    Ok((opts, operands))
}

/// Parses a decimal id in `0..=max` with busybox's messages.
pub fn parse_id(text: &str, tool: &str, value: &str, max: u32) -> Result<u32, ShellError> {
    let usage = |message: String| ShellError::Usage {
        command: text.to_owned(),
        tool: tool.to_owned(),
        message,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage(format!("invalid number '{value}'")));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= u64::from(max) => Ok(n as u32),
        _ => Err(usage(format!("number {value} is not in 0..{max} range"))),
    }
}

/// Checks that `operands` has a count in `range`, else the tool's usage line.
pub fn operand_count(
    text: &str,
    tool: &str,
    operands: &[String],
    range: std::ops::RangeInclusive<usize>,
    usage: &str,
) -> Result<(), ShellError> {
    if range.contains(&operands.len()) {
        Ok(())
    } else {
        Err(ShellError::Usage {
            command: text.to_owned(),
            tool: tool.to_owned(),
            message: format!("usage: {usage}"),
        })
    }
}
