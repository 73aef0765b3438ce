//! The public API proxy (TLS on `[::]:8007`); forwards protected calls to the API daemon.

fn main() {
    proxmox_backup::server::daemon_main(proxmox_backup::server::DaemonKind::Proxy)
}
