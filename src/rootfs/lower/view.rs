//! [`LowerFs`] read through [`FsView`]: lookups on the merged index, directory listings and
//! file contents (extracted on demand).

use super::{Data, LowerFs};
use crate::layer::{FileContent, LayerPath, Metadata};
use crate::rootfs::view::{FsNode, FsView, NodeKind, ViewError};

impl FsView for LowerFs {
    fn lstat_exact(&self, path: &LayerPath) -> Result<Option<FsNode>, ViewError> {
        match self.nodes.get(path) {
            Some(node) => Ok(Some(FsNode {
                kind: node.kind.clone(),
                meta: node.meta.clone(),
            })),
            None if path.is_root() => Ok(Some(FsNode {
                kind: NodeKind::Dir,
                meta: Metadata::root_owned(0o755),
            })),
            None => Ok(None),
        }
    }

    fn read_dir(&self, path: &LayerPath) -> Result<Vec<String>, ViewError> {
        self.expect_dir(path)?;
        // Children are the keys below `path` with exactly one more component; the scan covers
        // the subtree (parents are always present, so no child is only implied by a grandchild).
        let skip = if path.is_root() {
            0
        } else {
            path.as_str().len() + 1
        };
        let Ok(start) = path.join("\u{1}") else {
            return Ok(Vec::new());
        };
        Ok(self
            .nodes
            .range(start..)
            .take_while(|(p, _)| p.starts_with(path))
            .filter_map(|(p, _)| {
                let rest = p.as_str().get(skip..)?;
                (!rest.contains('/')).then(|| rest.to_owned())
            })
            .collect())
    }

    fn content(&self, path: &LayerPath) -> Result<FileContent, ViewError> {
        let Some(node) = self.nodes.get(path) else {
            return Err(ViewError::NotFound(path.absolute()));
        };
        let NodeKind::File { size } = node.kind else {
            return Err(ViewError::NotFound(path.absolute()));
        };
        match &node.data {
            Data::Content(content) => Ok(content.clone()),
            Data::Blob { layer, ordinal } => {
                let host = match self.cached(&layer.digest, *ordinal) {
                    Some(host) => host,
                    None => {
                        self.materialize(std::slice::from_ref(path))
                            .map_err(|source| ViewError::Read {
                                path: path.absolute(),
                                source_name: layer.digest.to_string(),
                                source: Box::new(source),
                            })?;
                        self.cached(&layer.digest, *ordinal)
                            .ok_or_else(|| ViewError::NotFound(path.absolute()))?
                    }
                };
                Ok(FileContent::HostFile {
                    path: host,
                    size,
                    stamp: None,
                })
            }
            Data::None => Err(ViewError::NotFound(path.absolute())),
        }
    }
}
