//! Content-defined chunking with a 64-byte buzhash window, and fixed-size chunking.
//!
//! Boundaries are byte-exact with the on-disk format's chunker: the same stream always yields
//! the same chunks, however it is split into [`Chunker::scan`] calls.

use std::io::{self, Read};

use thiserror::Error;

const WINDOW_SIZE: usize = 64;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;

/// Default average chunk size for pxar archives (4 MiB).
pub const DEFAULT_CHUNK_SIZE_AVG: usize = 4 * 1024 * 1024;
/// Average chunk size used for the file catalog (512 KiB).
pub const CATALOG_CHUNK_SIZE_AVG: usize = 512 * 1024;
/// Chunk size of fixed-size image chunking (4 MiB).
pub const FIXED_CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// Largest accepted average: the break-test mask `2*avg - 1` must fit into the u32 hash.
const MAX_CHUNK_SIZE_AVG: usize = 1 << 31;

/// Buzhash table, index = byte value.
const BUZHASH_TABLE: [u32; 256] = [
    0x458be752, 0xc10748cc, 0xfbbcdbb8, 0x6ded5b68, 0xb10a82b5, 0x20d75648, 0xdfc5665f, 0xa8428801,
    0x7ebf5191, 0x841135c7, 0x65cc53b3, 0x280a597c, 0x16f60255, 0xc78cbc3e, 0x294415f5, 0xb938d494,
    0xec85c4e6, 0xb7d33edc, 0xe549b544, 0xfdeda5aa, 0x882bf287, 0x3116737c, 0x05569956, 0xe8cc1f68,
    0x0806ac5e, 0x22a14443, 0x15297e10, 0x50d090e7, 0x4ba60f6f, 0xefd9f1a7, 0x5c5c885c, 0x82482f93,
    0x9bfd7c64, 0x0b3e7276, 0xf2688e77, 0x8fad8abc, 0xb0509568, 0xf1ada29f, 0xa53efdfe, 0xcb2b1d00,
    0xf2a9e986, 0x6463432b, 0x95094051, 0x5a223ad2, 0x9be8401b, 0x61e579cb, 0x1a556a14, 0x5840fdc2,
    0x9261ddf6, 0xcde002bb, 0x52432bb0, 0xbf17373e, 0x7b7c222f, 0x2955ed16, 0x9f10ca59, 0xe840c4c9,
    0xccabd806, 0x14543f34, 0x1462417a, 0x0d4a1f9c, 0x087ed925, 0xd7f8f24c, 0x7338c425, 0xcf86c8f5,
    0xb19165cd, 0x9891c393, 0x325384ac, 0x0308459d, 0x86141d7e, 0xc922116a, 0xe2ffa6b6, 0x53f52aed,
    0x2cd86197, 0xf5b9f498, 0xbf319c8f, 0xe0411fae, 0x977eb18c, 0xd8770976, 0x9833466a, 0xc674df7f,
    0x8c297d45, 0x8ca48d26, 0xc49ed8e2, 0x7344f874, 0x556f79c7, 0x6b25eaed, 0xa03e2b42, 0xf68f66a4,
    0x8e8b09a2, 0xf2e0e62a, 0x0d3a9806, 0x9729e493, 0x8c72b0fc, 0x160b94f6, 0x450e4d3d, 0x7a320e85,
    0xbef8f0e1, 0x21d73653, 0x4e3d977a, 0x1e7b3929, 0x1cc6c719, 0xbe478d53, 0x8d752809, 0xe6d8c2c6,
    0x275f0892, 0xc8acc273, 0x4cc21580, 0xecc4a617, 0xf5f7be70, 0xe795248a, 0x375a2fe9, 0x425570b6,
    0x8898dcf8, 0xdc2d97c4, 0x0106114b, 0x364dc22f, 0x1e0cad1f, 0xbe63803c, 0x5f69fac2, 0x4d5afa6f,
    0x1bc0dfb5, 0xfb273589, 0x0ea47f7b, 0x3c1c2b50, 0x21b2a932, 0x6b1223fd, 0x2fe706a8, 0xf9bd6ce2,
    0xa268e64e, 0xe987f486, 0x3eacf563, 0x1ca2018c, 0x65e18228, 0x2207360a, 0x57cf1715, 0x34c37d2b,
    0x1f8f3cde, 0x93b657cf, 0x31a019fd, 0xe69eb729, 0x8bca7b9b, 0x4c9d5bed, 0x277ebeaf, 0xe0d8f8ae,
    0xd150821c, 0x31381871, 0xafc3f1b0, 0x927db328, 0xe95effac, 0x305a47bd, 0x426ba35b, 0x1233af3f,
    0x686a5b83, 0x50e072e5, 0xd9d3bb2a, 0x8befc475, 0x487f0de6, 0xc88dff89, 0xbd664d5e, 0x971b5d18,
    0x63b14847, 0xd7d3c1ce, 0x7f583cf3, 0x72cbcb09, 0xc0d0a81c, 0x7fa3429b, 0xe9158a1b, 0x225ea19a,
    0xd8ca9ea3, 0xc763b282, 0xbb0c6341, 0x020b8293, 0xd4cd299d, 0x58cfa7f8, 0x91b4ee53, 0x37e4d140,
    0x95ec764c, 0x30f76b06, 0x5ee68d24, 0x679c8661, 0xa41979c2, 0xf2b61284, 0x4fac1475, 0x0adb49f9,
    0x19727a23, 0x15a7e374, 0xc43a18d5, 0x3fb1aa73, 0x342fc615, 0x924c0793, 0xbee2d7f0, 0x8a279de9,
    0x4aa2d70c, 0xe24dd37f, 0xbe862c0b, 0x177c22c2, 0x5388e5ee, 0xcd8a7510, 0xf901b4fd, 0xdbc13dbc,
    0x6c0bae5b, 0x64efe8c7, 0x48b02079, 0x80331a49, 0xca3d8ae6, 0xf3546190, 0xfed7108b, 0xc49b941b,
    0x32baf4a9, 0xeb833a4a, 0x88a3f1a5, 0x3a91ce0a, 0x3cc27da1, 0x7112e684, 0x4a3096b1, 0x3794574c,
    0xa3c8b6f3, 0x1d213941, 0x6e0a2e00, 0x233479f1, 0x0f4cd82f, 0x6093edd2, 0x5d7d209e, 0x464fe319,
    0xd4dcac9e, 0x0db845cb, 0xfb5e4bc3, 0xe0256ce1, 0x09fb4ed1, 0x0914be1e, 0xa5bdb2c3, 0xc6eb57bb,
    0x30320350, 0x3f397e91, 0xa67791bc, 0x86bc0e2c, 0xefa0a7e2, 0xe9ff7543, 0xe733612c, 0xd185897b,
    0x329e5388, 0x91dd236b, 0x2ecb0d93, 0xf4d82a3d, 0x35b5c03f, 0xe4e606f0, 0x05b21843, 0x37b45964,
    0x5eff22f4, 0x6027f4cc, 0x77178b3c, 0xae507131, 0x7bf7cabc, 0xf9c18d66, 0x593ade65, 0xd95ddf11,
];

/// Rejected chunker parameters.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkerError {
    #[error("chunk size average {0} is not a power of two")]
    NotPowerOfTwo(usize),
    #[error("chunk size average {0} is too large (limit {MAX_CHUNK_SIZE_AVG})")]
    TooLarge(usize),
}

/// One rolling-hash step: the outgoing byte needs no rotation because rotating a u32 by the
/// window size (64) is the identity.
#[inline(always)]
fn roll(h: u32, leave: u8, enter: u8) -> u32 {
    h.rotate_left(1) ^ BUZHASH_TABLE[leave as usize] ^ BUZHASH_TABLE[enter as usize]
}

/// Buzhash content-defined chunker.
#[derive(Clone, Debug)]
pub struct Chunker {
    h: u32,
    window: [u8; WINDOW_SIZE],
    window_size: usize,
    chunk_size: usize,
    chunk_size_min: usize,
    chunk_size_max: usize,
    break_test_mask: u32,
    break_test_minimum: u32,
}

impl Chunker {
    /// Creates a chunker; panics if `chunk_size_avg` is not a power of two (or absurdly large).
    pub fn new(chunk_size_avg: usize) -> Self {
        match Self::try_new(chunk_size_avg) {
            Ok(chunker) => chunker,
            Err(err) => panic!("{err}"),
        }
    }

    /// Creates a chunker, rejecting an average that is not a power of two.
    pub fn try_new(chunk_size_avg: usize) -> Result<Self, ChunkerError> {
        if !chunk_size_avg.is_power_of_two() {
            return Err(ChunkerError::NotPowerOfTwo(chunk_size_avg));
        }
        if chunk_size_avg > MAX_CHUNK_SIZE_AVG {
            return Err(ChunkerError::TooLarge(chunk_size_avg));
        }
        let mask = ((chunk_size_avg as u64) * 2 - 1) as u32;
        Ok(Self {
            h: 0,
            window: [0; WINDOW_SIZE],
            window_size: 0,
            chunk_size: 0,
            chunk_size_min: chunk_size_avg >> 2,
            // The first possible cut is after the 65th byte, so tiny averages cut there.
            chunk_size_max: (chunk_size_avg << 2).max(WINDOW_SIZE + 1),
            break_test_mask: mask,
            // Wraps for an average of 1, which then only cuts at the maximum.
            break_test_minimum: mask.wrapping_sub(2),
        })
    }

    /// Smallest chunk the hash test may cut (except at end of input).
    pub fn chunk_size_min(&self) -> usize {
        self.chunk_size_min
    }

    /// Largest chunk; reaching it always cuts.
    pub fn chunk_size_max(&self) -> usize {
        self.chunk_size_max
    }

    /// Feeds `data`; returns 0 if it contains no boundary, else the number of bytes of `data`
    /// that complete the current chunk (the chunker is then reset for the next one).
    pub fn scan(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;

        if self.window_size < WINDOW_SIZE {
            let n = (WINDOW_SIZE - self.window_size).min(data.len());
            let mut h = self.h;
            for (slot, &byte) in self.window[self.window_size..self.window_size + n]
                .iter_mut()
                .zip(&data[..n])
            {
                *slot = byte;
                h = h.rotate_left(1) ^ BUZHASH_TABLE[byte as usize];
            }
            self.h = h;
            self.window_size += n;
            self.chunk_size += n;
            pos = n;
            if self.window_size < WINDOW_SIZE {
                return 0;
            }
        }

        let mut h = self.h;
        let mut chunk_size = self.chunk_size;

        // Bytes whose resulting chunk size stays below the minimum cannot cut: no test needed.
        let untested = self
            .chunk_size_min
            .saturating_sub(chunk_size + 1)
            .min(data.len() - pos);
        if untested > 0 {
            h = self.roll_range(h, chunk_size, data, pos, pos + untested);
            chunk_size += untested;
            pos += untested;
        }

        // Every further byte is tested; the byte reaching the maximum always cuts.
        let tested = (self.chunk_size_max - chunk_size).min(data.len() - pos);
        if tested > 0 {
            if let Some(cut) = self.roll_range_tested(h, chunk_size, data, pos, pos + tested) {
                self.h = 0;
                self.chunk_size = 0;
                self.window_size = 0;
                return cut;
            }
            h = self.h;
            chunk_size += tested;
            pos += tested;
            if chunk_size >= self.chunk_size_max {
                self.h = 0;
                self.chunk_size = 0;
                self.window_size = 0;
                return pos;
            }
        }

        debug_assert_eq!(pos, data.len());
        self.h = h;
        self.chunk_size = chunk_size;
        0
    }

    /// Rolls `data[start..end]` into the hash without break tests and updates the window.
    ///
    /// Every byte of `data` before `start` belongs to the current chunk, so for positions
    /// `>= 64` the outgoing byte is read from `data` itself instead of the ring buffer.
    #[inline(always)]
    fn roll_range(
        &mut self,
        mut h: u32,
        chunk_size: usize,
        data: &[u8],
        start: usize,
        end: usize,
    ) -> u32 {
        let ring_end = end.min(WINDOW_SIZE.max(start));
        for (ring_pos, &enter) in (chunk_size..).zip(&data[start..ring_end]) {
            let slot = &mut self.window[ring_pos & WINDOW_MASK];
            h = roll(h, *slot, enter);
            *slot = enter;
        }
        if ring_end < end {
            h = roll_slice(
                h,
                &data[ring_end - WINDOW_SIZE..end - WINDOW_SIZE],
                &data[ring_end..end],
            );
            self.store_window_tail(chunk_size + (end - start), data, end);
        }
        h
    }

    /// Like [`Self::roll_range`] but with the hash break test after each byte; returns the
    /// cut position in `data` if one is found, else stores the hash in `self.h`.
    #[inline(always)]
    fn roll_range_tested(
        &mut self,
        mut h: u32,
        chunk_size: usize,
        data: &[u8],
        start: usize,
        end: usize,
    ) -> Option<usize> {
        let test = BreakTest {
            mask: self.break_test_mask,
            minimum: self.break_test_minimum,
        };
        let ring_end = end.min(WINDOW_SIZE.max(start));
        for (pos, &enter) in (start..).zip(&data[start..ring_end]) {
            let slot = &mut self.window[(chunk_size + pos - start) & WINDOW_MASK];
            h = roll(h, *slot, enter);
            *slot = enter;
            if test.hit(h) {
                return Some(pos + 1);
            }
        }
        if ring_end < end {
            match roll_slice_tested(
                h,
                &data[ring_end - WINDOW_SIZE..end - WINDOW_SIZE],
                &data[ring_end..end],
                test,
            ) {
                Ok(new_h) => h = new_h,
                Err(consumed) => return Some(ring_end + consumed),
            }
            self.store_window_tail(chunk_size + (end - start), data, end);
        }
        self.h = h;
        None
    }

    /// Puts the 64 bytes before `data[end]` into the ring buffer at their chunk positions;
    /// `chunk_size_at_end` is the chunk size after consuming `data[..end]`.
    fn store_window_tail(&mut self, chunk_size_at_end: usize, data: &[u8], end: usize) {
        let first = chunk_size_at_end - WINDOW_SIZE;
        for (i, &byte) in data[end - WINDOW_SIZE..end].iter().enumerate() {
            self.window[(first + i) & WINDOW_MASK] = byte;
        }
    }
}

/// The hash break test: `(h & mask) >= mask - 2`.
#[derive(Clone, Copy)]
struct BreakTest {
    mask: u32,
    minimum: u32,
}

impl BreakTest {
    #[inline(always)]
    fn hit(self, h: u32) -> bool {
        (h & self.mask) >= self.minimum
    }
}

/// Table values of four outgoing/incoming byte pairs, pre-combined so that the hash after
/// each of the four steps needs only one rotate and one XOR from the hash before them:
/// `h_k = rotl(h, k) ^ acc[k-1]`.
#[inline(always)]
fn combine4(leave: &[u8], enter: &[u8]) -> [u32; 4] {
    let x0 = BUZHASH_TABLE[leave[0] as usize] ^ BUZHASH_TABLE[enter[0] as usize];
    let x1 = BUZHASH_TABLE[leave[1] as usize] ^ BUZHASH_TABLE[enter[1] as usize];
    let x2 = BUZHASH_TABLE[leave[2] as usize] ^ BUZHASH_TABLE[enter[2] as usize];
    let x3 = BUZHASH_TABLE[leave[3] as usize] ^ BUZHASH_TABLE[enter[3] as usize];
    let a1 = x0.rotate_left(1) ^ x1;
    let a2 = a1.rotate_left(1) ^ x2;
    let a3 = a2.rotate_left(1) ^ x3;
    [x0, a1, a2, a3]
}

/// Rolls `enter` into the hash while `leave` (same length) drops out, without tests.
#[inline(always)]
fn roll_slice(mut h: u32, leave: &[u8], enter: &[u8]) -> u32 {
    let leave_blocks = leave.chunks_exact(4);
    let enter_blocks = enter.chunks_exact(4);
    let (leave_rest, enter_rest) = (leave_blocks.remainder(), enter_blocks.remainder());
    for (l, e) in leave_blocks.zip(enter_blocks) {
        let acc = combine4(l, e);
        h = h.rotate_left(4) ^ acc[3];
    }
    for (&l, &e) in leave_rest.iter().zip(enter_rest) {
        h = roll(h, l, e);
    }
    h
}

/// Like [`roll_slice`] with the break test after every byte: `Err(n)` if the `n`-th byte of
/// `enter` cuts, else `Ok(hash)`.
#[inline(always)]
fn roll_slice_tested(
    mut h: u32,
    leave: &[u8],
    enter: &[u8],
    test: BreakTest,
) -> Result<u32, usize> {
    let leave_blocks = leave.chunks_exact(4);
    let enter_blocks = enter.chunks_exact(4);
    let (leave_rest, enter_rest) = (leave_blocks.remainder(), enter_blocks.remainder());
    for (block, (l, e)) in leave_blocks.zip(enter_blocks).enumerate() {
        let acc = combine4(l, e);
        let h1 = h.rotate_left(1) ^ acc[0];
        let h2 = h.rotate_left(2) ^ acc[1];
        let h3 = h.rotate_left(3) ^ acc[2];
        let h4 = h.rotate_left(4) ^ acc[3];
        if test.hit(h1) | test.hit(h2) | test.hit(h3) | test.hit(h4) {
            let first = [h1, h2, h3, h4]
                .iter()
                .position(|&v| test.hit(v))
                .unwrap_or(3);
            return Err(block * 4 + first + 1);
        }
        h = h4;
    }
    let done = enter.len() - enter_rest.len();
    for (i, (&l, &e)) in leave_rest.iter().zip(enter_rest).enumerate() {
        h = roll(h, l, e);
        if test.hit(h) {
            return Err(done + i + 1);
        }
    }
    Ok(h)
}

/// Reads until `buf` is full or the reader reaches end of input; returns the bytes read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Size of the reads the stream splitters issue.
const READ_BLOCK_SIZE: usize = 256 * 1024;

/// Splits everything `reader` yields into content-defined chunks and hands each to `consumer`
/// as a slice of one internal buffer (no per-chunk allocation).
pub fn split_reader<R, F, E>(
    reader: &mut R,
    chunker: &mut Chunker,
    mut consumer: F,
) -> Result<(), E>
where
    R: Read + ?Sized,
    F: FnMut(&[u8]) -> Result<(), E>,
    E: From<io::Error>,
{
    let mut buffer = vec![0u8; chunker.chunk_size_max() + READ_BLOCK_SIZE];
    // buffer[..filled] holds the current chunk's bytes, of which [..scanned] went through scan.
    let mut filled = 0;
    let mut scanned = 0;
    loop {
        if scanned == filled {
            if buffer.len() - filled < READ_BLOCK_SIZE {
                // Cannot happen: a chunk never exceeds chunk_size_max bytes.
                buffer.resize(filled + READ_BLOCK_SIZE, 0);
            }
            let n = read_full(reader, &mut buffer[filled..filled + READ_BLOCK_SIZE])?;
            if n == 0 {
                if filled > 0 {
                    consumer(&buffer[..filled])?;
                }
                return Ok(());
            }
            filled += n;
        }
        let cut = chunker.scan(&buffer[scanned..filled]);
        if cut == 0 {
            scanned = filled;
            continue;
        }
        let end = scanned + cut;
        consumer(&buffer[..end])?;
        buffer.copy_within(end..filled, 0);
        filled -= end;
        scanned = 0;
    }
}

/// Iterator over the content-defined chunks of a reader, each as its own `Vec<u8>`.
pub struct ChunkStream<R> {
    reader: R,
    chunker: Chunker,
    buffer: Vec<u8>,
    scanned: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<R> {
    /// Chunks `reader` with the given average chunk size (a power of two).
    pub fn new(reader: R, chunk_size_avg: usize) -> Result<Self, ChunkerError> {
        Ok(Self::with_chunker(
            reader,
            Chunker::try_new(chunk_size_avg)?,
        ))
    }

    /// Chunks `reader` with a prepared chunker.
    pub fn with_chunker(reader: R, chunker: Chunker) -> Self {
        Self {
            reader,
            chunker,
            buffer: Vec::new(),
            scanned: 0,
            eof: false,
        }
    }

    /// Appends one read block to the buffer; returns false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.buffer.capacity() == 0 {
            self.buffer
                .reserve(self.chunker.chunk_size_min() + READ_BLOCK_SIZE);
        }
        let old_len = self.buffer.len();
        self.buffer.resize(old_len + READ_BLOCK_SIZE, 0);
        let n = read_full(&mut self.reader, &mut self.buffer[old_len..]);
        let n = match n {
            Ok(n) => n,
            Err(err) => {
                self.buffer.truncate(old_len);
                return Err(err);
            }
        };
        self.buffer.truncate(old_len + n);
        Ok(n > 0)
    }
}

impl<R: Read> Iterator for ChunkStream<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.scanned < self.buffer.len() {
                let cut = self.chunker.scan(&self.buffer[self.scanned..]);
                if cut > 0 {
                    // Only the unscanned tail (less than one read block) is copied.
                    let end = self.scanned + cut;
                    let mut rest =
                        Vec::with_capacity(self.chunker.chunk_size_min() + READ_BLOCK_SIZE);
                    rest.extend_from_slice(&self.buffer[end..]);
                    let mut chunk = std::mem::replace(&mut self.buffer, rest);
                    chunk.truncate(end);
                    self.scanned = 0;
                    return Some(Ok(chunk));
                }
                self.scanned = self.buffer.len();
            }
            if self.eof {
                if self.buffer.is_empty() {
                    return None;
                }
                self.scanned = 0;
                return Some(Ok(std::mem::take(&mut self.buffer)));
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => self.eof = true,
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// Iterator over fixed-size chunks of a reader: every chunk has `chunk_size` bytes except the
/// last, which holds the remainder (never empty).
pub struct FixedChunker<R> {
    reader: R,
    chunk_size: usize,
    eof: bool,
}

impl<R: Read> FixedChunker<R> {
    /// Splits `reader` into chunks of `chunk_size` bytes (must not be zero).
    pub fn new(reader: R, chunk_size: usize) -> io::Result<Self> {
        if chunk_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fixed chunk size must not be zero",
            ));
        }
        Ok(Self {
            reader,
            chunk_size,
            eof: false,
        })
    }

    /// Splits `reader` into 4 MiB chunks.
    pub fn with_default_size(reader: R) -> Self {
        Self {
            reader,
            chunk_size: FIXED_CHUNK_SIZE,
            eof: false,
        }
    }

    /// The configured chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

impl<R: Read> Iterator for FixedChunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.eof {
            return None;
        }
        let mut chunk = vec![0u8; self.chunk_size];
        match read_full(&mut self.reader, &mut chunk) {
            Ok(n) => {
                if n < self.chunk_size {
                    self.eof = true;
                    if n == 0 {
                        return None;
                    }
                    chunk.truncate(n);
                }
                Some(Ok(chunk))
            }
            Err(err) => {
                self.eof = true;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test stream generator of the format description ("xorshift stream").
    fn xorshift_stream(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        let mut x: u64 = 0x0123456789abcdef;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn counter_buffer() -> Vec<u8> {
        (0u32..262144).flat_map(|i| i.to_le_bytes()).collect()
    }

    /// Straight transcription of the algorithm description, as a reference for the fast path.
    struct ReferenceChunker {
        h: u32,
        window: [u8; 64],
        window_size: usize,
        chunk_size: usize,
        min: usize,
        max: usize,
        mask: u32,
        threshold: u32,
    }

    impl ReferenceChunker {
        fn new(avg: usize) -> Self {
            let mask = (2 * avg - 1) as u32;
            Self {
                h: 0,
                window: [0; 64],
                window_size: 0,
                chunk_size: 0,
                min: avg >> 2,
                max: avg << 2,
                mask,
                threshold: mask.wrapping_sub(2),
            }
        }

        fn shall_break(&self) -> bool {
            if self.chunk_size >= self.max {
                return true;
            }
            if self.chunk_size < self.min {
                return false;
            }
            (self.h & self.mask) >= self.threshold
        }

        fn scan(&mut self, data: &[u8]) -> usize {
            let mut pos = 0;
            if self.window_size < 64 {
                let n = (64 - self.window_size).min(data.len());
                for &b in &data[..n] {
                    self.window[self.window_size] = b;
                    self.h = self.h.rotate_left(1) ^ BUZHASH_TABLE[b as usize];
                    self.window_size += 1;
                    pos += 1;
                }
                self.chunk_size += n;
                if self.window_size < 64 {
                    return 0;
                }
            }
            let mut idx = self.chunk_size % 64;
            while pos < data.len() {
                let enter = data[pos];
                let leave = self.window[idx];
                self.h = self.h.rotate_left(1)
                    ^ BUZHASH_TABLE[leave as usize]
                    ^ BUZHASH_TABLE[enter as usize];
                self.chunk_size += 1;
                pos += 1;
                self.window[idx] = enter;
                if self.shall_break() {
                    self.h = 0;
                    self.chunk_size = 0;
                    self.window_size = 0;
                    return pos;
                }
                idx = self.chunk_size % 64;
            }
            0
        }
    }

    /// Small deterministic PRNG for split points.
    struct SplitRng(u64);

    impl SplitRng {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Chunk boundaries as (offset, length), feeding `data` in pieces whose sizes come from
    /// `piece_len`.
    fn boundaries_with(
        data: &[u8],
        mut scan: impl FnMut(&[u8]) -> usize,
        mut piece_len: impl FnMut() -> usize,
    ) -> Vec<(usize, usize)> {
        let mut result = Vec::new();
        let mut chunk_start = 0;
        let mut pos = 0;
        while pos < data.len() {
            let end = (pos + piece_len().max(1)).min(data.len());
            let mut piece_pos = pos;
            while piece_pos < end {
                let cut = scan(&data[piece_pos..end]);
                if cut == 0 {
                    piece_pos = end;
                } else {
                    piece_pos += cut;
                    result.push((chunk_start, piece_pos - chunk_start));
                    chunk_start = piece_pos;
                }
            }
            pos = end;
        }
        if chunk_start < data.len() {
            result.push((chunk_start, data.len() - chunk_start));
        }
        result
    }

    fn boundaries(data: &[u8], avg: usize) -> Vec<(usize, usize)> {
        let mut chunker = Chunker::new(avg);
        boundaries_with(data, |d| chunker.scan(d), || usize::MAX)
    }

    fn stream_boundaries(data: &[u8], avg: usize) -> Vec<(usize, usize)> {
        let mut offset = 0;
        ChunkStream::new(data, avg)
            .unwrap()
            .map(|chunk| {
                let len = chunk.unwrap().len();
                offset += len;
                (offset - len, len)
            })
            .collect()
    }

    fn split_reader_boundaries(data: &[u8], avg: usize) -> Vec<(usize, usize)> {
        let mut offset = 0;
        let mut result = Vec::new();
        let mut reader = data;
        split_reader::<_, _, io::Error>(&mut reader, &mut Chunker::new(avg), |chunk| {
            result.push((offset, chunk.len()));
            offset += chunk.len();
            Ok(())
        })
        .unwrap();
        result
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(openssl::sha::sha256(data))
    }

    #[test]
    fn table_checksums() {
        let bytes: Vec<u8> = BUZHASH_TABLE.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            sha256_hex(&bytes),
            "5b52080d38287da9d2e278466e3e0db7ec98e5e8b226f50612a56fa012b1f660"
        );
        assert_eq!(BUZHASH_TABLE.iter().fold(0, |acc, v| acc ^ v), 0);
    }

    #[test]
    fn parameters() {
        let chunker = Chunker::new(4 * 1024 * 1024);
        assert_eq!(chunker.chunk_size_min(), 1024 * 1024);
        assert_eq!(chunker.chunk_size_max(), 16 * 1024 * 1024);
        assert_eq!(chunker.break_test_mask, 0x007FFFFF);
        assert_eq!(chunker.break_test_minimum, 0x007FFFFD);
        assert_eq!(
            Chunker::try_new(3000).unwrap_err(),
            ChunkerError::NotPowerOfTwo(3000)
        );
        assert_eq!(
            Chunker::try_new(0).unwrap_err(),
            ChunkerError::NotPowerOfTwo(0)
        );
        assert!(Chunker::try_new(1 << 31).is_ok());
        assert_eq!(
            Chunker::try_new(1 << 32).unwrap_err(),
            ChunkerError::TooLarge(1 << 32)
        );
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn new_panics_on_bad_average() {
        Chunker::new(65535);
    }

    #[test]
    fn xorshift_generator() {
        assert_eq!(
            hex::encode(xorshift_stream(16)),
            "b4019e56d600283fb7d0eb3c9a946f60"
        );
        let data = xorshift_stream(4 * 1024 * 1024);
        assert_eq!(
            sha256_hex(&data[..1024 * 1024]),
            "6843dc77fcd2dfd48c2be0fa394dd2843c148ad16f57055d192983541d240fd2"
        );
        assert_eq!(
            sha256_hex(&data),
            "496679a81e8fdfa8c64fa61cada0817cff65451a5a40700baf5d10f754c8ca9e"
        );
    }

    #[test]
    fn vector_v1_counter_buffer() {
        let data = counter_buffer();
        assert_eq!(
            sha256_hex(&data),
            "21b9bf484e8bb6ca346d2cd113f24594cadb15c31c3e6ea4bd99897b1e728282"
        );
        let expected = vec![
            (0, 143377),
            (143377, 262144),
            (405521, 262144),
            (667665, 262144),
            (929809, 118767),
        ];
        assert_eq!(boundaries(&data, 65536), expected);
        assert_eq!(stream_boundaries(&data, 65536), expected);
        assert_eq!(split_reader_boundaries(&data, 65536), expected);

        // Byte-by-byte feeding must give the same result.
        let mut chunker = Chunker::new(65536);
        assert_eq!(boundaries_with(&data, |d| chunker.scan(d), || 1), expected);
    }

    #[test]
    fn vector_v2_xorshift_1mib() {
        let data = xorshift_stream(1024 * 1024);
        let expected = vec![
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
        assert_eq!(boundaries(&data, 65536), expected);
        assert_eq!(split_reader_boundaries(&data, 65536), expected);

        let chunks: Vec<Vec<u8>> = ChunkStream::new(&data[..], 65536)
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(chunks.len(), 19);
        assert_eq!(
            sha256_hex(&chunks[0]),
            "e2a7303c0ab55577aa6271e1bb5f41b97be277447ce0924cb2c180fc68ddf1fe"
        );
        let mut index_csum = openssl::sha::Sha256::new();
        let mut end = 0u64;
        for chunk in &chunks {
            end += chunk.len() as u64;
            index_csum.update(&end.to_le_bytes());
            index_csum.update(&openssl::sha::sha256(chunk));
        }
        assert_eq!(end, data.len() as u64);
        assert_eq!(
            hex::encode(index_csum.finish()),
            "e470cada9b6c83fb3c51cbf29e71a798050803636f7ce8c062740e162a37fec9"
        );
    }

    #[test]
    fn vector_v3_xorshift_48mib() {
        let data = xorshift_stream(48 * 1024 * 1024);
        assert_eq!(
            sha256_hex(&data),
            "864e15e5350e8b9471f8c6245276743968e62140cbdfdf84bbb6983e9f3b9a30"
        );
        let expected = vec![
            (0, 2181550),
            (2181550, 1345280),
            (3526830, 2343740),
            (5870570, 9676050),
            (15546620, 2567339),
            (18113959, 1880934),
            (19994893, 8001698),
            (27996591, 2088888),
            (30085479, 1468344),
            (31553823, 3888589),
            (35442412, 8220267),
            (43662679, 6668969),
        ];
        assert_eq!(boundaries(&data, DEFAULT_CHUNK_SIZE_AVG), expected);
        assert_eq!(stream_boundaries(&data, DEFAULT_CHUNK_SIZE_AVG), expected);
    }

    #[test]
    fn vector_v4_zeros() {
        let data = vec![0u8; 20 * 1024 * 1024];
        let expected = vec![(0, 16777216), (16777216, 4194304)];
        assert_eq!(boundaries(&data, DEFAULT_CHUNK_SIZE_AVG), expected);
        assert_eq!(
            split_reader_boundaries(&data, DEFAULT_CHUNK_SIZE_AVG),
            expected
        );
    }

    #[test]
    fn boundaries_independent_of_read_splitting() {
        let data = xorshift_stream(1024 * 1024);
        let mut rng = SplitRng(42);
        for avg in [64usize, 256, 4096, 65536] {
            let expected = boundaries(&data, avg);
            for _ in 0..20 {
                let max_piece = 1 + rng.below(200_000);
                let mut chunker = Chunker::new(avg);
                let mut piece_rng = SplitRng(rng.next());
                let got = boundaries_with(
                    &data,
                    |d| chunker.scan(d),
                    || 1 + piece_rng.below(max_piece),
                );
                assert_eq!(got, expected, "avg {avg}, max piece {max_piece}");
            }
        }

        // Byte-by-byte feeding on a small input with many chunks.
        let small = &data[..100_000];
        for avg in [1usize, 2, 16, 64, 128, 1024] {
            let mut chunker = Chunker::new(avg);
            assert_eq!(
                boundaries_with(small, |d| chunker.scan(d), || 1),
                boundaries(small, avg),
                "avg {avg}"
            );
        }
    }

    #[test]
    fn matches_reference_algorithm() {
        let data = xorshift_stream(300_000);
        let mut rng = SplitRng(7);
        for shift in 0..=14 {
            let avg = 1usize << shift;
            let mut reference = ReferenceChunker::new(avg);
            let expected = boundaries_with(&data, |d| reference.scan(d), || usize::MAX);
            assert_eq!(boundaries(&data, avg), expected, "avg {avg}");
            let mut reference = ReferenceChunker::new(avg);
            let mut chunker = Chunker::new(avg);
            let mut piece_rng = SplitRng(rng.next());
            // Feed both with identical random pieces, comparing every return value.
            let mut pos = 0;
            while pos < data.len() {
                let end = (pos + 1 + piece_rng.below(300)).min(data.len());
                let a = reference.scan(&data[pos..end]);
                let b = chunker.scan(&data[pos..end]);
                assert_eq!(a, b, "avg {avg} at {pos}");
                pos = if a == 0 { end } else { pos + a };
            }
        }
        // Zero runs exercise the maximum-size cut.
        let zeros = vec![0u8; 5000];
        for avg in [1usize, 16, 256] {
            let mut reference = ReferenceChunker::new(avg);
            let expected = boundaries_with(&zeros, |d| reference.scan(d), || 777);
            assert_eq!(boundaries(&zeros, avg), expected, "zeros avg {avg}");
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert!(stream_boundaries(&[], 65536).is_empty());
        assert!(split_reader_boundaries(&[], 65536).is_empty());
        assert_eq!(stream_boundaries(&[7], 65536), vec![(0, 1)]);
        assert_eq!(Chunker::new(65536).scan(&[]), 0);
    }

    /// A reader that returns short reads and spurious interruptions.
    struct ChoppyReader<'a> {
        data: &'a [u8],
        rng: SplitRng,
    }

    impl Read for ChoppyReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.rng.below(5) == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = (1 + self.rng.below(10_000))
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn stream_handles_short_reads() {
        let data = xorshift_stream(500_000);
        let expected = boundaries(&data, 4096);
        let reader = ChoppyReader {
            data: &data,
            rng: SplitRng(3),
        };
        let mut offset = 0;
        let got: Vec<(usize, usize)> = ChunkStream::new(reader, 4096)
            .unwrap()
            .map(|c| {
                let len = c.unwrap().len();
                offset += len;
                (offset - len, len)
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn fixed_chunks() {
        let data = xorshift_stream(FIXED_CHUNK_SIZE * 2 + 5);
        let chunks: Vec<Vec<u8>> = FixedChunker::with_default_size(&data[..])
            .collect::<io::Result<_>>()
            .unwrap();
        let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![FIXED_CHUNK_SIZE, FIXED_CHUNK_SIZE, 5]);
        assert_eq!(chunks.concat(), data);

        let exact: Vec<usize> = FixedChunker::new(&data[..100], 50)
            .unwrap()
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(exact, vec![50, 50]);
        assert_eq!(FixedChunker::new(&[][..], 50).unwrap().count(), 0);
        assert!(FixedChunker::new(&[][..], 0).is_err());

        let reader = ChoppyReader {
            data: &data[..1000],
            rng: SplitRng(9),
        };
        let lens: Vec<usize> = FixedChunker::new(reader, 300)
            .unwrap()
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(lens, vec![300, 300, 300, 100]);
    }
}
