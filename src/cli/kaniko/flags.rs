//! kaniko's executor flags as kiln reads them: [`KanikoFlags`] holds the ones kiln honours,
//! with kaniko's names, short forms and pflag's boolean forms (`--flag`, `--flag=true|false`);
//! [`UNSUPPORTED`] names the ones kiln refuses and why.

use std::path::PathBuf;

use clap::Parser;

/// kaniko's executor flags that kiln honours, with kaniko's names and meanings.
#[derive(Parser, Debug)]
#[command(
    name = "kiln kaniko",
    about = "Build with kaniko's executor flags",
    disable_version_flag = true
)]
pub(super) struct KanikoFlags {
    /// The build context: a directory, or `dir://DIR`.
    #[arg(short = 'c', long, default_value = "/workspace/")]
    pub(super) context: String,
    /// A directory inside the context to use as the context.
    #[arg(long = "context-sub-path")]
    pub(super) context_sub_path: Option<PathBuf>,
    /// The Dockerfile: a path as given when it exists, else relative to the context.
    #[arg(short = 'f', long, default_value = "Dockerfile")]
    pub(super) dockerfile: PathBuf,
    /// Where to push the image; repeatable.
    #[arg(short = 'd', long = "destination")]
    pub(super) destinations: Vec<String>,
    /// Build without pushing.
    #[arg(long = "no-push", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) no_push: bool,
    /// kaniko's registry layer cache: kiln's registry step cache in `--cache-repo`
    /// (`--cache-from` and `--cache-to type=registry,ref=REPO,mode=max`).
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) cache: bool,
    /// The cache's repository (default: the first destination's, with `/cache` appended);
    /// used only with `--cache=true`, as in kaniko.
    #[arg(long = "cache-repo")]
    pub(super) cache_repo: Option<String>,
    /// With `--cache=true`: read the registry cache but write nothing to it.
    #[arg(long = "no-push-cache", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) no_push_cache: bool,
    /// kaniko's cache lifetime: refused (kiln's entries do not expire when read; see
    /// `kiln cache prune`).
    #[arg(long = "cache-ttl")]
    pub(super) cache_ttl: Option<String>,
    /// A local directory for kiln's blob store and step cache (kaniko: its base-image cache).
    #[arg(long = "cache-dir")]
    pub(super) cache_dir: Option<PathBuf>,
    /// Write the image's manifest digest (`sha256:...`, no newline) to FILE.
    #[arg(long = "digest-file")]
    pub(super) digest_file: Option<PathBuf>,
    /// Write `NAME@DIGEST` for every destination, one a line, to FILE.
    #[arg(long = "image-name-with-digest-file")]
    pub(super) image_name_with_digest_file: Option<PathBuf>,
    /// Also write the image as a docker-archive tarball (tagged with the destinations).
    #[arg(long = "tar-path", alias = "tarPath")]
    pub(super) tar_path: Option<PathBuf>,
    /// Also write the image as an OCI layout in DIR.
    #[arg(long = "oci-layout-path")]
    pub(super) oci_layout_path: Option<PathBuf>,
    /// A build argument `KEY=VALUE` (or `KEY`, from the environment); repeatable.
    #[arg(long = "build-arg")]
    pub(super) build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub(super) target: Option<String>,
    /// No timestamps in the image: kiln's images never have build times (SOURCE_DATE_EPOCH or
    /// 0); this also leaves times out of the provenance.
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) reproducible: bool,
    /// A registry reached over plain HTTP (or HTTPS without verification); repeatable.
    #[arg(long = "insecure-registry")]
    pub(super) insecure_registries: Vec<String>,
    /// Push to the destinations' registries over plain HTTP.
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) insecure: bool,
    /// Pull from every registry without TLS verification.
    #[arg(long = "insecure-pull", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) insecure_pull: bool,
    /// Push to the destinations' registries without verifying their certificates.
    #[arg(long = "skip-tls-verify", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) skip_tls_verify: bool,
    /// Pull from every registry without verifying certificates.
    #[arg(long = "skip-tls-verify-pull", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) skip_tls_verify_pull: bool,
    /// A registry reached without verifying its certificate; repeatable.
    #[arg(long = "skip-tls-verify-registry")]
    pub(super) skip_tls_verify_registries: Vec<String>,
    /// A pull-through mirror of Docker Hub (`host[:port][/path]`); repeatable, tried in order
    /// (also `$KANIKO_REGISTRY_MIRROR`).
    #[arg(long = "registry-mirror")]
    pub(super) registry_mirrors: Vec<String>,
    /// The target platform `os/arch[/variant]`.
    #[arg(long = "custom-platform", alias = "customPlatform")]
    pub(super) custom_platform: Option<String>,
    /// A label `KEY=VALUE` for the image; repeatable.
    #[arg(long = "label")]
    pub(super) labels: Vec<String>,
    /// Layer compression: gzip or zstd.
    #[arg(long)]
    pub(super) compression: Option<String>,
    /// Compression level.
    #[arg(long = "compression-level")]
    pub(super) compression_level: Option<i32>,
    /// Log level: panic, fatal and error print only errors and the digest; the others print
    /// kiln's plain progress.
    #[arg(short = 'v', long, default_value = "info")]
    pub(super) verbosity: String,
    /// Log format: text or color (kiln's plain progress lines); json is refused.
    #[arg(long = "log-format")]
    pub(super) log_format: Option<String>,
    /// kaniko refuses to run outside a container without it; kiln never changes the machine it
    /// runs on, so it needs none.
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) force: bool,
    /// Build only the stages the target needs: kiln always does (`=false` changes nothing but
    /// kaniko's build time).
    #[arg(long = "skip-unused-stages", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) skip_unused_stages: bool,
    /// kaniko cleans the filesystem it unpacked the image into; kiln unpacks nothing into the
    /// filesystem it runs on, so there is nothing to clean.
    #[arg(long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) cleanup: bool,
}

/// kaniko flags kiln refuses, and why: each is named in the error, never ignored.
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "snapshot-mode",
        "kiln computes each step's changes exactly and takes no filesystem snapshots; drop it",
    ),
    (
        "snapshotMode",
        "kiln computes each step's changes exactly and takes no filesystem snapshots; drop it",
    ),
    (
        "single-snapshot",
        "kiln writes one layer per step as Docker does; it cannot squash the build into one",
    ),
    (
        "use-new-run",
        "kiln computes each step's changes exactly and takes no filesystem snapshots; drop it",
    ),
    (
        "ignore-path",
        "kiln never snapshots the filesystem it runs on, so there is nothing to leave out",
    ),
    (
        "ignore-var-run",
        "kiln never snapshots the filesystem it runs on, so there is nothing to leave out",
    ),
    (
        "whitelist-var-run",
        "kiln never snapshots the filesystem it runs on, so there is nothing to leave out",
    ),
    (
        "cache-copy-layers",
        "kiln kaniko maps --cache to kiln's registry step cache, which caches every step's layer \
         and has no such switch",
    ),
    (
        "cache-run-layers",
        "kiln kaniko maps --cache to kiln's registry step cache, which caches every step's layer \
         and has no such switch",
    ),
    (
        "compressed-caching",
        "kiln kaniko maps --cache to kiln's registry step cache, which caches every step's layer \
         and has no such switch",
    ),
    (
        "image-name-tag-with-digest-file",
        "not supported yet; --image-name-with-digest-file writes NAME@DIGEST lines",
    ),
    (
        "git",
        "kiln builds from a directory: check the repository out and pass --context DIR",
    ),
    (
        "bucket",
        "kiln builds from a directory: download and unpack the context, and pass --context DIR",
    ),
    (
        "registry-certificate",
        "give the registry's CA certificate in /etc/containers/certs.d/HOST/ca.crt (or \
         `kiln build --cert-dir`)",
    ),
    (
        "registry-client-cert",
        "give the client certificate in /etc/containers/certs.d/HOST/client.cert and \
         client.key (or `kiln build --cert-dir`)",
    ),
    (
        "registry-map",
        "write the mapping as a registries.conf ($CONTAINERS_REGISTRIES_CONF) for `kiln build`",
    ),
    (
        "push-retry",
        "kiln retries every registry request itself (with backoff and Retry-After)",
    ),
    (
        "image-fs-extract-retry",
        "kiln does not extract the base image onto the filesystem it runs on",
    ),
    (
        "kaniko-dir",
        "kiln keeps nothing in /kaniko but the Docker config; set $DOCKER_CONFIG for that",
    ),
    ("log-timestamp", "kiln's progress lines carry no timestamps"),
    (
        "build-context",
        "not a kaniko executor flag; use `kiln build --build-context`",
    ),
];
