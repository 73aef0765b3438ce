//! `datastore.cfg`: datastore definitions and their property-string options.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Error;
use serde::{Deserialize, Serialize};

use pbs_api_types::{KeepOptions, Userid};

use crate::files::{ConfigFile, ConfigLockGuard, FileOwner};
use crate::property_string::PropertyStringSchema;
use crate::section_config::{
    check_safe_id_3_32, Property, SectionConfig, SectionConfigData, SectionType, ValueKind,
};

/// `datastore.cfg` (`root:backup 0640`, lock `.datastore.lck`).
pub const DATASTORE_CFG: ConfigFile = ConfigFile {
    name: "datastore.cfg",
    lock_name: ".datastore.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Section type of datastores.
pub const DATASTORE_TYPE: &str = "datastore";

/// Maximum length of a maintenance message.
pub const MAINTENANCE_MESSAGE_MAX_LEN: usize = 64;

/// How notifications are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationMode {
    /// Mail to `notify-user` via sendmail.
    #[default]
    LegacySendmail,
    /// Through the notification system.
    NotificationSystem,
}

/// When to send a legacy notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Notify {
    /// Always.
    Always,
    /// Only on errors.
    Error,
    /// Never.
    Never,
}

/// The `notify` property string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatastoreNotify {
    /// Garbage collection (default always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<Notify>,
    /// Verification (default always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Notify>,
    /// Sync (default always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Notify>,
    /// Prune (default error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<Notify>,
}

impl DatastoreNotify {
    /// Effective GC setting.
    pub fn gc_or_default(&self) -> Notify {
        self.gc.unwrap_or(Notify::Always)
    }
    /// Effective verify setting.
    pub fn verify_or_default(&self) -> Notify {
        self.verify.unwrap_or(Notify::Always)
    }
    /// Effective sync setting.
    pub fn sync_or_default(&self) -> Notify {
        self.sync.unwrap_or(Notify::Always)
    }
    /// Effective prune setting.
    pub fn prune_or_default(&self) -> Notify {
        self.prune.unwrap_or(Notify::Error)
    }
}

/// Order in which verify/tape iterate chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkOrder {
    /// As listed in the index.
    None,
    /// Sorted by inode number.
    #[default]
    Inode,
}

/// How chunk and index writes are synced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncLevel {
    /// No explicit syncing.
    None,
    /// fsync each written file.
    File,
    /// syncfs the datastore file system at the end.
    #[default]
    Filesystem,
}

/// The `tuning` property string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatastoreTuning {
    /// Chunk iteration order (default inode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_order: Option<ChunkOrder>,
    /// Sync level (default filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_level: Option<SyncLevel>,
}

/// Kind of maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaintenanceType {
    /// Only reading operations allowed.
    ReadOnly,
    /// Only in-memory lookups allowed.
    Offline,
    /// The datastore is being deleted; nothing allowed.
    Delete,
}

/// Class of an operation checked against a maintenance mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// In-memory checks only.
    Lookup,
    /// Reads datastore content.
    Read,
    /// Modifies datastore content.
    Write,
}

/// The `maintenance-mode` property string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceMode {
    /// Kind of maintenance (the default key).
    #[serde(rename = "type")]
    pub ty: MaintenanceType,
    /// Message (percent-encoded as sent by the UI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl MaintenanceMode {
    /// Whether `operation` is allowed; the error is the reason (e.g. `offline maintenance
    /// mode: <message>`), to be prefixed with `datastore '<name>' is in `.
    pub fn check(&self, operation: Operation) -> Result<(), String> {
        let message = || {
            let raw = self.message.as_deref().unwrap_or_default();
            percent_decode(raw)
        };
        match (self.ty, operation) {
            (MaintenanceType::Delete, _) => Err("datastore is being deleted".to_string()),
            (MaintenanceType::Offline, Operation::Read | Operation::Write) => {
                Err(format!("offline maintenance mode: {}", message()))
            }
            (MaintenanceType::ReadOnly, Operation::Write) => {
                Err(format!("read-only maintenance mode: {}", message()))
            }
            _ => Ok(()),
        }
    }
}

/// Decodes `%XX` sequences (invalid sequences stay as they are; non-UTF-8 is replaced).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_enum(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "value '{value}' is not defined in the enumeration."
        ))
    }
}

fn check_notify_value(v: &str) -> Result<(), String> {
    check_enum(v, &["always", "error", "never"])
}

const NOTIFY_KIND: ValueKind = ValueKind::checked_string(check_notify_value);

/// Schema of the `notify` property string.
pub const NOTIFY_SCHEMA: PropertyStringSchema = PropertyStringSchema {
    properties: &[
        Property::optional("gc", NOTIFY_KIND),
        Property::optional("prune", NOTIFY_KIND),
        Property::optional("sync", NOTIFY_KIND),
        Property::optional("verify", NOTIFY_KIND),
    ],
    default_key: None,
};

/// Schema of the `tuning` property string.
pub const TUNING_SCHEMA: PropertyStringSchema = PropertyStringSchema {
    properties: &[
        Property::optional(
            "chunk-order",
            ValueKind::checked_string(|v| check_enum(v, &["none", "inode"])),
        ),
        Property::optional(
            "sync-level",
            ValueKind::checked_string(|v| check_enum(v, &["none", "file", "filesystem"])),
        ),
    ],
    default_key: None,
};

/// Schema of the `maintenance-mode` property string (default key `type`).
pub const MAINTENANCE_MODE_SCHEMA: PropertyStringSchema = PropertyStringSchema {
    properties: &[
        Property::optional(
            "message",
            ValueKind::String {
                min_len: 0,
                max_len: MAINTENANCE_MESSAGE_MAX_LEN,
                check: None,
            },
        ),
        Property::required(
            "type",
            ValueKind::checked_string(|v| check_enum(v, &["read-only", "offline", "delete"])),
        ),
    ],
    default_key: Some("type"),
};

fn check_property_string(schema: &PropertyStringSchema, value: &str) -> Result<(), String> {
    schema.parse(value).map(|_| ())
}

fn check_userid(value: &str) -> Result<(), String> {
    value
        .parse::<Userid>()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

const KEEP_KIND: ValueKind = ValueKind::Integer {
    min: Some(1),
    max: None,
};

const DATASTORE_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("gc-schedule", ValueKind::ANY_STRING),
    Property::optional("keep-daily", KEEP_KIND),
    Property::optional("keep-hourly", KEEP_KIND),
    Property::optional("keep-last", KEEP_KIND),
    Property::optional("keep-monthly", KEEP_KIND),
    Property::optional("keep-weekly", KEEP_KIND),
    Property::optional("keep-yearly", KEEP_KIND),
    Property::optional(
        "maintenance-mode",
        ValueKind::checked_string(|v| check_property_string(&MAINTENANCE_MODE_SCHEMA, v)),
    ),
    Property::optional(
        "notification-mode",
        ValueKind::checked_string(|v| check_enum(v, &["legacy-sendmail", "notification-system"])),
    ),
    Property::optional(
        "notify",
        ValueKind::checked_string(|v| check_property_string(&NOTIFY_SCHEMA, v)),
    ),
    Property::optional("notify-user", ValueKind::checked_string(check_userid)),
    Property::required(
        "path",
        ValueKind::String {
            min_len: 1,
            max_len: 4096,
            check: None,
        },
    ),
    Property::optional("prune-schedule", ValueKind::ANY_STRING),
    Property::optional(
        "tuning",
        ValueKind::checked_string(|v| check_property_string(&TUNING_SCHEMA, v)),
    ),
    Property::optional("verify-new", ValueKind::Boolean),
];

/// A datastore definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataStoreConfig {
    /// Datastore name (section id).
    pub name: String,
    /// Absolute path of the datastore directory.
    pub path: String,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// GC schedule (calendar event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_schedule: Option<String>,
    /// Legacy prune schedule (calendar event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_schedule: Option<String>,
    /// Legacy prune options.
    #[serde(flatten)]
    pub keep: KeepOptions,
    /// Verify each new snapshot after the backup finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_new: Option<bool>,
    /// Legacy notification recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_user: Option<Userid>,
    /// Legacy notification filter (property string, see [`DatastoreNotify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// How notifications are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_mode: Option<NotificationMode>,
    /// Tuning options (property string, see [`DatastoreTuning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<String>,
    /// Maintenance mode (property string, see [`MaintenanceMode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_mode: Option<String>,
}

impl DataStoreConfig {
    /// A datastore with only name and path.
    pub fn new(name: String, path: String) -> Self {
        Self {
            name,
            path,
            comment: None,
            gc_schedule: None,
            prune_schedule: None,
            keep: KeepOptions::default(),
            verify_new: None,
            notify_user: None,
            notify: None,
            notification_mode: None,
            tuning: None,
            maintenance_mode: None,
        }
    }

    /// The parsed maintenance mode, if set.
    pub fn get_maintenance_mode(&self) -> Result<Option<MaintenanceMode>, Error> {
        self.maintenance_mode
            .as_deref()
            .map(|text| parse_typed(&MAINTENANCE_MODE_SCHEMA, "maintenance-mode", text))
            .transpose()
    }

    /// Sets or clears the maintenance mode (written with an explicit `type=`).
    pub fn set_maintenance_mode(&mut self, mode: Option<&MaintenanceMode>) -> Result<(), Error> {
        self.maintenance_mode = mode
            .map(|m| MAINTENANCE_MODE_SCHEMA.print(m))
            .transpose()
            .map_err(|err| anyhow::format_err!("maintenance-mode: {err}"))?;
        Ok(())
    }

    /// The parsed tuning options (defaults when unset).
    pub fn get_tuning(&self) -> Result<DatastoreTuning, Error> {
        match self.tuning.as_deref() {
            Some(text) => parse_typed(&TUNING_SCHEMA, "tuning", text),
            None => Ok(DatastoreTuning::default()),
        }
    }

    /// The parsed notification filter (defaults when unset).
    pub fn get_notify(&self) -> Result<DatastoreNotify, Error> {
        match self.notify.as_deref() {
            Some(text) => parse_typed(&NOTIFY_SCHEMA, "notify", text),
            None => Ok(DatastoreNotify::default()),
        }
    }

    /// Checks `operation` against the maintenance mode: `datastore '<name>' is in <reason>`.
    pub fn check_maintenance(&self, operation: Operation) -> Result<(), Error> {
        if let Some(mode) = self.get_maintenance_mode()? {
            mode.check(operation).map_err(|reason| {
                anyhow::format_err!("datastore '{}' is in {reason}", self.name)
            })?;
        }
        Ok(())
    }
}

fn parse_typed<T: serde::de::DeserializeOwned>(
    schema: &PropertyStringSchema,
    key: &str,
    text: &str,
) -> Result<T, Error> {
    schema
        .parse_typed(text)
        .map_err(|err| anyhow::format_err!("{key}: {err}"))
}

/// The section types of `datastore.cfg`.
pub fn section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        SectionConfig::new(vec![SectionType {
            name: DATASTORE_TYPE,
            id_property: "name",
            id_check: check_safe_id_3_32,
            properties: DATASTORE_PROPERTIES,
            additional_properties: false,
        }])
    })
}

/// Reads `datastore.cfg` in `dir` (missing = empty) with its digest.
pub fn config_in(dir: &Path) -> Result<(SectionConfigData, String), Error> {
    let (content, digest) = DATASTORE_CFG.read_in(dir)?;
    let file = DATASTORE_CFG.path_in(dir);
    let data = section_config().parse(&file.to_string_lossy(), &content)?;
    Ok((data, digest))
}

/// Reads `datastore.cfg` with its digest.
pub fn config() -> Result<(SectionConfigData, String), Error> {
    config_in(&pbs_buildcfg::config_dir())
}

/// Writes `datastore.cfg` in `dir` atomically.
pub fn save_config_in(dir: &Path, data: &SectionConfigData) -> Result<(), Error> {
    let file = DATASTORE_CFG.path_in(dir);
    let content = section_config().write(&file.to_string_lossy(), data)?;
    DATASTORE_CFG.write_in(dir, content.as_bytes())
}

/// Writes `datastore.cfg` atomically (`root:backup 0640`).
pub fn save_config(data: &SectionConfigData) -> Result<(), Error> {
    save_config_in(&pbs_buildcfg::config_dir(), data)
}

/// Takes the `.datastore.lck` lock in `dir`.
pub fn lock_config_in(dir: &Path) -> Result<ConfigLockGuard, Error> {
    DATASTORE_CFG.lock_in(dir)
}

/// Takes the `.datastore.lck` lock.
pub fn lock_config() -> Result<ConfigLockGuard, Error> {
    lock_config_in(&pbs_buildcfg::config_dir())
}

/// The datastore `name`.
pub fn lookup(data: &SectionConfigData, name: &str) -> Result<DataStoreConfig, Error> {
    data.lookup(DATASTORE_TYPE, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXAMPLE: &str = "datastore: store1\n\tcomment This is my default storage.\n\tgc-schedule Tue 04:27\n\tkeep-last 7\n\tpath /backup/disk1/store1\n\tprune-schedule daily\n\ttuning chunk-order=none,sync-level=file\n";

    #[test]
    fn example_round_trip_and_typed_values() {
        let data = section_config().parse("datastore.cfg", EXAMPLE).unwrap();
        assert_eq!(
            section_config().write("datastore.cfg", &data).unwrap(),
            EXAMPLE
        );
        let store = lookup(&data, "store1").unwrap();
        assert_eq!(store.path, "/backup/disk1/store1");
        assert_eq!(store.keep.keep_last, Some(7));
        assert_eq!(store.gc_schedule.as_deref(), Some("Tue 04:27"));
        let tuning = store.get_tuning().unwrap();
        assert_eq!(tuning.chunk_order, Some(ChunkOrder::None));
        assert_eq!(tuning.sync_level, Some(SyncLevel::File));

        // Typed struct written back gives the same file.
        let mut typed = SectionConfigData::new();
        typed.set_data("store1", DATASTORE_TYPE, &store).unwrap();
        assert_eq!(
            section_config().write("datastore.cfg", &typed).unwrap(),
            EXAMPLE
        );
    }

    #[test]
    fn all_properties() {
        let text = "datastore: st2\n\tkeep-daily 1\n\tkeep-hourly 2\n\tkeep-monthly 3\n\tkeep-weekly 4\n\tkeep-yearly 5\n\tmaintenance-mode read-only\n\tnotification-mode notification-system\n\tnotify gc=never,prune=always\n\tnotify-user admin@pbs\n\tpath /b\n\tverify-new true\n";
        let data = section_config().parse("datastore.cfg", text).unwrap();
        assert_eq!(
            section_config().write("datastore.cfg", &data).unwrap(),
            text
        );
        let s = lookup(&data, "st2").unwrap();
        assert_eq!(s.keep.keep_yearly, Some(5));
        assert_eq!(s.verify_new, Some(true));
        assert_eq!(
            s.notification_mode,
            Some(NotificationMode::NotificationSystem)
        );
        let notify = s.get_notify().unwrap();
        assert_eq!(notify.gc_or_default(), Notify::Never);
        assert_eq!(notify.prune_or_default(), Notify::Always);
        assert_eq!(notify.sync_or_default(), Notify::Always);
        let mode = s.get_maintenance_mode().unwrap().unwrap();
        assert_eq!(mode.ty, MaintenanceType::ReadOnly);
        assert_eq!(DatastoreNotify::default().prune_or_default(), Notify::Error);
        assert_eq!(
            DataStoreConfig::new("x".into(), "/x".into())
                .get_tuning()
                .unwrap(),
            DatastoreTuning::default()
        );
    }

    #[test]
    fn invalid_values_are_parse_errors() {
        for (text, msg) in [
            ("datastore: s1\n\tpath /x\n", "line 1 - syntax error in section identifier: value 's1' does not match the regex pattern"),
            ("datastore: st1\n\tpath /x\n\tkeep-last 0\n", "line 3 - property 'keep-last': value must have a minimum value of 1"),
            ("datastore: st1\n\tpath /x\n\ttuning chunk-order=random\n", "line 3 - property 'tuning': property 'chunk-order': value 'random' is not defined in the enumeration."),
            ("datastore: st1\n\tpath /x\n\tmaintenance-mode message=x\n", "line 3 - property 'maintenance-mode': property 'type' is missing and it is not optional."),
            ("datastore: st1\n\tpath /x\n\tnotify gc=sometimes\n", "line 3 - property 'notify': property 'gc': value 'sometimes' is not defined in the enumeration."),
            ("datastore: st1\n\tpath /x\n\tpath /y\n", "line 3 - duplicate property 'path'"),
            ("datastore: st1\n\tcomment c\n", "line 2 - property 'path' is missing and it is not optional."),
            ("datastore: st1\n\tpath /x\n\tgc_schedule daily\n", "line 3 - unknown property 'gc_schedule'"),
        ] {
            let err = section_config().parse("datastore.cfg", text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("parsing \"datastore.cfg\" failed: {msg}")
            );
        }
    }

    #[test]
    fn maintenance_modes() {
        let mut store = DataStoreConfig::new("store1".into(), "/x".into());
        store.check_maintenance(Operation::Write).unwrap();
        let mode = MaintenanceMode {
            ty: MaintenanceType::Offline,
            message: Some("disk%20swap".into()),
        };
        store.set_maintenance_mode(Some(&mode)).unwrap();
        assert_eq!(
            store.maintenance_mode.as_deref(),
            Some("message=disk%20swap,type=offline")
        );
        assert_eq!(store.get_maintenance_mode().unwrap(), Some(mode));
        store.check_maintenance(Operation::Lookup).unwrap();
        assert_eq!(
            store
                .check_maintenance(Operation::Read)
                .unwrap_err()
                .to_string(),
            "datastore 'store1' is in offline maintenance mode: disk swap"
        );

        store.maintenance_mode = Some("read-only".into());
        store.check_maintenance(Operation::Read).unwrap();
        assert_eq!(
            store
                .check_maintenance(Operation::Write)
                .unwrap_err()
                .to_string(),
            "datastore 'store1' is in read-only maintenance mode: "
        );
        store.maintenance_mode = Some("type=delete".into());
        assert_eq!(
            store
                .check_maintenance(Operation::Lookup)
                .unwrap_err()
                .to_string(),
            "datastore 'store1' is in datastore is being deleted"
        );
        let long = MaintenanceMode {
            ty: MaintenanceType::Offline,
            message: Some("x".repeat(65)),
        };
        assert!(store.set_maintenance_mode(Some(&long)).is_err());
        store.set_maintenance_mode(None).unwrap();
        assert_eq!(store.maintenance_mode, None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn file_round_trip_mode_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, digest) = config_in(dir.path()).unwrap();
        assert!(empty.is_empty());
        std::fs::write(DATASTORE_CFG.path_in(dir.path()), EXAMPLE).unwrap();
        let (mut data, digest2) = config_in(dir.path()).unwrap();
        assert_ne!(digest, digest2);
        assert_eq!(digest2, crate::files::compute_digest(EXAMPLE.as_bytes()));
        assert!(crate::check_digest(Some(&digest), &digest2).is_err());

        let _lock = lock_config_in(dir.path()).unwrap();
        let store2 = DataStoreConfig::new("store2".into(), "/backup/store2".into());
        data.set_data("store2", DATASTORE_TYPE, &store2).unwrap();
        save_config_in(dir.path(), &data).unwrap();
        let path = DATASTORE_CFG.path_in(dir.path());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{EXAMPLE}\ndatastore: store2\n\tpath /backup/store2\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert!(dir.path().join(".datastore.lck").exists());
        // Another locker times out while the lock is held.
        let err = crate::files::lock_file(
            &DATASTORE_CFG.lock_path_in(dir.path()),
            std::time::Duration::from_millis(50),
        )
        .unwrap_err();
        assert!(err.to_string().contains("got timeout"));
    }
}
