//! `catalog dump` and `catalog shell`.

use std::io::{Read, Seek};

use anyhow::{bail, Result};
use serde_json::Value;

use pbs_cli::{Command, CommandTree, Param, ParsedArgs};
use pbs_datastore::catalog::CatalogReader;

/// Server file name of the catalog of a snapshot.
pub const CATALOG_NAME: &str = "catalog.pcat1.didx";

fn common_params() -> Vec<Param> {
    let mut params = pbs_client::tools::repository_params();
    params.push(pbs_client::tools::ns_param());
    params.extend([
        Param::optional("keyfile", "Path to encryption key."),
        Param::integer(
            "keyfd",
            "Pass an encryption key via an already opened file descriptor.",
        ),
    ]);
    params
}

/// The `catalog` command group.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let mut dump_params = vec![Param::required("snapshot", "Snapshot path.")];
    dump_params.extend(common_params());
    let mut shell_params = vec![
        Param::required("snapshot", "Group/Snapshot path."),
        Param::required("archive-name", "Backup archive name."),
    ];
    shell_params.extend(common_params());
    vec![(
        "catalog",
        CommandTree::Group(vec![
            (
                "dump",
                CommandTree::Leaf(Command {
                    description: "Dump catalog.",
                    params: dump_params,
                    positionals: vec!["snapshot"],
                }),
            ),
            (
                "shell",
                CommandTree::Leaf(Command {
                    description: "Shell to interactively inspect and restore snapshots.",
                    params: shell_params,
                    positionals: vec!["snapshot", "archive-name"],
                }),
            ),
        ]),
    )]
}

/// Prints every catalog entry (one log line each, on stderr).
pub fn dump_catalog<R: Read + Seek>(reader: R) -> Result<()> {
    let mut catalog = CatalogReader::new(reader);
    catalog.dump(&mut |line| eprintln!("{line}"))
}

/// Maps a `catalog shell` archive name to its server file name (`.pxar` only).
pub fn shell_archive_file_name(archive_name: &str) -> Result<String> {
    if !archive_name.ends_with(".pxar") {
        bail!("Can only mount pxar archives.");
    }
    Ok(format!("{archive_name}.didx"))
}

/// Runs one `catalog` sub-command.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    match path.get(1).copied() {
        Some("dump") => remote::dump(args).await?,
        Some("shell") => remote::shell(args).await?,
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
    Ok(None)
}

mod remote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        assert_eq!(
            shell_archive_file_name("root.pxar").unwrap(),
            "root.pxar.didx"
        );
        assert_eq!(
            shell_archive_file_name("disk.img").unwrap_err().to_string(),
            "Can only mount pxar archives."
        );
    }
}
