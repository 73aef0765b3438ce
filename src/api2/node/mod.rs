//! `/api2/json/nodes`: the local node and its tasks.

mod task_access;
mod tasks;

use http::Method;
use serde_json::json;

use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, HttpError, Permission, Router};

pub use task_access::{check_task_access, TaskAccessError};

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let router = router.route("nodes", Method::GET, list_nodes())?;
    tasks::register(router)
}

/// `GET nodes`: the local node only (superuser, the default access rule).
fn list_nodes() -> ApiMethod {
    ApiMethod::new(|_env, _params| async {
        let node = pbs_tasks::procfs::nodename()
            .map_err(|err| HttpError::internal(format!("unable to get node name: {err}")))?;
        Ok(json!([{ "node": node }]))
    })
    .permission(Permission::Superuser)
    .description("List nodes (only the local node).")
}
