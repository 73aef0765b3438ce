//! End-to-end test of the client's backup writer and reader against the real daemons:
//! dynamic and fixed indexes, blobs, the manifest, chunk reuse, injections, encryption and a
//! server that dies during an upload.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Error;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use common::{chown_to_backup, wait_task, Target, TestServer};
use pbs_api_types::{Authid, BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};
use pbs_client::backup_reader::{read_all, BackupReader};
use pbs_client::backup_writer::{BackupStats, BackupWriter, UploadOptions};
use pbs_client::http_client::{HttpClient, HttpClientOptions};
use pbs_client::inject::{InjectChunks, PayloadHint, ReusableDynamicEntry};
use pbs_client::remote_chunk_reader::RemoteChunkReader;
use pbs_client::restore::{restore_index_to_writer, SharedIndex};
use pbs_datastore::file_formats::{
    DYNAMIC_SIZED_CHUNK_INDEX_1_0, ENCRYPTED_BLOB_MAGIC_1_0, ENCR_COMPR_BLOB_MAGIC_1_0,
    FIXED_SIZED_CHUNK_INDEX_1_0,
};
use pbs_datastore::index::IndexFile;
use pbs_datastore::index_reader::BufferedIndexReader;
use pbs_datastore::read_chunk::AsyncReadChunk;
use pbs_datastore::{BackupManifest, CryptConfig, DynamicIndexReader, FixedIndexReader};

const STORE: &str = "store1";
const USER: &str = "writer@pbs";
const PASSWORD: &str = "writer-secret-1";
const T1: i64 = 1_717_600_000;
const T2: i64 = 1_717_600_100;
const MIB: usize = 1024 * 1024;
const DYNAMIC_AVG: usize = 64 * 1024;

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a stream of irregular pieces.
fn stream_of(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes, Error>> + Send + 'static {
    let data = Bytes::copy_from_slice(data);
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut step = 1000;
    while pos < data.len() {
        let end = (pos + step).min(data.len());
        pieces.push(Ok(data.slice(pos..end)));
        pos = end;
        step = step * 3 % 300_001 + 17;
    }
    futures::stream::iter(pieces)
}

fn snapshot(id: &str, time: i64) -> BackupDir {
    BackupDir::new(BackupGroup::new(BackupType::Host, id).unwrap(), time).unwrap()
}

struct Fixture {
    server: TestServer,
    store_path: PathBuf,
    _scratch: tempfile::TempDir,
}

fn setup() -> Fixture {
    let server = TestServer::start();
    let root = server.client("root@pam");
    let scratch = tempfile::Builder::new()
        .prefix("pbs-client-writer")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("scratch directory");
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
    root.post(
        Target::Proxy,
        "access/users",
        json!({ "userid": USER, "password": PASSWORD }),
    )
    .data();
    root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": "/datastore/store1", "auth-id": USER, "role": "DatastoreAdmin"}),
    )
    .data();
    Fixture {
        server,
        store_path,
        _scratch: scratch,
    }
}

async fn connect(server: &TestServer) -> HttpClient {
    let auth_id: Authid = USER.parse().unwrap();
    let options =
        HttpClientOptions::new_non_interactive(PASSWORD.into(), Some(server.fingerprint.clone()));
    let client =
        HttpClient::new("127.0.0.1", server.proxy_addr.port(), &auth_id, options).expect("client");
    client.login().await.expect("login");
    client
}

fn snapshot_dir(store_path: &Path, dir: &BackupDir) -> PathBuf {
    store_path.join(dir.relative_path().unwrap())
}

fn chunk_path(store_path: &Path, digest: &[u8; 32]) -> PathBuf {
    let hex = hex::encode(digest);
    store_path.join(".chunks").join(&hex[..4]).join(hex)
}

/// Every chunk of a server-side index holds the digest of its slice of `data`.
fn check_index_against_data(index: &dyn IndexFile, data: &[u8], stats: &BackupStats) {
    assert_eq!(index.index_bytes(), data.len() as u64);
    assert_eq!(index.index_count() as u64, stats.chunk_count);
    let (csum, size) = index.compute_csum();
    assert_eq!(csum, stats.csum, "index csum");
    assert_eq!(size, stats.size);
    for pos in 0..index.index_count() {
        let info = index.chunk_info(pos).unwrap();
        let slice = &data[info.range.start as usize..info.range.end as usize];
        assert_eq!(info.digest, openssl::sha::sha256(slice), "chunk {pos}");
    }
}

/// Checks an index file byte by byte against the on-disk format: magic, header fields and
/// `index_csum` = SHA-256 of the raw entry (or digest) array.
fn check_raw_index(path: &Path, stats: &BackupStats, fixed: Option<u64>) {
    let raw = std::fs::read(path).unwrap();
    let magic = match fixed {
        Some(_) => FIXED_SIZED_CHUNK_INDEX_1_0,
        None => DYNAMIC_SIZED_CHUNK_INDEX_1_0,
    };
    assert_eq!(raw[..8], magic, "{path:?}: magic");
    assert_eq!(raw[32..64], stats.csum, "{path:?}: stored csum");
    assert_eq!(
        openssl::sha::sha256(&raw[4096..]),
        stats.csum,
        "{path:?}: csum"
    );
    match fixed {
        Some(chunk_size) => {
            assert_eq!(raw[64..72], stats.size.to_le_bytes());
            assert_eq!(raw[72..80], chunk_size.to_le_bytes());
            assert_eq!((raw.len() - 4096) as u64, stats.chunk_count * 32);
        }
        None => {
            assert_eq!((raw.len() - 4096) as u64, stats.chunk_count * 40);
            let last_end = &raw[raw.len() - 40..raw.len() - 32];
            assert_eq!(last_end, stats.size.to_le_bytes());
        }
    }
}

fn manifest_for(dir: &BackupDir, files: &[(&str, &BackupStats, CryptMode)]) -> BackupManifest {
    let mut manifest = BackupManifest::new(dir.group.ty.as_str(), &dir.group.id, dir.time);
    for (name, stats, mode) in files {
        manifest
            .add_file(*name, stats.size, stats.csum, *mode)
            .unwrap();
    }
    manifest
}

async fn upload_manifest(
    writer: &BackupWriter,
    manifest: &BackupManifest,
    key: Option<&CryptConfig>,
) {
    let text = manifest.to_string(key).unwrap();
    let options = UploadOptions {
        compress: true,
        ..Default::default()
    };
    writer
        .upload_blob_from_data(text.into_bytes(), "index.json.blob", options)
        .await
        .expect("manifest upload");
}

/// Restores a dynamic index through overlapping chunk fetches.
async fn restore_dynamic(
    reader: &Arc<BackupReader>,
    manifest: &BackupManifest,
    name: &str,
    key: Option<Arc<CryptConfig>>,
) -> Result<Vec<u8>, Error> {
    let index = reader.download_dynamic_index(manifest, name).await?;
    let mode = manifest.lookup_file_info(name)?.crypt_mode;
    let chunks = Arc::new(RemoteChunkReader::new(
        Arc::clone(reader),
        key,
        mode,
        HashMap::new(),
    ));
    let index: SharedIndex = Arc::new(index);
    let (data, written) = restore_index_to_writer(chunks, index, Vec::new()).await?;
    assert_eq!(written, data.len() as u64);
    Ok(data)
}

#[test]
fn writer_and_reader_end_to_end() {
    let fixture = setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&fixture));
}

async fn run(fixture: &Fixture) {
    let server = &fixture.server;
    let store_path = &fixture.store_path;
    let client = connect(server).await;
    let root_ns = BackupNamespace::root();

    let stream_data = noise(3 * MIB + 12_345, 1);
    let image = noise(2 * 4 * MIB + 12_345, 2);
    let conf = b"key = value\n".repeat(100);
    let no_compress = UploadOptions::default();
    let compress = UploadOptions {
        compress: true,
        ..Default::default()
    };

    // --- first backup: dynamic stream, fixed image, blob, manifest ---
    let first = snapshot("elsa", T1);
    let writer = BackupWriter::start(&client, None, STORE, &root_ns, &first, true, false)
        .await
        .expect("backup session");
    assert_eq!(writer.previous_backup_time().await.unwrap(), None);
    let root_stats = writer
        .upload_stream(
            "root.didx",
            stream_of(&stream_data),
            Some(DYNAMIC_AVG),
            compress.clone(),
            None,
        )
        .await
        .expect("dynamic upload");
    assert_eq!(root_stats.size, stream_data.len() as u64);
    assert!(root_stats.chunk_count > 10, "{root_stats:?}");
    assert_eq!(root_stats.chunk_reused, 0);
    let image_options = UploadOptions {
        fixed_size: Some(image.len() as u64),
        ..compress.clone()
    };
    let image_stats = writer
        .upload_stream(
            "disk.img.fidx",
            stream_of(&image),
            None,
            image_options.clone(),
            None,
        )
        .await
        .expect("fixed upload");
    assert_eq!(
        image_stats.chunk_count, 3,
        "two full chunks and a short one"
    );
    // Pre-cut chunks: two identical zero chunks (the second one is reused) and a short tail.
    let zero_len = 2 * 4 * MIB + 100;
    let zero_chunks = futures::stream::iter(vec![
        Ok(Bytes::from(vec![0u8; 4 * MIB])),
        Ok(Bytes::from(vec![0u8; 4 * MIB])),
        Ok(Bytes::from(vec![0u8; 100])),
    ]);
    let zero_stats = writer
        .upload_chunk_stream(
            "zero.img.fidx",
            zero_chunks,
            UploadOptions {
                fixed_size: Some(zero_len as u64),
                ..compress.clone()
            },
            None,
        )
        .await
        .expect("pre-cut upload");
    assert_eq!(zero_stats.chunk_count, 3);
    assert_eq!(zero_stats.chunk_reused, 1);
    let conf_stats = writer
        .upload_blob_from_data(conf.clone(), "conf.blob", no_compress.clone())
        .await
        .expect("blob upload");
    let manifest1 = manifest_for(
        &first,
        &[
            ("root.didx", &root_stats, CryptMode::None),
            ("disk.img.fidx", &image_stats, CryptMode::None),
            ("conf.blob", &conf_stats, CryptMode::None),
            ("zero.img.fidx", &zero_stats, CryptMode::None),
        ],
    );
    upload_manifest(&writer, &manifest1, None).await;
    writer.finish().await.expect("finish");

    // The index files on the server: digests, offsets and checksums.
    let dir1 = snapshot_dir(store_path, &first);
    let didx = DynamicIndexReader::open(dir1.join("root.didx")).unwrap();
    check_index_against_data(&didx, &stream_data, &root_stats);
    assert_eq!(didx.stored_csum(), root_stats.csum);
    let fidx = FixedIndexReader::open(dir1.join("disk.img.fidx")).unwrap();
    assert_eq!(fidx.chunk_size(), 4 * MIB as u64);
    check_index_against_data(&fidx, &image, &image_stats);
    assert_eq!(fidx.stored_csum(), image_stats.csum);
    check_raw_index(&dir1.join("root.didx"), &root_stats, None);
    check_raw_index(
        &dir1.join("disk.img.fidx"),
        &image_stats,
        Some(4 * MIB as u64),
    );
    check_raw_index(
        &dir1.join("zero.img.fidx"),
        &zero_stats,
        Some(4 * MIB as u64),
    );
    let zero_index = FixedIndexReader::open(dir1.join("zero.img.fidx")).unwrap();
    check_index_against_data(&zero_index, &vec![0u8; zero_len], &zero_stats);
    assert_eq!(
        std::fs::read(dir1.join("conf.blob")).unwrap().len() as u64,
        conf_stats.size
    );
    for pos in 0..didx.index_count() {
        assert!(chunk_path(store_path, didx.index_digest(pos).unwrap()).exists());
    }

    // --- read everything back ---
    let reader = BackupReader::start(&client, None, STORE, &root_ns, &first, true)
        .await
        .expect("reader session");
    let (manifest, raw) = reader.download_manifest().await.unwrap();
    assert!(!raw.is_empty());
    assert_eq!(manifest.files().len(), 4);
    let restored = restore_dynamic(&reader, &manifest, "root.didx", None)
        .await
        .unwrap();
    assert!(restored == stream_data, "dynamic stream differs");
    let blob = reader.download_blob(&manifest, "conf.blob").await.unwrap();
    assert_eq!(read_all(blob).unwrap(), conf);
    // The fixed image through the synchronous Read interface (as FUSE/pxar use it).
    let fixed = reader
        .download_fixed_index(&manifest, "disk.img.fidx")
        .await
        .unwrap();
    let chunks = RemoteChunkReader::new(Arc::clone(&reader), None, CryptMode::None, HashMap::new());
    let read_back = tokio::task::spawn_blocking(move || {
        let mut reader = BufferedIndexReader::new(fixed, chunks);
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map(|_| data)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(read_back == image, "fixed image differs");
    drop(reader);

    // --- second backup: previous manifest, no new chunks; injections ---
    let chunk_files_before = count_chunk_files(store_path);
    let second = snapshot("elsa", T2);
    let writer = BackupWriter::start(&client, None, STORE, &root_ns, &second, true, false)
        .await
        .expect("second session");
    assert_eq!(writer.previous_backup_time().await.unwrap(), Some(T1));
    let previous = Arc::new(writer.download_previous_manifest().await.unwrap());
    let reuse = UploadOptions {
        previous_manifest: Some(Arc::clone(&previous)),
        ..compress.clone()
    };
    let root2 = writer
        .upload_stream(
            "root.didx",
            stream_of(&stream_data),
            Some(DYNAMIC_AVG),
            reuse.clone(),
            None,
        )
        .await
        .expect("dynamic re-upload");
    assert_eq!(root2.csum, root_stats.csum);
    assert_eq!(root2.chunk_reused, root2.chunk_count, "{root2:?}");
    assert_eq!(root2.size_compressed, 0, "{root2:?}");
    let image2 = writer
        .upload_stream(
            "disk.img.fidx",
            stream_of(&image),
            None,
            UploadOptions {
                previous_manifest: Some(Arc::clone(&previous)),
                ..image_options.clone()
            },
            None,
        )
        .await
        .expect("fixed re-upload");
    assert_eq!(image2.chunk_reused, 3);
    assert_eq!(image2.size_compressed, 0);

    // Injection: new bytes, three chunks of the previous stream, more new bytes.
    let known = Arc::new(Mutex::new(Default::default()));
    let prev_index = writer
        .download_previous_dynamic_index("root.didx", &previous, known)
        .await
        .unwrap();
    let injected: Vec<ReusableDynamicEntry> = (0..3)
        .map(|pos| {
            let info = prev_index.chunk_info(pos).unwrap();
            ReusableDynamicEntry {
                size: info.size(),
                digest: info.digest,
            }
        })
        .collect();
    let injected_len: u64 = injected.iter().map(|c| c.size).sum();
    let head = noise(100_000, 3);
    let tail = noise(50_000, 4);
    let (tx, rx) = std::sync::mpsc::channel();
    tx.send(PayloadHint::Inject(InjectChunks::new(
        head.len() as u64,
        injected.clone(),
    )))
    .unwrap();
    drop(tx);
    let mut joined = head.clone();
    joined.extend_from_slice(&tail);
    let inject_stats = writer
        .upload_stream(
            "inject.didx",
            stream_of(&joined),
            Some(DYNAMIC_AVG),
            compress.clone(),
            Some(rx),
        )
        .await
        .expect("upload with injection");
    let mut expected_inject = head.clone();
    expected_inject.extend_from_slice(&stream_data[..injected_len as usize]);
    expected_inject.extend_from_slice(&tail);
    assert_eq!(inject_stats.size, expected_inject.len() as u64);
    assert_eq!(inject_stats.chunk_reused, 3);

    let manifest2 = manifest_for(
        &second,
        &[
            ("root.didx", &root2, CryptMode::None),
            ("disk.img.fidx", &image2, CryptMode::None),
            ("inject.didx", &inject_stats, CryptMode::None),
        ],
    );
    upload_manifest(&writer, &manifest2, None).await;
    writer.finish().await.expect("second finish");

    let dir2 = snapshot_dir(store_path, &second);
    let inject_index = DynamicIndexReader::open(dir2.join("inject.didx")).unwrap();
    check_index_against_data(&inject_index, &expected_inject, &inject_stats);
    let positions: Vec<usize> = (0..inject_index.index_count())
        .filter(|&pos| {
            let digest = inject_index.index_digest(pos).unwrap();
            injected.iter().any(|c| &c.digest == digest)
        })
        .collect();
    assert_eq!(positions.len(), 3);
    let first_injected = inject_index.chunk_info(positions[0]).unwrap();
    assert_eq!(first_injected.range.start, head.len() as u64);
    assert_eq!(
        positions[2] - positions[0],
        2,
        "injected chunks are contiguous"
    );
    // Only the chunks of the new head/tail bytes were added to the store.
    let added = count_chunk_files(store_path) - chunk_files_before;
    assert_eq!(added as u64, inject_stats.chunk_count - 3);

    let reader = BackupReader::start(&client, None, STORE, &root_ns, &second, true)
        .await
        .unwrap();
    let (manifest, _) = reader.download_manifest().await.unwrap();
    let restored = restore_dynamic(&reader, &manifest, "inject.didx", None)
        .await
        .unwrap();
    assert!(restored == expected_inject, "injected stream differs");
    drop(reader);

    // --- encrypted backup ---
    let key = Arc::new(CryptConfig::new([0x5a; 32]).unwrap());
    let secret_dir = snapshot("secret", T1);
    let writer = BackupWriter::start(
        &client,
        Some(Arc::clone(&key)),
        STORE,
        &root_ns,
        &secret_dir,
        true,
        false,
    )
    .await
    .unwrap();
    let encrypt = UploadOptions {
        compress: true,
        encrypt: true,
        ..Default::default()
    };
    let secret_data = noise(MIB, 5);
    let secret_stats = writer
        .upload_stream(
            "secret.didx",
            stream_of(&secret_data),
            Some(DYNAMIC_AVG),
            encrypt.clone(),
            None,
        )
        .await
        .unwrap();
    let secret_blob = writer
        .upload_blob_from_data(conf.clone(), "secret.blob", encrypt.clone())
        .await
        .unwrap();
    let manifest3 = manifest_for(
        &secret_dir,
        &[
            ("secret.didx", &secret_stats, CryptMode::Encrypt),
            ("secret.blob", &secret_blob, CryptMode::Encrypt),
        ],
    );
    upload_manifest(&writer, &manifest3, Some(&key)).await;
    writer.finish().await.unwrap();

    let secret_index =
        DynamicIndexReader::open(snapshot_dir(store_path, &secret_dir).join("secret.didx"))
            .unwrap();
    assert_eq!(secret_index.index_bytes(), secret_data.len() as u64);
    for pos in 0..secret_index.index_count() {
        let info = secret_index.chunk_info(pos).unwrap();
        let slice = &secret_data[info.range.start as usize..info.range.end as usize];
        assert_eq!(info.digest, key.compute_digest(slice), "keyed digest");
        let raw = std::fs::read(chunk_path(store_path, &info.digest)).unwrap();
        assert!(
            raw[..8] == ENCR_COMPR_BLOB_MAGIC_1_0 || raw[..8] == ENCRYPTED_BLOB_MAGIC_1_0,
            "chunk {pos} is not an encrypted blob"
        );
    }

    let reader = BackupReader::start(
        &client,
        Some(Arc::clone(&key)),
        STORE,
        &root_ns,
        &secret_dir,
        true,
    )
    .await
    .unwrap();
    let (manifest, _) = reader.download_manifest().await.unwrap();
    let restored = restore_dynamic(&reader, &manifest, "secret.didx", Some(Arc::clone(&key)))
        .await
        .unwrap();
    assert!(restored == secret_data, "encrypted stream differs");
    let blob = reader
        .download_blob(&manifest, "secret.blob")
        .await
        .unwrap();
    assert_eq!(read_all(blob).unwrap(), conf);
    // An encrypted chunk where the manifest promises plain data is refused.
    let index = reader
        .download_dynamic_index(&manifest, "secret.didx")
        .await
        .unwrap();
    let chunks = RemoteChunkReader::new(
        Arc::clone(&reader),
        Some(Arc::clone(&key)),
        CryptMode::None,
        HashMap::new(),
    );
    let err = AsyncReadChunk::read_chunk(&chunks, index.index_digest(0).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("encrypted chunk in an unencrypted index"),
        "{err:#}"
    );
    drop(reader);

    // Without the key: the chunks cannot be decoded.
    let reader = BackupReader::start(&client, None, STORE, &root_ns, &secret_dir, true)
        .await
        .unwrap();
    let (manifest, _) = reader.download_manifest().await.unwrap();
    let err = restore_dynamic(&reader, &manifest, "secret.didx", None)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("missing CryptConfig"),
        "{err:#}"
    );
    drop(reader);
    // With another key: the manifest signature does not verify.
    let other = Arc::new(CryptConfig::new([0x11; 32]).unwrap());
    let reader = BackupReader::start(&client, Some(other), STORE, &root_ns, &secret_dir, true)
        .await
        .unwrap();
    let err = reader.download_manifest().await.unwrap_err();
    assert!(format!("{err:#}").contains("wrong key"), "{err:#}");
    drop(reader);

    // --- TLS upload benchmark ---
    let now = pbs_api_types::time::epoch_now();
    let bench = BackupWriter::start(
        &client,
        None,
        STORE,
        &root_ns,
        &snapshot("benchmark", now),
        false,
        true,
    )
    .await
    .expect("benchmark session");
    let speed = bench.speedtest().await.expect("speedtest");
    assert!(speed.chunks > 1, "{speed:?}");
    assert!(speed.elapsed >= Duration::from_secs(5), "{speed:?}");
    assert!(speed.speed > 0.0);
    assert!(speed.log_lines()[0].starts_with(&format!("Uploaded {} chunks in ", speed.chunks)));
    drop(bench);

    // --- the server dies in the middle of an upload ---
    let writer = BackupWriter::start(
        &client,
        None,
        STORE,
        &root_ns,
        &snapshot("dies", T1),
        true,
        false,
    )
    .await
    .unwrap();
    let proxy_pid = server.child_pid(Target::Proxy);
    let endless = futures::stream::iter(0u64..).then(move |i| async move {
        if i == 20 {
            // SAFETY: SIGKILL to the proxy child process this test started.
            unsafe { libc::kill(proxy_pid, libc::SIGKILL) };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, Error>(Bytes::from(noise(256 * 1024, i + 100)))
    });
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        writer.upload_stream("dies.didx", endless, Some(DYNAMIC_AVG), compress, None),
    )
    .await
    .expect("the upload must fail quickly once the server is gone");
    let err = result.expect_err("upload to a dead server");
    let text = format!("{err:#}");
    eprintln!("upload to a killed server failed with: {text}");
    assert!(text.contains("upload of 'dies.didx' failed"), "{text}");
}

fn count_chunk_files(store_path: &Path) -> usize {
    let mut count = 0;
    for prefix in std::fs::read_dir(store_path.join(".chunks")).unwrap() {
        let prefix = prefix.unwrap().path();
        count += std::fs::read_dir(prefix).unwrap().count();
    }
    count
}
