//! `access/users/{userid}/token[/{token-name}]`: API tokens of a user.

use anyhow::{bail, Error};
use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use pbs_api_types::{Authid, Userid};
use pbs_config::user::{ApiToken, TOKEN_TYPE};
use pbs_config::{check_digest, SectionConfigData};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ObjectSchema, Router, RpcEnv};

use super::users::{audit_or_self, modify_or_self, require_user};
use super::{blocking_method, not_found, schema, typed_params};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TokenParams {
    userid: Userid,
    token_name: String,
    comment: Option<String>,
    enable: Option<bool>,
    expire: Option<i64>,
    digest: Option<String>,
}

impl TokenParams {
    fn tokenid(&self) -> Result<Authid, Error> {
        Ok(Authid::token(self.userid.clone(), &self.token_name)?)
    }
}

fn require_token(config: &SectionConfigData, tokenid: &Authid) -> Result<ApiToken, Error> {
    match config.get(&tokenid.to_string()) {
        Some((ty, _)) if ty == TOKEN_TYPE => pbs_config::user::lookup_token(config, tokenid),
        _ => Err(not_found(format!("no such API token '{tokenid}'."))),
    }
}

/// A token entry as listed: the token's properties plus its `token-name`.
fn token_entry(token: &ApiToken) -> Result<Value, Error> {
    let mut entry = serde_json::to_value(token)?;
    entry["token-name"] = json!(token.tokenid.tokenname().unwrap_or_default());
    Ok(entry)
}

#[derive(Deserialize)]
struct UserIdParam {
    userid: Userid,
}

/// The API tokens of a user; sets the `digest` attribute.
pub fn list_tokens(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let UserIdParam { userid } = typed_params(params)?;
    let (config, digest) = pbs_config::user::config()?;
    let tokens: Vec<ApiToken> = config.convert_to_typed_array(TOKEN_TYPE)?;
    let list = tokens
        .iter()
        .filter(|token| *token.tokenid.user() == userid)
        .map(token_entry)
        .collect::<Result<Vec<Value>, Error>>()?;
    env.set_result_attrib("digest", Value::String(digest));
    Ok(Value::Array(list))
}

/// One API token; sets the `digest` attribute.
pub fn read_token(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: TokenParams = typed_params(params)?;
    let tokenid = params.tokenid()?;
    let (config, digest) = pbs_config::user::config()?;
    let token = require_token(&config, &tokenid)?;
    env.set_result_attrib("digest", Value::String(digest));
    Ok(serde_json::to_value(token)?)
}

/// Creates a token and returns its secret (the only time it is shown):
/// `{"tokenid": …, "value": …}`.
pub fn generate_token(_env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: TokenParams = typed_params(params)?;
    let tokenid = params.tokenid()?;
    let tokenid_string = tokenid.to_string();

    let _lock = pbs_config::user::lock_config()?;
    let (mut config, digest) = pbs_config::user::config()?;
    check_digest(params.digest.as_deref(), &digest)?;
    require_user(&config, &params.userid)?;
    if config.contains(&tokenid_string) {
        bail!(
            "token '{}' for user '{}' already exists.",
            params.token_name,
            params.userid
        );
    }
    let token = ApiToken {
        tokenid: tokenid.clone(),
        comment: params.comment,
        enable: params.enable,
        expire: params.expire,
    };
    let secret = pbs_config::token_shadow::generate_and_set_secret(&tokenid)?;
    config.set_data(&tokenid_string, TOKEN_TYPE, &token)?;
    pbs_config::user::save_config(&config)?;
    Ok(json!({ "tokenid": tokenid_string, "value": secret }))
}

/// Updates a token's comment, enable flag and expiry.
pub fn update_token(_env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: TokenParams = typed_params(params)?;
    let tokenid = params.tokenid()?;

    let _lock = pbs_config::user::lock_config()?;
    let (mut config, digest) = pbs_config::user::config()?;
    check_digest(params.digest.as_deref(), &digest)?;
    let mut token = require_token(&config, &tokenid)?;
    if let Some(comment) = params.comment {
        let comment = comment.trim();
        token.comment = (!comment.is_empty()).then(|| comment.to_string());
    }
    if let Some(enable) = params.enable {
        token.enable = (!enable).then_some(false);
    }
    if let Some(expire) = params.expire {
        token.expire = (expire > 0).then_some(expire);
    }
    config.set_data(&tokenid.to_string(), TOKEN_TYPE, &token)?;
    pbs_config::user::save_config(&config)?;
    Ok(Value::Null)
}

/// Removes a token and its secret.
pub fn delete_token(_env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: TokenParams = typed_params(params)?;
    let tokenid = params.tokenid()?;

    let _lock = pbs_config::user::lock_config()?;
    let (mut config, digest) = pbs_config::user::config()?;
    check_digest(params.digest.as_deref(), &digest)?;
    require_token(&config, &tokenid)?;
    pbs_config::token_shadow::delete_secret(&tokenid)?;
    config.remove(&tokenid.to_string());
    pbs_config::user::save_config(&config)?;
    Ok(Value::Null)
}

/// Adds the routes.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let token_path = || {
        ObjectSchema::new()
            .param(schema::userid("userid"))
            .param(schema::token_name())
    };
    let token_properties = || {
        token_path()
            .param(schema::comment())
            .param(schema::enable())
            .param(schema::expire())
            .param(schema::digest())
    };
    const TOKEN: &str = "/access/users/{userid}/token/{token-name}";
    router
        .route(
            "/access/users/{userid}/token",
            Method::GET,
            blocking_method(list_tokens)
                .permission(audit_or_self())
                .parameters(ObjectSchema::new().param(schema::userid("userid")))
                .description("List user's API tokens."),
        )?
        .route(
            TOKEN,
            Method::GET,
            blocking_method(read_token)
                .permission(audit_or_self())
                .parameters(token_path())
                .description("Read user's API token metadata."),
        )?
        .route(
            TOKEN,
            Method::POST,
            blocking_method(generate_token)
                .permission(modify_or_self())
                .protected(true)
                .parameters(token_properties())
                .description("Generate a new API token with given metadata."),
        )?
        .route(
            TOKEN,
            Method::PUT,
            blocking_method(update_token)
                .permission(modify_or_self())
                .protected(true)
                .parameters(token_properties())
                .description("Update user's API token metadata."),
        )?
        .route(
            TOKEN,
            Method::DELETE,
            blocking_method(delete_token)
                .permission(modify_or_self())
                .protected(true)
                .parameters(token_path().param(schema::digest()))
                .description("Delete a user's API token."),
        )
}
