//! Chunks fetched through a reader session: crypt-mode and digest checked, with a small cache.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{format_err, Error};
use pbs_api_types::CryptMode;
use pbs_datastore::read_chunk::{
    check_chunk_crypt_mode, decode_chunk, AsyncReadChunk, ChunkFuture, ReadChunk,
};
use pbs_datastore::{CryptConfig, DataBlob};

use crate::backup_reader::BackupReader;

/// Recently decoded chunks kept besides the hinted ones.
const RECENT_CHUNKS: usize = 8;

/// Decoded chunks: hinted digests stay, others are evicted oldest first.
#[derive(Default)]
struct ChunkCache {
    chunks: HashMap<[u8; 32], Arc<Vec<u8>>>,
    recent: VecDeque<[u8; 32]>,
}

impl ChunkCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        self.chunks.get(digest).cloned()
    }

    fn insert(&mut self, digest: [u8; 32], data: Arc<Vec<u8>>, pinned: bool) {
        if self.chunks.insert(digest, data).is_some() || pinned {
            return;
        }
        self.recent.push_back(digest);
        if self.recent.len() > RECENT_CHUNKS {
            if let Some(old) = self.recent.pop_front() {
                self.chunks.remove(&old);
            }
        }
    }
}

/// Reads chunks of one archive of a snapshot through a [`BackupReader`].
pub struct RemoteChunkReader {
    client: Arc<BackupReader>,
    crypt_config: Option<Arc<CryptConfig>>,
    crypt_mode: CryptMode,
    cache_hint: HashMap<[u8; 32], usize>,
    cache: Mutex<ChunkCache>,
    runtime: Option<tokio::runtime::Handle>,
}

impl RemoteChunkReader {
    /// `crypt_mode` is the archive's mode from the manifest; chunks listed in `cache_hint`
    /// stay cached once read.
    pub fn new(
        client: Arc<BackupReader>,
        crypt_config: Option<Arc<CryptConfig>>,
        crypt_mode: CryptMode,
        cache_hint: HashMap<[u8; 32], usize>,
    ) -> Self {
        Self {
            client,
            crypt_config,
            crypt_mode,
            cache_hint,
            cache: Mutex::new(ChunkCache::default()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Downloads the encoded chunk and checks that its encryption matches the archive.
    pub async fn fetch_raw(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
        let raw = self.client.download_chunk(digest, Vec::new()).await?;
        let blob = DataBlob::from_raw(raw)
            .map_err(|err| format_err!("chunk {}: {err}", hex::encode(digest)))?;
        check_chunk_crypt_mode(&blob, self.crypt_mode, digest)?;
        Ok(blob)
    }

    /// Downloads and decodes (on a blocking thread) a chunk; hinted chunks are cached, others
    /// only with `keep_recent` (random access reads, which revisit chunks).
    pub async fn fetch_decoded(
        &self,
        digest: &[u8; 32],
        keep_recent: bool,
    ) -> Result<Arc<Vec<u8>>, Error> {
        if let Some(data) = self.cached(digest) {
            return Ok(data);
        }
        let blob = self.fetch_raw(digest).await?;
        let config = self.crypt_config.clone();
        let mode = self.crypt_mode;
        let owned_digest = *digest;
        let data = tokio::task::spawn_blocking(move || {
            decode_chunk(&blob, config.as_deref(), &owned_digest, Some(mode))
        })
        .await
        .map_err(|err| format_err!("chunk decoder failed - {err}"))??;
        let data = Arc::new(data);
        let pinned = self.cache_hint.contains_key(digest);
        if pinned || keep_recent {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(*digest, Arc::clone(&data), pinned);
            }
        }
        Ok(data)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        self.cache.lock().ok().and_then(|cache| cache.get(digest))
    }

    /// Runs a future of this reader from synchronous code.
    fn block_on<T>(&self, fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => Err(format_err!(
                    "synchronous chunk reads need a multi-threaded runtime or a plain thread"
                )),
                _ => tokio::task::block_in_place(|| handle.block_on(fut)),
            },
            Err(_) => match &self.runtime {
                Some(handle) => handle.block_on(fut),
                None => Err(format_err!(
                    "synchronous chunk reads need the tokio runtime the reader was created in"
                )),
            },
        }
    }
}

impl ReadChunk for RemoteChunkReader {
    fn read_raw_chunk(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
        self.block_on(self.fetch_raw(digest))
    }

    fn read_chunk(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
        let data = self.block_on(self.fetch_decoded(digest, true))?;
        Ok(Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone()))
    }
}

impl AsyncReadChunk for RemoteChunkReader {
    fn read_raw_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, DataBlob> {
        Box::pin(self.fetch_raw(digest))
    }

    fn read_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, Vec<u8>> {
        Box::pin(async move {
            // Sequential restores never revisit a chunk: keeping it would cost a copy.
            let data = self.fetch_decoded(digest, false).await?;
            Ok(Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_hinted_chunks_and_evicts_old_ones() {
        let mut cache = ChunkCache::default();
        cache.insert([0xff; 32], Arc::new(vec![1]), true);
        for i in 0..(RECENT_CHUNKS as u8 + 3) {
            cache.insert([i; 32], Arc::new(vec![i]), false);
        }
        assert!(cache.get(&[0xff; 32]).is_some(), "pinned chunk evicted");
        assert!(cache.get(&[0; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[3; 32]).is_some());
        assert_eq!(cache.chunks.len(), RECENT_CHUNKS + 1);
    }
}
