//! The HTTP/2 phase of a reader session: `download`, `chunk` and `speedtest` on one snapshot.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioExecutor;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use pbs_api_types::{BackupDir, BackupNamespace};
use pbs_datastore::{open_index, DataStore};
use pbs_rest_server::router::full_body;
use pbs_rest_server::{Body, HttpError, ObjectSchema, ParamSchema, StringFormat};
use pbs_tasks::WorkerTask;

/// Server-side flow control windows (stream and connection).
const WINDOW_SIZE: u32 = 32 * 1024 * 1024;
/// Largest DATA frame the server accepts.
const MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;
/// Size of the `speedtest` answer.
const SPEEDTEST_SIZE: usize = 1024 * 1024;
/// Unauthorized chunk requests are answered after this delay.
const UNAUTHORIZED_DELAY: Duration = Duration::from_secs(3);
/// Read size when streaming files.
const STREAM_BUFFER_SIZE: usize = 256 * 1024;

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
const OCTET_STREAM: &str = "application/octet-stream";

/// State of one reader session.
pub struct ReaderSession {
    store: Arc<DataStore>,
    ns: BackupNamespace,
    snapshot: BackupDir,
    path: PathBuf,
    worker: Arc<WorkerTask>,
    debug: bool,
    /// Digests the client may download (from indexes downloaded in this session).
    allowed_chunks: Mutex<HashSet<[u8; 32]>>,
}

impl ReaderSession {
    /// A session on the snapshot at `path`.
    pub fn new(
        store: Arc<DataStore>,
        ns: BackupNamespace,
        snapshot: BackupDir,
        path: PathBuf,
        worker: Arc<WorkerTask>,
        debug: bool,
    ) -> Self {
        Self {
            store,
            ns,
            snapshot,
            path,
            worker,
            debug,
            allowed_chunks: Mutex::new(HashSet::new()),
        }
    }

    /// The snapshot served.
    pub fn snapshot(&self) -> (&BackupNamespace, &BackupDir) {
        (&self.ns, &self.snapshot)
    }

    fn allow_chunks(&self, digests: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut set) = self.allowed_chunks.lock() {
            set.extend(digests);
        }
    }

    fn is_allowed(&self, digest: &[u8; 32]) -> bool {
        self.allowed_chunks
            .lock()
            .map(|set| set.contains(digest))
            .unwrap_or(false)
    }
}

/// Serves HTTP/2 on `io` until the client closes the connection.
pub async fn serve<I>(io: I, session: Arc<ReaderSession>) -> Result<(), anyhow::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let session = Arc::clone(&session);
        async move { Ok::<_, Infallible>(handle(session, req).await) }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(WINDOW_SIZE)
        .initial_connection_window_size(WINDOW_SIZE)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(None)
        .serve_connection(io, service)
        .await
        .map_err(|err| anyhow::format_err!("reader connection failed - {err}"))
}

fn error_response(err: &HttpError) -> Response<Body> {
    let mut response = Response::new(full_body(err.message.clone()));
    *response.status_mut() = err.code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

fn octet_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    response
}

/// Splits the request path into components; `.`-prefixed components are refused.
fn path_components(path: &str) -> Result<Vec<String>, HttpError> {
    let mut out = Vec::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        let decoded = percent_decode_str(component)
            .decode_utf8_lossy()
            .into_owned();
        if decoded.starts_with('.') {
            return Err(HttpError::bad_request("Path contains illegal components."));
        }
        out.push(decoded);
    }
    Ok(out)
}

fn query_params(req: &Request<Incoming>, schema: &ObjectSchema) -> Result<Value, HttpError> {
    let query = req.uri().query().unwrap_or_default();
    let pairs = pbs_rest_server::params::parse_form(query.as_bytes());
    Ok(schema.parse_strings(&pairs)?)
}

async fn handle(session: Arc<ReaderSession>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if session.debug {
        session.worker.log_message(format!("{method} {path}"));
    }
    let result = route(&session, req).await;
    match result {
        Ok(response) => response,
        Err(err) => {
            session.worker.log_message(format!(
                "{method} {path}: {} {}: {}",
                err.code.as_u16(),
                err.code.canonical_reason().unwrap_or_default(),
                err.message
            ));
            if err.code == StatusCode::UNAUTHORIZED {
                tokio::time::sleep(UNAUTHORIZED_DELAY).await;
            }
            error_response(&err)
        }
    }
}

async fn route(
    session: &Arc<ReaderSession>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let components = path_components(req.uri().path())?;
    let not_found = || HttpError::not_found(format!("Path '/{}' not found.", components.join("/")));
    if req.method() != Method::GET {
        return Err(not_found());
    }
    match components
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            let data = json!({"data": [
                {"subdir": "chunk"}, {"subdir": "download"}, {"subdir": "speedtest"}
            ]});
            let mut response = Response::new(full_body(data.to_string()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            Ok(response)
        }
        ["download"] => download(session, &req).await,
        ["chunk"] => chunk(session, &req).await,
        ["speedtest"] => {
            query_params(&req, &ObjectSchema::new())?;
            Ok(octet_response(full_body(vec![b'A'; SPEEDTEST_SIZE])))
        }
        _ => Err(not_found()),
    }
}

fn verify_file_name(text: &str) -> Result<(), String> {
    pbs_api_types::names::check_archive_name(text).map_err(|err| err.to_string())
}

fn is_digest(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn download(
    session: &Arc<ReaderSession>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let schema = ObjectSchema::new()
        .param(ParamSchema::string("file-name").format(StringFormat::Verify(verify_file_name)));
    let params = query_params(req, &schema)?;
    let name = params["file-name"].as_str().unwrap_or_default().to_string();
    let path = session.path.join(&name);

    let extension = name.rsplit_once('.').map(|(_, ext)| ext);
    match extension {
        Some("didx") | Some("fidx") => {
            let index_path = path.clone();
            let worker = Arc::clone(&session.worker);
            let digests = tokio::task::spawn_blocking(move || {
                let kind = if index_path.extension().is_some_and(|e| e == "fidx") {
                    "fixed"
                } else {
                    "dynamic"
                };
                let index = open_index(&index_path).map_err(|err| {
                    HttpError::bad_request(format!(
                        "Unable to open {kind} index {index_path:?} - {err:#}"
                    ))
                })?;
                let digests: Vec<[u8; 32]> = (0..index.index_count())
                    .filter_map(|pos| index.index_digest(pos).copied())
                    .collect();
                Ok::<_, HttpError>(digests)
            })
            .await
            .map_err(|err| HttpError::internal(err.to_string()))??;
            worker.log_message(format!("register chunks in '{name}' as downloadable."));
            session.allow_chunks(digests);
        }
        Some("blob") => {}
        _ => {
            return Err(HttpError::bad_request(format!(
                "unknown archive type: {name:?}"
            )))
        }
    }

    let file = tokio::fs::File::open(&path).await.map_err(|err| {
        let text = if err.kind() == std::io::ErrorKind::NotFound {
            "not found".to_string()
        } else {
            err.to_string()
        };
        HttpError::not_found(format!("open file {path:?} failed - {text}"))
    })?;
    if session.debug {
        session.worker.log_message(format!("download {:?}", path));
    }
    Ok(octet_response(file_body(file)))
}

/// Streams a file as response body.
fn file_body(file: tokio::fs::File) -> Body {
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; STREAM_BUFFER_SIZE];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buffer.truncate(n);
        Ok(Some((Frame::data(Bytes::from(buffer)), file)))
    });
    StreamBody::new(stream.map_err(|err| Box::new(err) as pbs_rest_server::BoxError)).boxed()
}

async fn chunk(
    session: &Arc<ReaderSession>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let schema = ObjectSchema::new()
        .param(ParamSchema::string("digest").format(StringFormat::Pattern(is_digest)));
    let params = query_params(req, &schema)?;
    let text = params["digest"].as_str().unwrap_or_default().to_string();
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&text, &mut digest)
        .map_err(|err| HttpError::bad_request(format!("invalid digest {text:?} - {err}")))?;
    if !session.is_allowed(&digest) {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            format!("download chunk {text} not allowed"),
        ));
    }
    let path = session.store.chunk_store().chunk_path(&digest);
    if session.debug {
        session
            .worker
            .log_message(format!("download chunk {path:?}"));
    }
    let data = tokio::task::spawn_blocking(move || {
        std::fs::read(&path)
            .map_err(|err| HttpError::bad_request(format!("reading file {path:?} failed: {err}")))
    })
    .await
    .map_err(|err| HttpError::internal(err.to_string()))??;
    Ok(octet_response(full_body(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_drop_empty_and_refuse_dot_components() {
        assert_eq!(path_components("//download").unwrap(), vec!["download"]);
        assert_eq!(path_components("chunk").unwrap(), vec!["chunk"]);
        assert!(path_components("/").unwrap().is_empty());
        assert_eq!(
            path_components("/a/.hidden").unwrap_err().message,
            "Path contains illegal components."
        );
    }

    #[test]
    fn digest_must_be_lower_case_hex() {
        assert!(is_digest(&"ab".repeat(32)));
        assert!(!is_digest(&"AB".repeat(32)));
        assert!(!is_digest(&"ab".repeat(31)));
    }
}
