//! `GET admin/datastore`: the datastores the caller may look into.

use http::Method;
use serde::Serialize;
use serde_json::Value;

use pbs_api_types::Authid;
use pbs_config::datastore::{DataStoreConfig, DATASTORE_TYPE};
use pbs_config::privileges::{
    PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_READ,
};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, HttpError, JsonText, Permission, Router, RpcEnv};

use super::store_access::{bad_request, blocking, caller, user_info};

/// Privileges on the store itself that show its comment.
const FULL_PRIVS: u64 = PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_BACKUP;
/// Privileges somewhere below the store that make it listed.
const BELOW_PRIVS: u64 =
    PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_MODIFY | PRIV_DATASTORE_READ | PRIV_DATASTORE_BACKUP;

/// One listed datastore.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
struct StoreListItem {
    store: String,
    comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<String>,
}

fn list_stores(auth_id: Authid) -> Result<Vec<StoreListItem>, HttpError> {
    let (config, _digest) = pbs_config::datastore::config().map_err(bad_request)?;
    let stores: Vec<DataStoreConfig> = config
        .convert_to_typed_array(DATASTORE_TYPE)
        .map_err(bad_request)?;
    let info = user_info()?;
    let mut out = Vec::new();
    for store in stores {
        let path = ["datastore", store.name.as_str()];
        let full = info.lookup_privs(&auth_id, &path) & FULL_PRIVS != 0;
        if !full && !info.any_privs_below(&auth_id, &path, BELOW_PRIVS) {
            continue;
        }
        out.push(StoreListItem {
            store: store.name.clone(),
            comment: if full { store.comment.clone() } else { None },
            maintenance: store.maintenance_mode.clone(),
        });
    }
    Ok(out)
}

/// Adds `GET admin/datastore`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let list = ApiMethod::serialized(|env: RpcEnv, _params: Value| async move {
        let auth_id = caller(&env)?;
        let list = blocking(move || list_stores(auth_id)).await?;
        JsonText::from_serialize(&list)
    })
    .permission(Permission::Anybody)
    .description("Datastores the caller has access to.");
    router.route("/admin/datastore", Method::GET, list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_always_present_maintenance_only_when_set() {
        let item = StoreListItem {
            store: "store1".into(),
            comment: None,
            maintenance: None,
        };
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            r#"{"store":"store1","comment":null}"#
        );
    }
}
