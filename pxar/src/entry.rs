//! Decoded entries as yielded by the decoder and the accessor.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::format::Device;
use crate::metadata::Metadata;

/// What kind of object an entry is, with its kind-specific data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File {
        /// File size in bytes.
        size: u64,
        /// v1: archive offset of the first content byte.
        offset: Option<u64>,
        /// v2: payload-stream offset of the file's PAYLOAD header.
        payload_offset: Option<u64>,
    },
    /// Directory (its children follow in sequential decoding).
    Directory,
    /// Symbolic link with its target.
    Symlink(PathBuf),
    /// Hardlink to an earlier regular file.
    Hardlink {
        /// Root-relative path of the target.
        target: PathBuf,
        /// Distance from this entry's FILENAME back to the target's FILENAME.
        offset: u64,
    },
    /// Character or block device.
    Device(Device),
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// End of the directory at `path` (sequential decoding only).
    GoodbyeTable,
}

/// One decoded archive entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path inside the archive; the root is `/`.
    pub path: PathBuf,
    /// Metadata (all zero for hardlinks and goodbye ends).
    pub metadata: Metadata,
    /// Kind and kind-specific data.
    pub kind: EntryKind,
    /// Archive offset of the entry's FILENAME header (`None` for the root and goodbye ends).
    pub filename_offset: Option<u64>,
}

impl Entry {
    /// Last path component (empty for the root).
    pub fn file_name(&self) -> &OsStr {
        self.path.file_name().unwrap_or_default()
    }

    /// The entry's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory?
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }

    /// Regular file?
    pub fn is_regular_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. })
    }

    /// For hardlinks: archive offset of the target's FILENAME header.
    pub fn hardlink_target_offset(&self) -> Option<u64> {
        match (&self.kind, self.filename_offset) {
            (EntryKind::Hardlink { offset, .. }, Some(start)) => start.checked_sub(*offset),
            _ => None,
        }
    }

    /// File size for regular files.
    pub fn file_size(&self) -> Option<u64> {
        match self.kind {
            EntryKind::File { size, .. } => Some(size),
            _ => None,
        }
    }
}
