//! Counters of the read and write operations running on each datastore, shared by all
//! processes through `/run/proxmox-backup/active-operations/<store>` (a JSON array with one
//! entry per process, identified by pid and start time) and guarded by `<store>.lock`.
//!
//! Entries of processes that no longer exist are ignored when reading and dropped on the next
//! update, so a crashed process does not leave operations behind.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Error};
use serde::{Deserialize, Serialize};

use pbs_tasks::procfs::{process_is_running, self_pid_pstart};
use pbs_tools::fs::{replace_file, ReplaceOptions};

use crate::locks::{lock_file, FileLockGuard};

/// How long the counter lock is waited for.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// File mode of the counter and lock files (the daemons share them through the backup group).
const FILE_MODE: u32 = 0o660;

/// Running operations of a datastore (or of one process on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveOperationStats {
    /// Operations reading datastore content.
    pub read: i64,
    /// Operations modifying datastore content.
    pub write: i64,
}

/// Which counter an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Reads content (reader sessions, downloads, verify).
    Read,
    /// Modifies content (backup sessions, GC, prune, removals).
    Write,
}

/// One process's entry in the counter file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ProcessOperations {
    pid: u32,
    starttime: u64,
    active_operations: ActiveOperationStats,
}

/// The system directory of the counter files.
pub fn active_operations_dir() -> PathBuf {
    pbs_buildcfg::run_dir().join("active-operations")
}

/// The counter files of datastores in one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveOperations {
    dir: PathBuf,
}

impl Default for ActiveOperations {
    fn default() -> Self {
        Self::in_dir(active_operations_dir())
    }
}

impl ActiveOperations {
    /// Counter files below `dir` instead of the system directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, store: &str) -> PathBuf {
        self.dir.join(store)
    }

    fn lock(&self, store: &str) -> Result<FileLockGuard, Error> {
        let path = self.dir.join(format!("{store}.lock"));
        let guard = lock_file(&path, LOCK_TIMEOUT)?;
        hand_to_backup_user(&path);
        Ok(guard)
    }

    /// Sum over all running processes of the operations on `store`.
    pub fn get(&self, store: &str) -> Result<ActiveOperationStats, Error> {
        let entries = read_entries(&self.file(store))?;
        Ok(sum(entries.iter().filter(|entry| is_alive(entry))))
    }

    /// Adds `delta` to this process's `kind` counter of `store` and returns the new totals.
    pub fn update(
        &self,
        store: &str,
        kind: OperationKind,
        delta: i64,
    ) -> Result<ActiveOperationStats, Error> {
        let (pid, starttime) = self_pid_pstart()?;
        let _lock = self.lock(store)?;
        let path = self.file(store);
        let mut entries: Vec<ProcessOperations> =
            read_entries(&path)?.into_iter().filter(is_alive).collect();
        let own = match entries
            .iter()
            .position(|entry| entry.pid == pid && entry.starttime == starttime)
        {
            Some(pos) => pos,
            None => {
                entries.push(ProcessOperations {
                    pid,
                    starttime,
                    active_operations: ActiveOperationStats::default(),
                });
                entries.len() - 1
            }
        };
        let counters = &mut entries[own].active_operations;
        match kind {
            OperationKind::Read => counters.read += delta,
            OperationKind::Write => counters.write += delta,
        }
        let data = serde_json::to_vec(&entries)?;
        let owner = pbs_tools::user::backup_user().filter(|_| pbs_tools::user::running_as_root());
        replace_file(
            &path,
            &data,
            ReplaceOptions {
                mode: FILE_MODE,
                owner,
                fsync: false,
            },
        )
        .with_context(|| format!("unable to write active operations {path:?}"))?;
        Ok(sum(entries.iter()))
    }

    /// Counts one `kind` operation on `store` until the returned guard is dropped.
    pub fn start(&self, store: &str, kind: OperationKind) -> Result<ActiveOperation, Error> {
        self.update(store, kind, 1)?;
        Ok(ActiveOperation {
            counters: self.clone(),
            store: store.to_string(),
            kind,
        })
    }
}

/// A counted operation; the count is taken back on drop.
#[derive(Debug)]
pub struct ActiveOperation {
    counters: ActiveOperations,
    store: String,
    kind: OperationKind,
}

impl ActiveOperation {
    /// Which counter the operation is in.
    pub fn kind(&self) -> OperationKind {
        self.kind
    }
}

impl Drop for ActiveOperation {
    fn drop(&mut self) {
        // A failed update cannot be reported to anyone here; the entry is dropped anyway
        // once this process ends.
        if let Err(err) = self.counters.update(&self.store, self.kind, -1) {
            eprintln!(
                "datastore '{}': unable to update active operations - {err:#}",
                self.store
            );
        }
    }
}

fn read_entries(path: &Path) -> Result<Vec<ProcessOperations>, Error> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .with_context(|| format!("active operations {path:?}: invalid JSON")),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("unable to read active operations {path:?}")),
    }
}

fn is_alive(entry: &ProcessOperations) -> bool {
    process_is_running(entry.pid, entry.starttime)
}

fn sum<'a>(entries: impl Iterator<Item = &'a ProcessOperations>) -> ActiveOperationStats {
    entries.fold(ActiveOperationStats::default(), |total, entry| {
        ActiveOperationStats {
            read: total.read + entry.active_operations.read,
            write: total.write + entry.active_operations.write,
        }
    })
}

/// Root-run daemons create the files for the backup-user daemon too (best effort).
fn hand_to_backup_user(path: &Path) {
    if !pbs_tools::user::running_as_root() {
        return;
    }
    if let Some((uid, gid)) = pbs_tools::user::backup_user() {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_per_kind_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ActiveOperations::in_dir(dir.path().join("active-operations"));
        assert_eq!(ops.get("s1").unwrap(), ActiveOperationStats::default());
        let read1 = ops.start("s1", OperationKind::Read).unwrap();
        let read2 = ops.start("s1", OperationKind::Read).unwrap();
        let write = ops.start("s1", OperationKind::Write).unwrap();
        let other = ops.start("s2", OperationKind::Write).unwrap();
        assert_eq!(
            ops.get("s1").unwrap(),
            ActiveOperationStats { read: 2, write: 1 }
        );
        assert_eq!(
            ops.get("s2").unwrap(),
            ActiveOperationStats { read: 0, write: 1 }
        );
        drop(read1);
        drop(write);
        assert_eq!(
            ops.get("s1").unwrap(),
            ActiveOperationStats { read: 1, write: 0 }
        );
        drop(read2);
        drop(other);
        assert_eq!(ops.get("s1").unwrap(), ActiveOperationStats::default());
        assert_eq!(ops.get("s2").unwrap(), ActiveOperationStats::default());
    }

    #[test]
    fn file_format_and_dead_processes() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ActiveOperations::in_dir(dir.path());
        let path = dir.path().join("store");
        let (pid, starttime) = self_pid_pstart().unwrap();
        // A process that cannot exist (pid beyond pid_max) and this one with a wrong start.
        let stale = format!(
            r#"[{{"pid":4294967295,"starttime":1,"active_operations":{{"read":5,"write":7}}}},
                {{"pid":{pid},"starttime":{},"active_operations":{{"read":3,"write":0}}}}]"#,
            starttime + 1
        );
        std::fs::write(&path, stale).unwrap();
        assert_eq!(ops.get("store").unwrap(), ActiveOperationStats::default());

        let totals = ops.update("store", OperationKind::Write, 1).unwrap();
        assert_eq!(totals, ActiveOperationStats { read: 0, write: 1 });
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!([{
                "pid": pid,
                "starttime": starttime,
                "active_operations": {"read": 0, "write": 1},
            }])
        );
        assert!(dir.path().join("store.lock").exists());
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad"), b"{").unwrap();
        let err = ActiveOperations::in_dir(dir.path()).get("bad").unwrap_err();
        assert!(format!("{err:#}").contains("invalid JSON"), "{err:#}");
    }
}
