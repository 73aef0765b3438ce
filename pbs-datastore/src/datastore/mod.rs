//! A datastore handle: the backup hierarchy (namespaces, groups, snapshots) below a base path.
//!
//! The handle and its paths live here; the operations are split by job into the
//! submodules (listing, locking and creation, manifest updates, group metadata, removal,
//! garbage collection).

mod gc;
mod listing;
mod locking;
mod manifest_update;
mod metadata;
mod removal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Error};
use thiserror::Error;

use pbs_api_types::datastore::{group_path, snapshot_path};
use pbs_api_types::names::check_datastore_name;
use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace};

use crate::active_operations::{ActiveOperation, ActiveOperations, OperationKind};
use crate::chunk_store::{ChunkStore, DatastoreFSyncLevel};
use crate::locks::{self};
use crate::verify::ChunkOrder;

/// Failures callers need to tell apart (all others are plain [`anyhow::Error`]s).
#[derive(Debug, Error)]
pub enum HierarchyError {
    #[error("namespace not found")]
    NamespaceNotFound(BackupNamespace),
    #[error("cannot create new namespace, parent {0} doesn't already exists")]
    ParentNamespaceMissing(BackupNamespace),
    #[error("backup directory already exists.")]
    SnapshotExists(PathBuf),
    #[error("cannot remove protected snapshot")]
    ProtectedSnapshot(PathBuf),
}

/// Lock name of group directories in error messages.
const GROUP_LOCK_WHAT: &str = "backup group";
/// Lock name of snapshot directories in error messages.
const SNAPSHOT_LOCK_WHAT: &str = "snapshot";

/// The `tuning` options of a datastore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataStoreTuning {
    /// When chunk writes are made durable.
    pub sync_level: DatastoreFSyncLevel,
    /// In which order verify reads chunks.
    pub chunk_order: ChunkOrder,
}

/// A datastore: its backup hierarchy and its chunk store, below one base directory.
#[derive(Debug)]
pub struct DataStore {
    name: String,
    base_path: PathBuf,
    /// Root of the manifest lock files (normally `pbs_buildcfg::datastore_lock_dir()`).
    lock_dir: PathBuf,
    chunk_store: Arc<ChunkStore>,
    tuning: DataStoreTuning,
    /// The operation this handle is counted as, released with the handle.
    operation: Option<ActiveOperation>,
}
impl DataStore {
    /// Opens the datastore `name` stored at `base_path`, with default tuning.
    pub fn open(name: &str, base_path: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with_options(
            name,
            base_path,
            pbs_buildcfg::datastore_lock_dir(),
            DataStoreTuning::default(),
        )
    }

    /// Like [`DataStore::open`] with manifest locks below `lock_dir` instead of the system
    /// lock directory.
    pub fn open_with_lock_dir(
        name: &str,
        base_path: impl Into<PathBuf>,
        lock_dir: impl Into<PathBuf>,
    ) -> Result<Self, Error> {
        Self::open_with_options(name, base_path, lock_dir, DataStoreTuning::default())
    }

    /// Opens a datastore whose chunk store already exists.
    pub fn open_with_options(
        name: &str,
        base_path: impl Into<PathBuf>,
        lock_dir: impl Into<PathBuf>,
        tuning: DataStoreTuning,
    ) -> Result<Self, Error> {
        check_datastore_name(name)?;
        let base_path = base_path.into();
        if !base_path.is_dir() {
            bail!("datastore '{name}': base path {base_path:?} is not a directory");
        }
        let chunk_store = Arc::new(ChunkStore::open(name, &base_path, tuning.sync_level)?);
        Ok(Self {
            name: name.to_string(),
            base_path,
            lock_dir: lock_dir.into(),
            chunk_store,
            tuning,
            operation: None,
        })
    }

    /// Counts this handle as a running `kind` operation on the datastore (visible to all
    /// processes through `counters`) until the handle is dropped.
    pub fn count_operation(
        mut self,
        counters: &ActiveOperations,
        kind: OperationKind,
    ) -> Result<Self, Error> {
        self.operation = Some(counters.start(&self.name, kind)?);
        Ok(self)
    }

    /// The operation this handle is counted as, if any.
    pub fn operation(&self) -> Option<OperationKind> {
        self.operation.as_ref().map(ActiveOperation::kind)
    }

    /// Creates the chunk store of a new datastore at `base_path` and opens it.
    pub fn create(
        name: &str,
        base_path: impl Into<PathBuf>,
        lock_dir: impl Into<PathBuf>,
        tuning: DataStoreTuning,
        progress: &dyn Fn(&str),
    ) -> Result<Self, Error> {
        check_datastore_name(name)?;
        let base_path = base_path.into();
        ChunkStore::create_with_progress(name, &base_path, tuning.sync_level, progress)?;
        Self::open_with_options(name, base_path, lock_dir, tuning)
    }

    /// The chunk store shared by all snapshots of this datastore.
    pub fn chunk_store(&self) -> &Arc<ChunkStore> {
        &self.chunk_store
    }

    /// The tuning options this handle was opened with.
    pub fn tuning(&self) -> DataStoreTuning {
        self.tuning
    }

    /// The datastore name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base directory.
    pub fn base_path(&self) -> &Path {
        &self.base_path
    }

    /// Absolute directory of a namespace.
    pub fn namespace_path(&self, ns: &BackupNamespace) -> PathBuf {
        self.base_path.join(ns.path())
    }

    /// Absolute directory of a group.
    pub fn group_path(&self, ns: &BackupNamespace, group: &BackupGroup) -> PathBuf {
        self.base_path.join(group_path(ns, group))
    }

    /// Absolute directory of a snapshot.
    pub fn snapshot_path(&self, ns: &BackupNamespace, dir: &BackupDir) -> Result<PathBuf, Error> {
        Ok(self.base_path.join(snapshot_path(ns, dir)?))
    }

    /// Path of the manifest lock file of a snapshot.
    pub fn manifest_lock_path(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<PathBuf, Error> {
        Ok(locks::manifest_lock_path_in(
            &self.lock_dir,
            &self.name,
            ns,
            dir,
        )?)
    }
}

#[cfg(test)]
mod tests;
