//! Authentication realms: the built-in `pam` and `pbs` realms and the realms configured in
//! `domains.cfg` (`openid`, `ldap`, `ad`), with password checks and password storage.

use std::net::IpAddr;
use std::sync::OnceLock;

use anyhow::{bail, format_err, Error};
use http::StatusCode;

use pbs_api_types::Userid;
use pbs_config::files::FileOwner;
use pbs_config::section_config::{check_safe_id_3_32, Property, SectionType, ValueKind};
use pbs_config::{ConfigFile, SectionConfig, SectionConfigData};
use pbs_rest_server::HttpError;

/// `domains.cfg` (`root:backup 0640`, lock `.domains.lck`).
pub const DOMAINS_CFG: ConfigFile = ConfigFile {
    name: "domains.cfg",
    lock_name: ".domains.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Section types of `domains.cfg`.
pub const DOMAIN_TYPES: &[&str] = &["openid", "ldap", "ad"];

/// The kind of a realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealmKind {
    /// Linux PAM (service `proxmox-backup-auth`).
    Pam,
    /// Passwords in `shadow.json`.
    Pbs,
    /// A realm from `domains.cfg` with its section type.
    Configured(&'static str),
}

// Only the properties the API reports are typed; the realm-specific ones are kept as they
// are, since this module only reads the file.
const DOMAIN_PROPERTIES: &[Property] = &[
    Property::optional("comment", ValueKind::ANY_STRING),
    Property::optional("default", ValueKind::Boolean),
];

fn domains_section_config() -> &'static SectionConfig {
    static CONFIG: OnceLock<SectionConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        SectionConfig::new(
            DOMAIN_TYPES
                .iter()
                .map(|name| SectionType {
                    name,
                    id_property: "realm",
                    id_check: check_safe_id_3_32,
                    properties: DOMAIN_PROPERTIES,
                    additional_properties: true,
                })
                .collect(),
        )
    })
}

/// Reads `domains.cfg` (missing = no realms) with its digest.
pub fn domains_config() -> Result<(SectionConfigData, String), Error> {
    let dir = pbs_buildcfg::config_dir();
    let (content, digest) = DOMAINS_CFG.read_in(&dir)?;
    let file = DOMAINS_CFG.path_in(&dir);
    let data = domains_section_config().parse(&file.to_string_lossy(), &content)?;
    Ok((data, digest))
}

/// Looks up a realm by name (`unknown realm "<r>"` if it does not exist).
pub fn lookup_realm(realm: &str) -> Result<RealmKind, Error> {
    match realm {
        "pam" => return Ok(RealmKind::Pam),
        "pbs" => return Ok(RealmKind::Pbs),
        _ => {}
    }
    let (domains, _) = domains_config()?;
    match domains.get(realm) {
        Some((ty, _)) => DOMAIN_TYPES
            .iter()
            .find(|known| **known == ty)
            .map(|known| RealmKind::Configured(known))
            .ok_or_else(|| format_err!("unknown realm \"{realm}\"")),
        None => bail!("unknown realm \"{realm}\""),
    }
}

/// Checks the password of `userid` against its realm. Blocks (PAM, password hashing).
pub fn authenticate_user(
    userid: &Userid,
    password: &str,
    client: Option<IpAddr>,
) -> Result<(), Error> {
    match lookup_realm(userid.realm())? {
        RealmKind::Pam => {
            let rhost = client.map(|ip| ip.to_string());
            pbs_auth::pam_authenticate_user(userid.name(), password, rhost.as_deref())?;
            Ok(())
        }
        RealmKind::Pbs => pbs_config::shadow::verify_password(userid.name(), password),
        RealmKind::Configured(ty) => {
            bail!(
                "password login to '{ty}' realm '{}' is not available",
                userid.realm()
            )
        }
    }
}

/// Stores a new password for `userid` in its realm; realms without password storage fail
/// with `501`. Blocks.
pub fn store_password(userid: &Userid, password: &str) -> Result<(), Error> {
    match lookup_realm(userid.realm())? {
        RealmKind::Pam => {
            pbs_auth::pam_change_password(userid.name(), password)?;
            Ok(())
        }
        RealmKind::Pbs => pbs_config::shadow::store_password(userid.name(), password),
        RealmKind::Configured(ty) => Err(HttpError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("storing passwords is not implemented for '{ty}' realms"),
        )
        .into()),
    }
}

/// Removes the stored password of `userid` (only the `pbs` realm stores passwords itself).
pub fn remove_password(userid: &Userid) -> Result<(), Error> {
    match lookup_realm(userid.realm())? {
        RealmKind::Pbs => pbs_config::shadow::remove_password(userid.name()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_cfg_keeps_realm_specific_properties() {
        let text = "openid: corp\n\tclient-id pbs\n\tcomment Company login\n\tissuer-url https://id.example.com\n\nldap: dir\n\tbase-dn dc=example,dc=com\n\tdefault true\n\tserver1 ldap.example.com\n\tuser-attr uid\n";
        let data = domains_section_config().parse("domains.cfg", text).unwrap();
        let (ty, corp) = data.get("corp").unwrap();
        assert_eq!(ty, "openid");
        assert_eq!(corp["comment"], "Company login");
        assert_eq!(corp["realm"], "corp");
        let (ty, dir) = data.get("dir").unwrap();
        assert_eq!(ty, "ldap");
        assert_eq!(dir["default"], true);
        assert_eq!(
            domains_section_config()
                .write("domains.cfg", &data)
                .unwrap(),
            text
        );
        assert!(domains_section_config()
            .parse("domains.cfg", "pam: x\n\tcomment y\n")
            .is_err());
    }
}
