//! A datastore handle: the backup hierarchy (namespaces, groups, snapshots) below a base path.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Error};
use thiserror::Error;

use pbs_api_types::datastore::{group_path, snapshot_path};
use pbs_api_types::names::check_datastore_name;
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType};

use crate::backup_info::{
    BackupInfo, CLIENT_LOG_BLOB_NAME, MANIFEST_BLOB_NAME, PROTECTED_MARKER_NAME,
};
use crate::group_files::{self, NOTES_FILE_NAME, OWNER_FILE_NAME};
use crate::hierarchy::{self, GroupIter, NamespaceIter, SnapshotFilter};
use crate::locks::{
    self, lock_dir_noblock, BackupDirGuard, BackupGroupGuard, LockMode, ManifestLockGuard,
};

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

/// A datastore: name and base directory.
#[derive(Debug)]
pub struct DataStore {
    name: String,
    base_path: PathBuf,
    /// Root of the manifest lock files (normally `pbs_buildcfg::datastore_lock_dir()`).
    lock_dir: PathBuf,
    // MERGE: the `chunk_store: Arc<ChunkStore>` field joins here once the chunk store lands.
}

impl DataStore {
    /// A handle on the datastore `name` stored at `base_path` (which must be a directory).
    pub fn open(name: &str, base_path: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with_lock_dir(name, base_path, pbs_buildcfg::datastore_lock_dir())
    }

    /// Like [`DataStore::open`] with manifest locks below `lock_dir` instead of the system
    /// lock directory.
    pub fn open_with_lock_dir(
        name: &str,
        base_path: impl Into<PathBuf>,
        lock_dir: impl Into<PathBuf>,
    ) -> Result<Self, Error> {
        check_datastore_name(name)?;
        let base_path = base_path.into();
        if !base_path.is_dir() {
            bail!("datastore '{name}': base path {base_path:?} is not a directory");
        }
        Ok(Self {
            name: name.to_string(),
            base_path,
            lock_dir: lock_dir.into(),
        })
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
        let _guard = self.lock_snapshot(ns, dir, LockMode::Exclusive, "possibly running or in use")?;
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
            let snapshot = self.lock_snapshot(
                ns,
                dir,
                LockMode::Exclusive,
                "possibly running or in use",
            )?;
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
            let entry = entry.with_context(|| format!("unable to list snapshot directory {path:?}"))?;
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
                    return Err(Error::from(err)
                        .context(format!("unable to remove unreferenced file {:?}", entry.path())))
                }
            }
        }
        Ok(())
    }
}
