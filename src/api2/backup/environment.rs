//! State of one backup session: index writers, known chunks, counters and statistics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, format_err, Error};
use serde_json::{json, Value};

use pbs_api_types::{Authid, BackupDir, BackupNamespace};
use pbs_datastore::{
    BackupInfo, DataStore, DatastoreFSyncLevel, DynamicIndexWriter, FixedIndexWriter,
};
use pbs_tasks::WorkerTask;

/// Chunk size of every fixed index created through the protocol.
pub const FIXED_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// Upload statistics of one writer or of the whole session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStatistic {
    /// Number of uploaded chunks.
    pub count: u64,
    /// Plain bytes uploaded.
    pub size: u64,
    /// Bytes as stored (encoded).
    pub compressed_size: u64,
    /// Uploads of chunks that already existed in the chunk store.
    pub duplicates: u64,
}

impl UploadStatistic {
    fn add(&mut self, other: &UploadStatistic) {
        self.count += other.count;
        self.size += other.size;
        self.compressed_size += other.compressed_size;
        self.duplicates += other.duplicates;
    }

    /// The `chunk_upload_stats` member of the manifest.
    pub fn to_value(&self) -> Value {
        json!({
            "count": self.count,
            "size": self.size,
            "compressed_size": self.compressed_size,
            "duplicates": self.duplicates,
        })
    }
}

struct DynamicWriterState {
    name: String,
    index: DynamicIndexWriter,
    offset: u64,
    chunk_count: u64,
    upload_stat: UploadStatistic,
}

struct FixedWriterState {
    name: String,
    index: FixedIndexWriter,
    size: u64,
    chunk_size: u32,
    chunk_count: u64,
    small_chunk_count: usize,
    upload_stat: UploadStatistic,
    incremental: bool,
}

#[derive(Default)]
struct SharedState {
    finished: bool,
    uid_counter: usize,
    file_counter: usize,
    dynamic_writers: HashMap<usize, DynamicWriterState>,
    fixed_writers: HashMap<usize, FixedWriterState>,
    known_chunks: HashMap<[u8; 32], u32>,
    backup_size: u64,
    backup_stat: UploadStatistic,
    /// The chunks of all base snapshot indexes were registered (append fallback).
    base_chunks_registered: bool,
}

impl SharedState {
    fn ensure_unfinished(&self) -> Result<(), Error> {
        if self.finished {
            bail!("backup already marked as finished.");
        }
        Ok(())
    }
}

/// The snapshot a session writes and its base.
pub struct SnapshotTarget {
    /// The target datastore.
    pub datastore: Arc<DataStore>,
    /// The target namespace.
    pub ns: BackupNamespace,
    /// The snapshot being written.
    pub backup_dir: BackupDir,
    /// Absolute path of the snapshot directory.
    pub snapshot_path: PathBuf,
    /// The base snapshot for incremental backups.
    pub last_backup: Option<BackupInfo>,
}

/// Everything one backup session works on; shared by all request handlers of the session.
pub struct BackupEnvironment {
    /// The session's worker task (task log).
    pub worker: Arc<WorkerTask>,
    /// The target datastore.
    pub datastore: Arc<DataStore>,
    /// The target namespace.
    pub ns: BackupNamespace,
    /// The snapshot being written.
    pub backup_dir: BackupDir,
    /// Absolute path of the snapshot directory.
    pub snapshot_path: PathBuf,
    /// The base snapshot for incremental backups.
    pub last_backup: Option<BackupInfo>,
    /// The authenticated caller.
    pub auth_id: Authid,
    /// Verbose task log.
    pub debug: bool,
    state: Mutex<SharedState>,
}

impl BackupEnvironment {
    /// A fresh session state for writing `target`.
    pub fn new(
        worker: Arc<WorkerTask>,
        target: SnapshotTarget,
        auth_id: Authid,
        debug: bool,
    ) -> Self {
        Self {
            worker,
            datastore: target.datastore,
            ns: target.ns,
            backup_dir: target.backup_dir,
            snapshot_path: target.snapshot_path,
            last_backup: target.last_backup,
            auth_id,
            debug,
            state: Mutex::new(SharedState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a line to the task log.
    pub fn log(&self, msg: impl AsRef<str>) {
        self.worker.log_message(msg);
    }

    /// Appends a line to the task log in debug mode only.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.debug {
            self.worker.log_message(msg);
        }
    }

    /// Whether `finish` succeeded.
    pub fn is_finished(&self) -> bool {
        self.state().finished
    }

    /// Fails once the session is finished.
    pub fn ensure_unfinished(&self) -> Result<(), Error> {
        self.state().ensure_unfinished()
    }

    /// Registers a chunk the client may append, with its plain size.
    pub fn register_known_chunk(&self, digest: [u8; 32], size: u32) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        state.known_chunks.insert(digest, size);
        Ok(())
    }

    /// Size of a known chunk.
    pub fn lookup_chunk(&self, digest: &[u8; 32]) -> Option<u32> {
        self.state().known_chunks.get(digest).copied()
    }

    /// Append fallback for clients that learned digests of the base snapshot elsewhere:
    /// registers the chunks of every index of the base snapshot, once per session (what
    /// `GET previous` would do for each of them). Returns whether anything was done.
    pub fn register_base_snapshot_chunks(&self) -> Result<bool, Error> {
        let Some(base) = &self.last_backup else {
            return Ok(false);
        };
        if std::mem::replace(&mut self.state().base_chunks_registered, true) {
            return Ok(false);
        }
        let path = self.datastore.snapshot_path(&self.ns, &base.backup_dir)?;
        let mut found = Vec::new();
        for name in &base.files {
            if !(name.ends_with(".didx") || name.ends_with(".fidx")) {
                continue;
            }
            let index = pbs_datastore::open_index(path.join(name))?;
            for pos in 0..index.index_count() {
                if let Some(info) = index.chunk_info(pos) {
                    let size = u32::try_from(info.size()).map_err(|_| {
                        format_err!("index '{name}' of the base snapshot: chunk {pos} too large")
                    })?;
                    found.push((info.digest, size));
                }
            }
            self.log(format!("register chunks in '{name}' from previous backup."));
        }
        let mut state = self.state();
        state.ensure_unfinished()?;
        state.known_chunks.extend(found);
        Ok(true)
    }

    /// Counts a stored file (closed index or uploaded blob).
    pub fn add_file(&self) {
        self.state().file_counter += 1;
    }

    fn next_wid(state: &mut SharedState) -> usize {
        state.uid_counter += 1;
        state.uid_counter
    }

    /// Registers a new dynamic writer; returns its wid.
    pub fn register_dynamic_writer(
        &self,
        index: DynamicIndexWriter,
        name: String,
    ) -> Result<usize, Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let wid = Self::next_wid(&mut state);
        state.dynamic_writers.insert(
            wid,
            DynamicWriterState {
                name,
                index,
                offset: 0,
                chunk_count: 0,
                upload_stat: UploadStatistic::default(),
            },
        );
        Ok(wid)
    }

    /// Registers a new fixed writer; returns its wid.
    pub fn register_fixed_writer(
        &self,
        index: FixedIndexWriter,
        name: String,
        size: u64,
        incremental: bool,
    ) -> Result<usize, Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let wid = Self::next_wid(&mut state);
        state.fixed_writers.insert(
            wid,
            FixedWriterState {
                name,
                index,
                size,
                chunk_size: FIXED_CHUNK_SIZE,
                chunk_count: 0,
                small_chunk_count: 0,
                upload_stat: UploadStatistic::default(),
                incremental,
            },
        );
        Ok(wid)
    }

    /// Accounts an uploaded chunk to dynamic writer `wid` and makes it known.
    pub fn register_dynamic_chunk(
        &self,
        wid: usize,
        digest: [u8; 32],
        size: u32,
        compressed_size: u64,
        is_duplicate: bool,
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let writer = state
            .dynamic_writers
            .get_mut(&wid)
            .ok_or_else(|| format_err!("dynamic writer '{wid}' not registered"))?;
        count_upload(&mut writer.upload_stat, size, compressed_size, is_duplicate);
        state.known_chunks.insert(digest, size);
        Ok(())
    }

    /// Accounts an uploaded chunk to fixed writer `wid` (with the chunk size rules) and makes
    /// it known.
    pub fn register_fixed_chunk(
        &self,
        wid: usize,
        digest: [u8; 32],
        size: u32,
        compressed_size: u64,
        is_duplicate: bool,
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let writer = state
            .fixed_writers
            .get_mut(&wid)
            .ok_or_else(|| format_err!("fixed writer '{wid}' not registered"))?;
        if size > writer.chunk_size {
            bail!(
                "fixed writer '{}' - got large chunk ({size} > {})",
                writer.name,
                writer.chunk_size
            );
        }
        if size < writer.chunk_size {
            writer.small_chunk_count += 1;
            if writer.small_chunk_count > 1 {
                bail!("fixed writer '{wid}' - detected multiple end chunks (chunk size too small)");
            }
        }
        count_upload(&mut writer.upload_stat, size, compressed_size, is_duplicate);
        state.known_chunks.insert(digest, size);
        Ok(())
    }

    /// Appends a known chunk at `offset` to dynamic writer `wid`.
    pub fn dynamic_writer_append_chunk(
        &self,
        wid: usize,
        offset: u64,
        digest: &[u8; 32],
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let size = *state
            .known_chunks
            .get(digest)
            .ok_or_else(|| format_err!("no such chunk {}", hex::encode(digest)))?;
        let writer = state
            .dynamic_writers
            .get_mut(&wid)
            .ok_or_else(|| format_err!("dynamic writer '{wid}' not registered"))?;
        if offset != writer.offset {
            bail!(
                "dynamic writer '{}' append chunk failed - got strange chunk offset ({} != {offset})",
                writer.name,
                writer.offset
            );
        }
        let end = writer.offset + u64::from(size);
        writer.index.add_chunk(end, digest).map_err(|err| {
            format_err!(
                "dynamic writer '{}' append chunk failed - {err}",
                writer.name
            )
        })?;
        writer.offset = end;
        writer.chunk_count += 1;
        Ok(())
    }

    /// Stores a known chunk at `offset` in fixed writer `wid`.
    pub fn fixed_writer_append_chunk(
        &self,
        wid: usize,
        offset: u64,
        digest: &[u8; 32],
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let size = *state
            .known_chunks
            .get(digest)
            .ok_or_else(|| format_err!("no such chunk {}", hex::encode(digest)))?;
        let writer = state
            .fixed_writers
            .get_mut(&wid)
            .ok_or_else(|| format_err!("fixed writer '{wid}' not registered"))?;
        let name = writer.name.clone();
        let fail = |msg: String| format_err!("fixed writer '{name}' append chunk failed - {msg}");
        let size = u64::from(size);
        let chunk_size = u64::from(writer.chunk_size);
        let end = offset
            .checked_add(size)
            .ok_or_else(|| fail(format!("chunk offset {offset} overflows")))?;
        if end > writer.size {
            return Err(fail(format!(
                "chunk data exceeds size ({end} > {})",
                writer.size
            )));
        }
        if size == 0 || size > chunk_size || (size != chunk_size && end != writer.size) {
            return Err(fail(format!(
                "got chunk with wrong length ({size} != {chunk_size})"
            )));
        }
        if !offset.is_multiple_of(chunk_size) {
            return Err(fail(format!("got unaligned chunk (offset {offset})")));
        }
        let pos = usize::try_from(offset / chunk_size)
            .map_err(|_| fail(format!("chunk offset {offset} out of range")))?;
        writer
            .index
            .add_digest(pos, digest)
            .map_err(|err| fail(err.to_string()))?;
        writer.chunk_count += 1;
        Ok(())
    }

    /// Closes dynamic writer `wid` after checking the client's counts and checksum.
    pub fn dynamic_writer_close(
        &self,
        wid: usize,
        chunk_count: u64,
        size: u64,
        csum: [u8; 32],
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let mut writer = state
            .dynamic_writers
            .remove(&wid)
            .ok_or_else(|| format_err!("dynamic writer '{wid}' not registered"))?;
        let name = writer.name.clone();
        if writer.chunk_count != chunk_count {
            bail!(
                "dynamic writer '{name}' close failed - unexpected chunk count ({} != {chunk_count})",
                writer.chunk_count
            );
        }
        if writer.offset != size {
            bail!(
                "dynamic writer '{name}' close failed - unexpected file size ({} != {size})",
                writer.offset
            );
        }
        let expected = writer.index.close()?;
        if expected != csum {
            bail!("dynamic writer '{name}' close failed - got unexpected checksum");
        }
        let uuid = writer.index.uuid();
        self.record_closed_writer(
            &mut state,
            &name,
            &csum,
            &uuid,
            size,
            chunk_count,
            &writer.upload_stat,
        );
        Ok(())
    }

    /// Closes fixed writer `wid` after checking the client's counts and checksum.
    pub fn fixed_writer_close(
        &self,
        wid: usize,
        chunk_count: u64,
        size: u64,
        csum: [u8; 32],
    ) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        let mut writer = state
            .fixed_writers
            .remove(&wid)
            .ok_or_else(|| format_err!("fixed writer '{wid}' not registered"))?;
        let name = writer.name.clone();
        if writer.chunk_count != chunk_count {
            bail!(
                "fixed writer '{name}' close failed - received wrong number of chunk ({} != {chunk_count})",
                writer.chunk_count
            );
        }
        if !writer.incremental {
            let slots = writer.index.index_length() as u64;
            if slots != chunk_count {
                bail!(
                    "fixed writer '{name}' close failed - unexpected chunk count ({slots} != {chunk_count})"
                );
            }
            if writer.size != size {
                bail!(
                    "fixed writer '{name}' close failed - unexpected file size ({} != {size})",
                    writer.size
                );
            }
        }
        let expected = writer.index.close()?;
        if expected != csum {
            bail!("fixed writer '{name}' close failed - got unexpected checksum");
        }
        let uuid = writer.index.uuid();
        let size = writer.size;
        self.record_closed_writer(
            &mut state,
            &name,
            &csum,
            &uuid,
            size,
            chunk_count,
            &writer.upload_stat,
        );
        Ok(())
    }

    /// Logs a closed index's upload statistics and adds it to the session totals.
    #[allow(clippy::too_many_arguments)]
    fn record_closed_writer(
        &self,
        state: &mut SharedState,
        name: &str,
        csum: &[u8; 32],
        uuid: &[u8; 16],
        size: u64,
        chunk_count: u64,
        stat: &UploadStatistic,
    ) {
        self.log_upload_stat(name, csum, uuid, size, chunk_count, stat);
        state.file_counter += 1;
        state.backup_size += size;
        state.backup_stat.add(stat);
    }

    fn log_upload_stat(
        &self,
        name: &str,
        csum: &[u8; 32],
        uuid: &[u8; 16],
        size: u64,
        chunk_count: u64,
        stat: &UploadStatistic,
    ) {
        self.log(format!("Upload statistics for '{name}'"));
        self.log(format!("UUID: {}", hex::encode(uuid)));
        self.log(format!("Checksum: {}", hex::encode(csum)));
        self.log(format!("Size: {size}"));
        self.log(format!("Chunk count: {chunk_count}"));
        if size == 0 || chunk_count == 0 {
            return;
        }
        self.log(format!(
            "Upload size: {} ({}%)",
            stat.size,
            stat.size * 100 / size
        ));
        // Chunks appended without upload were known to the client already.
        let client_side_duplicates = chunk_count.saturating_sub(stat.count);
        let server_side_duplicates = stat.duplicates;
        if client_side_duplicates + server_side_duplicates > 0 {
            let per = (client_side_duplicates + server_side_duplicates) * 100 / chunk_count;
            self.log(format!(
                "Duplicates: {client_side_duplicates}+{server_side_duplicates} ({per}%)"
            ));
        }
        if let Some(per) = (stat.compressed_size * 100).checked_div(stat.size) {
            self.log(format!("Compression: {per}%"));
        }
    }

    /// Commits the snapshot (spec §3.4 `finish`).
    pub fn finish_backup(&self) -> Result<(), Error> {
        let mut state = self.state();
        state.ensure_unfinished()?;
        if !state.dynamic_writers.is_empty() || !state.fixed_writers.is_empty() {
            bail!("found open index writer - unable to finish backup");
        }
        if state.file_counter == 0 {
            bail!("backup does not contain valid files (file count == 0)");
        }
        let stats = state.backup_stat.to_value();
        self.datastore
            .update_manifest(&self.ns, &self.backup_dir, |manifest| {
                if !manifest.unprotected.is_object() {
                    manifest.unprotected = json!({});
                }
                if let Value::Object(map) = &mut manifest.unprotected {
                    map.insert("chunk_upload_stats".to_string(), stats);
                }
            })
            .map_err(|err| format_err!("unable to update manifest blob - {err:#}"))?;
        if let Some(base) = &self.last_backup {
            let path = self.datastore.snapshot_path(&self.ns, &base.backup_dir)?;
            if !path.exists() {
                bail!(
                    "base snapshot {} was removed during backup, cannot finish as chunks might be missing",
                    base.backup_dir
                );
            }
        }
        if self.datastore.chunk_store().sync_level() == DatastoreFSyncLevel::Filesystem {
            self.datastore.chunk_store().syncfs()?;
        }
        state.finished = true;
        Ok(())
    }

    /// Drops all open writers (their temporary files are removed).
    pub fn drop_writers(&self) {
        let mut state = self.state();
        state.dynamic_writers.clear();
        state.fixed_writers.clear();
    }
}

fn count_upload(stat: &mut UploadStatistic, size: u32, compressed_size: u64, is_duplicate: bool) {
    stat.count += 1;
    stat.size += u64::from(size);
    stat.compressed_size += compressed_size;
    if is_duplicate {
        stat.duplicates += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_api_types::{BackupGroup, BackupType};
    use pbs_datastore::datastore::DataStoreTuning;

    const MIB: u64 = 1024 * 1024;

    struct Fixture {
        _tmp: tempfile::TempDir,
        env: BackupEnvironment,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("backup-env-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let store_path = tmp.path().join("store");
        let datastore = DataStore::create(
            "store1",
            &store_path,
            tmp.path().join("locks"),
            DataStoreTuning {
                sync_level: DatastoreFSyncLevel::None,
                ..Default::default()
            },
            &|_| {},
        )
        .unwrap();
        let tasks = pbs_tasks::TaskDir::new(tmp.path().join("tasks"));
        let worker = WorkerTask::new_in(
            &tasks,
            "backup",
            Some("store1:host/test".into()),
            "root@pam".parse().unwrap(),
            false,
        )
        .unwrap();
        let group = BackupGroup::new(BackupType::Host, "test").unwrap();
        let backup_dir = BackupDir::new(group, 1_700_000_000).unwrap();
        let snapshot_path = store_path.join("host/test/2023-11-14T22:13:20Z");
        std::fs::create_dir_all(&snapshot_path).unwrap();
        let target = SnapshotTarget {
            datastore: Arc::new(datastore),
            ns: BackupNamespace::default(),
            backup_dir,
            snapshot_path,
            last_backup: None,
        };
        let env = BackupEnvironment::new(worker, target, "root@pam".parse().unwrap(), false);
        Fixture { _tmp: tmp, env }
    }

    fn fixed_writer(env: &BackupEnvironment, size: u64) -> usize {
        let path = env.snapshot_path.join("disk.img.fidx");
        let index = FixedIndexWriter::create(
            env.datastore.chunk_store().clone(),
            path,
            size,
            FIXED_CHUNK_SIZE,
        )
        .unwrap();
        env.register_fixed_writer(index, "disk.img.fidx".into(), size, false)
            .unwrap()
    }

    #[test]
    fn fixed_writer_rules() {
        let fx = fixture();
        let env = &fx.env;
        let size = 2 * MIB * 4 + 100;
        let wid = fixed_writer(env, size);
        let full = [1u8; 32];
        let tail = [2u8; 32];
        let mid = [3u8; 32];
        env.register_fixed_chunk(wid, full, FIXED_CHUNK_SIZE, 10, false)
            .unwrap();
        env.register_fixed_chunk(wid, tail, 100, 10, false).unwrap();
        assert_eq!(
            env.register_fixed_chunk(wid, mid, 200, 10, false)
                .unwrap_err()
                .to_string(),
            format!("fixed writer '{wid}' - detected multiple end chunks (chunk size too small)")
        );
        assert_eq!(
            env.register_dynamic_chunk(wid, mid, 200, 10, false)
                .unwrap_err()
                .to_string(),
            format!("dynamic writer '{wid}' not registered")
        );
        let err = |offset: u64, digest: &[u8; 32]| {
            env.fixed_writer_append_chunk(wid, offset, digest)
                .unwrap_err()
                .to_string()
        };
        assert!(err(1, &full).ends_with("got unaligned chunk (offset 1)"));
        assert!(err(2 * 4 * MIB, &full).contains("chunk data exceeds size"));
        assert!(err(0, &tail).contains("got chunk with wrong length"));
        assert_eq!(err(0, &mid), format!("no such chunk {}", hex::encode(mid)));
        // out of order and overwriting is fine
        env.fixed_writer_append_chunk(wid, 2 * 4 * MIB, &tail)
            .unwrap();
        env.fixed_writer_append_chunk(wid, 4 * MIB, &full).unwrap();
        env.fixed_writer_append_chunk(wid, 0, &full).unwrap();

        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(&full);
        hasher.update(&full);
        hasher.update(&tail);
        let csum = hasher.finish();
        assert_eq!(
            env.fixed_writer_close(wid, 2, size, csum)
                .unwrap_err()
                .to_string(),
            "fixed writer 'disk.img.fidx' close failed - received wrong number of chunk (3 != 2)"
        );
        // the failed close removed the writer
        assert!(env.fixed_writer_close(wid, 3, size, csum).is_err());

        let wid = fixed_writer(env, size);
        for (offset, digest) in [(0, &full), (4 * MIB, &full), (8 * MIB, &tail)] {
            env.fixed_writer_append_chunk(wid, offset, digest).unwrap();
        }
        assert_eq!(
            env.fixed_writer_close(wid, 3, size + 1, csum)
                .unwrap_err()
                .to_string(),
            format!(
                "fixed writer 'disk.img.fidx' close failed - unexpected file size ({size} != {})",
                size + 1
            )
        );
        let wid = fixed_writer(env, size);
        for (offset, digest) in [(0, &full), (4 * MIB, &full), (8 * MIB, &tail)] {
            env.fixed_writer_append_chunk(wid, offset, digest).unwrap();
        }
        env.fixed_writer_close(wid, 3, size, csum).unwrap();
        let written = std::fs::read(env.snapshot_path.join("disk.img.fidx")).unwrap();
        assert_eq!(written[32..64], csum);
    }

    #[test]
    fn finish_needs_closed_writers_and_files() {
        let fx = fixture();
        let env = &fx.env;
        assert_eq!(
            env.finish_backup().unwrap_err().to_string(),
            "backup does not contain valid files (file count == 0)"
        );
        let index = DynamicIndexWriter::create(
            env.datastore.chunk_store().clone(),
            env.snapshot_path.join("a.didx"),
        )
        .unwrap();
        let wid = env.register_dynamic_writer(index, "a.didx".into()).unwrap();
        assert_eq!(
            env.finish_backup().unwrap_err().to_string(),
            "found open index writer - unable to finish backup"
        );
        env.register_dynamic_chunk(wid, [7u8; 32], 10, 5, true)
            .unwrap();
        env.dynamic_writer_append_chunk(wid, 0, &[7u8; 32]).unwrap();
        assert_eq!(
            env.dynamic_writer_append_chunk(wid, 0, &[7u8; 32])
                .unwrap_err()
                .to_string(),
            "dynamic writer 'a.didx' append chunk failed - got strange chunk offset (10 != 0)"
        );
        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(&10u64.to_le_bytes());
        hasher.update(&[7u8; 32]);
        env.dynamic_writer_close(wid, 1, 10, hasher.finish())
            .unwrap();
        // no manifest uploaded
        assert!(env
            .finish_backup()
            .unwrap_err()
            .to_string()
            .starts_with("unable to update manifest blob - "));
        let manifest = pbs_datastore::BackupManifest::new("host", "test", 1_700_000_000);
        let blob = pbs_datastore::DataBlob::encode(
            manifest.to_string(None).unwrap().as_bytes(),
            None,
            false,
        )
        .unwrap();
        std::fs::write(env.snapshot_path.join("index.json.blob"), blob.raw_data()).unwrap();
        env.finish_backup().unwrap();
        assert!(env.is_finished());
        assert_eq!(
            env.register_known_chunk([1u8; 32], 1)
                .unwrap_err()
                .to_string(),
            "backup already marked as finished."
        );
        let (manifest, _) = env
            .datastore
            .load_manifest(&env.ns, &env.backup_dir)
            .unwrap();
        assert_eq!(
            manifest.unprotected["chunk_upload_stats"],
            json!({"count": 1, "size": 10, "compressed_size": 5, "duplicates": 1})
        );
    }

    #[test]
    fn upload_statistic_sums_and_serializes() {
        let mut total = UploadStatistic::default();
        let mut one = UploadStatistic::default();
        count_upload(&mut one, 100, 40, false);
        count_upload(&mut one, 50, 50, true);
        total.add(&one);
        total.add(&one);
        assert_eq!(
            total.to_value(),
            json!({"count": 4, "size": 300, "compressed_size": 180, "duplicates": 2})
        );
    }
}
