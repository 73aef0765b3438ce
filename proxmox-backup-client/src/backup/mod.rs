//! `backup`: archive directories, images, config and log files into a new snapshot.

pub mod options;
pub mod run;
pub mod source;
pub mod spec;
pub mod split;
pub mod stats;

use anyhow::Result;
use serde_json::Value;

use pbs_cli::{Command, CommandTree, Param, ParsedArgs, ValueKind};

use crate::crypto;

fn backup_params() -> Vec<Param> {
    let mut params = vec![
        Param {
            name: "backupspec",
            kind: ValueKind::Array,
            optional: false,
            description: "List of backup source specifications ([<label.ext>:<path>] ...)",
        },
        Param::optional("backup-type", "Backup types."),
        Param::optional("backup-id", "Backup ID."),
        Param::integer("backup-time", "Backup time (Unix epoch.)"),
        Param::array(
            "include-dev",
            "Include mountpoints with same st_dev number (see ``man fstat``) as specified files.",
        ),
        Param::flag(
            "all-file-systems",
            "Include all mounted subdirectories.",
        ),
        Param::flag(
            "skip-lost-and-found",
            "Skip lost+found directory.",
        ),
        Param::integer(
            "chunk-size",
            "Chunk size in KB. Must be a power of 2.",
        ),
        Param::integer("rate", "Rate limit (for Token bucket filter) in bytes/second."),
        Param::integer("burst", "Size limit (for Token bucket filter) in bytes."),
        Param::array(
            "exclude",
            "List of paths or patterns for matching files to exclude.",
        ),
        Param::integer(
            "entries-max",
            "Max number of entries to hold in memory.",
        ),
        Param::flag("dry-run", "Just show what backup would do, but do not upload anything."),
        Param::flag("skip-e2big-xattr", "Ignore the E2BIG error when retrieving xattrs. This includes the file, but discards the metadata."),
        Param::optional(
            "change-detection-mode",
            "Mode to detect file changes since last backup run (legacy, data, metadata).",
        ),
        Param::flag("verbose", "Verbose output."),
    ];
    params.extend(pbs_client::tools::repository_params());
    params.push(pbs_client::tools::ns_param());
    params.extend(crypto::key_params());
    params.extend(crypto::master_key_params());
    params
}

/// The `backup` command definition.
pub fn backup_command_tree() -> CommandTree {
    CommandTree::Leaf(Command {
        description: "Create (host) backup.",
        params: backup_params(),
        positionals: vec!["backupspec"],
    })
}

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    vec![("backup", backup_command_tree())]
}

/// Runs `backup`.
pub async fn run(_path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    run::run(args).await.map(|()| None)
}
