//! `POST access/ticket`: log in with a password (or renew with a valid ticket) and receive a
//! signed ticket plus CSRF prevention token.

use std::net::SocketAddr;

use anyhow::{bail, format_err, Error};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use pbs_api_types::{Authid, Userid};
use pbs_auth::keys::authkey_path;
use pbs_auth::ticket::{terminal_ticket_aad, verify_api_ticket, Ticket, TERM_TICKET_PREFIX};
use pbs_auth::PrivateAuthKey;
use pbs_config::privileges::PRIVILEGES;
use pbs_config::CachedUserInfo;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{HttpError, ObjectSchema, ParamSchema, Permission, Router, RpcEnv};

use super::{blocking_method, schema, typed_params};
use crate::auth::{auth_log, realm, tfa, USER_INACTIVE};

/// The message of every failed login (the reason only goes to the auth log).
pub const LOGIN_FAILED: &str = "permission check failed.";

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TicketParams {
    username: Userid,
    password: String,
    tfa_challenge: Option<String>,
    path: Option<String>,
    privs: Option<String>,
    port: Option<u16>,
}

/// What a successful login grants.
#[derive(Debug, PartialEq, Eq)]
enum Login {
    /// A full API ticket.
    Full,
    /// A terminal ticket was confirmed; only the user name is answered.
    Terminal,
}

fn private_key() -> Result<PrivateAuthKey, Error> {
    PrivateAuthKey::load(&authkey_path())
}

/// Verifies a `PBSTERM` ticket for `path`/`port` and that the user holds privilege `privs`
/// on `path`.
fn check_terminal_ticket(
    userid: &Userid,
    ticket: &str,
    path: &str,
    privs: &str,
    port: u16,
) -> Result<(), Error> {
    let key = private_key()?;
    let aad = terminal_ticket_aad(userid, path, port);
    Ticket::parse(ticket)?.verify(&key, TERM_TICKET_PREFIX, Some(&aad))?;
    let privilege = PRIVILEGES
        .iter()
        .find(|(name, _)| *name == privs)
        .map(|(_, bit)| *bit)
        .ok_or_else(|| format_err!("No such privilege"))?;
    let info = CachedUserInfo::new()?;
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    info.check_privs(&Authid::from(userid.clone()), &components, privilege, false)?;
    Ok(())
}

fn authenticate(params: &TicketParams, client: SocketAddr) -> Result<Login, Error> {
    let userid = &params.username;
    let info = CachedUserInfo::new()?;
    if !info.is_active_user(&Authid::from(userid.clone())) {
        bail!("{USER_INACTIVE}");
    }
    if params.tfa_challenge.is_some() {
        bail!("second factor authentication is not available on this server");
    }
    let password = params.password.as_str();
    if password.starts_with("PBS:") {
        if let Ok(ticket_user) = verify_api_ticket(&private_key()?, password) {
            if ticket_user == *userid {
                return Ok(Login::Full);
            }
            bail!("ticket login failed - wrong userid");
        }
    } else if let (Some(path), Some(privs), Some(port)) = (&params.path, &params.privs, params.port)
    {
        if password.starts_with("PBSTERM:") {
            check_terminal_ticket(userid, password, path, privs, port)?;
            return Ok(Login::Terminal);
        }
    }
    realm::authenticate_user(userid, password, Some(client.ip()))?;
    // Second factors cannot be checked here: never hand out a full ticket instead.
    if tfa::user_has_second_factors(userid)? {
        bail!("second factor authentication is not available on this server");
    }
    Ok(Login::Full)
}

/// The login handler: `{username, ticket, CSRFPreventionToken}` on success, `401
/// permission check failed.` otherwise (the server core delays that answer).
pub fn create_ticket(env: &RpcEnv, params: Value) -> Result<Value, Error> {
    let params: TicketParams = typed_params(params)?;
    let client = env.client();
    let userid = &params.username;
    let result = authenticate(&params, client).and_then(|login| match login {
        Login::Terminal => Ok(json!({ "username": userid })),
        Login::Full => {
            let (ticket, csrf) = crate::auth::create_ticket(userid)?;
            Ok(json!({
                "username": userid,
                "ticket": ticket,
                "CSRFPreventionToken": csrf,
            }))
        }
    });
    match result {
        Ok(data) => {
            if data.get("ticket").is_some() {
                auth_log(&format!("successful auth for user '{userid}'"));
            }
            Ok(data)
        }
        Err(err) => {
            auth_log(&format!(
                "authentication failure; rhost={client} user={userid} msg={err:#}"
            ));
            Err(HttpError::new(StatusCode::UNAUTHORIZED, LOGIN_FAILED).into())
        }
    }
}

/// Adds the route.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let parameters = ObjectSchema::new()
        .param(schema::userid("username"))
        .param(schema::password("password"))
        .param(
            ParamSchema::string("tfa-challenge")
                .optional()
                .description("The signed TFA challenge string the user wants to respond to."),
        )
        .param(schema::acl_path().optional())
        .param(
            ParamSchema::string("privs")
                .optional()
                .description("Privilege the terminal ticket is checked for."),
        )
        .param(
            ParamSchema::integer("port")
                .minimum(0)
                .maximum(65535)
                .optional()
                .description("Port the terminal ticket is checked for."),
        );
    router.route(
        "/access/ticket",
        Method::POST,
        blocking_method(create_ticket)
            .permission(Permission::World)
            .protected(true)
            .parameters(parameters)
            .description("Create or verify authentication ticket."),
    )
}
