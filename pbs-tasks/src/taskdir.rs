//! The task directory (`<log dir>/tasks`): file locations, ownership, the list lock, and
//! reading task logs.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Error};

use pbs_api_types::UPID;

use crate::state::TaskState;

/// How much of the end of a task log is read to find its final status line.
const STATUS_TAIL_BYTES: u64 = 8192;

/// Location and file ownership of the task logs and task lists.
#[derive(Clone, Debug)]
pub struct TaskDir {
    root: PathBuf,
    owner: Option<(u32, u32)>,
}

/// uid/gid of the `backup` user, if it exists.
fn backup_user_ids() -> Option<(u32, u32)> {
    pbs_tools::user::backup_user()
}

/// Locks `flock`-style on an open file; released when the file is closed.
pub(crate) struct ListLock(#[allow(dead_code)] File);

impl TaskDir {
    /// Task files under `root`; files are given to `backup:backup` when running as root.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        // SAFETY: geteuid has no preconditions.
        let owner = if unsafe { libc::geteuid() } == 0 {
            backup_user_ids()
        } else {
            None
        };
        Self {
            root: root.into(),
            owner,
        }
    }

    /// `<log dir>/tasks` as given by `PBS_BASE_DIR`.
    pub fn default_location() -> Self {
        Self::new(pbs_buildcfg::log_dir().join("tasks"))
    }

    /// The task directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<XX>/<UPID>`
    pub fn log_path(&self, upid: &UPID) -> PathBuf {
        self.root.join(upid.log_subdir()).join(upid.to_string())
    }

    /// `<root>/active`: running tasks.
    pub fn active_path(&self) -> PathBuf {
        self.root.join("active")
    }

    /// `<root>/archive`: finished tasks (newest rotation).
    pub fn archive_path(&self) -> PathBuf {
        self.root.join("archive")
    }

    /// `<root>/index`: list of older versions, merged into the archive.
    pub fn legacy_index_path(&self) -> PathBuf {
        self.root.join("index")
    }

    /// `<root>/.active.lock`
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".active.lock")
    }

    pub(crate) fn chown(&self, file: &File) -> Result<(), Error> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Gives a list or lock file mode 0660 (regardless of the umask) and the task owner.
    pub(crate) fn prepare_list_file(&self, file: &File) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o660))?;
        self.chown(file)
    }

    /// Creates `path` (mode 0755) if missing and hands it to the task file owner.
    pub(crate) fn create_dir(&self, path: &Path) -> Result<(), Error> {
        match std::fs::DirBuilder::new().mode(0o755).create(path) {
            Ok(()) => {
                if let Some((uid, gid)) = self.owner {
                    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
                }
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(err).with_context(|| format!("unable to create directory {path:?}")),
        }
    }

    /// Creates the task directory and its parents.
    pub fn create(&self) -> Result<(), Error> {
        if let Some(parent) = self.root.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("unable to create directory {parent:?}"))?;
        }
        self.create_dir(&self.root)
    }

    /// Takes the exclusive lock guarding `active` and `archive`.
    pub(crate) fn lock_lists(&self) -> Result<ListLock, Error> {
        self.create()?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o660)
            .open(&path)
            .with_context(|| format!("unable to open lock file {path:?}"))?;
        self.prepare_list_file(&file)?;
        loop {
            // SAFETY: valid descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(ListLock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("unable to lock {path:?}"));
            }
        }
    }

    /// The final state of a task read from the end of its log.
    pub fn read_task_state(&self, upid: &UPID) -> Result<TaskState, Error> {
        let path = self.log_path(upid);
        let mut file =
            File::open(&path).with_context(|| format!("unable to open task log {path:?}"))?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(STATUS_TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::with_capacity((len - start) as usize);
        file.read_to_end(&mut tail)
            .with_context(|| format!("unable to read task log {path:?}"))?;
        let tail = String::from_utf8_lossy(&tail);
        let last = tail.lines().rev().find(|l| !l.is_empty()).unwrap_or("");
        Ok(TaskState::from_last_log_line(last, upid.starttime))
    }

    /// Lines of a task log numbered from 1: lines before `start` are skipped, at most
    /// `limit` lines are returned (0 = all). `total` counts every line of the file.
    pub fn read_task_log(&self, upid: &UPID, start: u64, limit: u64) -> Result<TaskLogPage, Error> {
        let path = self.log_path(upid);
        let file =
            File::open(&path).with_context(|| format!("unable to open task log {path:?}"))?;
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut total = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("unable to read task log {path:?}"))?;
            if n == 0 {
                break;
            }
            total += 1;
            if total < start || (limit > 0 && lines.len() as u64 >= limit) {
                continue;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            lines.push((total, String::from_utf8_lossy(&buf).into_owned()));
        }
        Ok(TaskLogPage { total, lines })
    }
}

/// A page of a task log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLogPage {
    /// Number of lines in the whole log.
    pub total: u64,
    /// `(line number, text)` pairs.
    pub lines: Vec<(u64, String)>,
}
