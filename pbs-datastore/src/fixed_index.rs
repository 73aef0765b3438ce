//! Fixed-size chunk index (`.fidx`): header plus one digest per `chunk_size` bytes of image.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, format_err, Error};

use crate::chunk_store::ChunkStore;
use crate::file_formats::FIXED_SIZED_CHUNK_INDEX_1_0;
use crate::index::{build_header, ChunkReadInfo, IndexFile, IndexHeader, Mmap, INDEX_HEADER_SIZE};
use crate::pending_index::PendingIndex;

/// Number of digests of an image of `size` bytes, `None` on overflow or zero chunk size.
fn digest_count(size: u64, chunk_size: u64) -> Option<u64> {
    if chunk_size == 0 {
        return None;
    }
    Some(size / chunk_size + u64::from(!size.is_multiple_of(chunk_size)))
}

/// Reader for `.fidx` files (digest array mapped read-only).
pub struct FixedIndexReader {
    path: PathBuf,
    map: Mmap,
    count: usize,
    size: u64,
    chunk_size: u64,
    ctime: i64,
    uuid: [u8; 16],
    index_csum: [u8; 32],
}

impl FixedIndexReader {
    /// Opens and validates a `.fidx` file.
    pub fn open<P: AsRef<Path>>(path: P) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|err| format_err!("unable to open fixed index {path:?} - {err}"))?;
        Self::new(file, path)
    }

    /// Validates an already opened `.fidx` file; `path` is used in messages.
    pub fn new(file: File, path: &Path) -> Result<Self, Error> {
        let header = IndexHeader::read(&file, path, "fixed", &FIXED_SIZED_CHUNK_INDEX_1_0)?;
        let size = header.u64_at(64);
        let chunk_size = header.u64_at(72);
        let count = digest_count(size, chunk_size)
            .ok_or_else(|| format_err!("fixed index {path:?}: got invalid chunk size 0"))?;
        let expected = count
            .checked_mul(32)
            .and_then(|bytes| bytes.checked_add(INDEX_HEADER_SIZE as u64));
        if expected != Some(header.file_size) {
            bail!(
                "fixed index {path:?}: got unexpected file size ({} bytes, expected {} for size {size} and chunk size {chunk_size})",
                header.file_size,
                expected.map_or_else(|| "overflow".to_string(), |n| n.to_string()),
            );
        }
        let file_len = usize::try_from(header.file_size)
            .map_err(|_| format_err!("fixed index {path:?}: file too large to map"))?;
        let count = usize::try_from(count)
            .map_err(|_| format_err!("fixed index {path:?}: too many chunks"))?;
        let map = Mmap::map(&file, file_len)
            .map_err(|err| format_err!("unable to map fixed index {path:?} - {err}"))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            count,
            size,
            chunk_size,
            ctime: header.ctime(),
            uuid: header.uuid(),
            index_csum: header.csum(),
        })
    }

    /// Path the index was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Image size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The checksum stored in the header.
    pub fn stored_csum(&self) -> [u8; 32] {
        self.index_csum
    }

    /// The raw digest array (32 bytes per chunk).
    pub fn digest_bytes(&self) -> &[u8] {
        &self.map.as_slice()[INDEX_HEADER_SIZE..]
    }
}

impl IndexFile for FixedIndexReader {
    fn index_count(&self) -> usize {
        self.count
    }

    fn index_digest(&self, pos: usize) -> Option<&[u8; 32]> {
        if pos >= self.count {
            return None;
        }
        let start = INDEX_HEADER_SIZE + pos * 32;
        self.map.as_slice()[start..start + 32].try_into().ok()
    }

    fn index_bytes(&self) -> u64 {
        self.size
    }

    fn chunk_info(&self, pos: usize) -> Option<ChunkReadInfo> {
        let digest = *self.index_digest(pos)?;
        let start = pos as u64 * self.chunk_size;
        let end = (start + self.chunk_size).min(self.size);
        Some(ChunkReadInfo {
            range: start..end,
            digest,
        })
    }

    fn compute_csum(&self) -> ([u8; 32], u64) {
        (openssl::sha::sha256(self.digest_bytes()), self.size)
    }

    fn chunk_from_offset(&self, offset: u64) -> Option<(usize, u64)> {
        if offset >= self.size {
            return None;
        }
        let pos = usize::try_from(offset / self.chunk_size).ok()?;
        Some((pos, offset % self.chunk_size))
    }

    fn index_ctime(&self) -> i64 {
        self.ctime
    }

    fn uuid(&self) -> [u8; 16] {
        self.uuid
    }
}

/// Writer for `.fidx` files; digests may be added in any order.
pub struct FixedIndexWriter {
    pending: PendingIndex,
    file: File,
    size: u64,
    chunk_size: u64,
    count: usize,
    ctime: i64,
    uuid: [u8; 16],
}

impl FixedIndexWriter {
    /// Creates `<path minus extension>.tmp_fidx` for an image of `size` bytes.
    pub fn create<P: AsRef<Path>>(
        store: Arc<ChunkStore>,
        path: P,
        size: u64,
        chunk_size: u32,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let chunk_size = u64::from(chunk_size);
        let count = digest_count(size, chunk_size)
            .ok_or_else(|| format_err!("fixed index {path:?}: invalid chunk size 0"))?;
        let file_size = count
            .checked_mul(32)
            .and_then(|bytes| bytes.checked_add(INDEX_HEADER_SIZE as u64))
            .ok_or_else(|| format_err!("fixed index {path:?}: image size {size} too large"))?;
        let count = usize::try_from(count)
            .map_err(|_| format_err!("fixed index {path:?}: image size {size} too large"))?;

        let (pending, file) = PendingIndex::create(store, path, "fixed", "tmp_fidx", true)?;

        let ctime = pbs_api_types::time::epoch_now();
        let mut extra = [0u8; 16];
        extra[..8].copy_from_slice(&size.to_le_bytes());
        extra[8..].copy_from_slice(&chunk_size.to_le_bytes());
        let mut writer = Self {
            pending,
            file,
            size,
            chunk_size,
            count,
            ctime,
            uuid: [0; 16],
        };
        // From here on Drop removes the temp file on error.
        let header = build_header(&FIXED_SIZED_CHUNK_INDEX_1_0, ctime, &extra)?;
        writer.uuid.copy_from_slice(&header[8..24]);
        writer
            .file
            .write_all_at(&header, 0)
            .map_err(|err| writer.io_error("write header", err))?;
        writer
            .file
            .set_len(file_size)
            .map_err(|err| writer.io_error("resize", err))?;
        Ok(writer)
    }

    fn io_error(&self, what: &str, err: std::io::Error) -> Error {
        self.pending.io_error(what, err)
    }

    /// Number of digests in this index.
    pub fn index_length(&self) -> usize {
        self.count
    }

    /// Image size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Creation time written into the header.
    pub fn ctime(&self) -> i64 {
        self.ctime
    }

    /// UUID written into the header.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// Checks that a chunk of `chunk_len` bytes ending at `offset_end` is aligned; returns its index.
    pub fn check_chunk_alignment(&self, offset_end: u64, chunk_len: u64) -> Result<usize, Error> {
        if offset_end > self.size {
            bail!(
                "chunk end offset {offset_end} beyond image size {}",
                self.size
            );
        }
        let Some(start) = offset_end.checked_sub(chunk_len) else {
            bail!("chunk length {chunk_len} larger than end offset {offset_end}");
        };
        if start % self.chunk_size != 0 {
            bail!(
                "chunk start offset {start} is not aligned to chunk size {}",
                self.chunk_size
            );
        }
        let expected_len = self.chunk_size.min(self.size - start);
        if chunk_len != expected_len {
            bail!("chunk at offset {start} has wrong length {chunk_len} (expected {expected_len})");
        }
        usize::try_from(start / self.chunk_size)
            .map_err(|_| format_err!("chunk index of offset {start} out of range"))
    }

    /// Stores the digest of chunk `index`.
    pub fn add_digest(&mut self, index: usize, digest: &[u8; 32]) -> Result<(), Error> {
        self.pending.ensure_open()?;
        if index >= self.count {
            bail!(
                "fixed index {:?}: chunk index {index} out of range (count {})",
                self.pending.path(),
                self.count
            );
        }
        let offset = (INDEX_HEADER_SIZE + index * 32) as u64;
        self.file
            .write_all_at(digest, offset)
            .map_err(|err| self.io_error("write digest", err))
    }

    /// Copies all digests of `reader` (same size and chunk size), for incremental backups.
    pub fn clone_data_from(&mut self, reader: &FixedIndexReader) -> Result<(), Error> {
        self.pending.ensure_open()?;
        if reader.size() != self.size || reader.chunk_size() != self.chunk_size {
            bail!(
                "can't clone fixed index {:?}: size {}/{} and chunk size {}/{} differ",
                reader.path(),
                reader.size(),
                self.size,
                reader.chunk_size(),
                self.chunk_size
            );
        }
        self.file
            .write_all_at(reader.digest_bytes(), INDEX_HEADER_SIZE as u64)
            .map_err(|err| self.io_error("copy digests", err))
    }

    /// Computes the csum over the digests on disk, stores it and renames into place.
    pub fn close(&mut self) -> Result<[u8; 32], Error> {
        self.pending.ensure_open()?;
        let mut hasher = openssl::sha::Sha256::new();
        let mut buffer = vec![0u8; 1024 * 1024];
        let mut offset = INDEX_HEADER_SIZE as u64;
        let end = offset + self.count as u64 * 32;
        while offset < end {
            let len = usize::try_from((end - offset).min(buffer.len() as u64))
                .map_err(|_| format_err!("buffer length overflow"))?;
            self.file
                .read_exact_at(&mut buffer[..len], offset)
                .map_err(|err| self.io_error("read digests", err))?;
            hasher.update(&buffer[..len]);
            offset += len as u64;
        }
        let csum = hasher.finish();
        self.file
            .write_all_at(&csum, 32)
            .map_err(|err| self.io_error("write checksum", err))?;
        self.pending.commit()?;
        Ok(csum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_store::test_store::shared_store;

    const MIB: u64 = 1024 * 1024;

    fn zero_digests() -> ([u8; 32], [u8; 32]) {
        let four = openssl::sha::sha256(&vec![0u8; 4 * MIB as usize]);
        let one = openssl::sha::sha256(&vec![0u8; MIB as usize]);
        assert_eq!(
            hex::encode(four),
            "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"
        );
        assert_eq!(
            hex::encode(one),
            "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"
        );
        (four, one)
    }

    #[test]
    fn zero_image_csum_and_round_trip() {
        let store = shared_store();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drive-scsi0.img.fidx");
        let (four, one) = zero_digests();

        let mut writer =
            FixedIndexWriter::create(store.clone(), &path, 5 * MIB, 4 * MIB as u32).unwrap();
        assert!(dir.path().join("drive-scsi0.img.tmp_fidx").exists());
        assert_eq!(writer.index_length(), 2);
        // Out of order on purpose.
        writer.add_digest(1, &one).unwrap();
        writer.add_digest(0, &four).unwrap();
        assert!(writer.add_digest(2, &one).is_err());
        let csum = writer.close().unwrap();
        assert_eq!(
            hex::encode(csum),
            "f8bd3b7fc59d52351f1518fcecab6a686585ff0a707e9da79d717a1ed108ea2a"
        );
        let uuid = writer.uuid();
        let ctime = writer.ctime();
        drop(writer);
        assert!(!dir.path().join("drive-scsi0.img.tmp_fidx").exists());

        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 4096 + 64);
        assert_eq!(raw[..8], FIXED_SIZED_CHUNK_INDEX_1_0);
        assert_eq!(raw[32..64], csum);
        assert_eq!(raw[64..72], (5 * MIB).to_le_bytes());
        assert_eq!(raw[72..80], (4 * MIB).to_le_bytes());
        assert!(raw[80..4096].iter().all(|&b| b == 0));

        let reader = FixedIndexReader::open(&path).unwrap();
        assert_eq!(reader.index_count(), 2);
        assert_eq!(reader.index_bytes(), 5 * MIB);
        assert_eq!(reader.index_digest(0), Some(&four));
        assert_eq!(reader.index_digest(1), Some(&one));
        assert_eq!(reader.index_digest(2), None);
        assert_eq!(reader.compute_csum(), (csum, 5 * MIB));
        assert_eq!(reader.stored_csum(), csum);
        assert_eq!(reader.uuid(), uuid);
        assert_eq!(reader.index_ctime(), ctime);
        assert_eq!(
            reader.chunk_info(1),
            Some(ChunkReadInfo {
                range: 4 * MIB..5 * MIB,
                digest: one
            })
        );
        assert_eq!(reader.chunk_info(2), None);
        assert_eq!(reader.chunk_from_offset(0), Some((0, 0)));
        assert_eq!(
            reader.chunk_from_offset(4 * MIB - 1),
            Some((0, 4 * MIB - 1))
        );
        assert_eq!(reader.chunk_from_offset(4 * MIB), Some((1, 0)));
        assert_eq!(reader.chunk_from_offset(5 * MIB - 1), Some((1, MIB - 1)));
        assert_eq!(reader.chunk_from_offset(5 * MIB), None);

        // Incremental: clone, overwrite one position.
        let path2 = dir.path().join("second.img.fidx");
        let mut writer =
            FixedIndexWriter::create(store.clone(), &path2, 5 * MIB, 4 * MIB as u32).unwrap();
        writer.clone_data_from(&reader).unwrap();
        assert_eq!(writer.close().unwrap(), csum);
        let mut writer =
            FixedIndexWriter::create(store.clone(), &path2, 5 * MIB, 4 * MIB as u32).unwrap();
        writer.clone_data_from(&reader).unwrap();
        writer.add_digest(1, &four).unwrap();
        let changed = writer.close().unwrap();
        let mut both = Vec::new();
        both.extend_from_slice(&four);
        both.extend_from_slice(&four);
        assert_eq!(changed, openssl::sha::sha256(&both));

        let mut other = FixedIndexWriter::create(store, &path2, 6 * MIB, 4 * MIB as u32).unwrap();
        assert!(other.clone_data_from(&reader).is_err());
    }

    #[test]
    fn alignment_checks() {
        let store = shared_store();
        let dir = tempfile::tempdir().unwrap();
        let writer = FixedIndexWriter::create(store, dir.path().join("a.fidx"), 10, 4).unwrap();
        assert_eq!(writer.index_length(), 3);
        assert_eq!(writer.check_chunk_alignment(4, 4).unwrap(), 0);
        assert_eq!(writer.check_chunk_alignment(8, 4).unwrap(), 1);
        assert_eq!(writer.check_chunk_alignment(10, 2).unwrap(), 2);
        assert!(writer.check_chunk_alignment(9, 4).is_err());
        assert!(writer.check_chunk_alignment(10, 4).is_err());
        assert!(writer.check_chunk_alignment(12, 4).is_err());
        assert!(writer.check_chunk_alignment(2, 4).is_err());
    }

    #[test]
    fn empty_image() {
        let store = shared_store();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.fidx");
        let mut writer = FixedIndexWriter::create(store, &path, 0, 4096).unwrap();
        let csum = writer.close().unwrap();
        assert_eq!(csum, openssl::sha::sha256(b""));
        let reader = FixedIndexReader::open(&path).unwrap();
        assert_eq!(reader.index_count(), 0);
        assert_eq!(reader.chunk_from_offset(0), None);
        assert_eq!(reader.compute_csum(), (csum, 0));
    }

    #[test]
    fn drop_without_close_removes_temp_file() {
        let store = shared_store();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aborted.img.fidx");
        let writer = FixedIndexWriter::create(store, &path, 100, 4096).unwrap();
        let tmp = dir.path().join("aborted.img.tmp_fidx");
        assert!(tmp.exists());
        drop(writer);
        assert!(!tmp.exists());
        assert!(!path.exists());
    }

    #[test]
    fn reader_rejects_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = vec![0u8; 4096 + 64];
        good[..8].copy_from_slice(&FIXED_SIZED_CHUNK_INDEX_1_0);
        good[64..72].copy_from_slice(&(5 * MIB).to_le_bytes());
        good[72..80].copy_from_slice(&(4 * MIB).to_le_bytes());
        let path = dir.path().join("x.fidx");
        std::fs::write(&path, &good).unwrap();
        FixedIndexReader::open(&path).unwrap();

        let check = |data: &[u8], expected: &str| {
            std::fs::write(&path, data).unwrap();
            let err = FixedIndexReader::open(&path)
                .err()
                .expect("must fail")
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("x.fidx"), "{err}");
        };
        check(&good[..100], "file too small");
        check(&[], "file too small");
        check(&good[..4096 + 63], "got unexpected file size");
        let mut longer = good.clone();
        longer.extend_from_slice(&[0u8; 32]);
        check(&longer, "got unexpected file size");
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        check(&bad_magic, "got unknown magic number");
        let mut zero_chunk = good.clone();
        zero_chunk[72..80].copy_from_slice(&0u64.to_le_bytes());
        check(&zero_chunk, "invalid chunk size");
        let mut huge = good.clone();
        huge[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
        huge[72..80].copy_from_slice(&1u64.to_le_bytes());
        check(&huge, "got unexpected file size");
        let err = FixedIndexReader::open(dir.path().join("missing.fidx"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("unable to open fixed index"), "{err}");
    }
}
