//! Streaming blob writer: writes a zeroed header, streams the payload through zstd and/or
//! AES-256-GCM and rewrites the header on `finish`.
//!
//! Unlike [`DataBlob::encode`](crate::data_blob::DataBlob::encode) it always uses the requested
//! variant; a compressed writer never falls back to an uncompressed blob.

use std::io::{Seek, SeekFrom, Write};

use openssl::symm::{Cipher, Crypter, Mode};

use crate::crypt_config::{CryptConfig, CryptError, IV_LEN, TAG_LEN};
use crate::data_blob::{BlobError, BlobKind, MAX_BLOB_SIZE};

/// Passes bytes through, computing their CRC32 and counting them.
struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    count: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts everything written with AES-256-GCM (16-byte IV, empty AAD).
struct GcmWriter<W> {
    inner: W,
    crypter: Crypter,
    buffer: Vec<u8>,
}

impl<W: Write> GcmWriter<W> {
    fn new(inner: W, config: &CryptConfig, iv: &[u8; IV_LEN]) -> Result<Self, BlobError> {
        let mut crypter = Crypter::new(
            Cipher::aes_256_gcm(),
            Mode::Encrypt,
            config.enc_key(),
            Some(iv),
        )
        .map_err(CryptError::from)?;
        crypter.aad_update(b"").map_err(CryptError::from)?;
        Ok(Self {
            inner,
            crypter,
            buffer: Vec::new(),
        })
    }

    fn finish(mut self) -> Result<(W, [u8; TAG_LEN]), BlobError> {
        let mut rest = [0u8; 16];
        let n = self.crypter.finalize(&mut rest).map_err(CryptError::from)?;
        self.inner.write_all(&rest[..n])?;
        let mut tag = [0u8; TAG_LEN];
        self.crypter.get_tag(&mut tag).map_err(CryptError::from)?;
        Ok((self.inner, tag))
    }
}

impl<W: Write> Write for GcmWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // Bounded buffer; the cipher must not see bytes that are not written out afterwards.
        let data = &data[..data.len().min(256 * 1024)];
        self.buffer.resize(data.len() + 16, 0);
        let n = self
            .crypter
            .update(data, &mut self.buffer)
            .map_err(std::io::Error::other)?;
        self.inner.write_all(&self.buffer[..n])?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type ZstdWriter<W> = zstd::stream::write::Encoder<'static, W>;

enum Stage<W: Write> {
    Plain(CrcWriter<W>),
    Compressed(ZstdWriter<CrcWriter<W>>),
    Encrypted(GcmWriter<CrcWriter<W>>),
    EncryptedCompressed(ZstdWriter<GcmWriter<CrcWriter<W>>>),
}

/// Writes a data blob in a streaming fashion.
pub struct DataBlobWriter<W: Write + Seek> {
    stage: Stage<W>,
    kind: BlobKind,
    start: u64,
    iv: [u8; IV_LEN],
    input_size: usize,
}

impl<W: Write + Seek> DataBlobWriter<W> {
    /// Starts a blob of the variant given by `config` and `compress` at the current position.
    pub fn new(
        mut writer: W,
        config: Option<&CryptConfig>,
        compress: bool,
    ) -> Result<Self, BlobError> {
        let kind = BlobKind::for_flags(config.is_some(), compress);
        let start = writer.stream_position()?;
        writer.write_all(&vec![0u8; kind.header_size()])?;
        let crc_writer = CrcWriter {
            inner: writer,
            hasher: crc32fast::Hasher::new(),
            count: 0,
        };
        let mut iv = [0u8; IV_LEN];
        let zstd = |w| ZstdWriter::new(w, 1).map_err(BlobError::CompressionFailed);
        let stage = match config {
            None if compress => Stage::Compressed(zstd(crc_writer)?),
            None => Stage::Plain(crc_writer),
            Some(config) => {
                openssl::rand::rand_bytes(&mut iv).map_err(CryptError::from)?;
                let gcm = GcmWriter::new(crc_writer, config, &iv)?;
                if compress {
                    Stage::EncryptedCompressed(
                        ZstdWriter::new(gcm, 1).map_err(BlobError::CompressionFailed)?,
                    )
                } else {
                    Stage::Encrypted(gcm)
                }
            }
        };
        Ok(Self {
            stage,
            kind,
            start,
            iv,
            input_size: 0,
        })
    }

    /// Starts an uncompressed, unencrypted blob.
    pub fn new_uncompressed(writer: W) -> Result<Self, BlobError> {
        Self::new(writer, None, false)
    }

    /// Starts a zstd compressed, unencrypted blob.
    pub fn new_compressed(writer: W) -> Result<Self, BlobError> {
        Self::new(writer, None, true)
    }

    /// Starts an encrypted, uncompressed blob.
    pub fn new_encrypted(writer: W, config: &CryptConfig) -> Result<Self, BlobError> {
        Self::new(writer, Some(config), false)
    }

    /// Starts a compressed-then-encrypted blob.
    pub fn new_encrypted_compressed(writer: W, config: &CryptConfig) -> Result<Self, BlobError> {
        Self::new(writer, Some(config), true)
    }

    /// The variant being written.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// Finishes the payload, writes the final header and returns the writer positioned after
    /// the blob.
    pub fn finish(self) -> Result<W, BlobError> {
        let (crc_writer, tag) = match self.stage {
            Stage::Plain(w) => (w, None),
            Stage::Compressed(z) => (z.finish().map_err(BlobError::CompressionFailed)?, None),
            Stage::Encrypted(g) => {
                let (w, tag) = g.finish()?;
                (w, Some(tag))
            }
            Stage::EncryptedCompressed(z) => {
                let g = z.finish().map_err(BlobError::CompressionFailed)?;
                let (w, tag) = g.finish()?;
                (w, Some(tag))
            }
        };
        let crc = crc_writer.hasher.finalize();
        let payload_size = crc_writer.count;
        let mut writer = crc_writer.inner;
        let mut header = Vec::with_capacity(self.kind.header_size());
        header.extend_from_slice(self.kind.magic());
        header.extend_from_slice(&crc.to_le_bytes());
        if let Some(tag) = tag {
            header.extend_from_slice(&self.iv);
            header.extend_from_slice(&tag);
        }
        writer.flush()?;
        writer.seek(SeekFrom::Start(self.start))?;
        writer.write_all(&header)?;
        writer.seek(SeekFrom::Start(
            self.start + header.len() as u64 + payload_size,
        ))?;
        writer.flush()?;
        Ok(writer)
    }
}

impl<W: Write + Seek> Write for DataBlobWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.input_size + data.len() > MAX_BLOB_SIZE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                BlobError::TooLarge {
                    size: self.input_size + data.len(),
                },
            ));
        }
        let n = match &mut self.stage {
            Stage::Plain(w) => w.write(data)?,
            Stage::Compressed(w) => w.write(data)?,
            Stage::Encrypted(w) => w.write(data)?,
            Stage::EncryptedCompressed(w) => w.write(data)?,
        };
        self.input_size += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.stage {
            Stage::Plain(w) => w.flush(),
            Stage::Compressed(w) => w.flush(),
            Stage::Encrypted(w) => w.flush(),
            Stage::EncryptedCompressed(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::data_blob::DataBlob;
    use crate::file_formats::*;

    fn test_data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 255) as u8).collect()
    }

    #[test]
    fn all_variants_round_trip_through_data_blob() {
        let data = test_data();
        let config = CryptConfig::new([1u8; 32]).unwrap();
        let plain_digest = openssl::sha::sha256(&data);
        let enc_digest = config.compute_digest(&data);
        let cases = [
            (None, false, UNCOMPRESSED_BLOB_MAGIC_1_0, plain_digest),
            (None, true, COMPRESSED_BLOB_MAGIC_1_0, plain_digest),
            (Some(&config), false, ENCRYPTED_BLOB_MAGIC_1_0, enc_digest),
            (Some(&config), true, ENCR_COMPR_BLOB_MAGIC_1_0, enc_digest),
        ];
        for (key, compress, magic, digest) in cases {
            let mut writer = DataBlobWriter::new(Cursor::new(Vec::new()), key, compress).unwrap();
            // Uneven pieces exercise the buffering.
            for piece in data.chunks(7777) {
                writer.write_all(piece).unwrap();
            }
            let cursor = writer.finish().unwrap();
            assert_eq!(cursor.position(), cursor.get_ref().len() as u64);
            let raw = cursor.into_inner();
            let blob = DataBlob::load_from_reader(&mut raw.as_slice()).unwrap();
            assert_eq!(blob.magic(), &magic);
            assert_eq!(blob.decode(key, Some(&digest)).unwrap(), data);
        }
    }

    #[test]
    fn compressed_writer_never_falls_back() {
        let mut writer = DataBlobWriter::new_compressed(Cursor::new(Vec::new())).unwrap();
        writer.write_all(&[0, 1]).unwrap();
        let raw = writer.finish().unwrap().into_inner();
        let blob = DataBlob::from_raw(raw).unwrap();
        blob.verify_crc().unwrap();
        assert_eq!(blob.magic(), &COMPRESSED_BLOB_MAGIC_1_0);
        assert_eq!(blob.decode(None, None).unwrap(), [0, 1]);
    }

    #[test]
    fn blob_written_after_existing_data() {
        let mut cursor = Cursor::new(b"prefix".to_vec());
        cursor.seek(SeekFrom::End(0)).unwrap();
        let mut writer = DataBlobWriter::new_uncompressed(cursor).unwrap();
        writer.write_all(&[0, 1]).unwrap();
        let raw = writer.finish().unwrap().into_inner();
        assert_eq!(&raw[..6], b"prefix");
        assert_eq!(hex::encode(&raw[6..]), "42ab3807be8370a16922de360001");
    }
}
