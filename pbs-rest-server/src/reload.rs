//! Passing the listening socket to a re-executed daemon (reload without dropping clients).
//!
//! On reload the old process starts its successor with the listening sockets
//! ([`spawn_with_listeners`] on [`reexec_command`], or [`export_listener`] before an `exec`),
//! then stops accepting ([`crate::ServerHandle::hand_over_listener`]) and keeps serving its
//! open connections until they are done; the new process picks the sockets up with
//! [`import_listener`]. Both processes listen on the same socket for a moment, so no
//! connection attempt is refused.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};

/// Duplicates the socket without close-on-exec and stores the descriptor number in the
/// environment variable `var` for the next process image. Returns the duplicate.
pub fn export_listener(listener: &std::net::TcpListener, var: &str) -> io::Result<RawFd> {
    let fd = dup_inheritable(listener)?.into_raw_fd();
    std::env::set_var(var, fd.to_string());
    Ok(fd)
}

fn dup_inheritable(listener: &std::net::TcpListener) -> io::Result<OwnedFd> {
    // SAFETY: dup on a valid descriptor; the duplicate has FD_CLOEXEC cleared.
    let fd = unsafe { libc::dup(listener.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The command line of this process (`/proc/self/exe` with the same arguments), for
/// starting the successor on reload.
pub fn reexec_command() -> Command {
    let mut command = Command::new("/proc/self/exe");
    command.args(std::env::args_os().skip(1));
    command
}

/// Starts `command` with each listener inherited and its descriptor number in the named
/// environment variable. The parent's duplicates are closed after the start. (Processes
/// spawned concurrently by other threads may inherit the duplicates too.)
pub fn spawn_with_listeners(
    mut command: Command,
    listeners: &[(&std::net::TcpListener, &str)],
) -> io::Result<Child> {
    let mut dups = Vec::with_capacity(listeners.len());
    for (listener, var) in listeners {
        let fd = dup_inheritable(listener)?;
        command.env(var, fd.as_raw_fd().to_string());
        dups.push(fd);
    }
    let child = command.spawn();
    drop(dups);
    child
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

    #[test]
    fn child_inherits_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "test -S /proc/self/fd/$PBS_TEST_CHILD_FD"]);
        let status = spawn_with_listeners(command, &[(&listener, "PBS_TEST_CHILD_FD")])
            .unwrap()
            .wait()
            .unwrap();
        assert!(status.success());
        // Without the hand-over the descriptor is not there.
        let mut command = Command::new("sh");
        command.args(["-c", "test -S /proc/self/fd/$PBS_TEST_CHILD_FD"]);
        command.env("PBS_TEST_CHILD_FD", listener.as_raw_fd().to_string());
        assert!(!command.status().unwrap().success());
    }
}
