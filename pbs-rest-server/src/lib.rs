//! HTTP(S) REST server core shared by the API daemon and the proxy: typed router with
//! parameter schemas, response envelopes, authentication/permission hooks, forwarding of
//! protected calls, TLS with a plain-HTTP redirector, access log, graceful shutdown.

pub mod auth;
pub mod control;
pub mod error;
pub mod formatter;
pub mod forward;
pub mod handler;
pub mod invoke;
pub mod log;
pub mod params;
pub mod reload;
pub mod router;
pub mod schema;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

/// Error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response body type used throughout the server.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

pub use auth::{ApiAuth, AuthError, AuthInfo};
pub use error::{HttpError, ParameterError};
pub use formatter::OutputFormat;
pub use handler::{upgrade_response, verify_upgrade_request, ServerConfig};
pub use log::FileLogger;
pub use router::{
    ApiHandler, ApiMethod, BoxFuture, JsonText, Permission, RawRequest, Router, RpcEnv, RpcEnvType,
    UpgradeRequest,
};
pub use schema::{ObjectSchema, ParamKind, ParamSchema, StringFormat};
pub use server::{spawn_server, ServerHandle, Transport};
pub use tls::{TlsAcceptorHandle, TlsConfig};
