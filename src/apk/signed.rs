//! The apk v2 signed container shared by `.apk` packages and `APKINDEX.tar.gz` (apk.md §1.1,
//! §1.2, §2.1): concatenated gzip members, the first ones holding only `.SIGN.<ALG>.<key>`
//! entries, and a [`Keyring`] of trusted public keys named by file name.
//!
//! [`SignedArchive::open`] splits the file by the raw byte ranges of its gzip members (never
//! decompressing blindly across members: the hashes are over raw member bytes), decompresses
//! each member separately and collects the signature entries. [`SignedArchive::verify`] checks
//! the first signature whose key file is in the keyring, RSA PKCS#1 v1.5 with SHA-1 (`RSA`),
//! SHA-256 (`RSA256`) or SHA-512 (`RSA512`), over the raw bytes the caller says are signed.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::{ControlFlow, Range};

use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::DecodePublicKey;
use sha1::Digest;

use super::ApkError;
use crate::layer::LayerPath;
use crate::layer::reader::{ReaderError, TarEntry, read_entries};
use crate::rootfs::{FsView, NodeKind};

/// Trusted public keys by key file name (`alpine-devel@example.org-6165ee59.rsa.pub`).
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, rsa::PublicKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds the PEM `PUBLIC KEY` (SubjectPublicKeyInfo) `pem` under the file name `name`.
    pub fn add_pem(&mut self, name: &str, pem: &str) -> Result<(), ApkError> {
        let key =
            rsa::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| ApkError::BadKey {
                key: name.to_owned(),
                message: e.to_string(),
            })?;
        self.keys.insert(name.to_owned(), key);
        Ok(())
    }

    /// Every regular file (or symlink to one) in `/etc/apk/keys` of `view`; a file that is not
    /// an RSA public key is skipped, as apk skips it. A missing directory gives an empty ring.
    pub fn from_view(view: &dyn FsView) -> Result<Keyring, ApkError> {
        let mut ring = Keyring::new();
        let dir =
            LayerPath::new("etc/apk/keys").map_err(|e| ApkError::Unsupported(e.to_string()))?;
        let Some((resolved, node)) = view
            .stat(&dir, true)
            .map_err(ApkError::view("/etc/apk/keys"))?
        else {
            return Ok(ring);
        };
        if node.kind != NodeKind::Dir {
            return Ok(ring);
        }
        for name in view
            .read_dir(&resolved)
            .map_err(ApkError::view("/etc/apk/keys"))?
        {
            let Ok(path) = resolved.join(&name) else {
                continue;
            };
            let Ok(bytes) = view.read_file(&path) else {
                continue;
            };
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            // apk ignores files it cannot parse as keys.
            let _ = ring.add_pem(&name, &text);
        }
        Ok(ring)
    }

    /// The key names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One gzip member: its raw byte range in the file and its decompressed bytes.
pub(crate) struct Member {
    pub range: Range<usize>,
    pub tar: Vec<u8>,
}

/// One `.SIGN.<ALG>.<key>` entry.
#[derive(Clone, Debug)]
pub(crate) struct SignatureEntry {
    pub algorithm: String,
    pub key: String,
    pub signature: Vec<u8>,
}

/// A file split into gzip members, with its leading signature members read.
pub(crate) struct SignedArchive {
    pub members: Vec<Member>,
    pub signatures: Vec<SignatureEntry>,
    /// Index of the first member that is not a signature member.
    pub content_start: usize,
}

/// Largest decompressed size accepted for one archive (a gzip-bomb guard; real indexes are a
/// few MB and the largest Alpine packages a few hundred).
const MAX_DECOMPRESSED: u64 = 2 << 30;

/// Splits `bytes` into gzip members by raw byte range, decompressing each on its own.
pub(crate) fn split_members(bytes: &[u8], archive: &str) -> Result<Vec<Member>, ApkError> {
    let mut members = Vec::new();
    let mut rest = bytes;
    let mut total = 0u64;
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let gz_err = |source| ApkError::Gzip {
            archive: archive.to_owned(),
            offset: start,
            source,
        };
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        let mut tar = Vec::new();
        (&mut decoder)
            .take(MAX_DECOMPRESSED - total)
            .read_to_end(&mut tar)
            .map_err(gz_err)?;
        total += tar.len() as u64;
        if total >= MAX_DECOMPRESSED {
            return Err(gz_err(std::io::Error::other(
                "decompressed size limit reached",
            )));
        }
        rest = decoder.into_inner();
        let end = bytes.len() - rest.len();
        if end == start {
            return Err(gz_err(std::io::Error::other("empty gzip member")));
        }
        members.push(Member {
            range: start..end,
            tar,
        });
    }
    Ok(members)
}

/// The entries of a (possibly cut: no end-of-archive) tar held in memory, with contents.
pub(crate) fn tar_entries(tar: &[u8], archive: &str) -> Result<Vec<(TarEntry, Vec<u8>)>, ApkError> {
    let mut out = Vec::new();
    read_entries(tar, archive, |entry: TarEntry, content: &mut dyn Read| {
        let mut bytes = Vec::new();
        content
            .read_to_end(&mut bytes)
            .map_err(|source| ReaderError::Read {
                archive: archive.to_owned(),
                entry: Some(entry.path.absolute()),
                source,
            })?;
        out.push((entry, bytes));
        Ok::<_, ReaderError>(ControlFlow::Continue(()))
    })
    .map_err(|source| ApkError::Tar {
        archive: archive.to_owned(),
        source: Box::new(source),
    })?;
    Ok(out)
}

impl SignedArchive {
    /// Splits `bytes` and reads the leading signature members; `archive` names it in errors.
    pub fn open(bytes: &[u8], archive: &str) -> Result<SignedArchive, ApkError> {
        let members = split_members(bytes, archive)?;
        let mut signatures = Vec::new();
        let mut content_start = 0;
        for member in &members {
            let entries = tar_entries(&member.tar, archive)?;
            let all_signs = !entries.is_empty()
                && entries
                    .iter()
                    .all(|(e, _)| e.path.as_str().starts_with(".SIGN."));
            if !all_signs {
                break;
            }
            for (entry, content) in entries {
                let rest = &entry.path.as_str()[".SIGN.".len()..];
                let Some((algorithm, key)) = rest.split_once('.') else {
                    continue;
                };
                signatures.push(SignatureEntry {
                    algorithm: algorithm.to_owned(),
                    key: key.to_owned(),
                    signature: content,
                });
            }
            content_start += 1;
        }
        Ok(SignedArchive {
            members,
            signatures,
            content_start,
        })
    }

    /// Verifies the first signature whose key is in `keyring` over `signed` (raw bytes);
    /// returns the key name used. Signatures of other algorithms (`DSA`) are ignored.
    pub fn verify(
        &self,
        keyring: &Keyring,
        signed: &[u8],
        archive: &str,
    ) -> Result<String, ApkError> {
        if self.signatures.is_empty() {
            return Err(ApkError::Unsigned {
                archive: archive.to_owned(),
            });
        }
        for sig in &self.signatures {
            let Some(key) = keyring.keys.get(&sig.key) else {
                continue;
            };
            let (scheme, hashed) = match sig.algorithm.as_str() {
                "RSA" => (
                    Pkcs1v15Sign::new::<sha1::Sha1>(),
                    sha1::Sha1::digest(signed).to_vec(),
                ),
                "RSA256" => (
                    Pkcs1v15Sign::new::<sha2::Sha256>(),
                    sha2::Sha256::digest(signed).to_vec(),
                ),
                "RSA512" => (
                    Pkcs1v15Sign::new::<sha2::Sha512>(),
                    sha2::Sha512::digest(signed).to_vec(),
                ),
                _ => continue,
            };
            return match key.verify(scheme, &hashed, &sig.signature) {
                Ok(()) => Ok(sig.key.clone()),
                Err(_) => Err(ApkError::BadSignature {
                    archive: archive.to_owned(),
                    key: sig.key.clone(),
                    algorithm: sig.algorithm.clone(),
                }),
            };
        }
        Err(ApkError::UnknownKey {
            archive: archive.to_owned(),
            signers: self.signatures.iter().map(|s| s.key.clone()).collect(),
            known: keyring.names(),
        })
    }
}
