//! Backup types, groups and snapshots as named by the API and on disk.

use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::names::{check_backup_id, is_time_dir_name, NameError};
use crate::namespace::{BackupNamespace, NamespaceError};
use crate::time::{epoch_to_rfc3339_utc, parse_rfc3339, TimeError};

/// Why a backup group or snapshot name could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackupPathError {
    #[error("invalid backup type '{0}'")]
    InvalidType(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("invalid backup group path '{0}'")]
    InvalidGroupPath(String),
    #[error("invalid snapshot path '{0}'")]
    InvalidSnapshotPath(String),
}

/// Kind of a backup group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Virtual machine.
    Vm,
    /// Container.
    Ct,
    /// Host (file level).
    Host,
}

impl BackupType {
    /// All types in listing order.
    pub const ALL: [BackupType; 3] = [BackupType::Ct, BackupType::Host, BackupType::Vm];

    /// The directory / API name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackupType::Vm => "vm",
            BackupType::Ct => "ct",
            BackupType::Host => "host",
        }
    }

    /// Sort rank: ct < host < vm.
    const fn rank(self) -> u8 {
        match self {
            BackupType::Ct => 0,
            BackupType::Host => 1,
            BackupType::Vm => 2,
        }
    }
}

impl PartialOrd for BackupType {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackupType {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupType {
    type Err = BackupPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vm" => Ok(BackupType::Vm),
            "ct" => Ok(BackupType::Ct),
            "host" => Ok(BackupType::Host),
            other => Err(BackupPathError::InvalidType(other.to_string())),
        }
    }
}

/// Orders backup ids: numeric ids (as u64) first and numerically, then byte-wise.
///
/// Equal numbers with different spellings (`7`, `007`) are tie-broken byte-wise so the order
/// stays consistent with equality.
pub fn compare_backup_ids(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.as_bytes().cmp(b.as_bytes())),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// A backup group `<type>/<id>` (namespace not included).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupGroup {
    /// Backup type.
    #[serde(rename = "backup-type")]
    pub ty: BackupType,
    /// Backup id.
    #[serde(rename = "backup-id")]
    pub id: String,
}

impl BackupGroup {
    /// A group with a validated backup id.
    pub fn new(ty: BackupType, id: impl Into<String>) -> Result<Self, BackupPathError> {
        let id = id.into();
        check_backup_id(&id)?;
        Ok(Self { ty, id })
    }

    /// Relative path below the namespace directory: `<type>/<id>`.
    pub fn relative_path(&self) -> PathBuf {
        let mut path = PathBuf::from(self.ty.as_str());
        path.push(&self.id);
        path
    }
}

impl PartialOrd for BackupGroup {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackupGroup {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ty
            .cmp(&other.ty)
            .then_with(|| compare_backup_ids(&self.id, &other.id))
    }
}

impl fmt::Display for BackupGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ty, self.id)
    }
}

impl FromStr for BackupGroup {
    type Err = BackupPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ty, id) = s
            .split_once('/')
            .ok_or_else(|| BackupPathError::InvalidGroupPath(s.to_string()))?;
        if id.contains('/') {
            return Err(BackupPathError::InvalidGroupPath(s.to_string()));
        }
        BackupGroup::new(ty.parse()?, id)
    }
}

/// A snapshot `<type>/<id>/<time>` (namespace not included).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupDir {
    /// The group the snapshot belongs to.
    #[serde(flatten)]
    pub group: BackupGroup,
    /// Backup time in epoch seconds.
    #[serde(rename = "backup-time")]
    pub time: i64,
}

impl BackupDir {
    /// A snapshot whose time can be written as a directory name (years 0000..9999).
    pub fn new(group: BackupGroup, time: i64) -> Result<Self, BackupPathError> {
        epoch_to_rfc3339_utc(time)?;
        Ok(Self { group, time })
    }

    /// Parses the directory name `YYYY-MM-DDTHH:MM:SSZ` of a snapshot of `group`.
    pub fn with_time_dir_name(group: BackupGroup, name: &str) -> Result<Self, BackupPathError> {
        if !is_time_dir_name(name) {
            return Err(NameError::TimeDirName(name.to_string()).into());
        }
        let time = parse_rfc3339(name)?;
        // a leap second (`:60`) parses, but would map to another directory name
        if epoch_to_rfc3339_utc(time)? != name {
            return Err(NameError::TimeDirName(name.to_string()).into());
        }
        Ok(Self { group, time })
    }

    /// The directory name `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn time_string(&self) -> Result<String, TimeError> {
        epoch_to_rfc3339_utc(self.time)
    }

    /// Relative path below the namespace directory: `<type>/<id>/<time>`.
    pub fn relative_path(&self) -> Result<PathBuf, TimeError> {
        let mut path = self.group.relative_path();
        path.push(self.time_string()?);
        Ok(path)
    }
}

impl PartialOrd for BackupDir {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackupDir {
    fn cmp(&self, other: &Self) -> Ordering {
        self.group
            .cmp(&other.group)
            .then_with(|| self.time.cmp(&other.time))
    }
}

impl fmt::Display for BackupDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.time_string() {
            Ok(time) => write!(f, "{}/{}", self.group, time),
            // Unreachable for snapshots built through `new` or parsing; keep the value visible.
            Err(_) => write!(f, "{}/@{}", self.group, self.time),
        }
    }
}

impl FromStr for BackupDir {
    type Err = BackupPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (group, time) = s
            .rsplit_once('/')
            .ok_or_else(|| BackupPathError::InvalidSnapshotPath(s.to_string()))?;
        let group: BackupGroup = group
            .parse()
            .map_err(|_| BackupPathError::InvalidSnapshotPath(s.to_string()))?;
        BackupDir::with_time_dir_name(group, time)
    }
}

/// Splits `s` at the `n`-th `/` counted from the right (prefix is `None` if there are fewer).
fn split_from_right(s: &str, n: usize) -> (Option<&str>, &str) {
    let mut end = s.len();
    for _ in 0..n {
        match s[..end].rfind('/') {
            Some(pos) => end = pos,
            None => return (None, s),
        }
    }
    (Some(&s[..end]), &s[end + 1..])
}

/// Parses `[ns/a/ns/b/]<type>/<id>/<time>` into namespace and snapshot.
pub fn parse_ns_and_snapshot(s: &str) -> Result<(BackupNamespace, BackupDir), BackupPathError> {
    let (ns, snapshot) = split_from_right(s, 3);
    let ns = match ns {
        Some(ns) => BackupNamespace::from_path(ns)?,
        None => BackupNamespace::root(),
    };
    Ok((ns, snapshot.parse()?))
}

/// Parses `[ns/a/ns/b/]<type>/<id>` into namespace and group.
pub fn parse_ns_and_group(s: &str) -> Result<(BackupNamespace, BackupGroup), BackupPathError> {
    let (ns, group) = split_from_right(s, 2);
    let ns = match ns {
        Some(ns) => BackupNamespace::from_path(ns)?,
        None => BackupNamespace::root(),
    };
    Ok((ns, group.parse()?))
}

/// Relative path of a group below the datastore root: `<ns-path>/<type>/<id>`.
pub fn group_path(ns: &BackupNamespace, group: &BackupGroup) -> PathBuf {
    let mut path = ns.path();
    path.push(group.relative_path());
    path
}

/// Relative path of a snapshot below the datastore root: `<ns-path>/<type>/<id>/<time>`.
pub fn snapshot_path(ns: &BackupNamespace, dir: &BackupDir) -> Result<PathBuf, TimeError> {
    let mut path = ns.path();
    path.push(dir.relative_path()?);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> BackupGroup {
        s.parse().unwrap()
    }

    #[test]
    fn type_order_and_names() {
        assert!(BackupType::Ct < BackupType::Host);
        assert!(BackupType::Host < BackupType::Vm);
        let mut all = vec![BackupType::Vm, BackupType::Host, BackupType::Ct];
        all.sort();
        assert_eq!(all, BackupType::ALL);
        for ty in BackupType::ALL {
            assert_eq!(ty.as_str().parse::<BackupType>().unwrap(), ty);
            assert_eq!(
                serde_json::to_string(&ty).unwrap(),
                format!("\"{}\"", ty.as_str())
            );
        }
        assert!("VM".parse::<BackupType>().is_err());
    }

    #[test]
    fn spec_paths() {
        let ns = BackupNamespace::new("a/b").unwrap();
        let dir = BackupDir::new(group("vm/100"), 1593179765).unwrap();
        assert_eq!(dir.to_string(), "vm/100/2020-06-26T13:56:05Z");
        assert_eq!(
            snapshot_path(&ns, &dir).unwrap(),
            PathBuf::from("ns/a/ns/b/vm/100/2020-06-26T13:56:05Z")
        );
        assert_eq!(
            group_path(&ns, &dir.group),
            PathBuf::from("ns/a/ns/b/vm/100")
        );
        assert_eq!(
            snapshot_path(&BackupNamespace::root(), &dir).unwrap(),
            PathBuf::from("vm/100/2020-06-26T13:56:05Z")
        );
    }

    #[test]
    fn parse_round_trips() {
        let g = group("vm/100");
        assert_eq!(g.to_string(), "vm/100");
        let d: BackupDir = "host/elsa/2019-11-15T09:39:15Z".parse().unwrap();
        assert_eq!(d.to_string(), "host/elsa/2019-11-15T09:39:15Z");
        assert_eq!(d.time, parse_rfc3339("2019-11-15T09:39:15Z").unwrap());

        let (ns, d) = parse_ns_and_snapshot("ns/a/ns/b/vm/100/2020-06-26T13:56:05Z").unwrap();
        assert_eq!(ns.to_string(), "a/b");
        assert_eq!(d.time, 1593179765);
        assert_eq!(d.group, g);
        let (ns, d2) = parse_ns_and_snapshot("vm/100/2020-06-26T13:56:05Z").unwrap();
        assert!(ns.is_root());
        assert_eq!(d2, d);
        let (ns, g2) = parse_ns_and_group("ns/x/ct/abc").unwrap();
        assert_eq!(ns.to_string(), "x");
        assert_eq!(g2, group("ct/abc"));
        assert!(parse_ns_and_group("ct/abc").unwrap().0.is_root());

        for bad in [
            "vm",
            "vm/",
            "xx/100",
            "vm/.a",
            "vm/100/200",
            "vm/100/2020-06-26T13:56:05",
        ] {
            assert!(bad.parse::<BackupGroup>().is_err() || bad.parse::<BackupDir>().is_err());
        }
        assert!("vm/100/x".parse::<BackupGroup>().is_err());
        assert!("vm/100/2020-13-26T13:56:05Z".parse::<BackupDir>().is_err());
        assert!("vm/100/2005-12-31T23:59:60Z".parse::<BackupDir>().is_err());
        assert!(parse_ns_and_snapshot("a/b/vm/100/2020-06-26T13:56:05Z").is_err());
        assert!(parse_ns_and_snapshot("ns/a/vm/1/2020-06-26T13:56:05Z").is_ok());
    }

    #[test]
    fn serde_field_names() {
        let d = BackupDir::new(group("vm/100"), 5).unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"backup-type":"vm","backup-id":"100","backup-time":5}"#
        );
    }

    #[test]
    fn group_ordering() {
        let mut groups: Vec<BackupGroup> = [
            "vm/abc", "vm/20", "vm/100", "vm/3", "host/zz", "ct/9", "vm/Abc", "vm/_x", "vm/0100a",
        ]
        .iter()
        .map(|s| group(s))
        .collect();
        groups.sort();
        let names: Vec<String> = groups.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "ct/9", "host/zz", "vm/3", "vm/20", "vm/100", "vm/0100a", "vm/Abc", "vm/_x",
                "vm/abc"
            ]
        );
        assert_eq!(compare_backup_ids("007", "7"), Ordering::Less);
        assert_eq!(compare_backup_ids("7", "8"), Ordering::Less);
        assert_eq!(compare_backup_ids("9", "10"), Ordering::Less);
        assert_eq!(
            compare_backup_ids("18446744073709551616", "1"),
            Ordering::Greater
        );
    }

    #[test]
    fn snapshot_ordering() {
        let a = BackupDir::new(group("vm/2"), 10).unwrap();
        let b = BackupDir::new(group("vm/10"), 5).unwrap();
        let c = BackupDir::new(group("vm/10"), 6).unwrap();
        let mut v = vec![c.clone(), b.clone(), a.clone()];
        v.sort();
        assert_eq!(v, [a, b, c]);
        assert!(BackupDir::new(group("vm/1"), crate::time::MAX_EPOCH + 1).is_err());
    }
}
