//! `access/acl`: list and update access control list entries.

use anyhow::{bail, Error};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use pbs_api_types::Authid;
use pbs_config::acl::{split_acl_path, AclTreeNode};
use pbs_config::privileges::{PRIV_PERMISSIONS_MODIFY, PRIV_SYS_AUDIT};
use pbs_config::{check_digest, CachedUserInfo};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ObjectSchema, ParamSchema, Permission, Router, RpcEnv};

use super::{blocking_method, caller, schema, typed_params};

/// One ACL entry as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AclListItem {
    /// ACL path (`/` for the root).
    pub path: String,
    /// User, token or group name.
    pub ugid: String,
    /// `user` (users and tokens) or `group`.
    pub ugid_type: &'static str,
    /// Whether the role is inherited by sub-paths.
    pub propagate: bool,
    /// Role name.
    pub roleid: String,
}

fn node_entries(node: &AclTreeNode, path: &str, out: &mut Vec<AclListItem>) {
    let path = if path.is_empty() { "/" } else { path };
    for (authid, roles) in &node.users {
        for (role, propagate) in roles {
            out.push(AclListItem {
                path: path.to_string(),
                ugid: authid.to_string(),
                ugid_type: "user",
                propagate: *propagate,
                roleid: role.clone(),
            });
        }
    }
    for (group, roles) in &node.groups {
        for (role, propagate) in roles {
            out.push(AclListItem {
                path: path.to_string(),
                ugid: group.clone(),
                ugid_type: "group",
                propagate: *propagate,
                roleid: role.clone(),
            });
        }
    }
}

/// The entries of `node` (path `path`, components joined with `/`, root = "") and, unless
/// `exact`, of every node below it, depth first with children in name order.
pub fn extract_acl_entries(
    node: &AclTreeNode,
    path: &str,
    exact: bool,
    out: &mut Vec<AclListItem>,
) {
    node_entries(node, path, out);
    if exact {
        return;
    }
    for (name, child) in &node.children {
        extract_acl_entries(child, &format!("{path}/{name}"), false, out);
    }
}

#[derive(Deserialize)]
struct ListParams {
    path: Option<String>,
    #[serde(default)]
    exact: bool,
}

/// ACL entries (all with Sys.Audit on `/access/acl`, else only those of the caller's own API
/// tokens); sets the `digest` attribute.
pub fn read_acl(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: ListParams = typed_params(params)?;
    let auth_id = caller(env)?;
    let info = CachedUserInfo::new()?;
    let see_all = info.lookup_privs(&auth_id, &["access", "acl"]) & PRIV_SYS_AUDIT != 0;

    let (tree, digest) = pbs_config::acl::config()?;
    let mut list = Vec::new();
    let start = match &params.path {
        Some(path) => tree
            .find_node(path)
            .map(|node| (node, split_acl_path(path).join("/"))),
        None => Some((&tree.root, String::new())),
    };
    if let Some((node, path)) = start {
        let prefix = if path.is_empty() {
            path
        } else {
            format!("/{path}")
        };
        extract_acl_entries(node, &prefix, params.exact, &mut list);
    }
    if !see_all {
        list.retain(|item| {
            item.ugid_type == "user"
                && !auth_id.is_token()
                && item
                    .ugid
                    .parse::<Authid>()
                    .is_ok_and(|id| id.is_token() && id.user() == auth_id.user())
        });
    }
    env.set_result_attrib("digest", Value::String(digest));
    Ok(serde_json::to_value(list)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UpdateParams {
    path: String,
    role: String,
    #[serde(default = "default_propagate")]
    propagate: bool,
    auth_id: Option<Authid>,
    group: Option<String>,
    #[serde(default)]
    delete: bool,
    digest: Option<String>,
}

fn default_propagate() -> bool {
    true
}

/// Without Permissions.Modify on `/access/acl` a user may only edit its own tokens' entries.
fn check_unprivileged_update(caller: &Authid, params: &UpdateParams) -> Result<(), Error> {
    if params.group.is_some() {
        bail!("Unprivileged users are not allowed to create group ACL item.");
    }
    let Some(target) = &params.auth_id else {
        bail!("Unprivileged user needs to provide auth_id to update ACL item.");
    };
    if caller.is_token() {
        bail!("Unprivileged API tokens can't set ACL items.");
    }
    if !target.is_token() {
        bail!("Unprivileged users can only set ACL items for API tokens.");
    }
    if target.user() != caller.user() {
        bail!("Unprivileged users can only set ACL items for their own API tokens.");
    }
    Ok(())
}

/// Adds or removes one role of a user or token on an ACL path.
pub fn update_acl(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: UpdateParams = typed_params(params)?;
    let auth_id = caller(env)?;
    let info = CachedUserInfo::new()?;
    if info.lookup_privs(&auth_id, &["access", "acl"]) & PRIV_PERMISSIONS_MODIFY == 0 {
        check_unprivileged_update(&auth_id, &params)?;
    }

    let _lock = pbs_config::acl::lock_config()?;
    let (mut tree, digest) = pbs_config::acl::config()?;
    check_digest(params.digest.as_deref(), &digest)?;

    let target = match (&params.group, &params.auth_id) {
        (Some(_), _) => bail!("parameter 'group' - groups are currently not supported."),
        (None, Some(target)) => target,
        (None, None) => bail!("missing 'userid' or 'group' parameter."),
    };
    if !params.delete {
        // Entries of vanished ids and invalid paths may still be deleted.
        let (users, _) = pbs_config::user::config()?;
        if !users.contains(&target.to_string()) {
            if target.is_token() {
                bail!("no such API token.");
            }
            bail!("no such user.");
        }
        pbs_config::acl::check_acl_path(&params.path).map_err(anyhow::Error::msg)?;
    }

    if params.delete {
        tree.delete_user_role(&params.path, target, &params.role);
    } else {
        tree.insert_user_role(&params.path, target, &params.role, params.propagate);
    }
    pbs_config::acl::save_config(&tree)?;
    // This process serves the next request from fresh data; other processes pick the change
    // up when their cache expires.
    pbs_config::cached_user_info::invalidate_cache();
    Ok(Value::Null)
}

/// Adds the routes.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router
        .route(
            "/access/acl",
            Method::GET,
            blocking_method(read_acl)
                .permission(Permission::Anybody)
                .parameters(
                    ObjectSchema::new()
                        .param(schema::acl_path().optional())
                        .param(
                            ParamSchema::boolean("exact")
                                .default(false)
                                .description("If set, returns only ACL for the exact path."),
                        ),
                )
                .description("Read Access Control List (ACLs)."),
        )?
        .route(
            "/access/acl",
            Method::PUT,
            blocking_method(update_acl)
                .permission(Permission::Anybody)
                .protected(true)
                .parameters(
                    ObjectSchema::new()
                        .param(schema::acl_path())
                        .param(schema::role())
                        .param(
                            ParamSchema::boolean("propagate")
                                .default(true)
                                .description("Allow to propagate (inherit) permissions."),
                        )
                        .param(schema::authid("auth-id").optional())
                        .param(schema::group())
                        .param(
                            ParamSchema::boolean("delete")
                                .optional()
                                .description("Remove permissions (instead of adding it)."),
                        )
                        .param(schema::digest()),
                )
                .description("Update Access Control List (ACLs)."),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_config::acl::AclTree;

    #[test]
    fn entries_are_listed_depth_first() {
        let tree = AclTree::parse(
            "acl.cfg",
            "acl:1:/:user1@pbs:Audit\nacl:0:/datastore/s1:user1@pbs!t,user2@pbs:DatastoreBackup\nacl:1:/datastore:@admins:Admin\n",
        )
        .unwrap();
        let mut list = Vec::new();
        extract_acl_entries(&tree.root, "", false, &mut list);
        let shown: Vec<String> = list
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} {} {}",
                    i.path, i.ugid, i.ugid_type, i.propagate, i.roleid
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "/ user1@pbs user true Audit",
                "/datastore admins group true Admin",
                "/datastore/s1 user1@pbs!t user false DatastoreBackup",
                "/datastore/s1 user2@pbs user false DatastoreBackup",
            ]
        );
        let mut exact = Vec::new();
        let node = tree.find_node("/datastore").unwrap();
        extract_acl_entries(node, "/datastore", true, &mut exact);
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0].ugid, "admins");
        assert_eq!(
            serde_json::to_value(&exact[0]).unwrap(),
            serde_json::json!({"path":"/datastore","ugid":"admins","ugid_type":"group","propagate":true,"roleid":"Admin"})
        );
    }

    #[test]
    fn unprivileged_users_may_only_edit_their_tokens() {
        let params = |auth_id: Option<&str>, group: Option<&str>| UpdateParams {
            path: "/datastore".into(),
            role: "DatastoreBackup".into(),
            propagate: true,
            auth_id: auth_id.map(|a| a.parse().unwrap()),
            group: group.map(str::to_string),
            delete: false,
            digest: None,
        };
        let user: Authid = "user1@pbs".parse().unwrap();
        let token: Authid = "user1@pbs!t".parse().unwrap();
        assert!(check_unprivileged_update(&user, &params(Some("user1@pbs!t"), None)).is_ok());
        assert!(check_unprivileged_update(&user, &params(Some("user1@pbs"), None)).is_err());
        assert!(check_unprivileged_update(&user, &params(Some("user2@pbs!t"), None)).is_err());
        assert!(check_unprivileged_update(&token, &params(Some("user1@pbs!t"), None)).is_err());
        assert!(check_unprivileged_update(&user, &params(None, Some("admins"))).is_err());
        assert!(check_unprivileged_update(&user, &params(None, None)).is_err());
    }
}
