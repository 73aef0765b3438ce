//! End-to-end tests of `catalog dump`, `catalog shell` and `benchmark` through the client
//! binary against the real daemons: a snapshot with a pxar archive and its catalog is uploaded
//! with the backup writer, then read back through the reader protocol.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use common::{chown_to_backup, wait_task, Target, TestServer};
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};
use pbs_client::backup_writer::{BackupWriter, UploadOptions};
use pbs_client::pxar::{create_archive, Flags, PxarCreateOptions};
use pbs_client::{HttpClient, HttpClientOptions};
use pbs_datastore::catalog::{BackupCatalogWriter, CatalogWriter};
use pbs_datastore::manifest::BackupManifest;
use pbs_datastore::{CryptConfig, KeyConfig};

const STORE: &str = "store1";
const PASSWORD: &str = "catalog-secret-1";
const BACKUP_TIME: i64 = 1_700_000_000;
const MTIME: i64 = 1_600_000_000;

/// The client binary, built next to this test's directory.
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

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pbs-client-catalog")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("scratch directory")
}

/// Source tree: `a.txt` (3 bytes), `etc/hosts`, `etc/sub/deep.txt`, all with mtime MTIME.
fn source_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc/sub")).unwrap();
    for (path, data) in [
        ("a.txt", "abc"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/sub/deep.txt", "deep"),
    ] {
        let file = fs::File::create(src.join(path)).unwrap();
        (&file).write_all(data.as_bytes()).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME as u64))
            .unwrap();
    }
    src
}

/// The pxar archive of `src` and the snapshot catalog listing it as `root.pxar.didx`.
fn archive_and_catalog(src: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut archive = Vec::new();
    let mut catalog = CatalogWriter::new(Vec::new()).unwrap();
    catalog.start_directory(b"root.pxar.didx").unwrap();
    create_archive(
        src,
        &mut archive,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        Some(&mut catalog as &mut dyn BackupCatalogWriter),
        &mut |_| {},
    )
    .unwrap();
    BackupCatalogWriter::end_directory(&mut catalog).unwrap();
    (archive, catalog.finish().unwrap())
}

fn stream_of(data: Vec<u8>) -> impl futures::Stream<Item = Result<bytes::Bytes, anyhow::Error>> {
    futures::stream::iter([Ok(bytes::Bytes::from(data))])
}

/// Uploads `host/<id>` at BACKUP_TIME with the archive and catalog, encrypted with `key`.
async fn upload_snapshot(
    server: &TestServer,
    id: &str,
    archive: Vec<u8>,
    catalog: Vec<u8>,
    key: Option<Arc<CryptConfig>>,
) {
    let auth_id: Authid = "alice@pbs".parse().unwrap();
    let options = HttpClientOptions::new_non_interactive(
        PASSWORD.to_string(),
        Some(server.fingerprint.clone()),
    );
    let client = HttpClient::new("127.0.0.1", server.proxy_addr.port(), &auth_id, options).unwrap();
    let dir = BackupDir::new(BackupGroup::new(BackupType::Host, id).unwrap(), BACKUP_TIME).unwrap();
    let writer = BackupWriter::start(
        &client,
        key.clone(),
        STORE,
        &BackupNamespace::root(),
        &dir,
        false,
        false,
    )
    .await
    .unwrap();
    let options = UploadOptions {
        compress: true,
        encrypt: key.is_some(),
        ..Default::default()
    };
    let crypt_mode = if key.is_some() {
        CryptMode::Encrypt
    } else {
        CryptMode::None
    };
    let mut manifest = BackupManifest::new("host", id, BACKUP_TIME);
    for (name, data) in [("root.pxar.didx", archive), ("catalog.pcat1.didx", catalog)] {
        let stats = writer
            .upload_stream(name, stream_of(data), Some(4096), options.clone(), None)
            .await
            .unwrap();
        manifest
            .add_file(name, stats.size, stats.csum, crypt_mode)
            .unwrap();
    }
    if let Some(key) = &key {
        manifest.unprotected_mut().insert(
            "key-fingerprint".into(),
            key.fingerprint().to_string().into(),
        );
    }
    let manifest = manifest.to_string(key.as_deref()).unwrap();
    let options = UploadOptions {
        encrypt: false,
        ..options
    };
    writer
        .upload_blob_from_data(manifest.into_bytes(), "index.json.blob", options)
        .await
        .unwrap();
    Arc::clone(&writer).finish().await.unwrap();
}

struct Fixture {
    server: TestServer,
    _scratch: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Fixture {
    fn repo(&self) -> String {
        format!(
            "alice@pbs@127.0.0.1:{}:{STORE}",
            self.server.proxy_addr.port()
        )
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let home = self.home.path();
        let mut child = Command::new(client_binary())
            .args(args)
            .args(["--repository", &self.repo()])
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("PBS_PASSWORD", PASSWORD)
            .env("PBS_FINGERPRINT", &self.server.fingerprint)
            .env("TZ", "UTC")
            .env_remove("PBS_REPOSITORY")
            .env_remove("PBS_ENCRYPTION_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run proxmox-backup-client");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn setup() -> Fixture {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = scratch_dir();
    let store_path = scratch.path().join(STORE);
    let upid = root
        .post(
            Target::Proxy,
            "config/datastore",
            json!({"name": STORE, "path": store_path.to_str().unwrap()}),
        )
        .data();
    let status = wait_task(&root, upid.as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");
    chown_to_backup(&store_path);
    let reply = root.post(
        Target::Proxy,
        "access/users",
        json!({"userid": "alice@pbs", "password": PASSWORD}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": "/datastore/store1", "auth-id": "alice@pbs", "role": "DatastoreAdmin"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    let src = source_tree(scratch.path());
    let (archive, catalog) = archive_and_catalog(&src);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(upload_snapshot(
        &server,
        "elsa",
        archive.clone(),
        catalog.clone(),
        None,
    ));
    let home = tempfile::tempdir().unwrap();
    let key = KeyConfig::without_password([3u8; 32]).unwrap();
    key.store(home.path().join("data.key"), false).unwrap();
    let crypt_config = Arc::new(CryptConfig::new([3u8; 32]).unwrap());
    runtime.block_on(upload_snapshot(
        &server,
        "secret",
        archive,
        catalog,
        Some(crypt_config),
    ));
    Fixture {
        server,
        _scratch: scratch,
        home,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn catalog_dump_and_shell() {
    let fx = setup();

    let out = fx.run(&["catalog", "dump", "host/elsa/2023-11-14T22:13:20Z"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mtime = "2020-09-13T12:26:40Z";
    assert_eq!(
        text(&out.stderr),
        format!(
            "d \"./root.pxar.didx\"\n\
             f \"./root.pxar.didx/a.txt\" 3 {mtime}\n\
             d \"./root.pxar.didx/etc\"\n\
             f \"./root.pxar.didx/etc/hosts\" 20 {mtime}\n\
             d \"./root.pxar.didx/etc/sub\"\n\
             f \"./root.pxar.didx/etc/sub/deep.txt\" 4 {mtime}\n"
        )
    );

    let out = fx.run(&["catalog", "dump", "host/elsa"], "");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // An encrypted snapshot needs its key; the manifest names the key it was made with.
    let snapshot = "host/secret/2023-11-14T22:13:20Z";
    let out = fx.run(&["catalog", "dump", snapshot], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("missing key - manifest was created with key "),
        "{stderr}"
    );
    let keyfile = fx.home.path().join("data.key");
    let out = fx.run(
        &[
            "catalog",
            "dump",
            snapshot,
            "--keyfile",
            keyfile.to_str().unwrap(),
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("d \"./root.pxar.didx\"\nf \"./root.pxar.didx/a.txt\" 3 "),
        "{stderr}"
    );
    let out = fx.run(
        &[
            "catalog",
            "dump",
            snapshot,
            "--keyfile",
            "x",
            "--keyfd",
            "0",
        ],
        "",
    );
    assert_eq!(
        text(&out.stderr),
        "Error: --keyfile and --keyfd are mutually exclusive\n"
    );

    let restore = tempfile::tempdir().unwrap();
    let target = restore.path().join("out");
    let script = format!(
        "ls\ncd etc\npwd\nstat hosts\nfind '*.txt'\nselect hosts\nlist-selected\nrestore-selected {}\ncd nothing\n",
        target.display()
    );
    let out = fx.run(&["catalog", "shell", "host/elsa", "root.pxar"], &script);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("Starting interactive shell\n"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("Error: no such file or directory: \"nothing\"\n"),
        "{stderr}"
    );
    assert!(
        stdout.starts_with(
            "a.txt\netc\n\"/etc\"\n  File: /etc/hosts\n  Size: 20            Type: file\nAccess: (644/-rw-r--r--  )"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Modify: 2020-09-13 12:26:40\n"), "{stdout}");
    assert!(
        stdout.ends_with("/a.txt\n/etc/sub/deep.txt\nadded path: \"/etc/hosts\"\n/etc/hosts\n"),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(target.join("etc/hosts")).unwrap(),
        "127.0.0.1 localhost\n"
    );
    assert!(!target.join("a.txt").exists());

    let out = fx.run(&["catalog", "shell", "host/elsa", "disk.img"], "");
    assert_eq!(text(&out.stderr), "Error: Can only mount pxar archives.\n");

    // The TLS upload benchmark runs against the repository's server.
    let out = fx.run(&["benchmark", "--output-format", "json"], "");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["tls"]["speed"].as_f64().unwrap() > 0.0, "{result}");
    assert!(stderr.starts_with("Uploaded "), "{stderr}");
    assert!(stderr.contains("\nTLS speed: "), "{stderr}");
}
