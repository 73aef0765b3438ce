//! Data blobs: the binary container of chunks and `.blob` files.
//!
//! Layout: `magic (8) || crc32 LE (4) [|| iv (16) || tag (16)] || payload`. The CRC covers the
//! payload only (for encrypted blobs: the ciphertext only).

use std::cell::RefCell;
use std::io::Read;
use std::sync::OnceLock;

use pbs_api_types::CryptMode;
use thiserror::Error;

use crate::crypt_config::{CryptConfig, CryptError, IV_LEN, TAG_LEN};
use crate::file_formats::{
    BLOB_HEADER_SIZE, COMPRESSED_BLOB_MAGIC_1_0, ENCRYPTED_BLOB_HEADER_SIZE,
    ENCRYPTED_BLOB_MAGIC_1_0, ENCR_COMPR_BLOB_MAGIC_1_0, UNCOMPRESSED_BLOB_MAGIC_1_0,
};

/// Largest input accepted by [`DataBlob::encode`], and largest decoded output of a blob.
pub const MAX_BLOB_SIZE: usize = 128 * 1024 * 1024;

/// Largest raw blob [`DataBlob::load_from_reader`] accepts: the largest input plus header and
/// the worst-case zstd expansion of incompressible data (well below 1 MiB for 128 MiB).
pub const MAX_RAW_BLOB_SIZE: usize = MAX_BLOB_SIZE + 1024 * 1024;

/// zstd level used for every blob.
const ZSTD_LEVEL: i32 = 1;

/// Why a blob could not be encoded, parsed or decoded.
#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob too small ({size} bytes)")]
    TooSmall { size: usize },
    #[error("encrypted blob too small ({size} bytes)")]
    EncryptedTooSmall { size: usize },
    #[error("unable to parse raw blob - wrong magic")]
    WrongMagic,
    #[error("Data blob has wrong CRC checksum.")]
    WrongCrc { stored: u32, computed: u32 },
    #[error("unable to decrypt blob - missing CryptConfig")]
    MissingCryptConfig,
    #[error("unable to decrypt blob - wrong key or corrupt data")]
    DecryptionFailed,
    #[error("unable to decompress blob - {0}")]
    DecompressionFailed(String),
    #[error("detected chunk with wrong digest.")]
    WrongDigest,
    #[error("detected chunk with wrong length ({actual} != {expected})")]
    WrongLength { actual: usize, expected: usize },
    #[error("data blob too large")]
    TooLarge { size: usize },
    #[error("decoded blob exceeds the limit of {limit} bytes")]
    DecodedTooLarge { limit: usize },
    #[error("blob compression failed - {0}")]
    CompressionFailed(std::io::Error),
    #[error("blob encryption failed - {0}")]
    Crypt(#[from] CryptError),
    #[error("blob I/O error - {0}")]
    Io(#[from] std::io::Error),
}

/// The four kinds of blob, one per magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    Uncompressed,
    Compressed,
    Encrypted,
    EncryptedCompressed,
}

impl BlobKind {
    /// The kind a magic number denotes, if any.
    pub fn from_magic(magic: &[u8]) -> Option<Self> {
        if magic == UNCOMPRESSED_BLOB_MAGIC_1_0 {
            Some(Self::Uncompressed)
        } else if magic == COMPRESSED_BLOB_MAGIC_1_0 {
            Some(Self::Compressed)
        } else if magic == ENCRYPTED_BLOB_MAGIC_1_0 {
            Some(Self::Encrypted)
        } else if magic == ENCR_COMPR_BLOB_MAGIC_1_0 {
            Some(Self::EncryptedCompressed)
        } else {
            None
        }
    }

    /// The magic number of this kind.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            Self::Uncompressed => &UNCOMPRESSED_BLOB_MAGIC_1_0,
            Self::Compressed => &COMPRESSED_BLOB_MAGIC_1_0,
            Self::Encrypted => &ENCRYPTED_BLOB_MAGIC_1_0,
            Self::EncryptedCompressed => &ENCR_COMPR_BLOB_MAGIC_1_0,
        }
    }

    /// Whether the payload is AES-256-GCM encrypted.
    pub fn is_encrypted(self) -> bool {
        matches!(self, Self::Encrypted | Self::EncryptedCompressed)
    }

    /// Whether the (decrypted) payload is a zstd stream.
    pub fn is_compressed(self) -> bool {
        matches!(self, Self::Compressed | Self::EncryptedCompressed)
    }

    /// Size of the header preceding the payload.
    pub fn header_size(self) -> usize {
        if self.is_encrypted() {
            ENCRYPTED_BLOB_HEADER_SIZE
        } else {
            BLOB_HEADER_SIZE
        }
    }

    /// The kind with the given properties.
    pub fn for_flags(encrypted: bool, compressed: bool) -> Self {
        match (encrypted, compressed) {
            (false, false) => Self::Uncompressed,
            (false, true) => Self::Compressed,
            (true, false) => Self::Encrypted,
            (true, true) => Self::EncryptedCompressed,
        }
    }
}

/// An encoded data blob; owns the raw bytes exactly as stored on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataBlob {
    raw: Vec<u8>,
    kind: BlobKind,
}

impl DataBlob {
    /// Encodes `data`, optionally compressed and/or encrypted.
    ///
    /// Compression is kept only if the compressed payload is strictly shorter.
    pub fn encode(
        data: &[u8],
        config: Option<&CryptConfig>,
        compress: bool,
    ) -> Result<DataBlob, BlobError> {
        if data.len() > MAX_BLOB_SIZE {
            return Err(BlobError::TooLarge { size: data.len() });
        }
        match config {
            Some(config) => Self::encode_encrypted(data, config, compress),
            None => Ok(Self::encode_plain(data, compress)),
        }
    }

    fn encode_plain(data: &[u8], compress: bool) -> DataBlob {
        let mut raw = Vec::with_capacity(BLOB_HEADER_SIZE + data.len());
        raw.resize(BLOB_HEADER_SIZE, 0);
        let mut kind = BlobKind::Uncompressed;
        if compress {
            match zstd_compress_into(raw, data, false) {
                Ok(compressed) => {
                    raw = compressed;
                    kind = BlobKind::Compressed;
                }
                Err(buffer) => {
                    raw = buffer;
                    raw.truncate(BLOB_HEADER_SIZE);
                }
            }
        }
        if kind == BlobKind::Uncompressed {
            raw.extend_from_slice(data);
        }
        let mut blob = DataBlob { raw, kind };
        blob.write_magic_and_crc();
        blob
    }

    fn encode_encrypted(
        data: &[u8],
        config: &CryptConfig,
        compress: bool,
    ) -> Result<DataBlob, BlobError> {
        let compressed = if compress {
            zstd_bulk_smaller(data)
        } else {
            None
        };
        let (payload, kind) = match &compressed {
            Some(c) => (c.as_slice(), BlobKind::EncryptedCompressed),
            None => (data, BlobKind::Encrypted),
        };
        let mut iv = [0u8; IV_LEN];
        openssl::rand::rand_bytes(&mut iv).map_err(CryptError::from)?;
        Self::encrypt_payload(payload, kind, config, &iv)
    }

    /// Encrypts an already (optionally) compressed payload with a given IV.
    fn encrypt_payload(
        payload: &[u8],
        kind: BlobKind,
        config: &CryptConfig,
        iv: &[u8; IV_LEN],
    ) -> Result<DataBlob, BlobError> {
        // Room for the header, the ciphertext and the block GCM may transiently need.
        let mut raw = Vec::with_capacity(ENCRYPTED_BLOB_HEADER_SIZE + payload.len() + 16);
        raw.resize(ENCRYPTED_BLOB_HEADER_SIZE, 0);
        let tag = config.encrypt_into(iv, payload, &mut raw)?;
        raw[12..28].copy_from_slice(iv);
        raw[28..44].copy_from_slice(&tag);
        let mut blob = DataBlob { raw, kind };
        blob.write_magic_and_crc();
        Ok(blob)
    }

    fn write_magic_and_crc(&mut self) {
        self.raw[..8].copy_from_slice(self.kind.magic());
        let crc = self.compute_crc();
        self.set_crc(crc);
    }

    /// Wraps raw blob bytes after checking magic and minimum size (not the CRC).
    pub fn from_raw(raw: Vec<u8>) -> Result<DataBlob, BlobError> {
        if raw.len() < BLOB_HEADER_SIZE {
            return Err(BlobError::TooSmall { size: raw.len() });
        }
        let kind = BlobKind::from_magic(&raw[..8]).ok_or(BlobError::WrongMagic)?;
        if kind.is_encrypted() && raw.len() < ENCRYPTED_BLOB_HEADER_SIZE {
            return Err(BlobError::EncryptedTooSmall { size: raw.len() });
        }
        Ok(DataBlob { raw, kind })
    }

    /// Reads a whole blob and verifies its CRC.
    pub fn load_from_reader(reader: &mut dyn Read) -> Result<DataBlob, BlobError> {
        let mut raw = Vec::new();
        let limit = MAX_RAW_BLOB_SIZE as u64 + 1;
        reader.take(limit).read_to_end(&mut raw)?;
        if raw.len() > MAX_RAW_BLOB_SIZE {
            return Err(BlobError::TooLarge { size: raw.len() });
        }
        let blob = Self::from_raw(raw)?;
        blob.verify_crc()?;
        Ok(blob)
    }

    /// The raw encoded bytes.
    pub fn raw_data(&self) -> &[u8] {
        &self.raw
    }

    /// Consumes the blob, returning the raw encoded bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.raw
    }

    /// Size of the encoded blob in bytes.
    pub fn raw_size(&self) -> u64 {
        self.raw.len() as u64
    }

    /// The magic number.
    pub fn magic(&self) -> &[u8; 8] {
        self.kind.magic()
    }

    /// Which of the four blob variants this is.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// The CRC stored in the header.
    pub fn crc(&self) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.raw[8..12]);
        u32::from_le_bytes(bytes)
    }

    /// CRC32 of the payload (ciphertext for encrypted blobs).
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(self.payload())
    }

    /// Overwrites the CRC stored in the header.
    pub fn set_crc(&mut self, crc: u32) {
        self.raw[8..12].copy_from_slice(&crc.to_le_bytes());
    }

    /// Checks the stored CRC against the payload.
    pub fn verify_crc(&self) -> Result<(), BlobError> {
        let stored = self.crc();
        let computed = self.compute_crc();
        if stored != computed {
            return Err(BlobError::WrongCrc { stored, computed });
        }
        Ok(())
    }

    /// Whether the payload is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.kind.is_encrypted()
    }

    /// Whether the (decrypted) payload is compressed.
    pub fn is_compressed(&self) -> bool {
        self.kind.is_compressed()
    }

    /// `encrypt` for encrypted blobs, `none` otherwise.
    pub fn crypt_mode(&self) -> CryptMode {
        if self.is_encrypted() {
            CryptMode::Encrypt
        } else {
            CryptMode::None
        }
    }

    fn payload(&self) -> &[u8] {
        &self.raw[self.kind.header_size()..]
    }

    fn iv_and_tag(&self) -> ([u8; IV_LEN], [u8; TAG_LEN]) {
        let mut iv = [0u8; IV_LEN];
        let mut tag = [0u8; TAG_LEN];
        iv.copy_from_slice(&self.raw[12..28]);
        tag.copy_from_slice(&self.raw[28..44]);
        (iv, tag)
    }

    /// Decodes the blob and optionally checks the chunk digest of the result.
    ///
    /// Unencrypted blobs are checked against plain SHA-256, encrypted ones against
    /// `config.compute_digest`.
    pub fn decode(
        &self,
        config: Option<&CryptConfig>,
        digest: Option<&[u8; 32]>,
    ) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        self.decode_into(config, digest, &mut out)?;
        Ok(out)
    }

    /// Like [`DataBlob::decode`], but decodes into `out` (cleared first) to reuse its buffer.
    pub fn decode_into(
        &self,
        config: Option<&CryptConfig>,
        digest: Option<&[u8; 32]>,
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        self.decode_bounded(config, MAX_BLOB_SIZE, out)?;
        if let Some(expected) = digest {
            let computed = if self.is_encrypted() {
                // decode_bounded already failed if the config is missing.
                match config {
                    Some(config) => config.compute_digest(out),
                    None => return Err(BlobError::MissingCryptConfig),
                }
            } else {
                openssl::sha::sha256(out)
            };
            if &computed != expected {
                return Err(BlobError::WrongDigest);
            }
        }
        Ok(())
    }

    /// Decodes into `out`, failing with [`BlobError::DecodedTooLarge`] beyond `limit` bytes.
    fn decode_bounded(
        &self,
        config: Option<&CryptConfig>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        out.clear();
        let payload = self.payload();
        match self.kind {
            BlobKind::Uncompressed => {
                if payload.len() > limit {
                    return Err(BlobError::DecodedTooLarge { limit });
                }
                out.extend_from_slice(payload);
            }
            BlobKind::Compressed => zstd_decompress_bounded(payload, limit, out)?,
            BlobKind::Encrypted | BlobKind::EncryptedCompressed => {
                let config = config.ok_or(BlobError::MissingCryptConfig)?;
                let (iv, tag) = self.iv_and_tag();
                if self.kind == BlobKind::Encrypted {
                    if payload.len() > limit {
                        return Err(BlobError::DecodedTooLarge { limit });
                    }
                    config
                        .decrypt_into(&iv, &tag, payload, out)
                        .map_err(|_| BlobError::DecryptionFailed)?;
                } else {
                    let mut compressed = Vec::new();
                    config
                        .decrypt_into(&iv, &tag, payload, &mut compressed)
                        .map_err(|_| BlobError::DecryptionFailed)?;
                    zstd_decompress_bounded(&compressed, limit, out)?;
                }
            }
        }
        Ok(())
    }

    /// Server-side check of an uploaded chunk: decoded length and plain SHA-256.
    ///
    /// Encrypted chunks cannot be checked without the key and are accepted as they are.
    pub fn verify_unencrypted(
        &self,
        expected_chunk_size: usize,
        expected_digest: &[u8; 32],
    ) -> Result<(), BlobError> {
        if self.is_encrypted() {
            return Ok(());
        }
        if self.kind == BlobKind::Uncompressed {
            // Hot path of chunk uploads: check the payload in place, without a copy.
            return check_length_and_digest(self.payload(), expected_chunk_size, expected_digest);
        }
        let mut data = Vec::new();
        // One byte of slack tells "too long" apart from "exactly right" without decoding a
        // possibly huge stream completely.
        let limit = expected_chunk_size.saturating_add(1).min(MAX_BLOB_SIZE);
        match self.decode_bounded(None, limit, &mut data) {
            Ok(()) => {}
            Err(BlobError::DecodedTooLarge { .. }) => {
                return Err(BlobError::WrongLength {
                    actual: limit,
                    expected: expected_chunk_size,
                })
            }
            Err(err) => return Err(err),
        }
        check_length_and_digest(&data, expected_chunk_size, expected_digest)
    }
}

fn check_length_and_digest(
    data: &[u8],
    expected_size: usize,
    expected_digest: &[u8; 32],
) -> Result<(), BlobError> {
    if data.len() != expected_size {
        return Err(BlobError::WrongLength {
            actual: data.len(),
            expected: expected_size,
        });
    }
    if &openssl::sha::sha256(data) != expected_digest {
        return Err(BlobError::WrongDigest);
    }
    Ok(())
}

thread_local! {
    /// One compression context per thread, reused for every blob: creating and initialising
    /// one costs more than compressing a small chunk.
    static COMPRESSOR: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    /// One decompression context per thread, likewise.
    static DECOMPRESSOR: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` in one pass into `buf` behind its current contents, with or without
/// the content size in the frame header (upstream's streaming encoder writes none).
///
/// Returns `Err(buf)`, truncated back to its original length, if the compressed data is not
/// strictly shorter than `data` (or compression failed: storing uncompressed is always
/// valid).
fn zstd_compress_into(
    mut buf: Vec<u8>,
    data: &[u8],
    content_size: bool,
) -> Result<Vec<u8>, Vec<u8>> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
    use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

    let start = buf.len();
    if data.is_empty() {
        return Err(buf);
    }
    // Room for the worst case lets zstd compress straight from `data` into `buf` in one
    // call, without copying the input through its window buffer.
    buf.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let end = COMPRESSOR.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = CCtx::try_create();
        }
        let cctx = slot.as_mut()?;
        cctx.reset(ResetDirective::SessionOnly).ok()?;
        cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL))
            .ok()?;
        cctx.set_parameter(CParameter::ContentSizeFlag(content_size))
            .ok()?;
        let mut input = InBuffer::around(data);
        let mut output = OutBuffer::around_pos(&mut buf, start);
        match cctx.compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_end) {
            Ok(0) => Some(output.pos()),
            _ => None,
        }
    });
    match end {
        Some(end) if end - start < data.len() => Ok(buf),
        _ => {
            buf.truncate(start);
            Err(buf)
        }
    }
}

/// One-shot zstd compression (content size in the frame header); `None` unless strictly smaller.
fn zstd_bulk_smaller(data: &[u8]) -> Option<Vec<u8>> {
    zstd_compress_into(Vec::new(), data, true).ok()
}

/// Decompresses a sequence of zstd frames into `out` (appending), never holding more than
/// `limit` + 1 decompressed bytes.
///
/// The frames' block headers bound the decompressed size, so one allocation and one pass
/// straight into `out` suffice, with a per-thread context.
fn zstd_decompress_bounded(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BlobError> {
    use zstd::zstd_safe::zstd_sys::{ZSTD_ErrorCode, ZSTD_getErrorCode};
    use zstd::zstd_safe::DCtx;

    let fail = |msg: &str| BlobError::DecompressionFailed(msg.to_string());
    if input.is_empty() {
        return Ok(());
    }
    let hard_cap = limit.saturating_add(1);
    let bound = zstd::zstd_safe::decompress_bound(input)
        .map_err(|code| fail(zstd::zstd_safe::get_error_name(code)))?;
    let capacity = usize::try_from(bound).map_or(hard_cap, |bound| bound.min(hard_cap));
    // Decoding straight into `out` keeps the buffer a caller reuses; zstd writes from its
    // start, so only an empty `out` can take the output directly.
    let mut scratch = Vec::new();
    let direct = out.is_empty();
    let decoded = if direct { &mut *out } else { &mut scratch };
    decoded.reserve_exact(capacity);
    let result = DECOMPRESSOR.with(|slot| {
        let mut slot = slot
            .try_borrow_mut()
            .map_err(|_| fail("decompression context busy"))?;
        if slot.is_none() {
            *slot = DCtx::try_create();
        }
        let dctx = slot
            .as_mut()
            .ok_or_else(|| fail("cannot allocate a decompression context"))?;
        dctx.decompress(&mut *decoded, input).map_err(|code| {
            // SAFETY: plain FFI call on an error code.
            let kind = unsafe { ZSTD_getErrorCode(code) };
            if kind == ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall && capacity == hard_cap {
                BlobError::DecodedTooLarge { limit }
            } else {
                fail(zstd::zstd_safe::get_error_name(code))
            }
        })
    });
    result?;
    if decoded.len() > limit {
        return Err(BlobError::DecodedTooLarge { limit });
    }
    if !direct {
        out.extend_from_slice(&scratch);
    }
    Ok(())
}

/// Builds chunks: computes the chunk digest and encodes the blob.
pub struct DataChunkBuilder<'a, 'b> {
    data: &'a [u8],
    config: Option<&'b CryptConfig>,
    compress: bool,
    digest: Option<[u8; 32]>,
}

impl<'a, 'b> DataChunkBuilder<'a, 'b> {
    /// Starts a builder; compression is on by default, as the backup client always uses it.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            config: None,
            compress: true,
            digest: None,
        }
    }

    /// Encrypts the chunk (and switches to the keyed digest).
    pub fn crypt_config(mut self, config: &'b CryptConfig) -> Self {
        self.digest = None;
        self.config = Some(config);
        self
    }

    /// Turns compression on or off.
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// The chunk digest: SHA-256 of the data, keyed with `id_key` when encrypting.
    pub fn digest(&mut self) -> [u8; 32] {
        if let Some(digest) = self.digest {
            return digest;
        }
        let digest = match self.config {
            Some(config) => config.compute_digest(self.data),
            None => openssl::sha::sha256(self.data),
        };
        self.digest = Some(digest);
        digest
    }

    /// Encodes the chunk, returning it together with its digest.
    pub fn build(mut self) -> Result<(DataBlob, [u8; 32]), BlobError> {
        let digest = self.digest();
        let blob = DataBlob::encode(self.data, self.config, self.compress)?;
        Ok((blob, digest))
    }

    /// Builds the chunk of `chunk_size` zero bytes.
    pub fn build_zero_chunk(
        config: Option<&CryptConfig>,
        chunk_size: usize,
        compress: bool,
    ) -> Result<(DataBlob, [u8; 32]), BlobError> {
        if chunk_size > MAX_BLOB_SIZE {
            return Err(BlobError::TooLarge { size: chunk_size });
        }
        let zero_bytes = vec![0u8; chunk_size];
        let mut builder = DataChunkBuilder::new(&zero_bytes).compress(compress);
        if let Some(config) = config {
            builder = builder.crypt_config(config);
        }
        builder.build()
    }
}

fn fuzz_crypt_config() -> Option<&'static CryptConfig> {
    static CONFIG: OnceLock<Option<CryptConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| CryptConfig::new(std::array::from_fn(|i| i as u8)).ok())
        .as_ref()
}

/// Runs every parsing and decoding path on arbitrary bytes (fuzzing entry point).
///
/// Decodes with and without the fixed key `00 01 .. 1f`, whatever the CRC check says, so that
/// corrupt input reaches the decoders. Returns the decoded length of the first successful decode,
/// or the first error. Never panics.
pub fn blob_decode(raw: &[u8]) -> Result<usize, BlobError> {
    let blob = DataBlob::from_raw(raw.to_vec())?;
    let crc = blob.verify_crc();
    let unkeyed = blob.decode(None, Some(&[0u8; 32]));
    let keyed = match fuzz_crypt_config() {
        Some(config) => blob.decode(Some(config), None),
        None => Err(BlobError::MissingCryptConfig),
    };
    let _ = blob.verify_unencrypted(raw.len(), &[0u8; 32]);
    crc?;
    match (unkeyed, keyed) {
        (Ok(data), _) | (_, Ok(data)) => Ok(data.len()),
        (Err(err), _) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn writer_test_data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 255) as u8).collect()
    }

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        openssl::rand::rand_bytes(&mut data).unwrap();
        data
    }

    #[test]
    fn unencrypted_vectors_byte_for_byte() {
        let cases: [(&[u8], &str, u32, &str); 3] = [
            (
                b"",
                "42ab3807be8370a100000000",
                0,
                "313cbece05892a562406ace8a0eee5e8e7b544fda0b69693e09f90cc6fff476b",
            ),
            (
                &[0, 1],
                "42ab3807be8370a16922de360001",
                0x36de2269,
                "c1adc05dd49638a9fb10a0159cd0aea8ee3fd265a8ef5d81cf7fa762247d92eb",
            ),
            (
                b"Hello PBS\n",
                "42ab3807be8370a1a25b724248656c6c6f205042530a",
                0x42725ba2,
                "3a2f8ea965be93bc60b1fd9d576b8becb5fafedb352c3bddf01c0d2fcdf760be",
            ),
        ];
        for (data, encoded, crc, csum) in cases {
            for compress in [false, true] {
                let blob = DataBlob::encode(data, None, compress).unwrap();
                assert_eq!(hex::encode(blob.raw_data()), encoded, "{data:?} {compress}");
                assert_eq!(blob.crc(), crc);
                assert_eq!(blob.compute_crc(), crc);
                assert_eq!(hex::encode(openssl::sha::sha256(blob.raw_data())), csum);
                assert_eq!(blob.magic(), &UNCOMPRESSED_BLOB_MAGIC_1_0);
                assert_eq!(blob.crypt_mode(), CryptMode::None);
                assert_eq!(blob.raw_size(), encoded.len() as u64 / 2);
                let digest = openssl::sha::sha256(data);
                assert_eq!(blob.decode(None, Some(&digest)).unwrap(), data);
            }
        }
        assert_eq!(
            hex::encode(openssl::sha::sha256(&[0, 1])),
            "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2"
        );
    }

    const ENCRYPTED_VECTOR: &str = "7b6785be222d4cf0a4e1241900000000000000000000000000000000aa47ecd6f9f4470d8f3671e8e539d5f7c8bf";

    #[test]
    fn decode_encrypted_vector() {
        let raw = hex::decode(ENCRYPTED_VECTOR).unwrap();
        let blob = DataBlob::load_from_reader(&mut raw.as_slice()).unwrap();
        assert_eq!(blob.crc(), 0x1924e1a4);
        assert!(blob.is_encrypted());
        assert!(!blob.is_compressed());
        assert_eq!(blob.crypt_mode(), CryptMode::Encrypt);
        let config = CryptConfig::new(test_key()).unwrap();
        let digest = config.compute_digest(&[0, 1]);
        assert_eq!(
            hex::encode(digest),
            "1658e5d0fba9723e3e9b74242d363abab688380f95cae91ee726c6d6a9010845"
        );
        assert_eq!(blob.decode(Some(&config), Some(&digest)).unwrap(), [0, 1]);
        // The plain digest is not the identity of an encrypted chunk.
        let plain = openssl::sha::sha256(&[0, 1]);
        assert!(matches!(
            blob.decode(Some(&config), Some(&plain)),
            Err(BlobError::WrongDigest)
        ));
        let err = blob.decode(None, None).unwrap_err();
        assert!(matches!(err, BlobError::MissingCryptConfig));
        assert_eq!(
            err.to_string(),
            "unable to decrypt blob - missing CryptConfig"
        );
        // Encrypting the same payload with the vector's IV reproduces the vector.
        let again =
            DataBlob::encrypt_payload(&[0, 1], BlobKind::Encrypted, &config, &[0u8; 16]).unwrap();
        assert_eq!(hex::encode(again.raw_data()), ENCRYPTED_VECTOR);
        // The server cannot check encrypted chunks and accepts them.
        blob.verify_unencrypted(12345, &[0u8; 32]).unwrap();
    }

    #[test]
    fn wrong_key_is_a_decryption_error() {
        let raw = hex::decode(ENCRYPTED_VECTOR).unwrap();
        let blob = DataBlob::from_raw(raw).unwrap();
        let wrong = CryptConfig::new([1u8; 32]).unwrap();
        assert!(matches!(
            blob.decode(Some(&wrong), None),
            Err(BlobError::DecryptionFailed)
        ));
    }

    #[test]
    fn blob_writer_data_round_trips_all_variants() {
        let data = writer_test_data();
        let config = CryptConfig::new([1u8; 32]).unwrap();
        let plain_digest = openssl::sha::sha256(&data);
        assert_eq!(
            hex::encode(plain_digest),
            "539a60c3a7cc268ecce082c9184702bc829bb106a2643dee26db3ff0bf8457ee"
        );
        let enc_digest = config.compute_digest(&data);
        assert_eq!(
            hex::encode(enc_digest),
            "32a2bf5dff84090e7f175c27f666f5cc8268046ab6efda0e501196bceffdc675"
        );
        let variants = [
            (None, false, UNCOMPRESSED_BLOB_MAGIC_1_0, plain_digest),
            (None, true, COMPRESSED_BLOB_MAGIC_1_0, plain_digest),
            (Some(&config), false, ENCRYPTED_BLOB_MAGIC_1_0, enc_digest),
            (Some(&config), true, ENCR_COMPR_BLOB_MAGIC_1_0, enc_digest),
        ];
        for (key, compress, magic, digest) in variants {
            let blob = DataBlob::encode(&data, key, compress).unwrap();
            assert_eq!(blob.magic(), &magic);
            blob.verify_crc().unwrap();
            let reloaded = DataBlob::load_from_reader(&mut blob.raw_data()).unwrap();
            assert_eq!(reloaded.decode(key, Some(&digest)).unwrap(), data);
            if compress {
                assert!(blob.raw_data().len() < data.len());
            }
            let mut builder = DataChunkBuilder::new(&data).compress(compress);
            if let Some(key) = key {
                builder = builder.crypt_config(key);
            }
            assert_eq!(builder.digest(), digest);
            let (chunk, chunk_digest) = builder.build().unwrap();
            assert_eq!(chunk_digest, digest);
            assert_eq!(chunk.magic(), &magic);
            assert_eq!(chunk.decode(key, Some(&digest)).unwrap(), data);
        }
    }

    #[test]
    fn encrypted_compressed_frame_carries_content_size_plain_does_not() {
        let data = writer_test_data();
        let config = CryptConfig::new([1u8; 32]).unwrap();
        let plain = DataBlob::encode(&data, None, true).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&plain.raw_data()[BLOB_HEADER_SIZE..]).ok(),
            Some(None)
        );
        let blob = DataBlob::encode(&data, Some(&config), true).unwrap();
        let (iv, tag) = blob.iv_and_tag();
        let mut compressed = Vec::new();
        config
            .decrypt_into(&iv, &tag, blob.payload(), &mut compressed)
            .unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&compressed).ok(),
            Some(Some(data.len() as u64))
        );
    }

    #[test]
    fn compression_kept_only_if_strictly_smaller() {
        let config = CryptConfig::new(test_key()).unwrap();
        let random = random_bytes(64 * 1024);
        let blob = DataBlob::encode(&random, None, true).unwrap();
        assert_eq!(blob.magic(), &UNCOMPRESSED_BLOB_MAGIC_1_0);
        assert_eq!(&blob.raw_data()[12..], random.as_slice());
        let blob = DataBlob::encode(&random, Some(&config), true).unwrap();
        assert_eq!(blob.magic(), &ENCRYPTED_BLOB_MAGIC_1_0);
        assert_eq!(blob.raw_size(), 44 + random.len() as u64);
        assert_eq!(blob.decode(Some(&config), None).unwrap(), random);

        let zeros = vec![0u8; 64 * 1024];
        let blob = DataBlob::encode(&zeros, None, true).unwrap();
        assert_eq!(blob.magic(), &COMPRESSED_BLOB_MAGIC_1_0);
        assert_eq!(blob.decode(None, None).unwrap(), zeros);
        let blob = DataBlob::encode(&zeros, Some(&config), true).unwrap();
        assert_eq!(blob.magic(), &ENCR_COMPR_BLOB_MAGIC_1_0);
        assert_eq!(blob.decode(Some(&config), None).unwrap(), zeros);
        let blob = DataBlob::encode(&zeros, None, false).unwrap();
        assert_eq!(blob.magic(), &UNCOMPRESSED_BLOB_MAGIC_1_0);

        for data in [&[][..], &[0u8][..], &[0u8; 8][..]] {
            let blob = DataBlob::encode(data, Some(&config), true).unwrap();
            assert_eq!(blob.magic(), &ENCRYPTED_BLOB_MAGIC_1_0);
            assert_eq!(blob.decode(Some(&config), None).unwrap(), data);
        }
    }

    #[test]
    fn compression_at_the_boundary_matches_full_compression() {
        // Payloads whose compressed size is close to the input size must decide exactly as a
        // full compression would.
        for len in [16usize, 20, 24, 32, 48, 64, 100, 200] {
            let mut data = random_bytes(len);
            data[len / 2..].fill(7);
            // A streaming frame has the same header layout (window descriptor, no content
            // size) and, for one block, the same length; only the window size may differ.
            let full_stream = zstd::stream::encode_all(data.as_slice(), ZSTD_LEVEL).unwrap();
            let blob = DataBlob::encode(&data, None, true).unwrap();
            assert_eq!(
                blob.is_compressed(),
                full_stream.len() < data.len(),
                "{len}"
            );
            if blob.is_compressed() {
                let frame = &blob.raw_data()[12..];
                assert_eq!(frame.len(), full_stream.len(), "{len}");
                assert!(matches!(
                    zstd::zstd_safe::get_frame_content_size(frame),
                    Ok(None)
                ));
                assert_eq!(blob.decode(None, None).unwrap(), data);
            }
            let full_bulk = zstd::bulk::compress(&data, ZSTD_LEVEL).unwrap();
            let config = CryptConfig::new(test_key()).unwrap();
            let blob = DataBlob::encode(&data, Some(&config), true).unwrap();
            assert_eq!(blob.is_compressed(), full_bulk.len() < data.len(), "{len}");
            assert_eq!(blob.decode(Some(&config), None).unwrap(), data);
        }
    }

    #[test]
    fn too_large_input_is_rejected() {
        let data = vec![0u8; MAX_BLOB_SIZE + 1];
        let err = DataBlob::encode(&data, None, true).unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        assert_eq!(err.to_string(), "data blob too large");
        assert!(DataChunkBuilder::build_zero_chunk(None, MAX_BLOB_SIZE + 1, true).is_err());
    }

    #[test]
    fn zstd_bomb_is_bounded() {
        let zeros = vec![0u8; 4 * 1024 * 1024 + 1];
        let frame = zstd::bulk::compress(&zeros, 1).unwrap();
        let mut out = Vec::new();
        let err = zstd_decompress_bounded(&frame, 4 * 1024 * 1024, &mut out).unwrap_err();
        assert!(matches!(err, BlobError::DecodedTooLarge { .. }));
        assert!(out.capacity() <= 4 * 1024 * 1024 + 1);
        // Same without a content size in the frame header.
        let frame = zstd::stream::encode_all(zeros.as_slice(), 1).unwrap();
        let mut out = Vec::new();
        let err = zstd_decompress_bounded(&frame, 1024 * 1024, &mut out).unwrap_err();
        assert!(matches!(err, BlobError::DecodedTooLarge { .. }));
        assert!(out.capacity() <= 1024 * 1024 + 1);
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        zstd_decompress_bounded(&frame, zeros.len(), &mut out).unwrap();
        assert_eq!(out, zeros);
    }

    #[test]
    fn blob_bomb_beyond_max_blob_size_fails() {
        let zeros = vec![0u8; MAX_BLOB_SIZE + 1];
        let frame = zstd::stream::encode_all(zeros.as_slice(), 1).unwrap();
        drop(zeros);
        let mut raw = COMPRESSED_BLOB_MAGIC_1_0.to_vec();
        raw.extend_from_slice(&crc32fast::hash(&frame).to_le_bytes());
        raw.extend_from_slice(&frame);
        let blob = DataBlob::load_from_reader(&mut raw.as_slice()).unwrap();
        assert!(matches!(
            blob.decode(None, None),
            Err(BlobError::DecodedTooLarge { .. })
        ));
    }

    #[test]
    fn concatenated_frames_decode() {
        let mut frame = zstd::stream::encode_all(&b"hello "[..], 1).unwrap();
        frame.extend(zstd::stream::encode_all(&b"world"[..], 1).unwrap());
        let mut out = Vec::new();
        zstd_decompress_bounded(&frame, 100, &mut out).unwrap();
        assert_eq!(out, b"hello world");
        let mut garbage = frame.clone();
        garbage.push(0x42);
        assert!(zstd_decompress_bounded(&garbage, 100, &mut out).is_err());
        assert!(zstd_decompress_bounded(&frame[..frame.len() - 1], 100, &mut out).is_err());
    }

    #[test]
    fn parse_errors() {
        let err = DataBlob::from_raw(vec![0u8; 11]).unwrap_err();
        assert!(matches!(err, BlobError::TooSmall { size: 11 }));
        let err = DataBlob::from_raw(vec![0u8; 12]).unwrap_err();
        assert_eq!(err.to_string(), "unable to parse raw blob - wrong magic");
        let mut raw = ENCRYPTED_BLOB_MAGIC_1_0.to_vec();
        raw.resize(43, 0);
        assert!(matches!(
            DataBlob::from_raw(raw),
            Err(BlobError::EncryptedTooSmall { size: 43 })
        ));
        let mut raw = hex::decode("42ab3807be8370a16922de360001").unwrap();
        raw[13] = 2;
        let err = DataBlob::load_from_reader(&mut raw.as_slice()).unwrap_err();
        assert!(matches!(err, BlobError::WrongCrc { .. }));
        assert_eq!(err.to_string(), "Data blob has wrong CRC checksum.");
        // from_raw does not check the CRC, set_crc repairs it.
        let mut blob = DataBlob::from_raw(raw).unwrap();
        assert!(blob.verify_crc().is_err());
        let crc = blob.compute_crc();
        blob.set_crc(crc);
        blob.verify_crc().unwrap();
        let err = blob
            .decode(None, Some(&openssl::sha::sha256(&[0, 1])))
            .unwrap_err();
        assert_eq!(err.to_string(), "detected chunk with wrong digest.");
    }

    #[test]
    fn verify_unencrypted_checks_length_and_digest() {
        let data = vec![5u8; 10_000];
        let digest = openssl::sha::sha256(&data);
        let (blob, built_digest) = DataChunkBuilder::new(&data).build().unwrap();
        assert_eq!(built_digest, digest);
        assert!(blob.is_compressed());
        blob.verify_unencrypted(10_000, &digest).unwrap();
        assert!(matches!(
            blob.verify_unencrypted(9_999, &digest),
            Err(BlobError::WrongLength { .. })
        ));
        assert!(matches!(
            blob.verify_unencrypted(10_001, &digest),
            Err(BlobError::WrongLength { .. })
        ));
        assert!(matches!(
            blob.verify_unencrypted(10_000, &[0u8; 32]),
            Err(BlobError::WrongDigest)
        ));

        let (plain, digest) = DataChunkBuilder::new(&data)
            .compress(false)
            .build()
            .unwrap();
        assert!(!plain.is_compressed());
        plain.verify_unencrypted(10_000, &digest).unwrap();
        assert!(matches!(
            plain.verify_unencrypted(10_001, &digest),
            Err(BlobError::WrongLength {
                actual: 10_000,
                expected: 10_001
            })
        ));
        assert!(matches!(
            plain.verify_unencrypted(10_000, &[1u8; 32]),
            Err(BlobError::WrongDigest)
        ));
    }

    #[test]
    fn zero_chunk() {
        let (blob, digest) =
            DataChunkBuilder::build_zero_chunk(None, 4 * 1024 * 1024, true).unwrap();
        assert_eq!(
            hex::encode(digest),
            "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"
        );
        assert!(blob.is_compressed());
        blob.verify_unencrypted(4 * 1024 * 1024, &digest).unwrap();
        let config = CryptConfig::new(test_key()).unwrap();
        let (blob, digest) =
            DataChunkBuilder::build_zero_chunk(Some(&config), 1024 * 1024, true).unwrap();
        assert_eq!(digest, config.compute_digest(&vec![0u8; 1024 * 1024]));
        assert_eq!(blob.magic(), &ENCR_COMPR_BLOB_MAGIC_1_0);
    }

    fn small_blobs() -> Vec<Vec<u8>> {
        let config = CryptConfig::new(test_key()).unwrap();
        let text = b"some small text, some small text, some small text".as_slice();
        vec![
            DataBlob::encode(text, None, false).unwrap().into_inner(),
            DataBlob::encode(text, None, true).unwrap().into_inner(),
            DataBlob::encode(text, Some(&config), false)
                .unwrap()
                .into_inner(),
            DataBlob::encode(text, Some(&config), true)
                .unwrap()
                .into_inner(),
        ]
    }

    #[test]
    fn truncations_and_bit_flips_fail_cleanly() {
        let config = CryptConfig::new(test_key()).unwrap();
        for raw in small_blobs() {
            let full = DataBlob::from_raw(raw.clone()).unwrap();
            assert!(full.decode(Some(&config), None).is_ok());
            for len in 0..raw.len() {
                let truncated = &raw[..len];
                let loaded = DataBlob::load_from_reader(&mut &truncated[..]);
                assert!(loaded.is_err(), "truncated to {len} accepted");
                if let Ok(blob) = DataBlob::from_raw(truncated.to_vec()) {
                    let _ = blob.decode(Some(&config), None);
                    let _ = blob.decode(None, None);
                }
                let _ = blob_decode(truncated);
            }
            for pos in 0..raw.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = raw.clone();
                    bad[pos] ^= bit;
                    let loaded = DataBlob::load_from_reader(&mut bad.as_slice());
                    if pos < 12 || pos >= full.kind().header_size() {
                        // Magic, CRC or payload damage: caught while loading.
                        assert!(loaded.is_err(), "flip at {pos} accepted");
                    } else {
                        // IV or tag damage: the CRC does not cover it, GCM does.
                        let blob = loaded.unwrap();
                        assert!(blob.decode(Some(&config), None).is_err());
                    }
                    let _ = blob_decode(&bad);
                }
            }
        }
    }

    #[test]
    fn fuzz_helper_never_panics_on_junk() {
        let mut seeds = small_blobs();
        seeds.push(hex::decode(ENCRYPTED_VECTOR).unwrap());
        assert_eq!(blob_decode(&seeds[4]).unwrap(), 2);
        for seed in &seeds {
            for _ in 0..200 {
                let mut mutated = seed.clone();
                let mut noise = [0u8; 3];
                openssl::rand::rand_bytes(&mut noise).unwrap();
                let pos = 12 + noise[0] as usize % (mutated.len() - 12);
                mutated[pos] ^= noise[1] | 1;
                let _ = blob_decode(&mutated);
            }
        }
        for len in [0usize, 11, 12, 13, 43, 44, 45, 1000] {
            let junk = random_bytes(len);
            let _ = blob_decode(&junk);
            for magic in [
                UNCOMPRESSED_BLOB_MAGIC_1_0,
                COMPRESSED_BLOB_MAGIC_1_0,
                ENCRYPTED_BLOB_MAGIC_1_0,
                ENCR_COMPR_BLOB_MAGIC_1_0,
            ] {
                let mut raw = magic.to_vec();
                raw.extend_from_slice(&junk);
                let _ = blob_decode(&raw);
            }
        }
    }
}
