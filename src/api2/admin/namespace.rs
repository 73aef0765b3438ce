//! `admin/datastore/{store}/namespace`: list, create and delete namespaces.

use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use pbs_api_types::{Authid, BackupNamespace};
use pbs_config::datastore::Operation;
use pbs_config::privileges::{
    PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_READ,
};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{
    ApiMethod, HttpError, JsonText, ObjectSchema, ParamSchema, Permission, Router, RpcEnv,
    StringFormat,
};

use super::store_access::{
    acl_path_text, bad_request, blocking, caller, check_access, ns_named_param, ns_param, ns_privs,
    open_datastore, param_ns, param_ns_named, param_store, store_param, user_info,
};

const LIST_PRIVS: u64 =
    PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_MODIFY | PRIV_DATASTORE_READ | PRIV_DATASTORE_BACKUP;

/// One listed namespace.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
struct NamespaceListItem {
    ns: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

fn list_namespaces(auth_id: Authid, params: Value) -> Result<Vec<NamespaceListItem>, HttpError> {
    let store_name = param_store(&params)?;
    let parent = param_ns_named(&params, "parent")?;
    let max_depth = params["max-depth"].as_u64().map(|d| d as usize);
    let info = user_info()?;
    let parent_access = ns_privs(&info, &auth_id, &store_name, &parent) & LIST_PRIVS != 0;
    let path = super::store_access::acl_path(&store_name, &parent);
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    if !parent_access && !info.any_privs_below(&auth_id, &refs, LIST_PRIVS) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "permission check failed - no access to {}",
                acl_path_text(&store_name, &parent)
            ),
        ));
    }
    let store = open_datastore(&store_name, Operation::Read)?;
    store.check_namespace_exists(&parent).map_err(bad_request)?;
    let mut out = Vec::new();
    for ns in store.iter_namespaces_recursive(&parent, max_depth) {
        let ns = ns.map_err(bad_request)?;
        if ns_privs(&info, &auth_id, &store_name, &ns) & LIST_PRIVS == 0 {
            continue;
        }
        out.push(NamespaceListItem {
            ns: ns.to_string(),
            comment: None,
        });
    }
    Ok(out)
}

fn create_namespace(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let parent = param_ns_named(&params, "parent")?;
    let name = params["name"].as_str().unwrap_or_default().to_string();
    let info = user_info()?;
    check_access(
        &info,
        &auth_id,
        &store_name,
        &parent,
        PRIV_DATASTORE_MODIFY,
        0,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    let child = parent
        .child(&name)
        .map_err(|err| HttpError::bad_request(err.to_string()))?;
    if store.namespace_exists(&child) {
        return Err(HttpError::bad_request(format!(
            "namespace '{child}' already exists"
        )));
    }
    let ns = store
        .create_namespace(&parent, &name)
        .map_err(bad_request)?;
    Ok(Value::from(ns.to_string()))
}

fn delete_namespace(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let ns: BackupNamespace = param_ns(&params)?;
    let delete_groups = params["delete-groups"].as_bool().unwrap_or(false);
    if ns.is_root() {
        return Err(HttpError::bad_request("cannot delete root namespace!"));
    }
    let info = user_info()?;
    check_access(
        &info,
        &auth_id,
        &store_name,
        &ns.parent(),
        PRIV_DATASTORE_MODIFY,
        0,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    store.check_namespace_exists(&ns).map_err(bad_request)?;
    if !store
        .remove_namespace_recursive(&ns, delete_groups)
        .map_err(bad_request)?
    {
        return Err(HttpError::bad_request(format!(
            "namespace '{ns}' not fully removed - it still contains backup groups or protected snapshots"
        )));
    }
    Ok(Value::Null)
}

fn verify_name(text: &str) -> Result<(), String> {
    BackupNamespace::root()
        .child(text)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Adds `admin/datastore/{store}/namespace`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    const PATH: &str = "/admin/datastore/{store}/namespace";
    let list = ApiMethod::serialized(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let list = blocking(move || list_namespaces(auth_id, params)).await?;
        JsonText::from_serialize(&list)
    })
    .permission(Permission::Anybody)
    .parameters(
        ObjectSchema::new()
            .param(store_param())
            .param(ns_named_param("parent"))
            .param(
                ParamSchema::integer("max-depth")
                    .minimum(0)
                    .maximum(7)
                    .optional(),
            ),
    );
    let create = ApiMethod::new(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        blocking(move || create_namespace(auth_id, params)).await
    })
    .permission(Permission::Anybody)
    .parameters(
        ObjectSchema::new()
            .param(store_param())
            .param(ns_named_param("parent"))
            .param(
                ParamSchema::string("name")
                    .max_length(32)
                    .format(StringFormat::Verify(verify_name)),
            ),
    );
    let delete = ApiMethod::new(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        blocking(move || delete_namespace(auth_id, params)).await
    })
    .permission(Permission::Anybody)
    .parameters(
        ObjectSchema::new()
            .param(store_param())
            .param(ns_param())
            .param(ParamSchema::boolean("delete-groups").default(false)),
    );
    router
        .route(PATH, Method::GET, list)?
        .route(PATH, Method::POST, create)?
        .route(PATH, Method::DELETE, delete)
}
