//! Writing single-file outputs: `oci-archive` (an OCI layout as a tar) and `docker-archive`
//! (the `docker save` format that `docker load`, `podman load` and
//! `skopeo copy docker-archive:` read).
//!
//! Both are deterministic: entries sorted by name, mtime 0, uid/gid 0, no user or group
//! names, mode 0644 for files and 0755 for directories, ustar headers. Both are written to a
//! temp file next to the destination and renamed into place, so a failure leaves nothing.
//!
//! docker-archive layout (as skopeo writes it): `manifest.json`
//! (`[{"Config":"<config-hex>.json","RepoTags":["repo:tag"],"Layers":["<diffid-hex>.tar",...]}]`),
//! `repositories` (`{"repo":{"tag":"<image-id-hex>"}}`, read only by pre-1.10 loaders), the
//! config as `<config-hex>.json` and each layer **uncompressed** as `<diffid-hex>.tar`, which
//! is what `docker save` writes and every loader accepts. Layers are decompressed from the store
//! and checked against their diffID on the way out.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;

use super::layout::{OCI_LAYOUT_FILE, image_blobs, index_entries, parse_name};
use super::manifest::{Index, LayerCompression, layer_compression};
use super::{BuiltImage, ImageError, blobs, canonical};
use crate::digest::HashingReader;
use crate::layer::Layer;
use crate::store::Store;

/// Writes `images` (images or multi-platform indexes) as an OCI layout packed in a
/// deterministic tar at `dest_file`.
pub fn write_oci_archive<T: super::Exportable>(
    store: &Store,
    dest_file: &Path,
    images: &[(T, Vec<String>)],
) -> Result<(), ImageError> {
    let mut index = Index::empty();
    index.manifests = index_entries(images)?;
    let index_bytes = canonical::to_vec(&index)?;
    write_tar(dest_file, |tar| {
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        for digest in image_blobs(images) {
            let file = blobs::open_blob(store, &digest)?;
            let path = store.blob_path(&digest);
            let size = file
                .metadata()
                .map_err(|e| ImageError::io("stat blob", &path, e))?
                .len();
            let mut reader = HashingReader::new(file);
            tar.file(&format!("blobs/sha256/{}", digest.hex()), size, &mut reader)?;
            let (_, actual, _) = reader.finish();
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("store blob `{}`", path.display()),
                    expected: digest,
                    actual,
                });
            }
        }
        tar.bytes("index.json", &index_bytes)?;
        tar.bytes("oci-layout", OCI_LAYOUT_FILE)
    })
}

/// One image in `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestItem {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// What goes into one docker-archive entry.
enum Source<'a> {
    Bytes(Vec<u8>),
    Layer(&'a Layer),
}

/// Writes `images` in `docker save` format at `dest_file`.
pub fn write_docker_archive(
    store: &Store,
    dest_file: &Path,
    images: &[(BuiltImage, Vec<String>)],
) -> Result<(), ImageError> {
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    let mut items = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, names) in images {
        let config_name = format!("{}.json", image.config_digest.hex());
        entries.insert(
            config_name.clone(),
            Source::Bytes(blobs::read_bytes(store, &image.config_digest)?),
        );
        let mut layers = Vec::new();
        for layer in &image.layers {
            let name = format!("{}.tar", layer.diff_id.hex());
            entries.insert(name.clone(), Source::Layer(layer));
            layers.push(name);
        }
        let mut repo_tags = Vec::new();
        for name in names {
            let name = parse_name(name)?;
            repositories
                .entry(name.repository)
                .or_default()
                .insert(name.tag, image.config_digest.hex().to_owned());
            repo_tags.push(name.full);
        }
        items.push(DockerManifestItem {
            config: config_name,
            repo_tags,
            layers,
        });
    }
    entries.insert(
        "manifest.json".to_owned(),
        Source::Bytes(canonical::to_vec(&items)?),
    );
    entries.insert(
        "repositories".to_owned(),
        Source::Bytes(canonical::to_vec(&repositories)?),
    );

    let scratch_dir = dest_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write_tar(dest_file, |tar| {
        for (name, source) in &entries {
            match source {
                Source::Bytes(bytes) => tar.bytes(name, bytes)?,
                Source::Layer(layer) => {
                    let (mut file, size) = decompress_layer(store, layer, scratch_dir)?;
                    tar.file(name, size, &mut file)?;
                }
            }
        }
        Ok(())
    })
}

/// Decompresses `layer` into an anonymous temp file in `dir`, checking its diffID.
fn decompress_layer(store: &Store, layer: &Layer, dir: &Path) -> Result<(File, u64), ImageError> {
    let compression =
        layer_compression(&layer.media_type).ok_or_else(|| ImageError::UnsupportedMediaType {
            media_type: layer.media_type.clone(),
            what: format!("layer {} in a docker-archive", layer.digest),
        })?;
    let blob = io::BufReader::new(blobs::open_blob(store, &layer.digest)?);
    let path = store.blob_path(&layer.digest);
    let reader: Box<dyn Read> = match compression {
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(|e| ImageError::io("start decompressing layer", &path, e))?,
        ),
        LayerCompression::None => Box::new(blob),
    };
    let mut reader = HashingReader::new(reader);
    let mut file =
        tempfile::tempfile_in(dir).map_err(|e| ImageError::io("create a temp file in", dir, e))?;
    let mut writer = BufWriter::new(&mut file);
    io::copy(&mut reader, &mut writer).map_err(|e| ImageError::io("decompress layer", &path, e))?;
    writer
        .flush()
        .map_err(|e| ImageError::io("write a temp file in", dir, e))?;
    drop(writer);
    let (_, diff_id, size) = reader.finish();
    if diff_id != layer.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("the uncompressed tar (diffID) of layer {}", layer.digest),
            expected: layer.diff_id.clone(),
            actual: diff_id,
        });
    }
    io::Seek::rewind(&mut file).map_err(|e| ImageError::io("rewind a temp file in", dir, e))?;
    Ok((file, size))
}

/// A deterministic tar writer over a temp file.
struct TarOut {
    builder: tar::Builder<BufWriter<tempfile::NamedTempFile>>,
    dest: std::path::PathBuf,
}

impl TarOut {
    fn header(&self, name: &str, size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        // Names here are at most 78 bytes (`blobs/sha256/` + 64 hex), within ustar's limits.
        let _ = header.set_path(name);
        header.set_cksum();
        header
    }

    fn dir(&mut self, name: &str) -> Result<(), ImageError> {
        let header = self.header(name, 0, 0o755, tar::EntryType::Directory);
        self.builder
            .append(&header, io::empty())
            .map_err(|e| ImageError::io("write an archive entry to", &self.dest, e))
    }

    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<(), ImageError> {
        let header = self.header(name, size, 0o644, tar::EntryType::Regular);
        self.builder
            .append(&header, data)
            .map_err(|e| ImageError::io("write an archive entry to", &self.dest, e))
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        self.file(name, bytes.len() as u64, &mut &bytes[..])
    }
}

/// Runs `fill` on a tar over a temp file next to `dest`, then renames it to `dest`.
fn write_tar(
    dest: &Path,
    fill: impl FnOnce(&mut TarOut) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temp file in", dir, e))?;
    let mut out = TarOut {
        builder: tar::Builder::new(BufWriter::new(temp)),
        dest: dest.to_owned(),
    };
    out.builder.mode(tar::HeaderMode::Deterministic);
    fill(&mut out)?;
    let buffered = out
        .builder
        .into_inner()
        .map_err(|e| ImageError::io("finish archive", dest, e))?;
    let temp = buffered
        .into_inner()
        .map_err(|e| ImageError::io("write archive", dest, e.into_error()))?;
    blobs::publishable(temp.as_file(), dir)?;
    temp.as_file()
        .sync_all()
        .map_err(|e| ImageError::io("fsync archive", dest, e))?;
    temp.persist(dest)
        .map_err(|e| ImageError::io("rename archive into place", dest, e.error))?;
    Ok(())
}
