//! The privileged API daemon (plain HTTP on `127.0.0.1:82`).

fn main() {
    proxmox_backup::server::daemon_main(proxmox_backup::server::DaemonKind::Api)
}
