//! Reading the decoded stream of a dynamic index: chunks are loaded from the chunk store on
//! demand (digest checked) and the most recent one is cached.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use crate::chunk_store::ChunkStore;
use crate::data_blob::DataBlob;
use crate::dynamic_index::DynamicIndexReader;
use crate::index::IndexFile;

/// `Read + Seek` over the stream a `.didx` describes (unencrypted chunks only).
pub struct IndexChunkReader {
    store: Arc<ChunkStore>,
    index: DynamicIndexReader,
    size: u64,
    position: u64,
    cached_pos: Option<usize>,
    cached: Vec<u8>,
}

impl IndexChunkReader {
    /// Reader positioned at the start of the stream.
    pub fn new(store: Arc<ChunkStore>, index: DynamicIndexReader) -> Self {
        let size = index.index_bytes();
        Self {
            store,
            index,
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

    fn load_chunk(&mut self, pos: usize) -> io::Result<()> {
        if self.cached_pos == Some(pos) {
            return Ok(());
        }
        let info = self
            .index
            .chunk_info(pos)
            .ok_or_else(|| io::Error::other(format!("index has no chunk {pos}")))?;
        let digest_hex = hex::encode(info.digest);
        let raw = self
            .store
            .load_chunk_raw(&info.digest)
            .map_err(|err| io::Error::other(format!("chunk {digest_hex}: {err:#}")))?;
        let blob = DataBlob::from_raw(raw)
            .map_err(|err| io::Error::other(format!("chunk {digest_hex}: {err}")))?;
        if blob.is_encrypted() {
            return Err(io::Error::other(format!(
                "chunk {digest_hex}: encrypted chunks are not supported"
            )));
        }
        self.cached_pos = None;
        blob.decode_into(None, Some(&info.digest), &mut self.cached)
            .map_err(|err| io::Error::other(format!("chunk {digest_hex}: {err}")))?;
        if self.cached.len() as u64 != info.size() {
            return Err(io::Error::other(format!(
                "chunk {digest_hex}: decoded size {} does not match the index ({})",
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

impl Read for IndexChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at_offset(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for IndexChunkReader {
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

/// Shared positioned-read access to an [`IndexChunkReader`] (for `pxar::accessor::ReadAt`).
pub struct SharedIndexReader(Mutex<IndexChunkReader>);

impl SharedIndexReader {
    /// Wraps `reader`.
    pub fn new(reader: IndexChunkReader) -> Self {
        Self(Mutex::new(reader))
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
    use crate::data_blob::DataChunkBuilder;
    use crate::dynamic_index::DynamicIndexWriter;

    /// A store holding `pieces` as chunks and the index over them.
    fn fixture(pieces: &[Vec<u8>]) -> (tempfile::TempDir, Arc<ChunkStore>, DynamicIndexReader) {
        let dir = tempfile::tempdir().unwrap();
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
        let mut reader = IndexChunkReader::new(store, index);
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
        let mut reader = IndexChunkReader::new(store, index);
        let mut first = [0u8; 100];
        reader.read_exact(&mut first).unwrap();
        let err = reader.read(&mut first).unwrap_err().to_string();
        assert!(err.contains(&hex::encode(digest)), "{err}");
    }
}
