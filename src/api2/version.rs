//! `/api2/json/version` (being written).

use pbs_rest_server::router::RouteError;
use pbs_rest_server::Router;

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    Ok(router)
}
