//! Reading, locking and atomically replacing the files in the configuration directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{format_err, Context, Error};
use thiserror::Error;

use pbs_tools::fs::{replace_file, ReplaceOptions};

/// Default time to wait for a configuration lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the system user and group the proxy runs as.
pub const BACKUP_USER_NAME: &str = "backup";

/// Mode of the lock files.
pub const LOCK_FILE_MODE: u32 = 0o660;

/// Mode of `/etc/proxmox-backup` when this code has to create it.
pub const CONFIG_DIR_MODE: u32 = 0o700;

/// Who should own a written file (applied only when running as root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOwner {
    /// `root:backup` (most configuration files, readable by the proxy).
    RootBackup,
    /// `root:root` (secrets only the API daemon may read).
    RootRoot,
    /// `backup:backup` (lock files, `token.shadow`).
    BackupBackup,
}

impl FileOwner {
    /// The uid/gid to request for this owner given the effective uid and the backup user's
    /// uid/gid; `None` when not root or when the backup user does not exist.
    pub fn resolve(self, euid: u32, backup: Option<(u32, u32)>) -> Option<(u32, u32)> {
        if euid != 0 {
            return None;
        }
        let (uid, gid) = backup?;
        Some(match self {
            FileOwner::RootBackup => (0, gid),
            FileOwner::RootRoot => (0, 0),
            FileOwner::BackupBackup => (uid, gid),
        })
    }

    /// The uid/gid to request in this process.
    pub fn current(self) -> Option<(u32, u32)> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        self.resolve(euid, backup_user())
    }
}

/// The uid/gid of the `backup` user, if it exists.
pub fn backup_user() -> Option<(u32, u32)> {
    lookup_user(BACKUP_USER_NAME)
}

/// Looks up a user's uid and primary gid in the password database.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    pbs_tools::user::lookup_user(name).ok().flatten()
}

/// Hex SHA-256 of the raw file content (the config digest).
pub fn compute_digest(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

/// The digest given by a client does not match the current file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("detected modified configuration - file changed by other user? Try again.")]
pub struct DigestMismatch;

/// Fails when `expected` is given and differs from the current digest.
pub fn check_digest(expected: Option<&str>, actual: &str) -> Result<(), DigestMismatch> {
    match expected {
        Some(expected) if !expected.eq_ignore_ascii_case(actual) => Err(DigestMismatch),
        _ => Ok(()),
    }
}

/// Reads a file; a missing file yields `None`.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format_err!("unable to read {path:?} - {err}")),
    }
}

/// Reads a text file; a missing file yields an empty string.
pub fn read_text_or_empty(path: &Path) -> Result<String, Error> {
    let data = read_optional(path)?.unwrap_or_default();
    String::from_utf8(data).map_err(|_| format_err!("file {path:?} is not valid UTF-8"))
}

/// Atomically replaces `path` (temp file, fsync, rename) with the given mode and owner.
pub fn replace_config(path: &Path, data: &[u8], mode: u32, owner: FileOwner) -> Result<(), Error> {
    replace_file(
        path,
        data,
        ReplaceOptions {
            mode,
            owner: owner.current(),
            fsync: true,
        },
    )
    .with_context(|| format!("unable to replace {path:?}"))
}

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct ConfigLockGuard {
    _file: File,
    path: PathBuf,
}

impl ConfigLockGuard {
    /// The lock file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates (mode 0660, `backup:backup` when root) and exclusively locks `path`, waiting up to
/// `timeout`.
pub fn lock_file(path: &Path, timeout: Duration) -> Result<ConfigLockGuard, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE_MODE)
        .open(path)
        .map_err(|err| format_err!("unable to open lock {path:?} - {err}"))?;
    // The umask may have cleared group bits at creation. A failure to fix the mode (file of
    // another user) does not affect locking, so it is not an error.
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o7777 != LOCK_FILE_MODE {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE));
        }
    }
    if let Some((uid, gid)) = FileOwner::BackupBackup.current() {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|err| format_err!("unable to set ownership of lock {path:?} - {err}"))?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(ConfigLockGuard {
                _file: file,
                path: path.to_path_buf(),
            });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
            _ => return Err(format_err!("unable to acquire lock {path:?} - {err}")),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format_err!("unable to acquire lock {path:?} - got timeout"));
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// One file in the configuration directory: its name, lock file, mode and owner.
#[derive(Clone, Copy, Debug)]
pub struct ConfigFile {
    /// File name inside the configuration directory.
    pub name: &'static str,
    /// Lock file name inside the configuration directory.
    pub lock_name: &'static str,
    /// Mode of the written file.
    pub mode: u32,
    /// Owner of the written file.
    pub owner: FileOwner,
}

impl ConfigFile {
    /// Path in the default configuration directory.
    pub fn path(&self) -> PathBuf {
        self.path_in(&pbs_buildcfg::config_dir())
    }

    /// Path in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(self.name)
    }

    /// Lock path in `dir`.
    pub fn lock_path_in(&self, dir: &Path) -> PathBuf {
        dir.join(self.lock_name)
    }

    /// Reads the file in `dir` (missing = empty) and its digest.
    pub fn read_in(&self, dir: &Path) -> Result<(String, String), Error> {
        let path = self.path_in(dir);
        let data = read_optional(&path)?.unwrap_or_default();
        let digest = compute_digest(&data);
        let text =
            String::from_utf8(data).map_err(|_| format_err!("file {path:?} is not valid UTF-8"))?;
        Ok((text, digest))
    }

    /// Atomically replaces the file in `dir`.
    pub fn write_in(&self, dir: &Path, data: &[u8]) -> Result<(), Error> {
        replace_config(&self.path_in(dir), data, self.mode, self.owner)
    }

    /// Takes the exclusive lock in `dir` with the default timeout.
    ///
    /// A fresh base directory (tests, `make run`) has no configuration directory yet (the
    /// package creates it in production): it is created with the restrictive mode upstream uses.
    pub fn lock_in(&self, dir: &Path) -> Result<ConfigLockGuard, Error> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(CONFIG_DIR_MODE)
                .create(dir)
                .map_err(|err| format_err!("unable to create config directory {dir:?} - {err}"))?;
        }
        lock_file(&self.lock_path_in(dir), LOCK_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn owner_requested_only_as_root_with_backup_user() {
        let backup = Some((34, 34));
        assert_eq!(FileOwner::RootBackup.resolve(0, backup), Some((0, 34)));
        assert_eq!(FileOwner::RootRoot.resolve(0, backup), Some((0, 0)));
        assert_eq!(FileOwner::BackupBackup.resolve(0, backup), Some((34, 34)));
        assert_eq!(FileOwner::RootBackup.resolve(0, None), None);
        assert_eq!(FileOwner::BackupBackup.resolve(1000, backup), None);
        assert_eq!(
            FileOwner::RootBackup.current().is_some(),
            unsafe { libc::geteuid() } == 0 && backup_user().is_some()
        );
    }

    #[test]
    fn user_lookup() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-pbs-test"), None);
        assert_eq!(lookup_user("bad\0name"), None);
    }

    #[test]
    fn digest_and_check() {
        let digest = compute_digest(b"");
        assert_eq!(
            digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(check_digest(None, &digest).is_ok());
        assert!(check_digest(Some(&digest), &digest).is_ok());
        assert_eq!(
            check_digest(Some("00"), &digest).unwrap_err().to_string(),
            "detected modified configuration - file changed by other user? Try again."
        );
    }

    const TEST_FILE: ConfigFile = ConfigFile {
        name: "test.cfg",
        lock_name: ".test.lck",
        mode: 0o640,
        owner: FileOwner::RootBackup,
    };

    #[test]
    fn read_write_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let (text, digest) = TEST_FILE.read_in(dir.path()).unwrap();
        assert_eq!(text, "");
        assert_eq!(digest, compute_digest(b""));
        TEST_FILE.write_in(dir.path(), b"abc\n").unwrap();
        let (text, digest) = TEST_FILE.read_in(dir.path()).unwrap();
        assert_eq!(text, "abc\n");
        assert_eq!(digest, compute_digest(b"abc\n"));
        let meta = std::fs::metadata(TEST_FILE.path_in(dir.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        if let Some(owner) = FileOwner::RootBackup.current() {
            assert_eq!((meta.uid(), meta.gid()), owner);
        }
        std::fs::write(TEST_FILE.path_in(dir.path()), [0xff, 0xfe]).unwrap();
        assert!(TEST_FILE.read_in(dir.path()).is_err());
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let guard = TEST_FILE.lock_in(dir.path()).unwrap();
        let lock_path = TEST_FILE.lock_path_in(dir.path());
        assert_eq!(guard.path(), lock_path);
        let meta = std::fs::metadata(&lock_path).unwrap();
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        if let Some(owner) = FileOwner::BackupBackup.current() {
            assert_eq!((meta.uid(), meta.gid()), owner);
        }

        let start = Instant::now();
        let err = lock_file(&lock_path, Duration::from_millis(150)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(150));
        assert!(err.to_string().ends_with("got timeout"), "{err}");

        let waiter = {
            let lock_path = lock_path.clone();
            std::thread::spawn(move || lock_file(&lock_path, Duration::from_secs(5)).is_ok())
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(guard);
        assert!(waiter.join().unwrap());
        assert!(lock_file(&dir.path().join("missing/x.lck"), LOCK_TIMEOUT).is_err());
    }
}
