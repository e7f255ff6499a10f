//! RUN for a foreign platform: which qemu user-mode interpreter a RUN needs, and the
//! `binfmt_misc` registration the sandbox makes for it in its own user namespace.
//!
//! Linux 6.7 and later give each user namespace that mounts `binfmt_misc` an instance of its
//! own: the sandbox mounts one on its `/proc/sys/fs/binfmt_misc` and registers the interpreter
//! there, for that RUN only; the host's registrations are never touched. The entry has the flag
//! `F`, so the kernel opens the interpreter (a static `qemu-<arch>-static`) from the host's
//! filesystem at registration, before the sandbox pivots into the image. `P` keeps the
//! program's `argv[0]` (qemu reads the kernel's `AT_FLAGS` for it), as Debian registers it; `C`
//! takes the credentials from the program rather than the interpreter, as docker's binfmt
//! installer does, so set-user-ID programs behave as they do natively.
//!
//! The magic and mask come from the entries the qemu-user-static package installs
//! (`/usr/share/binfmts/qemu-<arch>`, Debian's update-binfmts format) or from systemd's
//! `binfmt.d` lines, read at run time. A handler the host already registered with `F` is used
//! as it is: the sandbox then mounts nothing.

use std::path::{Path, PathBuf};

use crate::image::Platform;

/// The environment variable naming a directory that holds `qemu-<arch>-static` interpreters
/// (the same as `kiln build --qemu-dir`).
pub const QEMU_DIR_VARIABLE: &str = "KILN_QEMU_DIR";

/// Where Debian's qemu-user-static describes its binfmt entries (update-binfmts format).
const DEBIAN_BINFMTS: &str = "/usr/share/binfmts";
/// Where systemd-based systems keep `:name:type:offset:magic:mask:interpreter:flags` lines.
const BINFMT_D: [&str; 2] = ["/usr/lib/binfmt.d", "/etc/binfmt.d"];
/// The host's own binfmt_misc (read only, to find a handler it already has).
const HOST_BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How a RUN's programs execute on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Execution {
    /// The machine runs them itself.
    Native,
    /// A handler registered on the host runs them (`qemu-<arch>` with the `F` flag).
    HostHandler(String),
    /// The sandbox registers this interpreter in its own binfmt_misc.
    Register(Registration),
}

/// One binfmt_misc entry the sandbox registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The entry's name (`qemu-aarch64`).
    pub name: String,
    /// The interpreter on the host (`.../qemu-aarch64-static`).
    pub interpreter: PathBuf,
    /// The line written to `register`.
    pub line: String,
    /// The platform it runs, as the error messages name it (`linux/arm64`).
    pub platform: String,
}

/// qemu's name of a GOARCH architecture, when qemu-user has one.
fn qemu_arch(platform: &Platform) -> Option<&'static str> {
    Some(match platform.architecture.as_str() {
        "amd64" => "x86_64",
        "386" => "i386",
        "arm64" => "aarch64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "mipsle" => "mipsel",
        "mips" => "mips",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// True when `build` runs `target`'s programs without an interpreter: the same architecture
/// (any variant: kiln does not tell an arm v6 machine from a v7 one), or 32-bit x86 on amd64.
fn runs_natively(target: &Platform, build: &Platform) -> bool {
    target.architecture == build.architecture
        || (target.architecture == "386" && build.architecture == "amd64")
}

/// How programs of `target` run on `build`, looking for `qemu-<arch>-static` in `qemu_dir`
/// (`--qemu-dir`), then in `$KILN_QEMU_DIR`, then on `PATH`. The error says why it cannot, and
/// the fix.
pub fn execution(
    target: &Platform,
    build: &Platform,
    qemu_dir: Option<&Path>,
) -> Result<Execution, String> {
    if target.os != build.os {
        return Err(format!(
            "{} programs cannot run on a {} machine",
            target.os, build.os
        ));
    }
    if runs_natively(target, build) {
        return Ok(Execution::Native);
    }
    let platform = shown(target);
    let Some(arch) = qemu_arch(target) else {
        return Err(format!(
            "kiln knows no qemu interpreter for the architecture `{}`",
            target.architecture
        ));
    };
    let name = format!("qemu-{arch}");
    if let Some(handler) = host_handler(&name) {
        return Ok(Execution::HostHandler(handler));
    }
    let program = format!("qemu-{arch}-static");
    let env_dir = std::env::var_os(QEMU_DIR_VARIABLE).map(PathBuf::from);
    let interpreter =
        find_interpreter(&program, qemu_dir.or(env_dir.as_deref())).ok_or_else(|| {
            format!(
                "no `{program}` was found to run {platform} programs (looked in {}); install \
                 qemu-user-static (Debian: apt-get install qemu-user-static), or give \
                 --qemu-dir DIR (or {QEMU_DIR_VARIABLE}=DIR) with a static {program} in it",
                match qemu_dir.or(env_dir.as_deref()) {
                    Some(dir) => format!("`{}`", dir.display()),
                    None => "PATH".to_owned(),
                }
            )
        })?;
    let (magic, mask, offset) = magic_of(&name).ok_or_else(|| {
        format!(
            "found `{}` but no binfmt entry describing {platform} programs ({DEBIAN_BINFMTS}/{name} \
             or {name}*.conf in {}); install qemu-user-static, which ships them",
            interpreter.display(),
            BINFMT_D.join(" or ")
        )
    })?;
    let line = format!(
        ":{name}:M:{offset}:{magic}:{mask}:{}:FPC",
        interpreter.display()
    );
    // The kernel takes at most 1920 bytes, and `:` separates the fields.
    if line.len() > 1900 || interpreter.as_os_str().as_encoded_bytes().contains(&b':') {
        return Err(format!(
            "the interpreter path `{}` cannot be registered (a `:` in it, or too long)",
            interpreter.display()
        ));
    }
    Ok(Execution::Register(Registration {
        name,
        interpreter,
        line,
        platform,
    }))
}

/// `os/arch[/variant]`.
pub fn shown(platform: &Platform) -> String {
    match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}

/// An enabled host entry named `name` whose interpreter is opened at registration (`F`):
/// without it the interpreter's path would be looked up inside the image.
fn host_handler(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(HOST_BINFMT_MISC).join(name)).ok()?;
    let enabled = text.lines().next() == Some("enabled");
    let fixed = text
        .lines()
        .find_map(|line| line.strip_prefix("flags: "))
        .is_some_and(|flags| flags.contains('F'));
    let interpreter = text
        .lines()
        .find_map(|line| line.strip_prefix("interpreter "))?;
    (enabled && fixed).then(|| interpreter.to_owned())
}

fn find_interpreter(program: &str, dir: Option<&Path>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = match dir {
        Some(dir) => Some(dir.join(program)).filter(|p| is_executable(p)),
        None => std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p)),
    }?;
    // An absolute path: the kernel opens it from the sandbox's working directory otherwise.
    std::path::absolute(&found).ok()
}

/// The magic, mask and offset of the entry `name`, as the kernel's register syntax writes them
/// (`\x7f\x45...`).
fn magic_of(name: &str) -> Option<(String, String, String)> {
    if let Ok(text) = std::fs::read_to_string(Path::new(DEBIAN_BINFMTS).join(name)) {
        return parse_update_binfmts(&text);
    }
    for dir in BINFMT_D {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(name) && n.ends_with(".conf"))
            })
            .collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if let Some(found) = text
                .lines()
                .find_map(|line| parse_register_line(line, name))
            {
                return Some(found);
            }
        }
    }
    None
}

/// Debian's update-binfmts format: `magic \x7f...`, `mask \xff...`, `offset 0` lines.
fn parse_update_binfmts(text: &str) -> Option<(String, String, String)> {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().to_owned())
        })
    };
    let magic = field("magic").filter(|m| is_register_bytes(m))?;
    let mask = field("mask").filter(|m| is_register_bytes(m))?;
    let offset = field("offset").unwrap_or_else(|| "0".to_owned());
    offset.parse::<u32>().ok()?;
    Some((magic, mask, offset))
}

/// A `:name:M:offset:magic:mask:interpreter:flags` line (the first character is the
/// separator) for the entry `name`.
fn parse_register_line(line: &str, name: &str) -> Option<(String, String, String)> {
    let separator = line.chars().next()?;
    let fields: Vec<&str> = line[separator.len_utf8()..].split(separator).collect();
    let [entry, "M", offset, magic, mask, ..] = fields.as_slice() else {
        return None;
    };
    if *entry != name || !is_register_bytes(magic) || !is_register_bytes(mask) {
        return None;
    }
    let offset = if offset.is_empty() { "0" } else { offset };
    offset.parse::<u32>().ok()?;
    Some((magic.to_string(), mask.to_string(), offset.to_owned()))
}

/// Bytes as the register syntax writes them; nothing that could end a field or the line.
fn is_register_bytes(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nmagic \\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00\noffset 0\nmask \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff\ncredentials no\nfix_binary yes\npreserve yes\n";

    #[test]
    fn reads_debian_entries() {
        let (magic, mask, offset) = parse_update_binfmts(AARCH64).unwrap();
        assert!(magic.starts_with("\\x7f\\x45\\x4c\\x46\\x02"));
        assert!(magic.ends_with("\\xb7\\x00"));
        assert!(mask.ends_with("\\xfe\\xff\\xff\\xff"));
        assert_eq!(offset, "0");
        assert_eq!(parse_update_binfmts("magic a:b\nmask \\xff\n"), None);
    }

    #[test]
    fn reads_binfmt_d_lines() {
        let line = ":qemu-aarch64:M::\\x7fELF\\x02:\\xff\\xff:/usr/bin/qemu-aarch64-static:FP";
        assert_eq!(
            parse_register_line(line, "qemu-aarch64"),
            Some((
                "\\x7fELF\\x02".to_owned(),
                "\\xff\\xff".to_owned(),
                "0".to_owned()
            ))
        );
        assert_eq!(parse_register_line(line, "qemu-arm"), None);
        assert_eq!(
            parse_register_line(":qemu-arm:E::exe::/x:", "qemu-arm"),
            None
        );
    }

    #[test]
    fn same_architecture_is_native() {
        let host = Platform::new("linux", "amd64", None);
        for native in ["linux/amd64", "linux/386"] {
            let target: Platform = native.parse().unwrap();
            assert_eq!(execution(&target, &host, None), Ok(Execution::Native));
        }
        let windows: Platform = "windows/amd64".parse().unwrap();
        assert!(execution(&windows, &host, None).is_err());
    }

    #[test]
    fn missing_interpreter_names_the_fix() {
        let host = Platform::new("linux", "amd64", None);
        let target: Platform = "linux/s390x".parse().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let error = execution(&target, &host, Some(empty.path())).unwrap_err();
        assert!(error.contains("qemu-s390x-static"), "{error}");
        assert!(error.contains("qemu-user-static"), "{error}");
        assert!(error.contains("--qemu-dir"), "{error}");
    }
}
