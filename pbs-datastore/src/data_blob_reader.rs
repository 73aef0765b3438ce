//! Streaming blob reader: decrypts and decompresses while reading, checks the CRC (and the GCM
//! tag) at the end of the input.
//!
//! Data is handed out before the CRC and tag are checked (the format has them only in the
//! header and they cover the whole payload); consumers must read to the end (or call
//! [`DataBlobReader::finish`]) and discard everything if that fails. Decompressed output is not
//! bounded here: the consumer decides how much it reads.

use std::io::{BufReader, Read};

use openssl::symm::{Cipher, Crypter, Mode};

use crate::crypt_config::{CryptConfig, CryptError, IV_LEN, TAG_LEN};
use crate::data_blob::{BlobError, BlobKind};
use crate::file_formats::BLOB_HEADER_SIZE;

fn invalid_data(err: BlobError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err)
}

/// Hashes everything read and compares against the expected CRC at end of input.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    expected: u32,
}

impl<R: Read> CrcReader<R> {
    fn check(&self) -> Result<(), BlobError> {
        let computed = self.hasher.clone().finalize();
        if computed != self.expected {
            return Err(BlobError::WrongCrc {
                stored: self.expected,
                computed,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check().map_err(invalid_data)?;
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Decrypts AES-256-GCM while reading; verifies the tag at end of input.
struct GcmReader<R> {
    inner: R,
    crypter: Crypter,
    tag: [u8; TAG_LEN],
    buffer: Vec<u8>,
    authenticated: bool,
}

impl<R: Read> GcmReader<R> {
    fn new(
        inner: R,
        config: &CryptConfig,
        iv: &[u8; IV_LEN],
        tag: [u8; TAG_LEN],
    ) -> Result<Self, BlobError> {
        let mut crypter = Crypter::new(
            Cipher::aes_256_gcm(),
            Mode::Decrypt,
            config.enc_key(),
            Some(iv),
        )
        .map_err(CryptError::from)?;
        crypter.aad_update(b"").map_err(CryptError::from)?;
        Ok(Self {
            inner,
            crypter,
            tag,
            buffer: Vec::new(),
            authenticated: false,
        })
    }
}

impl<R: Read> Read for GcmReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || self.authenticated {
            return Ok(0);
        }
        // GCM is a stream mode: n ciphertext bytes give n plaintext bytes.
        self.buffer.resize(out.len().min(256 * 1024), 0);
        let n = self.inner.read(&mut self.buffer)?;
        if n == 0 {
            let mut rest = [0u8; 16];
            self.crypter
                .set_tag(&self.tag)
                .map_err(std::io::Error::other)?;
            self.crypter
                .finalize(&mut rest)
                .map_err(|_| invalid_data(BlobError::DecryptionFailed))?;
            self.authenticated = true;
            return Ok(0);
        }
        self.crypter
            .update(&self.buffer[..n], out)
            .map_err(std::io::Error::other)
    }
}

type ZstdReader<R> = zstd::stream::read::Decoder<'static, BufReader<R>>;

enum Stage<R: Read> {
    Plain(CrcReader<R>),
    Compressed(ZstdReader<CrcReader<R>>),
    Encrypted(GcmReader<CrcReader<R>>),
    EncryptedCompressed(ZstdReader<GcmReader<CrcReader<R>>>),
}

/// Reads and decodes a data blob in a streaming fashion.
pub struct DataBlobReader<R: Read> {
    stage: Stage<R>,
    kind: BlobKind,
}

impl<R: Read> DataBlobReader<R> {
    /// Reads the header; `config` is required for encrypted blobs.
    pub fn new(mut reader: R, config: Option<&CryptConfig>) -> Result<Self, BlobError> {
        let mut head = [0u8; BLOB_HEADER_SIZE];
        read_header(&mut reader, &mut head, 0)?;
        let kind = BlobKind::from_magic(&head[..8]).ok_or(BlobError::WrongMagic)?;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&head[8..12]);
        let crc_reader = CrcReader {
            inner: reader,
            hasher: crc32fast::Hasher::new(),
            expected: u32::from_le_bytes(crc),
        };
        let zstd =
            |r| ZstdReader::new(r).map_err(|e| BlobError::DecompressionFailed(e.to_string()));
        let stage = match kind {
            BlobKind::Uncompressed => Stage::Plain(crc_reader),
            BlobKind::Compressed => Stage::Compressed(zstd(crc_reader)?),
            BlobKind::Encrypted | BlobKind::EncryptedCompressed => {
                let mut crc_reader = crc_reader;
                let mut iv = [0u8; IV_LEN];
                let mut tag = [0u8; TAG_LEN];
                read_header(&mut crc_reader.inner, &mut iv, BLOB_HEADER_SIZE)?;
                read_header(&mut crc_reader.inner, &mut tag, BLOB_HEADER_SIZE + IV_LEN)?;
                let config = config.ok_or(BlobError::MissingCryptConfig)?;
                let gcm = GcmReader::new(crc_reader, config, &iv, tag)?;
                if kind == BlobKind::Encrypted {
                    Stage::Encrypted(gcm)
                } else {
                    Stage::EncryptedCompressed(
                        ZstdReader::new(gcm)
                            .map_err(|e| BlobError::DecompressionFailed(e.to_string()))?,
                    )
                }
            }
        };
        Ok(Self { stage, kind })
    }

    /// The variant being read.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// Reads the rest of the blob, checks CRC (and tag) and returns the underlying reader.
    pub fn finish(mut self) -> Result<R, BlobError> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(unwrap_blob_error)?;
        let crc_reader = match self.stage {
            Stage::Plain(r) => r,
            Stage::Compressed(z) => z.finish().into_inner(),
            Stage::Encrypted(g) => g.inner,
            Stage::EncryptedCompressed(z) => z.finish().into_inner().inner,
        };
        // Everything has been consumed at this point, so this is the final CRC.
        crc_reader.check()?;
        Ok(crc_reader.inner)
    }
}

/// Reads header bytes, reporting a short input as a too small blob.
fn read_header<R: Read>(reader: &mut R, buf: &mut [u8], offset: usize) -> Result<(), BlobError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            if offset >= BLOB_HEADER_SIZE {
                Err(BlobError::EncryptedTooSmall { size: offset })
            } else {
                Err(BlobError::TooSmall { size: offset })
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// Recovers a [`BlobError`] that travelled through an `io::Error`.
fn unwrap_blob_error(err: std::io::Error) -> BlobError {
    if !err.get_ref().is_some_and(|inner| inner.is::<BlobError>()) {
        return BlobError::Io(err);
    }
    match err.into_inner().map(|inner| inner.downcast::<BlobError>()) {
        Some(Ok(blob_err)) => *blob_err,
        Some(Err(other)) => BlobError::Io(std::io::Error::other(other)),
        None => BlobError::Io(std::io::Error::other("unknown blob read error")),
    }
}

impl<R: Read> Read for DataBlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stage {
            Stage::Plain(r) => r.read(buf),
            Stage::Compressed(r) => r.read(buf),
            Stage::Encrypted(r) => r.read(buf),
            Stage::EncryptedCompressed(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_blob::DataBlob;

    fn test_data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 255) as u8).collect()
    }

    fn variants(config: &CryptConfig) -> Vec<(Option<&CryptConfig>, DataBlob)> {
        let data = test_data();
        let mut blobs = Vec::new();
        for key in [None, Some(config)] {
            for compress in [false, true] {
                blobs.push((key, DataBlob::encode(&data, key, compress).unwrap()));
            }
        }
        blobs
    }

    #[test]
    fn reads_all_variants() {
        let config = CryptConfig::new([1u8; 32]).unwrap();
        for (key, blob) in variants(&config) {
            let mut reader = DataBlobReader::new(blob.raw_data(), key).unwrap();
            assert_eq!(reader.kind(), blob.kind());
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, test_data());
            let rest = reader.finish().unwrap();
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn detects_corruption_at_the_end() {
        let config = CryptConfig::new([1u8; 32]).unwrap();
        for (key, blob) in variants(&config) {
            // Wrong CRC with an intact payload.
            let mut raw = blob.raw_data().to_vec();
            raw[8] ^= 1;
            let mut reader = DataBlobReader::new(raw.as_slice(), key).unwrap();
            let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::InvalidData,
                "{:?}",
                blob.kind()
            );
            let reader = DataBlobReader::new(raw.as_slice(), key).unwrap();
            assert!(matches!(reader.finish(), Err(BlobError::WrongCrc { .. })));

            // Damaged tag: CRC still fine, authentication fails.
            if blob.is_encrypted() {
                let mut raw = blob.raw_data().to_vec();
                raw[30] ^= 1;
                let reader = DataBlobReader::new(raw.as_slice(), key).unwrap();
                assert!(reader.finish().is_err());
            }
        }
    }

    #[test]
    fn header_errors() {
        let config = CryptConfig::new([1u8; 32]).unwrap();
        assert!(matches!(
            DataBlobReader::new(&[0u8; 5][..], None),
            Err(BlobError::TooSmall { .. })
        ));
        assert!(matches!(
            DataBlobReader::new(&[0u8; 20][..], None),
            Err(BlobError::WrongMagic)
        ));
        let blob = DataBlob::encode(&[0, 1], Some(&config), false).unwrap();
        assert!(matches!(
            DataBlobReader::new(blob.raw_data(), None),
            Err(BlobError::MissingCryptConfig)
        ));
        assert!(matches!(
            DataBlobReader::new(&blob.raw_data()[..30], Some(&config)),
            Err(BlobError::EncryptedTooSmall { .. })
        ));
        let raw = blob.raw_data();
        for len in 44..raw.len() {
            let reader = DataBlobReader::new(&raw[..len], Some(&config)).unwrap();
            assert!(reader.finish().is_err());
        }
    }
}
