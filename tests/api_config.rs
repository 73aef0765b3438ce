//! End-to-end test of the datastore configuration, status, version and node status API over
//! a real socket, with a scratch `PBS_BASE_DIR` (process-global: one server per test file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use pbs_api_types::{Authid, UPID};
use pbs_config::CachedUserInfo;
use pbs_rest_server::{
    spawn_server, ApiAuth, AuthError, AuthInfo, BoxFuture, RpcEnvType, ServerConfig, Transport,
};
use pbs_tasks::{TaskDir, TaskState};

/// Header carrying the caller's auth id (the test stands in for ticket authentication).
const AUTH_HEADER: &str = "x-test-authid";

/// Authenticates the auth id given in [`AUTH_HEADER`]; privileges come from the real ACLs.
struct HeaderAuth;

impl ApiAuth for HeaderAuth {
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        _method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let value = headers.get(AUTH_HEADER).ok_or(AuthError::NoData)?;
            let auth_id: Authid = value
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| AuthError::Invalid("bad auth id".into()))?;
            Ok(AuthInfo {
                via_token: auth_id.is_token(),
                auth_id,
            })
        })
    }

    fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64 {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        CachedUserInfo::new()
            .map(|info| info.lookup_privs(auth_id, &path))
            .unwrap_or(0)
    }
}

const USER_CFG: &str = "user: root@pam\n\tenable true\n\nuser: audit@pbs\n\tenable true\n\nuser: nsuser@pbs\n\tenable true\n\nuser: nobody@pbs\n\tenable true\n";

const ACL_CFG: &str = "acl:1:/datastore/store1:audit@pbs:DatastoreAudit\nacl:1:/datastore/store2/ns1:nsuser@pbs:DatastoreBackup\nacl:1:/system/status:audit@pbs:Audit\n";

struct Client {
    addr: std::net::SocketAddr,
}

struct Reply {
    status: StatusCode,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("bad JSON reply {:?}: {err}", self.text))
    }

    fn data(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "reply: {}", self.text);
        self.json()["data"].clone()
    }
}

impl Client {
    async fn call(&self, method: Method, path: &str, who: &str, body: Option<Value>) -> Reply {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}/api2/json/{path}", self.addr))
            .header(AUTH_HEADER, who);
        let body = match body {
            Some(value) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let response = sender
            .send_request(builder.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, who: &str) -> Reply {
        self.call(Method::GET, path, who, None).await
    }
}

/// Waits for a task of this process to end and returns its final state and log.
async fn wait_task(upid: &str) -> (TaskState, String) {
    let upid: UPID = upid.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while pbs_tasks::worker_is_active(&upid) {
        assert!(Instant::now() < deadline, "task {upid} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = TaskDir::default_location();
    let state = dir.read_task_state(&upid).unwrap();
    let log = std::fs::read_to_string(dir.log_path(&upid)).unwrap();
    (state, log)
}

fn config_file(name: &str) -> PathBuf {
    pbs_buildcfg::config_dir().join(name)
}

fn read_config(name: &str) -> String {
    std::fs::read_to_string(config_file(name)).unwrap_or_default()
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("pbs-api-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_config_status_version_and_node_status() {
    let scratch = scratch_dir();
    let base = scratch.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::env::set_var(pbs_buildcfg::BASE_DIR_ENV, &base);
    std::fs::create_dir_all(pbs_buildcfg::config_dir()).unwrap();
    std::fs::write(config_file("user.cfg"), USER_CFG).unwrap();
    std::fs::write(config_file("acl.cfg"), ACL_CFG).unwrap();
    pbs_auth::tls::ensure_proxy_cert(false).unwrap();

    let router = proxmox_backup::api2::router().unwrap();
    let mut config = ServerConfig::new(
        RpcEnvType::Privileged,
        Arc::new(router),
        Arc::new(HeaderAuth),
    );
    config.auth_failure_delay = Duration::ZERO;
    config.permission_failure_delay = Duration::ZERO;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = spawn_server(listener, Transport::Plain, config).unwrap();
    let client = Client {
        addr: server.local_addr(),
    };

    let stores = scratch.path().join("stores");
    let path1 = stores.join("store1");
    let path2 = stores.join("store2");

    // -- version ------------------------------------------------------------------------
    let version = client.get("version", "nobody@pbs").await.data();
    assert_eq!(version["version"], "3.2");
    assert_eq!(version["release"], "4");
    assert!(version["repoid"].is_string());
    let reply = client.get("version", "").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // `ping` needs no authentication at all.
    let pong = client.get("ping", "").await.data();
    assert_eq!(pong, json!({"pong": true}));

    // -- create -------------------------------------------------------------------------
    let denied = client
        .call(
            Method::POST,
            "config/datastore",
            "audit@pbs",
            Some(json!({"name": "store1", "path": path1})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let upid = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({
                "name": "store1",
                "path": path1,
                "comment": "first store",
                "gc-schedule": "daily",
            })),
        )
        .await
        .data();
    let upid = upid.as_str().unwrap().to_string();
    assert!(
        upid.contains(":create-datastore:store1:root@pam:"),
        "{upid}"
    );
    let (state, log) = wait_task(&upid).await;
    assert!(matches!(state, TaskState::Ok { .. }), "{state:?}\n{log}");
    assert!(log.contains(": Chunkstore create: 0%\n"), "{log}");
    assert!(log.contains(": Chunkstore create: 99%\n"), "{log}");
    assert_eq!(count_entries(&path1.join(".chunks")), 65536);
    assert!(path1.join(".chunks/0000").is_dir());
    assert!(path1.join(".chunks/ffff").is_dir());
    assert!(path1.join(".lock").is_file());
    let expected_cfg = format!(
        "datastore: store1\n\tcomment first store\n\tgc-schedule daily\n\tpath {}\n",
        path1.display()
    );
    assert_eq!(read_config("datastore.cfg"), expected_cfg);
    let gc_state = std::fs::read_to_string(
        pbs_buildcfg::state_dir().join("jobstates/garbage_collection-store1.json"),
    )
    .unwrap();
    assert!(
        gc_state.starts_with("{\"created\":{\"time\":"),
        "{gc_state}"
    );

    // Existing name: parameter error, no task.
    let dup = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({"name": "store1", "path": path2})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        dup.text,
        "parameter verification failed - 'name': datastore 'store1' already exists."
    );
    // Bad names and relative paths are rejected before a task starts.
    let bad = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({"name": "s1", "path": path2})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("'name'"), "{}", bad.text);
    let bad = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({"name": "store9", "path": "relative/dir"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("expected absolute path"), "{}", bad.text);

    // A directory that already holds a chunk store: the task fails, nothing is configured.
    let upid = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({"name": "store3", "path": path1})),
        )
        .await
        .data();
    let (state, log) = wait_task(upid.as_str().unwrap()).await;
    assert!(matches!(state, TaskState::Error { .. }), "{state:?}\n{log}");
    assert_eq!(read_config("datastore.cfg"), expected_cfg);

    // Legacy prune options become a prune job.
    let upid = client
        .call(
            Method::POST,
            "config/datastore",
            "root@pam",
            Some(json!({
                "name": "store2",
                "path": path2,
                "prune-schedule": "daily",
                "keep-last": 7,
                "tuning": "sync-level=none",
            })),
        )
        .await
        .data();
    let (state, log) = wait_task(upid.as_str().unwrap()).await;
    assert!(matches!(state, TaskState::Ok { .. }), "{state:?}\n{log}");
    let prune_cfg = read_config("prune.cfg");
    let job_id = prune_cfg
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("prune: "))
        .unwrap_or_else(|| panic!("no prune job: {prune_cfg:?}"))
        .to_string();
    assert_eq!(job_id.len(), 32);
    assert!(job_id.starts_with("default-store2-"));
    assert_eq!(
        prune_cfg,
        format!("prune: {job_id}\n\tkeep-last 7\n\tschedule daily\n\tstore store2\n")
    );
    assert!(
        log.contains(&format!(": Prune job created: {job_id}\n")),
        "{log}"
    );
    let expected_cfg2 = format!(
        "{expected_cfg}\ndatastore: store2\n\tpath {}\n\ttuning sync-level=none\n",
        path2.display()
    );
    assert_eq!(read_config("datastore.cfg"), expected_cfg2);

    // -- list and read ------------------------------------------------------------------
    let digest = sha256_hex(read_config("datastore.cfg").as_bytes());
    let reply = client.get("config/datastore", "root@pam").await;
    let list = reply.data();
    assert_eq!(reply.json()["digest"], digest);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store1", "store2"]);
    let list = client.get("config/datastore", "audit@pbs").await.data();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "store1");
    assert_eq!(list[0]["comment"], "first store");
    let list = client.get("config/datastore", "nobody@pbs").await.data();
    assert_eq!(list, json!([]));

    let reply = client.get("config/datastore/store1", "audit@pbs").await;
    let store1 = reply.data();
    assert_eq!(reply.json()["digest"], digest);
    assert_eq!(store1["path"], path1.to_str().unwrap());
    assert_eq!(store1["gc-schedule"], "daily");
    let reply = client.get("config/datastore/store2", "audit@pbs").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = client.get("config/datastore/nostore", "root@pam").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.text, "datastore 'nostore' does not exist.");

    // -- update -------------------------------------------------------------------------
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store1",
            "root@pam",
            Some(json!({"comment": "x", "digest": "0".repeat(64)})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.text,
        "detected modified configuration - file changed by other user? Try again."
    );
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store1",
            "audit@pbs",
            Some(json!({"comment": "x"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store1",
            "root@pam",
            Some(json!({"keep-daily": 3})),
        )
        .await;
    assert_eq!(
        reply.text,
        "parameter verification failed - 'keep-daily': datastore prune settings have been replaced by prune jobs"
    );
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store1",
            "root@pam",
            Some(json!({
                "comment": "changed",
                "verify-new": true,
                "delete": ["gc-schedule"],
                "digest": digest,
            })),
        )
        .await;
    assert_eq!(reply.data(), Value::Null);
    let store1 = client
        .get("config/datastore/store1", "root@pam")
        .await
        .data();
    assert_eq!(store1["comment"], "changed");
    assert_eq!(store1["verify-new"], true);
    assert!(store1.get("gc-schedule").is_none());
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store1",
            "root@pam",
            Some(json!({"delete": ["path"]})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // A changed GC schedule makes "now" the reference of the next scheduled run.
    let gc_state_path = pbs_buildcfg::state_dir().join("jobstates/garbage_collection-store1.json");
    let finished = r#"{"finished":{"upid":"UPID:pbs:00000001:00000001:00000000:00000001:garbage_collection:store1:root@pam:","state":{"OK":{"endtime":5}},"updated":null}}"#;
    for (schedule, touched) in [("weekly", true), ("weekly", false)] {
        std::fs::write(&gc_state_path, finished).unwrap();
        let reply = client
            .call(
                Method::PUT,
                "config/datastore/store1",
                "root@pam",
                Some(json!({ "gc-schedule": schedule })),
            )
            .await;
        assert_eq!(reply.data(), Value::Null);
        let state = std::fs::read_to_string(&gc_state_path).unwrap();
        if touched {
            let prefix = r#"{"finished":{"upid":"UPID:pbs:00000001:00000001:00000000:00000001:garbage_collection:store1:root@pam:","state":{"OK":{"endtime":5}},"updated":"#;
            assert!(state.starts_with(prefix), "{state}");
            assert!(!state.ends_with("null}}"), "{state}");
        } else {
            assert_eq!(state, finished);
        }
    }

    // -- datastore usage ----------------------------------------------------------------
    let usage = client
        .get("status/datastore-usage", "root@pam")
        .await
        .data();
    let usage = usage.as_array().unwrap();
    assert_eq!(usage.len(), 2);
    for (entry, name) in usage.iter().zip(["store1", "store2"]) {
        assert_eq!(entry["store"], name);
        let total = entry["total"].as_u64().unwrap();
        assert!(total > 0);
        assert!(entry["used"].as_u64().unwrap() <= total);
        assert!(entry["avail"].as_u64().unwrap() <= total);
        assert!(entry["gc-status"].is_object());
        assert!(entry.get("error").is_none());
    }
    let usage = client
        .get("status/datastore-usage", "audit@pbs")
        .await
        .data();
    assert_eq!(usage.as_array().unwrap().len(), 1);
    assert_eq!(usage[0]["store"], "store1");
    assert!(usage[0]["total"].is_u64());
    let usage = client
        .get("status/datastore-usage", "nsuser@pbs")
        .await
        .data();
    assert_eq!(usage, json!([{"store": "store2"}]));
    let usage = client
        .get("status/datastore-usage", "nobody@pbs")
        .await
        .data();
    assert_eq!(usage, json!([]));

    // A datastore in offline maintenance reports an error instead of numbers.
    let reply = client
        .call(
            Method::PUT,
            "config/datastore/store2",
            "root@pam",
            Some(json!({"maintenance-mode": "offline"})),
        )
        .await;
    assert_eq!(reply.data(), Value::Null);
    assert!(read_config("datastore.cfg").contains("\tmaintenance-mode type=offline\n"));
    let usage = client
        .get("status/datastore-usage", "root@pam")
        .await
        .data();
    assert_eq!(usage[1]["store"], "store2");
    assert!(usage[1].get("total").is_none());
    assert!(
        usage[1]["error"]
            .as_str()
            .unwrap()
            .contains("offline maintenance mode"),
        "{usage}"
    );

    // -- node status --------------------------------------------------------------------
    let status = client
        .get("nodes/localhost/status", "audit@pbs")
        .await
        .data();
    for key in ["memory", "swap"] {
        let total = status[key]["total"].as_u64().unwrap();
        let used = status[key]["used"].as_u64().unwrap();
        let free = status[key]["free"].as_u64().unwrap();
        assert_eq!(used + free, total, "{key}: {status}");
    }
    assert!(status["root"]["total"].as_u64().unwrap() > 0);
    assert!(status["root"]["avail"].is_u64());
    assert!(status["uptime"].as_u64().unwrap() > 0);
    assert_eq!(status["loadavg"].as_array().unwrap().len(), 3);
    let kernel = &status["current-kernel"];
    assert_eq!(
        status["kversion"],
        format!(
            "{} {} {}",
            kernel["sysname"].as_str().unwrap(),
            kernel["release"].as_str().unwrap(),
            kernel["version"].as_str().unwrap()
        )
    );
    assert_eq!(kernel["sysname"], "Linux");
    assert!(kernel["machine"].is_string());
    let cpu = status["cpu"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&cpu));
    assert!(status["wait"].as_f64().is_some());
    assert!(status["cpuinfo"]["cpus"].as_u64().unwrap() >= 1);
    assert!(status["cpuinfo"]["sockets"].as_u64().unwrap() >= 1);
    assert!(status["cpuinfo"]["model"].is_string());
    let fingerprint =
        pbs_auth::tls::cert_file_fingerprint(&pbs_auth::tls::proxy_cert_path()).unwrap();
    assert_eq!(status["info"]["fingerprint"], fingerprint);
    let mode = status["boot-info"]["mode"].as_str().unwrap();
    assert!(mode == "efi" || mode == "legacy-bios");
    assert!(status["boot-info"]["secureboot"].is_boolean());
    let reply = client.get("nodes/localhost/status", "nobody@pbs").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // -- remove -------------------------------------------------------------------------
    let reply = client
        .call(Method::DELETE, "config/datastore/nostore", "root@pam", None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = client
        .call(
            Method::DELETE,
            "config/datastore/store2?destroy-data=1",
            "audit@pbs",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let upid = client
        .call(
            Method::DELETE,
            "config/datastore/store2?destroy-data=1",
            "root@pam",
            None,
        )
        .await
        .data();
    let upid = upid.as_str().unwrap().to_string();
    assert!(
        upid.contains(":delete-datastore:store2:root@pam:"),
        "{upid}"
    );
    let (state, log) = wait_task(&upid).await;
    assert!(matches!(state, TaskState::Ok { .. }), "{state:?}\n{log}");
    assert!(!path2.exists(), "datastore directory still there");
    let remaining = read_config("datastore.cfg");
    assert!(!remaining.contains("store2"), "{remaining}");
    assert!(remaining.starts_with("datastore: store1\n\tcomment changed\n\tgc-schedule weekly\n"));
    assert_eq!(read_config("prune.cfg"), "");
    assert!(!read_config("acl.cfg").contains("store2"));
    assert!(read_config("acl.cfg").contains("/datastore/store1"));

    // Without destroy-data the directory stays.
    let upid = client
        .call(Method::DELETE, "config/datastore/store1", "root@pam", None)
        .await
        .data();
    let (state, log) = wait_task(upid.as_str().unwrap()).await;
    assert!(matches!(state, TaskState::Ok { .. }), "{state:?}\n{log}");
    assert_eq!(read_config("datastore.cfg"), "");
    assert_eq!(count_entries(&path1.join(".chunks")), 65536);

    server.shutdown().await;
}
