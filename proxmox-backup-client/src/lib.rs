//! The `proxmox-backup-client` command tree and its dispatch.
//!
//! Each module owns a set of top-level commands: `commands()` lists their tree entries and
//! `run()` executes one of them (given the full command path). A handler's non-null result is
//! printed as `Result: <json>`.

use anyhow::{bail, Result};
use serde_json::Value;

use pbs_cli::{Command, CommandTree, Param, ParsedArgs, ValueKind};

pub mod backup;
pub mod benchmark;
pub mod catalog;
pub mod crypto;
pub mod key;
pub mod mount;
mod namespace;
pub mod restore;
pub mod session;
mod snapshot;
mod task;

/// Program name in usage texts.
pub const PROGRAM: &str = "proxmox-backup-client";

/// The name of the help command (top level only).
const HELP: &str = "help";

/// Aliases and the command path they stand for.
const ALIASES: &[(&str, &[&str])] = &[
    ("files", &["snapshot", "files"]),
    ("forget", &["snapshot", "forget"]),
    ("upload-log", &["snapshot", "upload-log"]),
    ("snapshots", &["snapshot", "list"]),
];

fn help_command() -> CommandTree {
    CommandTree::Leaf(Command {
        description: "Get help about specified command (or sub-command).",
        params: vec![
            Param {
                name: "command",
                kind: ValueKind::Array,
                optional: true,
                description: "Command. This may be a list in order to specify nested sub-commands.",
            },
            Param {
                name: "verbose",
                kind: ValueKind::Boolean { default: false },
                optional: true,
                description: "Verbose help.",
            },
        ],
        positionals: vec!["command"],
    })
}

/// Finds the subtree at `path` (exact names).
fn subtree<'a>(tree: &'a CommandTree, path: &[&str]) -> Option<&'a CommandTree> {
    let mut node = tree;
    for name in path {
        let CommandTree::Group(entries) = node else {
            return None;
        };
        node = &entries.iter().find(|(n, _)| n == name)?.1;
    }
    Some(node)
}

/// The full command tree, including `help` and the aliases.
pub fn command_tree() -> CommandTree {
    let mut entries: Vec<(&'static str, CommandTree)> = Vec::new();
    // One line per module; keep them sorted.
    entries.extend(backup::commands());
    entries.extend(benchmark::commands());
    entries.extend(catalog::commands());
    entries.extend(key::commands());
    entries.extend(mount::commands());
    entries.extend(namespace::commands());
    entries.extend(restore::commands());
    entries.extend(session::commands());
    entries.extend(snapshot::commands());
    entries.extend(task::commands());
    let mut tree = CommandTree::Group(entries);
    let mut aliases = Vec::new();
    for (alias, target) in ALIASES {
        if let Some(node) = subtree(&tree, target) {
            aliases.push((*alias, node.clone()));
        }
    }
    if let CommandTree::Group(entries) = &mut tree {
        entries.extend(aliases);
        entries.push((HELP, help_command()));
        entries.sort_by_key(|(name, _)| *name);
    }
    tree
}

/// Runs the command at `path` (aliases already resolved).
async fn dispatch(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    match path.first().copied() {
        Some("backup") => backup::run(path, args).await,
        Some("benchmark") => benchmark::run(path, args).await,
        Some("catalog") => catalog::run(path, args).await,
        Some("change-owner") => snapshot::run(path, args).await,
        Some("garbage-collect") => snapshot::run(path, args).await,
        Some("key") => key::run(path, args).await,
        Some("list") => snapshot::run(path, args).await,
        Some("login" | "logout" | "version") => session::run(path, args).await,
        Some("map") | Some("mount") | Some("unmap") => mount::run(path, args).await,
        Some("namespace") => namespace::run(path, args).await,
        Some("prune") => snapshot::run(path, args).await,
        Some("restore") => restore::run(path, args).await,
        Some("snapshot") => snapshot::run(path, args).await,
        Some("status") => snapshot::run(path, args).await,
        Some("task") => task::run(path, args).await,
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
}

fn resolve_alias(path: Vec<&'static str>) -> Vec<&'static str> {
    if let [single] = path.as_slice() {
        if let Some((_, target)) = ALIASES.iter().find(|(alias, _)| alias == single) {
            return target.to_vec();
        }
    }
    path
}

async fn run_async(args: &[String]) -> i32 {
    let tree = command_tree();
    if args.first().map(String::as_str) == Some("bashcomplete") {
        pbs_cli::print_completions(&tree);
        return 0;
    }
    let invocation = match pbs_cli::parse_command_line(&tree, args) {
        Ok(inv) => inv,
        Err(err) => {
            pbs_cli::print_error_with_usage(PROGRAM, &tree, args, &err);
            return pbs_cli::ERROR_EXIT_CODE;
        }
    };
    let result = if invocation.path == [HELP] {
        invocation.args.flag("verbose", false).and_then(|verbose| {
            let text =
                pbs_cli::help_text(PROGRAM, &tree, invocation.args.get_all("command"), verbose)?;
            print!("{text}");
            Ok(None)
        })
    } else {
        let path = resolve_alias(invocation.path.clone());
        dispatch(&path, &invocation.args).await
    };
    match result {
        Ok(None) | Ok(Some(Value::Null)) => 0,
        Ok(Some(value)) => match serde_json::to_string_pretty(&value) {
            Ok(text) => {
                println!("Result: {text}");
                0
            }
            Err(err) => {
                eprintln!("Error: {err}");
                pbs_cli::ERROR_EXIT_CODE
            }
        },
        Err(err) => {
            eprintln!("Error: {err:#}");
            pbs_cli::ERROR_EXIT_CODE
        }
    }
}

/// Runs the client with `args` (without the program name); returns the exit status.
pub fn main_with_args(args: &[String]) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("Error: unable to start async runtime - {err}");
            return pbs_cli::ERROR_EXIT_CODE;
        }
    };
    runtime.block_on(run_async(args))
}
