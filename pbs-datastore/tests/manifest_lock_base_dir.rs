//! Manifest lock files live below `$PBS_BASE_DIR/run/proxmox-backup/locks`.
//!
//! The environment is process-global, so this file holds a single test.

use pbs_api_types::{BackupDir, BackupNamespace};
use pbs_datastore::DataStore;

#[test]
fn manifest_lock_follows_pbs_base_dir() {
    // tmpfs: creating the chunk store's 65536 directories on a busy disk takes minutes.
    let tmp = tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let base = tmp.path().join("root");
    let store_path = tmp.path().join("store");
    pbs_datastore::ChunkStore::create(
        "store1",
        &store_path,
        pbs_datastore::DatastoreFSyncLevel::None,
    )
    .unwrap();
    std::env::set_var("PBS_BASE_DIR", &base);

    let store = DataStore::open("store1", &store_path).unwrap();
    let ns = BackupNamespace::new("a/b").unwrap();
    let dir: BackupDir = "vm/100/2020-06-26T13:56:05Z".parse().unwrap();
    let expected = base.join(
        "run/proxmox-backup/locks/store1/ns/a/ns/b/vm/100/2020-06-26T13:56:05Z/2020-06-26T13:56:05Z.index.json.lck",
    );
    assert_eq!(store.manifest_lock_path(&ns, &dir).unwrap(), expected);
    assert_eq!(
        pbs_datastore::locks::manifest_lock_path("store1", &ns, &dir).unwrap(),
        expected
    );
    let _guard = store.lock_manifest(&ns, &dir).unwrap();
    assert!(expected.is_file());
}
