//! Per-user files in the XDG base directories (sub-directory `proxmox-backup`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};

/// Sub-directory of the XDG directories used by the client.
pub const PREFIX: &str = "proxmox-backup";

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn home_subdir(sub: &str) -> Option<PathBuf> {
    env_dir("HOME").map(|home| home.join(sub))
}

/// `$XDG_CONFIG_HOME`, default `~/.config`.
pub fn config_home() -> Option<PathBuf> {
    env_dir("XDG_CONFIG_HOME").or_else(|| home_subdir(".config"))
}

/// `$XDG_CACHE_HOME`, default `~/.cache`.
pub fn cache_home() -> Option<PathBuf> {
    env_dir("XDG_CACHE_HOME").or_else(|| home_subdir(".cache"))
}

/// `$XDG_RUNTIME_DIR` (no default).
pub fn runtime_dir() -> Option<PathBuf> {
    env_dir("XDG_RUNTIME_DIR")
}

/// `$XDG_CONFIG_DIRS` (colon-separated), default `/etc/xdg`.
pub fn config_dirs() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var("XDG_CONFIG_DIRS")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .collect();
    if dirs.is_empty() {
        vec![PathBuf::from("/etc/xdg")]
    } else {
        dirs
    }
}

/// Looks up `name` in the user's config directory, then in the system config directories.
pub fn find_config_file(name: &str) -> Option<PathBuf> {
    config_home()
        .into_iter()
        .chain(config_dirs())
        .map(|dir| dir.join(PREFIX).join(name))
        .find(|path| path.exists())
}

fn place(base: Option<PathBuf>, what: &str, name: &str) -> Result<PathBuf> {
    let base = base.ok_or_else(|| format_err!("unable to determine the XDG {what} directory"))?;
    let dir = base.join(PREFIX);
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create directory {dir:?}"))?;
    Ok(dir.join(name))
}

/// Path for `name` in the user's config directory (directory created).
pub fn place_config_file(name: &str) -> Result<PathBuf> {
    place(config_home(), "config", name)
}

/// Path for `name` in the user's cache directory (directory created).
pub fn place_cache_file(name: &str) -> Result<PathBuf> {
    place(cache_home(), "cache", name)
}

/// Path for `name` in the user's runtime directory (directory created).
pub fn place_runtime_file(name: &str) -> Result<PathBuf> {
    place(runtime_dir(), "runtime", name)
}

/// Path of `name` in the user's runtime directory, without creating anything.
pub fn runtime_file(name: &str) -> Option<PathBuf> {
    runtime_dir().map(|dir| dir.join(PREFIX).join(name))
}

/// Path of `name` in the user's config directory, without creating anything.
pub fn config_file(name: &str) -> Option<PathBuf> {
    config_home().map(|dir| dir.join(PREFIX).join(name))
}

/// Path of `name` in the user's cache directory, without creating anything.
pub fn cache_file(name: &str) -> Option<PathBuf> {
    cache_home().map(|dir| dir.join(PREFIX).join(name))
}

/// Reads a JSON file; a missing or empty file reads as an empty object.
pub fn read_json_file(path: &Path) -> Result<serde_json::Value> {
    match std::fs::read(path) {
        Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::json!({})),
        Ok(data) => {
            serde_json::from_slice(&data).with_context(|| format!("unable to parse {path:?}"))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(err) => Err(err).with_context(|| format!("unable to read {path:?}")),
    }
}

/// Replaces `path` atomically with `data` (temporary file with `mode`, then rename).
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let Some(file_name) = path.file_name() else {
        bail!("{path:?}: not a file path");
    };
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp_{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("unable to create {tmp:?}"))?;
        file.write_all(data)
            .with_context(|| format!("unable to write {tmp:?}"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("unable to replace {path:?}"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
