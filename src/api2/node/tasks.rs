//! `nodes/{node}/tasks`: task list, status, log and stop.

use std::sync::Arc;

use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use pbs_api_types::{Authid, UPID};
use pbs_config::privileges::{PRIV_SYS_AUDIT, PRIV_SYS_MODIFY};
use pbs_config::CachedUserInfo;
use pbs_rest_server::router::{full_body, RouteError};
use pbs_rest_server::{
    ApiMethod, Body, HttpError, JsonText, ObjectSchema, ParamKind, ParamSchema, Permission,
    RawRequest, Router, RpcEnv, StringFormat,
};
use pbs_tasks::{TaskDir, TaskListFilter, TaskListInfo, TaskState, TaskStateType};

use super::task_access::check_task_access;
use crate::server::worker_control;

const TASK_STATES: &[&str] = &["ok", "warning", "error", "unknown"];

pub(super) fn register(router: Router) -> Result<Router, RouteError> {
    router
        .route("nodes/{node}/tasks", Method::GET, list_tasks_method())?
        .route("nodes/{node}/tasks/{upid}", Method::GET, task_index())?
        .route(
            "nodes/{node}/tasks/{upid}",
            Method::DELETE,
            stop_task_method(),
        )?
        .route(
            "nodes/{node}/tasks/{upid}/log",
            Method::GET,
            read_log_method(),
        )?
        .route(
            "nodes/{node}/tasks/{upid}/status",
            Method::GET,
            task_status_method(),
        )
}

fn node_param() -> ParamSchema {
    ParamSchema::string("node").description("Node name (not checked, clients use 'localhost').")
}

fn upid_param() -> ParamSchema {
    ParamSchema::string("upid")
        .min_length(36)
        .description("Unique task id.")
}

fn internal(err: impl std::fmt::Display) -> HttpError {
    HttpError::internal(err.to_string())
}

fn caller(env: &RpcEnv) -> Result<Authid, HttpError> {
    env.auth_id()
        .cloned()
        .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "no authenticated user"))
}

fn user_info() -> Result<Arc<CachedUserInfo>, HttpError> {
    CachedUserInfo::new().map_err(|err| internal(format!("unable to read user info: {err}")))
}

fn parse_upid(params: &Value) -> Result<UPID, HttpError> {
    let text = params["upid"].as_str().unwrap_or_default();
    text.parse()
        .map_err(|err| HttpError::bad_request(format!("unable to parse UPID '{text}': {err}")))
}

/// Checks read access to a task for the caller of `env`.
fn authorize_read(env: &RpcEnv, upid: &UPID) -> Result<(), HttpError> {
    let auth_id = caller(env)?;
    let info = user_info()?;
    check_task_access(&info, &auth_id, upid)
        .map_err(|err| HttpError::new(StatusCode::FORBIDDEN, err.to_string()))
}

/// One entry of the task list, keys in declaration order (streamed result).
#[derive(Serialize)]
struct TaskListItem<'a> {
    upid: String,
    node: &'a str,
    pid: u32,
    pstart: u64,
    starttime: i64,
    worker_type: &'a str,
    worker_id: Option<&'a str>,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

impl<'a> TaskListItem<'a> {
    fn new(info: &'a TaskListInfo) -> Self {
        let upid = &info.upid;
        Self {
            upid: upid.to_string(),
            node: "localhost",
            pid: upid.pid,
            pstart: upid.pstart,
            starttime: upid.starttime,
            worker_type: &upid.worker_type,
            worker_id: upid.worker_id.as_deref(),
            user: upid.auth_id.to_string(),
            endtime: info.state.as_ref().map(TaskState::endtime),
            status: info.state.as_ref().map(TaskState::to_string),
        }
    }
}

fn list_tasks_method() -> ApiMethod {
    ApiMethod::serialized(|env, params| async move {
        tokio::task::spawn_blocking(move || list_tasks(&env, &params))
            .await
            .map_err(internal)?
    })
    .permission(Permission::Anybody)
    .parameters(
        ObjectSchema::new()
            .param(node_param())
            .param(ParamSchema::integer("start").minimum(0).default(0))
            .param(ParamSchema::integer("limit").minimum(0).default(50))
            .param(ParamSchema::string("store").optional())
            .param(ParamSchema::boolean("running").optional())
            .param(ParamSchema::boolean("errors").optional())
            .param(ParamSchema::string("userfilter").optional())
            .param(ParamSchema::integer("since").optional())
            .param(ParamSchema::integer("until").optional())
            .param(ParamSchema::string("typefilter").optional())
            .param(
                ParamSchema::array(
                    "statusfilter",
                    ParamKind::String {
                        min_length: None,
                        max_length: None,
                        format: Some(StringFormat::Enum(TASK_STATES)),
                    },
                )
                .optional(),
            ),
    )
    .description("List tasks, newest first.")
}

fn filter_from_params(params: &Value) -> Result<TaskListFilter, HttpError> {
    let statusfilter = match params.get("statusfilter") {
        Some(list) => Some(
            serde_json::from_value::<Vec<TaskStateType>>(list.clone())
                .map_err(|err| HttpError::bad_request(format!("statusfilter: {err}")))?,
        ),
        None => None,
    };
    let string = |name: &str| params[name].as_str().map(str::to_string);
    Ok(TaskListFilter {
        running: params["running"].as_bool().unwrap_or(false),
        errors: params["errors"].as_bool().unwrap_or(false),
        userfilter: string("userfilter"),
        typefilter: string("typefilter"),
        since: params["since"].as_i64(),
        until: params["until"].as_i64(),
        statusfilter,
        store: string("store"),
    })
}

fn list_tasks(env: &RpcEnv, params: &Value) -> Result<JsonText, HttpError> {
    let auth_id = caller(env)?;
    let info = user_info()?;
    let filter = filter_from_params(params)?;
    let start = params["start"].as_u64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(50);
    let see_all = info.is_superuser(&auth_id)
        || info.lookup_privs(&auth_id, &["system", "tasks"]) & PRIV_SYS_AUDIT != 0;
    let page = pbs_tasks::list_tasks(
        &TaskDir::default_location(),
        &filter,
        start,
        limit,
        |task| see_all || check_task_access(&info, &auth_id, &task.upid).is_ok(),
    )
    .map_err(|err| internal(format!("unable to list tasks: {err:#}")))?;
    env.set_result_attrib("total", json!(page.total));
    let items: Vec<TaskListItem> = page.tasks.iter().map(TaskListItem::new).collect();
    JsonText::from_serialize(&items)
}

fn task_index() -> ApiMethod {
    ApiMethod::new(|_env, _params| async {
        Ok(json!([{ "subdir": "log" }, { "subdir": "status" }]))
    })
    .permission(Permission::Anybody)
    .parameters(ObjectSchema::new().param(node_param()).param(upid_param()))
    .description("Task directory index.")
}

/// Whether the task is still running, asking its process when it is another one.
async fn task_is_running(upid: &UPID) -> bool {
    worker_control::worker_is_active(upid).await
}

fn task_status_method() -> ApiMethod {
    ApiMethod::new(|env, params| async move {
        let upid = parse_upid(&params)?;
        authorize_read(&env, &upid)?;
        let mut status = Map::new();
        status.insert("upid".into(), json!(upid.to_string()));
        status.insert("node".into(), json!(upid.node));
        status.insert("pid".into(), json!(upid.pid));
        status.insert("pstart".into(), json!(upid.pstart));
        status.insert("starttime".into(), json!(upid.starttime));
        status.insert("type".into(), json!(upid.worker_type));
        status.insert("id".into(), json!(upid.worker_id));
        status.insert("user".into(), json!(upid.auth_id.user().to_string()));
        if let Some(token) = upid.auth_id.tokenname() {
            status.insert("tokenid".into(), json!(token));
        }
        if task_is_running(&upid).await {
            status.insert("status".into(), json!("running"));
        } else {
            let state = TaskDir::default_location()
                .read_task_state(&upid)
                .map_err(|err| HttpError::bad_request(format!("{err:#}")))?;
            status.insert("status".into(), json!("stopped"));
            status.insert("exitstatus".into(), json!(state.to_string()));
        }
        Ok(Value::Object(status))
    })
    .permission(Permission::Anybody)
    .parameters(ObjectSchema::new().param(node_param()).param(upid_param()))
    .description("Get task status.")
}

fn read_log_method() -> ApiMethod {
    ApiMethod::raw(|request: RawRequest| async move {
        let RawRequest { params, env, .. } = request;
        let upid = parse_upid(&params)?;
        authorize_read(&env, &upid)?;
        if params["download"].as_bool().unwrap_or(false) {
            return download_log(&params, &upid).await;
        }
        let start = params["start"].as_u64().unwrap_or(0);
        let limit = params["limit"].as_u64().unwrap_or(50);
        let test_status = params["test-status"].as_bool().unwrap_or(false);
        let active = if test_status {
            Some(task_is_running(&upid).await)
        } else {
            None
        };
        let read_upid = upid.clone();
        let page = tokio::task::spawn_blocking(move || {
            TaskDir::default_location().read_task_log(&read_upid, start, limit)
        })
        .await
        .map_err(internal)?
        .map_err(|err| HttpError::bad_request(format!("{err:#}")))?;
        let lines: Vec<Value> = page
            .lines
            .into_iter()
            .map(|(n, t)| json!({ "n": n, "t": t }))
            .collect();
        // serde_json's map sorts keys: active, data, success, total.
        let mut body = Map::new();
        if let Some(active) = active {
            body.insert("active".into(), json!(active));
        }
        body.insert("data".into(), Value::Array(lines));
        body.insert("success".into(), json!(1));
        body.insert("total".into(), json!(page.total));
        let text = serde_json::to_string(&body).map_err(internal)?;
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(full_body(text))
            .map_err(internal)
    })
    .permission(Permission::Anybody)
    .parameters(
        ObjectSchema::new()
            .param(node_param())
            .param(upid_param())
            .param(ParamSchema::integer("start").minimum(0).optional())
            .param(ParamSchema::integer("limit").minimum(0).optional())
            .param(ParamSchema::boolean("download").optional())
            .param(ParamSchema::boolean("test-status").optional()),
    )
    .description("Read the task log.")
}

async fn download_log(params: &Value, upid: &UPID) -> Result<Response<Body>, HttpError> {
    for other in ["start", "limit", "test-status"] {
        if params.get(other).is_some() {
            return Err(HttpError::bad_request(format!(
                "parameter verification failed - '{other}': parameter is exclusive with 'download'"
            )));
        }
    }
    let path = TaskDir::default_location().log_path(upid);
    let data = tokio::fs::read(&path).await.map_err(|err| {
        HttpError::bad_request(format!("unable to read task log {path:?}: {err}"))
    })?;
    let time = pbs_api_types::time::epoch_to_rfc3339_utc(upid.starttime).map_err(internal)?;
    let filename = format!("task-{}-{}-{}.log", upid.node, upid.worker_type, time);
    Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .header(
            CONTENT_DISPOSITION,
            format!("attachment; filename={filename}"),
        )
        .body(full_body(data))
        .map_err(internal)
}

fn stop_task_method() -> ApiMethod {
    ApiMethod::new(|env, params| async move {
        let upid = parse_upid(&params)?;
        let auth_id = caller(&env)?;
        if auth_id != upid.auth_id {
            let info = user_info()?;
            info.check_privs(&auth_id, &["system", "tasks"], PRIV_SYS_MODIFY, false)
                .map_err(|err| HttpError::new(StatusCode::FORBIDDEN, err.to_string()))?;
        }
        worker_control::abort_worker(&upid)
            .await
            .map_err(|err| HttpError::bad_request(format!("{err:#}")))?;
        Ok(Value::Null)
    })
    .permission(Permission::Anybody)
    .protected(true)
    .parameters(ObjectSchema::new().param(node_param()).param(upid_param()))
    .description("Try to stop a task.")
}
