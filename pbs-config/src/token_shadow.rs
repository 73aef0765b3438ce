//! `token.shadow`: crypt(3) hashes of API token secrets, keyed by token id.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, format_err, Error};

use pbs_api_types::Authid;

use crate::crypt::{hash_password, verify_crypt_pw};
use crate::files::{ConfigFile, FileOwner};

/// `token.shadow` (`backup:backup 0640`, readable by the proxy; lock `token.shadow.lock`).
pub const TOKEN_SHADOW: ConfigFile = ConfigFile {
    name: "token.shadow",
    lock_name: "token.shadow.lock",
    mode: 0o640,
    owner: FileOwner::BackupBackup,
};

/// Token id → secret hash.
pub type TokenShadow = HashMap<Authid, String>;

/// Reads `token.shadow` in `dir`; a missing file is empty. Parse errors carry no details so
/// that hashes never end up in logs.
pub fn read_in(dir: &Path) -> Result<TokenShadow, Error> {
    let path = TOKEN_SHADOW.path_in(dir);
    let text = crate::files::read_optional(&path)?.unwrap_or_default();
    if text.is_empty() {
        return Ok(TokenShadow::new());
    }
    serde_json::from_slice(&text).map_err(|_| format_err!("unable to parse '{}'", path.display()))
}

fn write_in(dir: &Path, data: &TokenShadow) -> Result<(), Error> {
    let text = serde_json::to_vec(data)?;
    TOKEN_SHADOW.write_in(dir, &text)
}

/// Checks a token secret: `not an API token ID`, `invalid API token` or `invalid credentials`.
pub fn verify_secret_in(dir: &Path, tokenid: &Authid, secret: &str) -> Result<(), Error> {
    if !tokenid.is_token() {
        bail!("not an API token ID");
    }
    let data = read_in(dir)?;
    match data.get(tokenid) {
        Some(hash) => verify_crypt_pw(secret, hash),
        None => bail!("invalid API token"),
    }
}

/// Stores the hash of `secret` for `tokenid` (under the lock).
pub fn set_secret_in(dir: &Path, tokenid: &Authid, secret: &str) -> Result<(), Error> {
    if !tokenid.is_token() {
        bail!("not an API token ID");
    }
    let hash = hash_password(secret)?;
    let _lock = TOKEN_SHADOW.lock_in(dir)?;
    let mut data = read_in(dir)?;
    data.insert(tokenid.clone(), hash);
    write_in(dir, &data)
}

/// Removes the secret of `tokenid` (under the lock); a missing entry is not an error.
pub fn delete_secret_in(dir: &Path, tokenid: &Authid) -> Result<(), Error> {
    if !tokenid.is_token() {
        bail!("not an API token ID");
    }
    let _lock = TOKEN_SHADOW.lock_in(dir)?;
    let mut data = read_in(dir)?;
    if data.remove(tokenid).is_some() {
        write_in(dir, &data)?;
    }
    Ok(())
}

/// A new token secret: a random UUID v4 in lower-case hyphenated form.
pub fn generate_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Generates, stores and returns a new secret for `tokenid`.
pub fn generate_and_set_secret_in(dir: &Path, tokenid: &Authid) -> Result<String, Error> {
    let secret = generate_secret()?;
    set_secret_in(dir, tokenid, &secret)?;
    Ok(secret)
}

/// Checks a token secret in the configuration directory.
pub fn verify_secret(tokenid: &Authid, secret: &str) -> Result<(), Error> {
    verify_secret_in(&pbs_buildcfg::config_dir(), tokenid, secret)
}

/// Stores a token secret in the configuration directory.
pub fn set_secret(tokenid: &Authid, secret: &str) -> Result<(), Error> {
    set_secret_in(&pbs_buildcfg::config_dir(), tokenid, secret)
}

/// Removes a token secret from the configuration directory.
pub fn delete_secret(tokenid: &Authid) -> Result<(), Error> {
    delete_secret_in(&pbs_buildcfg::config_dir(), tokenid)
}

/// Generates and stores a new token secret, returning it.
pub fn generate_and_set_secret(tokenid: &Authid) -> Result<String, Error> {
    generate_and_set_secret_in(&pbs_buildcfg::config_dir(), tokenid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn authid(s: &str) -> Authid {
        s.parse().unwrap()
    }

    #[test]
    fn secret_format() {
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(s
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(s, generate_secret().unwrap());
    }

    #[test]
    fn set_verify_delete() {
        let dir = tempfile::tempdir().unwrap();
        let tok = authid("john@pbs!client1");
        let secret = generate_and_set_secret_in(dir.path(), &tok).unwrap();
        verify_secret_in(dir.path(), &tok, &secret).unwrap();
        let err = |r: Result<(), Error>| r.unwrap_err().to_string();
        assert_eq!(
            err(verify_secret_in(dir.path(), &tok, "wrong")),
            "invalid credentials"
        );
        assert_eq!(
            err(verify_secret_in(dir.path(), &authid("john@pbs!x"), &secret)),
            "invalid API token"
        );
        assert_eq!(
            err(verify_secret_in(dir.path(), &authid("john@pbs"), &secret)),
            "not an API token ID"
        );
        let path = TOKEN_SHADOW.path_in(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"john@pbs!client1\":\"$y$") && text.ends_with("\"}"));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        if let Some(owner) = FileOwner::BackupBackup.current() {
            use std::os::unix::fs::MetadataExt;
            assert_eq!((meta.uid(), meta.gid()), owner);
        }
        assert!(dir.path().join("token.shadow.lock").exists());
        delete_secret_in(dir.path(), &tok).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        assert_eq!(
            err(verify_secret_in(dir.path(), &tok, &secret)),
            "invalid API token"
        );
    }

    #[test]
    fn parse_error_hides_details() {
        let dir = tempfile::tempdir().unwrap();
        let path = TOKEN_SHADOW.path_in(dir.path());
        std::fs::write(&path, "{\"john@pbs!t\": 5").unwrap();
        assert_eq!(
            read_in(dir.path()).unwrap_err().to_string(),
            format!("unable to parse '{}'", path.display())
        );
    }
}
