//! Verify on a real datastore: every missing or corrupt chunk is found, corrupt chunks are
//! renamed to `.bad`, and the result lands in the manifest's `verify_state`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use pbs_api_types::{Authid, BackupDir, BackupNamespace, CryptMode};
use pbs_datastore::datastore::DataStoreTuning;
use pbs_datastore::manifest::{BackupManifest, VerifyState};
use pbs_datastore::verify::{ChunkOrder, SnapshotVerifyOutcome, VerifyContext, VerifyFilter};
use pbs_datastore::{DataBlob, DataChunkBuilder, DataStore, DynamicIndexWriter, FixedIndexWriter};

const UPID: &str = "UPID:pbs:00000F2A:0000A1B3:00000003:66603A80:verify:store1:root@pam:";

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("pbs-verify-test")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn chunk_data(i: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    (0..8192 + i * 100)
        .map(|n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half of each chunk compresses, so both blob kinds are exercised.
            if n % 2 == 0 {
                b'a'
            } else {
                (x >> 32) as u8
            }
        })
        .collect()
}

/// Writes a finished snapshot with a `.didx` of 10 chunks, a `.fidx` of 3 and a config blob.
fn write_snapshot(store: &DataStore, dir: &BackupDir) -> Vec<[u8; 32]> {
    let ns = BackupNamespace::root();
    let owner: Authid = "backup@pbs".parse().unwrap();
    let (_, _group_guard) = store
        .create_locked_backup_group(&ns, &dir.group, &owner)
        .unwrap();
    let (relative, _dir_guard) = store.create_new_locked_backup_dir(&ns, dir).unwrap();
    let path = store.base_path().join(relative);
    let mut manifest = BackupManifest::new(dir.group.ty.as_str(), &dir.group.id, dir.time);
    let mut digests = Vec::new();

    let mut writer =
        DynamicIndexWriter::create(store.chunk_store().clone(), path.join("root.pxar.didx"))
            .unwrap();
    let mut end = 0u64;
    for i in 0..10 {
        let data = chunk_data(i);
        let (blob, digest) = DataChunkBuilder::new(&data).compress(true).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        end += data.len() as u64;
        writer.add_chunk(end, &digest).unwrap();
        digests.push(digest);
    }
    let csum = writer.close().unwrap();
    manifest
        .add_file("root.pxar.didx", end, csum, CryptMode::None)
        .unwrap();

    let image: Vec<u8> = (0..3)
        .flat_map(|i| chunk_data(100 + i)[..4096].to_vec())
        .collect();
    let mut writer = FixedIndexWriter::create(
        store.chunk_store().clone(),
        path.join("disk.img.fidx"),
        image.len() as u64,
        4096,
    )
    .unwrap();
    for (i, data) in image.chunks(4096).enumerate() {
        let (blob, digest) = DataChunkBuilder::new(data).build().unwrap();
        store
            .chunk_store()
            .insert_chunk(blob.raw_data(), &digest)
            .unwrap();
        writer.add_digest(i, &digest).unwrap();
    }
    let csum = writer.close().unwrap();
    manifest
        .add_file("disk.img.fidx", image.len() as u64, csum, CryptMode::None)
        .unwrap();

    let conf = DataBlob::encode(b"memory: 1024\n", None, true).unwrap();
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
    digests
}

fn context(store: &DataStore) -> (VerifyContext, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let ctx = VerifyContext::new(
        store.chunk_store().clone(),
        ChunkOrder::Inode,
        Box::new(move |line: &str| sink.lock().unwrap().push(line.to_string())),
    );
    (ctx, lines)
}

fn verify_state(store: &DataStore, dir: &BackupDir) -> Option<VerifyState> {
    let (manifest, _) = store.load_manifest(&BackupNamespace::root(), dir).unwrap();
    manifest.verify_state().unwrap().map(|s| {
        assert_eq!(s.upid, UPID);
        s.state
    })
}

fn never() -> bool {
    false
}

#[test]
fn intact_snapshot_verifies_ok_and_records_it() {
    let tmp = scratch();
    let store = DataStore::create(
        "store1",
        tmp.path().join("ds"),
        tmp.path().join("locks"),
        DataStoreTuning::default(),
        &|_| {},
    )
    .unwrap();
    let dir: BackupDir = "vm/100/2024-05-01T10:00:00Z".parse().unwrap();
    write_snapshot(&store, &dir);
    let (ctx, _) = context(&store);
    let ns = BackupNamespace::root();
    let outcome = ctx
        .verify_backup_dir(&store, &ns, &dir, UPID, None, &never)
        .unwrap();
    assert_eq!(outcome, SnapshotVerifyOutcome::Ok);
    assert_eq!(verify_state(&store, &dir), Some(VerifyState::Ok));

    // A verification job with the default filter skips it now; re-verifies once outdated.
    let filter = VerifyFilter::default();
    let now = 0x66603A80 + 86_400 * 3;
    let (ctx, lines) = context(&store);
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &dir, UPID, Some((&filter, now)), &never)
            .unwrap(),
        SnapshotVerifyOutcome::Skipped
    );
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("recently verified")));
    let outdated = VerifyFilter {
        ignore_verified: true,
        outdated_after: Some(2),
    };
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &dir, UPID, Some((&outdated, now)), &never)
            .unwrap(),
        SnapshotVerifyOutcome::Ok
    );
    let fresh = VerifyFilter {
        ignore_verified: true,
        outdated_after: Some(3),
    };
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &dir, UPID, Some((&fresh, now)), &never)
            .unwrap(),
        SnapshotVerifyOutcome::Skipped
    );
}

#[test]
fn every_damaged_chunk_is_found_and_renamed() {
    let tmp = scratch();
    let store = DataStore::create(
        "store1",
        tmp.path().join("ds"),
        tmp.path().join("locks"),
        DataStoreTuning::default(),
        &|_| {},
    )
    .unwrap();
    let dir: BackupDir = "ct/200/2024-05-01T10:00:00Z".parse().unwrap();
    let digests = write_snapshot(&store, &dir);
    let cs = store.chunk_store();

    // Four kinds of damage on four chunks.
    let flipped = digests[1];
    let mut raw = std::fs::read(cs.chunk_path(&flipped)).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x01; // payload bit flip: CRC mismatch
    std::fs::write(cs.chunk_path(&flipped), &raw).unwrap();

    let truncated = digests[4];
    let raw = std::fs::read(cs.chunk_path(&truncated)).unwrap();
    std::fs::write(cs.chunk_path(&truncated), &raw[..raw.len() / 2]).unwrap();

    // Valid blob with a correct CRC but other content: only the digest check can see it.
    let swapped = digests[6];
    let other = DataBlob::encode(&chunk_data(6)[..1000], None, false).unwrap();
    std::fs::write(cs.chunk_path(&swapped), other.raw_data()).unwrap();

    let missing = digests[8];
    std::fs::remove_file(cs.chunk_path(&missing)).unwrap();

    let (ctx, lines) = context(&store);
    let outcome = ctx
        .verify_backup_dir(&store, &BackupNamespace::root(), &dir, UPID, None, &never)
        .unwrap();
    assert_eq!(outcome, SnapshotVerifyOutcome::Failed);
    assert_eq!(verify_state(&store, &dir), Some(VerifyState::Failed));

    let mut found = ctx.corrupt_chunks();
    found.sort();
    let mut expected = vec![flipped, truncated, swapped, missing];
    expected.sort();
    assert_eq!(found, expected, "log: {:#?}", lines.lock().unwrap());

    for digest in [flipped, truncated, swapped] {
        let path = cs.chunk_path(&digest);
        assert!(
            !path.exists(),
            "corrupt chunk {} still in place",
            hex::encode(digest)
        );
        let bad = path.with_file_name(format!("{}.0.bad", hex::encode(digest)));
        assert!(bad.is_file(), "no {bad:?}");
    }
    // Intact chunks stay where they are.
    for digest in digests.iter().filter(|d| !expected.contains(d)) {
        assert!(cs.chunk_path(digest).is_file());
    }

    // A second pass in the same task reports the known-corrupt chunks again without rereading.
    let failed = ctx
        .verify_all_backups(&store, &BackupNamespace::root(), None, UPID, None, &never)
        .unwrap();
    assert_eq!(failed, vec!["ct/200/2024-05-01T10:00:00Z".to_string()]);
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("was marked as corrupt")));
}

#[test]
fn damaged_blob_and_index_fail_the_snapshot() {
    let tmp = scratch();
    let store = DataStore::create(
        "store1",
        tmp.path().join("ds"),
        tmp.path().join("locks"),
        DataStoreTuning::default(),
        &|_| {},
    )
    .unwrap();
    let ns = BackupNamespace::root();
    let dir: BackupDir = "host/a/2024-05-01T10:00:00Z".parse().unwrap();
    write_snapshot(&store, &dir);
    let path = store.snapshot_path(&ns, &dir).unwrap();

    let blob_path = path.join("qemu-server.conf.blob");
    let mut raw = std::fs::read(&blob_path).unwrap();
    raw[13] ^= 0x40;
    std::fs::write(&blob_path, &raw).unwrap();
    let (ctx, lines) = context(&store);
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &dir, UPID, None, &never)
            .unwrap(),
        SnapshotVerifyOutcome::Failed
    );
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("qemu-server.conf.blob failed")));

    // Index whose digest list no longer matches the manifest checksum.
    let dir2: BackupDir = "host/a/2024-05-02T10:00:00Z".parse().unwrap();
    write_snapshot(&store, &dir2);
    let fidx = store
        .snapshot_path(&ns, &dir2)
        .unwrap()
        .join("disk.img.fidx");
    let mut raw = std::fs::read(&fidx).unwrap();
    raw[4096] ^= 0xff;
    std::fs::write(&fidx, &raw).unwrap();
    let (ctx, lines) = context(&store);
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &dir2, UPID, None, &never)
            .unwrap(),
        SnapshotVerifyOutcome::Failed
    );
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("disk.img.fidx failed: wrong index checksum")));

    // A vanished snapshot is skipped, not failed.
    let gone: BackupDir = "host/a/2024-05-03T10:00:00Z".parse().unwrap();
    assert_eq!(
        ctx.verify_backup_dir(&store, &ns, &gone, UPID, None, &never)
            .unwrap(),
        SnapshotVerifyOutcome::Skipped
    );
}
