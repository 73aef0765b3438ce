//! TLS connections to the server and the decision whether to trust its certificate.
//!
//! OpenSSL's chain validation (system CA store, host name) decides first. If it fails, the
//! leaf certificate's SHA-256 fingerprint must match an expected fingerprint (given by the
//! caller or cached per server) or be confirmed interactively (trust on first use).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{format_err, Context, Result};
use openssl::hash::MessageDigest;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509Ref;

use crate::xdg;

/// File name of the fingerprint cache in the config directory.
pub const FINGERPRINT_CACHE_FILE: &str = "fingerprints";

/// The server certificate was neither trusted by the CA store nor confirmed by fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateNotConfirmed;

impl std::fmt::Display for CertificateNotConfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificate fingerprint was not confirmed.")
    }
}

impl std::error::Error for CertificateNotConfirmed {}

/// What the handshake told about the server certificate.
#[derive(Clone, Debug, Default)]
pub struct CertificateCheck {
    /// OpenSSL rejected some certificate of the chain (or the host name).
    pub chain_failed: bool,
    /// Fingerprint of the leaf certificate.
    pub fingerprint: Option<String>,
}

/// SHA-256 fingerprint of a certificate: lower-case hex bytes joined by `:`.
pub fn cert_fingerprint(cert: &X509Ref) -> Result<String> {
    let digest = cert.digest(MessageDigest::sha256())?;
    Ok(format_fingerprint(&digest))
}

/// Lower-case hex bytes joined by `:`.
pub fn format_fingerprint(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A connector using the system CA store.
pub fn connector() -> Result<SslConnector> {
    let builder = SslConnector::builder(SslMethod::tls_client())
        .context("unable to set up the TLS client")?;
    Ok(builder.build())
}

/// An SSL object for one connection to `host` that records instead of rejecting.
pub fn new_ssl(
    connector: &SslConnector,
    host: &str,
) -> Result<(openssl::ssl::Ssl, Arc<Mutex<CertificateCheck>>)> {
    let check = Arc::new(Mutex::new(CertificateCheck::default()));
    let mut config = connector.configure()?;
    let recorder = Arc::clone(&check);
    config.set_verify_callback(SslVerifyMode::PEER, move |valid, ctx| {
        // Never abort the handshake here: the decision needs the fingerprint and may need
        // the user, and nothing is sent before it is made.
        if let Ok(mut check) = recorder.lock() {
            if !valid {
                check.chain_failed = true;
            }
            if ctx.error_depth() == 0 {
                check.fingerprint = ctx.current_cert().and_then(|c| cert_fingerprint(c).ok());
            }
        }
        true
    });
    let ssl = config.into_ssl(host)?;
    Ok((ssl, check))
}

/// Where the expected fingerprint comes from and what may be done on a mismatch.
#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    /// Expected fingerprint given by the caller (the cache is then neither read nor written).
    pub fingerprint: Option<String>,
    /// Use the per-server fingerprint cache.
    pub fingerprint_cache: bool,
    /// Warn on a mismatch and ask the user on a terminal (command-line use).
    pub interactive: bool,
}

/// Decides whether the certificate of `server` described by `check` is trusted.
/// Returns the fingerprint that was accepted (if the fingerprint decided).
pub fn verify_certificate(
    server: &str,
    check: &CertificateCheck,
    policy: &TrustPolicy,
) -> Result<Option<String>> {
    if !check.chain_failed {
        return Ok(None);
    }
    let fingerprint = check
        .fingerprint
        .clone()
        .ok_or_else(|| format_err!("server did not send a certificate"))?;
    let expected = match &policy.fingerprint {
        Some(expected) => Some(expected.to_lowercase()),
        None if policy.fingerprint_cache => load_cached_fingerprint(server),
        None => None,
    };
    if expected.as_deref() == Some(fingerprint.as_str()) {
        return Ok(Some(fingerprint));
    }
    if let (Some(expected), true) = (&expected, policy.interactive) {
        eprintln!("WARNING: certificate fingerprint does not match expected fingerprint!");
        eprintln!("expected:    {expected}");
    }
    if policy.interactive && std::io::stdin().is_terminal() && confirm_fingerprint(&fingerprint)? {
        if policy.fingerprint.is_none() && policy.fingerprint_cache {
            if let Err(err) = store_cached_fingerprint(server, &fingerprint) {
                eprintln!("unable to store fingerprint - {err:#}");
            }
        }
        return Ok(Some(fingerprint));
    }
    Err(CertificateNotConfirmed.into())
}

fn confirm_fingerprint(fingerprint: &str) -> Result<bool> {
    println!("fingerprint: {fingerprint}");
    let stdin = std::io::stdin();
    loop {
        print!("Are you sure you want to continue connecting? (y/n): ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(false);
        }
        match line.trim() {
            "y" | "Y" => return Ok(true),
            "n" | "N" => return Ok(false),
            _ => {}
        }
    }
}

/// The cached fingerprint of `server` from a fingerprint file.
pub fn cached_fingerprint_in(path: &Path, server: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, fingerprint) = line.split_once(' ')?;
        (name == server).then(|| fingerprint.trim().to_string())
    })
}

/// Sets the fingerprint of `server` in a fingerprint file (replacing an older line).
pub fn store_fingerprint_in(path: &Path, server: &str, fingerprint: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("unable to read {path:?}")),
    };
    let mut text = String::new();
    for line in old.lines() {
        if line.split_once(' ').is_some_and(|(name, _)| name == server) || line.is_empty() {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("{server} {fingerprint}\n"));
    xdg::replace_file(path, text.as_bytes(), 0o644)
}

fn load_cached_fingerprint(server: &str) -> Option<String> {
    cached_fingerprint_in(&xdg::config_file(FINGERPRINT_CACHE_FILE)?, server)
}

fn store_cached_fingerprint(server: &str, fingerprint: &str) -> Result<()> {
    let path = xdg::place_config_file(FINGERPRINT_CACHE_FILE)?;
    store_fingerprint_in(&path, server, fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        assert_eq!(format_fingerprint(&[0x64, 0xd3, 0x0f]), "64:d3:0f");
    }

    #[test]
    fn fingerprint_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fingerprints");
        assert_eq!(cached_fingerprint_in(&path, "a"), None);
        store_fingerprint_in(&path, "a", "aa:01").unwrap();
        store_fingerprint_in(&path, "[::1]", "bb:02").unwrap();
        store_fingerprint_in(&path, "a", "cc:03").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[::1] bb:02\na cc:03\n"
        );
        assert_eq!(cached_fingerprint_in(&path, "a").as_deref(), Some("cc:03"));
        assert_eq!(
            cached_fingerprint_in(&path, "[::1]").as_deref(),
            Some("bb:02")
        );
        assert_eq!(cached_fingerprint_in(&path, "b"), None);
    }

    #[test]
    fn trust_decisions() {
        let check = CertificateCheck {
            chain_failed: true,
            fingerprint: Some("ab:cd".into()),
        };
        let trusted_by_ca = CertificateCheck {
            chain_failed: false,
            fingerprint: Some("ab:cd".into()),
        };
        let given = |fp: &str| TrustPolicy {
            fingerprint: Some(fp.into()),
            fingerprint_cache: false,
            interactive: false,
        };
        assert_eq!(
            verify_certificate("h", &trusted_by_ca, &TrustPolicy::default()).unwrap(),
            None
        );
        // Compared lower-cased.
        assert_eq!(
            verify_certificate("h", &check, &given("AB:CD")).unwrap(),
            Some("ab:cd".into())
        );
        let err = verify_certificate("h", &check, &given("00:00")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Certificate fingerprint was not confirmed."
        );
        let err = verify_certificate("h", &check, &TrustPolicy::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Certificate fingerprint was not confirmed."
        );
    }
}
