//! Pieces the commands share: usage errors (exit 2), output specs and writers, registry flags,
//! image references.

pub(crate) mod attach;
pub(crate) mod attest;
pub(crate) mod build;
pub(crate) mod build_args;
pub(crate) mod build_platforms;
pub(crate) mod cache_flags;
pub(crate) mod kaniko;
pub(crate) mod lock;
pub(crate) mod manifest;
pub(crate) mod policy;
pub(crate) mod progress;
pub(crate) mod registry;
pub(crate) mod scan;
pub(crate) mod sign;
pub(crate) mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use kiln::image;

/// Flags shared by every command that talks to a registry.
#[derive(clap::Args, Clone)]
pub(crate) struct RegistryFlags {
    /// Reach this registry (`host[:port]`) as Docker reaches an insecure registry: HTTPS
    /// without verifying its certificate, else plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// `--tls-verify=false` treats every registry as insecure (as in buildah, podman, skopeo).
    #[arg(
        long = "tls-verify",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    tls_verify: bool,
    /// Read registry CA certificates (`*.crt`) and the client certificate (`*.cert` + `*.key`)
    /// from DIR instead of the certs.d directories.
    #[arg(long = "cert-dir", value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Use only what is cached; fail naming anything that would need the network.
    #[arg(long)]
    offline: bool,
    /// Registry locations, mirrors and insecure/blocked registries, in containers-registries.conf
    /// format (default `$CONTAINERS_REGISTRIES_CONF`, else
    /// `~/.config/containers/registries.conf`, else `/etc/containers/registries.conf`).
    #[arg(long = "registries-conf", value_name = "FILE")]
    registries_conf: Option<PathBuf>,
}

impl RegistryFlags {
    fn options(&self, cache_dir: &Path) -> anyhow::Result<kiln::registry::RegistryOptions> {
        let mut options = kiln::registry::RegistryOptions::default()
            .offline(self.offline)
            .cache_dir(cache_dir.join("registry"));
        for host in &self.insecure_registries {
            options = options.insecure_registry(host);
        }
        options = options.tls_verify(self.tls_verify);
        if let Some(dir) = &self.cert_dir {
            if !dir.is_dir() {
                return Err(usage(format!(
                    "--cert-dir `{}` is not a directory",
                    dir.display()
                )));
            }
            options = options.cert_dir(dir);
        }
        let conf = self
            .registries_conf
            .clone()
            .or_else(kiln::registry::RegistryMap::default_path);
        if let Some(path) = conf {
            options = options.registry_map(kiln::registry::RegistryMap::load(&path)?);
        }
        Ok(options)
    }
}

/// A command-line mistake: reported like any error, but exits with 2 as clap's own do.
#[derive(Debug)]
pub(crate) struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

pub(crate) enum OutputKind {
    OciLayout,
    OciArchive,
    DockerArchive,
    /// The image's filesystem in a directory (buildx's `type=local`).
    Local,
}

pub(crate) struct OutputSpec {
    kind: OutputKind,
    dest: PathBuf,
}

pub(crate) fn parse_output(spec: &str) -> anyhow::Result<OutputSpec> {
    // As in buildx, `-o DIR` is `-o type=local,dest=DIR`.
    if !spec.contains('=') && !spec.is_empty() && spec != "-" {
        return Ok(OutputSpec {
            kind: OutputKind::Local,
            dest: PathBuf::from(spec),
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut tar = None;
    for part in spec.split(',') {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            usage(format!(
                "invalid --output `{spec}`: expected key=value pairs"
            ))
        })?;
        match key {
            "type" => kind = Some(value.to_owned()),
            "dest" => dest = Some(PathBuf::from(value)),
            "tar" => tar = Some(value == "true"),
            "name" | "annotation" => {}
            other => {
                return Err(usage(format!(
                    "invalid --output `{spec}`: unknown key `{other}`"
                )));
            }
        }
    }
    let kind =
        kind.ok_or_else(|| usage(format!("invalid --output `{spec}`: type= is required")))?;
    let dest =
        dest.ok_or_else(|| usage(format!("invalid --output `{spec}`: dest= is required")))?;
    let kind = match (kind.as_str(), tar) {
        ("oci", Some(true)) | ("oci-archive", _) => OutputKind::OciArchive,
        ("oci", _) => OutputKind::OciLayout,
        ("docker-archive" | "docker", _) => OutputKind::DockerArchive,
        ("local", _) => OutputKind::Local,
        (other, _) => {
            return Err(usage(format!(
                "unsupported output type `{other}`: kiln writes type=oci (a directory), \
             type=oci-archive, type=docker-archive and type=local (the filesystem)"
            )));
        }
    };
    Ok(OutputSpec { kind, dest })
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn write_outputs(
    store: &kiln::store::Store,
    images: &[(image::BuiltImage, Vec<String>)],
    outputs: &[OutputSpec],
) -> anyhow::Result<()> {
    for output in outputs {
        let written = match output.kind {
            OutputKind::OciLayout => image::layout::write_oci_layout(store, &output.dest, images),
            OutputKind::OciArchive => {
                image::archive::write_oci_archive(store, &output.dest, images)
            }
            OutputKind::DockerArchive => {
                image::archive::write_docker_archive(store, &output.dest, images)
            }
            OutputKind::Local => {
                write_local(store, images, &output.dest).with_context(|| {
                    format!("failed to write the output `{}`", output.dest.display())
                })?;
                continue;
            }
        };
        written
            .with_context(|| format!("failed to write the output `{}`", output.dest.display()))?;
    }
    Ok(())
}

/// Writes the filesystem of the one image in `images` (its layers applied in order) as the new
/// directory `dest` (absent or empty), as buildx's local exporter does: modes, links and times
/// as in the image, every file owned by the caller. Nothing appears at `dest` unless all of it
/// was written.
fn write_local(
    store: &kiln::store::Store,
    images: &[(image::BuiltImage, Vec<String>)],
    dest: &Path,
) -> anyhow::Result<()> {
    let [(image, _)] = images else {
        anyhow::bail!(
            "type=local writes one image's filesystem, not {}",
            images.len()
        );
    };
    let dest_is_empty_dir = match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "`{}` is not empty: type=local writes a new directory, so that nothing of \
                     an earlier output is left mixed in",
                    dest.display()
                );
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", dest.display())),
    };
    let parent = parent_dir(dest);
    let scratch = tempfile::Builder::new()
        .prefix(".kiln-local-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "failed to create a temp directory in `{}`",
                parent.display()
            )
        })?;
    let mut fs = kiln::rootfs::lower::LowerFs::new();
    for layer in &image.layers {
        fs.push_layer_blob(store, layer)
            .with_context(|| format!("failed to read layer {}", layer.digest))?;
    }
    let devices: Vec<String> = fs
        .nodes()
        .filter(|(_, node)| {
            matches!(
                node.kind,
                kiln::rootfs::view::NodeKind::CharDevice(..)
                    | kiln::rootfs::view::NodeKind::BlockDevice(..)
            )
        })
        .map(|(path, _)| path.absolute())
        .collect();
    let root = scratch.path().join("rootfs");
    let maps = kiln::sandbox::idmap::IdMaps::single(
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    kiln::sandbox::materialize::materialize(&fs, &root, &maps)?;
    if dest_is_empty_dir {
        std::fs::remove_dir(dest)
            .with_context(|| format!("failed to replace `{}`", dest.display()))?;
    }
    std::fs::rename(&root, dest)
        .with_context(|| format!("failed to move the filesystem to `{}`", dest.display()))?;
    if let Some(first) = devices.first() {
        eprintln!(
            "kiln: type=local: {} device node(s) of the image (e.g. {first}) were not written: \
             only root can create them",
            devices.len()
        );
    }
    Ok(())
}

pub(crate) fn parse_references(texts: &[String]) -> anyhow::Result<Vec<kiln::registry::Reference>> {
    texts
        .iter()
        .map(|text| {
            text.parse::<kiln::registry::Reference>()
                .map_err(|e| usage(format!("invalid image reference `{text}`: {e}")))
        })
        .collect()
}

pub(crate) fn report_push(pushed: &kiln::registry::PushResult, verbose: bool) {
    if verbose {
        eprintln!(
            "kiln: pushed {} to {} ({} blobs uploaded, {} mounted, {} already there, {} bytes sent)",
            pushed.digest,
            pushed.pushed.join(", "),
            pushed.blobs_uploaded,
            pushed.blobs_mounted,
            pushed.blobs_existing,
            pushed.bytes_uploaded
        );
    }
}

pub(crate) fn write_metadata(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_file_atomically(path, text.as_bytes(), "the metadata file")
}

/// The directory `path` is in (`.` for a bare file name), where its temp files go so that a
/// rename puts them in place.
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` through a temp file beside it, so `path` is whole or unchanged;
/// `what` names the file in errors.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8], what: &str) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("failed to create a temp file in `{}`", dir.display()))?;
    temp.write_all(bytes)?;
    temp.persist(path)
        .with_context(|| format!("failed to write {what} `{}`", path.display()))?;
    Ok(())
}
