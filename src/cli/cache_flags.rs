//! `kiln build --cache-from/--cache-to` in buildx's syntax, the repositories a push mounts
//! cached and base layers from, and `kiln cache prune`.
//!
//! - `--cache-to type=registry,ref=REPO[,mode=min|max]` or `type=local,dest=DIR[,mode=...]`;
//! - `--cache-from type=registry,ref=REPO` or `type=local,src=DIR` (repeatable, tried in
//!   order), or a bare `REPO` (buildx's shorthand for the registry form).
//!
//! Any other type or key is refused, naming it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use kiln::build::BaseRecord;
use kiln::build::shared_cache::{self, CacheLocation, ExportMode, SharedCacheOptions};
use kiln::registry::{Reference, RegistryOptions};

use super::{RegistryFlags, usage};

/// Which flag a spec came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    From,
    To,
}

impl Direction {
    fn flag(self) -> &'static str {
        match self {
            Direction::From => "--cache-from",
            Direction::To => "--cache-to",
        }
    }
}

/// The shared caches `--cache-from` and `--cache-to` name.
pub(crate) fn shared_cache_options(
    from: &[String],
    to: &[String],
) -> anyhow::Result<SharedCacheOptions> {
    let mut options = SharedCacheOptions::default();
    for spec in from {
        options.import.push(parse(spec, Direction::From)?.0);
    }
    match to {
        [] => {}
        [spec] => options.export = Some(parse(spec, Direction::To)?),
        _ => {
            return Err(usage(format!(
                "--cache-to given {} times: kiln writes one cache per build (read more with \
                 repeated --cache-from)",
                to.len()
            )));
        }
    }
    Ok(options)
}

fn parse(spec: &str, direction: Direction) -> anyhow::Result<(CacheLocation, ExportMode)> {
    let flag = direction.flag();
    if !spec.contains('=') {
        if direction == Direction::From && !spec.is_empty() {
            return Ok((
                CacheLocation::Registry(reference(spec, spec, flag)?),
                ExportMode::Min,
            ));
        }
        return Err(usage(format!(
            "invalid {flag} `{spec}`: expected type=registry,ref=REPO or type=local,{}=DIR",
            if direction == Direction::From {
                "src"
            } else {
                "dest"
            }
        )));
    }
    let mut kind = None;
    let mut reference_text = None;
    let mut dir = None;
    let mut mode = None;
    for part in spec.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            return Err(usage(format!(
                "invalid {flag} `{spec}`: `{part}` is not KEY=VALUE"
            )));
        };
        match (key, direction) {
            ("type", _) => kind = Some(value),
            ("ref", _) => reference_text = Some(value),
            ("src", Direction::From) | ("dest", Direction::To) => dir = Some(value),
            ("mode", Direction::To) => {
                mode = Some(match value {
                    "min" => ExportMode::Min,
                    "max" => ExportMode::Max,
                    other => {
                        return Err(usage(format!(
                            "invalid {flag} `{spec}`: mode `{other}` (expected min or max)"
                        )));
                    }
                })
            }
            (other, _) => {
                return Err(usage(format!(
                    "invalid {flag} `{spec}`: kiln does not support the key `{other}` here \
                     (it takes type, {})",
                    match direction {
                        Direction::From => "ref (registry) and src (local)",
                        Direction::To => "ref (registry), dest (local) and mode",
                    }
                )));
            }
        }
    }
    let mode = mode.unwrap_or_default();
    match kind {
        Some("registry") => {
            if dir.is_some() {
                return Err(usage(format!(
                    "invalid {flag} `{spec}`: type=registry takes ref=REPO, not a directory"
                )));
            }
            let Some(text) = reference_text else {
                return Err(usage(format!(
                    "invalid {flag} `{spec}`: type=registry needs ref=REPO"
                )));
            };
            Ok((CacheLocation::Registry(reference(text, spec, flag)?), mode))
        }
        Some("local") => {
            if reference_text.is_some() {
                return Err(usage(format!(
                    "invalid {flag} `{spec}`: type=local takes a directory, not ref="
                )));
            }
            let key = if direction == Direction::From {
                "src"
            } else {
                "dest"
            };
            let Some(dir) = dir.filter(|d| !d.is_empty()) else {
                return Err(usage(format!(
                    "invalid {flag} `{spec}`: type=local needs {key}=DIR"
                )));
            };
            let dir = std::path::absolute(dir)
                .with_context(|| format!("invalid {flag} directory `{dir}`"))?;
            Ok((CacheLocation::Local(dir), mode))
        }
        Some(other) => Err(usage(format!(
            "invalid {flag} `{spec}`: kiln does not support cache type `{other}` (it supports \
             registry and local)"
        ))),
        None => Err(usage(format!(
            "invalid {flag} `{spec}`: no type= (registry or local)"
        ))),
    }
}

/// A cache repository: a reference without tag or digest (entries are its tags).
fn reference(text: &str, spec: &str, flag: &str) -> anyhow::Result<Reference> {
    let parsed: Reference = text
        .parse()
        .map_err(|e| usage(format!("invalid {flag} `{spec}`: ref `{text}`: {e}")))?;
    if parsed.digest().is_some()
        || text
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    {
        return Err(usage(format!(
            "invalid {flag} `{spec}`: ref `{text}` names a tag or digest; give the repository \
             alone (kiln tags each entry itself)"
        )));
    }
    Ok(parsed)
}

/// `options` with cross-repository mounts from the registry caches and the base images on
/// the registries of `targets`, so cached and base layers join the pushed image without
/// being uploaded again.
pub(crate) fn with_mount_sources(
    mut options: RegistryOptions,
    caches: &SharedCacheOptions,
    bases: &[BaseRecord],
    targets: &[Reference],
) -> RegistryOptions {
    let mut repositories: Vec<Reference> = Vec::new();
    for location in caches
        .import
        .iter()
        .chain(caches.export.iter().map(|(location, _)| location))
    {
        if let CacheLocation::Registry(reference) = location {
            repositories.push(reference.clone());
        }
    }
    for base in bases {
        if let Some(pinned) = base.source.strip_prefix("docker://")
            && let Ok(reference) = pinned.parse::<Reference>()
        {
            repositories.push(reference);
        }
    }
    for repository in repositories {
        if targets
            .iter()
            .any(|t| t.registry() == repository.registry())
        {
            options = options.mount_from(repository.repository());
        }
    }
    options
}

/// `kiln cache`.
#[derive(clap::Subcommand)]
pub(crate) enum CacheCommand {
    /// Remove the entries of a shared build cache older than a given age.
    Prune(PruneArgs),
}

/// `kiln cache prune`.
#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    /// The cache: a registry repository (`REPO` or `type=registry,ref=REPO`) or
    /// `type=local,src=DIR`.
    cache: String,
    /// Remove entries created longer ago than this: a number and a unit, `s`, `m`, `h`, `d` or
    /// `w` (`30d`).
    #[arg(long, value_name = "AGE")]
    older_than: String,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Where the registry's reference cache lives (default as for `kiln build`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub(crate) fn run_cache(command: CacheCommand) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Prune(args) => run_prune(args),
    }
}

fn run_prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let older_than = parse_age(&args.older_than)?;
    let (location, _) = parse(&args.cache, Direction::From)?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(kiln::build::default_cache_dir);
    let options = args.registry.options(&cache_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let summary = shared_cache::prune(&location, older_than, now, &options)
        .with_context(|| format!("failed to prune the cache `{location}`"))?;
    for tag in &summary.removed {
        eprintln!("kiln: removed {tag}");
    }
    for tag in &summary.unreadable {
        eprintln!("kiln: warning: {tag} records no creation time; left alone");
    }
    eprintln!(
        "kiln: pruned `{location}`: {} entries removed, {} kept{}",
        summary.removed.len(),
        summary.kept,
        match &location {
            CacheLocation::Local(_) =>
                format!(", {} unreferenced blobs removed", summary.blobs_removed),
            CacheLocation::Registry(_) => {
                "; the registry frees their blobs when it collects garbage".to_owned()
            }
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Seconds in an age such as `30d`.
fn parse_age(text: &str) -> anyhow::Result<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(number) if scale > 0 => number
            .checked_mul(scale)
            .ok_or_else(|| usage(format!("--older-than `{text}` is too large"))),
        _ => Err(usage(format!(
            "invalid --older-than `{text}`: expected a number and a unit s, m, h, d or w \
             (`30d`)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_buildx_and_unknown_parts_are_named() {
        let ok = |from: &[&str], to: &[&str]| {
            let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
            let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
            shared_cache_options(&from, &to).map_err(|e| e.to_string())
        };
        let options = ok(
            &[
                "type=registry,ref=127.0.0.1:5000/app/cache",
                "127.0.0.1:5000/main/cache",
                "type=local,src=/tmp/c",
            ],
            &["type=registry,ref=127.0.0.1:5000/app/cache,mode=max"],
        )
        .unwrap();
        assert_eq!(options.import.len(), 3);
        assert!(matches!(options.import[2], CacheLocation::Local(_)));
        assert!(matches!(
            options.export,
            Some((CacheLocation::Registry(_), ExportMode::Max))
        ));
        let local = ok(&[], &["type=local,dest=/tmp/c"]).unwrap();
        assert!(matches!(
            local.export,
            Some((CacheLocation::Local(_), ExportMode::Min))
        ));

        for (from, to, needle) in [
            (&["type=gha"][..], &[][..], "cache type `gha`"),
            (&["type=registry,ref=r/c,mode=max"], &[], "key `mode`"),
            (
                &[],
                &["type=registry,ref=r/c,compression=zstd"],
                "key `compression`",
            ),
            (&[], &["type=local,src=/x"], "key `src`"),
            (&["type=local,dest=/x"], &[], "key `dest`"),
            (&[], &["type=registry,ref=r/c,mode=all"], "mode `all`"),
            (&[], &["type=registry"], "needs ref=REPO"),
            (&["type=registry,ref=r/c:tag"], &[], "names a tag"),
            (&[], &["r/c"], "expected type=registry"),
            (
                &[],
                &["type=local,dest=/a", "type=local,dest=/b"][..],
                "one cache",
            ),
        ] {
            let err = ok(from, to).unwrap_err();
            assert!(err.contains(needle), "{from:?} {to:?}: {err}");
        }
    }

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_age("90s").unwrap(), 90);
        assert_eq!(parse_age("2w").unwrap(), 14 * 86_400);
        for bad in ["30", "d", "-1d", "30y", ""] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
