//! End-to-end tests of concurrent use of a datastore through the real daemons: parallel backup
//! sessions, a reader next to a running backup, and garbage collection while a backup is open.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use common::h2client::{
    dynamic_csum, upgrade, upgrade_retrying, H2Reply, Session, BACKUP_PROTOCOL, GROUP_BUSY,
    READER_PROTOCOL,
};
use common::{wait_task, Client, Target, TestServer};
use pbs_api_types::CryptMode;
use pbs_datastore::{BackupManifest, DataBlob, DataChunkBuilder};

const STORE: &str = "store1";
const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_000_600;
const INDEX_HEADER_SIZE: usize = 4096;

// ---- sessions ---------------------------------------------------------------------------

fn snapshot_query(ty: &str, id: &str, time: i64) -> String {
    format!("backup-type={ty}&backup-id={id}&backup-time={time}&store={STORE}")
}

/// Starts a backup session, waiting for the previous session of the group to end.
async fn backup_session(server: &TestServer, id: &str, time: i64) -> Session {
    let target = format!("/api2/json/backup?{}", snapshot_query("host", id, time));
    upgrade_retrying(GROUP_BUSY, || {
        upgrade(server, "root@pam", &target, BACKUP_PROTOCOL)
    })
    .await
}

async fn reader_session(server: &TestServer, id: &str, time: i64) -> Session {
    let target = format!("/api2/json/reader?{}", snapshot_query("host", id, time));
    upgrade(server, "root@pam", &target, READER_PROTOCOL)
        .await
        .expect("upgrade request")
        .session()
}

/// Uploads `chunk` to dynamic writer `wid`.
async fn upload_chunk(session: &mut Session, wid: u64, chunk: &Chunk) -> H2Reply {
    session
        .chunk(
            "dynamic",
            wid,
            &chunk.digest,
            chunk.data.len(),
            &chunk.encoded,
        )
        .await
}

// ---- test data -------------------------------------------------------------------------

/// Test data that compresses a little but not completely.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 4 == 0 {
                (state & 0xff) as u8
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

#[derive(Clone)]
struct Chunk {
    data: Vec<u8>,
    digest: [u8; 32],
    encoded: Vec<u8>,
}

fn chunk(len: usize, seed: u32) -> Chunk {
    let data = pattern(len, seed);
    let (blob, digest) = DataChunkBuilder::new(&data)
        .compress(true)
        .build()
        .expect("encode chunk");
    Chunk {
        data,
        digest,
        encoded: blob.into_inner(),
    }
}

/// Where the chunks of a dynamic index lie.
struct Layout {
    /// Digest and start offset, as the append call takes them.
    appends: Vec<([u8; 32], u64)>,
    /// End offset and digest, as the index checksum covers them.
    ends: Vec<(u64, [u8; 32])>,
    /// Total data size.
    size: u64,
}

fn layout(chunks: &[&Chunk]) -> Layout {
    let mut appends = Vec::new();
    let mut ends = Vec::new();
    let mut offset = 0u64;
    for c in chunks {
        appends.push((c.digest, offset));
        offset += c.data.len() as u64;
        ends.push((offset, c.digest));
    }
    Layout {
        appends,
        ends,
        size: offset,
    }
}

fn manifest_blob(id: &str, time: i64, size: u64, csum: [u8; 32]) -> Vec<u8> {
    let mut manifest = BackupManifest::new("host", id, time);
    manifest
        .add_file("root.pxar.didx", size, csum, CryptMode::None)
        .expect("add file");
    let json = manifest.to_string(None).expect("manifest JSON");
    DataBlob::encode(json.as_bytes(), None, true)
        .expect("manifest blob")
        .into_inner()
}

/// Closes writer `wid` holding `chunks`, uploads the manifest and finishes the session.
async fn close_and_finish(session: &mut Session, wid: u64, id: &str, time: i64, chunks: &[&Chunk]) {
    let Layout { ends, size, .. } = layout(chunks);
    let csum = dynamic_csum(&ends);
    let close = format!(
        "dynamic_close?wid={wid}&chunk-count={}&size={size}&csum={}",
        chunks.len(),
        hex::encode(csum)
    );
    session.post(&close).await.data();
    session
        .blob("index.json.blob", &manifest_blob(id, time, size, csum))
        .await
        .data();
    session.post("finish").await.data();
}

/// A complete backup of `chunks` (all uploaded) as `host/{id}` at `time`.
async fn backup(server: &TestServer, id: &str, time: i64, chunks: &[Chunk]) {
    let mut session = backup_session(server, id, time).await;
    let wid = open_writer(&mut session).await;
    for c in chunks {
        assert_eq!(
            upload_chunk(&mut session, wid, c).await.data(),
            hex::encode(c.digest)
        );
    }
    let refs: Vec<&Chunk> = chunks.iter().collect();
    session
        .append("dynamic", wid, &layout(&refs).appends)
        .await
        .data();
    close_and_finish(&mut session, wid, id, time, &refs).await;
}

async fn open_writer(session: &mut Session) -> u64 {
    session
        .post("dynamic_index?archive-name=root.pxar.didx")
        .await
        .data()
        .as_u64()
        .expect("writer id")
}

// ---- server and datastore --------------------------------------------------------------

struct Fixture {
    server: TestServer,
    root: Client,
    store: PathBuf,
    _scratch: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

fn setup() -> Fixture {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = tempfile::Builder::new()
        .prefix("pbs-backup-concurrency-")
        .tempdir_in("/dev/shm")
        .expect("scratch directory in /dev/shm");
    let store = scratch.path().join(STORE);
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            json!({"name": STORE, "path": store}),
        )
        .data();
    let status = wait_task(&root, upid.as_str().expect("UPID"));
    assert_eq!(status["exitstatus"], "OK", "{status}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    Fixture {
        server,
        root,
        store,
        _scratch: scratch,
        runtime,
    }
}
/// Runs an admin task (`verify`, `gc`) and asserts that it ended well.
fn run_admin_task(root: &Client, task: &str, body: Value) -> String {
    let upid = root
        .post(
            Target::Proxy,
            &format!("admin/datastore/{STORE}/{task}"),
            body,
        )
        .data();
    let upid = upid.as_str().expect("UPID").to_string();
    let status = wait_task(root, &upid);
    assert_eq!(status["exitstatus"], "OK", "{task}: {status}");
    upid
}

fn snapshot_body(id: &str, time: i64) -> Value {
    json!({"backup-type": "host", "backup-id": id, "backup-time": time})
}

fn chunk_path(store: &Path, digest: &[u8; 32]) -> PathBuf {
    let hex = hex::encode(digest);
    store.join(".chunks").join(&hex[..4]).join(hex)
}

/// Loads the chunk file (checking its CRC) and compares the decoded data.
fn check_chunk_file(store: &Path, chunk: &Chunk) {
    let path = chunk_path(store, &chunk.digest);
    let mut file = std::fs::File::open(&path)
        .unwrap_or_else(|err| panic!("chunk {}: {err}", hex::encode(chunk.digest)));
    let blob = DataBlob::load_from_reader(&mut file).expect("chunk blob");
    let data = blob.decode(None, None).expect("decode chunk");
    assert_eq!(data, chunk.data, "chunk {}", hex::encode(chunk.digest));
}

/// The digests of a `.didx` file.
fn didx_digests(didx: &[u8]) -> Vec<[u8; 32]> {
    assert!(didx.len() >= INDEX_HEADER_SIZE, "index too short");
    didx[INDEX_HEADER_SIZE..]
        .chunks_exact(40)
        .map(|entry| {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&entry[8..]);
            digest
        })
        .collect()
}

fn snapshot_dir(store: &Path, id: &str, time: i64) -> PathBuf {
    let name = pbs_api_types::time::epoch_to_rfc3339_utc(time).expect("snapshot time");
    store.join("host").join(id).join(name)
}

/// Moves the access time of a file `seconds` into the past, keeping its modification time.
fn age_atime(path: &Path, seconds: i64) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let times = [
        libc::timespec {
            tv_sec: now - seconds,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(
        rc,
        0,
        "utimensat {path:?}: {}",
        std::io::Error::last_os_error()
    );
}

fn atime(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").atime()
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn parallel_backup_sessions_on_different_groups() {
    let fx = setup();
    let shared = chunk(50_000, 999);
    let sets: Vec<Vec<Chunk>> = (0..4u32)
        .map(|i| {
            vec![
                chunk(200_000, 10 * i + 1),
                shared.clone(),
                chunk(30_000 + i as usize, 10 * i + 2),
            ]
        })
        .collect();
    fx.runtime.block_on(async {
        let server = &fx.server;
        let sessions = sets.iter().enumerate().map(|(i, chunks)| async move {
            backup(server, &format!("par{i}"), T1, chunks).await;
        });
        futures::future::join_all(sessions).await;
    });

    for (i, chunks) in sets.iter().enumerate() {
        let snap = snapshot_dir(&fx.store, &format!("par{i}"), T1);
        assert!(snap.join("index.json.blob").exists(), "{snap:?}");
        let didx = std::fs::read(snap.join("root.pxar.didx")).expect("index");
        let expected: Vec<[u8; 32]> = chunks.iter().map(|c| c.digest).collect();
        assert_eq!(didx_digests(&didx), expected);
        for c in chunks {
            check_chunk_file(&fx.store, c);
        }
    }
    run_admin_task(&fx.root, "verify", json!({}));
    let snapshots = fx
        .root
        .get(Target::Proxy, &format!("admin/datastore/{STORE}/snapshots"))
        .data();
    let snapshots = snapshots.as_array().expect("snapshot list");
    assert_eq!(snapshots.len(), 4);
    for snapshot in snapshots {
        assert_eq!(snapshot["verification"]["state"], "ok", "{snapshot}");
    }
}

#[test]
fn reader_next_to_a_running_backup() {
    let fx = setup();
    let base: Vec<Chunk> = (0..4)
        .map(|i| chunk(100_000 + i * 1000, 100 + i as u32))
        .collect();
    let other: Vec<Chunk> = (0..3).map(|i| chunk(80_000, 200 + i)).collect();
    let downloaded = fx.runtime.block_on(async {
        let server = &fx.server;
        backup(server, "base", T1, &base).await;

        let mut writer = backup_session(server, "other", T1).await;
        let wid = open_writer(&mut writer).await;
        upload_chunk(&mut writer, wid, &other[0]).await.data();

        let read = async {
            let mut reader = reader_session(server, "base", T1).await;
            let didx = reader.get("download?file-name=root.pxar.didx").await;
            let mut data = Vec::new();
            for digest in didx_digests(didx.bytes()) {
                let raw = reader
                    .get(&format!("chunk?digest={}", hex::encode(digest)))
                    .await;
                let blob = DataBlob::load_from_reader(&mut raw.bytes()).expect("chunk blob");
                let chunk = blob.decode(None, Some(&digest)).expect("decode chunk");
                data.extend_from_slice(&chunk);
            }
            data
        };
        let write = async {
            for c in &other[1..] {
                upload_chunk(&mut writer, wid, c).await.data();
            }
            let refs: Vec<&Chunk> = other.iter().collect();
            writer
                .append("dynamic", wid, &layout(&refs).appends)
                .await
                .data();
            close_and_finish(&mut writer, wid, "other", T1, &refs).await;
        };
        let (data, ()) = tokio::join!(read, write);
        data
    });
    let expected: Vec<u8> = base.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(downloaded.len(), expected.len());
    assert!(downloaded == expected, "downloaded bytes differ");
    for c in &other {
        check_chunk_file(&fx.store, c);
    }
    run_admin_task(&fx.root, "verify", json!({}));
}

#[test]
fn gc_during_a_backup_deletes_nothing_live() {
    let fx = setup();
    let old: Vec<Chunk> = (0..3).map(|i| chunk(120_000, 300 + i)).collect();
    let orphan = chunk(60_000, 399);
    let new: Vec<Chunk> = (0..2).map(|i| chunk(90_000, 400 + i)).collect();
    const TWO_DAYS: i64 = 2 * 86_400;

    fx.runtime.block_on(async {
        let server = &fx.server;
        // The previous snapshot; its session also uploads a chunk no index references.
        let mut session = backup_session(server, "gc", T1).await;
        let wid = open_writer(&mut session).await;
        for c in old.iter().chain(std::iter::once(&orphan)) {
            upload_chunk(&mut session, wid, c).await.data();
        }
        let refs: Vec<&Chunk> = old.iter().collect();
        session
            .append("dynamic", wid, &layout(&refs).appends)
            .await
            .data();
        close_and_finish(&mut session, wid, "gc", T1, &refs).await;
        drop(session);

        // The next backup of the group: new chunks uploaded, old ones reused by digest only.
        let mut session = backup_session(server, "gc", T2).await;
        let wid = open_writer(&mut session).await;
        for c in &new {
            upload_chunk(&mut session, wid, c).await.data();
        }
        // The reused digests come from the previous snapshot's index.
        let previous = snapshot_dir(&fx.store, "gc", T1).join("root.pxar.didx");
        let previous = didx_digests(&std::fs::read(previous).expect("previous index"));
        assert_eq!(previous, old.iter().map(|c| c.digest).collect::<Vec<_>>());
        let refs: Vec<&Chunk> = new.iter().chain(old.iter()).collect();
        let entries = layout(&refs).appends;
        let (uploaded, reused) = entries.split_at(new.len());
        session.append("dynamic", wid, uploaded).await.data();
        let reused: Vec<([u8; 32], u64)> = previous
            .iter()
            .zip(reused)
            .map(|(digest, (_, offset))| (*digest, *offset))
            .collect();
        session.append("dynamic", wid, &reused).await.data();

        // Only the previous snapshot's index on disk protects the old chunks now.
        for c in old.iter().chain(std::iter::once(&orphan)) {
            age_atime(&chunk_path(&fx.store, &c.digest), TWO_DAYS);
        }
        let root = fx.root.clone();
        let gc_upid = tokio::task::spawn_blocking(move || run_admin_task(&root, "gc", json!({})))
            .await
            .expect("gc task");
        assert!(gc_upid.contains(":garbage_collection:"), "{gc_upid}");

        close_and_finish(&mut session, wid, "gc", T2, &refs).await;
    });

    let gc = fx
        .root
        .get(Target::Proxy, &format!("admin/datastore/{STORE}/gc"))
        .data();
    assert_eq!(gc["last-run-state"], "ok", "{gc}");
    assert_eq!(gc["removed-chunks"], 1, "{gc}");
    assert_eq!(gc["removed-bad"], 0, "{gc}");
    assert_eq!(gc["pending-chunks"], 0, "{gc}");
    assert_eq!(gc["disk-chunks"], old.len() + new.len(), "{gc}");
    assert_eq!(gc["index-file-count"], 1, "{gc}");
    assert!(
        !chunk_path(&fx.store, &orphan.digest).exists(),
        "orphan chunk kept"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let snap = snapshot_dir(&fx.store, "gc", T2);
    let didx = std::fs::read(snap.join("root.pxar.didx")).expect("new index");
    let expected: Vec<[u8; 32]> = new.iter().chain(old.iter()).map(|c| c.digest).collect();
    assert_eq!(didx_digests(&didx), expected);
    for c in new.iter().chain(old.iter()) {
        check_chunk_file(&fx.store, c);
    }
    for c in &old {
        // marking touched the aged chunks
        assert!(atime(&chunk_path(&fx.store, &c.digest)) > now - 3600);
    }
    run_admin_task(&fx.root, "verify", snapshot_body("gc", T2));
}
