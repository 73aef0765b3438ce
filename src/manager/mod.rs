//! `proxmox-backup-manager` command implementations (being written).
