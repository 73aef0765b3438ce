//! Writing key and certificate files with the owners and modes the daemons expect.

use std::path::Path;

use anyhow::{Context, Error};
use pbs_tools::fs::{replace_file, ReplaceOptions};

/// Owner of a written key file (only applied when running as root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOwner {
    /// `root:root`
    RootRoot,
    /// `root:backup` (readable by the proxy through its group)
    RootBackup,
}

/// Group id of the `backup` user, if that user exists.
fn backup_gid() -> Option<u32> {
    pbs_tools::user::backup_user().map(|(_, gid)| gid)
}

fn resolve_owner(owner: FileOwner) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    match owner {
        FileOwner::RootRoot => Some((0, 0)),
        FileOwner::RootBackup => Some((0, backup_gid().unwrap_or(0))),
    }
}

/// Atomically writes a key/certificate file (fsynced) with the given mode and owner.
pub fn write_key_file(path: &Path, data: &[u8], mode: u32, owner: FileOwner) -> Result<(), Error> {
    replace_file(
        path,
        data,
        ReplaceOptions {
            mode,
            owner: resolve_owner(owner),
            fsync: true,
        },
    )
    .with_context(|| format!("unable to write {path:?}"))
}
