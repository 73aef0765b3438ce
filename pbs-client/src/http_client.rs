//! HTTPS client of the backup server API: authentication, REST calls over kept-alive
//! connections, and the HTTP/1.1 upgrade to the HTTP/2 backup and reader protocols.

use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{bail, format_err, Context, Result};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, COOKIE, HOST, UPGRADE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::SslConnector;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use pbs_api_types::Authid;

use crate::h2::H2Client;
use crate::proxy::{connect_tunnel, ProxyConfig};
use crate::query::path_with_query;
use crate::rate_limit::{RateLimitedStream, RateLimits};
use crate::ticket_cache::{self, CachedTicket};
use crate::tls::{self, TrustPolicy};

/// `User-Agent` of every request.
pub const USER_AGENT_VALUE: &str = "proxmox-backup-client/1.0";
/// How often a running client renews its ticket.
pub const TICKET_RENEW_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Time limit of the whole upgrade round trip.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);
/// HTTP/2 windows of the client (stream and connection): 2^31 - 2.
pub const H2_WINDOW_SIZE: u32 = 2_147_483_646;
/// HTTP/2 maximal frame size of the client: 4 MiB.
pub const H2_MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;

/// Characters escaped in the ticket cookie and the token secret.
const CREDENTIAL_ENCODE_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}');

/// A non-success HTTP status with the server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub code: StatusCode,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// From a status and the response body text.
    pub fn new(code: StatusCode, body: &str) -> Self {
        let body = body.trim();
        let message = if body.is_empty() {
            format!("HTTP Error {code}")
        } else {
            body.to_string()
        };
        Self { code, message }
    }
}

/// How a client authenticates and whom it trusts.
#[derive(Clone, Debug, Default)]
pub struct HttpClientOptions {
    password: Option<String>,
    ticket: Option<CachedTicket>,
    fingerprint: Option<String>,
    interactive: bool,
    ticket_cache: bool,
    fingerprint_cache: bool,
    rate: Option<u64>,
    burst: Option<u64>,
    proxy: Option<ProxyConfig>,
    renew_interval: Option<Duration>,
}

impl HttpClientOptions {
    /// A command-line client: may prompt, uses the ticket and fingerprint caches.
    pub fn new_interactive(password: Option<String>, fingerprint: Option<String>) -> Self {
        Self {
            password,
            fingerprint,
            interactive: true,
            ticket_cache: true,
            fingerprint_cache: true,
            ..Default::default()
        }
    }

    /// A client that never prompts and uses no caches.
    pub fn new_non_interactive(password: String, fingerprint: Option<String>) -> Self {
        Self {
            password: Some(password),
            fingerprint,
            ..Default::default()
        }
    }

    /// A client using an already issued ticket (and CSRF token); no login request is made.
    pub fn new_with_ticket(
        ticket: String,
        csrf_token: Option<String>,
        fingerprint: Option<String>,
    ) -> Self {
        Self {
            ticket: Some(CachedTicket {
                ticket,
                csrf_token: csrf_token.unwrap_or_default(),
            }),
            fingerprint,
            ..Default::default()
        }
    }

    /// Renews the ticket at this interval instead of every 15 minutes.
    pub fn ticket_renew_interval(mut self, interval: Duration) -> Self {
        self.renew_interval = Some(interval);
        self
    }

    /// Connects through an HTTP proxy (`CONNECT` tunnel).
    pub fn proxy(mut self, proxy: Option<ProxyConfig>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Limits both directions to `rate` bytes/s with `burst` bytes of credit.
    pub fn rate_limit(mut self, rate: Option<u64>, burst: Option<u64>) -> Self {
        self.rate = rate;
        self.burst = burst;
        self
    }
}

/// Credentials sent with each request.
#[derive(Clone, Debug)]
enum Credentials {
    Ticket(CachedTicket),
    Token(String),
}

type Body = Full<Bytes>;
type Transport = SslStream<RateLimitedStream<TcpStream>>;

struct Inner {
    server: String,
    /// `server` without IPv6 brackets (for connecting and TLS).
    connect_host: String,
    port: u16,
    auth_id: Authid,
    policy: TrustPolicy,
    ticket_cache: bool,
    connector: SslConnector,
    limits: RateLimits,
    proxy: Option<ProxyConfig>,
    renew_interval: Duration,
    /// What `login` authenticates with: password, token secret or a ticket to renew.
    password: Mutex<Option<String>>,
    credentials: Mutex<Option<Credentials>>,
    login_lock: tokio::sync::Mutex<()>,
    trust_lock: tokio::sync::Mutex<()>,
    /// Fingerprint accepted by the user or the expected value during this run.
    accepted_fingerprint: Mutex<Option<String>>,
    /// Fingerprint of the last certificate seen.
    seen_fingerprint: Mutex<Option<String>>,
    idle: Mutex<Vec<http1::SendRequest<Body>>>,
    renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut renewal) = self.renewal.lock() {
            if let Some(task) = renewal.take() {
                task.abort();
            }
        }
    }
}

/// HTTPS client of one server as one auth id; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpClient {
    /// Prepares a client; asks for a password on the terminal if none is available.
    pub fn new(
        server: &str,
        port: u16,
        auth_id: &Authid,
        options: HttpClientOptions,
    ) -> Result<Self> {
        let mut credentials = None;
        let mut password = options.password.clone();
        if auth_id.is_token() {
            let Some(secret) = &password else {
                bail!("API token secret must be provided!");
            };
            credentials = Some(Credentials::Token(format!(
                "PBSAPIToken {auth_id}:{}",
                utf8_percent_encode(secret, CREDENTIAL_ENCODE_SET)
            )));
        } else if let Some(ticket) = &options.ticket {
            credentials = Some(Credentials::Ticket(ticket.clone()));
        } else if password.is_none() {
            let userid = auth_id.user().to_string();
            let cached = options
                .ticket_cache
                .then(|| ticket_cache::load_ticket(server, &userid))
                .flatten();
            password = match cached {
                // Logging in with a valid ticket renews it.
                Some(cached) => Some(cached.ticket),
                None if options.interactive && std::io::stdin().is_terminal() => {
                    let prompt = format!("Password for \"{userid}\": ");
                    let bytes = pbs_cli::read_password(&prompt, "PBS_PASSWORD")?;
                    Some(
                        String::from_utf8(bytes)
                            .map_err(|_| format_err!("password contains bad characters"))?,
                    )
                }
                None => bail!("no password input mechanism available"),
            };
        }
        let connect_host = server
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(server)
            .to_string();
        let inner = Inner {
            server: server.to_string(),
            connect_host,
            port,
            auth_id: auth_id.clone(),
            policy: TrustPolicy {
                fingerprint: options.fingerprint.clone(),
                fingerprint_cache: options.fingerprint_cache,
                interactive: options.interactive,
            },
            ticket_cache: options.ticket_cache,
            connector: tls::connector()?,
            limits: RateLimits::new(options.rate, options.burst),
            proxy: options.proxy.clone(),
            renew_interval: options.renew_interval.unwrap_or(TICKET_RENEW_INTERVAL),
            password: Mutex::new(password),
            credentials: Mutex::new(credentials),
            login_lock: tokio::sync::Mutex::new(()),
            trust_lock: tokio::sync::Mutex::new(()),
            accepted_fingerprint: Mutex::new(None),
            seen_fingerprint: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            renewal: Mutex::new(None),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The server host as given.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The server port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Who this client authenticates as.
    pub fn auth_id(&self) -> &Authid {
        &self.inner.auth_id
    }

    /// Fingerprint of the server certificate as seen on the last connection.
    pub fn fingerprint(&self) -> Option<String> {
        lock(&self.inner.seen_fingerprint).clone()
    }

    /// The current ticket (none for API tokens or before the login).
    pub fn ticket(&self) -> Option<String> {
        match &*lock(&self.inner.credentials) {
            Some(Credentials::Ticket(ticket)) => Some(ticket.ticket.clone()),
            _ => None,
        }
    }

    /// Authenticates: API tokens and given tickets need no request; otherwise a ticket is
    /// requested with the password (or the cached ticket), cached, and renewed periodically.
    pub async fn login(&self) -> Result<()> {
        let _guard = self.inner.login_lock.lock().await;
        self.login_locked().await
    }

    async fn login_locked(&self) -> Result<()> {
        if matches!(&*lock(&self.inner.credentials), Some(Credentials::Token(_))) {
            return Ok(());
        }
        let Some(password) = lock(&self.inner.password).clone() else {
            // A client created with a ticket: nothing to do.
            return Ok(());
        };
        let ticket = self.request_ticket(&password).await?;
        self.set_ticket(ticket);
        self.start_renewal();
        Ok(())
    }

    async fn ensure_login(&self) -> Result<()> {
        if lock(&self.inner.credentials).is_some() {
            return Ok(());
        }
        let _guard = self.inner.login_lock.lock().await;
        if lock(&self.inner.credentials).is_some() {
            return Ok(());
        }
        self.login_locked().await
    }

    async fn request_ticket(&self, password: &str) -> Result<CachedTicket> {
        let userid = self.inner.auth_id.user().to_string();
        let body = json!({ "username": userid, "password": password });
        let request = self
            .request_builder(Method::POST, "/api2/json/access/ticket")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        let (status, bytes) = self.send_collect(request).await?;
        let value = json_response(status, &bytes)?;
        let data = &value["data"];
        let ticket = data["ticket"]
            .as_str()
            .ok_or_else(|| format_err!("login response without ticket"))?;
        let csrf_token = data["CSRFPreventionToken"]
            .as_str()
            .ok_or_else(|| format_err!("login response without CSRF prevention token"))?;
        if csrf_token == "invalid" {
            bail!("second factor authentication is not supported by this client");
        }
        Ok(CachedTicket {
            ticket: ticket.to_string(),
            csrf_token: csrf_token.to_string(),
        })
    }

    fn set_ticket(&self, ticket: CachedTicket) {
        if self.inner.ticket_cache {
            let userid = self.inner.auth_id.user().to_string();
            if let Err(err) = ticket_cache::store_ticket(&self.inner.server, &userid, &ticket) {
                eprintln!("unable to store ticket - {err:#}");
            }
        }
        *lock(&self.inner.password) = Some(ticket.ticket.clone());
        *lock(&self.inner.credentials) = Some(Credentials::Ticket(ticket));
    }

    fn start_renewal(&self) {
        let mut renewal = lock(&self.inner.renewal);
        if renewal.is_some() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.renew_interval;
        *renewal = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let client = HttpClient { inner };
                let _guard = client.inner.login_lock.lock().await;
                let Some(ticket) = lock(&client.inner.password).clone() else {
                    return;
                };
                match client.request_ticket(&ticket).await {
                    Ok(ticket) => client.set_ticket(ticket),
                    Err(err) => eprintln!("ticket renewal failed - {err:#}"),
                }
            }
        }));
    }

    fn request_builder(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(
                HOST,
                format!("{}:{}", self.inner.server, self.inner.port).as_str(),
            )
            .header(USER_AGENT, USER_AGENT_VALUE)
    }

    fn add_credentials(&self, mut builder: http::request::Builder) -> http::request::Builder {
        match &*lock(&self.inner.credentials) {
            Some(Credentials::Ticket(ticket)) => {
                builder = builder.header(
                    COOKIE,
                    format!(
                        "PBSAuthCookie={}",
                        utf8_percent_encode(&ticket.ticket, CREDENTIAL_ENCODE_SET)
                    ),
                );
                if !ticket.csrf_token.is_empty() {
                    builder = builder.header("CSRFPreventionToken", ticket.csrf_token.as_str());
                }
            }
            Some(Credentials::Token(header)) => {
                builder = builder.header(AUTHORIZATION, header.as_str());
            }
            None => {}
        }
        builder
    }

    /// An authenticated request for `path` (relative to the host root).
    async fn authenticated_builder(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<http::request::Builder> {
        self.ensure_login().await?;
        let uri = format!("/{}", path_and_query.trim_start_matches('/'));
        Ok(self.add_credentials(self.request_builder(method, &uri)))
    }

    /// Opens a TLS connection and checks the server certificate.
    async fn connect_tls(&self) -> Result<Transport> {
        let inner = &self.inner;
        let authority = format!("{}:{}", inner.server, inner.port);
        let tcp = match &inner.proxy {
            None => TcpStream::connect((inner.connect_host.as_str(), inner.port))
                .await
                .with_context(|| format!("unable to connect to {authority}"))?,
            Some(proxy) => {
                let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
                    .await
                    .with_context(|| {
                        format!("unable to connect to proxy {}:{}", proxy.host, proxy.port)
                    })?;
                connect_tunnel(&mut tcp, &authority, proxy.authorization.as_deref()).await?;
                tcp
            }
        };
        let _ = tcp.set_nodelay(true);
        let stream = RateLimitedStream::new(tcp, &inner.limits);
        let (ssl, check) = tls::new_ssl(&inner.connector, &inner.connect_host)?;
        let mut tls_stream = SslStream::new(ssl, stream)?;
        Pin::new(&mut tls_stream).connect().await.map_err(|err| {
            format_err!(
                "TLS connection to {}:{} failed - {err}",
                inner.server,
                inner.port
            )
        })?;
        let check = lock(&check).clone();
        *lock(&inner.seen_fingerprint) = check.fingerprint.clone();
        self.trust_certificate(check).await?;
        Ok(tls_stream)
    }

    async fn trust_certificate(&self, check: tls::CertificateCheck) -> Result<()> {
        if !check.chain_failed {
            return Ok(());
        }
        // One decision at a time: a confirmed fingerprint applies to later connections.
        let _guard = self.inner.trust_lock.lock().await;
        let accepted = lock(&self.inner.accepted_fingerprint).clone();
        if accepted.is_some() && accepted == check.fingerprint {
            return Ok(());
        }
        let server = self.inner.server.clone();
        let policy = self.inner.policy.clone();
        let fingerprint = if policy.interactive {
            tokio::task::spawn_blocking(move || tls::verify_certificate(&server, &check, &policy))
                .await
                .map_err(|err| format_err!("certificate check failed - {err}"))??
        } else {
            tls::verify_certificate(&server, &check, &policy)?
        };
        *lock(&self.inner.accepted_fingerprint) = fingerprint;
        Ok(())
    }

    /// An idle kept-alive connection, or a new one.
    async fn connection(&self) -> Result<(http1::SendRequest<Body>, bool)> {
        loop {
            let Some(mut sender) = lock(&self.inner.idle).pop() else {
                break;
            };
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let tls_stream = self.connect_tls().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls_stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((sender, false))
    }

    fn release(&self, sender: http1::SendRequest<Body>) {
        if !sender.is_closed() {
            lock(&self.inner.idle).push(sender);
        }
    }

    /// Sends a request on a kept-alive connection; a request that a stale idle connection
    /// could not send is retried once on a new connection.
    async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<(Response<Incoming>, http1::SendRequest<Body>)> {
        let (mut sender, reused) = self.connection().await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, sender)),
            Err(mut err) => match err.take_message() {
                Some(request) if reused => {
                    let (mut sender, _) = self.connection().await?;
                    let response = sender.send_request(request).await?;
                    Ok((response, sender))
                }
                _ => Err(err.into_error().into()),
            },
        }
    }

    async fn send_collect(&self, request: Request<Body>) -> Result<(StatusCode, Bytes)> {
        let (response, sender) = self.send(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        self.release(sender);
        Ok((status, bytes))
    }

    /// A JSON request: `GET`/`DELETE` carry `params` in the query string, `POST`/`PUT` as
    /// JSON body. Returns the whole response envelope.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: Option<Value>,
    ) -> Result<Value> {
        let with_body = matches!(method, Method::POST | Method::PUT);
        let request = if with_body {
            let builder = self.authenticated_builder(method, path).await?;
            match params {
                Some(params) => builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&params)?)))?,
                None => builder
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::new()))?,
            }
        } else {
            let uri = path_with_query(path, params.as_ref())?;
            self.authenticated_builder(method, &uri)
                .await?
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::new()))?
        };
        let (status, bytes) = self.send_collect(request).await?;
        json_response(status, &bytes)
    }

    /// `GET` with `params` in the query string.
    pub async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::GET, path, params).await
    }

    /// `POST` with `params` as JSON body.
    pub async fn post(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::POST, path, params).await
    }

    /// `PUT` with `params` as JSON body.
    pub async fn put(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::PUT, path, params).await
    }

    /// `DELETE` with `params` in the query string.
    pub async fn delete(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.request(Method::DELETE, path, params).await
    }

    /// `POST` of a raw body; `params` go into the query string.
    pub async fn upload(
        &self,
        content_type: &str,
        body: Bytes,
        path: &str,
        params: Option<Value>,
    ) -> Result<Value> {
        let uri = path_with_query(path, params.as_ref())?;
        let request = self
            .authenticated_builder(Method::POST, &uri)
            .await?
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))?;
        let (status, bytes) = self.send_collect(request).await?;
        json_response(status, &bytes)
    }

    /// `GET` of `path` (which may carry a query), streaming the body into `output`.
    pub async fn download(
        &self,
        path: &str,
        output: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        let request = self
            .authenticated_builder(Method::GET, path)
            .await?
            .body(Full::new(Bytes::new()))?;
        let (response, sender) = self.send(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            self.release(sender);
            return Err(HttpError::new(status, &String::from_utf8_lossy(&bytes)).into());
        }
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                output
                    .write_all(&data)
                    .context("unable to write downloaded data")?;
            }
        }
        self.release(sender);
        Ok(())
    }

    /// Upgrades a new connection to HTTP/2 speaking `protocol_name` (e.g.
    /// `proxmox-backup-protocol-v1`); `params` go into the query string.
    pub async fn start_h2_connection(
        &self,
        path: &str,
        params: Value,
        protocol_name: &str,
    ) -> Result<H2Client> {
        tokio::time::timeout(UPGRADE_TIMEOUT, self.upgrade(path, params, protocol_name))
            .await
            .map_err(|_| format_err!("timeout while starting the {protocol_name} session"))?
    }

    async fn upgrade(&self, path: &str, params: Value, protocol_name: &str) -> Result<H2Client> {
        let uri = path_with_query(path, Some(&params))?;
        let request = self
            .authenticated_builder(Method::GET, &uri)
            .await?
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, protocol_name)
            .body(Full::new(Bytes::new()))?;
        let tls_stream = self.connect_tls().await?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(tls_stream)).await?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        let response = sender.send_request(request).await?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = response.into_body().collect().await?.to_bytes();
            return Err(HttpError::new(status, &String::from_utf8_lossy(&bytes)).into());
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .context("protocol upgrade failed")?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(H2_WINDOW_SIZE)
            .initial_connection_window_size(H2_WINDOW_SIZE)
            .max_frame_size(H2_MAX_FRAME_SIZE)
            .handshake(upgraded)
            .await
            .context("HTTP/2 handshake failed")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2Client::new(sender))
    }
}

/// Parses a JSON API response; non-2xx statuses become [`HttpError`]s.
pub(crate) fn json_response(status: StatusCode, bytes: &[u8]) -> Result<Value> {
    if !status.is_success() {
        return Err(HttpError::new(status, &String::from_utf8_lossy(bytes)).into());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({ "data": null }));
    }
    let value: Value = serde_json::from_slice(bytes).context("invalid JSON in response")?;
    if value.get("data").is_none() {
        bail!("got result without data property");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        assert_eq!(
            json_response(StatusCode::OK, b"{\"data\":1,\"total\":2}").unwrap(),
            json!({"data": 1, "total": 2})
        );
        assert_eq!(
            json_response(StatusCode::OK, b"").unwrap(),
            json!({ "data": null })
        );
        let err = json_response(StatusCode::OK, b"{\"x\":1}").unwrap_err();
        assert_eq!(err.to_string(), "got result without data property");
        let err =
            json_response(StatusCode::UNAUTHORIZED, b"permission check failed.\n").unwrap_err();
        assert_eq!(err.to_string(), "permission check failed.");
        assert_eq!(
            err.downcast_ref::<HttpError>().map(|e| e.code),
            Some(StatusCode::UNAUTHORIZED)
        );
        let err = json_response(StatusCode::NOT_FOUND, b"").unwrap_err();
        assert_eq!(err.to_string(), "HTTP Error 404 Not Found");
    }

    #[test]
    fn token_needs_secret() {
        let token: Authid = "user@pbs!tok".parse().unwrap();
        let mut options = HttpClientOptions::new_interactive(None, None);
        options.ticket_cache = false;
        let err = HttpClient::new("localhost", 8007, &token, options)
            .err()
            .expect("token without secret");
        assert_eq!(err.to_string(), "API token secret must be provided!");
        let options = HttpClientOptions::new_non_interactive("s e#cret".into(), None);
        let client = HttpClient::new("localhost", 8007, &token, options).unwrap();
        let credentials = lock(&client.inner.credentials).clone();
        match credentials {
            Some(Credentials::Token(header)) => {
                assert_eq!(header, "PBSAPIToken user@pbs!tok:s%20e%23cret")
            }
            other => panic!("unexpected credentials {other:?}"),
        }
    }

    #[test]
    fn no_password_without_terminal() {
        if std::io::stdin().is_terminal() {
            return;
        }
        let user: Authid = "user@pbs".parse().unwrap();
        let mut options = HttpClientOptions::new_interactive(None, None);
        options.ticket_cache = false;
        let err = HttpClient::new("localhost", 8007, &user, options)
            .err()
            .expect("no password");
        assert_eq!(err.to_string(), "no password input mechanism available");
    }

    #[test]
    fn ipv6_hosts_connect_without_brackets() {
        let user: Authid = "root@pam".parse().unwrap();
        let options = HttpClientOptions::new_non_interactive("x".into(), None);
        let client = HttpClient::new("[::1]", 8007, &user, options).unwrap();
        assert_eq!(client.inner.connect_host, "::1");
        assert_eq!(client.server(), "[::1]");
    }
}
