//! The server side of `catalog dump` / `catalog shell`: reader session, manifest, catalog and
//! archive access through the chunk reader.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};
use serde_json::{json, Value};

use pbs_api_types::{BackupDir, BackupGroup, BackupNamespace};
use pbs_cli::ParsedArgs;
use pbs_client::backup_reader::BackupReader;
use pbs_client::catalog_shell::{stdin_line_source, Shell};
use pbs_client::http_client::HttpClient;
use pbs_client::remote_chunk_reader::RemoteChunkReader;
use pbs_client::restore::IndexReadAt;
use pbs_client::tools::{
    connect, extract_repository, get_encryption_key_password, record_repository,
};
use pbs_datastore::catalog::CatalogReader;
use pbs_datastore::index_reader::{BufferedIndexReader, SharedIndexReader};
use pbs_datastore::{BackupManifest, CryptConfig, KeyConfig};

use super::{dump_catalog, shell_archive_file_name, CATALOG_NAME};

/// The namespace of `--ns` (root if absent).
fn namespace(args: &ParsedArgs) -> Result<BackupNamespace> {
    match args.get("ns") {
        Some(ns) => Ok(ns.parse()?),
        None => Ok(BackupNamespace::root()),
    }
}

/// The data key from `--keyfile`, `--keyfd` or the default key file (if any).
fn crypt_config(args: &ParsedArgs) -> Result<Option<Arc<CryptConfig>>> {
    let keyfd = args.integer("keyfd")?;
    let text = match (args.get("keyfile"), keyfd) {
        (Some(_), Some(_)) => bail!("--keyfile and --keyfd are mutually exclusive"),
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("unable to read key file {path:?}"))?,
        (None, Some(fd)) => {
            let fd = RawFd::try_from(fd)
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| {
                    format_err!(
                        "parameter verification failed - 'keyfd': invalid file descriptor {fd}"
                    )
                })?;
            // SAFETY: the caller passed this descriptor for us to read; we own it from here.
            let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
            let mut text = String::new();
            file.read_to_string(&mut text)
                .context("unable to read key from file descriptor")?;
            text
        }
        (None, None) => match crate::key::find_default_encryption_key() {
            Some(path) => std::fs::read_to_string(&path)
                .with_context(|| format!("unable to read key file {path:?}"))?,
            None => return Ok(None),
        },
    };
    let config = KeyConfig::from_json(&text).context("unable to parse encryption key")?;
    let (key, _created, _fingerprint) = config.decrypt(&get_encryption_key_password)?;
    Ok(Some(Arc::new(CryptConfig::new(key)?)))
}

/// The snapshot named by `text`; with `allow_group` a group means its latest snapshot.
async fn resolve_snapshot(
    client: &HttpClient,
    store: &str,
    ns: &BackupNamespace,
    text: &str,
    allow_group: bool,
) -> Result<BackupDir> {
    if let Ok(snapshot) = text.parse::<BackupDir>() {
        return Ok(snapshot);
    }
    if !allow_group {
        return Ok(text.parse::<BackupDir>()?);
    }
    let group: BackupGroup = text.parse()?;
    let mut params = json!({
        "backup-type": group.ty.as_str(),
        "backup-id": group.id,
    });
    if !ns.is_root() {
        params["ns"] = Value::String(ns.to_string());
    }
    let response = client
        .get(
            &format!("api2/json/admin/datastore/{store}/snapshots"),
            Some(params),
        )
        .await?;
    let latest = response["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["backup-time"].as_i64())
        .max();
    match latest {
        Some(time) => Ok(BackupDir { group, time }),
        None => bail!("backup group {group} does not contain any snapshots."),
    }
}

/// Reader session plus verified manifest of a snapshot.
struct Session {
    reader: Arc<BackupReader>,
    manifest: BackupManifest,
    crypt_config: Option<Arc<CryptConfig>>,
}

async fn open_session(
    args: &ParsedArgs,
    client: &HttpClient,
    store: &str,
    allow_group: bool,
) -> Result<Session> {
    let ns = namespace(args)?;
    let snapshot =
        resolve_snapshot(client, store, &ns, args.required("snapshot")?, allow_group).await?;
    let crypt_config = crypt_config(args)?;
    let reader =
        BackupReader::start(client, crypt_config.clone(), store, &ns, &snapshot, false).await?;
    let (manifest, _raw) = reader.download_manifest().await?;
    manifest.check_fingerprint(crypt_config.as_deref())?;
    Ok(Session {
        reader,
        manifest,
        crypt_config,
    })
}

impl Session {
    /// A positioned reader over the decoded contents of dynamic index `name`.
    async fn index_reader(&self, name: &str) -> Result<BufferedIndexReader<RemoteChunkReader>> {
        let index = self
            .reader
            .download_dynamic_index(&self.manifest, name)
            .await?;
        let crypt_mode = self.manifest.lookup_file_info(name)?.chunk_crypt_mode();
        let chunks = RemoteChunkReader::new(
            Arc::clone(&self.reader),
            self.crypt_config.clone(),
            crypt_mode,
            HashMap::new(),
        );
        Ok(BufferedIndexReader::new(index, chunks))
    }

    /// The decoded catalog in an anonymous temporary file.
    async fn download_catalog(&self) -> Result<std::fs::File> {
        let mut reader = self.index_reader(CATALOG_NAME).await?;
        let mut file = tempfile::tempfile_in("/tmp").context("unable to create temporary file")?;
        tokio::task::block_in_place(|| std::io::copy(&mut reader, &mut file))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// `catalog dump <snapshot>`.
pub(super) async fn dump(args: &ParsedArgs) -> Result<()> {
    let repo = extract_repository(args)?;
    let client = connect(&repo)?;
    let session = open_session(args, &client, repo.store(), false).await?;
    let file = session
        .download_catalog()
        .await
        .map_err(|err| format_err!("unable to download catalog - {err:#}"))?;
    dump_catalog(file)?;
    record_repository(&repo);
    Ok(())
}

/// `catalog shell <snapshot> <archive-name>`.
pub(super) async fn shell(args: &ParsedArgs) -> Result<()> {
    let server_name = shell_archive_file_name(args.required("archive-name")?)?;
    let repo = extract_repository(args)?;
    let client = connect(&repo)?;
    let session = open_session(args, &client, repo.store(), true).await?;
    let archive = session.index_reader(&server_name).await?;
    let archive_size = archive.size();
    let archive = IndexReadAt(SharedIndexReader::new(archive));
    let catalog = session.download_catalog().await?;
    eprintln!("Starting interactive shell");
    tokio::task::block_in_place(|| -> Result<()> {
        let catalog = CatalogReader::new(catalog);
        let mut shell = Shell::for_archive(catalog, &server_name, archive, archive_size)?;
        let mut lines = stdin_line_source();
        shell.run(&mut *lines, &mut std::io::stdout(), &mut std::io::stderr())
    })?;
    record_repository(&repo);
    Ok(())
}
