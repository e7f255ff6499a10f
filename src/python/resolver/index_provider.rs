//! The [`Provider`] over kiln's configured sources ([`IndexClient`]) for one target: versions
//! come from the sources' file lists, ranked for the target by
//! [`crate::python::resolve::candidates`]; dependencies from the PEP 658 `.metadata` file when
//! the source has one, else from the wheel's own METADATA. Listings and metadata are kept for
//! the whole resolution, and [`Provider::prefetch`] reads several projects at once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use pep440_rs::{Version, VersionSpecifiers};

use super::{Dependencies, Provider, Versions};
use crate::python::index::{DistFile, IndexClient, IndexError, MetadataHint, parallel};
use crate::python::metadata::{CoreMetadata, MetadataError};
use crate::python::resolve::{self, Candidate, SelectError, TargetFit};

/// Why [`IndexProvider`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A source could not be read.
    #[error("failed to read the package sources for `{package}`")]
    Index {
        /// The project.
        package: String,
        /// The cause.
        #[source]
        source: Box<IndexError>,
    },
    /// Metadata is unreadable.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The wheel has no readable METADATA.
    #[error("cannot read the METADATA of `{wheel}`: {problem}")]
    Wheel {
        /// The wheel file name.
        wheel: String,
        /// What went wrong.
        problem: String,
    },
}

/// The [`Provider`] over the configured sources, for one target.
pub struct IndexProvider<'a> {
    client: &'a IndexClient,
    fit: &'a TargetFit<'a>,
    files: Mutex<BTreeMap<String, Vec<DistFile>>>,
    metadata: Mutex<BTreeMap<String, CoreMetadata>>,
}

impl<'a> IndexProvider<'a> {
    /// A provider listing files with `client` and ranking them for `fit`.
    pub fn new(client: &'a IndexClient, fit: &'a TargetFit<'a>) -> IndexProvider<'a> {
        IndexProvider {
            client,
            fit,
            files: Mutex::new(BTreeMap::new()),
            metadata: Mutex::new(BTreeMap::new()),
        }
    }

    fn files(&self, name: &str) -> Result<Vec<DistFile>, ProviderError> {
        if let Some(files) = lock(&self.files).get(name) {
            return Ok(files.clone());
        }
        let files = self
            .client
            .files(name)
            .map_err(|source| ProviderError::Index {
                package: name.to_owned(),
                source: Box::new(source),
            })?;
        lock(&self.files).insert(name.to_owned(), files.clone());
        Ok(files)
    }

    /// The core metadata of `candidate`: PEP 658 when the source serves it, else the wheel's.
    pub fn core_metadata(&self, candidate: &Candidate) -> Result<CoreMetadata, ProviderError> {
        let key = candidate.file.filename.clone();
        if let Some(found) = lock(&self.metadata).get(&key) {
            return Ok(found.clone());
        }
        let index_err = |source| ProviderError::Index {
            package: candidate.wheel.name.clone(),
            source: Box::new(source),
        };
        let from_index = match (&candidate.file.location, &candidate.file.metadata) {
            (_, MetadataHint::Absent) => None,
            _ => self
                .client
                .core_metadata(&candidate.file)
                .map_err(index_err)?,
        };
        let (what, bytes) = match from_index {
            Some(bytes) => (format!("{}.metadata", candidate.file.filename), bytes),
            None => {
                let cached = self.client.fetch(&candidate.file).map_err(index_err)?;
                (
                    candidate.file.filename.clone(),
                    wheel_metadata(&cached.path, &candidate.file.filename)?,
                )
            }
        };
        let metadata = CoreMetadata::parse(&what, &bytes)?;
        lock(&self.metadata).insert(key, metadata.clone());
        Ok(metadata)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The bytes of `<name>.dist-info/METADATA` inside a wheel on the host.
pub fn wheel_metadata(path: &std::path::Path, filename: &str) -> Result<Vec<u8>, ProviderError> {
    use std::io::Read as _;
    let problem = |problem: String| ProviderError::Wheel {
        wheel: filename.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| problem(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| problem(e.to_string()))?;
    let member = archive
        .file_names()
        .find(|n| {
            n.split_once('/').is_some_and(|(dir, rest)| {
                dir.ends_with(".dist-info") && rest == "METADATA" && !dir.contains('/')
            })
        })
        .map(str::to_owned)
        .ok_or_else(|| problem("no .dist-info/METADATA member".to_owned()))?;
    let mut bytes = Vec::new();
    archive
        .by_name(&member)
        .map_err(|e| problem(e.to_string()))?
        .take(16 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(e.to_string()))?;
    Ok(bytes)
}

impl Provider for IndexProvider<'_> {
    type Dist = Candidate;
    type Error = ProviderError;

    fn versions(
        &self,
        name: &str,
        specifiers: &VersionSpecifiers,
    ) -> Result<Versions<Candidate>, ProviderError> {
        let files = self.files(name)?;
        match resolve::candidates(name, specifiers, &files, self.fit) {
            Ok(list) => {
                let mut found: Vec<(Version, Candidate)> = Vec::new();
                for candidate in list {
                    // The list is best first within a version: keep the first of each.
                    if found.last().is_none_or(|(v, _)| *v != candidate.version) {
                        found.push((candidate.version.clone(), candidate));
                    }
                }
                Ok(Versions {
                    found,
                    why_none: String::new(),
                })
            }
            Err(error) => Ok(Versions {
                found: Vec::new(),
                why_none: match error {
                    SelectError::NotFound { available, .. } if available.is_empty() => {
                        format!("the sources have no files for it ({})", self.fit.sources)
                    }
                    SelectError::NotFound { available, .. } => {
                        format!("versions there: {}", available.join(", "))
                    }
                    other => other.to_string(),
                },
            }),
        }
    }

    fn prefetch(&self, names: &[String]) {
        // Errors are left for the real request to report.
        parallel(names, |name| {
            let newest = self
                .versions(name, &VersionSpecifiers::empty())
                .ok()
                .and_then(|v| v.found.into_iter().next());
            if let Some((_, candidate)) = newest {
                let _ = self.core_metadata(&candidate);
            }
        });
    }

    fn dependencies(
        &self,
        _name: &str,
        _version: &Version,
        candidate: &Candidate,
    ) -> Result<Dependencies, ProviderError> {
        let metadata = self.core_metadata(candidate)?;
        Ok(Dependencies {
            requires_other_python: metadata
                .requires_python
                .as_ref()
                .filter(|r| !r.contains(self.fit.python))
                .map(|r| r.to_string()),
            display_name: metadata.name,
            requires_dist: metadata.requires_dist,
        })
    }
}
