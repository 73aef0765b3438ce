//! Shared pieces of the datastore content APIs: opening a configured datastore, the
//! namespace/group/snapshot parameters, privilege look-ups on `/datastore/<store>[/<ns>]`
//! and the group ownership rule.

use http::StatusCode;
use serde_json::Value;

use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType};
use pbs_config::datastore::Operation;
use pbs_config::CachedUserInfo;
use pbs_datastore::active_operations::{ActiveOperations, OperationKind};
use pbs_datastore::DataStore;
use pbs_rest_server::{HttpError, ParamSchema, RpcEnv, StringFormat};

/// Runs blocking file system work off the async runtime.
pub async fn blocking<T, F>(f: F) -> Result<T, HttpError>
where
    F: FnOnce() -> Result<T, HttpError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| HttpError::internal(format!("handler thread failed - {err}")))?
}

/// The authenticated caller.
pub fn caller(env: &RpcEnv) -> Result<Authid, HttpError> {
    env.auth_id()
        .cloned()
        .ok_or_else(|| HttpError::internal("no authenticated user"))
}

/// A `400` carrying the full error chain.
pub fn bad_request(err: anyhow::Error) -> HttpError {
    HttpError::bad_request(format!("{err:#}"))
}

/// The current user and ACL configuration.
pub fn user_info() -> Result<std::sync::Arc<CachedUserInfo>, HttpError> {
    CachedUserInfo::new()
        .map_err(|err| HttpError::internal(format!("unable to read user info: {err:#}")))
}

/// Opens the configured datastore `name` for `operation` (maintenance mode respected); the
/// handle counts as an active read or write operation until it is dropped.
pub fn open_datastore(name: &str, operation: Operation) -> Result<DataStore, HttpError> {
    let (config, _digest) = pbs_config::datastore::config().map_err(bad_request)?;
    let store = pbs_config::datastore::lookup(&config, name)
        .map_err(|_| HttpError::bad_request(format!("datastore '{name}' does not exist.")))?;
    store.check_maintenance(operation).map_err(bad_request)?;
    let datastore = DataStore::open(name, &store.path).map_err(bad_request)?;
    count_operation(datastore, operation).map_err(bad_request)
}

/// Counts `store` as an active operation of the class `operation` (lookups are not counted).
pub fn count_operation(store: DataStore, operation: Operation) -> Result<DataStore, anyhow::Error> {
    let kind = match operation {
        Operation::Lookup => return Ok(store),
        Operation::Read => OperationKind::Read,
        Operation::Write => OperationKind::Write,
    };
    store.count_operation(&ActiveOperations::default(), kind)
}

/// ACL path components of a datastore namespace: `datastore`, `<store>`, `<ns…>`.
pub fn acl_path(store: &str, ns: &BackupNamespace) -> Vec<String> {
    let mut path = vec!["datastore".to_string(), store.to_string()];
    path.extend(ns.components().iter().cloned());
    path
}

/// The ACL path as text, `/datastore/<store>[/<ns…>]`.
pub fn acl_path_text(store: &str, ns: &BackupNamespace) -> String {
    format!("/{}", acl_path(store, ns).join("/"))
}

/// Privileges of `auth_id` on the datastore namespace.
pub fn ns_privs(info: &CachedUserInfo, auth_id: &Authid, store: &str, ns: &BackupNamespace) -> u64 {
    let path = acl_path(store, ns);
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    info.lookup_privs(auth_id, &refs)
}

/// Access granted by a "full | partial+own" rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The full privilege: every group.
    Full,
    /// Only the partial privilege: groups owned by the caller.
    OwnedOnly,
}

/// Applies a "full | partial+own" rule on the namespace; neither privilege is `403`.
pub fn check_access(
    info: &CachedUserInfo,
    auth_id: &Authid,
    store: &str,
    ns: &BackupNamespace,
    full: u64,
    partial: u64,
) -> Result<Access, HttpError> {
    let privs = ns_privs(info, auth_id, store, ns);
    if privs & full != 0 {
        Ok(Access::Full)
    } else if privs & partial != 0 {
        Ok(Access::OwnedOnly)
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "permission check failed - missing privileges on {}",
                acl_path_text(store, ns)
            ),
        ))
    }
}

/// The ownership rule: the owner itself, or a user acting on a group owned by one of its
/// own API tokens (not the other way round).
pub fn owns(auth_id: &Authid, owner: &Authid) -> bool {
    if auth_id == owner {
        return true;
    }
    owner.is_token() && !auth_id.is_token() && owner.user() == auth_id.user()
}

/// Fails with `backup owner check failed (<caller> != <owner>)` unless the caller owns the
/// group.
pub fn check_owner(auth_id: &Authid, owner: &Authid) -> Result<(), HttpError> {
    if owns(auth_id, owner) {
        Ok(())
    } else {
        Err(HttpError::bad_request(format!(
            "backup owner check failed ({auth_id} != {owner})"
        )))
    }
}

/// With [`Access::OwnedOnly`] the group owner must be the caller.
pub fn check_group_access(
    store: &DataStore,
    access: Access,
    auth_id: &Authid,
    ns: &BackupNamespace,
    group: &BackupGroup,
) -> Result<(), HttpError> {
    if access == Access::Full {
        return Ok(());
    }
    let owner = store.get_owner(ns, group).map_err(bad_request)?;
    check_owner(auth_id, &owner)
}

// ---- parameters ---------------------------------------------------------------------------

fn verify_ns(text: &str) -> Result<(), String> {
    BackupNamespace::new(text)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

fn verify_store(text: &str) -> Result<(), String> {
    pbs_api_types::names::check_datastore_name(text).map_err(|err| err.to_string())
}

fn verify_backup_id(text: &str) -> Result<(), String> {
    pbs_api_types::names::check_backup_id(text).map_err(|err| err.to_string())
}

fn verify_archive_name(text: &str) -> Result<(), String> {
    pbs_api_types::names::check_archive_name(text).map_err(|err| err.to_string())
}

/// `store` (SAFE_ID, 3..=32 characters).
pub fn store_param() -> ParamSchema {
    ParamSchema::string("store")
        .min_length(3)
        .max_length(32)
        .format(StringFormat::Verify(verify_store))
        .description("Datastore name.")
}

/// Optional namespace `ns` (`a/b/c`, empty = root).
pub fn ns_param() -> ParamSchema {
    ns_named_param("ns")
}

/// An optional namespace parameter with another name (`parent`).
pub fn ns_named_param(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .max_length(256)
        .format(StringFormat::Verify(verify_ns))
        .optional()
        .description("Namespace.")
}

/// `backup-type`.
pub fn type_param() -> ParamSchema {
    ParamSchema::string("backup-type")
        .format(StringFormat::Enum(&["vm", "ct", "host"]))
        .description("Backup type.")
}

/// `backup-id`.
pub fn id_param() -> ParamSchema {
    ParamSchema::string("backup-id")
        .format(StringFormat::Verify(verify_backup_id))
        .description("Backup id.")
}

/// `backup-time` (epoch seconds ≥ 1).
pub fn time_param() -> ParamSchema {
    ParamSchema::integer("backup-time")
        .minimum(1)
        .description("Backup time (Unix epoch).")
}

/// `file-name` (SAFE_ID).
pub fn file_name_param() -> ParamSchema {
    ParamSchema::string("file-name")
        .format(StringFormat::Verify(verify_archive_name))
        .description("Name of a file of the snapshot.")
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, HttpError> {
    params[name]
        .as_str()
        .ok_or_else(|| HttpError::bad_request(format!("missing parameter '{name}'")))
}

/// The `store` parameter.
pub fn param_store(params: &Value) -> Result<String, HttpError> {
    str_param(params, "store").map(str::to_string)
}

/// A namespace parameter (absent = root).
pub fn param_ns_named(params: &Value, name: &str) -> Result<BackupNamespace, HttpError> {
    match &params[name] {
        Value::Null => Ok(BackupNamespace::root()),
        Value::String(text) => BackupNamespace::new(text)
            .map_err(|err| HttpError::bad_request(format!("invalid {name} parameter - {err}"))),
        _ => Err(HttpError::bad_request(format!("invalid {name} parameter"))),
    }
}

/// The `ns` parameter (absent = root).
pub fn param_ns(params: &Value) -> Result<BackupNamespace, HttpError> {
    param_ns_named(params, "ns")
}

/// The group parameters `backup-type` and `backup-id`.
pub fn param_group(params: &Value) -> Result<BackupGroup, HttpError> {
    let ty: BackupType = str_param(params, "backup-type")?
        .parse()
        .map_err(|err: pbs_api_types::BackupPathError| HttpError::bad_request(err.to_string()))?;
    let id = str_param(params, "backup-id")?;
    BackupGroup::new(ty, id).map_err(|err| HttpError::bad_request(err.to_string()))
}

/// The snapshot parameters (group + `backup-time`).
pub fn param_snapshot(params: &Value) -> Result<BackupDir, HttpError> {
    let group = param_group(params)?;
    let time = params["backup-time"]
        .as_i64()
        .ok_or_else(|| HttpError::bad_request("missing parameter 'backup-time'"))?;
    BackupDir::new(group, time).map_err(|err| HttpError::bad_request(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_rule_allows_own_tokens_only() {
        let user: Authid = "alice@pbs".parse().unwrap();
        let token: Authid = "alice@pbs!t1".parse().unwrap();
        let other: Authid = "bob@pbs".parse().unwrap();
        assert!(owns(&user, &user));
        assert!(owns(&user, &token));
        assert!(!owns(&token, &user));
        assert!(!owns(&other, &user));
        assert_eq!(
            check_owner(&other, &user).unwrap_err().message,
            "backup owner check failed (bob@pbs != alice@pbs)"
        );
    }

    #[test]
    fn acl_path_includes_namespace_components() {
        let ns = BackupNamespace::new("a/b").unwrap();
        assert_eq!(acl_path_text("store1", &ns), "/datastore/store1/a/b");
        assert_eq!(
            acl_path_text("store1", &BackupNamespace::root()),
            "/datastore/store1"
        );
    }
}
