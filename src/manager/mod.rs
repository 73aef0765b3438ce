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

/// Program name in usage texts.
pub const PROGRAM: &str = "proxmox-backup-manager";

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

async fn run_async(args: &[String]) -> i32 {
    let tree = tree::command_tree();
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
    let result = if invocation.path == [tree::HELP] {
        let verbose = invocation.args.flag("verbose", false);
        verbose.and_then(|verbose| {
            let text =
                pbs_cli::help_text(PROGRAM, &tree, invocation.args.get_all("command"), verbose)?;
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
        let (path, cmd) = pbs_cli::find_leaf(&tree, &argv("datas li extra")).unwrap();
        assert_eq!(path, ["datastore", "list"]);
        assert!(cmd.positionals.is_empty());
        assert!(pbs_cli::find_leaf(&tree, &argv("datastore")).is_none());
        assert!(pbs_cli::find_leaf(&tree, &argv("nothing")).is_none());
    }

    #[test]
    fn help_lists_commands() {
        let tree = tree::command_tree();
        let text = pbs_cli::help_text(PROGRAM, &tree, &[], false).unwrap();
        assert!(text.starts_with("Usage:\n\n"));
        assert!(text.contains("proxmox-backup-manager datastore create <name> <path> [OPTIONS]\n"));
        assert!(text.contains("proxmox-backup-manager versions [OPTIONS]\n"));
        let text = pbs_cli::help_text(PROGRAM, &tree, &argv("datastore list"), false).unwrap();
        assert!(text.starts_with("Usage: proxmox-backup-manager datastore list"));
        assert!(pbs_cli::help_text(PROGRAM, &tree, &argv("bogus"), false).is_err());
    }
}
