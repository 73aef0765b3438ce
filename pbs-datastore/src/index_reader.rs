//! Reading the decoded stream of a chunk index (`.didx` or `.fidx`): chunks are loaded on
//! demand from any [`ReadChunk`] source (digest checked) and the most recent one is cached.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use crate::chunk_store::ChunkStore;
use crate::index::IndexFile;
use crate::read_chunk::{LocalChunkReader, ReadChunk};

/// `Read + Seek` (and positioned reads) over the stream or image an index describes.
pub struct BufferedIndexReader<S> {
    source: S,
    index: Box<dyn IndexFile + Send + Sync>,
    size: u64,
    position: u64,
    cached_pos: Option<usize>,
    cached: Vec<u8>,
}

/// An index reader over the local chunk store.
pub type IndexChunkReader = BufferedIndexReader<LocalChunkReader>;

impl IndexChunkReader {
    /// Reader over `index` with chunks from `store` (unencrypted chunks only).
    pub fn local(store: Arc<ChunkStore>, index: impl IndexFile + Send + Sync + 'static) -> Self {
        Self::new(index, LocalChunkReader::new(store, None, None))
    }
}

impl<S: ReadChunk> BufferedIndexReader<S> {
    /// Reader positioned at the start of the stream.
    pub fn new(index: impl IndexFile + Send + Sync + 'static, source: S) -> Self {
        let size = index.index_bytes();
        Self {
            source,
            index: Box::new(index),
            size,
            position: 0,
            cached_pos: None,
            cached: Vec::new(),
        }
    }

    /// Length of the decoded stream.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The index being read.
    pub fn index(&self) -> &(dyn IndexFile + Send + Sync) {
        &*self.index
    }

    /// The chunk source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn load_chunk(&mut self, pos: usize) -> io::Result<()> {
        if self.cached_pos == Some(pos) {
            return Ok(());
        }
        let info = self
            .index
            .chunk_info(pos)
            .ok_or_else(|| io::Error::other(format!("index has no chunk {pos}")))?;
        self.cached_pos = None;
        self.cached = self
            .source
            .read_chunk(&info.digest)
            .map_err(|err| io::Error::other(format!("{err:#}")))?;
        if self.cached.len() as u64 != info.size() {
            return Err(io::Error::other(format!(
                "chunk {}: decoded size {} does not match the index ({})",
                hex::encode(info.digest),
                self.cached.len(),
                info.size()
            )));
        }
        self.cached_pos = Some(pos);
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `offset` without moving the cursor.
    pub fn read_at_offset(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if buf.is_empty() || offset >= self.size {
            return Ok(0);
        }
        let Some((pos, inner)) = self.index.chunk_from_offset(offset) else {
            return Ok(0);
        };
        self.load_chunk(pos)?;
        let start = usize::try_from(inner).map_err(io::Error::other)?;
        let available = self.cached.get(start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        Ok(n)
    }
}

impl<S: ReadChunk> Read for BufferedIndexReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at_offset(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<S: ReadChunk> Seek for BufferedIndexReader<S> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the stream",
            )
        })?;
        self.position = target;
        Ok(target)
    }
}

/// Shared positioned-read access to a [`BufferedIndexReader`] (for `pxar::accessor::ReadAt`).
pub struct SharedIndexReader<S = LocalChunkReader>(Mutex<BufferedIndexReader<S>>);

impl<S: ReadChunk> SharedIndexReader<S> {
    /// Wraps `reader`.
    pub fn new(reader: BufferedIndexReader<S>) -> Self {
        Self(Mutex::new(reader))
    }

    /// Length of the decoded stream.
    pub fn size(&self) -> u64 {
        self.0.lock().map(|reader| reader.size()).unwrap_or(0)
    }

    /// Reads up to `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut reader = self
            .0
            .lock()
            .map_err(|_| io::Error::other("index reader lock poisoned"))?;
        reader.read_at_offset(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_store::DatastoreFSyncLevel;
    use crate::crypt_config::CryptConfig;
    use crate::data_blob::DataChunkBuilder;
    use crate::dynamic_index::{DynamicIndexReader, DynamicIndexWriter};
    use crate::fixed_index::{FixedIndexReader, FixedIndexWriter};
    use pbs_api_types::CryptMode;

    /// A store holding `pieces` as chunks and the index over them.
    fn fixture(pieces: &[Vec<u8>]) -> (tempfile::TempDir, Arc<ChunkStore>, DynamicIndexReader) {
        let dir = tempfile::Builder::new()
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let store = Arc::new(
            ChunkStore::create("test", dir.path().join("store"), DatastoreFSyncLevel::None)
                .unwrap(),
        );
        let path = dir.path().join("stream.didx");
        let mut writer = DynamicIndexWriter::create(Arc::clone(&store), &path).unwrap();
        let mut end = 0;
        for piece in pieces {
            let (blob, digest) = DataChunkBuilder::new(piece).compress(true).build().unwrap();
            store.insert_chunk(blob.raw_data(), &digest).unwrap();
            end += piece.len() as u64;
            writer.add_chunk(end, &digest).unwrap();
        }
        writer.close().unwrap();
        let index = DynamicIndexReader::open(&path).unwrap();
        (dir, store, index)
    }

    #[test]
    fn reads_and_seeks_across_chunk_boundaries() {
        let pieces: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                (0..1000u32 + u32::from(i) * 7)
                    .map(|n| (n as u8) ^ i)
                    .collect()
            })
            .collect();
        let whole: Vec<u8> = pieces.concat();
        let (_dir, store, index) = fixture(&pieces);
        let mut reader = IndexChunkReader::local(store, index);
        assert_eq!(reader.size(), whole.len() as u64);

        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, whole);

        reader.seek(SeekFrom::Start(990)).unwrap();
        let mut span = vec![0u8; 30];
        reader.read_exact(&mut span).unwrap();
        assert_eq!(span, whole[990..1020]);

        reader.seek(SeekFrom::End(-5)).unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, whole[whole.len() - 5..]);
        assert!(reader.seek(SeekFrom::Current(-100_000)).is_err());

        let shared = SharedIndexReader::new(reader);
        let mut buf = [0u8; 4];
        assert_eq!(shared.read_at(&mut buf, 1500).unwrap(), 4);
        assert_eq!(buf, whole[1500..1504]);
        assert_eq!(shared.read_at(&mut buf, whole.len() as u64).unwrap(), 0);
    }

    #[test]
    fn corrupt_chunk_is_reported_with_its_digest() {
        let pieces = vec![vec![1u8; 100], vec![2u8; 100]];
        let (_dir, store, index) = fixture(&pieces);
        let digest = *index.index_digest(1).unwrap();
        let (other, _) = DataChunkBuilder::new(&[3u8; 100]).build().unwrap();
        std::fs::write(store.chunk_path(&digest), other.raw_data()).unwrap();
        let mut reader = IndexChunkReader::local(store, index);
        let mut first = [0u8; 100];
        reader.read_exact(&mut first).unwrap();
        let err = reader.read(&mut first).unwrap_err().to_string();
        assert!(err.contains(&hex::encode(digest)), "{err}");
    }

    /// Fixed index with a short last chunk, and encrypted chunks, on one store (creating a
    /// chunk store makes 65536 directories).
    #[test]
    fn fixed_index_and_encrypted_chunks() {
        let dir = tempfile::Builder::new()
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let store = Arc::new(
            ChunkStore::create("test", dir.path().join("store"), DatastoreFSyncLevel::None)
                .unwrap(),
        );
        let chunk_size = 4096usize;
        let image: Vec<u8> = (0..chunk_size * 2 + 100).map(|i| (i * 7) as u8).collect();
        let path = dir.path().join("disk.fidx");
        let mut writer =
            FixedIndexWriter::create(Arc::clone(&store), &path, image.len() as u64, 4096).unwrap();
        for (pos, piece) in image.chunks(chunk_size).enumerate() {
            let (blob, digest) = DataChunkBuilder::new(piece).build().unwrap();
            store.insert_chunk(blob.raw_data(), &digest).unwrap();
            writer.add_digest(pos, &digest).unwrap();
        }
        writer.close().unwrap();
        let index = FixedIndexReader::open(&path).unwrap();
        let mut reader = IndexChunkReader::local(Arc::clone(&store), index);
        assert_eq!(reader.size(), image.len() as u64);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, image);
        reader.seek(SeekFrom::Start(8190)).unwrap();
        let mut span = [0u8; 10];
        reader.read_exact(&mut span).unwrap();
        assert_eq!(span, image[8190..8200]);

        let config = Arc::new(CryptConfig::new([3u8; 32]).unwrap());
        let data = vec![42u8; 3000];
        let (blob, digest) = DataChunkBuilder::new(&data)
            .crypt_config(&config)
            .build()
            .unwrap();
        store.insert_chunk(blob.raw_data(), &digest).unwrap();
        let path = dir.path().join("enc.didx");
        let mut writer = DynamicIndexWriter::create(Arc::clone(&store), &path).unwrap();
        writer.add_chunk(data.len() as u64, &digest).unwrap();
        writer.close().unwrap();

        let keyed =
            LocalChunkReader::new(Arc::clone(&store), Some(config), Some(CryptMode::Encrypt));
        let mut reader = BufferedIndexReader::new(DynamicIndexReader::open(&path).unwrap(), keyed);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);

        let mut plain = IndexChunkReader::local(store, DynamicIndexReader::open(&path).unwrap());
        let err = plain.read(&mut [0u8; 10]).unwrap_err().to_string();
        assert!(err.contains(&hex::encode(digest)), "{err}");
    }
}
