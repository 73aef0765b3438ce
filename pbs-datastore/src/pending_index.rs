//! The temporary file of an index being written (`.tmp_fidx` / `.tmp_didx` next to the final
//! name): created under the chunk store's shared lock, so GC waits for it, renamed into place
//! on commit and removed if the writer goes away before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, format_err, Error};

use crate::chunk_store::ChunkStore;
use crate::process_locker::ProcessLockSharedGuard;

/// An index file under construction.
pub(crate) struct PendingIndex {
    _store: Arc<ChunkStore>,
    _lock: ProcessLockSharedGuard,
    /// `fixed` or `dynamic`, for messages.
    kind: &'static str,
    path: PathBuf,
    tmp_path: PathBuf,
    committed: bool,
}

impl PendingIndex {
    /// Creates (truncating) `path` with extension `tmp_extension`, readable too if `read`.
    pub(crate) fn create(
        store: Arc<ChunkStore>,
        path: &Path,
        kind: &'static str,
        tmp_extension: &str,
        read: bool,
    ) -> Result<(Self, File), Error> {
        let lock = store.try_shared_lock()?;
        let tmp_path = path.with_extension(tmp_extension);
        let file = OpenOptions::new()
            .read(read)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp_path)
            .map_err(|err| format_err!("unable to create {kind} index {tmp_path:?} - {err}"))?;
        let pending = Self {
            _store: store,
            _lock: lock,
            kind,
            path: path.to_path_buf(),
            tmp_path,
            committed: false,
        };
        Ok((pending, file))
    }

    /// The final path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// An I/O failure on the temporary file.
    pub(crate) fn io_error(&self, what: &str, err: std::io::Error) -> Error {
        format_err!(
            "{} index {:?}: {what} failed - {err}",
            self.kind,
            self.tmp_path
        )
    }

    /// Fails once the index was committed.
    pub(crate) fn ensure_open(&self) -> Result<(), Error> {
        if self.committed {
            bail!("{} index {:?}: already closed", self.kind, self.path);
        }
        Ok(())
    }

    /// Renames the finished temporary file to the final path.
    pub(crate) fn commit(&mut self) -> Result<(), Error> {
        self.ensure_open()?;
        std::fs::rename(&self.tmp_path, &self.path).map_err(|err| {
            format_err!(
                "unable to rename {} index {:?} to {:?} - {err}",
                self.kind,
                self.tmp_path,
                self.path
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingIndex {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}
