//! The order of operations of `restore`.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, format_err, Context, Result};
use serde_json::{json, Value};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace};
use pbs_cli::ParsedArgs;
use pbs_client::backup_reader::BackupReader;
use pbs_client::http_client::HttpClient;
use pbs_client::remote_chunk_reader::RemoteChunkReader;
use pbs_client::restore::{restore_index_to_writer, IndexStreamReader, SharedIndex};
use pbs_datastore::BackupManifest;

use super::archive::{resolve_restore_source, RestoreSource, ENCRYPTED_KEY_BLOB_NAME};
use super::{extract_options, extract_settings, rate_limit};
use crate::backup::options::namespace_from_args;
use crate::crypto;

/// A snapshot, or a group standing for its latest snapshot.
pub async fn resolve_snapshot(
    client: &HttpClient,
    store: &str,
    ns: &BackupNamespace,
    text: &str,
) -> Result<BackupDir> {
    if text.matches('/').count() >= 2 {
        return text
            .parse::<BackupDir>()
            .map_err(|err| format_err!("{err}"));
    }
    let group: BackupGroup = text.parse().map_err(|err| format_err!("{err}"))?;
    let mut params = json!({
        "backup-type": group.ty.as_str(),
        "backup-id": group.id,
    });
    if !ns.is_root() {
        params["ns"] = Value::String(ns.to_string());
    }
    let reply = client
        .get(
            &format!("api2/json/admin/datastore/{store}/snapshots"),
            Some(params),
        )
        .await?;
    let latest = reply["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["backup-time"].as_i64())
        .max()
        .ok_or_else(|| format_err!("backup group {group} does not contain any snapshots."))?;
    Ok(BackupDir::new(group, latest)?)
}

/// Where the restored data goes.
enum Target {
    Stdout,
    Path(PathBuf),
}

impl Target {
    fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            Target::Stdout
        } else {
            Target::Path(PathBuf::from(arg))
        }
    }

    /// A new file (never overwriting), or stdout.
    fn create_new(&self) -> Result<Box<dyn Write + Send>> {
        match self {
            Target::Stdout => Ok(Box::new(
                OpenOptions::new()
                    .write(true)
                    .open("/dev/stdout")
                    .context("unable to open stdout")?,
            )),
            Target::Path(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|err| format_err!("unable to create target file {path:?} - {err}"))?;
                Ok(Box::new(file))
            }
        }
    }
}

fn write_manifest_raw(target: &Target, raw: &[u8]) -> Result<()> {
    match target {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(raw)?;
            out.flush()?;
        }
        Target::Path(path) => {
            pbs_tools::fs::replace_file(path, raw, pbs_tools::fs::ReplaceOptions::mode(0o644))
                .with_context(|| format!("unable to write {path:?}"))?;
        }
    }
    Ok(())
}

fn chunk_reader(
    reader: &Arc<BackupReader>,
    crypt_config: Option<Arc<pbs_datastore::CryptConfig>>,
    manifest: &BackupManifest,
    name: &str,
) -> Result<Arc<RemoteChunkReader>> {
    let mode = manifest.lookup_file_info(name)?.chunk_crypt_mode();
    Ok(Arc::new(RemoteChunkReader::new(
        Arc::clone(reader),
        crypt_config,
        mode,
        HashMap::new(),
    )))
}

/// Runs `restore`.
pub async fn run(args: &ParsedArgs) -> Result<()> {
    let repo = pbs_client::tools::extract_repository(args)?;
    let ns = namespace_from_args(args)?;
    let snapshot_arg = args.required("snapshot")?.to_string();
    let archive_name = args.required("archive-name")?.to_string();
    let target = Target::from_arg(args.required("target")?);
    let settings = extract_settings(args)?;
    let verbose = args.flag("verbose", false)?;
    let (rate, burst) = rate_limit(args)?;
    let crypto_params = crypto::crypto_parameters(args, false)?;

    let client = pbs_client::tools::connect_rate_limited(&repo, rate, burst)?;
    pbs_client::tools::record_repository(&repo);
    let snapshot = resolve_snapshot(&client, repo.store(), &ns, &snapshot_arg).await?;

    let key = crypto::load_crypt_config(&crypto_params)?;
    let crypt_config = key.as_ref().map(|k| Arc::clone(&k.crypt_config));

    let reader = BackupReader::start(
        &client,
        crypt_config.clone(),
        repo.store(),
        &ns,
        &snapshot,
        verbose,
    )
    .await?;
    let (manifest, raw_manifest) = reader.download_manifest().await?;

    let source = resolve_restore_source(&manifest, &archive_name)?;
    let is_key_blob = matches!(&source, RestoreSource::Blob(n) if n == ENCRYPTED_KEY_BLOB_NAME);
    if is_key_blob && crypt_config.is_none() {
        eprintln!("Restoring encrypted key blob without original key - skipping manifest fingerprint check!");
    } else {
        if manifest.signature.is_some() {
            if let Some(key) = &key {
                eprintln!("Fingerprint: {}", key.fingerprint);
            }
        }
        manifest.check_fingerprint(crypt_config.as_deref())?;
    }

    match source {
        RestoreSource::Manifest => write_manifest_raw(&target, &raw_manifest)?,
        RestoreSource::Blob(name) => {
            let mut blob = reader.download_blob(&manifest, &name).await?;
            let mut out = target.create_new()?;
            tokio::task::block_in_place(|| std::io::copy(&mut blob, &mut out))
                .map_err(|err| format_err!("unable to restore blob '{name}' - {err}"))?;
            out.flush()?;
        }
        RestoreSource::Image(name) => {
            let index = reader.download_fixed_index(&manifest, &name).await?;
            let source = chunk_reader(&reader, crypt_config.clone(), &manifest, &name)?;
            let out = target.create_new()?;
            let start = Instant::now();
            let index: SharedIndex = Arc::new(index);
            let (_, bytes) = restore_index_to_writer(source, index, out).await?;
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "restore image complete (bytes={bytes}, duration={secs:.2}s, speed={:.2}MB/s)",
                bytes as f64 / (1024.0 * 1024.0 * secs.max(f64::MIN_POSITIVE))
            );
        }
        RestoreSource::Pxar(name) => {
            let index = reader.download_dynamic_index(&manifest, &name).await?;
            let source = chunk_reader(&reader, crypt_config.clone(), &manifest, &name)?;
            let index: SharedIndex = Arc::new(index);
            match &target {
                Target::Stdout => {
                    let out = target.create_new()?;
                    restore_index_to_writer(source, index, out).await?;
                }
                Target::Path(dir) => {
                    let archive = IndexStreamReader::new(source, index)?;
                    let dir = dir.clone();
                    let prelude = args.get("prelude-target").map(PathBuf::from);
                    tokio::task::spawn_blocking(move || {
                        extract_into(archive, None, &dir, &settings, verbose, prelude.as_deref())
                    })
                    .await
                    .context("extraction task failed")??;
                }
            }
        }
        RestoreSource::SplitPxar { metadata, payload } => {
            let Target::Path(dir) = &target else {
                bail!("unable to pipe a split archive to stdout");
            };
            let meta_index = reader.download_dynamic_index(&manifest, &metadata).await?;
            let payload_index = reader.download_dynamic_index(&manifest, &payload).await?;
            let meta_source = chunk_reader(&reader, crypt_config.clone(), &manifest, &metadata)?;
            let payload_source = chunk_reader(&reader, crypt_config.clone(), &manifest, &payload)?;
            let meta_stream = IndexStreamReader::new(meta_source, Arc::new(meta_index))?;
            let payload_stream = IndexStreamReader::new(payload_source, Arc::new(payload_index))?;
            let dir = dir.clone();
            let prelude = args.get("prelude-target").map(PathBuf::from);
            tokio::task::spawn_blocking(move || {
                extract_into(
                    meta_stream,
                    Some(payload_stream),
                    &dir,
                    &settings,
                    verbose,
                    prelude.as_deref(),
                )
            })
            .await
            .context("extraction task failed")??;
        }
    }
    Ok(())
}

/// Creates `dir` (missing parents, new directories mode 0700) and extracts the archive.
fn extract_into(
    archive: IndexStreamReader,
    payload: Option<IndexStreamReader>,
    dir: &Path,
    settings: &super::ExtractSettings,
    verbose: bool,
    prelude_target: Option<&Path>,
) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("unable to create target directory {dir:?}"))?;
    let archive = std::io::BufReader::with_capacity(1024 * 1024, archive);
    let payload = payload.map(|p| std::io::BufReader::with_capacity(1024 * 1024, p));
    let decoder = pxar::Decoder::new(archive, payload)
        .map_err(|err| format_err!("error extracting archive - {err}"))?;
    if let Some(path) = prelude_target {
        match decoder.prelude() {
            Some(prelude) => std::fs::write(path, prelude)
                .with_context(|| format!("unable to write prelude to {path:?}"))?,
            None => eprintln!("no prelude found in archive"),
        }
    }
    pbs_client::pxar::extract_archive(
        decoder,
        dir,
        &[],
        settings.flags,
        extract_options(settings, verbose),
    )
    .map_err(|err| format_err!("error extracting archive - {err:#}"))
}
