//! The chunk store: content-addressed DataBlob files under `<store>/.chunks/<prefix>/<digest>`.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, format_err, Error};
use serde::{Deserialize, Serialize};

use crate::file_formats::{
    COMPRESSED_BLOB_MAGIC_1_0, ENCRYPTED_BLOB_MAGIC_1_0, ENCR_COMPR_BLOB_MAGIC_1_0,
    UNCOMPRESSED_BLOB_MAGIC_1_0,
};
use crate::process_locker::{ProcessLockExclusiveGuard, ProcessLockSharedGuard, ProcessLocker};

/// Number of prefix directories below `.chunks` (`0000` … `ffff`).
pub const CHUNK_PREFIX_DIRS: usize = 65536;

/// How much the datastore syncs to disk (`sync-level` tuning option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatastoreFSyncLevel {
    /// No explicit syncing.
    None,
    /// fsync every new chunk file and its directory.
    File,
    /// syncfs the datastore file system when a backup finishes.
    #[default]
    Filesystem,
}

impl DatastoreFSyncLevel {
    /// The configuration spelling of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::File => "file",
            Self::Filesystem => "filesystem",
        }
    }
}

impl std::fmt::Display for DatastoreFSyncLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatastoreFSyncLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Self::None),
            "file" => Ok(Self::File),
            "filesystem" => Ok(Self::Filesystem),
            _ => bail!("unknown sync level '{s}'"),
        }
    }
}

/// A chunk store opened at its base directory.
pub struct ChunkStore {
    name: String,
    base: PathBuf,
    chunk_dir: PathBuf,
    /// serialises inserts against the GC sweep within this process
    mutex: Mutex<()>,
    locker: Arc<Mutex<ProcessLocker>>,
    sync_level: DatastoreFSyncLevel,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("sync_level", &self.sync_level)
            .finish_non_exhaustive()
    }
}

/// One chunk-like entry found below `.chunks` by [`ChunkStore::chunk_iterator`].
#[derive(Debug, Clone)]
pub struct ChunkEntry {
    /// Full path of the file.
    pub path: PathBuf,
    /// Whether this is a renamed corrupt chunk (`<digest>.<N>.bad`).
    pub bad: bool,
    /// Index of the prefix directory (0 … 65535), for progress reporting.
    pub prefix_index: usize,
}

/// Which kind of blob an encoded chunk is, taken from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobKind {
    Plain,
    Compressed,
    Encrypted,
    EncryptedCompressed,
}

impl BlobKind {
    fn from_magic(magic: &[u8]) -> Option<Self> {
        let magic: [u8; 8] = magic.get(..8)?.try_into().ok()?;
        match magic {
            UNCOMPRESSED_BLOB_MAGIC_1_0 => Some(Self::Plain),
            COMPRESSED_BLOB_MAGIC_1_0 => Some(Self::Compressed),
            ENCRYPTED_BLOB_MAGIC_1_0 => Some(Self::Encrypted),
            ENCR_COMPR_BLOB_MAGIC_1_0 => Some(Self::EncryptedCompressed),
            _ => None,
        }
    }

    fn is_encrypted(self) -> bool {
        matches!(self, Self::Encrypted | Self::EncryptedCompressed)
    }

    fn header_size(self) -> usize {
        if self.is_encrypted() {
            crate::file_formats::ENCRYPTED_BLOB_HEADER_SIZE
        } else {
            crate::file_formats::BLOB_HEADER_SIZE
        }
    }
}

fn path_cstring(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format_err!("path {path:?} contains a NUL byte"))
}

/// uid/gid of the `backup` user, if we are root and that user exists.
fn backup_owner() -> Option<(libc::uid_t, libc::gid_t)> {
    if !pbs_tools::user::running_as_root() {
        return None;
    }
    pbs_tools::user::backup_user()
}

fn chown_to_backup(path: &Path, owner: Option<(libc::uid_t, libc::gid_t)>) -> Result<(), Error> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|err| format_err!("unable to set ownership of {path:?} - {err}"))?;
    }
    Ok(())
}

fn fsync_dir(path: &Path) -> Result<(), Error> {
    let dir = File::open(path).map_err(|err| format_err!("unable to open {path:?} - {err}"))?;
    dir.sync_all()
        .map_err(|err| format_err!("fsync of directory {path:?} failed - {err}"))
}

/// Sets atime to now and leaves mtime alone, without following symlinks.
///
/// Returns `Ok(false)` if the file does not exist and `assert_exists` is false.
pub fn cond_touch_path(path: &Path, assert_exists: bool) -> Result<bool, Error> {
    let c_path = path_cstring(path)?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if !assert_exists && err.kind() == std::io::ErrorKind::NotFound {
        return Ok(false);
    }
    bail!("update atime failed for {path:?} - {err}");
}

/// Creates a unique temp file `<path minus extension>.tmp_XXXXXX` next to `path`.
fn make_temp_file(path: &Path) -> Result<(File, PathBuf), Error> {
    pbs_tools::fs::make_tmp_file(path)
        .map_err(|err| format_err!("unable to create temporary file for {path:?} - {err}"))
}

impl ChunkStore {
    /// Creates a new chunk store at the absolute `path` (65536 prefix directories and `.lock`).
    pub fn create<P: Into<PathBuf>>(
        name: &str,
        path: P,
        sync_level: DatastoreFSyncLevel,
    ) -> Result<Self, Error> {
        Self::create_with_progress(name, path, sync_level, &|_| {})
    }

    /// Like [`ChunkStore::create`], reporting "Chunkstore create: N%" through `progress`.
    pub fn create_with_progress<P: Into<PathBuf>>(
        name: &str,
        path: P,
        sync_level: DatastoreFSyncLevel,
        progress: &dyn Fn(&str),
    ) -> Result<Self, Error> {
        let base: PathBuf = path.into();
        if !base.is_absolute() {
            bail!("expected absolute path - {base:?}");
        }
        let owner = backup_owner();
        let chunk_dir = base.join(".chunks");

        std::fs::create_dir_all(&base).map_err(|err| {
            format_err!("unable to create chunk store '{name}' at {base:?} - {err}")
        })?;
        chown_to_backup(&base, owner)?;

        std::fs::DirBuilder::new()
            .mode(0o750)
            .create(&chunk_dir)
            .map_err(|err| {
                format_err!("unable to create chunk store '{name}' subdir {chunk_dir:?} - {err}")
            })?;
        chown_to_backup(&chunk_dir, owner)?;

        let lockfile = base.join(".lock");
        Self::create_lock_file(&lockfile, owner).map_err(|err| {
            format_err!("unable to create chunk store '{name}' lock file {lockfile:?} - {err}")
        })?;

        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o750);
        let mut last_percentage = None;
        let mut subdir = chunk_dir.clone();
        for i in 0..CHUNK_PREFIX_DIRS {
            subdir.push(format!("{i:04x}"));
            if let Err(err) = builder.create(&subdir) {
                if err.kind() != std::io::ErrorKind::AlreadyExists {
                    bail!("unable to create chunk store '{name}' subdir {subdir:?} - {err}");
                }
            }
            chown_to_backup(&subdir, owner)?;
            subdir.pop();
            let percentage = i * 100 / CHUNK_PREFIX_DIRS;
            if last_percentage != Some(percentage) {
                progress(&format!("Chunkstore create: {percentage}%"));
                last_percentage = Some(percentage);
            }
        }

        Self::open(name, base, sync_level)
    }

    fn create_lock_file(
        lockfile: &Path,
        owner: Option<(libc::uid_t, libc::gid_t)>,
    ) -> Result<(), Error> {
        let (file, tmp_path) = make_temp_file(lockfile)?;
        let result = (|| {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            std::fs::rename(&tmp_path, lockfile)
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(err.into());
        }
        Ok(())
    }

    /// Opens an existing chunk store at the absolute `path`.
    pub fn open<P: Into<PathBuf>>(
        name: &str,
        path: P,
        sync_level: DatastoreFSyncLevel,
    ) -> Result<Self, Error> {
        let base: PathBuf = path.into();
        if !base.is_absolute() {
            bail!("expected absolute path - {base:?}");
        }
        let chunk_dir = base.join(".chunks");
        if let Err(err) = std::fs::metadata(&chunk_dir) {
            bail!("unable to open chunk store '{name}' at {chunk_dir:?} - {err}");
        }
        let locker = ProcessLocker::new(base.join(".lock"))?;
        Ok(Self {
            name: name.to_string(),
            base,
            chunk_dir,
            mutex: Mutex::new(()),
            locker,
            sync_level,
        })
    }

    /// The store name (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store's base directory.
    pub fn base_path(&self) -> &Path {
        &self.base
    }

    /// The `.chunks` directory.
    pub fn chunk_dir(&self) -> &Path {
        &self.chunk_dir
    }

    /// The configured sync level.
    pub fn sync_level(&self) -> DatastoreFSyncLevel {
        self.sync_level
    }

    /// Locks the in-process store mutex (inserts and the GC sweep take it).
    pub fn mutex_guard(&self) -> MutexGuard<'_, ()> {
        self.mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Path of the chunk file for `digest`.
    pub fn chunk_path(&self, digest: &[u8; 32]) -> PathBuf {
        let digest_str = hex::encode(digest);
        let mut path = self.chunk_dir.clone();
        path.push(&digest_str[..4]);
        path.push(&digest_str);
        path
    }

    /// Sets the atime of the chunk to now; `Ok(false)` if it is missing and not `assert_exists`.
    pub fn cond_touch_chunk(&self, digest: &[u8; 32], assert_exists: bool) -> Result<bool, Error> {
        let path = self.chunk_path(digest);
        cond_touch_path(&path, assert_exists)
    }

    /// Sets the atime of any file to now (see [`cond_touch_path`]).
    pub fn cond_touch_path(&self, path: &Path, assert_exists: bool) -> Result<bool, Error> {
        cond_touch_path(path, assert_exists)
    }

    /// Stores an encoded blob under `digest`; returns `(is_duplicate, stored size)`.
    pub fn insert_chunk(&self, encoded: &[u8], digest: &[u8; 32]) -> Result<(bool, u64), Error> {
        let digest_str = hex::encode(digest);
        let new_kind = BlobKind::from_magic(encoded).ok_or_else(|| {
            format_err!(
                "unable to insert chunk '{digest_str}' on store '{}' - not a data blob (wrong magic)",
                self.name
            )
        })?;
        if encoded.len() < new_kind.header_size() {
            bail!(
                "unable to insert chunk '{digest_str}' on store '{}' - blob too small",
                self.name
            );
        }
        let new_size = encoded.len() as u64;
        let chunk_path = self.chunk_path(digest);

        let _guard = self.mutex_guard();

        match std::fs::symlink_metadata(&chunk_path) {
            Ok(meta) => {
                if !meta.file_type().is_file() {
                    bail!(
                        "got unexpected file type on store '{}' for chunk {digest_str}",
                        self.name
                    );
                }
                let old_size = meta.len();
                if old_size == new_size {
                    self.touch_existing(&chunk_path)?;
                    return Ok((true, old_size));
                } else if old_size == 0 {
                    // An empty file is left over from a crash: replace it.
                } else if new_kind.is_encrypted() {
                    let old_kind = self.read_existing_kind(&chunk_path, &digest_str)?;
                    match old_kind {
                        Some(BlobKind::Plain | BlobKind::Compressed) => bail!(
                            "Overwriting unencrypted chunk '{digest_str}' on store '{}' with encrypted chunk with same digest not allowed!",
                            self.name
                        ),
                        Some(BlobKind::Encrypted) if new_kind == BlobKind::Encrypted => bail!(
                            "Overwriting existing (encrypted) chunk '{digest_str}' on store '{}' is not allowed!",
                            self.name
                        ),
                        _ => {
                            self.touch_existing(&chunk_path)?;
                            return Ok((true, old_size));
                        }
                    }
                } else if old_size < new_size {
                    self.touch_existing(&chunk_path)?;
                    return Ok((true, old_size));
                }
                // Otherwise the existing copy is bigger: replace it with the smaller one.
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => bail!(
                "unable to stat chunk '{digest_str}' on store '{}' - {err}",
                self.name
            ),
        }

        self.write_chunk_file(&chunk_path, encoded).map_err(|err| {
            format_err!(
                "inserting chunk '{digest_str}' on store '{}' failed - {err}",
                self.name
            )
        })?;
        Ok((false, new_size))
    }

    fn touch_existing(&self, chunk_path: &Path) -> Result<(), Error> {
        cond_touch_path(chunk_path, true)?;
        Ok(())
    }

    fn read_existing_kind(
        &self,
        chunk_path: &Path,
        digest_str: &str,
    ) -> Result<Option<BlobKind>, Error> {
        let mut file = File::open(chunk_path).map_err(|err| {
            format_err!(
                "unable to open existing chunk '{digest_str}' on store '{}' - {err}",
                self.name
            )
        })?;
        let mut magic = [0u8; 8];
        let mut filled = 0;
        while filled < magic.len() {
            match file.read(&mut magic[filled..]) {
                Ok(0) => return Ok(None),
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => bail!(
                    "unable to read existing chunk '{digest_str}' on store '{}' - {err}",
                    self.name
                ),
            }
        }
        Ok(BlobKind::from_magic(&magic))
    }

    fn write_chunk_file(&self, chunk_path: &Path, data: &[u8]) -> Result<(), Error> {
        let (mut file, tmp_path) = make_temp_file(chunk_path)?;
        let sync_file = self.sync_level == DatastoreFSyncLevel::File;
        let result = (|| -> Result<(), Error> {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|err| format_err!("fchmod failed - {err}"))?;
            file.write_all(data)
                .map_err(|err| format_err!("write failed - {err}"))?;
            if sync_file {
                file.sync_all()
                    .map_err(|err| format_err!("fsync failed - {err}"))?;
            }
            std::fs::rename(&tmp_path, chunk_path)
                .map_err(|err| format_err!("rename failed - {err}"))?;
            Ok(())
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(err);
        }
        if sync_file {
            if let Some(dir) = chunk_path.parent() {
                fsync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Reads the raw (encoded) bytes of a chunk; the caller checks the CRC.
    pub fn load_chunk_raw(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
        let path = self.chunk_path(digest);
        std::fs::read(&path).map_err(|err| {
            format_err!(
                "store '{}', unable to load chunk '{}' - {err}",
                self.name,
                hex::encode(digest)
            )
        })
    }

    /// Takes a shared process lock on the store (index writers hold one).
    pub fn try_shared_lock(&self) -> Result<ProcessLockSharedGuard, Error> {
        ProcessLocker::try_shared_lock(self.locker.clone())
    }

    /// Takes the exclusive process lock on the store (garbage collection).
    pub fn try_exclusive_lock(&self) -> Result<ProcessLockExclusiveGuard, Error> {
        ProcessLocker::try_exclusive_lock(self.locker.clone())
    }

    /// Start time (epoch) of the oldest shared lock held in this process.
    pub fn oldest_writer(&self) -> Option<i64> {
        ProcessLocker::oldest_shared_lock(self.locker.clone())
    }

    /// Renames a corrupt chunk to `<digest>.<N>.bad`; `Ok(None)` if the chunk does not exist.
    pub fn rename_corrupted_chunk(&self, digest: &[u8; 32]) -> Result<Option<PathBuf>, Error> {
        let path = self.chunk_path(digest);
        let _guard = self.mutex_guard();
        let mut new_path = path.clone();
        for n in 0..=9 {
            new_path = path.with_extension(format!("{n}.bad"));
            if n == 9 {
                break;
            }
            match std::fs::symlink_metadata(&new_path) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                _ => {}
            }
        }
        match std::fs::rename(&path, &new_path) {
            Ok(()) => Ok(Some(new_path)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => bail!(
                "could not rename corrupted chunk {path:?} on store '{}' - {err}",
                self.name
            ),
        }
    }

    /// Iterates over chunk files (64 char names) and `.bad` copies (70 char names).
    pub fn chunk_iterator(&self) -> ChunkIterator {
        ChunkIterator {
            chunk_dir: self.chunk_dir.clone(),
            store_name: self.name.clone(),
            next_prefix: 0,
            current: None,
        }
    }

    /// `syncfs(2)` on the file system holding the store.
    pub fn syncfs(&self) -> Result<(), Error> {
        let dir = File::open(&self.base)
            .map_err(|err| format_err!("unable to open datastore {:?} - {err}", self.base))?;
        // SAFETY: valid descriptor.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } < 0 {
            let err = std::io::Error::last_os_error();
            bail!("syncfs of datastore '{}' failed - {err}", self.name);
        }
        Ok(())
    }
}

/// Walks `.chunks/0000` … `.chunks/ffff`, yielding chunk-like entries.
pub struct ChunkIterator {
    chunk_dir: PathBuf,
    store_name: String,
    next_prefix: usize,
    current: Option<(usize, PathBuf, std::fs::ReadDir)>,
}

fn is_chunk_name(name: &[u8]) -> Option<bool> {
    if name.len() != 64 && name.len() != 70 {
        return None;
    }
    if !name[..64].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(name.ends_with(b".bad"))
}

impl Iterator for ChunkIterator {
    type Item = Result<ChunkEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((prefix_index, dir, read_dir)) = &mut self.current {
                match read_dir.next() {
                    Some(Ok(entry)) => {
                        let name = entry.file_name();
                        if let Some(bad) = is_chunk_name(name.as_bytes()) {
                            return Some(Ok(ChunkEntry {
                                path: dir.join(name),
                                bad,
                                prefix_index: *prefix_index,
                            }));
                        }
                        continue;
                    }
                    Some(Err(err)) => {
                        let msg = format!(
                            "unable to read chunk directory {dir:?} on store '{}' - {err}",
                            self.store_name
                        );
                        self.current = None;
                        return Some(Err(format_err!("{msg}")));
                    }
                    None => self.current = None,
                }
            }
            if self.next_prefix >= CHUNK_PREFIX_DIRS {
                return None;
            }
            let prefix_index = self.next_prefix;
            self.next_prefix += 1;
            let dir = self.chunk_dir.join(format!("{prefix_index:04x}"));
            match std::fs::read_dir(&dir) {
                Ok(read_dir) => self.current = Some((prefix_index, dir, read_dir)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Some(Err(format_err!(
                        "unable to open chunk directory {dir:?} on store '{}' - {err}",
                        self.store_name
                    )))
                }
            }
        }
    }
}

/// Builds an unencrypted, uncompressed blob (magic, CRC, payload) for tests.
#[cfg(test)]
pub(crate) fn test_plain_blob(data: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(12 + data.len());
    blob.extend_from_slice(&UNCOMPRESSED_BLOB_MAGIC_1_0);
    blob.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    blob.extend_from_slice(data);
    blob
}

/// Shared test store: creating 65536 directories takes a moment, so tests reuse stores.
#[cfg(test)]
pub(crate) mod test_store {
    use super::*;
    use std::sync::OnceLock;

    pub(crate) struct TestStore {
        _dir: tempfile::TempDir,
        pub(crate) store: Arc<ChunkStore>,
    }

    /// A temp dir for a test store: on tmpfs if available, where creating the 65536 prefix
    /// directories is an order of magnitude faster than on a disk file system.
    pub(crate) fn store_tempdir() -> tempfile::TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = tempfile::Builder::new()
                .prefix("pbs-store-test")
                .tempdir_in(shm)
            {
                return dir;
            }
        }
        tempfile::tempdir().unwrap()
    }

    /// A fresh store (use sparingly).
    pub(crate) fn new_store(name: &str, sync_level: DatastoreFSyncLevel) -> TestStore {
        let dir = store_tempdir();
        let base = dir.path().join("store");
        let store = ChunkStore::create(name, &base, sync_level).unwrap();
        TestStore {
            _dir: dir,
            store: Arc::new(store),
        }
    }

    pub(crate) fn set_times(path: &Path, atime: i64, mtime: i64) {
        let c_path = path_cstring(path).unwrap();
        let times = [
            libc::timespec {
                tv_sec: atime,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        ];
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
        assert_eq!(rc, 0);
    }

    static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();

    extern "C" fn remove_shared_dir() {
        if let Some(dir) = SHARED_DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// A store shared by all tests that only add chunks with distinct digests.
    ///
    /// Statics are never dropped, so the directory is removed by an exit handler.
    pub(crate) fn shared_store() -> Arc<ChunkStore> {
        static STORE: OnceLock<Arc<ChunkStore>> = OnceLock::new();
        STORE
            .get_or_init(|| {
                let dir = store_tempdir().keep();
                SHARED_DIR.set(dir.clone()).unwrap();
                // SAFETY: registering a plain extern "C" function.
                unsafe { libc::atexit(remove_shared_dir) };
                let store =
                    ChunkStore::create("shared", dir.join("store"), DatastoreFSyncLevel::File)
                        .unwrap();
                Arc::new(store)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::test_store::{set_times, shared_store};
    use super::*;
    use crate::process_locker::tests::{spawn_helper, wait_for_file};

    fn sha256(data: &[u8]) -> [u8; 32] {
        openssl::sha::sha256(data)
    }

    fn blob_with_magic(magic: [u8; 8], payload_len: usize, fill: u8) -> Vec<u8> {
        let header = if magic == ENCRYPTED_BLOB_MAGIC_1_0 || magic == ENCR_COMPR_BLOB_MAGIC_1_0 {
            44
        } else {
            12
        };
        let mut blob = vec![fill; header + payload_len];
        blob[..8].copy_from_slice(&magic);
        blob
    }

    /// A digest nobody else uses: derived from the test name.
    fn unique_digest(tag: &str) -> [u8; 32] {
        sha256(format!("chunk-store-test:{tag}").as_bytes())
    }

    #[test]
    fn insert_known_chunk_twice() {
        let store = shared_store();
        let blob = test_plain_blob(&[0, 1]);
        assert_eq!(hex::encode(&blob), "42ab3807be8370a16922de360001");
        let digest = sha256(&[0, 1]);
        assert_eq!(
            hex::encode(digest),
            "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2"
        );
        assert_eq!(store.insert_chunk(&blob, &digest).unwrap(), (false, 14));
        assert_eq!(store.insert_chunk(&blob, &digest).unwrap(), (true, 14));
        let expected = store
            .base_path()
            .join(".chunks/b413/b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2");
        assert_eq!(store.chunk_path(&digest), expected);
        assert_eq!(std::fs::read(&expected).unwrap(), blob);
        let mode = std::fs::metadata(&expected).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(store.load_chunk_raw(&digest).unwrap(), blob);
    }

    #[test]
    fn layout_of_new_store() {
        let store = shared_store();
        let chunks = store.base_path().join(".chunks");
        assert!(chunks.join("0000").is_dir());
        assert!(chunks.join("a342").is_dir());
        assert!(chunks.join("ffff").is_dir());
        assert!(store.base_path().join(".lock").is_file());
        assert_eq!(store.chunk_dir(), chunks);
        store.syncfs().unwrap();
        let digest =
            hex::decode("a342e8151cbf439ce65f3df696b54c67a114982cc0aa751f2852c2f7acc19a8b")
                .unwrap();
        let digest: [u8; 32] = digest.try_into().unwrap();
        assert_eq!(
            store.chunk_path(&digest),
            chunks.join("a342/a342e8151cbf439ce65f3df696b54c67a114982cc0aa751f2852c2f7acc19a8b")
        );
    }

    #[test]
    fn create_reports_progress_and_refuses_existing() {
        let dir = test_store::store_tempdir();
        let base = dir.path().join("progress");
        let lines = std::cell::RefCell::new(Vec::new());
        let store = ChunkStore::create_with_progress(
            "progress",
            &base,
            DatastoreFSyncLevel::None,
            &|line: &str| lines.borrow_mut().push(line.to_string()),
        )
        .unwrap();
        let lines = lines.into_inner();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0], "Chunkstore create: 0%");
        assert_eq!(lines[99], "Chunkstore create: 99%");
        assert_eq!(store.name(), "progress");
        let err = ChunkStore::create("progress", &base, DatastoreFSyncLevel::None)
            .expect_err("second create must fail");
        assert!(err
            .to_string()
            .contains("unable to create chunk store 'progress' subdir"));
        assert!(ChunkStore::create("rel", "relative/path", DatastoreFSyncLevel::None).is_err());
        let err = ChunkStore::open(
            "missing",
            dir.path().join("nope"),
            DatastoreFSyncLevel::None,
        )
        .expect_err("open of missing store must fail");
        assert!(err
            .to_string()
            .starts_with("unable to open chunk store 'missing'"));
    }

    fn existing_then_new(
        tag: &str,
        old: &[u8],
        new: &[u8],
    ) -> (Result<(bool, u64), Error>, Vec<u8>) {
        let store = shared_store();
        let digest = unique_digest(tag);
        let path = store.chunk_path(&digest);
        std::fs::write(&path, old).unwrap();
        let result = store.insert_chunk(new, &digest);
        let content = std::fs::read(&path).unwrap();
        (result, content)
    }

    #[test]
    fn overwrite_same_size_is_duplicate() {
        let old = blob_with_magic(COMPRESSED_BLOB_MAGIC_1_0, 20, 1);
        let new = blob_with_magic(UNCOMPRESSED_BLOB_MAGIC_1_0, 20, 2);
        let (result, content) = existing_then_new("same-size", &old, &new);
        assert_eq!(result.unwrap(), (true, 32));
        assert_eq!(content, old);
    }

    #[test]
    fn overwrite_empty_chunk() {
        let new = blob_with_magic(UNCOMPRESSED_BLOB_MAGIC_1_0, 20, 2);
        let (result, content) = existing_then_new("empty", &[], &new);
        assert_eq!(result.unwrap(), (false, 32));
        assert_eq!(content, new);
    }

    #[test]
    fn overwrite_unencrypted_with_encrypted_is_refused() {
        for magic in [UNCOMPRESSED_BLOB_MAGIC_1_0, COMPRESSED_BLOB_MAGIC_1_0] {
            let old = blob_with_magic(magic, 100, 1);
            let new = blob_with_magic(ENCR_COMPR_BLOB_MAGIC_1_0, 10, 2);
            let tag = format!("unenc-by-enc-{}", hex::encode(magic));
            let (result, content) = existing_then_new(&tag, &old, &new);
            let err = result.expect_err("must be refused").to_string();
            assert!(
                err.starts_with("Overwriting unencrypted chunk '")
                    && err.ends_with(
                        "' on store 'shared' with encrypted chunk with same digest not allowed!"
                    ),
                "{err}"
            );
            assert_eq!(content, old);
        }
    }

    #[test]
    fn overwrite_encrypted_with_uncompressed_encrypted_is_refused() {
        let old = blob_with_magic(ENCRYPTED_BLOB_MAGIC_1_0, 100, 1);
        let new = blob_with_magic(ENCRYPTED_BLOB_MAGIC_1_0, 50, 2);
        let (result, content) = existing_then_new("enc-by-enc", &old, &new);
        let err = result.expect_err("must be refused").to_string();
        assert!(
            err.starts_with("Overwriting existing (encrypted) chunk '")
                && err.ends_with("' on store 'shared' is not allowed!"),
            "{err}"
        );
        assert_eq!(content, old);
    }

    #[test]
    fn encrypted_over_other_encrypted_keeps_existing() {
        // compressed-encrypted over plain-encrypted, and anything encrypted over compressed-encrypted
        let cases = [
            (
                ENCRYPTED_BLOB_MAGIC_1_0,
                ENCR_COMPR_BLOB_MAGIC_1_0,
                "keep-1",
            ),
            (
                ENCR_COMPR_BLOB_MAGIC_1_0,
                ENCRYPTED_BLOB_MAGIC_1_0,
                "keep-2",
            ),
            (
                ENCR_COMPR_BLOB_MAGIC_1_0,
                ENCR_COMPR_BLOB_MAGIC_1_0,
                "keep-3",
            ),
        ];
        for (old_magic, new_magic, tag) in cases {
            let old = blob_with_magic(old_magic, 100, 1);
            let new = blob_with_magic(new_magic, 30, 2);
            let (result, content) = existing_then_new(tag, &old, &new);
            assert_eq!(result.unwrap(), (true, 144), "{tag}");
            assert_eq!(content, old, "{tag}");
        }
    }

    #[test]
    fn unencrypted_smaller_existing_is_kept() {
        let old = blob_with_magic(COMPRESSED_BLOB_MAGIC_1_0, 10, 1);
        let new = blob_with_magic(UNCOMPRESSED_BLOB_MAGIC_1_0, 40, 2);
        let (result, content) = existing_then_new("smaller-existing", &old, &new);
        assert_eq!(result.unwrap(), (true, 22));
        assert_eq!(content, old);
    }

    #[test]
    fn unencrypted_bigger_existing_is_replaced() {
        let old = blob_with_magic(UNCOMPRESSED_BLOB_MAGIC_1_0, 40, 1);
        let new = blob_with_magic(COMPRESSED_BLOB_MAGIC_1_0, 10, 2);
        let (result, content) = existing_then_new("bigger-existing", &old, &new);
        assert_eq!(result.unwrap(), (false, 22));
        assert_eq!(content, new);
    }

    #[test]
    fn invalid_blobs_are_rejected() {
        let store = shared_store();
        let digest = unique_digest("invalid");
        let err = store.insert_chunk(b"garbage-bytes", &digest).unwrap_err();
        assert!(err.to_string().contains("wrong magic"), "{err}");
        let short = &blob_with_magic(ENCRYPTED_BLOB_MAGIC_1_0, 0, 0)[..20];
        let err = store.insert_chunk(short, &digest).unwrap_err();
        assert!(err.to_string().contains("blob too small"), "{err}");
        assert!(!store.chunk_path(&digest).exists());
    }

    #[test]
    fn non_regular_file_at_chunk_path_errors() {
        let store = shared_store();
        let digest = unique_digest("directory");
        std::fs::create_dir(store.chunk_path(&digest)).unwrap();
        let err = store
            .insert_chunk(&test_plain_blob(b"x"), &digest)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "got unexpected file type on store 'shared' for chunk {}",
                hex::encode(digest)
            )
        );
        let digest = unique_digest("symlink");
        std::os::unix::fs::symlink("/dev/null", store.chunk_path(&digest)).unwrap();
        assert!(store.insert_chunk(&test_plain_blob(b"x"), &digest).is_err());
    }

    #[test]
    fn touch_updates_only_atime() {
        let store = shared_store();
        let data = b"touch me";
        let digest = sha256(data);
        store.insert_chunk(&test_plain_blob(data), &digest).unwrap();
        let path = store.chunk_path(&digest);
        set_times(&path, 1000, 2000);
        assert!(store.cond_touch_chunk(&digest, true).unwrap());
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(meta.atime() > 1_600_000_000);
        assert_eq!(meta.mtime(), 2000);
        let missing = unique_digest("missing");
        assert!(!store.cond_touch_chunk(&missing, false).unwrap());
        let err = store.cond_touch_chunk(&missing, true).unwrap_err();
        assert!(err.to_string().starts_with("update atime failed for "));
    }

    #[test]
    fn corrupted_chunk_renaming_picks_next_free_number() {
        let store = shared_store();
        let data = b"corrupt chunk";
        let digest = sha256(data);
        let blob = test_plain_blob(data);
        let path = store.chunk_path(&digest);
        let hex_digest = hex::encode(digest);
        assert_eq!(store.rename_corrupted_chunk(&digest).unwrap(), None);
        for n in 0..9 {
            store.insert_chunk(&blob, &digest).unwrap();
            let renamed = store.rename_corrupted_chunk(&digest).unwrap().unwrap();
            assert_eq!(
                renamed,
                path.with_file_name(format!("{hex_digest}.{n}.bad"))
            );
            assert!(!path.exists());
        }
        // With .0 … .8 taken, .9 is used and overwritten on every further rename.
        std::fs::remove_file(path.with_file_name(format!("{hex_digest}.4.bad"))).unwrap();
        store.insert_chunk(&blob, &digest).unwrap();
        let renamed = store.rename_corrupted_chunk(&digest).unwrap().unwrap();
        assert_eq!(renamed, path.with_file_name(format!("{hex_digest}.4.bad")));
        for _ in 0..2 {
            store.insert_chunk(&blob, &digest).unwrap();
            let renamed = store.rename_corrupted_chunk(&digest).unwrap().unwrap();
            assert_eq!(renamed, path.with_file_name(format!("{hex_digest}.9.bad")));
        }
    }

    #[test]
    fn chunk_name_filter() {
        let hex64 = "ab".repeat(32);
        assert_eq!(is_chunk_name(hex64.as_bytes()), Some(false));
        assert_eq!(
            is_chunk_name(format!("{hex64}.0.bad").as_bytes()),
            Some(true)
        );
        assert_eq!(
            is_chunk_name(format!("{hex64}.tmp_abcdef").as_bytes()),
            None
        );
        // Only the length and the hex prefix count, as in the sweep of the reference.
        assert_eq!(
            is_chunk_name(format!("{hex64}.tmp_x").as_bytes()),
            Some(false)
        );
        assert_eq!(is_chunk_name("zz".repeat(32).as_bytes()), None);
        assert_eq!(is_chunk_name(b"abcd"), None);
    }

    #[test]
    fn sync_level_names() {
        assert_eq!(
            DatastoreFSyncLevel::default(),
            DatastoreFSyncLevel::Filesystem
        );
        for (level, name) in [
            (DatastoreFSyncLevel::None, "none"),
            (DatastoreFSyncLevel::File, "file"),
            (DatastoreFSyncLevel::Filesystem, "filesystem"),
        ] {
            assert_eq!(
                serde_json::to_string(&level).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(name.parse::<DatastoreFSyncLevel>().unwrap(), level);
            assert_eq!(level.to_string(), name);
        }
        assert!("bogus".parse::<DatastoreFSyncLevel>().is_err());
    }

    const STORE_ENV: &str = "PBS_DATASTORE_TEST_STORE";
    const ROUNDS: usize = 200;

    fn race_data(round: usize) -> Vec<u8> {
        let mut data = vec![0u8; 64 * 1024];
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (i.wrapping_mul(31) ^ round) as u8;
        }
        data
    }

    fn race_inserts(store: &ChunkStore, go: &Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !go.exists() {
            assert!(std::time::Instant::now() < deadline, "no go signal");
            std::hint::spin_loop();
        }
        for round in 0..ROUNDS {
            let data = race_data(round);
            let blob = test_plain_blob(&data);
            let (_, size) = store.insert_chunk(&blob, &sha256(&data)).unwrap();
            assert_eq!(size, blob.len() as u64);
        }
    }

    /// Helper process: inserts the race chunks into the store named by the env var.
    #[test]
    #[ignore = "helper process for multi-process insert tests"]
    fn child_race_inserts() {
        let Some(base) = std::env::var_os(STORE_ENV) else {
            return;
        };
        let base = PathBuf::from(base);
        let store = ChunkStore::open("race", &base, DatastoreFSyncLevel::None).unwrap();
        let ready = base.join(format!("ready-{}", std::process::id()));
        std::fs::write(ready, b"").unwrap();
        race_inserts(&store, &base.join("go"));
    }

    #[test]
    fn concurrent_inserts_from_processes() {
        let store = shared_store();
        let base = store.base_path().to_path_buf();
        let mut children: Vec<_> = (0..2)
            .map(|_| {
                spawn_helper(
                    "chunk_store::tests::child_race_inserts",
                    &[(STORE_ENV, base.as_os_str())],
                )
            })
            .collect();
        for child in children.iter_mut() {
            let ready = base.join(format!("ready-{}", child.id()));
            wait_for_file(&ready, child);
            std::fs::remove_file(ready).unwrap();
        }
        std::fs::write(base.join("go"), b"").unwrap();
        race_inserts(&store, &base.join("go"));
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        std::fs::remove_file(base.join("go")).unwrap();
        for round in 0..ROUNDS {
            let data = race_data(round);
            let digest = sha256(&data);
            let path = store.chunk_path(&digest);
            assert_eq!(std::fs::read(&path).unwrap(), test_plain_blob(&data));
            let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with(&hex::encode(digest)) && name.contains(".tmp_")
                })
                .collect();
            assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        }
    }
}
