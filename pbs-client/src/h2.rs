//! Requests inside an upgraded HTTP/2 session (backup and reader protocols).

use anyhow::{format_err, Context, Result};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use serde_json::Value;

use crate::http_client::{json_response, HttpError, USER_AGENT_VALUE};
use crate::query::path_with_query;

/// Content type of requests whose parameters are in the query string.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// One HTTP/2 session; clones share the connection, so requests may be pipelined.
#[derive(Clone)]
pub struct H2Client {
    sender: SendRequest<Full<Bytes>>,
}

impl H2Client {
    /// Wraps the request half of an established HTTP/2 connection.
    pub fn new(sender: SendRequest<Full<Bytes>>) -> Self {
        Self { sender }
    }

    /// `GET` with `params` in the query string; returns the response envelope.
    pub async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.json_request(Method::GET, path, params.as_ref()).await
    }

    /// `POST` with `params` in the query string; returns the response envelope.
    pub async fn post(&self, path: &str, params: Option<Value>) -> Result<Value> {
        self.json_request(Method::POST, path, params.as_ref()).await
    }

    /// `PUT` with `params` as JSON body; returns the response envelope.
    pub async fn put(&self, path: &str, params: Option<Value>) -> Result<Value> {
        let body = match &params {
            Some(params) => Bytes::from(serde_json::to_vec(params)?),
            None => Bytes::new(),
        };
        let response = self
            .send(Method::PUT, path.to_string(), "application/json", body)
            .await?;
        collect_json(response).await
    }

    /// Raw body upload (params in the query string); returns the envelope. The body is
    /// handed to the connection as is, without copying.
    pub async fn upload(
        &self,
        method: &str,
        path: &str,
        params: Option<Value>,
        content_type: &str,
        data: Bytes,
    ) -> Result<Value> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format_err!("invalid HTTP method '{method}'"))?;
        let uri = path_with_query(path, params.as_ref())?;
        let response = self.send(method, uri, content_type, data).await?;
        collect_json(response).await
    }

    /// `GET` streaming the body into `output`.
    pub async fn download<W: std::io::Write + Send>(
        &self,
        path: &str,
        params: Option<Value>,
        mut output: W,
    ) -> Result<W> {
        let uri = path_with_query(path, params.as_ref())?;
        let response = self
            .send(Method::GET, uri, FORM_CONTENT_TYPE, Bytes::new())
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(HttpError::new(status, &String::from_utf8_lossy(&bytes)).into());
        }
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                output
                    .write_all(&data)
                    .context("unable to write downloaded data")?;
            }
        }
        Ok(output)
    }

    /// `GET` collecting the body into memory.
    pub async fn download_to_vec(&self, path: &str, params: Option<Value>) -> Result<Vec<u8>> {
        self.download(path, params, Vec::new()).await
    }

    async fn json_request(
        &self,
        method: Method,
        path: &str,
        params: Option<&Value>,
    ) -> Result<Value> {
        let uri = path_with_query(path, params)?;
        let response = self
            .send(method, uri, FORM_CONTENT_TYPE, Bytes::new())
            .await?;
        collect_json(response).await
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: String,
        content_type: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>> {
        let uri = format!(
            "https://localhost:8007/{}",
            path_and_query.trim_start_matches('/')
        );
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("user-agent", USER_AGENT_VALUE)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))?;
        let mut sender = self.sender.clone();
        sender.ready().await.context("HTTP/2 connection closed")?;
        Ok(sender.send_request(request).await?)
    }
}

async fn collect_json(response: Response<Incoming>) -> Result<Value> {
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    json_response(status, &bytes)
}
