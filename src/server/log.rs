//! Daemon messages on stderr (the journal when run by systemd), prefixed with the daemon name.

use std::sync::OnceLock;

static NAME: OnceLock<&'static str> = OnceLock::new();

/// Sets the prefix of all messages of this process (the daemon name).
pub fn init(name: &'static str) {
    let _ = NAME.set(name);
}

/// Prints an informational message.
pub fn info(message: impl AsRef<str>) {
    let name = NAME.get().copied().unwrap_or("proxmox-backup");
    eprintln!("{name}: {}", message.as_ref());
}
