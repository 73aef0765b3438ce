//! Verification of chunks, archives and snapshots (spec: datastore.md §10).
//!
//! Chunks are loaded and checked by one worker per core: reading is I/O bound, decompressing
//! and hashing CPU bound, so several workers keep both the disk and the cores busy.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pbs_api_types::CryptMode;

use crate::chunk_store::ChunkStore;
use crate::index::IndexFile;
use crate::DataBlob;

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
    pub fn new(store: Arc<ChunkStore>, chunk_order: ChunkOrder, log: Box<dyn Fn(&str) + Send + Sync>) -> Self {
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
    fn verify_chunk(&self, digest: &[u8; 32], size: u64, crypt_mode: CryptMode) -> Result<(), String> {
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
        let expected = if crypt_mode == CryptMode::Encrypt { CryptMode::Encrypt } else { CryptMode::None };
        if chunk_mode != expected {
            // Logged, but the chunk itself may still be intact: keep going.
            self.log(&format!("chunk CryptMode {chunk_mode:?} does not match index CryptMode {expected:?}"));
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
        index: &dyn IndexFile,
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
                        .and_then(|info| std::fs::metadata(self.store.chunk_path(&info.digest)).ok())
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
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
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
