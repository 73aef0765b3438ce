//! `remote.cfg`: other servers to pull from; passwords are stored base64-encoded.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Error;
use serde::{Deserialize, Serialize};

use pbs_api_types::Authid;

use crate::files::{ConfigFile, ConfigLockGuard, FileOwner};
use crate::section_config::{
    check_safe_id_3_32, Property, SectionConfig, SectionConfigData, SectionType, ValueKind,
};

/// `remote.cfg` (`root:backup 0640`, lock `.remote.lck`).
pub const REMOTE_CFG: ConfigFile = ConfigFile {
    name: "remote.cfg",
    lock_name: ".remote.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Section type of remotes.
pub const REMOTE_TYPE: &str = "remote";

/// Port used when `port` is absent.
pub const DEFAULT_PORT: u16 = 8007;

/// A remote server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Remote {
    /// Remote name (section id).
    pub name: String,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DNS name or IP address.
    pub host: String,
    /// Port (default 8007).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Identity on the remote (user or API token).
    pub auth_id: Authid,
    /// Password or token secret in plain text (base64 in the file, omitted when empty).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        with = "base64_text"
    )]
    pub password: String,
    /// Expected SHA-256 fingerprint of the remote TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl Remote {
    /// The port to connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// Serde helper: plain text in memory, standard padded base64 in the file.
mod base64_text {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(text))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|err| serde::de::Error::custom(format!("password: invalid base64 - {err}")))?;
        String::from_utf8(raw)
            .map_err(|_| serde::de::Error::custom("password: decoded value is not UTF-8"))
    }
}

/// DNS name (labels of letters, digits and inner hyphens) or IP address.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "value '{host}' is neither a DNS name nor an IP address"
        ))
    }
}

/// `xx:xx:…` with 32 hex bytes.
pub fn check_fingerprint(fp: &str) -> Result<(), String> {
    let parts: Vec<&str> = fp.split(':').collect();
    let ok = parts.len() == 32
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "value '{fp}' is not a valid certificate fingerprint"
        ))
    }
}

fn check_authid(value: &str) -> Result<(), String> {
    value
        .parse::<Authid>()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

fn check_base64(value: &str) -> Result<(), String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .map(|_| ())
        .map_err(|_| "password is not valid base64".to_string())
}

const REMOTE_PROPERTIES: &[Property] = &[
    Property::required("auth-id", ValueKind::checked_string(check_authid)),
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("fingerprint", ValueKind::checked_string(check_fingerprint)),
    Property::required("host", ValueKind::checked_string(check_host)),
    // Required by the API, but a remote saved with an empty password has no line.
    Property::optional("password", ValueKind::checked_string(check_base64)),
    Property::optional(
        "port",
        ValueKind::Integer {
            min: Some(0),
            max: Some(65535),
        },
    ),
];

/// The section types of `remote.cfg`.
pub fn section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        SectionConfig::new(vec![SectionType {
            name: REMOTE_TYPE,
            id_property: "name",
            id_check: check_safe_id_3_32,
            properties: REMOTE_PROPERTIES,
            additional_properties: false,
        }])
    })
}

/// Reads `remote.cfg` in `dir` (missing = empty) with its digest.
pub fn config_in(dir: &Path) -> Result<(SectionConfigData, String), Error> {
    let (content, digest) = REMOTE_CFG.read_in(dir)?;
    let file = REMOTE_CFG.path_in(dir);
    let data = section_config().parse(&file.to_string_lossy(), &content)?;
    Ok((data, digest))
}

/// Reads `remote.cfg` with its digest.
pub fn config() -> Result<(SectionConfigData, String), Error> {
    config_in(&pbs_buildcfg::config_dir())
}

/// Writes `remote.cfg` in `dir` atomically.
pub fn save_config_in(dir: &Path, data: &SectionConfigData) -> Result<(), Error> {
    let file = REMOTE_CFG.path_in(dir);
    let content = section_config().write(&file.to_string_lossy(), data)?;
    REMOTE_CFG.write_in(dir, content.as_bytes())
}

/// Writes `remote.cfg` atomically (`root:backup 0640`).
pub fn save_config(data: &SectionConfigData) -> Result<(), Error> {
    save_config_in(&pbs_buildcfg::config_dir(), data)
}

/// Takes the `.remote.lck` lock in `dir`.
pub fn lock_config_in(dir: &Path) -> Result<ConfigLockGuard, Error> {
    REMOTE_CFG.lock_in(dir)
}

/// Takes the `.remote.lck` lock.
pub fn lock_config() -> Result<ConfigLockGuard, Error> {
    lock_config_in(&pbs_buildcfg::config_dir())
}

/// The remote `name`.
pub fn lookup(data: &SectionConfigData, name: &str) -> Result<Remote, Error> {
    data.lookup(REMOTE_TYPE, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXAMPLE: &str = "remote: pbs2\n\tauth-id sync@pbs\n\tfingerprint 64:d3:ff:3a:50:38:53:5a:9b:f7:50:04:45:a6:3a:61:3c:1d:42:62:74:e5:3b:72:d6:b4:60:c5:b4:a1:ab:fe\n\thost pbs2.example.com\n\tpassword U0VDUkVU\n";

    #[test]
    fn example_round_trip_and_password_decoding() {
        let data = section_config().parse("remote.cfg", EXAMPLE).unwrap();
        assert_eq!(
            section_config().write("remote.cfg", &data).unwrap(),
            EXAMPLE
        );
        let remote = lookup(&data, "pbs2").unwrap();
        assert_eq!(remote.password, "SECRET");
        assert_eq!(remote.port_or_default(), 8007);
        assert_eq!(remote.auth_id.to_string(), "sync@pbs");

        let mut typed = SectionConfigData::new();
        typed.set_data("pbs2", REMOTE_TYPE, &remote).unwrap();
        assert_eq!(
            section_config().write("remote.cfg", &typed).unwrap(),
            EXAMPLE
        );
    }

    #[test]
    fn empty_password_not_written() {
        let remote = Remote {
            name: "r1x".into(),
            comment: Some("offsite".into()),
            host: "10.0.0.1".into(),
            port: Some(8008),
            auth_id: "sync@pbs!tok".parse().unwrap(),
            password: String::new(),
            fingerprint: None,
        };
        let mut data = SectionConfigData::new();
        data.set_data("r1x", REMOTE_TYPE, &remote).unwrap();
        let text = section_config().write("remote.cfg", &data).unwrap();
        assert_eq!(
            text,
            "remote: r1x\n\tauth-id sync@pbs!tok\n\tcomment offsite\n\thost 10.0.0.1\n\tport 8008\n"
        );
        let back = section_config().parse("remote.cfg", &text).unwrap();
        assert_eq!(lookup(&back, "r1x").unwrap(), remote);
    }

    #[test]
    fn validation() {
        assert!(check_host("pbs2.example.com").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(check_host("-bad.example").is_err());
        assert!(check_host("a..b").is_err());
        assert!(check_fingerprint("00:11").is_err());
        for (text, msg) in [
            (
                "remote: pbs2\n\tauth-id sync@pbs\n",
                "line 2 - property 'host' is missing and it is not optional.",
            ),
            (
                "remote: pbs2\n\tauth-id sync\n\thost h\n",
                "line 2 - property 'auth-id': not a valid user id",
            ),
            (
                "remote: pbs2\n\tauth-id a@pbs\n\thost h\n\tport 70000\n",
                "line 4 - property 'port': value must have a maximum value of 65535",
            ),
            (
                "remote: pbs2\n\tauth-id a@pbs\n\thost h\n\tpassword !!\n",
                "line 4 - property 'password': password is not valid base64",
            ),
        ] {
            let err = section_config().parse("remote.cfg", text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("parsing \"remote.cfg\" failed: {msg}")
            );
        }
    }

    #[test]
    fn file_mode_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(REMOTE_CFG.path_in(dir.path()), EXAMPLE).unwrap();
        let (data, digest) = config_in(dir.path()).unwrap();
        assert_eq!(digest, crate::files::compute_digest(EXAMPLE.as_bytes()));
        let _lock = lock_config_in(dir.path()).unwrap();
        save_config_in(dir.path(), &data).unwrap();
        let path = REMOTE_CFG.path_in(dir.path());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), EXAMPLE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert!(dir.path().join(".remote.lck").exists());
    }
}
