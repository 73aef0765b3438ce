//! A datastore handle: the backup hierarchy (namespaces, groups, snapshots) below a base path.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Error};
use thiserror::Error;

use pbs_api_types::datastore::{group_path, snapshot_path};
use pbs_api_types::names::check_datastore_name;
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType};

use crate::active_operations::{ActiveOperation, ActiveOperations, OperationKind};
use crate::backup_info::{
    BackupInfo, CLIENT_LOG_BLOB_NAME, MANIFEST_BLOB_NAME, PROTECTED_MARKER_NAME,
};
use crate::chunk_store::{ChunkStore, DatastoreFSyncLevel};
use crate::garbage_collection::{garbage_collection, GarbageCollectionStatus};
use crate::group_files::{self, NOTES_FILE_NAME, OWNER_FILE_NAME};
use crate::hierarchy::{self, GroupIter, NamespaceIter, SnapshotFilter};
use crate::locks::{
    self, lock_dir_noblock, BackupDirGuard, BackupGroupGuard, LockMode, ManifestLockGuard,
};
use crate::manifest::BackupManifest;
use crate::verify::ChunkOrder;
use crate::DataBlob;

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

    /// Runs garbage collection over the whole datastore (spec §8).
    pub fn garbage_collection(
        &self,
        upid: Option<String>,
        log: &dyn Fn(&str),
        abort: &dyn Fn() -> Result<(), Error>,
    ) -> Result<GarbageCollectionStatus, Error> {
        garbage_collection(&self.chunk_store, &self.base_path, upid, log, abort)
    }

    /// Loads and parses a snapshot's manifest (CRC checked); also returns its encoded size.
    pub fn load_manifest(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<(BackupManifest, u64), Error> {
        let path = self.snapshot_path(ns, dir)?.join(MANIFEST_BLOB_NAME);
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("unable to open manifest {path:?}"))?;
        let blob = DataBlob::load_from_reader(&mut file)
            .with_context(|| format!("unable to load manifest {path:?}"))?;
        let raw_size = blob.raw_size();
        let data = blob
            .decode(None, None)
            .with_context(|| format!("unable to decode manifest {path:?}"))?;
        let manifest = BackupManifest::from_data(&data)
            .with_context(|| format!("unable to parse manifest {path:?}"))?;
        Ok((manifest, raw_size))
    }

    /// Rewrites a snapshot's manifest under the manifest lock: load, modify, encode, replace.
    pub fn update_manifest(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        update: impl FnOnce(&mut BackupManifest),
    ) -> Result<(), Error> {
        let _guard = self.lock_manifest(ns, dir)?;
        let (mut manifest, _) = self.load_manifest(ns, dir)?;
        update(&mut manifest);
        let json = manifest.to_string(None)?;
        let blob = DataBlob::encode(json.as_bytes(), None, true)?;
        let path = self.snapshot_path(ns, dir)?.join(MANIFEST_BLOB_NAME);
        pbs_tools::fs::replace_file(
            &path,
            blob.raw_data(),
            pbs_tools::fs::ReplaceOptions::mode(0o644),
        )
        .with_context(|| format!("unable to replace manifest {path:?}"))?;
        Ok(())
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

    // ---- namespaces ----

    /// Whether the namespace directory exists.
    pub fn namespace_exists(&self, ns: &BackupNamespace) -> bool {
        self.namespace_path(ns).is_dir()
    }

    /// Fails with [`HierarchyError::NamespaceNotFound`] unless the namespace exists.
    pub fn check_namespace_exists(&self, ns: &BackupNamespace) -> Result<(), Error> {
        if !self.namespace_exists(ns) {
            return Err(HierarchyError::NamespaceNotFound(ns.clone()).into());
        }
        Ok(())
    }

    /// Creates namespace `parent/name`; the parent must exist.
    pub fn create_namespace(
        &self,
        parent: &BackupNamespace,
        name: &str,
    ) -> Result<BackupNamespace, Error> {
        let child = parent.child(name)?;
        if !self.namespace_exists(parent) {
            return Err(HierarchyError::ParentNamespaceMissing(parent.clone()).into());
        }
        let path = self.namespace_path(&child);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("unable to create namespace '{child}' ({path:?})"))?;
        Ok(child)
    }

    /// Walks `ns` and the namespaces below it (pre-order, sorted), at most `max_depth` levels.
    pub fn iter_namespaces_recursive(
        &self,
        ns: &BackupNamespace,
        max_depth: Option<usize>,
    ) -> NamespaceIter {
        NamespaceIter::new(&self.base_path, ns.clone(), max_depth)
    }

    /// Removes namespace `ns` and everything below it that is empty; with `delete_groups` the
    /// groups are destroyed first. Protected snapshots survive and keep their namespaces.
    /// Returns whether everything requested was removed. The root directory itself stays.
    pub fn remove_namespace_recursive(
        &self,
        ns: &BackupNamespace,
        delete_groups: bool,
    ) -> Result<bool, Error> {
        let mut namespaces = self
            .iter_namespaces_recursive(ns, None)
            .collect::<Result<Vec<_>, _>>()?;
        let mut removed_all = true;

        if delete_groups {
            for ns in &namespaces {
                for group in self.list_groups(ns)? {
                    removed_all &= self.remove_backup_group(ns, &group)?;
                }
            }
        }

        // bottom-up with rmdir: a group or snapshot that appears meanwhile makes it fail safely
        namespaces.sort_by_key(|ns| std::cmp::Reverse(ns.depth()));
        for ns in &namespaces {
            let ns_dir = self.namespace_path(ns);
            for ty in BackupType::ALL {
                let _ = std::fs::remove_dir(ns_dir.join(ty.as_str()));
            }
            let _ = std::fs::remove_dir(ns_dir.join("ns"));
            if ns.is_root() {
                continue;
            }
            match std::fs::remove_dir(&ns_dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(_) => removed_all = false,
            }
        }
        Ok(removed_all)
    }

    // ---- groups and snapshots: listing ----

    /// Lazily lists the groups of a namespace (unsorted within a type).
    pub fn iter_backup_groups(&self, ns: &BackupNamespace) -> Result<GroupIter, Error> {
        GroupIter::new(&self.base_path, ns)
    }

    /// The groups of a namespace, sorted.
    pub fn list_groups(&self, ns: &BackupNamespace) -> Result<Vec<BackupGroup>, Error> {
        hierarchy::list_groups(&self.base_path, ns)
    }

    /// The snapshots of a group, oldest first.
    pub fn list_snapshots(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
    ) -> Result<Vec<BackupInfo>, Error> {
        hierarchy::list_snapshots(&self.base_path, ns, group)
    }

    /// Snapshots below `ns` (up to `max_depth` levels) of the groups matching `filter`.
    pub fn list_snapshots_filtered(
        &self,
        ns: &BackupNamespace,
        max_depth: Option<usize>,
        filter: &SnapshotFilter,
    ) -> Result<Vec<BackupInfo>, Error> {
        hierarchy::list_snapshots_filtered(&self.base_path, ns, max_depth, filter)
    }

    /// Backup time of the newest finished snapshot; `None` if none or no such group.
    pub fn last_successful_backup(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
    ) -> Result<Option<i64>, Error> {
        hierarchy::last_successful_backup(&self.base_path, ns, group)
    }

    /// The newest snapshot of a group, optionally only among finished ones.
    pub fn last_backup(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
        only_finished: bool,
    ) -> Result<Option<BackupInfo>, Error> {
        hierarchy::last_backup(&self.base_path, ns, group, only_finished)
    }

    // ---- locks ----

    /// Exclusive non-blocking lock on a group directory.
    pub fn lock_group(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
        busy_msg: &str,
    ) -> Result<BackupGroupGuard, Error> {
        let path = self.group_path(ns, group);
        Ok(lock_dir_noblock(
            &path,
            GROUP_LOCK_WHAT,
            busy_msg,
            LockMode::Exclusive,
        )?)
    }

    /// Non-blocking lock on a snapshot directory: exclusive to change or destroy it, shared to
    /// read it.
    pub fn lock_snapshot(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        mode: LockMode,
        busy_msg: &str,
    ) -> Result<BackupDirGuard, Error> {
        let path = self.snapshot_path(ns, dir)?;
        Ok(lock_dir_noblock(&path, SNAPSHOT_LOCK_WHAT, busy_msg, mode)?)
    }

    /// Exclusive manifest lock of a snapshot, waiting up to 5 seconds.
    pub fn lock_manifest(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<ManifestLockGuard, Error> {
        Ok(locks::lock_manifest(&self.manifest_lock_path(ns, dir)?)?)
    }

    // ---- creating backups ----

    /// Creates (if needed) and locks a group for a backup session; a new group gets `auth_id`
    /// as owner. Returns the group's owner (which the caller checks) and the group lock.
    pub fn create_locked_backup_group(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
        auth_id: &Authid,
    ) -> Result<(Authid, BackupGroupGuard), Error> {
        self.check_namespace_exists(ns)?;
        let type_path = self.namespace_path(ns).join(group.ty.as_str());
        std::fs::create_dir_all(&type_path)
            .with_context(|| format!("unable to create backup type directory {type_path:?}"))?;

        let path = type_path.join(&group.id);
        let is_new = match std::fs::create_dir(&path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
            Err(err) => {
                return Err(Error::from(err)
                    .context(format!("unable to create backup group directory {path:?}")))
            }
        };
        let guard = self.lock_group(ns, group, "another backup is already running")?;
        if is_new {
            self.set_owner(ns, group, auth_id, false)?;
        }
        let owner = self.get_owner(ns, group)?;
        Ok((owner, guard))
    }

    /// Creates and exclusively locks a snapshot directory. Returns its path relative to the
    /// datastore, whether it was created now (`false`: it existed and is locked anyway, for
    /// re-syncing), and the lock.
    pub fn create_locked_backup_dir(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<(PathBuf, bool, BackupDirGuard), Error> {
        let relative = snapshot_path(ns, dir)?;
        let path = self.base_path.join(&relative);
        let is_new = match std::fs::create_dir(&path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
            Err(err) => {
                return Err(Error::from(err)
                    .context(format!("unable to create snapshot directory {path:?}")))
            }
        };
        let guard = self.lock_snapshot(
            ns,
            dir,
            LockMode::Exclusive,
            "internal error - tried creating snapshot that's already in use",
        )?;
        Ok((relative, is_new, guard))
    }

    /// [`DataStore::create_locked_backup_dir`] for a new backup: the snapshot must not exist.
    pub fn create_new_locked_backup_dir(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<(PathBuf, BackupDirGuard), Error> {
        let (relative, is_new, guard) = self.create_locked_backup_dir(ns, dir)?;
        if !is_new {
            return Err(HierarchyError::SnapshotExists(relative).into());
        }
        Ok((relative, guard))
    }

    // ---- owner, notes, protection ----

    /// The owner of a group.
    pub fn get_owner(&self, ns: &BackupNamespace, group: &BackupGroup) -> Result<Authid, Error> {
        group_files::read_owner(&self.group_path(ns, group).join(OWNER_FILE_NAME))
    }

    /// Sets the owner of a group; without `force` only if none is set yet.
    pub fn set_owner(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
        auth_id: &Authid,
        force: bool,
    ) -> Result<(), Error> {
        group_files::write_owner(
            &self.group_path(ns, group).join(OWNER_FILE_NAME),
            auth_id,
            force,
        )
    }

    /// The notes of a group (empty if none were set).
    pub fn get_group_notes(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
    ) -> Result<String, Error> {
        group_files::read_notes(&self.group_path(ns, group).join(NOTES_FILE_NAME))
    }

    /// Replaces the notes of a group atomically.
    pub fn set_group_notes(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
        notes: &str,
    ) -> Result<(), Error> {
        let path = self.group_path(ns, group);
        if !path.is_dir() {
            bail!("backup group '{group}' does not exist");
        }
        group_files::write_notes(&path.join(NOTES_FILE_NAME), notes)
    }

    /// Whether a snapshot carries the `.protected` marker.
    pub fn is_protected(&self, ns: &BackupNamespace, dir: &BackupDir) -> Result<bool, Error> {
        let marker = self.snapshot_path(ns, dir)?.join(PROTECTED_MARKER_NAME);
        Ok(std::fs::symlink_metadata(marker).is_ok())
    }

    /// Sets or clears the protection of a snapshot under an exclusive snapshot lock.
    pub fn set_protection(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        protected: bool,
    ) -> Result<(), Error> {
        let _guard =
            self.lock_snapshot(ns, dir, LockMode::Exclusive, "possibly running or in use")?;
        let marker = self.snapshot_path(ns, dir)?.join(PROTECTED_MARKER_NAME);
        if protected {
            group_files::touch(&marker)
                .with_context(|| format!("unable to create protection marker {marker:?}"))?;
        } else {
            match std::fs::remove_file(&marker) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::from(err)
                        .context(format!("unable to remove protection marker {marker:?}")))
                }
            }
        }
        Ok(())
    }

    // ---- removing ----

    /// Destroys a snapshot. Unless `force`d (aborted backup sessions, which hold the lock
    /// already) the snapshot and manifest locks are taken first. Protected snapshots fail.
    pub fn remove_backup_dir(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        force: bool,
    ) -> Result<(), Error> {
        let path = self.snapshot_path(ns, dir)?;
        let _locks = if force {
            None
        } else {
            let snapshot =
                self.lock_snapshot(ns, dir, LockMode::Exclusive, "possibly running or in use")?;
            Some((snapshot, self.lock_manifest(ns, dir)?))
        };
        if self.is_protected(ns, dir)? {
            return Err(HierarchyError::ProtectedSnapshot(path).into());
        }
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("removing backup snapshot {path:?} failed"))?;
        // the lock file is of no use any more; its removal is best effort
        if let Ok(lock_path) = self.manifest_lock_path(ns, dir) {
            let _ = std::fs::remove_file(lock_path);
        }
        Ok(())
    }

    /// Destroys a group under its lock, keeping protected snapshots (and then the group).
    /// Returns whether the group is gone.
    pub fn remove_backup_group(
        &self,
        ns: &BackupNamespace,
        group: &BackupGroup,
    ) -> Result<bool, Error> {
        let path = self.group_path(ns, group);
        let _guard = self.lock_group(ns, group, "possible running backup")?;
        let mut removed_all = true;
        for info in self.list_snapshots(ns, group)? {
            if info.protected {
                removed_all = false;
                continue;
            }
            self.remove_backup_dir(ns, &info.backup_dir, false)?;
        }
        if removed_all {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing backup group directory {path:?} failed"))?;
        }
        Ok(removed_all)
    }

    /// Deletes every regular file of a snapshot that is neither the manifest, the client log
    /// nor listed in `keep` (note: this includes `.protected`).
    pub fn cleanup_unreferenced_files(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        keep: &[String],
    ) -> Result<(), Error> {
        let path = self.snapshot_path(ns, dir)?;
        let entries = std::fs::read_dir(&path)
            .with_context(|| format!("unable to list snapshot directory {path:?}"))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("unable to list snapshot directory {path:?}"))?;
            let name = entry.file_name();
            if let Some(name) = name.to_str() {
                if name == MANIFEST_BLOB_NAME
                    || name == CLIENT_LOG_BLOB_NAME
                    || keep.iter().any(|k| k == name)
                {
                    continue;
                }
            }
            let is_file = entry
                .file_type()
                .with_context(|| format!("unable to stat {:?}", entry.path()))?
                .is_file();
            if !is_file {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::from(err).context(format!(
                        "unable to remove unreferenced file {:?}",
                        entry.path()
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        store: DataStore,
        lock_dir: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = crate::chunk_store::test_store::store_tempdir();
        let base = tmp.path().join("store");
        let lock_dir = tmp.path().join("locks");
        let store = DataStore::create(
            "store1",
            &base,
            &lock_dir,
            DataStoreTuning::default(),
            &|_| {},
        )
        .unwrap();
        Fixture {
            _tmp: tmp,
            store,
            lock_dir,
        }
    }

    fn ns(s: &str) -> BackupNamespace {
        BackupNamespace::new(s).unwrap()
    }
    fn group(s: &str) -> BackupGroup {
        s.parse().unwrap()
    }
    fn snap(s: &str) -> BackupDir {
        s.parse().unwrap()
    }
    fn auth(s: &str) -> Authid {
        s.parse().unwrap()
    }

    /// Creates a snapshot directory with the given files (no locks kept).
    fn make_snapshot(store: &DataStore, ns: &BackupNamespace, dir: &BackupDir, files: &[&str]) {
        let path = store.snapshot_path(ns, dir).unwrap();
        std::fs::create_dir_all(&path).unwrap();
        for f in files {
            std::fs::write(path.join(f), b"x").unwrap();
        }
    }

    fn finished(store: &DataStore, ns: &BackupNamespace, dir: &str) {
        make_snapshot(
            store,
            ns,
            &snap(dir),
            &["index.json.blob", "root.pxar.didx"],
        );
    }

    #[test]
    fn open_checks_name_and_path() {
        let f = fixture();
        assert!(DataStore::open("ab", f.store.base_path()).is_err());
        assert!(DataStore::open("store2", f.store.base_path().join("missing")).is_err());
        assert_eq!(f.store.name(), "store1");
    }

    #[test]
    fn namespace_create_rules() {
        let f = fixture();
        let s = &f.store;
        assert!(s.namespace_exists(&BackupNamespace::root()));
        let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
        let ab = s.create_namespace(&a, "b").unwrap();
        assert_eq!(ab.to_string(), "a/b");
        assert!(s.base_path().join("ns/a/ns/b").is_dir());
        assert_eq!(s.namespace_path(&ab), s.base_path().join("ns/a/ns/b"));
        // creating an existing namespace again is fine (mkdir -p)
        s.create_namespace(&a, "b").unwrap();

        let err = s.create_namespace(&ns("x/y"), "z").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot create new namespace, parent x/y doesn't already exists"
        );
        assert!(matches!(
            err.downcast_ref::<HierarchyError>(),
            Some(HierarchyError::ParentNamespaceMissing(_))
        ));
        assert!(s.create_namespace(&a, "bad/name").is_err());
        assert!(s.create_namespace(&a, ".hidden").is_err());

        let mut deep = BackupNamespace::root();
        for name in ["1", "2", "3", "4", "5", "6", "7"] {
            deep = s.create_namespace(&deep, name).unwrap();
        }
        assert_eq!(
            s.create_namespace(&deep, "8").unwrap_err().to_string(),
            "namespace too deep, 7 >= max 7"
        );
    }

    #[test]
    fn namespace_walk_order_and_depth() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let b = s.create_namespace(&root, "b").unwrap();
        let a = s.create_namespace(&root, "a").unwrap();
        s.create_namespace(&a, "y").unwrap();
        let ax = s.create_namespace(&a, "x").unwrap();
        s.create_namespace(&ax, "deep").unwrap();
        s.create_namespace(&b, "z").unwrap();
        // junk below ns/: a file and a directory with an invalid name
        std::fs::write(s.base_path().join("ns/file"), b"").unwrap();
        std::fs::create_dir(s.base_path().join("ns/.bad")).unwrap();

        let walk = |start: &BackupNamespace, depth| -> Vec<String> {
            s.iter_namespaces_recursive(start, depth)
                .map(|ns| ns.unwrap().to_string())
                .collect()
        };
        assert_eq!(
            walk(&root, None),
            ["", "a", "a/x", "a/x/deep", "a/y", "b", "b/z"]
        );
        assert_eq!(walk(&root, Some(0)), [""]);
        assert_eq!(walk(&root, Some(1)), ["", "a", "b"]);
        assert_eq!(walk(&a, Some(1)), ["a", "a/x", "a/y"]);
        assert_eq!(walk(&a, None), ["a", "a/x", "a/x/deep", "a/y"]);
    }

    #[test]
    fn namespace_removal_rules() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let a = s.create_namespace(&root, "a").unwrap();
        let ab = s.create_namespace(&a, "b").unwrap();
        let empty = s.create_namespace(&root, "empty").unwrap();

        // empty namespaces go away without deleting groups
        assert!(s.remove_namespace_recursive(&empty, false).unwrap());
        assert!(!s.namespace_exists(&empty));

        finished(s, &ab, "vm/100/2020-01-01T00:00:00Z");
        finished(s, &ab, "vm/100/2020-01-02T00:00:00Z");
        finished(s, &a, "ct/7/2020-01-01T00:00:00Z");

        // groups are kept unless requested: nothing is removed
        assert!(!s.remove_namespace_recursive(&a, false).unwrap());
        assert_eq!(s.list_snapshots(&ab, &group("vm/100")).unwrap().len(), 2);
        assert!(s.namespace_exists(&ab));

        // a protected snapshot keeps its group and namespaces alive
        s.set_protection(&ab, &snap("vm/100/2020-01-01T00:00:00Z"), true)
            .unwrap();
        assert!(!s.remove_namespace_recursive(&a, true).unwrap());
        let left = s.list_snapshots(&ab, &group("vm/100")).unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].protected);
        assert!(s.namespace_exists(&ab));
        assert!(s.list_groups(&a).unwrap().is_empty());
        assert!(!s.namespace_path(&a).join("ct").exists());

        s.set_protection(&ab, &snap("vm/100/2020-01-01T00:00:00Z"), false)
            .unwrap();
        assert!(s.remove_namespace_recursive(&a, true).unwrap());
        assert!(!s.namespace_exists(&a));
        assert!(s.namespace_exists(&root));
        assert_eq!(
            s.iter_namespaces_recursive(&root, None).count(),
            1,
            "only the root is left"
        );
    }

    /// Datastore with junk that listings must ignore.
    fn junk_fixture() -> Fixture {
        let f = fixture();
        let base = f.store.base_path().to_path_buf();
        for dir in [
            ".chunks/0000",
            "vm/100/2020-01-01T00:00:00Z",
            "vm/100/2020-01-02T00:00:00Z",
            "vm/100/not-a-time",
            "vm/100/2020-13-45T00:00:00Z",
            "vm/100/2020-01-01T00:00:60Z",
            "vm/.hidden",
            "vm/bad name",
            "vm/9",
            "host/elsa",
            "xx/100",
            "VM/100",
        ] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        for file in [
            "vm/101",
            "ct",
            "vm/100/2020-01-03T00:00:00Z",
            "vm/100/owner",
        ] {
            std::fs::write(base.join(file), b"").unwrap();
        }
        std::fs::write(
            base.join("vm/100/2020-01-02T00:00:00Z/index.json.blob"),
            b"",
        )
        .unwrap();
        f
    }

    #[test]
    fn listing_ignores_junk() {
        let f = junk_fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let groups: Vec<String> = s
            .list_groups(&root)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(groups, ["host/elsa", "vm/9", "vm/100"]);
        let mut lazy: Vec<BackupGroup> = s
            .iter_backup_groups(&root)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        lazy.sort();
        assert_eq!(lazy, s.list_groups(&root).unwrap());

        let snaps = s.list_snapshots(&root, &group("vm/100")).unwrap();
        let names: Vec<String> = snaps.iter().map(|i| i.backup_dir.to_string()).collect();
        assert_eq!(
            names,
            ["vm/100/2020-01-01T00:00:00Z", "vm/100/2020-01-02T00:00:00Z"]
        );
        assert!(!snaps[0].is_finished());
        assert!(snaps[1].is_finished());
        assert!(s.list_snapshots(&root, &group("vm/404")).is_err());
        assert!(s.list_groups(&ns("missing")).is_err());
    }

    #[test]
    fn filtered_snapshot_listing() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let a = s.create_namespace(&root, "a").unwrap();
        let ab = s.create_namespace(&a, "b").unwrap();
        finished(s, &root, "vm/1/2020-01-01T00:00:00Z");
        finished(s, &root, "ct/2/2020-01-01T00:00:00Z");
        finished(s, &a, "vm/1/2020-01-02T00:00:00Z");
        finished(s, &ab, "vm/1/2020-01-03T00:00:00Z");
        finished(s, &ab, "host/h/2020-01-03T00:00:00Z");

        let list = |ns: &BackupNamespace, depth, filter: SnapshotFilter| -> Vec<String> {
            s.list_snapshots_filtered(ns, depth, &filter)
                .unwrap()
                .iter()
                .map(|i| format!("{}:{}", i.ns, i.backup_dir))
                .collect()
        };
        assert_eq!(
            list(&root, Some(0), SnapshotFilter::default()),
            [":ct/2/2020-01-01T00:00:00Z", ":vm/1/2020-01-01T00:00:00Z"]
        );
        let vm = SnapshotFilter {
            backup_type: Some(BackupType::Vm),
            group: None,
        };
        assert_eq!(
            list(&root, None, vm.clone()),
            [
                ":vm/1/2020-01-01T00:00:00Z",
                "a:vm/1/2020-01-02T00:00:00Z",
                "a/b:vm/1/2020-01-03T00:00:00Z"
            ]
        );
        assert_eq!(list(&a, Some(0), vm), ["a:vm/1/2020-01-02T00:00:00Z"]);
        let host_h = SnapshotFilter {
            backup_type: None,
            group: Some(group("host/h")),
        };
        assert_eq!(
            list(&root, None, host_h.clone()),
            ["a/b:host/h/2020-01-03T00:00:00Z"]
        );
        assert!(list(&root, Some(1), host_h).is_empty());
    }

    #[test]
    fn last_successful_backup_ignores_unfinished() {
        let f = junk_fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let g = group("vm/100");
        let t2 = pbs_api_types::time::parse_rfc3339("2020-01-02T00:00:00Z").unwrap();
        assert_eq!(s.last_successful_backup(&root, &g).unwrap(), Some(t2));
        // a newer unfinished snapshot changes nothing
        make_snapshot(s, &root, &snap("vm/100/2020-02-01T00:00:00Z"), &["a.didx"]);
        assert_eq!(s.last_successful_backup(&root, &g).unwrap(), Some(t2));
        assert_eq!(
            s.last_backup(&root, &g, true)
                .unwrap()
                .unwrap()
                .backup_dir
                .time,
            t2
        );
        assert_eq!(
            s.last_backup(&root, &g, false)
                .unwrap()
                .unwrap()
                .backup_dir
                .to_string(),
            "vm/100/2020-02-01T00:00:00Z"
        );
        assert_eq!(
            s.last_successful_backup(&root, &group("vm/9")).unwrap(),
            None
        );
        assert_eq!(
            s.last_successful_backup(&root, &group("vm/404")).unwrap(),
            None
        );
        assert!(s
            .last_backup(&root, &group("vm/9"), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn locked_group_creation_owner_and_conflict() {
        let f = fixture();
        let s = &f.store;
        let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
        let g = group("vm/100");
        let alice_token = auth("alice@pbs!backup");

        let (owner, guard) = s.create_locked_backup_group(&a, &g, &alice_token).unwrap();
        assert_eq!(owner, alice_token);
        let owner_file = s.group_path(&a, &g).join("owner");
        assert_eq!(std::fs::read(&owner_file).unwrap(), b"alice@pbs!backup\n");

        // a second open of the directory conflicts even within this process
        let err = s
            .create_locked_backup_group(&a, &g, &alice_token)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unable to acquire lock on backup group directory {:?} - another backup is already running",
                s.group_path(&a, &g)
            )
        );
        assert!(err.downcast_ref::<locks::LockError>().unwrap().is_busy());
        drop(guard);

        // an existing group keeps its owner; the caller checks it
        let (owner, _guard) = s
            .create_locked_backup_group(&a, &g, &auth("bob@pbs"))
            .unwrap();
        assert_eq!(owner, alice_token);
        assert!(group_files::check_backup_owner(&owner, &auth("bob@pbs")).is_err());
        assert!(group_files::check_backup_owner(&owner, &auth("alice@pbs")).is_ok());

        let err = s
            .create_locked_backup_group(&ns("missing"), &g, &alice_token)
            .unwrap_err();
        assert_eq!(err.to_string(), "namespace not found");
        assert!(!s.namespace_path(&ns("missing")).exists());
    }

    #[test]
    fn owner_change() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let g = group("ct/1");
        drop(
            s.create_locked_backup_group(&root, &g, &auth("a@pbs"))
                .unwrap(),
        );
        assert!(s.set_owner(&root, &g, &auth("b@pbs"), false).is_err());
        assert_eq!(s.get_owner(&root, &g).unwrap(), auth("a@pbs"));
        s.set_owner(&root, &g, &auth("b@pbs!t"), true).unwrap();
        assert_eq!(s.get_owner(&root, &g).unwrap(), auth("b@pbs!t"));
        assert!(s.get_owner(&root, &group("ct/2")).is_err());
    }

    #[test]
    fn group_notes() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let g = group("host/x");
        assert!(s.set_group_notes(&root, &g, "n").is_err());
        drop(
            s.create_locked_backup_group(&root, &g, &auth("a@pbs"))
                .unwrap(),
        );
        assert_eq!(s.get_group_notes(&root, &g).unwrap(), "");
        s.set_group_notes(&root, &g, "line 1\nline 2").unwrap();
        assert_eq!(s.get_group_notes(&root, &g).unwrap(), "line 1\nline 2");
        // notes are no snapshot and no junk for listings
        assert!(s.list_snapshots(&root, &g).unwrap().is_empty());
    }

    #[test]
    fn locked_snapshot_creation() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let dir = BackupDir::new(group("vm/100"), 1593179765).unwrap();
        drop(
            s.create_locked_backup_group(&root, &dir.group, &auth("a@pbs"))
                .unwrap(),
        );

        let (relative, is_new, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
        assert_eq!(relative, PathBuf::from("vm/100/2020-06-26T13:56:05Z"));
        assert!(is_new);
        assert!(s.create_locked_backup_dir(&root, &dir).is_err());
        assert!(s
            .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
            .is_err());
        drop(guard);

        let (_, is_new, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
        assert!(!is_new);
        drop(guard);
        let err = s.create_new_locked_backup_dir(&root, &dir).unwrap_err();
        assert_eq!(err.to_string(), "backup directory already exists.");
    }

    #[test]
    fn shared_and_exclusive_snapshot_locks() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        finished(s, &root, "vm/1/2020-01-01T00:00:00Z");
        let dir = snap("vm/1/2020-01-01T00:00:00Z");

        let r1 = s
            .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
            .unwrap();
        let r2 = s
            .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
            .unwrap();
        let err = s
            .lock_snapshot(
                &root,
                &dir,
                LockMode::Exclusive,
                "possibly running or in use",
            )
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unable to acquire lock on snapshot directory"));
        // readers block removal and protection changes
        assert!(s.remove_backup_dir(&root, &dir, false).is_err());
        assert!(s.set_protection(&root, &dir, true).is_err());
        drop((r1, r2));

        let w = s
            .lock_snapshot(&root, &dir, LockMode::Exclusive, "in use")
            .unwrap();
        assert!(s
            .lock_snapshot(&root, &dir, LockMode::Shared, "in use")
            .is_err());
        drop(w);
        s.remove_backup_dir(&root, &dir, false).unwrap();
    }

    #[test]
    fn protected_snapshot_refuses_removal() {
        let f = fixture();
        let s = &f.store;
        let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
        let dir = snap("vm/100/2020-06-26T13:56:05Z");
        finished(s, &a, "vm/100/2020-06-26T13:56:05Z");
        finished(s, &a, "vm/100/2020-06-27T13:56:05Z");

        s.set_protection(&a, &dir, true).unwrap();
        assert!(s.is_protected(&a, &dir).unwrap());
        for force in [false, true] {
            let err = s.remove_backup_dir(&a, &dir, force).unwrap_err();
            assert_eq!(err.to_string(), "cannot remove protected snapshot");
            assert!(matches!(
                err.downcast_ref::<HierarchyError>(),
                Some(HierarchyError::ProtectedSnapshot(_))
            ));
        }
        assert!(s.snapshot_path(&a, &dir).unwrap().is_dir());

        // group removal keeps the protected snapshot and reports it
        assert!(!s.remove_backup_group(&a, &dir.group).unwrap());
        let left = s.list_snapshots(&a, &dir.group).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].backup_dir, dir);

        s.set_protection(&a, &dir, false).unwrap();
        s.set_protection(&a, &dir, false).unwrap();
        assert!(!s.is_protected(&a, &dir).unwrap());
        assert!(s.remove_backup_group(&a, &dir.group).unwrap());
        assert!(!s.group_path(&a, &dir.group).exists());
    }

    #[test]
    fn manifest_lock_location_and_cleanup() {
        let f = fixture();
        let s = &f.store;
        let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
        let ab = s.create_namespace(&a, "b").unwrap();
        let dir = BackupDir::new(group("vm/100"), 1593179765).unwrap();
        finished(s, &ab, "vm/100/2020-06-26T13:56:05Z");

        let expected = f.lock_dir.join(
            "store1/ns/a/ns/b/vm/100/2020-06-26T13:56:05Z/2020-06-26T13:56:05Z.index.json.lck",
        );
        assert_eq!(s.manifest_lock_path(&ab, &dir).unwrap(), expected);
        let guard = s.lock_manifest(&ab, &dir).unwrap();
        assert!(expected.is_file());
        // removal waits for the manifest lock (up to 5 s) and then gives up
        let start = std::time::Instant::now();
        assert!(s.remove_backup_dir(&ab, &dir, false).is_err());
        assert!(start.elapsed() >= locks::MANIFEST_LOCK_TIMEOUT);
        drop(guard);

        s.remove_backup_dir(&ab, &dir, false).unwrap();
        assert!(!s.snapshot_path(&ab, &dir).unwrap().exists());
        assert!(!expected.exists(), "lock file removed after destroy");
    }

    #[test]
    fn forced_removal_skips_locks() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let dir = BackupDir::new(group("vm/1"), 1).unwrap();
        drop(
            s.create_locked_backup_group(&root, &dir.group, &auth("a@pbs"))
                .unwrap(),
        );
        let (_, _, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
        assert!(s.remove_backup_dir(&root, &dir, false).is_err());
        s.remove_backup_dir(&root, &dir, true).unwrap();
        drop(guard);
        assert!(s.list_snapshots(&root, &dir.group).unwrap().is_empty());
    }

    #[test]
    fn cleanup_unreferenced() {
        let f = fixture();
        let s = &f.store;
        let root = BackupNamespace::root();
        let dir = snap("host/h/2020-01-01T00:00:00Z");
        make_snapshot(
            s,
            &root,
            &dir,
            &[
                "index.json.blob",
                "client.log.blob",
                "keep.didx",
                "stale.fidx",
                "other.blob",
                ".protected",
                "x.tmp_didx",
            ],
        );
        let path = s.snapshot_path(&root, &dir).unwrap();
        std::fs::create_dir(path.join("subdir")).unwrap();
        s.cleanup_unreferenced_files(&root, &dir, &["keep.didx".to_string()])
            .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["client.log.blob", "index.json.blob", "keep.didx", "subdir"]
        );
    }
}
