//! Group, snapshot and manifest locks, and creating locked groups and snapshots.

use std::io;
use std::path::PathBuf;

use anyhow::{Context, Error};

use pbs_api_types::datastore::snapshot_path;
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace};

use crate::locks::{
    self, lock_dir_noblock, BackupDirGuard, BackupGroupGuard, LockMode, ManifestLockGuard,
};

use super::{DataStore, HierarchyError, GROUP_LOCK_WHAT, SNAPSHOT_LOCK_WHAT};

impl DataStore {
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
}
