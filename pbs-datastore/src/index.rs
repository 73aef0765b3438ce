//! Common interface of the chunk index files (`.fidx`, `.didx`) and a shared read-only mapping.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{bail, format_err, Error};

use crate::file_formats::{DYNAMIC_SIZED_CHUNK_INDEX_1_0, FIXED_SIZED_CHUNK_INDEX_1_0};
use crate::{DynamicIndexReader, FixedIndexReader};

/// Size of the header of both index formats.
pub const INDEX_HEADER_SIZE: usize = 4096;

/// Location and digest of one chunk in the indexed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkReadInfo {
    /// Byte range of the chunk in the stream/image.
    pub range: Range<u64>,
    /// Chunk digest.
    pub digest: [u8; 32],
}

impl ChunkReadInfo {
    /// Length of the chunk in bytes.
    pub fn size(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// Read access to a chunk index.
pub trait IndexFile {
    /// Number of chunks.
    fn index_count(&self) -> usize;
    /// Digest of chunk `pos`.
    fn index_digest(&self, pos: usize) -> Option<&[u8; 32]>;
    /// Total size of the indexed data (image size or stream length).
    fn index_bytes(&self) -> u64;
    /// Range and digest of chunk `pos`.
    fn chunk_info(&self, pos: usize) -> Option<ChunkReadInfo>;
    /// SHA-256 over the stored digest (entry) array and the end offset of the last chunk.
    fn compute_csum(&self) -> ([u8; 32], u64);
    /// Chunk containing `offset` and the offset inside that chunk.
    fn chunk_from_offset(&self, offset: u64) -> Option<(usize, u64)>;
    /// Creation time stored in the header (epoch).
    fn index_ctime(&self) -> i64;
    /// UUID stored in the header.
    fn uuid(&self) -> [u8; 16];
}

/// Opens a `.fidx` or `.didx` file, chosen by extension or else by magic number.
pub fn open_index<P: AsRef<Path>>(path: P) -> Result<Box<dyn IndexFile + Send + Sync>, Error> {
    let path = path.as_ref();
    let is_fixed = match path.extension().and_then(|ext| ext.to_str()) {
        Some("fidx") => true,
        Some("didx") => false,
        _ => {
            let mut magic = [0u8; 8];
            File::open(path)
                .and_then(|mut file| file.read_exact(&mut magic))
                .map_err(|err| format_err!("unable to read index {path:?} - {err}"))?;
            if magic == FIXED_SIZED_CHUNK_INDEX_1_0 {
                true
            } else if magic == DYNAMIC_SIZED_CHUNK_INDEX_1_0 {
                false
            } else {
                bail!("index {path:?}: unknown index file type");
            }
        }
    };
    if is_fixed {
        Ok(Box::new(FixedIndexReader::open(path)?))
    } else {
        Ok(Box::new(DynamicIndexReader::open(path)?))
    }
}

/// A read-only private mapping of a whole file.
///
/// Index files are immutable once renamed into place; they are replaced or unlinked, never
/// truncated, so the mapping stays valid for its lifetime.
pub(crate) struct Mmap {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned exclusively by this value.
unsafe impl Send for Mmap {}
// SAFETY: only shared read access is ever handed out.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `file` from offset 0 (`len` may be 0).
    pub(crate) fn map(file: &File, len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: valid descriptor, read-only private mapping of an existing range.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr maps len readable bytes for the lifetime of self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the region mapped in `map`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// Reads and checks the common part of an index header from an open file.
pub(crate) struct IndexHeader {
    pub(crate) file_size: u64,
    pub(crate) bytes: Box<[u8; INDEX_HEADER_SIZE]>,
}

impl IndexHeader {
    pub(crate) fn read(
        file: &File,
        path: &Path,
        kind: &str,
        magic: &[u8; 8],
    ) -> Result<Self, Error> {
        use std::os::unix::fs::FileExt;
        let file_size = file
            .metadata()
            .map_err(|err| format_err!("unable to stat {kind} index {path:?} - {err}"))?
            .len();
        if file_size < INDEX_HEADER_SIZE as u64 {
            bail!("{kind} index {path:?}: file too small ({file_size} bytes)");
        }
        let mut bytes = Box::new([0u8; INDEX_HEADER_SIZE]);
        file.read_exact_at(&mut bytes[..], 0)
            .map_err(|err| format_err!("unable to read {kind} index header {path:?} - {err}"))?;
        if &bytes[..8] != magic {
            bail!("{kind} index {path:?}: got unknown magic number");
        }
        Ok(Self { file_size, bytes })
    }

    pub(crate) fn uuid(&self) -> [u8; 16] {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&self.bytes[8..24]);
        uuid
    }

    pub(crate) fn ctime(&self) -> i64 {
        i64::from_le_bytes(le8(&self.bytes[24..32]))
    }

    pub(crate) fn csum(&self) -> [u8; 32] {
        let mut csum = [0u8; 32];
        csum.copy_from_slice(&self.bytes[32..64]);
        csum
    }

    pub(crate) fn u64_at(&self, offset: usize) -> u64 {
        u64::from_le_bytes(le8(&self.bytes[offset..offset + 8]))
    }
}

pub(crate) fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// Builds a 4096 byte index header with zero csum; `extra` is written at offset 64.
pub(crate) fn build_header(magic: &[u8; 8], ctime: i64, extra: &[u8]) -> Result<Vec<u8>, Error> {
    let mut header = vec![0u8; INDEX_HEADER_SIZE];
    header[..8].copy_from_slice(magic);
    header[8..24].copy_from_slice(&new_uuid_v4()?);
    header[24..32].copy_from_slice(&ctime.to_le_bytes());
    header[64..64 + extra.len()].copy_from_slice(extra);
    Ok(header)
}

/// A random (version 4) UUID as raw bytes.
pub(crate) fn new_uuid_v4() -> Result<[u8; 16], Error> {
    let mut uuid = [0u8; 16];
    openssl::rand::rand_bytes(&mut uuid)
        .map_err(|err| format_err!("unable to generate uuid - {err}"))?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_safety() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::ChunkStore>();
        send_sync::<FixedIndexReader>();
        send_sync::<DynamicIndexReader>();
        send::<crate::FixedIndexWriter>();
        send::<crate::DynamicIndexWriter>();
        send::<crate::process_locker::ProcessLockSharedGuard>();
    }

    #[test]
    fn uuid_has_version_and_variant() {
        let a = new_uuid_v4().unwrap();
        let b = new_uuid_v4().unwrap();
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 2);
    }

    #[test]
    fn open_index_by_extension_and_magic() {
        let dir = tempfile::tempdir().unwrap();
        let mut fixed = vec![0u8; INDEX_HEADER_SIZE + 32];
        fixed[..8].copy_from_slice(&FIXED_SIZED_CHUNK_INDEX_1_0);
        fixed[64..72].copy_from_slice(&10u64.to_le_bytes());
        fixed[72..80].copy_from_slice(&4096u64.to_le_bytes());
        let mut dynamic = vec![0u8; INDEX_HEADER_SIZE + 40];
        dynamic[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        dynamic[INDEX_HEADER_SIZE..INDEX_HEADER_SIZE + 8].copy_from_slice(&7u64.to_le_bytes());

        for (name, data, bytes) in [
            ("a.fidx", &fixed, 10),
            ("a.didx", &dynamic, 7),
            ("fixed.other", &fixed, 10),
            ("dynamic", &dynamic, 7),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, data).unwrap();
            let index = open_index(&path).unwrap();
            assert_eq!(index.index_bytes(), bytes, "{name}");
            assert_eq!(index.index_count(), 1, "{name}");
        }

        // Extension wins over content.
        let path = dir.path().join("wrong.fidx");
        std::fs::write(&path, &dynamic).unwrap();
        let err = open_index(&path).err().unwrap().to_string();
        assert!(err.contains("got unknown magic number"), "{err}");

        let path = dir.path().join("junk.bin");
        std::fs::write(&path, vec![7u8; 5000]).unwrap();
        let err = open_index(&path).err().unwrap().to_string();
        assert!(err.contains("unknown index file type"), "{err}");
    }
}

/// Fuzzing entry point: parses arbitrary bytes as a fixed and as a dynamic index and walks
/// every entry. Must return (with or without an error), never panic.
pub fn fuzz_open_index(data: &[u8]) {
    use std::io::Write;
    // An anonymous in-memory file: the readers map real files, like the daemons do.
    // SAFETY: the name is a valid NUL-terminated string; the flags are plain constants.
    let fd = unsafe { libc::memfd_create(c"pbs-fuzz-index".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
    if file.write_all(data).is_err() {
        return;
    }
    let path = Path::new("fuzz-input");
    let walk = |index: &dyn IndexFile| {
        let _ = index.compute_csum();
        for pos in 0..index.index_count().min(1 << 16) {
            let _ = index.chunk_info(pos);
            let _ = index.index_digest(pos);
        }
        let bytes = index.index_bytes();
        for offset in [0, 1, bytes / 2, bytes.saturating_sub(1), bytes, u64::MAX] {
            let _ = index.chunk_from_offset(offset);
        }
    };
    if let Ok(clone) = file.try_clone() {
        if let Ok(reader) = FixedIndexReader::new(clone, path) {
            walk(&reader);
        }
    }
    if let Ok(reader) = DynamicIndexReader::new(file, path) {
        walk(&reader);
    }
}

#[cfg(test)]
mod fuzz_tests {
    /// Headers with valid magics and absurd sizes, plus random tails, never panic.
    #[test]
    fn fuzz_entry_point_survives_crafted_headers() {
        use crate::file_formats::{DYNAMIC_SIZED_CHUNK_INDEX_1_0, FIXED_SIZED_CHUNK_INDEX_1_0};
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for magic in [FIXED_SIZED_CHUNK_INDEX_1_0, DYNAMIC_SIZED_CHUNK_INDEX_1_0] {
            for extra in [0usize, 1, 31, 32, 40, 80, 200] {
                for _ in 0..20 {
                    let mut data = vec![0u8; 4096 + extra];
                    data[..8].copy_from_slice(&magic);
                    data[64..72].copy_from_slice(&next().to_le_bytes());
                    let chunk_size = [0u64, 1, 4096, 1 << 22, next()][(next() % 5) as usize];
                    data[72..80].copy_from_slice(&chunk_size.to_le_bytes());
                    for b in data[4096..].iter_mut() {
                        *b = next() as u8;
                    }
                    super::fuzz_open_index(&data);
                    super::fuzz_open_index(&data[..(next() as usize) % data.len()]);
                }
            }
        }
    }
}
