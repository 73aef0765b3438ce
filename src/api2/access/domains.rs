//! `GET access/domains`: the authentication realms.

use anyhow::Error;
use http::Method;
use serde_json::{json, Map, Value};

use pbs_rest_server::router::RouteError;
use pbs_rest_server::{Permission, Router, RpcEnv};

use super::blocking_method;
use crate::auth::realm::domains_config;

/// The built-in realms followed by the configured ones reduced to
/// `{realm, type, comment?, default?}`; sets the `digest` attribute (of `domains.cfg`).
pub fn list_domains(env: &RpcEnv, _params: Value) -> Result<Value, Error> {
    let mut list = vec![
        json!({
            "realm": "pam",
            "type": "pam",
            "comment": "Linux PAM standard authentication",
            "default": true,
        }),
        json!({
            "realm": "pbs",
            "type": "pbs",
            "comment": "Proxmox Backup authentication server",
        }),
    ];
    let (config, digest) = domains_config()?;
    for (id, ty, section) in config.iter() {
        let mut entry = Map::new();
        entry.insert("realm".into(), Value::String(id.to_string()));
        entry.insert("type".into(), Value::String(ty.to_string()));
        for key in ["comment", "default"] {
            if let Some(value) = section.get(key) {
                entry.insert(key.into(), value.clone());
            }
        }
        list.push(Value::Object(entry));
    }
    env.set_result_attrib("digest", Value::String(digest));
    Ok(Value::Array(list))
}

/// Adds the route.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "/access/domains",
        Method::GET,
        blocking_method(list_domains)
            .permission(Permission::World)
            .description("Authentication domain/realm index."),
    )
}
