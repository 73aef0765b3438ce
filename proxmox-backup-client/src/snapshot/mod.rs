//! Listing and managing backup groups and snapshots on a datastore: `list`,
//! `snapshot list/files/forget/upload-log/notes/protected`, `group forget`, `change-owner`, `prune`,
//! `garbage-collect`, `status`.

pub(crate) mod common;
mod listing;
mod manage;
mod prune;

use std::io::IsTerminal;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use pbs_api_types::CryptMode;
use pbs_cli::{CommandTree, Param, ParsedArgs, ValueKind};
use pbs_client::task_log::InterruptCounter;
use pbs_client::tools::{connect, extract_repository, record_repository};

use common::{
    group_arg, group_args, namespace_arg, ns_param, optional_bool, output_format,
    output_format_param, positional, repository_param, snapshot_arg, snapshot_args,
};

fn snapshot_param() -> Param {
    positional("snapshot", "Snapshot path.")
}

fn snapshot_commands() -> CommandTree {
    let list = CommandTree::leaf(
        "List backup snapshots.",
        vec![
            Param::optional("group", "Backup group."),
            repository_param(),
            ns_param(),
            output_format_param(),
        ],
        vec!["group"],
    );
    let files = CommandTree::leaf(
        "List snapshot files.",
        vec![
            snapshot_param(),
            repository_param(),
            ns_param(),
            output_format_param(),
        ],
        vec!["snapshot"],
    );
    let forget = CommandTree::leaf(
        "Forget (remove) backup snapshots.",
        vec![snapshot_param(), repository_param(), ns_param()],
        vec!["snapshot"],
    );
    let upload_log = CommandTree::leaf(
        "Upload backup log file.",
        vec![
            snapshot_param(),
            positional("logfile", "The path to the log file you want to upload."),
            repository_param(),
            ns_param(),
        ]
        .into_iter()
        .chain(crate::crypto::key_params())
        .collect(),
        vec!["snapshot", "logfile"],
    );
    let notes = CommandTree::Group(vec![
        (
            "show",
            CommandTree::leaf(
                "Show notes",
                vec![
                    snapshot_param(),
                    repository_param(),
                    ns_param(),
                    output_format_param(),
                ],
                vec!["snapshot"],
            ),
        ),
        (
            "update",
            CommandTree::leaf(
                "Update Notes",
                vec![
                    snapshot_param(),
                    positional("notes", "The Notes."),
                    repository_param(),
                    ns_param(),
                ],
                vec!["snapshot", "notes"],
            ),
        ),
    ]);
    let protected = CommandTree::Group(vec![
        (
            "show",
            CommandTree::leaf(
                "Show protection status of the specified snapshot",
                vec![
                    snapshot_param(),
                    repository_param(),
                    ns_param(),
                    output_format_param(),
                ],
                vec!["snapshot"],
            ),
        ),
        (
            "update",
            CommandTree::leaf(
                "Update Protection Status of a snapshot",
                vec![
                    snapshot_param(),
                    Param {
                        name: "protected",
                        kind: ValueKind::Boolean { default: false },
                        optional: false,
                        description: "The protection status.",
                    },
                    repository_param(),
                    ns_param(),
                ],
                vec!["snapshot", "protected"],
            ),
        ),
    ]);
    CommandTree::Group(vec![
        ("files", files),
        ("forget", forget),
        ("list", list),
        ("notes", notes),
        ("protected", protected),
        ("upload-log", upload_log),
    ])
}

fn prune_command() -> CommandTree {
    let mut params = vec![
        positional("group", "Backup group."),
        optional_bool(
            "dry-run",
            "Just show what prune would do, but do not delete anything.",
        ),
        Param::flag("quiet", "Minimal output - only show removals."),
        repository_param(),
        output_format_param(),
    ];
    for name in prune::KEEP_OPTIONS {
        params.push(Param::integer(name, "Number of backups to keep."));
    }
    params.push(ns_param());
    params.push(Param::integer(
        "max-depth",
        "How many levels of namespaces should be operated on (0 == no recursion)",
    ));
    CommandTree::leaf("Prune a backup repository.", params, vec!["group"])
}

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    vec![
        (
            "change-owner",
            CommandTree::leaf(
                "Change owner of a backup group",
                vec![
                    positional("group", "Backup group."),
                    positional("new-owner", "The new owner (Authentication Id)."),
                    repository_param(),
                    ns_param(),
                ],
                vec!["group", "new-owner"],
            ),
        ),
        (
            "garbage-collect",
            CommandTree::leaf(
                "Start garbage collection for a specific repository.",
                vec![repository_param(), output_format_param()],
                vec![],
            ),
        ),
        (
            "list",
            CommandTree::leaf(
                "List backup groups.",
                vec![repository_param(), ns_param(), output_format_param()],
                vec![],
            ),
        ),
        (
            "group",
            CommandTree::Group(vec![(
                "forget",
                CommandTree::leaf(
                    "Forget (remove) all snapshots of a backup group.",
                    vec![
                        positional("group", "Backup group."),
                        repository_param(),
                        ns_param(),
                    ],
                    vec!["group"],
                ),
            )]),
        ),
        ("prune", prune_command()),
        ("snapshot", snapshot_commands()),
        (
            "status",
            CommandTree::leaf(
                "Get repository status.",
                vec![repository_param(), output_format_param()],
                vec![],
            ),
        ),
    ]
}

/// The API parameters of `prune`: group, keep options, and `dry-run`, `ns`, `max-depth`
/// only when given.
fn prune_params(args: &ParsedArgs) -> Result<Value> {
    let group = group_arg(args, "group")?;
    let mut params = json!({"backup-type": group.ty, "backup-id": group.id});
    prune::keep_params(args, &mut params)?;
    if args.get("dry-run").is_some() {
        params["dry-run"] = json!(args.flag("dry-run", false)?);
    }
    if let Some(ns) = common::explicit_namespace_arg(args, "ns")? {
        params["ns"] = json!(ns.to_string());
    }
    if let Some(depth) = common::bounded_integer(args, "max-depth", 0, Some(7))? {
        params["max-depth"] = json!(depth);
    }
    Ok(params)
}

/// The key `upload-log` encrypts with: only in `encrypt` mode, but a given key is always
/// loaded (and its passphrase asked). There are no master key options here.
fn upload_log_crypt_config(
    args: &ParsedArgs,
) -> Result<Option<std::sync::Arc<pbs_datastore::crypt_config::CryptConfig>>> {
    let params = crate::crypto::crypto_parameters(args, false)?;
    if params.default_key_implied {
        eprintln!("Encrypting with default encryption key!");
    }
    let config = crate::crypto::load_data_key(&params)?;
    Ok(match params.mode {
        CryptMode::Encrypt => config,
        CryptMode::None | CryptMode::SignOnly => None,
    })
}

/// Runs the command at `path`.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    let mut out = std::io::stdout();
    let repo = extract_repository(args)?;
    let store = repo.store().to_string();
    match path {
        ["list"] => {
            let ns = namespace_arg(args, "ns")?;
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let data = listing::fetch_groups(&client, &store, &ns).await?;
            record_repository(&repo);
            listing::print_groups(&data, format, &mut out)?;
        }
        ["snapshot", "list"] => {
            let group = match args.get("group") {
                Some(_) => Some(group_arg(args, "group")?),
                None => None,
            };
            let ns = namespace_arg(args, "ns")?;
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let data = listing::fetch_snapshots(&client, &store, &ns, group.as_ref()).await?;
            record_repository(&repo);
            listing::print_snapshots(&data, format, &mut out)?;
        }
        ["snapshot", "files"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let data = listing::fetch_files(&client, &store, params).await?;
            record_repository(&repo);
            listing::print_files(&data, format, &mut out)?;
        }
        ["snapshot", "forget"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let client = connect(&repo)?;
            manage::forget(&client, &store, params).await?;
            record_repository(&repo);
        }
        ["group", "forget"] => {
            let group = group_arg(args, "group")?;
            let ns = namespace_arg(args, "ns")?;
            let client = connect(&repo)?;
            if std::io::stdin().is_terminal() {
                let snapshots =
                    listing::fetch_snapshots(&client, &store, &ns, Some(&group)).await?;
                let count = snapshots.as_array().map_or(0, Vec::len);
                eprint!("Delete group \"{group}\" with {count} snapshot(s)? [y|N]: ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !manage::is_yes(&answer) {
                    eprintln!("Aborted.");
                    return Ok(None);
                }
            }
            manage::forget_group(&client, &store, group_args(&ns, &group)).await?;
            record_repository(&repo);
        }
        ["snapshot", "upload-log"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let client = connect(&repo)?;
            let crypt_config = upload_log_crypt_config(args)?;
            let logfile = args.required("logfile")?;
            let data = std::fs::read(logfile)
                .map_err(|err| anyhow::format_err!("unable to read file {logfile:?} - {err}"))?;
            let blob = manage::encode_log(&data, crypt_config.as_deref())?;
            return Ok(Some(
                manage::upload_log(&client, &store, params, blob).await?,
            ));
        }
        ["snapshot", "notes", "show"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let format = output_format(args)?;
            let client = connect(&repo)?;
            manage::show_notes(&client, &store, params, format, &mut out).await?;
        }
        ["snapshot", "notes", "update"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let notes = args.required("notes")?;
            let client = connect(&repo)?;
            manage::update_notes(&client, &store, params, notes).await?;
        }
        ["snapshot", "protected", "show"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            let format = output_format(args)?;
            let client = connect(&repo)?;
            manage::show_protected(&client, &store, params, format, &mut out).await?;
        }
        ["snapshot", "protected", "update"] => {
            let params = snapshot_args(
                &namespace_arg(args, "ns")?,
                &snapshot_arg(args, "snapshot")?,
            );
            args.required("protected")?;
            let protected = args.flag("protected", false)?;
            let client = connect(&repo)?;
            manage::update_protected(&client, &store, params, protected).await?;
        }
        ["change-owner"] => {
            let params = group_args(&namespace_arg(args, "ns")?, &group_arg(args, "group")?);
            let new_owner = args.required("new-owner")?;
            let client = connect(&repo)?;
            manage::change_owner(&client, &store, params, new_owner).await?;
            record_repository(&repo);
        }
        ["prune"] => {
            let params = prune_params(args)?;
            let quiet = args.flag("quiet", false)?;
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let data = prune::fetch_prune(&client, &store, params).await?;
            record_repository(&repo);
            prune::print_prune(data, quiet, format, &mut out)?;
        }
        ["garbage-collect"] => {
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let upid = prune::start_gc(&client, &store).await?;
            record_repository(&repo);
            let interrupts = match format {
                pbs_cli::OutputFormat::Text => InterruptCounter::from_sigint(),
                _ => InterruptCounter::new(),
            };
            prune::show_gc_task(&client, &upid, format, &interrupts, &mut out).await?;
        }
        ["status"] => {
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let data = prune::fetch_status(&client, &store).await?;
            record_repository(&repo);
            prune::print_status(&data, format, &mut out)?;
        }
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::common::testing::parse;
    use super::*;

    fn prune_leaf() -> pbs_cli::Command {
        match prune_command() {
            CommandTree::Leaf(cmd) => cmd,
            CommandTree::Group(_) => unreachable!(),
        }
    }

    #[test]
    fn prune_parameters_only_when_given() {
        let args = parse(prune_leaf(), &["host/elsa", "--keep-last", "2"]);
        assert_eq!(
            prune_params(&args).unwrap(),
            json!({"backup-type": "host", "backup-id": "elsa", "keep-last": 2})
        );
        let args = parse(
            prune_leaf(),
            &[
                "vm/100",
                "--dry-run",
                "--ns",
                "",
                "--max-depth",
                "3",
                "--keep-daily",
                "7",
                "--keep-yearly",
                "1",
            ],
        );
        assert_eq!(
            prune_params(&args).unwrap(),
            json!({"backup-type": "vm", "backup-id": "100", "dry-run": true, "ns": "",
                   "max-depth": 3, "keep-daily": 7, "keep-yearly": 1})
        );
        let args = parse(prune_leaf(), &["vm/100", "--dry-run", "false"]);
        assert_eq!(prune_params(&args).unwrap()["dry-run"], json!(false));
        let args = parse(prune_leaf(), &["vm/100", "--keep-last", "0"]);
        assert_eq!(
            prune_params(&args).unwrap_err().to_string(),
            "parameter verification failed - 'keep-last': value must have a minimum value of 1 (got 0)"
        );
        let args = parse(prune_leaf(), &["vm/100", "--max-depth", "8"]);
        assert_eq!(
            prune_params(&args).unwrap_err().to_string(),
            "parameter verification failed - 'max-depth': value must have a maximum value of 7 (got 8)"
        );
    }
}
