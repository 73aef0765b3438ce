//! Removing snapshots, groups and unreferenced snapshot files.

use std::io;

use anyhow::{Context, Error};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace};

use crate::backup_info::{CLIENT_LOG_BLOB_NAME, MANIFEST_BLOB_NAME};
use crate::locks::LockMode;

use super::{DataStore, HierarchyError};

impl DataStore {
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
