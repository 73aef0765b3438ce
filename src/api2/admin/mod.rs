//! `admin/datastore/{store}/…`: browsing and maintaining the content of a datastore.

pub mod catalog;
pub mod content;
pub mod dir_download;
pub mod maintenance;
pub mod namespace;
pub mod store_access;
pub mod stores;

use pbs_rest_server::router::RouteError;
use pbs_rest_server::Router;

/// Adds the `admin/datastore/{store}` routes.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let router = stores::register(router)?;
    let router = catalog::register(router)?;
    let router = content::register(router)?;
    let router = maintenance::register(router)?;
    namespace::register(router)
}
