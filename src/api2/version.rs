//! Top-level informational calls: `GET /api2/json/version` (server version, release and
//! source revision) and `GET /api2/json/ping`.

use http::Method;
use serde_json::{json, Value};

use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, Permission, Router};

/// `<major>.<minor>` of the package version.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);

/// The package release (the patch level of the package version).
pub const RELEASE: &str = env!("CARGO_PKG_VERSION_PATCH");

/// The source revision, taken from `REPOID` at build time (the packaging sets it to the git
/// commit); builds outside the packaging have no revision.
pub const REPOID: &str = match option_env!("REPOID") {
    Some(id) => id,
    None => "unknown",
};

/// The version object as returned by the API.
pub fn version_info() -> Value {
    json!({
        "version": VERSION,
        "release": RELEASE,
        "repoid": REPOID,
    })
}

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router
        .route(
            "/version",
            Method::GET,
            ApiMethod::new(|_env, _params| async { Ok(version_info()) })
                .permission(Permission::Anybody)
                .description("Proxmox Backup Server API version."),
        )?
        .route(
            "/ping",
            Method::GET,
            ApiMethod::new(|_env, _params| async { Ok(json!({ "pong": true })) })
                .permission(Permission::World)
                .description("Dummy method which replies with `{ \"pong\": true }`."),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_package_version() {
        let info = version_info();
        let full = format!(
            "{}.{}",
            info["version"].as_str().unwrap(),
            info["release"].as_str().unwrap()
        );
        assert_eq!(full, env!("CARGO_PKG_VERSION"));
        assert_eq!(info["version"], "3.2");
        assert!(info["repoid"].is_string());
    }
}
