//! Client side of the backup protocol: one session writing one snapshot.

mod append_batch;
mod chunk_cutter;
mod encode;
mod index_state;
mod speedtest;
mod upload;

use std::collections::HashSet;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, format_err, Context, Error};
use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Value};

use pbs_api_types::{BackupDir, BackupNamespace};
use pbs_datastore::index::IndexFile;
use pbs_datastore::{BackupManifest, CryptConfig, DataBlob, DynamicIndexReader, FixedIndexReader};

use crate::h2::H2Client;
use crate::http_client::HttpClient;
use crate::inject::PayloadHint;

pub use append_batch::{append_body, EntryBatcher, IndexEntry, APPEND_BATCH_THRESHOLD};
pub use chunk_cutter::{ChunkCutter, StreamPiece};
pub use encode::{ordered_parallel, ChunkEncoder, EncodedChunk, KnownChunks};
pub use index_state::{IndexKind, IndexState, IndexTotals, QueueItem};
pub use speedtest::{SpeedtestResult, SPEEDTEST_BODY_SIZE, SPEEDTEST_DURATION};

/// Name of the backup protocol in the `Upgrade` header.
pub const BACKUP_PROTOCOL: &str = "proxmox-backup-protocol-v1";

/// Default average (dynamic) or exact (fixed) chunk size.
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// What an upload produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStats {
    /// Stream/image length (indexes) or encoded length (blobs).
    pub size: u64,
    /// Index checksum (indexes) or SHA-256 of the encoded blob (blobs).
    pub csum: [u8; 32],
    /// Wall-clock time of the upload.
    pub duration: Duration,
    /// Chunks in the index.
    pub chunk_count: u64,
    /// Chunks that were not uploaded because the server had them.
    pub chunk_reused: u64,
    /// Plain bytes of the reused chunks.
    pub size_reused: u64,
    /// Encoded bytes uploaded.
    pub size_compressed: u64,
}

impl BackupStats {
    fn for_blob(raw: &[u8], duration: Duration) -> Self {
        Self {
            size: raw.len() as u64,
            csum: openssl::sha::sha256(raw),
            duration,
            chunk_count: 0,
            chunk_reused: 0,
            size_reused: 0,
            size_compressed: raw.len() as u64,
        }
    }
}

/// How an archive is uploaded.
#[derive(Default, Clone)]
pub struct UploadOptions {
    /// Manifest of the previous snapshot: its index of the same name seeds chunk reuse.
    pub previous_manifest: Option<Arc<BackupManifest>>,
    /// zstd-compress chunks/blobs (kept only when smaller).
    pub compress: bool,
    /// Encrypt with the session's key.
    pub encrypt: bool,
    /// Upload as fixed index of this image size (else dynamic).
    pub fixed_size: Option<u64>,
}

/// An open backup session.
pub struct BackupWriter {
    h2: H2Client,
    crypt_config: Option<Arc<CryptConfig>>,
    canceled: Arc<AtomicBool>,
}

impl BackupWriter {
    /// Opens a backup session for snapshot `backup` in `datastore`/`ns`.
    pub async fn start(
        client: &HttpClient,
        crypt_config: Option<Arc<CryptConfig>>,
        datastore: &str,
        ns: &BackupNamespace,
        backup: &BackupDir,
        debug: bool,
        benchmark: bool,
    ) -> Result<Arc<Self>, Error> {
        let mut params = crate::backup_reader::session_params(datastore, ns, backup, debug);
        params["benchmark"] = Value::Bool(benchmark);
        let h2 = client
            .start_h2_connection("api2/json/backup", params, BACKUP_PROTOCOL)
            .await?;
        Ok(Arc::new(Self::from_h2(h2, crypt_config)))
    }

    /// Wraps an already upgraded session.
    pub fn from_h2(h2: H2Client, crypt_config: Option<Arc<CryptConfig>>) -> Self {
        Self {
            h2,
            crypt_config,
            canceled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The session's HTTP/2 client (for calls without a helper here).
    pub fn h2(&self) -> &H2Client {
        &self.h2
    }

    fn check_canceled(&self) -> Result<(), Error> {
        if self.canceled.load(Ordering::Relaxed) {
            bail!("backup canceled");
        }
        Ok(())
    }

    /// Stops all uploads of this session; the server discards the unfinished snapshot once
    /// the session ends.
    pub fn cancel(&self) {
        self.canceled.store(true, Ordering::Relaxed);
    }

    /// Time of the snapshot the server uses as base for chunk reuse.
    pub async fn previous_backup_time(&self) -> Result<Option<i64>, Error> {
        let reply = self.h2.get("previous_backup_time", None).await?;
        match &reply["data"] {
            Value::Null => Ok(None),
            value => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| format_err!("previous_backup_time: unexpected answer {value}")),
        }
    }

    /// Downloads a file of the base snapshot into an anonymous temporary file.
    async fn download_previous_file(&self, name: &str) -> Result<std::fs::File, Error> {
        let file = tempfile::tempfile().context("unable to create temporary file")?;
        let mut file = self
            .h2
            .download("previous", Some(json!({ "archive-name": name })), file)
            .await
            .with_context(|| format!("download of previous '{name}' failed"))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Downloads and decodes the manifest of the base snapshot (signature checked with the
    /// session's key).
    pub async fn download_previous_manifest(&self) -> Result<BackupManifest, Error> {
        let raw = self
            .h2
            .download_to_vec(
                "previous",
                Some(json!({ "archive-name": "index.json.blob" })),
            )
            .await?;
        decode_manifest(raw, self.crypt_config.as_deref()).map(|(manifest, _)| manifest)
    }

    /// Downloads the base snapshot's `.didx` `name`, checks it against `manifest` and adds its
    /// digests to `known` (the server registers them for this session).
    pub async fn download_previous_dynamic_index(
        &self,
        name: &str,
        manifest: &BackupManifest,
        known: KnownChunks,
    ) -> Result<DynamicIndexReader, Error> {
        let file = self.download_previous_file(name).await?;
        let index = DynamicIndexReader::new(file, Path::new(name))?;
        register_previous_index(&index, name, manifest, &known)?;
        Ok(index)
    }

    /// Downloads the base snapshot's `.fidx` `name`, checks it against `manifest` and adds its
    /// digests to `known`.
    pub async fn download_previous_fixed_index(
        &self,
        name: &str,
        manifest: &BackupManifest,
        known: KnownChunks,
    ) -> Result<FixedIndexReader, Error> {
        let file = self.download_previous_file(name).await?;
        let index = FixedIndexReader::new(file, Path::new(name))?;
        register_previous_index(&index, name, manifest, &known)?;
        Ok(index)
    }

    /// Encodes `data` as a blob and stores it as `file_name` (must end in `.blob`).
    pub async fn upload_blob_from_data(
        &self,
        data: Vec<u8>,
        file_name: &str,
        options: UploadOptions,
    ) -> Result<BackupStats, Error> {
        self.check_canceled()?;
        let start = Instant::now();
        let config = self.blob_crypt_config(&options)?;
        let compress = options.compress;
        let blob = tokio::task::spawn_blocking(move || {
            DataBlob::encode(&data, config.as_deref(), compress)
        })
        .await
        .map_err(|err| format_err!("blob encoder failed - {err}"))?
        .map_err(|err| format_err!("unable to encode blob '{file_name}' - {err}"))?;
        let raw = Bytes::from(blob.into_inner());
        let params = json!({ "encoded-size": raw.len(), "file-name": file_name });
        self.h2
            .upload(
                "POST",
                "blob",
                Some(params),
                "application/octet-stream",
                raw.clone(),
            )
            .await
            .with_context(|| format!("upload of blob '{file_name}' failed"))?;
        Ok(BackupStats::for_blob(&raw, start.elapsed()))
    }

    /// Reads `src` and uploads it as blob `file_name`.
    pub async fn upload_blob_from_file<P: AsRef<Path>>(
        &self,
        src: P,
        file_name: &str,
        options: UploadOptions,
    ) -> Result<BackupStats, Error> {
        let src: PathBuf = src.as_ref().to_path_buf();
        let data = tokio::fs::read(&src)
            .await
            .with_context(|| format!("unable to read file {src:?}"))?;
        self.upload_blob_from_data(data, file_name, options).await
    }

    fn blob_crypt_config(
        &self,
        options: &UploadOptions,
    ) -> Result<Option<Arc<CryptConfig>>, Error> {
        if !options.encrypt {
            return Ok(None);
        }
        match &self.crypt_config {
            Some(config) => Ok(Some(Arc::clone(config))),
            None => bail!("requested encryption without a crypt config"),
        }
    }

    /// Uploads a stream whose items are already cut chunks (one item = one chunk), e.g. the
    /// zero chunks of sparse images; otherwise like [`BackupWriter::upload_stream`].
    pub async fn upload_chunk_stream(
        &self,
        archive_name: &str,
        chunks: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
        options: UploadOptions,
        hints: Option<std::sync::mpsc::Receiver<PayloadHint>>,
    ) -> Result<BackupStats, Error> {
        self.upload_index(archive_name, chunks, ChunkCutter::pre_cut(), options, hints)
            .await
    }

    /// Chunks a byte stream (dynamic: chunker with `chunk_size` average, or fixed chunks when
    /// `options.fixed_size` is set) and uploads it as `archive_name` (.didx / .fidx), reusing
    /// chunks known from the previous snapshot; hashing/compression/encryption run on all cores.
    /// `hints` (payload streams of split archives) carry the archiver's suggested and forced
    /// chunk boundaries and the injections of re-used chunks.
    pub async fn upload_stream(
        &self,
        archive_name: &str,
        stream: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
        chunk_size: Option<usize>,
        options: UploadOptions,
        hints: Option<std::sync::mpsc::Receiver<PayloadHint>>,
    ) -> Result<BackupStats, Error> {
        let chunk_size = chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        let cutter = match options.fixed_size {
            Some(_) => ChunkCutter::fixed(chunk_size)?,
            None => ChunkCutter::dynamic(chunk_size)?,
        };
        self.upload_index(archive_name, stream, cutter, options, hints)
            .await
    }

    async fn upload_index(
        &self,
        archive_name: &str,
        stream: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
        cutter: ChunkCutter,
        options: UploadOptions,
        hints: Option<std::sync::mpsc::Receiver<PayloadHint>>,
    ) -> Result<BackupStats, Error> {
        self.check_canceled()?;
        let start = Instant::now();
        let kind = if options.fixed_size.is_some() {
            IndexKind::Fixed
        } else {
            IndexKind::Dynamic
        };
        let expected_ext = match kind {
            IndexKind::Fixed => ".fidx",
            IndexKind::Dynamic => ".didx",
        };
        if !archive_name.ends_with(expected_ext) {
            bail!("archive name '{archive_name}' must end with '{expected_ext}'");
        }
        let crypt_config = self.blob_crypt_config(&options)?;

        let known: KnownChunks = Arc::new(Mutex::new(HashSet::new()));
        if let Some(manifest) = &options.previous_manifest {
            if manifest.lookup_file_info(archive_name).is_ok() {
                let result = match kind {
                    IndexKind::Dynamic => self
                        .download_previous_dynamic_index(archive_name, manifest, Arc::clone(&known))
                        .await
                        .map(drop),
                    IndexKind::Fixed => self
                        .download_previous_fixed_index(archive_name, manifest, Arc::clone(&known))
                        .await
                        .map(drop),
                };
                // Without the previous index everything is uploaded; the backup still works.
                if let Err(err) = result {
                    eprintln!("Error downloading {archive_name} from previous manifest: {err:#}");
                }
            }
        }

        let mut create = json!({ "archive-name": archive_name });
        if let Some(size) = options.fixed_size {
            create["size"] = json!(size);
        }
        let prefix = kind.prefix();
        let reply = self
            .h2
            .post(&format!("{prefix}_index"), Some(create))
            .await
            .with_context(|| format!("unable to create index '{archive_name}'"))?;
        let wid = reply["data"]
            .as_u64()
            .ok_or_else(|| format_err!("creating '{archive_name}': server sent no writer id"))?;

        let encoder = ChunkEncoder::new(crypt_config, options.compress, Arc::clone(&known));
        let totals = upload::upload_index(upload::IndexUpload {
            h2: self.h2.clone(),
            wid,
            kind,
            stream: Box::pin(stream),
            cutter,
            hints,
            encoder,
            known,
            canceled: Arc::clone(&self.canceled),
        })
        .await
        .with_context(|| format!("upload of '{archive_name}' failed"))?;

        if let Some(size) = options.fixed_size {
            if totals.size != size {
                bail!(
                    "image '{archive_name}': got {} bytes, expected {size}",
                    totals.size
                );
            }
        }
        let close = json!({
            "wid": wid,
            "chunk-count": totals.chunk_count,
            "size": totals.size,
            "csum": hex::encode(totals.csum),
        });
        self.h2
            .post(&format!("{prefix}_close"), Some(close))
            .await
            .with_context(|| format!("unable to close index '{archive_name}'"))?;

        Ok(BackupStats {
            size: totals.size,
            csum: totals.csum,
            duration: start.elapsed(),
            chunk_count: totals.chunk_count,
            chunk_reused: totals.chunk_reused,
            size_reused: totals.size_reused,
            size_compressed: totals.size_compressed,
        })
    }

    /// Benchmark: pipelined 4 MiB `speedtest` uploads for 5 seconds (client.md §6).
    pub async fn speedtest(&self) -> Result<SpeedtestResult, Error> {
        self.check_canceled()?;
        speedtest::run(&self.h2, SPEEDTEST_DURATION).await
    }

    /// Commits the snapshot (the manifest must have been uploaded).
    pub async fn finish(self: Arc<Self>) -> Result<(), Error> {
        self.check_canceled()?;
        self.h2
            .post("finish", None)
            .await
            .context("unable to finish backup")?;
        Ok(())
    }
}

/// Checks a downloaded previous index against the manifest and records its digests.
fn register_previous_index(
    index: &dyn IndexFile,
    name: &str,
    manifest: &BackupManifest,
    known: &KnownChunks,
) -> Result<(), Error> {
    let (csum, size) = index.compute_csum();
    manifest.verify_file(name, &csum, size)?;
    let mut known = known
        .lock()
        .map_err(|_| format_err!("known chunk set lock poisoned"))?;
    for pos in 0..index.index_count() {
        if let Some(digest) = index.index_digest(pos) {
            known.insert(*digest);
        }
    }
    Ok(())
}

/// Decodes a raw `index.json.blob`, checking CRC and (with a key) the signature.
pub fn decode_manifest(
    raw: Vec<u8>,
    crypt_config: Option<&CryptConfig>,
) -> Result<(BackupManifest, Vec<u8>), Error> {
    let blob = DataBlob::from_raw(raw).map_err(|err| format_err!("manifest blob: {err}"))?;
    blob.verify_crc()
        .map_err(|err| format_err!("manifest blob: {err}"))?;
    let data = blob
        .decode(None, None)
        .map_err(|err| format_err!("manifest blob: {err}"))?;
    let manifest = BackupManifest::from_data_verified(&data, crypt_config)?;
    Ok((manifest, blob.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "xorshift stream" of the datastore spec.
    fn xorshift_stream(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x0123456789abcdef;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Cuts `data` (fed in irregular pieces) and accounts it like `upload_stream` does.
    fn cut_and_account(data: &[u8], mut cutter: ChunkCutter) -> (Vec<(u64, u64)>, IndexTotals) {
        let encoder = ChunkEncoder::new(None, true, Default::default());
        let mut state = IndexState::new(IndexKind::Dynamic, Default::default());
        let mut spans = Vec::new();
        let mut items = Vec::new();
        let mut emit = |piece: StreamPiece| -> Result<(), Error> {
            let StreamPiece::Chunk(chunk) = piece else {
                bail!("unexpected injection");
            };
            spans.push((state.offset(), chunk.len() as u64));
            state.add_chunk(encoder.encode(&chunk)?, &mut items)
        };
        let bytes = Bytes::copy_from_slice(data);
        let mut pos = 0;
        let mut step = 777;
        while pos < bytes.len() {
            let end = (pos + step).min(bytes.len());
            cutter.push(bytes.slice(pos..end), &mut emit).unwrap();
            pos = end;
            step = step * 7 % 100_003 + 1;
        }
        cutter.finish(&mut emit).unwrap();
        let totals = state.finish(&mut items);
        (spans, totals)
    }

    #[test]
    fn spec_vector_v2_boundaries_csum_and_first_digest() {
        let data = xorshift_stream(1_048_576);
        assert_eq!(hex::encode(&data[..16]), "b4019e56d600283fb7d0eb3c9a946f60");
        let (spans, totals) = cut_and_account(&data, ChunkCutter::dynamic(65536).unwrap());
        let expected: Vec<(u64, u64)> = vec![
            (0, 37705),
            (37705, 55474),
            (93179, 131506),
            (224685, 47008),
            (271693, 37693),
            (309386, 68256),
            (377642, 63426),
            (441068, 69042),
            (510110, 69296),
            (579406, 16549),
            (595955, 52030),
            (647985, 63780),
            (711765, 20805),
            (732570, 24099),
            (756669, 47985),
            (804654, 16791),
            (821445, 76166),
            (897611, 67863),
            (965474, 83102),
        ];
        assert_eq!(spans, expected);
        assert_eq!(
            hex::encode(totals.csum),
            "e470cada9b6c83fb3c51cbf29e71a798050803636f7ce8c062740e162a37fec9"
        );
        assert_eq!(
            hex::encode(openssl::sha::sha256(&data[..37705])),
            "e2a7303c0ab55577aa6271e1bb5f41b97be277447ce0924cb2c180fc68ddf1fe"
        );
        assert_eq!(totals.size, 1_048_576);
        assert_eq!(totals.chunk_count, 19);
    }

    #[test]
    fn spec_vectors_v1_and_v4_boundaries() {
        let v1: Vec<u8> = (0..262_144u32).flat_map(|i| i.to_le_bytes()).collect();
        let (spans, _) = cut_and_account(&v1, ChunkCutter::dynamic(65536).unwrap());
        assert_eq!(
            spans,
            [
                (0, 143377),
                (143377, 262144),
                (405521, 262144),
                (667665, 262144),
                (929809, 118767)
            ]
        );
        let zeros = vec![0u8; 20 * 1024 * 1024];
        let (spans, totals) = cut_and_account(&zeros, ChunkCutter::dynamic(4_194_304).unwrap());
        assert_eq!(spans, [(0, 16777216), (16777216, 4194304)]);
        assert_eq!(totals.chunk_count, 2);
    }
}
