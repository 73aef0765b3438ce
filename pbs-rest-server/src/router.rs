//! A typed router: a tree of fixed path components and `{param}` captures with up to four
//! methods per node.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{Map, Value};

use pbs_api_types::Authid;

use crate::error::HttpError;
use crate::schema::ObjectSchema;
use crate::Body;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which daemon runs the request (decides whether protected calls are forwarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcEnvType {
    /// The unprivileged proxy (TLS, forwards protected calls).
    Public,
    /// The privileged API daemon (executes protected calls).
    Privileged,
}

/// Per-request environment handed to handlers.
#[derive(Clone, Debug)]
pub struct RpcEnv {
    env_type: RpcEnvType,
    auth_id: Option<Authid>,
    client: SocketAddr,
    attributes: Arc<Mutex<Map<String, Value>>>,
}

impl RpcEnv {
    /// A new environment for a request from `client`.
    pub fn new(env_type: RpcEnvType, auth_id: Option<Authid>, client: SocketAddr) -> Self {
        Self {
            env_type,
            auth_id,
            client,
            attributes: Arc::new(Mutex::new(Map::new())),
        }
    }

    /// Which daemon serves the request.
    pub fn env_type(&self) -> RpcEnvType {
        self.env_type
    }

    /// The authenticated identity (`None` for `World` routes).
    pub fn auth_id(&self) -> Option<&Authid> {
        self.auth_id.as_ref()
    }

    /// The client address (for forwarded requests: the proxy's client).
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// Adds a top-level attribute next to `data` in the response (e.g. `digest`, `total`).
    pub fn set_result_attrib(&self, name: &str, value: Value) {
        if let Ok(mut map) = self.attributes.lock() {
            map.insert(name.to_string(), value);
        }
    }

    /// The attributes set so far.
    pub fn result_attributes(&self) -> Map<String, Value> {
        self.attributes
            .lock()
            .map(|map| map.clone())
            .unwrap_or_default()
    }
}

/// A check on the authenticated identity.
pub type UserCheck = fn(&Authid) -> bool;

/// Route-level access rule; evaluated by the authentication hook (`ApiAuth`).
#[derive(Clone, Debug)]
pub enum Permission {
    /// No authentication at all.
    World,
    /// Any authenticated identity (the handler does the real checks).
    Anybody,
    /// Only `root@pam`.
    Superuser,
    /// The identity must pass the check function.
    User(UserCheck),
    /// The identity string must equal the path parameter with this name.
    UserParam(&'static str),
    /// Privileges on an ACL path; `{name}` placeholders are filled from path parameters.
    Privilege {
        /// ACL path template, e.g. `/datastore/{store}`.
        path: &'static str,
        /// Privilege bit mask.
        privs: u64,
        /// Any-of (`true`) or all-of (`false`).
        partial: bool,
    },
    /// At least one of these.
    Or(Vec<Permission>),
    /// All of these.
    And(Vec<Permission>),
}

impl Permission {
    /// Splits an ACL path template into components, filling `{name}` placeholders from the
    /// path parameters; a value containing `/` expands to several components.
    pub fn expand_path(template: &str, path_params: &BTreeMap<String, String>) -> Vec<String> {
        let mut out = Vec::new();
        for component in template.split('/').filter(|c| !c.is_empty()) {
            match component
                .strip_prefix('{')
                .and_then(|c| c.strip_suffix('}'))
            {
                Some(name) => {
                    if let Some(value) = path_params.get(name) {
                        out.extend(
                            value
                                .split('/')
                                .filter(|c| !c.is_empty())
                                .map(str::to_string),
                        );
                    }
                }
                None => out.push(component.to_string()),
            }
        }
        out
    }
}

/// The JSON handler signature after boxing.
pub type JsonHandlerFn =
    Arc<dyn Fn(RpcEnv, Value) -> BoxFuture<'static, Result<Value, HttpError>> + Send + Sync>;

/// The `data` member already serialized, so that struct field order is kept (streamed list
/// endpoints such as the task and snapshot lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(String);

impl JsonText {
    /// Serializes `value` compactly.
    pub fn from_serialize<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, HttpError> {
        serde_json::to_string(value)
            .map(Self)
            .map_err(|err| HttpError::internal(format!("unable to serialize result: {err}")))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The handler signature of methods answering pre-serialized data, after boxing.
pub type SerializedHandlerFn =
    Arc<dyn Fn(RpcEnv, Value) -> BoxFuture<'static, Result<JsonText, HttpError>> + Send + Sync>;

/// What a raw handler receives: parameters from query string and path only, the body unread.
pub struct RawRequest {
    /// Method, URI and headers.
    pub parts: http::request::Parts,
    /// The unread request body (the payload).
    pub body: hyper::body::Incoming,
    /// Verified parameters.
    pub params: Value,
    /// Request environment.
    pub env: RpcEnv,
}

/// The raw handler signature after boxing.
pub type RawHandlerFn =
    Arc<dyn Fn(RawRequest) -> BoxFuture<'static, Result<Response<Body>, HttpError>> + Send + Sync>;

/// What an upgrade handler receives; it answers `101` and then takes over the connection.
pub struct UpgradeRequest {
    /// Method, URI and headers of the HTTP/1.1 upgrade request.
    pub parts: http::request::Parts,
    /// Verified parameters (query string and path only).
    pub params: Value,
    /// Request environment.
    pub env: RpcEnv,
    /// Resolves to the raw connection once the `101` response was sent.
    pub on_upgrade: hyper::upgrade::OnUpgrade,
}

/// The upgrade handler signature after boxing.
pub type UpgradeHandlerFn = Arc<
    dyn Fn(UpgradeRequest) -> BoxFuture<'static, Result<Response<Body>, HttpError>> + Send + Sync,
>;

/// The kind of handler behind a method.
#[derive(Clone)]
pub enum ApiHandler {
    /// Parameters from query/form/JSON body; result wrapped in the response envelope.
    Json(JsonHandlerFn),
    /// Like `Json`, but the data comes pre-serialized and is written after the result
    /// attributes (`{"total":N,"data":[...]}`).
    Serialized(SerializedHandlerFn),
    /// Parameters from query string and path only; the handler reads the body and builds
    /// the response itself.
    Raw(RawHandlerFn),
    /// HTTP/1.1 protocol upgrade (parameters from query string and path only); the handler
    /// checks the request (see `verify_upgrade_request`) and answers `101`.
    Upgrade(UpgradeHandlerFn),
}

/// One method of a route.
#[derive(Clone)]
pub struct ApiMethod {
    /// The handler.
    pub handler: ApiHandler,
    /// Route-level access rule.
    pub permission: Permission,
    /// Forwarded to the privileged daemon when served by the proxy.
    pub protected: bool,
    /// Parameter description.
    pub parameters: ObjectSchema,
    /// One-line description.
    pub description: &'static str,
}

impl ApiMethod {
    fn with_handler(handler: ApiHandler) -> Self {
        Self {
            handler,
            // Methods without an explicit rule are superuser-only.
            permission: Permission::Superuser,
            protected: false,
            parameters: ObjectSchema::new(),
            description: "",
        }
    }

    /// A JSON method from an async function `(RpcEnv, Value) -> Result<Value, HttpError>`.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(RpcEnv, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HttpError>> + Send + 'static,
    {
        Self::with_handler(ApiHandler::Json(Arc::new(move |env, params| {
            Box::pin(handler(env, params))
        })))
    }

    /// A JSON method whose result is serialized by the handler (field order kept).
    pub fn serialized<F, Fut>(handler: F) -> Self
    where
        F: Fn(RpcEnv, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<JsonText, HttpError>> + Send + 'static,
    {
        Self::with_handler(ApiHandler::Serialized(Arc::new(move |env, params| {
            Box::pin(handler(env, params))
        })))
    }

    /// A raw method that reads the body and builds its own response.
    pub fn raw<F, Fut>(handler: F) -> Self
    where
        F: Fn(RawRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, HttpError>> + Send + 'static,
    {
        Self::with_handler(ApiHandler::Raw(Arc::new(move |req| Box::pin(handler(req)))))
    }

    /// An upgrade method.
    pub fn upgrade<F, Fut>(handler: F) -> Self
    where
        F: Fn(UpgradeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, HttpError>> + Send + 'static,
    {
        Self::with_handler(ApiHandler::Upgrade(Arc::new(move |req| {
            Box::pin(handler(req))
        })))
    }

    /// Sets the access rule.
    pub fn permission(mut self, permission: Permission) -> Self {
        self.permission = permission;
        self
    }

    /// Marks the method protected.
    pub fn protected(mut self, protected: bool) -> Self {
        self.protected = protected;
        self
    }

    /// Sets the parameter schema.
    pub fn parameters(mut self, parameters: ObjectSchema) -> Self {
        self.parameters = parameters;
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }
}

#[derive(Default)]
enum SubRoutes {
    #[default]
    None,
    /// Fixed names, kept sorted.
    Dirs(Vec<(String, Router)>),
    /// One capture for any component.
    MatchAll { param: String, router: Box<Router> },
}

/// A node of the route tree.
#[derive(Default)]
pub struct Router {
    get: Option<ApiMethod>,
    put: Option<ApiMethod>,
    post: Option<ApiMethod>,
    delete: Option<ApiMethod>,
    sub: SubRoutes,
}

/// Errors building a route tree (programming errors in route definitions).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// Fixed sub-directories and a match-all capture on the same node.
    #[error("route '{0}': a node has either fixed sub-directories or one parameter, not both")]
    MixedChildren(String),
    /// Two different parameter names at the same position.
    #[error("route '{0}': conflicting parameter names at the same position")]
    ParamConflict(String),
    /// The method is not one of GET/PUT/POST/DELETE.
    #[error("route '{0}': unsupported method")]
    Method(String),
    /// The same method registered twice.
    #[error("route '{0}': method defined twice")]
    Duplicate(String),
}

impl Router {
    /// An empty node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the GET method of this node.
    pub fn get(mut self, method: ApiMethod) -> Self {
        self.get = Some(method);
        self
    }

    /// Sets the PUT method of this node.
    pub fn put(mut self, method: ApiMethod) -> Self {
        self.put = Some(method);
        self
    }

    /// Sets the POST method of this node.
    pub fn post(mut self, method: ApiMethod) -> Self {
        self.post = Some(method);
        self
    }

    /// Sets the DELETE method of this node.
    pub fn delete(mut self, method: ApiMethod) -> Self {
        self.delete = Some(method);
        self
    }

    /// Registers `method` at `path` (`/`-separated; `{name}` components are captures),
    /// creating intermediate nodes.
    pub fn route(
        mut self,
        path: &str,
        http_method: Method,
        api: ApiMethod,
    ) -> Result<Self, RouteError> {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        self.insert(&components, path, http_method, api)?;
        Ok(self)
    }

    fn insert(
        &mut self,
        components: &[&str],
        path: &str,
        http_method: Method,
        api: ApiMethod,
    ) -> Result<(), RouteError> {
        let Some((first, rest)) = components.split_first() else {
            let slot = match http_method {
                Method::GET => &mut self.get,
                Method::PUT => &mut self.put,
                Method::POST => &mut self.post,
                Method::DELETE => &mut self.delete,
                _ => return Err(RouteError::Method(path.to_string())),
            };
            if slot.is_some() {
                return Err(RouteError::Duplicate(path.to_string()));
            }
            *slot = Some(api);
            return Ok(());
        };
        let capture = first.strip_prefix('{').and_then(|c| c.strip_suffix('}'));
        let child = match (capture, &mut self.sub) {
            (Some(name), sub @ SubRoutes::None) => {
                *sub = SubRoutes::MatchAll {
                    param: name.to_string(),
                    router: Box::default(),
                };
                match sub {
                    SubRoutes::MatchAll { router, .. } => router.as_mut(),
                    _ => unreachable!("just assigned"),
                }
            }
            (Some(name), SubRoutes::MatchAll { param, router }) => {
                if param != name {
                    return Err(RouteError::ParamConflict(path.to_string()));
                }
                router.as_mut()
            }
            (None, sub @ SubRoutes::None) => {
                *sub = SubRoutes::Dirs(Vec::new());
                Self::dir_entry(sub, first)
            }
            (None, sub @ SubRoutes::Dirs(_)) => Self::dir_entry(sub, first),
            _ => return Err(RouteError::MixedChildren(path.to_string())),
        };
        child.insert(rest, path, http_method, api)
    }

    fn dir_entry<'a>(sub: &'a mut SubRoutes, name: &str) -> &'a mut Router {
        let SubRoutes::Dirs(list) = sub else {
            unreachable!("caller checked the variant")
        };
        let index = match list.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(index) => index,
            Err(index) => {
                list.insert(index, (name.to_string(), Router::new()));
                index
            }
        };
        &mut list[index].1
    }

    /// Walks the tree along percent-decoded path components, collecting captures.
    pub fn find_route(
        &self,
        components: &[String],
        captures: &mut BTreeMap<String, String>,
    ) -> Option<&Router> {
        let mut node = self;
        for component in components {
            node = match &node.sub {
                SubRoutes::None => return None,
                SubRoutes::Dirs(list) => {
                    let index = list
                        .binary_search_by(|(n, _)| n.as_str().cmp(component))
                        .ok()?;
                    &list[index].1
                }
                SubRoutes::MatchAll { param, router } => {
                    captures.insert(param.clone(), component.clone());
                    router
                }
            };
        }
        Some(node)
    }

    /// The method registered on this node for `method`; GET on a directory node without
    /// its own GET lists the sub-directories.
    pub fn method(&self, method: &Method) -> Option<ApiMethod> {
        let found = match *method {
            Method::GET => self.get.as_ref(),
            Method::PUT => self.put.as_ref(),
            Method::POST => self.post.as_ref(),
            Method::DELETE => self.delete.as_ref(),
            _ => None,
        };
        if let Some(found) = found {
            return Some(found.clone());
        }
        match (&self.sub, method) {
            (SubRoutes::Dirs(list), &Method::GET) => {
                let listing: Vec<Value> = list
                    .iter()
                    .map(|(name, _)| serde_json::json!({ "subdir": name }))
                    .collect();
                let listing = Value::Array(listing);
                Some(
                    ApiMethod::new(move |_env, _params| {
                        let listing = listing.clone();
                        async move { Ok(listing) }
                    })
                    .permission(Permission::Anybody)
                    .description("Directory index."),
                )
            }
            _ => None,
        }
    }
}

/// A JSON response body from bytes.
pub fn full_body(data: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dummy() -> ApiMethod {
        ApiMethod::new(|_env, params| async move { Ok(params) })
    }

    fn comps(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn routes_with_captures_and_sorted_dirs() {
        let router = Router::new()
            .route("/admin/datastore/{store}/gc", Method::GET, dummy())
            .unwrap()
            .route("/admin/datastore/{store}/gc", Method::POST, dummy())
            .unwrap()
            .route("/admin/ping", Method::GET, dummy())
            .unwrap()
            .route("/access/ticket", Method::POST, dummy())
            .unwrap();
        let mut captures = BTreeMap::new();
        let node = router
            .find_route(&comps("admin/datastore/store1/gc"), &mut captures)
            .unwrap();
        assert!(node.method(&Method::POST).is_some());
        assert!(node.method(&Method::DELETE).is_none());
        assert!(node.method(&Method::PATCH).is_none());
        assert_eq!(captures.get("store").map(String::as_str), Some("store1"));
        assert!(router
            .find_route(&comps("admin/nothing"), &mut captures)
            .is_none());
        assert!(router
            .find_route(&comps("admin/ping/x"), &mut captures)
            .is_none());
        let root = router.find_route(&[], &mut captures).unwrap();
        let ApiHandler::Json(list) = root.method(&Method::GET).unwrap().handler else {
            panic!("directory listing is a JSON handler");
        };
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let listing = rt
            .block_on(list(
                RpcEnv::new(RpcEnvType::Public, None, addr),
                Value::Null,
            ))
            .unwrap();
        assert_eq!(
            listing,
            serde_json::json!([{"subdir":"access"},{"subdir":"admin"}])
        );
    }

    #[test]
    fn route_definition_errors() {
        let err = Router::new()
            .route("/a/{x}", Method::GET, dummy())
            .unwrap()
            .route("/a/b", Method::GET, dummy())
            .err();
        assert_eq!(err, Some(RouteError::MixedChildren("/a/b".into())));
        let err = Router::new()
            .route("/a/{x}", Method::GET, dummy())
            .unwrap()
            .route("/a/{y}/z", Method::GET, dummy())
            .err();
        assert_eq!(err, Some(RouteError::ParamConflict("/a/{y}/z".into())));
        let err = Router::new()
            .route("/a", Method::GET, dummy())
            .unwrap()
            .route("/a", Method::GET, dummy())
            .err();
        assert_eq!(err, Some(RouteError::Duplicate("/a".into())));
    }

    #[test]
    fn permission_path_expansion() {
        let mut params = BTreeMap::new();
        params.insert("store".to_string(), "s1".to_string());
        params.insert("ns".to_string(), "a/b".to_string());
        assert_eq!(
            Permission::expand_path("/datastore/{store}/{ns}", &params),
            vec!["datastore", "s1", "a", "b"]
        );
        assert!(Permission::expand_path("/", &params).is_empty());
    }
}
