//! Images as values: the config, the manifest and index (canonical JSON, so equal inputs give
//! equal digests), and the outputs (OCI layout, oci-archive, docker-archive).
//!
//! Three digests name an image's parts: a layer's *diffID* is the sha256 of its uncompressed
//! tar (listed in the config), its *digest* is the sha256 of the compressed blob (listed in the
//! manifest), and the image is named by its manifest's digest.

pub mod config;

pub use config::ImageConfig;
