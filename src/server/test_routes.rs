//! Routes for the end-to-end tests, only registered when the daemon is started with
//! `PBS_TEST_ROUTES=1` (read once at start; never set in production):
//!
//! * `POST test/worker` (protected, so it runs in the API daemon): starts a task;
//! * `POST test/local-worker` (not protected): the same task inside the serving process;
//! * `GET test/sleep`: answers after `ms` milliseconds (a slow request).
//!
//! Tasks log `lines` numbered lines with `sleep-ms` between them and stop on abort.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, HttpError, ObjectSchema, ParamSchema, Permission, Router};
use pbs_tasks::WorkerTask;

/// Environment variable enabling the test routes.
pub const TEST_ROUTES_ENV: &str = "PBS_TEST_ROUTES";

/// Whether the test routes are requested for this process.
pub fn enabled() -> bool {
    std::env::var(TEST_ROUTES_ENV).is_ok_and(|v| v == "1")
}

fn worker_method(protected: bool) -> ApiMethod {
    ApiMethod::new(|env, params| async move {
        let auth_id = env
            .auth_id()
            .cloned()
            .ok_or_else(|| HttpError::bad_request("no authenticated user"))?;
        let lines = params["lines"].as_u64().unwrap_or(3);
        let pause = Duration::from_millis(params["sleep-ms"].as_u64().unwrap_or(0));
        let fail = params["fail"].as_bool().unwrap_or(false);
        let upid = WorkerTask::spawn_async(
            "testworker",
            None,
            auth_id,
            false,
            move |worker| async move {
                for n in 1..=lines {
                    worker.log_message(format!("line {n}"));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = worker.abort_future() => {}
                    }
                    worker.fail_on_abort()?;
                }
                if fail {
                    anyhow::bail!("failed on request");
                }
                Ok(())
            },
        )
        .map_err(|err| HttpError::internal(format!("{err:#}")))?;
        Ok(json!(upid))
    })
    .permission(Permission::Anybody)
    .protected(protected)
    .parameters(
        ObjectSchema::new()
            .param(ParamSchema::integer("lines").minimum(0).default(3))
            .param(ParamSchema::integer("sleep-ms").minimum(0).default(0))
            .param(ParamSchema::boolean("fail").optional()),
    )
}

/// Adds the test routes.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router
        .route("test/worker", Method::POST, worker_method(true))?
        .route("test/local-worker", Method::POST, worker_method(false))?
        .route(
            "test/sleep",
            Method::GET,
            ApiMethod::new(|_env, params: Value| async move {
                let ms = params["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({ "slept": ms, "pid": std::process::id() }))
            })
            .permission(Permission::Anybody)
            .parameters(ObjectSchema::new().param(ParamSchema::integer("ms").minimum(0))),
        )
}
