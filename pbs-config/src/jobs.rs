//! Job configuration files: `sync.cfg`, `verification.cfg` and `prune.cfg`.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Error;
use serde::{Deserialize, Serialize};

use pbs_api_types::{Authid, BackupNamespace, KeepOptions};

use crate::files::{ConfigFile, ConfigLockGuard, FileOwner};
use crate::section_config::{
    check_safe_id_3_32, Property, SectionConfig, SectionConfigData, SectionType, ValueKind,
};

/// `sync.cfg` (`root:backup 0640`, lock `.sync.lck`).
pub const SYNC_CFG: ConfigFile = ConfigFile {
    name: "sync.cfg",
    lock_name: ".sync.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// `verification.cfg` (`root:backup 0640`, lock `.verification.lck`).
pub const VERIFICATION_CFG: ConfigFile = ConfigFile {
    name: "verification.cfg",
    lock_name: ".verification.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// `prune.cfg` (`root:backup 0640`, lock `.prune.lck`).
pub const PRUNE_CFG: ConfigFile = ConfigFile {
    name: "prune.cfg",
    lock_name: ".prune.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Section type of sync jobs.
pub const SYNC_TYPE: &str = "sync";
/// Section type of verification jobs.
pub const VERIFICATION_TYPE: &str = "verification";
/// Section type of prune jobs.
pub const PRUNE_TYPE: &str = "prune";

/// Maximum namespace recursion depth.
pub const MAX_DEPTH: i64 = 7;

/// A sync (pull) job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SyncJobConfig {
    /// Job id (section id).
    pub id: String,
    /// Local target datastore.
    pub store: String,
    /// Local target namespace anchor (absent = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    /// Owner of newly created groups (absent = `root@pam`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Authid>,
    /// Source remote (absent = local sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Source datastore.
    pub remote_store: String,
    /// Source namespace anchor (absent = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ns: Option<String>,
    /// Delete what vanished on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_vanished: Option<bool>,
    /// Namespace recursion depth (absent = full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u8>,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Calendar event (absent = manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Group filters (one line each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_filter: Option<Vec<String>>,
    /// Incoming rate limit (HumanByte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_in: Option<String>,
    /// Incoming burst (HumanByte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_in: Option<String>,
    /// Outgoing rate limit (HumanByte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_out: Option<String>,
    /// Outgoing burst (HumanByte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_out: Option<String>,
    /// Only the newest N snapshots per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_last: Option<u64>,
}

/// A verification job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerificationJobConfig {
    /// Job id (section id).
    pub id: String,
    /// Datastore.
    pub store: String,
    /// Skip already verified snapshots (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_verified: Option<bool>,
    /// Re-verify after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated_after: Option<i64>,
    /// Start namespace (absent = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    /// Namespace recursion depth (absent = 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u8>,
    /// Calendar event (absent = manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A prune job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PruneJobConfig {
    /// Job id (section id).
    pub id: String,
    /// Datastore.
    pub store: String,
    /// Calendar event.
    pub schedule: String,
    /// Disabled jobs are not scheduled (written only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
    /// Namespace (absent = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    /// Namespace recursion depth (absent = 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u8>,
    /// Retention options.
    #[serde(flatten)]
    pub keep: KeepOptions,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn check_namespace(ns: &str) -> Result<(), String> {
    BackupNamespace::new(ns)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

fn check_authid(value: &str) -> Result<(), String> {
    value
        .parse::<Authid>()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Checks a group filter `[include:|exclude:]<type:T|group:G|regex:R>` (the regex itself is
/// not compiled here).
pub fn check_group_filter(filter: &str) -> Result<(), String> {
    let rest = filter
        .strip_prefix("include:")
        .or_else(|| filter.strip_prefix("exclude:"))
        .unwrap_or(filter);
    let format_error = || {
        "input doesn't match expected format '<group:GROUP||type:<vm|ct|host>|regex:REGEX>'"
            .to_string()
    };
    let (kind, value) = rest.split_once(':').ok_or_else(format_error)?;
    match kind {
        "type" => match value {
            "vm" | "ct" | "host" => Ok(()),
            _ => Err(format_error()),
        },
        "group" => {
            let (ty, id) = value.split_once('/').ok_or_else(format_error)?;
            if matches!(ty, "vm" | "ct" | "host") && pbs_api_types::names::is_safe_id(id) {
                Ok(())
            } else {
                Err(format_error())
            }
        }
        "regex" => Ok(()),
        other => Err(format!(
            "expected 'group', 'type' or 'regex' prefix, got '{other}'"
        )),
    }
}

const STORE_KIND: ValueKind = ValueKind::checked_string(check_safe_id_3_32);
const NS_KIND: ValueKind = ValueKind::String {
    min_len: 0,
    max_len: 256,
    check: Some(check_namespace),
};
const DEPTH_KIND: ValueKind = ValueKind::Integer {
    min: Some(0),
    max: Some(MAX_DEPTH),
};
const SCHEDULE_KIND: ValueKind = ValueKind::String {
    min_len: 1,
    max_len: usize::MAX,
    check: None,
};
const BYTES_KIND: ValueKind = ValueKind::String {
    min_len: 1,
    max_len: 64,
    check: None,
};
const KEEP_KIND: ValueKind = ValueKind::Integer {
    min: Some(1),
    max: None,
};

const SYNC_PROPERTIES: &[Property] = &[
    Property::optional("burst-in", BYTES_KIND),
    Property::optional("burst-out", BYTES_KIND),
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::array(
        "group-filter",
        ValueKind::checked_string(check_group_filter),
    ),
    Property::optional("max-depth", DEPTH_KIND),
    Property::optional("ns", NS_KIND),
    Property::optional("owner", ValueKind::checked_string(check_authid)),
    Property::optional("rate-in", BYTES_KIND),
    Property::optional("rate-out", BYTES_KIND),
    Property::optional("remote", STORE_KIND),
    Property::optional("remote-ns", NS_KIND),
    Property::required("remote-store", STORE_KIND),
    Property::optional("remove-vanished", ValueKind::Boolean),
    Property::optional("schedule", SCHEDULE_KIND),
    Property::required("store", STORE_KIND),
    Property::optional("transfer-last", KEEP_KIND),
];

const VERIFICATION_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("ignore-verified", ValueKind::Boolean),
    Property::optional("max-depth", DEPTH_KIND),
    Property::optional("ns", NS_KIND),
    Property::optional(
        "outdated-after",
        ValueKind::Integer {
            min: Some(0),
            max: None,
        },
    ),
    Property::optional("schedule", SCHEDULE_KIND),
    Property::required("store", STORE_KIND),
];

const PRUNE_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("disable", ValueKind::Boolean),
    Property::optional("keep-daily", KEEP_KIND),
    Property::optional("keep-hourly", KEEP_KIND),
    Property::optional("keep-last", KEEP_KIND),
    Property::optional("keep-monthly", KEEP_KIND),
    Property::optional("keep-weekly", KEEP_KIND),
    Property::optional("keep-yearly", KEEP_KIND),
    Property::optional("max-depth", DEPTH_KIND),
    Property::optional("ns", NS_KIND),
    Property::required("schedule", SCHEDULE_KIND),
    Property::required("store", STORE_KIND),
];

fn single_type(name: &'static str, properties: &'static [Property]) -> SectionConfig {
    SectionConfig::new(vec![SectionType {
        name,
        id_property: "id",
        id_check: check_safe_id_3_32,
        properties,
        additional_properties: false,
    }])
}

/// The section types of `sync.cfg`.
pub fn sync_section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| single_type(SYNC_TYPE, SYNC_PROPERTIES))
}

/// The section types of `verification.cfg`.
pub fn verification_section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| single_type(VERIFICATION_TYPE, VERIFICATION_PROPERTIES))
}

/// The section types of `prune.cfg`.
pub fn prune_section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| single_type(PRUNE_TYPE, PRUNE_PROPERTIES))
}

/// A job file: its location and section types.
#[derive(Clone, Copy)]
pub struct JobFile {
    /// Location, mode, owner and lock.
    pub file: ConfigFile,
    /// Section types.
    pub schema: fn() -> &'static SectionConfig,
}

/// `sync.cfg`.
pub const SYNC: JobFile = JobFile {
    file: SYNC_CFG,
    schema: sync_section_config,
};
/// `verification.cfg`.
pub const VERIFICATION: JobFile = JobFile {
    file: VERIFICATION_CFG,
    schema: verification_section_config,
};
/// `prune.cfg`.
pub const PRUNE: JobFile = JobFile {
    file: PRUNE_CFG,
    schema: prune_section_config,
};

impl JobFile {
    /// Reads the file in `dir` (missing = empty) with its digest.
    pub fn config_in(&self, dir: &Path) -> Result<(SectionConfigData, String), Error> {
        let (content, digest) = self.file.read_in(dir)?;
        let name = self.file.path_in(dir);
        let data = (self.schema)().parse(&name.to_string_lossy(), &content)?;
        Ok((data, digest))
    }

    /// Reads the file in the configuration directory with its digest.
    pub fn config(&self) -> Result<(SectionConfigData, String), Error> {
        self.config_in(&pbs_buildcfg::config_dir())
    }

    /// Writes the file in `dir` atomically.
    pub fn save_config_in(&self, dir: &Path, data: &SectionConfigData) -> Result<(), Error> {
        let name = self.file.path_in(dir);
        let content = (self.schema)().write(&name.to_string_lossy(), data)?;
        self.file.write_in(dir, content.as_bytes())
    }

    /// Writes the file in the configuration directory atomically.
    pub fn save_config(&self, data: &SectionConfigData) -> Result<(), Error> {
        self.save_config_in(&pbs_buildcfg::config_dir(), data)
    }

    /// Takes the file's lock in `dir`.
    pub fn lock_config_in(&self, dir: &Path) -> Result<ConfigLockGuard, Error> {
        self.file.lock_in(dir)
    }

    /// Takes the file's lock in the configuration directory.
    pub fn lock_config(&self) -> Result<ConfigLockGuard, Error> {
        self.lock_config_in(&pbs_buildcfg::config_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SYNC_EXAMPLE: &str = "sync: pbs2-local\n\tcomment offsite\n\tgroup-filter type:vm\n\tgroup-filter exclude:regex:^vm/1\\d{2}$\n\towner sync@pbs\n\trate-in 20 MiB\n\tremote pbs2\n\tremote-store local\n\tremove-vanished true\n\tschedule Wed 02:30\n\tstore local\n";
    const VERIFY_EXAMPLE: &str = "verification: verify-store2\n\tignore-verified true\n\toutdated-after 7\n\tschedule daily\n\tstore store2\n";
    const PRUNE_EXAMPLE: &str = "prune: daily-prune\n\tkeep-daily 7\n\tkeep-last 3\n\tmax-depth 1\n\tns team1\n\tschedule daily\n\tstore store2\n";

    #[test]
    fn examples_round_trip_raw_and_typed() {
        let data = sync_section_config()
            .parse("sync.cfg", SYNC_EXAMPLE)
            .unwrap();
        assert_eq!(
            sync_section_config().write("sync.cfg", &data).unwrap(),
            SYNC_EXAMPLE
        );
        let job: SyncJobConfig = data.lookup(SYNC_TYPE, "pbs2-local").unwrap();
        assert_eq!(
            job.group_filter.as_deref(),
            Some(
                &[
                    "type:vm".to_string(),
                    "exclude:regex:^vm/1\\d{2}$".to_string()
                ][..]
            )
        );
        assert_eq!(job.remove_vanished, Some(true));
        let mut typed = SectionConfigData::new();
        typed.set_data(&job.id, SYNC_TYPE, &job).unwrap();
        assert_eq!(
            sync_section_config().write("sync.cfg", &typed).unwrap(),
            SYNC_EXAMPLE
        );

        let data = verification_section_config()
            .parse("verification.cfg", VERIFY_EXAMPLE)
            .unwrap();
        let job: VerificationJobConfig = data.lookup(VERIFICATION_TYPE, "verify-store2").unwrap();
        assert_eq!(job.outdated_after, Some(7));
        let mut typed = SectionConfigData::new();
        typed.set_data(&job.id, VERIFICATION_TYPE, &job).unwrap();
        assert_eq!(
            verification_section_config()
                .write("verification.cfg", &typed)
                .unwrap(),
            VERIFY_EXAMPLE
        );

        let data = prune_section_config()
            .parse("prune.cfg", PRUNE_EXAMPLE)
            .unwrap();
        let mut job: PruneJobConfig = data.lookup(PRUNE_TYPE, "daily-prune").unwrap();
        assert_eq!(job.keep.keep_daily, Some(7));
        assert!(!job.disable);
        let mut typed = SectionConfigData::new();
        typed.set_data(&job.id, PRUNE_TYPE, &job).unwrap();
        assert_eq!(
            prune_section_config().write("prune.cfg", &typed).unwrap(),
            PRUNE_EXAMPLE
        );
        job.disable = true;
        typed.set_data(&job.id, PRUNE_TYPE, &job).unwrap();
        assert!(prune_section_config()
            .write("prune.cfg", &typed)
            .unwrap()
            .contains("\tdisable true\n"));
    }

    #[test]
    fn group_filters() {
        for ok in [
            "type:vm",
            "include:type:ct",
            "exclude:group:vm/100",
            "regex:.*10[2-8]",
        ] {
            assert_eq!(check_group_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_group_filter("foo:bar").unwrap_err(),
            "expected 'group', 'type' or 'regex' prefix, got 'foo'"
        );
        for bad in ["type:xx", "group:vm", "group:lxc/1", "plain"] {
            assert!(check_group_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_jobs() {
        for (schema, text, msg) in [
            (
                sync_section_config(),
                "sync: job1\n\tstore a1b\n",
                "line 2 - property 'remote-store' is missing and it is not optional.",
            ),
            (
                sync_section_config(),
                "sync: job1\n\tstore a1b\n\tremote-store x1y\n\tmax-depth 8\n",
                "line 4 - property 'max-depth': value must have a maximum value of 7",
            ),
            (
                prune_section_config(),
                "prune: job1\n\tstore a1b\n",
                "line 2 - property 'schedule' is missing and it is not optional.",
            ),
            (
                verification_section_config(),
                "verification: job1\n\tstore a1b\n\tns a//b\n",
                "line 3 - property 'ns': ",
            ),
        ] {
            let err = schema.parse("x.cfg", text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("parsing \"x.cfg\" failed: {msg}")),
                "{err}"
            );
        }
    }

    #[test]
    fn file_mode_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        for (job, example) in [
            (SYNC, SYNC_EXAMPLE),
            (VERIFICATION, VERIFY_EXAMPLE),
            (PRUNE, PRUNE_EXAMPLE),
        ] {
            std::fs::write(job.file.path_in(dir.path()), example).unwrap();
            let (data, digest) = job.config_in(dir.path()).unwrap();
            assert_eq!(digest, crate::files::compute_digest(example.as_bytes()));
            let _lock = job.lock_config_in(dir.path()).unwrap();
            job.save_config_in(dir.path(), &data).unwrap();
            let path = job.file.path_in(dir.path());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), example);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o640);
            assert!(job.file.lock_path_in(dir.path()).exists());
        }
    }
}
