//! End-to-end tests of the client transport against the real daemons: the
//! `proxmox-backup-client` binary's `login`/`logout`/`version` (ticket and fingerprint caches,
//! `PBS_FINGERPRINT`, API tokens) and an HTTP/2 backup session opened by the library.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use common::{encode, wait_until, Target, TestServer};
use pbs_api_types::Authid;
use pbs_api_types::CryptMode;
use pbs_client::proxy::ProxyConfig;
use pbs_client::{HttpClient, HttpClientOptions, HttpError};
use pbs_datastore::{BackupManifest, DataBlob};

const PASSWORD: &str = "client-secret-1";

/// The client binary, built next to this test's directory (`make test` builds all binaries).
fn client_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("proxmox-backup-client");
    assert!(
        bin.exists(),
        "{bin:?} missing: build it with `cargo build -p proxmox-backup-client`"
    );
    bin
}

fn create_user(server: &TestServer, userid: &str) {
    let reply = server.client("root@pam").post(
        Target::Proxy,
        "access/users",
        json!({"userid": userid, "password": PASSWORD}),
    );
    assert_eq!(reply.status, 200, "create {userid}: {}", reply.body);
}

fn grant(server: &TestServer, path: &str, role: &str, auth_id: &str) {
    let reply = server.client("root@pam").put(
        Target::Proxy,
        "access/acl",
        json!({"path": path, "role": role, "auth-id": auth_id}),
    );
    assert_eq!(reply.status, 200, "grant {role}: {}", reply.body);
}

/// A scratch home with the XDG directories of one client user.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("home directory"),
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn tickets(&self) -> Value {
        let text = std::fs::read_to_string(self.path("run/proxmox-backup/tickets"))
            .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).expect("ticket cache JSON")
    }

    /// Runs the client with `args` and `env`, stdin not a terminal.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(client_binary());
        command
            .args(args)
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .stdin(Stdio::null());
        for var in [
            "PBS_PASSWORD",
            "PBS_PASSWORD_FD",
            "PBS_PASSWORD_FILE",
            "PBS_PASSWORD_CMD",
            "PBS_FINGERPRINT",
            "PBS_REPOSITORY",
            "PROXMOX_OUTPUT_FORMAT",
        ] {
            command.env_remove(var);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run proxmox-backup-client")
    }
}

impl Home {
    /// Runs the client on a pseudo terminal (`script`), feeding `input` as typed text.
    fn run_tty(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        use std::io::Write;
        let command_line = std::iter::once(client_binary().display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("script");
        command
            .args(["-qec", &command_line, "/dev/null"])
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env_remove("PBS_PASSWORD")
            .env_remove("PBS_FINGERPRINT")
            .env_remove("PBS_REPOSITORY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("run script");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("terminal input");
        // Keep the input open until the client is done: EOF would end the session early.
        let output = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| child.wait_with_output());
            let output = waiter.join().expect("wait");
            drop(stdin);
            output
        });
        output.expect("script output")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn assert_fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(255),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stderr(out)
}

#[test]
fn client_commands_login_logout_version() {
    let server = TestServer::start();
    create_user(&server, "alice@pbs");
    let port = server.proxy_addr.port();
    let repo = format!("alice@pbs@127.0.0.1:{port}:store1");
    let fp = server.fingerprint.as_str();
    let home = Home::new();

    // Login with a password stores the ticket (0600) and counts the repository.
    let out = home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD), ("PBS_FINGERPRINT", fp)],
    );
    assert_ok(&out);
    let tickets = home.tickets();
    let entry = &tickets["127.0.0.1"]["alice@pbs"];
    assert!(entry["ticket"]
        .as_str()
        .unwrap()
        .starts_with("PBS:alice@pbs:"));
    assert!(entry["token"].as_str().is_some());
    let now = pbs_api_types::time::epoch_now();
    assert!((now - entry["timestamp"].as_i64().unwrap()).abs() < 60);
    let mode = std::fs::metadata(home.path("run/proxmox-backup/tickets"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let repo_list: Value = serde_json::from_str(
        &std::fs::read_to_string(home.path("cache/proxmox-backup/repo-list")).unwrap(),
    )
    .unwrap();
    assert_eq!(repo_list[format!("alice@pbs@127.0.0.1:{port}:store1")], 1);

    // Later commands use the cached ticket without a password.
    let out = home.run(
        &["version", "--repository", &repo, "--output-format", "json"],
        &[("PBS_FINGERPRINT", fp)],
    );
    let version: Value = serde_json::from_str(&assert_ok(&out)).expect("version JSON");
    let client_version = format!(
        "{}.{}",
        version["client"]["version"].as_str().unwrap(),
        version["client"]["release"].as_str().unwrap()
    );
    assert_eq!(client_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version["server"]["version"], version["client"]["version"]);
    assert!(version["server"]["repoid"].is_string());
    let out = home.run(
        &["version", "--repository", &repo],
        &[("PBS_FINGERPRINT", fp)],
    );
    assert_eq!(
        assert_ok(&out),
        format!(
            "client version: {v}\nserver version: {v}\n",
            v = env!("CARGO_PKG_VERSION")
        )
    );
    // Without a repository only the client version is shown.
    let out = home.run(&["version"], &[]);
    assert_eq!(
        assert_ok(&out),
        format!("client version: {}\n", env!("CARGO_PKG_VERSION"))
    );

    // Logout removes the ticket; then there is no way to get a password.
    assert_ok(&home.run(&["logout", "--repository", &repo], &[]));
    assert!(home.tickets()["127.0.0.1"].get("alice@pbs").is_none());
    let err = assert_fails(&home.run(
        &["version", "--repository", &repo],
        &[("PBS_FINGERPRINT", fp)],
    ));
    assert!(
        err.contains("Error: no password input mechanism available"),
        "{err}"
    );

    // A wrong password fails with the server's message.
    let err = assert_fails(&home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", "wrong"), ("PBS_FINGERPRINT", fp)],
    ));
    assert_eq!(err, "Error: permission check failed.\n");

    // A wrong PBS_FINGERPRINT: warning and refusal, no prompt without a terminal.
    let wrong_fp = "00:".repeat(31) + "00";
    let err = assert_fails(&home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD), ("PBS_FINGERPRINT", &wrong_fp)],
    ));
    assert_eq!(
        err,
        format!(
            "WARNING: certificate fingerprint does not match expected fingerprint!\n\
             expected:    {wrong_fp}\nError: Certificate fingerprint was not confirmed.\n"
        )
    );
    // PBS_FINGERPRINT is compared lower-cased.
    assert_ok(&home.run(
        &["login", "--repository", &repo],
        &[
            ("PBS_PASSWORD", PASSWORD),
            ("PBS_FINGERPRINT", &fp.to_uppercase()),
        ],
    ));

    // Without PBS_FINGERPRINT the fingerprint cache decides.
    let err = assert_fails(&home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD)],
    ));
    assert_eq!(err, "Error: Certificate fingerprint was not confirmed.\n");
    std::fs::create_dir_all(home.path("config/proxmox-backup")).unwrap();
    std::fs::write(
        home.path("config/proxmox-backup/fingerprints"),
        format!("other {wrong_fp}\n127.0.0.1 {fp}\n"),
    )
    .unwrap();
    assert_ok(&home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD)],
    ));
    std::fs::write(
        home.path("config/proxmox-backup/fingerprints"),
        format!("127.0.0.1 {wrong_fp}\n"),
    )
    .unwrap();
    let err = assert_fails(&home.run(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD)],
    ));
    assert!(
        err.starts_with("WARNING: certificate fingerprint does not match expected fingerprint!\n"),
        "{err}"
    );
    assert!(err.ends_with("Error: Certificate fingerprint was not confirmed.\n"));

    // On a terminal: trust on first use, then the password prompt.
    let tty_home = Home::new();
    let out = tty_home.run_tty(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD)],
        "n\n",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains(&format!("fingerprint: {fp}")), "{text}");
    assert!(
        text.contains("Are you sure you want to continue connecting? (y/n): "),
        "{text}"
    );
    assert!(
        text.contains("Certificate fingerprint was not confirmed."),
        "{text}"
    );
    assert!(!tty_home.path("config/proxmox-backup/fingerprints").exists());
    let out = tty_home.run_tty(
        &["login", "--repository", &repo],
        &[("PBS_PASSWORD", PASSWORD)],
        "maybe\ny\n",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        text.matches("Are you sure you want to continue connecting? (y/n): ")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(tty_home.path("config/proxmox-backup/fingerprints")).unwrap(),
        format!("127.0.0.1 {fp}\n")
    );
    assert_ok(&tty_home.run(&["logout", "--repository", &repo], &[]));
    let out = tty_home.run_tty(
        &["login", "--repository", &repo],
        &[],
        &format!("{PASSWORD}\n"),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Password for \"alice@pbs\": "), "{text}");
    assert!(!text.contains("Are you sure"), "{text}");
    assert!(tty_home.tickets()["127.0.0.1"]["alice@pbs"]["ticket"].is_string());

    // API tokens: the secret comes from PBS_PASSWORD; no ticket is involved.
    let token = server
        .client("root@pam")
        .post(
            Target::Proxy,
            &format!("access/users/{}/token/cli", encode("alice@pbs")),
            json!({}),
        )
        .data();
    let secret = token["value"].as_str().expect("token secret").to_string();
    let token_repo = format!("alice@pbs!cli@127.0.0.1:{port}:store1");
    let token_home = Home::new();
    let out = token_home.run(
        &[
            "version",
            "--repository",
            &token_repo,
            "--output-format",
            "json",
        ],
        &[("PBS_PASSWORD", &secret), ("PBS_FINGERPRINT", fp)],
    );
    let version: Value = serde_json::from_str(&assert_ok(&out)).expect("version JSON");
    assert!(version["server"]["version"].is_string(), "{version}");
    assert_ok(&token_home.run(
        &["login", "--repository", &token_repo],
        &[("PBS_PASSWORD", &secret), ("PBS_FINGERPRINT", fp)],
    ));
    assert_eq!(token_home.tickets(), json!({}));
    let err = assert_fails(&token_home.run(
        &["login", "--repository", &token_repo],
        &[("PBS_FINGERPRINT", fp)],
    ));
    assert_eq!(err, "Error: API token secret must be provided!\n");
    // `version` reports an unreachable server but still shows the client version.
    let out = token_home.run(
        &["version", "--repository", &token_repo],
        &[("PBS_PASSWORD", "bad-secret"), ("PBS_FINGERPRINT", fp)],
    );
    assert_eq!(
        assert_ok(&out),
        format!("client version: {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        stderr(&out).starts_with("could not connect to server - authentication failed"),
        "{}",
        stderr(&out)
    );
}

fn create_datastore(server: &TestServer, name: &str, path: &Path) {
    let root = server.client("root@pam");
    let reply = root.post(
        Target::Proxy,
        "config/datastore",
        json!({"name": name, "path": path}),
    );
    let upid = reply.data().as_str().expect("UPID").to_string();
    wait_until(Duration::from_secs(60), "datastore creation", || {
        let status = root
            .get(
                Target::Proxy,
                &format!("nodes/localhost/tasks/{}/status", encode(&upid)),
            )
            .data();
        status["status"] == "stopped"
    });
}

/// A minimal HTTP CONNECT proxy on 127.0.0.1 that only tunnels to loopback addresses;
/// returns its port and the list of requested authorities.
async fn start_connect_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read_u8().await {
                        Ok(byte) => head.push(byte),
                        Err(_) => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let authority = head.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(authority.clone());
                if !authority.starts_with("127.0.0.1:") {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&authority).await else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, tunnels)
}

#[test]
fn library_rest_and_backup_session() {
    let server = TestServer::start();
    create_user(&server, "bob@pbs");
    let shm = tempfile::tempdir_in("/dev/shm").expect("datastore directory");
    let store_path = shm.path().join("store1");
    create_datastore(&server, "store1", &store_path);
    common::chown_to_backup(shm.path());
    grant(&server, "/datastore/store1", "DatastoreBackup", "bob@pbs");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let bob: Authid = "bob@pbs".parse().unwrap();
        let options = HttpClientOptions::new_non_interactive(
            PASSWORD.into(),
            Some(server.fingerprint.clone()),
        );
        let client =
            HttpClient::new("127.0.0.1", server.proxy_addr.port(), &bob, options).expect("client");
        client.login().await.expect("login");
        assert_eq!(
            client.fingerprint().as_deref(),
            Some(server.fingerprint.as_str())
        );

        // REST calls, several at once on kept-alive connections.
        let calls = (0..8).map(|_| client.get("api2/json/version", None));
        for result in futures::future::join_all(calls).await {
            let version = result.expect("version");
            assert_eq!(version["data"]["release"], env!("CARGO_PKG_VERSION_PATCH"));
        }
        let err = client
            .post(
                "api2/json/config/datastore",
                Some(json!({"name": "other", "path": "/dev/shm/none"})),
            )
            .await
            .expect_err("no permission");
        assert_eq!(
            err.downcast_ref::<HttpError>().map(|e| e.code.as_u16()),
            Some(403)
        );
        let err = client
            .get("api2/json/nonexistent/path", None)
            .await
            .expect_err("unknown path");
        assert_eq!(
            err.to_string(),
            "Path '/api2/json/nonexistent/path' not found."
        );

        // The same through an HTTP CONNECT proxy.
        let (proxy_port, tunnels) = start_connect_proxy().await;
        let options = HttpClientOptions::new_non_interactive(
            PASSWORD.into(),
            Some(server.fingerprint.clone()),
        )
        .proxy(Some(
            ProxyConfig::parse(&format!("http://127.0.0.1:{proxy_port}")).unwrap(),
        ));
        let proxied = HttpClient::new("127.0.0.1", server.proxy_addr.port(), &bob, options)
            .expect("proxied client");
        let version = proxied
            .get("api2/json/version", None)
            .await
            .expect("via proxy");
        assert!(version["data"]["version"].is_string());
        let authority = format!("127.0.0.1:{}", server.proxy_addr.port());
        assert_eq!(tunnels.lock().unwrap().first(), Some(&authority));
        // Sequential requests reuse the kept-alive connection: the proxy sees one tunnel
        // for the login and all of them.
        for _ in 0..3 {
            proxied.get("api2/json/version", None).await.expect("again");
        }
        assert_eq!(tunnels.lock().unwrap().len(), 1);

        // Ticket renewal while the client runs (here every second instead of 15 minutes).
        let options = HttpClientOptions::new_non_interactive(
            PASSWORD.into(),
            Some(server.fingerprint.clone()),
        )
        .ticket_renew_interval(Duration::from_secs(1));
        let renewing = HttpClient::new("127.0.0.1", server.proxy_addr.port(), &bob, options)
            .expect("renewing client");
        renewing.login().await.expect("login");
        let first = renewing.ticket().expect("ticket");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let second = renewing.ticket().expect("ticket");
        assert_ne!(first, second);
        assert!(second.starts_with("PBS:bob@pbs:"));
        renewing
            .get("api2/json/version", None)
            .await
            .expect("renewed ticket works");

        // A backup session.
        let params = json!({
            "store": "store1",
            "backup-type": "host",
            "backup-id": "transport",
            "backup-time": 1_700_000_000,
            "debug": true,
        });
        let session = client
            .start_h2_connection("api2/json/backup", params, "proxmox-backup-protocol-v1")
            .await
            .expect("backup session");
        let previous = session
            .get("previous_backup_time", None)
            .await
            .expect("previous_backup_time");
        assert_eq!(previous, json!({"data": null}));

        // Pipelined blob uploads (the blob CRC is checked by the server).
        let blobs: Vec<(String, Bytes)> = (0..4)
            .map(|i| {
                let data = format!("blob number {i}").repeat(1000);
                let blob = DataBlob::encode(data.as_bytes(), None, true).expect("blob");
                (format!("file{i}.blob"), Bytes::from(blob.into_inner()))
            })
            .collect();
        let uploads = blobs.iter().map(|(name, raw)| {
            let session = session.clone();
            async move {
                session
                    .upload(
                        "POST",
                        "blob",
                        Some(json!({"file-name": name, "encoded-size": raw.len()})),
                        "application/octet-stream",
                        raw.clone(),
                    )
                    .await
            }
        });
        for result in futures::future::join_all(uploads).await {
            assert_eq!(result.expect("blob upload"), json!({"data": null}));
        }
        let snapshot = store_path.join("host/transport/2023-11-14T22:13:20Z");
        for (name, raw) in &blobs {
            assert_eq!(std::fs::read(snapshot.join(name)).unwrap(), raw.as_ref());
        }
        let mut corrupt = blobs[0].1.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let err = session
            .upload(
                "POST",
                "blob",
                Some(json!({"file-name": "bad.blob", "encoded-size": corrupt.len()})),
                "application/octet-stream",
                Bytes::from(corrupt),
            )
            .await
            .expect_err("corrupt blob");
        assert_eq!(err.to_string(), "Data blob has wrong CRC checksum.");

        // Without a manifest the session cannot finish.
        let err = session.post("finish", None).await.expect_err("finish");
        assert!(
            err.to_string()
                .starts_with("unable to update manifest blob"),
            "{err}"
        );
        drop(session);

        // A complete snapshot, then downloads over REST and in a reader session.
        let time = 1_700_000_100;
        let params = json!({
            "store": "store1",
            "backup-type": "host",
            "backup-id": "transport",
            "backup-time": time,
            "debug": true,
        });
        let session = start_backup_session(&client, params).await;
        let (name, raw) = &blobs[0];
        session
            .upload(
                "POST",
                "blob",
                Some(json!({"file-name": name, "encoded-size": raw.len()})),
                "application/octet-stream",
                raw.clone(),
            )
            .await
            .expect("blob upload");
        let mut manifest = BackupManifest::new("host", "transport", time);
        manifest
            .add_file(name, raw.len() as u64, openssl::sha::sha256(raw), CryptMode::None)
            .expect("manifest entry");
        let manifest_json = manifest.to_string(None).expect("manifest JSON");
        let manifest_blob = DataBlob::encode(manifest_json.as_bytes(), None, true)
            .expect("manifest blob")
            .into_inner();
        session
            .upload(
                "POST",
                "blob",
                Some(json!({"file-name": "index.json.blob", "encoded-size": manifest_blob.len()})),
                "application/octet-stream",
                Bytes::from(manifest_blob),
            )
            .await
            .expect("manifest upload");
        assert_eq!(
            session.post("finish", None).await.expect("finish"),
            json!({"data": null})
        );
        drop(session);

        let mut downloaded = Vec::new();
        client
            .download(
                &format!(
                    "api2/json/admin/datastore/store1/download?backup-type=host&backup-id=transport&backup-time={time}&file-name={name}"
                ),
                &mut downloaded,
            )
            .await
            .expect("REST download");
        assert_eq!(downloaded, raw.as_ref());
        let err = client
            .download(
                &format!(
                    "api2/json/admin/datastore/store1/download?backup-type=host&backup-id=transport&backup-time={time}&file-name=missing.blob"
                ),
                &mut Vec::new(),
            )
            .await
            .expect_err("missing file");
        assert_eq!(
            err.downcast_ref::<HttpError>().map(|e| e.code.as_u16()),
            Some(404),
            "{err}"
        );

        let reader = client
            .start_h2_connection(
                "api2/json/reader",
                json!({
                    "store": "store1",
                    "backup-type": "host",
                    "backup-id": "transport",
                    "backup-time": time,
                    "debug": true,
                }),
                "proxmox-backup-reader-protocol-v1",
            )
            .await
            .expect("reader session");
        let data = reader
            .download_to_vec("download", Some(json!({"file-name": name})))
            .await
            .expect("reader download");
        assert_eq!(data, raw.as_ref());
        let speed = reader
            .download_to_vec("speedtest", None)
            .await
            .expect("speedtest");
        assert_eq!(speed.len(), 1024 * 1024);
        assert!(speed.iter().all(|b| *b == b'A'));
        let err = reader
            .download_to_vec("download", Some(json!({"file-name": "x.txt"})))
            .await
            .expect_err("bad archive type");
        assert_eq!(err.to_string(), "unknown archive type: \"x.txt\"");

        // Rate limiting applies to the session's socket too: 1 MiB at 2 MB/s.
        let options = HttpClientOptions::new_non_interactive(
            PASSWORD.into(),
            Some(server.fingerprint.clone()),
        )
        .rate_limit(Some(2_000_000), Some(100_000));
        let limited = HttpClient::new("127.0.0.1", server.proxy_addr.port(), &bob, options)
            .expect("rate-limited client");
        let reader = limited
            .start_h2_connection(
                "api2/json/reader",
                json!({
                    "store": "store1",
                    "backup-type": "host",
                    "backup-id": "transport",
                    "backup-time": time,
                }),
                "proxmox-backup-reader-protocol-v1",
            )
            .await
            .expect("rate-limited reader session");
        let start = std::time::Instant::now();
        let speed = reader
            .download_to_vec("speedtest", None)
            .await
            .expect("speedtest");
        let elapsed = start.elapsed();
        assert_eq!(speed.len(), 1024 * 1024);
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");

        // A refused upgrade carries the server's message.
        let err = client
            .start_h2_connection(
                "api2/json/backup",
                json!({"store": "nostore", "backup-type": "host", "backup-id": "x", "backup-time": 1}),
                "proxmox-backup-protocol-v1",
            )
            .await
            .err()
            .expect("refused upgrade");
        assert!(err.downcast_ref::<HttpError>().is_some(), "{err}");
    });
}

/// Starts a backup session; the previous session of the group may still be ending.
async fn start_backup_session(client: &HttpClient, params: Value) -> pbs_client::H2Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .start_h2_connection(
                "api2/json/backup",
                params.clone(),
                "proxmox-backup-protocol-v1",
            )
            .await
        {
            Ok(session) => return session,
            Err(err)
                if err
                    .to_string()
                    .ends_with("another backup is already running")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("backup session: {err:#}"),
        }
    }
}
