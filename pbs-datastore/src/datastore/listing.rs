//! Namespaces, groups and snapshots: existence, creation of namespaces, listings.

use std::io;

use anyhow::{Context, Error};

use pbs_api_types::{BackupGroup, BackupNamespace, BackupType};

use crate::backup_info::BackupInfo;
use crate::hierarchy::{self, GroupIter, NamespaceIter, SnapshotFilter};

use super::{DataStore, HierarchyError};

impl DataStore {
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
}
