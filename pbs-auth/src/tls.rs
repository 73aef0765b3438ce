//! The proxy's TLS certificate (`proxy.pem` / `proxy.key`): self-signed generation and the
//! SHA-256 fingerprint shown to users (§4).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Error};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509Ref, X509};

use crate::files::{write_key_file, FileOwner};

/// File name of the TLS private key in the configuration directory.
pub const PROXY_KEY_FILE: &str = "proxy.key";
/// File name of the TLS certificate chain in the configuration directory.
pub const PROXY_CERT_FILE: &str = "proxy.pem";
/// Size of the generated RSA key.
pub const CERT_RSA_BITS: u32 = 4096;
/// Validity of the self-signed certificate in days.
pub const CERT_VALIDITY_DAYS: u32 = 365_000;
/// Organization of the self-signed certificate's subject.
pub const CERT_ORGANIZATION: &str = "Proxmox Backup Server";

/// `<config dir>/proxy.key`
pub fn proxy_key_path() -> PathBuf {
    pbs_buildcfg::config_dir().join(PROXY_KEY_FILE)
}

/// `<config dir>/proxy.pem`
pub fn proxy_cert_path() -> PathBuf {
    pbs_buildcfg::config_dir().join(PROXY_CERT_FILE)
}

/// The host name up to the first `.`.
pub fn nodename() -> Result<String, Error> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname failed");
    }
    // SAFETY: uname NUL-terminates nodename.
    let name = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let short = name.split('.').next().unwrap_or_default();
    if short.is_empty() {
        bail!("empty host name");
    }
    Ok(short.to_string())
}

/// The first domain of the `search` line of a resolv.conf text.
pub fn search_domain(resolv_conf: &str) -> Option<String> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") => words.next().map(str::to_string),
            _ => None,
        }
    })
}

/// `nodename` plus `.` and the `/etc/resolv.conf` search domain, if there is one.
pub fn fqdn(nodename: &str) -> String {
    let domain = std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|c| search_domain(&c));
    match domain {
        Some(domain) => format!("{nodename}.{domain}"),
        None => nodename.to_string(),
    }
}

/// A self-signed server certificate as the API daemon creates it on first start.
pub fn generate_self_signed_cert(
    nodename: &str,
    fqdn: &str,
) -> Result<(PKey<Private>, X509), Error> {
    generate_cert_with_key(Rsa::generate(CERT_RSA_BITS)?, nodename, fqdn)
}

fn generate_cert_with_key(
    rsa: Rsa<Private>,
    nodename: &str,
    fqdn: &str,
) -> Result<(PKey<Private>, X509), Error> {
    let key = PKey::from_rsa(rsa)?;
    let ou = crate::uuid::random_uuid_v4()?;

    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("O", CERT_ORGANIZATION)?;
    name.append_entry_by_text("OU", &ou)?;
    name.append_entry_by_text("CN", fqdn)
        .with_context(|| format!("invalid certificate common name '{fqdn}'"))?;
    let name = name.build();

    let mut builder = X509::builder()?;
    builder.set_version(2)?; // X.509 v3
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(CERT_VALIDITY_DAYS)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.set_pubkey(&key)?;

    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    san.ip("127.0.0.1").ip("::1").dns("localhost");
    if nodename != "localhost" {
        san.dns(nodename);
    }
    if fqdn != nodename {
        san.dns(fqdn);
    }
    let san = san.build(&builder.x509v3_context(None, None))?;
    builder.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    // OpenSSL 3 leaves the key id out of self-signed certificates unless forced, which
    // would produce an empty extension.
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&builder.x509v3_context(None, None))?;
    builder.append_extension(aki)?;

    builder.sign(&key, MessageDigest::sha256())?;
    Ok((key, builder.build()))
}

/// Writes `key` (PKCS#1 PEM) and `cert` (PEM) as `proxy.key` / `proxy.pem` in `dir`.
pub fn write_proxy_cert_in(dir: &Path, key: &PKey<Private>, cert: &X509Ref) -> Result<(), Error> {
    let key_pem = key
        .rsa()
        .and_then(|rsa| rsa.private_key_to_pem())
        .or_else(|_| key.private_key_to_pem_pkcs8())?;
    write_key_file(
        &dir.join(PROXY_KEY_FILE),
        &key_pem,
        0o640,
        FileOwner::RootBackup,
    )?;
    write_key_file(
        &dir.join(PROXY_CERT_FILE),
        &cert.to_pem()?,
        0o640,
        FileOwner::RootBackup,
    )?;
    Ok(())
}

/// Creates a self-signed certificate in `dir` if `force` is set or either file is missing.
/// Returns whether new files were written.
pub fn ensure_proxy_cert_in(dir: &Path, force: bool) -> Result<bool, Error> {
    if !force && dir.join(PROXY_KEY_FILE).exists() && dir.join(PROXY_CERT_FILE).exists() {
        return Ok(false);
    }
    let node = nodename()?;
    let (key, cert) = generate_self_signed_cert(&node, &fqdn(&node))?;
    write_proxy_cert_in(dir, &key, &cert)?;
    Ok(true)
}

/// [`ensure_proxy_cert_in`] for the configuration directory.
pub fn ensure_proxy_cert(force: bool) -> Result<bool, Error> {
    ensure_proxy_cert_in(&pbs_buildcfg::config_dir(), force)
}

/// Lower-case hex bytes joined by `:` (95 characters for SHA-256).
pub fn format_fingerprint(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// SHA-256 fingerprint of a certificate (over its DER encoding).
pub fn cert_fingerprint(cert: &X509Ref) -> Result<String, Error> {
    Ok(format_fingerprint(&cert.digest(MessageDigest::sha256())?))
}

/// SHA-256 fingerprint of the first certificate in a PEM file (e.g. `proxy.pem`).
pub fn cert_file_fingerprint(path: &Path) -> Result<String, Error> {
    let pem = std::fs::read(path).with_context(|| format!("unable to read {path:?}"))?;
    let cert = X509::from_pem(&pem).with_context(|| format!("certificate {path:?}"))?;
    cert_fingerprint(&cert)
}

/// Whether `s` is 32 `:`-separated hex byte pairs (either case), as users may give them.
pub fn is_valid_fingerprint(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 95
        && b.iter().enumerate().all(|(i, c)| {
            if i % 3 == 2 {
                *c == b':'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::nid::Nid;

    fn entry(cert: &X509Ref, nid: Nid) -> String {
        let data = cert
            .subject_name()
            .entries_by_nid(nid)
            .next()
            .unwrap()
            .data();
        String::from_utf8(data.as_slice().to_vec()).unwrap()
    }

    #[test]
    fn self_signed_certificate_matches_the_spec() {
        let (key, cert) = generate_self_signed_cert("pbs", "pbs.example.com").unwrap();
        assert_eq!(key.bits(), 4096);
        assert_eq!(cert.version(), 2);
        assert_eq!(entry(&cert, Nid::ORGANIZATIONNAME), "Proxmox Backup Server");
        assert_eq!(entry(&cert, Nid::COMMONNAME), "pbs.example.com");
        let ou = entry(&cert, Nid::ORGANIZATIONALUNITNAME);
        assert_eq!(ou.len(), 36);
        assert_eq!(ou, ou.to_uppercase());
        assert_eq!(ou.matches('-').count(), 4);
        // subject order O, OU, CN and issuer == subject
        let order: Vec<Nid> = cert
            .subject_name()
            .entries()
            .map(|e| e.object().nid())
            .collect();
        assert_eq!(
            order,
            [
                Nid::ORGANIZATIONNAME,
                Nid::ORGANIZATIONALUNITNAME,
                Nid::COMMONNAME
            ]
        );
        assert_eq!(
            cert.issuer_name().to_der().unwrap(),
            cert.subject_name().to_der().unwrap()
        );
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA256WITHRSAENCRYPTION
        );
        assert!(cert.verify(&key).unwrap());

        let diff = cert.not_before().diff(cert.not_after()).unwrap();
        assert_eq!((diff.days, diff.secs), (365_000, 0));
        let now = Asn1Time::days_from_now(0).unwrap();
        assert!(now.diff(cert.not_before()).unwrap().secs.abs() < 60);

        let sans: Vec<String> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| match (n.ipaddress(), n.dnsname()) {
                (Some(ip), _) => format!("IP:{ip:?}"),
                (_, Some(dns)) => format!("DNS:{dns}"),
                _ => panic!("unexpected SAN"),
            })
            .collect();
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(
            sans,
            [
                format!("IP:{:?}", [127u8, 0, 0, 1]),
                format!("IP:{v6:?}"),
                "DNS:localhost".into(),
                "DNS:pbs".into(),
                "DNS:pbs.example.com".into(),
            ]
        );

        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        let positions: Vec<usize> = [
            "X509v3 Basic Constraints",
            "X509v3 Extended Key Usage",
            "X509v3 Subject Alternative Name",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
        ]
        .iter()
        .map(|ext| {
            text.find(ext)
                .unwrap_or_else(|| panic!("{ext} missing:\n{text}"))
        })
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert_eq!(
            cert.authority_key_id().unwrap().as_slice(),
            cert.subject_key_id().unwrap().as_slice()
        );
    }

    #[test]
    fn localhost_names_are_not_repeated() {
        let rsa = Rsa::generate(1024).unwrap();
        let (_, cert) = generate_cert_with_key(rsa, "localhost", "localhost").unwrap();
        let dns: Vec<String> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect();
        assert_eq!(dns, ["localhost"]);
    }

    #[test]
    fn files_and_fingerprint() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) =
            generate_cert_with_key(Rsa::generate(1024).unwrap(), "pbs", "pbs").unwrap();
        write_proxy_cert_in(dir.path(), &key, &cert).unwrap();
        let key_pem = std::fs::read_to_string(dir.path().join(PROXY_KEY_FILE)).unwrap();
        assert!(
            key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "{key_pem}"
        );
        for f in [PROXY_KEY_FILE, PROXY_CERT_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640, "{f}");
        }
        let fp = cert_file_fingerprint(&dir.path().join(PROXY_CERT_FILE)).unwrap();
        assert_eq!(fp.len(), 95);
        assert!(is_valid_fingerprint(&fp));
        assert_eq!(fp, fp.to_lowercase());
        let digest = openssl::sha::sha256(&cert.to_der().unwrap());
        assert_eq!(fp.replace(':', ""), hex::encode(digest));
        // existing files are kept unless forced
        assert!(!ensure_proxy_cert_in(dir.path(), false).unwrap());
        assert_eq!(
            cert_file_fingerprint(&dir.path().join(PROXY_CERT_FILE)).unwrap(),
            fp
        );
    }

    #[test]
    fn fingerprint_formatting_and_schema() {
        let digest: Vec<u8> = (0..32).map(|i| (i * 8 + 0xa0) as u8).collect();
        let fp = format_fingerprint(&digest);
        assert!(fp.starts_with("a0:a8:b0:b8:"), "{fp}");
        assert_eq!(fp.len(), 95);
        assert!(is_valid_fingerprint(&fp));
        assert!(is_valid_fingerprint(&fp.to_uppercase()));
        assert!(!is_valid_fingerprint(&fp[..92]));
        assert!(!is_valid_fingerprint(&fp.replacen(':', "-", 1)));
        assert!(!is_valid_fingerprint(&fp.replacen('a', "g", 1)));
        assert_eq!(format_fingerprint(&[0x0f, 0xff]), "0f:ff");
    }

    #[test]
    fn resolv_conf_search_domain() {
        let conf = "# comment\nnameserver 192.0.2.53\nsearch example.com other.org\n";
        assert_eq!(search_domain(conf).as_deref(), Some("example.com"));
        assert_eq!(search_domain("nameserver 1.1.1.1\n"), None);
        assert_eq!(search_domain("searchx foo\n"), None);
        assert!(!nodename().unwrap().contains('.'));
    }
}
