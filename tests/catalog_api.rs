//! End-to-end test of `admin/datastore/{store}/catalog` and `…/pxar-file-download` against the
//! real daemons, on a snapshot written directly with the datastore library.

mod common;

use std::path::Path;

use base64::Engine;
use http::StatusCode;
use serde_json::json;

use common::{chown_to_backup, encode, wait_task, Target, TestServer};
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};
use pbs_datastore::catalog::CatalogWriter;
use pbs_datastore::manifest::BackupManifest;
use pbs_datastore::{DataBlob, DataChunkBuilder, DataStore, DynamicIndexWriter};
use pxar::format::{mode, Stat, StatxTimestamp};
use pxar::{Encoder, Metadata};

const STORE: &str = "catstore";
const TIME: i64 = 1_700_000_000;
const MTIME: i64 = 1_690_000_000;
const ARCHIVE: &str = "root.pxar.didx";

fn meta(mode_bits: u64) -> Metadata {
    Metadata::from_stat(Stat {
        mode: mode_bits,
        flags: 0,
        uid: 0,
        gid: 0,
        mtime: StatxTimestamp::new(MTIME, 0),
    })
}

fn file_a() -> Vec<u8> {
    (0..150_000u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[(i % 37) as usize])
        .collect()
}

fn file_b() -> Vec<u8> {
    b"second file\n".repeat(300)
}

/// A pxar archive `/data/{a.txt,b.txt}`: metadata and payload stream when `split`.
fn build_archive(split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut encoder = Encoder::new(
        Vec::new(),
        &meta(mode::IFDIR | 0o755),
        split.then(Vec::new),
        None,
    )
    .unwrap();
    encoder
        .create_directory(b"data", &meta(mode::IFDIR | 0o755))
        .unwrap();
    for (name, content) in [(&b"a.txt"[..], file_a()), (&b"b.txt"[..], file_b())] {
        encoder
            .add_file(
                &meta(mode::IFREG | 0o644),
                name,
                content.len() as u64,
                &mut content.as_slice(),
            )
            .unwrap();
    }
    encoder.finish_directory().unwrap();
    encoder.finish().unwrap()
}

fn build_catalog() -> Vec<u8> {
    let mut writer = CatalogWriter::new(Vec::new()).unwrap();
    writer.start_directory(ARCHIVE.as_bytes()).unwrap();
    writer.start_directory(b"data").unwrap();
    writer
        .add_file(b"a.txt", file_a().len() as u64, MTIME)
        .unwrap();
    writer
        .add_file(b"b.txt", file_b().len() as u64, MTIME)
        .unwrap();
    writer.end_directory().unwrap();
    writer.end_directory().unwrap();
    writer.finish().unwrap()
}

/// Writes `data` chunked into `parts` pieces as `name` and adds it to the manifest.
fn write_didx(
    store: &DataStore,
    dir: &Path,
    name: &str,
    data: &[u8],
    parts: usize,
    crypt_mode: CryptMode,
    manifest: &mut BackupManifest,
) {
    let mut writer =
        DynamicIndexWriter::create(store.chunk_store().clone(), dir.join(name)).unwrap();
    let mut end = 0u64;
    for piece in data.chunks(data.len().div_ceil(parts)) {
        let (blob, digest) = DataChunkBuilder::new(piece).compress(true).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        end += piece.len() as u64;
        writer.add_chunk(end, &digest).unwrap();
    }
    let csum = writer.close().unwrap();
    manifest.add_file(name, end, csum, crypt_mode).unwrap();
}

/// `catalog_mode` is what the manifest claims for the catalog.
fn write_snapshot(store: &DataStore, dir: &BackupDir, owner: &Authid, catalog_mode: CryptMode) {
    let ns = BackupNamespace::root();
    let (_, _group_guard) = store
        .create_locked_backup_group(&ns, &dir.group, owner)
        .unwrap();
    let (relative, _dir_guard) = store.create_new_locked_backup_dir(&ns, dir).unwrap();
    let path = store.base_path().join(relative);
    let mut manifest = BackupManifest::new(dir.group.ty.as_str(), &dir.group.id, dir.time);
    let (archive, _) = build_archive(false);
    write_didx(
        store,
        &path,
        ARCHIVE,
        &archive,
        3,
        CryptMode::None,
        &mut manifest,
    );
    let (meta_stream, payload) = build_archive(true);
    let payload = payload.unwrap();
    write_didx(
        store,
        &path,
        "split.mpxar.didx",
        &meta_stream,
        2,
        CryptMode::None,
        &mut manifest,
    );
    write_didx(
        store,
        &path,
        "split.ppxar.didx",
        &payload,
        3,
        CryptMode::None,
        &mut manifest,
    );
    write_didx(
        store,
        &path,
        "catalog.pcat1.didx",
        &build_catalog(),
        2,
        catalog_mode,
        &mut manifest,
    );
    let json = manifest.to_string(None).unwrap();
    let blob = DataBlob::encode(json.as_bytes(), None, true).unwrap();
    std::fs::write(path.join("index.json.blob"), blob.raw_data()).unwrap();
}
/// Writes `data` to `file_name` in a scratch directory and unpacks it into `out/` there with
/// `command <file> <out_flag> out`.
fn extract(data: &[u8], file_name: &str, command: &[&str], out_flag: &str) -> tempfile::TempDir {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join(file_name);
    std::fs::write(&file, data).unwrap();
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let status = std::process::Command::new(command[0])
        .args(&command[1..])
        .arg(&file)
        .arg(out_flag)
        .arg(&out)
        .status()
        .unwrap_or_else(|err| panic!("{} not runnable: {err}", command[0]));
    assert!(status.success(), "{command:?} failed on {file_name}");
    scratch
}

/// `out/data/{a.txt,b.txt}` with the archive's contents, and (`with_meta`) modes and mtimes.
fn check_extracted(scratch: &tempfile::TempDir, with_meta: bool) {
    use std::os::unix::fs::PermissionsExt;
    let data = scratch.path().join("out/data");
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"]);
    assert_eq!(std::fs::read(data.join("a.txt")).unwrap(), file_a());
    assert_eq!(std::fs::read(data.join("b.txt")).unwrap(), file_b());
    let meta = std::fs::metadata(data.join("a.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    if with_meta {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mtime(), MTIME);
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn catalog_listing_and_pxar_file_download() {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = tempfile::Builder::new()
        .prefix("pbs-catalog-api")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
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

    let lock_dir = server.base.path().join("run/proxmox-backup/locks");
    let store = DataStore::open_with_lock_dir(STORE, &store_path, &lock_dir).unwrap();
    let owner: Authid = "root@pam".parse().unwrap();
    let dir = BackupDir::new(BackupGroup::new(BackupType::Host, "h1").unwrap(), TIME).unwrap();
    write_snapshot(&store, &dir, &owner, CryptMode::None);
    let encrypted =
        BackupDir::new(BackupGroup::new(BackupType::Host, "h1").unwrap(), TIME + 60).unwrap();
    write_snapshot(&store, &encrypted, &owner, CryptMode::Encrypt);
    root.post(
        Target::Proxy,
        "access/users",
        json!({ "userid": "dave@pbs" }),
    )
    .data();
    chown_to_backup(&store_path);
    chown_to_backup(&lock_dir);

    let base =
        format!("admin/datastore/{STORE}/catalog?backup-type=host&backup-id=h1&backup-time={TIME}");
    let listing = root
        .get(Target::Proxy, &format!("{base}&filepath=root"))
        .data();
    let expected_root = format!("/{ARCHIVE}");
    assert_eq!(
        listing,
        json!([{
            "filepath": b64(expected_root.as_bytes()),
            "text": ARCHIVE,
            "type": "d",
            "leaf": false,
        }])
    );

    let data_dir = format!("/{ARCHIVE}/data");
    let listing = root
        .get(
            Target::Proxy,
            &format!("{base}&filepath={}", encode(&b64(data_dir.as_bytes()))),
        )
        .data();
    assert_eq!(
        listing,
        json!([
            {
                "filepath": b64(format!("{data_dir}/a.txt").as_bytes()),
                "text": "a.txt", "type": "f", "leaf": true,
                "size": file_a().len(), "mtime": MTIME,
            },
            {
                "filepath": b64(format!("{data_dir}/b.txt").as_bytes()),
                "text": "b.txt", "type": "f", "leaf": true,
                "size": file_b().len(), "mtime": MTIME,
            },
        ])
    );

    let download = |path: &str| {
        root.get(
            Target::Proxy,
            &format!(
                "admin/datastore/{STORE}/pxar-file-download?backup-type=host&backup-id=h1\
                 &backup-time={TIME}&filepath={}",
                encode(&b64(path.as_bytes()))
            ),
        )
    };
    for (name, content) in [("a.txt", file_a()), ("b.txt", file_b())] {
        let reply = download(&format!("/{ARCHIVE}/data/{name}"));
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body.as_bytes(), content.as_slice(), "{name}");
    }
    let reply = download("/split.mpxar.didx/data/a.txt");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body.as_bytes(), file_a().as_slice());
    let missing = download(&format!("/{ARCHIVE}/data/nope"));
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    for archive in [ARCHIVE, "split.mpxar.didx"] {
        let zip = download(&format!("/{archive}/data"));
        assert_eq!(zip.status, StatusCode::OK, "{}", zip.body);
        check_extracted(&extract(&zip.raw, "dir.zip", &["unzip", "-q"], "-d"), true);
        let tar = root.get(
            Target::Proxy,
            &format!(
                "admin/datastore/{STORE}/pxar-file-download?backup-type=host&backup-id=h1\
                 &backup-time={TIME}&tar=1&filepath={}",
                encode(&b64(format!("/{archive}/data").as_bytes()))
            ),
        );
        assert_eq!(tar.status, StatusCode::OK, "{}", tar.body);
        assert_eq!(&tar.raw[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
        check_extracted(
            &extract(&tar.raw, "dir.tar.zst", &["tar", "--zstd", "-xf"], "-C"),
            true,
        );
    }
    // The archive root: its children are the top-level entries.
    let whole = download(&format!("/{ARCHIVE}"));
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    let unpacked = extract(&whole.raw, "root.zip", &["unzip", "-q"], "-d");
    assert_eq!(
        std::fs::read(unpacked.path().join("out/data/b.txt")).unwrap(),
        file_b()
    );

    let reply = root.get(
        Target::Proxy,
        &format!(
            "admin/datastore/{STORE}/catalog?backup-type=host&backup-id=h1\
             &backup-time={}&filepath=root",
            TIME + 60
        ),
    );
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body.contains("encrypted"), "{}", reply.body);

    let reply = server
        .client("dave@pbs")
        .get(Target::Proxy, &format!("{base}&filepath=root"));
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
}
