//! The in-process backend: API methods called directly through the route tree, as
//! `root@pam` in a privileged environment; worker tasks started by them are awaited here.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{format_err, Context, Result};
use http::Method;
use serde_json::{Map, Value};

use pbs_api_types::{Authid, UPID};
use pbs_rest_server::invoke::{invoke, InvokeParams};
use pbs_rest_server::{Router, RpcEnv, RpcEnvType};
use pbs_tasks::TaskDir;

use super::task_log::strip_date;

/// How often a local worker task is checked while waiting for it.
const WORKER_POLL_INTERVAL: Duration = Duration::from_millis(100);

fn router() -> Result<&'static Router> {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    if let Some(router) = ROUTER.get() {
        return Ok(router);
    }
    let router = crate::api2::router().context("unable to build the API route tree")?;
    Ok(ROUTER.get_or_init(|| router))
}

/// The environment of in-process calls: `root@pam`, privileged.
pub fn cli_env() -> Result<RpcEnv> {
    let auth_id: Authid = "root@pam"
        .parse()
        .map_err(|err| format_err!("root@pam: {err}"))?;
    Ok(RpcEnv::new(
        RpcEnvType::Privileged,
        Some(auth_id),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    ))
}

/// Calls `method path` with command-line parameters; returns the data and the envelope
/// attributes (e.g. `digest`).
pub async fn call(
    method: Method,
    path: &str,
    params: Vec<(String, String)>,
) -> Result<(Value, Map<String, Value>)> {
    let env = cli_env()?;
    let result = invoke(router()?, method, path, InvokeParams::Strings(params), &env).await?;
    Ok(result)
}

/// Like [`call`], returning only the data.
pub async fn call_data(method: Method, path: &str, params: Vec<(String, String)>) -> Result<Value> {
    Ok(call(method, path, params).await?.0)
}

/// Prints the log lines of `upid` from line `start` on (without the date prefix); returns
/// the number of the next line.
fn print_new_log_lines(dir: &TaskDir, upid: &UPID, start: u64) -> Result<u64> {
    let page = match dir.read_task_log(upid, start, 0) {
        Ok(page) => page,
        // The log appears with the task; until then there is nothing to show.
        Err(_) if start == 1 => return Ok(start),
        Err(err) => return Err(err),
    };
    let mut next = start;
    for (n, line) in page.lines {
        println!("{}", strip_date(&line));
        next = n + 1;
    }
    Ok(next)
}

/// Waits until the worker task `upid` (started by an in-process call) has finished,
/// echoing its log meanwhile.
pub async fn wait_for_local_worker(upid: &str) -> Result<()> {
    let upid: UPID = upid
        .parse()
        .map_err(|err| format_err!("unable to parse UPID '{upid}' - {err}"))?;
    let dir = TaskDir::default_location();
    let mut next_line = 1;
    while pbs_tasks::worker_is_active(&upid) {
        next_line = print_new_log_lines(&dir, &upid, next_line)?;
        tokio::time::sleep(WORKER_POLL_INTERVAL).await;
    }
    print_new_log_lines(&dir, &upid, next_line)?;
    Ok(())
}

/// Calls a method that returns the UPID of a worker task and waits for the task.
pub async fn call_and_wait(
    method: Method,
    path: &str,
    params: Vec<(String, String)>,
) -> Result<()> {
    let data = call_data(method, path, params).await?;
    match data.as_str() {
        Some(upid) => wait_for_local_worker(upid).await,
        None => Ok(()),
    }
}
