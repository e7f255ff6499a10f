//! The content-addressed blob store, laid out as an OCI image layout (`blobs/sha256/<hex>`).
//!
//! Every write goes to a temp file in the store, is hashed while it streams, verified against
//! the expected digest when one is known, fsynced, then renamed: a blob's presence means its
//! bytes match its name.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// A content-addressed store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a store path.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Store {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root.join("blobs/sha256")).map_err(|source| StoreError::Io {
            action: "create the store directory",
            path: root.to_owned(),
            source,
        })?;
        Ok(Store {
            root: root.to_owned(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }
}
