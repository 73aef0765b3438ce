//! `bashcomplete` of `proxmox-backup-manager` (the logic lives in `pbs_cli::help`).

#[cfg(test)]
mod tests {
    use pbs_cli::help::complete;
    #[test]
    fn command_and_option_names() {
        let tree = crate::manager::tree::command_tree();
        let c = |line: &str| complete(&tree, line);
        assert_eq!(c("proxmox-backup-manager da"), ["datastore"]);
        assert_eq!(
            c("proxmox-backup-manager datastore "),
            ["create", "list", "remove", "show", "update"]
        );
        assert_eq!(c("proxmox-backup-manager datas s"), ["show"]);
        assert_eq!(
            c("proxmox-backup-manager datastore remove x --d"),
            ["--destroy-data", "--digest"]
        );
        assert!(c("proxmox-backup-manager datastore remove ").is_empty());
        assert!(c("proxmox-backup-manager bogus ").is_empty());
    }
}
