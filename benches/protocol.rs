//! `make bench`: backup and reader protocol throughput against the real daemons on loopback,
//! printed beside `openssl speed` figures measured on the same machine in the same run, plus
//! the proxy's peak resident memory.
//!
//! MB/s are 10^6 bytes per second (of chunk payload), as `openssl speed` counts them.
//! Without `--bench` (as `cargo test --all-targets` runs it) only a few chunks are moved, to
//! check that the benchmark still works.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use serde_json::json;

use common::h2client::{
    append_body, upgrade, BoxError, Session, Upgrade, BACKUP_PROTOCOL, FORM, OCTETS,
    READER_PROTOCOL,
};
use common::{encode, wait_until, Target, TestServer};
use pbs_api_types::CryptMode;
use pbs_datastore::{BackupManifest, DataBlob, DataChunkBuilder};

const CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Payload per measured run in a full benchmark (256 MiB).
const FULL_CHUNKS: usize = 64;
/// Payload per run in the smoke run: one chunk per session of the 4-session run.
const SMOKE_CHUNKS: usize = 4;
/// Requests in flight per HTTP/2 session, as a pipelining client keeps them.
const IN_FLIGHT: usize = 8;
const STORE: &str = "bench";
const BACKUP_TIME: i64 = 1_700_000_000;

/// One chunk as the client sends it.
struct Chunk {
    digest: [u8; 32],
    size: usize,
    encoded: Bytes,
}

/// Incompressible chunk data: a xorshift stream, distinct per seed.
fn chunk_data(seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x0123_4567_89ab_cdef ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(CHUNK_SIZE);
    while out.len() < CHUNK_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(CHUNK_SIZE);
    out
}

fn encode_chunks(count: usize, first_seed: u64) -> Result<Vec<Chunk>, BoxError> {
    (0..count as u64)
        .map(|i| {
            let data = chunk_data(first_seed + i);
            let (blob, digest) = DataChunkBuilder::new(&data).compress(true).build()?;
            Ok(Chunk {
                digest,
                size: data.len(),
                encoded: Bytes::from(blob.into_inner()),
            })
        })
        .collect()
}

/// Opens a session of `protocol` on `/api2/json/{path}?{query}` as root.
async fn open_session(
    server: &TestServer,
    path: &str,
    protocol: &str,
    query: &str,
) -> Result<Session, BoxError> {
    let target = format!("/api2/json/{path}?{query}");
    match upgrade(server, "root@pam", &target, protocol).await? {
        Upgrade::Session(session) => Ok(session),
        Upgrade::Refused(status, text) => {
            Err(format!("{protocol} upgrade refused: {status} {text}").into())
        }
    }
}

/// One request on a clone of `session` (so that several can be in flight); fails unless
/// the answer is `200 OK`.
async fn call(
    session: &Session,
    method: Method,
    path_and_query: String,
    content_type: &str,
    body: Bytes,
) -> Result<Bytes, BoxError> {
    let mut session = session.clone();
    session
        .call(method, &path_and_query, content_type, body)
        .await?
        .ok(&path_and_query)
}

/// One complete backup snapshot `host/<id>` whose single dynamic index holds `chunks`.
async fn backup_session(server: &TestServer, id: String, chunks: &[Chunk]) -> Result<(), BoxError> {
    let query = format!("backup-type=host&backup-id={id}&backup-time={BACKUP_TIME}&store={STORE}");
    let h2 = open_session(server, "backup", BACKUP_PROTOCOL, &query).await?;
    let reply = call(
        &h2,
        Method::POST,
        "dynamic_index?archive-name=root.img.didx".into(),
        FORM,
        Bytes::new(),
    )
    .await?;
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    let wid = reply["data"]
        .as_u64()
        .ok_or("dynamic_index: no writer id")?;

    let uploads = chunks.iter().map(|c| {
        let path = format!(
            "dynamic_chunk?wid={wid}&digest={}&size={}&encoded-size={}",
            hex::encode(c.digest),
            c.size,
            c.encoded.len()
        );
        call(&h2, Method::POST, path, OCTETS, c.encoded.clone())
    });
    let mut uploads = futures::stream::iter(uploads).buffer_unordered(IN_FLIGHT);
    while let Some(result) = uploads.next().await {
        result?;
    }

    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(chunks.len());
    let mut csum = openssl::sha::Sha256::new();
    for c in chunks {
        offsets.push(offset);
        offset += c.size as u64;
        csum.update(&offset.to_le_bytes());
        csum.update(&c.digest);
    }
    let csum = csum.finish();
    let entries: Vec<([u8; 32], u64)> = chunks.iter().map(|c| c.digest).zip(offsets).collect();
    let append = append_body(wid, &entries);
    call(
        &h2,
        Method::PUT,
        "dynamic_index".into(),
        "application/json",
        Bytes::from(append.to_string()),
    )
    .await?;
    let close = format!(
        "dynamic_close?wid={wid}&chunk-count={}&size={offset}&csum={}",
        chunks.len(),
        hex::encode(csum)
    );
    call(&h2, Method::POST, close, FORM, Bytes::new()).await?;

    let mut manifest = BackupManifest::new("host", &id, BACKUP_TIME);
    manifest.add_file("root.img.didx", offset, csum, CryptMode::None)?;
    let manifest = DataBlob::encode(manifest.to_string(None)?.as_bytes(), None, true)?.into_inner();
    let path = format!(
        "blob?file-name=index.json.blob&encoded-size={}",
        manifest.len()
    );
    call(&h2, Method::POST, path, OCTETS, Bytes::from(manifest)).await?;
    call(&h2, Method::POST, "finish".into(), FORM, Bytes::new()).await?;
    Ok(())
}

/// Backs up `sets` as concurrent sessions (one snapshot each); returns payload MB/s.
async fn measure_backup(
    server: &TestServer,
    label: &str,
    sets: &[Vec<Chunk>],
) -> Result<f64, BoxError> {
    let bytes: usize = sets.iter().flatten().map(|c| c.size).sum();
    let start = Instant::now();
    let sessions = sets
        .iter()
        .enumerate()
        .map(|(i, chunks)| backup_session(server, format!("{label}-{i}"), chunks));
    for result in futures::future::join_all(sessions).await {
        result?;
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Downloads every chunk of snapshot `host/<id>` through a reader session; returns MB/s.
async fn measure_restore(server: &TestServer, id: &str, chunks: &[Chunk]) -> Result<f64, BoxError> {
    let query = format!("backup-type=host&backup-id={id}&backup-time={BACKUP_TIME}&store={STORE}");
    let start = Instant::now();
    let h2 = open_session(server, "reader", READER_PROTOCOL, &query).await?;
    // Fetching the index is what makes its chunks downloadable.
    call(
        &h2,
        Method::GET,
        "download?file-name=root.img.didx".into(),
        FORM,
        Bytes::new(),
    )
    .await?;
    let downloads = chunks.iter().map(|c| {
        let path = format!("chunk?digest={}", hex::encode(c.digest));
        let expected = c.encoded.len();
        let h2 = &h2;
        async move {
            let body = call(h2, Method::GET, path.clone(), FORM, Bytes::new()).await?;
            if body.len() != expected {
                return Err(BoxError::from(format!(
                    "{path}: {} bytes, expected {expected}",
                    body.len()
                )));
            }
            Ok(body.len())
        }
    });
    let mut downloads = futures::stream::iter(downloads).buffer_unordered(IN_FLIGHT);
    while let Some(result) = downloads.next().await {
        result?;
    }
    let bytes: usize = chunks.iter().map(|c| c.size).sum();
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn create_datastore(server: &TestServer, path: &std::path::Path) {
    let root = server.client("root@pam");
    let reply = root.post(
        Target::Proxy,
        "config/datastore",
        json!({"name": STORE, "path": path}),
    );
    let upid = reply.data().as_str().unwrap_or_default().to_string();
    wait_until(Duration::from_secs(120), "datastore creation", || {
        let status = root
            .get(
                Target::Proxy,
                &format!("nodes/localhost/tasks/{}/status", encode(&upid)),
            )
            .data();
        if status["status"] == "stopped" {
            assert_eq!(status["exitstatus"], "OK", "datastore creation: {status}");
            true
        } else {
            false
        }
    });
}

/// A `kB` field (such as `VmHWM`) of `/proc/<pid>/status`, in MiB.
fn proc_status_mib(pid: i32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `openssl speed -evp <alg>` on 4 MiB buffers, single core, in MB/s.
fn openssl_speed(alg: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-elapsed", "-seconds", "2", "-bytes", "4194304", "-evp", alg,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The result line spells the algorithm its own way (`sha256`, `AES-256-GCM`).
    let wanted = alg.to_ascii_lowercase();
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with(&wanted))?;
    let last = line.split_whitespace().last()?;
    let kbytes: f64 = last.trim_end_matches('k').parse().ok()?;
    Some(kbytes * 1000.0 / 1e6)
}

fn row(name: &str, value: &str, note: &str) {
    println!("| {name:<40} | {value:>10} | {note} |");
}

fn mbs(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}"))
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    let full = std::env::args().any(|a| a == "--bench");
    let count = if full { FULL_CHUNKS } else { SMOKE_CHUNKS };

    let single = encode_chunks(count, 0)?;
    let mut quad: Vec<Vec<Chunk>> = (0..4).map(|_| Vec::new()).collect();
    for (i, chunk) in encode_chunks(count, 1_000_000)?.into_iter().enumerate() {
        quad[i % 4].push(chunk);
    }

    let server = TestServer::start();
    let shm = tempfile::Builder::new()
        .prefix("pbs-protocol-bench")
        .tempdir_in("/dev/shm")?;
    let store = shm.path().join("store");
    create_datastore(&server, &store);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (up1, up4, down) = runtime.block_on(async {
        let up1 = measure_backup(&server, "one", std::slice::from_ref(&single)).await?;
        let up4 = measure_backup(&server, "four", &quad).await?;
        let down = measure_restore(&server, "one-0", &single).await?;
        Ok::<_, BoxError>((up1, up4, down))
    })?;
    let proxy = server.child_pid(Target::Proxy);
    let peak_rss = proc_status_mib(proxy, "VmHWM");

    let (aes, sha) = if full {
        (openssl_speed("aes-256-gcm"), openssl_speed("sha256"))
    } else {
        (None, None)
    };
    let total = count * CHUNK_SIZE / (1024 * 1024);
    println!();
    println!("| measurement                              |       MB/s | note |");
    println!("|------------------------------------------|-----------:|------|");
    row(
        "backup upload, 1 session",
        &format!("{up1:.0}"),
        &format!("{total} MiB in 4 MiB chunks, {IN_FLIGHT} requests in flight"),
    );
    row(
        "backup upload, 4 concurrent sessions",
        &format!("{up4:.0}"),
        &format!("{total} MiB in total, aggregate"),
    );
    row(
        "reader chunk download, 1 session",
        &format!("{down:.0}"),
        &format!("{total} MiB, {IN_FLIGHT} requests in flight"),
    );
    row(
        "openssl speed -evp aes-256-gcm",
        &mbs(aes),
        "reference: TLS record cipher, 1 core",
    );
    row(
        "openssl speed -evp sha256",
        &mbs(sha),
        "reference: chunk digest, 1 core",
    );
    println!();
    match peak_rss {
        Some(mib) => println!("proxy peak RSS (VmHWM): {mib:.1} MiB"),
        None => println!("proxy peak RSS (VmHWM): not available"),
    }
    Ok(())
}
