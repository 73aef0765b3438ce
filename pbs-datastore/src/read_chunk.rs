//! Chunk sources: anything that returns a chunk by digest, decoded and digest-checked.
//!
//! The local chunk store (server) and the reader protocol (client) both implement these traits;
//! both use [`decode_chunk`] so that crypt-mode and digest checks are identical.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{bail, format_err, Error};
use pbs_api_types::CryptMode;

use crate::chunk_store::ChunkStore;
use crate::crypt_config::CryptConfig;
use crate::data_blob::DataBlob;

/// Synchronous access to chunks by digest.
pub trait ReadChunk {
    /// The encoded chunk as stored (not checked beyond its blob header).
    fn read_raw_chunk(&self, digest: &[u8; 32]) -> Result<DataBlob, Error>;
    /// The decoded chunk data; its digest is checked.
    fn read_chunk(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error>;
}

/// A boxed future returned by [`AsyncReadChunk`].
pub type ChunkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Asynchronous access to chunks by digest.
pub trait AsyncReadChunk: Send + Sync {
    /// The encoded chunk as stored (not checked beyond its blob header).
    fn read_raw_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, DataBlob>;
    /// The decoded chunk data; its digest is checked.
    fn read_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, Vec<u8>>;
}

impl<T: ReadChunk + ?Sized> ReadChunk for Arc<T> {
    fn read_raw_chunk(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
        (**self).read_raw_chunk(digest)
    }
    fn read_chunk(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
        (**self).read_chunk(digest)
    }
}

/// Checks that a chunk's encryption matches the crypt mode of the index it belongs to:
/// encrypted index ⇔ encrypted chunk.
pub fn check_chunk_crypt_mode(
    blob: &DataBlob,
    expected: CryptMode,
    digest: &[u8; 32],
) -> Result<(), Error> {
    let encrypted = blob.is_encrypted();
    match (expected, encrypted) {
        (CryptMode::Encrypt, false) => bail!(
            "chunk {}: unencrypted chunk in an encrypted index",
            hex::encode(digest)
        ),
        (CryptMode::None | CryptMode::SignOnly, true) => bail!(
            "chunk {}: encrypted chunk in an unencrypted index",
            hex::encode(digest)
        ),
        _ => Ok(()),
    }
}

/// Decodes a chunk (decrypting with `crypt_config` if it is encrypted) and checks its digest.
///
/// With `expected_mode`, the chunk's encryption must match it (see
/// [`check_chunk_crypt_mode`]).
pub fn decode_chunk(
    blob: &DataBlob,
    crypt_config: Option<&CryptConfig>,
    digest: &[u8; 32],
    expected_mode: Option<CryptMode>,
) -> Result<Vec<u8>, Error> {
    if let Some(mode) = expected_mode {
        check_chunk_crypt_mode(blob, mode, digest)?;
    }
    blob.decode(crypt_config, Some(digest))
        .map_err(|err| format_err!("chunk {}: {err}", hex::encode(digest)))
}

/// Chunks from a local chunk store.
#[derive(Clone)]
pub struct LocalChunkReader {
    store: Arc<ChunkStore>,
    crypt_config: Option<Arc<CryptConfig>>,
    crypt_mode: Option<CryptMode>,
}

impl LocalChunkReader {
    /// Reads from `store`; with `crypt_mode`, every chunk's encryption must match it.
    pub fn new(
        store: Arc<ChunkStore>,
        crypt_config: Option<Arc<CryptConfig>>,
        crypt_mode: Option<CryptMode>,
    ) -> Self {
        Self {
            store,
            crypt_config,
            crypt_mode,
        }
    }

    fn load(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
        let raw = self.store.load_chunk_raw(digest)?;
        DataBlob::from_raw(raw).map_err(|err| format_err!("chunk {}: {err}", hex::encode(digest)))
    }
}

impl ReadChunk for LocalChunkReader {
    fn read_raw_chunk(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
        self.load(digest)
    }

    fn read_chunk(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
        let blob = self.load(digest)?;
        decode_chunk(&blob, self.crypt_config.as_deref(), digest, self.crypt_mode)
    }
}

impl AsyncReadChunk for LocalChunkReader {
    fn read_raw_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, DataBlob> {
        Box::pin(async move { ReadChunk::read_raw_chunk(self, digest) })
    }

    fn read_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, Vec<u8>> {
        Box::pin(async move { ReadChunk::read_chunk(self, digest) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_store::DatastoreFSyncLevel;
    use crate::data_blob::DataChunkBuilder;

    fn key() -> Arc<CryptConfig> {
        Arc::new(CryptConfig::new([7u8; 32]).unwrap())
    }

    /// Polls a future that never waits (the local reader's futures complete immediately).
    fn poll_once<T>(fut: ChunkFuture<'_, T>) -> Result<T, Error> {
        use std::task::{Context, Poll, Waker};
        let mut fut = fut;
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("local chunk future must not wait"),
        }
    }

    /// One store for all local cases: creating a chunk store makes 65536 directories.
    #[test]
    fn local_reader_checks_digest_key_and_crypt_mode() {
        let dir = tempfile::Builder::new()
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let store = Arc::new(
            ChunkStore::create("test", dir.path().join("store"), DatastoreFSyncLevel::None)
                .unwrap(),
        );

        // Plain chunk: decoded data, raw bytes as stored.
        let data = vec![5u8; 3000];
        let (blob, digest) = DataChunkBuilder::new(&data).build().unwrap();
        store.insert_chunk(blob.raw_data(), &digest).unwrap();
        let reader = LocalChunkReader::new(Arc::clone(&store), None, Some(CryptMode::None));
        assert_eq!(ReadChunk::read_chunk(&reader, &digest).unwrap(), data);
        assert_eq!(
            poll_once(AsyncReadChunk::read_chunk(&reader, &digest)).unwrap(),
            data
        );
        assert_eq!(
            ReadChunk::read_raw_chunk(&reader, &digest)
                .unwrap()
                .raw_data(),
            blob.raw_data()
        );

        // Same bytes stored under another digest: the digest check must catch it.
        let wrong = [9u8; 32];
        store.insert_chunk(blob.raw_data(), &wrong).unwrap();
        let err = ReadChunk::read_chunk(&reader, &wrong)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&hex::encode(wrong)), "{err}");
        assert!(err.contains("wrong digest"), "{err}");

        // Missing chunk: the error names the digest.
        let missing = [0xabu8; 32];
        let err = poll_once(AsyncReadChunk::read_chunk(&reader, &missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&hex::encode(missing)), "{err}");

        // Encrypted chunk: needs the key and an encrypted index.
        let config = key();
        let secret = vec![1u8; 5000];
        let (blob, digest) = DataChunkBuilder::new(&secret)
            .crypt_config(&config)
            .build()
            .unwrap();
        assert!(blob.is_encrypted());
        store.insert_chunk(blob.raw_data(), &digest).unwrap();
        let with_key = LocalChunkReader::new(
            Arc::clone(&store),
            Some(Arc::clone(&config)),
            Some(CryptMode::Encrypt),
        );
        assert_eq!(ReadChunk::read_chunk(&with_key, &digest).unwrap(), secret);
        let without_key = LocalChunkReader::new(Arc::clone(&store), None, None);
        let err = ReadChunk::read_chunk(&without_key, &digest).unwrap_err();
        assert!(err.to_string().contains("missing CryptConfig"), "{err}");
        let wrong_mode =
            LocalChunkReader::new(Arc::clone(&store), Some(config), Some(CryptMode::None));
        let err = ReadChunk::read_chunk(&wrong_mode, &digest).unwrap_err();
        assert!(err
            .to_string()
            .contains("encrypted chunk in an unencrypted index"));
    }

    #[test]
    fn plain_chunk_in_encrypted_index_is_rejected() {
        let (blob, digest) = DataChunkBuilder::new(&[3u8; 100]).build().unwrap();
        let err = decode_chunk(&blob, Some(&key()), &digest, Some(CryptMode::Encrypt))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unencrypted chunk in an encrypted index"),
            "{err}"
        );
        // Sign-only indexes hold plain chunks.
        decode_chunk(&blob, None, &digest, Some(CryptMode::SignOnly)).unwrap();
    }
}
