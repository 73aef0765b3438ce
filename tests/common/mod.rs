//! End-to-end harness: runs the real `proxmox-backup-api` and `proxmox-backup-proxy`
//! binaries on free loopback ports with a scratch base directory, and talks to them with a
//! small HTTP(S) client that trusts the generated certificate by its fingerprint.

#![allow(dead_code)]

pub mod h2client;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

/// How long a daemon may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which daemon a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The API daemon (plain HTTP).
    Api,
    /// The proxy (TLS).
    Proxy,
}

/// A response: status, content type and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub headers: http::HeaderMap,
    pub body: String,
    /// The body as received (binary downloads).
    pub raw: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?} {}", self.status, self.body))
    }

    /// The `data` member of a successful JSON reply.
    pub fn data(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self.json()["data"].clone()
    }
}

/// Picks a free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind to a free port");
    listener.local_addr().expect("local address").port()
}

/// Both daemons on a scratch base directory.
pub struct TestServer {
    pub base: tempfile::TempDir,
    pub api_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    api: Option<Child>,
    proxy: Option<Child>,
    /// Certificate fingerprint of the proxy (lower-case, `:`-separated).
    pub fingerprint: String,
}

fn daemon_command(bin: &str, base: &Path, api: SocketAddr, proxy: SocketAddr) -> Command {
    let mut command = Command::new(bin);
    command
        .env("PBS_BASE_DIR", base)
        .env("PBS_API_LISTEN", api.to_string())
        .env("PBS_PROXY_LISTEN", proxy.to_string())
        .env("PBS_TEST_ROUTES", "1")
        .env_remove("PROXMOX_BACKUP_LISTEN_FD")
        .stdin(Stdio::null());
    command
}

pub const API_BIN: &str = env!("CARGO_BIN_EXE_proxmox-backup-api");
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxmox-backup-proxy");

impl TestServer {
    /// Starts both daemons on a new base directory.
    pub fn start() -> Self {
        let base = tempfile::tempdir().expect("temporary base directory");
        Self::start_in(base)
    }

    /// Starts both daemons on `base` (which may hold state of an earlier run).
    pub fn start_in(base: tempfile::TempDir) -> Self {
        let api_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proxy_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut server = Self {
            base,
            api_addr,
            proxy_addr,
            api: None,
            proxy: None,
            fingerprint: String::new(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let base = self.base.path().to_path_buf();
        self.api = Some(self.spawn(API_BIN, "api.log"));
        wait_accepting(
            self.api_addr,
            self.api.as_mut().unwrap(),
            &base.join("api.log"),
        );
        self.proxy = Some(self.spawn(PROXY_BIN, "proxy.log"));
        wait_accepting(
            self.proxy_addr,
            self.proxy.as_mut().unwrap(),
            &base.join("proxy.log"),
        );
        self.fingerprint =
            pbs_auth::tls::cert_file_fingerprint(&self.config_dir().join("proxy.pem"))
                .expect("certificate fingerprint");
    }

    fn spawn(&self, bin: &str, log_name: &str) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.base.path().join(log_name))
            .expect("daemon log file");
        daemon_command(bin, self.base.path(), self.api_addr, self.proxy_addr)
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("unable to start {bin}: {err}"))
    }

    /// Stops both daemons and starts them again on the same base directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// `<base>/etc/proxmox-backup`.
    pub fn config_dir(&self) -> PathBuf {
        self.base.path().join("etc/proxmox-backup")
    }

    /// What a daemon printed (`api.log` or `proxy.log` in the base directory).
    pub fn daemon_log(&self, target: Target) -> String {
        let name = match target {
            Target::Api => "api.log",
            Target::Proxy => "proxy.log",
        };
        std::fs::read_to_string(self.base.path().join(name)).unwrap_or_default()
    }

    /// The PID in a daemon's PID file.
    pub fn pid_file_pid(&self, target: Target) -> Option<i32> {
        let name = match target {
            Target::Api => "api.pid",
            Target::Proxy => "proxy.pid",
        };
        std::fs::read_to_string(self.base.path().join("run/proxmox-backup").join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The PID of the daemon process started by the harness.
    pub fn child_pid(&self, target: Target) -> i32 {
        let child = match target {
            Target::Api => self.api.as_ref(),
            Target::Proxy => self.proxy.as_ref(),
        };
        child.expect("daemon running").id() as i32
    }

    /// Sends a signal to the process started by the harness.
    pub fn signal(&self, target: Target, signal: i32) {
        // SAFETY: kill on a PID of our own child.
        unsafe { libc::kill(self.child_pid(target), signal) };
    }

    /// A client acting as `userid` (which must exist; `root@pam` always does).
    pub fn client(&self, userid: &str) -> Client {
        let dir = self.config_dir();
        let key = pbs_auth::PrivateAuthKey::load(&dir.join("authkey.key")).expect("auth key");
        let userid: pbs_api_types::Userid = userid.parse().expect("user id");
        let ticket = pbs_auth::ticket::assemble_api_ticket(&key, &userid).expect("ticket");
        let csrf = pbs_auth::CsrfSecret::load(&dir.join("csrf.key")).expect("csrf key");
        let csrf = pbs_auth::assemble_csrf_prevention_token(&csrf, &userid);
        Client {
            api: self.api_addr,
            proxy: self.proxy_addr,
            fingerprint: self.fingerprint.clone(),
            cookie: Some(format!(
                "PBSAuthCookie={}",
                utf8_percent_encode(&ticket, NON_ALPHANUMERIC)
            )),
            csrf: Some(csrf),
            authorization: None,
        }
    }

    /// A client sending exactly the given credentials: a ticket (as `PBSAuthCookie`), a CSRF
    /// token (on non-GET requests) and an `Authorization` header value.
    pub fn client_with(
        &self,
        ticket: Option<&str>,
        csrf: Option<&str>,
        authorization: Option<&str>,
    ) -> Client {
        Client {
            api: self.api_addr,
            proxy: self.proxy_addr,
            fingerprint: self.fingerprint.clone(),
            cookie: ticket
                .map(|t| format!("PBSAuthCookie={}", utf8_percent_encode(t, NON_ALPHANUMERIC))),
            csrf: csrf.map(str::to_string),
            authorization: authorization.map(str::to_string),
        }
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            api: self.api_addr,
            proxy: self.proxy_addr,
            fingerprint: self.fingerprint.clone(),
            cookie: None,
            csrf: None,
            authorization: None,
        }
    }

    fn stop(&mut self) {
        // Successors of reloaded daemons are not our children: they are found by PID file.
        let mut extra: Vec<i32> = Vec::new();
        for target in [Target::Proxy, Target::Api] {
            if let Some(pid) = self.pid_file_pid(target) {
                extra.push(pid);
            }
        }
        let children: Vec<Child> = [self.proxy.take(), self.api.take()]
            .into_iter()
            .flatten()
            .collect();
        for pid in children
            .iter()
            .map(|c| c.id() as i32)
            .chain(extra.iter().copied())
        {
            // SAFETY: signalling processes this harness started (or their successors).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for mut child in children {
            stop_child(&mut child);
        }
        for pid in extra {
            wait_gone(pid);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_child(child: &mut Child) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a process that is not our child to end; kills it after the timeout.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: see above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn wait_accepting(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "daemon exited ({status}) before listening on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not listen on {addr} in time:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (up to 60 s) until task `upid` has stopped; returns its final status.
pub fn wait_task(client: &Client, upid: &str) -> Value {
    let mut status = Value::Null;
    wait_until(Duration::from_secs(60), "task end", || {
        status = client
            .get(
                Target::Proxy,
                &format!("nodes/localhost/tasks/{}/status", encode(upid)),
            )
            .data();
        status["status"] == "stopped"
    });
    status
}

/// The text lines of task `upid`'s log (up to 1000).
pub fn task_log_lines(client: &Client, upid: &str) -> Vec<String> {
    let log = client
        .get(
            Target::Proxy,
            &format!("nodes/localhost/tasks/{}/log?limit=1000", encode(upid)),
        )
        .data();
    log.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["t"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Hands a path written by the test to the `backup` user, which the proxy runs as under root.
pub fn chown_to_backup(path: &Path) {
    // SAFETY: plain system call without arguments.
    if unsafe { libc::geteuid() } != 0 || !path.exists() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "backup:backup"])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {path:?} failed");
}

/// Waits until `check` holds, polling every 50 ms, for at most `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JSON client for both daemons; one connection per request.
#[derive(Clone)]
pub struct Client {
    api: SocketAddr,
    proxy: SocketAddr,
    fingerprint: String,
    cookie: Option<String>,
    csrf: Option<String>,
    authorization: Option<String>,
}

impl Client {
    /// `GET` with a query string (already encoded) on `path` below `/api2/json/`.
    pub fn get(&self, target: Target, path: &str) -> Reply {
        self.request(target, Method::GET, path, None)
    }

    /// `POST` with a JSON body.
    pub fn post(&self, target: Target, path: &str, body: Value) -> Reply {
        self.request(target, Method::POST, path, Some(body))
    }

    /// `DELETE` on `path`.
    pub fn delete(&self, target: Target, path: &str) -> Reply {
        self.request(target, Method::DELETE, path, None)
    }

    /// `PUT` with a JSON body.
    pub fn put(&self, target: Target, path: &str, body: Value) -> Reply {
        self.request(target, Method::PUT, path, Some(body))
    }

    /// Sends one request and reads the whole answer.
    pub fn request(
        &self,
        target: Target,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        runtime
            .block_on(self.send(target, method, path, body))
            .unwrap_or_else(|err| panic!("request {path} to {target:?} failed: {err}"))
    }

    async fn send(
        &self,
        target: Target,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        let addr = match target {
            Target::Api => self.api,
            Target::Proxy => self.proxy,
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("/api2/json/{path}"))
            .header("host", addr.to_string());
        if let Some(cookie) = &self.cookie {
            builder = builder.header("cookie", cookie);
        }
        if let Some(authorization) = &self.authorization {
            builder = builder.header("authorization", authorization);
        }
        if method != Method::GET {
            if let Some(csrf) = &self.csrf {
                builder = builder.header("CSRFPreventionToken", csrf);
            }
        }
        let data = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                body.to_string()
            }
            None => String::new(),
        };
        let request = builder.body(Full::new(Bytes::from(data)))?;
        let response = match target {
            Target::Api => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
            Target::Proxy => {
                let tls = h2client::tls_connect(addr, &self.fingerprint).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            raw: bytes,
        })
    }
}

/// Percent-encodes a UPID (or any path component) for use in a URL.
pub fn encode(component: &str) -> String {
    utf8_percent_encode(component, NON_ALPHANUMERIC).to_string()
}

/// The `proxmox-backup-client` binary of this target directory. It is built once per test
/// process with the running cargo, so that a single test file also runs against a binary
/// matching the sources (under `cargo test --workspace --all-targets` this is a no-op).
pub fn client_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(build_client_binary).clone()
}

fn build_client_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("profile directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "-p", "proxmox-backup-client", "--bin"])
        .arg("proxmox-backup-client")
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name() == Some(std::ffi::OsStr::new("release")) {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building proxmox-backup-client failed");
    profile_dir.join("proxmox-backup-client")
}

/// Creates datastore `name` at `path` through the API and waits for the creation task.
pub fn create_datastore(root: &Client, name: &str, path: &Path) {
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            serde_json::json!({"name": name, "path": path}),
        )
        .data();
    let upid = upid.as_str().expect("datastore creation UPID");
    let status = wait_task(root, upid);
    assert_eq!(status["exitstatus"], "OK", "datastore creation: {status}");
}

/// Creates user `userid` (with `password`, if any) through the API.
pub fn create_user(root: &Client, userid: &str, password: Option<&str>) {
    let mut body = serde_json::json!({ "userid": userid });
    if let Some(password) = password {
        body["password"] = password.into();
    }
    let reply = root.post(Target::Proxy, "access/users", body);
    assert_eq!(reply.status, 200, "create {userid}: {}", reply.body);
}

/// Grants `role` on ACL `path` to `auth_id`.
pub fn grant(root: &Client, path: &str, role: &str, auth_id: &str) {
    let reply = root.put(
        Target::Proxy,
        "access/acl",
        serde_json::json!({"path": path, "role": role, "auth-id": auth_id}),
    );
    assert_eq!(reply.status, 200, "grant {role} on {path}: {}", reply.body);
}

/// A private home (HOME and the XDG directories) for runs of the client binary, so that
/// ticket, fingerprint and key caches stay out of the real user's files.
pub struct ClientHome {
    dir: tempfile::TempDir,
}

impl ClientHome {
    /// A new empty home in a temporary directory.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("client home directory"),
        }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Points HOME and the XDG directories of `command` into this home.
    pub fn confine<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        let home = self.dir.path();
        command
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
    }

    /// A client command in this home that logs in with `password` and trusts `server`'s
    /// certificate by its fingerprint.
    pub fn command(&self, server: &TestServer, password: &str) -> Command {
        let mut command = Command::new(client_binary());
        self.confine(&mut command)
            .env("PBS_PASSWORD", password)
            .env("PBS_FINGERPRINT", &server.fingerprint);
        command
    }
}

impl Default for ClientHome {
    fn default() -> Self {
        Self::new()
    }
}
