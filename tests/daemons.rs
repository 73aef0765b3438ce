//! End-to-end tests of the two daemons: start-up, forwarding, tasks, reload and restart.

mod common;

use std::time::Duration;

use common::{encode, wait_until, Reply, Target, TestServer, API_BIN};
use http::StatusCode;
use serde_json::{json, Value};

/// Starts a test task through `target` and returns its UPID.
fn start_task(client: &common::Client, target: Target, route: &str, params: Value) -> String {
    let reply = client.post(target, route, params);
    reply
        .data()
        .as_str()
        .unwrap_or_else(|| panic!("no UPID: {}", reply.body))
        .to_string()
}

fn task_status(client: &common::Client, target: Target, upid: &str) -> Value {
    client
        .get(
            target,
            &format!("nodes/localhost/tasks/{}/status", encode(upid)),
        )
        .data()
}

fn wait_task_stopped(client: &common::Client, upid: &str) -> Value {
    let mut status = Value::Null;
    wait_until(Duration::from_secs(30), "task end", || {
        status = task_status(client, Target::Proxy, upid);
        status["status"] == "stopped"
    });
    status
}

fn upid_pid(upid: &str) -> i32 {
    let field = upid.split(':').nth(2).expect("pid field");
    i32::from_str_radix(field, 16).expect("hex pid")
}

#[test]
fn both_daemons_start_and_log_where_they_listen() {
    let server = TestServer::start();
    let api_log = server.daemon_log(Target::Api);
    let proxy_log = server.daemon_log(Target::Proxy);
    assert!(
        api_log.contains(&format!(
            "proxmox-backup-api: listening on {}",
            server.api_addr
        )),
        "{api_log}"
    );
    assert!(
        proxy_log.contains(&format!(
            "proxmox-backup-proxy: listening on {}",
            server.proxy_addr
        )),
        "{proxy_log}"
    );
    assert_eq!(
        server.pid_file_pid(Target::Api),
        Some(server.child_pid(Target::Api))
    );
    assert_eq!(
        server.pid_file_pid(Target::Proxy),
        Some(server.child_pid(Target::Proxy))
    );
    let config = server.config_dir();
    for file in [
        "authkey.key",
        "authkey.pub",
        "csrf.key",
        "proxy.key",
        "proxy.pem",
    ] {
        assert!(config.join(file).is_file(), "{file} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    // Unauthenticated calls are refused, `nodes` answers the superuser on both daemons.
    let anonymous = server.anonymous().get(Target::Proxy, "nodes");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let root = server.client("root@pam");
    for target in [Target::Api, Target::Proxy] {
        let nodes = root.get(target, "nodes").data();
        assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
        assert!(nodes[0]["node"].is_string());
    }
}

#[test]
fn protected_call_on_proxy_runs_in_api_daemon() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let upid = start_task(&root, Target::Proxy, "test/worker", json!({ "lines": 1 }));
    assert_eq!(upid_pid(&upid), server.child_pid(Target::Api));
    // Not protected: runs in the proxy itself.
    let local = start_task(
        &root,
        Target::Proxy,
        "test/local-worker",
        json!({ "lines": 1 }),
    );
    assert_eq!(upid_pid(&local), server.child_pid(Target::Proxy));
    // Forwarded calls are logged by the API daemon only.
    wait_task_stopped(&root, &upid);
    let access = std::fs::read_to_string(
        server
            .base
            .path()
            .join("var/log/proxmox-backup/api/access.log"),
    )
    .unwrap();
    assert_eq!(
        access.matches("\"POST /api2/json/test/worker\"").count(),
        1,
        "{access}"
    );
}

#[test]
fn task_list_status_and_log() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let ok = start_task(&root, Target::Api, "test/worker", json!({ "lines": 3 }));
    let failed = start_task(
        &root,
        Target::Api,
        "test/worker",
        json!({ "lines": 1, "fail": true }),
    );
    let status = wait_task_stopped(&root, &ok);
    assert_eq!(status["exitstatus"], "OK");
    assert_eq!(status["type"], "testworker");
    assert_eq!(status["id"], Value::Null);
    assert_eq!(status["user"], "root@pam");
    assert_eq!(status["upid"], ok.as_str());
    assert_eq!(status["pid"], json!(upid_pid(&ok)));
    let status = wait_task_stopped(&root, &failed);
    assert_eq!(status["exitstatus"], "failed on request");

    // The log: numbered lines, the final status line, `total` and `active`.
    let log = root.get(
        Target::Proxy,
        &format!(
            "nodes/localhost/tasks/{}/log?start=2&limit=10&test-status=1",
            encode(&ok)
        ),
    );
    assert_eq!(log.status, StatusCode::OK);
    assert_eq!(log.content_type.as_deref(), Some("application/json"));
    assert!(
        log.body
            .starts_with("{\"active\":false,\"data\":[{\"n\":2,"),
        "{}",
        log.body
    );
    let body = log.json();
    assert_eq!(body["total"], 4);
    assert_eq!(body["success"], 1);
    let lines = body["data"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["t"].as_str().unwrap().ends_with(": line 2"));
    assert!(lines[2]["t"].as_str().unwrap().ends_with(": TASK OK"));
    let no_status = root.get(
        Target::Proxy,
        &format!("nodes/localhost/tasks/{}/log?limit=1", encode(&ok)),
    );
    assert!(
        no_status.body.starts_with("{\"data\":[{\"n\":1,"),
        "{}",
        no_status.body
    );

    let download = root.get(
        Target::Proxy,
        &format!("nodes/localhost/tasks/{}/log?download=1", encode(&ok)),
    );
    assert_eq!(download.content_type.as_deref(), Some("text/plain"));
    assert_eq!(download.body.lines().count(), 4);
    let disposition = download.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=task-") && disposition.ends_with("Z.log"),
        "{disposition}"
    );

    // The list: newest first, field order, `total`, filters.
    let list: Reply = root.get(Target::Proxy, "nodes/localhost/tasks");
    assert!(
        list.body.starts_with("{\"total\":2,\"data\":[{\"upid\":"),
        "{}",
        list.body
    );
    let items = list.data();
    let upids: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upid"].as_str().unwrap())
        .collect();
    assert_eq!(upids.len(), 2);
    assert!(upids.contains(&ok.as_str()) && upids.contains(&failed.as_str()));
    let errors = root
        .get(Target::Proxy, "nodes/localhost/tasks?errors=1")
        .data();
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["upid"], failed.as_str());
    assert_eq!(errors[0]["status"], "failed on request");
    assert_eq!(errors[0]["node"], "localhost");
    let paged = root.get(Target::Proxy, "nodes/localhost/tasks?limit=1");
    assert_eq!(paged.json()["total"], 2);
    assert_eq!(paged.data().as_array().unwrap().len(), 1);
    let typed = root
        .get(Target::Proxy, "nodes/localhost/tasks?typefilter=nothing")
        .data();
    assert_eq!(typed, json!([]));
    let by_status = root
        .get(
            Target::Proxy,
            "nodes/localhost/tasks?statusfilter=ok&statusfilter=warning",
        )
        .data();
    assert_eq!(by_status.as_array().unwrap().len(), 1);
    assert_eq!(by_status[0]["status"], "OK");

    let now = pbs_api_types::time::epoch_now();
    let future = root
        .get(
            Target::Proxy,
            &format!("nodes/localhost/tasks?since={}", now + 3600),
        )
        .data();
    assert_eq!(future, json!([]));
    let past = root
        .get(Target::Proxy, "nodes/localhost/tasks?until=1000")
        .data();
    assert_eq!(past, json!([]));
    let window = root
        .get(
            Target::Proxy,
            &format!(
                "nodes/localhost/tasks?since={}&until={}",
                now - 3600,
                now + 3600
            ),
        )
        .data();
    assert_eq!(window.as_array().unwrap().len(), 2);

    // Subdirectories of a task.
    let index = root
        .get(
            Target::Proxy,
            &format!("nodes/localhost/tasks/{}", encode(&ok)),
        )
        .data();
    assert_eq!(index, json!([{ "subdir": "log" }, { "subdir": "status" }]));
}

#[test]
fn tasks_of_other_users_are_hidden() {
    let base = tempfile::tempdir().unwrap();
    let config = base.path().join("etc/proxmox-backup");
    std::fs::create_dir_all(&config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o700)).unwrap();
    // As root the daemons expect the directory to belong to `backup`.
    if let Some(ids) = proxmox_backup::server::layout::service_owner().unwrap() {
        std::os::unix::fs::chown(&config, Some(ids.uid), Some(ids.gid)).unwrap();
    }
    std::fs::write(
        config.join("user.cfg"),
        "user: user1@pbs\n\nuser: auditor@pbs\n\n",
    )
    .unwrap();
    std::fs::write(
        config.join("acl.cfg"),
        "acl:1:/system/tasks:auditor@pbs:Audit\n",
    )
    .unwrap();
    let server = TestServer::start_in(base);
    let root = server.client("root@pam");
    let user = server.client("user1@pbs");
    let auditor = server.client("auditor@pbs");
    let roots = start_task(
        &root,
        Target::Proxy,
        "test/local-worker",
        json!({ "lines": 1 }),
    );
    let own = start_task(
        &user,
        Target::Proxy,
        "test/local-worker",
        json!({ "lines": 1 }),
    );
    wait_task_stopped(&root, &roots);
    wait_task_stopped(&root, &own);

    let seen = user.get(Target::Proxy, "nodes/localhost/tasks").data();
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen[0]["upid"], own.as_str());
    let denied = user.get(
        Target::Proxy,
        &format!("nodes/localhost/tasks/{}/status", encode(&roots)),
    );
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body, "task access not allowed");
    let all = auditor.get(Target::Proxy, "nodes/localhost/tasks").data();
    assert_eq!(all.as_array().unwrap().len(), 2);
    // Stopping needs ownership or Sys.Modify.
    let stop = auditor.delete(
        Target::Proxy,
        &format!("nodes/localhost/tasks/{}", encode(&own)),
    );
    assert_eq!(stop.status, StatusCode::FORBIDDEN, "{}", stop.body);
    let nodes = user.get(Target::Proxy, "nodes");
    assert_eq!(nodes.status, StatusCode::FORBIDDEN);
}

#[test]
fn stop_task_of_the_proxy_through_the_api_daemon() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let upid = start_task(
        &root,
        Target::Proxy,
        "test/local-worker",
        json!({ "lines": 600, "sleep-ms": 100 }),
    );
    assert_eq!(upid_pid(&upid), server.child_pid(Target::Proxy));
    // The API daemon asks the proxy over its control socket.
    let status = task_status(&root, Target::Api, &upid);
    assert_eq!(status["status"], "running");
    let stop = root.delete(
        Target::Proxy,
        &format!("nodes/localhost/tasks/{}", encode(&upid)),
    );
    assert_eq!(stop.data(), Value::Null);
    let status = wait_task_stopped(&root, &upid);
    assert_eq!(status["exitstatus"], "abort requested - aborting task");
}

#[test]
fn reload_finishes_in_flight_request_and_keeps_serving() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let old_pid = server.child_pid(Target::Proxy);
    let slow_client = root.clone();
    let slow = std::thread::spawn(move || slow_client.get(Target::Proxy, "test/sleep?ms=3000"));
    std::thread::sleep(Duration::from_millis(700));
    server.signal(Target::Proxy, libc::SIGHUP);

    wait_until(Duration::from_secs(30), "successor PID file", || {
        server
            .pid_file_pid(Target::Proxy)
            .is_some_and(|pid| pid != old_pid)
    });
    let new_pid = server.pid_file_pid(Target::Proxy).unwrap();
    // New connections are served by the successor while the old process finishes.
    let quick = root.get(Target::Proxy, "test/sleep?ms=0").data();
    assert_eq!(quick["pid"], json!(new_pid));

    let reply = slow.join().expect("slow request thread");
    let data = reply.data();
    assert_eq!(data["slept"], 3000);
    assert_eq!(data["pid"], json!(old_pid));
    wait_until(Duration::from_secs(20), "old proxy exit", || {
        let mut status = 0;
        // SAFETY: waiting for our own child without blocking.
        unsafe { libc::waitpid(old_pid, &mut status, libc::WNOHANG) == old_pid }
    });
    assert_eq!(root.get(Target::Proxy, "nodes").status, StatusCode::OK);

    // The API daemon reloads the same way; forwarded calls keep working.
    let old_api = server.child_pid(Target::Api);
    server.signal(Target::Api, libc::SIGHUP);
    wait_until(Duration::from_secs(30), "API daemon successor", || {
        server
            .pid_file_pid(Target::Api)
            .is_some_and(|pid| pid != old_api)
    });
    let upid = start_task(&root, Target::Proxy, "test/worker", json!({ "lines": 1 }));
    assert_eq!(Some(upid_pid(&upid)), server.pid_file_pid(Target::Api));

    let log = server.daemon_log(Target::Proxy);
    assert!(log.contains("reload requested"), "{log}");
    assert_eq!(log.matches("listening on").count(), 2, "{log}");
}

#[test]
fn restart_keeps_task_status_readable() {
    let mut server = TestServer::start();
    let root = server.client("root@pam");
    let upid = start_task(&root, Target::Proxy, "test/worker", json!({ "lines": 2 }));
    wait_task_stopped(&root, &upid);
    server.restart();
    let root = server.client("root@pam");
    let status = task_status(&root, Target::Proxy, &upid);
    assert_eq!(status["status"], "stopped");
    assert_eq!(status["exitstatus"], "OK");
    let list = root.get(Target::Proxy, "nodes/localhost/tasks").data();
    assert_eq!(list[0]["upid"], upid.as_str());
    assert_eq!(list[0]["status"], "OK");
}

#[test]
fn failed_start_says_why() {
    let base = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let run = |base: &std::path::Path| {
        std::process::Command::new(API_BIN)
            .env("PBS_BASE_DIR", base)
            .env("PBS_API_LISTEN", addr.to_string())
            .output()
            .unwrap()
    };
    let out = run(base.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "unable to listen on {addr} - Address already in use"
        )),
        "{stderr}"
    );
    // A broken configuration line names file and line (checked before binding; the port
    // stays taken so that a missed check cannot leave a daemon running).
    let config = base.path().join("etc/proxmox-backup");
    std::fs::write(config.join("user.cfg"), "user: a@pbs\n\tbogus\n").unwrap();
    let out = run(base.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("user.cfg") && stderr.contains('2'),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn control_socket_commands() {
    use pbs_rest_server::control::{control_socket_name, send_command};
    let server = TestServer::start();
    let root = server.client("root@pam");
    let api_upid = start_task(&root, Target::Api, "test/worker", json!({ "lines": 1 }));
    wait_task_stopped(&root, &api_upid);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let proxy = control_socket_name(server.child_pid(Target::Proxy) as u32);
    let api = control_socket_name(server.child_pid(Target::Api) as u32);
    runtime.block_on(async {
        for command in [
            "reload-certificate",
            "api-access-log-reopen",
            "api-auth-log-reopen",
            "datastore-removed",
        ] {
            assert_eq!(
                send_command(&proxy, command, None).await.unwrap(),
                Value::Null,
                "{command}"
            );
        }
        // Certificate reload is a proxy command only.
        let err = send_command(&api, "reload-certificate", None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "got unknown command 'reload-certificate'");
        // Task commands answer for the own process only.
        let args = json!({ "upid": api_upid });
        let err = send_command(&proxy, "worker-task-status", Some(args.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "upid does not belong to this process");
        let active = send_command(&api, "worker-task-status", Some(args))
            .await
            .unwrap();
        assert_eq!(active, Value::Bool(false));
    });
}
