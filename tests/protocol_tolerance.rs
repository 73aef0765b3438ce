//! The client variations the protocol spec (§8) requires the server to accept, each one a
//! complete backup through the raw client of `common::h2client`. Relative `:path` values,
//! JSON bodies, the double-slash target and chunk reuse without `GET previous` are covered by
//! `backup_protocol.rs` and `backup_concurrency.rs`.

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::h2client::{
    self, dynamic_csum, send_upgrade_head, stock_settings, ticket_cookie, tls_connect,
    tls_connect_with, upgrade_head, upgrade_keeping_driver, upgrade_on, upgrade_retrying, H2Reply,
    Session, TlsOptions, Upgrade, BACKUP_PROTOCOL, READER_PROTOCOL, SNAPSHOT_BUSY,
};
use common::{task_log_lines, wait_task, Target, TestServer};
use pbs_datastore::file_formats::COMPRESSED_BLOB_MAGIC_1_0;
use pbs_datastore::{CryptConfig, DataBlob, DataChunkBuilder};

const STORE: &str = "tol";
const TIME: i64 = 1_700_000_000;
const MIB: usize = 1024 * 1024;

/// Upstream's body limit of the append calls (the extension raises it).
const UPSTREAM_BODY_LIMIT: usize = 64 * 1024;

fn target(id: &str) -> String {
    format!("/api2/json/backup?backup-type=host&backup-id={id}&backup-time={TIME}&store={STORE}")
}

/// Incompressible test data.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A compact manifest with `files` (name, size, csum) as JSON text.
fn manifest_json(id: &str, files: &[(&str, u64, [u8; 32])]) -> Value {
    let files: Vec<Value> = files
        .iter()
        .map(|(name, size, csum)| {
            json!({"filename": name, "size": size, "csum": hex::encode(csum), "crypt-mode": "none"})
        })
        .collect();
    json!({"backup-type": "host", "backup-id": id, "backup-time": TIME, "files": files})
}

/// Uploads one blob and a manifest naming it (plus `extra` files), then finishes.
async fn finish_with_blob(session: &mut Session, id: &str, extra: &[(&str, u64, [u8; 32])]) {
    let blob = DataBlob::encode(id.as_bytes(), None, true)
        .unwrap()
        .into_inner();
    session.blob("id.blob", &blob).await.data();
    let mut files = vec![("id.blob", blob.len() as u64, openssl::sha::sha256(&blob))];
    files.extend_from_slice(extra);
    let manifest = manifest_json(id, &files).to_string();
    let manifest = DataBlob::encode(manifest.as_bytes(), None, true)
        .unwrap()
        .into_inner();
    session.blob("index.json.blob", &manifest).await.data();
    assert_eq!(session.post("finish").await.data(), Value::Null);
}

/// One encoded chunk: digest, plain size, blob bytes.
struct Chunk {
    digest: [u8; 32],
    size: usize,
    encoded: Vec<u8>,
}

fn plain_chunk(data: &[u8], compress: bool) -> Chunk {
    let (blob, digest) = DataChunkBuilder::new(data)
        .compress(compress)
        .build()
        .unwrap();
    Chunk {
        digest,
        size: data.len(),
        encoded: blob.into_inner(),
    }
}

/// A writer of `archive` holding `chunks` (uploaded and appended in one call, then closed);
/// returns the manifest entry.
async fn dynamic_archive(
    session: &mut Session,
    archive: &'static str,
    chunks: &[Chunk],
) -> (&'static str, u64, [u8; 32]) {
    let wid = session
        .post(&format!("dynamic_index?archive-name={archive}"))
        .await
        .data()
        .as_u64()
        .unwrap();
    let mut appends = Vec::new();
    let mut entries = Vec::new();
    let mut end = 0u64;
    for c in chunks {
        session
            .chunk("dynamic", wid, &c.digest, c.size, &c.encoded)
            .await
            .data();
        appends.push((c.digest, end));
        end += c.size as u64;
        entries.push((end, c.digest));
    }
    session.append("dynamic", wid, &appends).await.data();
    let csum = dynamic_csum(&entries);
    session
        .post(&format!(
            "dynamic_close?wid={wid}&chunk-count={}&size={end}&csum={}",
            chunks.len(),
            hex::encode(csum)
        ))
        .await
        .data();
    (archive, end, csum)
}

fn check_snapshot(store: &std::path::Path, id: &str) {
    let dir = store.join(format!("host/{id}/2023-11-14T22:13:20Z"));
    assert!(
        dir.join("index.json.blob").is_file(),
        "snapshot {id} not finished"
    );
}

// ---- 8.1 TLS and the upgrade request -----------------------------------------------------

async fn upgrade_request_variants(server: &TestServer, store: &std::path::Path, token: &str) {
    let cookie = ticket_cookie(server, "root@pam");
    let heads = [
        // no Host header
        (
            "no-host",
            format!(
                "GET {} HTTP/1.1\r\ncookie: {cookie}\r\nconnection: upgrade\r\n\
                 upgrade: {BACKUP_PROTOCOL}\r\n\r\n",
                target("no-host")
            ),
        ),
        // no Connection header, query keys in another order, no debug, no ns
        (
            "no-connection",
            format!(
                "GET /api2/json/backup?store={STORE}&backup-time={TIME}&backup-id=no-connection\
                 &backup-type=host HTTP/1.1\r\nhost: 127.0.0.1\r\ncookie: {cookie}\r\n\
                 upgrade: {BACKUP_PROTOCOL}\r\n\r\n"
            ),
        ),
        // header names and the connection token in other capitalisations
        (
            "capitals",
            format!(
                "GET {} HTTP/1.1\r\nHost: localhost:8007\r\nCookie: {cookie}\r\n\
                 Connection: UPGRADE\r\nUpgrade: {BACKUP_PROTOCOL}\r\n\r\n",
                target("capitals")
            ),
        ),
        // API token with a space separator, no cookie
        (
            "token-space",
            format!(
                "GET {} HTTP/1.1\r\nhost: localhost\r\nauthorization: PBSAPIToken {token}\r\n\
                 connection: upgrade\r\nupgrade: {BACKUP_PROTOCOL}\r\n\r\n",
                target("token-space")
            ),
        ),
        // API token with `=` as separator
        (
            "token-equals",
            format!(
                "GET {} HTTP/1.1\r\nhost: localhost\r\nauthorization: PBSAPIToken={token}\r\n\
                 connection: Upgrade\r\nupgrade: {BACKUP_PROTOCOL}\r\n\r\n",
                target("token-equals")
            ),
        ),
    ];
    for (id, head) in heads {
        let tls = tls_connect(server.proxy_addr, &server.fingerprint)
            .await
            .unwrap();
        let mut session = match upgrade_on(tls, &head, BACKUP_PROTOCOL, &stock_settings())
            .await
            .unwrap()
        {
            Upgrade::Session(session) => session,
            Upgrade::Refused(status, text) => panic!("{id}: refused: {status} {text}"),
        };
        finish_with_blob(&mut session, id, &[]).await;
        check_snapshot(store, id);
    }

    // ALPN with http/1.1 only, with h2 offered too, and SNI: never h2, always the same
    // certificate (the fingerprint check of the client).
    let alpn_only_http1: &[u8] = b"\x08http/1.1";
    let alpn_h2_first: &[u8] = b"\x02h2\x08http/1.1";
    let variants = [
        ("alpn-http1", Some(alpn_only_http1), None),
        ("alpn-h2", Some(alpn_h2_first), None),
        ("sni", None, Some("localhost")),
    ];
    for (id, alpn, sni) in variants {
        let tls = tls_connect_with(
            server.proxy_addr,
            &server.fingerprint,
            &TlsOptions { sni, alpn },
        )
        .await
        .unwrap_or_else(|err| panic!("{id}: TLS handshake failed: {err}"));
        let selected = tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
        assert!(
            selected.is_none() || selected.as_deref() == Some(&b"http/1.1"[..]),
            "{id}: ALPN selected {selected:?}"
        );
        let head = upgrade_head(&target(id), &cookie, BACKUP_PROTOCOL);
        let mut session = upgrade_on(tls, &head, BACKUP_PROTOCOL, &stock_settings())
            .await
            .unwrap()
            .session();
        finish_with_blob(&mut session, id, &[]).await;
        check_snapshot(store, id);
    }
}

/// Reads one HTTP/2 frame: type, flags, stream id and payload.
async fn read_frame(tls: &mut h2client::TlsStream) -> (u8, u8, u32, Vec<u8>) {
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut header))
        .await
        .expect("server frame within 10 s")
        .unwrap();
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.unwrap();
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    (header[3], header[4], stream, payload)
}

/// The 101 is a plain header block, and the server's first HTTP/2 frame is SETTINGS with a
/// 32 MiB stream window and no small stream limit, followed by a connection WINDOW_UPDATE
/// and the ACK of the client's SETTINGS.
async fn first_server_frames(server: &TestServer) {
    let mut tls = tls_connect(server.proxy_addr, &server.fingerprint)
        .await
        .unwrap();
    let head = upgrade_head(
        &target("frames"),
        &ticket_cookie(server, "root@pam"),
        BACKUP_PROTOCOL,
    );
    let (status, head, _) = send_upgrade_head(&mut tls, &head).await.unwrap();
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{head}");
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length: ") || lower.contains("content-length: 0\r\n"),
        "{head}"
    );
    assert!(!lower.contains("transfer-encoding"), "{head}");

    // What a client that then blocks for the server's SETTINGS and its ACK sends.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let (kind, flags, stream, payload) = read_frame(&mut tls).await;
    assert_eq!(
        (kind, flags, stream),
        (0x4, 0, 0),
        "first frame is SETTINGS"
    );
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    let value = |id: u16| settings.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
    assert!(
        value(0x4).is_some_and(|window| window >= 32 * MIB as u32),
        "initial window: {settings:?}"
    );
    assert!(
        value(0x3).is_none_or(|streams| streams >= 256),
        "max concurrent streams: {settings:?}"
    );
    assert!(
        value(0x5).is_none_or(|frame| frame <= 4 * MIB as u32),
        "{settings:?}"
    );
    // Next, in either order: the connection WINDOW_UPDATE and the ACK of the client's
    // SETTINGS, both without any request.
    let mut increment = None;
    let mut acked = false;
    for _ in 0..2 {
        match read_frame(&mut tls).await {
            (0x8, _, 0, payload) => {
                increment = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            (0x4, 0x1, 0, payload) if payload.is_empty() => acked = true,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(acked, "client SETTINGS not acknowledged");
    let increment = increment.expect("connection WINDOW_UPDATE");
    assert!(
        increment as usize + 65_535 >= 32 * MIB,
        "window raised by {increment}"
    );
}

// ---- 8.2 the HTTP/2 connection -------------------------------------------------------------

/// Generic-library settings (small windows, 16 KiB frames) for the backup of a 16 MiB chunk
/// and its download through a reader session with the same settings.
async fn generic_client_settings(server: &TestServer, store: &std::path::Path) {
    let mut generic =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    generic
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(4 * MIB as u32);
    let cookie = ticket_cookie(server, "root@pam");
    let tls = tls_connect(server.proxy_addr, &server.fingerprint)
        .await
        .unwrap();
    let head = upgrade_head(&target("generic"), &cookie, BACKUP_PROTOCOL);
    let mut session = upgrade_on(tls, &head, BACKUP_PROTOCOL, &generic)
        .await
        .unwrap()
        .session();
    // The largest legal chunk, stored uncompressed.
    let big = plain_chunk(&noise(16 * MIB, 1), false);
    let file = dynamic_archive(&mut session, "big.didx", std::slice::from_ref(&big)).await;
    finish_with_blob(&mut session, "generic", &[file]).await;
    check_snapshot(store, "generic");

    let reader_target = format!(
        "/api2/json/reader?backup-type=host&backup-id=generic&backup-time={TIME}&store={STORE}"
    );
    // The finished session releases the snapshot once the server saw the connection end.
    drop(session);
    let mut reader = upgrade_retrying(SNAPSHOT_BUSY, || async {
        let tls = tls_connect(server.proxy_addr, &server.fingerprint).await?;
        let head = upgrade_head(&reader_target, &cookie, READER_PROTOCOL);
        upgrade_on(tls, &head, READER_PROTOCOL, &generic).await
    })
    .await;
    reader.get("download?file-name=big.didx").await.bytes();
    let reply = reader
        .get(&format!("chunk?digest={}", hex::encode(big.digest)))
        .await;
    assert_eq!(reply.bytes(), big.encoded.as_slice());
}

/// Extra request headers inside the session: a repeated (even bogus) `authorization`,
/// `accept-encoding: gzip`, a user agent and explicit content lengths.
async fn extra_request_headers(server: &TestServer, store: &std::path::Path) {
    let mut session = h2client::upgrade(server, "root@pam", &target("headers"), BACKUP_PROTOCOL)
        .await
        .unwrap()
        .session();
    let request = |method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://localhost:8007/{path}"))
            .header("authorization", "PBSAPIToken nobody@pbs!x:wrong")
            .header("accept-encoding", "gzip")
            .header("user-agent", "some-other-client/0.1")
            .header("content-length", body.len().to_string());
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    };
    let reply = session
        .send(request(Method::GET, "", None, Vec::new()))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.data().is_array());
    let blob = DataBlob::encode(b"headers", None, true)
        .unwrap()
        .into_inner();
    let reply = session
        .send(request(
            Method::POST,
            &format!("blob?file-name=id.blob&encoded-size={}", blob.len()),
            Some("application/octet-stream"),
            blob.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let manifest = manifest_json(
        "headers",
        &[("id.blob", blob.len() as u64, openssl::sha::sha256(&blob))],
    );
    let manifest = DataBlob::encode(manifest.to_string().as_bytes(), None, true)
        .unwrap()
        .into_inner();
    let reply = session
        .send(request(
            Method::POST,
            &format!(
                "blob?file-name=index.json.blob&encoded-size={}",
                manifest.len()
            ),
            None,
            manifest,
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = session
        .send(request(Method::POST, "finish", None, Vec::new()))
        .await
        .unwrap();
    // Plain JSON: `accept-encoding: gzip` does not make the server compress.
    assert_eq!(reply.data(), Value::Null);
    check_snapshot(store, "headers");
}

// ---- 8.3 parameters, bodies and call order -----------------------------------------------

/// A request without content type (and without a body unless given).
async fn bare(session: &Session, method: Method, path: String, body: Vec<u8>) -> H2Reply {
    let request = Request::builder()
        .method(method)
        .uri(format!("https://localhost:8007/{path}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    session.clone().send(request).await.unwrap()
}

/// Query-string parameters without content type, raw uploads without content type, two
/// writers created up front with interleaved uploads, a chunk appended to the other writer,
/// `GET previous` first without a base snapshot, and one append larger than 64 KiB.
async fn parameters_and_call_order(server: &TestServer, store: &std::path::Path) {
    let mut session = h2client::upgrade(server, "root@pam", &target("call-order"), BACKUP_PROTOCOL)
        .await
        .unwrap()
        .session();
    // The very first request: no base snapshot. The error body is never shorter than 8 bytes.
    let previous = bare(
        &session,
        Method::GET,
        "previous?archive-name=data.didx".into(),
        Vec::new(),
    )
    .await;
    assert_eq!(previous.status, StatusCode::BAD_REQUEST);
    assert_eq!(previous.text(), "no valid previous backup");

    let wid_a = bare(
        &session,
        Method::POST,
        "dynamic_index?archive-name=data.didx".into(),
        Vec::new(),
    )
    .await
    .data();
    let wid_b = bare(
        &session,
        Method::POST,
        "dynamic_index?archive-name=catalog.pcat1.didx".into(),
        Vec::new(),
    )
    .await
    .data();
    let (wid_a, wid_b) = (wid_a.as_u64().unwrap(), wid_b.as_u64().unwrap());
    assert_ne!(wid_a, wid_b);

    // Many small chunks, uploads alternating between the writers; all are appended to
    // writer A in one call whose body exceeds upstream's limit.
    let chunks: Vec<Chunk> = (0..1200)
        .map(|i| plain_chunk(&noise(64 + i % 7, 100 + i as u64), i % 2 == 0))
        .collect();
    for (i, c) in chunks.iter().enumerate() {
        let wid = if i % 2 == 0 { wid_a } else { wid_b };
        let path = format!(
            "dynamic_chunk?wid={wid}&digest={}&size={}&encoded-size={}",
            hex::encode(c.digest),
            c.size,
            c.encoded.len()
        );
        let reply = bare(&session, Method::POST, path, c.encoded.clone()).await;
        assert_eq!(reply.data(), hex::encode(c.digest));
    }
    let mut appends = Vec::new();
    let mut entries = Vec::new();
    let mut end = 0u64;
    for c in &chunks {
        appends.push((c.digest, end));
        end += c.size as u64;
        entries.push((end, c.digest));
    }
    let body = h2client::append_body(wid_a, &appends).to_string();
    assert!(body.len() > UPSTREAM_BODY_LIMIT, "{}", body.len());
    session
        .put_json("dynamic_index", serde_json::from_str(&body).unwrap())
        .await
        .data();
    let csum_a = dynamic_csum(&entries);
    bare(
        &session,
        Method::POST,
        format!(
            "dynamic_close?wid={wid_a}&chunk-count={}&size={end}&csum={}",
            chunks.len(),
            hex::encode(csum_a)
        ),
        Vec::new(),
    )
    .await
    .data();
    // Writer B gets one chunk that was uploaded under writer A.
    let first = &chunks[0];
    session
        .append("dynamic", wid_b, &[(first.digest, 0)])
        .await
        .data();
    let csum_b = dynamic_csum(&[(first.size as u64, first.digest)]);
    bare(
        &session,
        Method::POST,
        format!(
            "dynamic_close?wid={wid_b}&chunk-count=1&size={}&csum={}",
            first.size,
            hex::encode(csum_b)
        ),
        Vec::new(),
    )
    .await
    .data();

    let blob = DataBlob::encode(b"call-order", None, true)
        .unwrap()
        .into_inner();
    let reply = bare(
        &session,
        Method::POST,
        format!("blob?file-name=id.blob&encoded-size={}", blob.len()),
        blob.clone(),
    )
    .await;
    assert_eq!(reply.data(), Value::Null);
    // Manifest entries in writer creation order, not closing order.
    let manifest = manifest_json(
        "call-order",
        &[
            ("data.didx", end, csum_a),
            ("catalog.pcat1.didx", first.size as u64, csum_b),
            ("id.blob", blob.len() as u64, openssl::sha::sha256(&blob)),
        ],
    );
    let manifest = DataBlob::encode(manifest.to_string().as_bytes(), None, true)
        .unwrap()
        .into_inner();
    bare(
        &session,
        Method::POST,
        format!(
            "blob?file-name=index.json.blob&encoded-size={}",
            manifest.len()
        ),
        manifest,
    )
    .await
    .data();
    bare(&session, Method::POST, "finish".into(), Vec::new())
        .await
        .data();
    check_snapshot(store, "call-order");
    let didx = std::fs::read(store.join("host/call-order/2023-11-14T22:13:20Z/data.didx")).unwrap();
    assert_eq!(didx.len(), 4096 + 40 * chunks.len());
}

// ---- 8.4 chunk encodings and 8.5 manifest variants ---------------------------------------

/// A compressed chunk from another zstd encoder: content size and checksum in the frame.
fn foreign_zstd_chunk(data: &[u8]) -> Chunk {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.include_contentsize(true).unwrap();
    encoder
        .set_pledged_src_size(Some(data.len() as u64))
        .unwrap();
    encoder.write_all(data).unwrap();
    let frame = encoder.finish().unwrap();
    let mut raw = COMPRESSED_BLOB_MAGIC_1_0.to_vec();
    raw.extend_from_slice(&[0; 4]);
    raw.extend_from_slice(&frame);
    let mut blob = DataBlob::from_raw(raw).unwrap();
    blob.set_crc(blob.compute_crc());
    Chunk {
        digest: openssl::sha::sha256(data),
        size: data.len(),
        encoded: blob.into_inner(),
    }
}

/// Uncompressed, foreign-zstd and encrypted chunks; an uncompressed, compact manifest with
/// `signature: null`, an unknown top-level key, a file entry without `crypt-mode` and upload
/// statistics the server overwrites; then a second manifest without signature and without
/// `unprotected`.
async fn encodings_and_manifests(server: &TestServer, store: &std::path::Path) {
    let mut session = h2client::upgrade(server, "root@pam", &target("encodings"), BACKUP_PROTOCOL)
        .await
        .unwrap()
        .session();
    let text = b"compressible text line\n".repeat(4000);
    let chunks = [
        plain_chunk(&noise(100_000, 7), false),
        plain_chunk(&text[..50_000], false),
        foreign_zstd_chunk(&text),
    ];
    let plain = dynamic_archive(&mut session, "plain.didx", &chunks).await;

    let config = CryptConfig::new([7u8; 32]).unwrap();
    let secret = noise(30_000, 9);
    let (blob, digest) = DataChunkBuilder::new(&secret)
        .crypt_config(&config)
        .compress(true)
        .build()
        .unwrap();
    let encrypted = Chunk {
        digest,
        size: secret.len(),
        encoded: blob.into_inner(),
    };
    let (_, enc_size, enc_csum) = dynamic_archive(
        &mut session,
        "secret.didx",
        std::slice::from_ref(&encrypted),
    )
    .await;

    let manifest = json!({
        "files": [
            {"filename": plain.0, "size": plain.1, "csum": hex::encode(plain.2)},
            {"filename": "secret.didx", "size": enc_size, "csum": hex::encode(enc_csum),
             "crypt-mode": "encrypt"},
        ],
        "unprotected": {"chunk_upload_stats": {"count": 0, "size": 0, "compressed_size": 0,
                                               "duplicates": 0}},
        "signature": null,
        "crypt-mode": "none",
        "backup-time": TIME,
        "backup-id": "encodings",
        "backup-type": "host",
    });
    let blob = DataBlob::encode(manifest.to_string().as_bytes(), None, false)
        .unwrap()
        .into_inner();
    session.blob("index.json.blob", &blob).await.data();
    session.post("finish").await.data();
    let path = store.join("host/encodings/2023-11-14T22:13:20Z");
    let stored = load_manifest(&path.join("index.json.blob"));
    assert!(stored.get("crypt-mode").is_none(), "{stored}");
    assert_eq!(stored["files"][0]["crypt-mode"], "none");
    assert_eq!(stored["files"][1]["crypt-mode"], "encrypt");
    assert_eq!(
        stored["unprotected"]["chunk_upload_stats"]["count"], 4,
        "{stored}"
    );
    let encrypted_file = {
        let hex = hex::encode(encrypted.digest);
        store.join(".chunks").join(&hex[..4]).join(hex)
    };
    assert_eq!(std::fs::read(encrypted_file).unwrap(), encrypted.encoded);

    let mut session = h2client::upgrade(
        server,
        "root@pam",
        &target("bare-manifest"),
        BACKUP_PROTOCOL,
    )
    .await
    .unwrap()
    .session();
    let conf = DataBlob::encode(b"x", None, false).unwrap().into_inner();
    session.blob("a.blob", &conf).await.data();
    let manifest = json!({
        "backup-type": "host", "backup-id": "bare-manifest", "backup-time": TIME,
        "files": [{"filename": "a.blob", "size": conf.len(), "csum": hex::encode(openssl::sha::sha256(&conf))}],
    });
    let blob = DataBlob::encode(manifest.to_string().as_bytes(), None, true)
        .unwrap()
        .into_inner();
    session.blob("index.json.blob", &blob).await.data();
    session.post("finish").await.data();
    check_snapshot(store, "bare-manifest");
}

fn load_manifest(path: &std::path::Path) -> Value {
    let mut file = std::fs::File::open(path).expect("manifest file");
    let blob = DataBlob::load_from_reader(&mut file).expect("manifest blob");
    serde_json::from_slice(&blob.decode(None, None).expect("decode")).expect("manifest JSON")
}

fn create_datastore(server: &TestServer, path: &std::path::Path) {
    let root = server.client("root@pam");
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            json!({"name": STORE, "path": path}),
        )
        .data();
    let status = wait_task(&root, upid.as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");
}

/// An API token of root with backup rights on the store: `<tokenid>:<secret>`.
fn backup_token(server: &TestServer) -> String {
    let root = server.client("root@pam");
    let token = root
        .post(Target::Proxy, "access/users/root@pam/token/tol", json!({}))
        .data();
    root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": format!("/datastore/{STORE}"), "role": "DatastoreBackup",
               "auth-id": "root@pam!tol"}),
    )
    .data();
    format!(
        "{}:{}",
        token["tokenid"].as_str().unwrap(),
        token["value"].as_str().unwrap()
    )
}

#[test]
fn every_tolerated_client_variation_backs_up() {
    let server = TestServer::start();
    let scratch = tempfile::Builder::new()
        .prefix("pbs-tolerance-")
        .tempdir_in("/dev/shm")
        .expect("scratch directory in /dev/shm");
    let store = scratch.path().join(STORE);
    create_datastore(&server, &store);
    let token = backup_token(&server);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        upgrade_request_variants(&server, &store, &token).await;
        first_server_frames(&server).await;
        generic_client_settings(&server, &store).await;
        extra_request_headers(&server, &store).await;
        parameters_and_call_order(&server, &store).await;
        encodings_and_manifests(&server, &store).await;
        connection_dropped_after_finish(&server, &store).await;
    });
}

/// The client drops the TCP connection right after the `finish` response, without GOAWAY and
/// without TLS close_notify (protocol.md §8.2): a normal end of a finished session.
async fn connection_dropped_after_finish(server: &TestServer, store: &std::path::Path) {
    let cookie = ticket_cookie(server, "root@pam");
    let tls = tls_connect(server.proxy_addr, &server.fingerprint)
        .await
        .unwrap();
    let head = upgrade_head(&target("dropped"), &cookie, BACKUP_PROTOCOL);
    let (mut session, driver) = upgrade_keeping_driver(tls, &head).await.unwrap();
    finish_with_blob(&mut session, "dropped", &[]).await;
    driver.abort();
    drop(session);
    check_snapshot(store, "dropped");

    // The test's HTTP client blocks.
    tokio::task::block_in_place(|| {
        let root = server.client("root@pam");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let upid = loop {
            let tasks = root
                .get(
                    Target::Proxy,
                    "nodes/localhost/tasks?typefilter=backup&limit=100",
                )
                .data();
            let task = tasks.as_array().and_then(|list| {
                list.iter()
                    .find(|t| t["worker_id"] == format!("{STORE}:host/dropped"))
                    .cloned()
            });
            if let Some(upid) = task.as_ref().and_then(|t| t["upid"].as_str()) {
                break upid.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no task: {tasks}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let status = wait_task(&root, &upid);
        assert_eq!(status["exitstatus"], "OK", "{status}");
        let lines = task_log_lines(&root, &upid);
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(": backup finished successfully")),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains("had errors")), "{lines:?}");
    });
}
