//! Datastore content: groups, snapshots and their files, downloads, the client log upload,
//! notes, protection, ownership and forgetting snapshots.

use std::io::Read;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;

use pbs_api_types::{Authid, BackupNamespace, CryptMode};
use pbs_config::datastore::Operation;
use pbs_config::privileges::{
    PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_PRUNE,
    PRIV_DATASTORE_READ,
};
use pbs_datastore::backup_info::{CLIENT_LOG_BLOB_NAME, MANIFEST_BLOB_NAME};
use pbs_datastore::{BackupInfo, DataBlob, DataStore};
use pbs_rest_server::router::{full_body, RawRequest, RouteError};
use pbs_rest_server::{
    ApiMethod, Body, HttpError, JsonText, ObjectSchema, ParamSchema, Permission, Router, RpcEnv,
    StringFormat,
};

use super::store_access::{
    bad_request, blocking, caller, check_access, check_group_access, file_name_param, id_param,
    ns_param, open_datastore, param_group, param_ns, param_snapshot, param_store, store_param,
    time_param, type_param, user_info, Access,
};

/// Largest accepted client log upload.
const MAX_LOG_SIZE: usize = 16 * 1024 * 1024;

/// One file of a snapshot as listed by `files` and `snapshots`.
#[derive(Serialize, Clone, Debug)]
pub struct SnapshotFile {
    /// File name.
    pub filename: String,
    /// Crypt mode (from the manifest).
    #[serde(rename = "crypt-mode", skip_serializing_if = "Option::is_none")]
    pub crypt_mode: Option<CryptMode>,
    /// Size in bytes (from the manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `verification` of a snapshot list entry.
#[derive(Serialize, Clone, Debug)]
struct Verification {
    upid: String,
    state: String,
}

/// One entry of the `snapshots` list.
#[derive(Serialize, Clone, Debug)]
struct SnapshotListItem {
    #[serde(rename = "backup-type")]
    backup_type: String,
    #[serde(rename = "backup-id")]
    backup_id: String,
    #[serde(rename = "backup-time")]
    backup_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    files: Vec<SnapshotFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    protected: bool,
}

/// One entry of the `groups` list.
#[derive(Serialize, Clone, Debug)]
struct GroupListItem {
    #[serde(rename = "backup-type")]
    backup_type: String,
    #[serde(rename = "backup-id")]
    backup_id: String,
    #[serde(rename = "last-backup")]
    last_backup: i64,
    #[serde(rename = "backup-count")]
    backup_count: u64,
    files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|line| !line.is_empty())
}

// ---- groups and snapshots -------------------------------------------------------------

fn list_groups(auth_id: &Authid, params: &Value) -> Result<Vec<GroupListItem>, HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_AUDIT,
        PRIV_DATASTORE_BACKUP,
    )?;
    let store = open_datastore(&store_name, Operation::Read)?;
    let mut out = Vec::new();
    for group in store.list_groups(&ns).map_err(bad_request)? {
        let owner = store.get_owner(&ns, &group).ok();
        if access == Access::OwnedOnly
            && !owner
                .as_ref()
                .is_some_and(|owner| super::store_access::owns(auth_id, owner))
        {
            continue;
        }
        let mut snapshots = store.list_snapshots(&ns, &group).map_err(bad_request)?;
        if snapshots.is_empty() {
            continue;
        }
        BackupInfo::sort_list(&mut snapshots, false);
        let last = snapshots
            .iter()
            .find(|s| s.is_finished())
            .unwrap_or(&snapshots[0]);
        let notes = store.get_group_notes(&ns, &group).unwrap_or_default();
        out.push(GroupListItem {
            backup_type: group.ty.to_string(),
            backup_id: group.id.clone(),
            last_backup: last.backup_dir.time,
            backup_count: snapshots.len() as u64,
            files: last.files.clone(),
            owner: owner.map(|o| o.to_string()),
            comment: first_line(&notes),
        });
    }
    Ok(out)
}

/// The files of a snapshot: manifest entries, the manifest itself, then unlisted files.
fn snapshot_files(
    store: &DataStore,
    info: &BackupInfo,
) -> (Vec<SnapshotFile>, Option<SnapshotMeta>) {
    let mut files = Vec::new();
    let loaded = store.load_manifest(&info.ns, &info.backup_dir).ok();
    let mut meta = None;
    if let Some((manifest, raw_size)) = &loaded {
        for file in manifest.files() {
            files.push(SnapshotFile {
                filename: file.filename.clone(),
                crypt_mode: Some(file.crypt_mode),
                size: Some(file.size),
            });
        }
        files.push(SnapshotFile {
            filename: MANIFEST_BLOB_NAME.to_string(),
            crypt_mode: Some(if manifest.signature.is_some() {
                CryptMode::SignOnly
            } else {
                CryptMode::None
            }),
            size: Some(*raw_size),
        });
        let verify = manifest.verify_state().ok().flatten();
        meta = Some(SnapshotMeta {
            comment: manifest.notes().and_then(first_line),
            verification: verify.map(|state| Verification {
                upid: state.upid,
                state: serde_json::to_value(state.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            }),
            fingerprint: manifest
                .fingerprint()
                .ok()
                .flatten()
                .map(|fp| fp.to_string()),
        });
    }
    for name in &info.files {
        if !files.iter().any(|f| &f.filename == name) {
            files.push(SnapshotFile {
                filename: name.clone(),
                crypt_mode: None,
                size: None,
            });
        }
    }
    (files, meta)
}

struct SnapshotMeta {
    comment: Option<String>,
    verification: Option<Verification>,
    fingerprint: Option<String>,
}

fn list_snapshots(auth_id: &Authid, params: &Value) -> Result<Vec<SnapshotListItem>, HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_AUDIT,
        PRIV_DATASTORE_BACKUP,
    )?;
    let store = open_datastore(&store_name, Operation::Read)?;
    let type_filter = params["backup-type"].as_str();
    let id_filter = params["backup-id"].as_str();
    let mut out = Vec::new();
    for group in store.list_groups(&ns).map_err(bad_request)? {
        if type_filter.is_some_and(|t| t != group.ty.as_str())
            || id_filter.is_some_and(|id| id != group.id)
        {
            continue;
        }
        let owner = store.get_owner(&ns, &group).ok();
        if access == Access::OwnedOnly
            && !owner
                .as_ref()
                .is_some_and(|owner| super::store_access::owns(auth_id, owner))
        {
            continue;
        }
        let mut snapshots = store.list_snapshots(&ns, &group).map_err(bad_request)?;
        BackupInfo::sort_list(&mut snapshots, true);
        for snapshot in snapshots {
            let (files, meta) = snapshot_files(&store, &snapshot);
            let size = meta
                .as_ref()
                .map(|_| files.iter().filter_map(|f| f.size).sum());
            let (comment, verification, fingerprint) = match meta {
                Some(meta) => (meta.comment, meta.verification, meta.fingerprint),
                None => (None, None, None),
            };
            out.push(SnapshotListItem {
                backup_type: group.ty.to_string(),
                backup_id: group.id.clone(),
                backup_time: snapshot.backup_dir.time,
                comment,
                verification,
                fingerprint,
                files,
                size,
                owner: owner.as_ref().map(|o| o.to_string()),
                protected: snapshot.protected,
            });
        }
    }
    Ok(out)
}

/// Opens the store and checks a "full | partial+own" rule for the snapshot's group.
fn open_for_snapshot(
    auth_id: &Authid,
    params: &Value,
    full: u64,
    partial: u64,
    operation: Operation,
) -> Result<(DataStore, BackupNamespace, pbs_api_types::BackupDir), HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let dir = param_snapshot(params)?;
    let info = user_info()?;
    let access = check_access(&info, auth_id, &store_name, &ns, full, partial)?;
    let store = open_datastore(&store_name, operation)?;
    check_group_access(&store, access, auth_id, &ns, &dir.group)?;
    let path = store.snapshot_path(&ns, &dir).map_err(bad_request)?;
    if !path.is_dir() {
        return Err(HttpError::not_found(format!(
            "snapshot {dir} does not exist."
        )));
    }
    Ok((store, ns, dir))
}

fn list_files(auth_id: &Authid, params: &Value) -> Result<Vec<SnapshotFile>, HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_READ,
        PRIV_DATASTORE_BACKUP,
        Operation::Read,
    )?;
    let path = store.snapshot_path(&ns, &dir).map_err(bad_request)?;
    let info = BackupInfo::read(&path, ns, dir).map_err(bad_request)?;
    Ok(snapshot_files(&store, &info).0)
}

fn forget_snapshot(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_PRUNE,
        Operation::Write,
    )?;
    store
        .remove_backup_dir(&ns, &dir, false)
        .map_err(bad_request)
}

fn delete_group(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let group = param_group(params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_PRUNE,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    check_group_access(&store, access, auth_id, &ns, &group)?;
    if !store
        .remove_backup_group(&ns, &group)
        .map_err(bad_request)?
    {
        return Err(HttpError::bad_request(
            "group only partially deleted due to protected snapshots",
        ));
    }
    Ok(())
}

// ---- notes, protection, owner ---------------------------------------------------------------

fn get_notes(auth_id: &Authid, params: &Value) -> Result<String, HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_AUDIT,
        PRIV_DATASTORE_BACKUP,
        Operation::Read,
    )?;
    let (manifest, _) = store.load_manifest(&ns, &dir).map_err(bad_request)?;
    Ok(manifest.notes().unwrap_or_default().to_string())
}

fn set_notes(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_BACKUP,
        Operation::Write,
    )?;
    let notes = params["notes"].as_str().unwrap_or_default().to_string();
    store
        .update_manifest(&ns, &dir, |manifest| manifest.set_notes(notes))
        .map_err(|err| bad_request(err.context("unable to update manifest blob")))
}

/// Opens the store and checks a "full | partial+own" rule for the group parameters.
fn open_for_group(
    auth_id: &Authid,
    params: &Value,
    full: u64,
    partial: u64,
    operation: Operation,
) -> Result<(DataStore, BackupNamespace, pbs_api_types::BackupGroup), HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let group = param_group(params)?;
    let info = user_info()?;
    let access = check_access(&info, auth_id, &store_name, &ns, full, partial)?;
    let store = open_datastore(&store_name, operation)?;
    check_group_access(&store, access, auth_id, &ns, &group)?;
    Ok((store, ns, group))
}

fn get_group_notes(auth_id: &Authid, params: &Value) -> Result<String, HttpError> {
    let (store, ns, group) = open_for_group(
        auth_id,
        params,
        PRIV_DATASTORE_AUDIT,
        PRIV_DATASTORE_BACKUP,
        Operation::Read,
    )?;
    store.get_group_notes(&ns, &group).map_err(bad_request)
}

fn set_group_notes(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let (store, ns, group) = open_for_group(
        auth_id,
        params,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_BACKUP,
        Operation::Write,
    )?;
    let notes = params["notes"].as_str().unwrap_or_default();
    store
        .set_group_notes(&ns, &group, notes)
        .map_err(bad_request)
}

fn get_protected(auth_id: &Authid, params: &Value) -> Result<bool, HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_AUDIT,
        PRIV_DATASTORE_BACKUP,
        Operation::Read,
    )?;
    store.is_protected(&ns, &dir).map_err(bad_request)
}

fn set_protected(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_BACKUP,
        Operation::Write,
    )?;
    let protected = params["protected"].as_bool().unwrap_or(false);
    store
        .set_protection(&ns, &dir, protected)
        .map_err(bad_request)
}

fn change_owner(auth_id: &Authid, params: &Value) -> Result<(), HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let group = param_group(params)?;
    let new_owner: Authid = params["new-owner"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|err| HttpError::bad_request(format!("invalid new-owner - {err}")))?;
    let info = user_info()?;
    let access = check_access(
        &info,
        auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_BACKUP,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    if access == Access::OwnedOnly {
        let owner = store.get_owner(&ns, &group).map_err(bad_request)?;
        // only between a user and that user's own tokens
        let allowed = match (owner.is_token(), new_owner.is_token()) {
            (true, true) => owner.user() == new_owner.user() && owner.user() == auth_id.user(),
            (true, false) => owner.user() == auth_id.user() && new_owner == *auth_id,
            (false, true) => owner == *auth_id && new_owner.user() == auth_id.user(),
            (false, false) => false,
        } && !auth_id.is_token();
        if !allowed {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{auth_id} does not have permission to change owner of backup group '{group}' to {new_owner}"
                ),
            ));
        }
    }
    if !info.is_active_user(&new_owner) {
        return Err(HttpError::bad_request(format!(
            "{} '{new_owner}' is inactive or non-existent",
            if new_owner.is_token() {
                "API token"
            } else {
                "user"
            }
        )));
    }
    store
        .set_owner(&ns, &group, &new_owner, true)
        .map_err(bad_request)
}

// ---- downloads and the client log --------------------------------------------------------

fn octet_stream(data: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full_body(data));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Opens the store for a download and returns it with the path of the requested file.
fn snapshot_file(
    auth_id: &Authid,
    params: &Value,
) -> Result<(DataStore, std::path::PathBuf, String), HttpError> {
    let (store, ns, dir) = open_for_snapshot(
        auth_id,
        params,
        PRIV_DATASTORE_READ,
        PRIV_DATASTORE_BACKUP,
        Operation::Read,
    )?;
    let name = params["file-name"].as_str().unwrap_or_default().to_string();
    let path = store
        .snapshot_path(&ns, &dir)
        .map_err(bad_request)?
        .join(&name);
    Ok((store, path, name))
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path)
        .map_err(|err| HttpError::not_found(format!("open file {path:?} failed - {err}")))
}

/// The decoded content: a blob's payload, or the concatenated chunks of an index.
fn decode_file(
    store: &DataStore,
    path: &std::path::Path,
    name: &str,
) -> Result<Vec<u8>, HttpError> {
    if name.ends_with(".blob") {
        let blob = DataBlob::from_raw(read_file(path)?)
            .map_err(|err| HttpError::bad_request(format!("blob {name:?}: {err}")))?;
        if blob.is_encrypted() {
            return Err(HttpError::bad_request(format!(
                "file {name:?} is encrypted"
            )));
        }
        return blob
            .decode(None, None)
            .map_err(|err| HttpError::bad_request(format!("blob {name:?}: {err}")));
    }
    if !(name.ends_with(".didx") || name.ends_with(".fidx")) {
        return Err(HttpError::bad_request(format!(
            "unknown archive type: {name:?}"
        )));
    }
    let index = pbs_datastore::open_index(path).map_err(bad_request)?;
    let mut out = Vec::new();
    let mut buffer = Vec::new();
    for pos in 0..index.index_count() {
        let Some(digest) = index.index_digest(pos) else {
            break;
        };
        let chunk_path = store.chunk_store().chunk_path(digest);
        let blob = DataBlob::from_raw(read_file(&chunk_path)?).map_err(|err| {
            HttpError::bad_request(format!("chunk {}: {err}", hex::encode(digest)))
        })?;
        if blob.is_encrypted() {
            return Err(HttpError::bad_request(format!(
                "file {name:?} is encrypted"
            )));
        }
        blob.decode_into(None, Some(digest), &mut buffer)
            .map_err(|err| {
                HttpError::bad_request(format!("chunk {}: {err}", hex::encode(digest)))
            })?;
        out.extend_from_slice(&buffer);
    }
    Ok(out)
}

async fn download(req: RawRequest, decoded: bool) -> Result<Response<Body>, HttpError> {
    let auth_id = caller(&req.env)?;
    let params = req.params;
    blocking(move || {
        let (store, path, name) = snapshot_file(&auth_id, &params)?;
        if decoded {
            return Ok(octet_stream(decode_file(&store, &path, &name)?));
        }
        Ok(octet_stream(read_file(&path)?))
    })
    .await
}

async fn upload_backup_log(req: RawRequest) -> Result<Response<Body>, HttpError> {
    let auth_id = caller(&req.env)?;
    let params = req.params;
    let body = req
        .body
        .collect()
        .await
        .map_err(|err| HttpError::bad_request(format!("unable to read request body - {err}")))?
        .to_bytes();
    if body.len() > MAX_LOG_SIZE {
        return Err(HttpError::bad_request("Request body too large"));
    }
    blocking(move || {
        let store_name = param_store(&params)?;
        let ns = param_ns(&params)?;
        let dir = param_snapshot(&params)?;
        let info = user_info()?;
        // Backup privilege plus ownership, no full-access privilege
        check_access(&info, &auth_id, &store_name, &ns, 0, PRIV_DATASTORE_BACKUP)?;
        let store = open_datastore(&store_name, Operation::Write)?;
        let owner = store.get_owner(&ns, &dir.group).map_err(bad_request)?;
        super::store_access::check_owner(&auth_id, &owner)?;
        let path = store
            .snapshot_path(&ns, &dir)
            .map_err(bad_request)?
            .join(CLIENT_LOG_BLOB_NAME);
        if path.exists() {
            return Err(HttpError::bad_request("backup already contains a log."));
        }
        let blob = DataBlob::load_from_reader(&mut body.as_ref().by_ref() as &mut dyn Read)
            .map_err(|err| HttpError::bad_request(format!("client log: {err}")))?;
        blob.verify_crc()
            .map_err(|err| HttpError::bad_request(format!("client log: {err}")))?;
        pbs_tools::fs::replace_file(
            &path,
            blob.raw_data(),
            pbs_tools::fs::ReplaceOptions::mode(0o644),
        )
        .map_err(|err| HttpError::bad_request(format!("unable to store {path:?} - {err}")))?;
        let mut response = Response::new(full_body("{\"data\":null}"));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        Ok(response)
    })
    .await
}

// ---- routes ---------------------------------------------------------------------------------

fn snapshot_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param())
        .param(id_param())
        .param(time_param())
}

fn group_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param())
        .param(id_param())
}

fn verify_notes(text: &str) -> Result<(), String> {
    if text.len() > 64 * 1024 {
        Err("notes too long".to_string())
    } else {
        Ok(())
    }
}

fn json_method<T, F>(handler: F) -> ApiMethod
where
    T: Serialize + Send + 'static,
    F: Fn(&Authid, &Value) -> Result<T, HttpError> + Copy + Send + Sync + 'static,
{
    ApiMethod::new(move |env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let value = blocking(move || handler(&auth_id, &params)).await?;
        serde_json::to_value(value)
            .map_err(|err| HttpError::internal(format!("unable to serialize result: {err}")))
    })
    .permission(Permission::Anybody)
}

fn list_method<T, F>(handler: F) -> ApiMethod
where
    T: Serialize + Send + 'static,
    F: Fn(&Authid, &Value) -> Result<T, HttpError> + Copy + Send + Sync + 'static,
{
    ApiMethod::serialized(move |env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let value = blocking(move || handler(&auth_id, &params)).await?;
        JsonText::from_serialize(&value)
    })
    .permission(Permission::Anybody)
}

/// Adds the content routes below `admin/datastore/{store}`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    const BASE: &str = "/admin/datastore/{store}";
    let store_ns = || ObjectSchema::new().param(store_param()).param(ns_param());
    let snapshots_filter = store_ns()
        .param(type_param().optional())
        .param(id_param().optional());
    let download_schema = snapshot_schema().param(file_name_param());

    router
        .route(
            &format!("{BASE}/groups"),
            Method::GET,
            list_method(list_groups).parameters(store_ns()),
        )?
        .route(
            &format!("{BASE}/groups"),
            Method::DELETE,
            json_method(|a, p| delete_group(a, p).map(|_| Value::Null)).parameters(group_schema()),
        )?
        .route(
            &format!("{BASE}/snapshots"),
            Method::GET,
            list_method(list_snapshots).parameters(snapshots_filter),
        )?
        .route(
            &format!("{BASE}/snapshots"),
            Method::DELETE,
            json_method(|a, p| forget_snapshot(a, p).map(|_| Value::Null))
                .parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/files"),
            Method::GET,
            list_method(list_files).parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/download"),
            Method::GET,
            ApiMethod::raw(|req| download(req, false))
                .permission(Permission::Anybody)
                .parameters(download_schema.clone()),
        )?
        .route(
            &format!("{BASE}/download-decoded"),
            Method::GET,
            ApiMethod::raw(|req| download(req, true))
                .permission(Permission::Anybody)
                .parameters(download_schema),
        )?
        .route(
            &format!("{BASE}/upload-backup-log"),
            Method::POST,
            ApiMethod::raw(upload_backup_log)
                .permission(Permission::Anybody)
                .parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/notes"),
            Method::GET,
            json_method(get_notes).parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/notes"),
            Method::PUT,
            json_method(|a, p| set_notes(a, p).map(|_| Value::Null))
                .parameters(snapshot_schema().param(
                    ParamSchema::string("notes").format(StringFormat::Verify(verify_notes)),
                )),
        )?
        .route(
            &format!("{BASE}/group-notes"),
            Method::GET,
            json_method(get_group_notes).parameters(group_schema()),
        )?
        .route(
            &format!("{BASE}/group-notes"),
            Method::PUT,
            json_method(|a, p| set_group_notes(a, p).map(|_| Value::Null))
                .parameters(group_schema().param(
                    ParamSchema::string("notes").format(StringFormat::Verify(verify_notes)),
                )),
        )?
        .route(
            &format!("{BASE}/protected"),
            Method::GET,
            json_method(get_protected).parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/protected"),
            Method::PUT,
            json_method(|a, p| set_protected(a, p).map(|_| Value::Null))
                .parameters(snapshot_schema().param(ParamSchema::boolean("protected"))),
        )?
        .route(
            &format!("{BASE}/change-owner"),
            Method::POST,
            json_method(|a, p| change_owner(a, p).map(|_| Value::Null))
                .parameters(group_schema().param(ParamSchema::string("new-owner"))),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_the_first_line_of_the_notes() {
        assert_eq!(first_line("hello\nworld").as_deref(), Some("hello"));
        assert_eq!(first_line(""), None);
    }

    #[test]
    fn list_items_serialize_in_documented_key_order() {
        let item = GroupListItem {
            backup_type: "vm".into(),
            backup_id: "100".into(),
            last_backup: 5,
            backup_count: 2,
            files: vec!["index.json.blob".into()],
            owner: None,
            comment: None,
        };
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            r#"{"backup-type":"vm","backup-id":"100","last-backup":5,"backup-count":2,"files":["index.json.blob"]}"#
        );
    }
}
