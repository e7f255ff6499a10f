//! Small actions on host paths run as the mapped ids, each in a forked child that enters a new
//! user namespace with the sandbox's maps: setting the image's owners, removing and copying
//! what only those ids may touch, and probing whether overlayfs mounts there.

use std::ffi::{CString, c_char};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::child::apply_owners;
use super::{cstr, cstring, pipe, wait};
use crate::sandbox::SandboxError;
use crate::sandbox::idmap::IdMaps;
use crate::sandbox::materialize::Chown;

/// Sets the owners of `chowns` from inside a user namespace with `maps`, where they can be set
/// (an unprivileged caller owns its subordinate ids only there).
pub fn chown_as_mapped(chowns: &[Chown], maps: &IdMaps) -> Result<(), SandboxError> {
    if chowns.is_empty() {
        return Ok(());
    }
    // SAFETY: apply_owners makes only system calls on data prepared before the fork.
    in_user_namespace(maps, &|| unsafe {
        if apply_owners(chowns) { 0 } else { 1 }
    })
    .map_err(|code| {
        SandboxError::Setup(format!(
            "failed to set the image's file owners and capabilities in the sandbox's user \
             namespace ({})",
            if code == 1 {
                "a chown, chmod or setxattr failed".to_owned()
            } else {
                format!("exit code {code}")
            }
        ))
    })
}

/// Whether overlayfs mounts in a user namespace with `maps` here: tries one in `dir` (empty
/// and kiln's own).
pub fn overlay_works(dir: &Path, maps: &IdMaps) -> Result<(), SandboxError> {
    for name in ["lower", "upper", "work", "merged"] {
        let path = dir.join(name);
        std::fs::create_dir(&path).map_err(|source| SandboxError::Io {
            action: "create",
            path,
            source,
        })?;
    }
    let directory = cstring(dir)?;
    let merged = cstr("merged")?;
    // Relative to `dir`, as the sandbox names its layers.
    let options = cstr("lowerdir=lower,upperdir=upper,workdir=work,userxattr,volatile")?;
    let overlay = cstr("overlay")?;
    let slash = cstr("/")?;
    // SAFETY: system calls on data prepared above.
    in_user_namespace(maps, &|| unsafe {
        let null = std::ptr::null::<c_char>();
        let mounted = libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::chdir(directory.as_ptr()) == 0
            && libc::mount(
                null,
                slash.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                overlay.as_ptr(),
                merged.as_ptr(),
                overlay.as_ptr(),
                0,
                options.as_ptr().cast(),
            ) == 0;
        if mounted { 0 } else { 1 }
    })
    .map_err(|code| {
        SandboxError::Setup(format!(
            "overlayfs cannot be mounted in a user namespace here (exit code {code})"
        ))
    })
}

/// Removes `path` from inside a user namespace with `maps`, where every owner a sandboxed
/// command can create is mapped: an unprivileged caller cannot remove what belongs to its
/// subordinate ids from outside.
pub fn remove_as_mapped(path: &Path, maps: &IdMaps) -> Result<(), SandboxError> {
    let path_text = path
        .to_str()
        .ok_or_else(|| SandboxError::Setup(format!("`{}` is not UTF-8", path.display())))?;
    host_command_as_mapped("/bin/rm", &["rm", "-rf", path_text], maps).map_err(|code| {
        SandboxError::Setup(format!(
            "failed to remove `{}` in the sandbox's user namespace (exit code {code})",
            path.display()
        ))
    })
}

/// Copies each `(source, copy)` from inside a user namespace with `maps`, where root may read
/// every file a command left (whatever its mode and owner); the copies belong to the caller.
pub fn copy_as_mapped(pairs: &[(PathBuf, PathBuf)], maps: &IdMaps) -> Result<(), SandboxError> {
    let mut args = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        r#"while [ $# -gt 0 ]; do cat -- "$1" > "$2" || exit 1; shift 2; done"#.to_owned(),
        "sh".to_owned(),
    ];
    for (source, copy) in pairs {
        for path in [source, copy] {
            args.push(path.to_str().map(str::to_owned).ok_or_else(|| {
                SandboxError::Setup(format!("`{}` is not UTF-8", path.display()))
            })?);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host_command_as_mapped("/bin/sh", &args, maps).map_err(|code| {
        SandboxError::Setup(format!(
            "failed to read the files the command left unreadable (exit code {code})"
        ))
    })
}

/// Runs a host program as root of a new user namespace with `maps` (no other namespace, no
/// change of root); `Err` carries its exit code.
pub(super) fn host_command_as_mapped(
    program: &str,
    args: &[&str],
    maps: &IdMaps,
) -> Result<(), i32> {
    let prepare = || -> Result<(CString, Vec<CString>), SandboxError> {
        Ok((
            cstr(program)?,
            args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
        ))
    };
    let (program, args) = prepare().map_err(|_| 126)?;
    let argv: Vec<*const c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: [*const c_char; 1] = [std::ptr::null()];
    // SAFETY: execve on data prepared above.
    in_user_namespace(maps, &|| unsafe {
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        127
    })
}

/// Runs `action` in a forked child that is root of a new user namespace with `maps` (no other
/// namespace); its return value is the child's exit code, `Err` carries a non-zero one.
/// `action` runs between fork and exit in a child of a possibly threaded process: system calls
/// only, no allocation.
pub(super) fn in_user_namespace(maps: &IdMaps, action: &dyn Fn() -> i32) -> Result<(), i32> {
    let (unshared_read, unshared_write) = pipe().map_err(|_| 126)?;
    let (go_read, go_write) = pipe().map_err(|_| 126)?;
    // SAFETY: the child makes only system calls on data prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(126);
    }
    if pid == 0 {
        // SAFETY: in the forked child; every path ends in _exit or exec.
        unsafe {
            libc::close(unshared_read.as_raw_fd());
            libc::close(go_write.as_raw_fd());
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(125);
            }
            let mut byte = 1u8;
            libc::write(unshared_write.as_raw_fd(), (&byte as *const u8).cast(), 1);
            if libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(125);
            }
            libc::_exit(action());
        }
    }
    drop((unshared_write, go_read));
    let mut byte = [0u8; 1];
    if matches!(std::fs::File::from(unshared_read).read(&mut byte), Ok(1))
        && maps.apply(pid as u32).is_ok()
    {
        let _ = nix::unistd::write(&go_write, &[1]);
    }
    drop(go_write);
    match wait(pid).map_err(|_| 126)? {
        0 => Ok(()),
        code => Err(code),
    }
}
