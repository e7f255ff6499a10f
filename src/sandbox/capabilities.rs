//! Whether this environment lets the sandbox run at all: kiln probes once per process
//! ([`detect`]) by forking a child that unshares a user and a mount namespace, maps its ids and
//! mounts a tmpfs, and classifies a refusal from what the kernel and the process show (a seccomp
//! filter, AppArmor's `kernel.apparmor_restrict_unprivileged_userns`, `user.max_user_namespaces`,
//! Debian's `kernel.unprivileged_userns_clone`).
//!
//! Native steps (COPY, users, apk, pip) never need a namespace; only a RUN kiln cannot compute
//! goes to the sandbox, and where the probe failed that RUN fails naming the step and the
//! [`Unavailable`] reason instead of a half-set-up sandbox's error. The build's first line
//! prints [`SandboxCapability::summary`].

use std::sync::OnceLock;

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxCapability {
    /// User and mount namespaces work: sandboxed RUNs can run.
    Available,
    /// The environment refused; the reason.
    Unavailable(Unavailable),
}

impl SandboxCapability {
    /// One line for the start of a build: `sandbox: available (...)` or `sandbox: unavailable
    /// (REASON); native steps only`.
    pub fn summary(&self) -> String {
        match self {
            SandboxCapability::Available => {
                "sandbox: available (user and mount namespaces)".to_owned()
            }
            SandboxCapability::Unavailable(why) => {
                format!("sandbox: unavailable ({why}); native steps only")
            }
        }
    }
}

/// The operation the probe was doing when the environment refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStep {
    /// `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
    Unshare,
    /// Writing the new user namespace's `uid_map`/`gid_map`.
    MapIds,
    /// Mounting a tmpfs in the new mount namespace.
    Mount,
    /// Creating the probe's child (fork, pipe).
    Start,
}

impl ProbeStep {
    fn name(self) -> &'static str {
        match self {
            ProbeStep::Unshare => "unshare",
            ProbeStep::MapIds => "uid_map",
            ProbeStep::Mount => "mount",
            ProbeStep::Start => "fork",
        }
    }

    fn from_code(code: u32) -> ProbeStep {
        match code {
            1 => ProbeStep::Unshare,
            2 => ProbeStep::MapIds,
            3 => ProbeStep::Mount,
            _ => ProbeStep::Start,
        }
    }
}

/// Why the environment refused, as far as it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// kiln runs under a seccomp filter (a container runtime's default profile blocks unshare
    /// and mount).
    Seccomp,
    /// `kernel.apparmor_restrict_unprivileged_userns = 1` (Ubuntu 23.10 and later, GitHub's
    /// ubuntu-24.04 runners): a user namespace gets no capabilities without an AppArmor profile.
    AppArmor,
    /// `user.max_user_namespaces = 0`.
    NoUserNamespacesAllowed,
    /// `user.max_user_namespaces` is reached (the count in use).
    UserNamespaceLimit(u64),
    /// Debian's `kernel.unprivileged_userns_clone = 0`.
    UnprivilegedCloneDisabled,
    /// The kernel was built without user namespaces.
    NoKernelSupport,
    /// Nothing visible explains it (a seccomp filter or AppArmor outside what kiln can read,
    /// a chroot).
    Unexplained,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Seccomp => f.write_str(
                "a seccomp filter forbids user namespaces and mounts (the container runtime's \
                 default profile)",
            ),
            Cause::AppArmor => f.write_str(
                "AppArmor restricts unprivileged user namespaces \
                 (kernel.apparmor_restrict_unprivileged_userns = 1)",
            ),
            Cause::NoUserNamespacesAllowed => {
                f.write_str("user namespaces are disabled (user.max_user_namespaces = 0)")
            }
            Cause::UserNamespaceLimit(limit) => write!(
                f,
                "the limit of user namespaces is reached (user.max_user_namespaces = {limit})"
            ),
            Cause::UnprivilegedCloneDisabled => f.write_str(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            ),
            Cause::NoKernelSupport => f.write_str("the kernel has no user namespaces"),
            Cause::Unexplained => f.write_str("seccomp or AppArmor forbid user namespaces"),
        }
    }
}

/// The refusal: the operation, the error the kernel gave, and the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What the probe was doing.
    pub step: ProbeStep,
    /// The errno the kernel returned.
    pub errno: i32,
    /// Why, as far as the environment shows.
    pub cause: Cause,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let error = std::io::Error::from_raw_os_error(self.errno);
        let text = error.to_string();
        // `Operation not permitted (os error 1)`: the number adds nothing for a reader.
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{}: {text}: {}", self.step.name(), self.cause)
    }
}

impl Unavailable {
    /// The ways out, for the error of a RUN that needs the sandbox.
    pub fn remedies(&self) -> &'static str {
        match self.cause {
            Cause::Seccomp | Cause::Unexplained => {
                "write the step with native instructions (COPY, apk add, pip install, \
                 adduser/addgroup: see `kiln build` in the README), or run kiln where user \
                 namespaces are allowed (a runner VM, or a pod with a seccomp profile that \
                 allows unshare and mount, e.g. `seccompProfile: Unconfined`)"
            }
            Cause::AppArmor => {
                "write the step with native instructions (COPY, apk add, pip install, \
                 adduser/addgroup), or allow user namespaces on this runner (`sudo sysctl \
                 kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor profile for \
                 kiln with `userns,`)"
            }
            Cause::NoUserNamespacesAllowed
            | Cause::UserNamespaceLimit(_)
            | Cause::UnprivilegedCloneDisabled
            | Cause::NoKernelSupport => {
                "write the step with native instructions (COPY, apk add, pip install, \
                 adduser/addgroup), or run kiln on a machine that allows unprivileged user \
                 namespaces (the sysctl named above)"
            }
        }
    }
}

/// What the process and the kernel show about namespaces; read from /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// `/proc/self/status` says `Seccomp: 2` (a filter is installed).
    pub seccomp_filter: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns`, when the kernel has it.
    pub apparmor_restricts_userns: Option<bool>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// Debian's `kernel.unprivileged_userns_clone`, when the kernel has it.
    pub unprivileged_userns_clone: Option<bool>,
}

impl Environment {
    /// Reads the settings of this process and kernel.
    pub fn read() -> Environment {
        let sysctl = |path: &str| -> Option<u64> {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
        };
        let seccomp_filter = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Seccomp:").map(|v| v.trim() == "2"))
            })
            .unwrap_or(false);
        Environment {
            seccomp_filter,
            apparmor_restricts_userns: sysctl(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            )
            .map(|v| v != 0),
            max_user_namespaces: sysctl("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: sysctl("/proc/sys/kernel/unprivileged_userns_clone")
                .map(|v| v != 0),
        }
    }
}

/// Why `step` failed with `errno` in `environment`. The sysctls that switch user namespaces
/// off outright come first (they are certain); a seccomp filter next (it is installed, and
/// container runtimes' default profiles refuse these calls); AppArmor's restriction shows at
/// the id maps or the mount (the unshare itself succeeds, without capabilities).
pub fn classify(step: ProbeStep, errno: i32, environment: &Environment) -> Cause {
    let refused = matches!(errno, libc::EPERM | libc::EACCES);
    match step {
        ProbeStep::Unshare if errno == libc::ENOSPC || errno == libc::EUSERS => {
            match environment.max_user_namespaces {
                Some(0) => Cause::NoUserNamespacesAllowed,
                Some(limit) => Cause::UserNamespaceLimit(limit),
                None => Cause::Unexplained,
            }
        }
        ProbeStep::Unshare if errno == libc::EINVAL => Cause::NoKernelSupport,
        _ if environment.max_user_namespaces == Some(0) => Cause::NoUserNamespacesAllowed,
        ProbeStep::Unshare if refused && environment.unprivileged_userns_clone == Some(false) => {
            Cause::UnprivilegedCloneDisabled
        }
        _ if refused && environment.seccomp_filter => Cause::Seccomp,
        _ if refused && environment.apparmor_restricts_userns == Some(true) => Cause::AppArmor,
        _ => Cause::Unexplained,
    }
}

/// Probes once per process; later calls return the first answer.
pub fn detect() -> &'static SandboxCapability {
    static DETECTED: OnceLock<SandboxCapability> = OnceLock::new();
    DETECTED.get_or_init(|| match probe() {
        Ok(()) => SandboxCapability::Available,
        Err((step, errno)) => SandboxCapability::Unavailable(Unavailable {
            step,
            errno,
            cause: classify(step, errno, &Environment::read()),
        }),
    })
}

/// Forks a child that unshares a user and a mount namespace, maps the caller's ids to root
/// and mounts a tmpfs; the step that failed and its errno.
fn probe() -> Result<(), (ProbeStep, i32)> {
    use std::os::fd::AsRawFd as _;
    let start_failed = |e: std::io::Error| (ProbeStep::Start, e.raw_os_error().unwrap_or(0));
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| start_failed(e.into()))?;
    // Everything the child writes is made before the fork: it may only make system calls.
    let uid_map = format!("0 {} 1\n", nix::unistd::getuid().as_raw());
    let gid_map = format!("0 {} 1\n", nix::unistd::getgid().as_raw());
    let files: [(&std::ffi::CStr, &[u8]); 3] = [
        (c"/proc/self/setgroups", b"deny"),
        (c"/proc/self/uid_map", uid_map.as_bytes()),
        (c"/proc/self/gid_map", gid_map.as_bytes()),
    ];
    let report_fd = write_end.as_raw_fd();
    // SAFETY: the child makes only async-signal-safe system calls on data prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(start_failed(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the forked child; never returns.
        unsafe { probe_child(report_fd, &files) }
    }
    drop(write_end);
    let mut report = [0u8; 8];
    let mut reader = std::fs::File::from(read_end);
    let got = std::io::Read::read(&mut reader, &mut report).unwrap_or(0);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if got == report.len() {
        let step = u32::from_ne_bytes(report[..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(report[4..].try_into().unwrap_or_default());
        return Err((ProbeStep::from_code(step), errno));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err((ProbeStep::Start, libc::ECHILD))
    }
}

/// The probe's child: reports `(step, errno)` through `report_fd` and exits 1 at the first
/// refusal, else exits 0.
unsafe fn probe_child(report_fd: libc::c_int, files: &[(&std::ffi::CStr, &[u8]); 3]) -> ! {
    unsafe {
        let fail = |step: u32| -> ! {
            let errno = *libc::__errno_location();
            let mut report = [0u8; 8];
            report[..4].copy_from_slice(&step.to_ne_bytes());
            report[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(report_fd, report.as_ptr().cast(), report.len());
            libc::_exit(1)
        };
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            fail(1);
        }
        for (path, bytes) in files {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, bytes.as_ptr().cast(), bytes.len()) < 0 {
                fail(2);
            }
            libc::close(fd);
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            std::ptr::null(),
        ) != 0
        {
            fail(3);
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        seccomp_filter: bool,
        apparmor: Option<bool>,
        max: Option<u64>,
        clone: Option<bool>,
    ) -> Environment {
        Environment {
            seccomp_filter,
            apparmor_restricts_userns: apparmor,
            max_user_namespaces: max,
            unprivileged_userns_clone: clone,
        }
    }

    #[test]
    fn refusals_are_classified_by_what_the_environment_shows() {
        use ProbeStep::*;
        let plain = env(false, None, Some(63000), None);
        let cases: &[(ProbeStep, i32, Environment, Cause)] = &[
            // A container runtime's default seccomp profile: unshare gets EPERM.
            (
                Unshare,
                libc::EPERM,
                env(true, None, Some(63000), None),
                Cause::Seccomp,
            ),
            // Docker's profile blocks mount too, where unshare was allowed.
            (
                Mount,
                libc::EPERM,
                env(true, None, Some(63000), None),
                Cause::Seccomp,
            ),
            // Ubuntu 24.04: the unshare works, the id maps are refused.
            (
                MapIds,
                libc::EPERM,
                env(false, Some(true), Some(63000), None),
                Cause::AppArmor,
            ),
            (
                Mount,
                libc::EACCES,
                env(false, Some(true), Some(63000), None),
                Cause::AppArmor,
            ),
            (
                Unshare,
                libc::ENOSPC,
                env(false, None, Some(0), None),
                Cause::NoUserNamespacesAllowed,
            ),
            (
                Unshare,
                libc::ENOSPC,
                plain.clone(),
                Cause::UserNamespaceLimit(63000),
            ),
            (
                Unshare,
                libc::EUSERS,
                plain.clone(),
                Cause::UserNamespaceLimit(63000),
            ),
            (
                Unshare,
                libc::EPERM,
                env(false, None, Some(0), None),
                Cause::NoUserNamespacesAllowed,
            ),
            (
                Unshare,
                libc::EPERM,
                env(true, None, Some(63000), Some(false)),
                Cause::UnprivilegedCloneDisabled,
            ),
            (Unshare, libc::EINVAL, plain.clone(), Cause::NoKernelSupport),
            (
                Unshare,
                libc::EPERM,
                env(false, Some(false), Some(63000), Some(true)),
                Cause::Unexplained,
            ),
            (Unshare, libc::EPERM, plain.clone(), Cause::Unexplained),
        ];
        for (step, errno, environment, expected) in cases {
            assert_eq!(
                &classify(*step, *errno, environment),
                expected,
                "{step:?} errno {errno} in {environment:?}"
            );
        }
    }

    #[test]
    fn the_summary_names_the_call_the_error_and_the_cause() {
        let unavailable = SandboxCapability::Unavailable(Unavailable {
            step: ProbeStep::Unshare,
            errno: libc::EPERM,
            cause: Cause::Unexplained,
        });
        assert_eq!(
            unavailable.summary(),
            "sandbox: unavailable (unshare: Operation not permitted: seccomp or AppArmor \
             forbid user namespaces); native steps only"
        );
        assert_eq!(
            SandboxCapability::Available.summary(),
            "sandbox: available (user and mount namespaces)"
        );
    }

    #[test]
    fn detection_answers_the_same_every_time() {
        let first = detect();
        assert!(std::ptr::eq(first, detect()));
        // This test runs where the sandbox tests run: the probe agrees with a real unshare.
        let real = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "true"])
            .status()
            .expect("failed to start unshare (util-linux)");
        assert_eq!(
            real.success(),
            *first == SandboxCapability::Available,
            "unshare(1) and the probe disagree: {first:?}"
        );
    }
}
