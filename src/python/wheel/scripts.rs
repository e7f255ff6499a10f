//! The scripts a wheel asks for: `console_scripts`/`gui_scripts` entry points turned into the
//! launchers pip writes, and `#!python` shebangs rewritten for the target interpreter.

use std::fs::File;
use std::io::Read;

use crate::layer::FileContent;

/// `[console_scripts]` and `[gui_scripts]` entries of entry_points.txt (INI, `=` only,
/// case-sensitive keys), in file order.
pub fn scripts_from_entry_points(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_scripts = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_scripts = matches!(section.trim(), "console_scripts" | "gui_scripts");
            continue;
        }
        if !in_scripts {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The shebang distlib writes: `#!<interpreter>\n`, or the `/bin/sh` trampoline when the line
/// would be longer than 127 bytes or the path has a space.
pub fn shebang(interpreter: &str) -> String {
    if interpreter.len() + 3 <= 127 && !interpreter.contains(' ') {
        format!("#!{interpreter}\n")
    } else {
        format!("#!/bin/sh\n'''exec' \"{interpreter}\" \"$0\" \"$@\"\n' '''\n")
    }
}

/// The launcher pip (distlib 0.3.x, as in pip 23 and 24) writes for `module:attr [extras]`.
/// None when the value is not `module:attr`.
pub fn launcher_script(interpreter: &str, value: &str) -> Option<String> {
    // Extras (`[x]`) are deprecated and ignored.
    let value = value.split('[').next().unwrap_or_default().trim();
    let (module, attr) = value.split_once(':')?;
    let (module, attr) = (module.trim(), attr.trim());
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    if !valid(module) || !valid(attr) {
        return None;
    }
    let import_name = attr.split('.').next().unwrap_or(attr);
    Some(format!(
        "{}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\n\
         if __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    \
         sys.exit({attr}())\n",
        shebang(interpreter)
    ))
}

/// pip's `fix_script`: a first line starting with `#!python` becomes `#!<interpreter>\n`.
pub(crate) fn rewrite_shebang(
    content: &FileContent,
    interpreter: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let bytes: Vec<u8> = match content {
        FileContent::Bytes(b) => b.to_vec(),
        FileContent::HostFile { path, .. } => {
            let mut head = [0u8; 8];
            let n = File::open(path)?.read(&mut head)?;
            if !head[..n].starts_with(b"#!python") {
                return Ok(None);
            }
            std::fs::read(path)?
        }
    };
    if !bytes.starts_with(b"#!python") {
        return Ok(None);
    }
    let rest = match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => &bytes[i + 1..],
        None => &[][..],
    };
    let mut out = format!("#!{interpreter}\n").into_bytes();
    out.extend_from_slice(rest);
    Ok(Some(out))
}
