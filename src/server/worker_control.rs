//! Status and abort of worker tasks of this or another daemon process (through the owning
//! process' control socket).

use anyhow::{bail, format_err, Error};
use serde_json::{json, Value};

use pbs_api_types::UPID;
use pbs_rest_server::control::{control_socket_name, send_command, CommandSocket};
use pbs_tasks::procfs;

/// Error of the task commands for a task of another process.
pub const FOREIGN_UPID: &str = "upid does not belong to this process";

fn is_own_process(upid: &UPID) -> bool {
    procfs::self_pid_pstart().is_ok_and(|(pid, pstart)| upid.pid == pid && upid.pstart == pstart)
}

fn upid_argument(args: Option<Value>) -> Result<UPID, Error> {
    let text = args
        .as_ref()
        .and_then(|args| args.get("upid"))
        .and_then(Value::as_str)
        .ok_or_else(|| format_err!("missing argument 'upid'"))?;
    Ok(text.parse()?)
}

/// Registers `worker-task-abort` and `worker-task-status` on a control socket.
pub fn register_task_commands(socket: &mut CommandSocket) -> Result<(), Error> {
    socket.register("worker-task-abort", |args| {
        let upid = upid_argument(args)?;
        if !is_own_process(&upid) {
            bail!("{FOREIGN_UPID}");
        }
        // A task that already finished needs no abort.
        pbs_tasks::abort_local_worker(&upid);
        Ok(Value::Null)
    })?;
    socket.register("worker-task-status", |args| {
        let upid = upid_argument(args)?;
        if !is_own_process(&upid) {
            bail!("{FOREIGN_UPID}");
        }
        Ok(json!(pbs_tasks::worker_is_active_local(&upid)))
    })?;
    Ok(())
}

/// Whether a task still runs: this process' worker list for own tasks, otherwise the owning
/// process is asked (if it still exists); without an answer the process' existence decides.
pub async fn worker_is_active(upid: &UPID) -> bool {
    if is_own_process(upid) {
        return pbs_tasks::worker_is_active_local(upid);
    }
    if !procfs::process_is_running(upid.pid, upid.pstart) {
        return false;
    }
    let args = json!({ "upid": upid.to_string() });
    match send_command(
        &control_socket_name(upid.pid),
        "worker-task-status",
        Some(args),
    )
    .await
    {
        Ok(Value::Bool(active)) => active,
        _ => true,
    }
}

/// Asks the process running `upid` to abort it. A task that no longer runs is left alone.
pub async fn abort_worker(upid: &UPID) -> Result<(), Error> {
    if is_own_process(upid) {
        pbs_tasks::abort_local_worker(upid);
        return Ok(());
    }
    if !procfs::process_is_running(upid.pid, upid.pstart) {
        return Ok(());
    }
    let args = json!({ "upid": upid.to_string() });
    send_command(
        &control_socket_name(upid.pid),
        "worker-task-abort",
        Some(args),
    )
    .await
    .map_err(|err| format_err!("unable to abort task {upid}: {err}"))?;
    Ok(())
}
