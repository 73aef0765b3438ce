//! The parts of `tfa.json` this server uses: whether a user has second factors configured
//! (password logins of such users are refused, since second factors cannot be verified
//! here) and dropping the entry of a deleted user.

use anyhow::{format_err, Error};
use serde_json::Value;

use pbs_api_types::Userid;
use pbs_config::files::FileOwner;
use pbs_config::ConfigFile;

/// `tfa.json` (`0600`, lock `tfa.json.lock`).
pub const TFA_JSON: ConfigFile = ConfigFile {
    name: "tfa.json",
    lock_name: "tfa.json.lock",
    mode: 0o600,
    owner: FileOwner::RootRoot,
};

/// Factor lists of a user entry.
const FACTOR_LISTS: &[&str] = &["totp", "u2f", "webauthn", "yubico"];

fn read() -> Result<Option<Value>, Error> {
    let dir = pbs_buildcfg::config_dir();
    let (text, _) = TFA_JSON.read_in(&dir)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| format_err!("unable to parse {:?} - {err}", TFA_JSON.path_in(&dir)))
}

/// Whether a `users` entry of `tfa.json` holds any usable second factor: a non-empty factor
/// list, or recovery keys with at least one unused key. Entries of unknown shape count as
/// usable, so that logins fail closed.
pub fn entry_has_factors(entry: &Value) -> bool {
    let Some(entry) = entry.as_object() else {
        return true;
    };
    let lists = FACTOR_LISTS.iter().any(|name| match entry.get(*name) {
        None | Some(Value::Null) => false,
        Some(Value::Array(list)) => !list.is_empty(),
        Some(_) => true,
    });
    let recovery = match entry.get("recovery") {
        None | Some(Value::Null) => false,
        Some(recovery) => match recovery.get("entries") {
            Some(Value::Array(keys)) => keys.iter().any(|key| !key.is_null()),
            _ => true,
        },
    };
    lists || recovery
}

/// Whether `userid` has second factors configured.
pub fn user_has_second_factors(userid: &Userid) -> Result<bool, Error> {
    Ok(read()?
        .as_ref()
        .and_then(|data| data.get("users"))
        .and_then(|users| users.get(userid.as_str()))
        .is_some_and(entry_has_factors))
}

/// Removes the TFA data of `userid`, if there is any.
pub fn remove_user(userid: &Userid) -> Result<(), Error> {
    let dir = pbs_buildcfg::config_dir();
    let _lock = TFA_JSON.lock_in(&dir)?;
    let Some(mut data) = read()? else {
        return Ok(());
    };
    let removed = data
        .get_mut("users")
        .and_then(Value::as_object_mut)
        .and_then(|users| users.remove(userid.as_str()))
        .is_some();
    if removed {
        TFA_JSON.write_in(&dir, serde_json::to_string(&data)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usable_factors() {
        assert!(!entry_has_factors(&json!({})));
        assert!(!entry_has_factors(
            &json!({"totp": [], "webauthn": [], "recovery": null})
        ));
        assert!(entry_has_factors(&json!({"totp": [{"info": {"id": "x"}}]})));
        assert!(entry_has_factors(
            &json!({"recovery": {"entries": [null, "abc"]}})
        ));
        assert!(!entry_has_factors(
            &json!({"recovery": {"entries": [null, null]}})
        ));
        assert!(entry_has_factors(&json!("unexpected")));
    }
}
