//! Split pxar archives (change-detection modes `data` and `metadata`): a metadata and a
//! payload index uploaded side by side.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Result;

use pbs_api_types::CryptMode;
use pbs_client::backup_writer::{BackupStats, BackupWriter, UploadOptions};
use pbs_client::pxar::{Flags, PxarCreateOptions};
use pbs_client::pxar_backup_stream;
use pbs_datastore::BackupManifest;

use super::options::BackupOptions;
use super::source::Counted;
use super::spec::{split_names, BackupSpec};

/// Upload statistics of both halves.
pub struct SplitStats {
    pub metadata: BackupStats,
    pub payload: BackupStats,
}

/// Archives `spec` as a split archive and uploads both streams concurrently.
#[allow(clippy::too_many_arguments)]
pub async fn upload_split_archive(
    writer: &Arc<BackupWriter>,
    spec: &BackupSpec,
    options: &BackupOptions,
    pxar_options: PxarCreateOptions,
    upload_options: &UploadOptions,
    _previous: Option<&BackupManifest>,
    _crypt_mode: CryptMode,
    progress: Arc<AtomicU64>,
) -> Result<SplitStats> {
    let (meta_name, payload_name) = split_names(spec.label());
    let (meta, payload, archiver) =
        pxar_backup_stream::pxar_split_stream(&spec.path, Flags::DEFAULT, pxar_options)?;
    let payload = Counted::new(payload, progress);
    let (meta_stats, payload_stats, archive_stats) = tokio::join!(
        writer.upload_stream(&meta_name, meta, Some(options.chunk_size), upload_options.clone(), None),
        writer.upload_stream(&payload_name, payload, Some(options.chunk_size), upload_options.clone(), None),
        archiver.wait(),
    );
    let (metadata, payload) = (meta_stats?, payload_stats?);
    archive_stats?;
    Ok(SplitStats { metadata, payload })
}
