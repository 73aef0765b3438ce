//! `shadow.json`: password hashes of the `pbs` realm, keyed by the user name part.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, format_err, Error};

use crate::crypt::{hash_password, verify_crypt_pw, YESCRYPT_PREFIX};
use crate::files::{ConfigFile, FileOwner};

/// `shadow.json` (`root:root 0600`, lock `shadow.json.lock`).
pub const SHADOW_JSON: ConfigFile = ConfigFile {
    name: "shadow.json",
    lock_name: "shadow.json.lock",
    mode: 0o600,
    owner: FileOwner::RootRoot,
};

/// User name → crypt(3) hash.
pub type ShadowData = BTreeMap<String, String>;

/// Reads `shadow.json` in `dir`; a missing file is an empty map.
pub fn read_in(dir: &Path) -> Result<ShadowData, Error> {
    let path = SHADOW_JSON.path_in(dir);
    let (text, _) = SHADOW_JSON.read_in(dir)?;
    if text.is_empty() {
        return Ok(ShadowData::new());
    }
    serde_json::from_str(&text).map_err(|err| format_err!("unable to parse {path:?} - {err}"))
}

/// Writes `shadow.json` in `dir` pretty-printed with sorted keys and no trailing newline.
pub fn write_in(dir: &Path, data: &ShadowData) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(data)?;
    SHADOW_JSON.write_in(dir, text.as_bytes())
}

/// Verifies the password of `username` (name part without `@pbs`); a hash of an older
/// scheme is replaced by a yescrypt hash after a successful check.
pub fn verify_password_in(dir: &Path, username: &str, password: &str) -> Result<(), Error> {
    let data = read_in(dir)?;
    let Some(hash) = data.get(username) else {
        bail!("no password set");
    };
    verify_crypt_pw(password, hash)?;
    if !hash.starts_with(YESCRYPT_PREFIX) {
        store_password_in(dir, username, password)?;
    }
    Ok(())
}

/// Stores a new yescrypt hash for `username` (under the lock).
pub fn store_password_in(dir: &Path, username: &str, password: &str) -> Result<(), Error> {
    let hash = hash_password(password)?;
    let _lock = SHADOW_JSON.lock_in(dir)?;
    let mut data = read_in(dir)?;
    data.insert(username.to_string(), hash);
    write_in(dir, &data)
}

/// Removes the entry of `username` (under the lock); a missing entry is not an error.
pub fn remove_password_in(dir: &Path, username: &str) -> Result<(), Error> {
    let _lock = SHADOW_JSON.lock_in(dir)?;
    let mut data = read_in(dir)?;
    if data.remove(username).is_some() {
        write_in(dir, &data)?;
    }
    Ok(())
}

/// Verifies a `pbs` realm password (see [`verify_password_in`]).
pub fn verify_password(username: &str, password: &str) -> Result<(), Error> {
    verify_password_in(&pbs_buildcfg::config_dir(), username, password)
}

/// Stores a `pbs` realm password.
pub fn store_password(username: &str, password: &str) -> Result<(), Error> {
    store_password_in(&pbs_buildcfg::config_dir(), username, password)
}

/// Removes a `pbs` realm password.
pub fn remove_password(username: &str) -> Result<(), Error> {
    remove_password_in(&pbs_buildcfg::config_dir(), username)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const LEGACY: &str = "$5$bx7fjhlS8yMPM3Nc$yRgB5vyoTWeRcYn31RFTg5hAGyTInUq.l0HqLKzRuRC";
    const LEGACY_PW: &str = "supersecretpassphrasenoonewillguess";

    #[test]
    fn missing_file_and_unknown_user() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_in(dir.path()).unwrap().is_empty());
        assert_eq!(
            verify_password_in(dir.path(), "john", "x")
                .unwrap_err()
                .to_string(),
            "no password set"
        );
    }

    #[test]
    fn store_verify_remove() {
        let dir = tempfile::tempdir().unwrap();
        store_password_in(dir.path(), "john", "secret1").unwrap();
        store_password_in(dir.path(), "anna", "secret2").unwrap();
        verify_password_in(dir.path(), "john", "secret1").unwrap();
        assert_eq!(
            verify_password_in(dir.path(), "john", "secret2")
                .unwrap_err()
                .to_string(),
            "invalid credentials"
        );
        let path = SHADOW_JSON.path_in(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let data = read_in(dir.path()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\n  \"anna\": \"{}\",\n  \"john\": \"{}\"\n}}",
                data["anna"], data["john"]
            )
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        if let Some(owner) = FileOwner::RootRoot.current() {
            use std::os::unix::fs::MetadataExt;
            assert_eq!((meta.uid(), meta.gid()), owner);
        }
        remove_password_in(dir.path(), "john").unwrap();
        remove_password_in(dir.path(), "anna").unwrap();
        remove_password_in(dir.path(), "nobody").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
    }

    #[test]
    fn legacy_hash_upgraded_on_successful_login() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = ShadowData::new();
        data.insert("john".into(), LEGACY.into());
        write_in(dir.path(), &data).unwrap();
        assert!(verify_password_in(dir.path(), "john", "nope").is_err());
        assert_eq!(read_in(dir.path()).unwrap()["john"], LEGACY);
        verify_password_in(dir.path(), "john", LEGACY_PW).unwrap();
        let upgraded = read_in(dir.path()).unwrap()["john"].clone();
        assert!(upgraded.starts_with("$y$"), "{upgraded}");
        verify_password_in(dir.path(), "john", LEGACY_PW).unwrap();
    }

    #[test]
    fn parse_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(SHADOW_JSON.path_in(dir.path()), "[1]").unwrap();
        assert!(read_in(dir.path())
            .unwrap_err()
            .to_string()
            .contains("shadow.json"));
    }
}
