//! `proxmox-backup-client`: back up to and restore from a backup server.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(proxmox_backup_client::main_with_args(&args));
}
