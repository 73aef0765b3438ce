//! `/api2/json/backup`: the backup protocol (`proxmox-backup-protocol-v1`). The upgrade
//! request is checked and answered here; the HTTP/2 session is served by [`session`].

pub mod environment;
pub mod handlers;
pub mod session;
pub mod upload_chunk;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Error};
use http::{Method, Response, StatusCode};
use serde_json::Value;

use crate::api2::admin::store_access::count_operation;
use pbs_api_types::names::is_safe_id;
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType};
use pbs_config::datastore::Operation;
use pbs_config::privileges::PRIV_DATASTORE_BACKUP;
use pbs_config::CachedUserInfo;
use pbs_datastore::datastore::DataStoreTuning;
use pbs_datastore::locks::{BackupDirGuard, LockMode};
use pbs_datastore::verify::{SnapshotVerifyOutcome, VerifyContext};
use pbs_datastore::{BackupInfo, DataStore, DatastoreFSyncLevel, HierarchyError};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{
    upgrade_response, verify_upgrade_request, ApiMethod, Body, HttpError, ObjectSchema,
    ParamSchema, Permission, Router, StringFormat, UpgradeRequest,
};
use pbs_tasks::WorkerTask;

use environment::{BackupEnvironment, SnapshotTarget};

/// The protocol name in the `Upgrade` header.
pub const PROTOCOL_NAME: &str = "proxmox-backup-protocol-v1";

fn check_namespace(text: &str) -> Result<(), String> {
    text.parse::<BackupNamespace>()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

fn upgrade_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(
            ParamSchema::string("store")
                .min_length(3)
                .max_length(32)
                .format(StringFormat::Pattern(is_safe_id)),
        )
        .param(
            ParamSchema::string("ns")
                .max_length(256)
                .format(StringFormat::Verify(check_namespace))
                .optional(),
        )
        .param(ParamSchema::string("backup-type").format(StringFormat::Enum(&["vm", "ct", "host"])))
        .param(ParamSchema::string("backup-id").format(StringFormat::Pattern(is_safe_id)))
        .param(ParamSchema::integer("backup-time").minimum(1))
        .param(ParamSchema::boolean("debug").default(false))
        .param(ParamSchema::boolean("benchmark").default(false))
}

/// Adds the upgrade route of the backup protocol to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "backup",
        Method::GET,
        ApiMethod::upgrade(upgrade_to_backup_protocol)
            .permission(Permission::Anybody)
            .parameters(upgrade_schema())
            .description("Upgraded to backup protocol ('proxmox-backup-protocol-v1')."),
    )
}

/// What the checks of the upgrade request produce for the session.
struct SessionSetup {
    datastore: Arc<DataStore>,
    ns: BackupNamespace,
    backup_dir: BackupDir,
    relative_path: PathBuf,
    snapshot_path: PathBuf,
    last_backup: Option<BackupInfo>,
    worker_type: &'static str,
    worker_id: String,
    benchmark: bool,
    /// Whether a successful backup is verified right away.
    verify_new: bool,
    /// Group lock and base snapshot lock: held for the whole session.
    guards: Vec<Box<dyn Send>>,
    /// Exclusive lock on the new snapshot (downgraded for verify-new).
    snapshot_guard: BackupDirGuard,
}

/// Opens a datastore for writing, with the tuning of its configuration; also returns its
/// `verify-new` option.
pub fn lookup_datastore_for_write(store: &str) -> Result<(DataStore, bool), Error> {
    let (config, _) = pbs_config::datastore::config()?;
    let store_config = pbs_config::datastore::lookup(&config, store)?;
    store_config.check_maintenance(Operation::Write)?;
    let tuning = store_config.get_tuning()?;
    let sync_level = match tuning.sync_level {
        Some(level) => serde_json::to_value(level)?
            .as_str()
            .unwrap_or("filesystem")
            .parse::<DatastoreFSyncLevel>()?,
        None => DatastoreFSyncLevel::default(),
    };
    let datastore = DataStore::open_with_options(
        store,
        &store_config.path,
        pbs_buildcfg::datastore_lock_dir(),
        DataStoreTuning {
            sync_level,
            ..Default::default()
        },
    )?;
    let datastore = count_operation(datastore, Operation::Write)?;
    Ok((datastore, store_config.verify_new.unwrap_or(false)))
}

/// Whether `auth_id` may write into a group owned by `owner`.
pub fn check_backup_owner(owner: &Authid, auth_id: &Authid) -> Result<(), Error> {
    let allowed = owner == auth_id
        || (owner.is_token() && !auth_id.is_token() && owner.user() == auth_id.user());
    if !allowed {
        bail!("backup owner check failed ({auth_id} != {owner})");
    }
    Ok(())
}

fn to_http(err: Error) -> HttpError {
    if let Some(HierarchyError::NamespaceNotFound(_)) = err.downcast_ref::<HierarchyError>() {
        return HttpError::not_found("namespace not found");
    }
    HttpError::bad_request(format!("{err:#}"))
}

/// Steps 1–12 of the upgrade processing (all blocking file system work).
fn prepare_session(
    params: &Value,
    auth_id: &Authid,
    upgrade_check: Result<(), HttpError>,
) -> Result<SessionSetup, HttpError> {
    let benchmark = params["benchmark"].as_bool().unwrap_or(false);
    let store = params["store"]
        .as_str()
        .ok_or_else(|| HttpError::bad_request("missing store parameter"))?;
    let ns = match &params["ns"] {
        Value::Null => BackupNamespace::default(),
        Value::String(text) => text
            .parse::<BackupNamespace>()
            .map_err(|err| HttpError::bad_request(err.to_string()))?,
        _ => return Err(HttpError::bad_request("invalid ns parameter")),
    };
    let backup_type: BackupType = params["backup-type"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|err: pbs_api_types::datastore::BackupPathError| {
            HttpError::bad_request(err.to_string())
        })?;
    let backup_id = params["backup-id"].as_str().unwrap_or_default();
    let backup_time = params["backup-time"].as_i64().unwrap_or_default();
    let group = BackupGroup::new(backup_type, backup_id)
        .map_err(|err| HttpError::bad_request(err.to_string()))?;
    let backup_dir = BackupDir::new(group.clone(), backup_time)
        .map_err(|err| HttpError::bad_request(err.to_string()))?;

    // 2. privileges
    let mut acl_path = vec!["datastore".to_string(), store.to_string()];
    acl_path.extend(ns.components().iter().cloned());
    let acl_refs: Vec<&str> = acl_path.iter().map(String::as_str).collect();
    let user_info = CachedUserInfo::new().map_err(to_http)?;
    if user_info
        .check_privs(auth_id, &acl_refs, PRIV_DATASTORE_BACKUP, false)
        .is_err()
    {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "missing permissions 'Datastore.Backup' on '/{}'",
                acl_path.join("/")
            ),
        ));
    }

    // 3. datastore
    let (datastore, verify_new) = lookup_datastore_for_write(store).map_err(to_http)?;
    let datastore = Arc::new(datastore);

    // 4. upgrade header and HTTP version
    upgrade_check?;

    // 5. namespace
    if !datastore.namespace_exists(&ns) {
        return Err(HttpError::not_found("namespace not found"));
    }

    // 6./7. worker id and type
    let worker_id = format!("{store}:{}/{}", group.ty.as_str(), group.id);
    let is_benchmark_group = group.ty == BackupType::Host && group.id == "benchmark";
    let worker_type = if is_benchmark_group {
        if !benchmark {
            return Err(HttpError::bad_request(
                "unable to run benchmark without --benchmark flags",
            ));
        }
        "benchmark"
    } else {
        if benchmark {
            return Err(HttpError::bad_request(
                "benchmark flags is only allowed on 'host/benchmark'",
            ));
        }
        "backup"
    };

    // 8./9. group lock and owner
    let (owner, group_guard) = datastore
        .create_locked_backup_group(&ns, &group, auth_id)
        .map_err(to_http)?;
    if !benchmark {
        check_backup_owner(&owner, auth_id).map_err(to_http)?;
    }
    let mut guards: Vec<Box<dyn Send>> = vec![Box::new(group_guard)];

    // 10./11. base snapshot
    let last_backup = base_snapshot(&datastore, &ns, &group).map_err(to_http)?;
    if let Some(base) = &last_backup {
        if backup_time <= base.backup_dir.time {
            return Err(HttpError::bad_request(
                "backup timestamp is older than last backup.",
            ));
        }
        let guard = datastore
            .lock_snapshot(
                &ns,
                &base.backup_dir,
                LockMode::Shared,
                "base snapshot is already locked by another operation",
            )
            .map_err(to_http)?;
        guards.push(Box::new(guard));
    }

    // 12. the new snapshot
    let (relative_path, snapshot_guard) = datastore
        .create_new_locked_backup_dir(&ns, &backup_dir)
        .map_err(to_http)?;
    let snapshot_path = datastore.base_path().join(&relative_path);

    Ok(SessionSetup {
        datastore,
        ns,
        backup_dir,
        relative_path,
        snapshot_path,
        last_backup,
        worker_type,
        worker_id,
        benchmark,
        verify_new,
        guards,
        snapshot_guard,
    })
}

/// The newest finished snapshot of the group, unless its verification failed.
fn base_snapshot(
    datastore: &DataStore,
    ns: &BackupNamespace,
    group: &BackupGroup,
) -> Result<Option<BackupInfo>, Error> {
    let Some(info) = datastore.last_backup(ns, group, true)? else {
        return Ok(None);
    };
    let (manifest, _) = datastore
        .load_manifest(ns, &info.backup_dir)
        .with_context(|| format!("unable to load manifest of {}", info.backup_dir))?;
    let failed = manifest.unprotected["verify_state"]["state"].as_str() == Some("failed");
    Ok(if failed { None } else { Some(info) })
}

async fn upgrade_to_backup_protocol(req: UpgradeRequest) -> Result<Response<Body>, HttpError> {
    let UpgradeRequest {
        parts,
        params,
        env,
        on_upgrade,
    } = req;
    let auth_id = env
        .auth_id()
        .cloned()
        .ok_or_else(|| HttpError::internal("no authenticated user"))?;
    let debug = params["debug"].as_bool().unwrap_or(false);
    let upgrade_check = verify_upgrade_request(&parts, PROTOCOL_NAME);
    let setup_auth_id = auth_id.clone();
    let setup = tokio::task::spawn_blocking(move || {
        prepare_session(&params, &setup_auth_id, upgrade_check)
    })
    .await
    .map_err(|err| HttpError::internal(format!("upgrade task failed - {err}")))??;

    let client = env.client();
    let worker_type = setup.worker_type;
    WorkerTask::spawn_async(
        worker_type,
        Some(setup.worker_id.clone()),
        auth_id.clone(),
        false,
        move |worker| run_session(worker, setup, auth_id, debug, client, on_upgrade),
    )
    .map_err(to_http)?;
    Ok(upgrade_response(PROTOCOL_NAME))
}

async fn run_session(
    worker: Arc<WorkerTask>,
    setup: SessionSetup,
    auth_id: Authid,
    debug: bool,
    client: std::net::SocketAddr,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<(), Error> {
    let SessionSetup {
        datastore,
        ns,
        backup_dir,
        relative_path,
        snapshot_path,
        last_backup,
        benchmark,
        verify_new,
        guards,
        snapshot_guard,
        ..
    } = setup;
    worker.log_message(format!(
        "starting new {} on datastore '{}' from {}: {:?}",
        if benchmark { "benchmark" } else { "backup" },
        datastore.name(),
        client.ip(),
        relative_path.display().to_string(),
    ));
    let target = SnapshotTarget {
        datastore: Arc::clone(&datastore),
        ns: ns.clone(),
        backup_dir: backup_dir.clone(),
        snapshot_path,
        last_backup,
    };
    let env = Arc::new(BackupEnvironment::new(
        Arc::clone(&worker),
        target,
        auth_id,
        debug,
    ));

    let connection = async {
        let upgraded = on_upgrade
            .await
            .map_err(|err| format_err!("upgrade failed - {err}"))?;
        session::serve(Arc::clone(&env), upgraded).await
    };
    let result = tokio::select! {
        result = connection => result,
        _ = worker.abort_future() => Err(format_err!("task aborted")),
    };
    // Removing files and directories is blocking work.
    tokio::task::spawn_blocking(move || {
        end_session(
            &worker,
            &env,
            result,
            SessionEnd {
                benchmark,
                verify_new,
                guards,
                snapshot_guard,
            },
        )
    })
    .await
    .map_err(|err| format_err!("session end task failed - {err}"))?
}

/// What the end of a session still needs besides the environment.
struct SessionEnd {
    benchmark: bool,
    verify_new: bool,
    guards: Vec<Box<dyn Send>>,
    snapshot_guard: BackupDirGuard,
}

/// Session termination (spec §3.5): keep or remove the snapshot, release the locks, start
/// verify-new.
fn end_session(
    worker: &WorkerTask,
    env: &BackupEnvironment,
    result: Result<(), Error>,
    end: SessionEnd,
) -> Result<(), Error> {
    env.drop_writers();
    let remove = |what: &str| {
        worker.log_message(what);
        if let Err(err) = env
            .datastore
            .remove_backup_dir(&env.ns, &env.backup_dir, true)
        {
            worker.log_warning(format!("removing snapshot failed - {err:#}"));
        }
    };
    let outcome = if end.benchmark {
        worker.log_message("benchmark finished successfully");
        remove("removing benchmark snapshot");
        Ok(())
    } else {
        match (result, env.is_finished()) {
            (Ok(()), true) => {
                worker.log_message("backup finished successfully");
                Ok(())
            }
            (Err(err), true) => {
                worker.log_message(format!("backup had errors but finished: {err:#}"));
                Ok(())
            }
            (Ok(()), false) => {
                let err = format_err!("backup ended but finished flag is not set.");
                worker.log_message(format!("backup ended and finish failed: {err}"));
                remove("removing unfinished backup");
                Err(err)
            }
            (Err(err), false) => {
                worker.log_message(format!("backup failed: {err:#}"));
                remove("removing failed backup");
                Err(err)
            }
        }
    };
    drop(end.guards);
    if outcome.is_ok() && !end.benchmark && end.verify_new {
        spawn_verify_new(
            worker,
            Arc::clone(&env.datastore),
            env.ns.clone(),
            env.backup_dir.clone(),
            end.snapshot_guard,
        );
    }
    outcome
}

/// Verifies a just finished snapshot in a task of its own, holding the (downgraded) snapshot
/// lock so that the snapshot cannot be removed in between.
fn spawn_verify_new(
    worker: &WorkerTask,
    datastore: Arc<DataStore>,
    ns: BackupNamespace,
    backup_dir: BackupDir,
    mut snapshot_guard: BackupDirGuard,
) {
    if let Err(err) = snapshot_guard.downgrade() {
        worker.log_warning(format!("unable to downgrade snapshot lock - {err}"));
        return;
    }
    let worker_id = format!(
        "{}:{}/{}/{:08X}",
        datastore.name(),
        backup_dir.group.ty.as_str(),
        backup_dir.group.id,
        backup_dir.time
    );
    let auth_id = worker.upid().auth_id.clone();
    let result = WorkerTask::spawn("verify", Some(worker_id), auth_id, false, move |task| {
        let _guard = snapshot_guard;
        let log_task = Arc::clone(&task);
        let context = VerifyContext::new(
            datastore.chunk_store().clone(),
            datastore.tuning().chunk_order,
            Box::new(move |line| log_task.log_message(line)),
        );
        let upid = task.upid().to_string();
        let outcome =
            context.verify_backup_dir(&datastore, &ns, &backup_dir, &upid, None, &|| {
                task.abort_requested()
            })?;
        if outcome == SnapshotVerifyOutcome::Failed {
            bail!("verification failed - please check the log for details");
        }
        Ok(())
    });
    if let Err(err) = result {
        worker.log_warning(format!("unable to start verify task - {err:#}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Authid {
        text.parse().unwrap()
    }

    #[test]
    fn owner_rules() {
        assert!(check_backup_owner(&id("a@pbs"), &id("a@pbs")).is_ok());
        // a user may write into groups of its own tokens, not the other way round
        assert!(check_backup_owner(&id("a@pbs!t"), &id("a@pbs")).is_ok());
        assert_eq!(
            check_backup_owner(&id("a@pbs"), &id("a@pbs!t"))
                .unwrap_err()
                .to_string(),
            "backup owner check failed (a@pbs!t != a@pbs)"
        );
        assert!(check_backup_owner(&id("a@pbs!t"), &id("a@pbs!u")).is_err());
        assert!(check_backup_owner(&id("b@pbs"), &id("a@pbs")).is_err());
    }

    #[test]
    fn upgrade_parameters() {
        let schema = upgrade_schema();
        let pairs = |extra: &[(&str, &str)]| {
            let mut list: Vec<(String, String)> = [
                ("store", "store1"),
                ("backup-type", "host"),
                ("backup-id", "elsa"),
                ("backup-time", "1717600000"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            list.sort();
            list
        };
        assert!(schema.parse_strings(&pairs(&[("debug", "true")])).is_ok());
        assert!(schema.parse_strings(&pairs(&[("ns", "a/b")])).is_ok());
        assert!(schema
            .parse_strings(&pairs(&[("ns", "a/b/c/d/e/f/g/h")]))
            .is_err());
        assert_eq!(
            schema
                .parse_strings(&pairs(&[("extra", "1")]))
                .unwrap_err()
                .to_string(),
            "parameter verification failed - 'extra': schema does not allow additional properties."
        );
        let mut wrong_type = pairs(&[]);
        for (key, value) in wrong_type.iter_mut() {
            if key == "backup-type" {
                *value = "disk".to_string();
            }
        }
        assert!(schema.parse_strings(&wrong_type).is_err());
        assert!(schema.parse_strings(&pairs(&[])).is_ok());
    }
}
