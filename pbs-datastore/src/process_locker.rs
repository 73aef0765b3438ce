//! Inter-process reader/writer lock on a chunk store's `.lock` file.
//!
//! POSIX `fcntl` record locks are owned by the process, not by a file descriptor: every guard
//! in one process shares a single read lock, and an exclusive lock taken in a process that
//! already holds the read lock converts it. So the exclusive lock (garbage collection) only
//! fails when *another* process holds a shared lock (an index writer). Because closing any
//! descriptor of the file drops all of the process's locks on it, one `ProcessLocker` is kept
//! per lock file and shared by everyone in the process.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use anyhow::{bail, format_err, Error};

/// State of the process lock on one lock file.
pub struct ProcessLocker {
    path: PathBuf,
    file: File,
    /// further descriptors of the same file that must stay open while locks are held
    spare_files: Vec<File>,
    exclusive: bool,
    next_guard_id: u64,
    /// guard id → creation time (epoch seconds) of the live shared guards
    shared_guards: HashMap<u64, i64>,
}

/// A shared (reader) lock; released when the last shared guard of the process is dropped.
pub struct ProcessLockSharedGuard {
    guard_id: u64,
    locker: Arc<Mutex<ProcessLocker>>,
}

/// The exclusive lock; dropping it falls back to a shared lock if shared guards remain.
pub struct ProcessLockExclusiveGuard {
    locker: Arc<Mutex<ProcessLocker>>,
}

type LockerRegistry = Mutex<HashMap<(u64, u64), Weak<Mutex<ProcessLocker>>>>;

fn registry() -> &'static LockerRegistry {
    static REGISTRY: OnceLock<LockerRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_state(locker: &Mutex<ProcessLocker>) -> MutexGuard<'_, ProcessLocker> {
    // The state stays consistent even if a holder panicked: every field update is a single step.
    locker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ProcessLocker {
    /// Opens (creating if missing, never truncating) the lock file and returns the process-wide
    /// locker for it.
    pub fn new<P: AsRef<Path>>(lockfile: P) -> Result<Arc<Mutex<Self>>, Error> {
        let path = lockfile.as_ref();
        let mut registry = registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.retain(|_, weak| weak.strong_count() > 0);

        if let Ok(meta) = std::fs::metadata(path) {
            if let Some(existing) = registry
                .get(&(meta.dev(), meta.ino()))
                .and_then(Weak::upgrade)
            {
                return Ok(existing);
            }
        }

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|err| format_err!("unable to open lock file {path:?} - {err}"))?;
        let meta = file
            .metadata()
            .map_err(|err| format_err!("unable to stat lock file {path:?} - {err}"))?;
        let key = (meta.dev(), meta.ino());

        if let Some(existing) = registry.get(&key).and_then(Weak::upgrade) {
            // The file was swapped in between: closing this descriptor would drop every lock
            // the process holds on it, so the existing locker keeps it open.
            lock_state(&existing).spare_files.push(file);
            return Ok(existing);
        }
        let locker = Arc::new(Mutex::new(Self {
            path: path.to_path_buf(),
            file,
            spare_files: Vec::new(),
            exclusive: false,
            next_guard_id: 0,
            shared_guards: HashMap::new(),
        }));
        registry.insert(key, Arc::downgrade(&locker));
        Ok(locker)
    }

    fn set_lock(&self, lock_type: libc::c_int) -> std::io::Result<()> {
        // SAFETY: flock is plain old data; zeroed is a valid value for every field.
        let mut op: libc::flock = unsafe { std::mem::zeroed() };
        op.l_type = lock_type as libc::c_short;
        op.l_whence = libc::SEEK_SET as libc::c_short;
        op.l_start = 0;
        op.l_len = 0;
        // SAFETY: valid descriptor and a properly initialised flock struct.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLK, &op) };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes a shared lock (non-blocking).
    pub fn try_shared_lock(locker: Arc<Mutex<Self>>) -> Result<ProcessLockSharedGuard, Error> {
        let mut state = lock_state(&locker);
        if state.shared_guards.is_empty() && !state.exclusive {
            state.set_lock(libc::F_RDLCK).map_err(|err| {
                format_err!(
                    "unable to get shared lock - {err} (lock file {:?})",
                    state.path
                )
            })?;
        }
        let guard_id = state.next_guard_id;
        state.next_guard_id += 1;
        state
            .shared_guards
            .insert(guard_id, pbs_api_types::time::epoch_now());
        drop(state);
        Ok(ProcessLockSharedGuard { guard_id, locker })
    }

    /// Takes the exclusive lock (non-blocking); fails if another process holds any lock.
    pub fn try_exclusive_lock(
        locker: Arc<Mutex<Self>>,
    ) -> Result<ProcessLockExclusiveGuard, Error> {
        let mut state = lock_state(&locker);
        if state.exclusive {
            bail!("already locked exclusively");
        }
        state.set_lock(libc::F_WRLCK).map_err(|err| {
            format_err!(
                "unable to get exclusive lock - {err} (lock file {:?})",
                state.path
            )
        })?;
        state.exclusive = true;
        drop(state);
        Ok(ProcessLockExclusiveGuard { locker })
    }

    /// Creation time of the oldest live shared guard in this process.
    pub fn oldest_shared_lock(locker: Arc<Mutex<Self>>) -> Option<i64> {
        lock_state(&locker).shared_guards.values().copied().min()
    }
}

impl Drop for ProcessLockSharedGuard {
    fn drop(&mut self) {
        let mut state = lock_state(&self.locker);
        state.shared_guards.remove(&self.guard_id);
        if state.shared_guards.is_empty() && !state.exclusive {
            // Unlocking a held lock cannot fail on a valid descriptor.
            let _ = state.set_lock(libc::F_UNLCK);
        }
    }
}

impl Drop for ProcessLockExclusiveGuard {
    fn drop(&mut self) {
        let mut state = lock_state(&self.locker);
        state.exclusive = false;
        let fallback = if state.shared_guards.is_empty() {
            libc::F_UNLCK
        } else {
            libc::F_RDLCK
        };
        // Downgrading a write lock held by this process to a read lock always succeeds.
        let _ = state.set_lock(fallback);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    const ROLE_ENV: &str = "PBS_DATASTORE_TEST_CHILD";
    const LOCKFILE_ENV: &str = "PBS_DATASTORE_TEST_LOCKFILE";

    /// Spawns this test binary running only `test_name` (an ignored helper test) with env vars.
    pub(crate) fn spawn_helper(test_name: &str, envs: &[(&str, &std::ffi::OsStr)]) -> Child {
        // Not current_exe(): a rebuild may replace the file while tests run; the running
        // image stays reachable through /proc.
        let exe = PathBuf::from("/proc/self/exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--ignored", "--exact", test_name, "--test-threads=1", "-q"]);
        for (key, value) in envs {
            cmd.env(key, value);
        }
        cmd.stdout(std::process::Stdio::null());
        cmd.spawn().expect("spawn helper process")
    }

    pub(crate) fn wait_for_file(path: &Path, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !path.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("helper exited early: {status}");
            }
            assert!(Instant::now() < deadline, "helper did not signal {path:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Helper process: holds a shared lock until the release file appears.
    #[test]
    #[ignore = "helper process for multi-process lock tests"]
    fn child_hold_shared_lock() {
        let Some(lockfile) = std::env::var_os(LOCKFILE_ENV) else {
            return;
        };
        assert_eq!(std::env::var(ROLE_ENV).as_deref(), Ok("shared"));
        let lockfile = PathBuf::from(lockfile);
        let locker = ProcessLocker::new(&lockfile).unwrap();
        let _guard = ProcessLocker::try_shared_lock(locker).unwrap();
        let ready = lockfile.with_extension("ready");
        let release = lockfile.with_extension("release");
        std::fs::write(&ready, b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !release.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn exclusive_lock_fails_while_other_process_holds_shared() {
        let dir = tempfile::tempdir().unwrap();
        let lockfile = dir.path().join(".lock");
        let locker = ProcessLocker::new(&lockfile).unwrap();

        // In-process: shared guards coexist with the exclusive lock.
        let shared = ProcessLocker::try_shared_lock(locker.clone()).unwrap();
        let exclusive = ProcessLocker::try_exclusive_lock(locker.clone()).unwrap();
        let err = ProcessLocker::try_exclusive_lock(locker.clone())
            .err()
            .expect("second exclusive lock must fail");
        assert_eq!(err.to_string(), "already locked exclusively");
        drop(exclusive);
        drop(shared);

        let mut child = spawn_helper(
            "process_locker::tests::child_hold_shared_lock",
            &[
                (ROLE_ENV, "shared".as_ref()),
                (LOCKFILE_ENV, lockfile.as_os_str()),
            ],
        );
        wait_for_file(&lockfile.with_extension("ready"), &mut child);

        let err = ProcessLocker::try_exclusive_lock(locker.clone())
            .err()
            .expect("exclusive lock must fail while another process reads");
        assert!(
            err.to_string()
                .starts_with("unable to get exclusive lock - "),
            "{err}"
        );
        // A shared lock next to the other process's shared lock is fine.
        let shared = ProcessLocker::try_shared_lock(locker.clone()).unwrap();
        drop(shared);

        std::fs::write(lockfile.with_extension("release"), b"").unwrap();
        let status = child.wait().unwrap();
        assert!(status.success());

        let exclusive = ProcessLocker::try_exclusive_lock(locker.clone()).unwrap();
        drop(exclusive);
    }

    #[test]
    fn oldest_shared_lock_tracks_live_guards() {
        let dir = tempfile::tempdir().unwrap();
        let lockfile = dir.path().join(".lock");
        let locker = ProcessLocker::new(&lockfile).unwrap();
        assert_eq!(ProcessLocker::oldest_shared_lock(locker.clone()), None);
        let before = pbs_api_types::time::epoch_now();
        let first = ProcessLocker::try_shared_lock(locker.clone()).unwrap();
        let second = ProcessLocker::try_shared_lock(locker.clone()).unwrap();
        let oldest = ProcessLocker::oldest_shared_lock(locker.clone()).unwrap();
        assert!(oldest >= before && oldest <= pbs_api_types::time::epoch_now());
        drop(first);
        assert!(ProcessLocker::oldest_shared_lock(locker.clone()).is_some());
        drop(second);
        assert_eq!(ProcessLocker::oldest_shared_lock(locker.clone()), None);
    }

    #[test]
    fn same_file_shares_one_locker() {
        let dir = tempfile::tempdir().unwrap();
        let lockfile = dir.path().join(".lock");
        let first = ProcessLocker::new(&lockfile).unwrap();
        let second = ProcessLocker::new(&lockfile).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let _exclusive = ProcessLocker::try_exclusive_lock(first).unwrap();
        assert!(ProcessLocker::try_exclusive_lock(second).is_err());
    }
}
