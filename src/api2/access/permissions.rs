//! `GET access/permissions`: effective privileges of an auth id per ACL path.

use std::collections::BTreeSet;

use anyhow::{bail, Error};
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use pbs_api_types::Authid;
use pbs_config::acl::{split_acl_path, AclTreeNode};
use pbs_config::privileges::{PRIVILEGES, PRIV_SYS_AUDIT};
use pbs_config::CachedUserInfo;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ObjectSchema, Permission, Router, RpcEnv};

use super::{blocking_method, caller, schema, typed_params};

/// Paths always reported when no path is asked for.
const TOP_LEVEL_PATHS: &[&str] = &["/", "/access", "/datastore", "/remote", "/system"];

fn collect_node_paths(node: &AclTreeNode, path: &str, out: &mut BTreeSet<String>) {
    for (name, child) in &node.children {
        let child_path = format!("{path}/{name}");
        out.insert(child_path.clone());
        collect_node_paths(child, &child_path, out);
    }
}

/// `{"<Priv>": propagated}` for the named privileges in `privs`.
pub fn privilege_map(privs: u64, propagated: u64) -> Map<String, Value> {
    PRIVILEGES
        .iter()
        .filter(|(_, bit)| privs & bit != 0)
        .map(|(name, bit)| (name.to_string(), Value::Bool(propagated & bit != 0)))
        .collect()
}

/// The permission map of `auth_id`: for `path`, or for every ACL tree node plus the top-level
/// paths; paths without privileges are left out.
pub fn permission_map(info: &CachedUserInfo, auth_id: &Authid, path: Option<&str>) -> Value {
    let mut paths = BTreeSet::new();
    match path {
        Some(path) => {
            paths.insert(path.to_string());
        }
        None => {
            paths.extend(TOP_LEVEL_PATHS.iter().map(|p| p.to_string()));
            collect_node_paths(&info.acl_tree().root, "", &mut paths);
        }
    }
    let mut result = Map::new();
    for path in paths {
        let components = split_acl_path(&path);
        let (privs, propagated) = info.lookup_privs_details(auth_id, &components);
        if privs == 0 {
            continue;
        }
        result.insert(path, Value::Object(privilege_map(privs, propagated)));
    }
    Value::Object(result)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PermissionParams {
    auth_id: Option<Authid>,
    path: Option<String>,
}

/// May `caller` see the permissions of `target`? Its own, with any Sys.Audit on `/access`,
/// or (for a user) those of its own tokens.
fn may_list(info: &CachedUserInfo, caller: &Authid, target: &Authid) -> bool {
    caller == target
        || info.lookup_privs(caller, &["access"]) & PRIV_SYS_AUDIT != 0
        || (target.is_token() && !caller.is_token() && target.user() == caller.user())
}

/// The handler.
pub fn list_permissions(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: PermissionParams = typed_params(params)?;
    let auth_id = caller(env)?;
    let info = CachedUserInfo::new()?;
    let target = params.auth_id.unwrap_or_else(|| auth_id.clone());
    if !may_list(&info, &auth_id, &target) {
        bail!("not allowed to list permissions of {target}");
    }
    Ok(permission_map(&info, &target, params.path.as_deref()))
}

/// Adds the route.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "/access/permissions",
        Method::GET,
        blocking_method(list_permissions)
            .permission(Permission::Anybody)
            .parameters(
                ObjectSchema::new()
                    .param(schema::authid("auth-id").optional())
                    .param(schema::acl_path().optional()),
            )
            .description("List permissions of given or currently authenticated user / API token."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_config::acl::AclTree;
    use serde_json::json;

    fn info(acl: &str) -> CachedUserInfo {
        CachedUserInfo::from_parts(
            pbs_config::user::parse(
                "user.cfg",
                "user: user1@pbs\n\ntoken: user1@pbs!t\n\nuser: auditor@pbs\n",
            )
            .unwrap(),
            AclTree::parse("acl.cfg", acl).unwrap(),
        )
    }

    fn id(s: &str) -> Authid {
        s.parse().unwrap()
    }

    #[test]
    fn root_has_every_named_privilege_everywhere() {
        let info = info("");
        let map = permission_map(&info, &id("root@pam"), Some("/"));
        let privs = map["/"].as_object().unwrap();
        assert_eq!(privs.len(), 20);
        assert!(privs.values().all(|v| *v == json!(true)));
        // keys come out sorted, not in table order
        let keys: Vec<&String> = privs.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let all = permission_map(&info, &id("root@pam"), None);
        let paths: Vec<&String> = all.as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/", "/access", "/datastore", "/remote", "/system"]);
    }

    #[test]
    fn token_privileges_are_intersected_and_nodes_listed() {
        let info = info(
            "acl:1:/datastore:user1@pbs:DatastoreAdmin\nacl:1:/datastore/store1:user1@pbs!t:DatastoreAdmin,RemoteAdmin\n",
        );
        let token = permission_map(&info, &id("user1@pbs!t"), None);
        assert_eq!(
            token,
            json!({"/datastore/store1": {
                "Datastore.Audit": true, "Datastore.Backup": true, "Datastore.Modify": true,
                "Datastore.Prune": true, "Datastore.Read": true, "Datastore.Verify": true,
            }})
        );
        let user = permission_map(&info, &id("user1@pbs"), None);
        let paths: Vec<&String> = user.as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/datastore", "/datastore/store1"]);
        assert_eq!(user["/datastore"]["Datastore.Read"], json!(true));
    }

    #[test]
    fn non_propagating_entries_report_false() {
        let info = info("acl:0:/system:user1@pbs:Audit\n");
        let map = permission_map(&info, &id("user1@pbs"), Some("/system"));
        assert_eq!(
            map,
            json!({"/system": {"Datastore.Audit": false, "Sys.Audit": false}})
        );
        assert_eq!(
            permission_map(&info, &id("user1@pbs"), Some("/system/status")),
            json!({})
        );
    }

    #[test]
    fn listing_other_ids_needs_audit_or_ownership() {
        let info = info("acl:1:/access:auditor@pbs:Audit\n");
        let user = id("user1@pbs");
        assert!(may_list(&info, &user, &user));
        assert!(may_list(&info, &user, &id("user1@pbs!t")));
        assert!(!may_list(&info, &id("user1@pbs!t"), &user));
        assert!(!may_list(&info, &user, &id("auditor@pbs")));
        assert!(may_list(&info, &id("auditor@pbs"), &user));
    }
}
