//! Datastore maintenance: prune, garbage collection, verification and the usage status.

use http::Method;
use serde::Serialize;
use serde_json::{json, Value};

use pbs_api_types::{Authid, BackupNamespace, KeepOptions};
use pbs_config::datastore::Operation;
use pbs_config::privileges::{
    PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_PRUNE,
    PRIV_DATASTORE_READ, PRIV_DATASTORE_VERIFY,
};
use pbs_datastore::active_operations::ActiveOperations;
use pbs_datastore::prune::PruneMark;
use pbs_datastore::verify::{VerifyContext, VerifyFilter};
use pbs_datastore::{compute_prune_info, load_gc_status, BackupInfo, DataStore};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{
    ApiMethod, HttpError, JsonText, ObjectSchema, ParamSchema, Permission, Router, RpcEnv,
};
use pbs_tasks::WorkerTask;

use super::store_access::{
    bad_request, blocking, caller, check_access, check_group_access, id_param, ns_param, ns_privs,
    open_datastore, owns, param_group, param_ns, param_store, store_param, time_param, type_param,
    user_info, Access,
};

/// Worker type of prune runs.
pub const PRUNE_WORKER_TYPE: &str = "prune";
/// Worker type of garbage collection.
pub const GC_WORKER_TYPE: &str = "garbage_collection";

const KEEP_NAMES: [&str; 6] = [
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
];

// ---- prune ----------------------------------------------------------------------------------

/// One entry of the prune result.
#[derive(Serialize, Debug, Clone)]
struct PruneListItem {
    #[serde(rename = "backup-type")]
    backup_type: String,
    #[serde(rename = "backup-id")]
    backup_id: String,
    #[serde(rename = "backup-time")]
    backup_time: i64,
    keep: bool,
    protected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns: Option<String>,
}

/// The keep options from the request parameters.
fn keep_options(params: &Value) -> KeepOptions {
    let get = |name: &str| params[name].as_u64();
    KeepOptions {
        keep_last: get(KEEP_NAMES[0]),
        keep_hourly: get(KEEP_NAMES[1]),
        keep_daily: get(KEEP_NAMES[2]),
        keep_weekly: get(KEEP_NAMES[3]),
        keep_monthly: get(KEEP_NAMES[4]),
        keep_yearly: get(KEEP_NAMES[5]),
    }
}

/// Marks of all snapshots of a group, oldest first; without keep options all are kept.
fn prune_marks(
    snapshots: Vec<BackupInfo>,
    options: &KeepOptions,
) -> Result<Vec<(BackupInfo, PruneMark)>, HttpError> {
    let mut marks = if options.keeps_something() {
        compute_prune_info(snapshots, options).map_err(bad_request)?
    } else {
        snapshots
            .into_iter()
            .map(|info| {
                let mark = if info.protected {
                    PruneMark::Protected
                } else {
                    PruneMark::Keep
                };
                (info, mark)
            })
            .collect()
    };
    marks.sort_by_key(|(info, _)| info.backup_dir.time);
    Ok(marks)
}

fn prune_group(
    store: &DataStore,
    ns: &BackupNamespace,
    group: &pbs_api_types::BackupGroup,
    options: &KeepOptions,
    dry_run: bool,
    log: &dyn Fn(&str),
) -> Result<Vec<PruneListItem>, HttpError> {
    let snapshots = store.list_snapshots(ns, group).map_err(bad_request)?;
    let marks = prune_marks(snapshots, options)?;
    let mut out = Vec::new();
    for (info, mark) in marks {
        let keep = mark.keep();
        if !dry_run {
            log(&format!(
                "{} {}",
                info.backup_dir,
                if keep { "keep" } else { "remove" }
            ));
            if !keep {
                if let Err(err) = store.remove_backup_dir(ns, &info.backup_dir, false) {
                    log(&format!(
                        "failed to remove dir {:?}: {err:#}",
                        store
                            .snapshot_path(ns, &info.backup_dir)
                            .unwrap_or_default()
                    ));
                }
            }
        }
        out.push(PruneListItem {
            backup_type: group.ty.to_string(),
            backup_id: group.id.clone(),
            backup_time: info.backup_dir.time,
            keep,
            protected: mark == PruneMark::Protected,
            ns: (dry_run && !ns.is_root()).then(|| ns.to_string()),
        });
    }
    Ok(out)
}

fn prune(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let ns = param_ns(&params)?;
    let group = param_group(&params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        &auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_MODIFY,
        PRIV_DATASTORE_PRUNE,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    check_group_access(&store, access, &auth_id, &ns, &group)?;
    let options = keep_options(&params);
    let dry_run = params["dry-run"].as_bool().unwrap_or(false);
    let use_task = params["use-task"].as_bool().unwrap_or(false);

    if dry_run {
        let list = prune_group(&store, &ns, &group, &options, true, &|_| {})?;
        return serde_json::to_value(list).map_err(|err| HttpError::internal(err.to_string()));
    }

    let worker_id = format!("{store_name}:{ns}:{group}");
    let worker =
        WorkerTask::new(PRUNE_WORKER_TYPE, Some(worker_id), auth_id, false).map_err(bad_request)?;
    let run = {
        let worker = worker.clone();
        move || -> Result<Vec<PruneListItem>, HttpError> {
            if options.keeps_something() {
                worker.log_message(format!("retention options: {}", describe_keep(&params)));
            } else {
                worker.log_message("No prune selection - keeping all files.");
            }
            worker.log_message(format!(
                "Starting prune on {} group \"{}\"",
                store.name(),
                group
            ));
            let log = |line: &str| worker.log_message(line);
            prune_group(&store, &ns, &group, &options, false, &log)
        }
    };
    if use_task {
        let upid = worker.upid().to_string();
        std::thread::spawn(move || {
            let result = run()
                .map(|_| ())
                .map_err(|err| anyhow::format_err!("{err}"));
            worker.log_result(&result);
        });
        return Ok(Value::from(upid));
    }
    let result = run();
    worker.log_result(
        &result
            .as_ref()
            .map(|_| ())
            .map_err(|err| anyhow::format_err!("{err}")),
    );
    let list = result?;
    serde_json::to_value(list).map_err(|err| HttpError::internal(err.to_string()))
}

/// `prune-datastore`: prunes every group below `ns` (up to `max-depth`) as a task.
fn prune_datastore(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let ns = param_ns(&params)?;
    let max_depth = params["max-depth"].as_u64().map(|d| d as usize);
    let dry_run = params["dry-run"].as_bool().unwrap_or(false);
    let options = keep_options(&params);
    let info = user_info()?;
    check_access(
        &info,
        &auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_MODIFY | PRIV_DATASTORE_PRUNE,
        0,
    )?;
    let store = open_datastore(&store_name, Operation::Write)?;
    let worker_id = format!("{store_name}:{ns}");
    let caller_id = auth_id.clone();
    let upid = WorkerTask::spawn(
        PRUNE_WORKER_TYPE,
        Some(worker_id),
        auth_id,
        false,
        move |worker| {
            let log = |line: &str| worker.log_message(line);
            if !options.keeps_something() {
                log("No prune selection - keeping all files.");
            }
            let mut failed = false;
            for ns in store.iter_namespaces_recursive(&ns, max_depth) {
                let ns = ns?;
                // groups are pruned only where the caller has the privilege itself
                let privs = ns_privs(&info, &caller_id, store.name(), &ns);
                if privs & (PRIV_DATASTORE_MODIFY | PRIV_DATASTORE_PRUNE) == 0 {
                    continue;
                }
                for group in store.list_groups(&ns)? {
                    if privs & PRIV_DATASTORE_MODIFY == 0 {
                        let owned = store
                            .get_owner(&ns, &group)
                            .map(|owner| owns(&caller_id, &owner))
                            .unwrap_or(false);
                        if !owned {
                            continue;
                        }
                    }
                    log(&format!("Pruning group {}\"{group}\"", ns_prefix(&ns)));
                    if let Err(err) = prune_group(&store, &ns, &group, &options, dry_run, &log) {
                        log(&format!("failed to prune group {group}: {err}"));
                        failed = true;
                    }
                }
            }
            if failed {
                anyhow::bail!("prune failed for some groups");
            }
            Ok(())
        },
    )
    .map_err(bad_request)?;
    Ok(Value::from(upid))
}

fn describe_keep(params: &Value) -> String {
    KEEP_NAMES
        .iter()
        .filter_map(|name| params[*name].as_u64().map(|n| format!("--{name} {n}")))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- garbage collection -----------------------------------------------------------------

fn check_store_privs(auth_id: &Authid, store: &str, privs: u64) -> Result<(), HttpError> {
    let info = user_info()?;
    check_access(&info, auth_id, store, &BackupNamespace::root(), privs, 0).map(|_| ())
}

fn start_gc(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    check_store_privs(&auth_id, &store_name, PRIV_DATASTORE_MODIFY)?;
    let store = open_datastore(&store_name, Operation::Write)?;
    if gc_running(&store_name) {
        return Err(HttpError::bad_request("garbage collection already running"));
    }
    let upid = WorkerTask::spawn(
        GC_WORKER_TYPE,
        Some(store_name),
        auth_id,
        false,
        move |worker| {
            let upid = worker.upid().to_string();
            let log = |line: &str| worker.log_message(line);
            let abort = || worker.fail_on_abort();
            store.garbage_collection(Some(upid), &log, &abort)?;
            Ok(())
        },
    )
    .map_err(bad_request)?;
    Ok(Value::from(upid))
}

fn gc_status(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    check_store_privs(&auth_id, &store_name, PRIV_DATASTORE_AUDIT)?;
    let store = open_datastore(&store_name, Operation::Lookup)?;
    let status = load_gc_status(store.base_path()).map_err(bad_request)?;
    let mut value =
        serde_json::to_value(&status).map_err(|err| HttpError::internal(err.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.insert("store".to_string(), Value::from(store_name.clone()));
        map.entry("upid").or_insert(Value::Null);
        if let Some(schedule) = gc_schedule(&store_name) {
            map.insert("schedule".to_string(), Value::from(schedule));
        }
        if let Some((endtime, state, duration)) = last_run(status.upid.as_deref()) {
            map.insert("last-run-endtime".to_string(), Value::from(endtime));
            map.insert("last-run-state".to_string(), state);
            map.insert("duration".to_string(), Value::from(duration));
        }
    }
    Ok(value)
}

/// `{read, write}`: operations running on the datastore in all processes.
fn active_operations(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    check_store_privs(&auth_id, &store_name, PRIV_DATASTORE_AUDIT)?;
    let (config, _digest) = pbs_config::datastore::config().map_err(bad_request)?;
    pbs_config::datastore::lookup(&config, &store_name)
        .map_err(|_| HttpError::bad_request(format!("datastore '{store_name}' does not exist.")))?;
    let stats = ActiveOperations::default()
        .get(&store_name)
        .map_err(bad_request)?;
    serde_json::to_value(stats).map_err(|err| HttpError::internal(err.to_string()))
}

/// Whether a garbage collection task of `store` is active.
fn gc_running(store: &str) -> bool {
    let dir = pbs_tasks::TaskDir::default_location();
    pbs_tasks::list::read_active_tasks(&dir)
        .unwrap_or_default()
        .iter()
        .any(|task| {
            task.state.is_none()
                && task.upid.worker_type == GC_WORKER_TYPE
                && task.upid.worker_id.as_deref() == Some(store)
                && pbs_tasks::worker::worker_is_active(&task.upid)
        })
}

/// The configured `gc-schedule` of a datastore.
fn gc_schedule(store: &str) -> Option<String> {
    let (config, _) = pbs_config::datastore::config().ok()?;
    pbs_config::datastore::lookup(&config, store)
        .ok()?
        .gc_schedule
}

/// End time, state and duration of the finished task `upid`.
fn last_run(upid: Option<&str>) -> Option<(i64, Value, i64)> {
    let upid: pbs_api_types::UPID = upid?.parse().ok()?;
    if pbs_tasks::worker::worker_is_active(&upid) {
        return None;
    }
    let state = pbs_tasks::TaskDir::default_location()
        .read_task_state(&upid)
        .ok()?;
    let endtime = state.endtime();
    let kind = serde_json::to_value(state.state_type()).ok()?;
    Some((endtime, kind, endtime - upid.starttime))
}

// ---- status -------------------------------------------------------------------------------

fn datastore_status(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let verbose = params["verbose"].as_bool().unwrap_or(false);
    let info = user_info()?;
    let root = BackupNamespace::root();
    let privs = ns_privs(&info, &auth_id, &store_name, &root);
    let full = privs & (PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_BACKUP) != 0;
    let counts_only = privs & PRIV_DATASTORE_READ != 0
        || info.any_privs_below(
            &auth_id,
            &["datastore", store_name.as_str()],
            PRIV_DATASTORE_AUDIT
                | PRIV_DATASTORE_MODIFY
                | PRIV_DATASTORE_READ
                | PRIV_DATASTORE_BACKUP,
        );
    if !full && !counts_only {
        return Err(HttpError::new(
            http::StatusCode::FORBIDDEN,
            format!("permission check failed - missing privileges on /datastore/{store_name}"),
        ));
    }
    let store = open_datastore(&store_name, Operation::Read)?;
    let mut result = if full {
        let usage = crate::api2::status::fs_usage(store.base_path()).map_err(bad_request)?;
        json!({"total": usage.total, "used": usage.used, "avail": usage.avail})
    } else {
        json!({"total": 0, "used": 0, "avail": 0})
    };
    if full {
        if let Ok(status) = load_gc_status(store.base_path()) {
            result["gc-status"] =
                serde_json::to_value(status).map_err(|err| HttpError::internal(err.to_string()))?;
        }
    }
    if verbose {
        let mut counts = serde_json::Map::new();
        for ns in store.iter_namespaces_recursive(&root, None).flatten() {
            let ns_privs_value = ns_privs(&info, &auth_id, &store_name, &ns);
            let ns_full = ns_privs_value & PRIV_DATASTORE_AUDIT != 0;
            for group in store.list_groups(&ns).unwrap_or_default() {
                if !ns_full {
                    let owned = store
                        .get_owner(&ns, &group)
                        .map(|owner| owns(&auth_id, &owner))
                        .unwrap_or(false);
                    if !owned {
                        continue;
                    }
                }
                let snapshots = store.list_snapshots(&ns, &group).unwrap_or_default();
                let entry = counts
                    .entry(group.ty.to_string())
                    .or_insert_with(|| json!({"groups": 0, "snapshots": 0}));
                entry["groups"] = Value::from(entry["groups"].as_u64().unwrap_or(0) + 1);
                entry["snapshots"] =
                    Value::from(entry["snapshots"].as_u64().unwrap_or(0) + snapshots.len() as u64);
            }
        }
        result["counts"] = Value::Object(counts);
    }
    Ok(result)
}

// ---- verify -------------------------------------------------------------------------------

fn start_verify(auth_id: Authid, params: Value) -> Result<Value, HttpError> {
    let store_name = param_store(&params)?;
    let ns = param_ns(&params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        &auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_VERIFY,
        PRIV_DATASTORE_BACKUP,
    )?;
    let store = open_datastore(&store_name, Operation::Read)?;
    let filter = VerifyFilter {
        ignore_verified: params["ignore-verified"].as_bool().unwrap_or(true),
        outdated_after: params["outdated-after"].as_i64(),
    };
    let max_depth = params["max-depth"].as_u64().map(|d| d as usize);

    enum Target {
        Snapshot(pbs_api_types::BackupDir),
        Group(pbs_api_types::BackupGroup),
        All,
    }
    let (target, worker_type, worker_id) = match (
        params["backup-type"].as_str(),
        params["backup-id"].as_str(),
        params["backup-time"].as_i64(),
    ) {
        (Some(_), Some(_), Some(_)) => {
            let dir = super::store_access::param_snapshot(&params)?;
            check_group_access(&store, access, &auth_id, &ns, &dir.group)?;
            let id = format!(
                "{store_name}:{}{}/{}/{:08X}",
                ns_prefix(&ns),
                dir.group.ty,
                dir.group.id,
                dir.time
            );
            (Target::Snapshot(dir), "verify_snapshot", id)
        }
        (Some(_), Some(_), None) => {
            let group = param_group(&params)?;
            check_group_access(&store, access, &auth_id, &ns, &group)?;
            let id = format!("{store_name}:{}{}", ns_prefix(&ns), group);
            (Target::Group(group), "verify_group", id)
        }
        (None, None, None) => {
            let id = if ns.is_root() {
                store_name.clone()
            } else {
                format!("{store_name}:{ns}")
            };
            (Target::All, "verify", id)
        }
        _ => {
            return Err(HttpError::bad_request(
                "parameters do not specify a backup group or snapshot",
            ))
        }
    };
    let owner_filter = (access == Access::OwnedOnly).then(|| auth_id.clone());

    let upid = WorkerTask::spawn(
        worker_type,
        Some(worker_id),
        auth_id,
        false,
        move |worker| {
            let upid = worker.upid().to_string();
            let log_worker = worker.clone();
            let ctx = VerifyContext::new(
                store.chunk_store().clone(),
                store.tuning().chunk_order,
                Box::new(move |line| log_worker.log_message(line)),
            );
            let abort_worker = worker.clone();
            let abort = move || abort_worker.abort_requested();
            let now = pbs_api_types::time::epoch_now();
            let failed = match target {
                Target::Snapshot(dir) => {
                    let outcome = ctx.verify_backup_dir(&store, &ns, &dir, &upid, None, &abort)?;
                    if outcome == pbs_datastore::verify::SnapshotVerifyOutcome::Failed {
                        vec![dir.to_string()]
                    } else {
                        Vec::new()
                    }
                }
                Target::Group(group) => ctx.verify_backup_group(
                    &store,
                    &ns,
                    &group,
                    &upid,
                    Some((&filter, now)),
                    &abort,
                )?,
                Target::All => match &owner_filter {
                    None => ctx.verify_all_backups(
                        &store,
                        &ns,
                        max_depth,
                        &upid,
                        Some((&filter, now)),
                        &abort,
                    )?,
                    Some(owner) => {
                        let mut failed = Vec::new();
                        for ns in store.iter_namespaces_recursive(&ns, max_depth) {
                            let ns = ns?;
                            for group in store.list_groups(&ns)? {
                                let owned = store
                                    .get_owner(&ns, &group)
                                    .map(|o| owns(owner, &o))
                                    .unwrap_or(false);
                                if owned {
                                    failed.extend(ctx.verify_backup_group(
                                        &store,
                                        &ns,
                                        &group,
                                        &upid,
                                        Some((&filter, now)),
                                        &abort,
                                    )?);
                                }
                            }
                        }
                        failed
                    }
                },
            };
            if !failed.is_empty() {
                worker.log_message("Failed to verify the following snapshots/groups:");
                for name in &failed {
                    worker.log_message(format!("\t{name}"));
                }
                anyhow::bail!("verification failed - please check the log for details");
            }
            Ok(())
        },
    )
    .map_err(bad_request)?;
    Ok(Value::from(upid))
}

/// Namespace part of a verify worker id: `<ns>:` for non-root namespaces.
fn ns_prefix(ns: &BackupNamespace) -> String {
    if ns.is_root() {
        String::new()
    } else {
        format!("{ns}:")
    }
}

// ---- routes ---------------------------------------------------------------------------------

fn task_method<F>(handler: F) -> ApiMethod
where
    F: Fn(Authid, Value) -> Result<Value, HttpError> + Copy + Send + Sync + 'static,
{
    ApiMethod::new(move |env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        blocking(move || handler(auth_id, params)).await
    })
    .permission(Permission::Anybody)
}

fn keep_param(name: &'static str) -> ParamSchema {
    ParamSchema::integer(name).minimum(1).optional()
}

/// Adds prune, gc, status and verify below `admin/datastore/{store}`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    const BASE: &str = "/admin/datastore/{store}";
    let mut prune_schema = ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param())
        .param(id_param())
        .param(ParamSchema::boolean("dry-run").default(false))
        .param(ParamSchema::boolean("use-task").default(false));
    for name in KEEP_NAMES {
        prune_schema = prune_schema.param(keep_param(name));
    }
    let mut prune_datastore_schema = ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(ParamSchema::boolean("dry-run").default(false))
        .param(
            ParamSchema::integer("max-depth")
                .minimum(0)
                .maximum(7)
                .optional(),
        );
    for name in KEEP_NAMES {
        prune_datastore_schema = prune_datastore_schema.param(keep_param(name));
    }
    let verify_schema = ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param().optional())
        .param(id_param().optional())
        .param(time_param().optional())
        .param(ParamSchema::boolean("ignore-verified").optional())
        .param(ParamSchema::integer("outdated-after").minimum(1).optional())
        .param(
            ParamSchema::integer("max-depth")
                .minimum(0)
                .maximum(7)
                .optional(),
        );
    let store_only = || ObjectSchema::new().param(store_param());

    let status_method = ApiMethod::serialized(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let value = blocking(move || datastore_status(auth_id, params)).await?;
        JsonText::from_serialize(&value)
    })
    .permission(Permission::Anybody)
    .parameters(store_only().param(ParamSchema::boolean("verbose").default(false)));

    router
        .route(
            &format!("{BASE}/prune"),
            Method::POST,
            task_method(prune).parameters(prune_schema),
        )?
        .route(
            &format!("{BASE}/prune-datastore"),
            Method::POST,
            task_method(prune_datastore).parameters(prune_datastore_schema),
        )?
        .route(
            &format!("{BASE}/gc"),
            Method::GET,
            task_method(gc_status).parameters(store_only()),
        )?
        .route(
            &format!("{BASE}/gc"),
            Method::POST,
            task_method(start_gc).parameters(store_only()),
        )?
        .route(
            &format!("{BASE}/active-operations"),
            Method::GET,
            task_method(active_operations).parameters(store_only()),
        )?
        .route(&format!("{BASE}/status"), Method::GET, status_method)?
        .route(
            &format!("{BASE}/verify"),
            Method::POST,
            task_method(start_verify).parameters(verify_schema),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_api_types::{BackupDir, BackupGroup, BackupType};

    fn info(time: i64, protected: bool) -> BackupInfo {
        let group = BackupGroup::new(BackupType::Vm, "100").unwrap();
        BackupInfo {
            ns: BackupNamespace::root(),
            backup_dir: BackupDir::new(group, time).unwrap(),
            files: vec!["index.json.blob".to_string()],
            protected,
        }
    }

    #[test]
    fn prune_without_options_keeps_everything_oldest_first() {
        let marks = prune_marks(
            vec![info(300, false), info(100, true), info(200, false)],
            &KeepOptions::default(),
        )
        .unwrap();
        let times: Vec<_> = marks.iter().map(|(i, m)| (i.backup_dir.time, *m)).collect();
        assert_eq!(
            times,
            vec![
                (100, PruneMark::Protected),
                (200, PruneMark::Keep),
                (300, PruneMark::Keep)
            ]
        );
    }

    #[test]
    fn keep_last_one_removes_older_snapshots() {
        let options = keep_options(&json!({"keep-last": 1}));
        let marks = prune_marks(vec![info(100, false), info(200, false)], &options).unwrap();
        assert!(!marks[0].1.keep());
        assert!(marks[1].1.keep());
        assert_eq!(describe_keep(&json!({"keep-last": 1})), "--keep-last 1");
    }

    #[test]
    fn verify_worker_ids_include_non_root_namespaces() {
        assert_eq!(ns_prefix(&BackupNamespace::root()), "");
        assert_eq!(ns_prefix(&BackupNamespace::new("a/b").unwrap()), "a/b:");
    }
}
