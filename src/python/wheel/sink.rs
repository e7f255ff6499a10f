//! Where a wheel member is collected while it is read: in memory, or in a scratch file once it
//! is larger than [`MEMORY_LIMIT`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layer::FileContent;

/// Members up to this size stay in memory; larger ones go to the scratch directory.
pub const MEMORY_LIMIT: u64 = 256 * 1024;

/// Collects a member in memory, or in a scratch file once it is larger than [`MEMORY_LIMIT`].
pub(crate) struct Sink<'a> {
    scratch: &'a Path,
    memory: Vec<u8>,
    file: Option<(std::io::BufWriter<File>, PathBuf)>,
    size: u64,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(scratch: &'a Path, expected: u64) -> Sink<'a> {
        Sink {
            scratch,
            memory: Vec::with_capacity(expected.min(MEMORY_LIMIT) as usize),
            file: None,
            size: 0,
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.size += buf.len() as u64;
        if self.file.is_none() && self.size > MEMORY_LIMIT {
            let (file, path) = tempfile::Builder::new()
                .prefix("wheel-member-")
                .tempfile_in(self.scratch)?
                .keep()
                .map_err(|e| e.error)?;
            let mut writer = std::io::BufWriter::new(file);
            writer.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some((writer, path));
        }
        match &mut self.file {
            Some((writer, _)) => writer.write_all(buf),
            None => {
                self.memory.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    pub(crate) fn finish(self) -> std::io::Result<FileContent> {
        match self.file {
            Some((writer, path)) => {
                let file = writer.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                Ok(FileContent::HostFile {
                    path,
                    size: self.size,
                    stamp: None,
                })
            }
            None => Ok(FileContent::Bytes(Arc::from(self.memory))),
        }
    }
}
