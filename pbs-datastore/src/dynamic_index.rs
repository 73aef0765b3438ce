//! Dynamic-size chunk index (`.didx`): header plus `(end offset, digest)` entries.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, format_err, Error};

use crate::chunk_store::ChunkStore;
use crate::file_formats::DYNAMIC_SIZED_CHUNK_INDEX_1_0;
use crate::index::{
    build_header, le8, ChunkReadInfo, IndexFile, IndexHeader, Mmap, INDEX_HEADER_SIZE,
};
use crate::pending_index::PendingIndex;

/// Size of one entry: u64 LE end offset + 32 byte digest.
pub const DYNAMIC_ENTRY_SIZE: usize = 40;

/// Reader for `.didx` files (entry array mapped read-only).
pub struct DynamicIndexReader {
    path: PathBuf,
    map: Mmap,
    count: usize,
    ctime: i64,
    uuid: [u8; 16],
    index_csum: [u8; 32],
}

impl DynamicIndexReader {
    /// Opens and validates a `.didx` file.
    pub fn open<P: AsRef<Path>>(path: P) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|err| format_err!("unable to open dynamic index {path:?} - {err}"))?;
        Self::new(file, path)
    }

    /// Validates an already opened `.didx` file; `path` is used in messages.
    pub fn new(file: File, path: &Path) -> Result<Self, Error> {
        let header = IndexHeader::read(&file, path, "dynamic", &DYNAMIC_SIZED_CHUNK_INDEX_1_0)?;
        let entry_bytes = header.file_size - INDEX_HEADER_SIZE as u64;
        if !entry_bytes.is_multiple_of(DYNAMIC_ENTRY_SIZE as u64) {
            bail!(
                "dynamic index {path:?}: got unexpected file size ({} bytes is not header plus whole entries)",
                header.file_size
            );
        }
        let file_len = usize::try_from(header.file_size)
            .map_err(|_| format_err!("dynamic index {path:?}: file too large to map"))?;
        let map = Mmap::map(&file, file_len)
            .map_err(|err| format_err!("unable to map dynamic index {path:?} - {err}"))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            count: (entry_bytes / DYNAMIC_ENTRY_SIZE as u64) as usize,
            ctime: header.ctime(),
            uuid: header.uuid(),
            index_csum: header.csum(),
        })
    }

    /// Path the index was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checksum stored in the header.
    pub fn stored_csum(&self) -> [u8; 32] {
        self.index_csum
    }

    fn entry(&self, pos: usize) -> &[u8] {
        let start = INDEX_HEADER_SIZE + pos * DYNAMIC_ENTRY_SIZE;
        &self.map.as_slice()[start..start + DYNAMIC_ENTRY_SIZE]
    }

    /// End offset of chunk `pos` (one past its last byte).
    pub fn chunk_end(&self, pos: usize) -> Option<u64> {
        (pos < self.count).then(|| u64::from_le_bytes(le8(self.entry(pos))))
    }

    /// Start offset of chunk `pos`.
    pub fn chunk_start(&self, pos: usize) -> Option<u64> {
        match pos {
            0 if self.count > 0 => Some(0),
            _ => self
                .chunk_end(pos.checked_sub(1)?)
                .filter(|_| pos < self.count),
        }
    }

    /// Checks that the end offsets strictly increase (a full scan).
    pub fn check_ends(&self) -> Result<(), Error> {
        let mut last = 0;
        for pos in 0..self.count {
            let end = u64::from_le_bytes(le8(self.entry(pos)));
            if end <= last {
                bail!(
                    "dynamic index {:?}: entry {pos} end offset {end} not greater than {last}",
                    self.path
                );
            }
            last = end;
        }
        Ok(())
    }
}

impl IndexFile for DynamicIndexReader {
    fn index_count(&self) -> usize {
        self.count
    }

    fn index_digest(&self, pos: usize) -> Option<&[u8; 32]> {
        if pos >= self.count {
            return None;
        }
        self.entry(pos)[8..].try_into().ok()
    }

    fn index_bytes(&self) -> u64 {
        self.count
            .checked_sub(1)
            .and_then(|last| self.chunk_end(last))
            .unwrap_or(0)
    }

    fn chunk_info(&self, pos: usize) -> Option<ChunkReadInfo> {
        let start = self.chunk_start(pos)?;
        let end = self.chunk_end(pos)?;
        Some(ChunkReadInfo {
            range: start..end.max(start),
            digest: *self.index_digest(pos)?,
        })
    }

    fn compute_csum(&self) -> ([u8; 32], u64) {
        let entries = &self.map.as_slice()[INDEX_HEADER_SIZE..];
        (openssl::sha::sha256(entries), self.index_bytes())
    }

    fn chunk_from_offset(&self, offset: u64) -> Option<(usize, u64)> {
        // First chunk whose end lies beyond the offset.
        let (mut low, mut high) = (0usize, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.chunk_end(mid)? <= offset {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        if low >= self.count {
            return None;
        }
        let start = self.chunk_start(low)?;
        Some((low, offset.checked_sub(start)?))
    }

    fn index_ctime(&self) -> i64 {
        self.ctime
    }

    fn uuid(&self) -> [u8; 16] {
        self.uuid
    }
}

/// Writer for `.didx` files: entries are appended in stream order.
pub struct DynamicIndexWriter {
    pending: PendingIndex,
    writer: BufWriter<File>,
    csum: Option<openssl::sha::Sha256>,
    last_end: u64,
    count: usize,
    ctime: i64,
    uuid: [u8; 16],
}

impl DynamicIndexWriter {
    /// Creates `<path minus extension>.tmp_didx` and writes the header.
    pub fn create<P: AsRef<Path>>(store: Arc<ChunkStore>, path: P) -> Result<Self, Error> {
        let (pending, file) =
            PendingIndex::create(store, path.as_ref(), "dynamic", "tmp_didx", false)?;
        let ctime = pbs_api_types::time::epoch_now();
        let mut writer = Self {
            pending,
            writer: BufWriter::with_capacity(1024 * 1024, file),
            csum: Some(openssl::sha::Sha256::new()),
            last_end: 0,
            count: 0,
            ctime,
            uuid: [0; 16],
        };
        // From here on Drop removes the temp file on error.
        let header = build_header(&DYNAMIC_SIZED_CHUNK_INDEX_1_0, ctime, &[])?;
        writer.uuid.copy_from_slice(&header[8..24]);
        writer
            .writer
            .write_all(&header)
            .map_err(|err| writer.io_error("write header", err))?;
        Ok(writer)
    }

    fn io_error(&self, what: &str, err: std::io::Error) -> Error {
        self.pending.io_error(what, err)
    }

    /// Number of entries written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// End offset of the last chunk written so far (the stream size).
    pub fn index_bytes(&self) -> u64 {
        self.last_end
    }

    /// Creation time written into the header.
    pub fn ctime(&self) -> i64 {
        self.ctime
    }

    /// UUID written into the header.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// Appends a chunk ending at stream offset `end_offset` (must increase strictly).
    pub fn add_chunk(&mut self, end_offset: u64, digest: &[u8; 32]) -> Result<(), Error> {
        self.pending.ensure_open()?;
        if end_offset <= self.last_end {
            bail!(
                "dynamic index {:?}: chunk end offset {end_offset} not greater than previous end {}",
                self.pending.path(),
                self.last_end
            );
        }
        let mut entry = [0u8; DYNAMIC_ENTRY_SIZE];
        entry[..8].copy_from_slice(&end_offset.to_le_bytes());
        entry[8..].copy_from_slice(digest);
        self.writer
            .write_all(&entry)
            .map_err(|err| self.io_error("write entry", err))?;
        if let Some(csum) = self.csum.as_mut() {
            csum.update(&entry);
        }
        self.last_end = end_offset;
        self.count += 1;
        Ok(())
    }

    /// Flushes, stores the running csum in the header and renames into place.
    pub fn close(&mut self) -> Result<[u8; 32], Error> {
        self.pending.ensure_open()?;
        let csum = self
            .csum
            .take()
            .ok_or_else(|| {
                format_err!(
                    "dynamic index {:?}: close failed before",
                    self.pending.path()
                )
            })?
            .finish();
        self.writer
            .flush()
            .map_err(|err| self.io_error("flush", err))?;
        self.writer
            .get_ref()
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

    fn sha256(data: &[u8]) -> [u8; 32] {
        openssl::sha::sha256(data)
    }

    fn write_index(
        name: &str,
        entries: &[(u64, [u8; 32])],
    ) -> (tempfile::TempDir, PathBuf, [u8; 32]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let mut writer = DynamicIndexWriter::create(shared_store(), &path).unwrap();
        for (end, digest) in entries {
            writer.add_chunk(*end, digest).unwrap();
        }
        let csum = writer.close().unwrap();
        (dir, path, csum)
    }

    #[test]
    fn csum_vectors() {
        let zero4 = sha256(&vec![0u8; 4 * MIB as usize]);
        let zero1 = sha256(&vec![0u8; MIB as usize]);
        let (_dir, _, csum) = write_index("zero.didx", &[(4 * MIB, zero4), (5 * MIB, zero1)]);
        assert_eq!(
            hex::encode(csum),
            "28a9800581289aba5a7430fbd35ec51395f52d4cf3572f4703ce7461e4897a61"
        );

        let (_dir, _, csum) = write_index("one.didx", &[(2, sha256(&[0, 1]))]);
        assert_eq!(
            hex::encode(csum),
            "d73d125e2b8adb52b45170f47dc4b5c733404e2962d6a8817147249ce1984e2a"
        );

        let (_dir, path, csum) = write_index(
            "three.didx",
            &[
                (9, sha256(b"chunk-one")),
                (21, sha256(b"chunk-two-xx")),
                (23, sha256(b"c3")),
            ],
        );
        assert_eq!(
            hex::encode(csum),
            "463f419b04738da57d125574c5802a7b757118728a12d464ae3c6413a7569e52"
        );
        let reader = DynamicIndexReader::open(&path).unwrap();
        assert_eq!(reader.compute_csum(), (csum, 23));
        assert_eq!(reader.stored_csum(), csum);
    }

    #[test]
    fn round_trip_and_offsets() {
        let digests: Vec<[u8; 32]> = (0..3u8).map(|i| sha256(&[i])).collect();
        let entries = [(9, digests[0]), (21, digests[1]), (23, digests[2])];
        let (dir, path, csum) = write_index("root.pxar.didx", &entries);
        assert!(!dir.path().join("root.pxar.tmp_didx").exists());

        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 4096 + 3 * 40);
        assert_eq!(raw[..8], DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        assert_eq!(raw[32..64], csum);
        assert!(raw[64..4096].iter().all(|&b| b == 0));
        assert_eq!(raw[4096..4104], 9u64.to_le_bytes());

        let reader = DynamicIndexReader::open(&path).unwrap();
        reader.check_ends().unwrap();
        assert_eq!(reader.index_count(), 3);
        assert_eq!(reader.index_bytes(), 23);
        assert_eq!(reader.index_digest(1), Some(&digests[1]));
        assert_eq!(reader.index_digest(3), None);
        assert_eq!(
            reader.chunk_info(0),
            Some(ChunkReadInfo {
                range: 0..9,
                digest: digests[0]
            })
        );
        assert_eq!(
            reader.chunk_info(2),
            Some(ChunkReadInfo {
                range: 21..23,
                digest: digests[2]
            })
        );
        assert_eq!(reader.chunk_info(3), None);
        assert_eq!(reader.chunk_from_offset(0), Some((0, 0)));
        assert_eq!(reader.chunk_from_offset(8), Some((0, 8)));
        assert_eq!(reader.chunk_from_offset(9), Some((1, 0)));
        assert_eq!(reader.chunk_from_offset(20), Some((1, 11)));
        assert_eq!(reader.chunk_from_offset(21), Some((2, 0)));
        assert_eq!(reader.chunk_from_offset(22), Some((2, 1)));
        assert_eq!(reader.chunk_from_offset(23), None);
        assert_eq!(reader.chunk_from_offset(u64::MAX), None);
        let now = pbs_api_types::time::epoch_now();
        assert!((now - reader.index_ctime()).abs() < 60);
    }

    #[test]
    fn many_entries_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.didx");
        let mut writer = DynamicIndexWriter::create(shared_store(), &path).unwrap();
        let count = 100_000u64;
        for i in 0..count {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&i.to_le_bytes());
            writer.add_chunk((i + 1) * 1000, &digest).unwrap();
        }
        assert_eq!(writer.count(), count as usize);
        writer.close().unwrap();
        let reader = DynamicIndexReader::open(&path).unwrap();
        assert_eq!(reader.index_bytes(), count * 1000);
        for offset in [0, 999, 1000, 12_345_678, count * 1000 - 1] {
            let (pos, inner) = reader.chunk_from_offset(offset).unwrap();
            assert_eq!(pos as u64, offset / 1000);
            assert_eq!(inner, offset % 1000);
            let digest = reader.index_digest(pos).unwrap();
            assert_eq!(digest[..8], (pos as u64).to_le_bytes());
        }
    }

    #[test]
    fn writer_rejects_non_increasing_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.didx");
        let mut writer = DynamicIndexWriter::create(shared_store(), &path).unwrap();
        let err = writer.add_chunk(0, &[0; 32]).unwrap_err().to_string();
        assert!(
            err.contains("chunk end offset 0 not greater than previous end 0"),
            "{err}"
        );
        writer.add_chunk(10, &[0; 32]).unwrap();
        assert!(writer.add_chunk(10, &[0; 32]).is_err());
        assert!(writer.add_chunk(5, &[0; 32]).is_err());
        writer.add_chunk(11, &[0; 32]).unwrap();
        assert_eq!(writer.index_bytes(), 11);
        writer.close().unwrap();
        assert!(writer.close().is_err());
        assert!(writer.add_chunk(12, &[0; 32]).is_err());
        assert_eq!(DynamicIndexReader::open(&path).unwrap().index_count(), 2);
    }

    #[test]
    fn empty_index() {
        let (_dir, path, csum) = write_index("empty.didx", &[]);
        assert_eq!(csum, sha256(b""));
        let reader = DynamicIndexReader::open(&path).unwrap();
        assert_eq!(reader.index_count(), 0);
        assert_eq!(reader.index_bytes(), 0);
        assert_eq!(reader.chunk_from_offset(0), None);
        assert_eq!(reader.chunk_info(0), None);
        assert_eq!(reader.compute_csum(), (csum, 0));
    }

    #[test]
    fn drop_without_close_removes_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.pxar.didx");
        let mut writer = DynamicIndexWriter::create(shared_store(), &path).unwrap();
        writer.add_chunk(1, &[1; 32]).unwrap();
        let tmp = dir.path().join("root.pxar.tmp_didx");
        assert!(tmp.exists());
        drop(writer);
        assert!(!tmp.exists());
        assert!(!path.exists());
    }

    #[test]
    fn reader_rejects_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = vec![0u8; 4096 + 80];
        good[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        good[4096..4104].copy_from_slice(&5u64.to_le_bytes());
        good[4136..4144].copy_from_slice(&7u64.to_le_bytes());
        let path = dir.path().join("y.didx");
        std::fs::write(&path, &good).unwrap();
        DynamicIndexReader::open(&path)
            .unwrap()
            .check_ends()
            .unwrap();

        let check = |data: &[u8], expected: &str| {
            std::fs::write(&path, data).unwrap();
            let err = DynamicIndexReader::open(&path)
                .err()
                .expect("must fail")
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("y.didx"), "{err}");
        };
        check(&good[..4095], "file too small");
        check(&good[..4096 + 39], "got unexpected file size");
        check(&good[..4096 + 41], "got unexpected file size");
        let mut bad_magic = good.clone();
        bad_magic[..8].copy_from_slice(&crate::file_formats::FIXED_SIZED_CHUNK_INDEX_1_0);
        check(&bad_magic, "got unknown magic number");

        // Decreasing ends: opening works (no full scan), lookups do not panic, check_ends fails.
        let mut decreasing = good.clone();
        decreasing[4136..4144].copy_from_slice(&3u64.to_le_bytes());
        std::fs::write(&path, &decreasing).unwrap();
        let reader = DynamicIndexReader::open(&path).unwrap();
        assert!(reader.check_ends().is_err());
        for offset in 0..10 {
            let _ = reader.chunk_from_offset(offset);
        }
        let info = reader.chunk_info(1).unwrap();
        assert!(info.range.start <= info.range.end);
    }
}
