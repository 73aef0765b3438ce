//! `namespace list/create/delete`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use pbs_api_types::BackupNamespace;
use pbs_cli::format::TableOptions;
use pbs_cli::{Command, CommandTree, OutputFormat, Param, ParsedArgs};
use pbs_client::api_client::ApiClient;
use pbs_client::tools::{connect, extract_repository, record_repository};

use crate::snapshot::common::{
    bounded_integer, datastore_path, namespace_arg, output_format, output_format_param, positional,
    repository_param, write_result,
};

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let list = Command {
        description: "List namespaces at specified parent namespace.",
        params: vec![
            Param::optional("ns", "Namespace."),
            Param::integer(
                "max-depth",
                "How many levels of namespaces should be operated on (0 == no recursion)",
            ),
            repository_param(),
            output_format_param(),
        ],
        positionals: vec!["ns"],
    };
    let create = Command {
        description: "Create a new datastore namespace.",
        params: vec![positional("ns", "Namespace."), repository_param()],
        positionals: vec!["ns"],
    };
    let delete = Command {
        description: "Delete an existing namespace.",
        params: vec![
            positional("ns", "Namespace."),
            Param::flag("delete-groups", "Destroys all groups in the hierarchy."),
            repository_param(),
        ],
        positionals: vec!["ns"],
    };
    vec![(
        "namespace",
        CommandTree::Group(vec![
            ("create", CommandTree::Leaf(create)),
            ("delete", CommandTree::Leaf(delete)),
            ("list", CommandTree::Leaf(list)),
        ]),
    )]
}

/// `namespace list`: the namespaces below `parent` (whole reply envelope).
pub(crate) async fn fetch_namespaces<C: ApiClient>(
    client: &C,
    store: &str,
    parent: &BackupNamespace,
    max_depth: Option<i64>,
) -> Result<Value> {
    let mut params = json!({});
    if !parent.is_root() {
        params["parent"] = json!(parent.to_string());
    }
    if let Some(depth) = max_depth {
        params["max-depth"] = json!(depth);
    }
    client
        .get(&datastore_path(store, "namespace"), Some(params))
        .await
}

/// Text: one namespace per line (with its comment in parentheses), root skipped; the JSON
/// forms print the whole reply.
pub(crate) fn print_namespaces(
    reply: &Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    if format != OutputFormat::Text {
        return write_result(out, reply, format, &TableOptions::new());
    }
    let Some(list) = reply["data"].as_array() else {
        bail!("namespace list: expected a list, got {}", reply["data"]);
    };
    for item in list {
        let Some(ns) = item["ns"].as_str() else {
            bail!("namespace list: item without namespace: {item}");
        };
        if ns.is_empty() {
            continue;
        }
        match item["comment"].as_str() {
            Some(comment) => writeln!(out, "{ns} ({comment})"),
            None => writeln!(out, "{ns}"),
        }
        .context("unable to write output")?;
    }
    Ok(())
}

/// `namespace create`: `parent` is the namespace without its last component.
pub(crate) async fn create_namespace<C: ApiClient>(
    client: &C,
    store: &str,
    ns: &BackupNamespace,
) -> Result<()> {
    let Some(name) = ns.name() else {
        bail!("root namespace is always present");
    };
    let params = json!({"parent": ns.parent().to_string(), "name": name});
    client
        .post(&datastore_path(store, "namespace"), Some(params))
        .await?;
    Ok(())
}

/// `namespace delete`.
pub(crate) async fn delete_namespace<C: ApiClient>(
    client: &C,
    store: &str,
    ns: &BackupNamespace,
    delete_groups: bool,
) -> Result<()> {
    if ns.is_root() {
        bail!("root namespace cannot be deleted");
    }
    let params = json!({"ns": ns.to_string(), "delete-groups": delete_groups});
    client
        .delete(&datastore_path(store, "namespace"), Some(params))
        .await?;
    Ok(())
}

/// Runs the command at `path`.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    let repo = extract_repository(args)?;
    let ns = namespace_arg(args, "ns")?;
    match path {
        ["namespace", "list"] => {
            let max_depth = bounded_integer(args, "max-depth", 0, Some(7))?;
            let format = output_format(args)?;
            let client = connect(&repo)?;
            let reply = fetch_namespaces(&client, repo.store(), &ns, max_depth).await?;
            record_repository(&repo);
            print_namespaces(&reply, format, &mut std::io::stdout())?;
        }
        ["namespace", "create"] => {
            if ns.is_root() {
                bail!("root namespace is always present");
            }
            let client = connect(&repo)?;
            create_namespace(&client, repo.store(), &ns).await?;
            record_repository(&repo);
        }
        ["namespace", "delete"] => {
            if ns.is_root() {
                bail!("root namespace cannot be deleted");
            }
            let delete_groups = args.flag("delete-groups", false)?;
            let client = connect(&repo)?;
            delete_namespace(&client, repo.store(), &ns, delete_groups).await?;
            record_repository(&repo);
        }
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::common::testing::{block_on, FakeApi};

    const PATH: &str = "api2/json/admin/datastore/s/namespace";

    #[test]
    fn list_text_and_json() {
        let reply = json!({"data": [{"ns": ""}, {"ns": "a", "comment": "first"}, {"ns": "a/b"}]});
        let api =
            FakeApi::new()
                .reply("GET", PATH, reply.clone())
                .reply("GET", PATH, reply.clone());
        let parent: BackupNamespace = "a".parse().unwrap();
        let first = block_on(fetch_namespaces(&api, "s", &BackupNamespace::root(), None)).unwrap();
        let second = block_on(fetch_namespaces(&api, "s", &parent, Some(2))).unwrap();
        assert_eq!(
            api.calls(),
            vec![
                format!("GET {PATH} {{}}"),
                format!("GET {PATH} {{\"max-depth\":2,\"parent\":\"a\"}}"),
            ]
        );
        let mut out = Vec::new();
        print_namespaces(&first, OutputFormat::Text, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a (first)\na/b\n");
        let mut out = Vec::new();
        print_namespaces(&second, OutputFormat::Json, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{reply}\n"));
    }

    #[test]
    fn create_and_delete() {
        let api = FakeApi::new()
            .reply("POST", PATH, json!({"data": "a/b"}))
            .reply("POST", PATH, json!({"data": "top"}))
            .reply("DELETE", PATH, json!({"data": null}));
        block_on(async {
            create_namespace(&api, "s", &"a/b".parse()?).await?;
            create_namespace(&api, "s", &"top".parse()?).await?;
            delete_namespace(&api, "s", &"a/b".parse()?, true).await
        })
        .unwrap();
        assert_eq!(
            api.calls(),
            vec![
                format!("POST {PATH} {{\"name\":\"b\",\"parent\":\"a\"}}"),
                format!("POST {PATH} {{\"name\":\"top\",\"parent\":\"\"}}"),
                format!("DELETE {PATH} {{\"delete-groups\":true,\"ns\":\"a/b\"}}"),
            ]
        );
        let root = BackupNamespace::root();
        let err = block_on(create_namespace(&api, "s", &root)).unwrap_err();
        assert_eq!(err.to_string(), "root namespace is always present");
        let err = block_on(delete_namespace(&api, "s", &root, false)).unwrap_err();
        assert_eq!(err.to_string(), "root namespace cannot be deleted");
    }
}
