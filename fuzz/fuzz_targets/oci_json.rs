//! Fuzzes the OCI and Docker schema-2 documents kiln reads from registries, layouts and
//! archives: image manifests, indexes (and platform selection in them), image configs and the
//! digests and platforms inside them; what parses is re-serialized as canonical JSON and must
//! parse again to the same value.
#![no_main]

use kiln::image::{Descriptor, ImageConfig, Index, Manifest, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let canonical = kiln::image::canonical::to_vec(&manifest).expect("a manifest serializes");
        let again: Manifest =
            serde_json::from_slice(&canonical).expect("canonical manifest JSON parses again");
        assert_eq!(manifest, again, "manifest changed through canonical JSON");
        for layer in &manifest.layers {
            let _ = kiln::image::manifest::layer_compression(&layer.media_type);
            let _ = kiln::image::manifest::oci_layer_media_type(&layer.media_type);
        }
    }
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        let canonical = kiln::image::canonical::to_vec(&index).expect("an index serializes");
        let again: Index =
            serde_json::from_slice(&canonical).expect("canonical index JSON parses again");
        assert_eq!(index, again, "index changed through canonical JSON");
        for platform in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
        ] {
            if let Ok(platform) = platform.parse::<Platform>() {
                let _ = kiln::image::base::select_manifest(&index, &platform);
            }
        }
        for descriptor in &index.manifests {
            let _ = descriptor.ref_name();
        }
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(data) {
        let canonical = kiln::image::canonical::to_vec(&config).expect("a config serializes");
        let _: ImageConfig =
            serde_json::from_slice(&canonical).expect("canonical config JSON parses again");
    }
    if let Ok(descriptor) = serde_json::from_slice::<Descriptor>(data) {
        let _ = descriptor.ref_name();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if text.len() < 256 {
            if let Ok(platform) = text.parse::<Platform>() {
                let _ = platform.normalized();
                let _ = platform.to_string().parse::<Platform>();
            }
            let _ = text.parse::<kiln::digest::Digest>();
        }
    }
});
