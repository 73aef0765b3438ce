//! `admin/datastore/{store}/catalog` and `…/pxar-file-download`: browsing a snapshot's
//! catalog and fetching single files out of its pxar archives.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response};
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use pbs_api_types::{Authid, BackupDir, BackupNamespace, CryptMode};
use pbs_config::datastore::Operation;
use pbs_config::privileges::{PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_READ};
use pbs_datastore::catalog::{ArchiveEntry, CatalogReader};
use pbs_datastore::index_reader::{IndexChunkReader, SharedIndexReader};
use pbs_datastore::{BackupManifest, DataStore, DynamicIndexReader, IndexFile};
use pbs_rest_server::router::{RawRequest, RouteError};
use pbs_rest_server::{ApiMethod, Body, HttpError, ObjectSchema, ParamSchema, Permission, Router};

use super::dir_download::{self, ChannelWriter, DirFormat, PieceSender};
use super::store_access::{
    bad_request, blocking, caller, check_access, check_group_access, id_param, ns_param,
    open_datastore, param_ns, param_snapshot, param_store, store_param, time_param, type_param,
    user_info,
};

/// File name of the catalog index in a snapshot.
const CATALOG_NAME: &str = "catalog.pcat1.didx";

/// An opened snapshot the caller may read, with its manifest.
struct ReadableSnapshot {
    store: DataStore,
    ns: BackupNamespace,
    dir: BackupDir,
    manifest: BackupManifest,
}

/// Checks Read | Backup+own and loads the manifest.
fn open_snapshot(auth_id: &Authid, params: &Value) -> Result<ReadableSnapshot, HttpError> {
    let store_name = param_store(params)?;
    let ns = param_ns(params)?;
    let dir = param_snapshot(params)?;
    let info = user_info()?;
    let access = check_access(
        &info,
        auth_id,
        &store_name,
        &ns,
        PRIV_DATASTORE_READ,
        PRIV_DATASTORE_BACKUP,
    )?;
    let store = open_datastore(&store_name, Operation::Read)?;
    check_group_access(&store, access, auth_id, &ns, &dir.group)?;
    let (manifest, _) = store.load_manifest(&ns, &dir).map_err(bad_request)?;
    Ok(ReadableSnapshot {
        store,
        ns,
        dir,
        manifest,
    })
}

impl ReadableSnapshot {
    /// Opens a dynamic index of the snapshot after checking it against the manifest; encrypted
    /// archives are refused since the server has no key.
    fn open_stream(&self, name: &str) -> Result<IndexChunkReader, HttpError> {
        let file_info = self.manifest.lookup_file_info(name).map_err(bad_request)?;
        if file_info.crypt_mode == CryptMode::Encrypt {
            return Err(HttpError::bad_request(format!(
                "cannot decode '{name}' of snapshot {} - file is encrypted",
                self.dir
            )));
        }
        let path = self
            .store
            .snapshot_path(&self.ns, &self.dir)
            .map_err(bad_request)?
            .join(name);
        let index = DynamicIndexReader::open(&path).map_err(bad_request)?;
        let (csum, size) = index.compute_csum();
        self.manifest
            .verify_file(name, &csum, size)
            .map_err(bad_request)?;
        Ok(IndexChunkReader::local(
            Arc::clone(self.store.chunk_store()),
            index,
        ))
    }
}

fn filepath_param(params: &Value) -> Result<&str, HttpError> {
    params["filepath"]
        .as_str()
        .ok_or_else(|| HttpError::bad_request("missing parameter 'filepath'"))
}

fn decode_filepath(text: &str) -> Result<Vec<u8>, HttpError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| HttpError::bad_request(format!("invalid base64 in filepath - {err}")))
}

fn list_catalog(auth_id: &Authid, params: &Value) -> Result<Vec<ArchiveEntry>, HttpError> {
    let snapshot = open_snapshot(auth_id, params)?;
    let filepath = filepath_param(params)?;
    let path = if filepath == "root" || filepath == "/" {
        b"/".to_vec()
    } else {
        decode_filepath(filepath)?
    };
    let reader = snapshot.open_stream(CATALOG_NAME)?;
    CatalogReader::new(reader)
        .list_dir_contents(&path)
        .map_err(bad_request)
}

/// `pxar::ReadAt` over a chunked stream.
struct ArchiveInput(SharedIndexReader);

impl pxar::ReadAt for ArchiveInput {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// Splits `/<archive>.didx/<path>` into the archive name and the path inside it.
fn split_archive_path(filepath: &[u8]) -> Result<(String, &[u8]), HttpError> {
    let trimmed = filepath.strip_prefix(b"/").unwrap_or(filepath);
    let (archive, inner) = match trimmed.iter().position(|b| *b == b'/') {
        Some(pos) => (&trimmed[..pos], &trimmed[pos..]),
        None => (trimmed, &b"/"[..]),
    };
    let archive = std::str::from_utf8(archive)
        .map_err(|_| HttpError::bad_request("archive name in filepath is not valid UTF-8"))?;
    if !(archive.ends_with(".pxar.didx") || archive.ends_with(".mpxar.didx")) {
        return Err(HttpError::bad_request(format!(
            "'{archive}' is not a pxar archive"
        )));
    }
    Ok((archive.to_string(), inner))
}

/// Looks up the requested file or directory, reports the outcome of the look-up through
/// `ready` and then streams the file's contents, or the directory as zip / `.tar.zst`, into
/// `pieces` (runs on a blocking thread).
fn stream_archive_entry(
    auth_id: &Authid,
    params: &Value,
    ready: tokio::sync::oneshot::Sender<Result<(), HttpError>>,
    pieces: PieceSender,
) {
    let setup = || -> Result<_, HttpError> {
        let snapshot = open_snapshot(auth_id, params)?;
        let filepath = decode_filepath(filepath_param(params)?)?;
        let (archive, inner) = split_archive_path(&filepath)?;
        let inner = inner.to_vec();
        let stream = snapshot.open_stream(&archive)?;
        let size = stream.size();
        // A split archive keeps file contents in the matching payload archive.
        let payload = match archive.strip_suffix(".mpxar.didx") {
            Some(stem) => {
                let payload = snapshot.open_stream(&format!("{stem}.ppxar.didx"))?;
                let payload_size = payload.size();
                Some((ArchiveInput(SharedIndexReader::new(payload)), payload_size))
            }
            None => None,
        };
        let accessor =
            pxar::Accessor::new(ArchiveInput(SharedIndexReader::new(stream)), size, payload)
                .map_err(|err| archive_error(&archive, err))?;
        let entry = accessor
            .lookup(Path::new(std::ffi::OsStr::from_bytes(&inner)))
            .map_err(|err| archive_error(&archive, err))?
            .ok_or_else(|| {
                HttpError::not_found(format!(
                    "path {:?} not found in archive '{archive}'",
                    String::from_utf8_lossy(&inner)
                ))
            })?;
        let entry = match entry.kind() {
            pxar::EntryKind::File { .. } | pxar::EntryKind::Directory => entry,
            pxar::EntryKind::Hardlink { .. } => accessor
                .follow_hardlink(&entry)
                .map_err(|err| archive_error(&archive, err))?,
            _ => {
                return Err(HttpError::bad_request(format!(
                    "{:?} is neither a file nor a directory",
                    String::from_utf8_lossy(&inner)
                )))
            }
        };
        Ok((accessor, entry, archive))
    };
    let (accessor, entry, archive) = match setup() {
        Ok(found) => found,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let format = if params["tar"].as_bool().unwrap_or(false) {
        DirFormat::TarZstd
    } else {
        DirFormat::Zip
    };
    let contents = match entry.kind() {
        pxar::EntryKind::Directory => None,
        _ => match accessor.open_contents(&entry) {
            Ok(contents) => Some(contents),
            Err(err) => {
                let _ = ready.send(Err(archive_error(&archive, err)));
                return;
            }
        },
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut out = ChannelWriter::new(pieces);
    let written = match contents {
        Some(contents) => {
            let size = contents.size();
            std::io::copy(&mut contents.reader(), &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|copied| {
                    if copied == size {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("file ends early at {copied} of {size}"))
                    }
                })
        }
        None => dir_download::write_directory(&accessor, &entry, format, &mut out).map(|_| ()),
    };
    match written.and_then(|()| out.flush().map_err(anyhow::Error::from)) {
        Ok(()) => {}
        Err(err) => out.fail(format!("archive '{archive}': {err:#}")),
    }
}

fn archive_error(archive: &str, err: pxar::Error) -> HttpError {
    HttpError::bad_request(format!("archive '{archive}': {err}"))
}

async fn pxar_file_download(req: RawRequest) -> Result<Response<Body>, HttpError> {
    let auth_id = caller(&req.env)?;
    let params = req.params;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (piece_tx, piece_rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        stream_archive_entry(&auth_id, &params, ready_tx, piece_tx)
    });
    ready_rx
        .await
        .map_err(|_| HttpError::internal("file download thread failed"))??;
    let stream = futures::stream::unfold(piece_rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

fn snapshot_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(store_param())
        .param(ns_param())
        .param(type_param())
        .param(id_param())
        .param(time_param())
        .param(
            ParamSchema::string("filepath")
                .max_length(4096)
                .description("Base64 encoded path (or 'root' for the catalog root)."),
        )
}

/// Adds the catalog routes below `admin/datastore/{store}`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    const BASE: &str = "/admin/datastore/{store}";
    router
        .route(
            &format!("{BASE}/catalog"),
            Method::GET,
            ApiMethod::new(|env, params: Value| async move {
                let auth_id = caller(&env)?;
                let entries = blocking(move || list_catalog(&auth_id, &params)).await?;
                serde_json::to_value(entries).map_err(|err| {
                    HttpError::internal(format!("unable to serialize result: {err}"))
                })
            })
            .permission(Permission::Anybody)
            .parameters(snapshot_schema()),
        )?
        .route(
            &format!("{BASE}/pxar-file-download"),
            Method::GET,
            ApiMethod::raw(pxar_file_download)
                .permission(Permission::Anybody)
                .parameters(
                    snapshot_schema().param(
                        ParamSchema::boolean("tar")
                            .optional()
                            .description("Download directories as .tar.zst instead of zip."),
                    ),
                ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_path_is_split_at_the_first_slash() {
        let (archive, inner) = split_archive_path(b"/root.pxar.didx/etc/hosts").unwrap();
        assert_eq!(archive, "root.pxar.didx");
        assert_eq!(inner, b"/etc/hosts");
        let (archive, inner) = split_archive_path(b"root.pxar.didx").unwrap();
        assert_eq!(archive, "root.pxar.didx");
        assert_eq!(inner, b"/");
        assert!(split_archive_path(b"/catalog.pcat1.didx/x").is_err());
        assert!(split_archive_path(b"/root.ppxar.didx/x").is_err());
        let (archive, _) = split_archive_path(b"/root.mpxar.didx/x").unwrap();
        assert_eq!(archive, "root.mpxar.didx");
    }
}
