//! The HTTP backend: HTTPS requests to the local proxy as `root@pam`, with a ticket minted
//! and signed locally; the server certificate must validate against the system CA store or
//! match the fingerprint of the local `proxy.pem`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openssl::hash::MessageDigest;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio::net::TcpStream;

use pbs_api_types::Userid;

/// Default port of the proxy.
pub const DEFAULT_PORT: u16 = 8007;
/// Env var overriding the proxy address (`<port>`, `<ip>:<port>` or `[<ipv6>]:<port>`).
pub const PROXY_LISTEN_ENV: &str = "PBS_PROXY_LISTEN";

/// Characters escaped in query strings and path components.
const QUERY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path component or query value.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, QUERY_ENCODE_SET).to_string()
}

/// Where the proxy listens: `PBS_PROXY_LISTEN` or `127.0.0.1:8007`.
pub fn proxy_address() -> Result<SocketAddr> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Ok(value) = std::env::var(PROXY_LISTEN_ENV) else {
        return Ok(SocketAddr::new(localhost, DEFAULT_PORT));
    };
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(localhost, port));
    }
    value
        .parse()
        .map_err(|_| format_err!("{PROXY_LISTEN_ENV}: invalid address '{value}'"))
}

/// A client for the local proxy.
pub struct LocalClient {
    address: SocketAddr,
    connector: SslConnector,
    ticket: String,
    csrf_token: Option<String>,
}

fn config_file(name: &str) -> PathBuf {
    pbs_buildcfg::config_dir().join(name)
}

impl LocalClient {
    /// Mints a `root@pam` ticket with the local auth key and prepares the TLS settings.
    pub fn connect() -> Result<Self> {
        let root: Userid = "root@pam"
            .parse()
            .map_err(|err| format_err!("root@pam: {err}"))?;
        let key = pbs_auth::keys::load_private_auth_key()
            .context("unable to load the auth key to sign a ticket")?;
        let ticket = pbs_auth::ticket::assemble_api_ticket(&key, &root)
            .map_err(|err| format_err!("unable to sign ticket - {err}"))?;
        let csrf_token = pbs_auth::csrf::load_csrf_secret()
            .ok()
            .map(|secret| pbs_auth::assemble_csrf_prevention_token(&secret, &root));
        let fingerprint =
            pbs_auth::tls::cert_file_fingerprint(&config_file(pbs_auth::tls::PROXY_CERT_FILE)).ok();
        Ok(Self {
            address: proxy_address()?,
            connector: build_connector(fingerprint)?,
            ticket,
            csrf_token,
        })
    }

    /// Sends a request; `GET`/`DELETE` carry `params` in the query string, `POST`/`PUT` as
    /// JSON body. Returns the whole response envelope (`data` plus attributes).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: Option<&Value>,
    ) -> Result<Value> {
        let mut uri = format!("/api2/json/{}", path.trim_start_matches('/'));
        let mut body = Bytes::new();
        let with_body = matches!(method, Method::POST | Method::PUT);
        if let Some(params) = params {
            if with_body {
                body = Bytes::from(serde_json::to_vec(params)?);
            } else {
                let query = query_string(params)?;
                if !query.is_empty() {
                    uri.push('?');
                    uri.push_str(&query);
                }
            }
        }
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(HOST, "localhost")
            .header(
                COOKIE,
                pbs_auth::credentials::auth_cookie_header(&self.ticket),
            );
        if with_body {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if method != Method::GET {
            if let Some(token) = &self.csrf_token {
                builder = builder.header(pbs_auth::credentials::CSRF_HEADER_NAME, token);
            }
        }
        let request = builder.body(Full::new(body))?;

        let stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("unable to connect to {}", self.address))?;
        let ssl = self
            .connector
            .configure()?
            .verify_hostname(false)
            .into_ssl("localhost")?;
        let mut tls = tokio_openssl::SslStream::new(ssl, stream)?;
        std::pin::Pin::new(&mut tls)
            .connect()
            .await
            .map_err(|err| format_err!("TLS connection to {} failed - {err}", self.address))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            bail!("{}", error_text(status, &text));
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {uri}: invalid JSON reply"))
    }

    /// Like [`Self::request`], returning only `data`.
    pub async fn data(&self, method: Method, path: &str, params: Option<&Value>) -> Result<Value> {
        let mut envelope = self.request(method, path, params).await?;
        Ok(envelope["data"].take())
    }
}

fn error_text(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP Error {status}")
    } else {
        body.to_string()
    }
}

/// Form-encodes the members of a JSON object (arrays as repeated keys).
pub fn query_string(params: &Value) -> Result<String> {
    let Value::Object(map) = params else {
        bail!("request parameters must be an object");
    };
    let mut parts = Vec::new();
    for (key, value) in map {
        let mut push = |v: &Value| match v {
            Value::Null => {}
            Value::String(s) => parts.push(format!("{key}={}", encode_component(s))),
            Value::Bool(b) => parts.push(format!("{key}={}", u8::from(*b))),
            other => parts.push(format!("{key}={}", encode_component(&other.to_string()))),
        };
        match value {
            Value::Array(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    Ok(parts.join("&"))
}

fn build_connector(expected_fingerprint: Option<String>) -> Result<SslConnector> {
    let mut builder = SslConnector::builder(SslMethod::tls())?;
    let expected = Arc::new(expected_fingerprint);
    builder.set_verify_callback(SslVerifyMode::PEER, move |valid, ctx| {
        if valid {
            return true;
        }
        let Some(expected) = expected.as_deref() else {
            return false;
        };
        let leaf = ctx
            .chain()
            .and_then(|chain| chain.get(0).map(|c| c.to_owned()));
        leaf.and_then(|cert| cert.digest(MessageDigest::sha256()).ok())
            .is_some_and(|digest| pbs_auth::tls::format_fingerprint(&digest) == expected)
    });
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_strings() {
        let params =
            json!({"running": true, "start": 0, "upid": "UPID:n:1:a b:", "x": ["a", "b/c"]});
        assert_eq!(
            query_string(&params).unwrap(),
            "running=1&start=0&upid=UPID%3An%3A1%3Aa%20b%3A&x=a&x=b%2Fc"
        );
        assert!(query_string(&json!([1])).is_err());
    }
}
