//! Tunnelling connections through an HTTP proxy (`ALL_PROXY`) with `CONNECT`.

use anyhow::{bail, format_err, Context, Result};
use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Environment variable naming the proxy.
pub const ENV_VAR_ALL_PROXY: &str = "ALL_PROXY";
/// Proxy port when none is given.
pub const DEFAULT_PROXY_PORT: u16 = 1080;
/// Upper limit of the proxy's response head.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// An HTTP proxy: host, port and optional `user:password`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    pub host: String,
    pub port: u16,
    pub authorization: Option<String>,
}

impl ProxyConfig {
    /// Parses `[http://][user:password@]host[:port]`.
    pub fn parse(text: &str) -> Result<Self> {
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => bail!("proxy '{text}': unsupported scheme '{scheme}'"),
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let (authorization, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo.to_string()), hostport),
            None => (None, rest),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format_err!("proxy '{text}': unterminated IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => bail!("proxy '{text}': invalid address"),
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            bail!("proxy '{text}': missing host");
        }
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|err| format_err!("proxy '{text}': invalid port - {err}"))?,
            None => DEFAULT_PROXY_PORT,
        };
        Ok(Self {
            host,
            port,
            authorization,
        })
    }

    /// The proxy from `ALL_PROXY`, if set.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(ENV_VAR_ALL_PROXY) {
            Ok(value) if !value.is_empty() => Ok(Some(Self::parse(&value)?)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{ENV_VAR_ALL_PROXY} contains bad characters")
            }
        }
    }
}

/// Asks the proxy on `stream` for a tunnel to `authority` (`host:port`).
pub async fn connect_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    authority: &str,
    authorization: Option<&str>,
) -> Result<()> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(userinfo) = authorization {
        let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .context("unable to send CONNECT request to proxy")?;
    stream.flush().await?;

    // Byte by byte: nothing after the response head may be consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            bail!("proxy response head too long");
        }
        let byte = stream
            .read_u8()
            .await
            .context("proxy closed the connection during CONNECT")?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        bail!("invalid proxy response '{status_line}'");
    }
    if !code.starts_with('2') {
        bail!("proxy refused the tunnel to {authority}: {status_line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_proxy() {
        let proxy = ProxyConfig::parse("http://user:pw@proxy.example:3128").unwrap();
        assert_eq!(
            proxy,
            ProxyConfig {
                host: "proxy.example".into(),
                port: 3128,
                authorization: Some("user:pw".into()),
            }
        );
        let proxy = ProxyConfig::parse("proxy").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy", 1080));
        assert_eq!(proxy.authorization, None);
        let proxy = ProxyConfig::parse("[::1]:8080/").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("::1", 8080));
        assert!(ProxyConfig::parse("socks5://h:1").is_err());
        assert!(ProxyConfig::parse("h:99999").is_err());
        assert!(ProxyConfig::parse("http://:1").is_err());
    }

    #[tokio::test]
    async fn tunnel_handshake() {
        let (mut client, mut proxy) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let n = proxy.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            proxy
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\npayload")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        connect_tunnel(&mut client, "pbs:8007", Some("u:p"))
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert_eq!(
            request,
            "CONNECT pbs:8007 HTTP/1.1\r\nHost: pbs:8007\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        // The bytes after the response head are left for the tunnelled protocol.
        let mut rest = [0u8; 7];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"payload");

        let (mut client, mut proxy) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = proxy.read(&mut buf).await;
            let _ = proxy
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .await;
        });
        let err = connect_tunnel(&mut client, "pbs:8007", None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "proxy refused the tunnel to pbs:8007: HTTP/1.1 407 Proxy Authentication Required"
        );
    }
}
