//! The code that runs in the forked children: unsharing, then the command's process (mounts,
//! pivot, USER, exec). Only system calls on data prepared before the fork (see [`super`]).

use std::ffi::{CString, c_char, c_int};
use std::os::fd::RawFd;

use super::{Prepared, Report, STAGE_STARTED, Stage, exit_code};
use crate::sandbox::materialize::Chown;

pub(super) struct ChildFds {
    pub(super) unshared: RawFd,
    pub(super) go: RawFd,
    pub(super) report: RawFd,
    pub(super) output: RawFd,
    pub(super) null: RawFd,
    pub(super) parent_ends: [RawFd; 4],
}

/// Reports a failed stage with errno, and exits.
pub(super) unsafe fn fail(fds: &ChildFds, stage: Stage) -> ! {
    let report = Report {
        stage: stage as u32,
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        seconds: 0,
        nanos: 0,
    };
    unsafe {
        libc::write(
            fds.report,
            (&report as *const Report).cast(),
            std::mem::size_of::<Report>(),
        );
        libc::_exit(125)
    }
}

/// The forked child: namespaces, then the command's process.
pub(super) unsafe fn child(p: &Prepared, fds: &ChildFds, flags: c_int) -> ! {
    unsafe {
        for fd in fds.parent_ends {
            libc::close(fd);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::unshare(flags) != 0 {
            fail(fds, Stage::Unshare);
        }
        let mut byte = 1u8;
        libc::write(fds.unshared, (&byte as *const u8).cast(), 1);
        libc::close(fds.unshared);
        if libc::read(fds.go, (&mut byte as *mut u8).cast(), 1) != 1 {
            libc::_exit(125);
        }
        libc::close(fds.go);
        let pid = libc::fork();
        if pid < 0 {
            fail(fds, Stage::Fork);
        }
        if pid == 0 {
            command_process(p, fds);
        }
        libc::close(fds.output);
        libc::close(fds.report);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(125);
            }
        }
        libc::_exit(exit_code(status))
    }
}

/// Pid 1 of the new pid namespace: mounts, pivot, USER, exec.
pub(super) unsafe fn command_process(p: &Prepared, fds: &ChildFds) -> ! {
    unsafe {
        let null = std::ptr::null::<c_char>();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::mount(
            null,
            p.lit.slash.as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(fds, Stage::PrivateMounts);
        }
        if !apply_owners(&p.chowns) {
            fail(fds, Stage::Owners);
        }
        let mounted = match &p.overlay {
            // Lower layers are named relative to their directory.
            Some((layers_dir, options)) => {
                libc::chdir(layers_dir.as_ptr()) == 0
                    && libc::mount(
                        p.lit.overlay.as_ptr(),
                        p.root.as_ptr(),
                        p.lit.overlay.as_ptr(),
                        0,
                        options.as_ptr().cast(),
                    ) == 0
            }
            None => {
                libc::mount(
                    p.root.as_ptr(),
                    p.root.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) == 0
            }
        };
        if !mounted {
            fail(fds, Stage::MountRoot);
        }
        for (parts, file) in &p.create {
            if !make_below(p.root.as_ptr(), parts, *file) {
                fail(fds, Stage::MountPoints);
            }
        }
        let no_exec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            p.lit.proc.as_ptr(),
            p.proc_dir.as_ptr(),
            p.lit.proc.as_ptr(),
            no_exec,
            std::ptr::null(),
        ) != 0
        {
            fail(fds, Stage::Proc);
        }
        // Before the pivot: the `F` flag makes the kernel open the interpreter now, from the
        // host's filesystem. The mount lives in the sandbox's /proc, where it stays for the
        // command's children; the instance belongs to the sandbox's user namespace.
        if let Some(binfmt) = &p.binfmt {
            if libc::mount(
                p.lit.binfmt_misc.as_ptr(),
                binfmt.dir.as_ptr(),
                p.lit.binfmt_misc.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                fail(fds, Stage::BinfmtMount);
            }
            let fd = libc::open(binfmt.register.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                fail(fds, Stage::BinfmtRegister);
            }
            let written = libc::write(fd, binfmt.line.as_ptr().cast(), binfmt.line.len());
            if written != binfmt.line.len() as isize {
                if written >= 0 {
                    *libc::__errno_location() = libc::EIO;
                }
                fail(fds, Stage::BinfmtRegister);
            }
            libc::close(fd);
        }
        if libc::mount(
            p.lit.tmpfs.as_ptr(),
            p.dev_dir.as_ptr(),
            p.lit.tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            p.lit.dev_options.as_ptr().cast(),
        ) != 0
        {
            fail(fds, Stage::Dev);
        }
        for (target, source) in &p.dev_files {
            let fd = libc::open(
                target.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd < 0 {
                fail(fds, Stage::DevNodes);
            }
            libc::close(fd);
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                fail(fds, Stage::DevNodes);
            }
        }
        for (target, link) in &p.dev_links {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                fail(fds, Stage::DevNodes);
            }
        }
        // A private devpts and /dev/shm are conveniences: a command that needs neither still runs.
        if libc::mkdir(p.dev_pts.as_ptr(), 0o755) == 0 {
            libc::mount(
                p.lit.devpts.as_ptr(),
                p.dev_pts.as_ptr(),
                p.lit.devpts.as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                p.lit.pts_options.as_ptr().cast(),
            );
        }
        if libc::mkdir(p.dev_shm.as_ptr(), 0o1777) == 0 {
            libc::mount(
                p.lit.tmpfs.as_ptr(),
                p.dev_shm.as_ptr(),
                p.lit.tmpfs.as_ptr(),
                no_exec,
                p.lit.shm_options.as_ptr().cast(),
            );
        }
        for (source, target, remount) in &p.binds {
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                fail(fds, Stage::RunMounts);
            }
            if let Some(flags) = remount
                && libc::mount(null, target.as_ptr(), null, *flags, std::ptr::null()) != 0
            {
                fail(fds, Stage::RunMounts);
            }
        }
        for target in &p.tmpfs {
            if libc::mount(
                p.lit.tmpfs.as_ptr(),
                target.as_ptr(),
                p.lit.tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ) != 0
            {
                fail(fds, Stage::RunMounts);
            }
        }
        if libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) != 0 {
            fail(fds, Stage::Hostname);
        }
        if !p.host_network && !loopback_up() {
            fail(fds, Stage::Loopback);
        }
        if libc::chdir(p.root.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, p.lit.dot.as_ptr(), p.lit.dot.as_ptr()) != 0
            || libc::umount2(p.lit.dot.as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(p.lit.slash.as_ptr()) != 0
        {
            fail(fds, Stage::Pivot);
        }
        if libc::chdir(p.workdir.as_ptr()) != 0 {
            fail(fds, Stage::Workdir);
        }
        if p.setgroups && libc::setgroups(p.groups.len(), p.groups.as_ptr()) != 0 {
            fail(fds, Stage::User);
        }
        if libc::setresgid(p.gid, p.gid, p.gid) != 0 || libc::setresuid(p.uid, p.uid, p.uid) != 0 {
            fail(fds, Stage::User);
        }
        if libc::dup2(fds.null, 0) < 0
            || libc::dup2(fds.output, 1) < 0
            || libc::dup2(fds.output, 2) < 0
        {
            fail(fds, Stage::Stdio);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        let started = Report {
            stage: STAGE_STARTED,
            errno: 0,
            seconds: now.tv_sec,
            nanos: now.tv_nsec,
        };
        libc::write(
            fds.report,
            (&started as *const Report).cast(),
            std::mem::size_of::<Report>(),
        );
        let mut errno = libc::ENOENT;
        for program in &p.programs {
            libc::execve(program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            let last = *libc::__errno_location();
            // Keep looking along PATH only past names that are not there.
            if last != libc::ENOENT && last != libc::ENOTDIR {
                errno = last;
                break;
            }
        }
        *libc::__errno_location() = errno;
        fail(fds, Stage::Exec)
    }
}

/// Makes `root/parts...` (directories, and the last a file when `file`), keeping what exists,
/// without following a symlink anywhere below `root`: an existing component must be a real
/// directory (or, last, a directory or a regular file as asked). System calls only: runs in
/// forked children.
pub(super) unsafe fn make_below(root: *const c_char, parts: &[CString], file: bool) -> bool {
    unsafe {
        let path_only = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let mut dir = libc::open(root, path_only | libc::O_DIRECTORY);
        if dir < 0 {
            return false;
        }
        let mut ok = true;
        for (index, part) in parts.iter().enumerate() {
            let last = index + 1 == parts.len();
            if last && file {
                // O_NOFOLLOW: a symlink here fails (ELOOP) instead of creating its target.
                let fd = libc::openat(
                    dir,
                    part.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o644,
                );
                ok = fd >= 0;
                if ok {
                    libc::close(fd);
                }
                break;
            }
            if libc::mkdirat(dir, part.as_ptr(), 0o755) != 0
                && *libc::__errno_location() != libc::EEXIST
            {
                ok = false;
                break;
            }
            // O_DIRECTORY with O_NOFOLLOW: a symlink or a file fails (ENOTDIR).
            let next = libc::openat(dir, part.as_ptr(), path_only | libc::O_DIRECTORY);
            libc::close(dir);
            dir = next;
            if dir < 0 {
                return false;
            }
        }
        libc::close(dir);
        ok
    }
}

/// Sets the owners (and modes chown cleared) of `chowns`; false when one fails. System calls
/// only: runs in forked children.
pub(super) unsafe fn apply_owners(chowns: &[Chown]) -> bool {
    unsafe {
        for chown in chowns {
            if (chown.uid.is_some() || chown.gid.is_some())
                && libc::lchown(
                    chown.path.as_ptr(),
                    chown.uid.unwrap_or(u32::MAX),
                    chown.gid.unwrap_or(u32::MAX),
                ) != 0
            {
                return false;
            }
            if let Some(mode) = chown.mode
                && libc::chmod(chown.path.as_ptr(), mode) != 0
            {
                return false;
            }
            if let Some(capability) = &chown.capability
                && libc::lsetxattr(
                    chown.path.as_ptr(),
                    c"security.capability".as_ptr(),
                    capability.as_ptr().cast(),
                    capability.len(),
                    0,
                ) != 0
            {
                return false;
            }
        }
        true
    }
}

/// Sets IFF_UP on `lo` in the new network namespace.
pub(super) unsafe fn loopback_up() -> bool {
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return false;
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as c_char;
        }
        let ok = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) == 0 && {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) == 0
        };
        libc::close(socket);
        ok
    }
}
