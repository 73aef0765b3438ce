//! `proxmox-backup-debug` on files the project itself wrote: a chunk store with plain and
//! encrypted chunks, a blob, a fixed and a dynamic index.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use pbs_datastore::chunk_store::{ChunkStore, DatastoreFSyncLevel};
use pbs_datastore::key_config::{Kdf, KeyConfig};
use pbs_datastore::{
    CryptConfig, DataBlob, DataChunkBuilder, DynamicIndexWriter, FixedIndexWriter,
};

const KEY: [u8; 32] = [9u8; 32];
const PASSWORD: &str = "debug-test-password";

fn debug_tool(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxmox-backup-debug"))
        .args(args)
        .current_dir(cwd)
        .env("PBS_ENCRYPTION_PASSWORD", PASSWORD)
        .env_remove("PROXMOX_OUTPUT_FORMAT")
        .output()
        .expect("run proxmox-backup-debug")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<ChunkStore>,
    data: Vec<u8>,
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

/// Chunk stores have 65536 directories: on tmpfs they are created in a fraction of the time.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("pbs-debug-test")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn fixture() -> Fixture {
    let dir = scratch_dir();
    let root = dir.path().to_path_buf();
    let store = Arc::new(
        ChunkStore::create("debugtest", root.join("store"), DatastoreFSyncLevel::None).unwrap(),
    );
    // Three chunks of differing sizes; the middle one compresses, the others do not.
    let mut data = pseudo_random(100_000, 1);
    data.extend(std::iter::repeat_n(b'x', 50_000));
    data.extend(pseudo_random(30_000, 2));
    Fixture {
        _dir: dir,
        root,
        store,
        data,
    }
}

fn write_plain_indexes(fx: &Fixture) -> (PathBuf, PathBuf) {
    let fidx = fx.root.join("disk.img.fidx");
    let mut fixed =
        FixedIndexWriter::create(fx.store.clone(), &fidx, fx.data.len() as u64, 65536).unwrap();
    for (i, chunk) in fx.data.chunks(65536).enumerate() {
        let (blob, digest) = DataChunkBuilder::new(chunk).compress(true).build().unwrap();
        fx.store.insert_chunk(blob.raw_data(), &digest).unwrap();
        fixed.add_digest(i, &digest).unwrap();
    }
    fixed.close().unwrap();

    let didx = fx.root.join("root.pxar.didx");
    let mut dynamic = DynamicIndexWriter::create(fx.store.clone(), &didx).unwrap();
    let mut end = 0u64;
    for chunk in [
        &fx.data[..100_000],
        &fx.data[100_000..150_000],
        &fx.data[150_000..],
    ] {
        let (blob, digest) = DataChunkBuilder::new(chunk).compress(true).build().unwrap();
        fx.store.insert_chunk(blob.raw_data(), &digest).unwrap();
        end += chunk.len() as u64;
        dynamic.add_chunk(end, &digest).unwrap();
    }
    dynamic.close().unwrap();
    (fidx, didx)
}

#[test]
fn inspect_blob_and_decode_to_stdout() {
    let fx = fixture();
    let blob = DataBlob::encode(b"Hello PBS\n", None, true).unwrap();
    let path = fx.root.join("qemu-server.conf.blob");
    std::fs::write(&path, blob.raw_data()).unwrap();

    let info = json_of(&debug_tool(
        &[
            "inspect",
            "file",
            path.to_str().unwrap(),
            "--output-format",
            "json",
        ],
        &fx.root,
    ));
    assert_eq!(info["encryption"], "none");
    assert_eq!(info["size"], 22);
    assert_eq!(info["crc_status"], "ok");

    let out = debug_tool(
        &["inspect", "file", path.to_str().unwrap(), "--decode", "-"],
        &fx.root,
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"Hello PBS\n");

    // A flipped payload byte is reported, and decoding refuses.
    let mut raw = blob.raw_data().to_vec();
    raw[15] ^= 0x20;
    std::fs::write(&path, &raw).unwrap();
    let info = json_of(&debug_tool(
        &[
            "inspect",
            "file",
            path.to_str().unwrap(),
            "--output-format",
            "json",
        ],
        &fx.root,
    ));
    assert_eq!(info["crc_status"], "bad");
    let out = debug_tool(
        &["inspect", "file", path.to_str().unwrap(), "--decode", "-"],
        &fx.root,
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRC"));
}

#[test]
fn inspect_indexes_and_chunks() {
    let fx = fixture();
    let (fidx, didx) = write_plain_indexes(&fx);

    let info = json_of(&debug_tool(
        &[
            "inspect",
            "file",
            fidx.to_str().unwrap(),
            "--output-format",
            "json",
        ],
        &fx.root,
    ));
    assert_eq!(info["size"], fx.data.len());
    assert_eq!(info["chunk-count"], 3);
    let first = info["chunk-digests"][0].as_str().unwrap().to_string();
    assert_eq!(first, hex::encode(openssl::sha::sha256(&fx.data[..65536])));

    let info = json_of(&debug_tool(
        &[
            "inspect",
            "file",
            didx.to_str().unwrap(),
            "--output-format",
            "json",
        ],
        &fx.root,
    ));
    assert_eq!(info["chunk-digests"][2]["end"], fx.data.len());

    // A chunk of both indexes: referenced by the dynamic one only (different boundaries).
    let digest = hex::encode(openssl::sha::sha256(&fx.data[100_000..150_000]));
    let chunk = fx
        .store
        .chunk_path(&openssl::sha::sha256(&fx.data[100_000..150_000]));
    let out_file = fx.root.join("chunk.out");
    let info = json_of(&debug_tool(
        &[
            "inspect",
            "chunk",
            chunk.to_str().unwrap(),
            "--reference-filter",
            fx.root.to_str().unwrap(),
            "--use-filename-only",
            "--decode",
            out_file.to_str().unwrap(),
            "--output-format",
            "json",
        ],
        &fx.root,
    ));
    assert_eq!(info["digest"], digest);
    assert_eq!(info["crc_status"], "ok");
    assert_eq!(info["digest_status"], "ok");
    assert_eq!(info["compressed"], true);
    assert_eq!(info["referenced-by"], serde_json::json!(["root.pxar.didx"]));
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        &fx.data[100_000..150_000]
    );

    // Text output names each field.
    let out = debug_tool(&["inspect", "chunk", chunk.to_str().unwrap()], &fx.root);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("digest: {digest}")));
}

#[test]
fn recover_index_restores_the_data() {
    let fx = fixture();
    let (fidx, didx) = write_plain_indexes(&fx);
    let chunks = fx.root.join("store/.chunks");
    for index in [&fidx, &didx] {
        let out = debug_tool(
            &[
                "recover",
                "index",
                index.to_str().unwrap(),
                chunks.to_str().unwrap(),
            ],
            &fx.root,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = index.file_stem().unwrap();
        assert_eq!(std::fs::read(fx.root.join(stem)).unwrap(), fx.data);
    }

    // Remove one chunk: recovery fails, unless told to fill the gap with zeros.
    let missing = openssl::sha::sha256(&fx.data[65536..131072]);
    std::fs::remove_file(fx.store.chunk_path(&missing)).unwrap();
    let out = debug_tool(
        &[
            "recover",
            "index",
            fidx.to_str().unwrap(),
            chunks.to_str().unwrap(),
        ],
        &fx.root,
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&hex::encode(missing)));
    let target = fx.root.join("partial.img");
    let out = debug_tool(
        &[
            "recover",
            "index",
            fidx.to_str().unwrap(),
            chunks.to_str().unwrap(),
            "--ignore-missing-chunks",
            "--output-path",
            target.to_str().unwrap(),
        ],
        &fx.root,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = std::fs::read(&target).unwrap();
    assert_eq!(&restored[..65536], &fx.data[..65536]);
    assert!(restored[65536..131072].iter().all(|b| *b == 0));
    assert_eq!(&restored[131072..], &fx.data[131072..]);
}

#[test]
fn encrypted_chunks_need_the_key() {
    let fx = fixture();
    let key_path = fx.root.join("key.json");
    KeyConfig::with_key(&KEY, PASSWORD.as_bytes(), Kdf::Pbkdf2)
        .unwrap()
        .store(&key_path, false)
        .unwrap();
    let config = CryptConfig::new(KEY).unwrap();
    let plain = &fx.data[..100_000];
    let (blob, digest) = DataChunkBuilder::new(plain)
        .crypt_config(&config)
        .compress(true)
        .build()
        .unwrap();
    fx.store.insert_chunk(blob.raw_data(), &digest).unwrap();
    let chunk = fx.store.chunk_path(&digest);
    let chunk = chunk.to_str().unwrap();

    let info = json_of(&debug_tool(
        &["inspect", "chunk", chunk, "--output-format", "json"],
        &fx.root,
    ));
    assert_eq!(info["encryption"], "encrypt");
    assert!(
        info.get("digest_status").is_none(),
        "no key, no digest check"
    );

    let out = debug_tool(&["inspect", "chunk", chunk, "--decode", "-"], &fx.root);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keyfile"));

    let out = debug_tool(
        &[
            "inspect",
            "chunk",
            chunk,
            "--decode",
            "-",
            "--keyfile",
            key_path.to_str().unwrap(),
        ],
        &fx.root,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plain);

    // A different key fails to decrypt, with the chunk named in the message.
    let other_path = fx.root.join("other.json");
    KeyConfig::with_key(&[3u8; 32], PASSWORD.as_bytes(), Kdf::Pbkdf2)
        .unwrap()
        .store(&other_path, false)
        .unwrap();
    let out = debug_tool(
        &[
            "inspect",
            "chunk",
            chunk,
            "--decode",
            "-",
            "--keyfile",
            other_path.to_str().unwrap(),
        ],
        &fx.root,
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&hex::encode(digest)));
}

#[test]
fn bad_arguments_fail_with_exit_code_255() {
    let dir = tempfile::tempdir().unwrap();
    let out = debug_tool(&["inspect", "file"], dir.path());
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'file': missing argument"));
    let junk = dir.path().join("junk.fidx");
    std::fs::write(&junk, b"not an index at all").unwrap();
    let out = debug_tool(&["inspect", "file", junk.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.fidx"));
}
