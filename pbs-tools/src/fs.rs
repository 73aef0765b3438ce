//! Atomic file replacement: write a temp file next to the target, then rename it over.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};

/// Creates a unique temp file (mode 0600) next to `path`, named `<path minus extension>.tmp_XXXXXX`.
pub fn make_tmp_file(path: &Path) -> io::Result<(File, PathBuf)> {
    let template = path.with_extension("tmp_XXXXXX");
    let mut raw = CString::new(template.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?
        .into_bytes_with_nul();
    // SAFETY: raw is a writable NUL-terminated buffer ending in XXXXXX.
    let fd = unsafe { libc::mkstemp(raw.as_mut_ptr() as *mut libc::c_char) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: mkstemp returned a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    raw.pop();
    Ok((file, PathBuf::from(OsStr::from_bytes(&raw))))
}

/// How [`replace_file`] creates the new file.
#[derive(Clone, Copy, Debug)]
pub struct ReplaceOptions {
    /// Permission bits of the new file.
    pub mode: u32,
    /// Owner and group to give the new file (only takes effect when running as root).
    pub owner: Option<(u32, u32)>,
    /// fsync the file before the rename (configuration and key files).
    pub fsync: bool,
}

impl ReplaceOptions {
    /// The given mode, no owner change, no fsync.
    pub const fn mode(mode: u32) -> Self {
        Self {
            mode,
            owner: None,
            fsync: false,
        }
    }
}

/// Atomically replaces `path` with `data`: readers see the old or the new content, never a mix.
pub fn replace_file(path: &Path, data: &[u8], options: ReplaceOptions) -> io::Result<()> {
    let (mut file, tmp_path) = make_tmp_file(path)?;
    let result = (|| {
        file.set_permissions(std::fs::Permissions::from_mode(options.mode))?;
        if let Some((uid, gid)) = options.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(data)?;
        if options.fsync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp_path, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_creates_and_overwrites_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json.blob");
        replace_file(&path, b"one", ReplaceOptions::mode(0o644)).unwrap();
        replace_file(
            &path,
            b"two",
            ReplaceOptions {
                mode: 0o600,
                owner: None,
                fsync: true,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("index.json.blob")]);
    }

    #[test]
    fn tmp_name_replaces_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, tmp) = make_tmp_file(&dir.path().join("index.json.blob")).unwrap();
        let name = tmp.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("index.json.tmp_") && name.len() == "index.json.tmp_".len() + 6,
            "{name}"
        );
        assert!(make_tmp_file(&dir.path().join("missing/x")).is_err());
    }
}
