//! Following a task log over HTTP and judging the task's final status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, format_err, Result};
use http::Method;
use serde_json::{json, Value};

use pbs_cli::OutputFormat;

use super::http_client::{encode_component, LocalClient};

/// Lines requested per poll.
const PAGE_LINES: u64 = 500;

/// Drops the `<RFC 3339 time>: ` prefix of a log line.
pub fn strip_date(line: &str) -> &str {
    match (line.get(25..27), line.get(27..)) {
        (Some(": "), Some(rest)) if !rest.is_empty() => rest,
        _ => line,
    }
}

fn count_sigint() -> Arc<AtomicUsize> {
    let counter = Arc::new(AtomicUsize::new(0));
    let task_counter = Arc::clone(&counter);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if task_counter.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("got shutdown request (SIGINT)");
            } else {
                eprintln!("forced exit (task still running)");
            }
        }
    });
    counter
}

/// Fails unless a stopped task ended with `OK` or `WARNINGS...`.
pub fn check_task_status(status: &Value) -> Result<()> {
    if status["status"].as_str() != Some("stopped") {
        return Ok(());
    }
    match status["exitstatus"].as_str() {
        Some("OK") => Ok(()),
        Some(s) if s.starts_with("WARNINGS") => Ok(()),
        Some(s) => bail!("task failed (status {s})"),
        None => bail!("task stopped with unknown status"),
    }
}

/// Prints the log of `upid` until the task has ended, then checks its status. The first
/// Ctrl-C aborts the task when `forward_abort` is set (else stops following), the second
/// stops following at once.
pub async fn follow_task_log(
    client: &LocalClient,
    upid: &str,
    strip: bool,
    forward_abort: bool,
) -> Result<()> {
    let task_path = format!("nodes/localhost/tasks/{}", encode_component(upid));
    let sigint = count_sigint();
    let mut handled_sigint = 0;
    let mut start = 1u64;
    loop {
        let pressed = sigint.load(Ordering::SeqCst);
        if pressed > 1 {
            return Ok(());
        }
        if pressed > handled_sigint {
            handled_sigint = pressed;
            if !forward_abort {
                return Ok(());
            }
            client.request(Method::DELETE, &task_path, None).await?;
        }
        let params = json!({"start": start, "limit": PAGE_LINES, "test-status": true});
        let reply = client
            .request(Method::GET, &format!("{task_path}/log"), Some(&params))
            .await?;
        let active = reply["active"].as_bool().unwrap_or(false);
        let total = reply["total"].as_u64().unwrap_or(0);
        let lines = reply["data"].as_array().cloned().unwrap_or_default();
        for item in &lines {
            let n = item["n"]
                .as_u64()
                .ok_or_else(|| format_err!("log line without line number"))?;
            if n != start {
                bail!("got wrong line number in response data ({n} != {start}");
            }
            let text = item["t"].as_str().unwrap_or_default();
            println!("{}", if strip { strip_date(text) } else { text });
            start += 1;
        }
        if start > total {
            if active {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            break;
        } else if lines.len() as u64 != PAGE_LINES {
            bail!(
                "got wrong number of lines from server ({} != {PAGE_LINES})",
                lines.len()
            );
        }
    }
    let status = client
        .data(Method::GET, &format!("{task_path}/status"), None)
        .await?;
    check_task_status(&status)
}

/// Shows the result of a call that started a task: in text mode the task log is followed
/// (Ctrl-C aborts the task), otherwise the UPID is printed as JSON.
pub async fn view_task_result(
    client: &LocalClient,
    data: &Value,
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Text => {
            let upid = data
                .as_str()
                .ok_or_else(|| format_err!("expected a task id (UPID), got {data}"))?;
            follow_task_log(client, upid, true, true).await
        }
        OutputFormat::Json => {
            println!("{}", serde_json::to_string(data)?);
            Ok(())
        }
        OutputFormat::JsonPretty => {
            println!("{}", serde_json::to_string_pretty(data)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_prefix_is_stripped() {
        assert_eq!(
            strip_date("2024-06-05T14:24:36+02:00: starting garbage collection"),
            "starting garbage collection"
        );
        assert_eq!(
            strip_date("2024-06-05T14:24:36+02:00: "),
            "2024-06-05T14:24:36+02:00: "
        );
        assert_eq!(strip_date("short line"), "short line");
        assert_eq!(strip_date("TASK OK"), "TASK OK");
    }

    #[test]
    fn task_status() {
        assert!(check_task_status(&json!({"status": "running"})).is_ok());
        assert!(check_task_status(&json!({"status": "stopped", "exitstatus": "OK"})).is_ok());
        assert!(
            check_task_status(&json!({"status": "stopped", "exitstatus": "WARNINGS: 2"})).is_ok()
        );
        assert_eq!(
            check_task_status(&json!({"status": "stopped", "exitstatus": "boom"}))
                .unwrap_err()
                .to_string(),
            "task failed (status boom)"
        );
        assert_eq!(
            check_task_status(&json!({"status": "stopped"}))
                .unwrap_err()
                .to_string(),
            "task stopped with unknown status"
        );
    }
}
