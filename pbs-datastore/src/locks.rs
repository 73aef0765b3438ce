//! Directory locks (backup groups, snapshots) and manifest lock files.
//!
//! All locks are `flock` locks: they belong to an open file description, so two opens of the
//! same path conflict even inside one process, and a lock vanishes with its guard.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use pbs_api_types::{BackupDir, BackupNamespace};

/// How long a manifest lock is waited for.
pub const MANIFEST_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// File mode of manifest and other lock files.
const LOCK_FILE_MODE: u32 = 0o660;

/// Shared or exclusive lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Readers: any number may hold it together.
    Shared,
    /// Writers: nobody else may hold any lock.
    Exclusive,
}

/// A lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    #[error("unable to open {what} directory {path:?} for locking - {source}")]
    OpenDir {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    /// Somebody else holds a conflicting lock; `msg` says who that likely is.
    #[error("unable to acquire lock on {what} directory {path:?} - {msg}")]
    Busy {
        what: String,
        path: PathBuf,
        msg: String,
    },
    #[error("unable to acquire lock on {what} directory {path:?} - {source}")]
    LockDir {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    /// `what` names the lock in messages (`manifest lock`, `lock file`).
    #[error("unable to open {what} {path:?} - {source}")]
    OpenLockFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unable to acquire {what} {path:?} - timed out after {} seconds", timeout.as_secs())]
    LockFileTimeout {
        what: &'static str,
        path: PathBuf,
        timeout: Duration,
    },
    #[error("unable to acquire {what} {path:?} - {source}")]
    LockFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl LockError {
    /// Whether the lock failed only because somebody else holds it.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            LockError::Busy { .. } | LockError::LockFileTimeout { .. }
        )
    }
}

/// `flock` without waiting; `Ok(false)` if a conflicting lock is held elsewhere.
fn try_flock(file: &File, mode: LockMode) -> io::Result<bool> {
    let op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// A held lock on a directory; released on drop.
#[derive(Debug)]
pub struct DirLockGuard {
    dir: File,
    path: PathBuf,
    mode: LockMode,
}

impl DirLockGuard {
    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode currently held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Turns an exclusive lock into a shared one (e.g. verify right after a backup finished).
    pub fn downgrade(&mut self) -> io::Result<()> {
        if self.mode == LockMode::Shared {
            return Ok(());
        }
        // Converting an own exclusive lock to shared never conflicts.
        if try_flock(&self.dir, LockMode::Shared)? {
            self.mode = LockMode::Shared;
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK))
        }
    }
}

/// Lock held on a backup group directory.
pub type BackupGroupGuard = DirLockGuard;
/// Lock held on a snapshot directory.
pub type BackupDirGuard = DirLockGuard;

/// Locks directory `path` without waiting; `what` names it ("backup group", "snapshot") and
/// `busy_msg` explains a conflict ("another backup is already running").
pub fn lock_dir_noblock(
    path: &Path,
    what: &str,
    busy_msg: &str,
    mode: LockMode,
) -> Result<DirLockGuard, LockError> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LockError::OpenDir {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
    match try_flock(&dir, mode) {
        Ok(true) => Ok(DirLockGuard {
            dir,
            path: path.to_path_buf(),
            mode,
        }),
        Ok(false) => Err(LockError::Busy {
            what: what.to_string(),
            path: path.to_path_buf(),
            msg: busy_msg.to_string(),
        }),
        Err(source) => Err(LockError::LockDir {
            what: what.to_string(),
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Exclusive non-blocking lock on a directory.
pub fn lock_dir_exclusive(
    path: &Path,
    what: &str,
    busy_msg: &str,
) -> Result<DirLockGuard, LockError> {
    lock_dir_noblock(path, what, busy_msg, LockMode::Exclusive)
}

/// Shared non-blocking lock on a directory.
pub fn lock_dir_shared(path: &Path, what: &str, busy_msg: &str) -> Result<DirLockGuard, LockError> {
    lock_dir_noblock(path, what, busy_msg, LockMode::Shared)
}

/// `<lock_base>/<store>/<ns-path>/<type>/<id>/<time>/<time>.index.json.lck`.
pub fn manifest_lock_path_in(
    lock_base: &Path,
    store: &str,
    ns: &BackupNamespace,
    dir: &BackupDir,
) -> Result<PathBuf, pbs_api_types::time::TimeError> {
    let time = dir.time_string()?;
    let mut path = lock_base.join(store);
    path.push(ns.path());
    path.push(dir.group.relative_path());
    path.push(&time);
    path.push(format!("{time}.index.json.lck"));
    Ok(path)
}

/// Manifest lock path below the system datastore lock directory.
pub fn manifest_lock_path(
    store: &str,
    ns: &BackupNamespace,
    dir: &BackupDir,
) -> Result<PathBuf, pbs_api_types::time::TimeError> {
    manifest_lock_path_in(&pbs_buildcfg::datastore_lock_dir(), store, ns, dir)
}

/// A held manifest lock; released on drop.
pub type ManifestLockGuard = FileLockGuard;

/// Opens (creating directory and file, mode 0660) and exclusively locks a manifest lock file,
/// waiting up to [`MANIFEST_LOCK_TIMEOUT`].
pub fn lock_manifest(path: &Path) -> Result<ManifestLockGuard, LockError> {
    lock_manifest_timeout(path, MANIFEST_LOCK_TIMEOUT)
}

/// [`lock_manifest`] with an explicit timeout.
pub fn lock_manifest_timeout(
    path: &Path,
    timeout: Duration,
) -> Result<ManifestLockGuard, LockError> {
    lock_file_named(path, "manifest lock", timeout)
}

/// A held lock file; released on drop.
#[derive(Debug)]
pub struct FileLockGuard {
    _file: File,
}

/// Opens (creating directory and file, mode 0660) and exclusively locks the lock file `path`,
/// waiting up to `timeout`.
pub fn lock_file(path: &Path, timeout: Duration) -> Result<FileLockGuard, LockError> {
    lock_file_named(path, "lock file", timeout)
}

fn lock_file_named(
    path: &Path,
    what: &'static str,
    timeout: Duration,
) -> Result<FileLockGuard, LockError> {
    let path_buf = || path.to_path_buf();
    match lock_file_waiting(path, timeout) {
        Ok(file) => Ok(FileLockGuard { _file: file }),
        Err(WaitFailure::Open(source)) => Err(LockError::OpenLockFile {
            what,
            path: path_buf(),
            source,
        }),
        Err(WaitFailure::Lock(source)) => Err(LockError::LockFile {
            what,
            path: path_buf(),
            source,
        }),
        Err(WaitFailure::Timeout) => Err(LockError::LockFileTimeout {
            what,
            path: path_buf(),
            timeout,
        }),
    }
}

/// Why [`lock_file_waiting`] failed.
enum WaitFailure {
    Open(io::Error),
    Lock(io::Error),
    Timeout,
}

fn lock_file_waiting(path: &Path, timeout: Duration) -> Result<File, WaitFailure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(WaitFailure::Open)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(WaitFailure::Open)?;
    // The umask may have cleared group bits; fixing them is best effort (the file may belong
    // to another user of the backup group).
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o777 != LOCK_FILE_MODE {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE));
        }
    }

    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match try_flock(&file, LockMode::Exclusive) {
            Ok(true) => return Ok(file),
            Ok(false) => {}
            Err(source) => return Err(WaitFailure::Lock(source)),
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(WaitFailure::Timeout);
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_conflicts_within_one_process() {
        let tmp = tempfile::tempdir().unwrap();
        let guard = lock_dir_exclusive(
            tmp.path(),
            "backup group",
            "another backup is already running",
        )
        .unwrap();
        let err = lock_dir_exclusive(
            tmp.path(),
            "backup group",
            "another backup is already running",
        )
        .unwrap_err();
        assert!(err.is_busy());
        assert_eq!(
            err.to_string(),
            format!(
                "unable to acquire lock on backup group directory {:?} - another backup is already running",
                tmp.path()
            )
        );
        assert!(lock_dir_shared(tmp.path(), "snapshot", "busy").is_err());
        drop(guard);
        lock_dir_exclusive(tmp.path(), "backup group", "x").unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_block_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let a = lock_dir_shared(tmp.path(), "snapshot", "busy").unwrap();
        let b = lock_dir_shared(tmp.path(), "snapshot", "busy").unwrap();
        let err = lock_dir_exclusive(tmp.path(), "snapshot", "in use").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unable to acquire lock on snapshot directory"));
        assert!(err.to_string().ends_with(" - in use"));
        drop(a);
        assert!(lock_dir_exclusive(tmp.path(), "snapshot", "in use").is_err());
        drop(b);
        assert!(lock_dir_exclusive(tmp.path(), "snapshot", "in use").is_ok());
    }

    #[test]
    fn downgrade_admits_readers() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = lock_dir_exclusive(tmp.path(), "snapshot", "busy").unwrap();
        assert!(lock_dir_shared(tmp.path(), "snapshot", "busy").is_err());
        w.downgrade().unwrap();
        assert_eq!(w.mode(), LockMode::Shared);
        let _r = lock_dir_shared(tmp.path(), "snapshot", "busy").unwrap();
        assert!(lock_dir_exclusive(tmp.path(), "snapshot", "busy").is_err());
    }

    #[test]
    fn missing_dir_is_an_open_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = lock_dir_exclusive(&tmp.path().join("nope"), "snapshot", "busy").unwrap_err();
        assert!(!err.is_busy());
        assert!(err
            .to_string()
            .starts_with("unable to open snapshot directory"));
    }

    #[test]
    fn manifest_lock_layout_and_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let ns = BackupNamespace::new("a/b").unwrap();
        let dir: BackupDir = "vm/100/2020-06-26T13:56:05Z".parse().unwrap();
        let path = manifest_lock_path_in(tmp.path(), "store1", &ns, &dir).unwrap();
        assert_eq!(
            path,
            tmp.path().join(
                "store1/ns/a/ns/b/vm/100/2020-06-26T13:56:05Z/2020-06-26T13:56:05Z.index.json.lck"
            )
        );
        let guard = lock_manifest(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);

        let start = Instant::now();
        let err = lock_manifest_timeout(&path, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(err.is_busy());
        assert!(err.to_string().contains("timed out"));

        // a waiter gets the lock once the holder lets go
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || lock_manifest(&path).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(guard);
        waiter.join().unwrap().unwrap();
    }
}
