//! TLS acceptor from PEM files, reloadable while the server runs, and the detection of
//! plain-HTTP clients on the TLS port.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{format_err, Context, Error};
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslOptions};
use tokio::net::TcpStream;

/// Where the certificate comes from and which cipher overrides apply.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM private key (`proxy.key`).
    pub key_path: PathBuf,
    /// PEM certificate chain, leaf first (`proxy.pem`).
    pub cert_path: PathBuf,
    /// TLS 1.3 cipher suites (`ciphers-tls-1.3` of `node.cfg`).
    pub ciphers_tls_1_3: Option<String>,
    /// TLS ≤ 1.2 cipher list (`ciphers-tls-1.2` of `node.cfg`).
    pub ciphers_tls_1_2: Option<String>,
}

impl TlsConfig {
    /// A configuration without cipher overrides.
    pub fn new(key_path: impl Into<PathBuf>, cert_path: impl Into<PathBuf>) -> Self {
        Self {
            key_path: key_path.into(),
            cert_path: cert_path.into(),
            ciphers_tls_1_3: None,
            ciphers_tls_1_2: None,
        }
    }

    /// Builds an acceptor: Mozilla intermediate v5 profile, renegotiation disabled, no ALPN
    /// (HTTP/1.1 first; HTTP/2 only by prior knowledge or through an upgrade).
    pub fn build_acceptor(&self) -> Result<SslAcceptor, Error> {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        builder.set_options(SslOptions::NO_RENEGOTIATION);
        if let Some(ciphers) = &self.ciphers_tls_1_3 {
            builder
                .set_ciphersuites(ciphers)
                .with_context(|| format!("invalid TLS 1.3 cipher suites '{ciphers}'"))?;
        }
        if let Some(ciphers) = &self.ciphers_tls_1_2 {
            builder
                .set_cipher_list(ciphers)
                .with_context(|| format!("invalid TLS 1.2 cipher list '{ciphers}'"))?;
        }
        builder
            .set_private_key_file(&self.key_path, SslFiletype::PEM)
            .with_context(|| format!("unable to read TLS key {:?}", self.key_path))?;
        builder
            .set_certificate_chain_file(&self.cert_path)
            .with_context(|| format!("unable to read TLS certificate {:?}", self.cert_path))?;
        builder.check_private_key().map_err(|err| {
            format_err!(
                "TLS key {:?} does not match certificate {:?}: {err}",
                self.key_path,
                self.cert_path
            )
        })?;
        Ok(builder.build())
    }
}

/// A shared acceptor that can be replaced (certificate reload) without touching open
/// connections.
#[derive(Clone)]
pub struct TlsAcceptorHandle {
    config: TlsConfig,
    acceptor: Arc<RwLock<Arc<SslAcceptor>>>,
}

impl TlsAcceptorHandle {
    /// Loads the certificate and key.
    pub fn new(config: TlsConfig) -> Result<Self, Error> {
        let acceptor = Arc::new(config.build_acceptor()?);
        Ok(Self {
            config,
            acceptor: Arc::new(RwLock::new(acceptor)),
        })
    }

    /// Re-reads certificate and key; on error the old acceptor stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        let acceptor = Arc::new(self.config.build_acceptor()?);
        let mut guard = self
            .acceptor
            .write()
            .map_err(|_| format_err!("TLS acceptor lock poisoned"))?;
        *guard = acceptor;
        Ok(())
    }

    /// The acceptor for the next handshake.
    pub fn current(&self) -> Result<Arc<SslAcceptor>, Error> {
        self.acceptor
            .read()
            .map(|guard| Arc::clone(&guard))
            .map_err(|_| format_err!("TLS acceptor lock poisoned"))
    }

    /// Paths of certificate and key.
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.config.cert_path, &self.config.key_path)
    }
}

/// Maximum number of bytes looked at to tell TLS from plain HTTP.
const PEEK_LIMIT: usize = 128;
/// How long to wait for the first bytes.
const PEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// True if the bytes start like a TLS handshake record.
pub fn looks_like_tls_handshake(data: &[u8]) -> bool {
    data.len() >= 5
        && data[0] == 0x16
        && data[1] == 0x03
        && u16::from_be_bytes([data[3], data[4]]) <= 16384
}

/// Decides whether a fresh connection speaks TLS. Waits up to a second for the first five
/// bytes; a client that sends nothing in that time is treated as TLS.
pub async fn detect_tls(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; PEEK_LIMIT];
    let deadline = tokio::time::Instant::now() + PEEK_TIMEOUT;
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(result) => result?,
            Err(_) => return Ok(true),
        };
        if peeked == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before any data",
            ));
        }
        if peeked >= 5 {
            return Ok(looks_like_tls_handshake(&buf[..peeked]));
        }
        if buf[0] != 0x16 {
            return Ok(false);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_record_detection() {
        assert!(looks_like_tls_handshake(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01
        ]));
        assert!(looks_like_tls_handshake(&[0x16, 0x03, 0x03, 0x40, 0x00]));
        assert!(!looks_like_tls_handshake(&[0x16, 0x03, 0x03, 0x40, 0x01]));
        assert!(!looks_like_tls_handshake(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_tls_handshake(&[0x16, 0x03]));
    }

    #[test]
    fn missing_files_are_reported_with_path() {
        let err = TlsConfig::new("/nonexistent/proxy.key", "/nonexistent/proxy.pem")
            .build_acceptor()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/proxy.key"), "{err}");
    }
}
