//! Files at backup group level: `owner` and `notes`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Error};

use pbs_api_types::Authid;

/// Name of the owner file in a group directory.
pub const OWNER_FILE_NAME: &str = "owner";
/// Name of the notes file in a group directory.
pub const NOTES_FILE_NAME: &str = "notes";

/// Reads an owner file: first line, trailing whitespace trimmed.
pub fn read_owner(path: &Path) -> Result<Authid, Error> {
    let data = std::fs::read_to_string(path)
        .with_context(|| format!("unable to read owner file {path:?}"))?;
    let line = data.lines().next().unwrap_or("").trim_end();
    line.parse()
        .with_context(|| format!("invalid owner '{line}' in {path:?}"))
}

/// Writes `<authid>\n`; without `force` the file must not exist yet (`O_EXCL`), with `force`
/// an existing file is truncated and replaced.
pub fn write_owner(path: &Path, owner: &Authid, force: bool) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).truncate(true);
    if force {
        options.create(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("unable to create owner file {path:?}"))?;
    file.write_all(format!("{owner}\n").as_bytes())
        .with_context(|| format!("unable to write owner file {path:?}"))?;
    Ok(())
}

/// Whether `caller` may act as `owner`: the same id, or `owner` is a token of `caller`.
pub fn owner_matches(owner: &Authid, caller: &Authid) -> bool {
    owner == caller || (owner.is_token() && !caller.is_token() && owner.user() == caller.user())
}

/// [`owner_matches`] with the error of a refused backup.
pub fn check_backup_owner(owner: &Authid, caller: &Authid) -> Result<(), Error> {
    if !owner_matches(owner, caller) {
        bail!("backup owner check failed ({caller} != {owner})");
    }
    Ok(())
}

/// Reads group notes; a missing file means no notes.
pub fn read_notes(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(notes) => Ok(notes),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(Error::from(err).context(format!("unable to read notes file {path:?}"))),
    }
}

/// Replaces group notes atomically.
pub fn write_notes(path: &Path, notes: &str) -> Result<(), Error> {
    pbs_tools::fs::replace_file(
        path,
        notes.as_bytes(),
        pbs_tools::fs::ReplaceOptions::mode(0o644),
    )
    .with_context(|| format!("unable to replace notes file {path:?}"))
}

/// Creates `path` if missing without touching existing content (marker files).
pub(crate) fn touch(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Authid {
        s.parse().unwrap()
    }

    #[test]
    fn owner_file_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(OWNER_FILE_NAME);
        write_owner(&path, &auth("alice@pbs!tok"), false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"alice@pbs!tok\n");
        assert_eq!(read_owner(&path).unwrap(), auth("alice@pbs!tok"));

        let err = write_owner(&path, &auth("bob@pbs"), false).unwrap_err();
        assert!(format!("{err:#}").contains("unable to create owner file"));
        assert_eq!(read_owner(&path).unwrap(), auth("alice@pbs!tok"));

        write_owner(&path, &auth("bob@pbs"), true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"bob@pbs\n");
    }

    #[test]
    fn owner_file_parsing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(OWNER_FILE_NAME);
        std::fs::write(&path, "root@pam \t\nsecond line\n").unwrap();
        assert_eq!(read_owner(&path).unwrap(), auth("root@pam"));
        std::fs::write(&path, "").unwrap();
        assert!(read_owner(&path).is_err());
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(format!("{:#}", read_owner(&path).unwrap_err()).contains("invalid owner"));
        assert!(read_owner(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn owner_check_rule() {
        let user = auth("alice@pbs");
        let token = auth("alice@pbs!t1");
        let other_token = auth("alice@pbs!t2");
        let bob = auth("bob@pbs");
        assert!(owner_matches(&user, &user));
        assert!(owner_matches(&token, &token));
        assert!(owner_matches(&token, &user));
        assert!(!owner_matches(&user, &token));
        assert!(!owner_matches(&token, &other_token));
        assert!(!owner_matches(&user, &bob));
        assert!(!owner_matches(&auth("bob@pbs!t1"), &user));
        assert_eq!(
            check_backup_owner(&user, &bob).unwrap_err().to_string(),
            "backup owner check failed (bob@pbs != alice@pbs)"
        );
        check_backup_owner(&token, &user).unwrap();
    }

    #[test]
    fn notes_atomic_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(NOTES_FILE_NAME);
        assert_eq!(read_notes(&path).unwrap(), "");
        write_notes(&path, "first\nnote ä").unwrap();
        assert_eq!(read_notes(&path).unwrap(), "first\nnote ä");
        write_notes(&path, "").unwrap();
        assert_eq!(read_notes(&path).unwrap(), "");
        // no temporary files left behind
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [NOTES_FILE_NAME]);
        // failure to rename (target is a non-empty directory) cleans up the temp file
        let dir_target = tmp.path().join("d");
        std::fs::create_dir(&dir_target).unwrap();
        std::fs::write(dir_target.join("x"), b"").unwrap();
        assert!(write_notes(&dir_target, "x").is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
