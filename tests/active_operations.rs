//! End-to-end test of the per-datastore operation counters: backup and reader sessions count
//! while they run, the counters are shared through the run directory and read back by
//! `GET admin/datastore/{store}/active-operations`.

mod common;

use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};

use common::h2client::{upgrade, Session, BACKUP_PROTOCOL, READER_PROTOCOL};
use common::{wait_task, wait_until, Target, TestServer};
use pbs_datastore::DataBlob;

const STORE: &str = "ops";
const TIME: i64 = 1_700_000_000;

fn snapshot_query(id: &str) -> String {
    format!("backup-type=host&backup-id={id}&backup-time={TIME}&store={STORE}")
}

async fn backup(server: &TestServer, id: &str) -> Session {
    let target = format!("/api2/json/backup?{}", snapshot_query(id));
    upgrade(server, "root@pam", &target, BACKUP_PROTOCOL)
        .await
        .unwrap()
        .session()
}

async fn finish(session: &mut Session, id: &str) {
    let blob = DataBlob::encode(b"data", None, true).unwrap().into_inner();
    session.blob("a.blob", &blob).await.data();
    let manifest = json!({
        "backup-type": "host", "backup-id": id, "backup-time": TIME,
        "files": [{"filename": "a.blob", "size": blob.len(),
                   "csum": hex::encode(openssl::sha::sha256(&blob))}],
    });
    let manifest = DataBlob::encode(manifest.to_string().as_bytes(), None, true)
        .unwrap()
        .into_inner();
    session.blob("index.json.blob", &manifest).await.data();
    session.post("finish").await.data();
}

#[test]
fn sessions_are_counted_while_they_run() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = tempfile::Builder::new()
        .prefix("pbs-active-ops-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            json!({"name": STORE, "path": scratch.path().join(STORE)}),
        )
        .data();
    let status = wait_task(&root, upid.as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");

    let path = format!("admin/datastore/{STORE}/active-operations");
    let counters = || root.get(Target::Proxy, &path).data();
    assert_eq!(counters(), json!({"read": 0, "write": 0}));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut first = runtime.block_on(backup(&server, "first"));
    assert_eq!(counters(), json!({"read": 0, "write": 1}));
    runtime.block_on(finish(&mut first, "first"));
    drop(first);
    wait_until(Duration::from_secs(20), "backup session end", || {
        counters() == json!({"read": 0, "write": 0})
    });

    // A reader of the finished snapshot next to a second backup.
    let second = runtime.block_on(backup(&server, "second"));
    let reader_target = format!("/api2/json/reader?{}", snapshot_query("first"));
    let reader = runtime
        .block_on(upgrade(
            &server,
            "root@pam",
            &reader_target,
            READER_PROTOCOL,
        ))
        .unwrap()
        .session();
    assert_eq!(counters(), json!({"read": 1, "write": 1}));

    // The shared file: one entry of the proxy process with both counters.
    let file = server
        .base
        .path()
        .join(format!("run/proxmox-backup/active-operations/{STORE}"));
    let entries: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let proxy = server.child_pid(Target::Proxy);
    let own: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["pid"] == proxy)
        .collect();
    assert_eq!(own.len(), 1, "{entries}");
    assert_eq!(own[0]["active_operations"], json!({"read": 1, "write": 1}));
    assert!(own[0]["starttime"].is_u64());

    drop(reader);
    drop(second);
    drop(runtime);
    wait_until(Duration::from_secs(20), "sessions end", || {
        counters() == json!({"read": 0, "write": 0})
    });

    // Datastore.Audit is needed; unknown stores are an error.
    root.post(
        Target::Proxy,
        "access/users",
        json!({ "userid": "dave@pbs" }),
    )
    .data();
    let reply = server.client("dave@pbs").get(Target::Proxy, &path);
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let reply = root.get(Target::Proxy, "admin/datastore/nostore/active-operations");
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
}
