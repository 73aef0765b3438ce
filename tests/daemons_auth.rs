//! Authentication and authorization against the real daemons on 127.0.0.1: logins by ticket,
//! token and PAM, the 401 cases, 403 at role boundaries, and config written by one daemon
//! being seen by the other.

mod common;

use std::time::Duration;

use common::{Target, TestServer};
use http::StatusCode;
use serde_json::{json, Value};

const ALICE_PASSWORD: &str = "alice-secret-1";

/// Creates `userid` with a password through the proxy (forwarded to the API daemon).
fn create_user(server: &TestServer, userid: &str, password: &str) {
    let root = server.client("root@pam");
    let reply = root.post(
        Target::Proxy,
        "access/users",
        json!({"userid": userid, "password": password}),
    );
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "create {userid}: {}",
        reply.body
    );
}

fn grant(server: &TestServer, path: &str, role: &str, auth_id: &str) {
    let root = server.client("root@pam");
    let reply = root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": path, "role": role, "auth-id": auth_id}),
    );
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "grant {role} on {path} to {auth_id}: {}",
        reply.body
    );
}

/// Logs in through the proxy; returns (ticket, CSRF token).
fn login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> Result<(String, String), Box<common::Reply>> {
    let reply = server.anonymous().post(
        Target::Proxy,
        "access/ticket",
        json!({"username": username, "password": password}),
    );
    if reply.status != StatusCode::OK {
        return Err(Box::new(reply));
    }
    let data = reply.data();
    assert_eq!(data["username"], username);
    Ok((
        data["ticket"].as_str().expect("ticket").to_string(),
        data["CSRFPreventionToken"]
            .as_str()
            .expect("csrf token")
            .to_string(),
    ))
}

fn wait_task_ok(server: &TestServer, upid: &str) {
    let root = server.client("root@pam");
    let path = format!("nodes/localhost/tasks/{}/status", common::encode(upid));
    common::wait_until(Duration::from_secs(60), "task to finish", || {
        root.get(Target::Api, &path).data()["status"] == "stopped"
    });
    let status = root.get(Target::Api, &path).data();
    assert_eq!(status["exitstatus"], "OK", "{status}");
}

#[test]
fn ticket_login_and_the_401_cases() {
    let server = TestServer::start();
    create_user(&server, "alice@pbs", ALICE_PASSWORD);
    grant(&server, "/", "Audit", "alice@pbs");

    // The user was written by the API daemon; the proxy authenticates against it.
    let (ticket, csrf) = login(&server, "alice@pbs", ALICE_PASSWORD).expect("login");
    let alice = server.client_with(Some(&ticket), Some(&csrf), None);
    let users = alice.get(Target::Proxy, "access/users").data();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["userid"] == "alice@pbs"),
        "{users}"
    );

    // Ticket renewal: the old ticket works as password.
    let (renewed, _) = login(&server, "alice@pbs", &ticket).expect("renew");
    assert!(renewed.starts_with("PBS:alice@pbs:"));

    let wrong = login(&server, "alice@pbs", "not the password").unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);

    // No credentials.
    assert_eq!(
        server.anonymous().get(Target::Proxy, "access/users").status,
        StatusCode::UNAUTHORIZED
    );

    // A forged ticket: same text, different signature.
    let (head, sig) = ticket.rsplit_once("::").expect("signed ticket");
    let mut forged_sig: Vec<char> = sig.chars().collect();
    forged_sig[3] = if forged_sig[3] == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}::{}", forged_sig.into_iter().collect::<String>());
    let reply = server
        .client_with(Some(&forged), None, None)
        .get(Target::Proxy, "access/users");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Another user's name under alice's signature.
    let swapped = ticket.replacen("alice@pbs", "root@pam", 1);
    let reply = server
        .client_with(Some(&swapped), None, None)
        .get(Target::Proxy, "access/users");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // An expired ticket, properly signed three hours ago.
    let key = pbs_auth::PrivateAuthKey::load(&server.config_dir().join("authkey.key")).unwrap();
    let old = pbs_api_types::time::epoch_now() - 3 * 3600;
    let expired = pbs_auth::ticket::Ticket::with_time("PBS", "alice@pbs", old)
        .sign(&key, None)
        .unwrap();
    let reply = server
        .client_with(Some(&expired), None, None)
        .get(Target::Proxy, "access/users");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A POST with a valid ticket but no CSRF token.
    let reply = server.client_with(Some(&ticket), None, None).post(
        Target::Proxy,
        "access/users",
        json!({"userid": "eve@pbs"}),
    );
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    // The same against the API daemon directly.
    let reply = server.client_with(Some(&ticket), None, None).post(
        Target::Api,
        "access/users",
        json!({"userid": "eve@pbs"}),
    );
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
}

#[test]
fn role_boundaries_and_tokens() {
    let server = TestServer::start();
    create_user(&server, "audit@pbs", "audit-secret-1");
    create_user(&server, "admin@pbs", "admin-secret-1");
    grant(&server, "/", "Audit", "audit@pbs");
    grant(&server, "/", "Admin", "admin@pbs");

    let (t, c) = login(&server, "audit@pbs", "audit-secret-1").unwrap();
    let auditor = server.client_with(Some(&t), Some(&c), None);
    let (t, c) = login(&server, "admin@pbs", "admin-secret-1").unwrap();
    let admin = server.client_with(Some(&t), Some(&c), None);

    // Audit vs Admin on /access: both read, only Admin writes.
    assert_eq!(
        auditor.get(Target::Proxy, "access/users").status,
        StatusCode::OK
    );
    let reply = auditor.post(Target::Proxy, "access/users", json!({"userid": "x1@pbs"}));
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let reply = admin.post(Target::Proxy, "access/users", json!({"userid": "x2@pbs"}));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A datastore ACL does not reach a sibling datastore.
    let shm = tempfile::Builder::new()
        .prefix("pbs-auth-e2e")
        .tempdir_in(scratch_root())
        .unwrap();
    for name in ["store1", "store2"] {
        let path = shm.path().join(name);
        let upid = admin
            .post(
                Target::Proxy,
                "config/datastore",
                json!({"name": name, "path": path}),
            )
            .data();
        wait_task_ok(&server, upid.as_str().expect("upid"));
    }
    create_user(&server, "ds@pbs", "ds-secret-123");
    grant(&server, "/datastore/store1", "DatastoreAudit", "ds@pbs");
    let (t, c) = login(&server, "ds@pbs", "ds-secret-123").unwrap();
    let ds_user = server.client_with(Some(&t), Some(&c), None);
    assert_eq!(
        ds_user.get(Target::Proxy, "config/datastore/store1").status,
        StatusCode::OK
    );
    let reply = ds_user.get(Target::Proxy, "config/datastore/store2");
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let listed: Vec<Value> = ds_user
        .get(Target::Proxy, "config/datastore")
        .data()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        listed.iter().map(|d| d["name"].clone()).collect::<Vec<_>>(),
        vec![json!("store1")]
    );

    // A token of admin@pbs holding only Audit: never above its ACL, even though its user is Admin.
    let token = admin
        .post(
            Target::Proxy,
            "access/users/admin@pbs/token/limited",
            json!({}),
        )
        .data();
    let secret = token["value"].as_str().expect("token secret").to_string();
    assert_eq!(token["tokenid"], "admin@pbs!limited");
    grant(&server, "/", "Audit", "admin@pbs!limited");
    for header in [
        format!("PBSAPIToken=admin@pbs!limited:{secret}"),
        format!("PBSAPIToken admin@pbs!limited:{secret}"),
    ] {
        let client = server.client_with(None, None, Some(&header));
        assert_eq!(
            client.get(Target::Proxy, "access/users").status,
            StatusCode::OK
        );
        let reply = client.post(Target::Proxy, "access/users", json!({"userid": "x3@pbs"}));
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    }
    // And a token is never above its user: auditor's token with Admin ACL stays at Audit.
    let token = auditor.post(Target::Proxy, "access/users/audit@pbs/token/big", json!({}));
    // Auditors may create tokens for themselves.
    let secret = token.data()["value"].as_str().unwrap().to_string();
    grant(&server, "/", "Admin", "audit@pbs!big");
    let client = server.client_with(
        None,
        None,
        Some(&format!("PBSAPIToken=audit@pbs!big:{secret}")),
    );
    let reply = client.post(Target::Proxy, "access/users", json!({"userid": "x4@pbs"}));
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    // A wrong secret is a 401.
    let client = server.client_with(
        None,
        None,
        Some("PBSAPIToken=admin@pbs!limited:00000000-0000-0000-0000-000000000000"),
    );
    assert_eq!(
        client.get(Target::Proxy, "access/users").status,
        StatusCode::UNAUTHORIZED
    );
}

fn scratch_root() -> &'static std::path::Path {
    // Chunk stores have 65536 directories: tmpfs creates them quickly.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::path::Path::new("/tmp")
    }
}

#[test]
fn pam_login_of_a_system_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping PAM login test: creating a system user needs root");
        return;
    }
    let service = std::path::Path::new(pbs_auth::pam::PAM_SERVICE_FILE);
    if let Err(err) = pbs_auth::pam::install_pam_service_file(service) {
        eprintln!("skipping PAM login test: cannot install {service:?}: {err}");
        return;
    }
    let name = format!("pbse2e{}", std::process::id() % 100_000);
    let run = |cmd: &str, args: &[&str], input: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect(cmd);
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait().map(|s| s.success()).unwrap_or(false)
    };
    if !run("useradd", &["-M", "-s", "/usr/sbin/nologin", &name], None) {
        eprintln!("skipping PAM login test: useradd failed");
        return;
    }
    struct RemoveUser(String);
    impl Drop for RemoveUser {
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).status();
        }
    }
    let _cleanup = RemoveUser(name.clone());
    let password = "Pam-login: e2e 42";
    assert!(run("chpasswd", &[], Some(&format!("{name}:{password}\n"))));

    let server = TestServer::start();
    let userid = format!("{name}@pam");
    // PAM users need an entry in user.cfg to log in.
    let root = server.client("root@pam");
    let reply = root.post(Target::Proxy, "access/users", json!({"userid": userid}));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let (ticket, _) = login(&server, &userid, password).expect("PAM login");
    assert!(ticket.starts_with(&format!("PBS:{userid}:")));
    let wrong = login(&server, &userid, "wrong").unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}
