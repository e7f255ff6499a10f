//! The flags of `kiln build` as typed ([`BuildArgs`]) and the checks and conversions they
//! need before a build: key=value lists, SOURCE_DATE_EPOCH, tag templates, named contexts,
//! the sandbox's secrets, SSH agents and network, and `--apk-repositories-file`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;
use kiln::image::{self};

use super::attest::AttestModeName;
use super::*;
/// The name that stands for standard input, for the context and for `-f`.
pub(crate) const STDIN: &str = "-";

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressionName {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    Auto,
    Plain,
    Quiet,
}

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// Build context directory; `-` reads the Dockerfile from standard input and builds with
    /// an empty context, as `docker build -` does.
    pub(crate) context: PathBuf,
    /// Dockerfile path (default: CONTEXT/Dockerfile); `-` reads it from standard input.
    #[arg(short = 'f', long = "file")]
    pub(crate) file: Option<PathBuf>,
    /// Set when the Dockerfile came from standard input (the provenance names it `-`).
    #[arg(skip)]
    pub(crate) dockerfile_from_stdin: bool,
    /// Name and tag for the image (`name:tag`); repeatable. `{{date}}` (YYYYMMDD, UTC),
    /// `{{git_sha}}` and `{{git_short_sha}}` (the context's commit) are expanded.
    #[arg(short = 't', long = "tag")]
    pub(crate) tags: Vec<String>,
    /// Build-time variable `KEY=VALUE` (or `KEY` to take it from the environment); repeatable.
    #[arg(long = "build-arg")]
    pub(crate) build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Target platform `os/arch[/variant]` (default: the base image's, or the host's); a
    /// comma-separated list (or the flag repeated) builds each and writes one image index.
    #[arg(long = "platform", value_name = "PLATFORM[,PLATFORM...]")]
    pub(crate) platforms: Vec<String>,
    /// Output: `type=oci,dest=DIR`, `type=oci-archive,dest=FILE`, `type=docker-archive,dest=FILE`.
    #[arg(short = 'o', long = "output")]
    pub(crate) outputs: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub(crate) compression: CompressionName,
    /// Compression level (gzip 1-9, default 5; zstd 1-19, default 3).
    #[arg(long)]
    pub(crate) compression_level: Option<i32>,
    /// Directory for the blob store and the step cache (default: $KILN_CACHE_DIR, else
    /// $XDG_CACHE_HOME/kiln, else ~/.cache/kiln).
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Write every layer again instead of reusing cached ones.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Read step results from a shared cache: `type=registry,ref=REPO` (or just `REPO`) or
    /// `type=local,src=DIR`; repeatable, tried in order.
    #[arg(long, value_name = "SPEC")]
    pub(crate) cache_from: Vec<String>,
    /// Write step results to a shared cache: `type=registry,ref=REPO[,mode=min|max]` or
    /// `type=local,dest=DIR[,mode=min|max]` (min: the final stage's steps, the default; max:
    /// every stage's).
    #[arg(long, value_name = "SPEC")]
    pub(crate) cache_to: Vec<String>,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) progress: ProgressMode,
    /// Print nothing but the manifest digest on success (`--progress quiet`).
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Set a label `KEY=VALUE` on the image's config; repeatable. It wins over a Dockerfile
    /// `LABEL` of the same name.
    #[arg(long = "label")]
    pub(crate) labels: Vec<String>,
    /// Write the image ID (the config digest, `sha256:...`) to FILE, as `docker build` does.
    #[arg(long, value_name = "FILE")]
    pub(crate) iidfile: Option<PathBuf>,
    /// Resolve every base image tag at its registry. kiln always does (a base pinned by digest
    /// needs no lookup); the flag is taken for `docker build` command lines.
    #[arg(long, conflicts_with = "offline")]
    pub(crate) pull: bool,
    /// Write the build result (digests, descriptor) as JSON to this file, like buildx.
    #[arg(long)]
    pub(crate) metadata_file: Option<PathBuf>,
    /// Clamp file times to, and stamp the image with, this Unix time (default: $SOURCE_DATE_EPOCH,
    /// else 0).
    #[arg(long)]
    pub(crate) source_date_epoch: Option<i64>,
    /// Add an annotation `KEY=VALUE` to the image manifest; repeatable.
    #[arg(long = "annotation")]
    pub(crate) annotations: Vec<String>,
    /// Push the image to every `-t` reference after building.
    #[arg(long)]
    pub(crate) push: bool,
    /// Push to the repository of every `-t` reference by digest only, moving no tag, and
    /// print the digest (buildx `type=image,push-by-digest=true`); implies --push.
    #[arg(long)]
    pub(crate) push_by_digest: bool,
    /// Attach SLSA v1 provenance (`--provenance=false` to leave it out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub(crate) provenance: bool,
    /// Attach an SBOM of the image's distribution and its apk, Debian and Python packages
    /// (`--sbom=false` to leave it out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub(crate) sbom: bool,
    /// The SBOM's format: SPDX 2.3 JSON, or CycloneDX 1.6 JSON (predicate type
    /// `https://cyclonedx.org/bom`).
    #[arg(long, value_enum, default_value = "spdx")]
    pub(crate) sbom_format: super::attest::SbomFormat,
    /// Scan the result's packages against this vulnerability database (see `kiln scan`) before
    /// anything is written or pushed; the findings are printed to stderr.
    #[arg(long, value_name = "DIR")]
    pub(crate) scan_db: Option<PathBuf>,
    /// With --scan-db: fail the build (nothing written or pushed) when a finding is at or above
    /// this severity.
    #[arg(long, value_enum, value_name = "SEVERITY", requires = "scan_db")]
    pub(crate) fail_on: Option<super::scan::SeverityName>,
    /// Sign the attestations (DSSE) with this private key (PKCS#8 PEM, ECDSA P-256 or
    /// Ed25519, as `kiln keygen` writes).
    #[arg(long, env = "KILN_SIGN_KEY")]
    pub(crate) sign_key: Option<PathBuf>,
    /// Check every registry base image against this policy (the `kiln verify` format) before
    /// any step runs; the build stops, naming the base, the check and the fix, when one fails.
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
    /// A public key (PEM) the policy trusts; repeatable.
    #[arg(long = "policy-key", requires = "policy")]
    pub(crate) policy_keys: Vec<PathBuf>,
    /// How attestations are attached to OCI layout outputs and pushes.
    #[arg(long, value_enum, default_value = "referrers")]
    pub(crate) attest_mode: AttestModeName,
    /// With `--push` and `--sign-key`: also sign the pushed manifest, and put the signed
    /// attestations, in these layouts: `cosign-tags` (the `sha256-<hex>.sig` and `.att` tags
    /// cosign 2, containers/image and Kyverno read), `bundle` (Sigstore bundle v0.3
    /// referrers, cosign 3's default) or `both`.
    #[arg(long, value_enum, default_value = "both")]
    pub(crate) signature_format: super::sign::SignatureFormatName,
    /// Leave times and the invocation id out of the provenance, so two builds of the same
    /// inputs give byte-identical attestations.
    #[arg(long)]
    pub(crate) reproducible: bool,
    /// A build arg whose value must never reach the provenance (names containing TOKEN,
    /// SECRET, PASSWORD, PASSWD or KEY are always kept out); repeatable.
    #[arg(long = "secret-build-arg")]
    pub(crate) secret_build_args: Vec<String>,
    /// An apk repository (an HTTP(S) mirror or a directory) added after the image's
    /// /etc/apk/repositories; repeatable.
    #[arg(long = "apk-repository")]
    pub(crate) apk_repositories: Vec<String>,
    /// Use the repositories listed in FILE instead of the image's /etc/apk/repositories (as
    /// `apk --repositories-file`); lines starting with `./` are relative to FILE's directory,
    /// as `kiln apk-export` writes them.
    #[arg(long = "apk-repositories-file", value_name = "FILE")]
    pub(crate) apk_repositories_file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`;
    /// repeatable. Its value never reaches a layer, the history or the provenance.
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent $SSH_AUTH_SOCK names) or
    /// `ID=SOCKET`; repeatable. Commands reach the agent through a proxy, never its keys.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub(crate) ssh: Vec<String>,
    /// Network of sandboxed RUN commands without `--network`: `none` (loopback only) or `host`.
    #[arg(long, default_value = "none")]
    pub(crate) network: String,
    /// A named build context, `NAME=DIR` or `NAME=oci-layout://DIR[:TAG][@sha256:...]`, that
    /// `FROM NAME` and `COPY --from=NAME` use (buildx's); repeatable.
    #[arg(long = "build-context", value_name = "NAME=DIR|oci-layout://DIR")]
    pub(crate) build_contexts: Vec<String>,
    /// An `/etc/hosts` entry for sandboxed RUN commands, `HOST:IP` (or `HOST=IP`); repeatable.
    /// `host-gateway` is refused: there is no daemon gateway to map it to.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub(crate) add_hosts: Vec<String>,
    /// A directory holding static `qemu-<arch>-static` interpreters for RUN commands of
    /// another architecture than this machine's (else PATH).
    #[arg(long = "qemu-dir", value_name = "DIR", env = "KILN_QEMU_DIR")]
    pub(crate) qemu_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) registry: RegistryFlags,
}

pub(crate) fn key_value_pairs(
    values: &[String],
    what: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for value in values {
        match value.split_once('=') {
            Some((key, val)) => {
                out.insert(key.to_owned(), val.to_owned());
            }
            None if what == "--build-arg" => {
                // Docker takes a bare name from the environment, and drops it when unset.
                if let Ok(val) = std::env::var(value) {
                    out.insert(value.clone(), val);
                }
            }
            None => {
                return Err(usage(format!(
                    "invalid {what} `{value}`: expected KEY=VALUE"
                )));
            }
        }
    }
    Ok(out)
}

pub(crate) fn source_date_epoch(
    flag: Option<i64>,
    build_args: &BTreeMap<String, String>,
) -> anyhow::Result<i64> {
    if let Some(epoch) = flag {
        return Ok(epoch);
    }
    let from_arg = build_args.get("SOURCE_DATE_EPOCH").cloned();
    let from_env = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty());
    match from_arg.or(from_env) {
        None => Ok(0),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|e| *e >= 0)
            .ok_or_else(|| {
                usage(format!(
                    "invalid SOURCE_DATE_EPOCH `{text}`: expected a non-negative integer of seconds"
                ))
            }),
    }
}

/// The repository lines of an `--apk-repositories-file`, with `./` lines made absolute against
/// the file's directory.
pub(crate) fn read_repositories_file(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "failed to read the apk repositories file `{}`",
            file.display()
        )
    })?;
    let base = std::path::absolute(file.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("failed to resolve `{}`", file.display()))?;
    Ok(text
        .lines()
        .map(|line| match line.trim().strip_prefix("./") {
            Some(relative) => base.join(relative).display().to_string(),
            None => line.to_owned(),
        })
        .collect())
}

/// Expands the tag templates the seed's CI uses: `{{date}}` (today, UTC, `YYYYMMDD`),
/// `{{git_sha}}` and `{{git_short_sha}}` (the commit the context is checked out at).
pub(crate) fn expand_tag_templates(tags: &[String], context: &Path) -> anyhow::Result<Vec<String>> {
    if !tags.iter().any(|t| t.contains("{{")) {
        return Ok(tags.to_vec());
    }
    let date = image::rfc3339(unix_now())[..10].replace('-', "");
    let commit = match attest::provenance::GitSource::detect(context)? {
        Some(git) => Some(git.commit),
        None => None,
    };
    tags.iter()
        .map(|tag| {
            let mut out = tag.replace("{{date}}", &date);
            if out.contains("{{git_sha}}") || out.contains("{{git_short_sha}}") {
                let Some(commit) = &commit else {
                    return Err(usage(format!(
                        "tag `{tag}` uses the git commit, but `{}` is not in a git checkout",
                        context.display()
                    )));
                };
                out = out
                    .replace("{{git_sha}}", commit)
                    .replace("{{git_short_sha}}", &commit[..commit.len().min(7)]);
            }
            if out.contains("{{") {
                return Err(usage(format!(
                    "unknown template in tag `{tag}`: kiln expands {{{{date}}}}, {{{{git_sha}}}} and {{{{git_short_sha}}}}"
                )));
            }
            Ok(out)
        })
        .collect()
}

/// `--secret`, `--ssh` and `--network`, checked before anything is built.
/// Parses `--build-context NAME=VALUE`s as buildx does, for the kinds kiln reads: a directory,
/// or `oci-layout://DIR[:TAG][@sha256:...]`. Other kinds are refused by name.
pub(crate) fn named_contexts(
    specs: &[String],
) -> anyhow::Result<BTreeMap<String, kiln::dockerfile::plan::NamedContext>> {
    use kiln::dockerfile::plan::{NamedContext, split_local_reference};
    let mut contexts = BTreeMap::new();
    for spec in specs {
        let (name, value) = spec
            .split_once('=')
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
            .ok_or_else(|| usage(format!("--build-context `{spec}`: expected NAME=VALUE")))?;
        let context = if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (dir, reference) = split_local_reference(rest);
            if !Path::new(&dir).join("index.json").is_file() {
                return Err(usage(format!(
                    "--build-context `{spec}`: `{dir}` is not an OCI layout (no index.json)"
                )));
            }
            NamedContext::OciLayout { dir, reference }
        } else if let Some((kind, _)) = value.split_once("://") {
            return Err(usage(format!(
                "--build-context `{spec}`: `{kind}://` contexts are not supported yet; \
                 give a directory or oci-layout://DIR"
            )));
        } else if value.starts_with("target:") || value.starts_with("git@") {
            return Err(usage(format!(
                "--build-context `{spec}`: this kind of context is not supported yet; \
                 give a directory or oci-layout://DIR"
            )));
        } else {
            let dir = PathBuf::from(value);
            if !dir.is_dir() {
                return Err(usage(format!(
                    "--build-context `{spec}`: `{value}` is not a directory"
                )));
            }
            NamedContext::Dir(dir)
        };
        if contexts.insert(name.to_owned(), context).is_some() {
            return Err(usage(format!(
                "--build-context: `{name}` is given more than once"
            )));
        }
    }
    Ok(contexts)
}

pub(crate) fn sandbox_options(
    secrets: &[String],
    ssh: &[String],
    network: &str,
    add_hosts: &[String],
) -> anyhow::Result<kiln::sandbox::SandboxOptions> {
    let mut options = kiln::sandbox::SandboxOptions {
        network: network
            .parse()
            .map_err(|e: String| UsageError(format!("--network: {e}")))?,
        ..Default::default()
    };
    for spec in secrets {
        let (id, source) = kiln::sandbox::parse_secret(spec).map_err(UsageError)?;
        options.secrets.insert(id, source);
    }
    for spec in ssh {
        let (id, socket) = kiln::sandbox::parse_ssh(spec).map_err(UsageError)?;
        options.ssh.insert(id, socket);
    }
    for spec in add_hosts {
        let entry = kiln::sandbox::parse_add_host(spec)
            .map_err(|e| UsageError(format!("--add-host {e}")))?;
        options.extra_hosts.push(entry);
    }
    Ok(options)
}
