//! Service manager notifications (`sd_notify` protocol): one datagram of `KEY=value` lines
//! to the socket named in `NOTIFY_SOCKET`; a leading `@` names an abstract socket. Without
//! the variable (not started by systemd) nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use anyhow::{Context, Error};

/// Environment variable naming the notification socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`) if a notification socket is configured.
pub fn notify(state: &str) -> Result<(), Error> {
    let Some(name) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return Ok(());
    };
    let name = name.to_string_lossy().into_owned();
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(&name)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket
        .send_to_addr(state.as_bytes(), &addr)
        .with_context(|| format!("unable to notify service manager at {name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        // The only test touching this variable (the environment is process-global).
        std::env::set_var(NOTIFY_SOCKET_ENV, &path);
        notify("READY=1\nMAINPID=42").unwrap();
        std::env::remove_var(NOTIFY_SOCKET_ENV);
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=42");
        // Without the variable nothing is sent and nothing fails.
        notify("READY=1").unwrap();
    }
}
