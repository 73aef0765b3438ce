//! `cert info` and `cert update`: the proxy's TLS certificate.

use std::fmt::Write;
use std::path::Path;

use anyhow::{format_err, Context, Result};
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509};

/// `<short name> = <value>` for every entry, joined by `, `.
fn format_name(name: &X509NameRef) -> Result<String> {
    let mut parts = Vec::new();
    for entry in name.entries() {
        let key = entry
            .object()
            .nid()
            .short_name()
            .map_err(|err| format_err!("unknown name entry type - {err}"))?;
        let value = entry
            .data()
            .to_string()
            .map_err(|err| format_err!("name entry '{key}' is not valid text - {err}"))?;
        parts.push(format!("{key} = {value}"));
    }
    Ok(parts.join(", "))
}

/// The `cert info` text of a PEM certificate file.
pub fn cert_info_text(path: &Path) -> Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("unable to read {path:?}"))?;
    let cert = X509::from_pem(&pem).with_context(|| format!("certificate {path:?}"))?;
    let mut out = String::new();
    writeln!(out, "Subject: {}", format_name(cert.subject_name())?)?;
    if let Some(names) = cert.subject_alt_names() {
        for name in names.iter() {
            if let Some(dns) = name.dnsname() {
                writeln!(out, "    DNS:{dns}")?;
            } else if let Some(ip) = name.ipaddress() {
                writeln!(out, "    IP:{ip:?}")?;
            } else if let Some(email) = name.email() {
                writeln!(out, "    EMAIL:{email}")?;
            } else if let Some(uri) = name.uri() {
                writeln!(out, "    URI:{uri}")?;
            }
        }
    }
    writeln!(out, "Issuer: {}", format_name(cert.issuer_name())?)?;
    writeln!(out, "Validity:")?;
    writeln!(out, "    Not Before: {}", cert.not_before())?;
    writeln!(out, "    Not After : {}", cert.not_after())?;
    writeln!(
        out,
        "Fingerprint (sha256): {}",
        pbs_auth::tls::cert_fingerprint(&cert)?
    )?;
    let key = cert.public_key()?;
    let key_type = Nid::from_raw(key.id().as_raw())
        .long_name()
        .map_err(|err| format_err!("unknown public key type - {err}"))?;
    writeln!(out, "Public key type: {key_type}")?;
    writeln!(out, "Public key bits: {}", key.bits())?;
    Ok(out)
}

/// `cert info`: describes `<config dir>/proxy.pem`.
pub fn cert_info() -> Result<()> {
    print!("{}", cert_info_text(&pbs_auth::tls::proxy_cert_path())?);
    Ok(())
}

/// `cert update [--force]`: creates missing auth and CSRF keys, and a self-signed
/// certificate if missing or forced.
pub fn cert_update(force: bool) -> Result<()> {
    let dir = pbs_buildcfg::config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create {dir:?}"))?;
    pbs_auth::keys::ensure_auth_keys_in(&dir)?;
    pbs_auth::csrf::ensure_csrf_key_in(&dir)?;
    pbs_auth::tls::ensure_proxy_cert_in(&dir, force)?;
    Ok(())
}
