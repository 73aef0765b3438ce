use pbs_api_types::{Authid, BackupType};

use super::*;
use crate::group_files;
use crate::hierarchy::SnapshotFilter;
use crate::locks::LockMode;

struct Fixture {
    _tmp: tempfile::TempDir,
    store: DataStore,
    lock_dir: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = crate::chunk_store::test_store::store_tempdir();
    let base = tmp.path().join("store");
    let lock_dir = tmp.path().join("locks");
    let store = DataStore::create(
        "store1",
        &base,
        &lock_dir,
        DataStoreTuning::default(),
        &|_| {},
    )
    .unwrap();
    Fixture {
        _tmp: tmp,
        store,
        lock_dir,
    }
}

fn ns(s: &str) -> BackupNamespace {
    BackupNamespace::new(s).unwrap()
}
fn group(s: &str) -> BackupGroup {
    s.parse().unwrap()
}
fn snap(s: &str) -> BackupDir {
    s.parse().unwrap()
}
fn auth(s: &str) -> Authid {
    s.parse().unwrap()
}

/// Creates a snapshot directory with the given files (no locks kept).
fn make_snapshot(store: &DataStore, ns: &BackupNamespace, dir: &BackupDir, files: &[&str]) {
    let path = store.snapshot_path(ns, dir).unwrap();
    std::fs::create_dir_all(&path).unwrap();
    for f in files {
        std::fs::write(path.join(f), b"x").unwrap();
    }
}

fn finished(store: &DataStore, ns: &BackupNamespace, dir: &str) {
    make_snapshot(
        store,
        ns,
        &snap(dir),
        &["index.json.blob", "root.pxar.didx"],
    );
}

#[test]
fn open_checks_name_and_path() {
    let f = fixture();
    assert!(DataStore::open("ab", f.store.base_path()).is_err());
    assert!(DataStore::open("store2", f.store.base_path().join("missing")).is_err());
    assert_eq!(f.store.name(), "store1");
}

#[test]
fn namespace_create_rules() {
    let f = fixture();
    let s = &f.store;
    assert!(s.namespace_exists(&BackupNamespace::root()));
    let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
    let ab = s.create_namespace(&a, "b").unwrap();
    assert_eq!(ab.to_string(), "a/b");
    assert!(s.base_path().join("ns/a/ns/b").is_dir());
    assert_eq!(s.namespace_path(&ab), s.base_path().join("ns/a/ns/b"));
    // creating an existing namespace again is fine (mkdir -p)
    s.create_namespace(&a, "b").unwrap();

    let err = s.create_namespace(&ns("x/y"), "z").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot create new namespace, parent x/y doesn't already exists"
    );
    assert!(matches!(
        err.downcast_ref::<HierarchyError>(),
        Some(HierarchyError::ParentNamespaceMissing(_))
    ));
    assert!(s.create_namespace(&a, "bad/name").is_err());
    assert!(s.create_namespace(&a, ".hidden").is_err());

    let mut deep = BackupNamespace::root();
    for name in ["1", "2", "3", "4", "5", "6", "7"] {
        deep = s.create_namespace(&deep, name).unwrap();
    }
    assert_eq!(
        s.create_namespace(&deep, "8").unwrap_err().to_string(),
        "namespace too deep, 7 >= max 7"
    );
}

#[test]
fn namespace_walk_order_and_depth() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let b = s.create_namespace(&root, "b").unwrap();
    let a = s.create_namespace(&root, "a").unwrap();
    s.create_namespace(&a, "y").unwrap();
    let ax = s.create_namespace(&a, "x").unwrap();
    s.create_namespace(&ax, "deep").unwrap();
    s.create_namespace(&b, "z").unwrap();
    // junk below ns/: a file and a directory with an invalid name
    std::fs::write(s.base_path().join("ns/file"), b"").unwrap();
    std::fs::create_dir(s.base_path().join("ns/.bad")).unwrap();

    let walk = |start: &BackupNamespace, depth| -> Vec<String> {
        s.iter_namespaces_recursive(start, depth)
            .map(|ns| ns.unwrap().to_string())
            .collect()
    };
    assert_eq!(
        walk(&root, None),
        ["", "a", "a/x", "a/x/deep", "a/y", "b", "b/z"]
    );
    assert_eq!(walk(&root, Some(0)), [""]);
    assert_eq!(walk(&root, Some(1)), ["", "a", "b"]);
    assert_eq!(walk(&a, Some(1)), ["a", "a/x", "a/y"]);
    assert_eq!(walk(&a, None), ["a", "a/x", "a/x/deep", "a/y"]);
}

#[test]
fn namespace_removal_rules() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let a = s.create_namespace(&root, "a").unwrap();
    let ab = s.create_namespace(&a, "b").unwrap();
    let empty = s.create_namespace(&root, "empty").unwrap();

    // empty namespaces go away without deleting groups
    assert!(s.remove_namespace_recursive(&empty, false).unwrap());
    assert!(!s.namespace_exists(&empty));

    finished(s, &ab, "vm/100/2020-01-01T00:00:00Z");
    finished(s, &ab, "vm/100/2020-01-02T00:00:00Z");
    finished(s, &a, "ct/7/2020-01-01T00:00:00Z");

    // groups are kept unless requested: nothing is removed
    assert!(!s.remove_namespace_recursive(&a, false).unwrap());
    assert_eq!(s.list_snapshots(&ab, &group("vm/100")).unwrap().len(), 2);
    assert!(s.namespace_exists(&ab));

    // a protected snapshot keeps its group and namespaces alive
    s.set_protection(&ab, &snap("vm/100/2020-01-01T00:00:00Z"), true)
        .unwrap();
    assert!(!s.remove_namespace_recursive(&a, true).unwrap());
    let left = s.list_snapshots(&ab, &group("vm/100")).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].protected);
    assert!(s.namespace_exists(&ab));
    assert!(s.list_groups(&a).unwrap().is_empty());
    assert!(!s.namespace_path(&a).join("ct").exists());

    s.set_protection(&ab, &snap("vm/100/2020-01-01T00:00:00Z"), false)
        .unwrap();
    assert!(s.remove_namespace_recursive(&a, true).unwrap());
    assert!(!s.namespace_exists(&a));
    assert!(s.namespace_exists(&root));
    assert_eq!(
        s.iter_namespaces_recursive(&root, None).count(),
        1,
        "only the root is left"
    );
}

/// Datastore with junk that listings must ignore.
fn junk_fixture() -> Fixture {
    let f = fixture();
    let base = f.store.base_path().to_path_buf();
    for dir in [
        ".chunks/0000",
        "vm/100/2020-01-01T00:00:00Z",
        "vm/100/2020-01-02T00:00:00Z",
        "vm/100/not-a-time",
        "vm/100/2020-13-45T00:00:00Z",
        "vm/100/2020-01-01T00:00:60Z",
        "vm/.hidden",
        "vm/bad name",
        "vm/9",
        "host/elsa",
        "xx/100",
        "VM/100",
    ] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    for file in [
        "vm/101",
        "ct",
        "vm/100/2020-01-03T00:00:00Z",
        "vm/100/owner",
    ] {
        std::fs::write(base.join(file), b"").unwrap();
    }
    std::fs::write(
        base.join("vm/100/2020-01-02T00:00:00Z/index.json.blob"),
        b"",
    )
    .unwrap();
    f
}

#[test]
fn listing_ignores_junk() {
    let f = junk_fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let groups: Vec<String> = s
        .list_groups(&root)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(groups, ["host/elsa", "vm/9", "vm/100"]);
    let mut lazy: Vec<BackupGroup> = s
        .iter_backup_groups(&root)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    lazy.sort();
    assert_eq!(lazy, s.list_groups(&root).unwrap());

    let snaps = s.list_snapshots(&root, &group("vm/100")).unwrap();
    let names: Vec<String> = snaps.iter().map(|i| i.backup_dir.to_string()).collect();
    assert_eq!(
        names,
        ["vm/100/2020-01-01T00:00:00Z", "vm/100/2020-01-02T00:00:00Z"]
    );
    assert!(!snaps[0].is_finished());
    assert!(snaps[1].is_finished());
    assert!(s.list_snapshots(&root, &group("vm/404")).is_err());
    assert!(s.list_groups(&ns("missing")).is_err());
}

#[test]
fn filtered_snapshot_listing() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let a = s.create_namespace(&root, "a").unwrap();
    let ab = s.create_namespace(&a, "b").unwrap();
    finished(s, &root, "vm/1/2020-01-01T00:00:00Z");
    finished(s, &root, "ct/2/2020-01-01T00:00:00Z");
    finished(s, &a, "vm/1/2020-01-02T00:00:00Z");
    finished(s, &ab, "vm/1/2020-01-03T00:00:00Z");
    finished(s, &ab, "host/h/2020-01-03T00:00:00Z");

    let list = |ns: &BackupNamespace, depth, filter: SnapshotFilter| -> Vec<String> {
        s.list_snapshots_filtered(ns, depth, &filter)
            .unwrap()
            .iter()
            .map(|i| format!("{}:{}", i.ns, i.backup_dir))
            .collect()
    };
    assert_eq!(
        list(&root, Some(0), SnapshotFilter::default()),
        [":ct/2/2020-01-01T00:00:00Z", ":vm/1/2020-01-01T00:00:00Z"]
    );
    let vm = SnapshotFilter {
        backup_type: Some(BackupType::Vm),
        group: None,
    };
    assert_eq!(
        list(&root, None, vm.clone()),
        [
            ":vm/1/2020-01-01T00:00:00Z",
            "a:vm/1/2020-01-02T00:00:00Z",
            "a/b:vm/1/2020-01-03T00:00:00Z"
        ]
    );
    assert_eq!(list(&a, Some(0), vm), ["a:vm/1/2020-01-02T00:00:00Z"]);
    let host_h = SnapshotFilter {
        backup_type: None,
        group: Some(group("host/h")),
    };
    assert_eq!(
        list(&root, None, host_h.clone()),
        ["a/b:host/h/2020-01-03T00:00:00Z"]
    );
    assert!(list(&root, Some(1), host_h).is_empty());
}

#[test]
fn last_successful_backup_ignores_unfinished() {
    let f = junk_fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let g = group("vm/100");
    let t2 = pbs_api_types::time::parse_rfc3339("2020-01-02T00:00:00Z").unwrap();
    assert_eq!(s.last_successful_backup(&root, &g).unwrap(), Some(t2));
    // a newer unfinished snapshot changes nothing
    make_snapshot(s, &root, &snap("vm/100/2020-02-01T00:00:00Z"), &["a.didx"]);
    assert_eq!(s.last_successful_backup(&root, &g).unwrap(), Some(t2));
    assert_eq!(
        s.last_backup(&root, &g, true)
            .unwrap()
            .unwrap()
            .backup_dir
            .time,
        t2
    );
    assert_eq!(
        s.last_backup(&root, &g, false)
            .unwrap()
            .unwrap()
            .backup_dir
            .to_string(),
        "vm/100/2020-02-01T00:00:00Z"
    );
    assert_eq!(
        s.last_successful_backup(&root, &group("vm/9")).unwrap(),
        None
    );
    assert_eq!(
        s.last_successful_backup(&root, &group("vm/404")).unwrap(),
        None
    );
    assert!(s
        .last_backup(&root, &group("vm/9"), false)
        .unwrap()
        .is_none());
}

#[test]
fn locked_group_creation_owner_and_conflict() {
    let f = fixture();
    let s = &f.store;
    let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
    let g = group("vm/100");
    let alice_token = auth("alice@pbs!backup");

    let (owner, guard) = s.create_locked_backup_group(&a, &g, &alice_token).unwrap();
    assert_eq!(owner, alice_token);
    let owner_file = s.group_path(&a, &g).join("owner");
    assert_eq!(std::fs::read(&owner_file).unwrap(), b"alice@pbs!backup\n");

    // a second open of the directory conflicts even within this process
    let err = s
        .create_locked_backup_group(&a, &g, &alice_token)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unable to acquire lock on backup group directory {:?} - another backup is already running",
            s.group_path(&a, &g)
        )
    );
    assert!(err.downcast_ref::<locks::LockError>().unwrap().is_busy());
    drop(guard);

    // an existing group keeps its owner; the caller checks it
    let (owner, _guard) = s
        .create_locked_backup_group(&a, &g, &auth("bob@pbs"))
        .unwrap();
    assert_eq!(owner, alice_token);
    assert!(group_files::check_backup_owner(&owner, &auth("bob@pbs")).is_err());
    assert!(group_files::check_backup_owner(&owner, &auth("alice@pbs")).is_ok());

    let err = s
        .create_locked_backup_group(&ns("missing"), &g, &alice_token)
        .unwrap_err();
    assert_eq!(err.to_string(), "namespace not found");
    assert!(!s.namespace_path(&ns("missing")).exists());
}

#[test]
fn owner_change() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let g = group("ct/1");
    drop(
        s.create_locked_backup_group(&root, &g, &auth("a@pbs"))
            .unwrap(),
    );
    assert!(s.set_owner(&root, &g, &auth("b@pbs"), false).is_err());
    assert_eq!(s.get_owner(&root, &g).unwrap(), auth("a@pbs"));
    s.set_owner(&root, &g, &auth("b@pbs!t"), true).unwrap();
    assert_eq!(s.get_owner(&root, &g).unwrap(), auth("b@pbs!t"));
    assert!(s.get_owner(&root, &group("ct/2")).is_err());
}

#[test]
fn group_notes() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let g = group("host/x");
    assert!(s.set_group_notes(&root, &g, "n").is_err());
    drop(
        s.create_locked_backup_group(&root, &g, &auth("a@pbs"))
            .unwrap(),
    );
    assert_eq!(s.get_group_notes(&root, &g).unwrap(), "");
    s.set_group_notes(&root, &g, "line 1\nline 2").unwrap();
    assert_eq!(s.get_group_notes(&root, &g).unwrap(), "line 1\nline 2");
    // notes are no snapshot and no junk for listings
    assert!(s.list_snapshots(&root, &g).unwrap().is_empty());
}

#[test]
fn locked_snapshot_creation() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let dir = BackupDir::new(group("vm/100"), 1593179765).unwrap();
    drop(
        s.create_locked_backup_group(&root, &dir.group, &auth("a@pbs"))
            .unwrap(),
    );

    let (relative, is_new, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
    assert_eq!(relative, PathBuf::from("vm/100/2020-06-26T13:56:05Z"));
    assert!(is_new);
    assert!(s.create_locked_backup_dir(&root, &dir).is_err());
    assert!(s
        .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
        .is_err());
    drop(guard);

    let (_, is_new, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
    assert!(!is_new);
    drop(guard);
    let err = s.create_new_locked_backup_dir(&root, &dir).unwrap_err();
    assert_eq!(err.to_string(), "backup directory already exists.");
}

#[test]
fn shared_and_exclusive_snapshot_locks() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    finished(s, &root, "vm/1/2020-01-01T00:00:00Z");
    let dir = snap("vm/1/2020-01-01T00:00:00Z");

    let r1 = s
        .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
        .unwrap();
    let r2 = s
        .lock_snapshot(&root, &dir, LockMode::Shared, "busy")
        .unwrap();
    let err = s
        .lock_snapshot(
            &root,
            &dir,
            LockMode::Exclusive,
            "possibly running or in use",
        )
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("unable to acquire lock on snapshot directory"));
    // readers block removal and protection changes
    assert!(s.remove_backup_dir(&root, &dir, false).is_err());
    assert!(s.set_protection(&root, &dir, true).is_err());
    drop((r1, r2));

    let w = s
        .lock_snapshot(&root, &dir, LockMode::Exclusive, "in use")
        .unwrap();
    assert!(s
        .lock_snapshot(&root, &dir, LockMode::Shared, "in use")
        .is_err());
    drop(w);
    s.remove_backup_dir(&root, &dir, false).unwrap();
}

#[test]
fn protected_snapshot_refuses_removal() {
    let f = fixture();
    let s = &f.store;
    let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
    let dir = snap("vm/100/2020-06-26T13:56:05Z");
    finished(s, &a, "vm/100/2020-06-26T13:56:05Z");
    finished(s, &a, "vm/100/2020-06-27T13:56:05Z");

    s.set_protection(&a, &dir, true).unwrap();
    assert!(s.is_protected(&a, &dir).unwrap());
    for force in [false, true] {
        let err = s.remove_backup_dir(&a, &dir, force).unwrap_err();
        assert_eq!(err.to_string(), "cannot remove protected snapshot");
        assert!(matches!(
            err.downcast_ref::<HierarchyError>(),
            Some(HierarchyError::ProtectedSnapshot(_))
        ));
    }
    assert!(s.snapshot_path(&a, &dir).unwrap().is_dir());

    // group removal keeps the protected snapshot and reports it
    assert!(!s.remove_backup_group(&a, &dir.group).unwrap());
    let left = s.list_snapshots(&a, &dir.group).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].backup_dir, dir);

    s.set_protection(&a, &dir, false).unwrap();
    s.set_protection(&a, &dir, false).unwrap();
    assert!(!s.is_protected(&a, &dir).unwrap());
    assert!(s.remove_backup_group(&a, &dir.group).unwrap());
    assert!(!s.group_path(&a, &dir.group).exists());
}

#[test]
fn manifest_lock_location_and_cleanup() {
    let f = fixture();
    let s = &f.store;
    let a = s.create_namespace(&BackupNamespace::root(), "a").unwrap();
    let ab = s.create_namespace(&a, "b").unwrap();
    let dir = BackupDir::new(group("vm/100"), 1593179765).unwrap();
    finished(s, &ab, "vm/100/2020-06-26T13:56:05Z");

    let expected = f
        .lock_dir
        .join("store1/ns/a/ns/b/vm/100/2020-06-26T13:56:05Z/2020-06-26T13:56:05Z.index.json.lck");
    assert_eq!(s.manifest_lock_path(&ab, &dir).unwrap(), expected);
    let guard = s.lock_manifest(&ab, &dir).unwrap();
    assert!(expected.is_file());
    // removal waits for the manifest lock (up to 5 s) and then gives up
    let start = std::time::Instant::now();
    assert!(s.remove_backup_dir(&ab, &dir, false).is_err());
    assert!(start.elapsed() >= locks::MANIFEST_LOCK_TIMEOUT);
    drop(guard);

    s.remove_backup_dir(&ab, &dir, false).unwrap();
    assert!(!s.snapshot_path(&ab, &dir).unwrap().exists());
    assert!(!expected.exists(), "lock file removed after destroy");
}

#[test]
fn forced_removal_skips_locks() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let dir = BackupDir::new(group("vm/1"), 1).unwrap();
    drop(
        s.create_locked_backup_group(&root, &dir.group, &auth("a@pbs"))
            .unwrap(),
    );
    let (_, _, guard) = s.create_locked_backup_dir(&root, &dir).unwrap();
    assert!(s.remove_backup_dir(&root, &dir, false).is_err());
    s.remove_backup_dir(&root, &dir, true).unwrap();
    drop(guard);
    assert!(s.list_snapshots(&root, &dir.group).unwrap().is_empty());
}

#[test]
fn cleanup_unreferenced() {
    let f = fixture();
    let s = &f.store;
    let root = BackupNamespace::root();
    let dir = snap("host/h/2020-01-01T00:00:00Z");
    make_snapshot(
        s,
        &root,
        &dir,
        &[
            "index.json.blob",
            "client.log.blob",
            "keep.didx",
            "stale.fidx",
            "other.blob",
            ".protected",
            "x.tmp_didx",
        ],
    );
    let path = s.snapshot_path(&root, &dir).unwrap();
    std::fs::create_dir(path.join("subdir")).unwrap();
    s.cleanup_unreferenced_files(&root, &dir, &["keep.didx".to_string()])
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["client.log.blob", "index.json.blob", "keep.didx", "subdir"]
    );
}
