//! `PUT access/password`: change a user's password.

use anyhow::Error;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use pbs_api_types::{Authid, Userid};
use pbs_config::privileges::PRIV_PERMISSIONS_MODIFY;
use pbs_config::CachedUserInfo;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{HttpError, ObjectSchema, Permission, Router, RpcEnv};

use super::{blocking_method, caller, schema, typed_params};
use crate::auth::{is_superuser, realm};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PasswordParams {
    userid: Userid,
    password: String,
    confirmation_password: Option<String>,
}

fn unauthorized(message: impl Into<String>) -> Error {
    HttpError::new(StatusCode::UNAUTHORIZED, message).into()
}

/// Whether `caller` may set the password of `target`: its own, as superuser, or with any
/// Permissions.Modify bit on `/` for non-`pam` users.
fn may_change(info: &CachedUserInfo, caller: &Authid, target: &Userid) -> bool {
    if caller.user() == target || is_superuser(caller) {
        return true;
    }
    target.realm() != "pam" && info.lookup_privs(caller, &[]) & PRIV_PERMISSIONS_MODIFY != 0
}

/// The handler.
pub fn change_password(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: PasswordParams = typed_params(params)?;
    let auth_id = caller(env)?;

    // The caller proves who it is once more, unless it is root.
    if !auth_id.user().is_root() {
        let confirmation = params
            .confirmation_password
            .as_deref()
            .ok_or_else(|| unauthorized("missing password"))?;
        realm::authenticate_user(auth_id.user(), confirmation, Some(env.client().ip()))
            .map_err(|err| unauthorized(format!("{err:#}")))?;
    }

    let info = CachedUserInfo::new()?;
    let (users, _) = pbs_config::user::config()?;
    if !users.contains(params.userid.as_str()) {
        return Err(unauthorized(format!(
            "user '{}' does not exists.",
            params.userid
        )));
    }
    if auth_id.is_token() {
        return Err(unauthorized("API tokens cannot access this API endpoint"));
    }
    if !may_change(&info, &auth_id, &params.userid) {
        return Err(unauthorized(
            "you are not authorized to change the password.",
        ));
    }
    realm::store_password(&params.userid, &params.password)?;
    Ok(Value::Null)
}

/// Adds the route.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "/access/password",
        Method::PUT,
        blocking_method(change_password)
            .permission(Permission::Anybody)
            .protected(true)
            .parameters(
                ObjectSchema::new()
                    .param(schema::userid("userid"))
                    .param(schema::password("password"))
                    .param(schema::password("confirmation-password").optional()),
            )
            .description("Change user password."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_config::acl::AclTree;

    #[test]
    fn who_may_change_which_password() {
        let info = CachedUserInfo::from_parts(
            pbs_config::user::parse("user.cfg", "user: admin@pbs\n\nuser: bob@pbs\n").unwrap(),
            AclTree::parse("acl.cfg", "acl:1:/:admin@pbs:Admin\n").unwrap(),
        );
        let admin: Authid = "admin@pbs".parse().unwrap();
        let bob: Authid = "bob@pbs".parse().unwrap();
        let target = |s: &str| s.parse::<Userid>().unwrap();
        assert!(may_change(&info, &bob, &target("bob@pbs")));
        assert!(!may_change(&info, &bob, &target("admin@pbs")));
        assert!(may_change(&info, &admin, &target("bob@pbs")));
        assert!(!may_change(&info, &admin, &target("someone@pam")));
        assert!(may_change(
            &info,
            &"root@pam".parse().unwrap(),
            &target("someone@pam")
        ));
    }
}
