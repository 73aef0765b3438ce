//! Hashing, compression and encryption of chunks on all cores, in stream order.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{format_err, Error};
use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use pbs_datastore::{CryptConfig, DataBlob};

/// A set of chunk digests shared between the stages of one upload.
pub type KnownChunks = Arc<Mutex<HashSet<[u8; 32]>>>;

/// A chunk after hashing (and encoding, unless it was already known).
pub struct EncodedChunk {
    /// Chunk digest (keyed when encrypting).
    pub digest: [u8; 32],
    /// Plain length.
    pub size: u64,
    /// The encoded blob; `None` when the digest was known when the chunk was hashed.
    pub blob: Option<DataBlob>,
}

/// Computes digests and encodes chunks.
#[derive(Clone)]
pub struct ChunkEncoder {
    crypt_config: Option<Arc<CryptConfig>>,
    compress: bool,
    known: KnownChunks,
}

impl ChunkEncoder {
    /// Encrypts when `crypt_config` is given; skips encoding of digests in `known`.
    pub fn new(crypt_config: Option<Arc<CryptConfig>>, compress: bool, known: KnownChunks) -> Self {
        Self {
            crypt_config,
            compress,
            known,
        }
    }

    /// Chunk digest of `data`.
    pub fn digest(&self, data: &[u8]) -> [u8; 32] {
        match &self.crypt_config {
            Some(config) => config.compute_digest(data),
            None => openssl::sha::sha256(data),
        }
    }

    /// Encodes `data` as a chunk blob.
    pub fn encode_blob(&self, data: &[u8], digest: &[u8; 32]) -> Result<DataBlob, Error> {
        DataBlob::encode(data, self.crypt_config.as_deref(), self.compress)
            .map_err(|err| format_err!("chunk {}: encoding failed - {err}", hex::encode(digest)))
    }

    /// Hashes `data` and encodes it unless its digest is already known.
    pub fn encode(&self, data: &Bytes) -> Result<EncodedChunk, Error> {
        let digest = self.digest(data);
        let known = self
            .known
            .lock()
            .map_err(|_| format_err!("known chunk set lock poisoned"))?
            .contains(&digest);
        let blob = if known {
            None
        } else {
            Some(self.encode_blob(data, &digest)?)
        };
        Ok(EncodedChunk {
            digest,
            size: data.len() as u64,
            blob,
        })
    }
}

/// Number of chunks processed at once: one per core, plus one so a core never idles while a
/// result waits to be taken.
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// Maps `input` through `work` on blocking threads, at most `workers` at a time, keeping the
/// input order.
pub fn ordered_parallel<S, T, U, F>(
    input: S,
    workers: usize,
    work: F,
) -> impl Stream<Item = Result<U, Error>> + Send
where
    S: Stream<Item = T> + Send,
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> Result<U, Error> + Send + Sync + 'static,
{
    let work = Arc::new(work);
    input
        .map(move |item| {
            let work = Arc::clone(&work);
            spawn_work(move || work(item))
        })
        .buffered(workers.max(1))
}

fn spawn_work<U: Send + 'static>(
    job: impl FnOnce() -> Result<U, Error> + Send + 'static,
) -> impl Future<Output = Result<U, Error>> + Send {
    let handle = tokio::task::spawn_blocking(job);
    async move {
        handle
            .await
            .map_err(|err| format_err!("chunk worker failed - {err}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ordered_parallel_keeps_order_and_bounds_concurrency() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
        let input = futures::stream::iter(0..40u64);
        let out: Vec<u64> = ordered_parallel(input, 4, move |i| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            // Later items finish earlier: order must still be kept.
            std::thread::sleep(Duration::from_millis(40 - i));
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(i * 2)
        })
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(out, (0..40).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 4, "at most 4 workers at once, saw {peak}");
        assert!(peak >= 2, "work should overlap, saw {peak}");
    }

    #[tokio::test]
    async fn ordered_parallel_passes_errors_through() {
        let input = futures::stream::iter(0..3u32);
        let out: Vec<Result<u32, Error>> = ordered_parallel(input, 2, |i| {
            if i == 1 {
                Err(format_err!("item {i} failed"))
            } else {
                Ok(i)
            }
        })
        .collect()
        .await;
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().to_string(), "item 1 failed");
        assert!(out[2].is_ok());
    }

    #[test]
    fn known_chunks_are_not_encoded_and_keys_change_the_digest() {
        let known: KnownChunks = Arc::default();
        let data = Bytes::from(vec![9u8; 1000]);
        let plain = ChunkEncoder::new(None, true, Arc::clone(&known));
        let first = plain.encode(&data).unwrap();
        assert_eq!(first.digest, openssl::sha::sha256(&data));
        let blob = first.blob.unwrap();
        assert!(blob.is_compressed());
        assert_eq!(blob.decode(None, Some(&first.digest)).unwrap(), data);

        known.lock().unwrap().insert(first.digest);
        assert!(plain.encode(&data).unwrap().blob.is_none());

        let config = Arc::new(CryptConfig::new([1u8; 32]).unwrap());
        let keyed = ChunkEncoder::new(Some(Arc::clone(&config)), false, known);
        let encrypted = keyed.encode(&data).unwrap();
        assert_eq!(encrypted.digest, config.compute_digest(&data));
        let blob = encrypted.blob.unwrap();
        assert!(blob.is_encrypted());
        assert_eq!(
            blob.decode(Some(&config), Some(&encrypted.digest)).unwrap(),
            data
        );
    }
}
