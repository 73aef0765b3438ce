//! `proxmox-backup-manager` run as a program against a temporary `PBS_BASE_DIR`; commands
//! that talk HTTPS are pointed at a server started inside the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, Method};
use serde_json::{json, Value};

use pbs_api_types::{Authid, UPID};
use pbs_auth::csrf::CsrfSecret;
use pbs_auth::PublicAuthKey;
use pbs_rest_server::{
    ApiAuth, ApiMethod, AuthError, AuthInfo, BoxFuture, HttpError, Permission, Router, RpcEnv,
    ServerConfig, ServerHandle, TlsAcceptorHandle, TlsConfig, Transport,
};
use pbs_tasks::{TaskDir, TaskListFilter, WorkerTask};

const BIN: &str = env!("CARGO_BIN_EXE_proxmox-backup-manager");

struct TestEnv {
    base: tempfile::TempDir,
    proxy: Option<SocketAddr>,
}

impl TestEnv {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        Self { base, proxy: None }
    }

    fn base(&self) -> &Path {
        self.base.path()
    }

    fn config_dir(&self) -> PathBuf {
        self.base().join("etc/proxmox-backup")
    }

    fn task_dir(&self) -> TaskDir {
        TaskDir::new(self.base().join("var/log/proxmox-backup/tasks"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("PBS_BASE_DIR", self.base())
            .env("TZ", "UTC")
            .env_remove("PROXMOX_OUTPUT_FORMAT")
            .env_remove("PROXMOX_OUTPUT_NO_BORDER")
            .env_remove("PROXMOX_OUTPUT_NO_HEADER");
        if let Some(addr) = self.proxy {
            cmd.env("PBS_PROXY_LISTEN", addr.to_string());
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[track_caller]
fn assert_fails(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(255), "stdout: {}", stdout(out));
    stderr(out)
}

// ---------------------------------------------------------------------------------------
// Argument handling, help, versions, output formats

#[test]
fn help_lists_the_commands() {
    let env = TestEnv::new();
    let text = assert_ok(&env.run(&["help"]));
    assert!(text.starts_with("Usage:\n\n"), "{text}");
    for line in [
        "proxmox-backup-manager acl update <path> <role> [OPTIONS]",
        "proxmox-backup-manager datastore create <name> <path> [OPTIONS]",
        "proxmox-backup-manager task log <upid>",
        "proxmox-backup-manager user generate-token <userid> <token-name> [OPTIONS]",
        "proxmox-backup-manager garbage-collection start <store> [OPTIONS]",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in {text}"
        );
    }
    let text = assert_ok(&env.run(&["help", "datastore", "list"]));
    assert!(
        text.starts_with("Usage: proxmox-backup-manager datastore list [--output-format <string>]"),
        "{text}"
    );
    // `help` exists only at the top level.
    let err = assert_fails(&env.run(&["datastore", "help"]));
    assert!(err.contains("no such command 'help'"), "{err}");
}

#[test]
fn argument_errors_exit_255_with_usage() {
    let env = TestEnv::new();
    let err = assert_fails(&env.run(&[]));
    assert!(err.starts_with("Error: no command specified"), "{err}");

    let err = assert_fails(&env.run(&["datastore", "create", "store1"]));
    assert!(
        err.starts_with("Error: parameter verification failed - 'path': missing argument\n"),
        "{err}"
    );
    assert!(
        err.contains("Usage: proxmox-backup-manager datastore create <name> <path>"),
        "{err}"
    );

    let err = assert_fails(&env.run(&["datas", "list", "--bogus", "1"]));
    assert!(err.contains("'bogus'"), "{err}");
    assert!(
        err.contains("Usage: proxmox-backup-manager datastore list"),
        "{err}"
    );

    let err = assert_fails(&env.run(&["user", "list", "surplus"]));
    assert!(
        err.contains("got additional arguments: [\"surplus\"]"),
        "{err}"
    );

    let err = assert_fails(&env.run(&["task", "list", "--limit", "0"]));
    assert!(err.contains("'limit'"), "{err}");

    let err = assert_fails(&env.run(&["nosuchcommand"]));
    assert!(err.contains("no such command 'nosuchcommand'"), "{err}");
}

#[test]
fn versions_in_all_output_formats() {
    let env = TestEnv::new();
    let text = assert_ok(&env.run(&["versions"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("proxmox-backup-server "), "{text}");
    assert!(lines[0].ends_with(" running version: 3.2.4"), "{text}");

    let json: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "versions",
        "--output-format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json[0]["Package"], "proxmox-backup-server");
    assert_eq!(json[0]["ExtraInfo"], "running version: 3.2.4");
    assert_eq!(json.as_array().unwrap().len(), 1);

    let pretty = assert_ok(&env.run(&["versions", "--output-format=json-pretty", "--verbose"]));
    assert!(pretty.starts_with("[\n  {\n"), "{pretty}");
    let list: Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(list[0]["Package"], "proxmox-backup");
    assert!(list[0]["ExtraInfo"]
        .as_str()
        .unwrap()
        .starts_with("running kernel: "));
    assert_eq!(list[1]["Package"], "proxmox-backup-server");

    let out = env
        .command(&["versions"])
        .env("PROXMOX_OUTPUT_FORMAT", "json")
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    assert_eq!(json[0]["Package"], "proxmox-backup-server");
    let out = env
        .command(&["versions"])
        .env("PROXMOX_OUTPUT_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(assert_fails(&out).contains("undefined output format 'yaml'"));
}

#[test]
fn bash_completion() {
    let env = TestEnv::new();
    let out = env
        .command(&[
            "bashcomplete",
            "proxmox-backup-manager",
            "g",
            "garbage-collection",
        ])
        .env("COMP_LINE", "proxmox-backup-manager garbage-collection st")
        .env("COMP_POINT", "44")
        .output()
        .unwrap();
    assert_eq!(assert_ok(&out), "start\nstatus\n");
}

// ---------------------------------------------------------------------------------------
// Certificates

#[test]
fn cert_update_and_info() {
    let env = TestEnv::new();
    let err = assert_fails(&env.run(&["cert", "info"]));
    assert!(err.contains("proxy.pem"), "{err}");

    assert_ok(&env.run(&["cert", "update"]));
    let dir = env.config_dir();
    for file in [
        "authkey.key",
        "authkey.pub",
        "csrf.key",
        "proxy.key",
        "proxy.pem",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let fingerprint = pbs_auth::tls::cert_file_fingerprint(&dir.join("proxy.pem")).unwrap();

    let text = assert_ok(&env.run(&["cert", "info"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Subject: O = Proxmox Backup Server, OU = "),
        "{text}"
    );
    assert!(lines.contains(&"    IP:[127, 0, 0, 1]"), "{text}");
    assert!(
        lines.contains(&"    IP:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]"),
        "{text}"
    );
    assert!(lines.contains(&"    DNS:localhost"), "{text}");
    let subject = lines[0].strip_prefix("Subject: ").unwrap();
    assert!(
        lines.contains(&format!("Issuer: {subject}").as_str()),
        "{text}"
    );
    let validity = lines.iter().position(|l| *l == "Validity:").unwrap();
    assert!(lines[validity + 1].starts_with("    Not Before: "));
    assert!(lines[validity + 1].ends_with(" GMT"));
    assert!(lines[validity + 2].starts_with("    Not After : "));
    assert!(lines.contains(&format!("Fingerprint (sha256): {fingerprint}").as_str()));
    assert_eq!(lines[lines.len() - 2], "Public key type: rsaEncryption");
    assert_eq!(lines[lines.len() - 1], "Public key bits: 4096");

    // Without --force the certificate is kept.
    assert_ok(&env.run(&["cert", "update"]));
    assert_eq!(
        pbs_auth::tls::cert_file_fingerprint(&dir.join("proxy.pem")).unwrap(),
        fingerprint
    );
}

// ---------------------------------------------------------------------------------------
// HTTPS backend: a server in the test process stands in for the proxy.

/// Accepts locally signed `root@pam` tickets (and for changes, CSRF tokens).
struct TicketAuth {
    key: PublicAuthKey,
    csrf: CsrfSecret,
}

impl ApiAuth for TicketAuth {
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let cookie = headers
                .get(http::header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| pbs_auth::credentials::extract_cookie(v, "PBSAuthCookie"))
                .ok_or(AuthError::NoData)?;
            let userid = pbs_auth::ticket::verify_api_ticket(&self.key, &cookie)
                .map_err(|err| AuthError::Invalid(err.to_string()))?;
            if method != Method::GET {
                let token = headers
                    .get("CSRFPreventionToken")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| AuthError::Invalid("missing CSRF token".into()))?;
                pbs_auth::verify_csrf_prevention_token(&self.csrf, &userid, token)
                    .map_err(|err| AuthError::Invalid(err.to_string()))?;
            }
            Ok(AuthInfo {
                auth_id: Authid::from(userid),
                via_token: false,
            })
        })
    }

    fn lookup_privs(&self, _auth_id: &Authid, _path: &[String]) -> u64 {
        0
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Creates keys and certificate in the test's config dir and serves `router` over TLS.
fn start_proxy(env: &mut TestEnv, router: Router) -> ServerHandle {
    assert_ok(&env.run(&["cert", "update"]));
    let dir = env.config_dir();
    let auth = TicketAuth {
        key: PublicAuthKey::load(&dir.join("authkey.pub")).unwrap(),
        csrf: CsrfSecret::load(&dir.join("csrf.key")).unwrap(),
    };
    let tls = TlsAcceptorHandle::new(TlsConfig::new(dir.join("proxy.key"), dir.join("proxy.pem")))
        .unwrap();
    let config = ServerConfig::new(
        pbs_rest_server::RpcEnvType::Privileged,
        Arc::new(router),
        Arc::new(auth),
    );
    let handle = runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        pbs_rest_server::spawn_server(listener, Transport::Tls(tls), config).unwrap()
    });
    env.proxy = Some(handle.local_addr());
    handle
}

fn task_info_json(info: &pbs_tasks::TaskListInfo) -> Value {
    let upid = &info.upid;
    let mut item = json!({
        "upid": upid.to_string(),
        "node": upid.node,
        "starttime": upid.starttime,
        "worker_type": upid.worker_type,
        "user": upid.auth_id.to_string(),
    });
    if let Some(state) = &info.state {
        item["endtime"] = json!(state.endtime());
        item["status"] = json!(state.to_string());
    }
    item
}

/// A stand-in for the node task API, reading the task files with `pbs_tasks`.
fn task_router(dir: TaskDir, stopped: Arc<std::sync::Mutex<Vec<String>>>) -> Router {
    let list_dir = dir.clone();
    let list = ApiMethod::new(move |_env: RpcEnv, params: Value| {
        let dir = list_dir.clone();
        async move {
            let filter = TaskListFilter {
                running: params["running"].as_bool().unwrap_or(false),
                ..Default::default()
            };
            let start = params["start"].as_u64().unwrap_or(0);
            let limit = params["limit"].as_u64().unwrap_or(50);
            let page = pbs_tasks::list_tasks(&dir, &filter, start, limit, |_| true)
                .map_err(|err| HttpError::internal(err.to_string()))?;
            Ok(Value::Array(
                page.tasks.iter().map(task_info_json).collect(),
            ))
        }
    })
    .permission(Permission::Anybody)
    .parameters(
        pbs_rest_server::ObjectSchema::new()
            .param(pbs_rest_server::ParamSchema::boolean("running").optional())
            .param(pbs_rest_server::ParamSchema::integer("start").optional())
            .param(pbs_rest_server::ParamSchema::integer("limit").optional())
            .param(pbs_rest_server::ParamSchema::string("node")),
    );
    let log_dir = dir.clone();
    let log = ApiMethod::new(move |env: RpcEnv, params: Value| {
        let dir = log_dir.clone();
        async move {
            let upid: UPID = params["upid"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|err: pbs_api_types::upid::UpidError| {
                    HttpError::bad_request(err.to_string())
                })?;
            let start = params["start"].as_u64().unwrap_or(0);
            let limit = params["limit"].as_u64().unwrap_or(50);
            let page = dir
                .read_task_log(&upid, start, limit)
                .map_err(|err| HttpError::bad_request(err.to_string()))?;
            env.set_result_attrib("total", json!(page.total));
            env.set_result_attrib("active", json!(pbs_tasks::worker_is_active(&upid)));
            Ok(Value::Array(
                page.lines
                    .into_iter()
                    .map(|(n, t)| json!({"n": n, "t": t}))
                    .collect(),
            ))
        }
    })
    .permission(Permission::Anybody)
    .parameters(
        pbs_rest_server::ObjectSchema::new()
            .param(pbs_rest_server::ParamSchema::string("node"))
            .param(pbs_rest_server::ParamSchema::string("upid"))
            .param(pbs_rest_server::ParamSchema::integer("start").optional())
            .param(pbs_rest_server::ParamSchema::integer("limit").optional())
            .param(pbs_rest_server::ParamSchema::boolean("test-status").optional()),
    );
    let status_dir = dir;
    let status = ApiMethod::new(move |_env: RpcEnv, params: Value| {
        let dir = status_dir.clone();
        async move {
            let upid: UPID = params["upid"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|err: pbs_api_types::upid::UpidError| {
                    HttpError::bad_request(err.to_string())
                })?;
            if pbs_tasks::worker_is_active(&upid) {
                return Ok(json!({"status": "running"}));
            }
            let state = dir
                .read_task_state(&upid)
                .map_err(|err| HttpError::bad_request(err.to_string()))?;
            Ok(json!({"status": "stopped", "exitstatus": state.to_string()}))
        }
    })
    .permission(Permission::Anybody)
    .parameters(
        pbs_rest_server::ObjectSchema::new()
            .param(pbs_rest_server::ParamSchema::string("node"))
            .param(pbs_rest_server::ParamSchema::string("upid")),
    );
    let stop = ApiMethod::new(move |_env: RpcEnv, params: Value| {
        let stopped = Arc::clone(&stopped);
        async move {
            if let Ok(mut list) = stopped.lock() {
                list.push(params["upid"].as_str().unwrap_or_default().to_string());
            }
            Ok(Value::Null)
        }
    })
    .permission(Permission::Anybody)
    .parameters(
        pbs_rest_server::ObjectSchema::new()
            .param(pbs_rest_server::ParamSchema::string("node"))
            .param(pbs_rest_server::ParamSchema::string("upid")),
    );
    Router::new()
        .route("/nodes/{node}/tasks", Method::GET, list)
        .unwrap()
        .route("/nodes/{node}/tasks/{upid}/log", Method::GET, log)
        .unwrap()
        .route("/nodes/{node}/tasks/{upid}/status", Method::GET, status)
        .unwrap()
        .route("/nodes/{node}/tasks/{upid}", Method::DELETE, stop)
        .unwrap()
}

/// Runs a finished task with the given log lines and result in `dir`.
fn finished_task(
    dir: &TaskDir,
    worker_id: &str,
    lines: &[&str],
    result: Result<(), &str>,
) -> String {
    let worker = WorkerTask::new_in(
        dir,
        "garbage_collection",
        Some(worker_id.to_string()),
        "root@pam".parse().unwrap(),
        false,
    )
    .unwrap();
    for line in lines {
        worker.log_message(line);
    }
    worker.log_result(&result.map_err(|msg| anyhow::format_err!("{msg}")));
    worker.upid().to_string()
}

#[test]
fn task_list_log_and_stop_over_https() {
    let mut env = TestEnv::new();
    let dir = env.task_dir();
    let ok_upid = finished_task(&dir, "store1", &["first line", "second: line"], Ok(()));
    let failed_upid = finished_task(&dir, "store2", &["going to fail"], Err("disk full"));
    let stopped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = start_proxy(&mut env, task_router(dir.clone(), Arc::clone(&stopped)));

    // Only running tasks by default: none.
    let text = assert_ok(&env.run(&["task", "list"]));
    assert_eq!(
        text,
        "┌───────────┬─────────┬──────┬────────┐\n\
         │ starttime │ endtime │ upid │ status │\n\
         ╞═══════════╪═════════╪══════╪════════╡\n\
         └───────────┴─────────┴──────┴────────┘\n"
    );
    let out = env
        .command(&["task", "list"])
        .env("PROXMOX_OUTPUT_NO_HEADER", "")
        .output()
        .unwrap();
    assert_eq!(assert_ok(&out), "┌──┬──┬──┬──┐\n└──┴──┴──┴──┘\n");

    let json: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "task",
        "list",
        "--all",
        "--output-format",
        "json",
    ])))
    .unwrap();
    let upids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upid"].as_str().unwrap())
        .collect();
    assert_eq!(upids, [failed_upid.as_str(), ok_upid.as_str()]);

    let out = env
        .command(&["task", "list", "--all"])
        .env("PROXMOX_OUTPUT_NO_BORDER", "1")
        .output()
        .unwrap();
    let text = assert_ok(&out);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2, "{text}");
    let ok_row = rows.iter().find(|r| r.contains(&ok_upid)).unwrap();
    // The last column is padded to its width ("disk full").
    assert!(ok_row.ends_with(" OK       "), "{ok_row}");
    let failed_row = rows.iter().find(|r| r.contains(&failed_upid)).unwrap();
    assert!(failed_row.ends_with(" disk full"), "{failed_row}");
    let start: UPID = ok_upid.parse().unwrap();
    let started = pbs_api_types::time::strftime_utc("%c", start.starttime).unwrap();
    assert!(ok_row.starts_with(&started), "{ok_row}");

    // The log without date prefixes; a failed task fails the command.
    let text = assert_ok(&env.run(&["task", "log", &ok_upid]));
    assert_eq!(text, "first line\nsecond: line\nTASK OK\n");
    let out = env.run(&["task", "log", &failed_upid]);
    assert_eq!(stdout(&out), "going to fail\nTASK ERROR: disk full\n");
    assert_eq!(stderr(&out), "Error: task failed (status disk full)\n");
    assert_eq!(out.status.code(), Some(255));

    assert_eq!(assert_ok(&env.run(&["task", "stop", &ok_upid])), "");
    assert_eq!(*stopped.lock().unwrap(), vec![ok_upid.clone()]);

    runtime().block_on(server.shutdown());
}

#[test]
fn https_needs_the_right_certificate() {
    let mut env = TestEnv::new();
    let dir = env.task_dir();
    let server = start_proxy(&mut env, task_router(dir, Default::default()));
    // A new certificate on disk no longer matches the one the server presents.
    assert_ok(&env.run(&["cert", "update", "--force"]));
    let err = assert_fails(&env.run(&["task", "list"]));
    assert!(err.contains("TLS connection"), "{err}");
    runtime().block_on(server.shutdown());
}

// ---------------------------------------------------------------------------------------
// Configuration commands against the real API tree.

/// Serves the real API tree. Its handlers run in this test process and find their files
/// through `PBS_BASE_DIR`, so this is the only test that sets it here.
fn api_proxy(env: &mut TestEnv) -> ServerHandle {
    std::env::set_var("PBS_BASE_DIR", env.base());
    let router = proxmox_backup::api2::router().unwrap();
    start_proxy(env, router)
}

const EMPTY_DATASTORE_LIST: &str = "\
┌──────┬──────┬─────────┐
│ name │ path │ comment │
╞══════╪══════╪═════════╡
└──────┴──────┴─────────┘
";

#[test]
fn datastore_list_empty() {
    let env = TestEnv::new();
    assert_eq!(
        assert_ok(&env.run(&["datastore", "list"])),
        EMPTY_DATASTORE_LIST
    );
    assert_eq!(
        assert_ok(&env.run(&["datastore", "list", "--output-format", "json"])),
        "[]\n"
    );
}

#[test]
fn datastore_create_show_update_remove() {
    let mut env = TestEnv::new();
    let server = api_proxy(&mut env);
    let store_path = env.base().join("store1");
    let store_path = store_path.to_str().unwrap();

    let text = assert_ok(&env.run(&[
        "datastore",
        "create",
        "store1",
        store_path,
        "--comment",
        "my store",
    ]));
    assert!(text.lines().last() == Some("TASK OK"), "{text}");
    assert!(Path::new(store_path).join(".chunks").is_dir());

    let err = assert_fails(&env.run(&["datastore", "create", "store1", store_path]));
    assert!(err.contains("datastore 'store1' already exists."), "{err}");

    let expected = format!(
        "┌────────┬{line}┬──────────┐\n\
         │ name   │ path{pad} │ comment  │\n\
         ╞════════╪{dline}╪══════════╡\n\
         │ store1 │ {store_path} │ my store │\n\
         └────────┴{line}┴──────────┘\n",
        line = "─".repeat(store_path.len() + 2),
        dline = "═".repeat(store_path.len() + 2),
        pad = " ".repeat(store_path.len().saturating_sub(4)),
    );
    assert_eq!(assert_ok(&env.run(&["datastore", "list"])), expected);

    assert_ok(&env.run(&[
        "datastore",
        "update",
        "store1",
        "--gc-schedule",
        "daily",
        "--delete",
        "comment",
    ]));
    let show: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "datastore",
        "show",
        "store1",
        "--output-format",
        "json",
    ])))
    .unwrap();
    assert_eq!(
        show,
        json!({"name": "store1", "path": store_path, "gc-schedule": "daily"})
    );
    let text = assert_ok(&env.run(&["datastore", "show", "store1"]));
    assert!(text.contains("│ gc-schedule │ daily"), "{text}");

    let err = assert_fails(&env.run(&["datastore", "update", "store1", "--keep-last", "3"]));
    assert!(
        err.contains(
            "parameter verification failed - 'keep-last': \
             datastore prune settings have been replaced by prune jobs"
        ),
        "{err}"
    );

    assert_ok(&env.run(&["datastore", "remove", "store1"]));
    assert_eq!(
        assert_ok(&env.run(&["datastore", "list"])),
        EMPTY_DATASTORE_LIST
    );
    let err = assert_fails(&env.run(&["datastore", "remove", "store1"]));
    assert!(err.contains("datastore 'store1' does not exist."), "{err}");
    runtime().block_on(server.shutdown());
}

#[test]
fn users_and_tokens() {
    let env = TestEnv::new();
    assert_ok(&env.run(&[
        "user",
        "create",
        "alice@pbs",
        "--comment",
        "Alice",
        "--email",
        "a@example.com",
    ]));
    let err = assert_fails(&env.run(&["user", "create", "alice@pbs"]));
    assert!(err.contains("user 'alice@pbs' already exists."), "{err}");

    let users: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "user",
        "list",
        "--output-format",
        "json",
    ])))
    .unwrap();
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userid"] == "alice@pbs")
        .unwrap();
    assert_eq!(alice["comment"], "Alice");

    let out = env
        .command(&["user", "list"])
        .env("PROXMOX_OUTPUT_NO_BORDER", "1")
        .output()
        .unwrap();
    let text = assert_ok(&out);
    let row = text.lines().find(|l| l.starts_with("alice@pbs ")).unwrap();
    assert!(row.contains(" 1 never "), "{row}");

    assert_ok(&env.run(&[
        "user",
        "update",
        "alice@pbs",
        "--enable",
        "0",
        "--delete",
        "comment",
    ]));
    let users: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "user",
        "list",
        "--output-format",
        "json",
    ])))
    .unwrap();
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userid"] == "alice@pbs")
        .unwrap();
    assert_eq!(alice["enable"], false);
    assert!(alice.get("comment").is_none());

    let text = assert_ok(&env.run(&["user", "generate-token", "alice@pbs", "t1"]));
    let json = text.strip_prefix("Result: ").unwrap();
    let token: Value = serde_json::from_str(json).unwrap();
    assert_eq!(token["tokenid"], "alice@pbs!t1");
    assert_eq!(token["value"].as_str().unwrap().len(), 36);
    assert!(
        json.starts_with("{\n  \"tokenid\": \"alice@pbs!t1\",\n  \"value\": "),
        "{json}"
    );

    let tokens: Value = serde_json::from_str(&assert_ok(&env.run(&[
        "user",
        "list-tokens",
        "alice@pbs",
        "--output-format",
        "json",
    ])))
    .unwrap();
    assert_eq!(tokens[0]["tokenid"], "alice@pbs!t1");
    assert_ok(&env.run(&["user", "delete-token", "alice@pbs", "t1"]));
    assert_eq!(
        assert_ok(&env.run(&[
            "user",
            "list-tokens",
            "alice@pbs",
            "--output-format",
            "json"
        ])),
        "[]\n"
    );

    assert_ok(&env.run(&["user", "remove", "alice@pbs"]));
    let users = assert_ok(&env.run(&["user", "list", "--output-format", "json"]));
    assert!(!users.contains("alice@pbs"), "{users}");
}

#[test]
fn acl_update_list_and_permissions() {
    let env = TestEnv::new();
    assert_ok(&env.run(&["user", "create", "bob@pbs"]));
    assert_ok(&env.run(&[
        "acl",
        "update",
        "/datastore",
        "DatastoreAudit",
        "--auth-id",
        "bob@pbs",
    ]));
    let err = assert_fails(&env.run(&["acl", "update", "/", "Admin", "--group", "grp1"]));
    assert!(err.contains("groups are currently not supported"), "{err}");
    let err = assert_fails(&env.run(&["acl", "update", "/", "Admin"]));
    assert!(
        err.contains("missing 'userid' or 'group' parameter."),
        "{err}"
    );

    let out = env
        .command(&["acl", "list"])
        .env("PROXMOX_OUTPUT_NO_BORDER", "1")
        .output()
        .unwrap();
    assert_eq!(assert_ok(&out), "bob@pbs /datastore 1 DatastoreAudit\n");

    let text = assert_ok(&env.run(&["user", "permissions", "bob@pbs", "--path", "/datastore"]));
    assert!(
        text.starts_with("Privileges with (*) have the propagate flag set\n\nPath: /datastore\n"),
        "{text}"
    );
    assert!(text.contains("- Datastore.Audit (*)\n"), "{text}");

    assert_ok(&env.run(&[
        "acl",
        "update",
        "/datastore",
        "DatastoreAudit",
        "--auth-id",
        "bob@pbs",
        "--delete",
    ]));
    let out = env
        .command(&["acl", "list"])
        .env("PROXMOX_OUTPUT_NO_BORDER", "1")
        .output()
        .unwrap();
    assert_eq!(assert_ok(&out), "");
}
