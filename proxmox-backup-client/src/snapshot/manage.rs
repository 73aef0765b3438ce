//! `snapshot forget/notes/protected/upload-log` and `change-owner`.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use pbs_cli::format::TableOptions;
use pbs_cli::OutputFormat;
use pbs_client::api_client::ApiClient;
use pbs_datastore::crypt_config::CryptConfig;
use pbs_datastore::data_blob::DataBlob;

use super::common::{datastore_path, take_data, write_result};

/// `snapshot forget`: deletes a snapshot (`params` = snapshot parameters).
pub(crate) async fn forget<C: ApiClient>(client: &C, store: &str, params: Value) -> Result<()> {
    client
        .delete(&datastore_path(store, "snapshots"), Some(params))
        .await?;
    Ok(())
}

/// `snapshot notes show`: the notes raw in text mode, `{"notes": ...}` otherwise.
pub(crate) async fn show_notes<C: ApiClient>(
    client: &C,
    store: &str,
    params: Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let notes = take_data(
        client
            .get(&datastore_path(store, "notes"), Some(params))
            .await?,
    );
    match (format, notes.as_str()) {
        (OutputFormat::Text, Some(text)) => {
            writeln!(out, "{text}").context("unable to write output")
        }
        (OutputFormat::Text, None) => Ok(()),
        _ => write_result(
            out,
            &json!({ "notes": notes }),
            format,
            &TableOptions::new(),
        ),
    }
}

/// `snapshot notes update`.
pub(crate) async fn update_notes<C: ApiClient>(
    client: &C,
    store: &str,
    mut params: Value,
    notes: &str,
) -> Result<()> {
    params["notes"] = json!(notes);
    client
        .put(&datastore_path(store, "notes"), Some(params))
        .await?;
    Ok(())
}

/// `snapshot protected show`: `true`/`false` in text mode, `{"protected": ...}` otherwise.
pub(crate) async fn show_protected<C: ApiClient>(
    client: &C,
    store: &str,
    params: Value,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let protected = take_data(
        client
            .get(&datastore_path(store, "protected"), Some(params))
            .await?,
    );
    match format {
        OutputFormat::Text => writeln!(out, "{protected}").context("unable to write output"),
        _ => write_result(
            out,
            &json!({ "protected": protected }),
            format,
            &TableOptions::new(),
        ),
    }
}

/// `snapshot protected update`.
pub(crate) async fn update_protected<C: ApiClient>(
    client: &C,
    store: &str,
    mut params: Value,
    protected: bool,
) -> Result<()> {
    params["protected"] = json!(protected);
    client
        .put(&datastore_path(store, "protected"), Some(params))
        .await?;
    Ok(())
}

/// `change-owner` (`params` = group parameters).
pub(crate) async fn change_owner<C: ApiClient>(
    client: &C,
    store: &str,
    mut params: Value,
    new_owner: &str,
) -> Result<()> {
    params["new-owner"] = json!(new_owner);
    client
        .post(&datastore_path(store, "change-owner"), Some(params))
        .await?;
    Ok(())
}

/// The blob a client log is uploaded as: compressed, encrypted only with a key (the
/// caller passes the key only in `encrypt` mode).
pub(crate) fn encode_log(data: &[u8], crypt_config: Option<&CryptConfig>) -> Result<Vec<u8>> {
    let blob = DataBlob::encode(data, crypt_config, true).context("unable to encode log blob")?;
    Ok(blob.into_inner())
}

/// `snapshot upload-log`: uploads an encoded log blob; returns the server's whole reply.
pub(crate) async fn upload_log<C: ApiClient>(
    client: &C,
    store: &str,
    params: Value,
    blob: Vec<u8>,
) -> Result<Value> {
    client
        .upload(
            "application/octet-stream",
            blob,
            &datastore_path(store, "upload-backup-log"),
            Some(params),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::super::common::snapshot_args;
    use super::super::common::testing::{block_on, FakeApi};
    use super::*;

    fn params() -> Value {
        let snapshot = "vm/100/2019-12-03T09:35:01Z".parse().unwrap();
        snapshot_args(&pbs_api_types::BackupNamespace::root(), &snapshot)
    }

    const SNAP: &str = "{\"backup-id\":\"100\",\"backup-time\":1575365701,\"backup-type\":\"vm\"";

    #[test]
    fn notes_and_protected() {
        let api = FakeApi::new()
            .reply(
                "GET",
                "api2/json/admin/datastore/s/notes",
                json!({"data": "line 1\nline 2"}),
            )
            .reply(
                "GET",
                "api2/json/admin/datastore/s/notes",
                json!({"data": "x"}),
            )
            .reply(
                "PUT",
                "api2/json/admin/datastore/s/notes",
                json!({"data": null}),
            )
            .reply(
                "GET",
                "api2/json/admin/datastore/s/protected",
                json!({"data": true}),
            )
            .reply(
                "GET",
                "api2/json/admin/datastore/s/protected",
                json!({"data": false}),
            )
            .reply(
                "PUT",
                "api2/json/admin/datastore/s/protected",
                json!({"data": null}),
            );
        let mut out = Vec::new();
        block_on(async {
            show_notes(&api, "s", params(), OutputFormat::Text, &mut out).await?;
            show_notes(&api, "s", params(), OutputFormat::Json, &mut out).await?;
            update_notes(&api, "s", params(), "new notes").await?;
            show_protected(&api, "s", params(), OutputFormat::Text, &mut out).await?;
            show_protected(&api, "s", params(), OutputFormat::JsonPretty, &mut out).await?;
            update_protected(&api, "s", params(), true).await
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "line 1\nline 2\n{\"notes\":\"x\"}\ntrue\n{\n  \"protected\": false\n}\n"
        );
        let calls = api.calls();
        assert_eq!(
            calls[0],
            format!("GET api2/json/admin/datastore/s/notes {SNAP}}}")
        );
        assert_eq!(
            calls[2],
            format!("PUT api2/json/admin/datastore/s/notes {SNAP},\"notes\":\"new notes\"}}")
        );
        assert_eq!(
            calls[5],
            format!("PUT api2/json/admin/datastore/s/protected {SNAP},\"protected\":true}}")
        );
    }

    #[test]
    fn forget_and_change_owner() {
        let api = FakeApi::new()
            .reply(
                "DELETE",
                "api2/json/admin/datastore/s/snapshots",
                json!({"data": null}),
            )
            .reply(
                "POST",
                "api2/json/admin/datastore/s/change-owner",
                json!({"data": null}),
            );
        block_on(async {
            forget(&api, "s", params()).await?;
            let group = "vm/100".parse().unwrap();
            let ns = "a/b".parse().unwrap();
            let args = super::super::common::group_args(&ns, &group);
            change_owner(&api, "s", args, "user@pbs").await
        })
        .unwrap();
        assert_eq!(
            api.calls(),
            vec![
                format!("DELETE api2/json/admin/datastore/s/snapshots {SNAP}}}"),
                "POST api2/json/admin/datastore/s/change-owner {\"backup-id\":\"100\",\"backup-type\":\"vm\",\"new-owner\":\"user@pbs\",\"ns\":\"a/b\"}".to_string(),
            ]
        );
    }

    #[test]
    fn log_blob_is_compressed_or_encrypted() {
        let log = b"log line\n".repeat(200);
        let plain = DataBlob::from_raw(encode_log(&log, None).unwrap()).unwrap();
        assert!(plain.is_compressed());
        assert!(!plain.is_encrypted());
        assert_eq!(plain.decode(None, None).unwrap(), log);

        let config = CryptConfig::new([7u8; 32]).unwrap();
        let encrypted = DataBlob::from_raw(encode_log(&log, Some(&config)).unwrap()).unwrap();
        assert!(encrypted.is_encrypted());
        assert_eq!(encrypted.decode(Some(&config), None).unwrap(), log);
    }

    #[test]
    fn upload_returns_the_reply() {
        let api = FakeApi::new().reply(
            "UPLOAD",
            "api2/json/admin/datastore/s/upload-backup-log",
            json!({"data": null}),
        );
        let reply = block_on(upload_log(&api, "s", params(), vec![1, 2, 3])).unwrap();
        assert_eq!(reply, json!({"data": null}));
        assert_eq!(
            api.calls(),
            vec![
                "UPLOAD application/octet-stream 3 bytes".to_string(),
                format!("UPLOAD api2/json/admin/datastore/s/upload-backup-log {SNAP}}}"),
            ]
        );
    }
}
