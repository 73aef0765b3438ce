//! Name rules shared by datastores, backup groups, archives and realms (no regex engine needed).

use thiserror::Error;

/// A name or id that does not follow its rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid backup id '{0}'")]
    BackupId(String),
    #[error("invalid datastore name '{0}' (SAFE_ID of 3 to 32 characters expected)")]
    DatastoreName(String),
    #[error("invalid archive name '{0}'")]
    ArchiveName(String),
    #[error("invalid backup time directory name '{0}'")]
    TimeDirName(String),
}

/// Minimum length of a datastore name.
pub const DATASTORE_NAME_MIN_LEN: usize = 3;
/// Maximum length of a datastore name.
pub const DATASTORE_NAME_MAX_LEN: usize = 32;

fn is_safe_id_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_safe_id_rest(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// `SAFE_ID`: `[A-Za-z0-9_][A-Za-z0-9._-]*`, the whole string.
pub fn is_safe_id(s: &str) -> bool {
    match s.as_bytes().split_first() {
        Some((first, rest)) => is_safe_id_start(*first) && rest.iter().all(|b| is_safe_id_rest(*b)),
        None => false,
    }
}

/// A `SAFE_ID` whose length lies within `min..=max`.
pub fn is_safe_id_len(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && is_safe_id(s)
}

/// Backup id rule (same characters as `SAFE_ID`, no length limit).
pub fn check_backup_id(id: &str) -> Result<(), NameError> {
    if is_safe_id(id) {
        Ok(())
    } else {
        Err(NameError::BackupId(id.to_string()))
    }
}

/// Datastore name rule: `SAFE_ID` of 3 to 32 characters.
pub fn check_datastore_name(name: &str) -> Result<(), NameError> {
    if is_safe_id_len(name, DATASTORE_NAME_MIN_LEN, DATASTORE_NAME_MAX_LEN) {
        Ok(())
    } else {
        Err(NameError::DatastoreName(name.to_string()))
    }
}

/// Archive name rule: `SAFE_ID`.
pub fn check_archive_name(name: &str) -> Result<(), NameError> {
    if is_safe_id(name) {
        Ok(())
    } else {
        Err(NameError::ArchiveName(name.to_string()))
    }
}

/// Snapshot directory name shape `NNNN-NN-NNTNN:NN:NNZ` (the value itself is not validated).
pub fn is_time_dir_name(name: &str) -> bool {
    const SHAPE: &[u8; 20] = b"0000-00-00T00:00:00Z";
    let b = name.as_bytes();
    b.len() == SHAPE.len()
        && b.iter().zip(SHAPE.iter()).all(|(c, s)| match s {
            b'0' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// Snapshot directory name check with a typed error.
pub fn check_time_dir_name(name: &str) -> Result<(), NameError> {
    if is_time_dir_name(name) {
        Ok(())
    } else {
        Err(NameError::TimeDirName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_id() {
        for good in ["a", "0", "_", "a.b-c_d", "A9", "_.-"] {
            assert!(is_safe_id(good), "{good}");
        }
        for bad in ["", ".a", "-a", "a/b", "a b", "ä", "a:b", "a@b", "a!"] {
            assert!(!is_safe_id(bad), "{bad}");
        }
    }

    #[test]
    fn datastore_name_length() {
        assert!(check_datastore_name("ab").is_err());
        assert!(check_datastore_name("abc").is_ok());
        assert!(check_datastore_name(&"a".repeat(32)).is_ok());
        assert!(check_datastore_name(&"a".repeat(33)).is_err());
        assert!(check_datastore_name("-abc").is_err());
    }

    #[test]
    fn backup_and_archive_names() {
        assert!(check_backup_id("100").is_ok());
        assert!(check_backup_id(&"x".repeat(1000)).is_ok());
        assert!(check_backup_id(".hidden").is_err());
        assert!(check_backup_id("").is_err());
        assert!(check_archive_name("root.pxar.didx").is_ok());
        assert!(check_archive_name("a/b").is_err());
    }

    #[test]
    fn time_dir_names() {
        assert!(is_time_dir_name("2020-06-26T13:56:05Z"));
        assert!(is_time_dir_name("9999-99-99T99:99:99Z"));
        for bad in [
            "2020-06-26T13:56:05",
            "2020-06-26T13:56:05+00:00",
            "2020-06-26 13:56:05Z",
            "2020-06-26T13:56:0aZ",
            "x020-06-26T13:56:05Z",
            "",
        ] {
            assert!(!is_time_dir_name(bad), "{bad}");
            assert!(check_time_dir_name(bad).is_err());
        }
    }
}
