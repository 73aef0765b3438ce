//! `/api2/json/access`: login tickets, users and API tokens, ACLs, effective permissions,
//! realms, roles and password changes.

pub mod acl;
pub mod domains;
pub mod password;
pub mod permissions;
pub mod roles;
pub mod schema;
pub mod ticket;
pub mod tokens;
pub mod users;

use anyhow::Error;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use pbs_api_types::Authid;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, HttpError, Router, RpcEnv};

/// The synchronous handler signature of the `access` endpoints; they read and write
/// configuration files, hash passwords or talk to PAM, so they run on a blocking thread.
pub type BlockingHandler = fn(&RpcEnv, Value) -> Result<Value, Error>;

/// Wraps a blocking handler into an API method.
pub(crate) fn blocking_method(handler: BlockingHandler) -> ApiMethod {
    ApiMethod::new(move |env, params| async move {
        tokio::task::spawn_blocking(move || handler(&env, params))
            .await
            .map_err(|err| HttpError::internal(format!("request handler aborted: {err}")))?
            .map_err(HttpError::from)
    })
}

/// The authenticated caller of a request.
pub(crate) fn caller(env: &RpcEnv) -> Result<Authid, Error> {
    env.auth_id()
        .cloned()
        .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "no authenticated user").into())
}

/// Deserializes the (already schema-checked) parameters into a typed struct.
pub(crate) fn typed_params<T: DeserializeOwned>(params: Value) -> Result<T, Error> {
    serde_json::from_value(params)
        .map_err(|err| HttpError::bad_request(format!("parameter error - {err}")).into())
}

/// Error of a missing configuration entry (404).
pub(crate) fn not_found(message: String) -> Error {
    HttpError::not_found(message).into()
}

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let router = acl::register(router)?;
    let router = domains::register(router)?;
    let router = password::register(router)?;
    let router = permissions::register(router)?;
    let router = roles::register(router)?;
    let router = ticket::register(router)?;
    let router = users::register(router)?;
    tokens::register(router)
}
