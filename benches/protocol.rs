//! `make bench`: backup and reader protocol throughput against the real daemons on loopback,
//! printed beside `openssl speed` figures measured on the same machine in the same run, plus
//! the proxy's peak resident memory.
//!
//! MB/s are 10^6 bytes per second (of chunk payload), as `openssl speed` counts them.
//! Without `--bench` (as `cargo test --all-targets` runs it) only a few chunks are moved, to
//! check that the benchmark still works.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use common::{encode, wait_until, Target, TestServer};
use pbs_api_types::CryptMode;
use pbs_datastore::{BackupManifest, DataBlob, DataChunkBuilder};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type H2 = SendRequest<Full<Bytes>>;

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

async fn tls_connect(
    addr: SocketAddr,
    fingerprint: &str,
) -> Result<tokio_openssl::SslStream<tokio::net::TcpStream>, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut connector = SslConnector::builder(SslMethod::tls())?;
    let expected = fingerprint.to_string();
    connector.set_verify_callback(SslVerifyMode::PEER, move |_ok, ctx| {
        // Only the leaf certificate decides, by fingerprint.
        if ctx.error_depth() > 0 {
            return true;
        }
        ctx.current_cert()
            .and_then(|cert| pbs_auth::tls::cert_fingerprint(cert).ok())
            .is_some_and(|fp| fp == expected)
    });
    let ssl = connector
        .build()
        .configure()?
        .verify_hostname(false)
        .use_server_name_indication(false)
        .into_ssl("localhost")?;
    let mut tls = tokio_openssl::SslStream::new(ssl, stream)?;
    std::pin::Pin::new(&mut tls).connect().await?;
    Ok(tls)
}

fn root_cookie(server: &TestServer) -> Result<String, BoxError> {
    let key = pbs_auth::PrivateAuthKey::load(&server.config_dir().join("authkey.key"))?;
    let userid: pbs_api_types::Userid = "root@pam".parse()?;
    let ticket = pbs_auth::ticket::assemble_api_ticket(&key, &userid)?;
    Ok(format!(
        "PBSAuthCookie={}",
        utf8_percent_encode(&ticket, NON_ALPHANUMERIC)
    ))
}

/// Upgrades an HTTPS connection to `protocol` on `path?query` and starts HTTP/2 on it.
async fn open_session(
    server: &TestServer,
    cookie: &str,
    path: &str,
    protocol: &str,
    query: &str,
) -> Result<H2, BoxError> {
    let tls = tls_connect(server.proxy_addr, &server.fingerprint).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn.with_upgrades());
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/api2/json/{path}?{query}"))
        .header("cookie", cookie)
        .header("connection", "upgrade")
        .header("upgrade", protocol)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        return Err(format!(
            "{protocol} upgrade refused: {status} {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    let upgraded = hyper::upgrade::on(response).await?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(2_147_483_646)
        .initial_connection_window_size(2_147_483_646)
        .max_frame_size(4 * 1024 * 1024)
        .handshake(upgraded)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request in a session; fails unless the answer is `200 OK`.
async fn call(
    mut sender: H2,
    method: Method,
    path_and_query: String,
    content_type: &str,
    body: Bytes,
) -> Result<Bytes, BoxError> {
    sender.ready().await?;
    let request = Request::builder()
        .method(method)
        .uri(format!("https://localhost:8007/{path_and_query}"))
        .header("content-type", content_type)
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "{path_and_query}: {status} {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    Ok(body)
}

async fn post(sender: &H2, path_and_query: String) -> Result<Bytes, BoxError> {
    let form = "application/x-www-form-urlencoded";
    call(
        sender.clone(),
        Method::POST,
        path_and_query,
        form,
        Bytes::new(),
    )
    .await
}

async fn upload(sender: &H2, path_and_query: String, data: Bytes) -> Result<Bytes, BoxError> {
    let octets = "application/octet-stream";
    call(sender.clone(), Method::POST, path_and_query, octets, data).await
}

/// One complete backup snapshot `host/<id>` whose single dynamic index holds `chunks`.
async fn backup_session(
    server: &TestServer,
    cookie: &str,
    id: String,
    chunks: &[Chunk],
) -> Result<(), BoxError> {
    let query = format!("backup-type=host&backup-id={id}&backup-time={BACKUP_TIME}&store={STORE}");
    let h2 = open_session(
        server,
        cookie,
        "backup",
        "proxmox-backup-protocol-v1",
        &query,
    )
    .await?;
    let reply = post(&h2, "dynamic_index?archive-name=root.img.didx".into()).await?;
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
        upload(&h2, path, c.encoded.clone())
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
    let digests: Vec<String> = chunks.iter().map(|c| hex::encode(c.digest)).collect();
    let append = json!({"wid": wid, "digest-list": digests, "offset-list": offsets});
    call(
        h2.clone(),
        Method::PUT,
        "dynamic_index".into(),
        "application/json",
        Bytes::from(append.to_string()),
    )
    .await?;
    post(
        &h2,
        format!(
            "dynamic_close?wid={wid}&chunk-count={}&size={offset}&csum={}",
            chunks.len(),
            hex::encode(csum)
        ),
    )
    .await?;

    let mut manifest = BackupManifest::new("host", &id, BACKUP_TIME);
    manifest.add_file("root.img.didx", offset, csum, CryptMode::None)?;
    let manifest = DataBlob::encode(manifest.to_string(None)?.as_bytes(), None, true)?.into_inner();
    upload(
        &h2,
        format!(
            "blob?file-name=index.json.blob&encoded-size={}",
            manifest.len()
        ),
        Bytes::from(manifest),
    )
    .await?;
    post(&h2, "finish".into()).await?;
    Ok(())
}

/// Backs up `sets` as concurrent sessions (one snapshot each); returns payload MB/s.
async fn measure_backup(
    server: &TestServer,
    cookie: &str,
    label: &str,
    sets: &[Vec<Chunk>],
) -> Result<f64, BoxError> {
    let bytes: usize = sets.iter().flatten().map(|c| c.size).sum();
    let start = Instant::now();
    let sessions = sets
        .iter()
        .enumerate()
        .map(|(i, chunks)| backup_session(server, cookie, format!("{label}-{i}"), chunks));
    for result in futures::future::join_all(sessions).await {
        result?;
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Downloads every chunk of snapshot `host/<id>` through a reader session; returns MB/s.
async fn measure_restore(
    server: &TestServer,
    cookie: &str,
    id: &str,
    chunks: &[Chunk],
) -> Result<f64, BoxError> {
    let query = format!("backup-type=host&backup-id={id}&backup-time={BACKUP_TIME}&store={STORE}");
    let start = Instant::now();
    let h2 = open_session(
        server,
        cookie,
        "reader",
        "proxmox-backup-reader-protocol-v1",
        &query,
    )
    .await?;
    let form = "application/x-www-form-urlencoded";
    // Fetching the index is what makes its chunks downloadable.
    call(
        h2.clone(),
        Method::GET,
        "download?file-name=root.img.didx".into(),
        form,
        Bytes::new(),
    )
    .await?;
    let downloads = chunks.iter().map(|c| {
        let path = format!("chunk?digest={}", hex::encode(c.digest));
        let expected = c.encoded.len();
        let h2 = h2.clone();
        async move {
            let body = call(h2, Method::GET, path.clone(), form, Bytes::new()).await?;
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
    let cookie = root_cookie(&server)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (up1, up4, down) = runtime.block_on(async {
        let up1 = measure_backup(&server, &cookie, "one", std::slice::from_ref(&single)).await?;
        let up4 = measure_backup(&server, &cookie, "four", &quad).await?;
        let down = measure_restore(&server, &cookie, "one-0", &single).await?;
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
