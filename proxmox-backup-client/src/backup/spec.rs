//! Backup specifications (`<label>.<ext>:<path>`) and the checks of their sources.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use anyhow::{bail, format_err, Context, Result};

/// What kind of archive a spec produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A directory tree as a pxar archive (dynamic index).
    Pxar,
    /// A file or block device as an image (fixed index).
    Image,
    /// A configuration file (blob).
    Config,
    /// A log file (blob).
    Log,
}

impl ArchiveKind {
    fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "pxar" => Some(ArchiveKind::Pxar),
            "img" => Some(ArchiveKind::Image),
            "conf" => Some(ArchiveKind::Config),
            "log" => Some(ArchiveKind::Log),
            _ => None,
        }
    }

    /// How the archive is called in the `Upload <what> ...` log line.
    pub fn describe(self) -> &'static str {
        match self {
            ArchiveKind::Pxar => "directory",
            ArchiveKind::Image => "image",
            ArchiveKind::Config => "config file",
            ArchiveKind::Log => "log file",
        }
    }
}

/// One parsed `<label>.<ext>:<path>` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSpec {
    /// Archive name with extension, e.g. `root.pxar`.
    pub archive_name: String,
    /// The kind of archive.
    pub kind: ArchiveKind,
    /// The local source path as given.
    pub path: PathBuf,
}

impl BackupSpec {
    /// Name of the server file (`root.pxar.didx`, `disk.img.fidx`, `x.conf.blob`); for split
    /// pxar archives see [`split_names`].
    pub fn server_file_name(&self) -> String {
        match self.kind {
            ArchiveKind::Pxar => format!("{}.didx", self.archive_name),
            ArchiveKind::Image => format!("{}.fidx", self.archive_name),
            ArchiveKind::Config | ArchiveKind::Log => format!("{}.blob", self.archive_name),
        }
    }

    /// The label without extension.
    pub fn label(&self) -> &str {
        self.archive_name
            .rsplit_once('.')
            .map_or(self.archive_name.as_str(), |(label, _)| label)
    }
}

/// The metadata and payload index names of a split pxar archive (`label.mpxar.didx`,
/// `label.ppxar.didx`).
pub fn split_names(label: &str) -> (String, String) {
    (format!("{label}.mpxar.didx"), format!("{label}.ppxar.didx"))
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses one spec with the schema's pattern `^([a-zA-Z0-9_-]+\.(pxar|img|conf|log)):(.+)$`.
pub fn parse_backup_spec(value: &str) -> Result<BackupSpec> {
    let mismatch = || {
        format_err!("unable to parse backup source specification '{value}' - value does not match the regex pattern")
    };
    let (archive_name, path) = value.split_once(':').ok_or_else(mismatch)?;
    // The label has no dot, so the first ':' after `label.ext` separates the path.
    let (label, ext) = archive_name.split_once('.').ok_or_else(mismatch)?;
    if label.is_empty() || !label.chars().all(is_label_char) || path.is_empty() {
        return Err(mismatch());
    }
    let kind = ArchiveKind::from_extension(ext).ok_or_else(mismatch)?;
    Ok(BackupSpec {
        archive_name: archive_name.to_string(),
        kind,
        path: PathBuf::from(path),
    })
}

/// A spec whose source passed the checks.
#[derive(Clone, Debug)]
pub struct CheckedSpec {
    /// The parsed spec.
    pub spec: BackupSpec,
    /// Image size in bytes (images only, else the file size).
    pub size: u64,
}

/// Size of a block device (`BLKGETSIZE64`).
fn block_device_size(file: &File) -> Result<u64> {
    use std::os::fd::AsRawFd;
    // _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: the ioctl writes one u64 into `size`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("unable to query block device size");
    }
    Ok(size)
}

/// Checks a source (following symlinks) against what its archive kind needs.
pub fn check_source(spec: BackupSpec) -> Result<CheckedSpec> {
    let path = &spec.path;
    let meta = std::fs::metadata(path)
        .map_err(|err| format_err!("unable to access '{}' - {err}", path.display()))?;
    let file_type = meta.file_type();
    let size = match spec.kind {
        ArchiveKind::Pxar => {
            if !file_type.is_dir() {
                bail!("got unexpected file type (expected directory)");
            }
            0
        }
        ArchiveKind::Image => {
            let size = if file_type.is_file() {
                meta.len()
            } else if file_type.is_block_device() {
                let file = File::open(path)
                    .map_err(|err| format_err!("unable to access '{}' - {err}", path.display()))?;
                block_device_size(&file)?
            } else {
                bail!("got unexpected file type (expected file or block device)");
            };
            if size == 0 {
                bail!("got zero-sized file '{}'", path.display());
            }
            size
        }
        ArchiveKind::Config | ArchiveKind::Log => {
            if !file_type.is_file() {
                bail!("got unexpected file type (expected regular file)");
            }
            meta.len()
        }
    };
    Ok(CheckedSpec { spec, size })
}

/// Parses and checks all specs in order; every target must be unique.
pub fn parse_and_check_specs(values: &[String]) -> Result<Vec<CheckedSpec>> {
    if values.is_empty() {
        bail!("parameter verification failed - 'backupspec': missing argument");
    }
    let mut targets = HashSet::new();
    let mut checked = Vec::with_capacity(values.len());
    for value in values {
        let spec = parse_backup_spec(value)?;
        if !targets.insert(spec.archive_name.clone()) {
            bail!("got target twice: '{}'", spec.archive_name);
        }
        checked.push(check_source(spec)?);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let spec = parse_backup_spec("root.pxar:/").expect("spec");
        assert_eq!(spec.kind, ArchiveKind::Pxar);
        assert_eq!(spec.archive_name, "root.pxar");
        assert_eq!(spec.path, PathBuf::from("/"));
        assert_eq!(spec.server_file_name(), "root.pxar.didx");
        assert_eq!(spec.label(), "root");
        assert_eq!(split_names(spec.label()).0, "root.mpxar.didx");

        let spec = parse_backup_spec("disk-0_a.img:/dev/sda:x").expect("spec");
        assert_eq!(spec.kind, ArchiveKind::Image);
        assert_eq!(spec.path, PathBuf::from("/dev/sda:x"));
        assert_eq!(spec.server_file_name(), "disk-0_a.img.fidx");
        assert_eq!(
            parse_backup_spec("a.conf:/x")
                .expect("spec")
                .server_file_name(),
            "a.conf.blob"
        );
        assert_eq!(
            parse_backup_spec("a.log:/x").expect("spec").kind,
            ArchiveKind::Log
        );

        for bad in [
            "my.root.pxar:/",
            "root.tar:/",
            "root.pxar:",
            "root.pxar",
            ".pxar:/",
            "ro ot.pxar:/",
            "root:/x",
        ] {
            assert!(parse_backup_spec(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn checks_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"data").expect("write");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").expect("write");
        let d = dir.path().display();
        let check = |s: String| {
            parse_and_check_specs(&[s])
                .map(|v| v[0].size)
                .map_err(|e| e.to_string())
        };

        assert_eq!(check(format!("a.pxar:{d}")), Ok(0));
        assert_eq!(check(format!("a.img:{d}/f")), Ok(4));
        assert_eq!(check(format!("a.conf:{d}/f")), Ok(4));
        assert_eq!(
            check(format!("a.pxar:{d}/f")),
            Err("got unexpected file type (expected directory)".into())
        );
        assert_eq!(
            check(format!("a.img:{d}")),
            Err("got unexpected file type (expected file or block device)".into())
        );
        assert_eq!(
            check(format!("a.log:{d}")),
            Err("got unexpected file type (expected regular file)".into())
        );
        assert_eq!(
            check(format!("a.img:{d}/empty")),
            Err(format!("got zero-sized file '{d}/empty'"))
        );
        let err = check(format!("a.conf:{d}/missing")).unwrap_err();
        assert!(
            err.starts_with(&format!("unable to access '{d}/missing' - ")),
            "{err}"
        );

        let err = parse_and_check_specs(&[format!("a.conf:{d}/f"), format!("a.conf:{d}/f")])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "got target twice: 'a.conf'");
    }
}
