//! Writes one directory as a layer, the way `COPY . /` would, and prints its diffID, digest,
//! size and the wall time: a way to exercise and time `layer::write` without the CLI.
//!
//! ```text
//! cargo run --release --example write_layer -- DIR [--compression gzip|zstd|none]
//!     [--level N] [--threads N] [--store DIR] [--gzip-engine libdeflate|zlib-rs]
//! ```
//!
//! The directory is walked in sorted order (regular files, directories, symlinks; real
//! permission bits and mtimes; uid/gid 0) into a `Diff` under `data/`, then written into a
//! store in a temp dir (or `--store DIR`, kept afterwards). `--threads` defaults to the number
//! of CPUs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln::layer::compress::GzipEngine;
use kiln::layer::{self, Compression, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::store::Store;

struct Args {
    dir: PathBuf,
    compression: String,
    level: Option<i32>,
    threads: usize,
    store: Option<PathBuf>,
    gzip_engine: GzipEngine,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        dir: PathBuf::new(),
        compression: "gzip".into(),
        level: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        store: None,
        gzip_engine: layer::GZIP_ENGINE,
    };
    let mut raw = std::env::args().skip(1);
    let mut dir = None;
    while let Some(arg) = raw.next() {
        let mut value = |name: &str| raw.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--compression" => args.compression = value("--compression")?,
            "--level" => args.level = Some(value("--level")?.parse().context("--level")?),
            "--threads" => args.threads = value("--threads")?.parse().context("--threads")?,
            "--store" => args.store = Some(value("--store")?.into()),
            "--gzip-engine" => {
                args.gzip_engine = match value("--gzip-engine")?.as_str() {
                    "zlib-rs" => GzipEngine::ZlibRs,
                    "libdeflate" => GzipEngine::Libdeflate,
                    other => bail!("unknown gzip engine `{other}`: expected zlib-rs or libdeflate"),
                }
            }
            other if other.starts_with("--") => bail!("unknown flag `{other}`"),
            other => dir = Some(PathBuf::from(other)),
        }
    }
    args.dir = dir.context("usage: write_layer DIR [--compression gzip|zstd|none] [--level N] [--threads N] [--store DIR] [--gzip-engine libdeflate|zlib-rs]")?;
    Ok(args)
}

fn walk(dir: &std::path::Path) -> anyhow::Result<Diff> {
    let mut diff = Diff::new();
    let root = LayerPath::new("data")?;
    for item in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let item = item.with_context(|| format!("failed to walk `{}`", dir.display()))?;
        let relative = item.path().strip_prefix(dir)?;
        let relative = relative
            .to_str()
            .with_context(|| format!("`{}` is not UTF-8", item.path().display()))?;
        let path = if relative.is_empty() {
            root.clone()
        } else {
            root.join(relative)?
        };
        let meta = item
            .metadata()
            .with_context(|| format!("failed to stat `{}`", item.path().display()))?;
        let metadata = Metadata {
            mode: meta.mode() & 0o7777,
            uid: 0,
            gid: 0,
            mtime: meta.mtime(),
            xattrs: BTreeMap::new(),
        };
        let kind = if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File(FileContent::HostFile {
                path: item.path().to_owned(),
                size: meta.len(),
                stamp: None,
            })
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(item.path())
                .with_context(|| format!("failed to read link `{}`", item.path().display()))?;
            EntryKind::Symlink(target.to_string_lossy().into_owned())
        } else {
            continue;
        };
        diff.insert(
            path,
            Entry {
                kind,
                meta: metadata,
            },
        );
    }
    Ok(diff)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let diff = walk(&args.dir)?;
    let walked = started.elapsed();
    let compression = match (args.compression.as_str(), args.level) {
        ("gzip", level) => Compression::Gzip {
            level: level.map_or(Ok(layer::DEFAULT_GZIP_LEVEL), u32::try_from)?,
        },
        ("zstd", level) => Compression::Zstd {
            level: level.unwrap_or(layer::DEFAULT_ZSTD_LEVEL),
        },
        ("none", _) => Compression::None,
        (other, _) => bail!("unknown compression `{other}`: expected gzip, zstd or none"),
    };
    let temp;
    let store_root = match &args.store {
        Some(path) => path.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let store = Store::open(&store_root)?;
    let options = layer::WriteOptions {
        compression,
        source_date_epoch: 0,
        threads: args.threads,
    };
    let layer = layer::write_with_gzip_engine(&diff, &store, &options, args.gzip_engine)?;
    let total = started.elapsed();
    println!("entries   {}", diff.len());
    println!("content   {} bytes", diff.content_size());
    println!("diffID    {}", layer.diff_id);
    println!("digest    {}", layer.digest);
    println!("size      {} bytes", layer.size);
    println!("media     {}", layer.media_type);
    println!("walk      {:.3} s", walked.as_secs_f64());
    println!("wall      {:.3} s", total.as_secs_f64());
    Ok(())
}
