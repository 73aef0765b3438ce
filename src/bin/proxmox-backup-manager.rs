//! `proxmox-backup-manager`: administration of datastores, users, ACLs, tasks and
//! certificates of the local server.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(proxmox_backup::manager::main_with_args(&args));
}
