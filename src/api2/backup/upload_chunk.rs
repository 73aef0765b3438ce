//! `POST dynamic_chunk` / `POST fixed_chunk`: receive, verify and store one chunk.

use std::sync::Arc;

use anyhow::{bail, format_err, Error};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use pbs_datastore::data_blob::BlobError;
use pbs_datastore::DataBlob;

use super::environment::BackupEnvironment;

/// Which writer kind a chunk upload is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// `dynamic_chunk`
    Dynamic,
    /// `fixed_chunk`
    Fixed,
}

/// Parameters of a chunk upload.
#[derive(Clone, Copy, Debug)]
pub struct ChunkUpload {
    /// Writer the chunk is accounted to.
    pub wid: usize,
    /// Digest announced by the client.
    pub digest: [u8; 32],
    /// Plain chunk size announced by the client.
    pub size: u32,
    /// Exact body length.
    pub encoded_size: usize,
}

/// Reads exactly `encoded_size` bytes of body.
pub async fn read_chunk_body(body: Incoming, encoded_size: usize) -> Result<Vec<u8>, Error> {
    let mut body = std::pin::pin!(body);
    // A plain Vec: converting a BytesMut back into a Vec moves the whole buffer onto itself.
    let mut data = Vec::with_capacity(encoded_size);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| format_err!("reading chunk body failed - {err}"))?;
        if let Ok(bytes) = frame.into_data() {
            if data.len() + bytes.len() > encoded_size {
                bail!("uploaded chunk is larger than announced.");
            }
            data.extend_from_slice(&bytes);
        }
    }
    if data.len() != encoded_size {
        bail!("uploaded chunk has unexpected size.");
    }
    Ok(data)
}

/// Checks an uploaded chunk and inserts it into the chunk store (with a recomputed CRC).
/// Returns `(is_duplicate, stored size)`.
pub fn verify_and_store(
    env: &BackupEnvironment,
    upload: &ChunkUpload,
    raw: Vec<u8>,
) -> Result<(bool, u64), Error> {
    let mut blob = DataBlob::from_raw(raw).map_err(|err| match err {
        BlobError::TooSmall { .. } | BlobError::EncryptedTooSmall { .. } => {
            format_err!("blob too small")
        }
        other => format_err!("{other}"),
    })?;
    blob.verify_unencrypted(upload.size as usize, &upload.digest)
        .map_err(|err| match err {
            BlobError::WrongLength { actual, expected } => {
                format_err!("detected chunk with wrong length ({expected} != {actual})")
            }
            other => format_err!("{other}"),
        })?;
    let crc = blob.compute_crc();
    blob.set_crc(crc);
    env.datastore
        .chunk_store()
        .insert_chunk(blob.raw_data(), &upload.digest)
}

/// The whole upload: body, verification on a blocking thread, registration with the writer.
pub async fn upload_chunk(
    env: Arc<BackupEnvironment>,
    kind: ChunkKind,
    upload: ChunkUpload,
    body: Incoming,
) -> Result<Value, Error> {
    let raw = read_chunk_body(body, upload.encoded_size).await?;
    let task_env = Arc::clone(&env);
    // Storing and registering both touch disk or wait for the session lock: off the runtime.
    tokio::task::spawn_blocking(move || {
        let (is_duplicate, compressed_size) = verify_and_store(&task_env, &upload, raw)?;
        match kind {
            ChunkKind::Dynamic => task_env.register_dynamic_chunk(
                upload.wid,
                upload.digest,
                upload.size,
                compressed_size,
                is_duplicate,
            ),
            ChunkKind::Fixed => task_env.register_fixed_chunk(
                upload.wid,
                upload.digest,
                upload.size,
                compressed_size,
                is_duplicate,
            ),
        }
    })
    .await
    .map_err(|err| format_err!("chunk upload task failed - {err}"))??;
    let digest = hex::encode(upload.digest);
    env.debug(format!(
        "upload_chunk done: {} bytes, {digest}",
        upload.size
    ));
    Ok(Value::String(digest))
}
