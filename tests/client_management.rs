//! End-to-end tests of the client's management commands (`list`, `snapshot …`, `prune`,
//! `change-owner`, `garbage-collect`, `status`, `task …`, `namespace …`) against the real
//! daemons, on snapshots written directly into the datastore directory.

mod common;

use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value};

use common::{
    chown_to_backup, create_datastore, create_user, grant, wait_task, Client, ClientHome, Target,
    TestServer,
};
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};
use pbs_datastore::manifest::BackupManifest;
use pbs_datastore::{DataBlob, DataChunkBuilder, DataStore, DynamicIndexWriter};

const STORE: &str = "store1";
const USER: &str = "alice@pbs";
const PASSWORD: &str = "alice-secret-1";
const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_086_400;
const T3: i64 = 1_700_172_800;

/// Writes a finished snapshot with a two-chunk `.didx`, a config blob and the manifest.
fn write_snapshot(store: &DataStore, ns: &BackupNamespace, dir: &BackupDir, owner: &Authid) {
    let (_, _group_guard) = store
        .create_locked_backup_group(ns, &dir.group, owner)
        .unwrap();
    let (relative, _dir_guard) = store.create_new_locked_backup_dir(ns, dir).unwrap();
    let path = store.base_path().join(relative);
    let mut manifest = BackupManifest::new(dir.group.ty.as_str(), &dir.group.id, dir.time);

    let mut writer =
        DynamicIndexWriter::create(store.chunk_store().clone(), path.join("root.pxar.didx"))
            .unwrap();
    let mut end = 0u64;
    for i in 0..2u8 {
        let data: Vec<u8> = (0..4096u32)
            .map(|n| (n as u8) ^ i ^ (dir.time as u8))
            .collect();
        let (blob, digest) = DataChunkBuilder::new(&data).compress(true).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        end += data.len() as u64;
        writer.add_chunk(end, &digest).unwrap();
    }
    let csum = writer.close().unwrap();
    manifest
        .add_file("root.pxar.didx", end, csum, CryptMode::None)
        .unwrap();

    let conf = DataBlob::encode(b"memory: 1024\n", None, false).unwrap();
    std::fs::write(path.join("qemu-server.conf.blob"), conf.raw_data()).unwrap();
    manifest
        .add_file(
            "qemu-server.conf.blob",
            conf.raw_size(),
            openssl::sha::sha256(conf.raw_data()),
            CryptMode::None,
        )
        .unwrap();

    let json = manifest.to_string(None).unwrap();
    let blob = DataBlob::encode(json.as_bytes(), None, true).unwrap();
    std::fs::write(path.join("index.json.blob"), blob.raw_data()).unwrap();
}

struct Fixture {
    server: TestServer,
    root: Client,
    home: ClientHome,
    repo: String,
    store: DataStore,
    store_path: PathBuf,
    lock_dir: PathBuf,
    _scratch: tempfile::TempDir,
}

/// What one client run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Fixture {
    /// Runs the client with a private HOME/XDG tree, the user's password and the server's
    /// fingerprint; the repository comes from `PBS_REPOSITORY`.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.home.command(&self.server, PASSWORD);
        command
            .args(args)
            .env("PBS_REPOSITORY", &self.repo)
            .env_remove("PROXMOX_OUTPUT_FORMAT")
            .env_remove("PROXMOX_OUTPUT_NO_BORDER")
            .env_remove("PROXMOX_OUTPUT_NO_HEADER")
            .env_remove("PBS_ENCRYPTION_PASSWORD")
            .stdin(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = command.output().expect("run proxmox-backup-client");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code, 0,
            "{args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// Runs and requires failure (exit 255); returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code, 255,
            "{args:?} should fail:\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run.stderr
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output-format", "json"]);
        let text = self.ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: {err}: {text}"))
    }

    fn snapshot(&self, ns: &BackupNamespace, ty: BackupType, id: &str, time: i64) {
        let group = BackupGroup::new(ty, id).unwrap();
        let owner: Authid = USER.parse().unwrap();
        write_snapshot(
            &self.store,
            ns,
            &BackupDir::new(group, time).unwrap(),
            &owner,
        );
        chown_to_backup(&self.store_path);
        chown_to_backup(&self.lock_dir);
    }

    fn repo_list(&self) -> Value {
        let path = self.home.path().join("cache/proxmox-backup/repo-list");
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => Value::Null,
        }
    }
}

fn setup() -> Fixture {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = tempfile::Builder::new()
        .prefix("pbs-client-manage")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("scratch directory");
    let store_path = scratch.path().join(STORE);
    create_datastore(&root, STORE, &store_path);
    create_user(&root, USER, Some(PASSWORD));
    create_user(&root, "carol@pbs", None);
    grant(&root, "/datastore/store1", "DatastoreAdmin", USER);
    let lock_dir = server.base.path().join("run/proxmox-backup/locks");
    let store = DataStore::open_with_lock_dir(STORE, &store_path, &lock_dir).unwrap();
    let repo = format!("{USER}@127.0.0.1:{}:{STORE}", server.proxy_addr.port());
    Fixture {
        server,
        root,
        home: ClientHome::new(),
        repo,
        store,
        store_path,
        lock_dir,
        _scratch: scratch,
    }
}

fn local_time(epoch: i64) -> String {
    pbs_api_types::time::strftime_local("%c", epoch).unwrap()
}

#[test]
fn management_commands_end_to_end() {
    let fx = setup();
    let root_ns = BackupNamespace::root();
    for time in [T1, T2, T3] {
        fx.snapshot(&root_ns, BackupType::Vm, "100", time);
    }
    fx.snapshot(&root_ns, BackupType::Host, "elsa", T2);

    // nothing recorded yet; notes/protected do not record the repository
    fx.ok(&["snapshot", "notes", "show", "vm/100/2023-11-14T22:13:20Z"]);
    assert_eq!(fx.repo_list(), Value::Null);

    // list
    let expected = "\
┌───────────┬────────────────────────────────┬──────────────┬───────────────────────────────────────┐
│ group     │ last snapshot                  │ backup-count │ files                                 │
╞═══════════╪════════════════════════════════╪══════════════╪═══════════════════════════════════════╡
│ host/elsa │ host/elsa/2023-11-15T22:13:20Z │            1 │ index.json qemu-server.conf root.pxar │
├───────────┼────────────────────────────────┼──────────────┼───────────────────────────────────────┤
│ vm/100    │ vm/100/2023-11-16T22:13:20Z    │            3 │ index.json qemu-server.conf root.pxar │
└───────────┴────────────────────────────────┴──────────────┴───────────────────────────────────────┘
";
    assert_eq!(fx.ok(&["list"]), expected);
    assert_eq!(fx.repo_list(), json!({ (fx.repo.clone()): 1 }));
    let groups = fx.json(&["list"]);
    assert_eq!(groups.as_array().unwrap().len(), 2, "{groups}");
    let no_border = fx.run_with(&["list"], &[("PROXMOX_OUTPUT_NO_BORDER", "1")]);
    assert_eq!(
        no_border.stdout,
        "host/elsa host/elsa/2023-11-15T22:13:20Z 1 index.json qemu-server.conf root.pxar\n\
         vm/100    vm/100/2023-11-16T22:13:20Z    3 index.json qemu-server.conf root.pxar\n"
    );

    let no_header = fx.run_with(&["list"], &[("PROXMOX_OUTPUT_NO_HEADER", "1")]);
    // without the header the widths come from the cells alone
    assert_eq!(
        no_header.stdout,
        "\
┌───────────┬────────────────────────────────┬───┬───────────────────────────────────────┐
│ host/elsa │ host/elsa/2023-11-15T22:13:20Z │ 1 │ index.json qemu-server.conf root.pxar │
├───────────┼────────────────────────────────┼───┼───────────────────────────────────────┤
│ vm/100    │ vm/100/2023-11-16T22:13:20Z    │ 3 │ index.json qemu-server.conf root.pxar │
└───────────┴────────────────────────────────┴───┴───────────────────────────────────────┘
"
    );
    let pretty = fx.ok(&["list", "--output-format", "json-pretty"]);
    assert_eq!(
        pretty,
        format!("{}\n", serde_json::to_string_pretty(&groups).unwrap())
    );

    // snapshot list (and its alias)
    let expected = "\
┌─────────────────────────────┬───────────┬───────────────────────────────────────┐
│ snapshot                    │      size │ files                                 │
╞═════════════════════════════╪═══════════╪═══════════════════════════════════════╡
│ vm/100/2023-11-14T22:13:20Z │ 8.328 KiB │ index.json qemu-server.conf root.pxar │
├─────────────────────────────┼───────────┼───────────────────────────────────────┤
│ vm/100/2023-11-15T22:13:20Z │ 8.329 KiB │ index.json qemu-server.conf root.pxar │
├─────────────────────────────┼───────────┼───────────────────────────────────────┤
│ vm/100/2023-11-16T22:13:20Z │ 8.329 KiB │ index.json qemu-server.conf root.pxar │
└─────────────────────────────┴───────────┴───────────────────────────────────────┘
";
    assert_eq!(fx.ok(&["snapshot", "list", "vm/100"]), expected);
    assert_eq!(fx.ok(&["snapshots", "vm/100"]), expected);
    let snapshots = fx.json(&["snapshot", "list"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 4, "{snapshots}");

    // snapshot files
    let files = fx.ok(&["snapshot", "files", "vm/100/2023-11-16T22:13:20Z"]);
    let expected = "\
┌───────────────────────┬────────────┬──────┐
│ filename              │ crypt-mode │ size │
╞═══════════════════════╪════════════╪══════╡
│ index.json.blob       │ none       │";
    assert!(files.starts_with(expected), "{files}");
    assert!(
        files.contains("│ qemu-server.conf.blob │ none       │   25 │"),
        "{files}"
    );
    assert!(
        files.contains("│ root.pxar.didx        │ none       │ 8192 │"),
        "{files}"
    );
    let err = fx.fails(&["snapshot", "files", "vm/100/2020-01-01T00:00:00Z"]);
    assert_eq!(
        err,
        "Error: snapshot vm/100/2020-01-01T00:00:00Z does not exist.\n"
    );

    // notes and protection
    let snap = "vm/100/2023-11-15T22:13:20Z";
    fx.ok(&["snapshot", "notes", "update", snap, "first line\nsecond"]);
    assert_eq!(
        fx.ok(&["snapshot", "notes", "show", snap]),
        "first line\nsecond\n"
    );
    assert_eq!(
        fx.json(&["snapshot", "notes", "show", snap]),
        json!({"notes": "first line\nsecond"})
    );
    assert_eq!(fx.ok(&["snapshot", "protected", "show", snap]), "false\n");
    fx.ok(&["snapshot", "protected", "update", snap, "true"]);
    assert_eq!(fx.ok(&["snapshot", "protected", "show", snap]), "true\n");
    assert_eq!(
        fx.json(&["snapshot", "protected", "show", snap]),
        json!({"protected": true})
    );

    // upload-log: the framework prints the raw reply
    let log = fx.home.path().join("client.log");
    std::fs::write(&log, "backup log line\n".repeat(50)).unwrap();
    let run = fx.run(&["snapshot", "upload-log", snap, log.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "Result: {\n  \"data\": null\n}\n");
    let files = fx.json(&["snapshot", "files", snap]);
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["filename"] == "client.log.blob"),
        "{files}"
    );
    let err = fx.fails(&["upload-log", snap, log.to_str().unwrap()]);
    assert!(err.contains("backup already contains a log."), "{err}");

    // with a key file the log is stored encrypted
    let key_path = fx.home.path().join("key.json");
    let key = pbs_datastore::key_config::KeyConfig::without_password([5u8; 32]).unwrap();
    std::fs::write(&key_path, key.to_json().unwrap()).unwrap();
    let key_arg = key_path.to_str().unwrap();
    let other = "vm/100/2023-11-16T22:13:20Z";
    let err = fx.fails(&[
        "upload-log",
        other,
        log.to_str().unwrap(),
        "--keyfile",
        key_arg,
        "--crypt-mode",
        "none",
    ]);
    assert_eq!(
        err,
        "Error: --keyfile/--keyfd and --crypt-mode=none are mutually exclusive\n"
    );
    fx.ok(&[
        "upload-log",
        other,
        log.to_str().unwrap(),
        "--keyfile",
        key_arg,
    ]);
    let stored = std::fs::read(fx.store_path.join(format!("{other}/client.log.blob"))).unwrap();
    let blob = DataBlob::from_raw(stored).unwrap();
    assert!(blob.is_encrypted());
    let config = pbs_datastore::crypt_config::CryptConfig::new([5u8; 32]).unwrap();
    assert_eq!(
        blob.decode(Some(&config), None).unwrap(),
        "backup log line\n".repeat(50).into_bytes()
    );
    let stored = std::fs::read(fx.store_path.join(format!("{snap}/client.log.blob"))).unwrap();
    let blob = DataBlob::from_raw(stored).unwrap();
    assert!(!blob.is_encrypted() && blob.is_compressed());

    // prune: dry run, quiet, json; --max-depth is passed on and rejected by the server
    let expected = format!(
        "\
┌─────────────────────────────┬{line}┬────────┐
│ snapshot                    │ {date:>width$} │ action │
╞═════════════════════════════╪{dline}╪════════╡
│ vm/100/2023-11-14T22:13:20Z │ {t1:>width$} │ remove │
├─────────────────────────────┼{line}┼────────┤
│ vm/100/2023-11-15T22:13:20Z │ {t2:>width$} │   keep │
├─────────────────────────────┼{line}┼────────┤
│ vm/100/2023-11-16T22:13:20Z │ {t3:>width$} │   keep │
└─────────────────────────────┴{line}┴────────┘
",
        date = "date",
        t1 = local_time(T1),
        t2 = local_time(T2),
        t3 = local_time(T3),
        width = local_time(T1).chars().count(),
        line = "─".repeat(local_time(T1).chars().count() + 2),
        dline = "═".repeat(local_time(T1).chars().count() + 2),
    );
    assert_eq!(
        fx.ok(&["prune", "vm/100", "--keep-last", "1", "--dry-run"]),
        expected
    );
    let quiet = fx.ok(&[
        "prune",
        "vm/100",
        "--keep-last",
        "1",
        "--dry-run",
        "--quiet",
    ]);
    assert_eq!(quiet.lines().count(), 5, "{quiet}");
    assert!(quiet.contains("│ vm/100/2023-11-14T22:13:20Z │"), "{quiet}");
    let pruned = fx.json(&["prune", "vm/100", "--keep-last", "1", "--dry-run"]);
    assert_eq!(pruned.as_array().unwrap().len(), 3, "{pruned}");
    assert_eq!(pruned[0]["backup-time"], T1);
    assert_eq!(pruned[0]["keep"], false);
    let err = fx.fails(&["prune", "vm/100", "--keep-last", "1", "--max-depth", "1"]);
    assert_eq!(
        err,
        "Error: parameter verification failed - 'max-depth': schema does not allow additional properties.\n"
    );
    let err = fx.fails(&["prune", "vm/100", "--keep-last", "0"]);
    assert!(
        err.starts_with("Error: parameter verification failed - 'keep-last': value must have a minimum value of 1 (got 0)"),
        "{err}"
    );

    // forget
    fx.ok(&["snapshot", "forget", "vm/100/2023-11-14T22:13:20Z"]);
    let snapshots = fx.json(&["snapshot", "list", "vm/100"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots}");
    let err = fx.fails(&["forget", "vm/100/2023-11-14T22:13:20Z"]);
    assert_eq!(
        err,
        "Error: snapshot vm/100/2023-11-14T22:13:20Z does not exist.\n"
    );

    // change-owner
    fx.ok(&["change-owner", "host/elsa", "carol@pbs"]);
    let groups = fx
        .root
        .get(Target::Proxy, "admin/datastore/store1/groups")
        .data();
    let elsa = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["backup-id"] == "elsa")
        .unwrap()
        .clone();
    assert_eq!(elsa["owner"], "carol@pbs", "{groups}");

    // status: raw byte counts with percentages
    let status = fx.ok(&["status"]);
    let rows: Vec<&str> = status.lines().collect();
    assert_eq!(rows.len(), 7, "{status}");
    assert!(rows[1].starts_with("│ total │ "), "{status}");
    assert!(rows[1].ends_with(" (100 %) │"), "{status}");
    assert!(rows[3].starts_with("│ used  │ "), "{status}");
    assert!(rows[5].starts_with("│ avail │ "), "{status}");
    let usage = fx.json(&["status"]);
    assert!(usage["total"].as_u64().unwrap() > 0, "{usage}");

    // garbage-collect follows the task log; json prints the UPID
    let gc = fx.ok(&["garbage-collect"]);
    assert!(
        gc.starts_with("Start GC phase1 (mark used chunks)\n"),
        "{gc}"
    );
    assert!(gc.ends_with("TASK OK\n"), "{gc}");
    let upid = fx.json(&["garbage-collect"]);
    let upid = upid.as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:"), "{upid}");
    wait_task(&fx.root, &upid);

    // task list/log
    let tasks = fx.json(&["task", "list", "--all"]);
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["upid"] == upid.as_str()),
        "{tasks}"
    );
    let task_text = fx.ok(&["task", "list", "--all"]);
    assert!(task_text.contains(&upid), "{task_text}");
    assert!(
        task_text.lines().nth(1).unwrap().contains("starttime"),
        "{task_text}"
    );
    let log = fx.ok(&["task", "log", &upid]);
    let lines = fx
        .root
        .get(
            Target::Proxy,
            &format!(
                "nodes/localhost/tasks/{}/log?limit=0",
                common::encode(&upid)
            ),
        )
        .json();
    let expected: String = lines["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            let text = line["t"].as_str().unwrap();
            format!(
                "{}\n",
                text.get(27..)
                    .filter(|_| text.get(25..27) == Some(": "))
                    .unwrap_or(text)
            )
        })
        .collect();
    assert_eq!(log, expected);
    assert!(log.ends_with("TASK OK\n"), "{log}");
    let running = fx.json(&["task", "list"]);
    assert_eq!(running, json!([]));

    // namespaces
    let err = fx.fails(&["namespace", "create", ""]);
    assert!(
        err.starts_with("Error: root namespace is always present"),
        "{err}"
    );
    let err = fx.fails(&["namespace", "delete", ""]);
    assert!(
        err.starts_with("Error: root namespace cannot be deleted"),
        "{err}"
    );
    fx.ok(&["namespace", "create", "dev"]);
    fx.ok(&["namespace", "create", "dev/sub"]);
    assert_eq!(fx.ok(&["namespace", "list"]), "dev\ndev/sub\n");
    assert_eq!(
        fx.ok(&["namespace", "list", "dev", "--max-depth", "1"]),
        "dev\ndev/sub\n"
    );
    let reply = fx.json(&["namespace", "list", "dev"]);
    assert_eq!(
        reply["data"],
        json!([{"ns": "dev"}, {"ns": "dev/sub"}]),
        "{reply}"
    );
    let dev: BackupNamespace = "dev".parse().unwrap();
    fx.snapshot(&dev, BackupType::Ct, "200", T1);
    let groups = fx.json(&["list", "--ns", "dev"]);
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups[0]["backup-id"], "200");
    // group forget (stdin is no terminal: no confirmation) removes the group in its namespace
    fx.ok(&["group", "forget", "ct/200", "--ns", "dev"]);
    let groups = fx.json(&["list", "--ns", "dev"]);
    assert_eq!(groups, json!([]), "{groups}");
    assert!(!fx.store_path.join("ns/dev/ct/200").exists());
    let err = fx.fails(&["group", "forget", "ct/200", "--ns", "dev"]);
    assert!(err.starts_with("Error: "), "{err}");
    let err = fx.fails(&["group", "forget", "ct"]);
    assert!(
        err.starts_with("Error: parameter verification failed - 'group'"),
        "{err}"
    );
    fx.ok(&["namespace", "delete", "dev/sub"]);
    assert_eq!(fx.ok(&["namespace", "list"]), "dev\n");

    // task stop on a finished task is accepted or refused by the server, never a panic
    let run = fx.run(&["task", "stop", &upid]);
    assert!(
        run.code == 0 || run.stderr.starts_with("Error: "),
        "{}",
        run.stderr
    );

    let counts = fx.repo_list();
    assert!(counts[&fx.repo].as_u64().unwrap() > 10, "{counts}");
}
