//! Raw client of the backup and reader protocols for the end-to-end tests and the protocol
//! benchmark: TLS to the proxy, the HTTP/1.1 upgrade request written byte by byte, and
//! HTTP/2 on the upgraded stream through hyper's connection API. It deliberately shares
//! nothing with the project's own client, so the wire format is checked against the spec.

#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestServer;

/// Errors of the client (tests unwrap them, the benchmark reports them).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A TLS connection to the proxy.
pub type TlsStream = tokio_openssl::SslStream<tokio::net::TcpStream>;

/// Upgrade protocol of backup sessions.
pub const BACKUP_PROTOCOL: &str = "proxmox-backup-protocol-v1";
/// Upgrade protocol of reader sessions.
pub const READER_PROTOCOL: &str = "proxmox-backup-reader-protocol-v1";
/// Window sizes and frame size the stock client announces.
const WINDOW_SIZE: u32 = 2_147_483_646;
const MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;

/// Connects to `addr` with TLS, trusting only the leaf certificate with `fingerprint`; no
/// SNI and no ALPN, like the stock client.
pub async fn tls_connect(addr: SocketAddr, fingerprint: &str) -> Result<TlsStream, BoxError> {
    tls_connect_with(addr, fingerprint, &TlsOptions::default()).await
}

/// What the TLS client hello carries besides the defaults.
#[derive(Default)]
pub struct TlsOptions<'a> {
    /// Server name indication.
    pub sni: Option<&'a str>,
    /// ALPN protocol list in wire format (length-prefixed names).
    pub alpn: Option<&'a [u8]>,
}

/// [`tls_connect`] with SNI and ALPN as given.
pub async fn tls_connect_with(
    addr: SocketAddr,
    fingerprint: &str,
    options: &TlsOptions<'_>,
) -> Result<TlsStream, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut connector = SslConnector::builder(SslMethod::tls())?;
    let expected = fingerprint.to_string();
    connector.set_verify_callback(SslVerifyMode::PEER, move |_ok, ctx| {
        if ctx.error_depth() > 0 {
            return true;
        }
        ctx.current_cert()
            .and_then(|cert| pbs_auth::tls::cert_fingerprint(cert).ok())
            .is_some_and(|fp| fp == expected)
    });
    if let Some(alpn) = options.alpn {
        connector.set_alpn_protos(alpn)?;
    }
    let ssl = connector
        .build()
        .configure()?
        .verify_hostname(false)
        .use_server_name_indication(options.sni.is_some())
        .into_ssl(options.sni.unwrap_or("localhost"))?;
    let mut tls = tokio_openssl::SslStream::new(ssl, stream)?;
    std::pin::Pin::new(&mut tls).connect().await?;
    Ok(tls)
}

/// A `PBSAuthCookie` header value with a fresh ticket for `userid`.
pub fn ticket_cookie(server: &TestServer, userid: &str) -> String {
    let key =
        pbs_auth::PrivateAuthKey::load(&server.config_dir().join("authkey.key")).expect("auth key");
    let userid: pbs_api_types::Userid = userid.parse().expect("user id");
    let ticket = pbs_auth::ticket::assemble_api_ticket(&key, &userid).expect("ticket");
    format!(
        "PBSAuthCookie={}",
        utf8_percent_encode(&ticket, NON_ALPHANUMERIC)
    )
}

/// Reads an HTTP/1.1 response head byte by byte up to the empty line: status and head text.
pub async fn read_head(tls: &mut TlsStream) -> Result<(StatusCode, String), BoxError> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if tls.read(&mut byte).await? != 1 {
            return Err(format!(
                "connection closed in response head: {}",
                String::from_utf8_lossy(&head)
            )
            .into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((status, head))
}

/// Reads a `content-length` delimited HTTP/1.1 body.
pub async fn read_body(tls: &mut TlsStream, head: &str) -> Result<Vec<u8>, BoxError> {
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).await?;
    Ok(body)
}

/// Outcome of an upgrade request.
pub enum Upgrade {
    /// `101`: the HTTP/2 session.
    Session(Session),
    /// Status and body of a refused upgrade.
    Refused(StatusCode, String),
}

impl Upgrade {
    /// The session, panicking with the refusal otherwise.
    pub fn session(self) -> Session {
        match self {
            Upgrade::Session(session) => session,
            Upgrade::Refused(status, text) => panic!("upgrade refused: {status} {text}"),
        }
    }
}

/// The upgrade request head the stock client sends: `GET <target>` with host, cookie and the
/// upgrade headers.
pub fn upgrade_head(target: &str, cookie: &str, protocol: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nhost: localhost:8007\r\ncookie: {cookie}\r\n\
         connection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
    )
}

/// Upgrades `target` (`/api2/json/backup?…`) to `protocol` as `userid`.
pub async fn upgrade(
    server: &TestServer,
    userid: &str,
    target: &str,
    protocol: &str,
) -> Result<Upgrade, BoxError> {
    let head = upgrade_head(target, &ticket_cookie(server, userid), protocol);
    upgrade_raw(server, &head, protocol).await
}

/// Sends `head` (a complete HTTP/1.1 request head) to the proxy and, on `101` with the
/// `protocol` upgrade header, starts HTTP/2 with the stock client's settings.
pub async fn upgrade_raw(
    server: &TestServer,
    head: &str,
    protocol: &str,
) -> Result<Upgrade, BoxError> {
    let tls = tls_connect(server.proxy_addr, &server.fingerprint).await?;
    upgrade_on(tls, head, protocol, &stock_settings()).await
}

/// The HTTP/2 settings of the stock client: huge windows, 4 MiB frames.
pub fn stock_settings() -> hyper::client::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(WINDOW_SIZE)
        .initial_connection_window_size(WINDOW_SIZE)
        .max_frame_size(MAX_FRAME_SIZE);
    builder
}

/// Sends `head` on `tls` and reads the response head: on `101` the stream is positioned at
/// the first HTTP/2 byte of the server; otherwise the body is the error text.
pub async fn send_upgrade_head(
    tls: &mut TlsStream,
    head: &str,
) -> Result<(StatusCode, String, Option<String>), BoxError> {
    tls.write_all(head.as_bytes()).await?;
    let (status, head) = read_head(tls).await?;
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = read_body(tls, &head).await?;
        return Ok((
            status,
            head,
            Some(String::from_utf8_lossy(&body).into_owned()),
        ));
    }
    Ok((status, head, None))
}

/// [`upgrade_raw`] on an open TLS stream, with the client's HTTP/2 `settings`.
pub async fn upgrade_on(
    mut tls: TlsStream,
    head: &str,
    protocol: &str,
    settings: &hyper::client::conn::http2::Builder<TokioExecutor>,
) -> Result<Upgrade, BoxError> {
    let (status, head, error) = send_upgrade_head(&mut tls, head).await?;
    if let Some(text) = error {
        return Ok(Upgrade::Refused(status, text));
    }
    let expected = format!("upgrade: {protocol}\r\n");
    if !head.to_ascii_lowercase().contains(&expected) {
        return Err(format!("101 without the {protocol} upgrade header: {head}").into());
    }
    let (sender, conn) = settings.handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Upgrade::Session(Session { sender }))
}

/// Like [`upgrade_on`] with the stock settings, but returns the task driving the connection:
/// aborting it drops the TCP connection at once, without GOAWAY and without TLS close_notify.
pub async fn upgrade_keeping_driver(
    mut tls: TlsStream,
    head: &str,
) -> Result<(Session, tokio::task::JoinHandle<()>), BoxError> {
    let (status, _head, error) = send_upgrade_head(&mut tls, head).await?;
    if let Some(text) = error {
        return Err(format!("upgrade refused: {status} {text}").into());
    }
    let (sender, conn) = stock_settings().handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((Session { sender }, driver))
}

/// Runs `attempt` until it yields a session, retrying for up to 20 s while the refusal text
/// ends with `busy` (the previous session of the group or snapshot is still ending: the
/// server notices a closed connection asynchronously).
pub async fn upgrade_retrying<F, Fut>(busy: &str, mut attempt: F) -> Session
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Upgrade, BoxError>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match attempt().await.expect("upgrade request") {
            Upgrade::Session(session) => return session,
            Upgrade::Refused(_, text)
                if text.ends_with(busy) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Upgrade::Refused(status, text) => panic!("upgrade refused: {status} {text}"),
        }
    }
}

/// Refusal text while another backup of the group runs.
pub const GROUP_BUSY: &str = "another backup is already running";
/// Refusal text while the snapshot is locked exclusively (e.g. by its ending backup).
pub const SNAPSHOT_BUSY: &str = "locked by another operation";

/// The index checksum of a dynamic index: SHA-256 over `end offset (LE) ‖ digest` entries.
pub fn dynamic_csum(entries: &[(u64, [u8; 32])]) -> [u8; 32] {
    let mut hasher = openssl::sha::Sha256::new();
    for (end, digest) in entries {
        hasher.update(&end.to_le_bytes());
        hasher.update(digest);
    }
    hasher.finish()
}

/// One answer inside a session.
#[derive(Debug)]
pub struct H2Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl H2Reply {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data` member of a `200` JSON answer.
    pub fn data(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        let value: Value = serde_json::from_slice(&self.body).expect("JSON body");
        value["data"].clone()
    }

    /// The text of a `400` answer.
    pub fn error(&self) -> String {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "body: {}",
            self.text()
        );
        self.text()
    }

    /// The body of a `200` answer.
    pub fn bytes(&self) -> &[u8] {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        &self.body
    }

    /// The body of a `200` answer, or the status and text as error.
    pub fn ok(self, what: &str) -> Result<Bytes, BoxError> {
        if self.status != StatusCode::OK {
            return Err(format!("{what}: {} {}", self.status, self.text()).into());
        }
        Ok(self.body)
    }
}

/// Content type of body-less calls.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// Content type of uploads.
pub const OCTETS: &str = "application/octet-stream";

/// A backup or reader session: the HTTP/2 client half on the upgraded TLS stream. Clones
/// share the connection (for requests in flight at the same time).
#[derive(Clone)]
pub struct Session {
    sender: SendRequest<Full<Bytes>>,
}

impl Session {
    /// Sends one request as built by the caller.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<H2Reply, BoxError> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(H2Reply {
            status,
            content_type,
            body,
        })
    }

    /// `method` on `path_and_query` (relative to the session) with a body.
    pub async fn call(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<H2Reply, BoxError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("https://localhost:8007/{path_and_query}"))
            .header("content-type", content_type)
            .body(Full::new(body))?;
        self.send(request).await
    }

    /// Like [`Session::call`], panicking on transport errors.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> H2Reply {
        self.call(method, path_and_query, content_type, body.into())
            .await
            .unwrap_or_else(|err| panic!("{path_and_query}: {err}"))
    }

    pub async fn get(&mut self, path_and_query: &str) -> H2Reply {
        self.request(Method::GET, path_and_query, FORM, Bytes::new())
            .await
    }

    pub async fn post(&mut self, path_and_query: &str) -> H2Reply {
        self.request(Method::POST, path_and_query, FORM, Bytes::new())
            .await
    }

    pub async fn upload(&mut self, path_and_query: &str, data: impl Into<Bytes>) -> H2Reply {
        self.request(Method::POST, path_and_query, OCTETS, data)
            .await
    }

    pub async fn put_json(&mut self, path: &str, body: Value) -> H2Reply {
        self.request(Method::PUT, path, "application/json", body.to_string())
            .await
    }

    /// Uploads an encoded blob as `name`.
    pub async fn blob(&mut self, name: &str, raw: &[u8]) -> H2Reply {
        let path = format!("blob?file-name={name}&encoded-size={}", raw.len());
        self.upload(&path, raw.to_vec()).await
    }

    /// Uploads a chunk to writer `wid` of the `prefix` (`fixed`/`dynamic`) index.
    pub async fn chunk(
        &mut self,
        prefix: &str,
        wid: u64,
        digest: &[u8; 32],
        size: usize,
        encoded: &[u8],
    ) -> H2Reply {
        let encoded = Bytes::copy_from_slice(encoded);
        let path = format!(
            "{prefix}_chunk?wid={wid}&digest={}&size={size}&encoded-size={}",
            hex::encode(digest),
            encoded.len()
        );
        self.upload(&path, encoded).await
    }

    /// Appends `(digest, offset)` entries to writer `wid` of the `prefix` index.
    pub async fn append(&mut self, prefix: &str, wid: u64, entries: &[([u8; 32], u64)]) -> H2Reply {
        self.put_json(&format!("{prefix}_index"), append_body(wid, entries))
            .await
    }
}

/// The JSON body of an index append.
pub fn append_body(wid: u64, entries: &[([u8; 32], u64)]) -> Value {
    let digests: Vec<String> = entries.iter().map(|(d, _)| hex::encode(d)).collect();
    let offsets: Vec<u64> = entries.iter().map(|(_, o)| *o).collect();
    json!({"wid": wid, "digest-list": digests, "offset-list": offsets})
}
