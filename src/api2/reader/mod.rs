//! The reader protocol `proxmox-backup-reader-protocol-v1`: `GET /api2/json/reader` checks
//! access to one snapshot, holds a shared lock on it and then serves an HTTP/2 session on
//! the upgraded connection (see [`session`]).

pub mod session;

use std::sync::Arc;

use http::Method;
use pbs_config::datastore::Operation;
use pbs_config::privileges::{PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_READ};
use pbs_datastore::locks::LockMode;
use pbs_rest_server::router::{RouteError, UpgradeRequest};
use pbs_rest_server::{
    upgrade_response, verify_upgrade_request, ApiMethod, HttpError, ObjectSchema, ParamSchema,
    Permission, Router,
};
use pbs_tasks::WorkerTask;

use crate::api2::admin::store_access::{
    acl_path_text, bad_request, caller, id_param, ns_param, ns_privs, open_datastore, owns,
    param_ns, param_snapshot, param_store, store_param, time_param, type_param, user_info,
};

/// The value of the `Upgrade` header that starts a reader session.
pub const READER_PROTOCOL: &str = "proxmox-backup-reader-protocol-v1";
/// Worker type of a reader session.
pub const READER_WORKER_TYPE: &str = "reader";

fn upgrade_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param())
        .param(id_param())
        .param(time_param())
        .param(ParamSchema::boolean("debug").default(false))
}

/// Adds the upgrade route `GET /reader`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let method = ApiMethod::upgrade(start_reader)
        .permission(Permission::Anybody)
        .parameters(upgrade_schema())
        .description("Upgrade to the backup reader protocol (HTTP/2).");
    router.route("/reader", Method::GET, method)
}

async fn start_reader(
    req: UpgradeRequest,
) -> Result<http::Response<pbs_rest_server::Body>, HttpError> {
    let UpgradeRequest {
        parts,
        params,
        env,
        on_upgrade,
    } = req;
    let auth_id = caller(&env)?;
    let debug = params["debug"].as_bool().unwrap_or(false);
    let store_name = param_store(&params)?;
    let ns = param_ns(&params)?;

    let info = user_info()?;
    let privs = ns_privs(&info, &auth_id, &store_name, &ns);
    let full_access = privs & PRIV_DATASTORE_READ != 0;
    if !full_access && privs & PRIV_DATASTORE_BACKUP == 0 {
        return Err(HttpError::bad_request(format!(
            "no permissions on {}",
            acl_path_text(&store_name, &ns)
        )));
    }

    let store = {
        let name = store_name.clone();
        tokio::task::spawn_blocking(move || open_datastore(&name, Operation::Read))
            .await
            .map_err(|err| HttpError::internal(err.to_string()))??
    };
    let snapshot = param_snapshot(&params)?;
    verify_upgrade_request(&parts, READER_PROTOCOL)?;

    if !full_access {
        let owner = store.get_owner(&ns, &snapshot.group).map_err(bad_request)?;
        if !owns(&auth_id, &owner) {
            return Err(HttpError::bad_request("backup owner check failed!"));
        }
    }

    let path = store.snapshot_path(&ns, &snapshot).map_err(bad_request)?;
    if !path.is_dir() {
        return Err(HttpError::bad_request(format!(
            "snapshot {snapshot} does not exist."
        )));
    }
    let lock = store
        .lock_snapshot(
            &ns,
            &snapshot,
            LockMode::Shared,
            "locked by another operation",
        )
        .map_err(bad_request)?;

    let worker_id = format!(
        "{}:{}/{}/{:08X}",
        store_name, snapshot.group.ty, snapshot.group.id, snapshot.time
    );
    let store = Arc::new(store);
    let session_store = Arc::clone(&store);
    WorkerTask::spawn_async(
        READER_WORKER_TYPE,
        Some(worker_id),
        auth_id,
        false,
        move |worker| async move {
            // the lock lives as long as the session
            let _lock = lock;
            worker.log_message(format!(
                "starting new backup reader datastore '{}': {:?}",
                session_store.name(),
                session_store.base_path()
            ));
            let upgraded = on_upgrade
                .await
                .map_err(|err| anyhow::format_err!("connection upgrade failed - {err}"))?;
            let state = Arc::new(session::ReaderSession::new(
                session_store,
                ns,
                snapshot,
                path,
                Arc::clone(&worker),
                debug,
            ));
            let abort_worker = Arc::clone(&worker);
            tokio::select! {
                result = session::serve(upgraded, state) => result?,
                _ = abort_worker.abort_future() => anyhow::bail!("task aborted"),
            }
            worker.log_message("reader finished successfully");
            Ok(())
        },
    )
    .map_err(bad_request)?;

    Ok(upgrade_response(READER_PROTOCOL))
}
