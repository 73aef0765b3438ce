//! Forwarding of protected calls from the proxy to the privileged daemon.

use std::net::SocketAddr;

use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::HttpError;
use crate::Body;

/// Sends the request unchanged (method, path, query, headers, body) plus
/// `Forwarded: for="<client>";` to `target` over plain HTTP/1.1 and relays the answer.
pub async fn forward_request(
    req: Request<Incoming>,
    target: SocketAddr,
    client: SocketAddr,
) -> Result<Response<Body>, HttpError> {
    let fail = |what: &str, err: &dyn std::fmt::Display| {
        HttpError::bad_request(format!(
            "unable to forward request to {target}: {what}: {err}"
        ))
    };
    let stream = TcpStream::connect(target)
        .await
        .map_err(|err| fail("connect", &err))?;
    // Best effort: small requests should not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| fail("handshake", &err))?;
    // The connection task ends when the relayed response body is finished.
    tokio::spawn(connection);

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    parts.uri = path_and_query
        .parse()
        .map_err(|err| fail("request uri", &err))?;
    parts.version = http::Version::HTTP_11;
    if !parts.headers.contains_key(HOST) {
        if let Ok(host) = HeaderValue::from_str(&target.to_string()) {
            parts.headers.insert(HOST, host);
        }
    }
    let forwarded = HeaderValue::from_str(&format!("for=\"{client}\";"))
        .map_err(|err| fail("forwarded header", &err))?;
    parts.headers.insert("forwarded", forwarded);

    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|err| fail("request", &err))?;
    Ok(response.map(|body| body.map_err(|err| err.into()).boxed()))
}

/// Extracts the client address of a `Forwarded: for="<addr>";` header.
pub fn parse_forwarded_for(value: &str) -> Option<SocketAddr> {
    value.split([';', ',']).map(str::trim).find_map(|item| {
        let (key, val) = item.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        val.trim().trim_matches('"').parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_parsing() {
        assert_eq!(
            parse_forwarded_for("for=\"[::ffff:10.1.2.3]:51234\";"),
            "[::ffff:10.1.2.3]:51234".parse().ok()
        );
        assert_eq!(
            parse_forwarded_for("for=\"127.0.0.1:80\";"),
            "127.0.0.1:80".parse().ok()
        );
        assert_eq!(parse_forwarded_for("by=x"), None);
        assert_eq!(parse_forwarded_for("for=\"unknown\";"), None);
    }
}
