//! `kiln verify`: an image's signatures and attestations checked against trusted keys and a
//! policy, from an OCI layout or a registry (every signature layout kiln writes).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use kiln::attest;
use kiln::build;
use kiln::image;

use super::sign::{existing_tag_manifest, fetch_tag};

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The image: `oci:DIR[:TAG]`, `oci:DIR@sha256:...`, or a registry reference (its
    /// attestations are read from the referrers API or the `sha256-<hex>` fallback tag; for an
    /// index, those of every platform manifest, and a failure names the platform).
    image: String,
    /// A trusted public key (PEM); repeatable.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// A policy file (TOML or JSON): require_provenance, require_signed, require_base_digest,
    /// allowed_registries, required_predicate_types.
    #[arg(long)]
    policy: Option<PathBuf>,
    #[command(flatten)]
    registry: super::RegistryFlags,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// The registry base images (`name@sha256:...`) that the trusted provenance statements of the
/// verified image name in `resolvedDependencies` (`pkg:docker/...` with a sha256 digest).
fn base_images(
    layout: &Path,
    report: &attest::VerifyReport,
    keys: &[attest::PublicKey],
) -> anyhow::Result<Vec<String>> {
    let mut bases = Vec::new();
    for found in report
        .attestations
        .iter()
        .filter(|f| f.trusted && f.predicate_type == "https://slsa.dev/provenance/v1")
    {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(found.blob.hex()))
            .with_context(|| format!("failed to read attestation {}", found.blob))?;
        let what = format!("attestation {}", found.blob);
        let payload = if found.signed {
            attest::Envelope::from_slice(&bytes, &what)?
                .verify(keys, 1, &what)?
                .payload
        } else {
            bytes
        };
        let statement = attest::Statement::from_slice(&payload, &what)?;
        let dependencies = statement.predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for dependency in dependencies {
            let (Some(uri), Some(hex)) = (
                dependency["uri"].as_str(),
                dependency["digest"]["sha256"].as_str(),
            ) else {
                continue;
            };
            let Some(rest) = uri.strip_prefix("pkg:docker/") else {
                continue;
            };
            let name = rest.split(['@', '?']).next().unwrap_or(rest);
            if name.starts_with("oci:") || name.starts_with("oci-archive:") {
                continue;
            }
            let base = format!("{name}@sha256:{hex}");
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }
    Ok(bases)
}

/// Copies `image` and its attestations from the registry into the new OCI layout `layout`
/// (the image tagged `image`), for `attest::verify`. A single manifest is pulled for the host
/// platform with the referrers listed for it; an index comes with every manifest it lists, the
/// buildx attestation manifests inside it, and the referrers of each platform manifest, so
/// every platform is verified. Referrers come from the registry's referrers API, else the
/// `sha256-<hex>` fallback tag, and keep that tag in the layout.
pub(crate) fn fetch_with_referrers(
    image: &str,
    options: &kiln::registry::RegistryOptions,
    cache_dir: &Path,
    layout: &Path,
) -> anyhow::Result<()> {
    use kiln::image::manifest::{Descriptor, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_OCI_INDEX};
    let reference = super::parse_references(&[image.to_owned()])?.remove(0);
    let store = build::open_store(cache_dir)?;
    // An index is read as the registry serves it; anything else (or a registry kiln cannot
    // reach now, with the pull's reference cache and `--offline`) goes through the pull.
    let raw = kiln::registry::fetch_raw_manifest(&reference, options).ok();
    let index_read = raw.clone().and_then(|(digest, bytes)| {
        let document: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let media_type = match document["mediaType"].as_str() {
            Some(media_type) => media_type.to_owned(),
            None => document
                .get("manifests")
                .map(|_| MEDIA_TYPE_OCI_INDEX.to_owned())?,
        };
        (media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST)
            .then_some((digest, bytes, media_type))
    });
    let mut subjects = Vec::new();
    let mut entries = Vec::new();
    if let Some((top_digest, top_bytes, media_type)) = index_read {
        std::fs::create_dir_all(layout.join("blobs/sha256"))
            .with_context(|| format!("failed to create `{}`", layout.display()))?;
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .context("failed to write the scratch layout")?;
        store.put_bytes(&top_bytes)?;
        copy_into_layout(&store, layout, &top_digest)?;
        let index: Index = serde_json::from_slice(&top_bytes)
            .with_context(|| format!("`{image}` is not an image index"))?;
        for child in &index.manifests {
            let at = kiln::registry::Reference::new(
                reference.registry(),
                reference.repository(),
                None,
                Some(child.digest.clone()),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (_, bytes) = kiln::registry::fetch_raw_manifest(&at, options)?;
            store.put_bytes(&bytes)?;
            copy_into_layout(&store, layout, &child.digest)?;
            if attest::attach::is_attestation_manifest(child) {
                let manifest: image::manifest::Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not an OCI manifest", child.digest))?;
                for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    kiln::registry::fetch_blob(&at, blob, &store, options)?;
                    copy_into_layout(&store, layout, &blob.digest)?;
                }
            } else {
                subjects.push(child.digest.clone());
            }
        }
        let mut entry = Descriptor::new(&media_type, top_digest, top_bytes.len() as u64);
        entry.annotations.insert(
            "org.opencontainers.image.ref.name".to_owned(),
            "image".to_owned(),
        );
        entries.push(entry);
    } else {
        // A manifest named by digest is taken whatever its platform (a base of another
        // platform's image); otherwise the pull picks this machine's platform.
        let platform = raw
            .as_ref()
            .and_then(|(_, bytes)| manifest_platform(&reference, bytes, &store, options))
            .unwrap_or_else(image::Platform::host);
        let pulled = kiln::registry::pull(&reference, &platform, &store, options)
            .with_context(|| format!("failed to pull `{image}`"))?;
        let built = image::BuiltImage::from_store(&store, &pulled.manifest_digest)?;
        image::layout::write_oci_layout(
            &store,
            layout,
            &[(built.clone(), vec!["verify:image".to_owned()])],
        )?;
        subjects.push(built.manifest.digest.clone());
    }
    for subject in &subjects {
        if let Some(entry) = copy_referrers_into_layout(
            &reference, subject, &store, options, layout,
        )
        .with_context(|| format!("failed to read the attestations of {subject} in `{image}`"))?
        {
            entries.push(entry);
        }
    }
    let index_path = layout.join("index.json");
    let mut top_index: Index = match std::fs::read(&index_path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).context("failed to read the scratch layout's index")?
        }
        Err(_) => Index::empty(),
    };
    top_index.manifests.extend(entries);
    std::fs::write(&index_path, image::canonical::to_vec(&top_index)?)
        .context("failed to write the scratch layout's index")?;
    Ok(())
}

/// The platform an image manifest's config names, when `bytes` is an image manifest whose
/// config can be read.
fn manifest_platform(
    reference: &kiln::registry::Reference,
    bytes: &[u8],
    store: &kiln::store::Store,
    options: &kiln::registry::RegistryOptions,
) -> Option<image::Platform> {
    let manifest: image::manifest::Manifest = serde_json::from_slice(bytes).ok()?;
    kiln::registry::fetch_blob(reference, &manifest.config, store, options).ok()?;
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_bytes(&manifest.config.digest).ok()?).ok()?;
    Some(image::Platform::new(
        config["os"].as_str()?,
        config["architecture"].as_str()?,
        config["variant"].as_str(),
    ))
}

/// Copies the blob `digest` from `store` into the layout `layout` (unless there).
fn copy_into_layout(
    store: &kiln::store::Store,
    layout: &Path,
    digest: &kiln::digest::Digest,
) -> anyhow::Result<()> {
    let target = layout.join("blobs/sha256").join(digest.hex());
    if !target.exists() {
        std::fs::copy(store.blob_path(digest), &target)
            .with_context(|| format!("failed to copy blob {digest} into the scratch layout"))?;
    }
    Ok(())
}

/// Copies the referrers of `subject` (the referrers API, else the fallback tag) and their blobs
/// into `layout`; returns the layout entry naming them by the fallback tag, or None when
/// `subject` has none.
fn copy_referrers_into_layout(
    reference: &kiln::registry::Reference,
    subject: &kiln::digest::Digest,
    store: &kiln::store::Store,
    options: &kiln::registry::RegistryOptions,
    layout: &Path,
) -> anyhow::Result<Option<image::manifest::Descriptor>> {
    use kiln::image::manifest::{Descriptor, Index, MEDIA_TYPE_OCI_INDEX, Manifest};
    let fallback_tag = format!("sha256-{}", subject.hex());
    let Ok(fallback) = reference.with_tag(&fallback_tag) else {
        return Ok(None);
    };
    // None listed: verify reports the missing attestations.
    let index_bytes = match kiln::registry::fetch_referrers(reference, subject, options) {
        Ok(Some(bytes)) => bytes,
        _ => match kiln::registry::fetch_raw_manifest(&fallback, options) {
            Ok((_, bytes)) => bytes,
            Err(_) => return Ok(None),
        },
    };
    let index_digest = kiln::digest::Digest::of(&index_bytes);
    let index: Index =
        serde_json::from_slice(&index_bytes).context("the referrers index is not an OCI index")?;
    store.put_bytes(&index_bytes)?;
    copy_into_layout(store, layout, &index_digest)?;
    for referrer in &index.manifests {
        let (manifest_digest, bytes) = kiln::registry::fetch_raw_manifest(
            &reference.with_digest(referrer.digest.clone()),
            options,
        )?;
        store.put_bytes(&bytes)?;
        copy_into_layout(store, layout, &manifest_digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("referrer {manifest_digest} is not an OCI manifest"))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            kiln::registry::fetch_blob(reference, blob, store, options)?;
            copy_into_layout(store, layout, &blob.digest)?;
        }
    }
    let mut entry = Descriptor::new(MEDIA_TYPE_OCI_INDEX, index_digest, index_bytes.len() as u64);
    entry
        .annotations
        .insert("org.opencontainers.image.ref.name".to_owned(), fallback_tag);
    Ok(Some(entry))
}

/// The platform (`os/arch[/variant]`) of each manifest the layout entry `reference` lists when
/// it is an index, so failures name the platform that did not verify.
fn platforms_in_layout(
    dir: &Path,
    reference: Option<&str>,
) -> std::collections::BTreeMap<kiln::digest::Digest, String> {
    let mut platforms = std::collections::BTreeMap::new();
    let Ok(Some(top)) = image::layout::read_index(dir) else {
        return platforms;
    };
    let entry = top.manifests.iter().find(|e| match reference {
        Some(reference) => {
            e.ref_name() == Some(reference) || reference.ends_with(&e.digest.to_string())
        }
        None => !e.ref_name().is_some_and(|r| r.starts_with("sha256-")),
    });
    let Some(entry) = entry else {
        return platforms;
    };
    let Ok(bytes) = std::fs::read(dir.join("blobs/sha256").join(entry.digest.hex())) else {
        return platforms;
    };
    if let Ok(index) = serde_json::from_slice::<image::manifest::Index>(&bytes) {
        for manifest in index.manifests {
            if let Some(platform) = &manifest.platform
                && !attest::attach::is_attestation_manifest(&manifest)
            {
                platforms.insert(
                    manifest.digest.clone(),
                    image::compose::platform_label(platform),
                );
            }
        }
    }
    platforms
}

pub(crate) fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // A registry image is copied, with its referrers, into a scratch layout first.
    let scratch;
    let (dir, reference) = match args.image.strip_prefix("oci:") {
        Some(rest) => kiln::dockerfile::plan::split_local_reference(rest),
        None => {
            let cache_dir = args
                .cache_dir
                .clone()
                .unwrap_or_else(build::default_cache_dir);
            scratch = tempfile::Builder::new()
                .prefix("verify-")
                .tempdir()
                .context("failed to create a scratch directory")?;
            let layout = scratch.path().join("layout");
            fetch_with_referrers(
                &args.image,
                &args.registry.options(&cache_dir)?,
                &cache_dir,
                &layout,
            )?;
            (layout.display().to_string(), Some("image".to_owned()))
        }
    };
    let mut keys = args
        .keys
        .iter()
        .map(|path| attest::PublicKey::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match &args.policy {
        Some(path) => attest::Policy::load(path)?,
        None => attest::Policy {
            require_provenance: true,
            require_signed: true,
            ..attest::Policy::default()
        },
    };
    keys.extend(policy.load_keys()?);
    let report = attest::verify(Path::new(&dir), reference.as_deref(), &keys, &policy)?;
    // cosign's tags and Sigstore bundles too (in the layout, or in the registry), reported per
    // layout; a layout holding entries of which none verifies fails.
    let mut layout_failures = Vec::new();
    let all_findings = if args.image.starts_with("oci:") {
        attest::layout_signatures::verify_layout(
            Path::new(&dir),
            reference.as_deref(),
            &keys,
            None,
        )?
    } else {
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        let options = args.registry.options(&cache_dir)?;
        let store = build::open_store(&cache_dir)?;
        cosign_layouts(
            &args.image,
            &keys,
            policy.require_exact_repository,
            &options,
            &store,
        )?
    };
    for findings in all_findings {
        if findings.found == 0 {
            eprintln!("{}: none", findings.label);
            continue;
        }
        eprintln!(
            "{}: {} found, {} verified{}",
            findings.label,
            findings.found,
            findings.verified.len(),
            if findings.verified.is_empty() {
                String::new()
            } else {
                format!(" ({})", findings.verified.join(", "))
            }
        );
        for problem in &findings.problems {
            eprintln!("  not verified: {problem}");
        }
        if findings.verified.is_empty() {
            layout_failures.push(format!(
                "{}: none of {} entries verified with the trusted keys",
                findings.label, findings.found
            ));
        }
    }
    // The chain: each registry base the provenance names must carry its own trusted provenance.
    let mut chain_failures = Vec::new();
    if policy.require_base_provenance {
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(build::default_cache_dir);
        let options = args.registry.options(&cache_dir)?;
        for base in base_images(Path::new(&dir), &report, &keys)? {
            let scratch = tempfile::Builder::new()
                .prefix("verify-base-")
                .tempdir()
                .context("failed to create a scratch directory")?;
            let layout = scratch.path().join("layout");
            let base_policy = attest::Policy {
                require_provenance: true,
                require_signed: policy.require_signed,
                ..attest::Policy::default()
            };
            let outcome = fetch_with_referrers(&base, &options, &cache_dir, &layout)
                .and_then(|()| Ok(attest::verify(&layout, Some("image"), &keys, &base_policy)?));
            match outcome {
                Ok(base_report) if base_report.passed() => {
                    eprintln!("base {base}: provenance verified");
                }
                Ok(base_report) => {
                    for failure in &base_report.failures {
                        chain_failures.push(format!("base-provenance: {base}: {failure}"));
                    }
                }
                Err(e) => chain_failures.push(format!("base-provenance: {base}: {e:#}")),
            }
        }
    }
    let platforms = platforms_in_layout(Path::new(&dir), reference.as_deref());
    for found in &report.attestations {
        eprintln!(
            "found {} for {}{} ({}; {})",
            found.predicate_type,
            found.image,
            platforms
                .get(&found.image)
                .map(|p| format!(" (platform {p})"))
                .unwrap_or_default(),
            if found.signed { "signed" } else { "unsigned" },
            if found.trusted {
                format!("verified by {}", found.verified_by.join(", "))
            } else {
                "not trusted".to_owned()
            }
        );
    }
    chain_failures.extend(layout_failures);
    if report.passed() && chain_failures.is_empty() {
        eprintln!("kiln: verified `{}`: every check passed", args.image);
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &report.failures {
            match platforms.get(&failure.image) {
                Some(platform) => eprintln!("FAILED platform {platform}: {failure}"),
                None => eprintln!("FAILED {failure}"),
            }
        }
        for failure in &chain_failures {
            eprintln!("FAILED {failure}");
        }
        Ok(ExitCode::from(1))
    }
}

pub(crate) use attest::layout_signatures::LayoutFindings;

/// Reads cosign's `.sig` and `.att` tags and the Sigstore bundle referrers of `image` (and of
/// each platform manifest of an index) and checks each entry against `keys`.
pub(crate) fn cosign_layouts(
    image: &str,
    keys: &[attest::PublicKey],
    exact_repository: bool,
    options: &kiln::registry::RegistryOptions,
    store: &kiln::store::Store,
) -> anyhow::Result<Vec<LayoutFindings>> {
    let reference = super::parse_references(&[image.to_owned()])?.remove(0);
    let (digest, bytes) = kiln::registry::fetch_raw_manifest(&reference, options)
        .with_context(|| format!("failed to read `{image}`"))?;
    let mut subjects = vec![digest];
    if let Ok(index) = serde_json::from_slice::<image::manifest::Index>(&bytes)
        && !index.manifests.is_empty()
    {
        subjects.extend(index.manifests.into_iter().map(|m| m.digest));
    }
    let blob = |tagged: &kiln::registry::Reference,
                descriptor: &image::manifest::Descriptor|
     -> anyhow::Result<Vec<u8>> {
        kiln::registry::fetch_blob(tagged, descriptor, store, options)?;
        Ok(store.read_bytes(&descriptor.digest)?)
    };
    let mut out = Vec::new();
    for subject in &subjects {
        let short = &subject.hex()[..12];
        // cosign's .sig tag.
        let tagged = reference
            .with_tag(&attest::cosign::signature_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut sig = LayoutFindings {
            label: format!("cosign .sig for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) = existing_tag_manifest(&tagged, store, options)? {
            for layer in &manifest.layers {
                sig.found += 1;
                let payload = blob(&tagged, layer)?;
                match attest::cosign::verify_signature_layer(layer, &payload, keys, subject) {
                    Ok(identity) if exact_repository && identity != reference.name() => {
                        sig.problems.push(format!(
                            "layer {}: signed for `{identity}`, not `{}` (require_exact_repository)",
                            layer.digest,
                            reference.name()
                        ));
                    }
                    Ok(identity) => sig.verified.push(format!("signature for {identity}")),
                    Err(problem) => sig.problems.push(problem),
                }
            }
        }
        out.push(sig);
        // cosign's .att tag.
        let tagged = reference
            .with_tag(&attest::cosign::attestation_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut att = LayoutFindings {
            label: format!("cosign .att for {short}"),
            ..LayoutFindings::default()
        };
        if let Some(manifest) = existing_tag_manifest(&tagged, store, options)? {
            for layer in &manifest.layers {
                att.found += 1;
                let envelope = blob(&tagged, layer)?;
                let what = format!("layer {}", layer.digest);
                match attest::cosign::verify_envelope(&envelope, &what, keys, subject) {
                    Ok(predicate_type) => att.verified.push(predicate_type),
                    Err(problem) => att.problems.push(problem),
                }
            }
        }
        out.push(att);
        // Sigstore bundles among the referrers (fallback tag).
        let tagged = reference
            .with_tag(&attest::attach::fallback_tag(subject))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bundles = LayoutFindings {
            label: format!("sigstore bundles for {short}"),
            ..LayoutFindings::default()
        };
        let index = fetch_tag(&tagged, options, "for its bundles")?
            .and_then(|bytes| serde_json::from_slice::<image::manifest::Index>(&bytes).ok());
        for entry in index.map(|i| i.manifests).unwrap_or_default() {
            if !attest::bundle::may_be_bundle(&entry) {
                continue;
            }
            let by_digest = kiln::registry::Reference::new(
                reference.registry(),
                reference.repository(),
                None,
                Some(entry.digest.clone()),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (_, manifest_bytes) = kiln::registry::fetch_raw_manifest(&by_digest, options)?;
            let manifest: image::manifest::Manifest = serde_json::from_slice(&manifest_bytes)
                .with_context(|| format!("referrer {} is not an OCI manifest", entry.digest))?;
            if !attest::bundle::is_bundle(&manifest) {
                continue;
            }
            bundles.found += 1;
            let Some(layer) = manifest.layers.first() else {
                bundles
                    .problems
                    .push(format!("referrer {} has no layer", entry.digest));
                continue;
            };
            let bundle = blob(&by_digest, layer)?;
            let what = format!("bundle {}", layer.digest);
            match attest::bundle::verify_bundle(&bundle, &what, keys, subject) {
                Ok(predicate_type) => bundles.verified.push(predicate_type),
                Err(problem) => bundles.problems.push(problem),
            }
        }
        out.push(bundles);
    }
    Ok(out)
}
