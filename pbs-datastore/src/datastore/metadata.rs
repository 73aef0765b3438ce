//! Group owner and notes, snapshot protection.

use std::io;

use anyhow::{bail, Context, Error};

use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace};

use crate::backup_info::PROTECTED_MARKER_NAME;
use crate::group_files::{self, NOTES_FILE_NAME, OWNER_FILE_NAME};
use crate::locks::LockMode;

use super::DataStore;

impl DataStore {
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
}
