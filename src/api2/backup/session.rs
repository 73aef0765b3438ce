//! The HTTP/2 phase of a backup session: request routing, parameter parsing, responses.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{format_err, Error};
use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use pbs_rest_server::params::{body_parameters, query_parameters};
use pbs_rest_server::{Body, BoxError, HttpError, ObjectSchema, OutputFormat};

use super::environment::BackupEnvironment;
use super::handlers::{self, IndexKind, PreviousError};
use super::upload_chunk::{upload_chunk, ChunkKind};

/// Body limit of JSON calls.
const MAX_JSON_BODY: usize = 64 * 1024;
/// Body limit of the append calls (raised so that one append may cover a large archive).
const MAX_APPEND_BODY: usize = 16 * 1024 * 1024;

/// HTTP/2 flow-control windows the server advertises.
pub const WINDOW_SIZE: u32 = 32 * 1024 * 1024;
/// HTTP/2 maximum frame size the server advertises.
pub const MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;

/// The endpoints of the backup protocol, in alphabetical order (directory index).
const ENDPOINTS: &[&str] = &[
    "blob",
    "dynamic_chunk",
    "dynamic_close",
    "dynamic_index",
    "finish",
    "fixed_chunk",
    "fixed_close",
    "fixed_index",
    "previous",
    "previous_backup_time",
    "speedtest",
];

fn bad_request(err: Error) -> HttpError {
    HttpError::bad_request(format!("{err:#}"))
}

fn data_response(data: Value) -> Response<Body> {
    OutputFormat::Json.format_data(data, Default::default())
}

/// Streams a file as `application/octet-stream` (reads run on tokio's blocking pool).
fn file_response(file: std::fs::File) -> Response<Body> {
    const READ_SIZE: usize = 1024 * 1024;
    let file = tokio::fs::File::from_std(file);
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = BytesMut::with_capacity(READ_SIZE);
        let read = file.read_buf(&mut buffer).await?;
        if read == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        Ok(Some((Frame::data(buffer.freeze()), file)))
    });
    let body = StreamBody::new(stream).map_err(|err| -> BoxError { Box::new(err) });
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Splits a `:path` into components: empty ones dropped, percent-decoded, no leading dot.
/// A missing leading slash is tolerated.
pub fn path_components(path: &str) -> Result<Vec<String>, HttpError> {
    let mut out = Vec::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if component.starts_with('.') {
            return Err(HttpError::bad_request("Path contains illegal components."));
        }
        out.push(
            percent_decode_str(component)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    Ok(out)
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, HttpError> {
    let mut body = std::pin::pin!(body);
    let mut acc = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| HttpError::bad_request(err.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if acc.len() + data.len() >= limit {
                return Err(HttpError::bad_request("Request body too large"));
            }
            acc.extend_from_slice(&data);
        }
    }
    Ok(acc.freeze())
}

async fn blocking<T: Send + 'static>(
    env: &Arc<BackupEnvironment>,
    f: impl FnOnce(&BackupEnvironment) -> Result<T, Error> + Send + 'static,
) -> Result<T, HttpError> {
    let env = Arc::clone(env);
    tokio::task::spawn_blocking(move || f(&env))
        .await
        .map_err(|err| HttpError::internal(format!("handler task failed - {err}")))?
        .map_err(bad_request)
}

/// Answers one request of the session; errors become plain-text error responses.
pub async fn handle_request(
    env: Arc<BackupEnvironment>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    env.debug(format!("{method} {path}"));
    let response = match route(&env, req).await {
        Ok(response) => response,
        Err(err) => {
            let reason = err.code.canonical_reason().unwrap_or("");
            env.log(format!(
                "{method} {path}: {} {reason}: {}",
                err.code.as_u16(),
                err.message
            ));
            OutputFormat::Json.format_error(&err)
        }
    };
    Ok(response)
}

async fn json_params(
    req: Request<Incoming>,
    schema: &ObjectSchema,
    limit: usize,
) -> Result<Value, HttpError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, limit).await?;
    body_parameters(&parts, &body, &BTreeMap::new(), schema)
}

/// Parameters of a raw handler (query string only) and the unread body.
fn raw_params(
    req: Request<Incoming>,
    schema: &ObjectSchema,
) -> Result<(Value, Incoming), HttpError> {
    let (parts, body) = req.into_parts();
    let params = query_parameters(&parts, &BTreeMap::new(), schema)?;
    Ok((params, body))
}

async fn route(
    env: &Arc<BackupEnvironment>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let components = path_components(req.uri().path())?;
    let method = req.method().clone();
    let not_found = || HttpError::not_found(format!("Path '/{}' not found.", components.join("/")));
    let endpoint = match components.as_slice() {
        [] => "",
        [one] => one.as_str(),
        _ => return Err(not_found()),
    };
    match (endpoint, method) {
        ("", Method::GET) => {
            let list: Vec<Value> = ENDPOINTS.iter().map(|e| json!({ "subdir": e })).collect();
            Ok(data_response(Value::Array(list)))
        }
        ("previous_backup_time", Method::GET) => {
            json_params(req, &ObjectSchema::new(), MAX_JSON_BODY).await?;
            Ok(data_response(handlers::previous_backup_time(env)))
        }
        ("previous", Method::GET) => {
            let (params, _) = raw_params(req, &handlers::archive_name_schema())?;
            let env = Arc::clone(env);
            let result = tokio::task::spawn_blocking(move || handlers::previous(&env, &params))
                .await
                .map_err(|err| HttpError::internal(format!("handler task failed - {err}")))?;
            match result {
                Ok(file) => Ok(file_response(file)),
                Err(PreviousError::BadRequest(err)) => Err(bad_request(err)),
                Err(PreviousError::NotFound(msg)) => Err(HttpError::not_found(msg)),
            }
        }
        ("blob", Method::POST) => {
            let (params, body) = raw_params(req, &handlers::blob_schema())?;
            let data = read_body(body, handlers::MAX_ENCODED_SIZE as usize + 2).await?;
            blocking(env, move |env| {
                handlers::upload_blob(env, &params, Vec::from(data))
            })
            .await?;
            Ok(data_response(Value::Null))
        }
        ("dynamic_index", Method::POST) => {
            let params = json_params(req, &handlers::archive_name_schema(), MAX_JSON_BODY).await?;
            let wid =
                blocking(env, move |env| handlers::create_dynamic_index(env, &params)).await?;
            Ok(data_response(wid))
        }
        ("fixed_index", Method::POST) => {
            let params = json_params(req, &handlers::fixed_index_schema(), MAX_JSON_BODY).await?;
            let wid = blocking(env, move |env| handlers::create_fixed_index(env, &params)).await?;
            Ok(data_response(wid))
        }
        (name @ ("dynamic_index" | "fixed_index"), Method::PUT) => {
            let kind = index_kind(name);
            let params = json_params(req, &handlers::append_schema(), MAX_APPEND_BODY).await?;
            blocking(env, move |env| handlers::append_index(env, kind, &params)).await?;
            Ok(data_response(Value::Null))
        }
        (name @ ("dynamic_chunk" | "fixed_chunk"), Method::POST) => {
            let kind = if name == "dynamic_chunk" {
                ChunkKind::Dynamic
            } else {
                ChunkKind::Fixed
            };
            let (params, body) = raw_params(req, &handlers::chunk_schema())?;
            let upload = handlers::chunk_params(&params).map_err(bad_request)?;
            let digest = upload_chunk(Arc::clone(env), kind, upload, body)
                .await
                .map_err(bad_request)?;
            Ok(data_response(digest))
        }
        (name @ ("dynamic_close" | "fixed_close"), Method::POST) => {
            let kind = index_kind(name);
            let min = if kind == IndexKind::Dynamic { 1 } else { 0 };
            let params = json_params(req, &handlers::close_schema(min), MAX_JSON_BODY).await?;
            blocking(env, move |env| handlers::close_index(env, kind, &params)).await?;
            Ok(data_response(Value::Null))
        }
        ("speedtest", Method::POST) => {
            let mut body = std::pin::pin!(req.into_body());
            while let Some(frame) = body.frame().await {
                frame.map_err(|err| HttpError::bad_request(err.to_string()))?;
            }
            Ok(data_response(Value::Null))
        }
        ("finish", Method::POST) => {
            json_params(req, &ObjectSchema::new(), MAX_JSON_BODY).await?;
            blocking(env, handlers::finish).await?;
            Ok(data_response(Value::Null))
        }
        _ => Err(not_found()),
    }
}

fn index_kind(name: &str) -> IndexKind {
    if name.starts_with("dynamic") {
        IndexKind::Dynamic
    } else {
        IndexKind::Fixed
    }
}

/// Serves the HTTP/2 session on an upgraded connection until the client goes away.
pub async fn serve<IO>(env: Arc<BackupEnvironment>, io: IO) -> Result<(), Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle_request(Arc::clone(&env), req));
    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(WINDOW_SIZE)
        .initial_connection_window_size(WINDOW_SIZE)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(None)
        .serve_connection(io, service)
        .await
        .map_err(|err| format_err!("{err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_tolerate_missing_and_double_slashes() {
        assert_eq!(path_components("dynamic_index").unwrap(), ["dynamic_index"]);
        assert_eq!(path_components("//finish").unwrap(), ["finish"]);
        assert!(path_components("/").unwrap().is_empty());
        assert_eq!(
            path_components("/.hidden").unwrap_err().message,
            "Path contains illegal components."
        );
    }
}
