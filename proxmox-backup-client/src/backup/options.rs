//! The options of `backup`, read and validated before anything else happens.

use std::path::PathBuf;

use anyhow::{bail, format_err, Result};

use pbs_api_types::{BackupNamespace, BackupType};
use pbs_cli::ParsedArgs;

/// Default average/fixed chunk size: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Average chunk size of the catalog stream: 512 KiB.
pub const CATALOG_CHUNK_SIZE: usize = 512 * 1024;
/// Default limit of the archiver's entries (`--entries-max`).
pub const DEFAULT_ENTRIES_MAX: usize = 1024 * 1024;

/// How pxar archives are compared with the previous snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeDetectionMode {
    /// One v1 archive plus the catalog.
    #[default]
    Legacy,
    /// Split v2 archives, all contents encoded.
    Data,
    /// Split v2 archives, unchanged files reuse the previous payload chunks.
    Metadata,
}

impl std::str::FromStr for ChangeDetectionMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "legacy" => Ok(Self::Legacy),
            "data" => Ok(Self::Data),
            "metadata" => Ok(Self::Metadata),
            _ => bail!(
                "parameter verification failed - 'change-detection-mode': value '{s}' is not defined in the enumeration."
            ),
        }
    }
}

/// Validated `backup` options (everything but the specs, repository and crypto).
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub ns: BackupNamespace,
    pub backup_type: BackupType,
    pub backup_id: String,
    pub backup_time: i64,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    pub exclude: Vec<String>,
    /// `None`: all file systems; else the extra devices' paths.
    pub include_dev: Option<Vec<PathBuf>>,
    pub skip_lost_and_found: bool,
    pub entries_max: usize,
    pub rate: Option<u64>,
    pub burst: Option<u64>,
    pub dry_run: bool,
    pub skip_e2big_xattr: bool,
    pub change_detection_mode: ChangeDetectionMode,
    pub verbose: bool,
}

fn verify_error(name: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    format_err!("parameter verification failed - '{name}': {msg}")
}

fn integer_at_least(args: &ParsedArgs, name: &str, min: i64) -> Result<Option<i64>> {
    match args.integer(name)? {
        Some(v) if v < min => Err(verify_error(
            name,
            format!("value must have a minimum value of {min} (got {v})"),
        )),
        other => Ok(other),
    }
}

/// The `--chunk-size` value (KiB, a power of two in 64..=4096) in bytes.
pub fn chunk_size_from_kib(kib: i64) -> Result<usize> {
    if !(64..=4096).contains(&kib) || (kib & (kib - 1)) != 0 {
        bail!("Got unsupported chunk size '{kib}'");
    }
    Ok(kib as usize * 1024)
}

/// The short host name: the node name up to the first dot.
pub fn short_nodename() -> Result<String> {
    // SAFETY: uname fills the zeroed struct; the fields are NUL-terminated.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let name = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(name.split('.').next().unwrap_or_default().to_string())
}

fn is_safe_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Reads the namespace option (`--ns`); absent means the root namespace.
pub fn namespace_from_args(args: &ParsedArgs) -> Result<BackupNamespace> {
    match args.get("ns") {
        None | Some("") => Ok(BackupNamespace::default()),
        Some(ns) => BackupNamespace::new(ns).map_err(|err| verify_error("ns", err)),
    }
}

impl BackupOptions {
    /// Reads and validates the options.
    pub fn from_args(args: &ParsedArgs) -> Result<Self> {
        let ns = namespace_from_args(args)?;
        let backup_type = match args.get("backup-type") {
            None => BackupType::Host,
            Some(t) => t.parse().map_err(|_| {
                verify_error(
                    "backup-type",
                    format!("value '{t}' is not defined in the enumeration."),
                )
            })?,
        };
        let backup_id = match args.get("backup-id") {
            Some(id) => {
                if !is_safe_id(id) {
                    return Err(verify_error(
                        "backup-id",
                        "value does not match the regex pattern",
                    ));
                }
                id.to_string()
            }
            None => short_nodename()?,
        };
        let backup_time = match integer_at_least(args, "backup-time", 1)? {
            Some(t) => t,
            None => pbs_api_types::time::epoch_now(),
        };
        let chunk_size = match args.integer("chunk-size")? {
            Some(kib) => chunk_size_from_kib(kib)?,
            None => DEFAULT_CHUNK_SIZE,
        };
        let all_file_systems = args.flag("all-file-systems", false)?;
        let include_dev: Vec<PathBuf> = args
            .get_all("include-dev")
            .iter()
            .map(PathBuf::from)
            .collect();
        if all_file_systems && !include_dev.is_empty() {
            bail!("option 'all-file-systems' conflicts with option 'include-dev'");
        }
        let entries_max = match integer_at_least(args, "entries-max", 0)? {
            Some(v) => {
                usize::try_from(v).map_err(|_| verify_error("entries-max", "value too large"))?
            }
            None => DEFAULT_ENTRIES_MAX,
        };
        let rate = integer_at_least(args, "rate", 100_000)?.map(|v| v as u64);
        let burst = integer_at_least(args, "burst", 1000)?.map(|v| v as u64);
        let change_detection_mode = match args.get("change-detection-mode") {
            Some(mode) => mode.parse()?,
            None => ChangeDetectionMode::Legacy,
        };
        Ok(Self {
            ns,
            backup_type,
            backup_id,
            backup_time,
            chunk_size,
            exclude: args.get_all("exclude").to_vec(),
            include_dev: (!all_file_systems).then_some(include_dev),
            skip_lost_and_found: args.flag("skip-lost-and-found", false)?,
            entries_max,
            rate,
            burst,
            dry_run: args.flag("dry-run", false)?,
            skip_e2big_xattr: args.flag("skip-e2big-xattr", false)?,
            change_detection_mode,
            verbose: args.flag("verbose", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        for kib in [64, 128, 256, 512, 1024, 2048, 4096] {
            assert_eq!(
                chunk_size_from_kib(kib).expect("valid"),
                kib as usize * 1024
            );
        }
        for kib in [0, 32, 63, 65, 100, 3000, 8192, -64] {
            assert_eq!(
                chunk_size_from_kib(kib).unwrap_err().to_string(),
                format!("Got unsupported chunk size '{kib}'")
            );
        }
    }

    fn parse(argv: &[&str]) -> Result<BackupOptions> {
        let tree = super::super::backup_command_tree();
        let mut full = vec!["x.conf:/etc/hostname".to_string()];
        full.extend(argv.iter().map(|s| s.to_string()));
        let inv = pbs_cli::parse_command_line(&tree, &full)?;
        BackupOptions::from_args(&inv.args)
    }

    #[test]
    fn option_values() {
        let o = parse(&[]).expect("defaults");
        assert_eq!(o.backup_type, BackupType::Host);
        assert_eq!(o.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(o.entries_max, DEFAULT_ENTRIES_MAX);
        assert_eq!(o.include_dev, Some(vec![]));
        assert_eq!(o.change_detection_mode, ChangeDetectionMode::Legacy);
        assert!(o.backup_time > 1_600_000_000);
        assert!(!o.backup_id.contains('.'));

        let o = parse(&[
            "--backup-type",
            "vm",
            "--backup-id",
            "100",
            "--backup-time",
            "1700000000",
            "--chunk-size",
            "64",
            "--ns",
            "a/b",
            "--change-detection-mode",
            "metadata",
            "--all-file-systems",
            "--rate",
            "100000",
        ])
        .expect("options");
        assert_eq!(o.backup_type, BackupType::Vm);
        assert_eq!(o.backup_id, "100");
        assert_eq!(o.backup_time, 1_700_000_000);
        assert_eq!(o.chunk_size, 65536);
        assert_eq!(o.ns.components(), ["a", "b"]);
        assert_eq!(o.include_dev, None);
        assert_eq!(o.rate, Some(100_000));
        assert_eq!(o.change_detection_mode, ChangeDetectionMode::Metadata);

        let err = parse(&["--all-file-systems", "--include-dev", "/x"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "option 'all-file-systems' conflicts with option 'include-dev'"
        );
        assert!(parse(&["--rate", "99999"]).is_err());
        assert!(parse(&["--burst", "999"]).is_err());
        assert!(parse(&["--backup-time", "0"]).is_err());
        assert!(parse(&["--backup-id", ".x"]).is_err());
        assert!(parse(&["--backup-type", "foo"]).is_err());
        assert!(parse(&["--change-detection-mode", "foo"]).is_err());
        assert_eq!(
            parse(&["--chunk-size", "100"]).unwrap_err().to_string(),
            "Got unsupported chunk size '100'"
        );
    }
}
