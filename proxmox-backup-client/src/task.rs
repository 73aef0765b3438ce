//! `task list/log/stop`: server tasks of the repository's user.

use std::io::Write;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use pbs_cli::format::{render_epoch, render_task_status, ColumnConfig, TableOptions};
use pbs_cli::{Command, CommandTree, OutputFormat, Param, ParsedArgs};
use pbs_client::api_client::ApiClient;
use pbs_client::task_log::{display_task_log, task_path};
use pbs_client::tools::{connect, extract_repository};

use crate::snapshot::common::{
    bounded_integer, output_format, output_format_param, positional, repository_param, take_data,
    write_result,
};

/// Path of the task list.
const TASKS_PATH: &str = "api2/json/nodes/localhost/tasks";

/// Default of `--limit`.
const DEFAULT_LIMIT: i64 = 50;

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let list = Command {
        description: "List running server tasks for this repo user",
        params: vec![
            Param::integer("limit", "The maximal number of tasks to list."),
            Param::flag("all", "Also list stopped tasks."),
            repository_param(),
            output_format_param(),
        ],
        positionals: vec![],
    };
    let log = Command {
        description: "Display the task log.",
        params: vec![
            positional("upid", "Unique Process/Task Identifier"),
            repository_param(),
        ],
        positionals: vec!["upid"],
    };
    let stop = Command {
        description: "Try to stop a specific task.",
        params: vec![
            positional("upid", "Unique Process/Task Identifier"),
            repository_param(),
        ],
        positionals: vec!["upid"],
    };
    vec![(
        "task",
        CommandTree::Group(vec![
            ("list", CommandTree::Leaf(list)),
            ("log", CommandTree::Leaf(log)),
            ("stop", CommandTree::Leaf(stop)),
        ]),
    )]
}

/// `task list`: running (or, with `all`, all) tasks of `auth_id` on `store`.
pub(crate) async fn fetch_tasks<C: ApiClient>(
    client: &C,
    auth_id: &str,
    store: &str,
    limit: i64,
    all: bool,
) -> Result<Value> {
    let params = json!({
        "running": !all,
        "start": 0,
        "limit": limit,
        "userfilter": auth_id,
        "store": store,
    });
    Ok(take_data(client.get(TASKS_PATH, Some(params)).await?))
}

/// Prints the result of [`fetch_tasks`].
pub(crate) fn print_tasks(
    data: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let options = TableOptions::new()
        .column(
            ColumnConfig::new("starttime")
                .right_align(false)
                .renderer(render_epoch),
        )
        .column(
            ColumnConfig::new("endtime")
                .right_align(false)
                .renderer(render_epoch),
        )
        .column(ColumnConfig::new("upid"))
        .column(ColumnConfig::new("status").renderer(render_task_status));
    write_result(out, data, format, &options)
}

/// `task stop`: asks the server to abort a task.
pub(crate) async fn stop_task<C: ApiClient>(client: &C, upid: &str) -> Result<()> {
    client.delete(&task_path(upid), None).await?;
    Ok(())
}

/// Runs the command at `path`.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    let repo = extract_repository(args)?;
    match path {
        ["task", "list"] => {
            let limit = bounded_integer(args, "limit", 1, Some(1000))?.unwrap_or(DEFAULT_LIMIT);
            let all = args.flag("all", false)?;
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let auth_id = repo.auth_id().to_string();
            let data = fetch_tasks(&client, &auth_id, repo.store(), limit, all).await?;
            print_tasks(&data, format, &mut std::io::stdout())?;
        }
        ["task", "log"] => {
            let upid = args.required("upid")?;
            let client = connect(&repo)?;
            display_task_log(&client, upid, true, false).await?;
        }
        ["task", "stop"] => {
            let upid = args.required("upid")?;
            let client = connect(&repo)?;
            stop_task(&client, upid).await?;
        }
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::common::testing::{block_on, FakeApi};

    #[test]
    fn list_parameters_and_columns() {
        let tasks = json!([
            {"upid": "UPID:b", "starttime": 200, "endtime": 210, "status": "OK", "user": "root@pam"},
            {"upid": "UPID:a", "starttime": 100, "user": "root@pam"},
            {"upid": "UPID:c", "starttime": 300, "endtime": 310, "user": "root@pam"},
        ]);
        let api = FakeApi::new().reply("GET", TASKS_PATH, json!({"data": tasks, "total": 3}));
        let data = block_on(fetch_tasks(&api, "user@pbs", "store1", 50, true)).unwrap();
        assert_eq!(
            api.calls(),
            vec![format!("GET {TASKS_PATH} {{\"limit\":50,\"running\":false,\"start\":0,\"store\":\"store1\",\"userfilter\":\"user@pbs\"}}")]
        );
        let mut out = Vec::new();
        let options_free = TableOptions::default();
        let _ = options_free;
        print_tasks(&data, OutputFormat::Text, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let t = |epoch| pbs_api_types::time::strftime_local("%c", epoch).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("UPID")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with(&format!("│ {} ", t(100))), "{text}");
        assert!(rows[0].ends_with(" UPID:a │ running │"), "{text}");
        assert!(rows[1].contains(&format!("│ {} ", t(210))), "{text}");
        assert!(rows[1].ends_with(" UPID:b │ OK      │"), "{text}");
        assert!(rows[2].ends_with(" UPID:c │ unknown │"), "{text}");

        let mut out = Vec::new();
        print_tasks(&data, OutputFormat::Json, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{tasks}\n"));
    }

    #[test]
    fn stop_encodes_the_upid() {
        let upid = "UPID:pbs:00000001:00000002:00000003:6560A000:garbage_collection:s:root@pam:";
        let path = task_path(upid);
        assert!(path.starts_with("api2/json/nodes/localhost/tasks/UPID%3Apbs%3A"));
        let api = FakeApi::new().reply("DELETE", &path, json!({"data": null}));
        block_on(stop_task(&api, upid)).unwrap();
        assert_eq!(api.calls(), vec![format!("DELETE {path} ")]);
    }
}
