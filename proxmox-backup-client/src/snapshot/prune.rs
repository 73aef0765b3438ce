//! `prune`, `garbage-collect` and `status`.

use std::io::Write;

use anyhow::{bail, format_err, Result};
use serde_json::{json, Value};

use pbs_cli::format::{render_epoch, ColumnConfig, TableOptions};
use pbs_cli::OutputFormat;
use pbs_client::api_client::ApiClient;
use pbs_client::task_log::{follow_task_log, FollowOptions, InterruptCounter};

use super::common::{datastore_path, take_data, write_result};
use super::listing::render_snapshot_path;

/// The keep options of `prune`, in the order they are listed.
pub(crate) const KEEP_OPTIONS: [&str; 6] = [
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
];

/// `keep`/`remove`, `unknown` without a boolean.
fn render_prune_action(value: &Value, _record: &Value) -> Result<String> {
    Ok(match value.as_bool() {
        Some(true) => "keep",
        Some(false) => "remove",
        None => "unknown",
    }
    .to_string())
}

/// `prune`: `params` carries the group, keep options and the optional `dry-run`, `ns`
/// and `max-depth`.
pub(crate) async fn fetch_prune<C: ApiClient>(
    client: &C,
    store: &str,
    params: Value,
) -> Result<Value> {
    let reply = client
        .post(&datastore_path(store, "prune"), Some(params))
        .await?;
    Ok(take_data(reply))
}

/// Prints the result of [`fetch_prune`]; with `quiet` only removed snapshots.
pub(crate) fn print_prune(
    mut data: Value,
    quiet: bool,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    if quiet {
        let list = data
            .as_array()
            .ok_or_else(|| format_err!("prune: expected a list of snapshots, got {data}"))?;
        data = Value::Array(
            list.iter()
                .filter(|item| item["keep"].as_bool() == Some(false))
                .cloned()
                .collect(),
        );
    }
    let options = TableOptions::new()
        .sortby("backup-type", false)
        .sortby("backup-id", false)
        .sortby("backup-time", false)
        .column(
            ColumnConfig::new("backup-id")
                .renderer(render_snapshot_path)
                .header("snapshot"),
        )
        .column(
            ColumnConfig::new("backup-time")
                .renderer(render_epoch)
                .header("date"),
        )
        .column(
            ColumnConfig::new("keep")
                .renderer(render_prune_action)
                .header("action"),
        );
    write_result(out, &data, format, &options)
}

/// `garbage-collect`: starts GC; returns the task's UPID (as returned).
pub(crate) async fn start_gc<C: ApiClient>(client: &C, store: &str) -> Result<Value> {
    Ok(take_data(
        client.post(&datastore_path(store, "gc"), None).await?,
    ))
}

/// Text mode follows the task log (an interrupt aborts the task), the JSON forms print
/// the UPID.
pub(crate) async fn show_gc_task<C: ApiClient>(
    client: &C,
    upid: &Value,
    format: OutputFormat,
    interrupts: &InterruptCounter,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    match format {
        OutputFormat::Text => {
            let upid = upid
                .as_str()
                .ok_or_else(|| format_err!("expected a task id (UPID), got {upid}"))?;
            let options = FollowOptions {
                strip_date: true,
                forward_abort: true,
            };
            follow_task_log(client, upid, options, interrupts, out).await
        }
        _ => write_result(out, upid, format, &TableOptions::new()),
    }
}

/// `<bytes> ( <pct> %)` with the percentage part right-aligned in 8 columns.
fn render_total_percentage(value: &Value, record: &Value) -> Result<String> {
    let value = value
        .as_u64()
        .ok_or_else(|| format_err!("expected a byte count, got {value}"))?;
    let total = record["total"]
        .as_u64()
        .ok_or_else(|| format_err!("expected a total byte count"))?;
    if total == 0 {
        bail!("Cannot render total percentage: denominator is zero");
    }
    let percent = (value as u128 + (total / 200) as u128) * 100 / total as u128;
    Ok(format!("{value} {:>8}", format!(" ({percent} %)")))
}

/// `status`: datastore usage.
pub(crate) async fn fetch_status<C: ApiClient>(client: &C, store: &str) -> Result<Value> {
    Ok(take_data(
        client.get(&datastore_path(store, "status"), None).await?,
    ))
}

/// Prints the result of [`fetch_status`].
pub(crate) fn print_status(
    data: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let options = TableOptions::new()
        .noheader(true)
        .column(ColumnConfig::new("total").renderer(render_total_percentage))
        .column(ColumnConfig::new("used").renderer(render_total_percentage))
        .column(ColumnConfig::new("avail").renderer(render_total_percentage));
    write_result(out, data, format, &options)
}

/// The keep options given on the command line, as API parameters.
pub(crate) fn keep_params(args: &pbs_cli::ParsedArgs, params: &mut Value) -> Result<()> {
    for name in KEEP_OPTIONS {
        if let Some(value) = super::common::bounded_integer(args, name, 1, None)? {
            params[name] = json!(value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::{block_on, FakeApi};
    use super::*;

    #[test]
    fn percentages() {
        let record = json!({"total": 1000});
        let render = |v: u64| render_total_percentage(&json!(v), &record).unwrap();
        assert_eq!(render(1000), "1000  (100 %)");
        assert_eq!(render(50), "50    (5 %)");
        assert_eq!(render(4), "4    (0 %)");
        assert_eq!(render(5), "5    (1 %)");
        assert_eq!(
            render_total_percentage(&json!(1), &json!({"total": 0}))
                .unwrap_err()
                .to_string(),
            "Cannot render total percentage: denominator is zero"
        );
    }

    #[test]
    fn status_table_has_no_header() {
        // all values are integers, so the value column is right-aligned
        let api = FakeApi::new().reply(
            "GET",
            "api2/json/admin/datastore/s/status",
            json!({"data": {"total": 1000, "used": 50, "avail": 950, "counts": {}}}),
        );
        let mut out = Vec::new();
        let data = block_on(fetch_status(&api, "s")).unwrap();
        print_status(&data, OutputFormat::Text, &mut out).unwrap();
        let expected = "\
┌───────┬───────────────┐
│ total │ 1000  (100 %) │
├───────┼───────────────┤
│ used  │   50    (5 %) │
├───────┼───────────────┤
│ avail │  950   (95 %) │
└───────┴───────────────┘
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    fn prune_reply() -> Value {
        json!({"data": [
            {"backup-type": "host", "backup-id": "elsa", "backup-time": 1575365701, "keep": false, "protected": false},
            {"backup-type": "host", "backup-id": "elsa", "backup-time": 1575452101, "keep": true, "protected": false},
        ]})
    }

    #[test]
    fn prune_table_quiet_and_json() {
        let date1 = pbs_api_types::time::strftime_local("%c", 1575365701).unwrap();
        let date2 = pbs_api_types::time::strftime_local("%c", 1575452101).unwrap();
        let params =
            json!({"backup-type": "host", "backup-id": "elsa", "keep-last": 1, "dry-run": true});
        let api = FakeApi::new()
            .reply("POST", "api2/json/admin/datastore/s/prune", prune_reply())
            .reply("POST", "api2/json/admin/datastore/s/prune", prune_reply())
            .reply("POST", "api2/json/admin/datastore/s/prune", prune_reply());
        let mut text = Vec::new();
        let mut quiet = Vec::new();
        let mut json_out = Vec::new();
        for (quiet_flag, format, out) in [
            (false, OutputFormat::Text, &mut text),
            (true, OutputFormat::Text, &mut quiet),
            (true, OutputFormat::Json, &mut json_out),
        ] {
            let data = block_on(fetch_prune(&api, "s", params.clone())).unwrap();
            print_prune(data, quiet_flag, format, out).unwrap();
        }
        assert_eq!(
            api.calls()[0],
            "POST api2/json/admin/datastore/s/prune {\"backup-id\":\"elsa\",\"backup-type\":\"host\",\"dry-run\":true,\"keep-last\":1}"
        );
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(
            lines[1].starts_with("│ snapshot                       │"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("│ host/elsa/2019-12-03T09:35:01Z │"),
            "{text}"
        );
        assert!(lines[3].contains(&format!(" {date1} │")), "{text}");
        assert!(lines[3].ends_with(" remove │"), "{text}");
        assert!(
            lines[5].starts_with("│ host/elsa/2019-12-04T09:35:01Z │"),
            "{text}"
        );
        assert!(lines[5].contains(&format!(" {date2} │")), "{text}");
        assert!(lines[5].ends_with("   keep │"), "{text}");
        let quiet = String::from_utf8(quiet).unwrap();
        assert_eq!(quiet.lines().count(), 5, "{quiet}");
        assert!(quiet.contains("remove"), "{quiet}");
        assert_eq!(
            String::from_utf8(json_out).unwrap(),
            "[{\"backup-id\":\"elsa\",\"backup-time\":1575365701,\"backup-type\":\"host\",\"keep\":false,\"protected\":false}]\n"
        );
    }

    #[test]
    fn gc_prints_upid_in_json_and_follows_in_text() {
        let upid = "UPID:pbs:00000001:00000002:00000003:6560A000:garbage_collection:s:root@pam:";
        let task = pbs_client::task_log::task_path(upid);
        let api = FakeApi::new()
            .reply("POST", "api2/json/admin/datastore/s/gc", json!({"data": upid}))
            .reply("POST", "api2/json/admin/datastore/s/gc", json!({"data": upid}))
            .reply(
                "GET",
                &format!("{task}/log"),
                json!({"active": false, "total": 2, "data": [
                    {"n": 1, "t": "2024-06-05T14:24:36+02:00: starting garbage collection on store s"},
                    {"n": 2, "t": "2024-06-05T14:24:37+02:00: TASK OK"}]}),
            )
            .reply("GET", &format!("{task}/status"), json!({"data": {"status": "stopped", "exitstatus": "OK"}}));
        let mut json_out = Vec::new();
        let mut text = Vec::new();
        let interrupts = InterruptCounter::new();
        block_on(async {
            let upid = start_gc(&api, "s").await?;
            show_gc_task(&api, &upid, OutputFormat::Json, &interrupts, &mut json_out).await?;
            let upid = start_gc(&api, "s").await?;
            show_gc_task(&api, &upid, OutputFormat::Text, &interrupts, &mut text).await
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(json_out).unwrap(),
            format!("\"{upid}\"\n")
        );
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "starting garbage collection on store s\nTASK OK\n"
        );
    }
}
