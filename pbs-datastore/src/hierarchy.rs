//! Walking the directory tree of a datastore: namespaces, groups and snapshots.
//!
//! Only directories with valid names count; everything else (files named like groups, bad
//! names, `.chunks`, temporary files) is ignored, as other tools may leave junk around.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Error};

use pbs_api_types::datastore::{group_path, snapshot_path};
use pbs_api_types::names::{is_safe_id, is_time_dir_name};
use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace, BackupType, MAX_NAMESPACE_DEPTH};

use crate::backup_info::{BackupInfo, MANIFEST_BLOB_NAME};

/// Names of the sub-directories of `path` (non-UTF-8 names skipped); a missing `path` yields
/// nothing when `missing_ok`.
fn sub_directories(path: &Path, missing_ok: bool) -> io::Result<Vec<String>> {
    let iter = match std::fs::read_dir(path) {
        Ok(iter) => iter,
        Err(err) if missing_ok && err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut dirs = Vec::new();
    for entry in iter {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // file_type() uses the readdir type and falls back to lstat when it is unknown
        match entry.file_type() {
            Ok(ty) if ty.is_dir() => dirs.push(name),
            Ok(_) => {}
            // vanished meanwhile
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(dirs)
}

/// Namespaces directly below `ns`, sorted by name.
pub fn list_child_namespaces(
    base: &Path,
    ns: &BackupNamespace,
) -> Result<Vec<BackupNamespace>, Error> {
    if ns.depth() >= MAX_NAMESPACE_DEPTH {
        return Ok(Vec::new());
    }
    let path = base.join(ns.path()).join("ns");
    let mut names = sub_directories(&path, true)
        .with_context(|| format!("unable to list namespaces in {path:?}"))?;
    names.sort_unstable();
    // names that break the namespace rules (bad characters, too long) are junk
    Ok(names
        .iter()
        .filter_map(|name| ns.child(name).ok())
        .collect())
}

/// Depth-first pre-order walk over `ns` and the namespaces below it, at most `max_depth`
/// levels deep (`None` = no limit besides the maximum namespace depth).
pub struct NamespaceIter {
    base: PathBuf,
    max_depth: usize,
    start_depth: usize,
    stack: Vec<BackupNamespace>,
}

impl NamespaceIter {
    /// Starts a walk at `ns` (which is yielded first).
    pub fn new(base: &Path, ns: BackupNamespace, max_depth: Option<usize>) -> Self {
        Self {
            base: base.to_path_buf(),
            max_depth: max_depth.unwrap_or(MAX_NAMESPACE_DEPTH),
            start_depth: ns.depth(),
            stack: vec![ns],
        }
    }
}

impl Iterator for NamespaceIter {
    type Item = Result<BackupNamespace, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let ns = self.stack.pop()?;
        if ns.depth() - self.start_depth < self.max_depth {
            match list_child_namespaces(&self.base, &ns) {
                Ok(children) => self.stack.extend(children.into_iter().rev()),
                Err(err) => return Some(Err(err)),
            }
        }
        Some(Ok(ns))
    }
}

/// Backup types that have a directory in namespace `ns`, in listing order.
fn backup_types_in(base: &Path, ns: &BackupNamespace) -> Result<Vec<BackupType>, Error> {
    let path = base.join(ns.path());
    let dirs = sub_directories(&path, false)
        .with_context(|| format!("unable to list backup groups of namespace '{ns}' ({path:?})"))?;
    let mut types: Vec<BackupType> = dirs.iter().filter_map(|d| d.parse().ok()).collect();
    types.sort_unstable();
    Ok(types)
}

/// Lazily lists the backup groups of a namespace, type by type (ids unsorted within a type).
pub struct GroupIter {
    ns_path: PathBuf,
    types: std::vec::IntoIter<BackupType>,
    current: Option<(BackupType, std::vec::IntoIter<String>)>,
}

impl GroupIter {
    /// Starts listing the groups of namespace `ns`; fails if the namespace cannot be read.
    pub fn new(base: &Path, ns: &BackupNamespace) -> Result<Self, Error> {
        let types = backup_types_in(base, ns)?;
        Ok(Self {
            ns_path: base.join(ns.path()),
            types: types.into_iter(),
            current: None,
        })
    }
}

impl Iterator for GroupIter {
    type Item = Result<BackupGroup, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((ty, ids)) = &mut self.current {
                for id in ids.by_ref() {
                    if is_safe_id(&id) {
                        return Some(Ok(BackupGroup { ty: *ty, id }));
                    }
                }
                self.current = None;
            }
            let ty = self.types.next()?;
            let path = self.ns_path.join(ty.as_str());
            match sub_directories(&path, true) {
                Ok(ids) => self.current = Some((ty, ids.into_iter())),
                Err(err) => {
                    return Some(Err(
                        Error::from(err).context(format!("unable to list groups in {path:?}"))
                    ))
                }
            }
        }
    }
}

/// All backup groups of a namespace, sorted (type order, then id order).
pub fn list_groups(base: &Path, ns: &BackupNamespace) -> Result<Vec<BackupGroup>, Error> {
    let mut groups = GroupIter::new(base, ns)?.collect::<Result<Vec<_>, _>>()?;
    groups.sort();
    Ok(groups)
}

/// Snapshot directories of a group (valid time names only), oldest first.
pub fn list_snapshot_dirs(
    base: &Path,
    ns: &BackupNamespace,
    group: &BackupGroup,
) -> Result<Vec<BackupDir>, Error> {
    let path = base.join(group_path(ns, group));
    let names = sub_directories(&path, false)
        .with_context(|| format!("unable to list snapshots of group '{group}' ({path:?})"))?;
    let mut dirs: Vec<BackupDir> = names
        .iter()
        .filter(|name| is_time_dir_name(name))
        .filter_map(|name| BackupDir::with_time_dir_name(group.clone(), name).ok())
        .collect();
    dirs.sort_by_key(|dir| dir.time);
    Ok(dirs)
}

/// Snapshots of a group with their files, oldest first.
pub fn list_snapshots(
    base: &Path,
    ns: &BackupNamespace,
    group: &BackupGroup,
) -> Result<Vec<BackupInfo>, Error> {
    let mut infos = Vec::new();
    for dir in list_snapshot_dirs(base, ns, group)? {
        let path = base.join(snapshot_path(ns, &dir)?);
        match BackupInfo::read(&path, ns.clone(), dir) {
            Ok(info) => infos.push(info),
            // removed by a concurrent prune/forget while listing
            Err(_) if !path.exists() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(infos)
}

/// Which snapshots a filtered listing returns.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Only groups of this type.
    pub backup_type: Option<BackupType>,
    /// Only this group (its type wins over `backup_type` if both are set and differ: nothing).
    pub group: Option<BackupGroup>,
}

impl SnapshotFilter {
    fn matches(&self, group: &BackupGroup) -> bool {
        self.backup_type.is_none_or(|ty| ty == group.ty)
            && self.group.as_ref().is_none_or(|g| g == group)
    }
}

/// Snapshots of all groups matching `filter` in `ns` and up to `max_depth` namespace levels
/// below it (`Some(0)` = only `ns`), ordered by namespace walk, group order, then time.
pub fn list_snapshots_filtered(
    base: &Path,
    ns: &BackupNamespace,
    max_depth: Option<usize>,
    filter: &SnapshotFilter,
) -> Result<Vec<BackupInfo>, Error> {
    let mut result = Vec::new();
    for ns in NamespaceIter::new(base, ns.clone(), max_depth) {
        let ns = ns?;
        for group in list_groups(base, &ns)? {
            if !filter.matches(&group) {
                continue;
            }
            match list_snapshots(base, &ns, &group) {
                Ok(list) => result.extend(list),
                // group removed concurrently
                Err(_) if !base.join(group_path(&ns, &group)).exists() => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(result)
}

/// Newest backup time among finished snapshots; `None` if there is none or the group
/// directory does not exist.
pub fn last_successful_backup(
    base: &Path,
    ns: &BackupNamespace,
    group: &BackupGroup,
) -> Result<Option<i64>, Error> {
    let path = base.join(group_path(ns, group));
    let names = match sub_directories(&path, false) {
        Ok(names) => names,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(Error::from(err).context(format!("unable to list snapshots in {path:?}")))
        }
    };
    let mut newest = None;
    for name in names.iter().filter(|name| is_time_dir_name(name)) {
        let Ok(dir) = BackupDir::with_time_dir_name(group.clone(), name) else {
            continue;
        };
        if newest.is_some_and(|t| t >= dir.time) {
            continue;
        }
        if std::fs::symlink_metadata(path.join(name).join(MANIFEST_BLOB_NAME)).is_ok() {
            newest = Some(dir.time);
        }
    }
    Ok(newest)
}

/// The newest snapshot of a group, optionally only among finished ones.
pub fn last_backup(
    base: &Path,
    ns: &BackupNamespace,
    group: &BackupGroup,
    only_finished: bool,
) -> Result<Option<BackupInfo>, Error> {
    Ok(list_snapshots(base, ns, group)?
        .into_iter()
        .filter(|info| !only_finished || info.is_finished())
        .max_by_key(|info| info.backup_dir.time))
}
