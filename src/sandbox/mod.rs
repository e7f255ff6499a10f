//! Any RUN, rootless: a command the native steps do not compute runs in a user-namespace
//! sandbox on the stage's filesystem, and what it changed becomes a [`Diff`](crate::layer::Diff), written by the
//! same layer writer as every other step.
//!
//! [`run`] lays out the rootfs: an overlay of the cached base and the stage's own changes
//! ([`overlay`]), or a full copy ([`materialize`]) where overlayfs cannot be mounted in a user
//! namespace. It prepares the mounts (`/proc`, `/dev`, `RUN --mount` caches, secrets and tmpfs,
//! BuildKit's `/etc/hosts` with the `--add-host` entries, the host's resolv.conf with
//! `--network=host`), runs the command in new user, mount, pid,
//! uts, ipc and network namespaces ([`exec`]) with the id maps the caller can have ([`idmap`]),
//! then reads what changed ([`snapshot`]: the overlay's upper directory, or the copy compared
//! with what it was). Nothing needs privileges: an unprivileged user runs as root inside. A
//! command for another architecture runs under a qemu interpreter registered in the sandbox's
//! own binfmt_misc ([`binfmt`]).

pub mod binfmt;
pub mod capabilities;
pub mod exec;
mod hosts;
pub mod idmap;
pub mod materialize;
pub mod mounts;
pub mod overlay;
mod scratch;
pub mod snapshot;
pub mod ssh;
mod user;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use hosts::{ExtraHost, hosts_file, parse_add_host};
pub use idmap::IdMaps;
pub use mounts::{BindSource, RunMount, SecretSource, parse_mount, parse_secret, parse_ssh};
pub use overlay::BaseLayers;
pub use scratch::ScratchDir;

use crate::layer::LayerPath;
use crate::rootfs::LowerFs;
use overlay::RootfsMode;
use scratch::{SecretsDir, readable_copies};
use user::resolve_user;

/// The environment variable that chooses the rootfs mode: `overlay`, `copy`, or `auto` (the
/// default: overlay where the kernel allows it). Here because [`overlay`] reads it and
/// [`exec`] names it in its advice.
pub const ROOTFS_MODE_VARIABLE: &str = "KILN_SANDBOX_ROOTFS";

/// Whether a sandboxed command shares the host's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new network namespace with only loopback (the default).
    #[default]
    None,
    /// The host's network namespace, and its resolv.conf.
    Host,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    fn from_str(text: &str) -> Result<NetworkMode, String> {
        match text {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            other => Err(format!(
                "unknown network mode `{other}` (expected none or host)"
            )),
        }
    }
}

/// Build-wide settings of sandboxed RUNs.
#[derive(Clone, Debug, Default)]
pub struct SandboxOptions {
    /// `kiln build --network`: the mode of a RUN without `--network`.
    pub network: NetworkMode,
    /// `kiln build --secret`: id -> where the value is (values are read only when used).
    pub secrets: BTreeMap<String, SecretSource>,
    /// `kiln build --ssh`: id -> the SSH agent's socket.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `kiln build --add-host`: extra `/etc/hosts` entries, in the order given.
    pub extra_hosts: Vec<ExtraHost>,
    /// `kiln build --qemu-dir`: where `qemu-<arch>-static` interpreters for foreign RUNs are
    /// (else `$KILN_QEMU_DIR`, else PATH).
    pub qemu_dir: Option<PathBuf>,
}

/// The hostname of every sandboxed RUN: BuildKit's, since package scripts record it.
pub const HOSTNAME: &str = "buildkitsandbox";

/// Why a sandboxed RUN failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A filesystem operation on the scratch rootfs failed.
    #[error("failed to {action} `{}`", .path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The lower filesystem could not be read.
    #[error("failed to read the stage's filesystem")]
    Rootfs(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A mount target cannot be used.
    #[error("cannot mount at `{target}`: {why}")]
    MountTarget {
        /// The target as written.
        target: String,
        /// Why not.
        why: String,
    },
    /// The command or its settings are unusable.
    #[error("{0}")]
    Command(String),
    /// The sandbox could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The command ran and failed.
    #[error("process \"{command}\" did not complete successfully: exit code: {exit_code}")]
    Failed {
        /// The command as `docker build` shows it.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// The end of its output.
        output: String,
    },
}

/// One sandboxed RUN.
pub struct RunRequest<'a> {
    /// The stage's filesystem before the command.
    pub fs: &'a LowerFs,
    /// The program and its arguments (the SHELL and the script for the shell form).
    pub argv: Vec<String>,
    /// The environment (ENV over ARG).
    pub env: BTreeMap<String, String>,
    /// The working directory (absolute).
    pub workdir: String,
    /// USER (`name`, `uid`, `name:group`, empty for root).
    pub user: String,
    /// Network mode.
    pub network: NetworkMode,
    /// `RUN --mount`s.
    pub mounts: &'a [RunMount],
    /// `--secret`s given to the build.
    pub secrets: &'a BTreeMap<String, SecretSource>,
    /// `--ssh` agents given to the build.
    pub ssh: &'a BTreeMap<String, PathBuf>,
    /// `--add-host` entries for `/etc/hosts`.
    pub extra_hosts: &'a [ExtraHost],
    /// The content of each `type=bind` mount, by its index in `mounts`.
    pub bind_sources: &'a BTreeMap<usize, BindSource>,
    /// A directory for this run's scratch files (the rootfs stays there: the Diff refers to it).
    pub scratch_dir: &'a Path,
    /// Where `type=cache` mounts keep their directories between builds.
    pub cache_dir: &'a Path,
    /// The stage's FROM layers (the start of `fs`), kept unpacked between builds.
    pub base: BaseLayers<'a>,
    /// Where the unpacked bases are kept.
    pub rootfs_cache_dir: &'a Path,
    /// The rootfs the previous RUN of the stage left, when nothing changed the stage's
    /// filesystem since: the command runs there instead of on a new copy.
    pub reuse: Option<LiveRootfs>,
    /// The interpreter the sandbox registers in its own binfmt_misc, when the command's
    /// programs are for another architecture ([`binfmt::execution`]).
    pub emulation: Option<&'a binfmt::Registration>,
}

/// A rootfs after a command, ready for the stage's next one.
pub struct LiveRootfs {
    dir: PathBuf,
    root: PathBuf,
    /// Copy mode: what each path of `root` is.
    before: BTreeMap<LayerPath, materialize::Before>,
    ignored: BTreeSet<LayerPath>,
    /// Overlay mode: the next command's lower layers, topmost (this command's upper) first.
    layers: Option<Vec<PathBuf>>,
}

/// What a command did: what it changed, and as details its rootfs, for the stage's next
/// command. The Diff's files live in that rootfs: a later command run there may change them
/// only after the Diff's layer was written, and that command's Diff (which includes every path
/// it changed) must then be applied over this one. A sandboxed command reports no materials:
/// what it fetched is not known to kiln.
pub type RunOutput = crate::material::StepOutput<LiveRootfs>;

/// The extended attribute of a file capability set (`setcap`).
pub(crate) const CAPABILITY_XATTR: &str = "security.capability";

/// Turns an I/O error of `action` on `path` into a [`SandboxError`].
pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_owned();
    move |source| SandboxError::Io {
        action,
        path,
        source,
    }
}

/// Runs the command and returns what it changed. `on_output` sees its output as it comes.
pub fn run(
    request: RunRequest<'_>,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<RunOutput, SandboxError> {
    let maps = IdMaps::for_current_user();
    let mode = overlay::rootfs_mode(&maps, request.scratch_dir)?;
    let new_run_dir = || -> Result<PathBuf, SandboxError> {
        std::fs::create_dir_all(request.scratch_dir)
            .map_err(io_error("create", request.scratch_dir))?;
        Ok(tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(request.scratch_dir)
            .map_err(io_error("create a directory in", request.scratch_dir))?
            .keep())
    };
    let (root, dir, before, mut chowns, mut ignored, lowers) = match request.reuse {
        Some(LiveRootfs {
            layers: Some(layers),
            ignored,
            ..
        }) => {
            let dir = new_run_dir()?;
            (
                dir.join("rootfs"),
                dir,
                BTreeMap::new(),
                Vec::new(),
                ignored,
                Some(layers),
            )
        }
        Some(live) => (
            live.root,
            live.dir,
            live.before,
            Vec::new(),
            live.ignored,
            None,
        ),
        None if mode == RootfsMode::Overlay => {
            let dir = new_run_dir()?;
            let lowers = overlay::prepare_lowers(
                request.fs,
                &request.base,
                request.rootfs_cache_dir,
                &dir,
                &maps,
            )?;
            (
                dir.join("rootfs"),
                dir,
                BTreeMap::new(),
                lowers.chowns,
                BTreeSet::new(),
                Some(lowers.dirs),
            )
        }
        None => {
            let dir = new_run_dir()?;
            let root = dir.join("rootfs");
            let materialized = materialize::materialize(request.fs, &root, &maps)?;
            (
                root,
                dir,
                materialized.before,
                materialized.chowns,
                BTreeSet::new(),
                None,
            )
        }
    };
    // Overlay mode: the mount point, an upper and a work directory, and the lower layers' names.
    let overlay_mount = match &lowers {
        None => None,
        Some(lowers) => {
            for (path, mode) in [(&root, 0o755), (&dir.join("upper"), 0o755)] {
                std::fs::create_dir(path).map_err(io_error("create", path))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(io_error("chmod", path))?;
            }
            let work = dir.join("work");
            std::fs::create_dir(&work).map_err(io_error("create", &work))?;
            let layers_dir = dir.join("layers");
            let mut layers = lowers.clone();
            if layers.is_empty() {
                // FROM scratch with nothing before the RUN: overlayfs needs one lower layer.
                let empty = dir.join("empty");
                std::fs::create_dir(&empty).map_err(io_error("create", &empty))?;
                layers.push(empty);
            }
            Some(exec::OverlayMount {
                lowers: overlay::name_layers(&layers_dir, &layers, &dir.join("upper"), &work)?,
                layers_dir,
                upper: "upper".to_owned(),
                work: "work".to_owned(),
            })
        }
    };
    let mut create = Vec::new();
    // A missing working directory is made, and kept in the layer, as Docker does.
    if !LayerPath::new_clamped(&request.workdir).is_ok_and(|p| p.is_root()) {
        if overlay_mount.is_some() {
            let plan = overlay::plan_mount_point(request.fs, &root, &request.workdir, false)?;
            create.extend(plan.create);
        } else {
            materialize::mount_point(request.fs, &root, &request.workdir, false)?;
        }
    }
    let mut mount_point = |target: &str, file: bool| -> Result<PathBuf, SandboxError> {
        if overlay_mount.is_some() {
            let plan = overlay::plan_mount_point(request.fs, &root, target, file)?;
            ignored.extend(plan.created);
            create.extend(plan.create);
            Ok(plan.host)
        } else {
            let (host, created) = materialize::mount_point(request.fs, &root, target, file)?;
            ignored.extend(created);
            Ok(host)
        }
    };
    let proc_dir = mount_point("/proc", false)?;
    let dev_dir = mount_point("/dev", false)?;

    // Secrets live outside the rootfs, in a directory only the caller can read, removed as
    // soon as the command ends.
    let secrets_dir = SecretsDir(dir.join("secrets"));
    std::fs::create_dir(&secrets_dir.0).map_err(io_error("create", &secrets_dir.0))?;
    std::fs::set_permissions(&secrets_dir.0, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error("chmod", &secrets_dir.0))?;
    let mut binds = Vec::new();
    let mut tmpfs = Vec::new();
    let mut agents = Vec::new();
    let mut agent_socket = None;
    for (index, mount) in request.mounts.iter().enumerate() {
        match mount {
            RunMount::Cache {
                target,
                id,
                mode,
                uid,
                gid,
            } => {
                let source = request
                    .cache_dir
                    .join(crate::digest::Digest::of(id.as_bytes()).hex());
                if !source.is_dir() {
                    std::fs::create_dir_all(&source).map_err(io_error("create", &source))?;
                    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(*mode))
                        .map_err(io_error("chmod", &source))?;
                    push_chown(&mut chowns, &maps, &source, *uid, *gid, None)?;
                }
                let target = mount_point(target, false)?;
                binds.push(exec::Bind {
                    source,
                    target,
                    readonly: false,
                });
            }
            RunMount::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(source) = given(
                    request.secrets,
                    id,
                    *required,
                    "secret",
                    &format!("--secret id={id},src=FILE"),
                )?
                else {
                    continue;
                };
                let value = source.read().map_err(SandboxError::Command)?;
                let file = secrets_dir.0.join(index.to_string());
                std::fs::write(&file, value).map_err(io_error("write", &file))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(io_error("chmod", &file))?;
                push_chown(&mut chowns, &maps, &file, *uid, *gid, Some(*mode))?;
                let target = mount_point(target, true)?;
                binds.push(exec::Bind {
                    source: file,
                    target,
                    readonly: true,
                });
            }
            RunMount::Tmpfs { target } => tmpfs.push(mount_point(target, false)?),
            RunMount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(agent) = given(
                    request.ssh,
                    id,
                    *required,
                    "SSH agent",
                    &format!("--ssh {id}[=SOCKET]"),
                )?
                else {
                    continue;
                };
                let proxy = ssh::AgentProxy::start(agent)?;
                std::fs::set_permissions(proxy.path(), std::fs::Permissions::from_mode(*mode))
                    .map_err(io_error("chmod", proxy.path()))?;
                push_chown(&mut chowns, &maps, proxy.path(), *uid, *gid, None)?;
                let target = if target.is_empty() {
                    format!("/run/buildkit/ssh_agent.{}", agents.len())
                } else {
                    target.clone()
                };
                agent_socket.get_or_insert_with(|| target.clone());
                binds.push(exec::Bind {
                    source: proxy.path().to_owned(),
                    target: mount_point(&target, true)?,
                    readonly: false,
                });
                agents.push(proxy);
            }
            RunMount::Bind {
                target, writable, ..
            } => {
                let source = request.bind_sources.get(&index).ok_or_else(|| {
                    SandboxError::Setup(format!(
                        "the source of the bind mount at `{target}` was not prepared"
                    ))
                })?;
                // A private copy: the context and other stages stay untouched even with `rw`,
                // whose writes go away with it.
                let copy = dir.join("binds").join(index.to_string());
                std::fs::create_dir_all(dir.join("binds")).map_err(io_error("create", &dir))?;
                let mut fs = LowerFs::new();
                fs.push_diff(&source.diff)
                    .map_err(|e| SandboxError::Rootfs(Box::new(e)))?;
                chowns.extend(materialize::materialize(&fs, &copy, &maps)?.chowns);
                let (host, is_file) = match &source.file_name {
                    Some(name) => (copy.join(name), true),
                    None => (copy, false),
                };
                let target = mount_point(target, is_file)?;
                binds.push(exec::Bind {
                    source: host,
                    target,
                    readonly: !writable,
                });
            }
        }
    }
    // BuildKit's /etc/hosts, bound over the image's, which the layer keeps as it was. Writable
    // like the resolv.conf below: a command that touches it changes this run's copy only.
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, hosts_file(request.extra_hosts)).map_err(io_error("write", &hosts))?;
    let target = mount_point("/etc/hosts", true)?;
    binds.push(exec::Bind {
        source: hosts,
        target,
        readonly: false,
    });
    if request.network == NetworkMode::Host {
        let copy = dir.join("resolv.conf");
        let text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&copy, text).map_err(io_error("write", &copy))?;
        let target = mount_point("/etc/resolv.conf", true)?;
        binds.push(exec::Bind {
            source: copy,
            target,
            readonly: false,
        });
    }

    let user = resolve_user(request.fs, &request.user)?;
    let mut env: Vec<String> = request
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !request.env.contains_key("PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
    }
    if let Some(socket) = agent_socket
        && !request.env.contains_key("SSH_AUTH_SOCK")
    {
        env.push(format!("SSH_AUTH_SOCK={socket}"));
    }
    if !request.env.contains_key("HOME") {
        env.push(format!("HOME={}", user.home));
    }
    let upper = overlay_mount.as_ref().map(|_| dir.join("upper"));
    let spec = exec::ExecSpec {
        root: root.clone(),
        overlay: overlay_mount,
        create,
        argv: request.argv.clone(),
        env,
        workdir: request.workdir.clone(),
        uid: user.uid,
        gid: user.gid,
        groups: user
            .groups
            .into_iter()
            .filter(|gid| maps.gid_to_host(*gid).is_some())
            .collect(),
        host_network: request.network == NetworkMode::Host,
        proc_dir,
        dev_dir,
        binds,
        tmpfs,
        chowns,
        maps: maps.clone(),
        binfmt: request.emulation.cloned(),
    };
    let outcome = exec::execute(spec, on_output);
    drop(secrets_dir);
    drop(agents);
    let outcome = outcome?;
    if outcome.exit_code != 0 {
        return Err(SandboxError::Failed {
            command: shown_command(&request.argv),
            exit_code: outcome.exit_code,
            output: String::from_utf8_lossy(&outcome.output).into_owned(),
        });
    }
    let (diff, next, layers) = match (upper, lowers) {
        (Some(upper), Some(lowers)) => {
            let diff = snapshot::snapshot_upper(&snapshot::UpperInput {
                upper: &upper,
                lowers: &lowers,
                before: &overlay::before_of(request.fs, &maps),
                ignored: &ignored,
                maps: &maps,
            })?;
            let mut layers = vec![upper];
            layers.extend(lowers);
            (diff, BTreeMap::new(), Some(layers))
        }
        _ => {
            let (diff, next) = snapshot::snapshot(&snapshot::SnapshotInput {
                root: &root,
                before: &before,
                ignored: &ignored,
                maps: &maps,
                started: outcome.started,
            })?;
            (diff, next, None)
        }
    };
    let diff = readable_copies(diff, &dir, &maps)?;
    Ok(RunOutput {
        diff,
        materials: Vec::new(),
        warnings: Vec::new(),
        details: LiveRootfs {
            dir,
            root,
            before: next,
            ignored,
            layers,
        },
    })
}

/// What the build was given as `id` for a mount; `None` leaves an optional mount out, and a
/// required one that was not given fails, naming the `kiln build` flag that gives it.
fn given<'a, T>(
    sources: &'a BTreeMap<String, T>,
    id: &str,
    required: bool,
    what: &str,
    flag: &str,
) -> Result<Option<&'a T>, SandboxError> {
    match sources.get(id) {
        None if required => Err(SandboxError::Command(format!(
            "{what} `{id}` is required but was not given (kiln build {flag})"
        ))),
        found => Ok(found),
    }
}

fn push_chown(
    chowns: &mut Vec<materialize::Chown>,
    maps: &IdMaps,
    path: &Path,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
) -> Result<(), SandboxError> {
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    let unmapped = |what: &str, id: u32| {
        SandboxError::Setup(format!(
            "{what} {id} of a RUN --mount has no mapping in the sandbox (kiln runs unprivileged \
             without /etc/subuid ranges)"
        ))
    };
    maps.uid_to_host(uid).ok_or_else(|| unmapped("uid", uid))?;
    maps.gid_to_host(gid).ok_or_else(|| unmapped("gid", gid))?;
    chowns.push(materialize::Chown {
        path: std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            SandboxError::Setup(format!("`{}` contains a NUL byte", path.display()))
        })?,
        uid: Some(uid),
        gid: Some(gid),
        mode,
        capability: None,
    });
    Ok(())
}

/// The command as `docker build` names it in its failure message.
pub fn shown_command(argv: &[String]) -> String {
    argv.join(" ")
}

#[cfg(test)]
mod tests;
