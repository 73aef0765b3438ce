//! `versions`: installed package versions and the running version.

use std::process::Command;

use anyhow::Result;
use serde_json::{json, Value};

use pbs_cli::format::{format_and_print_result, ColumnConfig, TableOptions};
use pbs_cli::{OutputFormat, ParsedArgs};

/// Packages listed by `versions --verbose` after the server package.
const TRACKED_PACKAGES: [&str; 11] = [
    "ifupdown2",
    "libjs-extjs",
    "proxmox-backup-docs",
    "proxmox-backup-client",
    "proxmox-mail-forward",
    "proxmox-mini-journalreader",
    "proxmox-offline-mirror-helper",
    "proxmox-widget-toolkit",
    "pve-xtermjs",
    "smartmontools",
    "zfsutils-linux",
];

/// The installed version of a Debian package, if any.
fn installed_version(package: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !version.is_empty()).then_some(version)
}

fn package(name: &str, extra_info: Option<String>) -> Value {
    let mut entry = json!({
        "Package": name,
        "Version": installed_version(name).unwrap_or_else(|| "unknown".to_string()),
    });
    if let Some(info) = extra_info {
        entry["ExtraInfo"] = Value::String(info);
    }
    entry
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The package list: without `verbose` only the server package.
pub fn package_list(verbose: bool) -> Vec<Value> {
    let running = format!("running version: {}", env!("CARGO_PKG_VERSION"));
    let server = package("proxmox-backup-server", Some(running));
    if !verbose {
        return vec![server];
    }
    let mut list = vec![
        package(
            "proxmox-backup",
            Some(format!("running kernel: {}", kernel_release())),
        ),
        server,
    ];
    list.extend(TRACKED_PACKAGES.iter().map(|name| package(name, None)));
    list
}

/// `versions [--verbose] [--output-format]`.
pub fn versions(args: &ParsedArgs) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    let list = Value::Array(package_list(args.flag("verbose", false)?));
    let options = TableOptions::new()
        .disable_sort()
        .noborder(true)
        .column(ColumnConfig::new("Package"))
        .column(ColumnConfig::new("Version"))
        .column(ColumnConfig::new("ExtraInfo").header("Extra Info"));
    format_and_print_result(&list, format, &options)
}
