//! The request pipeline: path checks, routing, authentication, permission, forwarding,
//! parameters, handler call, response envelope and access log.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, USER_AGENT};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use percent_encoding::percent_decode_str;
use tokio::time::Instant;

use crate::auth::{ApiAuth, AuthInfo};
use crate::error::HttpError;
use crate::formatter::{plain_error, OutputFormat};
use crate::log::{access_log_line, access_log_time, FileLogger};
use crate::params::{body_parameters, query_parameters, read_limited_body};
use crate::router::{
    full_body, ApiHandler, ApiMethod, BoxFuture, Permission, RawRequest, Router, RpcEnv,
    RpcEnvType, UpgradeRequest,
};
use crate::{forward, Body};

/// Path plus query longer than this is answered with `414 URI Too Long`.
pub const MAX_URI_LEN: usize = 3072;

/// Body of `GET /` on the API daemon.
pub const API_INDEX_PAGE: &str = "<center><h1>Proxmox Backup API Server</h1></center>";

/// Handler for everything outside `/api2/` (index page, static files).
pub type NonApiHandler =
    Arc<dyn Fn(Parts, SocketAddr) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Everything the request pipeline needs; shared by all connections of a server.
pub struct ServerConfig {
    /// Which daemon this is.
    pub env_type: RpcEnvType,
    /// The API tree below `/api2/<format>/`.
    pub router: Arc<Router>,
    /// Authentication and permission hooks.
    pub auth: Arc<dyn ApiAuth>,
    /// Where protected calls go when `env_type` is `Public` (`127.0.0.1:82`).
    pub forward_to: Option<SocketAddr>,
    /// Access log (one line per request not forwarded).
    pub access_log: Option<Arc<FileLogger>>,
    /// Auth log (authentication failures).
    pub auth_log: Option<Arc<FileLogger>>,
    /// Delay of 401 answers, counted from the request start.
    pub auth_failure_delay: Duration,
    /// Delay of 403 answers of the route permission check.
    pub permission_failure_delay: Duration,
    /// Handler for `GET` of non-API paths (index page, static files); `None` serves the API
    /// daemon's index page. Other methods are rejected before it is called.
    pub non_api: Option<NonApiHandler>,
}

impl ServerConfig {
    /// A configuration with the standard delays; the public (proxy) type forwards protected
    /// calls to `127.0.0.1:82`.
    pub fn new(env_type: RpcEnvType, router: Arc<Router>, auth: Arc<dyn ApiAuth>) -> Self {
        Self {
            env_type,
            router,
            auth,
            forward_to: match env_type {
                RpcEnvType::Public => Some(SocketAddr::from(([127, 0, 0, 1], 82))),
                RpcEnvType::Privileged => None,
            },
            access_log: None,
            auth_log: None,
            auth_failure_delay: Duration::from_secs(3),
            permission_failure_delay: Duration::from_millis(500),
            non_api: None,
        }
    }
}

struct Outcome {
    response: Response<Body>,
    auth_id: Option<String>,
    forwarded: bool,
}

impl Outcome {
    fn plain(response: Response<Body>) -> Self {
        Self {
            response,
            auth_id: None,
            forwarded: false,
        }
    }
}

/// Answers one request from `peer`.
pub async fn handle_request(
    config: Arc<ServerConfig>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let client = client_address(&config, &req, peer);

    let outcome = process(&config, req, client, start).await;

    if !outcome.forwarded {
        if let Some(log) = &config.access_log {
            log.log(&access_log_line(
                client.ip(),
                outcome.auth_id.as_deref(),
                &access_log_time(pbs_api_types::time::epoch_now()),
                method.as_str(),
                &path_and_query,
                outcome.response.status().as_u16(),
                outcome.response.body().size_hint().lower(),
                user_agent.as_deref(),
            ));
        }
    }
    outcome.response
}

/// The privileged daemon trusts the `Forwarded` header of loopback peers (the proxy).
fn client_address(config: &ServerConfig, req: &Request<Incoming>, peer: SocketAddr) -> SocketAddr {
    if config.env_type != RpcEnvType::Privileged || !peer.ip().is_loopback() {
        return peer;
    }
    req.headers()
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .and_then(forward::parse_forwarded_for)
        .unwrap_or(peer)
}

async fn process(
    config: &ServerConfig,
    req: Request<Incoming>,
    client: SocketAddr,
    start: Instant,
) -> Outcome {
    let uri = req.uri();
    let uri_len = uri
        .path_and_query()
        .map(|pq| pq.as_str().len())
        .unwrap_or(0);
    if uri_len > MAX_URI_LEN {
        let mut response = Response::new(full_body(""));
        *response.status_mut() = StatusCode::URI_TOO_LONG;
        return Outcome::plain(response);
    }
    let path = uri.path().to_string();
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| c.starts_with('.')) {
        return Outcome::plain(plain_error(&HttpError::bad_request(
            "path contains illegal components",
        )));
    }
    if components.first() != Some(&"api2") {
        return Outcome::plain(non_api_request(config, req, client, &components).await);
    }
    let Some(format_name) = components.get(1) else {
        return Outcome::plain(plain_error(&HttpError::not_found(format!(
            "invalid api path '{path}'"
        ))));
    };
    let format = match OutputFormat::from_component(format_name) {
        Ok(format) => format,
        Err(err) => return Outcome::plain(plain_error(&err)),
    };
    let normalized = format!("/{}", components.join("/"));
    let relative: Vec<String> = components[2..]
        .iter()
        .map(|c| percent_decode_str(c).decode_utf8_lossy().into_owned())
        .collect();
    api_request(config, req, client, start, format, &normalized, &relative).await
}

async fn non_api_request(
    config: &ServerConfig,
    req: Request<Incoming>,
    client: SocketAddr,
    components: &[&str],
) -> Response<Body> {
    if req.method() != Method::GET {
        return plain_error(&HttpError::bad_request("invalid http method for path"));
    }
    if let Some(handler) = &config.non_api {
        let (parts, _body) = req.into_parts();
        return handler(parts, client).await;
    }
    if components.is_empty() {
        let mut response = Response::new(full_body(API_INDEX_PAGE));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html"),
        );
        return response;
    }
    plain_error(&HttpError::not_found(format!(
        "Path '/{}' not found.",
        components.join("/")
    )))
}

async fn api_request(
    config: &ServerConfig,
    req: Request<Incoming>,
    client: SocketAddr,
    start: Instant,
    format: OutputFormat,
    normalized: &str,
    relative: &[String],
) -> Outcome {
    let mut captures = BTreeMap::new();
    let api_method = config
        .router
        .find_route(relative, &mut captures)
        .and_then(|node| node.method(req.method()));

    // Authentication is skipped only for existing `World` methods, so unknown paths of
    // unauthenticated clients give 401 rather than 404.
    let world = matches!(
        api_method.as_ref().map(|m| &m.permission),
        Some(Permission::World)
    );
    let auth_info: Option<AuthInfo> = if world {
        None
    } else {
        match config.auth.check_auth(req.headers(), req.method()).await {
            Ok(info) => Some(info),
            Err(err) => {
                if let Some(log) = &config.auth_log {
                    log.log(&format!("authentication failure; rhost={client} msg={err}"));
                }
                tokio::time::sleep_until(start + config.auth_failure_delay).await;
                let err = HttpError::new(
                    StatusCode::UNAUTHORIZED,
                    format!("authentication failed - {err}"),
                );
                return Outcome::plain(plain_error(&err));
            }
        }
    };
    let auth_id = auth_info.as_ref().map(|info| info.auth_id.to_string());

    let Some(api_method) = api_method else {
        let err = HttpError::not_found(format!("Path '{normalized}' not found."));
        return Outcome {
            response: format.format_error(&err),
            auth_id,
            forwarded: false,
        };
    };

    if let Some(info) = &auth_info {
        if let Err(err) =
            config
                .auth
                .check_permission(&info.auth_id, &api_method.permission, &captures)
        {
            tokio::time::sleep_until(start + config.permission_failure_delay).await;
            return Outcome {
                response: format.format_error(&err),
                auth_id,
                forwarded: false,
            };
        }
    }

    if api_method.protected && config.env_type == RpcEnvType::Public {
        if let Some(target) = config.forward_to {
            let response = match forward::forward_request(req, target, client).await {
                Ok(response) => response,
                Err(err) => format.format_error(&err),
            };
            return Outcome {
                response,
                auth_id,
                forwarded: true,
            };
        }
    }

    let env = RpcEnv::new(config.env_type, auth_info.map(|info| info.auth_id), client);
    let response = call_handler(&api_method, req, captures, env, format).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        tokio::time::sleep_until(start + config.auth_failure_delay).await;
    }
    Outcome {
        response,
        auth_id,
        forwarded: false,
    }
}

async fn call_handler(
    api_method: &ApiMethod,
    mut req: Request<Incoming>,
    captures: BTreeMap<String, String>,
    env: RpcEnv,
    format: OutputFormat,
) -> Response<Body> {
    let schema = &api_method.parameters;
    match &api_method.handler {
        ApiHandler::Json(_) | ApiHandler::Serialized(_) => {
            let deflate = accepts_deflate(req.headers());
            let (parts, body) = req.into_parts();
            let params = async {
                let body = read_limited_body(body).await?;
                body_parameters(&parts, &body, &captures, schema)
            }
            .await;
            let response = match params {
                Ok(params) => run_json_handler(&api_method.handler, env, params, format).await,
                Err(err) => format.format_error(&err),
            };
            if deflate {
                compress_deflate(response).await
            } else {
                response
            }
        }
        ApiHandler::Raw(handler) => {
            let (parts, body) = req.into_parts();
            let params = match query_parameters(&parts, &captures, schema) {
                Ok(params) => params,
                Err(err) => return format.format_error(&err),
            };
            let request = RawRequest {
                parts,
                body,
                params,
                env,
            };
            handler(request)
                .await
                .unwrap_or_else(|err| format.format_error(&err))
        }
        ApiHandler::Upgrade(handler) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let (parts, _body) = req.into_parts();
            let params = match query_parameters(&parts, &captures, schema) {
                Ok(params) => params,
                Err(err) => return format.format_error(&err),
            };
            let request = UpgradeRequest {
                parts,
                params,
                env,
                on_upgrade,
            };
            handler(request)
                .await
                .unwrap_or_else(|err| format.format_error(&err))
        }
    }
}

async fn run_json_handler(
    handler: &ApiHandler,
    env: RpcEnv,
    params: serde_json::Value,
    format: OutputFormat,
) -> Response<Body> {
    let result = match handler {
        ApiHandler::Json(handler) => handler(env.clone(), params)
            .await
            .map(|data| format.format_data(data, env.result_attributes())),
        ApiHandler::Serialized(handler) => handler(env.clone(), params)
            .await
            .map(|data| format.format_serialized(&data, env.result_attributes())),
        ApiHandler::Raw(_) | ApiHandler::Upgrade(_) => {
            Err(HttpError::internal("method does not take JSON parameters"))
        }
    };
    result.unwrap_or_else(|err| format.format_error(&err))
}

/// Checks an upgrade request: HTTP/1.x and an `Upgrade` header equal to `protocol`.
pub fn verify_upgrade_request(parts: &Parts, protocol: &str) -> Result<(), HttpError> {
    // HTTP/2 cannot carry an `Upgrade` header at all, so the version is checked first.
    if parts.version >= http::Version::HTTP_2 {
        return Err(HttpError::bad_request(format!(
            "unexpected http version '{:?}' (expected version < 2)",
            parts.version
        )));
    }
    let value = parts
        .headers
        .get(http::header::UPGRADE)
        .ok_or_else(|| HttpError::bad_request("missing Upgrade header"))?;
    if value.as_bytes() != protocol.as_bytes() {
        return Err(HttpError::bad_request("invalid protocol name"));
    }
    Ok(())
}

/// The `101 Switching Protocols` answer to an accepted upgrade.
pub fn upgrade_response(protocol: &'static str) -> Response<Body> {
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    headers.insert(http::header::UPGRADE, HeaderValue::from_static(protocol));
    response
}

fn accepts_deflate(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("deflate"))
        })
}

async fn compress_deflate(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let data = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return plain_error(&HttpError::internal(format!(
                "unable to read response body: {err}"
            )))
        }
    };
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 16),
        flate2::Compression::default(),
    );
    let compressed = encoder.write_all(&data).and_then(|_| encoder.finish());
    match compressed {
        Ok(compressed) => {
            parts
                .headers
                .insert(CONTENT_ENCODING, HeaderValue::from_static("deflate"));
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, full_body(compressed))
        }
        Err(_) => Response::from_parts(parts, full_body(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_checks() {
        let parts = |upgrade: Option<&str>, version| {
            let mut b = Request::builder().version(version).uri("/api2/json/backup");
            if let Some(u) = upgrade {
                b = b.header("upgrade", u);
            }
            b.body(()).unwrap().into_parts().0
        };
        let proto = "proxmox-backup-protocol-v1";
        assert!(verify_upgrade_request(&parts(Some(proto), http::Version::HTTP_11), proto).is_ok());
        assert_eq!(
            verify_upgrade_request(&parts(None, http::Version::HTTP_11), proto)
                .unwrap_err()
                .message,
            "missing Upgrade header"
        );
        assert_eq!(
            verify_upgrade_request(
                &parts(Some("Proxmox-backup-protocol-v1"), http::Version::HTTP_11),
                proto
            )
            .unwrap_err()
            .message,
            "invalid protocol name"
        );
        assert_eq!(
            verify_upgrade_request(&parts(Some(proto), http::Version::HTTP_2), proto)
                .unwrap_err()
                .message,
            "unexpected http version 'HTTP/2.0' (expected version < 2)"
        );
    }

    #[test]
    fn deflate_detection() {
        let mut headers = http::HeaderMap::new();
        assert!(!accepts_deflate(&headers));
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        assert!(!accepts_deflate(&headers));
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, Deflate;q=0.5"),
        );
        assert!(accepts_deflate(&headers));
    }
}
