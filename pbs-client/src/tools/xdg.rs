//! XDG base directory lookup and placement of the client's configuration files.

use std::path::PathBuf;

use anyhow::{format_err, Context, Result};

/// Sub-directory of the XDG config directories the client uses.
const PREFIX: &str = "proxmox-backup";

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME`, else `$HOME/.config`.
fn config_home() -> Option<PathBuf> {
    non_empty_env("XDG_CONFIG_HOME").or_else(|| non_empty_env("HOME").map(|h| h.join(".config")))
}

/// `$XDG_CONFIG_DIRS` (colon separated, relative entries ignored), default `/etc/xdg`.
fn config_dirs() -> Vec<PathBuf> {
    let dirs = std::env::var("XDG_CONFIG_DIRS").unwrap_or_default();
    let list: Vec<PathBuf> = dirs
        .split(':')
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .collect();
    if list.is_empty() {
        vec![PathBuf::from("/etc/xdg")]
    } else {
        list
    }
}

/// Looks up `<name>` in `$XDG_CONFIG_HOME/proxmox-backup/`, then in each
/// `$XDG_CONFIG_DIRS` entry's `proxmox-backup/`; the first existing file wins.
pub fn xdg_config_file(name: &str) -> Option<PathBuf> {
    config_home()
        .into_iter()
        .chain(config_dirs())
        .map(|dir| dir.join(PREFIX).join(name))
        .find(|path| path.exists())
}

/// Where a new `<name>` goes: `$XDG_CONFIG_HOME/proxmox-backup/<name>` (directory created).
pub fn xdg_config_place(name: &str) -> Result<PathBuf> {
    let home = config_home()
        .ok_or_else(|| format_err!("unable to find the configuration directory (HOME not set)"))?;
    let dir = home.join(PREFIX);
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create directory {dir:?}"))?;
    Ok(dir.join(name))
}
