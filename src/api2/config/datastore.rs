//! `config/datastore` and `config/datastore/{name}`: list, create (as a task), read, update
//! and remove (as a task) datastore definitions in `datastore.cfg`.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Error};
use http::Method;
use serde_json::{Map, Value};

use pbs_api_types::{Authid, Userid};
use pbs_config::datastore::{
    ChunkOrder, DataStoreConfig, MaintenanceMode, MaintenanceType, SyncLevel, DATASTORE_TYPE,
    MAINTENANCE_MODE_SCHEMA, NOTIFY_SCHEMA, TUNING_SCHEMA,
};
use pbs_config::jobs::{JobFile, PruneJobConfig, PRUNE, PRUNE_TYPE, SYNC, VERIFICATION};
use pbs_config::privileges::{
    PRIV_DATASTORE_ALLOCATE, PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_MODIFY,
};
use pbs_config::{CachedUserInfo, ConfigLockGuard};
use pbs_datastore::chunk_store::DatastoreFSyncLevel;
use pbs_datastore::datastore::DataStoreTuning;
use pbs_datastore::verify::ChunkOrder as VerifyChunkOrder;
use pbs_datastore::DataStore;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{
    ApiMethod, HttpError, ObjectSchema, ParamKind, ParamSchema, ParameterError, Permission, Router,
    RpcEnv, StringFormat,
};
use pbs_tasks::WorkerTask;

use super::jobstate;

/// Worker type of the create task.
pub const CREATE_WORKER_TYPE: &str = "create-datastore";
/// Worker type of the remove task.
pub const DELETE_WORKER_TYPE: &str = "delete-datastore";
/// Job type of the garbage collection job state of a datastore.
pub const GC_JOB_TYPE: &str = "garbage_collection";
/// Job type of prune job states.
pub const PRUNE_JOB_TYPE: &str = "prunejob";

/// Properties that only the legacy per-datastore pruning used.
const PRUNE_PROPERTIES: &[&str] = &[
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
    "prune-schedule",
];

/// Properties `PUT config/datastore/{name}` may delete.
const DELETABLE_PROPERTIES: &[&str] = &[
    "comment",
    "gc-schedule",
    "prune-schedule",
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
    "verify-new",
    "notify-user",
    "notify",
    "notification-mode",
    "tuning",
    "maintenance-mode",
];

/// Sub-directories and files of a datastore removed by `destroy-data` before `.chunks`.
const CONTENT_DIRS: &[&str] = &["ns", "ct", "vm", "host"];
const GC_STATUS_FILE: &str = ".gc-status";

/// Optimistic locking failure (`digest` given but the file changed).
const DIGEST_MISMATCH: &str =
    "detected modified configuration - file changed by other user? Try again.";

fn not_found(name: &str) -> HttpError {
    HttpError::not_found(format!("datastore '{name}' does not exist."))
}

fn param_error(name: &str, message: impl Into<String>) -> HttpError {
    let mut err = ParameterError::new();
    err.push(name, message);
    err.into()
}

fn bad_request(err: Error) -> HttpError {
    HttpError::bad_request(format!("{err:#}"))
}

async fn blocking<T, F>(f: F) -> Result<T, HttpError>
where
    F: FnOnce() -> Result<T, HttpError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| HttpError::internal(format!("handler thread failed - {err}")))?
}

fn caller(env: &RpcEnv) -> Result<Authid, HttpError> {
    env.auth_id()
        .cloned()
        .ok_or_else(|| HttpError::internal("no authenticated user"))
}

fn check_digest(expected: Option<&str>, actual: &str) -> Result<(), HttpError> {
    pbs_config::check_digest(expected, actual).map_err(|_| HttpError::bad_request(DIGEST_MISMATCH))
}

// ---- parameter schemas ----------------------------------------------------------------

fn check_name(name: &str) -> Result<(), String> {
    pbs_api_types::names::check_datastore_name(name).map_err(|err| err.to_string())
}

fn check_single_line(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        Err("value contains control characters".to_string())
    } else {
        Ok(())
    }
}

fn check_notify(text: &str) -> Result<(), String> {
    NOTIFY_SCHEMA.parse(text).map(|_| ())
}

fn check_tuning(text: &str) -> Result<(), String> {
    TUNING_SCHEMA.parse(text).map(|_| ())
}

fn check_maintenance_mode(text: &str) -> Result<(), String> {
    MAINTENANCE_MODE_SCHEMA.parse(text).map(|_| ())
}

fn check_userid(text: &str) -> Result<(), String> {
    text.parse::<Userid>()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn name_param() -> ParamSchema {
    ParamSchema::string("name")
        .min_length(3)
        .max_length(32)
        .format(StringFormat::Verify(check_name))
        .description("Datastore name.")
}

fn digest_param() -> ParamSchema {
    ParamSchema::string("digest")
        .format(StringFormat::Pattern(is_digest))
        .optional()
        .description("Digest of the current configuration file (SHA-256 hex).")
}

fn calendar_param(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .format(StringFormat::Verify(check_single_line))
        .optional()
}

fn keep_param(name: &'static str) -> ParamSchema {
    ParamSchema::integer(name).minimum(1).optional()
}

/// The optional datastore properties (everything but `name` and `path`).
fn option_params() -> Vec<ParamSchema> {
    vec![
        ParamSchema::string("comment")
            .format(StringFormat::Verify(check_single_line))
            .optional()
            .description("Comment."),
        calendar_param("gc-schedule").description("Garbage collection schedule."),
        calendar_param("prune-schedule").description("Legacy prune schedule."),
        keep_param("keep-last"),
        keep_param("keep-hourly"),
        keep_param("keep-daily"),
        keep_param("keep-weekly"),
        keep_param("keep-monthly"),
        keep_param("keep-yearly"),
        ParamSchema::boolean("verify-new")
            .optional()
            .description("Verify new snapshots right after the backup."),
        ParamSchema::string("notify-user")
            .format(StringFormat::Verify(check_userid))
            .optional()
            .description("Recipient of legacy notifications."),
        ParamSchema::string("notify")
            .format(StringFormat::Verify(check_notify))
            .optional()
            .description("Legacy notification filter."),
        ParamSchema::string("notification-mode")
            .format(StringFormat::Enum(&[
                "legacy-sendmail",
                "notification-system",
            ]))
            .optional()
            .description("How notifications are sent."),
        ParamSchema::string("tuning")
            .format(StringFormat::Verify(check_tuning))
            .optional()
            .description("Tuning options."),
        ParamSchema::string("maintenance-mode")
            .format(StringFormat::Verify(check_maintenance_mode))
            .optional()
            .description("Maintenance mode."),
    ]
}

fn with_params(mut schema: ObjectSchema, params: Vec<ParamSchema>) -> ObjectSchema {
    for param in params {
        schema = schema.param(param);
    }
    schema
}

fn create_schema() -> ObjectSchema {
    let schema = ObjectSchema::new().param(name_param()).param(
        ParamSchema::string("path")
            .min_length(1)
            .max_length(4096)
            .format(StringFormat::Verify(check_single_line))
            .description("Absolute path of the datastore directory."),
    );
    with_params(schema, option_params())
}

fn update_schema() -> ObjectSchema {
    let schema = ObjectSchema::new()
        .param(name_param())
        .param(digest_param())
        .param(
            ParamSchema::array(
                "delete",
                ParamKind::String {
                    min_length: None,
                    max_length: None,
                    format: Some(StringFormat::Enum(DELETABLE_PROPERTIES)),
                },
            )
            .optional()
            .description("Properties to delete."),
        );
    with_params(schema, option_params())
}

fn delete_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(name_param())
        .param(digest_param())
        .param(
            ParamSchema::boolean("keep-job-configs")
                .default(false)
                .description("Keep the sync, verify and prune jobs of this datastore."),
        )
        .param(
            ParamSchema::boolean("destroy-data")
                .default(false)
                .description("Delete the datastore's contents from disk."),
        )
}

// ---- list / read ------------------------------------------------------------------------

/// The datastores `auth_id` may audit, in file order, with the config digest.
pub fn list_datastores(auth_id: &Authid) -> Result<(Vec<Value>, String), Error> {
    let (config, digest) = pbs_config::datastore::config()?;
    let user_info = CachedUserInfo::new()?;
    let list = config
        .iter()
        .filter(|(_, ty, _)| *ty == DATASTORE_TYPE)
        .filter(|(name, _, _)| {
            user_info.lookup_privs(auth_id, &["datastore", name]) & PRIV_DATASTORE_AUDIT != 0
        })
        .map(|(_, _, value)| value.clone())
        .collect();
    Ok((list, digest))
}

/// The section of datastore `name` with the config digest.
pub fn read_datastore(name: &str) -> Result<(Value, String), HttpError> {
    let (config, digest) = pbs_config::datastore::config().map_err(bad_request)?;
    match config.get(name) {
        Some((ty, value)) if ty == DATASTORE_TYPE => Ok((value.clone(), digest)),
        _ => Err(not_found(name)),
    }
}

// ---- create -----------------------------------------------------------------------------

/// Chunk store tuning from the `tuning` property.
fn datastore_tuning(store: &DataStoreConfig) -> Result<DataStoreTuning, Error> {
    let tuning = store.get_tuning()?;
    Ok(DataStoreTuning {
        sync_level: match tuning.sync_level.unwrap_or_default() {
            SyncLevel::None => DatastoreFSyncLevel::None,
            SyncLevel::File => DatastoreFSyncLevel::File,
            SyncLevel::Filesystem => DatastoreFSyncLevel::Filesystem,
        },
        chunk_order: match tuning.chunk_order.unwrap_or_default() {
            ChunkOrder::None => VerifyChunkOrder::None,
            ChunkOrder::Inode => VerifyChunkOrder::Inode,
        },
    })
}

/// Id of the prune job made from legacy prune options: `default-<name>-<uuid>`, at most 32
/// characters.
fn default_prune_job_id(store: &str, uuid: &str) -> String {
    format!("default-{store}-{uuid}").chars().take(32).collect()
}

/// Validated create request: the datastore section and the prune job replacing legacy
/// prune options.
struct CreateRequest {
    store: DataStoreConfig,
    prune_job: Option<PruneJobConfig>,
}

fn parse_create_request(params: Value) -> Result<CreateRequest, HttpError> {
    let mut store: DataStoreConfig = serde_json::from_value(params)
        .map_err(|err| HttpError::bad_request(format!("invalid datastore config - {err}")))?;
    let path = Path::new(&store.path);
    if !path.is_absolute() {
        return Err(param_error(
            "path",
            format!("expected absolute path - {:?}", store.path),
        ));
    }
    if path.parent().is_none() {
        return Err(HttpError::bad_request(
            "cannot create datastore in root path",
        ));
    }
    let keep = std::mem::take(&mut store.keep);
    let prune_job = match store.prune_schedule.take() {
        Some(schedule) => {
            let uuid = pbs_auth::random_uuid_v4()
                .map_err(|err| HttpError::internal(format!("unable to create uuid - {err}")))?;
            Some(PruneJobConfig {
                id: default_prune_job_id(&store.name, &uuid),
                store: store.name.clone(),
                schedule,
                disable: false,
                ns: None,
                max_depth: None,
                keep,
                comment: None,
            })
        }
        None => None,
    };
    Ok(CreateRequest { store, prune_job })
}

/// The create task: chunk store, config entry, GC job state, prune job.
fn do_create_datastore(
    worker: &WorkerTask,
    _lock: ConfigLockGuard,
    request: CreateRequest,
) -> Result<(), Error> {
    let CreateRequest { store, prune_job } = request;
    let (mut config, _digest) = pbs_config::datastore::config()?;
    if config.contains(&store.name) {
        bail!("datastore '{}' already exists.", store.name);
    }
    let tuning = datastore_tuning(&store)?;
    DataStore::create(
        &store.name,
        &store.path,
        pbs_buildcfg::datastore_lock_dir(),
        tuning,
        &|msg| worker.log_message(msg),
    )?;
    config.set_data(&store.name, DATASTORE_TYPE, &store)?;
    pbs_config::datastore::save_config(&config)?;
    jobstate::create_state_file(GC_JOB_TYPE, &store.name)?;

    if let Some(job) = prune_job {
        let _prune_lock = PRUNE.lock_config()?;
        let (mut prune_config, _) = PRUNE.config()?;
        if prune_config.contains(&job.id) {
            bail!("job '{}' already exists.", job.id);
        }
        prune_config.set_data(&job.id, PRUNE_TYPE, &job)?;
        PRUNE.save_config(&prune_config)?;
        jobstate::create_state_file(PRUNE_JOB_TYPE, &job.id)?;
        worker.log_message(format!("Prune job created: {}", job.id));
    }
    Ok(())
}

/// Checks the request and starts the `create-datastore` task; returns its UPID.
pub fn create_datastore(auth_id: Authid, params: Value) -> Result<String, HttpError> {
    let request = parse_create_request(params)?;
    let lock = pbs_config::datastore::lock_config().map_err(bad_request)?;
    let (config, _digest) = pbs_config::datastore::config().map_err(bad_request)?;
    let name = request.store.name.clone();
    if config.contains(&name) {
        return Err(param_error(
            "name",
            format!("datastore '{name}' already exists."),
        ));
    }
    WorkerTask::spawn(
        CREATE_WORKER_TYPE,
        Some(name),
        auth_id,
        false,
        move |worker| do_create_datastore(&worker, lock, request),
    )
    .map_err(bad_request)
}

// ---- update -----------------------------------------------------------------------------

/// What an update changed besides the file content.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpdateEffects {
    /// `gc-schedule` was given and differs from the stored one.
    pub gc_schedule_changed: bool,
    /// The maintenance mode changed.
    pub maintenance_mode_changed: bool,
}

fn take_string(params: &mut Map<String, Value>, key: &str) -> Option<String> {
    params
        .remove(key)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Applies an update request (already schema-checked) to `target`; on error `target` is left
/// unchanged.
pub fn apply_update(
    target: &mut DataStoreConfig,
    mut params: Map<String, Value>,
) -> Result<UpdateEffects, HttpError> {
    let mut updated = target.clone();
    let store = &mut updated;
    for key in PRUNE_PROPERTIES {
        if params.contains_key(*key) {
            return Err(param_error(
                key,
                "datastore prune settings have been replaced by prune jobs",
            ));
        }
    }
    let old_mode = store.get_maintenance_mode().map_err(bad_request)?;
    let mut effects = UpdateEffects::default();

    let delete: Vec<String> = params
        .remove("delete")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for key in &delete {
        match key.as_str() {
            "comment" => store.comment = None,
            "gc-schedule" => store.gc_schedule = None,
            "prune-schedule" => store.prune_schedule = None,
            "keep-last" => store.keep.keep_last = None,
            "keep-hourly" => store.keep.keep_hourly = None,
            "keep-daily" => store.keep.keep_daily = None,
            "keep-weekly" => store.keep.keep_weekly = None,
            "keep-monthly" => store.keep.keep_monthly = None,
            "keep-yearly" => store.keep.keep_yearly = None,
            "verify-new" => store.verify_new = None,
            "notify-user" => store.notify_user = None,
            "notify" => store.notify = None,
            "notification-mode" => store.notification_mode = None,
            "tuning" => store.tuning = None,
            "maintenance-mode" => store.maintenance_mode = None,
            other => return Err(param_error("delete", format!("unknown property '{other}'"))),
        }
    }

    if let Some(comment) = take_string(&mut params, "comment") {
        let comment = comment.trim();
        store.comment = (!comment.is_empty()).then(|| comment.to_string());
    }
    if let Some(schedule) = take_string(&mut params, "gc-schedule") {
        effects.gc_schedule_changed = store.gc_schedule.as_deref() != Some(schedule.as_str());
        store.gc_schedule = Some(schedule);
    }
    if let Some(verify_new) = params.remove("verify-new").and_then(|v| v.as_bool()) {
        store.verify_new = Some(verify_new);
    }
    if let Some(user) = take_string(&mut params, "notify-user") {
        let user: Userid = user
            .parse()
            .map_err(|err| param_error("notify-user", format!("{err}")))?;
        store.notify_user = Some(user);
    }
    if let Some(notify) = take_string(&mut params, "notify") {
        let parsed = NOTIFY_SCHEMA
            .parse(&notify)
            .map_err(|err| param_error("notify", err))?;
        let any_set = ["gc", "verify", "sync", "prune"]
            .iter()
            .any(|key| parsed.contains_key(*key));
        store.notify = any_set.then_some(notify);
    }
    if let Some(mode) = params.remove("notification-mode") {
        store.notification_mode = Some(
            serde_json::from_value(mode)
                .map_err(|err| param_error("notification-mode", err.to_string()))?,
        );
    }
    if let Some(tuning) = take_string(&mut params, "tuning") {
        store.tuning = Some(tuning);
    }
    if let Some(mode) = take_string(&mut params, "maintenance-mode") {
        let mode: MaintenanceMode = MAINTENANCE_MODE_SCHEMA
            .parse_typed(&mode)
            .map_err(|err| param_error("maintenance-mode", err))?;
        store
            .set_maintenance_mode(Some(&mode))
            .map_err(bad_request)?;
    }

    let new_mode = store.get_maintenance_mode().map_err(bad_request)?;
    if let Some(old) = &old_mode {
        let still_deleting = new_mode
            .as_ref()
            .is_some_and(|m| m.ty == MaintenanceType::Delete);
        if old.ty == MaintenanceType::Delete && !still_deleting {
            return Err(HttpError::bad_request("datastore is being deleted"));
        }
    }
    effects.maintenance_mode_changed = old_mode != new_mode;
    *target = updated;
    Ok(effects)
}

/// Updates datastore `name` under the config lock; returns what changed.
pub fn update_datastore(params: Value) -> Result<UpdateEffects, HttpError> {
    let Value::Object(mut params) = params else {
        return Err(HttpError::bad_request("parameters must be an object"));
    };
    let name = take_string(&mut params, "name")
        .ok_or_else(|| param_error("name", "parameter is missing."))?;
    let digest = take_string(&mut params, "digest");

    let _lock = pbs_config::datastore::lock_config().map_err(bad_request)?;
    let (mut config, current_digest) = pbs_config::datastore::config().map_err(bad_request)?;
    check_digest(digest.as_deref(), &current_digest)?;
    let mut store: DataStoreConfig = match config.get(&name) {
        Some((ty, _)) if ty == DATASTORE_TYPE => {
            pbs_config::datastore::lookup(&config, &name).map_err(bad_request)?
        }
        _ => return Err(not_found(&name)),
    };
    let effects = apply_update(&mut store, params)?;
    config
        .set_data(&name, DATASTORE_TYPE, &store)
        .map_err(|err| HttpError::internal(err.to_string()))?;
    pbs_config::datastore::save_config(&config).map_err(bad_request)?;

    if effects.gc_schedule_changed {
        jobstate::update_job_last_run_time(GC_JOB_TYPE, &name).map_err(bad_request)?;
    }
    Ok(effects)
}

// ---- remove -----------------------------------------------------------------------------

/// Removes the sections of `file` whose `store` is `name`; returns their ids.
fn remove_jobs_of_store(file: &JobFile, name: &str) -> Result<Vec<String>, Error> {
    let _lock = file.lock_config()?;
    let (mut config, _) = file.config()?;
    let ids: Vec<String> = config
        .iter()
        .filter(|(_, _, value)| value.get("store").and_then(Value::as_str) == Some(name))
        .map(|(id, _, _)| id.to_string())
        .collect();
    if !ids.is_empty() {
        for id in &ids {
            config.remove(id);
        }
        file.save_config(&config)?;
    }
    Ok(ids)
}

/// Deletes the jobs of a datastore and its ACL subtree `/datastore/<name>`.
fn remove_datastore_references(name: &str) -> Result<(), Error> {
    for (file, job_type) in [
        (&VERIFICATION, "verificationjob"),
        (&SYNC, "syncjob"),
        (&PRUNE, PRUNE_JOB_TYPE),
    ] {
        for id in remove_jobs_of_store(file, name)? {
            jobstate::remove_state_file(job_type, &id)?;
        }
    }
    let _lock = pbs_config::acl::lock_config()?;
    let (mut tree, _) = pbs_config::acl::config()?;
    let removed = tree
        .root
        .children
        .get_mut("datastore")
        .and_then(|node| node.children.remove(name));
    if removed.is_some() {
        pbs_config::acl::save_config(&tree)?;
        pbs_config::cached_user_info::invalidate_cache();
    }
    Ok(())
}

fn remove_path(path: &Path, dir: bool) -> io::Result<()> {
    let result = if dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Deletes the datastore contents; `.chunks` only if everything else went away.
fn destroy_data(worker: &WorkerTask, base: &Path) {
    let mut ok = true;
    for dir in CONTENT_DIRS {
        let path = base.join(dir);
        if let Err(err) = remove_path(&path, true) {
            worker.log_warning(format!("failed to remove {path:?} - {err}"));
            ok = false;
        }
    }
    let gc_status = base.join(GC_STATUS_FILE);
    if let Err(err) = remove_path(&gc_status, false) {
        worker.log_warning(format!("failed to remove {gc_status:?} - {err}"));
        ok = false;
    }
    if ok {
        let chunks = base.join(".chunks");
        if let Err(err) = remove_path(&chunks, true) {
            worker.log_warning(format!("failed to remove {chunks:?} - {err}"));
        }
    }
}

/// Removes `.lock` and the (then empty) datastore directory.
fn remove_base_dir(worker: &WorkerTask, base: &Path) {
    let lock = base.join(".lock");
    if let Err(err) = remove_path(&lock, false) {
        worker.log_warning(format!("failed to remove {lock:?} - {err}"));
    }
    match std::fs::remove_dir(base) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
            worker.log_warning(format!(
                "cannot delete datastore directory {base:?} (is it a mount point?)"
            ));
        }
        Err(err) if err.raw_os_error() == Some(libc::ENOTEMPTY) => {
            worker.log_warning(format!(
                "datastore directory {base:?} is not empty, not deleting it"
            ));
        }
        Err(err) => {
            worker.log_warning(format!("failed to remove {base:?} - {err}"));
        }
    }
}

/// The remove task.
fn do_delete_datastore(
    worker: &WorkerTask,
    _lock: ConfigLockGuard,
    name: &str,
    destroy: bool,
    runtime: Option<tokio::runtime::Handle>,
) -> Result<(), Error> {
    let (mut config, _) = pbs_config::datastore::config()?;
    let mut store = pbs_config::datastore::lookup(&config, name)?;
    store.set_maintenance_mode(Some(&MaintenanceMode {
        ty: MaintenanceType::Delete,
        message: None,
    }))?;
    config.set_data(name, DATASTORE_TYPE, &store)?;
    pbs_config::datastore::save_config(&config)?;

    let base = PathBuf::from(&store.path);
    if destroy {
        destroy_data(worker, &base);
    }
    config.remove(name);
    pbs_config::datastore::save_config(&config)?;
    if destroy {
        remove_base_dir(worker, &base);
    }

    for job_type in ["prune", GC_JOB_TYPE] {
        let _ = jobstate::remove_state_file(job_type, name);
    }
    if let Some(runtime) = runtime {
        runtime.block_on(notify_proxy("datastore-removed", None));
    }
    Ok(())
}

/// Checks the request, drops the datastore's jobs and ACLs (unless kept) and starts the
/// `delete-datastore` task; returns its UPID.
pub fn delete_datastore(auth_id: Authid, params: Value) -> Result<String, HttpError> {
    let name = params["name"]
        .as_str()
        .ok_or_else(|| param_error("name", "parameter is missing."))?
        .to_string();
    let keep_jobs = params["keep-job-configs"].as_bool().unwrap_or(false);
    let destroy = params["destroy-data"].as_bool().unwrap_or(false);
    let digest = params["digest"].as_str();

    let lock = pbs_config::datastore::lock_config().map_err(bad_request)?;
    let (config, current_digest) = pbs_config::datastore::config().map_err(bad_request)?;
    check_digest(digest, &current_digest)?;
    match config.get(&name) {
        Some((ty, _)) if ty == DATASTORE_TYPE => {}
        _ => return Err(not_found(&name)),
    }
    if !keep_jobs {
        remove_datastore_references(&name).map_err(bad_request)?;
    }
    let runtime = tokio::runtime::Handle::try_current().ok();
    let task_name = name.clone();
    WorkerTask::spawn(
        DELETE_WORKER_TYPE,
        Some(name),
        auth_id,
        false,
        move |worker| do_delete_datastore(&worker, lock, &task_name, destroy, runtime),
    )
    .map_err(bad_request)
}

// ---- proxy notification -------------------------------------------------------------------

/// Sends a command to the proxy's control socket; a proxy that is not running is fine.
async fn notify_proxy(command: &str, args: Option<Value>) {
    let pid_file = pbs_buildcfg::run_dir().join("proxy.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let socket = pbs_rest_server::control::control_socket_name(pid);
    // The proxy picks changes up on its own eventually; failing here would only hide the
    // successful configuration change from the caller.
    let _ = pbs_rest_server::control::send_command(&socket, command, args).await;
}

// ---- routes -------------------------------------------------------------------------------

fn datastore_privilege(path: &'static str, privs: u64) -> Permission {
    Permission::Privilege {
        path,
        privs,
        partial: false,
    }
}

/// Adds `config/datastore` and `config/datastore/{name}` to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let list = ApiMethod::new(|env: RpcEnv, _params| async move {
        let auth_id = caller(&env)?;
        let (list, digest) =
            blocking(move || list_datastores(&auth_id).map_err(bad_request)).await?;
        env.set_result_attrib("digest", Value::from(digest));
        Ok(Value::Array(list))
    })
    .permission(Permission::Anybody)
    .description("List all datastores (those with Datastore.Audit).");

    let create = ApiMethod::new(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let upid = blocking(move || create_datastore(auth_id, params)).await?;
        Ok(Value::from(upid))
    })
    .permission(datastore_privilege("/datastore", PRIV_DATASTORE_ALLOCATE))
    .protected(true)
    .parameters(create_schema())
    .description("Create a new datastore (as a task).");

    let read = ApiMethod::new(|env: RpcEnv, params: Value| async move {
        let name = params["name"].as_str().unwrap_or_default().to_string();
        let (value, digest) = blocking(move || read_datastore(&name)).await?;
        env.set_result_attrib("digest", Value::from(digest));
        Ok(value)
    })
    .permission(datastore_privilege(
        "/datastore/{name}",
        PRIV_DATASTORE_AUDIT,
    ))
    .parameters(ObjectSchema::new().param(name_param()))
    .description("Read a datastore configuration.");

    let update = ApiMethod::new(|_env: RpcEnv, params: Value| async move {
        let name = params["name"].as_str().unwrap_or_default().to_string();
        let effects = blocking(move || update_datastore(params)).await?;
        if effects.maintenance_mode_changed {
            notify_proxy("update-datastore-cache", Some(Value::from(name))).await;
        }
        Ok(Value::Null)
    })
    .permission(datastore_privilege(
        "/datastore/{name}",
        PRIV_DATASTORE_MODIFY,
    ))
    .protected(true)
    .parameters(update_schema())
    .description("Update a datastore configuration.");

    let remove = ApiMethod::new(|env: RpcEnv, params: Value| async move {
        let auth_id = caller(&env)?;
        let upid = blocking(move || delete_datastore(auth_id, params)).await?;
        Ok(Value::from(upid))
    })
    .permission(datastore_privilege(
        "/datastore/{name}",
        PRIV_DATASTORE_ALLOCATE,
    ))
    .protected(true)
    .parameters(delete_schema())
    .description("Remove a datastore configuration (as a task).");

    router
        .route("/config/datastore", Method::GET, list)?
        .route("/config/datastore", Method::POST, create)?
        .route("/config/datastore/{name}", Method::GET, read)?
        .route("/config/datastore/{name}", Method::PUT, update)?
        .route("/config/datastore/{name}", Method::DELETE, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_api_types::KeepOptions;
    use serde_json::json;

    fn store() -> DataStoreConfig {
        DataStoreConfig::new("store1".into(), "/backup/store1".into())
    }

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn prune_job_id_is_truncated_to_32_chars() {
        let id = default_prune_job_id("store1", "0f4ad3c1-2b8e-4c55-9b1e-5d6f7a8b9c0d");
        assert_eq!(id, "default-store1-0f4ad3c1-2b8e-4c5");
        assert_eq!(id.len(), 32);
        assert_eq!(default_prune_job_id("ab", "x"), "default-ab-x");
    }

    #[test]
    fn create_request_moves_prune_options_into_a_job() {
        let request = parse_create_request(json!({
            "name": "store1",
            "path": "/backup/store1",
            "prune-schedule": "daily",
            "keep-last": 7,
            "comment": "c",
        }))
        .unwrap();
        assert_eq!(request.store.prune_schedule, None);
        assert_eq!(request.store.keep, KeepOptions::default());
        assert_eq!(request.store.comment.as_deref(), Some("c"));
        let job = request.prune_job.unwrap();
        assert_eq!(job.schedule, "daily");
        assert_eq!(job.store, "store1");
        assert_eq!(job.keep.keep_last, Some(7));
        assert!(job.id.starts_with("default-store1-"));
        assert_eq!(job.id.len(), 32);

        let request = parse_create_request(json!({
            "name": "store1", "path": "/backup/store1", "keep-last": 7,
        }))
        .unwrap();
        assert!(request.prune_job.is_none());
        assert_eq!(request.store.keep, KeepOptions::default());
    }

    #[test]
    fn create_request_needs_an_absolute_non_root_path() {
        let err = parse_create_request(json!({"name": "store1", "path": "rel/dir"}))
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "parameter verification failed - 'path': expected absolute path - \"rel/dir\""
        );
        let err = parse_create_request(json!({"name": "store1", "path": "/"}))
            .err()
            .unwrap();
        assert_eq!(err.message, "cannot create datastore in root path");
    }

    #[test]
    fn update_rejects_legacy_prune_settings() {
        for key in PRUNE_PROPERTIES {
            let mut s = store();
            let value = if key.starts_with("keep") {
                json!(1)
            } else {
                json!("daily")
            };
            let err = apply_update(&mut s, params(json!({ *key: value }))).unwrap_err();
            assert_eq!(
                err.message,
                format!("parameter verification failed - '{key}': datastore prune settings have been replaced by prune jobs")
            );
        }
    }

    #[test]
    fn update_sets_and_deletes_properties() {
        let mut s = store();
        s.keep.keep_last = Some(3);
        s.prune_schedule = Some("daily".into());
        let effects = apply_update(
            &mut s,
            params(json!({
                "comment": "  hello  ",
                "gc-schedule": "daily",
                "verify-new": true,
                "notify-user": "admin@pbs",
                "notification-mode": "notification-system",
                "tuning": "sync-level=file",
                "delete": ["keep-last", "prune-schedule"],
            })),
        )
        .unwrap();
        assert!(effects.gc_schedule_changed);
        assert!(!effects.maintenance_mode_changed);
        assert_eq!(s.comment.as_deref(), Some("hello"));
        assert_eq!(s.gc_schedule.as_deref(), Some("daily"));
        assert_eq!(s.verify_new, Some(true));
        assert_eq!(
            s.notify_user.as_ref().map(|u| u.as_str()),
            Some("admin@pbs")
        );
        assert_eq!(s.tuning.as_deref(), Some("sync-level=file"));
        assert_eq!(s.keep.keep_last, None);
        assert_eq!(s.prune_schedule, None);

        // Same schedule again: not a change. Empty comment removes it.
        let effects = apply_update(
            &mut s,
            params(json!({"gc-schedule": "daily", "comment": " "})),
        )
        .unwrap();
        assert!(!effects.gc_schedule_changed);
        assert_eq!(s.comment, None);

        apply_update(
            &mut s,
            params(json!({"delete": ["gc-schedule", "verify-new"]})),
        )
        .unwrap();
        assert_eq!(s.gc_schedule, None);
        assert_eq!(s.verify_new, None);
    }

    #[test]
    fn update_notify_without_settings_is_removed() {
        let mut s = store();
        apply_update(&mut s, params(json!({"notify": "gc=never"}))).unwrap();
        assert_eq!(s.notify.as_deref(), Some("gc=never"));
        apply_update(&mut s, params(json!({"notify": ""}))).unwrap();
        assert_eq!(s.notify, None);
    }

    #[test]
    fn update_maintenance_mode_is_canonical_and_delete_is_final() {
        let mut s = store();
        let effects =
            apply_update(&mut s, params(json!({"maintenance-mode": "read-only"}))).unwrap();
        assert!(effects.maintenance_mode_changed);
        assert_eq!(s.maintenance_mode.as_deref(), Some("type=read-only"));
        let effects = apply_update(
            &mut s,
            params(json!({"maintenance-mode": "type=read-only"})),
        )
        .unwrap();
        assert!(!effects.maintenance_mode_changed);

        apply_update(&mut s, params(json!({"maintenance-mode": "delete"}))).unwrap();
        let err = apply_update(&mut s, params(json!({"maintenance-mode": "offline"}))).unwrap_err();
        assert_eq!(err.message, "datastore is being deleted");
        let err =
            apply_update(&mut s, params(json!({"delete": ["maintenance-mode"]}))).unwrap_err();
        assert_eq!(err.message, "datastore is being deleted");
        apply_update(&mut s, params(json!({"maintenance-mode": "delete"}))).unwrap();
    }

    #[test]
    fn tuning_maps_to_chunk_store_settings() {
        let mut s = store();
        assert_eq!(datastore_tuning(&s).unwrap(), DataStoreTuning::default());
        s.tuning = Some("chunk-order=none,sync-level=file".into());
        let tuning = datastore_tuning(&s).unwrap();
        assert_eq!(tuning.sync_level, DatastoreFSyncLevel::File);
        assert_eq!(tuning.chunk_order, VerifyChunkOrder::None);
    }

    #[test]
    fn parameter_checks() {
        assert!(check_name("store1").is_ok());
        assert!(check_name("s").is_err());
        assert!(check_single_line("a b").is_ok());
        assert!(check_single_line("a\nb").is_err());
        assert!(check_maintenance_mode("offline").is_ok());
        assert!(check_maintenance_mode("bogus").is_err());
        assert!(check_tuning("sync-level=file").is_ok());
        assert!(check_tuning("sync-level=never").is_err());
        assert!(is_digest(&"a".repeat(64)));
        assert!(!is_digest("abc"));
    }
}
