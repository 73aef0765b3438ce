//! Writing key and certificate files with the owners and modes the daemons expect.

use std::ffi::CString;
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
    let name = CString::new("backup").ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers reference live buffers of the given sizes.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(pwd.pw_gid)
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
