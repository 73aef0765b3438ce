//! `/api2/json/config`: configuration objects.

pub mod datastore;
pub mod jobstate;

use pbs_rest_server::router::RouteError;
use pbs_rest_server::Router;

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    datastore::register(router)
}
