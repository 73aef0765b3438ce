//! `proxmox-backup-manager`: the administration command line of the server.
//!
//! Configuration commands call the API in-process (as `root@pam`); commands that need the
//! running daemon (tasks, garbage collection, datastore creation) talk HTTPS to the local
//! proxy with a locally signed ticket.

pub mod cert;
pub mod commands;
pub mod completion;
pub mod http_client;
pub mod local;
pub mod task_log;
pub mod tree;
pub mod versions;

use anyhow::{format_err, Result};

use pbs_cli::{usage_text, Command, CommandTree};

/// Program name in usage texts.
pub const PROGRAM: &str = "proxmox-backup-manager";

/// Walks the tree along `args` as far as the names go (exact or unique prefix) and returns
/// the leaf reached with its full name path.
pub fn find_leaf<'a>(
    tree: &'a CommandTree,
    args: &[String],
) -> Option<(Vec<&'static str>, &'a Command)> {
    let mut node = tree;
    let mut path = Vec::new();
    let mut words = args.iter();
    loop {
        match node {
            CommandTree::Leaf(cmd) => return Some((path, cmd)),
            CommandTree::Group(entries) => {
                let word = words.next()?;
                let found = entries.iter().find(|(n, _)| n == word).or_else(|| {
                    let mut matches = entries.iter().filter(|(n, _)| n.starts_with(word.as_str()));
                    match (matches.next(), matches.next()) {
                        (Some(one), None) => Some(one),
                        _ => None,
                    }
                })?;
                path.push(found.0);
                node = &found.1;
            }
        }
    }
}

fn collect_usage(
    tree: &CommandTree,
    path: &mut Vec<&'static str>,
    verbose: bool,
    out: &mut String,
) {
    match tree {
        CommandTree::Leaf(cmd) => {
            if verbose {
                out.push_str(&usage_text(PROGRAM, path, cmd));
                out.push('\n');
            } else {
                let mut line = format!("{PROGRAM} {}", path.join(" "));
                for name in &cmd.positionals {
                    line.push_str(&format!(" <{name}>"));
                }
                if cmd.params.len() > cmd.positionals.len() {
                    line.push_str(" [OPTIONS]");
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        CommandTree::Group(entries) => {
            for (name, sub) in entries {
                path.push(name);
                collect_usage(sub, path, verbose, out);
                path.pop();
            }
        }
    }
}

/// The text of `help [command...] [--verbose]`.
pub fn help_text(tree: &CommandTree, words: &[String], verbose: bool) -> Result<String> {
    let mut node = tree;
    let mut path = Vec::new();
    for word in words {
        let CommandTree::Group(entries) = node else {
            break;
        };
        let found = entries
            .iter()
            .find(|(n, _)| n == word)
            .or_else(|| {
                let mut m = entries.iter().filter(|(n, _)| n.starts_with(word.as_str()));
                match (m.next(), m.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            })
            .ok_or_else(|| format_err!("no such command '{}'", words.join(" ")))?;
        path.push(found.0);
        node = &found.1;
    }
    match node {
        CommandTree::Leaf(cmd) => Ok(usage_text(PROGRAM, &path, cmd)),
        group => {
            let mut out = String::from("Usage:\n\n");
            collect_usage(group, &mut path, verbose, &mut out);
            Ok(out)
        }
    }
}

/// Group id of the `backup` group, if it exists.
fn backup_gid() -> Option<u32> {
    let name = std::ffi::CString::new("backup").ok()?;
    // SAFETY: grp is plain data filled by getgrnam_r; all pointers reference live buffers
    // of the given sizes.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(grp.gr_gid)
    }
}

fn serve_control_socket() -> Result<()> {
    let name = pbs_rest_server::control::control_socket_name(std::process::id());
    let mut socket = pbs_rest_server::control::CommandSocket::new(name, backup_gid());
    fn upid_arg(args: Option<serde_json::Value>) -> Result<pbs_api_types::UPID> {
        let text = args
            .as_ref()
            .and_then(|a| a.get("upid"))
            .and_then(|u| u.as_str())
            .ok_or_else(|| format_err!("missing 'upid' argument"))?;
        text.parse()
            .map_err(|err| format_err!("unable to parse UPID '{text}' - {err}"))
    }
    socket.register("worker-task-abort", |args| {
        let upid = upid_arg(args)?;
        pbs_tasks::abort_local_worker(&upid);
        Ok(serde_json::Value::Null)
    })?;
    socket.register("worker-task-status", |args| {
        let upid = upid_arg(args)?;
        Ok(serde_json::Value::Bool(pbs_tasks::worker_is_active_local(
            &upid,
        )))
    })?;
    socket.spawn()?;
    Ok(())
}

fn print_error_with_usage(tree: &CommandTree, args: &[String], err: &anyhow::Error) {
    eprintln!("Error: {err:#}");
    if let Some((path, cmd)) = find_leaf(tree, args) {
        eprintln!();
        eprint!("{}", usage_text(PROGRAM, &path, cmd));
    }
}

async fn run_async(args: &[String]) -> i32 {
    let tree = tree::command_tree();
    if args.first().map(String::as_str) == Some("bashcomplete") {
        completion::print_completions(&tree);
        return 0;
    }
    let invocation = match pbs_cli::parse_command_line(&tree, args) {
        Ok(inv) => inv,
        Err(err) => {
            print_error_with_usage(&tree, args, &err);
            return pbs_cli::ERROR_EXIT_CODE;
        }
    };
    let result = if invocation.path == [tree::HELP] {
        let verbose = invocation.args.flag("verbose", false);
        verbose.and_then(|verbose| {
            let text = help_text(&tree, invocation.args.get_all("command"), verbose)?;
            print!("{text}");
            Ok(())
        })
    } else {
        // A daemon may ask in-process workers for their state or to abort; the tool works
        // without that when the socket cannot be opened.
        if let Err(err) = serve_control_socket() {
            log_debug(&format!("control socket not available: {err:#}"));
        }
        commands::run(&invocation.path, invocation.command, &invocation.args).await
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("Error: {err:#}");
            pbs_cli::ERROR_EXIT_CODE
        }
    }
}

fn log_debug(msg: &str) {
    if std::env::var("PBS_LOG").is_ok_and(|level| level.eq_ignore_ascii_case("debug")) {
        eprintln!("{msg}");
    }
}

/// Commands run by the tool must not depend on the caller's `PATH` or shell settings.
fn setup_safe_path_env() {
    std::env::set_var("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
    for name in ["ENV", "BASH_ENV", "CDPATH", "IFS"] {
        std::env::remove_var(name);
    }
}

/// Runs the tool with `args` (without the program name); returns the exit status.
/// Call before any other thread exists (it adjusts the environment).
pub fn main_with_args(args: &[String]) -> i32 {
    setup_safe_path_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn leaves_are_found_by_prefix() {
        let tree = tree::command_tree();
        let (path, cmd) = find_leaf(&tree, &argv("datas li extra")).unwrap();
        assert_eq!(path, ["datastore", "list"]);
        assert!(cmd.positionals.is_empty());
        assert!(find_leaf(&tree, &argv("datastore")).is_none());
        assert!(find_leaf(&tree, &argv("nothing")).is_none());
    }

    #[test]
    fn help_lists_commands() {
        let tree = tree::command_tree();
        let text = help_text(&tree, &[], false).unwrap();
        assert!(text.starts_with("Usage:\n\n"));
        assert!(text.contains("proxmox-backup-manager datastore create <name> <path> [OPTIONS]\n"));
        assert!(text.contains("proxmox-backup-manager versions [OPTIONS]\n"));
        let text = help_text(&tree, &argv("datastore list"), false).unwrap();
        assert!(text.starts_with("Usage: proxmox-backup-manager datastore list"));
        assert!(help_text(&tree, &argv("bogus"), false).is_err());
    }
}
