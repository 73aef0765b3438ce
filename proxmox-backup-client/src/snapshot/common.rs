//! Pieces the management commands share: parameters, argument parsing, datastore paths.

use std::io::Write;

use anyhow::{format_err, Context, Result};
use serde_json::{json, Value};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace};
use pbs_cli::format::{format_result, TableOptions};
use pbs_cli::{OutputFormat, Param, ParsedArgs, ValueKind};

/// `--repository` (the transport's definition).
pub(crate) fn repository_param() -> Param {
    pbs_client::tools::repository_params()
        .into_iter()
        .find(|p| p.name == "repository")
        .unwrap_or_else(|| Param::optional("repository", "Repository URL."))
}

pub(crate) use pbs_client::tools::ns_param;

/// `--output-format`.
pub(crate) fn output_format_param() -> Param {
    Param::optional("output-format", "Output format.")
}

/// A required string positional.
pub(crate) fn positional(name: &'static str, description: &'static str) -> Param {
    Param::required(name, description)
}

/// An optional boolean without default (only sent when given).
pub(crate) fn optional_bool(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        kind: ValueKind::Boolean { default: false },
        optional: true,
        description,
    }
}

fn verification_error(name: &str, err: impl std::fmt::Display) -> anyhow::Error {
    format_err!("parameter verification failed - '{name}': {err}")
}

/// The namespace given as `name`, root when absent.
pub(crate) fn namespace_arg(args: &ParsedArgs, name: &str) -> Result<BackupNamespace> {
    match args.get(name) {
        None => Ok(BackupNamespace::root()),
        Some(text) => text.parse().map_err(|err| verification_error(name, err)),
    }
}

/// The namespace given as `name`, `None` when absent (explicit root stays `Some`).
pub(crate) fn explicit_namespace_arg(
    args: &ParsedArgs,
    name: &str,
) -> Result<Option<BackupNamespace>> {
    args.get(name)
        .map(|text| text.parse().map_err(|err| verification_error(name, err)))
        .transpose()
}

/// A snapshot path `<type>/<id>/<time>`.
pub(crate) fn snapshot_arg(args: &ParsedArgs, name: &str) -> Result<BackupDir> {
    let text = args.required(name)?;
    text.parse().map_err(|err| verification_error(name, err))
}

/// A group path `<type>/<id>`.
pub(crate) fn group_arg(args: &ParsedArgs, name: &str) -> Result<BackupGroup> {
    let text = args.required(name)?;
    text.parse().map_err(|err| verification_error(name, err))
}

/// An integer within `min..=max`.
pub(crate) fn bounded_integer(
    args: &ParsedArgs,
    name: &str,
    min: i64,
    max: Option<i64>,
) -> Result<Option<i64>> {
    let Some(value) = args.integer(name)? else {
        return Ok(None);
    };
    if value < min {
        return Err(verification_error(
            name,
            format!("value must have a minimum value of {min} (got {value})"),
        ));
    }
    if let Some(max) = max {
        if value > max {
            return Err(verification_error(
                name,
                format!("value must have a maximum value of {max} (got {value})"),
            ));
        }
    }
    Ok(Some(value))
}

/// The output format of `--output-format` / `PROXMOX_OUTPUT_FORMAT`.
pub(crate) fn output_format(args: &ParsedArgs) -> Result<OutputFormat> {
    OutputFormat::from_args(args)
}

/// Group parameters: `backup-type`, `backup-id`, and `ns` unless root.
pub(crate) fn group_args(ns: &BackupNamespace, group: &BackupGroup) -> Value {
    let mut args = json!({"backup-type": group.ty, "backup-id": group.id});
    if !ns.is_root() {
        args["ns"] = json!(ns.to_string());
    }
    args
}

/// Snapshot parameters: group parameters plus `backup-time`.
pub(crate) fn snapshot_args(ns: &BackupNamespace, snapshot: &BackupDir) -> Value {
    let mut args = group_args(ns, &snapshot.group);
    args["backup-time"] = json!(snapshot.time);
    args
}

/// The API path `api2/json/admin/datastore/<store>/<sub>`.
pub(crate) fn datastore_path(store: &str, sub: &str) -> String {
    format!("api2/json/admin/datastore/{store}/{sub}")
}

/// Takes `data` out of a response envelope.
pub(crate) fn take_data(mut reply: Value) -> Value {
    reply["data"].take()
}

/// Writes a result in `format`, tables as configured by `options`.
pub(crate) fn write_result(
    out: &mut (dyn Write + Send),
    value: &Value,
    format: OutputFormat,
    options: &TableOptions,
) -> Result<()> {
    let text = format_result(value, format, options)?;
    out.write_all(text.as_bytes())
        .context("unable to write output")
}

/// Server file names without their `.didx`/`.fidx`/`.blob` extension, sorted, space-joined.
pub(crate) fn render_file_list<'a>(files: impl Iterator<Item = &'a str>) -> String {
    let mut files: Vec<&str> = files.collect();
    files.sort_unstable();
    files
        .into_iter()
        .map(|name| {
            [".didx", ".fidx", ".blob"]
                .iter()
                .find_map(|ext| name.strip_suffix(ext))
                .unwrap_or(name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted API double for command tests.

    use std::sync::Mutex;

    use anyhow::{bail, Result};
    use serde_json::Value;

    use pbs_client::api_client::ApiClient;

    /// Answers calls from a list of `(method, path, reply)` and records the calls made.
    pub(crate) struct FakeApi {
        replies: Mutex<Vec<(&'static str, String, Value)>>,
        /// `METHOD path params` of every call, params as compact JSON.
        pub calls: Mutex<Vec<String>>,
    }

    impl FakeApi {
        pub(crate) fn new() -> Self {
            Self {
                replies: Mutex::new(Vec::new()),
                calls: Mutex::new(Vec::new()),
            }
        }

        /// Queues a reply for the next call of `method` on `path`.
        pub(crate) fn reply(self, method: &'static str, path: &str, value: Value) -> Self {
            self.replies
                .lock()
                .unwrap()
                .push((method, path.to_string(), value));
            self
        }

        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn answer(&self, method: &'static str, path: &str, params: Option<Value>) -> Result<Value> {
            self.calls.lock().unwrap().push(format!(
                "{method} {path} {}",
                params.map(|p| p.to_string()).unwrap_or_default()
            ));
            let mut replies = self.replies.lock().unwrap();
            let Some(pos) = replies
                .iter()
                .position(|(m, p, _)| *m == method && p == path)
            else {
                bail!("unexpected call {method} {path}");
            };
            Ok(replies.remove(pos).2)
        }
    }

    impl ApiClient for FakeApi {
        async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
            self.answer("GET", path, params)
        }
        async fn post(&self, path: &str, params: Option<Value>) -> Result<Value> {
            self.answer("POST", path, params)
        }
        async fn put(&self, path: &str, params: Option<Value>) -> Result<Value> {
            self.answer("PUT", path, params)
        }
        async fn delete(&self, path: &str, params: Option<Value>) -> Result<Value> {
            self.answer("DELETE", path, params)
        }
        async fn upload(
            &self,
            content_type: &str,
            body: Vec<u8>,
            path: &str,
            params: Option<Value>,
        ) -> Result<Value> {
            let method = "UPLOAD";
            self.calls
                .lock()
                .unwrap()
                .push(format!("{method} {content_type} {} bytes", body.len()));
            self.answer(method, path, params)
        }
    }

    /// Runs a future to completion on a fresh runtime (time paused).
    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Parses `args` as the leaf command `command` of a one-command tree.
    pub(crate) fn parse(command: pbs_cli::Command, args: &[&str]) -> pbs_cli::ParsedArgs {
        let tree = pbs_cli::CommandTree::Group(vec![("cmd", pbs_cli::CommandTree::Leaf(command))]);
        let mut argv = vec!["cmd".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        pbs_cli::parse_command_line(&tree, &argv).unwrap().args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lists_lose_server_extensions() {
        let files = [
            "root.pxar.didx",
            "index.json.blob",
            "drive-scsi0.img.fidx",
            "x.log",
        ];
        assert_eq!(
            render_file_list(files.into_iter()),
            "drive-scsi0.img index.json root.pxar x.log"
        );
    }

    #[test]
    fn snapshot_parameters() {
        let snapshot: BackupDir = "host/elsa/2019-12-03T09:35:01Z".parse().unwrap();
        assert_eq!(
            snapshot_args(&BackupNamespace::root(), &snapshot),
            json!({"backup-type": "host", "backup-id": "elsa", "backup-time": 1575365701})
        );
        let ns: BackupNamespace = "a/b".parse().unwrap();
        assert_eq!(
            snapshot_args(&ns, &snapshot),
            json!({"backup-type": "host", "backup-id": "elsa", "backup-time": 1575365701, "ns": "a/b"})
        );
    }
}
