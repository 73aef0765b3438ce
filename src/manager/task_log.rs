//! Following task logs from the manager: the client library's follower, served by the
//! local proxy client.

use anyhow::{format_err, Result};
use http::Method;
use serde_json::Value;

use pbs_cli::OutputFormat;
use pbs_client::api_client::ApiClient;
pub use pbs_client::task_log::strip_date;

use super::http_client::LocalClient;

/// The follower addresses `api2/json/...`; the local client adds that prefix itself.
fn local_path(path: &str) -> &str {
    path.strip_prefix("api2/json/").unwrap_or(path)
}

impl ApiClient for LocalClient {
    async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::GET, local_path(path), params.as_ref())
            .await
    }
    async fn post(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::POST, local_path(path), params.as_ref())
            .await
    }
    async fn put(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::PUT, local_path(path), params.as_ref())
            .await
    }
    async fn delete(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::DELETE, local_path(path), params.as_ref())
            .await
    }
}

/// Prints the log of `upid` until the task has ended, then checks its status. With
/// `forward_abort` the first Ctrl-C aborts the task; the second stops following at once.
pub async fn follow_task_log(
    client: &LocalClient,
    upid: &str,
    strip: bool,
    forward_abort: bool,
) -> Result<()> {
    pbs_client::task_log::display_task_log(client, upid, strip, forward_abort).await
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
    fn follower_paths_lose_the_api_prefix() {
        assert_eq!(
            local_path("api2/json/nodes/localhost/tasks/UPID%3Ax/log"),
            "nodes/localhost/tasks/UPID%3Ax/log"
        );
        assert_eq!(local_path("version"), "version");
    }
}
