//! Verification of chunks, archives and snapshots (spec: datastore.md §10).
//!
//! Chunks are loaded and checked by one worker per core: reading is I/O bound, decompressing
//! and hashing CPU bound, so several workers keep both the disk and the cores busy.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace, BackupType, CryptMode};

use crate::chunk_store::ChunkStore;
use crate::index::{open_index, IndexFile};
use crate::locks::LockMode;
use crate::manifest::{ArchiveType, BackupManifest, FileInfo, SnapshotVerifyState, VerifyState};
use crate::{DataBlob, DataStore};

/// In which order the chunks of an index are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChunkOrder {
    /// Index order.
    None,
    /// Sorted by inode number: close to on-disk order on most file systems.
    #[default]
    Inode,
}

/// State shared by all verifications of one task: chunks already checked are not read twice.
pub struct VerifyContext {
    store: Arc<ChunkStore>,
    chunk_order: ChunkOrder,
    verified: Mutex<HashSet<[u8; 32]>>,
    corrupt: Mutex<HashSet<[u8; 32]>>,
    log: Box<dyn Fn(&str) + Send + Sync>,
}

impl VerifyContext {
    /// A fresh context; `log` receives the task log lines.
    pub fn new(
        store: Arc<ChunkStore>,
        chunk_order: ChunkOrder,
        log: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Self {
            store,
            chunk_order,
            verified: Mutex::new(HashSet::new()),
            corrupt: Mutex::new(HashSet::new()),
            log,
        }
    }

    /// Logs one line of the task log.
    pub fn log(&self, line: &str) {
        (self.log)(line)
    }

    /// The chunk store being verified.
    pub fn store(&self) -> &Arc<ChunkStore> {
        &self.store
    }

    /// Digests found corrupt so far.
    pub fn corrupt_chunks(&self) -> Vec<[u8; 32]> {
        lock(&self.corrupt).iter().copied().collect()
    }

    fn mark_corrupt(&self, digest: &[u8; 32], rename: bool) {
        lock(&self.corrupt).insert(*digest);
        if !rename {
            return;
        }
        match self.store.rename_corrupted_chunk(digest) {
            Ok(Some(new_path)) => self.log(&format!("corrupted chunk renamed to {new_path:?}")),
            Ok(None) => {}
            Err(err) => self.log(&format!("{err}")),
        }
    }

    /// Checks one chunk; returns an error text for the task log if it is bad.
    fn verify_chunk(
        &self,
        digest: &[u8; 32],
        size: u64,
        crypt_mode: CryptMode,
    ) -> Result<(), String> {
        let hex = hex::encode(digest);
        if lock(&self.verified).contains(digest) {
            return Ok(());
        }
        if lock(&self.corrupt).contains(digest) {
            return Err(format!("chunk {hex} was marked as corrupt"));
        }
        let raw = match self.store.load_chunk_raw(digest) {
            Ok(raw) => raw,
            Err(err) => {
                self.mark_corrupt(digest, true);
                return Err(format!("can't verify chunk, load failed - {err}"));
            }
        };
        let blob = match DataBlob::from_raw(raw) {
            Ok(blob) => blob,
            Err(err) => {
                // Unknown magic: not renamed, as it may be a file we do not understand.
                self.mark_corrupt(digest, false);
                return Err(format!("chunk {hex}: {err}"));
            }
        };
        if let Err(err) = blob.verify_crc() {
            self.mark_corrupt(digest, true);
            return Err(format!("can't verify chunk, load failed - store '{}', unable to load chunk '{hex}' - {err}", self.store.name()));
        }
        let chunk_mode = blob.crypt_mode();
        let expected = if crypt_mode == CryptMode::Encrypt {
            CryptMode::Encrypt
        } else {
            CryptMode::None
        };
        if chunk_mode != expected {
            // Logged, but the chunk itself may still be intact: keep going.
            self.log(&format!(
                "chunk CryptMode {chunk_mode:?} does not match index CryptMode {expected:?}"
            ));
        }
        if !blob.is_encrypted() {
            if let Err(err) = blob.verify_unencrypted(size as usize, digest) {
                self.mark_corrupt(digest, true);
                return Err(format!("chunk {hex}: {err}"));
            }
        }
        lock(&self.verified).insert(*digest);
        Ok(())
    }

    /// Verifies every chunk of an index; returns the number of chunks that failed.
    pub fn verify_index_chunks(
        &self,
        index: &(dyn IndexFile + Sync),
        crypt_mode: CryptMode,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> usize {
        let mut order: Vec<usize> = (0..index.index_count()).collect();
        if self.chunk_order == ChunkOrder::Inode {
            let mut keyed: Vec<(u64, usize)> = order
                .iter()
                .map(|&pos| {
                    let ino = index
                        .chunk_info(pos)
                        .and_then(|info| {
                            std::fs::metadata(self.store.chunk_path(&info.digest)).ok()
                        })
                        .map(|m| m.ino())
                        .unwrap_or(u64::MAX); // missing chunks go last
                    (ino, pos)
                })
                .collect();
            keyed.sort_unstable();
            order = keyed.into_iter().map(|(_, pos)| pos).collect();
        }

        let next = AtomicUsize::new(0);
        let errors = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&pos) = order.get(i) else { return };
                    if abort() {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    let Some(info) = index.chunk_info(pos) else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        self.log(&format!("index entry {pos} unreadable"));
                        continue;
                    };
                    let size = info.range.end - info.range.start;
                    if let Err(msg) = self.verify_chunk(&info.digest, size, crypt_mode) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        self.log(&msg);
                    }
                });
            }
        });
        errors.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned set is still a valid set: the panicking thread only inserted whole digests.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which snapshots a verification job skips (spec §10.4).
#[derive(Clone, Copy, Debug)]
pub struct VerifyFilter {
    /// Skip snapshots that already carry a verify state.
    pub ignore_verified: bool,
    /// ... unless that state is older than this many days.
    pub outdated_after: Option<i64>,
}

impl Default for VerifyFilter {
    fn default() -> Self {
        Self {
            ignore_verified: true,
            outdated_after: None,
        }
    }
}

/// Start time (epoch) recorded in a UPID string.
fn upid_starttime(upid: &str) -> Option<i64> {
    let field = upid.split(':').nth(5)?;
    i64::from_str_radix(field, 16).ok()
}

impl VerifyFilter {
    /// Whether `manifest` is due for verification at time `now`.
    pub fn includes(&self, manifest: &BackupManifest, now: i64) -> bool {
        if !self.ignore_verified {
            return true;
        }
        let state = match manifest.verify_state() {
            Ok(Some(state)) => state,
            _ => return true,
        };
        match self.outdated_after {
            None => false,
            Some(days) => match upid_starttime(&state.upid) {
                Some(start) => (now - start) / 86_400 > days,
                None => true,
            },
        }
    }
}

/// Outcome of verifying one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotVerifyOutcome {
    /// All files and chunks are intact (verify_state `ok` written).
    Ok,
    /// Something is wrong (verify_state `failed` written if the manifest was readable).
    Failed,
    /// Not verified: gone, locked, or filtered out. Counts as OK.
    Skipped,
}

impl VerifyContext {
    fn verify_blob(&self, path: &std::path::Path, info: &FileInfo) -> Result<(), String> {
        let raw = std::fs::read(path).map_err(|err| format!("unable to read {path:?} - {err}"))?;
        let blob = DataBlob::from_raw(raw).map_err(|err| err.to_string())?;
        blob.verify_crc().map_err(|err| err.to_string())?;
        if blob.raw_size() != info.size {
            return Err(format!("wrong size ({} != {})", info.size, blob.raw_size()));
        }
        if openssl::sha::sha256(blob.raw_data()) != info.csum {
            return Err("wrong index checksum".to_string());
        }
        if !blob.is_encrypted() {
            blob.decode(None, None).map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    fn verify_index(
        &self,
        path: &std::path::Path,
        info: &FileInfo,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), String> {
        let index = open_index(path).map_err(|err| format!("{err:#}"))?;
        let (csum, size) = index.compute_csum();
        if size != info.size {
            return Err(format!("wrong size ({} != {size})", info.size));
        }
        if csum != info.csum {
            return Err("wrong index checksum".to_string());
        }
        let failed = self.verify_index_chunks(index.as_ref(), info.crypt_mode, abort);
        if abort() {
            return Err("verification aborted".to_string());
        }
        if failed > 0 {
            return Err(format!(
                "{failed} of {} chunks could not be verified",
                index.index_count()
            ));
        }
        Ok(())
    }

    /// Verifies one snapshot and records the result in its manifest (spec §10.1).
    pub fn verify_backup_dir(
        &self,
        datastore: &DataStore,
        ns: &BackupNamespace,
        dir: &BackupDir,
        upid: &str,
        filter: Option<(&VerifyFilter, i64)>,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> Result<SnapshotVerifyOutcome, anyhow::Error> {
        let path = datastore.snapshot_path(ns, dir)?;
        let name = snapshot_display(ns, dir);
        if !path.is_dir() {
            self.log(&format!(
                "SKIPPED: verify {}:{name} - snapshot does not exist (anymore)",
                datastore.name()
            ));
            return Ok(SnapshotVerifyOutcome::Skipped);
        }
        let _lock = match datastore.lock_snapshot(ns, dir, LockMode::Shared, "verify in progress") {
            Ok(lock) => lock,
            Err(_) => {
                self.log(&format!(
                    "SKIPPED: verify {}:{name} - could not acquire snapshot lock",
                    datastore.name()
                ));
                return Ok(SnapshotVerifyOutcome::Skipped);
            }
        };
        let manifest = match datastore.load_manifest(ns, dir) {
            Ok((manifest, _)) => manifest,
            Err(err) => {
                self.log(&format!(
                    "verify {}:{name} - manifest load error: {err:#}",
                    datastore.name()
                ));
                return Ok(SnapshotVerifyOutcome::Failed);
            }
        };
        if let Some((filter, now)) = filter {
            if !filter.includes(&manifest, now) {
                self.log(&format!(
                    "SKIPPED: verify {}:{name} (recently verified)",
                    datastore.name()
                ));
                return Ok(SnapshotVerifyOutcome::Skipped);
            }
        }
        self.log(&format!("verify {}:{name}", datastore.name()));
        let mut ok = true;
        for info in manifest.files() {
            self.log(&format!("  check {}", info.filename));
            let file_path = path.join(&info.filename);
            let result = match ArchiveType::from_path(&info.filename) {
                Ok(ArchiveType::Blob) => self.verify_blob(&file_path, info),
                Ok(ArchiveType::FixedIndex | ArchiveType::DynamicIndex) => {
                    self.verify_index(&file_path, info, abort)
                }
                Err(err) => Err(err.to_string()),
            };
            if let Err(msg) = result {
                self.log(&format!(
                    "verify {}:{name}/{} failed: {msg}",
                    datastore.name(),
                    info.filename
                ));
                ok = false;
            }
            if abort() {
                anyhow::bail!("verification of {name} aborted");
            }
        }
        let state = SnapshotVerifyState {
            state: if ok {
                VerifyState::Ok
            } else {
                VerifyState::Failed
            },
            upid: upid.to_string(),
        };
        datastore
            .update_manifest(ns, dir, |manifest| {
                // Serializing a two-field struct into JSON cannot fail.
                let _ = manifest.set_verify_state(&state);
            })
            .map_err(|err| anyhow::format_err!("unable to update manifest of {name} - {err:#}"))?;
        Ok(if ok {
            SnapshotVerifyOutcome::Ok
        } else {
            SnapshotVerifyOutcome::Failed
        })
    }

    /// Verifies all snapshots of a group, newest first; returns the snapshots that failed.
    pub fn verify_backup_group(
        &self,
        datastore: &DataStore,
        ns: &BackupNamespace,
        group: &BackupGroup,
        upid: &str,
        filter: Option<(&VerifyFilter, i64)>,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<String>, anyhow::Error> {
        let mut snapshots = datastore.list_snapshots(ns, group)?;
        snapshots.sort_by_key(|info| std::cmp::Reverse(info.backup_dir.time));
        let mut failed = Vec::new();
        for info in snapshots {
            let outcome =
                self.verify_backup_dir(datastore, ns, &info.backup_dir, upid, filter, abort)?;
            if outcome == SnapshotVerifyOutcome::Failed {
                failed.push(snapshot_display(ns, &info.backup_dir));
            }
        }
        Ok(failed)
    }

    /// Verifies every group below `ns` (up to `max_depth` levels); returns the failed snapshots.
    pub fn verify_all_backups(
        &self,
        datastore: &DataStore,
        ns: &BackupNamespace,
        max_depth: Option<usize>,
        upid: &str,
        filter: Option<(&VerifyFilter, i64)>,
        abort: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<String>, anyhow::Error> {
        let mut failed = Vec::new();
        for ns in datastore.iter_namespaces_recursive(ns, max_depth) {
            let ns = ns?;
            let mut groups = datastore.list_groups(&ns)?;
            groups.sort();
            for group in groups {
                // The benchmark group holds throw-away data of `proxmox-backup-client benchmark`.
                if group.ty == BackupType::Host && group.id == "benchmark" {
                    continue;
                }
                failed
                    .extend(self.verify_backup_group(datastore, &ns, &group, upid, filter, abort)?);
            }
        }
        Ok(failed)
    }
}

fn snapshot_display(ns: &BackupNamespace, dir: &BackupDir) -> String {
    if ns.is_root() {
        dir.to_string()
    } else {
        format!("ns/{ns}/{dir}")
    }
}
