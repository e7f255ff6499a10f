//! Running one command in new user, mount, pid, uts, ipc (and network) namespaces, rooted in an
//! overlay mount or a materialized rootfs.
//!
//! The process tree: kiln forks a child that unshares the namespaces and waits until kiln has
//! written its uid and gid maps (directly, or through `newuidmap`/`newgidmap`); the child then
//! forks the command's process, which is pid 1 of the new pid namespace. That process sets the
//! image's owners on what kiln wrote (possible only inside the map), mounts the rootfs (the
//! overlay, or a bind of the copy onto itself) and creates missing mount points in it, mounts
//! /proc, a small /dev on a tmpfs with the host's null, zero, full, random, urandom and tty bound
//! in, and the RUN's mounts; pivots into the rootfs, detaches the host's mounts, switches to USER
//! and execs.
//!
//! Between fork and exec only system calls run, on data prepared beforehand: kiln may have
//! other threads, and allocating in a forked child of a threaded process can deadlock. That
//! code is in [`child`]; [`mapped`] runs small actions on the host as the mapped ids.

use std::ffi::{CString, c_char, c_int};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::idmap::IdMaps;
use super::materialize::Chown;
use child::{ChildFds, child};

mod child;
mod mapped;

pub use mapped::{chown_as_mapped, copy_as_mapped, overlay_works, remove_as_mapped};

/// A bind mount: a host path onto a path in the rootfs.
pub struct Bind {
    /// Host source.
    pub source: PathBuf,
    /// Host path of the mount point inside the rootfs.
    pub target: PathBuf,
    /// Mount it read-only.
    pub readonly: bool,
}

/// The rootfs as an overlay mount of layer directories (see [`super::overlay`]).
pub struct OverlayMount {
    /// The directory every layer is named relative to: it holds short symlinks to them
    /// ([`super::overlay::name_layers`]), so the mount options stay within a page and never
    /// hold a path's commas or colons.
    pub layers_dir: PathBuf,
    /// The lower layers' names in `layers_dir`, topmost first.
    pub lowers: Vec<String>,
    /// The upper directory's name in `layers_dir`: everything the command changes lands there.
    pub upper: String,
    /// The name of overlayfs's work directory (empty, on the upper directory's filesystem).
    pub work: String,
}

/// Everything one command needs.
pub struct ExecSpec {
    /// The rootfs directory (the mount point, when `overlay` is set).
    pub root: PathBuf,
    /// Mount the rootfs as this overlay instead of binding `root` onto itself.
    pub overlay: Option<OverlayMount>,
    /// Mount points to create in the mounted rootfs before anything is mounted on them, in
    /// order (`true`: an empty file, else a directory); existing ones are kept. Each path,
    /// below `root`, is walked one component at a time without following a symlink: an earlier
    /// command may have left one where the image has nothing.
    pub create: Vec<(PathBuf, bool)>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory inside.
    pub workdir: String,
    /// uid inside.
    pub uid: u32,
    /// gid inside.
    pub gid: u32,
    /// Supplementary groups inside.
    pub groups: Vec<u32>,
    /// Share the host's network namespace (else a new one with only loopback).
    pub host_network: bool,
    /// The mount point of /proc (host path).
    pub proc_dir: PathBuf,
    /// The mount point of /dev (host path).
    pub dev_dir: PathBuf,
    /// Bind mounts, in order.
    pub binds: Vec<Bind>,
    /// tmpfs mount points (host paths).
    pub tmpfs: Vec<PathBuf>,
    /// Owners to set before the command runs.
    pub chowns: Vec<Chown>,
    /// The id maps.
    pub maps: IdMaps,
    /// An interpreter to register in the sandbox's own binfmt_misc, mounted on its /proc.
    pub binfmt: Option<super::binfmt::Registration>,
}

/// How a command ended.
pub struct ExecOutcome {
    /// Its exit code (128 + signal when killed).
    pub exit_code: i32,
    /// Its output (stdout and stderr interleaved), at most the last [`OUTPUT_KEPT`] bytes.
    pub output: Vec<u8>,
    /// When it was about to start (realtime seconds, nanoseconds).
    pub started: (i64, i64),
}

/// How much of a command's output is kept for the error message.
pub const OUTPUT_KEPT: usize = 64 * 1024;

/// The setup steps the sandbox's processes may fail in, as they report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Stage {
    Unshare,
    Fork,
    PrivateMounts,
    MountRoot,
    Owners,
    Proc,
    Dev,
    DevNodes,
    RunMounts,
    Hostname,
    Loopback,
    Pivot,
    Workdir,
    User,
    Stdio,
    Exec,
    MountPoints,
    BinfmtMount,
    BinfmtRegister,
}

impl Stage {
    const ALL: [Stage; 19] = [
        Stage::Unshare,
        Stage::Fork,
        Stage::PrivateMounts,
        Stage::MountRoot,
        Stage::Owners,
        Stage::Proc,
        Stage::Dev,
        Stage::DevNodes,
        Stage::RunMounts,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Pivot,
        Stage::Workdir,
        Stage::User,
        Stage::Stdio,
        Stage::Exec,
        Stage::MountPoints,
        Stage::BinfmtMount,
        Stage::BinfmtRegister,
    ];

    fn from_code(code: u32) -> Option<Stage> {
        Stage::ALL.get(code as usize).copied()
    }

    fn describe(self) -> &'static str {
        match self {
            Stage::Unshare => "enter new namespaces",
            Stage::Fork => "fork the command's process",
            Stage::PrivateMounts => "make the mounts private",
            Stage::MountRoot => "mount the rootfs",
            Stage::Owners => "set the image's file owners and capabilities",
            Stage::Proc => "mount /proc",
            Stage::Dev => "mount /dev",
            Stage::DevNodes => "populate /dev",
            Stage::RunMounts => "mount a RUN --mount",
            Stage::Hostname => "set the hostname",
            Stage::Loopback => "bring up the loopback interface",
            Stage::Pivot => "pivot into the rootfs",
            Stage::Workdir => "enter the working directory",
            Stage::User => "switch to USER",
            Stage::Stdio => "set up stdin, stdout and stderr",
            Stage::Exec => "execute the command",
            Stage::MountPoints => "create a mount point in the rootfs",
            Stage::BinfmtMount => "mount the sandbox's own binfmt_misc",
            Stage::BinfmtRegister => "register the qemu interpreter in the sandbox's binfmt_misc",
        }
    }
}

const STAGE_STARTED: u32 = u32::MAX;

/// One record the command's process writes to kiln before exec (or instead of it).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Report {
    stage: u32,
    errno: i32,
    seconds: i64,
    nanos: i64,
}

fn cstring(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Io {
        action: "name",
        path: path.to_owned(),
        source: std::io::Error::other("path contains a NUL byte"),
    })
}

fn cstr(text: &str) -> Result<CString, SandboxError> {
    CString::new(text).map_err(|_| SandboxError::Command(format!("`{text}` contains a NUL byte")))
}

/// Data the child reads, all allocated before fork.
struct Prepared {
    root: CString,
    /// The layers' directory and the overlay's mount options.
    overlay: Option<(CString, CString)>,
    /// Components below the root, and whether the last is a file.
    create: Vec<(Vec<CString>, bool)>,
    proc_dir: CString,
    dev_dir: CString,
    dev_files: Vec<(CString, CString)>,
    dev_links: Vec<(CString, CString)>,
    dev_pts: CString,
    dev_shm: CString,
    /// Source, target, and for a read-only bind the flags of its remount.
    binds: Vec<(CString, CString, Option<libc::c_ulong>)>,
    tmpfs: Vec<CString>,
    workdir: CString,
    programs: Vec<CString>,
    argv_strings: Vec<CString>,
    argv: Vec<*const c_char>,
    /// Owns the strings `envp` points into.
    _env_strings: Vec<CString>,
    envp: Vec<*const c_char>,
    hostname: CString,
    groups: Vec<libc::gid_t>,
    setgroups: bool,
    chowns: Vec<Chown>,
    uid: u32,
    gid: u32,
    host_network: bool,
    /// The sandbox's binfmt_misc mount point (in its /proc), its `register` file and the line
    /// written there.
    binfmt: Option<Binfmt>,
    lit: Literals,
}

struct Binfmt {
    dir: CString,
    register: CString,
    line: Vec<u8>,
    registration: super::binfmt::Registration,
}

/// Constant strings for mount(2).
struct Literals {
    overlay: CString,
    proc: CString,
    binfmt_misc: CString,
    tmpfs: CString,
    devpts: CString,
    dev_options: CString,
    pts_options: CString,
    shm_options: CString,
    dot: CString,
    slash: CString,
}

impl Prepared {
    fn new(spec: ExecSpec) -> Result<Prepared, SandboxError> {
        let dev = |name: &str| spec.dev_dir.join(name);
        let mut dev_files = Vec::new();
        for name in ["null", "zero", "full", "random", "urandom", "tty"] {
            dev_files.push((
                cstring(&dev(name))?,
                cstring(&Path::new("/dev").join(name))?,
            ));
        }
        let mut dev_links = Vec::new();
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            dev_links.push((cstr(target)?, cstring(&dev(name))?));
        }
        let argv0 = spec
            .argv
            .first()
            .ok_or_else(|| SandboxError::Command("RUN has no command".to_owned()))?;
        let programs = if argv0.contains('/') {
            vec![cstr(argv0)?]
        } else {
            let path = spec
                .env
                .iter()
                .rev()
                .find_map(|kv| kv.strip_prefix("PATH="))
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .filter(|dir| !dir.is_empty())
                .map(|dir| cstr(&format!("{}/{argv0}", dir.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        let argv_owned: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<_, _>>()?;
        let env_owned: Vec<CString> = spec.env.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect::<Vec<_>>()
        };
        let argv = pointers(&argv_owned);
        let envp = pointers(&env_owned);
        let overlay = match &spec.overlay {
            None => None,
            Some(overlay) => {
                // volatile: no fsync after each copy-up; the upper directory is scratch,
                // read once by the snapshot and removed with the build.
                let options = format!(
                    "lowerdir={},upperdir={},workdir={},userxattr,volatile",
                    overlay.lowers.join(":"),
                    overlay.upper,
                    overlay.work
                );
                // mount(2) takes at most a page of options.
                if options.len() >= 4000 {
                    return Err(SandboxError::Setup(format!(
                        "the rootfs has too many layers to mount ({} lower layers)",
                        overlay.lowers.len()
                    )));
                }
                Some((cstring(&overlay.layers_dir)?, cstr(&options)?))
            }
        };
        Ok(Prepared {
            root: cstring(&spec.root)?,
            overlay,
            create: spec
                .create
                .iter()
                .map(|(path, file)| {
                    let below = path.strip_prefix(&spec.root).map_err(|_| {
                        SandboxError::Setup(format!(
                            "mount point `{}` is not below the rootfs",
                            path.display()
                        ))
                    })?;
                    let parts = below
                        .iter()
                        .map(|part| cstring(Path::new(part)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((parts, *file))
                })
                .collect::<Result<_, SandboxError>>()?,
            proc_dir: cstring(&spec.proc_dir)?,
            dev_dir: cstring(&spec.dev_dir)?,
            dev_files,
            dev_links,
            dev_pts: cstring(&dev("pts"))?,
            dev_shm: cstring(&dev("shm"))?,
            binds: spec
                .binds
                .iter()
                .map(|b| {
                    let remount = if b.readonly {
                        Some(readonly_remount_flags(&b.source)?)
                    } else {
                        None
                    };
                    Ok((cstring(&b.source)?, cstring(&b.target)?, remount))
                })
                .collect::<Result<_, SandboxError>>()?,
            tmpfs: spec
                .tmpfs
                .iter()
                .map(|t| cstring(t))
                .collect::<Result<_, _>>()?,
            workdir: cstr(&spec.workdir)?,
            programs,
            argv_strings: argv_owned,
            argv,
            _env_strings: env_owned,
            envp,
            hostname: cstr(super::HOSTNAME)?,
            groups: spec.groups.clone(),
            setgroups: spec.maps.setgroups_allowed(),
            chowns: spec.chowns,
            uid: spec.uid,
            gid: spec.gid,
            host_network: spec.host_network,
            binfmt: match spec.binfmt {
                None => None,
                Some(registration) => {
                    let dir = spec.proc_dir.join("sys/fs/binfmt_misc");
                    Some(Binfmt {
                        register: cstring(&dir.join("register"))?,
                        dir: cstring(&dir)?,
                        line: registration.line.clone().into_bytes(),
                        registration,
                    })
                }
            },
            lit: Literals {
                overlay: cstr("overlay")?,
                proc: cstr("proc")?,
                binfmt_misc: cstr("binfmt_misc")?,
                tmpfs: cstr("tmpfs")?,
                devpts: cstr("devpts")?,
                dev_options: cstr("mode=755,size=65536k")?,
                pts_options: cstr("newinstance,ptmxmode=0666,mode=620")?,
                shm_options: cstr("mode=1777,size=65536k")?,
                dot: cstr(".")?,
                slash: cstr("/")?,
            },
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Io {
        action: "create a pipe for",
        path: PathBuf::from("the sandbox"),
        source: e.into(),
    })
}

/// Runs the command; `on_output` sees its output as it comes.
pub fn execute(
    spec: ExecSpec,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<ExecOutcome, SandboxError> {
    let maps = spec.maps.clone();
    let new_network = !spec.host_network;
    let prepared = Prepared::new(spec)?;
    let (unshared_read, unshared_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let (output_read, output_write) = pipe()?;
    let null = std::fs::File::open("/dev/null").map_err(|source| SandboxError::Io {
        action: "open",
        path: PathBuf::from("/dev/null"),
        source,
    })?;
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    if new_network {
        flags |= libc::CLONE_NEWNET;
    }
    let fds = ChildFds {
        unshared: unshared_write.as_raw_fd(),
        go: go_read.as_raw_fd(),
        report: report_write.as_raw_fd(),
        output: output_write.as_raw_fd(),
        null: null.as_raw_fd(),
        parent_ends: [
            unshared_read.as_raw_fd(),
            go_write.as_raw_fd(),
            report_read.as_raw_fd(),
            output_read.as_raw_fd(),
        ],
    };
    // SAFETY: the child only makes system calls on `prepared` and `fds` (see the module docs).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SandboxError::Io {
            action: "fork",
            path: PathBuf::from("the sandbox"),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        // SAFETY: in the forked child; never returns.
        unsafe { child(&prepared, &fds, flags) }
    }
    drop((unshared_write, go_read, report_write, output_write, null));

    let mut map_error = None;
    let mut byte = [0u8; 1];
    let mut unshared = std::fs::File::from(unshared_read);
    if matches!(unshared.read(&mut byte), Ok(1)) {
        match maps.apply(pid as u32) {
            Ok(()) => {
                let _ = nix::unistd::write(&go_write, &[1]);
            }
            Err(e) => map_error = Some(e),
        }
    }
    drop(go_write);

    let mut output = Vec::new();
    let mut reader = std::fs::File::from(output_read);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                on_output(&buffer[..n]);
                output.extend_from_slice(&buffer[..n]);
                if output.len() > 2 * OUTPUT_KEPT {
                    output.drain(..output.len() - OUTPUT_KEPT);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if output.len() > OUTPUT_KEPT {
        output.drain(..output.len() - OUTPUT_KEPT);
    }
    let status = wait(pid)?;
    let mut reports = Vec::new();
    let _ = std::fs::File::from(report_read).read_to_end(&mut reports);
    if let Some(error) = map_error {
        return Err(SandboxError::Setup(format!(
            "failed to write the user namespace's id maps: {error}"
        )));
    }
    let mut started = None;
    for chunk in reports.chunks_exact(std::mem::size_of::<Report>()) {
        // SAFETY: Report is plain old data written whole by the child.
        let report: Report = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        if report.stage == STAGE_STARTED {
            started = Some((report.seconds, report.nanos));
        } else {
            let stage = Stage::from_code(report.stage);
            let what = stage.map_or("set up", Stage::describe);
            let cause = std::io::Error::from_raw_os_error(report.errno);
            return Err(SandboxError::Setup(match (stage, report.errno) {
                (Some(Stage::User), libc::EINVAL) => format!(
                    "failed to {what}: uid {} or gid {} has no mapping in the sandbox; running \
                     as another user than root needs /etc/subuid and /etc/subgid ranges and \
                     newuidmap/newgidmap (package uidmap) when kiln runs unprivileged",
                    prepared.uid, prepared.gid
                ),
                (
                    Some(Stage::Unshare),
                    libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS,
                ) => format!(
                    "failed to {what}: {cause}; the sandbox needs unprivileged user namespaces \
                     (sysctl user.max_user_namespaces > 0, and on Debian/Ubuntu \
                     kernel.unprivileged_userns_clone=1 or an AppArmor profile allowing them); \
                     in a container, run kiln with a seccomp profile that allows unshare"
                ),
                (Some(Stage::MountRoot), _) if prepared.overlay.is_some() => format!(
                    "failed to {what} as an overlay: {cause}; set {}=copy to run on a copy of \
                     the stage's filesystem instead",
                    super::ROOTFS_MODE_VARIABLE
                ),
                (Some(Stage::MountPoints), libc::ENOTDIR | libc::ELOOP) => format!(
                    "failed to {what}: a component of its path is a symbolic link or not a \
                     directory (a RUN --mount target never goes through a symbolic link an \
                     earlier command left)"
                ),
                (Some(Stage::BinfmtMount), _) => {
                    let platform = prepared
                        .binfmt
                        .as_ref()
                        .map_or("", |b| b.registration.platform.as_str());
                    format!(
                        "failed to {what} to run {platform} programs: {cause}; a binfmt_misc of \
                         the sandbox's own needs Linux 6.7 or later (this kernel does not allow \
                         it in a user namespace); on an older kernel, register qemu-user-static \
                         on the host with the `F` flag (Debian: apt-get install \
                         qemu-user-static binfmt-support), which kiln then uses as it is"
                    )
                }
                (Some(Stage::BinfmtRegister), _) => {
                    let (platform, interpreter) = prepared.binfmt.as_ref().map_or_else(
                        || (String::new(), String::new()),
                        |b| {
                            (
                                b.registration.platform.clone(),
                                b.registration.interpreter.display().to_string(),
                            )
                        },
                    );
                    format!(
                        "failed to {what} to run {platform} programs: {cause}; the kernel could \
                         not open `{interpreter}` as an interpreter (it must be a static \
                         executable the caller can read: install qemu-user-static, or give \
                         --qemu-dir DIR with a static qemu in it)"
                    )
                }
                (Some(Stage::Exec), libc::ENOEXEC) => format!(
                    "failed to {what}: `{}` is not a program this machine can run (exec format \
                     error); build for the host's platform, or set --platform to the image's \
                     so that kiln registers a qemu interpreter",
                    prepared.argv_strings[0].to_string_lossy()
                ),
                (Some(Stage::Exec), libc::ENOENT) => format!(
                    "failed to {what}: `{}` was not found in the image",
                    prepared.argv_strings[0].to_string_lossy()
                ),
                _ => format!("failed to {what}: {cause}"),
            }));
        }
    }
    let Some(started) = started else {
        return Err(SandboxError::Setup(format!(
            "the sandbox ended before the command started ({})",
            describe_status(status)
        )));
    };
    Ok(ExecOutcome {
        exit_code: status,
        output,
        started,
    })
}

fn describe_status(code: i32) -> String {
    format!("exit code {code}")
}

fn wait(pid: libc::pid_t) -> Result<i32, SandboxError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let done = unsafe { libc::waitpid(pid, &mut status, 0) };
        if done == pid {
            return Ok(exit_code(status));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(SandboxError::Io {
                action: "wait for",
                path: PathBuf::from("the sandbox"),
                source: error,
            });
        }
    }
}

fn exit_code(status: c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// The flags that remount a bind of `source` read-only. The flags the mount under `source`
/// already has are kept: in a user namespace the kernel refuses to clear them.
fn readonly_remount_flags(source: &Path) -> Result<libc::c_ulong, SandboxError> {
    let stat = nix::sys::statvfs::statvfs(source).map_err(|e| SandboxError::Io {
        action: "stat the file system of",
        path: source.to_owned(),
        source: e.into(),
    })?;
    use nix::sys::statvfs::FsFlags;
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    for (has, flag) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if stat.flags().contains(has) {
            flags |= flag;
        }
    }
    Ok(flags)
}
