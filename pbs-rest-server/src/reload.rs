//! Passing the listening socket to a re-executed daemon (reload without dropping clients).
//!
//! The old process stops accepting ([`crate::ServerHandle::hand_over_listener`]), exports
//! the socket with [`export_listener`], re-executes itself and keeps serving its open
//! connections until they are done; the new process picks the socket up with
//! [`import_listener`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// Duplicates the socket without close-on-exec and stores the descriptor number in the
/// environment variable `var` for the next process image. Returns the duplicate.
pub fn export_listener(listener: &std::net::TcpListener, var: &str) -> io::Result<RawFd> {
    // SAFETY: dup on a valid descriptor; the duplicate has FD_CLOEXEC cleared.
    let fd = unsafe { libc::dup(listener.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_var(var, fd.to_string());
    Ok(fd)
}

/// Takes over a socket exported by the previous process image, if `var` is set. The
/// variable is removed; the descriptor must be a listening TCP socket.
pub fn import_listener(var: &str) -> io::Result<Option<std::net::TcpListener>> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(None);
    };
    std::env::remove_var(var);
    let fd: RawFd = value
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{var}: not a file descriptor number: {value:?}"),
            )
        })?;
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt only writes into `accepting`/`len`; an invalid fd yields an error.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut accepting as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 || accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{var}: descriptor {fd} is not a listening socket"),
        ));
    }
    // SAFETY: the descriptor was verified to be a listening socket handed to this process.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    // SAFETY: setting close-on-exec on a valid descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_import_round_trip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        export_listener(&listener, "PBS_TEST_LISTEN_FD").unwrap();
        drop(listener);
        let imported = import_listener("PBS_TEST_LISTEN_FD").unwrap().unwrap();
        assert_eq!(imported.local_addr().unwrap(), addr);
        assert!(std::env::var_os("PBS_TEST_LISTEN_FD").is_none());
        assert!(import_listener("PBS_TEST_LISTEN_FD").unwrap().is_none());

        std::env::set_var("PBS_TEST_LISTEN_FD2", "0x");
        assert!(import_listener("PBS_TEST_LISTEN_FD2").is_err());
        let file = std::fs::File::open("/dev/null").unwrap();
        std::env::set_var("PBS_TEST_LISTEN_FD3", file.as_raw_fd().to_string());
        assert!(import_listener("PBS_TEST_LISTEN_FD3").is_err());
    }
}
