//! Client side of the reader protocol: downloading the files and chunks of one snapshot.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{format_err, Context, Error};
use serde_json::{json, Value};

use pbs_api_types::{BackupDir, BackupNamespace};
use pbs_datastore::index::IndexFile;
use pbs_datastore::{
    BackupManifest, CryptConfig, DataBlobReader, DynamicIndexReader, FixedIndexReader,
};

use crate::backup_writer::decode_manifest;
use crate::h2::H2Client;
use crate::http_client::HttpClient;

/// Name of the reader protocol in the `Upgrade` header.
pub const READER_PROTOCOL: &str = "proxmox-backup-reader-protocol-v1";

/// An open reader session on one snapshot.
pub struct BackupReader {
    h2: H2Client,
    crypt_config: Option<Arc<CryptConfig>>,
}

/// The upgrade parameters naming a snapshot session (`ns` only when not the root).
pub(crate) fn session_params(
    datastore: &str,
    ns: &BackupNamespace,
    backup: &BackupDir,
    debug: bool,
) -> Value {
    let mut params = json!({
        "backup-type": backup.group.ty.as_str(),
        "backup-id": backup.group.id,
        "backup-time": backup.time,
        "store": datastore,
        "debug": debug,
    });
    if !ns.is_root() {
        params["ns"] = Value::String(ns.to_string());
    }
    params
}

impl BackupReader {
    /// Opens a reader session for snapshot `backup` in `datastore`/`ns`.
    pub async fn start(
        client: &HttpClient,
        crypt_config: Option<Arc<CryptConfig>>,
        datastore: &str,
        ns: &BackupNamespace,
        backup: &BackupDir,
        debug: bool,
    ) -> Result<Arc<Self>, Error> {
        let params = session_params(datastore, ns, backup, debug);
        let h2 = client
            .start_h2_connection("api2/json/reader", params, READER_PROTOCOL)
            .await?;
        Ok(Arc::new(Self::from_h2(h2, crypt_config)))
    }

    /// Wraps an already upgraded session.
    pub fn from_h2(h2: H2Client, crypt_config: Option<Arc<CryptConfig>>) -> Self {
        Self { h2, crypt_config }
    }

    /// The key used to decode blobs and chunks.
    pub fn crypt_config(&self) -> Option<&Arc<CryptConfig>> {
        self.crypt_config.as_ref()
    }

    /// Streams the raw file `file_name` of the snapshot into `output`.
    pub async fn download<W: Write + Send>(&self, file_name: &str, output: W) -> Result<W, Error> {
        self.h2
            .download("download", Some(json!({ "file-name": file_name })), output)
            .await
            .with_context(|| format!("download of '{file_name}' failed"))
    }

    /// Streams the encoded chunk `digest` into `output` (its index must have been downloaded
    /// in this session).
    pub async fn download_chunk<W: Write + Send>(
        &self,
        digest: &[u8; 32],
        output: W,
    ) -> Result<W, Error> {
        let hex = hex::encode(digest);
        self.h2
            .download("chunk", Some(json!({ "digest": hex })), output)
            .await
            .with_context(|| format!("download of chunk {hex} failed"))
    }

    /// The server's 1 MiB download test.
    pub async fn speedtest<W: Write + Send>(&self, output: W) -> Result<W, Error> {
        self.h2.download("speedtest", None, output).await
    }

    /// Downloads the manifest; returns it together with the raw blob bytes.
    pub async fn download_manifest(&self) -> Result<(BackupManifest, Vec<u8>), Error> {
        let raw = self.download("index.json.blob", Vec::new()).await?;
        decode_manifest(raw, self.crypt_config.as_deref())
    }

    /// Downloads `name` into an anonymous temporary file, checked against the manifest by
    /// SHA-256 of the raw bytes (blobs).
    async fn download_checked_blob(
        &self,
        manifest: &BackupManifest,
        name: &str,
    ) -> Result<File, Error> {
        let file = tempfile::tempfile().context("unable to create temporary file")?;
        let (mut file, csum, size) = self
            .download(name, HashingWriter::new(file))
            .await?
            .finish();
        manifest.verify_file(name, &csum, size)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Downloads blob `name`, checks it against the manifest and returns a decoding reader.
    pub async fn download_blob(
        &self,
        manifest: &BackupManifest,
        name: &str,
    ) -> Result<DataBlobReader<File>, Error> {
        let file = self.download_checked_blob(manifest, name).await?;
        DataBlobReader::new(file, self.crypt_config.as_deref())
            .map_err(|err| format_err!("blob '{name}': {err}"))
    }

    async fn download_index_file(&self, name: &str) -> Result<File, Error> {
        let file = tempfile::tempfile().context("unable to create temporary file")?;
        let mut file = self.download(name, file).await?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Downloads the `.didx` `name` and checks it against the manifest.
    pub async fn download_dynamic_index(
        &self,
        manifest: &BackupManifest,
        name: &str,
    ) -> Result<DynamicIndexReader, Error> {
        let file = self.download_index_file(name).await?;
        let index = DynamicIndexReader::new(file, Path::new(name))?;
        verify_index(&index, manifest, name)?;
        Ok(index)
    }

    /// Downloads the `.fidx` `name` and checks it against the manifest.
    pub async fn download_fixed_index(
        &self,
        manifest: &BackupManifest,
        name: &str,
    ) -> Result<FixedIndexReader, Error> {
        let file = self.download_index_file(name).await?;
        let index = FixedIndexReader::new(file, Path::new(name))?;
        verify_index(&index, manifest, name)?;
        Ok(index)
    }
}

fn verify_index(index: &dyn IndexFile, manifest: &BackupManifest, name: &str) -> Result<(), Error> {
    let (csum, size) = index.compute_csum();
    manifest.verify_file(name, &csum, size)
}

/// A writer computing SHA-256 and length of what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: openssl::sha::Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: openssl::sha::Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finish(), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a whole (small) reader into memory; used for decoded blobs.
pub fn read_all(mut reader: impl Read) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    reader.read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"hello ").unwrap();
        writer.write_all(b"world").unwrap();
        let (data, csum, size) = writer.finish();
        assert_eq!(data, b"hello world");
        assert_eq!(size, 11);
        assert_eq!(csum, openssl::sha::sha256(b"hello world"));
    }
}
