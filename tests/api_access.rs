//! The `access` API and request authentication end to end: an in-process API server on
//! 127.0.0.1 over a scratch configuration directory (PBS_BASE_DIR is process-wide, so all
//! tests of this file share one directory and run one after another).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use pbs_api_types::Userid;
use pbs_auth::keys::authkey_path;
use pbs_auth::ticket::{Ticket, API_TICKET_PREFIX};
use pbs_auth::PrivateAuthKey;
use pbs_rest_server::{spawn_server, RpcEnvType, ServerConfig, ServerHandle, Transport};
use proxmox_backup::auth::ApiAuthState;

const DIGEST_MISMATCH: &str =
    "detected modified configuration - file changed by other user? Try again.";

struct TestEnv {
    _dir: tempfile::TempDir,
    config_dir: PathBuf,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets up the shared configuration directory once and serializes the tests.
async fn setup() -> (tokio::sync::MutexGuard<'static, ()>, &'static Path) {
    let env = ENV.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::env::set_var(pbs_buildcfg::BASE_DIR_ENV, dir.path());
        let config_dir = pbs_buildcfg::config_dir();
        std::fs::create_dir_all(&config_dir).expect("config dir");
        pbs_auth::keys::ensure_auth_keys().expect("auth keys");
        pbs_auth::csrf::ensure_csrf_key().expect("csrf key");
        TestEnv {
            _dir: dir,
            config_dir,
        }
    });
    let guard = SERIAL.lock().await;
    (guard, &env.config_dir)
}

fn server_config(env_type: RpcEnvType) -> ServerConfig {
    let router = Arc::new(proxmox_backup::api2::router().expect("routes"));
    let auth = ApiAuthState::new(env_type == RpcEnvType::Public).expect("auth state");
    let mut config = ServerConfig::new(env_type, router, auth);
    config.auth_failure_delay = Duration::from_millis(20);
    config.permission_failure_delay = Duration::from_millis(5);
    config
}

async fn start_api_server() -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    spawn_server(
        listener,
        Transport::Plain,
        server_config(RpcEnvType::Privileged),
    )
    .expect("server")
}

struct Reply {
    status: StatusCode,
    body: String,
}

impl Reply {
    fn data(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let value: Value = serde_json::from_str(&self.body).expect("json body");
        value["data"].clone()
    }

    fn json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        serde_json::from_str(&self.body).expect("json body")
    }

    fn error(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }
}

/// Credentials a client sends.
#[derive(Clone, Default)]
struct Client {
    addr: Option<SocketAddr>,
    ticket: Option<String>,
    csrf: Option<String>,
    authorization: Option<String>,
}

impl Client {
    fn anonymous(addr: SocketAddr) -> Self {
        Self {
            addr: Some(addr),
            ..Default::default()
        }
    }

    fn with_ticket(addr: SocketAddr, ticket: &str, csrf: Option<&str>) -> Self {
        Self {
            addr: Some(addr),
            ticket: Some(ticket.to_string()),
            csrf: csrf.map(str::to_string),
            authorization: None,
        }
    }

    fn with_token(addr: SocketAddr, header: String) -> Self {
        Self {
            addr: Some(addr),
            authorization: Some(header),
            ..Default::default()
        }
    }

    /// root@pam, authenticated with a ticket minted from `authkey.key` (as the local CLIs do).
    fn root(addr: SocketAddr) -> Self {
        let root: Userid = "root@pam".parse().unwrap();
        let (ticket, csrf) = proxmox_backup::auth::create_ticket(&root).expect("root ticket");
        Self::with_ticket(addr, &ticket, Some(&csrf))
    }

    async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let addr = self.addr.expect("server address");
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("/api2/json/{path}"));
        if let Some(ticket) = &self.ticket {
            builder = builder.header("cookie", pbs_auth::credentials::auth_cookie_header(ticket));
        }
        if let Some(csrf) = &self.csrf {
            builder = builder.header("CSRFPreventionToken", csrf);
        }
        if let Some(auth) = &self.authorization {
            builder = builder.header("authorization", auth);
        }
        let body = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                value.to_string()
            }
            None => String::new(),
        };
        let req = builder.body(Full::new(Bytes::from(body))).unwrap();
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("request");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str, body: Value) -> Reply {
        self.request(Method::DELETE, path, Some(body)).await
    }
}

/// Logs in through `access/ticket` and returns a client using the ticket cookie.
async fn login(addr: SocketAddr, username: &str, password: &str) -> Client {
    let reply = Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": username, "password": password}),
        )
        .await;
    let data = reply.data();
    assert_eq!(data["username"], username);
    let ticket = data["ticket"].as_str().expect("ticket");
    assert!(ticket.starts_with(&format!("PBS:{username}:")), "{ticket}");
    let csrf = data["CSRFPreventionToken"].as_str().expect("csrf token");
    Client::with_ticket(addr, ticket, Some(csrf))
}

async fn create_user(root: &Client, userid: &str, password: Option<&str>) {
    let mut params = json!({ "userid": userid });
    if let Some(password) = password {
        params["password"] = json!(password);
    }
    root.post("access/users", params).await.data();
}

async fn grant(root: &Client, path: &str, auth_id: &str, role: &str) {
    root.put(
        "access/acl",
        json!({"path": path, "auth-id": auth_id, "role": role}),
    )
    .await
    .data();
}

#[tokio::test]
async fn ticket_login_cookie_and_csrf() {
    let (_serial, _dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "alice@pbs", Some("alice-secret-1")).await;

    let alice = login(addr, "alice@pbs", "alice-secret-1").await;

    // a wrong password, an unknown user and an unknown realm all fail the same way
    for (user, password) in [
        ("alice@pbs", "wrong-password"),
        ("nobody@pbs", "alice-secret-1"),
        ("alice@nosuchrealm", "alice-secret-1"),
    ] {
        let reply = Client::anonymous(addr)
            .post(
                "access/ticket",
                json!({"username": user, "password": password}),
            )
            .await;
        assert_eq!(
            reply.error(StatusCode::UNAUTHORIZED),
            "permission check failed."
        );
    }

    // GET with the cookie needs no CSRF token
    let cookie_only = Client::with_ticket(addr, alice.ticket.as_deref().unwrap(), None);
    let users = cookie_only.get("access/users").await.data();
    assert_eq!(users, json!([{"userid": "alice@pbs"}]));

    // non-GET requests need the CSRF token
    let reply = cookie_only
        .put(
            "access/password",
            json!({"userid": "alice@pbs", "password": "x", "confirmation-password": "y"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::UNAUTHORIZED),
        "authentication failed - missing CSRF prevention token"
    );
    let mut bad_csrf = alice.clone();
    bad_csrf.csrf = Some("66603A80:AAAA".to_string());
    let reply = bad_csrf
        .put(
            "access/password",
            json!({"userid": "alice@pbs", "password": "x", "confirmation-password": "y"}),
        )
        .await;
    assert!(
        reply
            .error(StatusCode::UNAUTHORIZED)
            .starts_with("authentication failed - invalid csrf token - "),
        "{}",
        reply.body
    );

    // renewal: the current ticket works as password
    let renewed = Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "alice@pbs", "password": alice.ticket.as_deref().unwrap()}),
        )
        .await
        .data();
    assert!(renewed["ticket"]
        .as_str()
        .unwrap()
        .starts_with("PBS:alice@pbs:"));
    // but not for another user
    create_user(&root, "mallory@pbs", Some("mallory-secret")).await;
    let reply = Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "mallory@pbs", "password": alice.ticket.as_deref().unwrap()}),
        )
        .await;
    reply.error(StatusCode::UNAUTHORIZED);

    // no credentials at all, also for unknown paths
    for path in ["access/users", "no/such/path"] {
        let reply = Client::anonymous(addr).get(path).await;
        assert_eq!(
            reply.error(StatusCode::UNAUTHORIZED),
            "authentication failed - no authentication credentials provided."
        );
    }

    // a forged signature
    let ticket = alice.ticket.clone().unwrap();
    let (head, signature) = ticket.split_once("::").unwrap();
    // Change one character in the middle: the last one carries padding bits, and a change
    // there would make the text invalid base64 instead of a wrong signature.
    let forged_sig: String = signature
        .char_indices()
        .map(|(i, c)| match (i == 10, c) {
            (true, 'A') => 'B',
            (true, _) => 'A',
            (false, c) => c,
        })
        .collect();
    let forged = Client::with_ticket(addr, &format!("{head}::{forged_sig}"), None);
    assert_eq!(
        forged
            .get("access/users")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "authentication failed - ticket with invalid signature"
    );
    // a correctly signed ticket claiming another user
    let other = Client::with_ticket(addr, &ticket.replacen("alice@pbs", "root@pam", 1), None);
    other
        .get("access/users")
        .await
        .error(StatusCode::UNAUTHORIZED);

    // an expired ticket (signed with the real key)
    let key = PrivateAuthKey::load(&authkey_path()).unwrap();
    let old = Ticket::with_time(
        API_TICKET_PREFIX,
        "alice@pbs",
        pbs_api_types::time::epoch_now() - 7300,
    )
    .sign(&key, None)
    .unwrap();
    assert_eq!(
        Client::with_ticket(addr, &old, None)
            .get("access/users")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "authentication failed - invalid ticket - expired"
    );

    // a disabled user's ticket stops working
    root.put("access/users/mallory@pbs", json!({"enable": false}))
        .await
        .data();
    let mallory_ticket = proxmox_backup::auth::create_ticket(&"mallory@pbs".parse().unwrap())
        .unwrap()
        .0;
    assert_eq!(
        Client::with_ticket(addr, &mallory_ticket, None)
            .get("access/users")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "authentication failed - user account disabled or expired."
    );
    let reply = Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "mallory@pbs", "password": "mallory-secret"}),
        )
        .await;
    reply.error(StatusCode::UNAUTHORIZED);

    // World routes need no authentication
    let domains = Client::anonymous(addr).get("access/domains").await.json();
    assert_eq!(
        domains["data"],
        json!([
            {"realm":"pam","type":"pam","comment":"Linux PAM standard authentication","default":true},
            {"realm":"pbs","type":"pbs","comment":"Proxmox Backup authentication server"}
        ])
    );
    assert_eq!(domains["digest"], json!(pbs_config::compute_digest(b"")));
    server.shutdown().await;
}

#[tokio::test]
async fn password_change() {
    let (_serial, dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "pwuser@pbs", Some("first-password")).await;
    create_user(&root, "pwother@pbs", Some("other-password")).await;
    let user = login(addr, "pwuser@pbs", "first-password").await;

    // without / with a wrong confirmation
    let reply = user
        .put(
            "access/password",
            json!({"userid": "pwuser@pbs", "password": "second"}),
        )
        .await;
    assert_eq!(reply.error(StatusCode::UNAUTHORIZED), "missing password");
    let reply = user
        .put(
            "access/password",
            json!({"userid": "pwuser@pbs", "password": "second", "confirmation-password": "nope"}),
        )
        .await;
    assert_eq!(reply.error(StatusCode::UNAUTHORIZED), "invalid credentials");
    // someone else's password
    let reply = user
        .put(
            "access/password",
            json!({"userid": "pwother@pbs", "password": "second", "confirmation-password": "first-password"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::UNAUTHORIZED),
        "you are not authorized to change the password."
    );
    let reply = user
        .put(
            "access/password",
            json!({"userid": "ghost@pbs", "password": "second", "confirmation-password": "first-password"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::UNAUTHORIZED),
        "user 'ghost@pbs' does not exists."
    );

    // the generic schema allows short passwords here
    user.put(
        "access/password",
        json!({"userid": "pwuser@pbs", "password": "2nd", "confirmation-password": "first-password"}),
    )
    .await
    .data();
    login(addr, "pwuser@pbs", "2nd").await;
    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "pwuser@pbs", "password": "first-password"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    let shadow: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("shadow.json")).unwrap()).unwrap();
    assert!(shadow["pwuser"].as_str().unwrap().starts_with("$y$"));

    // root sets any password without confirmation
    root.put(
        "access/password",
        json!({"userid": "pwother@pbs", "password": "set-by-root"}),
    )
    .await
    .data();
    login(addr, "pwother@pbs", "set-by-root").await;
    server.shutdown().await;
}

#[tokio::test]
async fn api_tokens_and_role_boundaries() {
    let (_serial, _dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "auditor@pbs", Some("auditor-pass")).await;
    create_user(&root, "manager@pbs", Some("manager-pass")).await;
    grant(&root, "/access", "auditor@pbs", "Audit").await;
    grant(&root, "/access", "manager@pbs", "Admin").await;
    let auditor = login(addr, "auditor@pbs", "auditor-pass").await;
    let manager = login(addr, "manager@pbs", "manager-pass").await;

    // Audit may list everybody but not create users; Admin may
    let listed = auditor.get("access/users").await.data();
    assert!(listed.as_array().unwrap().len() >= 3, "{listed}");
    let reply = auditor
        .post("access/users", json!({"userid": "new1@pbs"}))
        .await;
    assert_eq!(
        reply.error(StatusCode::FORBIDDEN),
        "permission check failed"
    );
    manager
        .post("access/users", json!({"userid": "new1@pbs"}))
        .await
        .data();
    // reading another user needs Sys.Audit (or being that user)
    create_user(&root, "plain@pbs", Some("plain-pass")).await;
    let plain = login(addr, "plain@pbs", "plain-pass").await;
    plain.get("access/users/plain@pbs").await.data();
    plain
        .get("access/users/auditor@pbs")
        .await
        .error(StatusCode::FORBIDDEN);
    auditor.get("access/users/plain@pbs").await.data();

    // a token of the manager, generated by the manager itself
    let token = manager
        .post(
            "access/users/manager@pbs/token/ro",
            json!({"comment": "read only"}),
        )
        .await
        .data();
    assert_eq!(token["tokenid"], "manager@pbs!ro");
    let secret = token["value"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 36);
    let reply = manager
        .post("access/users/manager@pbs/token/ro", json!({}))
        .await;
    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST),
        "token 'ro' for user 'manager@pbs' already exists."
    );
    // the token only gets what its own ACL entries grant
    let tokenid: pbs_api_types::Authid = "manager@pbs!ro".parse().unwrap();
    let token_client = Client::with_token(
        addr,
        pbs_auth::credentials::api_token_authorization_header(&tokenid, &secret),
    );
    token_client
        .get("access/users")
        .await
        .data()
        .as_array()
        .map(|list| assert_eq!(list.len(), 1))
        .unwrap();
    grant(&root, "/access", "manager@pbs!ro", "Audit").await;
    assert!(
        token_client
            .get("access/users")
            .await
            .data()
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    let reply = token_client
        .post("access/users", json!({"userid": "new2@pbs"}))
        .await;
    assert_eq!(
        reply.error(StatusCode::FORBIDDEN),
        "permission check failed"
    );
    // the `=` separator form works as well, and no CSRF token is needed
    let eq_form = Client::with_token(addr, format!("PBSAPIToken=manager@pbs!ro:{secret}"));
    eq_form.get("access/acl").await.data();

    // a token never exceeds its user: Admin for the token, only Audit for the user
    let big = auditor
        .post("access/users/auditor@pbs/token/big", json!({}))
        .await
        .data();
    grant(&root, "/", "auditor@pbs!big", "Admin").await;
    // an unknown token
    let unknown = Client::with_token(addr, "PBSAPIToken manager@pbs!x:unused".to_string());
    assert_eq!(
        unknown
            .get("access/users")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "authentication failed - user account or token disabled or expired."
    );
    let big_client = Client::with_token(
        addr,
        format!(
            "PBSAPIToken auditor@pbs!big:{}",
            big["value"].as_str().unwrap()
        ),
    );
    big_client.get("access/users").await.data();
    big_client
        .post("access/users", json!({"userid": "new3@pbs"}))
        .await
        .error(StatusCode::FORBIDDEN);
    let perms = big_client
        .get("access/permissions?path=/access")
        .await
        .data();
    assert_eq!(
        perms,
        json!({"/access": {"Datastore.Audit": true, "Sys.Audit": true}})
    );

    // wrong secret, user id instead of token id, missing separator
    for (header, reason) in [
        (
            "PBSAPIToken manager@pbs!ro:wrong".to_string(),
            "invalid credentials",
        ),
        (
            "PBSAPIToken manager@pbs:whatever".to_string(),
            "not an API token ID",
        ),
        (
            "PBSAPIToken manager@pbs!ro".to_string(),
            "failed to split API token header",
        ),
    ] {
        let reply = Client::with_token(addr, header).get("access/users").await;
        assert_eq!(
            reply.error(StatusCode::UNAUTHORIZED),
            format!("authentication failed - {reason}")
        );
    }

    // token metadata: list, update, disable
    let tokens = manager.get("access/users/manager@pbs/token").await.json();
    assert_eq!(
        tokens["data"],
        json!([{"token-name":"ro","tokenid":"manager@pbs!ro","comment":"read only"}])
    );
    let digest = tokens["digest"].as_str().unwrap().to_string();
    manager
        .put(
            "access/users/manager@pbs/token/ro",
            json!({"enable": false, "digest": digest}),
        )
        .await
        .data();
    assert_eq!(
        token_client
            .get("access/users")
            .await
            .error(StatusCode::UNAUTHORIZED),
        "authentication failed - user account or token disabled or expired."
    );
    let one = manager
        .get("access/users/manager@pbs/token/ro")
        .await
        .data();
    assert_eq!(
        one,
        json!({"tokenid":"manager@pbs!ro","comment":"read only","enable":false})
    );
    // a token cannot manage tokens (UserParam never matches a token)
    big_client
        .delete("access/users/auditor@pbs/token/big", json!({}))
        .await
        .error(StatusCode::FORBIDDEN);
    manager
        .delete("access/users/manager@pbs/token/ro", json!({}))
        .await
        .data();
    manager
        .get("access/users/manager@pbs/token/ro")
        .await
        .error(StatusCode::NOT_FOUND);
    let shadow = pbs_config::token_shadow::read_in(&pbs_buildcfg::config_dir()).unwrap();
    assert!(!shadow.contains_key(&tokenid));
    assert!(shadow.contains_key(&"auditor@pbs!big".parse().unwrap()));

    // the roles list is there for everybody
    let roles = plain.get("access/roles").await.data();
    assert_eq!(roles.as_array().unwrap().len(), 15);
    server.shutdown().await;
}

#[tokio::test]
async fn acl_update_and_list() {
    let (_serial, dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "acluser@pbs", None).await;
    root.post("access/users/acluser@pbs/token/t1", json!({}))
        .await
        .data();

    let before = root.get("access/acl?path=/datastore/aclstore").await.json();
    assert_eq!(before["data"], json!([]));
    let digest = before["digest"].as_str().unwrap().to_string();
    root.put(
        "access/acl",
        json!({"path": "/datastore/aclstore", "auth-id": "acluser@pbs", "role": "DatastoreBackup", "digest": digest}),
    )
    .await
    .data();
    // the old digest is stale now
    let reply = root
        .put(
            "access/acl",
            json!({"path": "/datastore/aclstore", "auth-id": "acluser@pbs", "role": "DatastoreReader", "digest": digest}),
        )
        .await;
    assert_eq!(reply.error(StatusCode::BAD_REQUEST), DIGEST_MISMATCH);
    root.put(
        "access/acl",
        json!({"path": "/datastore/aclstore/ns1", "auth-id": "acluser@pbs!t1", "role": "DatastoreReader", "propagate": false}),
    )
    .await
    .data();

    let listed = root.get("access/acl?path=/datastore/aclstore").await.json();
    assert_eq!(
        listed["data"],
        json!([
            {"path":"/datastore/aclstore","ugid":"acluser@pbs","ugid_type":"user","propagate":true,"roleid":"DatastoreBackup"},
            {"path":"/datastore/aclstore/ns1","ugid":"acluser@pbs!t1","ugid_type":"user","propagate":false,"roleid":"DatastoreReader"},
        ])
    );
    let exact = root
        .get("access/acl?path=/datastore/aclstore&exact=1")
        .await
        .data();
    assert_eq!(exact.as_array().unwrap().len(), 1);
    let file = std::fs::read_to_string(dir.join("acl.cfg")).unwrap();
    assert!(file.contains("acl:1:/datastore/aclstore:acluser@pbs:DatastoreBackup\n"));
    assert!(file.contains("acl:0:/datastore/aclstore/ns1:acluser@pbs!t1:DatastoreReader\n"));
    assert_eq!(
        listed["digest"],
        json!(pbs_config::compute_digest(file.as_bytes()))
    );

    // errors: unknown ids, invalid paths, groups, missing target
    for (params, message) in [
        (
            json!({"path": "/datastore/aclstore", "auth-id": "ghost@pbs", "role": "Audit"}),
            "no such user.",
        ),
        (
            json!({"path": "/datastore/aclstore", "auth-id": "acluser@pbs!nope", "role": "Audit"}),
            "no such API token.",
        ),
        (
            json!({"path": "/nonsense", "auth-id": "acluser@pbs", "role": "Audit"}),
            "invalid acl path '/nonsense'.",
        ),
        (
            json!({"path": "/", "group": "admins", "role": "Audit"}),
            "parameter 'group' - groups are currently not supported.",
        ),
        (
            json!({"path": "/", "role": "Audit"}),
            "missing 'userid' or 'group' parameter.",
        ),
    ] {
        let reply = root.put("access/acl", params).await;
        assert_eq!(reply.error(StatusCode::BAD_REQUEST), message);
    }
    let reply = root
        .put(
            "access/acl",
            json!({"path": "/", "auth-id": "acluser@pbs", "role": "Superhero"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST),
        "parameter verification failed - 'role': value 'Superhero' is not defined in the enumeration."
    );

    // a user without Permissions.Modify may edit only its own tokens' entries and sees only those
    create_user(&root, "aclself@pbs", Some("aclself-pass")).await;
    root.post("access/users/aclself@pbs/token/mine", json!({}))
        .await
        .data();
    let user = login(addr, "aclself@pbs", "aclself-pass").await;
    user.put(
        "access/acl",
        json!({"path": "/datastore/aclstore", "auth-id": "aclself@pbs!mine", "role": "DatastoreAudit"}),
    )
    .await
    .data();
    user.put(
        "access/acl",
        json!({"path": "/datastore/aclstore", "auth-id": "aclself@pbs", "role": "Admin"}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    let visible = user.get("access/acl").await.data();
    assert_eq!(
        visible,
        json!([{"path":"/datastore/aclstore","ugid":"aclself@pbs!mine","ugid_type":"user","propagate":true,"roleid":"DatastoreAudit"}])
    );

    // deleting works also for vanished ids
    root.put(
        "access/acl",
        json!({"path": "/datastore/aclstore/ns1", "auth-id": "acluser@pbs!t1", "role": "DatastoreReader", "delete": true}),
    )
    .await
    .data();
    root.put(
        "access/acl",
        json!({"path": "/datastore/aclstore/ns1", "auth-id": "ghost@pbs", "role": "DatastoreReader", "delete": true}),
    )
    .await
    .data();
    let after = root
        .get("access/acl?path=/datastore/aclstore/ns1")
        .await
        .data();
    assert_eq!(after, json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn user_management_with_digests() {
    let (_serial, dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);

    root.post(
        "access/users",
        json!({"userid": "carol@pbs", "comment": "first", "enable": true, "expire": 0,
               "email": "carol@example.com", "password": "carol-pass"}),
    )
    .await
    .data();
    let reply = root
        .post("access/users", json!({"userid": "carol@pbs"}))
        .await;
    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST),
        "user 'carol@pbs' already exists."
    );
    let reply = root
        .post(
            "access/users",
            json!({"userid": "carol@pbs", "password": "abc"}),
        )
        .await;
    assert!(reply
        .error(StatusCode::BAD_REQUEST)
        .starts_with("parameter verification failed - 'password'"));
    let reply = root
        .post("access/users", json!({"userid": "dave@nosuchrealm"}))
        .await;
    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST),
        "unknown realm \"nosuchrealm\""
    );
    let file = std::fs::read_to_string(dir.join("user.cfg")).unwrap();
    assert!(
        file.contains("user: carol@pbs\n\tcomment first\n\temail carol@example.com\n\tenable true\n\texpire 0\n"),
        "{file}"
    );

    let listed = root.get("access/users").await.json();
    let digest = listed["digest"].as_str().unwrap().to_string();
    assert_eq!(digest, pbs_config::compute_digest(file.as_bytes()));
    let carol = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userid"] == "carol@pbs")
        .cloned()
        .unwrap();
    assert_eq!(
        carol,
        json!({"userid":"carol@pbs","comment":"first","email":"carol@example.com","enable":true,"expire":0})
    );
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["userid"] == "root@pam"));

    // update with the current digest, then the old one is stale
    root.put(
        "access/users/carol@pbs",
        json!({"comment": "  second ", "enable": true, "expire": 0, "delete": ["email"],
               "firstname": "Carol", "digest": digest}),
    )
    .await
    .data();
    let reply = root
        .put(
            "access/users/carol@pbs",
            json!({"comment": "third", "digest": digest}),
        )
        .await;
    assert_eq!(reply.error(StatusCode::BAD_REQUEST), DIGEST_MISMATCH);
    let read = root.get("access/users/carol@pbs").await.json();
    assert_eq!(
        read["data"],
        json!({"userid":"carol@pbs","comment":"second","firstname":"Carol"})
    );
    let file = std::fs::read_to_string(dir.join("user.cfg")).unwrap();
    assert!(
        file.contains("user: carol@pbs\n\tcomment second\n\tfirstname Carol\n"),
        "{file}"
    );
    root.get("access/users/nobody@pbs")
        .await
        .error(StatusCode::NOT_FOUND);

    // include_tokens
    root.post(
        "access/users/carol@pbs/token/backup",
        json!({"comment": "job"}),
    )
    .await
    .data();
    let with_tokens = root.get("access/users?include_tokens=1").await.data();
    let carol = with_tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userid"] == "carol@pbs")
        .cloned()
        .unwrap();
    assert_eq!(
        carol["tokens"],
        json!([{"tokenid":"carol@pbs!backup","comment":"job"}])
    );

    // root may set a password through the update call
    root.put(
        "access/users/carol@pbs",
        json!({"password": "carol-new-pass"}),
    )
    .await
    .data();
    let carol_client = login(addr, "carol@pbs", "carol-new-pass").await;
    // carol may update herself, but the password must be her current one
    carol_client
        .put(
            "access/users/carol@pbs",
            json!({"password": "changed-pass"}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    carol_client
        .put("access/users/carol@pbs", json!({"lastname": "Smith"}))
        .await
        .data();

    // delete with a stale digest fails, with the current one works
    let reply = root
        .delete("access/users/carol@pbs", json!({"digest": digest}))
        .await;
    assert_eq!(reply.error(StatusCode::BAD_REQUEST), DIGEST_MISMATCH);
    let current = root.get("access/users/carol@pbs").await.json();
    root.delete(
        "access/users/carol@pbs",
        json!({"digest": current["digest"]}),
    )
    .await
    .data();
    root.get("access/users/carol@pbs")
        .await
        .error(StatusCode::NOT_FOUND);
    root.delete("access/users/carol@pbs", json!({}))
        .await
        .error(StatusCode::NOT_FOUND);
    let shadow = pbs_config::shadow::read_in(dir).unwrap();
    assert!(!shadow.contains_key("carol"));
    // the token section stays behind, but is useless
    let file = std::fs::read_to_string(dir.join("user.cfg")).unwrap();
    assert!(file.contains("token: carol@pbs!backup"));
    assert!(!file.contains("user: carol@pbs"));
    carol_client
        .get("access/users")
        .await
        .error(StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

#[tokio::test]
async fn permissions_output() {
    let (_serial, _dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "permuser@pbs", Some("permuser-pass")).await;
    root.post("access/users/permuser@pbs/token/t", json!({}))
        .await
        .data();
    grant(
        &root,
        "/datastore/permstore",
        "permuser@pbs",
        "DatastoreAdmin",
    )
    .await;
    grant(
        &root,
        "/datastore/permstore/sub",
        "permuser@pbs!t",
        "DatastoreAdmin",
    )
    .await;
    grant(
        &root,
        "/datastore/permstore/sub",
        "permuser@pbs!t",
        "RemoteAdmin",
    )
    .await;

    let all = root.get("access/permissions?path=/").await.data();
    let names: Vec<&String> = all["/"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 20);
    assert_eq!(names[0], "Datastore.Allocate");
    assert!(all["/"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| *v == json!(true)));

    let user = login(addr, "permuser@pbs", "permuser-pass").await;
    let reply = user.get("access/permissions").await;
    let mine = reply.json();
    assert_eq!(
        mine,
        json!({"data": {
            "/datastore/permstore": {
                "Datastore.Audit": true, "Datastore.Backup": true, "Datastore.Modify": true,
                "Datastore.Prune": true, "Datastore.Read": true, "Datastore.Verify": true},
            "/datastore/permstore/sub": {
                "Datastore.Audit": true, "Datastore.Backup": true, "Datastore.Modify": true,
                "Datastore.Prune": true, "Datastore.Read": true, "Datastore.Verify": true}
        }})
    );
    // keys are sorted on the wire
    assert!(
        reply.body.starts_with(
            "{\"data\":{\"/datastore/permstore\":{\"Datastore.Audit\":true,\"Datastore.Backup\""
        ),
        "{}",
        reply.body
    );
    // the token's view is limited by the user (no Remote.* although its ACL grants them)
    let token = user
        .get("access/permissions?auth-id=permuser@pbs!t&path=/datastore/permstore/sub")
        .await
        .data();
    assert_eq!(
        token["/datastore/permstore/sub"].as_object().unwrap().len(),
        6
    );
    assert!(token.to_string().contains("Datastore.Prune"));
    // other users' permissions are off limits
    let reply = user.get("access/permissions?auth-id=root@pam").await;
    assert_eq!(
        reply.error(StatusCode::BAD_REQUEST),
        "not allowed to list permissions of root@pam"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn proxy_verifies_with_public_key_and_forwards_login() {
    let (_serial, _dir) = setup().await;
    let api = start_api_server().await;
    let mut proxy_config = server_config(RpcEnvType::Public);
    proxy_config.forward_to = Some(api.local_addr());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = spawn_server(listener, Transport::Plain, proxy_config).unwrap();
    let root = Client::root(api.local_addr());
    create_user(&root, "viaproxy@pbs", Some("viaproxy-pass")).await;

    let user = login(proxy.local_addr(), "viaproxy@pbs", "viaproxy-pass").await;
    let perms = user.get("access/permissions").await.data();
    assert_eq!(perms, json!({}));
    let reply = Client::anonymous(proxy.local_addr())
        .post(
            "access/ticket",
            json!({"username": "viaproxy@pbs", "password": "wrong"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::UNAUTHORIZED),
        "permission check failed."
    );
    proxy.shutdown().await;
    api.shutdown().await;
}

/// Runs a system command, reporting whether it succeeded.
fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    child.wait().map(|s| s.success()).unwrap_or(false)
}

/// Removes the temporary system user even when an assertion fails.
struct SystemUser(String);

impl Drop for SystemUser {
    fn drop(&mut self) {
        run("userdel", &[&self.0], None);
    }
}

#[tokio::test]
async fn pam_login_of_a_system_user() {
    let (_serial, _dir) = setup().await;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping PAM test: needs root to create a system user");
        return;
    }
    let service_file = Path::new(pbs_auth::pam::PAM_SERVICE_FILE);
    if !service_file.exists() {
        if !Path::new("/etc/pam.d/common-auth").exists() {
            eprintln!("skipping PAM test: no PAM configuration");
            return;
        }
        pbs_auth::pam::install_pam_service_file(service_file).unwrap();
    }
    let name = format!("pbsaccess{}", std::process::id());
    if !run("useradd", &["-M", "-s", "/usr/sbin/nologin", &name], None) {
        eprintln!("skipping PAM test: useradd failed");
        return;
    }
    let _user = SystemUser(name.clone());
    assert!(run(
        "chpasswd",
        &[],
        Some(&format!("{name}:pam-first-pass\n"))
    ));

    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    let userid = format!("{name}@pam");

    // a system user unknown to user.cfg cannot log in
    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": userid, "password": "pam-first-pass"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    create_user(&root, &userid, None).await;
    let user = login(addr, &userid, "pam-first-pass").await;
    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": userid, "password": "wrong-pass"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);

    // the user changes its own password through PAM
    user.put(
        "access/password",
        json!({"userid": userid, "password": "pam-second-pass", "confirmation-password": "pam-first-pass"}),
    )
    .await
    .data();
    login(addr, &userid, "pam-second-pass").await;
    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": userid, "password": "pam-first-pass"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

#[tokio::test]
async fn users_with_second_factors_get_no_password_ticket() {
    let (_serial, dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    create_user(&root, "tfauser@pbs", Some("tfauser-pass")).await;
    create_user(&root, "notfa@pbs", Some("notfa-pass")).await;
    std::fs::write(
        dir.join("tfa.json"),
        r#"{"users":{"tfauser@pbs":{"totp":[{"info":{"id":"t1","description":"phone","created":0,"enable":true},"entry":"otpauth://totp/x"}]},"notfa@pbs":{"totp":[]}}}"#,
    )
    .unwrap();

    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "tfauser@pbs", "password": "tfauser-pass"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    login(addr, "notfa@pbs", "notfa-pass").await;

    root.delete("access/users/tfauser@pbs", json!({}))
        .await
        .data();
    let tfa: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tfa.json")).unwrap()).unwrap();
    assert_eq!(tfa, json!({"users":{"notfa@pbs":{"totp":[]}}}));
    std::fs::remove_file(dir.join("tfa.json")).unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn configured_realms() {
    let (_serial, dir) = setup().await;
    let server = start_api_server().await;
    let addr = server.local_addr();
    let root = Client::root(addr);
    let domains = "openid: corp\n\tclient-id pbs\n\tcomment Company login\n\tissuer-url https://id.example.com\n";
    std::fs::write(dir.join("domains.cfg"), domains).unwrap();

    let listed = Client::anonymous(addr).get("access/domains").await.json();
    assert_eq!(
        listed["data"][2],
        json!({"realm": "corp", "type": "openid", "comment": "Company login"})
    );
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        listed["digest"],
        json!(pbs_config::compute_digest(domains.as_bytes()))
    );

    create_user(&root, "erin@corp", None).await;
    let reply = root
        .put(
            "access/password",
            json!({"userid": "erin@corp", "password": "whatever"}),
        )
        .await;
    assert_eq!(
        reply.error(StatusCode::NOT_IMPLEMENTED),
        "storing passwords is not implemented for 'openid' realms"
    );
    Client::anonymous(addr)
        .post(
            "access/ticket",
            json!({"username": "erin@corp", "password": "whatever"}),
        )
        .await
        .error(StatusCode::UNAUTHORIZED);
    root.delete("access/users/erin@corp", json!({}))
        .await
        .data();
    std::fs::remove_file(dir.join("domains.cfg")).unwrap();
    server.shutdown().await;
}
