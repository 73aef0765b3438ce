//! `user.cfg`: users (`user: <userid>`) and API token metadata (`token: <tokenid>`).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Error;
use serde::{Deserialize, Serialize};

use pbs_api_types::{Authid, Userid};

use crate::files::{ConfigFile, ConfigLockGuard, FileOwner};
use crate::section_config::{Property, SectionConfig, SectionConfigData, SectionType, ValueKind};

/// `user.cfg` (`root:backup 0640`, lock `.user.lck`).
pub const USER_CFG: ConfigFile = ConfigFile {
    name: "user.cfg",
    lock_name: ".user.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Section type of users.
pub const USER_TYPE: &str = "user";
/// Section type of API tokens.
pub const TOKEN_TYPE: &str = "token";

/// A user entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// The user id (section id).
    pub userid: Userid,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Absent means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Account expiry (epoch seconds); absent or 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<i64>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstname: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lastname: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// An API token entry (the secret lives in `token.shadow`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ApiToken {
    /// The token id `user@realm!name` (section id).
    pub tokenid: Authid,
    /// Single-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Absent means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Expiry (epoch seconds); absent or 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<i64>,
}

/// Whether an entry with these flags is active at time `now`.
pub fn is_active_at(enable: Option<bool>, expire: Option<i64>, now: i64) -> bool {
    if enable == Some(false) {
        return false;
    }
    match expire {
        Some(expire) if expire > 0 => expire > now,
        _ => true,
    }
}

impl User {
    /// A user with only the id set.
    pub fn new(userid: Userid) -> Self {
        Self {
            userid,
            comment: None,
            enable: None,
            expire: None,
            firstname: None,
            lastname: None,
            email: None,
        }
    }

    /// Enabled and not expired at `now`.
    pub fn is_active_at(&self, now: i64) -> bool {
        is_active_at(self.enable, self.expire, now)
    }
}

impl ApiToken {
    /// Enabled and not expired at `now`.
    pub fn is_active_at(&self, now: i64) -> bool {
        is_active_at(self.enable, self.expire, now)
    }
}

fn check_userid(id: &str) -> Result<(), String> {
    let authid: Authid = id
        .parse()
        .map_err(|err: pbs_api_types::UseridError| err.to_string())?;
    if authid.is_token() {
        return Err(format!("'{id}' is an API token id, not a user id"));
    }
    check_authid_length(id)
}

fn check_tokenid(id: &str) -> Result<(), String> {
    let authid: Authid = id
        .parse()
        .map_err(|err: pbs_api_types::UseridError| err.to_string())?;
    if !authid.is_token() {
        return Err(format!("'{id}' is not an API token id"));
    }
    check_authid_length(id)
}

fn check_authid_length(id: &str) -> Result<(), String> {
    if pbs_api_types::userid::AUTHID_LENGTH.contains(&id.chars().count()) {
        Ok(())
    } else {
        Err(format!("'{id}': auth id must be 3 to 64 characters long"))
    }
}

const NAME_KIND: ValueKind = ValueKind::String {
    min_len: 2,
    max_len: 64,
    check: None,
};

const EXPIRE_KIND: ValueKind = ValueKind::Integer {
    min: Some(0),
    max: None,
};

const USER_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("email", NAME_KIND),
    Property::optional("enable", ValueKind::Boolean),
    Property::optional("expire", EXPIRE_KIND),
    Property::optional("firstname", NAME_KIND),
    Property::optional("lastname", NAME_KIND),
];

const TOKEN_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("enable", ValueKind::Boolean),
    Property::optional("expire", EXPIRE_KIND),
];

/// The section types of `user.cfg`.
pub fn section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        SectionConfig::new(vec![
            SectionType {
                name: USER_TYPE,
                id_property: "userid",
                id_check: check_userid,
                properties: USER_PROPERTIES,
                additional_properties: false,
            },
            SectionType {
                name: TOKEN_TYPE,
                id_property: "tokenid",
                id_check: check_tokenid,
                properties: TOKEN_PROPERTIES,
                additional_properties: false,
            },
        ])
    })
}

/// Parses `user.cfg` content and adds the implicit `root@pam` superuser when missing.
pub fn parse(file: &str, content: &str) -> Result<SectionConfigData, Error> {
    let mut data = section_config().parse(file, content)?;
    if !data.contains("root@pam") {
        let root: Userid = "root@pam".parse()?;
        let mut user = User::new(root);
        user.comment = Some("Superuser".to_string());
        data.set_data("root@pam", USER_TYPE, &user)?;
    }
    Ok(data)
}

/// Reads `user.cfg` in `dir` (missing = only `root@pam`) with its digest.
pub fn config_in(dir: &Path) -> Result<(SectionConfigData, String), Error> {
    let (content, digest) = USER_CFG.read_in(dir)?;
    let data = parse(&USER_CFG.path_in(dir).to_string_lossy(), &content)?;
    Ok((data, digest))
}

/// Reads `user.cfg` with its digest.
pub fn config() -> Result<(SectionConfigData, String), Error> {
    config_in(&pbs_buildcfg::config_dir())
}

/// Writes `user.cfg` in `dir` atomically.
pub fn save_config_in(dir: &Path, data: &SectionConfigData) -> Result<(), Error> {
    let file = USER_CFG.path_in(dir);
    let content = section_config().write(&file.to_string_lossy(), data)?;
    USER_CFG.write_in(dir, content.as_bytes())?;
    crate::cached_user_info::invalidate_cache();
    Ok(())
}

/// Writes `user.cfg` atomically (`root:backup 0640`).
pub fn save_config(data: &SectionConfigData) -> Result<(), Error> {
    save_config_in(&pbs_buildcfg::config_dir(), data)
}

/// Takes the `.user.lck` lock in `dir`.
pub fn lock_config_in(dir: &Path) -> Result<ConfigLockGuard, Error> {
    USER_CFG.lock_in(dir)
}

/// Takes the `.user.lck` lock.
pub fn lock_config() -> Result<ConfigLockGuard, Error> {
    lock_config_in(&pbs_buildcfg::config_dir())
}

/// The user entry of `userid`.
pub fn lookup_user(data: &SectionConfigData, userid: &Userid) -> Result<User, Error> {
    data.lookup(USER_TYPE, userid.as_str())
}

/// The token entry of `tokenid`.
pub fn lookup_token(data: &SectionConfigData, tokenid: &Authid) -> Result<ApiToken, Error> {
    data.lookup(TOKEN_TYPE, &tokenid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXAMPLE: &str = "user: root@pam\n\tcomment Superuser\n\temail admin@example.com\n\nuser: john@pbs\n\tenable true\n\texpire 0\n\ntoken: john@pbs!client1\n\tcomment backup client\n";

    #[test]
    fn example_round_trip() {
        let data = parse("user.cfg", EXAMPLE).unwrap();
        assert_eq!(section_config().write("user.cfg", &data).unwrap(), EXAMPLE);
        let john = lookup_user(&data, &"john@pbs".parse().unwrap()).unwrap();
        assert_eq!(john.enable, Some(true));
        assert_eq!(john.expire, Some(0));
        let token = lookup_token(&data, &"john@pbs!client1".parse().unwrap()).unwrap();
        assert_eq!(token.comment.as_deref(), Some("backup client"));
        assert!(lookup_user(&data, &"nobody@pbs".parse().unwrap()).is_err());
    }

    #[test]
    fn root_added_in_memory_after_read_sections() {
        let data = parse("user.cfg", "user: john@pbs\n\tenable false\n").unwrap();
        let root = lookup_user(&data, &"root@pam".parse().unwrap()).unwrap();
        assert_eq!(root.comment.as_deref(), Some("Superuser"));
        assert_eq!(
            section_config().write("user.cfg", &data).unwrap(),
            "user: john@pbs\n\tenable false\n\nuser: root@pam\n\tcomment Superuser\n"
        );
        let empty = parse("user.cfg", "").unwrap();
        assert_eq!(empty.ids().collect::<Vec<_>>(), vec!["root@pam"]);
    }

    #[test]
    fn invalid_entries() {
        for (input, msg) in [
            (
                "user: john@pbs!tok\n",
                "line 1 - syntax error in section identifier: 'john@pbs!tok' is an API token id, not a user id",
            ),
            (
                "token: john@pbs\n",
                "line 1 - syntax error in section identifier: 'john@pbs' is not an API token id",
            ),
            ("user: john\n", "line 1 - syntax error in section identifier: not a valid user id"),
            ("user: john@pbs\n\tfirstname J\n", "line 2 - property 'firstname': value must be at least 2 characters long"),
            ("user: john@pbs\n\texpire -1\n", "line 2 - property 'expire': value must have a minimum value of 0"),
            ("token: john@pbs!t\n\temail a@b.c\n", "line 2 - unknown property 'email'"),
            ("group: g1\n", "line 1 - unknown section type 'group'"),
        ] {
            let err = parse("/etc/proxmox-backup/user.cfg", input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("parsing \"/etc/proxmox-backup/user.cfg\" failed: {msg}")
            );
        }
    }

    #[test]
    fn activity() {
        assert!(is_active_at(None, None, 100));
        assert!(is_active_at(Some(true), Some(0), 100));
        assert!(is_active_at(None, Some(101), 100));
        assert!(!is_active_at(None, Some(100), 100));
        assert!(!is_active_at(Some(false), None, 100));
    }

    #[test]
    fn file_save_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (mut data, digest) = config_in(dir.path()).unwrap();
        assert_eq!(digest, crate::files::compute_digest(b""));
        let mut anna = User::new("anna@pbs".parse().unwrap());
        anna.email = Some("anna@example.com".into());
        data.set_data("anna@pbs", USER_TYPE, &anna).unwrap();
        let _lock = lock_config_in(dir.path()).unwrap();
        save_config_in(dir.path(), &data).unwrap();
        let path = USER_CFG.path_in(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "user: root@pam\n\tcomment Superuser\n\nuser: anna@pbs\n\temail anna@example.com\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let (back, digest) = config_in(dir.path()).unwrap();
        assert_eq!(back, data);
        assert_eq!(digest, crate::files::compute_digest(text.as_bytes()));
        assert!(dir.path().join(".user.lck").exists());
    }
}
