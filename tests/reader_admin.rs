//! End-to-end tests of the reader protocol and the `admin/datastore` API against the real
//! daemons, on a datastore whose snapshots are written directly with the datastore library.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use common::h2client::{
    read_body, read_head, ticket_cookie, tls_connect, upgrade_head, upgrade_raw, Session, Upgrade,
    READER_PROTOCOL,
};
use common::{chown_to_backup, encode, wait_task, wait_until, Client, Target, TestServer};
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};
use pbs_datastore::manifest::BackupManifest;
use pbs_datastore::{DataBlob, DataChunkBuilder, DataStore, DynamicIndexWriter, FixedIndexWriter};

const STORE: &str = "store1";
const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_086_400;
const T3: i64 = 1_700_172_800;

fn chunk_data(i: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    (0..4096 + i * 97)
        .map(|n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if n % 2 == 0 {
                b'z'
            } else {
                (x >> 32) as u8
            }
        })
        .collect()
}

/// Writes a finished snapshot (a `.didx` of 5 chunks, a `.fidx` of 2, a config blob and the
/// manifest) owned by `owner`; returns the chunk digests.
fn write_snapshot(store: &DataStore, dir: &BackupDir, owner: &Authid) -> Vec<[u8; 32]> {
    write_snapshot_in(store, &BackupNamespace::root(), dir, owner)
}

fn write_snapshot_in(
    store: &DataStore,
    ns: &BackupNamespace,
    dir: &BackupDir,
    owner: &Authid,
) -> Vec<[u8; 32]> {
    let (_, _group_guard) = store
        .create_locked_backup_group(ns, &dir.group, owner)
        .unwrap();
    let (relative, _dir_guard) = store.create_new_locked_backup_dir(ns, dir).unwrap();
    let path = store.base_path().join(relative);
    let mut manifest = BackupManifest::new(dir.group.ty.as_str(), &dir.group.id, dir.time);
    let mut digests = Vec::new();

    let mut writer =
        DynamicIndexWriter::create(store.chunk_store().clone(), path.join("root.pxar.didx"))
            .unwrap();
    let mut end = 0u64;
    for i in 0..5 {
        let data = chunk_data(i);
        let (blob, digest) = DataChunkBuilder::new(&data).compress(true).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        end += data.len() as u64;
        writer.add_chunk(end, &digest).unwrap();
        digests.push(digest);
    }
    let csum = writer.close().unwrap();
    manifest
        .add_file("root.pxar.didx", end, csum, CryptMode::None)
        .unwrap();

    let image: Vec<u8> = (0..2)
        .flat_map(|i| chunk_data(50 + i)[..4096].to_vec())
        .collect();
    let mut writer = FixedIndexWriter::create(
        store.chunk_store().clone(),
        path.join("disk.img.fidx"),
        image.len() as u64,
        4096,
    )
    .unwrap();
    for (i, data) in image.chunks(4096).enumerate() {
        let (blob, digest) = DataChunkBuilder::new(data).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        writer.add_digest(i, &digest).unwrap();
        digests.push(digest);
    }
    let csum = writer.close().unwrap();
    manifest
        .add_file("disk.img.fidx", image.len() as u64, csum, CryptMode::None)
        .unwrap();

    let conf = DataBlob::encode(b"memory: 1024\n", None, true).unwrap();
    std::fs::write(path.join("qemu-server.conf.blob"), conf.raw_data()).unwrap();
    manifest
        .add_file(
            "qemu-server.conf.blob",
            conf.raw_size(),
            openssl::sha::sha256(conf.raw_data()),
            CryptMode::None,
        )
        .unwrap();

    let json = manifest.to_string(None).unwrap();
    let blob = DataBlob::encode(json.as_bytes(), None, true).unwrap();
    std::fs::write(path.join("index.json.blob"), blob.raw_data()).unwrap();
    digests
}

/// Posts `body` unchanged (e.g. an encoded blob) with ticket and CSRF token.
async fn post_raw(server: &TestServer, userid: &str, path: &str, body: &[u8]) -> (u16, String) {
    let dir = server.config_dir();
    let csrf = pbs_auth::CsrfSecret::load(&dir.join("csrf.key")).expect("csrf key");
    let csrf = pbs_auth::assemble_csrf_prevention_token(&csrf, &userid.parse().unwrap());
    let mut tls = tls_connect(server.proxy_addr, &server.fingerprint)
        .await
        .unwrap();
    let head = format!(
        "POST /api2/json/{path} HTTP/1.1\r\nhost: localhost\r\ncookie: {}\r\ncsrfpreventiontoken: {csrf}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        ticket_cookie(server, userid),
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let (status, head) = read_head(&mut tls).await.unwrap();
    let text = read_body(&mut tls, &head).await.unwrap();
    (status.as_u16(), String::from_utf8_lossy(&text).into_owned())
}

/// Upgrades `//api2/json/reader?{query}` with `cookie`, the request written by hand.
async fn open_reader(server: &TestServer, cookie: &str, query: &str) -> Upgrade {
    let head = upgrade_head(
        &format!("//api2/json/reader?{query}"),
        cookie,
        READER_PROTOCOL,
    );
    upgrade_raw(server, &head, READER_PROTOCOL).await.unwrap()
}

/// A GET without content type: status, content type and body.
async fn h2_get(session: &mut Session, path: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let request = Request::get(format!("https://localhost:8007/{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = session.send(request).await.unwrap();
    (reply.status, reply.content_type, reply.body.to_vec())
}

fn reader_query(dir: &BackupDir) -> String {
    format!(
        "backup-id={}&backup-time={}&backup-type={}&debug=true&store={STORE}",
        dir.group.id, dir.time, dir.group.ty
    )
}

fn snapshot_query(dir: &BackupDir) -> String {
    format!(
        "backup-type={}&backup-id={}&backup-time={}",
        dir.group.ty, dir.group.id, dir.time
    )
}

fn snapshot_body(dir: &BackupDir) -> Value {
    json!({
        "backup-type": dir.group.ty.as_str(),
        "backup-id": dir.group.id,
        "backup-time": dir.time,
    })
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pbs-reader-admin")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("scratch directory")
}

struct Fixture {
    server: TestServer,
    root: Client,
    store_path: PathBuf,
    _scratch: tempfile::TempDir,
    group: BackupGroup,
    digests: Vec<[u8; 32]>,
}

fn setup() -> Fixture {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = scratch_dir();
    let store_path = scratch.path().join(STORE);
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            json!({"name": STORE, "path": store_path.to_str().unwrap()}),
        )
        .data();
    let status = wait_task(&root, upid.as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");

    for user in ["alice@pbs", "carol@pbs"] {
        root.post(Target::Proxy, "access/users", json!({ "userid": user }))
            .data();
    }
    root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": "/datastore/store1", "auth-id": "carol@pbs", "role": "DatastoreBackup"}),
    )
    .data();

    let lock_dir = server.base.path().join("run/proxmox-backup/locks");
    let store = DataStore::open_with_lock_dir(STORE, &store_path, &lock_dir).unwrap();
    let owner: Authid = "root@pam".parse().unwrap();
    let group = BackupGroup::new(BackupType::Vm, "100").unwrap();
    let mut digests = Vec::new();
    for time in [T1, T2, T3] {
        digests = write_snapshot(
            &store,
            &BackupDir::new(group.clone(), time).unwrap(),
            &owner,
        );
    }
    chown_to_backup(&store_path);
    chown_to_backup(&lock_dir);
    Fixture {
        server,
        root,
        store_path,
        _scratch: scratch,
        group,
        digests,
    }
}

#[test]
fn reader_and_datastore_admin_end_to_end() {
    let fx = setup();
    let root = &fx.root;
    let base = format!("admin/datastore/{STORE}");
    let newest = BackupDir::new(fx.group.clone(), T3).unwrap();

    // ---- listing ----
    let stores = root.get(Target::Proxy, "admin/datastore").data();
    assert_eq!(stores, json!([{"store": STORE, "comment": null}]));
    let alice_stores = fx
        .server
        .client("alice@pbs")
        .get(Target::Proxy, "admin/datastore")
        .data();
    assert_eq!(alice_stores, json!([]));
    let groups = root.get(Target::Proxy, &format!("{base}/groups")).data();
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups[0]["backup-type"], "vm");
    assert_eq!(groups[0]["backup-id"], "100");
    assert_eq!(groups[0]["backup-count"], 3);
    assert_eq!(groups[0]["last-backup"], T3);
    assert_eq!(groups[0]["owner"], "root@pam");

    let snapshots = root.get(Target::Proxy, &format!("{base}/snapshots")).data();
    let times: Vec<i64> = snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backup-time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![T1, T2, T3]);
    assert_eq!(snapshots[0]["protected"], false);

    let files = root
        .get(
            Target::Proxy,
            &format!("{base}/files?{}", snapshot_query(&newest)),
        )
        .data();
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "root.pxar.didx",
            "disk.img.fidx",
            "qemu-server.conf.blob",
            "index.json.blob"
        ]
    );
    assert_eq!(files[3]["crypt-mode"], "none");

    let snapshot_dir = fx
        .store_path
        .join("vm/100")
        .join(newest.time_string().unwrap());
    let download = root.get(
        Target::Proxy,
        &format!(
            "{base}/download?{}&file-name=qemu-server.conf.blob",
            snapshot_query(&newest)
        ),
    );
    assert_eq!(download.status, StatusCode::OK);
    let decoded = root.get(
        Target::Proxy,
        &format!(
            "{base}/download-decoded?{}&file-name=qemu-server.conf.blob",
            snapshot_query(&newest)
        ),
    );
    assert_eq!(decoded.body, "memory: 1024\n");
    let decoded = root.get(
        Target::Proxy,
        &format!(
            "{base}/download-decoded?{}&file-name=root.pxar.didx",
            snapshot_query(&newest)
        ),
    );
    assert_eq!(decoded.status, StatusCode::OK);
    let stream: Vec<u8> = (0..5).flat_map(chunk_data).collect();
    assert_eq!(decoded.body, String::from_utf8_lossy(&stream));

    // ---- reader session ----
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root_cookie = ticket_cookie(&fx.server, "root@pam");
    runtime.block_on(async {
        let Upgrade::Session(mut h2) =
            open_reader(&fx.server, &root_cookie, &reader_query(&newest)).await
        else {
            panic!("upgrade refused");
        };
        let (status, _, index) = h2_get(&mut h2, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            String::from_utf8(index).unwrap(),
            r#"{"data":[{"subdir":"chunk"},{"subdir":"download"},{"subdir":"speedtest"}]}"#
        );

        // chunks are not downloadable before their index was fetched
        let first = hex::encode(fx.digests[0]);
        let asked = std::time::Instant::now();
        let (status, _, body) = h2_get(&mut h2, &format!("chunk?digest={first}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            asked.elapsed() >= Duration::from_millis(2900),
            "answered without delay"
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("download chunk {first} not allowed")
        );

        let (status, ctype, manifest) = h2_get(&mut h2, "download?file-name=index.json.blob").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("application/octet-stream"));
        assert_eq!(
            manifest,
            std::fs::read(snapshot_dir.join("index.json.blob")).unwrap()
        );
        for index in ["root.pxar.didx", "disk.img.fidx"] {
            let (status, _, data) = h2_get(&mut h2, &format!("download?file-name={index}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(data, std::fs::read(snapshot_dir.join(index)).unwrap());
        }
        for digest in &fx.digests {
            let hex = hex::encode(digest);
            let (status, _, data) = h2_get(&mut h2, &format!("chunk?digest={hex}")).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&data));
            let path = fx.store_path.join(".chunks").join(&hex[..4]).join(&hex);
            assert_eq!(data, std::fs::read(path).unwrap());
        }

        // a `:path` without leading slash is routed like one with it
        let relative: http::uri::PathAndQuery = "download?file-name=index.json.blob"
            .parse()
            .expect("relative path accepted by the http crate");
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some("localhost:8007".parse().unwrap());
        parts.path_and_query = Some(relative);
        let uri = http::Uri::from_parts(parts).unwrap();
        let reply = h2
            .send(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("relative :path request answered");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.as_ref(), manifest.as_slice());

        let (status, _, body) = h2_get(&mut h2, "download?file-name=missing.blob").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("not found"));
        let (status, _, body) = h2_get(&mut h2, "download?file-name=notes.txt").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "unknown archive type: \"notes.txt\""
        );
        let (status, _, body) = h2_get(&mut h2, "speedtest").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 1024 * 1024);
        assert!(body.iter().all(|b| *b == b'A'));
        let (status, _, body) = h2_get(&mut h2, "nothing/here").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "Path '/nothing/here' not found."
        );

        // no privileges at all: refused before anything else
        let alice = ticket_cookie(&fx.server, "alice@pbs");
        match open_reader(&fx.server, &alice, &reader_query(&newest)).await {
            Upgrade::Refused(status, body) => {
                assert_eq!(status, 400);
                assert_eq!(body, "no permissions on /datastore/store1");
            }
            Upgrade::Session(_) => panic!("alice got a reader session"),
        }
        // Datastore.Backup only: the group must be owned by the caller
        let carol = ticket_cookie(&fx.server, "carol@pbs");
        match open_reader(&fx.server, &carol, &reader_query(&newest)).await {
            Upgrade::Refused(status, body) => {
                assert_eq!(status, 400);
                assert_eq!(body, "backup owner check failed!");
            }
            Upgrade::Session(_) => panic!("carol got a reader session"),
        }
        // unknown snapshot
        let missing = BackupDir::new(fx.group.clone(), T3 + 1).unwrap();
        match open_reader(&fx.server, &root_cookie, &reader_query(&missing)).await {
            Upgrade::Refused(status, body) => {
                assert_eq!(status, 400);
                assert!(body.contains("does not exist"), "{body}");
            }
            Upgrade::Session(_) => panic!("session on a missing snapshot"),
        }
        drop(h2);
    });

    // the session was one `reader` task that ended when the client went away
    let tasks = root
        .get(Target::Proxy, "nodes/localhost/tasks?typefilter=reader")
        .data();
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    let reader_upid = tasks[0]["upid"].as_str().unwrap().to_string();
    assert_eq!(tasks[0]["worker_id"], format!("{STORE}:vm/100/{:08X}", T3));
    let status = wait_task(root, &reader_upid);
    assert_eq!(status["exitstatus"], "OK", "{status}");
    let log = root
        .get(
            Target::Proxy,
            &format!("nodes/localhost/tasks/{}/log?limit=0", encode(&reader_upid)),
        )
        .data();
    let lines: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap())
        .collect();
    assert!(
        lines[0].ends_with(&format!(
            "starting new backup reader datastore '{STORE}': {:?}",
            fx.store_path
        )),
        "{lines:?}"
    );
    for expected in [
        "register chunks in 'root.pxar.didx' as downloadable.",
        "reader finished successfully",
        "TASK OK",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(expected)),
            "{expected:?} missing in {lines:?}"
        );
    }

    // the admin API refuses users without privileges and hides foreign groups
    let carol = fx.server.client("carol@pbs");
    let carol_groups = carol.get(Target::Proxy, &format!("{base}/groups")).data();
    assert_eq!(carol_groups, json!([]));
    let alice = fx.server.client("alice@pbs");
    assert_eq!(
        alice.get(Target::Proxy, &format!("{base}/groups")).status,
        StatusCode::FORBIDDEN
    );

    // ---- notes and protection ----
    let mut notes_body = snapshot_body(&newest);
    notes_body["notes"] = json!("first line\nsecond line");
    root.put(Target::Proxy, &format!("{base}/notes"), notes_body)
        .data();
    let notes = root
        .get(
            Target::Proxy,
            &format!("{base}/notes?{}", snapshot_query(&newest)),
        )
        .data();
    assert_eq!(notes, "first line\nsecond line");
    let snapshots = root.get(Target::Proxy, &format!("{base}/snapshots")).data();
    assert_eq!(snapshots[2]["comment"], "first line");

    root.put(
        Target::Proxy,
        &format!("{base}/group-notes"),
        json!({"backup-type": "vm", "backup-id": "100", "notes": "group comment\nmore"}),
    )
    .data();
    let group_notes = root
        .get(
            Target::Proxy,
            &format!("{base}/group-notes?backup-type=vm&backup-id=100"),
        )
        .data();
    assert_eq!(group_notes, "group comment\nmore");
    let groups = root.get(Target::Proxy, &format!("{base}/groups")).data();
    assert_eq!(groups[0]["comment"], "group comment");

    let oldest = BackupDir::new(fx.group.clone(), T1).unwrap();
    let mut protect = snapshot_body(&oldest);
    protect["protected"] = json!(true);
    root.put(Target::Proxy, &format!("{base}/protected"), protect)
        .data();
    let protected = root
        .get(
            Target::Proxy,
            &format!("{base}/protected?{}", snapshot_query(&oldest)),
        )
        .data();
    assert_eq!(protected, true);

    // ---- prune ----
    let mut prune =
        json!({"backup-type": "vm", "backup-id": "100", "keep-last": 1, "dry-run": true});
    let marks = root
        .post(Target::Proxy, &format!("{base}/prune"), prune.clone())
        .data();
    let summary: Vec<(i64, bool, bool)> = marks
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["backup-time"].as_i64().unwrap(),
                m["keep"].as_bool().unwrap(),
                m["protected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![(T1, true, true), (T2, false, false), (T3, true, false)]
    );
    assert_eq!(
        root.get(Target::Proxy, &format!("{base}/snapshots"))
            .data()
            .as_array()
            .unwrap()
            .len(),
        3,
        "dry run removed something"
    );
    prune["dry-run"] = json!(false);
    root.post(Target::Proxy, &format!("{base}/prune"), prune)
        .data();
    let times: Vec<i64> = root
        .get(Target::Proxy, &format!("{base}/snapshots"))
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backup-time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![T1, T3]);

    // a protected snapshot cannot be forgotten
    let forget_oldest = root.delete(
        Target::Proxy,
        &format!("{base}/snapshots?{}", snapshot_query(&oldest)),
    );
    assert_eq!(forget_oldest.status, StatusCode::BAD_REQUEST);
    let mut unprotect = snapshot_body(&oldest);
    unprotect["protected"] = json!(false);
    root.put(Target::Proxy, &format!("{base}/protected"), unprotect)
        .data();

    // ---- verify ----
    let upid = root
        .post(
            Target::Proxy,
            &format!("{base}/verify"),
            snapshot_body(&newest),
        )
        .data();
    let upid = upid.as_str().unwrap().to_string();
    assert!(upid.contains(":verify_snapshot:"), "{upid}");
    let status = wait_task(root, &upid);
    assert_eq!(status["exitstatus"], "OK", "{status}");
    let snapshots = root.get(Target::Proxy, &format!("{base}/snapshots")).data();
    assert_eq!(snapshots[1]["backup-time"], T3);
    assert_eq!(snapshots[1]["verification"]["state"], "ok");
    assert_eq!(snapshots[1]["verification"]["upid"], upid.as_str());
    let first_verify_upid = upid;

    // ---- forget ----
    root.delete(
        Target::Proxy,
        &format!("{base}/snapshots?{}", snapshot_query(&oldest)),
    )
    .data();
    let times: Vec<i64> = root
        .get(Target::Proxy, &format!("{base}/snapshots"))
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backup-time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![T3]);

    // ---- garbage collection ----
    let upid = root
        .post(Target::Proxy, &format!("{base}/gc"), json!({}))
        .data();
    let mut upid = upid.as_str().unwrap().to_string();
    // a second start while the first may still run is refused or starts after it ended
    let again = root.post(Target::Proxy, &format!("{base}/gc"), json!({}));
    if again.status != StatusCode::OK {
        assert_eq!(again.body, "garbage collection already running");
    } else {
        let status = wait_task(root, &upid);
        assert_eq!(status["exitstatus"], "OK", "{status}");
        upid = again.data().as_str().unwrap().to_string();
    }
    assert!(upid.contains(":garbage_collection:store1:"), "{upid}");
    let status = wait_task(root, &upid);
    assert_eq!(status["exitstatus"], "OK", "{status}");
    let gc = root.get(Target::Proxy, &format!("{base}/gc")).data();
    assert_eq!(gc["store"], STORE);
    assert_eq!(gc["upid"], upid.as_str());
    assert_eq!(gc["index-file-count"], 2, "{gc}");
    assert_eq!(gc["last-run-state"], "ok", "{gc}");
    let status = root
        .get(Target::Proxy, &format!("{base}/status?verbose=1"))
        .data();
    assert!(status["total"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["counts"]["vm"]["snapshots"], 1, "{status}");

    // ---- the manager's verify and gc status commands ----
    let manager = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_proxmox-backup-manager"))
            .args(args)
            .env("PBS_BASE_DIR", fx.server.base.path())
            .env("PBS_PROXY_LISTEN", fx.server.proxy_addr.to_string())
            .output()
            .expect("run proxmox-backup-manager");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let text = manager(&["verify", STORE, "--ignore-verified", "false"]);
    assert!(
        text.contains("TASK OK") || text.contains("verify"),
        "{text}"
    );
    let gc: Value = serde_json::from_str(&manager(&[
        "garbage-collection",
        "status",
        STORE,
        "--output-format",
        "json",
    ]))
    .unwrap();
    assert_eq!(gc["upid"], upid.as_str());
    let snapshots = root.get(Target::Proxy, &format!("{base}/snapshots")).data();
    assert_ne!(
        snapshots[0]["verification"]["upid"],
        json!(first_verify_upid),
        "manager verify did not verify again"
    );
    assert_eq!(snapshots[0]["verification"]["state"], "ok");

    // ---- ownership ----
    root.post(
        Target::Proxy,
        &format!("{base}/change-owner"),
        json!({"backup-type": "vm", "backup-id": "100", "new-owner": "carol@pbs"}),
    )
    .data();
    let carol_groups = carol.get(Target::Proxy, &format!("{base}/groups")).data();
    assert_eq!(carol_groups[0]["owner"], "carol@pbs", "{carol_groups}");
    // carol (Datastore.Backup only) may not hand the group to another user
    let refused = carol.post(
        Target::Proxy,
        &format!("{base}/change-owner"),
        json!({"backup-type": "vm", "backup-id": "100", "new-owner": "alice@pbs"}),
    );
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let carol_notes = carol
        .get(
            Target::Proxy,
            &format!("{base}/notes?{}", snapshot_query(&newest)),
        )
        .data();
    assert_eq!(carol_notes, "first line\nsecond line");

    // client log upload: Datastore.Backup + owner only, CRC checked, only once
    runtime.block_on(async {
        let log = DataBlob::encode(b"client log line\n", None, true).unwrap();
        let path = format!(
            "admin/datastore/{STORE}/upload-backup-log?{}",
            snapshot_query(&newest)
        );
        let (status, body) = post_raw(&fx.server, "alice@pbs", &path, log.raw_data()).await;
        assert_eq!(status, 403, "{body}");
        let mut broken = log.raw_data().to_vec();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        let (status, body) = post_raw(&fx.server, "carol@pbs", &path, &broken).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = post_raw(&fx.server, "carol@pbs", &path, log.raw_data()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"{"data":null}"#);
        assert_eq!(
            std::fs::read(snapshot_dir.join("client.log.blob")).unwrap(),
            log.raw_data()
        );
        let (status, body) = post_raw(&fx.server, "carol@pbs", &path, log.raw_data()).await;
        assert_eq!(status, 400);
        assert_eq!(body, "backup already contains a log.");
    });

    // ---- namespaces ----
    let created = root
        .post(
            Target::Proxy,
            &format!("{base}/namespace"),
            json!({"name": "team"}),
        )
        .data();
    assert_eq!(created, "team");
    let nested = root
        .post(
            Target::Proxy,
            &format!("{base}/namespace"),
            json!({"name": "sub", "parent": "team"}),
        )
        .data();
    assert_eq!(nested, "team/sub");
    let list = root.get(Target::Proxy, &format!("{base}/namespace")).data();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ns"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["", "team", "team/sub"]);

    // a reader session in a namespace, with privileges only on that namespace
    let team = BackupNamespace::new("team").unwrap();
    let lock_dir = fx.server.base.path().join("run/proxmox-backup/locks");
    let store = DataStore::open_with_lock_dir(STORE, &fx.store_path, &lock_dir).unwrap();
    let team_dir = BackupDir::new(BackupGroup::new(BackupType::Ct, "200").unwrap(), T1).unwrap();
    let team_digests = write_snapshot_in(&store, &team, &team_dir, &"root@pam".parse().unwrap());
    chown_to_backup(&fx.store_path.join("ns"));
    root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": "/datastore/store1/team", "auth-id": "alice@pbs", "role": "DatastoreReader"}),
    )
    .data();
    let alice_cookie = ticket_cookie(&fx.server, "alice@pbs");
    runtime.block_on(async {
        let query = format!("{}&ns=team", reader_query(&team_dir));
        let Upgrade::Session(mut h2) = open_reader(&fx.server, &alice_cookie, &query).await else {
            panic!("alice refused in her namespace");
        };
        let (status, _, _) = h2_get(&mut h2, "download?file-name=disk.img.fidx").await;
        assert_eq!(status, StatusCode::OK);
        let last = hex::encode(team_digests[team_digests.len() - 1]);
        let (status, _, data) = h2_get(&mut h2, &format!("chunk?digest={last}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            data,
            std::fs::read(fx.store_path.join(".chunks").join(&last[..4]).join(&last)).unwrap()
        );
        // the root namespace stays closed to her
        match open_reader(&fx.server, &alice_cookie, &reader_query(&team_dir)).await {
            Upgrade::Refused(status, body) => {
                assert_eq!(status, 400);
                assert_eq!(body, "no permissions on /datastore/store1");
            }
            Upgrade::Session(_) => panic!("alice got a session in the root namespace"),
        }
    });
    let team_groups = fx
        .server
        .client("alice@pbs")
        .get(Target::Proxy, &format!("{base}/groups?ns=team"))
        .data();
    // DatastoreReader includes Datastore.Audit: all groups of the namespace are listed
    assert_eq!(team_groups.as_array().unwrap().len(), 1, "{team_groups}");
    assert_eq!(team_groups[0]["backup-id"], "200");

    // prune-datastore below `team`, once alice's session released its snapshot lock
    wait_until(Duration::from_secs(30), "reader sessions ended", || {
        root.get(
            Target::Proxy,
            "nodes/localhost/tasks?typefilter=reader&running=1",
        )
        .data()
            == json!([])
    });
    let newer_team = BackupDir::new(team_dir.group.clone(), T2).unwrap();
    write_snapshot_in(&store, &team, &newer_team, &"root@pam".parse().unwrap());
    chown_to_backup(&fx.store_path.join("ns"));
    let upid = root
        .post(
            Target::Proxy,
            &format!("{base}/prune-datastore"),
            json!({"ns": "team", "keep-last": 1}),
        )
        .data();
    let status = wait_task(root, upid.as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");
    let team_snapshots = root
        .get(Target::Proxy, &format!("{base}/snapshots?ns=team"))
        .data();
    let times: Vec<i64> = team_snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backup-time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![T2]);

    // a namespace with content is only removed together with its groups
    let refused = root.delete(Target::Proxy, &format!("{base}/namespace?ns=team"));
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    root.delete(
        Target::Proxy,
        &format!("{base}/namespace?ns=team&delete-groups=1"),
    )
    .data();
    let list = root.get(Target::Proxy, &format!("{base}/namespace")).data();
    assert_eq!(list, json!([{"ns": ""}]));
    assert!(!fx.store_path.join("ns/team").exists());
}
