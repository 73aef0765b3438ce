//! Calling API methods in-process (command-line tools): route lookup, parameter parsing and
//! verification exactly as for an HTTP request, but without authentication or forwarding.

use std::collections::BTreeMap;

use http::Method;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::error::{HttpError, ParameterError};
use crate::router::{ApiHandler, ApiMethod, Router, RpcEnv};

/// Parameters of an in-process call.
#[derive(Clone, Debug)]
pub enum InvokeParams {
    /// A JSON object, verified like an `application/json` body.
    Json(Value),
    /// Name/value strings (command-line words), converted by the method's schema like a
    /// form body; repeated names fill array parameters.
    Strings(Vec<(String, String)>),
}

/// Looks up `path` (relative to `/api2/json`, `/`-separated, components percent-decoded)
/// and `method`, returning the API method and the path captures.
pub fn lookup_method(
    router: &Router,
    method: &Method,
    path: &str,
) -> Result<(ApiMethod, BTreeMap<String, String>), HttpError> {
    let components: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| percent_decode_str(c).decode_utf8_lossy().into_owned())
        .collect();
    let mut captures = BTreeMap::new();
    router
        .find_route(&components, &mut captures)
        .and_then(|node| node.method(method))
        .map(|api| (api, captures))
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "Path '/api2/json/{}' not found.",
                components.join("/")
            ))
        })
}

/// Builds the verified parameter object of `api` from `params` and the path captures.
pub fn verify_parameters(
    api: &ApiMethod,
    params: InvokeParams,
    captures: &BTreeMap<String, String>,
) -> Result<Value, HttpError> {
    let schema = &api.parameters;
    let mut value = match params {
        InvokeParams::Json(mut value) => {
            if value.is_null() {
                value = Value::Object(Map::new());
            }
            if let Value::Object(map) = &mut value {
                let mut errors = ParameterError::new();
                for (key, text) in captures {
                    if let Some(prop) = schema.lookup(key) {
                        match prop.kind.parse_simple(text) {
                            Ok(parsed) => {
                                map.insert(key.clone(), parsed);
                            }
                            Err(err) => errors.push(key.clone(), err),
                        }
                    }
                }
                errors.into_result()?;
            }
            schema.verify_json(&value)?;
            value
        }
        InvokeParams::Strings(mut pairs) => {
            pairs.extend(captures.iter().map(|(k, v)| (k.clone(), v.clone())));
            schema.parse_strings(&pairs)?
        }
    };
    schema.apply_defaults(&mut value);
    Ok(value)
}

/// Calls the API method at `method` + `path` with `params` in `env`; returns the result
/// data and the attributes the handler set (e.g. `digest`, `total`).
///
/// Route permissions are not checked (the caller runs with full local privileges); the
/// handlers' own checks apply to `env`'s auth id. Raw and upgrade methods cannot be called.
pub async fn invoke(
    router: &Router,
    method: Method,
    path: &str,
    params: InvokeParams,
    env: &RpcEnv,
) -> Result<(Value, Map<String, Value>), HttpError> {
    let (api, captures) = lookup_method(router, &method, path)?;
    let params = verify_parameters(&api, params, &captures)?;
    let data = match &api.handler {
        ApiHandler::Json(handler) => handler(env.clone(), params).await?,
        ApiHandler::Serialized(handler) => {
            let text = handler(env.clone(), params).await?;
            serde_json::from_str(text.as_str())
                .map_err(|err| HttpError::internal(format!("invalid handler result: {err}")))?
        }
        ApiHandler::Raw(_) | ApiHandler::Upgrade(_) => {
            return Err(HttpError::bad_request(format!(
                "{method} {path}: method cannot be called in-process"
            )))
        }
    };
    Ok((data, env.result_attributes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{JsonText, RpcEnvType};
    use crate::schema::{ObjectSchema, ParamKind, ParamSchema};
    use serde_json::json;
    use std::net::SocketAddr;

    fn router() -> Router {
        let echo = ApiMethod::new(|env: RpcEnv, params| async move {
            env.set_result_attrib("digest", json!("abc"));
            Ok(json!({"params": params, "auth": env.auth_id().map(|a| a.to_string())}))
        })
        .parameters(
            ObjectSchema::new()
                .param(ParamSchema::string("name").min_length(3))
                .param(ParamSchema::integer("limit").optional().default(50))
                .param(ParamSchema::boolean("running").optional())
                .param(
                    ParamSchema::array(
                        "delete",
                        ParamKind::String {
                            min_length: None,
                            max_length: None,
                            format: None,
                        },
                    )
                    .optional(),
                ),
        );
        let serialized = ApiMethod::serialized(|_env, _params| async move {
            JsonText::from_serialize(&json!([{"b": 1, "a": 2}]))
        });
        Router::new()
            .route("/config/datastore/{name}", Method::PUT, echo)
            .unwrap()
            .route("/config/list", Method::GET, serialized)
            .unwrap()
    }

    fn env() -> RpcEnv {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        RpcEnv::new(
            RpcEnvType::Privileged,
            Some("root@pam".parse().unwrap()),
            addr,
        )
    }

    fn run(
        method: Method,
        path: &str,
        params: InvokeParams,
    ) -> Result<(Value, Map<String, Value>), HttpError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(invoke(&router(), method, path, params, &env()))
    }

    fn strings(list: &[(&str, &str)]) -> InvokeParams {
        InvokeParams::Strings(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn string_parameters_are_typed_and_defaulted() {
        let (data, attrs) = run(
            Method::PUT,
            "config/datastore/store1",
            strings(&[("running", "yes"), ("delete", "a"), ("delete", "b")]),
        )
        .unwrap();
        assert_eq!(
            data,
            json!({"params": {"name": "store1", "limit": 50, "running": true,
                "delete": ["a", "b"]}, "auth": "root@pam"})
        );
        assert_eq!(attrs.get("digest"), Some(&json!("abc")));
    }

    #[test]
    fn parameter_errors_match_the_http_path() {
        let err = run(
            Method::PUT,
            "config/datastore/st",
            strings(&[("limit", "x")]),
        )
        .unwrap_err();
        assert_eq!(err.code, http::StatusCode::BAD_REQUEST);
        assert!(err.message.starts_with("parameter verification failed"));
        assert!(err.message.contains("'limit'"), "{}", err.message);
        let err = run(
            Method::PUT,
            "config/datastore/store1",
            InvokeParams::Json(json!({"limit": "5"})),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "parameter verification failed - 'limit': Expected integer value."
        );
        let err = run(
            Method::PUT,
            "config/datastore/store1",
            strings(&[("bogus", "1")]),
        )
        .unwrap_err();
        assert!(err.message.contains("'bogus'"), "{}", err.message);
    }

    #[test]
    fn json_parameters_and_serialized_results() {
        let (data, _) = run(
            Method::PUT,
            "config/datastore/a%20b",
            InvokeParams::Json(json!({"limit": 7})),
        )
        .unwrap();
        assert_eq!(data["params"], json!({"name": "a b", "limit": 7}));
        let (data, _) = run(Method::GET, "/config/list", InvokeParams::Json(Value::Null)).unwrap();
        assert_eq!(data, json!([{"a": 2, "b": 1}]));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let err = run(Method::DELETE, "config/list", strings(&[])).unwrap_err();
        assert_eq!(err.code, http::StatusCode::NOT_FOUND);
        assert_eq!(err.message, "Path '/api2/json/config/list' not found.");
    }
}
