//! File system locations used by the daemons and tools.
//!
//! Every path derives from one base directory, taken from the environment variable
//! `PBS_BASE_DIR` (default `/`), so tests and `make run` can use a scratch directory.

use std::path::PathBuf;

/// Environment variable that relocates every path below.
pub const BASE_DIR_ENV: &str = "PBS_BASE_DIR";

/// The base directory (`/` in production).
pub fn base_dir() -> PathBuf {
    match std::env::var_os(BASE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/"),
    }
}

/// `<base>/etc/proxmox-backup`: configuration files.
pub fn config_dir() -> PathBuf {
    base_dir().join("etc/proxmox-backup")
}

/// `<base>/var/lib/proxmox-backup`: persistent state (job state, RRD, ...).
pub fn state_dir() -> PathBuf {
    base_dir().join("var/lib/proxmox-backup")
}

/// `<base>/var/log/proxmox-backup`: task logs and access logs.
pub fn log_dir() -> PathBuf {
    base_dir().join("var/log/proxmox-backup")
}

/// `<base>/run/proxmox-backup`: runtime files (pid files, locks).
pub fn run_dir() -> PathBuf {
    base_dir().join("run/proxmox-backup")
}

/// `<base>/run/proxmox-backup/locks`: per-datastore lock files (manifest locks).
pub fn datastore_lock_dir() -> PathBuf {
    run_dir().join("locks")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_follow_base_dir() {
        // Only checks the relative layout: the environment is process-global.
        let base = super::base_dir();
        assert_eq!(super::config_dir(), base.join("etc/proxmox-backup"));
        assert_eq!(
            super::datastore_lock_dir(),
            base.join("run/proxmox-backup/locks")
        );
    }
}
