//! The order of operations of one `backup` run.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{format_err, Context, Result};

use pbs_api_types::time::{epoch_now, strftime_local};
use pbs_api_types::{BackupDir, BackupGroup, CryptMode};
use pbs_cli::ParsedArgs;
use pbs_client::backup_writer::{BackupStats, BackupWriter, UploadOptions};
use pbs_client::pxar::{Flags, PxarCreateOptions};
use pbs_client::pxar_backup_stream::{self, SharedCatalog, StreamWriter};
use pbs_datastore::catalog::CatalogWriter;
use pbs_datastore::{BackupManifest, CryptConfig};

use super::options::{BackupOptions, ChangeDetectionMode, CATALOG_CHUNK_SIZE};
use super::source::{image_stream, Counted};
use super::spec::{parse_and_check_specs, split_names, ArchiveKind, CheckedSpec};
use super::stats::{summary_lines, UploadSummary};
use crate::crypto;
use crate::restore::archive::{ENCRYPTED_KEY_BLOB_NAME, MANIFEST_BLOB_NAME};

/// Server file name of the catalog.
pub const CATALOG_NAME: &str = "catalog.pcat1.didx";

type Catalog = CatalogWriter<StreamWriter>;

/// The catalog stream, started with the first pxar archive (legacy mode only).
struct CatalogUpload {
    writer: SharedCatalog<Catalog>,
    upload: tokio::task::JoinHandle<Result<BackupStats>>,
}

impl CatalogUpload {
    fn start(client: &Arc<BackupWriter>, options: UploadOptions) -> Result<Self> {
        let (sink, stream) = pxar_backup_stream::byte_channel();
        let writer = SharedCatalog(Arc::new(Mutex::new(CatalogWriter::new(sink)?)));
        let client = Arc::clone(client);
        let upload = tokio::spawn(async move {
            client
                .upload_stream(
                    CATALOG_NAME,
                    stream,
                    Some(CATALOG_CHUNK_SIZE),
                    options,
                    None,
                )
                .await
        });
        Ok(Self { writer, upload })
    }

    /// Writes the catalog's end and waits for its upload.
    async fn finish(self) -> Result<BackupStats> {
        let writer = self.writer;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let catalog = Arc::try_unwrap(writer.0)
                .map_err(|_| format_err!("catalog writer still in use"))?
                .into_inner()
                .map_err(|_| format_err!("catalog writer lock poisoned"))?;
            let mut sink = catalog.finish()?;
            sink.flush()?;
            Ok(())
        })
        .await
        .context("catalog writer task failed")??;
        self.upload.await.context("catalog upload task failed")?
    }
}

fn summary(stats: &BackupStats) -> UploadSummary {
    UploadSummary {
        size: stats.size,
        size_reused: stats.size_reused,
        size_compressed: stats.size_compressed,
        chunk_count: stats.chunk_count,
        chunk_reused: stats.chunk_reused,
        duration: stats.duration,
    }
}

fn print_summary(name: &str, stats: &BackupStats) {
    for line in summary_lines(name, &summary(stats)) {
        eprintln!("{line}");
    }
}

/// A progress line on stderr, only when it is a terminal.
struct Progress {
    bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Progress {
    fn start() -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDERR_FILENO) } == 1 {
            let (bytes, done) = (Arc::clone(&bytes), Arc::clone(&done));
            let start = Instant::now();
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let read = bytes.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\rprocessed {} in {:.0}s ({}/s)   ",
                        pbs_cli::format::format_bytes_binary(read),
                        secs,
                        pbs_cli::format::format_bytes_binary((read as f64 / secs) as u64)
                    );
                }
                eprint!("\r\x1b[K");
            });
        }
        Self { bytes, done }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn pxar_options(options: &BackupOptions) -> Result<PxarCreateOptions> {
    let patterns = pathpatterns::exclude_file::parse_cli_excludes(options.exclude.iter(), false)
        .map_err(|err| format_err!("{err}"))?;
    let device_set = match &options.include_dev {
        None => None,
        Some(paths) => Some(pbs_client::pxar::create::include_dev_set(paths)?),
    };
    Ok(PxarCreateOptions {
        device_set,
        patterns,
        entries_max: options.entries_max,
        skip_lost_and_found: options.skip_lost_and_found,
        skip_e2big_xattr: options.skip_e2big_xattr,
        verbose: options.verbose,
    })
}

/// The previous snapshot's manifest, when usable for chunk reuse.
async fn previous_manifest(
    writer: &BackupWriter,
    crypt_config: Option<&CryptConfig>,
) -> Option<Arc<BackupManifest>> {
    match writer.previous_backup_time().await {
        Ok(Some(time)) => {
            let when = strftime_local("%c", time).unwrap_or_else(|_| time.to_string());
            eprintln!("Downloading previous manifest ({when})");
        }
        Ok(None) => {
            eprintln!("No previous manifest available.");
            return None;
        }
        // An old server without the time query: try the download anyway.
        Err(_) => {}
    }
    match writer.download_previous_manifest().await {
        Ok(manifest) => match manifest.check_fingerprint(crypt_config) {
            Ok(()) => Some(Arc::new(manifest)),
            Err(err) => {
                eprintln!("Couldn't re-use previous manifest - {err}");
                None
            }
        },
        Err(err) => {
            eprintln!("Couldn't download previous manifest - {err}");
            None
        }
    }
}

/// Runs `backup`.
pub async fn run(args: &ParsedArgs) -> Result<()> {
    let specs = parse_and_check_specs(args.get_all("backupspec"))?;
    let options = BackupOptions::from_args(args)?;
    let crypto_params = crypto::crypto_parameters(args, true)?;
    let repo = pbs_client::tools::extract_repository(args)?;
    let start_time = Instant::now();

    let client = pbs_client::tools::connect_rate_limited(&repo, options.rate, options.burst)?;
    pbs_client::tools::record_repository(&repo);

    let group = BackupGroup::new(options.backup_type, options.backup_id.clone())?;
    let snapshot = BackupDir::new(group, options.backup_time)?;
    if options.ns.is_root() {
        eprintln!("Starting backup: {snapshot}");
    } else {
        eprintln!("Starting backup: [{}]:{snapshot}", options.ns);
    }
    eprintln!(
        "Client name: {}",
        super::options::short_nodename().unwrap_or_default()
    );
    eprintln!(
        "Starting backup protocol: {}",
        strftime_local("%c", epoch_now())?
    );

    let key = crypto::load_crypt_config(&crypto_params)?;
    let crypt_config = key.as_ref().map(|k| Arc::clone(&k.crypt_config));
    if let Some(key) = &key {
        eprintln!("Encryption key fingerprint: {}", key.fingerprint);
    }
    let rsa_encrypted_key = match (&key, &crypto_params.master) {
        (Some(key), Some(master)) => {
            eprintln!("Using {}", master.describe("master key"));
            let pem = crypto::load_key(master)?;
            Some(crypto::rsa_encrypted_key(&pem, key)?)
        }
        _ => None,
    };
    let crypt_mode = crypto_params.mode;
    let encrypt = crypt_mode == CryptMode::Encrypt;

    let writer = BackupWriter::start(
        &client,
        crypt_config.clone(),
        repo.store(),
        &options.ns,
        &snapshot,
        options.verbose,
        false,
    )
    .await?;

    let previous = previous_manifest(&writer, crypt_config.as_deref()).await;
    let upload_options = UploadOptions {
        previous_manifest: previous.clone(),
        compress: true,
        encrypt,
        fixed_size: None,
    };

    let mut manifest = BackupManifest::new(
        options.backup_type.as_str(),
        options.backup_id.clone(),
        options.backup_time,
    );
    let mut catalog: Option<CatalogUpload> = None;
    let progress = Progress::start();
    let repo_display = repo.to_string();
    let verb = if options.dry_run {
        "Would upload"
    } else {
        "Upload"
    };

    for CheckedSpec { spec, size } in &specs {
        let target = match (spec.kind, options.change_detection_mode) {
            (ArchiveKind::Pxar, ChangeDetectionMode::Data | ChangeDetectionMode::Metadata) => {
                split_names(spec.label()).0
            }
            _ => spec.server_file_name(),
        };
        eprintln!(
            "{verb} {} '{}' to '{repo_display}' as {target}",
            spec.kind.describe(),
            spec.path.display()
        );
        if options.dry_run {
            continue;
        }
        match spec.kind {
            ArchiveKind::Config | ArchiveKind::Log => {
                let stats = writer
                    .upload_blob_from_file(&spec.path, &target, upload_options.clone())
                    .await?;
                manifest.add_file(target.clone(), stats.size, stats.csum, crypt_mode)?;
            }
            ArchiveKind::Image => {
                let stream = image_stream(&spec.path, *size, Arc::clone(&progress.bytes))?;
                let image_options = UploadOptions {
                    fixed_size: Some(*size),
                    ..upload_options.clone()
                };
                let stats = writer
                    .upload_stream(
                        &target,
                        stream,
                        Some(options.chunk_size),
                        image_options,
                        None,
                    )
                    .await?;
                print_summary(&target, &stats);
                manifest.add_file(target.clone(), stats.size, stats.csum, crypt_mode)?;
            }
            ArchiveKind::Pxar => match options.change_detection_mode {
                ChangeDetectionMode::Legacy => {
                    if catalog.is_none() {
                        let catalog_options = UploadOptions {
                            previous_manifest: None,
                            ..upload_options.clone()
                        };
                        catalog = Some(CatalogUpload::start(&writer, catalog_options)?);
                    }
                    let shared = catalog.as_ref().map(|c| (c.writer.clone(), target.clone()));
                    let (stream, archiver) = pxar_backup_stream::pxar_stream(
                        &spec.path,
                        Flags::DEFAULT,
                        pxar_options(&options)?,
                        shared,
                    )?;
                    let stream = Counted::new(stream, Arc::clone(&progress.bytes));
                    let upload = writer.upload_stream(
                        &target,
                        stream,
                        Some(options.chunk_size),
                        upload_options.clone(),
                        None,
                    );
                    let (stats, archive_stats) = tokio::join!(upload, archiver.wait());
                    let stats = stats?;
                    archive_stats?;
                    print_summary(&target, &stats);
                    manifest.add_file(target.clone(), stats.size, stats.csum, crypt_mode)?;
                }
                ChangeDetectionMode::Data | ChangeDetectionMode::Metadata => {
                    let (meta_name, payload_name) = split_names(spec.label());
                    let reference_source = super::split::ReferenceSource {
                        client: &client,
                        store: repo.store(),
                        ns: &options.ns,
                        crypt_config: crypt_config.clone(),
                        crypt_mode,
                    };
                    let split = super::split::upload_split_archive(
                        &writer,
                        spec,
                        &options,
                        pxar_options(&options)?,
                        &upload_options,
                        previous.as_deref(),
                        &reference_source,
                        Arc::clone(&progress.bytes),
                    )
                    .await?;
                    if options.change_detection_mode == ChangeDetectionMode::Metadata {
                        eprintln!(
                            "{}",
                            super::split::files_read_line(&meta_name, &split.archive)
                        );
                    }
                    print_summary(&meta_name, &split.metadata);
                    print_summary(&payload_name, &split.payload);
                    manifest.add_file(
                        meta_name,
                        split.metadata.size,
                        split.metadata.csum,
                        crypt_mode,
                    )?;
                    manifest.add_file(
                        payload_name,
                        split.payload.size,
                        split.payload.csum,
                        crypt_mode,
                    )?;
                }
            },
        }
    }
    drop(progress);

    if options.dry_run {
        eprintln!("dry-run: no upload happened");
        return Ok(());
    }

    if let Some(catalog) = catalog {
        let stats = catalog.finish().await?;
        manifest.add_file(CATALOG_NAME, stats.size, stats.csum, crypt_mode)?;
    }

    if let Some(data) = rsa_encrypted_key {
        eprintln!("Upload RSA encoded key to '{repo_display}' as {ENCRYPTED_KEY_BLOB_NAME}");
        let raw_options = UploadOptions {
            compress: false,
            encrypt: false,
            ..UploadOptions::default()
        };
        let stats = writer
            .upload_blob_from_data(data, ENCRYPTED_KEY_BLOB_NAME, raw_options)
            .await?;
        manifest.add_file(ENCRYPTED_KEY_BLOB_NAME, stats.size, stats.csum, crypt_mode)?;
    }

    let manifest_text = manifest.to_string(crypt_config.as_deref())?;
    let manifest_options = UploadOptions {
        compress: true,
        encrypt: false,
        ..UploadOptions::default()
    };
    writer
        .upload_blob_from_data(
            manifest_text.into_bytes(),
            MANIFEST_BLOB_NAME,
            manifest_options,
        )
        .await?;
    writer.finish().await?;

    eprintln!("Duration: {:.2}s", start_time.elapsed().as_secs_f64());
    eprintln!("End Time: {}", strftime_local("%c", epoch_now())?);
    Ok(())
}
