//! Garbage collection: mark chunks referenced by index files (atime), then sweep old ones.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, format_err, Error};
use serde::{Deserialize, Serialize};

use crate::chunk_store::{cond_touch_path, ChunkStore, CHUNK_PREFIX_DIRS};
use crate::dynamic_index::DynamicIndexReader;
use crate::fixed_index::FixedIndexReader;
use crate::index::IndexFile;

/// Name of the file holding the result of the last GC run.
pub const GC_STATUS_FILE: &str = ".gc-status";

/// Chunks touched within this window before phase 1 are never removed (relatime semantics).
const ATIME_SAFETY_WINDOW: i64 = 24 * 3600;
/// Extra safety gap subtracted from the cutoff.
const ATIME_SAFETY_GAP: i64 = 300;

/// Result of a garbage collection run (`.gc-status`, keys in this order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct GarbageCollectionStatus {
    /// UPID of the GC task.
    pub upid: Option<String>,
    /// Number of index files processed.
    pub index_file_count: usize,
    /// Sum of the bytes referenced by all index files.
    pub index_data_bytes: u64,
    /// Bytes of kept, recently marked files.
    pub disk_bytes: u64,
    /// Number of kept, recently marked chunks (without `.bad` files).
    pub disk_chunks: usize,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Chunks removed.
    pub removed_chunks: usize,
    /// Bytes kept only because of the safety cutoff.
    pub pending_bytes: u64,
    /// Chunks kept only because of the safety cutoff.
    pub pending_chunks: usize,
    /// `.bad` files removed.
    pub removed_bad: usize,
    /// `.bad` files kept within the safety window.
    pub still_bad: usize,
}

/// Names of the stores with a GC running in this process.
fn running_gcs() -> &'static Mutex<HashSet<String>> {
    static RUNNING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Marks a store as being garbage collected in this process until dropped.
struct GcRunningGuard {
    store_name: String,
}

impl GcRunningGuard {
    fn acquire(store_name: &str) -> Result<Self, Error> {
        let mut running = running_gcs()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !running.insert(store_name.to_string()) {
            bail!("Start GC failed - (already running/locked)");
        }
        Ok(Self {
            store_name: store_name.to_string(),
        })
    }
}

impl Drop for GcRunningGuard {
    fn drop(&mut self) {
        running_gcs()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.store_name);
    }
}

/// Runs garbage collection on `store`, marking through all index files below `base_path`.
///
/// `abort` is polled between index entries and chunks; an error from it stops the run.
pub fn garbage_collection(
    store: &ChunkStore,
    base_path: &Path,
    upid: Option<String>,
    log: &dyn Fn(&str),
    abort: &dyn Fn() -> Result<(), Error>,
) -> Result<GarbageCollectionStatus, Error> {
    run_garbage_collection(
        store,
        base_path,
        upid,
        log,
        abort,
        &pbs_api_types::time::epoch_now,
    )
}

/// The GC procedure with an injectable clock (read once, as phase 1 start time).
pub(crate) fn run_garbage_collection(
    store: &ChunkStore,
    base_path: &Path,
    upid: Option<String>,
    log: &dyn Fn(&str),
    abort: &dyn Fn() -> Result<(), Error>,
    now: &dyn Fn() -> i64,
) -> Result<GarbageCollectionStatus, Error> {
    let _running = GcRunningGuard::acquire(store.name())?;
    let _exclusive = store.try_exclusive_lock()?;

    let phase1_start_time = now();
    let oldest_writer = store.oldest_writer().unwrap_or(phase1_start_time);

    let mut status = GarbageCollectionStatus {
        upid,
        ..Default::default()
    };

    log("Start GC phase1 (mark used chunks)");
    mark_used_chunks(store, base_path, &mut status, log, abort)?;

    log("Start GC phase2 (sweep unused chunks)");
    sweep_unused_chunks(
        store,
        phase1_start_time,
        oldest_writer,
        &mut status,
        log,
        abort,
    )?;

    log_summary(&status, log);

    if let Err(err) = write_gc_status(base_path, &status) {
        log(&format!("unable to write GC status - {err}"));
    }
    Ok(status)
}

/// Loads `.gc-status`; a missing file yields the default status.
pub fn load_gc_status(base_path: &Path) -> Result<GarbageCollectionStatus, Error> {
    let path = base_path.join(GC_STATUS_FILE);
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map_err(|err| format_err!("unable to parse GC status {path:?} - {err}")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(err) => bail!("unable to read GC status {path:?} - {err}"),
    }
}

/// Replaces `.gc-status` atomically (mode 0644, owned by the store's owner).
fn write_gc_status(base_path: &Path, status: &GarbageCollectionStatus) -> Result<(), Error> {
    let path = base_path.join(GC_STATUS_FILE);
    let data = serde_json::to_vec(status)?;
    // Keep the ownership of the datastore directory (the backup user) when running as root.
    let base_meta =
        std::fs::metadata(base_path).map_err(|err| format_err!("{base_path:?}: {err}"))?;
    // SAFETY: geteuid has no preconditions.
    let owner = (unsafe { libc::geteuid() } == 0).then(|| (base_meta.uid(), base_meta.gid()));
    let options = pbs_tools::fs::ReplaceOptions {
        mode: 0o644,
        owner,
        fsync: false,
    };
    let result = pbs_tools::fs::replace_file(&path, &data, options);
    result.map_err(|err| format_err!("{path:?}: {err}"))
}

fn is_index_name(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.ends_with(b".fidx") || name.ends_with(b".didx")
}

/// Whether `relative` is `[ns/<name>/]*<type>/<id>/<time>/<file>` with a known backup type.
fn in_expected_scheme(relative: &Path) -> bool {
    let parts: Vec<&OsStr> = relative.iter().collect();
    let mut rest = &parts[..];
    while rest.len() > 4 && rest[0] == "ns" {
        rest = &rest[2..];
    }
    rest.len() == 4 && matches!(rest[0].to_str(), Some("vm" | "ct" | "host"))
}

fn walk_error(path: &Path, depth: usize, err: std::io::Error) -> Result<(), Error> {
    match err.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        std::io::ErrorKind::PermissionDenied => {
            if depth <= 1 && path.file_name() == Some(OsStr::new("lost+found")) {
                return Ok(());
            }
            bail!("cannot continue garbage-collection safely, permission denied on: {path:?}")
        }
        _ => bail!("unexpected error on datastore traversal: {err} - {path:?}"),
    }
}

/// All regular `*.fidx`/`*.didx` files below `base`, skipping dot entries and symlinks.
fn list_index_files(base: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut list = Vec::new();
    let mut stack = vec![(base.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let read_dir = match std::fs::read_dir(&dir) {
            Ok(read_dir) => read_dir,
            Err(err) => {
                walk_error(&dir, depth, err)?;
                continue;
            }
        };
        for entry in read_dir {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    walk_error(&dir, depth, err)?;
                    continue;
                }
            };
            let name = entry.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path();
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(err) => {
                    walk_error(&path, depth + 1, err)?;
                    continue;
                }
            };
            if file_type.is_dir() {
                stack.push((path, depth + 1));
            } else if file_type.is_file() && is_index_name(&name) {
                list.push(path);
            }
        }
    }
    list.sort();
    Ok(list)
}

fn open_index_for_gc(path: &Path) -> Result<Option<Box<dyn IndexFile>>, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        // Removed (forgotten/pruned) since the walk: nothing to mark.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => bail!("unable to open index {path:?} - {err}"),
    };
    if path.as_os_str().as_bytes().ends_with(b".fidx") {
        Ok(Some(Box::new(FixedIndexReader::new(file, path)?)))
    } else {
        Ok(Some(Box::new(DynamicIndexReader::new(file, path)?)))
    }
}

fn mark_used_chunks(
    store: &ChunkStore,
    base_path: &Path,
    status: &mut GarbageCollectionStatus,
    log: &dyn Fn(&str),
    abort: &dyn Fn() -> Result<(), Error>,
) -> Result<(), Error> {
    let index_files = list_index_files(base_path)?;
    let total = index_files.len();
    let mut strays = 0usize;
    let mut last_percentage = 0;

    for (i, path) in index_files.iter().enumerate() {
        abort()?;
        if let Some(index) = open_index_for_gc(path)? {
            let relative = path.strip_prefix(base_path).unwrap_or(path);
            if !in_expected_scheme(relative) {
                strays += 1;
            }
            status.index_file_count += 1;
            status.index_data_bytes += index.index_bytes();
            touch_index_chunks(store, index.as_ref(), path, log, abort)?;
        }
        let percentage = (i + 1) * 100 / total;
        if percentage > last_percentage {
            log(&format!(
                "marked {percentage}% ({} of {total} index files)",
                i + 1
            ));
            last_percentage = percentage;
        }
    }
    if strays > 0 {
        log(&format!(
            "found (and marked) {strays} index files outside of expected directory scheme"
        ));
    }
    Ok(())
}

fn touch_index_chunks(
    store: &ChunkStore,
    index: &dyn IndexFile,
    path: &Path,
    log: &dyn Fn(&str),
    abort: &dyn Fn() -> Result<(), Error>,
) -> Result<(), Error> {
    for pos in 0..index.index_count() {
        abort()?;
        let Some(digest) = index.index_digest(pos) else {
            bail!("index {path:?}: entry {pos} out of range");
        };
        if store.cond_touch_chunk(digest, false)? {
            continue;
        }
        log(&format!(
            "warning: unable to access non-existent chunk {}, required by {path:?}",
            hex::encode(digest)
        ));
        // Renamed corrupt copies stay alive while an index still needs the digest.
        let chunk_path = store.chunk_path(digest);
        for n in 0..=9 {
            cond_touch_path(&chunk_path.with_extension(format!("{n}.bad")), false)?;
        }
    }
    Ok(())
}

/// The oldest atime a chunk may have and still be kept.
fn sweep_cutoff(phase1_start_time: i64, oldest_writer: i64) -> i64 {
    let min_atime = phase1_start_time - ATIME_SAFETY_WINDOW;
    min_atime.min(oldest_writer) - ATIME_SAFETY_GAP
}

fn sweep_unused_chunks(
    store: &ChunkStore,
    phase1_start_time: i64,
    oldest_writer: i64,
    status: &mut GarbageCollectionStatus,
    log: &dyn Fn(&str),
    abort: &dyn Fn() -> Result<(), Error>,
) -> Result<(), Error> {
    let min_atime = sweep_cutoff(phase1_start_time, oldest_writer);
    let mut last_percentage = 0;

    for (chunk_count, entry) in store.chunk_iterator().enumerate() {
        abort()?;
        let entry = entry?;
        let percentage = entry.prefix_index * 100 / CHUNK_PREFIX_DIRS;
        if percentage != last_percentage {
            log(&format!("processed {percentage}% ({chunk_count} chunks)"));
            last_percentage = percentage;
        }

        let _guard = store.mutex_guard();
        let meta = match std::fs::symlink_metadata(&entry.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => bail!("unable to stat {:?} - {err}", entry.path),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let atime = meta.atime();
        let size = meta.len();

        if atime < min_atime {
            match std::fs::remove_file(&entry.path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    if entry.bad {
                        status.still_bad += 1;
                    }
                    bail!(
                        "unlinking chunk {:?} failed on store '{}' - {err}",
                        entry.path,
                        store.name()
                    );
                }
            }
            if entry.bad {
                status.removed_bad += 1;
            } else {
                status.removed_chunks += 1;
            }
            status.removed_bytes += size;
        } else if atime < oldest_writer {
            if entry.bad {
                status.still_bad += 1;
            } else {
                status.pending_chunks += 1;
            }
            status.pending_bytes += size;
        } else {
            if !entry.bad {
                status.disk_chunks += 1;
            }
            status.disk_bytes += size;
        }
    }
    Ok(())
}

/// Binary auto-scaled byte count with up to 3 decimals (`0 B`, `1.161 GiB`).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let bits = 64 - bytes.leading_zeros();
    if bits <= 10 {
        return format!("{bytes} B");
    }
    let exponent = (((bits - 1) / 10) as usize).min(UNITS.len());
    let value = bytes as f64 / (1u64 << (10 * exponent)) as f64;
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[exponent - 1])
}

fn log_summary(status: &GarbageCollectionStatus, log: &dyn Fn(&str)) {
    log(&format!(
        "Removed garbage: {}",
        human_bytes(status.removed_bytes)
    ));
    log(&format!("Removed chunks: {}", status.removed_chunks));
    if status.pending_bytes > 0 {
        log(&format!(
            "Pending removals: {} (in {} chunks)",
            human_bytes(status.pending_bytes),
            status.pending_chunks
        ));
    }
    if status.removed_bad > 0 {
        log(&format!("Removed bad chunks: {}", status.removed_bad));
    }
    if status.still_bad > 0 {
        log(&format!("Leftover bad chunks: {}", status.still_bad));
    }
    log(&format!(
        "Original data usage: {}",
        human_bytes(status.index_data_bytes)
    ));
    if status.index_data_bytes > 0 {
        let percentage = status.disk_bytes as f64 * 100.0 / status.index_data_bytes as f64;
        log(&format!(
            "On-Disk usage: {} ({percentage:.2}%)",
            human_bytes(status.disk_bytes)
        ));
    }
    log(&format!("On-Disk chunks: {}", status.disk_chunks));
    let dedup_factor = if status.disk_bytes > 0 {
        status.index_data_bytes as f64 / status.disk_bytes as f64
    } else {
        1.0
    };
    log(&format!("Deduplication factor: {dedup_factor:.2}"));
    if status.disk_chunks > 0 {
        let average = status.disk_bytes / status.disk_chunks as u64;
        log(&format!("Average chunk size: {}", human_bytes(average)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_store::test_plain_blob;
    use crate::chunk_store::test_store::{new_store, set_times};
    use crate::process_locker::tests::{spawn_helper, wait_for_file};
    use crate::{DatastoreFSyncLevel, DynamicIndexWriter, FixedIndexWriter};
    use pbs_api_types::time::epoch_now;
    use std::cell::RefCell;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    const DAY: i64 = 86400;

    fn insert(store: &ChunkStore, data: &[u8]) -> ([u8; 32], u64) {
        let digest = openssl::sha::sha256(data);
        let (_, size) = store.insert_chunk(&test_plain_blob(data), &digest).unwrap();
        (digest, size)
    }

    fn atime_of(path: &Path) -> i64 {
        std::fs::metadata(path).unwrap().atime()
    }

    fn write_didx(store: &Arc<ChunkStore>, path: &Path, entries: &[(u64, [u8; 32])]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut writer = DynamicIndexWriter::create(store.clone(), path).unwrap();
        for (end, digest) in entries {
            writer.add_chunk(*end, digest).unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn status_json_field_order() {
        let status = GarbageCollectionStatus {
            upid: Some("UPID:x".to_string()),
            index_file_count: 2,
            index_data_bytes: 5242880,
            disk_bytes: 4330,
            disk_chunks: 2,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"upid":"UPID:x","index-file-count":2,"index-data-bytes":5242880,"disk-bytes":4330,"disk-chunks":2,"removed-bytes":0,"removed-chunks":0,"pending-bytes":0,"pending-chunks":0,"removed-bad":0,"still-bad":0}"#
        );
        let counters = GarbageCollectionStatus {
            upid: None,
            index_file_count: 1,
            index_data_bytes: 2,
            disk_bytes: 3,
            disk_chunks: 4,
            removed_bytes: 5,
            removed_chunks: 6,
            pending_bytes: 7,
            pending_chunks: 8,
            removed_bad: 9,
            still_bad: 10,
        };
        let json = serde_json::to_string(&counters).unwrap();
        assert_eq!(
            json,
            r#"{"upid":null,"index-file-count":1,"index-data-bytes":2,"disk-bytes":3,"disk-chunks":4,"removed-bytes":5,"removed-chunks":6,"pending-bytes":7,"pending-chunks":8,"removed-bad":9,"still-bad":10}"#
        );
        let parsed: GarbageCollectionStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, counters);
    }

    #[test]
    fn cutoff_rules() {
        assert_eq!(sweep_cutoff(100_000, 100_000), 100_000 - DAY - 300);
        assert_eq!(
            sweep_cutoff(100_000, 100_000 - DAY - 1),
            100_000 - DAY - 1 - 300
        );
        assert_eq!(
            sweep_cutoff(100_000, 100_000 - DAY + 1),
            100_000 - DAY - 300
        );
    }

    #[test]
    fn human_byte_values() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(19_605), "19.146 KiB");
        assert_eq!(human_bytes(1_246_615_519), "1.161 GiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5 MiB");
        assert_eq!(human_bytes(3 << 50), "3 PiB");
    }

    #[test]
    fn expected_scheme() {
        for (path, expected) in [
            ("vm/100/2020-06-26T13:56:05Z/drive-scsi0.img.fidx", true),
            ("ns/a/ns/b/ct/1/2020-06-26T13:56:05Z/root.pxar.didx", true),
            ("host/h/2020-06-26T13:56:05Z/x.didx", true),
            ("stray/x.fidx", false),
            ("foo/100/2020-06-26T13:56:05Z/x.fidx", false),
            ("ns/a/vm/100/x.fidx", false),
            ("x.didx", false),
        ] {
            assert_eq!(in_expected_scheme(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn gc_marks_sweeps_and_reports() {
        let test_store = new_store("gc-main", DatastoreFSyncLevel::None);
        let store = test_store.store.clone();
        let base = store.base_path().to_path_buf();
        let now = epoch_now();
        let ancient = now - 2 * DAY;
        let in_window = now - DAY + 1000;

        let (a, a_size) = insert(&store, b"chunk-a");
        let (b, b_size) = insert(&store, b"chunk-b-longer");
        let (c, c_size) = insert(&store, b"chunk-c: unreferenced and old");
        let (d, d_size) = insert(&store, b"chunk-d: unreferenced, inside the window");
        let (e, e_size) = insert(&store, b"chunk-e: unreferenced, fresh");
        let missing = openssl::sha::sha256(b"missing chunk");
        let missing_bad0 = store.chunk_path(&missing).with_extension("0.bad");
        let missing_bad3 = store.chunk_path(&missing).with_extension("3.bad");
        std::fs::write(&missing_bad0, [1u8; 100]).unwrap();
        std::fs::write(&missing_bad3, [1u8; 33]).unwrap();
        let a_bad1 = store.chunk_path(&a).with_extension("1.bad");
        std::fs::write(&a_bad1, [2u8; 17]).unwrap();
        let x_bad2 = store
            .chunk_path(&openssl::sha::sha256(b"x"))
            .with_extension("2.bad");
        std::fs::write(&x_bad2, [3u8; 21]).unwrap();
        let tmp_file = store.chunk_path(&c).with_extension("tmp_abcdef");
        std::fs::write(&tmp_file, [4u8; 5]).unwrap();

        // Index files: two in the snapshot layout, one stray, one hidden, one behind a symlink.
        let didx = base.join("vm/100/2020-06-26T13:56:05Z/root.pxar.didx");
        write_didx(&store, &didx, &[(100, a), (250, missing), (300, a)]);
        let ns_didx = base.join("ns/a/host/h1/2020-06-26T13:56:05Z/catalog.pcat1.didx");
        write_didx(&store, &ns_didx, &[(7, b)]);
        std::fs::create_dir_all(base.join("stray")).unwrap();
        let mut fidx =
            FixedIndexWriter::create(store.clone(), base.join("stray/disk.img.fidx"), 10, 4)
                .unwrap();
        fidx.add_digest(0, &b).unwrap();
        fidx.add_digest(1, &b).unwrap();
        fidx.add_digest(2, &a).unwrap();
        fidx.close().unwrap();
        drop(fidx);
        write_didx(&store, &base.join(".hidden/c.didx"), &[(1, c)]);
        let outside = tempfile::tempdir().unwrap();
        write_didx(&store, &outside.path().join("d/c.didx"), &[(1, c)]);
        std::os::unix::fs::symlink(outside.path().join("d"), base.join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("d/c.didx"), base.join("link.didx"))
            .unwrap();
        std::fs::create_dir(base.join("lost+found")).unwrap();

        for path in [&a, &b, &c].map(|digest| store.chunk_path(digest)) {
            set_times(&path, ancient, ancient);
        }
        for path in [&missing_bad0, &missing_bad3, &a_bad1, &tmp_file] {
            set_times(path, ancient, ancient);
        }
        set_times(&store.chunk_path(&d), in_window, in_window);
        set_times(&x_bad2, in_window, in_window);

        // Another process holding a shared lock makes GC fail to start.
        let lockfile = base.join(".lock");
        let mut child = spawn_helper(
            "process_locker::tests::child_hold_shared_lock",
            &[
                ("PBS_DATASTORE_TEST_CHILD", "shared".as_ref()),
                ("PBS_DATASTORE_TEST_LOCKFILE", lockfile.as_os_str()),
            ],
        );
        wait_for_file(&lockfile.with_extension("ready"), &mut child);
        let err = garbage_collection(&store, &base, None, &|_| {}, &|| Ok(())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unable to get exclusive lock - "),
            "{err}"
        );
        std::fs::write(lockfile.with_extension("release"), b"").unwrap();
        assert!(child.wait().unwrap().success());
        for name in ["ready", "release"] {
            std::fs::remove_file(lockfile.with_extension(name)).unwrap();
        }

        // The clock is pinned to `now`: everything inserted or marked since counts as recent.
        let lines = RefCell::new(Vec::<String>::new());
        let nested_error = RefCell::new(None::<String>);
        let status = run_garbage_collection(
            &store,
            &base,
            Some("UPID:test".to_string()),
            &|line| lines.borrow_mut().push(line.to_string()),
            &|| {
                if nested_error.borrow().is_none() {
                    let err =
                        garbage_collection(&store, &base, None, &|_| {}, &|| Ok(())).unwrap_err();
                    *nested_error.borrow_mut() = Some(err.to_string());
                }
                Ok(())
            },
            &|| now,
        )
        .unwrap();
        assert_eq!(
            nested_error.into_inner().as_deref(),
            Some("Start GC failed - (already running/locked)")
        );

        let expected = GarbageCollectionStatus {
            upid: Some("UPID:test".to_string()),
            index_file_count: 3,
            index_data_bytes: 300 + 7 + 10,
            disk_bytes: a_size + b_size + e_size + 100 + 33,
            disk_chunks: 3,
            removed_bytes: c_size + 17,
            removed_chunks: 1,
            pending_bytes: d_size + 21,
            pending_chunks: 1,
            removed_bad: 1,
            still_bad: 1,
        };
        assert_eq!(status, expected);

        for digest in [&a, &b, &d, &e] {
            assert!(store.chunk_path(digest).exists());
        }
        assert!(!store.chunk_path(&c).exists());
        assert!(missing_bad0.exists() && missing_bad3.exists() && x_bad2.exists());
        assert!(!a_bad1.exists());
        assert!(tmp_file.exists());
        assert!(atime_of(&store.chunk_path(&a)) >= now);
        assert!(atime_of(&missing_bad0) >= now);
        assert_eq!(atime_of(&store.chunk_path(&d)), in_window);

        let lines = lines.into_inner();
        let has = |text: &str| lines.iter().any(|line| line == text);
        assert!(has("Start GC phase1 (mark used chunks)"), "{lines:#?}");
        assert!(has("Start GC phase2 (sweep unused chunks)"));
        assert!(has("marked 100% (3 of 3 index files)"));
        assert!(has(&format!(
            "warning: unable to access non-existent chunk {}, required by {didx:?}",
            hex::encode(missing)
        )));
        assert!(has(
            "found (and marked) 1 index files outside of expected directory scheme"
        ));
        assert!(has(&format!("Removed garbage: {} B", c_size + 17)));
        assert!(has("Removed chunks: 1"));
        assert!(has(&format!(
            "Pending removals: {} B (in 1 chunks)",
            d_size + 21
        )));
        assert!(has("Removed bad chunks: 1"));
        assert!(has("Leftover bad chunks: 1"));
        assert!(has("Original data usage: 317 B"));
        let disk = expected.disk_bytes;
        assert!(has(&format!(
            "On-Disk usage: {disk} B ({:.2}%)",
            disk as f64 * 100.0 / 317.0
        )));
        assert!(has("On-Disk chunks: 3"));
        assert!(has(&format!(
            "Deduplication factor: {:.2}",
            317.0 / disk as f64
        )));
        assert!(has(&format!("Average chunk size: {} B", disk / 3)));

        let status_path = base.join(GC_STATUS_FILE);
        assert_eq!(
            std::fs::read_to_string(&status_path).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        let mode = std::fs::metadata(&status_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(load_gc_status(&base).unwrap(), expected);

        // Aborting stops the run and releases the GC mutex and the lock.
        let err = garbage_collection(&store, &base, None, &|_| {}, &|| bail!("abort requested"))
            .unwrap_err();
        assert_eq!(err.to_string(), "abort requested");
        let second =
            run_garbage_collection(&store, &base, None, &|_| {}, &|| Ok(()), &|| now).unwrap();
        assert_eq!(second.removed_chunks, 0);
        assert_eq!(second.pending_chunks, 1);
        assert_eq!(second.index_file_count, 3);
        assert_eq!(load_gc_status(&base).unwrap(), second);

        std::fs::write(&status_path, b"not json").unwrap();
        assert!(load_gc_status(&base).is_err());
        std::fs::remove_file(&status_path).unwrap();
        assert_eq!(load_gc_status(&base).unwrap(), Default::default());
    }

    #[test]
    fn gc_keeps_chunks_of_running_writer() {
        let test_store = new_store("gc-writer", DatastoreFSyncLevel::None);
        let store = test_store.store.clone();
        let base = store.base_path().to_path_buf();
        let snapshot = base.join("host/w/2024-01-01T00:00:00Z");
        std::fs::create_dir_all(&snapshot).unwrap();

        let writer =
            DynamicIndexWriter::create(store.clone(), snapshot.join("root.pxar.didx")).unwrap();
        let writer_start = store.oldest_writer().unwrap();

        // Chunks the writer uploaded shortly before GC started.
        let mut early = Vec::new();
        for i in 0..20u32 {
            let (digest, _) = insert(&store, format!("early chunk {i}").as_bytes());
            set_times(
                &store.chunk_path(&digest),
                writer_start - 1,
                writer_start - 1,
            );
            early.push(digest);
        }
        // Unreferenced chunks older than the writer's cutoff.
        let (old, _) = insert(&store, b"older than the writer");
        set_times(
            &store.chunk_path(&old),
            writer_start - 400,
            writer_start - 400,
        );
        let (ancient, _) = insert(&store, b"ancient garbage");
        set_times(&store.chunk_path(&ancient), 1000, 1000);

        // Pretend phase 1 starts long after the writer did, so only the writer's start
        // protects its chunks.
        let phase1 = writer_start + 10 * DAY;
        let writer = Mutex::new(writer);
        let barrier = std::sync::Barrier::new(2);
        let fresh_count = 400u32;
        let (status, fresh) = std::thread::scope(|scope| {
            let gc = scope.spawn(|| {
                barrier.wait();
                run_garbage_collection(&store, &base, None, &|_| {}, &|| Ok(()), &|| phase1)
            });
            let inserter = scope.spawn(|| {
                let mut writer = writer.lock().unwrap();
                let mut end = 0;
                for digest in &early {
                    end += 10;
                    writer.add_chunk(end, digest).unwrap();
                }
                barrier.wait();
                let mut fresh = Vec::new();
                for i in 0..fresh_count {
                    let (digest, _) = insert(&store, format!("fresh chunk {i}").as_bytes());
                    end += 10;
                    writer.add_chunk(end, &digest).unwrap();
                    fresh.push(digest);
                }
                fresh
            });
            (gc.join().unwrap(), inserter.join().unwrap())
        });
        let status = status.unwrap();

        for digest in early.iter().chain(fresh.iter()) {
            assert!(
                store.chunk_path(digest).exists(),
                "chunk {} of the running writer was removed",
                hex::encode(digest)
            );
        }
        assert!(!store.chunk_path(&old).exists());
        assert!(!store.chunk_path(&ancient).exists());
        assert_eq!(status.removed_chunks, 2);
        assert_eq!(status.pending_chunks, early.len());
        assert_eq!(status.index_file_count, 0);
        assert!(status.disk_chunks <= fresh.len());

        let mut writer = writer.into_inner().unwrap();
        writer.close().unwrap();
        drop(writer);
        let reader = crate::open_index(snapshot.join("root.pxar.didx")).unwrap();
        assert_eq!(reader.index_count(), early.len() + fresh.len());
        for pos in 0..reader.index_count() {
            let digest = reader.index_digest(pos).unwrap();
            assert!(store.chunk_path(digest).exists());
        }
    }
}
