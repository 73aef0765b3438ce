//! The directory layout under the base directory and the files the API daemon creates on
//! start (keys, CSRF secret, self-signed certificate).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Error};

use super::log;

/// User and group ids of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserIds {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks up a system user by name.
pub fn lookup_user(name: &str) -> Result<Option<UserIds>, Error> {
    let ids = pbs_tools::user::lookup_user(name)
        .with_context(|| format!("unable to look up user {name:?}"))?;
    Ok(ids.map(|(uid, gid)| UserIds { uid, gid }))
}

/// Whether the process runs with effective uid 0.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The ids of the `backup` user when running as root (files are handed to it); `None` when
/// running unprivileged (everything belongs to the invoking user).
pub fn service_owner() -> Result<Option<UserIds>, Error> {
    if !running_as_root() {
        return Ok(None);
    }
    match lookup_user("backup")? {
        Some(ids) => Ok(Some(ids)),
        None => bail!("user 'backup' does not exist"),
    }
}

/// Creates `path` (and missing parents) with `mode`; a new directory is given to `owner`.
pub fn create_dir(path: &Path, mode: u32, owner: Option<UserIds>) -> Result<(), Error> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("unable to create directory {parent:?}"))?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("unable to create directory {path:?}"))
        }
    }
    // The umask may have cleared bits of `mode`.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("unable to set mode of {path:?}"))?;
    if let Some(ids) = owner {
        std::os::unix::fs::chown(path, Some(ids.uid), Some(ids.gid))
            .with_context(|| format!("unable to change owner of {path:?}"))?;
    }
    Ok(())
}

/// Creates the configuration directory (mode 0700) or checks owner, group and mode of an
/// existing one. The expected owner is `backup:backup` as root, else the invoking user.
pub fn ensure_config_dir(owner: Option<UserIds>) -> Result<(), Error> {
    let dir = pbs_buildcfg::config_dir();
    create_dir(&dir, 0o700, owner)?;
    let meta = std::fs::metadata(&dir).with_context(|| format!("unable to stat {dir:?}"))?;
    let expected = owner.unwrap_or_else(|| UserIds {
        // SAFETY: geteuid/getegid have no preconditions.
        uid: unsafe { libc::geteuid() },
        gid: unsafe { libc::getegid() },
    });
    let problem = if meta.uid() != expected.uid {
        Some("wrong user")
    } else if owner.is_some() && meta.gid() != expected.gid {
        Some("wrong group")
    } else if meta.mode() & 0o777 != 0o700 {
        Some("wrong permission")
    } else {
        None
    };
    if let Some(problem) = problem {
        bail!(
            "configuration directory '{}' permission problem - {problem} (owner {}:{}, mode {:o})",
            dir.display(),
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Creates the run, state and log directories both daemons write to.
pub fn create_runtime_dirs(owner: Option<UserIds>) -> Result<(), Error> {
    let run = pbs_buildcfg::run_dir();
    let state = pbs_buildcfg::state_dir();
    let log = pbs_buildcfg::log_dir();
    create_dir(&run, 0o755, owner)?;
    create_dir(&run.join("active-operations"), 0o750, owner)?;
    create_dir(&run.join("locks"), 0o755, owner)?;
    create_dir(&state, 0o755, owner)?;
    create_dir(&state.join("jobstates"), 0o755, owner)?;
    create_dir(&log, 0o755, owner)?;
    create_dir(&log.join("api"), 0o755, owner)?;
    pbs_tasks::TaskDir::default_location().create()?;
    Ok(())
}

/// What the API daemon sets up before serving: directories, ticket keys, CSRF secret and the
/// self-signed TLS certificate (each only if missing).
pub fn prepare_api_daemon() -> Result<(), Error> {
    let owner = service_owner()?;
    ensure_config_dir(owner)?;
    if pbs_auth::tls::ensure_proxy_cert(false).context("unable to create TLS certificate")? {
        log::info("created self-signed TLS certificate");
    }
    create_runtime_dirs(owner)?;
    pbs_auth::keys::ensure_auth_keys().context("unable to create ticket keys")?;
    pbs_auth::csrf::ensure_csrf_key().context("unable to create CSRF secret")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_get_their_mode_despite_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/active-operations");
        create_dir(&path, 0o750, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        // Existing directories are left alone.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        create_dir(&path, 0o750, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn user_lookup() {
        assert_eq!(
            lookup_user("root").unwrap(),
            Some(UserIds { uid: 0, gid: 0 })
        );
        assert_eq!(lookup_user("no-such-user-pbs-test").unwrap(), None);
    }
}
