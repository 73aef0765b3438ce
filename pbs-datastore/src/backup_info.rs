//! What a snapshot directory contains: archive files, finished and protected state.

use std::io;
use std::path::Path;

use anyhow::{Context, Error};

use pbs_api_types::{BackupDir, BackupNamespace};

/// Name of the manifest; its presence marks a finished snapshot.
pub const MANIFEST_BLOB_NAME: &str = "index.json.blob";
/// Name of the optional client log blob.
pub const CLIENT_LOG_BLOB_NAME: &str = "client.log.blob";
/// Name of the empty marker file of a protected snapshot.
pub const PROTECTED_MARKER_NAME: &str = ".protected";

/// Whether a file name is listed as a snapshot file: `^.*\.([fd]idx|blob)$`.
pub fn is_backup_file_name(name: &str) -> bool {
    name.ends_with(".fidx") || name.ends_with(".didx") || name.ends_with(".blob")
}

/// One snapshot as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// Namespace the snapshot lives in.
    pub ns: BackupNamespace,
    /// The snapshot.
    pub backup_dir: BackupDir,
    /// Regular files named like archives (`*.fidx`, `*.didx`, `*.blob`), sorted.
    pub files: Vec<String>,
    /// Whether the `.protected` marker exists.
    pub protected: bool,
}

impl BackupInfo {
    /// Reads the snapshot directory `path` of `backup_dir`.
    pub fn read(path: &Path, ns: BackupNamespace, backup_dir: BackupDir) -> Result<Self, Error> {
        let (files, protected) = scan_snapshot_dir(path)
            .with_context(|| format!("unable to list files of snapshot {path:?}"))?;
        Ok(Self {
            ns,
            backup_dir,
            files,
            protected,
        })
    }

    /// Whether the snapshot has a manifest (backup completed).
    pub fn is_finished(&self) -> bool {
        self.files.iter().any(|f| f == MANIFEST_BLOB_NAME)
    }

    /// Sorts by backup time, oldest first if `ascending`.
    pub fn sort_list(list: &mut [BackupInfo], ascending: bool) {
        if ascending {
            list.sort_by_key(|info| info.backup_dir.time);
        } else {
            list.sort_by_key(|info| std::cmp::Reverse(info.backup_dir.time));
        }
    }
}

/// Lists the archive-like regular files of a snapshot directory and whether it is protected.
fn scan_snapshot_dir(path: &Path) -> io::Result<(Vec<String>, bool)> {
    let mut files = Vec::new();
    let mut protected = false;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == PROTECTED_MARKER_NAME {
            protected = true;
            continue;
        }
        if !is_backup_file_name(name) {
            continue;
        }
        // file_type() uses the readdir type and falls back to lstat when it is unknown
        if entry.file_type()?.is_file() {
            files.push(name.to_string());
        }
    }
    files.sort_unstable();
    Ok((files, protected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_rule() {
        for good in [
            "root.pxar.didx",
            "drive-scsi0.img.fidx",
            "index.json.blob",
            ".blob",
        ] {
            assert!(is_backup_file_name(good), "{good}");
        }
        for bad in [
            "x.tmp_didx",
            "x.didx.tmp_1234",
            ".protected",
            "blob",
            "x.fidx~",
            "x.idx",
        ] {
            assert!(!is_backup_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn read_snapshot_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        for f in ["b.fidx", "a.didx", "x.blob", "junk.txt", "tmp.tmp_didx"] {
            std::fs::write(p.join(f), b"").unwrap();
        }
        std::fs::create_dir(p.join("dir.didx")).unwrap();
        let dir: BackupDir = "vm/1/2020-06-26T13:56:05Z".parse().unwrap();
        let info = BackupInfo::read(p, BackupNamespace::root(), dir.clone()).unwrap();
        assert_eq!(info.files, ["a.didx", "b.fidx", "x.blob"]);
        assert!(!info.protected);
        assert!(!info.is_finished());

        std::fs::write(p.join(MANIFEST_BLOB_NAME), b"").unwrap();
        std::fs::write(p.join(PROTECTED_MARKER_NAME), b"").unwrap();
        let info = BackupInfo::read(p, BackupNamespace::root(), dir.clone()).unwrap();
        assert!(info.protected);
        assert!(info.is_finished());

        let err = BackupInfo::read(&p.join("missing"), BackupNamespace::root(), dir).unwrap_err();
        assert!(format!("{err:#}").contains("unable to list files of snapshot"));
    }

    #[test]
    fn sort_list_orders_by_time() {
        let mk = |t: i64| BackupInfo {
            ns: BackupNamespace::root(),
            backup_dir: BackupDir::new("vm/1".parse().unwrap(), t).unwrap(),
            files: vec![],
            protected: false,
        };
        let mut list = vec![mk(3), mk(1), mk(2)];
        BackupInfo::sort_list(&mut list, true);
        let times: Vec<i64> = list.iter().map(|i| i.backup_dir.time).collect();
        assert_eq!(times, [1, 2, 3]);
        BackupInfo::sort_list(&mut list, false);
        let times: Vec<i64> = list.iter().map(|i| i.backup_dir.time).collect();
        assert_eq!(times, [3, 2, 1]);
    }
}
