//! `list`, `snapshot list` and `snapshot files`.

use std::io::Write;

use anyhow::{format_err, Result};
use serde_json::{json, Value};

use pbs_api_types::{time::epoch_to_rfc3339_utc, BackupGroup, BackupNamespace};
use pbs_cli::format::{render_bytes, ColumnConfig, TableOptions};
use pbs_cli::OutputFormat;
use pbs_client::api_client::ApiClient;

use super::common::{datastore_path, group_args, render_file_list, take_data, write_result};

fn record_str<'a>(record: &'a Value, key: &str) -> Result<&'a str> {
    record[key]
        .as_str()
        .ok_or_else(|| format_err!("missing or invalid '{key}'"))
}

fn record_time(record: &Value, key: &str) -> Result<String> {
    let epoch = record[key]
        .as_i64()
        .ok_or_else(|| format_err!("missing or invalid '{key}'"))?;
    Ok(epoch_to_rfc3339_utc(epoch)?)
}

/// `<type>/<id>` of a group or snapshot record.
fn render_group_path(_value: &Value, record: &Value) -> Result<String> {
    Ok(format!(
        "{}/{}",
        record_str(record, "backup-type")?,
        record_str(record, "backup-id")?
    ))
}

/// `<type>/<id>/<time>` of a group's last snapshot.
fn render_last_snapshot(_value: &Value, record: &Value) -> Result<String> {
    Ok(format!(
        "{}/{}",
        render_group_path(&Value::Null, record)?,
        record_time(record, "last-backup")?
    ))
}

/// `<type>/<id>/<time>` of a snapshot record.
pub(crate) fn render_snapshot_path(_value: &Value, record: &Value) -> Result<String> {
    Ok(format!(
        "{}/{}",
        render_group_path(&Value::Null, record)?,
        record_time(record, "backup-time")?
    ))
}

/// A group's file names (strings).
fn render_group_files(value: &Value, _record: &Value) -> Result<String> {
    let files = value.as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(render_file_list(files.iter().filter_map(Value::as_str)))
}

/// A snapshot's file names (`{filename, ...}` items).
fn render_snapshot_files(value: &Value, _record: &Value) -> Result<String> {
    let files = value.as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(render_file_list(
        files.iter().filter_map(|f| f["filename"].as_str()),
    ))
}

fn ns_params(ns: &BackupNamespace) -> Value {
    if ns.is_root() {
        json!({})
    } else {
        json!({"ns": ns.to_string()})
    }
}

/// `list`: the backup groups of a namespace.
pub(crate) async fn fetch_groups<C: ApiClient>(
    client: &C,
    store: &str,
    ns: &BackupNamespace,
) -> Result<Value> {
    let reply = client
        .get(&datastore_path(store, "groups"), Some(ns_params(ns)))
        .await?;
    Ok(take_data(reply))
}

/// Prints the result of [`fetch_groups`].
pub(crate) fn print_groups(
    data: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let options = TableOptions::new()
        .sortby("backup-type", false)
        .sortby("backup-id", false)
        .column(
            ColumnConfig::new("backup-id")
                .renderer(render_group_path)
                .header("group"),
        )
        .column(
            ColumnConfig::new("last-backup")
                .renderer(render_last_snapshot)
                .header("last snapshot")
                .right_align(false),
        )
        .column(ColumnConfig::new("backup-count"))
        .column(ColumnConfig::new("files").renderer(render_group_files));
    write_result(out, data, format, &options)
}

/// `snapshot list [group]`: the snapshots of a namespace or of one group.
pub(crate) async fn fetch_snapshots<C: ApiClient>(
    client: &C,
    store: &str,
    ns: &BackupNamespace,
    group: Option<&BackupGroup>,
) -> Result<Value> {
    let params = match group {
        Some(group) => group_args(ns, group),
        None => ns_params(ns),
    };
    let reply = client
        .get(&datastore_path(store, "snapshots"), Some(params))
        .await?;
    Ok(take_data(reply))
}

/// Prints the result of [`fetch_snapshots`].
pub(crate) fn print_snapshots(
    data: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let options = TableOptions::new()
        .sortby("backup-type", false)
        .sortby("backup-id", false)
        .sortby("backup-time", false)
        .column(
            ColumnConfig::new("backup-id")
                .renderer(render_snapshot_path)
                .header("snapshot"),
        )
        .column(ColumnConfig::new("size").renderer(render_bytes))
        .column(ColumnConfig::new("files").renderer(render_snapshot_files));
    write_result(out, data, format, &options)
}

/// `snapshot files <snapshot>`: the files of one snapshot (`params` = snapshot parameters).
pub(crate) async fn fetch_files<C: ApiClient>(
    client: &C,
    store: &str,
    params: Value,
) -> Result<Value> {
    let reply = client
        .get(&datastore_path(store, "files"), Some(params))
        .await?;
    Ok(take_data(reply))
}

/// Prints the result of [`fetch_files`].
pub(crate) fn print_files(
    data: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    // the item schema's properties: the required one first, then the optional ones
    let options = TableOptions::new()
        .column(ColumnConfig::new("filename"))
        .column(ColumnConfig::new("crypt-mode"))
        .column(ColumnConfig::new("size"));
    write_result(out, data, format, &options)
}

#[cfg(test)]
mod tests {
    use super::super::common::snapshot_args;
    use super::super::common::testing::{block_on, FakeApi};
    use super::*;

    fn plain() -> (OutputFormat, Vec<u8>) {
        std::env::remove_var(pbs_cli::format::ENV_NO_BORDER);
        std::env::remove_var(pbs_cli::format::ENV_NO_HEADER);
        (OutputFormat::Text, Vec::new())
    }

    #[test]
    fn groups_table_and_json() {
        let groups = json!([
            {"backup-type": "vm", "backup-id": "100", "last-backup": 1575365701, "backup-count": 12,
             "files": ["index.json.blob", "drive-scsi0.img.fidx"], "owner": "root@pam"},
            {"backup-type": "host", "backup-id": "elsa", "last-backup": 1575365702, "backup-count": 3,
             "files": ["root.pxar.didx", "catalog.pcat1.didx", "index.json.blob"]},
        ]);
        let api = FakeApi::new().reply(
            "GET",
            "api2/json/admin/datastore/store1/groups",
            json!({"data": groups}),
        );
        let (format, mut out) = plain();
        let ns: BackupNamespace = "a".parse().unwrap();
        let data = block_on(fetch_groups(&api, "store1", &ns)).unwrap();
        print_groups(&data, format, &mut out).unwrap();
        assert_eq!(
            api.calls(),
            vec!["GET api2/json/admin/datastore/store1/groups {\"ns\":\"a\"}"]
        );
        let expected = "\
┌───────────┬────────────────────────────────┬──────────────┬────────────────────────────────────┐
│ group     │ last snapshot                  │ backup-count │ files                              │
╞═══════════╪════════════════════════════════╪══════════════╪════════════════════════════════════╡
│ host/elsa │ host/elsa/2019-12-03T09:35:02Z │            3 │ catalog.pcat1 index.json root.pxar │
├───────────┼────────────────────────────────┼──────────────┼────────────────────────────────────┤
│ vm/100    │ vm/100/2019-12-03T09:35:01Z    │           12 │ drive-scsi0.img index.json         │
└───────────┴────────────────────────────────┴──────────────┴────────────────────────────────────┘
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let api = FakeApi::new().reply(
            "GET",
            "api2/json/admin/datastore/store1/groups",
            json!({"data": groups}),
        );
        let mut out = Vec::new();
        let data = block_on(fetch_groups(&api, "store1", &BackupNamespace::root())).unwrap();
        print_groups(&data, OutputFormat::Json, &mut out).unwrap();
        assert_eq!(
            api.calls(),
            vec!["GET api2/json/admin/datastore/store1/groups {}"]
        );
        assert_eq!(String::from_utf8(out).unwrap(), format!("{groups}\n"));
    }

    #[test]
    fn snapshots_sorted_by_group_and_time() {
        let snapshots = json!([
            {"backup-type": "host", "backup-id": "elsa", "backup-time": 1575365800,
             "files": [{"filename": "root.pxar.didx"}, {"filename": "index.json.blob"}], "size": 19605, "protected": false},
            {"backup-type": "ct", "backup-id": "101", "backup-time": 1575365701,
             "files": [{"filename": "index.json.blob"}], "protected": false},
            {"backup-type": "host", "backup-id": "elsa", "backup-time": 1575365701,
             "files": [{"filename": "index.json.blob"}], "size": 1024, "protected": true},
        ]);
        let api = FakeApi::new().reply(
            "GET",
            "api2/json/admin/datastore/s/snapshots",
            json!({"data": snapshots}),
        );
        let (format, mut out) = plain();
        let group: BackupGroup = "host/elsa".parse().unwrap();
        let data = block_on(fetch_snapshots(
            &api,
            "s",
            &BackupNamespace::root(),
            Some(&group),
        ))
        .unwrap();
        print_snapshots(&data, format, &mut out).unwrap();
        assert_eq!(
            api.calls(),
            vec!["GET api2/json/admin/datastore/s/snapshots {\"backup-id\":\"elsa\",\"backup-type\":\"host\"}"]
        );
        let expected = "\
┌────────────────────────────────┬────────────┬──────────────────────┐
│ snapshot                       │       size │ files                │
╞════════════════════════════════╪════════════╪══════════════════════╡
│ ct/101/2019-12-03T09:35:01Z    │            │ index.json           │
├────────────────────────────────┼────────────┼──────────────────────┤
│ host/elsa/2019-12-03T09:35:01Z │      1 KiB │ index.json           │
├────────────────────────────────┼────────────┼──────────────────────┤
│ host/elsa/2019-12-03T09:36:40Z │ 19.146 KiB │ index.json root.pxar │
└────────────────────────────────┴────────────┴──────────────────────┘
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn files_default_columns() {
        let files = json!([
            {"filename": "root.pxar.didx", "crypt-mode": "none", "size": 1234567},
            {"filename": "index.json.blob", "crypt-mode": "none", "size": 412},
            {"filename": "client.log.blob"},
        ]);
        let api = FakeApi::new().reply(
            "GET",
            "api2/json/admin/datastore/s/files",
            json!({"data": files}),
        );
        let (format, mut out) = plain();
        let snapshot = "host/elsa/2019-12-03T09:35:01Z".parse().unwrap();
        let params = snapshot_args(&"x".parse().unwrap(), &snapshot);
        let data = block_on(fetch_files(&api, "s", params)).unwrap();
        print_files(&data, format, &mut out).unwrap();
        assert_eq!(
            api.calls(),
            vec!["GET api2/json/admin/datastore/s/files {\"backup-id\":\"elsa\",\"backup-time\":1575365701,\"backup-type\":\"host\",\"ns\":\"x\"}"]
        );
        let expected = "\
┌─────────────────┬────────────┬─────────┐
│ filename        │ crypt-mode │    size │
╞═════════════════╪════════════╪═════════╡
│ client.log.blob │            │         │
├─────────────────┼────────────┼─────────┤
│ index.json.blob │ none       │     412 │
├─────────────────┼────────────┼─────────┤
│ root.pxar.didx  │ none       │ 1234567 │
└─────────────────┴────────────┴─────────┘
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
