//! `GET access/roles`: the built-in roles with their privileges.

use http::Method;
use serde_json::{json, Value};

use pbs_config::privileges::{privilege_names, ROLES};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, Permission, Router};

/// Every built-in role as `{roleid, privs, comment}`; `privs` in privilege table order.
pub fn list_roles() -> Value {
    Value::Array(
        ROLES
            .iter()
            .map(|role| {
                json!({
                    "roleid": role.name,
                    "privs": privilege_names(role.privs),
                    "comment": role.comment,
                })
            })
            .collect(),
    )
}

/// Adds the route.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "/access/roles",
        Method::GET,
        ApiMethod::new(|_env, _params| async { Ok(list_roles()) })
            .permission(Permission::Anybody)
            .description("List roles."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_list_privileges_in_table_order() {
        let roles = list_roles();
        let find = |name: &str| {
            roles
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["roleid"] == name)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            find("Audit"),
            json!({"roleid":"Audit","privs":["Sys.Audit","Datastore.Audit"],"comment":"Auditor"})
        );
        assert_eq!(find("NoAccess")["privs"], json!([]));
        let admin = find("Admin");
        assert_eq!(admin["privs"].as_array().unwrap().len(), 20);
        assert_eq!(admin["privs"][0], "Sys.Audit");
        assert_eq!(admin["privs"][19], "Realm.Allocate");
        assert_eq!(
            find("RemoteSyncOperator")["comment"],
            "Syncronisation Opertator"
        );
    }
}
