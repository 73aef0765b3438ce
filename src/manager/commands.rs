//! What each command does: which API method it calls (in-process or over HTTP) and how
//! the result is shown.

use anyhow::{bail, Result};
use http::Method;
use serde_json::{json, Value};

use pbs_cli::format::{
    format_and_print_result, render_bool_default_true, render_bytes, render_duration, render_epoch,
    render_expire, render_task_status, ColumnConfig, TableOptions,
};
use pbs_cli::{Command, OutputFormat, ParsedArgs, ValueKind};

use super::http_client::{encode_component, LocalClient};
use super::local;
use super::task_log::{follow_task_log, view_task_result};

/// Parameters handed to the API: everything given except the CLI-only `output-format`
/// and the names in `skip` (those travel in the path).
fn api_params(args: &ParsedArgs, skip: &[&str]) -> Vec<(String, String)> {
    args.pairs()
        .filter(|(name, _)| *name != "output-format" && !skip.contains(name))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The same parameters as a JSON object for HTTP requests: integers and booleans typed by
/// the command's parameter definitions, repeatable parameters as arrays.
fn api_params_json(command: &Command, args: &ParsedArgs, skip: &[&str]) -> Result<Value> {
    let mut map = serde_json::Map::new();
    for (name, text) in api_params(args, skip) {
        let kind = command.param(&name).map(|p| p.kind);
        let value = match kind {
            Some(ValueKind::Integer) => match args.integer(&name)? {
                Some(n) => Value::from(n),
                None => continue,
            },
            Some(ValueKind::Boolean { default }) => Value::Bool(args.flag(&name, default)?),
            _ => Value::String(text),
        };
        if kind == Some(ValueKind::Array) {
            match map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(list) => list.push(value),
                other => *other = Value::Array(vec![value]),
            }
        } else {
            map.insert(name, value);
        }
    }
    Ok(Value::Object(map))
}

fn path_arg(args: &ParsedArgs, name: &str) -> Result<String> {
    Ok(encode_component(args.required(name)?))
}

/// Prints the value a handler returned, the way the command framework does.
fn print_result(value: &Value) -> Result<()> {
    if !value.is_null() {
        println!("Result: {}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

fn print(value: &Value, args: &ParsedArgs, options: TableOptions) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    format_and_print_result(value, format, &options)
}

fn table() -> TableOptions {
    TableOptions::new()
}

/// Runs `command` found at `path` (without `help`, handled by the caller).
pub async fn run(path: &[&str], command: &Command, args: &ParsedArgs) -> Result<()> {
    match path {
        ["datastore", sub] => datastore(sub, command, args).await,
        ["user", sub] => user(sub, args).await,
        ["acl", sub] => acl(sub, args).await,
        ["cert", "info"] => super::cert::cert_info(),
        ["cert", "update"] => super::cert::cert_update(args.flag("force", false)?),
        ["task", sub] => task(sub, args).await,
        ["garbage-collection", sub] => garbage_collection(sub, args).await,
        ["versions"] => super::versions::versions(args),
        ["verify"] => verify(args).await,
        other => bail!("unhandled command {other:?}"),
    }
}

/// Columns of `datastore show`: the required properties, then the optional ones by name.
const DATASTORE_PROPERTIES: [&str; 17] = [
    "name",
    "path",
    "comment",
    "gc-schedule",
    "keep-daily",
    "keep-hourly",
    "keep-last",
    "keep-monthly",
    "keep-weekly",
    "keep-yearly",
    "maintenance-mode",
    "notification-mode",
    "notify",
    "notify-user",
    "prune-schedule",
    "tuning",
    "verify-new",
];

async fn datastore(sub: &str, command: &Command, args: &ParsedArgs) -> Result<()> {
    match sub {
        "list" => {
            let data = local::call_data(Method::GET, "config/datastore", vec![]).await?;
            let options = table()
                .column(ColumnConfig::new("name"))
                .column(ColumnConfig::new("path"))
                .column(ColumnConfig::new("comment"));
            print(&data, args, options)
        }
        "show" => {
            let path = format!("config/datastore/{}", path_arg(args, "name")?);
            let data = local::call_data(Method::GET, &path, vec![]).await?;
            let mut options = table();
            for name in DATASTORE_PROPERTIES {
                options = options.column(ColumnConfig::new(name));
            }
            print(&data, args, options)
        }
        "create" => {
            let format = OutputFormat::from_args(args)?;
            let client = LocalClient::connect()?;
            let params = api_params_json(command, args, &[])?;
            let data = client
                .data(Method::POST, "config/datastore", Some(&params))
                .await?;
            view_task_result(&client, &data, format).await
        }
        "update" => {
            let path = format!("config/datastore/{}", path_arg(args, "name")?);
            print_result(&local::call_data(Method::PUT, &path, api_params(args, &["name"])).await?)
        }
        "remove" => {
            let path = format!("config/datastore/{}", path_arg(args, "name")?);
            local::call_and_wait(Method::DELETE, &path, api_params(args, &["name"])).await
        }
        other => bail!("unhandled command 'datastore {other}'"),
    }
}

async fn user(sub: &str, args: &ParsedArgs) -> Result<()> {
    let user_path =
        || -> Result<String> { Ok(format!("access/users/{}", path_arg(args, "userid")?)) };
    match sub {
        "list" => {
            let data = local::call_data(Method::GET, "access/users", vec![]).await?;
            let options = table()
                .column(ColumnConfig::new("userid"))
                .column(
                    ColumnConfig::new("enable")
                        .renderer(render_bool_default_true)
                        .right_align(true),
                )
                .column(
                    ColumnConfig::new("expire")
                        .renderer(render_expire)
                        .right_align(true),
                )
                .column(ColumnConfig::new("firstname"))
                .column(ColumnConfig::new("lastname"))
                .column(ColumnConfig::new("email"))
                .column(ColumnConfig::new("comment"));
            print(&data, args, options)
        }
        "create" => print_result(
            &local::call_data(Method::POST, "access/users", api_params(args, &[])).await?,
        ),
        "update" => {
            let params = api_params(args, &["userid"]);
            print_result(&local::call_data(Method::PUT, &user_path()?, params).await?)
        }
        "remove" => {
            let params = api_params(args, &["userid"]);
            print_result(&local::call_data(Method::DELETE, &user_path()?, params).await?)
        }
        "list-tokens" => {
            let path = format!("{}/token", user_path()?);
            let data = local::call_data(Method::GET, &path, vec![]).await?;
            let options = table()
                .column(ColumnConfig::new("tokenid"))
                .column(
                    ColumnConfig::new("enable")
                        .renderer(render_bool_default_true)
                        .right_align(true),
                )
                .column(
                    ColumnConfig::new("expire")
                        .renderer(render_expire)
                        .right_align(true),
                )
                .column(ColumnConfig::new("comment"));
            print(&data, args, options)
        }
        "generate-token" | "delete-token" => {
            let path = format!("{}/token/{}", user_path()?, path_arg(args, "token-name")?);
            let method = if sub == "generate-token" {
                Method::POST
            } else {
                Method::DELETE
            };
            let params = api_params(args, &["userid", "token-name"]);
            let data = local::call_data(method, &path, params).await?;
            print_result(&data)
        }
        "permissions" => {
            let format = OutputFormat::from_args(args)?;
            let data =
                local::call_data(Method::GET, "access/permissions", api_params(args, &[])).await?;
            if format == OutputFormat::Text {
                print!("{}", permissions_text(&data)?);
                Ok(())
            } else {
                format_and_print_result(&data, format, &table())
            }
        }
        other => bail!("unhandled command 'user {other}'"),
    }
}

/// The text form of a permission map `{path: {privilege: propagate}}`.
pub fn permissions_text(data: &Value) -> Result<String> {
    let Value::Object(paths) = data else {
        bail!("unexpected permission data: {data}");
    };
    let mut out = String::from("Privileges with (*) have the propagate flag set\n\n");
    let mut names: Vec<&String> = paths.keys().collect();
    names.sort();
    for path in names {
        out.push_str(&format!("Path: {path}\n"));
        let privs = paths[path].as_object().cloned().unwrap_or_default();
        if privs.is_empty() {
            out.push_str("- NoAccess\n");
            continue;
        }
        let mut privs: Vec<(String, Value)> = privs.into_iter().collect();
        privs.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, propagate) in privs {
            if propagate.as_bool().unwrap_or(false) {
                out.push_str(&format!("- {name} (*)\n"));
            } else {
                out.push_str(&format!("- {name}\n"));
            }
        }
    }
    Ok(out)
}

fn render_ugid(value: &Value, record: &Value) -> Result<String> {
    let text = value.as_str().unwrap_or_default();
    if record["ugid_type"].as_str() == Some("group") {
        Ok(format!("@{text}"))
    } else {
        Ok(text.to_string())
    }
}

async fn acl(sub: &str, args: &ParsedArgs) -> Result<()> {
    match sub {
        "list" => {
            let data = local::call_data(Method::GET, "access/acl", vec![]).await?;
            let options = table()
                .column(ColumnConfig::new("ugid").renderer(render_ugid))
                .column(ColumnConfig::new("path"))
                .column(ColumnConfig::new("propagate").right_align(true))
                .column(ColumnConfig::new("roleid"));
            print(&data, args, options)
        }
        "update" => {
            print_result(&local::call_data(Method::PUT, "access/acl", api_params(args, &[])).await?)
        }
        other => bail!("unhandled command 'acl {other}'"),
    }
}

/// `task list --limit`: 1..1000, default 50.
fn task_limit(args: &ParsedArgs) -> Result<i64> {
    let limit = args.integer("limit")?.unwrap_or(50);
    if limit < 1 {
        bail!("parameter verification failed - 'limit': value must have a minimum value of 1 (got {limit})");
    }
    if limit > 1000 {
        bail!("parameter verification failed - 'limit': value must have a maximum value of 1000 (got {limit})");
    }
    Ok(limit)
}

async fn task(sub: &str, args: &ParsedArgs) -> Result<()> {
    match sub {
        "list" => {
            let limit = task_limit(args)?;
            let format = OutputFormat::from_args(args)?;
            let client = LocalClient::connect()?;
            let params = json!({
                "running": !args.flag("all", false)?,
                "start": 0,
                "limit": limit,
            });
            let data = client
                .data(Method::GET, "nodes/localhost/tasks", Some(&params))
                .await?;
            format_and_print_result(&data, format, &task_list_options())
        }
        "log" => {
            let client = LocalClient::connect()?;
            follow_task_log(&client, args.required("upid")?, true, false).await
        }
        "stop" => {
            let client = LocalClient::connect()?;
            let path = format!("nodes/localhost/tasks/{}", path_arg(args, "upid")?);
            client.request(Method::DELETE, &path, None).await?;
            Ok(())
        }
        other => bail!("unhandled command 'task {other}'"),
    }
}

/// Columns of `task list`.
pub fn task_list_options() -> TableOptions {
    table()
        .column(
            ColumnConfig::new("starttime")
                .renderer(render_epoch)
                .right_align(false),
        )
        .column(
            ColumnConfig::new("endtime")
                .renderer(render_epoch)
                .right_align(false),
        )
        .column(ColumnConfig::new("upid"))
        .column(ColumnConfig::new("status").renderer(render_task_status))
}

/// Columns of `garbage-collection status` (store first, then by name).
const GC_STATUS_PROPERTIES: [&str; 17] = [
    "store",
    "disk-bytes",
    "disk-chunks",
    "duration",
    "index-data-bytes",
    "index-file-count",
    "last-run-endtime",
    "last-run-state",
    "next-run",
    "pending-bytes",
    "pending-chunks",
    "removed-bad",
    "removed-bytes",
    "removed-chunks",
    "schedule",
    "still-bad",
    "upid",
];

async fn garbage_collection(sub: &str, args: &ParsedArgs) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    let client = LocalClient::connect()?;
    match sub {
        "start" => {
            let path = format!("admin/datastore/{}/gc", path_arg(args, "store")?);
            let data = client.data(Method::POST, &path, None).await?;
            view_task_result(&client, &data, format).await
        }
        "status" => {
            let path = format!("admin/datastore/{}/gc", path_arg(args, "store")?);
            let data = client.data(Method::GET, &path, None).await?;
            let mut options = table();
            for name in GC_STATUS_PROPERTIES {
                options = options.column(ColumnConfig::new(name));
            }
            format_and_print_result(&data, format, &options)
        }
        "list" => {
            let data = client.data(Method::GET, "admin/gc", None).await?;
            let left = |c: ColumnConfig| c.right_align(false);
            let options = table()
                .column(left(ColumnConfig::new("store")))
                .column(left(
                    ColumnConfig::new("last-run-endtime").renderer(render_epoch),
                ))
                .column(left(
                    ColumnConfig::new("duration").renderer(render_duration),
                ))
                .column(left(
                    ColumnConfig::new("removed-bytes").renderer(render_bytes),
                ))
                .column(left(
                    ColumnConfig::new("pending-bytes").renderer(render_bytes),
                ))
                .column(left(ColumnConfig::new("last-run-state")))
                .column(left(ColumnConfig::new("schedule")))
                .column(left(ColumnConfig::new("next-run").renderer(render_epoch)));
            format_and_print_result(&data, format, &options)
        }
        other => bail!("unhandled command 'garbage-collection {other}'"),
    }
}

async fn verify(args: &ParsedArgs) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    let client = LocalClient::connect()?;
    let path = format!("admin/datastore/{}/verify", path_arg(args, "store")?);
    let mut params = serde_json::Map::new();
    if let Some(ns) = args.get("ns") {
        params.insert("ns".into(), Value::from(ns));
    }
    if args.get("ignore-verified").is_some() {
        params.insert(
            "ignore-verified".into(),
            Value::from(args.flag("ignore-verified", true)?),
        );
    }
    for name in ["max-depth", "outdated-after"] {
        if let Some(value) = args.integer(name)? {
            params.insert(name.into(), Value::from(value));
        }
    }
    let params = Value::Object(params);
    let data = client.data(Method::POST, &path, Some(&params)).await?;
    view_task_result(&client, &data, format).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_parameters_are_typed() {
        let tree = super::super::tree::command_tree();
        let argv: Vec<String> = [
            "datastore",
            "create",
            "s1",
            "/p",
            "--keep-last",
            "3",
            "--verify-new",
            "--output-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let inv = pbs_cli::parse_command_line(&tree, &argv).unwrap();
        let params = api_params_json(inv.command, &inv.args, &[]).unwrap();
        assert_eq!(
            params,
            json!({"name": "s1", "path": "/p", "keep-last": 3, "verify-new": true})
        );
    }

    #[test]
    fn permission_text() {
        let data = json!({
            "/datastore": {"Datastore.Audit": true, "Datastore.Backup": false},
            "/": {},
        });
        assert_eq!(
            permissions_text(&data).unwrap(),
            "Privileges with (*) have the propagate flag set\n\nPath: /\n- NoAccess\n\
             Path: /datastore\n- Datastore.Audit (*)\n- Datastore.Backup\n"
        );
        assert!(permissions_text(&json!([])).is_err());
    }

    #[test]
    fn group_ids_are_marked() {
        let group = json!({"ugid": "admins", "ugid_type": "group"});
        assert_eq!(render_ugid(&group["ugid"], &group).unwrap(), "@admins");
        let user = json!({"ugid": "root@pam", "ugid_type": "user"});
        assert_eq!(render_ugid(&user["ugid"], &user).unwrap(), "root@pam");
    }
}
