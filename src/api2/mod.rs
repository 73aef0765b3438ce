//! The REST API tree under `/api2/json`, shared by both daemons and by
//! `proxmox-backup-manager` (which calls it in-process).

pub mod access;
pub mod admin;
pub mod backup;
pub mod config;
pub mod node;
pub mod node_status;
pub mod reader;
pub mod status;
pub mod version;

use pbs_rest_server::router::RouteError;
use pbs_rest_server::Router;

/// The complete API route tree.
pub fn router() -> Result<Router, RouteError> {
    let router = Router::new();
    let router = access::register(router)?;
    let router = admin::register(router)?;
    let router = backup::register(router)?;
    let router = reader::register(router)?;
    let router = config::register(router)?;
    let router = node::register(router)?;
    let router = node_status::register(router)?;
    let router = status::register(router)?;
    version::register(router)
}
