//! Following a server task's log until the task has ended, then judging its final status.
//!
//! Used by `task log` and by commands that start a task (`garbage-collect`), by the client
//! and the manager alike.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, format_err, Context, Result};
use serde_json::{json, Value};

use crate::api_client::{encode_path_component, ApiClient};

/// Lines requested per poll.
pub const PAGE_LINES: u64 = 500;

/// Drops the `<RFC 3339 time>: ` prefix of a log line (lines longer than 27 bytes whose
/// bytes 25..27 are `": "`).
pub fn strip_date(line: &str) -> &str {
    match (line.get(25..27), line.get(27..)) {
        (Some(": "), Some(rest)) if !rest.is_empty() => rest,
        _ => line,
    }
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

/// Counts Ctrl-C presses (SIGINT) while a log is followed.
#[derive(Clone, Default)]
pub struct InterruptCounter(Arc<AtomicUsize>);

impl InterruptCounter {
    /// A counter nobody increments except through [`InterruptCounter::interrupt`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter fed by SIGINT; the first press logs `got shutdown request (SIGINT)`, the
    /// second additionally `forced exit (task still running)`. Needs a tokio runtime.
    pub fn from_sigint() -> Self {
        let counter = Self::new();
        let feed = counter.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("got shutdown request (SIGINT)");
                if feed.interrupt() > 1 {
                    eprintln!("forced exit (task still running)");
                    break;
                }
            }
        });
        counter
    }

    /// Records one interrupt; returns the new count.
    pub fn interrupt(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Interrupts so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a task log is followed.
#[derive(Clone, Copy, Debug, Default)]
pub struct FollowOptions {
    /// Drop the timestamp prefix of each line.
    pub strip_date: bool,
    /// After the first interrupt, ask the server to abort the task (re-sent before every
    /// further poll); without it the first interrupt is only logged.
    pub forward_abort: bool,
}

/// The API path of a task (UPID percent-encoded).
pub fn task_path(upid: &str) -> String {
    format!(
        "api2/json/nodes/localhost/tasks/{}",
        encode_path_component(upid)
    )
}

/// Prints the log of `upid` to `out` until the task has ended, then checks its status.
/// A second interrupt stops following at once (successfully).
pub async fn follow_task_log<C: ApiClient>(
    client: &C,
    upid: &str,
    options: FollowOptions,
    interrupts: &InterruptCounter,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let path = task_path(upid);
    let log_path = format!("{path}/log");
    let mut start = 1u64;
    loop {
        match interrupts.count() {
            0 => {}
            1 => {
                if options.forward_abort {
                    client.delete(&path, None).await?;
                }
            }
            _ => return Ok(()),
        }
        let params = json!({"start": start, "limit": PAGE_LINES, "test-status": true});
        let reply = client.get(&log_path, Some(params)).await?;
        let active = reply["active"].as_bool().unwrap_or(false);
        let total = reply["total"]
            .as_u64()
            .ok_or_else(|| format_err!("task log of {upid}: reply without line count"))?;
        let lines = reply["data"]
            .as_array()
            .ok_or_else(|| format_err!("task log of {upid}: reply without lines"))?;
        for item in lines {
            let n = item["n"]
                .as_u64()
                .ok_or_else(|| format_err!("task log of {upid}: line without number"))?;
            if n != start {
                bail!("got wrong line number in response data ({n} != {start}");
            }
            let text = item["t"]
                .as_str()
                .ok_or_else(|| format_err!("task log of {upid}: line {n} without text"))?;
            let text = if options.strip_date {
                strip_date(text)
            } else {
                text
            };
            writeln!(out, "{text}").context("unable to write task log")?;
            start += 1;
        }
        out.flush().context("unable to write task log")?;
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
    let status = client.get(&format!("{path}/status"), None).await?;
    check_task_status(&status["data"])
}

/// Follows the log of `upid` on stdout, counting real SIGINTs.
pub async fn display_task_log<C: ApiClient>(
    client: &C,
    upid: &str,
    strip_date: bool,
    forward_abort: bool,
) -> Result<()> {
    let interrupts = InterruptCounter::from_sigint();
    let options = FollowOptions {
        strip_date,
        forward_abort,
    };
    let mut stdout = std::io::stdout();
    follow_task_log(client, upid, options, &interrupts, &mut stdout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Serves log pages from a script and records every call.
    struct ScriptedTask {
        /// Replies to the log calls, in order.
        pages: Mutex<Vec<Value>>,
        status: Value,
        calls: Mutex<Vec<String>>,
        interrupts: InterruptCounter,
        /// Interrupt after this many log calls.
        interrupt_after: Option<usize>,
    }

    impl ScriptedTask {
        fn new(pages: Vec<Value>, status: Value) -> Self {
            Self {
                pages: Mutex::new(pages),
                status,
                calls: Mutex::new(Vec::new()),
                interrupts: InterruptCounter::new(),
                interrupt_after: None,
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl ApiClient for ScriptedTask {
        async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
            self.calls.lock().unwrap().push(format!(
                "GET {path} {}",
                params.map(|p| p.to_string()).unwrap_or_default()
            ));
            if path.ends_with("/status") {
                return Ok(json!({ "data": self.status }));
            }
            let log_calls = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.contains("/log"))
                .count();
            if Some(log_calls) == self.interrupt_after {
                self.interrupts.interrupt();
            }
            let mut pages = self.pages.lock().unwrap();
            if pages.is_empty() {
                bail!("no more pages");
            }
            Ok(pages.remove(0))
        }
        async fn post(&self, _: &str, _: Option<Value>) -> Result<Value> {
            bail!("unexpected POST")
        }
        async fn put(&self, _: &str, _: Option<Value>) -> Result<Value> {
            bail!("unexpected PUT")
        }
        async fn delete(&self, path: &str, _: Option<Value>) -> Result<Value> {
            self.calls.lock().unwrap().push(format!("DELETE {path}"));
            Ok(json!({ "data": null }))
        }
        async fn upload(&self, _: &str, _: Vec<u8>, _: &str, _: Option<Value>) -> Result<Value> {
            bail!("unexpected upload")
        }
    }

    fn lines(from: u64, texts: &[&str]) -> Value {
        Value::Array(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"n": from + i as u64, "t": t}))
                .collect(),
        )
    }

    const UPID: &str =
        "UPID:pbs:00001234:00005678:00000001:6560A000:garbage_collection:store1:root@pam:";

    fn run(task: &ScriptedTask, options: FollowOptions) -> (Result<()>, String) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let mut out = Vec::new();
        let result = runtime.block_on(follow_task_log(
            task,
            UPID,
            options,
            &task.interrupts,
            &mut out,
        ));
        (result, String::from_utf8(out).unwrap())
    }

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

    #[test]
    fn follows_until_the_task_ends() {
        let task = ScriptedTask::new(
            vec![
                json!({"active": true, "total": 1, "data": lines(1, &["2024-06-05T14:24:36+02:00: starting"])}),
                json!({"active": true, "total": 1, "data": []}),
                json!({"active": false, "total": 2, "data": lines(2, &["TASK OK"])}),
            ],
            json!({"status": "stopped", "exitstatus": "OK"}),
        );
        let options = FollowOptions {
            strip_date: true,
            forward_abort: false,
        };
        let (result, out) = run(&task, options);
        result.unwrap();
        assert_eq!(out, "starting\nTASK OK\n");
        let path = task_path(UPID);
        assert_eq!(
            task.calls(),
            vec![
                format!("GET {path}/log {{\"limit\":500,\"start\":1,\"test-status\":true}}"),
                format!("GET {path}/log {{\"limit\":500,\"start\":2,\"test-status\":true}}"),
                format!("GET {path}/log {{\"limit\":500,\"start\":2,\"test-status\":true}}"),
                format!("GET {path}/status "),
            ]
        );
    }

    #[test]
    fn keeps_dates_without_strip_and_reports_failure() {
        let task = ScriptedTask::new(
            vec![
                json!({"active": false, "total": 1, "data": lines(1, &["2024-06-05T14:24:36+02:00: boom"])}),
            ],
            json!({"status": "stopped", "exitstatus": "boom"}),
        );
        let (result, out) = run(&task, FollowOptions::default());
        assert_eq!(result.unwrap_err().to_string(), "task failed (status boom)");
        assert_eq!(out, "2024-06-05T14:24:36+02:00: boom\n");
    }

    #[test]
    fn wrong_line_numbers_and_short_pages_fail() {
        let task = ScriptedTask::new(
            vec![json!({"active": false, "total": 1, "data": lines(2, &["x"])})],
            json!({}),
        );
        let (result, _) = run(&task, FollowOptions::default());
        assert_eq!(
            result.unwrap_err().to_string(),
            "got wrong line number in response data (2 != 1"
        );

        let task = ScriptedTask::new(
            vec![json!({"active": false, "total": 3, "data": lines(1, &["a", "b"])})],
            json!({}),
        );
        let (result, _) = run(&task, FollowOptions::default());
        assert_eq!(
            result.unwrap_err().to_string(),
            "got wrong number of lines from server (2 != 500)"
        );
    }

    #[test]
    fn first_interrupt_forwards_abort_second_stops() {
        let mut task = ScriptedTask::new(
            vec![
                json!({"active": true, "total": 0, "data": []}),
                json!({"active": true, "total": 0, "data": []}),
                json!({"active": false, "total": 0, "data": []}),
            ],
            json!({"status": "stopped", "exitstatus": "aborted"}),
        );
        task.interrupt_after = Some(1);
        let options = FollowOptions {
            strip_date: true,
            forward_abort: true,
        };
        let (result, _) = run(&task, options);
        assert_eq!(
            result.unwrap_err().to_string(),
            "task failed (status aborted)"
        );
        let deletes: Vec<_> = task
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("DELETE"))
            .collect();
        // re-sent before each further poll
        assert_eq!(deletes.len(), 2);

        let mut task = ScriptedTask::new(
            vec![json!({"active": true, "total": 0, "data": []})],
            json!({}),
        );
        task.interrupt_after = Some(1);
        task.interrupts.interrupt();
        let (result, _) = run(&task, options);
        result.unwrap();
        assert_eq!(task.calls().len(), 2, "{:?}", task.calls());
    }

    #[test]
    fn interrupt_without_forwarding_keeps_following() {
        let mut task = ScriptedTask::new(
            vec![
                json!({"active": true, "total": 0, "data": []}),
                json!({"active": false, "total": 1, "data": lines(1, &["TASK OK"])}),
            ],
            json!({"status": "stopped", "exitstatus": "OK"}),
        );
        task.interrupt_after = Some(1);
        let (result, out) = run(&task, FollowOptions::default());
        result.unwrap();
        assert_eq!(out, "TASK OK\n");
        assert!(task.calls().iter().all(|c| !c.starts_with("DELETE")));
    }
}
