//! `access/users` and `access/users/{userid}`: list, create, read, update and delete users.

use anyhow::{bail, Error};
use http::Method;
use serde::Deserialize;
use serde_json::Value;

use pbs_api_types::Userid;
use pbs_config::privileges::{PRIV_PERMISSIONS_MODIFY, PRIV_SYS_AUDIT};
use pbs_config::user::{ApiToken, User, TOKEN_TYPE, USER_TYPE};
use pbs_config::{check_digest, CachedUserInfo, SectionConfigData};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ObjectSchema, ParamSchema, Permission, Router, RpcEnv};

use super::{blocking_method, caller, not_found, schema, typed_params};
use crate::auth::{is_superuser, realm, tfa};

/// ACL path guarding user management.
pub const USERS_ACL_PATH: &str = "/access/users";

/// Error when only the superuser may set passwords of `pam` users.
const PAM_SUPERUSER_ONLY: &str = "only superuser can edit pam credentials!";

/// Sys.Audit on `/access/users`, or the caller is the user (never a token).
pub(crate) fn audit_or_self() -> Permission {
    Permission::Or(vec![
        Permission::Privilege {
            path: USERS_ACL_PATH,
            privs: PRIV_SYS_AUDIT,
            partial: false,
        },
        Permission::UserParam("userid"),
    ])
}

/// Permissions.Modify on `/access/users`, or the caller is the user (never a token).
pub(crate) fn modify_or_self() -> Permission {
    Permission::Or(vec![modify_users(), Permission::UserParam("userid")])
}

fn modify_users() -> Permission {
    Permission::Privilege {
        path: USERS_ACL_PATH,
        privs: PRIV_PERMISSIONS_MODIFY,
        partial: false,
    }
}

/// `user '<u>' does not exist.` (404) unless `userid` has a user section.
pub(crate) fn require_user(config: &SectionConfigData, userid: &Userid) -> Result<User, Error> {
    match config.get(userid.as_str()) {
        Some((ty, _)) if ty == USER_TYPE => pbs_config::user::lookup_user(config, userid),
        _ => Err(not_found(format!("user '{userid}' does not exist."))),
    }
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    include_tokens: bool,
}

/// All users (with Sys.Audit on `/access/users`) or only the caller's own user; optionally
/// with their API tokens.
pub fn list_users(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: ListParams = typed_params(params)?;
    let auth_id = caller(env)?;
    let (config, digest) = pbs_config::user::config()?;
    let info = CachedUserInfo::new()?;
    let see_all = info.lookup_privs(&auth_id, &["access", "users"]) & PRIV_SYS_AUDIT != 0;

    let users: Vec<User> = config.convert_to_typed_array(USER_TYPE)?;
    let tokens: Vec<ApiToken> = if params.include_tokens {
        config.convert_to_typed_array(TOKEN_TYPE)?
    } else {
        Vec::new()
    };
    let mut list = Vec::new();
    for user in users {
        if !see_all && user.userid != *auth_id.user() {
            continue;
        }
        let mut entry = serde_json::to_value(&user)?;
        let own_tokens: Vec<&ApiToken> = tokens
            .iter()
            .filter(|token| *token.tokenid.user() == user.userid)
            .collect();
        if !own_tokens.is_empty() {
            entry["tokens"] = serde_json::to_value(own_tokens)?;
        }
        list.push(entry);
    }
    env.set_result_attrib("digest", Value::String(digest));
    Ok(Value::Array(list))
}

#[derive(Deserialize)]
struct CreateParams {
    #[serde(flatten)]
    user: User,
    password: Option<String>,
}

/// Creates a user; a given password is stored through the realm.
pub fn create_user(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let CreateParams { user, password } = typed_params(params)?;
    let auth_id = caller(env)?;
    let userid = user.userid.clone();

    let _lock = pbs_config::user::lock_config()?;
    let (mut config, _digest) = pbs_config::user::config()?;
    if config.contains(userid.as_str()) {
        bail!("user '{userid}' already exists.");
    }
    let kind = realm::lookup_realm(userid.realm())?;
    if password.is_some() && kind == realm::RealmKind::Pam && !is_superuser(&auth_id) {
        bail!("{PAM_SUPERUSER_ONLY}");
    }
    config.set_data(userid.as_str(), USER_TYPE, &user)?;
    pbs_config::user::save_config(&config)?;
    if let Some(password) = password {
        realm::store_password(&userid, &password)?;
    }
    Ok(Value::Null)
}

#[derive(Deserialize)]
struct UserIdParam {
    userid: Userid,
}

/// One user's configuration; sets the `digest` attribute.
pub fn read_user(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let UserIdParam { userid } = typed_params(params)?;
    let (config, digest) = pbs_config::user::config()?;
    let user = require_user(&config, &userid)?;
    env.set_result_attrib("digest", Value::String(digest));
    Ok(serde_json::to_value(user)?)
}

#[derive(Deserialize)]
struct UpdateParams {
    userid: Userid,
    comment: Option<String>,
    enable: Option<bool>,
    expire: Option<i64>,
    firstname: Option<String>,
    lastname: Option<String>,
    email: Option<String>,
    password: Option<String>,
    #[serde(default)]
    delete: Vec<String>,
    digest: Option<String>,
}

/// An empty (after trimming for comments) new value removes the property.
fn non_empty(value: String, trim: bool) -> Option<String> {
    let value = if trim {
        value.trim().to_string()
    } else {
        value
    };
    (!value.is_empty()).then_some(value)
}

impl UpdateParams {
    fn apply(&mut self, user: &mut User) {
        for property in &self.delete {
            match property.as_str() {
                "comment" => user.comment = None,
                "firstname" => user.firstname = None,
                "lastname" => user.lastname = None,
                "email" => user.email = None,
                _ => {}
            }
        }
        if let Some(comment) = self.comment.take() {
            user.comment = non_empty(comment, true);
        }
        if let Some(enable) = self.enable {
            user.enable = (!enable).then_some(false);
        }
        if let Some(expire) = self.expire {
            user.expire = (expire > 0).then_some(expire);
        }
        if let Some(firstname) = self.firstname.take() {
            user.firstname = non_empty(firstname, false);
        }
        if let Some(lastname) = self.lastname.take() {
            user.lastname = non_empty(lastname, false);
        }
        if let Some(email) = self.email.take() {
            user.email = non_empty(email, false);
        }
    }
}

/// Updates a user's properties and optionally its password.
pub fn update_user(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let mut params: UpdateParams = typed_params(params)?;
    let auth_id = caller(env)?;
    let userid = params.userid.clone();

    let _lock = pbs_config::user::lock_config()?;
    let (mut config, digest) = pbs_config::user::config()?;
    check_digest(params.digest.as_deref(), &digest)?;
    let mut user = require_user(&config, &userid)?;

    if let Some(password) = &params.password {
        // Unless the caller is root, the given password must be the caller's own current
        // one; so this call can only really change passwords when used by root.
        if !auth_id.user().is_root() {
            realm::authenticate_user(auth_id.user(), password, Some(env.client().ip()))?;
        }
        if userid.realm() == "pam" && !is_superuser(&auth_id) && userid != *auth_id.user() {
            bail!("{PAM_SUPERUSER_ONLY}");
        }
    }

    params.apply(&mut user);
    config.set_data(userid.as_str(), USER_TYPE, &user)?;
    pbs_config::user::save_config(&config)?;
    if let Some(password) = &params.password {
        realm::store_password(&userid, password)?;
    }
    Ok(Value::Null)
}

#[derive(Deserialize)]
struct DeleteParams {
    userid: Userid,
    digest: Option<String>,
}

/// Removes the user section and the `pbs` realm password; token sections and ACL entries
/// stay (they are ineffective without the user).
pub fn delete_user(_env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let DeleteParams { userid, digest } = typed_params(params)?;
    let _lock = pbs_config::user::lock_config()?;
    let (mut config, current) = pbs_config::user::config()?;
    check_digest(digest.as_deref(), &current)?;
    require_user(&config, &userid)?;
    config.remove(userid.as_str());
    pbs_config::user::save_config(&config)?;
    // Password and second factors are only bookkeeping once the user is gone.
    let _ = realm::remove_password(&userid);
    let _ = tfa::remove_user(&userid);
    Ok(Value::Null)
}

fn user_properties(schema: ObjectSchema) -> ObjectSchema {
    schema
        .param(schema::comment())
        .param(schema::enable())
        .param(schema::expire())
        .param(schema::user_text("firstname"))
        .param(schema::user_text("lastname"))
        .param(schema::user_text("email"))
        .param(schema::pbs_password("password").optional())
}

/// Adds the routes.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let userid_only = || ObjectSchema::new().param(schema::userid("userid"));
    router
        .route(
            "/access/users",
            Method::GET,
            blocking_method(list_users)
                .permission(Permission::Anybody)
                .protected(true)
                .parameters(
                    ObjectSchema::new().param(
                        ParamSchema::boolean("include_tokens")
                            .default(false)
                            .description("Include user's API tokens in returned list."),
                    ),
                )
                .description("List users."),
        )?
        .route(
            "/access/users",
            Method::POST,
            blocking_method(create_user)
                .permission(modify_users())
                .protected(true)
                .parameters(user_properties(userid_only()))
                .description("Create new user."),
        )?
        .route(
            "/access/users/{userid}",
            Method::GET,
            blocking_method(read_user)
                .permission(audit_or_self())
                .parameters(userid_only())
                .description("Read user configuration data."),
        )?
        .route(
            "/access/users/{userid}",
            Method::PUT,
            blocking_method(update_user)
                .permission(modify_or_self())
                .protected(true)
                .parameters(
                    user_properties(userid_only())
                        .param(schema::delete_user_properties())
                        .param(schema::digest()),
                )
                .description("Update user configuration."),
        )?
        .route(
            "/access/users/{userid}",
            Method::DELETE,
            blocking_method(delete_user)
                .permission(modify_or_self())
                .protected(true)
                .parameters(userid_only().param(schema::digest()))
                .description("Remove a user from the configuration file."),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(params: Value, user: &mut User) {
        let mut params: UpdateParams = serde_json::from_value(params).unwrap();
        params.apply(user);
    }

    #[test]
    fn update_semantics_follow_the_file_rules() {
        let mut user = User::new("john@pbs".parse().unwrap());
        user.enable = Some(true);
        user.expire = Some(0);
        user.email = Some("john@example.com".into());
        update(
            serde_json::json!({"userid":"john@pbs","comment":"  hello  ","enable":true,"expire":0}),
            &mut user,
        );
        assert_eq!(user.comment.as_deref(), Some("hello"));
        assert_eq!(user.enable, None);
        assert_eq!(user.expire, None);
        update(
            serde_json::json!({"userid":"john@pbs","enable":false,"expire":1700000000,"comment":" ","delete":["email"]}),
            &mut user,
        );
        assert_eq!(user.enable, Some(false));
        assert_eq!(user.expire, Some(1_700_000_000));
        assert_eq!(user.comment, None);
        assert_eq!(user.email, None);
        update(
            serde_json::json!({"userid":"john@pbs","firstname":"John","lastname":""}),
            &mut user,
        );
        assert_eq!(user.firstname.as_deref(), Some("John"));
        assert_eq!(user.lastname, None);
    }
}
