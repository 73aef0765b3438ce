//! Split pxar archives (change-detection modes `data` and `metadata`): a metadata and a
//! payload index uploaded side by side. In `metadata` mode the previous snapshot's split
//! archive is opened over a reader session, and unchanged files' payload chunks are injected
//! into the new payload index instead of being read and uploaded again.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{format_err, Result};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace, CryptMode};
use pbs_client::backup_reader::BackupReader;
use pbs_client::backup_writer::{BackupStats, BackupWriter, UploadOptions};
use pbs_client::http_client::HttpClient;
use pbs_client::pxar::{
    create_archive_split_with_reference, previous_reference_files, raise_open_files_limit,
    ArchiveStats, Flags, PreviousArchiveRef, PxarCreateOptions,
};
use pbs_client::pxar_backup_stream;
use pbs_client::remote_chunk_reader::RemoteChunkReader;
use pbs_client::restore::IndexReadAt;
use pbs_datastore::index::IndexFile;
use pbs_datastore::index_reader::{BufferedIndexReader, SharedIndexReader};
use pbs_datastore::{BackupManifest, CryptConfig};

use super::options::{BackupOptions, ChangeDetectionMode};
use super::source::Counted;
use super::spec::{split_names, BackupSpec};

/// Upload statistics of both halves and what the archiver did.
pub struct SplitStats {
    pub metadata: BackupStats,
    pub payload: BackupStats,
    pub archive: ArchiveStats,
}

/// Everything needed to open the previous snapshot as a reference.
pub struct ReferenceSource<'a> {
    pub client: &'a HttpClient,
    pub store: &'a str,
    pub ns: &'a BackupNamespace,
    pub crypt_config: Option<Arc<CryptConfig>>,
    pub crypt_mode: CryptMode,
}

/// Opens the previous split archive of `spec` (if the previous manifest has a usable one).
async fn open_reference(
    writer: &BackupWriter,
    spec: &BackupSpec,
    options: &BackupOptions,
    previous: Option<&BackupManifest>,
    source: &ReferenceSource<'_>,
) -> Result<Option<PreviousArchiveRef>> {
    let (metadata_name, payload_name) =
        match previous_reference_files(previous, &spec.archive_name, source.crypt_mode) {
            Ok(names) => names,
            Err(reason) => {
                eprintln!("{reason}");
                return Ok(None);
            }
        };
    let Some(previous) = previous else {
        return Ok(None);
    };
    eprintln!(
        "Using previous index as metadata reference for '{}'",
        split_names(spec.label()).0
    );
    let group = BackupGroup::new(options.backup_type, options.backup_id.clone())?;
    let previous_dir = BackupDir::new(group, previous.backup_time)?;
    let reader = BackupReader::start(
        source.client,
        source.crypt_config.clone(),
        source.store,
        source.ns,
        &previous_dir,
        false,
    )
    .await?;
    let metadata_index = reader
        .download_dynamic_index(previous, &metadata_name)
        .await?;
    let metadata_mode = previous
        .lookup_file_info(&metadata_name)?
        .chunk_crypt_mode();
    let chunk_reader = RemoteChunkReader::new(
        Arc::clone(&reader),
        source.crypt_config.clone(),
        metadata_mode,
        HashMap::new(),
    );
    let metadata_size = metadata_index.index_bytes();
    let metadata = IndexReadAt(SharedIndexReader::new(BufferedIndexReader::new(
        metadata_index,
        chunk_reader,
    )));
    let payload_index = writer
        .download_previous_dynamic_index(&payload_name, previous, Arc::default())
        .await?;
    let cache_size = raise_open_files_limit(&mut |message| eprintln!("{message}"))?;
    Ok(Some(
        PreviousArchiveRef::new(metadata, metadata_size, payload_index)?
            .with_cache_size(cache_size),
    ))
}

/// How many files the archiver read (metadata mode: unchanged files are not read).
pub fn files_read_line(archive: &str, stats: &ArchiveStats) -> String {
    format!("{archive}: {} files read from disk", stats.files_read)
}

/// Archives `spec` as a split archive and uploads both streams concurrently.
#[allow(clippy::too_many_arguments)]
pub async fn upload_split_archive(
    writer: &Arc<BackupWriter>,
    spec: &BackupSpec,
    options: &BackupOptions,
    pxar_options: PxarCreateOptions,
    upload_options: &UploadOptions,
    previous: Option<&BackupManifest>,
    reference_source: &ReferenceSource<'_>,
    progress: Arc<AtomicU64>,
) -> Result<SplitStats> {
    let (meta_name, payload_name) = split_names(spec.label());
    let reference = if options.change_detection_mode == ChangeDetectionMode::Metadata {
        open_reference(writer, spec, options, previous, reference_source).await?
    } else {
        None
    };
    let (hints_tx, hints_rx) = std::sync::mpsc::channel();
    let source = spec.path.clone();
    let (meta, payload, archiver) = pxar_backup_stream::spawn_archiver(true, move |w, p| {
        let p = p.ok_or_else(|| format_err!("payload stream missing"))?;
        let mut messages = |message: String| eprintln!("{message}");
        create_archive_split_with_reference(
            source.as_path(),
            w,
            p,
            Flags::DEFAULT,
            pxar_options,
            reference,
            hints_tx,
            &mut messages,
        )
    })?;
    let payload = payload.ok_or_else(|| format_err!("payload stream missing"))?;
    let payload = Counted::new(payload, progress);
    let (meta_stats, payload_stats, archive_stats) = tokio::join!(
        writer.upload_stream(
            &meta_name,
            meta,
            Some(options.chunk_size),
            upload_options.clone(),
            None
        ),
        writer.upload_stream(
            &payload_name,
            payload,
            Some(options.chunk_size),
            upload_options.clone(),
            Some(hints_rx),
        ),
        archiver.wait(),
    );
    let archive = archive_stats?;
    let (metadata, payload) = (meta_stats?, payload_stats?);
    Ok(SplitStats {
        metadata,
        payload,
        archive,
    })
}
