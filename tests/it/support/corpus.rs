//! The side-by-side corpus harness: the Debian bookworm stand-in base served from a local
//! registry under every name the real-world Dockerfiles use, builds of one case with kiln and
//! with buildah on the same input, and a comparison of the two images' root filesystems and
//! configs that leaves out what the corpus README says differs from run to run.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::{require_tool, run_ok};

/// One row of the corpus's `cases.tsv`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The Dockerfile, relative to the case's directory (`context/...`).
    pub dockerfile: String,
    pub target: Option<String>,
    pub build_args: Vec<String>,
    pub from_names: Vec<String>,
    /// buildah 1.28's variant of the Dockerfile (relative to the case's directory), if any.
    pub buildah_dockerfile: Option<String>,
}

/// Reads `cases.tsv` of the corpus at `root`.
pub fn read_cases(root: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root.join("cases.tsv"))
        .unwrap_or_else(|e| panic!("reading {}/cases.tsv: {e}", root.display()));
    let optional = |field: &str| (field != "-").then(|| field.to_owned());
    let list = |field: &str| -> Vec<String> {
        if field == "-" {
            Vec::new()
        } else {
            field.split(',').map(str::to_owned).collect()
        }
    };
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                fields.len(),
                6,
                "cases.tsv line `{line}`: expected 6 fields"
            );
            Case {
                name: fields[0].to_owned(),
                dockerfile: fields[1].to_owned(),
                target: optional(fields[2]),
                build_args: list(fields[3]),
                from_names: list(fields[4]),
                buildah_dockerfile: optional(fields[5]),
            }
        })
        .collect()
}

const DEBIAN_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of the official `debian` images: PATH and `bash`.
fn debian_config() -> serde_json::Value {
    serde_json::json!({"Env": [DEBIAN_PATH], "Cmd": ["bash"]})
}

/// The config of distroless's `python3-debian12`.
fn distroless_python_config() -> serde_json::Value {
    serde_json::json!({
        "Env": [
            DEBIAN_PATH,
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            "LANG=C.UTF-8"
        ],
        "Entrypoint": ["/usr/bin/python3.11"]
    })
}

/// Writes `bytes` as a blob of the layout at `layout`; returns its digest.
fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// Rewrites a `tar -C rootfs -cf - .` archive with registry-style member names: `./etc/x`
/// becomes `etc/x` (hard-link targets too) and the `./` entry itself is left out.
fn registry_style_layer(source: &Path) -> Vec<u8> {
    let file = std::fs::File::open(source).unwrap();
    let mut archive = tar::Archive::new(file);
    let mut out = tar::Builder::new(Vec::new());
    out.mode(tar::HeaderMode::Complete);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let relative = path.strip_prefix(".").unwrap_or(&path).to_path_buf();
        if relative.as_os_str().is_empty() {
            continue;
        }
        let mut header = entry.header().clone();
        let link = entry.link_name().unwrap().map(|l| l.into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        match (header.entry_type(), link) {
            (tar::EntryType::Link, Some(target)) => {
                let target = target.strip_prefix(".").unwrap_or(&target).to_path_buf();
                out.append_link(&mut header, &relative, &target).unwrap();
            }
            (tar::EntryType::Symlink, Some(target)) => {
                out.append_link(&mut header, &relative, &target).unwrap();
            }
            _ => out.append_data(&mut header, &relative, &data[..]).unwrap(),
        }
    }
    out.into_inner().unwrap()
}

/// The machine's own extra CAs (`/usr/local/share/ca-certificates/*.crt`): where outgoing
/// HTTPS is re-signed by a local CA, pip inside the image needs it. The layer holds the
/// certificates and the bundle `update-ca-certificates` writes from them; it is the same for
/// both builders. `None` when the machine has none.
fn local_ca_layer() -> Option<Vec<u8>> {
    let dir = Path::new("/usr/local/share/ca-certificates");
    let mut certs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    if certs.is_empty() {
        return None;
    }
    certs.sort();
    let mut out = tar::Builder::new(Vec::new());
    let mut bundle = Vec::new();
    let directory = |out: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        out.append_data(&mut header, path, std::io::empty())
            .unwrap();
    };
    let file = |out: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        out.append_data(&mut header, path, data).unwrap();
    };
    for dir in [
        "usr/local/share/ca-certificates/",
        "etc/ssl/",
        "etc/ssl/certs/",
    ] {
        directory(&mut out, dir);
    }
    for cert in &certs {
        let data = std::fs::read(cert).unwrap();
        let name = cert.file_name().unwrap().to_string_lossy();
        file(
            &mut out,
            &format!("usr/local/share/ca-certificates/{name}"),
            &data,
        );
        bundle.extend_from_slice(&data);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    file(&mut out, "etc/ssl/certs/ca-certificates.crt", &bundle);
    Some(out.into_inner().unwrap())
}

/// Makes an OCI layout at `layout` with two images of the stand-in rootfs `rootfs_tar`: tag
/// `debian` (the official `debian` config) and `distroless-python3` (distroless's config).
pub fn standin_layout(rootfs_tar: &Path, layout: &Path) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    let mut layers = vec![registry_style_layer(rootfs_tar)];
    layers.extend(local_ca_layer());
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in &layers {
        let digest = write_blob(layout, layer);
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest,
            "size": layer.len(),
        }));
        diff_ids.push(digest);
    }
    let mut manifests = Vec::new();
    for (tag, config) in [
        ("debian", debian_config()),
        ("distroless-python3", distroless_python_config()),
    ] {
        let config = serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = write_blob(layout, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": descriptors,
        }))
        .unwrap();
        let manifest_digest = write_blob(layout, &manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap(),
    )
    .unwrap();
}

/// The fully qualified form of a FROM name, as Docker normalizes it.
pub fn qualify(name: &str) -> String {
    let first = name.split('/').next().unwrap_or(name);
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let qualified = if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = qualified.rsplit('/').next().unwrap_or(&qualified);
    if last.contains(':') || last.contains('@') {
        qualified
    } else {
        format!("{qualified}:latest")
    }
}

/// Which of the stand-in's tags serves a FROM name.
pub fn standin_tag(name: &str) -> &'static str {
    if name.starts_with("gcr.io/distroless/") {
        "distroless-python3"
    } else {
        "debian"
    }
}

/// The registries.conf both builders read: `docker.io` and `gcr.io` live on the local
/// registry at `host` (plain HTTP).
pub fn registries_conf(host: &str) -> String {
    format!(
        "unqualified-search-registries = [\"docker.io\"]\n\n\
         [[registry]]\nprefix = \"docker.io\"\nlocation = \"{host}/docker.io\"\ninsecure = true\n\n\
         [[registry]]\nprefix = \"gcr.io\"\nlocation = \"{host}/gcr.io\"\ninsecure = true\n"
    )
}

/// Where a qualified name lives on the local registry at `host`.
pub fn location(host: &str, qualified: &str) -> String {
    format!("{host}/{qualified}")
}

/// One entry of an unpacked root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, `fifo`, `char`, `block` or `socket`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// sha256 of a file's content.
    pub content: Option<String>,
    pub size: u64,
    pub link: Option<String>,
}

/// Whether the corpus README leaves `path` (absolute, in the image) out of the comparison.
pub fn excluded(path: &str) -> bool {
    const TREES: &[&str] = &[
        "/var/log",
        "/var/lib/apt/lists",
        "/var/cache/apt",
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/tmp",
    ];
    const FILES: &[&str] = &[
        "/var/cache/ldconfig/aux-cache",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ];
    if TREES
        .iter()
        .any(|tree| path == *tree || path.starts_with(&format!("{tree}/")))
    {
        return true;
    }
    if FILES.contains(&path) {
        return true;
    }
    path.contains("/__pycache__/") && path.ends_with(".pyc")
}

/// Every entry under `rootfs` (an unpacked image), keyed by its path in the image.
pub fn read_tree(rootfs: &Path) -> BTreeMap<String, Entry> {
    let mut tree = BTreeMap::new();
    for item in walkdir::WalkDir::new(rootfs)
        .min_depth(1)
        .follow_links(false)
    {
        let item = item.unwrap_or_else(|e| panic!("walking {}: {e}", rootfs.display()));
        let relative = item.path().strip_prefix(rootfs).unwrap();
        let path = format!("/{}", relative.to_string_lossy());
        if excluded(&path) {
            continue;
        }
        let meta = item.path().symlink_metadata().unwrap();
        let file_type = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if file_type.is_symlink() {
            "symlink"
        } else if file_type.is_dir() {
            "dir"
        } else if file_type.is_file() {
            "file"
        } else if file_type.is_fifo() {
            "fifo"
        } else if file_type.is_char_device() {
            "char"
        } else if file_type.is_block_device() {
            "block"
        } else {
            "socket"
        };
        let content = (kind == "file")
            .then(|| hex::encode(Sha256::digest(std::fs::read(item.path()).unwrap())));
        let link = (kind == "symlink").then(|| {
            std::fs::read_link(item.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        tree.insert(
            path,
            Entry {
                kind,
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                size: if kind == "file" { meta.len() } else { 0 },
                link,
            },
        );
    }
    tree
}

/// The root filesystem of the image `tag` in the OCI layout `layout`, read straight from its
/// layers (whiteouts and opaque directories applied, hard links resolved to their target's
/// content) without unpacking it to disk; keyed by path in the image, exclusions left out.
pub fn read_image_tree(layout: &Path, tag: &str) -> BTreeMap<String, Entry> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .and_then(|list| {
            list.iter().find(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
        })
        .unwrap_or_else(|| panic!("{} has no image tagged `{tag}`", layout.display()));
    let manifest = crate::support::layout_blob_json(layout, manifest["digest"].as_str().unwrap());
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let media_type = layer["mediaType"].as_str().unwrap_or("");
        let path = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let reader: Box<dyn Read> = if media_type.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else if media_type.ends_with("zstd") {
            Box::new(zstd::stream::read::Decoder::new(file).unwrap())
        } else {
            Box::new(file)
        };
        apply_layer(&mut tree, reader);
    }
    tree.retain(|path, _| !excluded(path));
    tree
}

/// `/a/b` from a member name `./a/b/`, `a/b` or `/a/b`.
fn image_path(name: &Path) -> String {
    let text = name.to_string_lossy();
    let trimmed = text
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    format!("/{trimmed}")
}

/// Removes every path under `prefix` (`/dir/`): they sort together, so one range is enough.
fn remove_under(tree: &mut BTreeMap<String, Entry>, prefix: &str) {
    let doomed: Vec<String> = tree
        .range(prefix.to_owned()..)
        .take_while(|(p, _)| p.starts_with(prefix))
        .map(|(p, _)| p.clone())
        .collect();
    for path in doomed {
        tree.remove(&path);
    }
}

fn apply_layer(tree: &mut BTreeMap<String, Entry>, reader: impl Read) {
    let mut archive = tar::Archive::new(reader);
    for member in archive.entries().unwrap() {
        let mut member = member.unwrap();
        let path = image_path(&member.path().unwrap());
        if path == "/" {
            continue;
        }
        let (parent, base) = path.rsplit_once('/').unwrap();
        if base == ".wh..wh..opq" {
            remove_under(tree, &format!("{parent}/"));
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let gone = format!("{parent}/{hidden}");
            tree.remove(&gone);
            remove_under(tree, &format!("{gone}/"));
            continue;
        }
        let header = member.header();
        let mode = header.mode().unwrap() & 0o7777;
        let uid = header.uid().unwrap() as u32;
        let gid = header.gid().unwrap() as u32;
        let entry_type = header.entry_type();
        let link = member
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let entry = match entry_type {
            tar::EntryType::Link => {
                let target = image_path(Path::new(link.as_deref().unwrap_or("")));
                let mut entry = tree
                    .get(&target)
                    .unwrap_or_else(|| panic!("hard link {path} to missing {target}"))
                    .clone();
                entry.mode = mode;
                entry.uid = uid;
                entry.gid = gid;
                entry
            }
            _ => {
                let kind = match entry_type {
                    tar::EntryType::Directory => "dir",
                    tar::EntryType::Symlink => "symlink",
                    tar::EntryType::Fifo => "fifo",
                    tar::EntryType::Char => "char",
                    tar::EntryType::Block => "block",
                    _ => "file",
                };
                let mut content = None;
                let mut size = 0;
                if kind == "file" {
                    let mut bytes = Vec::new();
                    member.read_to_end(&mut bytes).unwrap();
                    if SHADOW_FILES.contains(&path.as_str()) {
                        bytes = without_last_change(&bytes);
                    }
                    size = bytes.len() as u64;
                    content = Some(hex::encode(Sha256::digest(&bytes)));
                }
                Entry {
                    kind,
                    mode,
                    uid,
                    gid,
                    content,
                    size,
                    link: (kind == "symlink").then(|| link.unwrap_or_default()),
                }
            }
        };
        if entry.kind != "dir" {
            // A non-directory replaces whatever was there, a directory's contents included.
            remove_under(tree, &format!("{path}/"));
        }
        tree.insert(path, entry);
    }
}

/// Unpacks the image `layout:tag` with umoci (as root: owners kept) into `bundle`; returns
/// the rootfs.
pub fn unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    require_tool("umoci");
    run_ok(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:{tag}", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    bundle.join("rootfs")
}

/// The config fields the corpus compares, normalized: Env as a set, labels without
/// `io.buildah.version`, absent and empty treated alike.
pub fn compared_config(config: &serde_json::Value) -> BTreeMap<&'static str, serde_json::Value> {
    let c = &config["config"];
    let nonempty = |v: &serde_json::Value| -> serde_json::Value {
        match v {
            serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
            serde_json::Value::Object(o) if o.is_empty() => serde_json::Value::Null,
            serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
            other => other.clone(),
        }
    };
    let env: BTreeSet<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut labels = c["Labels"].as_object().cloned().unwrap_or_default();
    labels.remove("io.buildah.version");
    let mut fields = BTreeMap::new();
    fields.insert("Env", serde_json::json!(env));
    for (key, name) in [
        ("Cmd", "Cmd"),
        ("Entrypoint", "Entrypoint"),
        ("WorkingDir", "WorkingDir"),
        ("User", "User"),
        ("ExposedPorts", "ExposedPorts"),
        ("Volumes", "Volumes"),
        ("StopSignal", "StopSignal"),
        ("Healthcheck", "Healthcheck"),
    ] {
        fields.insert(key, nonempty(&c[name]));
    }
    fields.insert("Labels", nonempty(&serde_json::Value::Object(labels)));
    fields
}

/// Lines describing every difference between two trees (`kiln` left, `buildah` right).
pub fn tree_differences(
    kiln: &BTreeMap<String, Entry>,
    buildah: &BTreeMap<String, Entry>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, left) in kiln {
        match buildah.get(path) {
            None => out.push((
                path.clone(),
                format!("only in kiln's image ({})", left.kind),
            )),
            Some(right) if right != left => {
                let mut what = Vec::new();
                if left.kind != right.kind {
                    what.push(format!("type {} vs {}", left.kind, right.kind));
                }
                if left.mode != right.mode {
                    what.push(format!("mode {:o} vs {:o}", left.mode, right.mode));
                }
                if (left.uid, left.gid) != (right.uid, right.gid) {
                    what.push(format!(
                        "owner {}:{} vs {}:{}",
                        left.uid, left.gid, right.uid, right.gid
                    ));
                }
                if left.content != right.content {
                    what.push(format!("content ({} vs {} bytes)", left.size, right.size));
                }
                if left.link != right.link {
                    what.push(format!("link {:?} vs {:?}", left.link, right.link));
                }
                out.push((path.clone(), what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for (path, right) in buildah {
        if !kiln.contains_key(path) {
            out.push((
                path.clone(),
                format!("only in buildah's image ({})", right.kind),
            ));
        }
    }
    out
}

/// The shadow files, whose last-change field is a day count: the build day for a builder that
/// does not pass SOURCE_DATE_EPOCH to its RUNs (buildah 1.28), SOURCE_DATE_EPOCH's day (empty
/// for 0, as shadow writes it) for kiln. The corpus README lists it as a difference that is not
/// the builders'; every other field is still compared.
const SHADOW_FILES: &[&str] = &["/etc/shadow", "/etc/shadow-"];

/// `shadow` with the third field (the last password change) of every line emptied.
fn without_last_change(shadow: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shadow.len());
    for line in shadow.split_inclusive(|&byte| byte == b'\n') {
        let mut fields: Vec<&[u8]> = line.split(|&byte| byte == b':').collect();
        if fields.len() > 2 {
            fields[2] = b"";
        }
        out.extend_from_slice(&fields.join(&b':'));
    }
    out
}
