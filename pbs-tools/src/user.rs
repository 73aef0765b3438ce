//! System user lookups.

use std::ffi::CString;
use std::io;

/// Name of the unprivileged service user that owns datastores and runs the proxy.
pub const BACKUP_USER_NAME: &str = "backup";

/// uid and primary gid of the user `name`; `Ok(None)` if there is no such user.
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "user name contains a NUL byte")
    })?;
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers reference live buffers of the given sizes for the whole call.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if result.is_null() {
        return Ok(None);
    }
    Ok(Some((pwd.pw_uid, pwd.pw_gid)))
}

/// uid and gid of the `backup` user, if it exists (lookup errors count as absent).
pub fn backup_user() -> Option<(u32, u32)> {
    lookup_user(BACKUP_USER_NAME).ok().flatten()
}

/// Whether this process runs as root (and so may hand files to other users).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_exists_and_nonsense_does_not() {
        assert_eq!(super::lookup_user("root").unwrap(), Some((0, 0)));
        assert_eq!(super::lookup_user("no-such-user-pbs-test").unwrap(), None);
        assert!(super::lookup_user("bad\0name").is_err());
    }
}
