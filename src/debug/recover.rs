//! `recover index`: rebuild an archive's data from its index and a chunk directory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use pbs_datastore::index::open_index;
use pbs_datastore::{CryptConfig, DataBlob};

/// Options of `recover index`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoverOptions {
    pub skip_crc: bool,
    pub ignore_missing_chunks: bool,
    pub ignore_corrupt_chunks: bool,
}

/// Default output: the index file name without its `.fidx`/`.didx` extension.
pub fn default_output_path(index: &Path) -> Result<PathBuf> {
    let stem = index
        .file_stem()
        .ok_or_else(|| anyhow::format_err!("'{}' has no file name", index.display()))?;
    Ok(PathBuf::from(stem))
}

/// Streams every chunk of the index, in order, into `output`; returns the bytes written.
pub fn recover_index(
    index_path: &Path,
    chunks_dir: &Path,
    output: &Path,
    crypt_config: Option<&CryptConfig>,
    options: RecoverOptions,
) -> Result<u64> {
    let index =
        open_index(index_path).with_context(|| format!("index '{}'", index_path.display()))?;
    let file =
        File::create(output).with_context(|| format!("unable to create '{}'", output.display()))?;
    let mut writer = BufWriter::with_capacity(4 * 1024 * 1024, file);
    let mut written = 0u64;
    for pos in 0..index.index_count() {
        let Some(info) = index.chunk_info(pos) else {
            bail!("index '{}': entry {pos} unreadable", index_path.display());
        };
        let digest_hex = hex::encode(info.digest);
        let len = (info.range.end - info.range.start) as usize;
        let path = chunks_dir.join(&digest_hex[..4]).join(&digest_hex);
        let data = match std::fs::read(&path) {
            Ok(raw) => decode_chunk(raw, &info.digest, crypt_config, options)
                .with_context(|| format!("chunk {digest_hex}"))?,
            Err(err)
                if err.kind() == std::io::ErrorKind::NotFound && options.ignore_missing_chunks =>
            {
                eprintln!("chunk {digest_hex} missing, writing {len} zero bytes instead");
                vec![0u8; len]
            }
            Err(err) => bail!(
                "chunk {digest_hex}: unable to read '{}' - {err}",
                path.display()
            ),
        };
        if data.len() != len {
            let msg = format!(
                "chunk {digest_hex}: size {} differs from index entry size {len}",
                data.len()
            );
            if !options.ignore_corrupt_chunks {
                bail!(msg);
            }
            eprintln!("{msg}, writing it anyway");
        }
        writer.write_all(&data)?;
        written += data.len() as u64;
    }
    writer.flush()?;
    Ok(written)
}

fn decode_chunk(
    raw: Vec<u8>,
    digest: &[u8; 32],
    crypt_config: Option<&CryptConfig>,
    options: RecoverOptions,
) -> Result<Vec<u8>> {
    let blob = DataBlob::from_raw(raw)?;
    if !options.skip_crc {
        if let Err(err) = blob.verify_crc() {
            if !options.ignore_corrupt_chunks {
                return Err(err.into());
            }
            eprintln!("{err}, using the chunk anyway");
        }
    }
    match blob.decode(crypt_config, Some(digest)) {
        Ok(data) => Ok(data),
        Err(err) if options.ignore_corrupt_chunks => {
            eprintln!("{err}, using the chunk as it decodes");
            Ok(blob.decode(crypt_config, None)?)
        }
        Err(err) => Err(err.into()),
    }
}
