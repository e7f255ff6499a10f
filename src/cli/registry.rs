//! The registry commands: `kiln push`, `kiln pull`, `kiln login`, `kiln inspect`, `kiln pin`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::attest;
use kiln::build;
use kiln::image::{self, Platform};

use super::*;

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    /// What to push: `oci:DIR[:TAG]`, `oci:DIR@sha256:...` or `oci-archive:FILE[:TAG]`.
    source: String,
    /// Where to push it (`registry/repository:tag`); repeatable.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Mount blobs from this repository of the target registry instead of uploading them.
    #[arg(long)]
    mount_from: Option<String>,
    /// Push the attestations and signatures an `oci:DIR` layout holds for the image too: its
    /// referrers (`sha256-<hex>` fallback tag entries: kiln's attestations, Sigstore bundles),
    /// cosign's `sha256-<hex>.sig`/`.att` entries, or the attestation manifests of a
    /// buildx-style index (`--attestations=false` leaves them all out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    attestations: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Sign the pushed manifest and, for an index, every manifest it lists, with this private
    /// key (PKCS#8 PEM, or cosign's encrypted key with KILN_PASSWORD/COSIGN_PASSWORD).
    #[arg(long, env = "KILN_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// The signature layouts: `cosign-tags` (cosign's `sha256-<hex>.sig` tag), `bundle`
    /// (Sigstore bundle v0.3 referrers) or `both`.
    #[arg(long, value_enum, default_value = "both")]
    signature_format: super::sign::SignatureFormatName,
}

#[derive(clap::Args)]
pub(crate) struct PullArgs {
    /// The image (`name[:tag][@sha256:...]`, Docker's normalization).
    reference: String,
    /// The platform to pick from a multi-platform image (default: the host's).
    #[arg(long)]
    platform: Option<String>,
    /// Export it: `type=oci,dest=DIR`, `type=oci-archive,dest=FILE` or
    /// `type=docker-archive,dest=FILE`; repeatable.
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct LoginArgs {
    /// The registry (`ghcr.io`, `127.0.0.1:5000`).
    server: String,
    /// User name.
    #[arg(short = 'u', long)]
    username: String,
    /// Read the password from standard input (recommended: it keeps it out of the process list).
    #[arg(long)]
    password_stdin: bool,
    /// The password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// A registry reference (`name[:tag][@sha256:...]`) or `oci:DIR[:TAG]`.
    image: String,
    /// Print the manifest or index bytes exactly as stored.
    #[arg(long)]
    raw: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: InspectFormat,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct PinArgs {
    /// The Dockerfile to pin.
    file: PathBuf,
    /// Change nothing; exit 1 when a FROM is unpinned or its tag moved.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectFormat {
    Text,
    Json,
}

pub(crate) fn run_pin(args: PinArgs) -> anyhow::Result<ExitCode> {
    let options = args.registry.options(&build::default_cache_dir())?;
    let pins = kiln::pin::plan(&args.file, &options)?;
    let stale: Vec<&kiln::pin::Pin> = pins.iter().filter(|p| p.is_stale()).collect();
    for pin in &pins {
        let state = match (&pin.pinned, pin.is_stale()) {
            (None, _) => "not pinned",
            (Some(_), true) => "tag moved",
            (Some(_), false) => "up to date",
        };
        eprintln!(
            "{}:{}: {} ({state})",
            args.file.display(),
            pin.line,
            pin.updated
        );
    }
    if args.check {
        return Ok(if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if !stale.is_empty() {
        kiln::pin::apply(&args.file, &pins)?;
        eprintln!(
            "kiln: pinned {} FROM line(s) in `{}`",
            stale.len(),
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The in-toto statement in an attestation blob (a bare statement, or a DSSE envelope whose
/// payload is shown unverified: `kiln verify` checks signatures), as JSON.
fn statement_of(blob: &[u8]) -> Option<serde_json::Value> {
    let payload = match attest::Envelope::from_slice(blob, "attestation") {
        Ok(envelope) => envelope.payload_unverified()?,
        Err(_) => blob.to_vec(),
    };
    serde_json::from_slice(&payload).ok()
}

/// A one-line summary of a statement, as `imagetools inspect` shows provenance and SBOMs.
fn summary_of(statement: &serde_json::Value) -> String {
    let predicate = &statement["predicate"];
    if let Some(builder) = predicate["runDetails"]["builder"]["id"].as_str() {
        let materials = predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .map_or(0, Vec::len);
        format!("builder {builder}, {materials} resolved dependencies")
    } else if let Some(packages) = predicate["packages"].as_array() {
        format!(
            "SPDX {}, {} packages",
            predicate["spdxVersion"].as_str().unwrap_or("?"),
            packages.len()
        )
    } else {
        String::new()
    }
}

pub(crate) fn run_inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    // Attestations found by either layout: (predicate type, signed, where).
    let mut attestations: Vec<serde_json::Value> = Vec::new();
    let (digest, bytes) = if let Some(rest) = args.image.strip_prefix("oci:") {
        let store = build::open_store(&cache_dir)?;
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        let descriptor = image::base::import_layout(&store, Path::new(&dir), reference.as_deref())
            .with_context(|| format!("failed to read `{}`", args.image))?;
        let bytes = store.read_bytes(&descriptor.digest)?;
        let report = attest::verify(
            Path::new(&dir),
            reference.as_deref(),
            &[],
            &attest::Policy::default(),
        )?;
        for found in &report.attestations {
            let statement =
                std::fs::read(Path::new(&dir).join("blobs/sha256").join(found.blob.hex()))
                    .ok()
                    .and_then(|bytes| statement_of(&bytes));
            attestations.push(serde_json::json!({
                "predicateType": found.predicate_type,
                "subject": found.image.to_string(),
                "signed": found.signed,
                "blob": found.blob.to_string(),
                "statement": statement,
            }));
        }
        (descriptor.digest, bytes)
    } else {
        let reference = parse_references(std::slice::from_ref(&args.image))?.remove(0);
        let options = args.registry.options(&cache_dir)?;
        let (digest, bytes) = kiln::registry::fetch_raw_manifest(&reference, &options)
            .with_context(|| format!("failed to inspect `{}`", args.image))?;
        // OCI referrers: the registry's referrers API, else the `sha256-<hex>` fallback tag.
        let listed = match kiln::registry::fetch_referrers(&reference, &digest, &options) {
            Ok(Some(bytes)) => Some(bytes),
            _ => reference
                .with_tag(&format!("sha256-{}", digest.hex()))
                .ok()
                .and_then(|fallback| kiln::registry::fetch_raw_manifest(&fallback, &options).ok())
                .map(|(_, bytes)| bytes),
        };
        if let Some(index) = listed
            && let Ok(index) = serde_json::from_slice::<serde_json::Value>(&index)
        {
            for referrer in index["manifests"].as_array().into_iter().flatten() {
                // The predicate type is annotated on the artifact's layer, which holds the
                // statement.
                let manifest = referrer["digest"]
                    .as_str()
                    .and_then(|d| d.parse::<kiln::digest::Digest>().ok())
                    .and_then(|d| {
                        kiln::registry::fetch_raw_manifest(&reference.with_digest(d), &options).ok()
                    })
                    .and_then(|(_, bytes)| {
                        serde_json::from_slice::<kiln::image::manifest::Manifest>(&bytes).ok()
                    });
                let predicate = manifest.as_ref().and_then(|m| {
                    m.layers
                        .first()?
                        .annotations
                        .get("in-toto.io/predicate-type")
                        .cloned()
                });
                let statement = manifest.as_ref().and_then(|m| {
                    let layer = m.layers.first()?;
                    let store = build::open_store(&cache_dir).ok()?;
                    kiln::registry::fetch_blob(&reference, layer, &store, &options).ok()?;
                    statement_of(&store.read_bytes(&layer.digest).ok()?)
                });
                attestations.push(serde_json::json!({
                    "statement": statement,
                    "predicateType": predicate,
                    "artifactType": referrer["artifactType"],
                    "subject": digest.to_string(),
                    "signed": referrer["artifactType"].as_str().is_some_and(|t| t.contains("dsse")),
                    "manifest": referrer["digest"],
                }));
            }
        }
        (digest, bytes)
    };
    if args.raw {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{}` is not a JSON manifest or index", args.image))?;
    let media_type = document["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let size = |d: &serde_json::Value| d["size"].as_u64().unwrap_or(0);
    let summary = if let Some(manifests) = document["manifests"].as_array() {
        let entries: Vec<serde_json::Value> = manifests
            .iter()
            .map(|m| {
                let platform = match (m["platform"]["os"].as_str(), m["platform"]["architecture"].as_str()) {
                    (Some(os), Some(arch)) => {
                        let variant = m["platform"]["variant"].as_str().map(|v| format!("/{v}")).unwrap_or_default();
                        format!("{os}/{arch}{variant}")
                    }
                    _ => String::new(),
                };
                let role = if m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest" {
                    format!("attestations for {}", m["annotations"]["vnd.docker.reference.digest"].as_str().unwrap_or("?"))
                } else if let Some(artifact) = m["artifactType"].as_str() {
                    format!("artifact {artifact}")
                } else {
                    "image".to_owned()
                };
                serde_json::json!({"digest": m["digest"], "mediaType": m["mediaType"], "size": size(m), "platform": platform, "role": role})
            })
            .collect();
        serde_json::json!({"name": args.image, "digest": digest.to_string(), "mediaType": media_type, "manifests": entries})
    } else {
        let layers: Vec<serde_json::Value> = document["layers"]
            .as_array()
            .map(|layers| layers.iter().map(|l| serde_json::json!({"digest": l["digest"], "mediaType": l["mediaType"], "size": size(l)})).collect())
            .unwrap_or_default();
        let total: u64 = layers.iter().map(size).sum();
        serde_json::json!({"name": args.image, "digest": digest.to_string(), "mediaType": media_type,
            "config": document["config"]["digest"], "artifactType": document["artifactType"],
            "subject": document["subject"]["digest"], "layers": layers, "totalSize": total})
    };
    let mut summary = summary;
    summary["attestations"] = serde_json::Value::Array(attestations.clone());
    match args.format {
        InspectFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        InspectFormat::Text => {
            println!("Name:      {}", args.image);
            println!("MediaType: {media_type}");
            println!("Digest:    {digest}");
            if let Some(entries) = summary["manifests"].as_array() {
                println!("Manifests:");
                for entry in entries {
                    println!(
                        "  {}  {:>10} bytes  {}  {}",
                        entry["digest"].as_str().unwrap_or("?"),
                        entry["size"],
                        entry["platform"]
                            .as_str()
                            .filter(|p| !p.is_empty())
                            .unwrap_or("-"),
                        entry["role"].as_str().unwrap_or("")
                    );
                }
            } else {
                if let Some(subject) = summary["subject"].as_str() {
                    println!("Subject:   {subject}");
                }
                println!("Config:    {}", summary["config"].as_str().unwrap_or("-"));
                println!("Layers:");
                for layer in summary["layers"].as_array().into_iter().flatten() {
                    println!(
                        "  {}  {:>10} bytes  {}",
                        layer["digest"].as_str().unwrap_or("?"),
                        layer["size"],
                        layer["mediaType"].as_str().unwrap_or("")
                    );
                }
                println!("Total:     {} bytes", summary["totalSize"]);
            }
            if !attestations.is_empty() {
                println!("Attestations:");
                for found in &attestations {
                    println!(
                        "  {}  for {}  ({}) {}",
                        found["predicateType"]
                            .as_str()
                            .or(found["artifactType"].as_str())
                            .unwrap_or("?"),
                        found["subject"].as_str().unwrap_or("?"),
                        if found["signed"].as_bool() == Some(true) {
                            "signed"
                        } else {
                            "unsigned"
                        },
                        summary_of(&found["statement"])
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let targets = parse_references(&args.targets)?;
    let mut layout_dir = None;
    let descriptor = if let Some(rest) = args.source.strip_prefix("oci:") {
        let (dir, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        layout_dir = Some(PathBuf::from(&dir));
        image::base::import_layout(&store, Path::new(&dir), reference.as_deref())
    } else if let Some(rest) = args.source.strip_prefix("oci-archive:") {
        let (file, reference) = kiln::dockerfile::plan::split_local_reference(rest);
        image::base::import_oci_archive(&store, Path::new(&file), reference.as_deref())
    } else {
        return Err(usage(format!(
            "invalid source `{}`: expected oci:DIR[:TAG] or oci-archive:FILE[:TAG]",
            args.source
        )));
    }
    .with_context(|| format!("failed to read `{}`", args.source))?;
    let mut options = args.registry.options(&cache_dir)?;
    if let Some(repository) = &args.mount_from {
        options = options.mount_from(repository);
    }
    // The key is loaded (and its password checked) before anything is pushed.
    let signing_key = match &args.sign_key {
        Some(path) => {
            Some(kiln::attest::SigningKey::load(path).context("failed to load the signing key")?)
        }
        None => None,
    };
    let mut bytes = store.read_bytes(&descriptor.digest)?;
    if !args.attestations {
        bytes = without_attestation_manifests(&store, &descriptor, bytes)?;
    }
    let pushed =
        kiln::registry::push_manifest(&store, &bytes, &descriptor.media_type, &targets, &options)
            .context("failed to push")?;
    report_push(&pushed, true);
    if args.attestations
        && let Some(dir) = &layout_dir
    {
        push_layout_referrers(&store, dir, &bytes, &descriptor, &targets, &options)?;
    }
    if let Some(key) = &signing_key {
        // What was pushed: without its attestation manifests, an index is a new one.
        let pushed_descriptor = image::manifest::Descriptor {
            digest: kiln::digest::Digest::of(&bytes),
            size: bytes.len() as u64,
            ..descriptor.clone()
        };
        let subjects = super::sign::signing_subjects(&store, &pushed_descriptor)?;
        super::sign::push_signatures(
            args.signature_format,
            &store,
            &subjects,
            &[],
            key,
            &targets,
            &options,
        )?;
        eprintln!("kiln: signed {} manifest(s)", subjects.len());
    }
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

/// `bytes` (the manifest or index `descriptor` names), without the attestation manifests a
/// buildx-style index lists: the same bytes when it lists none, else a new index (stored).
fn without_attestation_manifests(
    store: &kiln::store::Store,
    descriptor: &image::manifest::Descriptor,
    bytes: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    if descriptor.media_type != image::manifest::MEDIA_TYPE_OCI_INDEX {
        return Ok(bytes);
    }
    let mut index: image::manifest::Index = serde_json::from_slice(&bytes)
        .with_context(|| format!("index {} is not an OCI index", descriptor.digest))?;
    let before = index.manifests.len();
    index
        .manifests
        .retain(|m| !attest::attach::is_attestation_manifest(m));
    if index.manifests.len() == before {
        return Ok(bytes);
    }
    let stripped = image::canonical::to_vec(&index)?;
    store.put_bytes(&stripped)?;
    Ok(stripped)
}

/// Pushes the referrers the layout `dir` holds (under `sha256-<hex>` fallback tags: kiln's
/// attestations and Sigstore bundles) and cosign's `sha256-<hex>.sig`/`.att` tags, for the
/// pushed manifest and, when it is an index, for each manifest it lists.
pub(crate) fn push_layout_referrers(
    store: &kiln::store::Store,
    dir: &Path,
    bytes: &[u8],
    descriptor: &image::manifest::Descriptor,
    targets: &[kiln::registry::Reference],
    options: &kiln::registry::RegistryOptions,
) -> anyhow::Result<()> {
    let mut subjects = vec![kiln::digest::Digest::of(bytes)];
    if descriptor.media_type == image::manifest::MEDIA_TYPE_OCI_INDEX
        && let Ok(index) = serde_json::from_slice::<image::manifest::Index>(bytes)
    {
        subjects.extend(index.manifests.into_iter().map(|m| m.digest));
    }
    let index = image::layout::read_index(dir)?.unwrap_or_else(image::manifest::Index::empty);
    for subject in subjects {
        // cosign's tags: their layers join those already under the tag in each target.
        for tag in [
            attest::cosign::signature_tag(&subject),
            attest::cosign::attestation_tag(&subject),
        ] {
            if !index
                .manifests
                .iter()
                .any(|m| m.ref_name() == Some(tag.as_str()))
            {
                continue;
            }
            let entry = image::base::import_layout(store, dir, Some(&tag))
                .with_context(|| format!("failed to read `{tag}` in `{}`", dir.display()))?;
            let manifest: image::manifest::Manifest =
                serde_json::from_slice(&store.read_bytes(&entry.digest)?)
                    .with_context(|| format!("`{tag}` is not an OCI image manifest"))?;
            for target in targets {
                super::sign::push_tag_layers(store, target, &tag, &manifest.layers, options)?;
            }
            eprintln!("kiln: pushed {tag}");
        }
        let tag = format!("sha256-{}", subject.hex());
        if !index
            .manifests
            .iter()
            .any(|m| m.ref_name() == Some(tag.as_str()))
        {
            continue;
        }
        let referrers = image::base::import_layout(store, dir, Some(&tag))
            .with_context(|| format!("failed to read the attestations of {subject}"))?;
        super::attach::push_referrers(store, &subject, &tag, &referrers, targets, options)?;
        eprintln!("kiln: pushed the attestations of {subject} ({tag})");
    }
    Ok(())
}

pub(crate) fn run_pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let store = build::open_store(&cache_dir)?;
    let reference = parse_references(std::slice::from_ref(&args.reference))?.remove(0);
    let outputs = args
        .outputs
        .iter()
        .map(|spec| parse_output(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let platform = match &args.platform {
        Some(text) => text
            .parse::<Platform>()
            .map_err(|e| usage(format!("invalid --platform `{text}`: {e}")))?,
        None => Platform::host(),
    };
    let options = args.registry.options(&cache_dir)?;
    let pulled = kiln::registry::pull(&reference, &platform, &store, &options)
        .with_context(|| format!("failed to pull `{}`", args.reference))?;
    let manifest_digest = pulled.manifest_digest.clone();
    let built = image::BuiltImage::from_store(&store, &manifest_digest)?;
    let tag = reference
        .tag()
        .map(|t| format!("{}:{t}", reference.name()))
        .into_iter()
        .collect();
    write_outputs(&store, &[(built, tag)], &outputs)?;
    eprintln!("kiln: pulled {} as {}", args.reference, pulled.source);
    println!("{manifest_digest}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => password.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("failed to read the password from standard input")?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            return Err(usage(
                "kiln login needs --password-stdin (or -p PASSWORD)".to_owned(),
            ));
        }
    };
    let options = args.registry.options(&build::default_cache_dir())?;
    let path = kiln::registry::login(&args.server, &args.username, &password, &options)
        .with_context(|| format!("failed to log in to `{}`", args.server))?;
    eprintln!(
        "Login Succeeded (credentials stored in `{}`)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
