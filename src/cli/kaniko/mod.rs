//! `kiln kaniko`: kaniko's executor command line, so that pipelines written for
//! `gcr.io/kaniko-project/executor` (archived in June 2025) run on kiln unchanged. The binary
//! answers to it under the names `executor` and `kaniko` too (argv[0], as in kiln's image at
//! `/kaniko/executor`).
//!
//! The flags become a `kiln build` command line ([`to_build_argv`]), parsed by the same
//! [`BuildArgs`] and run by the same [`run_build`], so a kaniko command line and the `kiln
//! build` it stands for make the same image. What kaniko writes besides the image
//! (`--digest-file`, `--image-name-with-digest-file`) is written here, in kaniko's formats.
//! A kaniko flag kiln cannot honour is refused by name with the reason ([`UNSUPPORTED`]);
//! nothing is silently ignored. Credentials: kaniko's `/kaniko/.docker/config.json`
//! (`$DOCKER_CONFIG`, which kaniko's image sets) is read when `$DOCKER_CONFIG` is unset.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

mod flags;

use super::build::{BuildArgs, run_build};
use super::{usage, write_file_atomically};
use flags::{KanikoFlags, UNSUPPORTED};

/// `kiln kaniko ARGS...`: everything after the command, parsed as kaniko parses it.
#[derive(clap::Args)]
pub(crate) struct KanikoCommand {
    /// kaniko executor flags (`--context`, `--dockerfile`, `--destination`, ...).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "KANIKO FLAGS"
    )]
    args: Vec<String>,
}

/// Runs `kiln kaniko ARGS` (and the `executor`/`kaniko` entry points).
pub(crate) fn run_kaniko(command: KanikoCommand) -> anyhow::Result<ExitCode> {
    refuse_unsupported(&command.args)?;
    let flags = match KanikoFlags::try_parse_from(
        std::iter::once("kiln kaniko".to_owned()).chain(command.args.iter().cloned()),
    ) {
        Ok(flags) => flags,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let text = text.trim_start_matches("error: ").trim_end();
            return Err(usage(format!("kiln kaniko: {text}")));
        }
    };
    let scratch = tempfile::Builder::new()
        .prefix("kiln-kaniko-")
        .tempdir()
        .context("failed to create a temporary directory for kiln kaniko")?;
    let plan = to_build_argv(
        &flags,
        scratch.path(),
        std::env::var("KANIKO_REGISTRY_MIRROR").ok(),
    )?;
    use_kaniko_docker_config();
    let parsed = BuildCommand::try_parse_from(&plan.argv).map_err(|e| {
        usage(format!(
            "kiln kaniko: the flags make an invalid `kiln build` command line: {e}"
        ))
    })?;
    let code = run_build(parsed.build)?;
    if plan.metadata.is_none() {
        return Ok(code);
    }
    let digest = built_digest(&scratch.path().join("metadata.json"))?;
    if let Some(path) = &flags.digest_file {
        write_file_atomically(path, digest.as_bytes(), "the digest file")?;
    }
    if let Some(path) = &flags.image_name_with_digest_file {
        let mut text = String::new();
        for destination in &flags.destinations {
            let reference = destination
                .parse::<kiln::registry::Reference>()
                .map_err(|e| usage(format!("invalid --destination `{destination}`: {e}")))?;
            // kaniko names Docker Hub `index.docker.io`, as go-containerregistry does.
            let registry = match reference.registry() {
                "docker.io" => "index.docker.io",
                other => other,
            };
            text.push_str(&format!("{registry}/{}@{digest}\n", reference.repository()));
        }
        write_file_atomically(path, text.as_bytes(), "the image name with digest file")?;
    }
    Ok(code)
}

/// A `kiln build` command line, parsed by the same [`BuildArgs`] as `kiln build`.
#[derive(Parser)]
#[command(name = "kiln build")]
struct BuildCommand {
    #[command(flatten)]
    build: BuildArgs,
}

/// What [`to_build_argv`] makes: the `kiln build` argv and where its metadata file goes.
#[derive(Debug)]
struct BuildPlan {
    argv: Vec<String>,
    metadata: Option<PathBuf>,
}

/// Refuses, by name and with the reason, a kaniko flag kiln does not honour.
fn refuse_unsupported(args: &[String]) -> anyhow::Result<()> {
    for arg in args {
        let Some(name) = arg.strip_prefix("--") else {
            continue;
        };
        let name = name.split_once('=').map_or(name, |(name, _)| name);
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(flag, _)| *flag == name) {
            return Err(usage(format!(
                "kiln kaniko does not support kaniko's `--{name}`: {why}"
            )));
        }
    }
    Ok(())
}

/// The context directory `--context` names: a plain path or `dir://PATH`; kaniko's other
/// context kinds are refused with the way to give a directory instead.
fn context_dir(context: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = context.strip_prefix("dir://") {
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = context.split_once("://") {
        let how = match scheme {
            "tar" => "unpack the archive into a directory",
            "git" => "check the repository out into a directory",
            "s3" | "gs" | "az" | "http" | "https" => "download and unpack it into a directory",
            _ => "put it in a directory",
        };
        return Err(usage(format!(
            "kiln kaniko: --context `{context}`: kiln builds from a local directory only \
             (`{scheme}://` contexts are not supported); {how} and pass --context dir://DIR"
        )));
    }
    Ok(PathBuf::from(context))
}

/// The repository `--cache=true` keeps its entries in: `--cache-repo`, else, as kaniko infers
/// it, the first destination's repository with `/cache` appended.
fn cache_repository(flags: &KanikoFlags) -> anyhow::Result<String> {
    if let Some(repository) = &flags.cache_repo {
        return Ok(repository.clone());
    }
    let Some(destination) = flags.destinations.first() else {
        return Err(usage(
            "kiln kaniko: --cache=true needs --cache-repo, or a --destination to infer it from"
                .to_owned(),
        ));
    };
    let reference = destination
        .parse::<kiln::registry::Reference>()
        .map_err(|e| usage(format!("invalid --destination `{destination}`: {e}")))?;
    Ok(format!(
        "{}/{}/cache",
        reference.registry(),
        reference.repository()
    ))
}

/// kaniko's flags as a `kiln build` command line. `scratch` holds the files the translation
/// needs (the registries.conf of `--registry-mirror`, the metadata the digest files are made
/// from); `env_mirror` is `$KANIKO_REGISTRY_MIRROR`.
fn to_build_argv(
    flags: &KanikoFlags,
    scratch: &Path,
    env_mirror: Option<String>,
) -> anyhow::Result<BuildPlan> {
    if let Some(ttl) = &flags.cache_ttl {
        return Err(usage(format!(
            "kiln kaniko does not support kaniko's `--cache-ttl={ttl}`: kiln's registry cache \
             entries do not expire when read; drop the flag and remove old entries with \
             `kiln cache prune REPO --older-than {ttl}`"
        )));
    }
    if !flags.no_push && flags.destinations.is_empty() {
        return Err(usage(
            "kiln kaniko: you must provide --destination, or use --no-push".to_owned(),
        ));
    }
    if flags.image_name_with_digest_file.is_some() && flags.destinations.is_empty() {
        return Err(usage(
            "kiln kaniko: --image-name-with-digest-file needs at least one --destination"
                .to_owned(),
        ));
    }
    let progress = match flags.verbosity.as_str() {
        "panic" | "fatal" | "error" => "quiet",
        "warn" | "info" | "debug" | "trace" => "plain",
        other => {
            return Err(usage(format!(
                "kiln kaniko: invalid --verbosity `{other}` (expected panic, fatal, error, \
                 warn, info, debug or trace)"
            )));
        }
    };
    match flags.log_format.as_deref() {
        None | Some("text" | "color") => {}
        Some(other) => {
            return Err(usage(format!(
                "kiln kaniko does not support kaniko's `--log-format={other}`: kiln prints \
                 plain progress lines (text)"
            )));
        }
    }

    let mut context = context_dir(&flags.context)?;
    if let Some(sub) = &flags.context_sub_path {
        context = context.join(sub);
    }
    // As kaniko: the Dockerfile path as given when it exists, else inside the context.
    let dockerfile = if flags.dockerfile.is_file() {
        flags.dockerfile.clone()
    } else {
        context.join(&flags.dockerfile)
    };

    let mut argv: Vec<String> = vec!["kiln build".into(), "--progress".into(), progress.into()];
    let mut push = |flag: &str, value: &str| {
        argv.push(flag.to_owned());
        argv.push(value.to_owned());
    };
    push("--file", &dockerfile.display().to_string());
    for destination in &flags.destinations {
        push("--tag", destination);
    }
    for arg in &flags.build_args {
        push("--build-arg", arg);
    }
    for label in &flags.labels {
        push("--label", label);
    }
    if let Some(target) = &flags.target {
        push("--target", target);
    }
    if let Some(platform) = &flags.custom_platform {
        push("--platform", platform);
    }
    if let Some(dir) = &flags.cache_dir {
        push("--cache-dir", &dir.display().to_string());
    }
    if flags.cache {
        let repository = cache_repository(flags)?;
        push("--cache-from", &format!("type=registry,ref={repository}"));
        if !flags.no_push_cache {
            push(
                "--cache-to",
                &format!("type=registry,ref={repository},mode=max"),
            );
        }
    }
    if let Some(compression) = &flags.compression {
        push("--compression", compression);
    }
    if let Some(level) = flags.compression_level {
        push("--compression-level", &level.to_string());
    }
    if let Some(path) = &flags.tar_path {
        push(
            "--output",
            &format!("type=docker-archive,dest={}", path.display()),
        );
    }
    if let Some(path) = &flags.oci_layout_path {
        push("--output", &format!("type=oci,dest={}", path.display()));
    }
    let mut insecure = flags.insecure_registries.clone();
    insecure.extend(flags.skip_tls_verify_registries.iter().cloned());
    if flags.insecure || flags.skip_tls_verify {
        for destination in &flags.destinations {
            let reference = destination
                .parse::<kiln::registry::Reference>()
                .map_err(|e| usage(format!("invalid --destination `{destination}`: {e}")))?;
            insecure.push(reference.registry().to_owned());
        }
    }
    insecure.sort();
    insecure.dedup();
    for host in &insecure {
        push("--insecure-registry", host);
    }
    if flags.insecure_pull || flags.skip_tls_verify_pull {
        // kiln has one switch for every registry: pulls and pushes alike.
        push("--tls-verify", "false");
    }
    let mut mirrors = flags.registry_mirrors.clone();
    if let Some(mirror) = env_mirror.filter(|m| !m.is_empty()) {
        mirrors.extend(mirror.split(';').map(str::to_owned));
    }
    if !mirrors.is_empty() {
        let conf = scratch.join("registries.conf");
        let mut text =
            String::from("[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n");
        for mirror in &mirrors {
            let location = mirror
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if location.is_empty() || location.contains('"') {
                return Err(usage(format!(
                    "kiln kaniko: invalid --registry-mirror `{mirror}`"
                )));
            }
            text.push_str(&format!(
                "\n[[registry.mirror]]\nlocation = \"{location}\"\n"
            ));
        }
        std::fs::write(&conf, text)
            .with_context(|| format!("failed to write `{}`", conf.display()))?;
        push("--registries-conf", &conf.display().to_string());
    }
    let metadata = (flags.digest_file.is_some() || flags.image_name_with_digest_file.is_some())
        .then(|| scratch.join("metadata.json"));
    if let Some(path) = &metadata {
        push("--metadata-file", &path.display().to_string());
    }
    if flags.reproducible {
        argv.push("--reproducible".into());
    }
    if !flags.no_push {
        argv.push("--push".into());
    }
    argv.push(context.display().to_string());
    Ok(BuildPlan { argv, metadata })
}

/// kaniko's image keeps registry credentials in `/kaniko/.docker/config.json` and points
/// `$DOCKER_CONFIG` there; pipelines write that file. Used when `$DOCKER_CONFIG` is unset.
fn use_kaniko_docker_config() {
    const KANIKO_DOCKER_CONFIG: &str = "/kaniko/.docker";
    if std::env::var_os("DOCKER_CONFIG").is_none()
        && Path::new(KANIKO_DOCKER_CONFIG)
            .join("config.json")
            .is_file()
    {
        // SAFETY: called before the build starts any thread (the command line is single
        // threaded until `run_build`).
        unsafe { std::env::set_var("DOCKER_CONFIG", KANIKO_DOCKER_CONFIG) };
    }
}

/// The manifest digest `kiln build --metadata-file` recorded.
fn built_digest(metadata: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(metadata).with_context(|| {
        format!(
            "failed to read the build's metadata `{}`",
            metadata.display()
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "failed to parse the build's metadata `{}`",
            metadata.display()
        )
    })?;
    value["containerimage.digest"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("`{}` names no containerimage.digest", metadata.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> anyhow::Result<BuildPlan> {
        refuse_unsupported(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())?;
        let flags = KanikoFlags::try_parse_from(
            std::iter::once("kiln kaniko").chain(args.iter().copied()),
        )?;
        to_build_argv(&flags, Path::new("/scratch"), None)
    }

    #[test]
    fn gitlab_template_command_line_becomes_kiln_build() {
        let plan = plan(&[
            "--context",
            "/builds/group/project",
            "--dockerfile",
            "/builds/group/project/Dockerfile",
            "--destination",
            "registry.example.test/group/project:v1",
        ])
        .unwrap();
        assert_eq!(
            plan.argv,
            [
                "kiln build",
                "--progress",
                "plain",
                "--file",
                "/builds/group/project/Dockerfile",
                "--tag",
                "registry.example.test/group/project:v1",
                "--push",
                "/builds/group/project",
            ]
        );
        assert!(BuildCommand::try_parse_from(&plan.argv).is_ok());
    }

    #[test]
    fn cache_maps_to_the_registry_step_cache_in_the_repository_kaniko_infers() {
        let pairs = |argv: &[String], flag: &str| -> Vec<String> {
            argv.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].clone())
                .collect()
        };
        let inferred = plan(&["--cache=true", "-d", "registry.example.test/group/app:v1"]).unwrap();
        assert_eq!(
            pairs(&inferred.argv, "--cache-from"),
            ["type=registry,ref=registry.example.test/group/app/cache"]
        );
        assert_eq!(
            pairs(&inferred.argv, "--cache-to"),
            ["type=registry,ref=registry.example.test/group/app/cache,mode=max"]
        );
        assert!(BuildCommand::try_parse_from(&inferred.argv).is_ok());

        let named = plan(&[
            "--cache",
            "--cache-repo",
            "registry.example.test/ci/cache",
            "--no-push-cache",
            "-d",
            "registry.example.test/group/app:v1",
        ])
        .unwrap();
        assert_eq!(
            pairs(&named.argv, "--cache-from"),
            ["type=registry,ref=registry.example.test/ci/cache"]
        );
        assert!(pairs(&named.argv, "--cache-to").is_empty());
        assert!(BuildCommand::try_parse_from(&named.argv).is_ok());

        // As in kaniko, the repository alone does not turn the cache on.
        let off = plan(&["--cache-repo=registry.example.test/ci/cache", "--no-push"]).unwrap();
        assert!(pairs(&off.argv, "--cache-from").is_empty());
    }

    #[test]
    fn kaniko_flag_forms_map_to_kiln_build_flags() {
        let plan = plan(&[
            "-c=dir:///src",
            "-f",
            "docker/Dockerfile",
            "-d",
            "127.0.0.1:5000/a:1",
            "--destination=127.0.0.1:5000/a:2",
            "--no-push",
            "--reproducible=true",
            "--build-arg=A=1",
            "--label",
            "l=v",
            "--target",
            "runtime",
            "--custom-platform=linux/arm64",
            "--tar-path",
            "/out/image.tar",
            "--oci-layout-path",
            "/out/layout",
            "--digest-file=/out/digest",
            "--skip-tls-verify",
            "--insecure-registry",
            "mirror.test:5000",
            "--force",
            "--cleanup",
            "-v",
            "error",
        ])
        .unwrap();
        let argv = plan.argv.join(" ");
        assert_eq!(
            argv,
            "kiln build --progress quiet --file /src/docker/Dockerfile --tag 127.0.0.1:5000/a:1 \
             --tag 127.0.0.1:5000/a:2 --build-arg A=1 --label l=v --target runtime --platform \
             linux/arm64 --output type=docker-archive,dest=/out/image.tar --output \
             type=oci,dest=/out/layout --insecure-registry 127.0.0.1:5000 --insecure-registry \
             mirror.test:5000 --metadata-file /scratch/metadata.json --reproducible /src"
        );
        assert!(BuildCommand::try_parse_from(&plan.argv).is_ok());
    }

    #[test]
    fn refusals_name_the_flag_and_the_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["--no-push", "--snapshot-mode=redo"], "`--snapshot-mode`"),
            (&["--no-push", "--single-snapshot"], "`--single-snapshot`"),
            (
                &["--no-push", "--cache=true"],
                "--cache=true needs --cache-repo",
            ),
            (&["--no-push", "--cache-ttl=24h"], "`--cache-ttl=24h`"),
            (
                &["--no-push", "--context", "git://github.com/a/b"],
                "`git://` contexts",
            ),
            (
                &["--no-push", "--context=tar://ctx.tar.gz"],
                "`tar://` contexts",
            ),
            (
                &["--no-push", "--context=s3://bucket/ctx.tar.gz"],
                "`s3://` contexts",
            ),
            (&[], "you must provide --destination, or use --no-push"),
            (&["--no-push", "--log-format=json"], "`--log-format=json`"),
            (&["--no-push", "--verbosity=loud"], "--verbosity `loud`"),
            (&["--no-push", "--frobnicate"], "--frobnicate"),
        ];
        for (args, expected) in cases {
            let error = match plan(args) {
                Ok(plan) => panic!("{args:?} was accepted: {plan:?}"),
                Err(e) => e.to_string(),
            };
            assert!(error.contains(expected), "{args:?}: {error}");
        }
        assert!(plan(&["--cache=false", "--no-push"]).is_ok());
    }

    #[test]
    fn registry_mirrors_become_a_registries_conf() {
        let scratch = tempfile::tempdir().unwrap();
        let flags = KanikoFlags::try_parse_from([
            "kiln kaniko",
            "--no-push",
            "--registry-mirror",
            "mirror.test:5000",
        ])
        .unwrap();
        let plan =
            to_build_argv(&flags, scratch.path(), Some("https://second.test/".into())).unwrap();
        let conf = scratch.path().join("registries.conf");
        assert!(plan.argv.contains(&conf.display().to_string()));
        let text = std::fs::read_to_string(&conf).unwrap();
        let map = kiln::registry::RegistryMap::parse(&text, &conf).unwrap();
        let reference: kiln::registry::Reference = "python:3.11-alpine".parse().unwrap();
        let places: Vec<String> = map
            .locations(&reference, true)
            .unwrap()
            .iter()
            .map(|place| place.reference.to_string())
            .collect();
        assert_eq!(
            places,
            [
                "mirror.test:5000/library/python:3.11-alpine",
                "second.test/library/python:3.11-alpine",
                "docker.io/library/python:3.11-alpine"
            ]
        );
    }
}
